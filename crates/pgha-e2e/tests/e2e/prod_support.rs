//! Helpers for the production-fit scenarios: a cluster whose node files can be edited before
//! the agents start, HAProxy configured by `pghactl haproxy-config` (started and stopped by
//! PID), HAProxy's view of its servers, and a strict reader of Prometheus text.

use std::fs::{self, OpenOptions};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context, Result};
use pgha_e2e::{report, Cluster, ClusterOptions, PgEndpoint, RestEndpoint, Signal};

use crate::common::stdout_ok;

pub const HAPROXY_BIN: &str = "/usr/sbin/haproxy";

/// HAProxy check settings of the scenarios: fast routing (`inter 1s fall 2 rise 1`).
pub const INTER_SECS: u64 = 1;
pub const FALL: u64 = 2;

/// True (after a report line) when HAProxy is not installed here.
pub fn no_haproxy(name: &str) -> bool {
    if Path::new(HAPROXY_BIN).is_file() {
        return false;
    }
    report(&format!(
        "{name}: skipped ({HAPROXY_BIN} missing: apt-get install haproxy)"
    ));
    true
}

/// Like `Cluster::start_healthy`, but each node's YAML goes through `edit(name, node_dir,
/// yaml)` first.
pub fn start_edited(
    opts: ClusterOptions,
    edit: impl Fn(&str, &Path, String) -> String,
) -> Result<Cluster> {
    let n = opts.nodes;
    let c = Cluster::prepare(opts)?;
    for name in c.node_names() {
        let path = c.config_path(&name);
        let dir = path
            .parent()
            .ok_or_else(|| anyhow!("{} has no directory", path.display()))?;
        let yaml = fs::read_to_string(&path).with_context(|| format!("read {}", path.display()))?;
        fs::write(&path, edit(&name, dir, yaml))?;
    }
    c.start_etcd()?;
    for name in c.node_names() {
        c.start_node(&name)?;
    }
    c.wait_for_leader(Duration::from_secs(90))?;
    if n > 1 {
        c.wait_streaming(n - 1, Duration::from_secs(120))?;
    }
    Ok(c)
}

/// Where one HAProxy listener is, as a PostgreSQL endpoint.
pub fn endpoint(name: &str, port: u16) -> PgEndpoint {
    PgEndpoint {
        name: name.to_string(),
        port,
        socket_dir: None,
    }
}

/// An HAProxy process of one scenario: killed (and reaped) on drop.
pub struct Haproxy {
    child: Child,
    log: PathBuf,
    pub primary_port: u16,
    pub replica_port: u16,
    pub stats_port: u16,
}

impl Haproxy {
    /// Writes `haproxy.cfg` into the cluster's directory with `pghactl haproxy-config` (fast
    /// checks, loopback, free ports), checks it with `haproxy -c` and starts HAProxy.
    pub fn start(c: &Cluster) -> Result<Haproxy> {
        let ports = [
            pgha_e2e::ports::free_port()?,
            pgha_e2e::ports::free_port()?,
            pgha_e2e::ports::free_port()?,
        ];
        let [primary_port, replica_port, stats_port] = ports.map(|p| p.to_string());
        let out = c.ctl(&[
            "haproxy-config",
            &c.scope,
            "--bind",
            "127.0.0.1",
            "--primary-port",
            &primary_port,
            "--replica-port",
            &replica_port,
            "--stats-port",
            &stats_port,
            "--inter",
            &format!("{INTER_SECS}s"),
            "--fall",
            &FALL.to_string(),
            "--rise",
            "1",
        ])?;
        let text = stdout_ok(&out, "pghactl haproxy-config")?;
        let config = c.base.join("haproxy.cfg");
        let log = c.base.join("haproxy.log");
        fs::write(&config, &text)?;
        let check = Command::new(HAPROXY_BIN)
            .args(["-c", "-f"])
            .arg(&config)
            .output()
            .context("run haproxy -c")?;
        ensure!(
            check.status.success(),
            "haproxy rejects the generated configuration:\n{}\n{text}",
            String::from_utf8_lossy(&check.stderr)
        );
        let logf = OpenOptions::new().create(true).append(true).open(&log)?;
        let mut cmd = Command::new(HAPROXY_BIN);
        cmd.arg("-db")
            .arg("-f")
            .arg(&config)
            .current_dir(&c.base)
            .stdin(Stdio::null())
            .stdout(logf.try_clone()?)
            .stderr(logf);
        // Gone with the test process even if it is SIGKILLed.
        unsafe {
            cmd.pre_exec(|| {
                nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(std::io::Error::from)
            });
        }
        let child = cmd.spawn().context("start haproxy")?;
        let h = Haproxy {
            child,
            log,
            primary_port: ports[0],
            replica_port: ports[1],
            stats_port: ports[2],
        };
        c.wait("HAProxy's stats page", Duration::from_secs(10), || {
            h.states().map(|_| ())
        })?;
        Ok(h)
    }

    pub fn primary(&self) -> PgEndpoint {
        endpoint("haproxy-primary", self.primary_port)
    }

    pub fn replicas(&self) -> PgEndpoint {
        endpoint("haproxy-replicas", self.replica_port)
    }

    /// `(section, server, status)` of every server, from the stats page's CSV.
    pub fn states(&self) -> Result<Vec<(String, String, String)>> {
        let stats = RestEndpoint {
            name: "haproxy-stats".into(),
            port: self.stats_port,
        };
        let (code, body) = stats.get("/;csv")?;
        ensure!(code == 200, "stats page answered {code}");
        Ok(body
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let f: Vec<&str> = l.split(',').collect();
                let keep = f.len() > 17 && !matches!(f[1], "FRONTEND" | "BACKEND");
                keep.then(|| (f[0].to_string(), f[1].to_string(), f[17].to_string()))
            })
            .collect())
    }

    /// The servers HAProxy has UP in `section`.
    pub fn up(&self, section: &str) -> Result<Vec<String>> {
        Ok(self
            .states()?
            .into_iter()
            .filter(|(s, _, st)| s == section && st.starts_with("UP"))
            .map(|(_, name, _)| name)
            .collect())
    }

    /// Waits until HAProxy has exactly `primary` UP as the primary.
    pub fn wait_primary(&self, c: &Cluster, primary: &str, timeout: Duration) -> Result<()> {
        c.wait(
            &format!("HAProxy to route the primary port to {primary} only"),
            timeout,
            || {
                let up = self.up("primary")?;
                ensure!(up == [primary], "primary servers UP: {up:?}");
                Ok(())
            },
        )
        .map_err(|e| anyhow!("{e:#}; HAProxy log:\n{}", self.log_tail()))
    }

    /// The last lines of HAProxy's own log (server state changes), for failure messages.
    pub fn log_tail(&self) -> String {
        pgha_e2e::tail(&fs::read_to_string(&self.log).unwrap_or_default(), 20)
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The node (by PostgreSQL port) a fresh connection through `ep` lands on, and whether it is in
/// recovery.
pub fn landing(c: &Cluster, ep: &PgEndpoint) -> Result<(String, bool)> {
    let row = ep
        .sql("SELECT inet_server_port(), pg_is_in_recovery()")?
        .into_iter()
        .next()
        .ok_or_else(|| anyhow!("no row"))?;
    let port: u16 = row
        .first()
        .cloned()
        .flatten()
        .unwrap_or_default()
        .parse()
        .context("inet_server_port")?;
    let node = c
        .node_names()
        .into_iter()
        .find(|n| c.pg(n).port == port)
        .ok_or_else(|| anyhow!("port {port} is no node's"))?;
    Ok((node, row.get(1).cloned().flatten().as_deref() == Some("t")))
}

/// One sample of Prometheus text: name, labels in order, value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

/// Reads Prometheus text format 0.0.4 strictly: every line is a comment (`# HELP`, `# TYPE`
/// with a known type, or other `#` text) or a sample with a valid name, quoted label values
/// (with `\\`, `\"`, `\n` escapes) and a float value. Anything else is an error.
pub fn parse_prometheus(text: &str) -> Result<Vec<Sample>> {
    let valid_name = |n: &str| {
        !n.is_empty()
            && !n.starts_with(|c: char| c.is_ascii_digit())
            && n.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    };
    let mut out = Vec::new();
    for (no, line) in text.lines().enumerate() {
        let at = || format!("line {}: {line:?}", no + 1);
        if let Some(rest) = line.strip_prefix('#') {
            let words: Vec<&str> = rest.split_whitespace().collect();
            if words.first() == Some(&"TYPE") {
                ensure!(
                    words.len() == 3 && valid_name(words[1]),
                    "bad TYPE {}",
                    at()
                );
                ensure!(
                    ["counter", "gauge", "histogram", "summary", "untyped"].contains(&words[2]),
                    "unknown type {}",
                    at()
                );
            }
            continue;
        }
        if line.trim().is_empty() {
            continue;
        }
        let name_end = line
            .find(['{', ' '])
            .ok_or_else(|| anyhow!("no value {}", at()))?;
        let name = &line[..name_end];
        ensure!(valid_name(name), "bad metric name {}", at());
        let mut rest = &line[name_end..];
        let mut labels = Vec::new();
        if let Some(mut s) = rest.strip_prefix('{') {
            loop {
                s = s.trim_start_matches(',');
                if let Some(after) = s.strip_prefix('}') {
                    rest = after;
                    break;
                }
                let eq = s.find('=').ok_or_else(|| anyhow!("bad label {}", at()))?;
                let key = &s[..eq];
                ensure!(valid_name(key), "bad label name {}", at());
                let body = s[eq + 1..]
                    .strip_prefix('"')
                    .ok_or_else(|| anyhow!("unquoted label value {}", at()))?;
                let (mut value, mut chars, mut end) = (String::new(), body.char_indices(), None);
                while let Some((i, ch)) = chars.next() {
                    match ch {
                        '"' => {
                            end = Some(i + 1);
                            break;
                        }
                        '\\' => match chars.next() {
                            Some((_, 'n')) => value.push('\n'),
                            Some((_, c @ ('\\' | '"'))) => value.push(c),
                            _ => bail!("bad escape {}", at()),
                        },
                        c => value.push(c),
                    }
                }
                let end = end.ok_or_else(|| anyhow!("unterminated label value {}", at()))?;
                labels.push((key.to_string(), value));
                s = &body[end..];
            }
        }
        let mut fields = rest.split_whitespace();
        let value = fields.next().ok_or_else(|| anyhow!("no value {}", at()))?;
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            "NaN" => f64::NAN,
            v => v.parse().with_context(|| format!("bad value {}", at()))?,
        };
        if let Some(ts) = fields.next() {
            ts.parse::<i64>()
                .with_context(|| format!("bad timestamp {}", at()))?;
        }
        ensure!(fields.next().is_none(), "trailing text {}", at());
        out.push(Sample {
            name: name.to_string(),
            labels,
            value,
        });
    }
    Ok(out)
}

/// `/metrics` of a node, parsed; the value of `name` and its labels.
pub fn metric(samples: &[Sample], name: &str) -> Result<(f64, Vec<(String, String)>)> {
    samples
        .iter()
        .find(|s| s.name == name)
        .map(|s| (s.value, s.labels.clone()))
        .ok_or_else(|| anyhow!("no sample {name}"))
}

/// Seconds since `t0`, for reports.
pub fn since(t0: Instant) -> f64 {
    t0.elapsed().as_secs_f64()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_prometheus_text_strictly() {
        let text =
            "# HELP a_b Help.\n# TYPE a_b counter\na_b{scope=\"x\",name=\"n, \\\"q\\\"\"} 040105\n\
                    # Values: 0=a, 1=b\nc 1.5e3 123\nd{} NaN\n";
        let s = parse_prometheus(text).unwrap();
        assert_eq!(s.len(), 3);
        assert_eq!(s[0].value, 40105.0);
        assert_eq!(s[0].labels[1], ("name".into(), "n, \"q\"".into()));
        assert_eq!(s[1].value, 1500.0);
        for bad in [
            "# TYPE a info\n",
            "a{b=c} 1\n",
            "a{b=\"c} 1\n",
            "1a 1\n",
            "a one\n",
            "a 1 2 3\n",
        ] {
            assert!(parse_prometheus(bad).is_err(), "{bad:?}");
        }
    }
}
