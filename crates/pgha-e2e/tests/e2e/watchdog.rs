//! The watchdog with Patroni's `driver: testing`: the test plays the device on a FIFO per
//! node and reads what each agent writes (`Ctimeout=N\n` when armed, `1` per keepalive, `V`
//! before a magic close). Three nodes with `watchdog.mode: required`; node3's device cannot
//! be opened.
//!
//! Asserted: the leader arms its watchdog with ttl - safety_margin and feeds it about once
//! per loop_wait; replicas never open theirs; `pause` magic-closes it and `resume` arms it
//! again; while the leader's agent is SIGSTOPped nothing feeds it; a switchover and a SIGTERM
//! magic-close it and the new leader arms its own;
//! node3 never leads (not even when it is the last node), says why naming the watchdog, and
//! `/patroni` reports `watchdog_failed`.

use std::fs::OpenOptions;
use std::io::{ErrorKind, Read};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use pgha_e2e::{report, yaml_set, Cluster, ClusterOptions, Signal};

use crate::common::{secs, skip};
use crate::ops_common::{ctl_ok, leader, wait_healthy_under};

const SAFETY_MARGIN: u64 = 3;
const FIFO: &str = "watchdog.fifo";
/// The node whose watchdog device does not exist.
const BROKEN: &str = "node3";

#[derive(Debug, Clone, PartialEq)]
enum Ev {
    /// A writer (the agent) opened the FIFO.
    Opened,
    Data(String),
    /// The last writer closed it.
    Closed,
}

/// Reads one FIFO without blocking, so it is always open for reading (the agent's
/// non-blocking open needs a reader) and notices writers coming and going: `read` answers
/// "would block" while a writer has it open and 0 once none has.
struct FifoReader {
    events: Arc<Mutex<Vec<(Instant, Ev)>>>,
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl FifoReader {
    fn start(path: &Path) -> Result<FifoReader> {
        let mut f = OpenOptions::new()
            .read(true)
            .custom_flags(nix::libc::O_NONBLOCK)
            .open(path)
            .with_context(|| format!("open {} for reading", path.display()))?;
        let events = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (ev, st) = (events.clone(), stop.clone());
        let handle = std::thread::spawn(move || {
            let started = Instant::now();
            let mut connected = false;
            let mut buf = [0u8; 4096];
            while !st.load(Ordering::Relaxed) && started.elapsed() < Duration::from_secs(240) {
                let now = Instant::now();
                let push = |e| ev.lock().unwrap().push((now, e));
                match f.read(&mut buf) {
                    Ok(0) => {
                        if connected {
                            push(Ev::Closed);
                            connected = false;
                        }
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    Ok(n) => {
                        if !connected {
                            push(Ev::Opened);
                            connected = true;
                        }
                        push(Ev::Data(String::from_utf8_lossy(&buf[..n]).into_owned()));
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        if !connected {
                            push(Ev::Opened);
                            connected = true;
                        }
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        Ok(FifoReader {
            events,
            stop,
            handle: Some(handle),
        })
    }

    fn since(&self, t: Instant) -> Vec<(Instant, Ev)> {
        let ev = self.events.lock().unwrap();
        ev.iter().filter(|(at, _)| *at >= t).cloned().collect()
    }

    fn text_since(&self, t: Instant) -> String {
        self.since(t)
            .into_iter()
            .filter_map(|(_, e)| match e {
                Ev::Data(s) => Some(s),
                _ => None,
            })
            .collect()
    }

    /// Instants of the keepalives (`1`) in [from, to).
    fn keepalives(&self, from: Instant, to: Instant) -> Vec<Instant> {
        self.since(from)
            .into_iter()
            .filter(|(at, _)| *at < to)
            .flat_map(|(at, e)| match e {
                Ev::Data(s) => vec![at; s.matches('1').count()],
                _ => Vec::new(),
            })
            .collect()
    }

    fn summary(&self, t: Instant) -> String {
        let s: Vec<String> = self
            .since(t)
            .iter()
            .map(|(at, e)| format!("{:.1}s {e:?}", secs(at.duration_since(t))))
            .collect();
        let n = s.len();
        s.into_iter()
            .skip(n.saturating_sub(30))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl Drop for FifoReader {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

fn fifo_path(c: &Cluster, node: &str) -> PathBuf {
    c.base.join(node).join(FIFO)
}

/// Waits until, since `t`, the FIFO was opened and got `Ctimeout=N\n` first.
fn wait_armed(c: &Cluster, r: &FifoReader, node: &str, t: Instant, n: u64) -> Result<()> {
    let want = format!("Ctimeout={n}\n");
    c.wait(
        &format!("{node} to arm its watchdog with {want:?}"),
        Duration::from_secs(15),
        || {
            let ev = r.since(t);
            ensure!(
                ev.first().map(|e| &e.1) == Some(&Ev::Opened),
                "not opened: {}",
                r.summary(t)
            );
            let text = r.text_since(t);
            ensure!(text.starts_with(&want), "wrote {text:?}");
            Ok(())
        },
    )
}

/// Waits until, since `t`, the FIFO got a `V` as its last byte and was closed.
fn wait_magic_closed(c: &Cluster, r: &FifoReader, node: &str, t: Instant) -> Result<Instant> {
    c.wait(
        &format!("{node} to magic-close its watchdog"),
        Duration::from_secs(20),
        || {
            let ev = r.since(t);
            let closed = ev
                .iter()
                .rposition(|(_, e)| *e == Ev::Closed)
                .ok_or_else(|| anyhow::anyhow!("not closed: {}", r.summary(t)))?;
            let last_data = ev[..closed].iter().rev().find_map(|(_, e)| match e {
                Ev::Data(s) => Some(s.clone()),
                _ => None,
            });
            ensure!(
                last_data.is_some_and(|s| s.ends_with('V')),
                "closed without V: {}",
                r.summary(t)
            );
            Ok(ev[closed].0)
        },
    )
}

/// The keepalives of [from, to) come about once per loop_wait (1 s): never a gap over 2.5 s.
fn check_fed(r: &FifoReader, node: &str, from: Instant, to: Instant) -> Result<usize> {
    let k = r.keepalives(from, to);
    let span = secs(to.duration_since(from));
    ensure!(
        k.len() as f64 >= span / 2.0 && k.len() as f64 <= span * 4.0 + 2.0,
        "{node}: {} keepalives in {span:.1}s: {}",
        k.len(),
        r.summary(from)
    );
    let mut prev = from;
    for at in &k {
        ensure!(
            at.duration_since(prev) < Duration::from_millis(2500),
            "{node}: {:.1}s without a keepalive: {}",
            secs(at.duration_since(prev)),
            r.summary(from)
        );
        prev = *at;
    }
    Ok(k.len())
}

fn never_led_by_broken(c: &Cluster) -> Result<()> {
    ensure!(
        c.leader_name()?.as_deref() != Some(BROKEN),
        "{BROKEN} holds the leader key although its required watchdog cannot be opened"
    );
    Ok(())
}

#[test]
fn watchdog_testing_driver() -> Result<()> {
    if skip("watchdog_testing_driver") {
        return Ok(());
    }
    let opts = ClusterOptions::default().customize(|spec, doc| {
        let device = if spec.name == BROKEN {
            spec.dir.join("no-such-dir").join("watchdog")
        } else {
            spec.dir.join(FIFO)
        };
        yaml_set(doc, &["watchdog", "mode"], "required".into());
        yaml_set(doc, &["watchdog", "driver"], "testing".into());
        yaml_set(
            doc,
            &["watchdog", "device"],
            device.display().to_string().into(),
        );
        yaml_set(doc, &["watchdog", "safety_margin"], SAFETY_MARGIN.into());
    });
    let timeout = opts.ttl - SAFETY_MARGIN;
    let c = Cluster::prepare(opts)?;
    // prepare() waited for other scenarios; what follows is this one's time.
    let t_start = Instant::now();
    let good: Vec<String> = c.node_names().into_iter().filter(|n| n != BROKEN).collect();
    let mut readers = std::collections::BTreeMap::new();
    for n in &good {
        let p = fifo_path(&c, n);
        nix::unistd::mkfifo(&p, nix::sys::stat::Mode::from_bits_truncate(0o666))?;
        // The agents run as postgres; mkfifo's mode went through the umask.
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o666))?;
        readers.insert(n.clone(), FifoReader::start(&p)?);
    }
    c.start_etcd()?;
    for n in c.node_names() {
        c.start_node(&n)?;
    }
    let l = c.wait_for_leader(Duration::from_secs(90))?;
    c.wait_streaming(2, Duration::from_secs(120))?;
    ensure!(l != BROKEN, "{BROKEN} leads without a watchdog");
    let m = good
        .iter()
        .find(|n| **n != l)
        .cloned()
        .expect("two good nodes");
    let (rl, rm) = (&readers[&l], &readers[&m]);

    // The leader armed the watchdog with ttl - safety_margin and feeds it every loop.
    wait_armed(&c, rl, &l, t_start, timeout)?;
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs(5));
    let fed = check_fed(rl, &l, t0, Instant::now())?;
    report(&format!(
        "watchdog: {l} armed with Ctimeout={timeout}, {fed} keepalives in 5 s"
    ));
    ensure!(
        rm.since(t_start).is_empty(),
        "replica {m} touched its watchdog: {}",
        rm.summary(t_start)
    );

    // node3 cannot lead and says why.
    let (_, v) = c.rest(BROKEN).get_json("/patroni")?;
    ensure!(v["watchdog_failed"] == true, "{BROKEN} /patroni: {v}");
    let (_, v) = c.rest(&l).get_json("/patroni")?;
    ensure!(v.get("watchdog_failed").is_none(), "{l} /patroni: {v}");
    let log = c.log_since(BROKEN, 0);
    ensure!(
        log.lines()
            .any(|x| x.contains("watchdog.device") && x.contains("no-such-dir")),
        "{BROKEN} never named its watchdog device: {}",
        pgha_e2e::tail(&log, 20)
    );
    never_led_by_broken(&c)?;

    // Maintenance mode: magic close, nothing more until resume, which arms it again.
    let t_pause = Instant::now();
    ctl_ok(&c, &["pause", "--wait"], Duration::from_secs(30))?;
    let closed_at = wait_magic_closed(&c, rl, &l, t_pause)?;
    std::thread::sleep(Duration::from_secs(3));
    ensure!(
        rl.since(closed_at + Duration::from_millis(1)).is_empty(),
        "{l} wrote to its watchdog while paused: {}",
        rl.summary(closed_at)
    );
    let t_resume = Instant::now();
    ctl_ok(&c, &["resume", "--wait"], Duration::from_secs(30))?;
    wait_armed(&c, rl, &l, t_resume, timeout)?;
    report(&format!(
        "watchdog: pause closed it after {:.1}s, resume armed it again",
        secs(closed_at.duration_since(t_pause))
    ));

    // A stopped agent feeds nothing (this is what would reset the machine).
    std::thread::sleep(Duration::from_secs(2));
    let t_stop = Instant::now();
    c.kill_agent(&l, Signal::SIGSTOP)?;
    std::thread::sleep(Duration::from_secs(4));
    let t_cont = Instant::now();
    c.kill_agent(&l, Signal::SIGCONT)?;
    let during = rl.keepalives(t_stop + Duration::from_millis(300), t_cont);
    ensure!(
        during.is_empty(),
        "{} keepalives while {l}'s agent was stopped: {}",
        during.len(),
        rl.summary(t_stop)
    );
    c.wait(
        &format!("{l} to feed its watchdog again after SIGCONT"),
        Duration::from_secs(10),
        || {
            ensure!(!rl.keepalives(t_cont, Instant::now()).is_empty(), "not yet");
            Ok(())
        },
    )?;
    ensure!(leader(&c)? == l, "the leader changed during a 4 s stop");

    // A switchover is a clean demotion: the old leader magic-closes, the new one arms.
    let t_sw = Instant::now();
    let scope = c.scope.clone();
    let out = ctl_ok(
        &c,
        &[
            "switchover",
            &scope,
            "--leader",
            &l,
            "--candidate",
            &m,
            "--force",
        ],
        Duration::from_secs(60),
    )?;
    ensure!(out.contains("Successfully switched over"), "{out}");
    let closed_sw = wait_magic_closed(&c, rl, &l, t_sw)?;
    wait_armed(&c, rm, &m, t_start, timeout)?;
    wait_healthy_under(&c, &m, Duration::from_secs(60))?;
    never_led_by_broken(&c)?;
    let t1 = Instant::now();
    std::thread::sleep(Duration::from_secs(3));
    check_fed(rm, &m, t1, Instant::now())?;
    report(&format!(
        "watchdog: switchover {l} -> {m}: {l} closed its watchdog {:.1}s after the request, {m} armed",
        secs(closed_sw.duration_since(t_sw))
    ));

    // A clean shutdown magic-closes it; the demoted node takes over again and re-arms.
    let t_term = Instant::now();
    ensure!(
        rl.since(closed_sw + Duration::from_millis(1)).is_empty(),
        "{l} touched its watchdog as a replica: {}",
        rl.summary(closed_sw)
    );
    c.kill_agent(&m, Signal::SIGTERM)?;
    c.wait_agent_exit(&m, Duration::from_secs(60))?;
    wait_magic_closed(&c, rm, &m, t_term)?;
    c.wait(&format!("{l} to lead"), Duration::from_secs(30), || {
        never_led_by_broken(&c)?;
        ensure!(leader(&c)? == l, "not yet");
        Ok(())
    })?;
    wait_armed(&c, rl, &l, t_term, timeout)?;
    let t2 = Instant::now();
    std::thread::sleep(Duration::from_secs(3));
    check_fed(rl, &l, t2, Instant::now())?;
    report(&format!(
        "watchdog: SIGTERM of {m} closed its watchdog; {l} leads and armed {:.1}s after the SIGTERM",
        secs(t2.duration_since(t_term))
    ));

    // The last node standing has no watchdog: it never takes the lock.
    let mark = c.log_len(BROKEN);
    let t_term2 = Instant::now();
    c.kill_agent(&l, Signal::SIGTERM)?;
    c.wait_agent_exit(&l, Duration::from_secs(60))?;
    wait_magic_closed(&c, rl, &l, t_term2)?;
    let hold = Instant::now();
    while hold.elapsed() < Duration::from_secs(6) {
        never_led_by_broken(&c)?;
        std::thread::sleep(Duration::from_millis(200));
    }
    let log = c.log_since(BROKEN, mark);
    ensure!(
        log.lines()
            .any(|x| x.contains("not racing for the leader lock") && x.contains("watchdog")),
        "{BROKEN} did not say why it stays out of the race: {}",
        pgha_e2e::tail(&log, 20)
    );
    report(&format!(
        "watchdog: {BROKEN} (required, device missing) stayed out of the race; scenario {:.0}s",
        secs(t_start.elapsed())
    ));
    drop(readers);
    c.pass();
    Ok(())
}
