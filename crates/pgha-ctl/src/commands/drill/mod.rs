//! `pghactl drill`: the field reports' faults, run against a lab made by `scripts/cluster.sh
//! up`, each under a write load, each judged `safe` or `UNSAFE`.
//!
//! Per drill: wait for a healthy cluster (one leader, every replica streaming, the synchronous
//! standby named in synchronous mode), start the writer and the probe ([`load`]), inflict the
//! fault on the leader ([`faults`]), undo it, wait (bounded) for a healthy cluster again, then
//! check every acknowledged id on the new primary ([`report`] does the arithmetic). Nothing is
//! touched before the lab, its DCS and a healthy cluster have been found.

mod faults;
mod lab;
mod load;
mod report;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Map, Value};

pub use faults::Drill;
use faults::{Ctx, SharedUndo};
use lab::Lab;
use load::{Endpoint, Load};
use report::{Commit, Outcome};

use crate::args::DrillArgs;
use crate::dcs::{ClusterReader, EtcdAccess};
use crate::render::{render_members, Format};

/// Writes before the fault: the writer must be running on the primary first.
const WARM_UP_ROWS: usize = 10;
const WARM_UP_BOUND: Duration = Duration::from_secs(30);
/// Writes after the cluster is healthy again, so the gap shows the writes resumed.
const COOL_DOWN: Duration = Duration::from_secs(2);

fn say(text: &str) {
    eprintln!(
        "{} drill: {text}",
        chrono::Local::now().format("%Y-%m-%d %H:%M:%S")
    );
}

/// Runs the drills; `Ok(false)` when any is unsafe (the caller exits non-zero).
pub async fn run(args: &DrillArgs) -> Result<bool> {
    let lab = match &args.lab {
        Some(dir) => Lab::open(dir)?,
        None => Lab::from_configs(&args.config, args.start_command.clone(), &args.etcd_pid)?,
    };
    if let Some(t) = &args.target {
        if lab.node(t).is_none() {
            let names: Vec<&str> = lab.nodes.iter().map(|n| n.name.as_str()).collect();
            bail!(
                "--target {t}: no such node in {} (nodes: {})",
                lab.describe(),
                names.join(", ")
            );
        }
    }
    // All drills by default, less those this lab cannot run; one asked for by name must fit.
    let chosen: Vec<Drill> = if args.drills.is_empty() {
        Drill::all()
            .into_iter()
            .filter(|d| match d.unfit(&lab) {
                Some(why) => {
                    say(&format!("skipping: {why}"));
                    false
                }
                None => true,
            })
            .collect()
    } else {
        if let Some(why) = args.drills.iter().find_map(|d| d.unfit(&lab)) {
            bail!("{why}");
        }
        args.drills.clone()
    };
    let rounds = args.rounds as usize;
    let (schedule, seed) = if args.random {
        let seed = args.seed.unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
        });
        (faults::random_schedule(&chosen, rounds, seed), Some(seed))
    } else {
        (
            std::iter::repeat_n(chosen.iter().copied(), rounds)
                .flatten()
                .collect(),
            None,
        )
    };

    let access = EtcdAccess::from(lab.ctl.etcd()?);
    let dcs = ClusterReader::connect(&access, &lab.ctl.prefix(&lab.scope))
        .await
        .with_context(|| format!("the cluster {} is unreachable", lab.scope))?;
    let cluster = dcs
        .load()
        .await
        .with_context(|| format!("the cluster {} is unreachable", lab.scope))?;
    if cluster.initialize.is_none() && cluster.members.is_empty() {
        bail!(
            "no cluster {} in etcd at {} (is the lab running? scripts/cluster.sh status)",
            lab.scope,
            access.endpoints.join(",")
        );
    }
    let policy = cluster
        .config
        .as_ref()
        .map(|c| c.policy().0)
        .unwrap_or_default();
    let ttl = Duration::from_secs(policy.ttl);
    let loop_wait = Duration::from_secs(policy.loop_wait);
    let healthy_bound = Duration::from_secs(args.healthy_timeout);

    let names: Vec<String> = schedule.iter().map(|d| d.name()).collect();
    say(&format!(
        "{} ({} nodes{}, {} etcd member(s)), ttl {}s, loop_wait {}s, synchronous_mode {}",
        lab.describe(),
        lab.nodes.len(),
        if lab.netns_block.is_some() {
            " in network namespaces"
        } else {
            ""
        },
        lab.etcd_members,
        policy.ttl,
        policy.loop_wait,
        policy.synchronous_mode
    ));
    if let Some(seed) = seed {
        say(&format!(
            "random schedule, seed {seed}: {}",
            names.join(", ")
        ));
    } else {
        say(&format!("schedule: {}", names.join(", ")));
    }
    // Healthy before anything is touched: a drill on a sick cluster measures nothing.
    let leader = wait_healthy(&lab, &dcs, healthy_bound)
        .await
        .map_err(|why| anyhow!("the cluster is not healthy ({why}); no drill was run"))?;
    let endpoints: Vec<Endpoint> = lab.nodes.iter().map(Endpoint::from).collect();
    let lead = endpoint(&endpoints, &leader)?;
    let conn = lead.connect().await.map_err(|e| anyhow!("{e}"))?;
    conn.client
        .batch_execute(load::SCHEMA)
        .await
        .with_context(|| format!("creating the drill tables on {leader}"))?;
    drop(conn);

    let undo: SharedUndo = Arc::new(Mutex::new(Default::default()));
    let ctx = Ctx {
        lab: &lab,
        dcs: &dcs,
        ttl,
        loop_wait,
        undo,
        say: &say,
    };
    let mut outcomes = Vec::new();
    for (i, drill) in schedule.iter().enumerate() {
        say(&format!("[{}/{}] {}", i + 1, schedule.len(), drill.name()));
        let one = run_one(&ctx, &endpoints, *drill, args, healthy_bound);
        let outcome = tokio::select! {
            o = one => o,
            sig = stop_signal() => {
                say(&format!("{sig}: undoing what the drill did"));
                faults::undo(&ctx).await;
                bail!("interrupted during {}", drill.name());
            }
        };
        // Whatever the drill left (failsafe_mode to restore, or more after an error).
        faults::undo(&ctx).await;
        say(&format!(
            "{}: write gap {}, lost {}, overlap {}, healthy after {}: {}{}",
            outcome.drill,
            report::fmt_secs(outcome.write_gap),
            outcome.lost,
            outcome.overlap.map_or("none".into(), report::fmt_secs),
            outcome
                .healthy_after
                .map_or("never".into(), report::fmt_secs),
            if outcome.verdict == report::Verdict::Safe {
                "safe"
            } else {
                "UNSAFE"
            },
            if outcome.note.is_empty() {
                String::new()
            } else {
                format!(" ({})", outcome.note)
            }
        ));
        outcomes.push(outcome);
    }
    let all_safe = outcomes.iter().all(|o| o.verdict == report::Verdict::Safe);
    if args.json {
        let doc = json!({
            "lab": lab.describe(),
            "seed": seed,
            "schedule": names,
            "ttl": policy.ttl,
            "results": outcomes,
            "safe": all_safe,
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        print!("{}", report::table(&outcomes));
    }
    Ok(all_safe)
}

/// Ctrl-C (SIGINT) or SIGTERM, whichever comes first, named; never, if neither can be caught.
async fn stop_signal() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = int.recv() => "SIGINT",
        _ = term.recv() => "SIGTERM",
    }
}

fn endpoint<'a>(eps: &'a [Endpoint], name: &str) -> Result<&'a Endpoint> {
    eps.iter()
        .find(|e| e.name == name)
        .ok_or_else(|| anyhow!("the leader {name} is no node of the lab"))
}

/// One drill, measured. Errors become an `UNSAFE` outcome naming them.
async fn run_one(
    ctx: &Ctx<'_>,
    endpoints: &[Endpoint],
    drill: Drill,
    args: &DrillArgs,
    healthy_bound: Duration,
) -> Outcome {
    let mut outcome = Outcome {
        drill: drill.name(),
        target: String::new(),
        acknowledged: 0,
        write_gap: Duration::ZERO,
        lost: 0,
        lost_ids: Vec::new(),
        overlap: None,
        healthy_after: None,
        verdict: report::Verdict::Unsafe,
        note: String::new(),
    };
    let leader = match wait_healthy(ctx.lab, ctx.dcs, healthy_bound).await {
        Ok(l) => l,
        Err(why) => {
            outcome.note = format!("not healthy before the drill ({why}): not run");
            return outcome;
        }
    };
    let leader = match &args.target {
        Some(t) if *t != leader => match make_leader(ctx, &leader, t, healthy_bound).await {
            Ok(()) => t.clone(),
            Err(e) => {
                outcome.note = format!("switchover to the target {t} failed ({e:#}): not run");
                return outcome;
            }
        },
        _ => leader,
    };
    outcome.target = leader.clone();
    let first_id = match next_id(endpoints, &leader).await {
        Ok(id) => id,
        Err(e) => {
            outcome.note = format!("{e:#}");
            return outcome;
        }
    };
    let interval = Duration::from_millis(args.write_interval_ms);
    let load = Load::start(endpoints, &drill.name(), first_id, interval);
    let warm = tokio::time::Instant::now();
    while load.acked_count() < WARM_UP_ROWS {
        if warm.elapsed() > WARM_UP_BOUND {
            let err = load.log.lock().unwrap().last_writer_error.clone();
            load.finish().await;
            outcome.note = format!(
                "the writer got no {WARM_UP_ROWS} rows acknowledged in {}s ({}): not run",
                WARM_UP_BOUND.as_secs(),
                err.unwrap_or_default()
            );
            return outcome;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let node = ctx
        .lab
        .node(&leader)
        .expect("wait_healthy names a node of the lab");
    let fault_at = load.now();
    let error = ctx
        .inject(drill, node)
        .await
        .err()
        .map(|e| format!("{e:#}"));
    // Whatever failed, resume and restart before judging the cluster's health.
    if error.is_some() {
        faults::undo(ctx).await;
    }
    let healthy = wait_recovered(ctx, &load, load.now(), healthy_bound).await;
    let healthy_at = load.now();
    if healthy.is_ok() {
        outcome.healthy_after = Some(healthy_at - fault_at);
        tokio::time::sleep(COOL_DOWN).await;
    }
    let end = load.now();
    let log = load.finish().await;

    let acked: Vec<i64> = log.acked.iter().map(|(id, _)| *id).collect();
    outcome.acknowledged = acked.len();
    let ack_times: Vec<Duration> = log.acked.iter().map(|(_, c)| c.end).collect();
    outcome.write_gap = report::write_gap(&ack_times, fault_at, end);
    let mut commits: Vec<Commit> = log.probes.clone();
    commits.extend(log.acked.iter().map(|(_, c)| *c));
    outcome.overlap = report::overlap(&commits);
    let mut error = error;
    match &healthy {
        Ok(new_leader) => match present(endpoints, new_leader, first_id, &acked).await {
            Ok(missing) => {
                outcome.lost = missing.len();
                outcome.lost_ids = missing.into_iter().take(10).collect();
            }
            Err(e) => error = Some(format!("cannot check the rows on {new_leader}: {e:#}")),
        },
        Err(why) => {
            let why = format!("last seen: {why}");
            error = Some(error.map_or(why.clone(), |e| format!("{e}; {why}")));
        }
    }
    let (verdict, note) = report::judge(
        outcome.lost,
        outcome.overlap,
        outcome.healthy_after,
        error.as_deref(),
    );
    outcome.verdict = verdict;
    outcome.note = note;
    outcome
}

/// The first id of a drill: above every id any earlier run wrote.
async fn next_id(endpoints: &[Endpoint], leader: &str) -> Result<i64> {
    let c = endpoint(endpoints, leader)?
        .connect()
        .await
        .map_err(|e| anyhow!("{e}"))?;
    let row = c
        .client
        .query_one(
            &format!("SELECT coalesce(max(id), 0) + 1 FROM {}", load::ROWS_TABLE),
            &[],
        )
        .await
        .with_context(|| format!("reading the last drill id on {leader}"))?;
    Ok(row.get(0))
}

/// The acknowledged ids missing on `node`, sorted.
async fn present(
    endpoints: &[Endpoint],
    node: &str,
    first_id: i64,
    acked: &[i64],
) -> Result<Vec<i64>> {
    let Some(&last) = acked.iter().max() else {
        return Ok(Vec::new());
    };
    let c = endpoint(endpoints, node)?
        .connect()
        .await
        .map_err(|e| anyhow!("{e}"))?;
    let rows = tokio::time::timeout(
        Duration::from_secs(30),
        c.client.query(
            &format!(
                "SELECT id FROM {} WHERE id BETWEEN $1 AND $2",
                load::ROWS_TABLE
            ),
            &[&first_id, &last],
        ),
    )
    .await
    .map_err(|_| anyhow!("the query timed out"))??;
    let have: std::collections::BTreeSet<i64> = rows.iter().map(|r| r.get(0)).collect();
    let mut missing: Vec<i64> = acked
        .iter()
        .copied()
        .filter(|id| !have.contains(id))
        .collect();
    missing.sort();
    Ok(missing)
}

/// One leader running, every other node of the lab streaming, and in synchronous mode a
/// synchronous standby named, as `pghactl list` shows them; the leader's name, or why not.
fn healthy(cluster: &pgha_types::Cluster, scope: &str, nodes: usize) -> Result<String, String> {
    let text = render_members(cluster, scope, false, Format::Json);
    let rows: Vec<Map<String, Value>> =
        serde_json::from_str(&text).map_err(|e| format!("unreadable member list: {e}"))?;
    let field = |r: &Map<String, Value>, k: &str| {
        r.get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let summary = || {
        rows.iter()
            .map(|r| {
                format!(
                    "{} {} {}",
                    field(r, "Member"),
                    field(r, "Role"),
                    field(r, "State")
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let leaders: Vec<String> = rows
        .iter()
        .filter(|r| field(r, "Role") == "Leader" && field(r, "State") == "running")
        .map(|r| field(r, "Member"))
        .collect();
    let streaming = rows
        .iter()
        .filter(|r| {
            matches!(
                field(r, "Role").as_str(),
                "Replica" | "Sync Standby" | "Quorum Standby"
            ) && field(r, "State") == "streaming"
        })
        .count();
    if rows.len() != nodes || leaders.len() != 1 || streaming != nodes - 1 {
        return Err(format!("members: {}", summary()));
    }
    let sync_mode = cluster
        .config
        .as_ref()
        .is_some_and(|c| c.policy().0.synchronous_mode);
    let has_sync = rows
        .iter()
        .any(|r| matches!(field(r, "Role").as_str(), "Sync Standby" | "Quorum Standby"));
    if sync_mode && nodes > 1 && !has_sync {
        return Err(format!("no synchronous standby yet: {}", summary()));
    }
    Ok(leaders[0].clone())
}

/// After a fault: healthy as [`healthy`] says, and the writer has had a row acknowledged
/// since `since`, so a list the agents have not refreshed yet (a member key still saying
/// `running` a moment after its postgres died) is not taken for a healed cluster.
async fn wait_recovered(
    ctx: &Ctx<'_>,
    load: &Load,
    since: Duration,
    bound: Duration,
) -> Result<String, String> {
    let until = tokio::time::Instant::now() + bound;
    // Every agent publishes its state once per loop.
    tokio::time::sleep(ctx.loop_wait * 2).await;
    loop {
        let left = until.saturating_duration_since(tokio::time::Instant::now());
        let leader = wait_healthy(ctx.lab, ctx.dcs, left).await?;
        let resumed = load
            .log
            .lock()
            .unwrap()
            .acked
            .iter()
            .any(|(_, c)| c.start >= since);
        if resumed {
            return Ok(leader);
        }
        if tokio::time::Instant::now() >= until {
            return Err(format!(
                "{leader} leads, but no write was acknowledged since the fault"
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A switchover from `leader` to `target` through the leader's REST API (as `pghactl
/// switchover` does), then a healthy cluster led by `target`.
async fn make_leader(ctx: &Ctx<'_>, leader: &str, target: &str, bound: Duration) -> Result<()> {
    (ctx.say)(&format!("switchover from {leader} to the target {target}"));
    let cluster = ctx.dcs.load().await?;
    let sync_mode = cluster
        .config
        .as_ref()
        .is_some_and(|c| c.policy().0.synchronous_mode);
    let sync_names: Option<Vec<String>> = cluster.sync.as_ref().map(|s| {
        s.sync_standby
            .as_deref()
            .unwrap_or("")
            .split(',')
            .map(|n| n.trim().to_string())
            .filter(|n| !n.is_empty())
            .collect()
    });
    if let Some(names) = sync_names.filter(|n| sync_mode && !n.iter().any(|s| s == target)) {
        bail!(
            "in synchronous mode only a synchronous standby ({}) may take over by switchover, \
             and {target} is none now; run the drill again once it is, or without --target",
            names.join(", ")
        );
    }
    let member = cluster
        .members
        .iter()
        .find(|m| m.name == leader)
        .ok_or_else(|| anyhow!("the leader {leader} has no member key"))?;
    let rest = crate::rest::Rest::with_tls(
        ctx.lab.ctl.rest_auth.clone(),
        &ctx.lab.ctl.rest_tls,
        Duration::from_secs(90),
    )?;
    let body = json!({"leader": leader, "candidate": target});
    let reply = rest
        .call(member, reqwest::Method::POST, "switchover", Some(&body))
        .await?;
    if reply.status != 200 {
        bail!(
            "{} answered {}: {}",
            leader,
            reply.status,
            reply.text.trim()
        );
    }
    match wait_healthy(ctx.lab, ctx.dcs, bound).await {
        Ok(l) if l == target => Ok(()),
        Ok(l) => bail!("{l} leads after the switchover, not {target}"),
        Err(why) => bail!("not healthy after the switchover: {why}"),
    }
}

/// What the member keys say, checked on PostgreSQL itself: a member key lives until its lease
/// runs out, so a replica just stopped (or emptied) still looks `streaming` for a while.
/// The leader must be out of recovery, every other node's WAL receiver streaming.
async fn confirm(lab: &Lab, leader: &str) -> Result<(), String> {
    for node in &lab.nodes {
        let ep = Endpoint::from(node);
        let c = ep.connect().await?;
        let sql = if node.name == leader {
            "SELECT (NOT pg_is_in_recovery())::text"
        } else {
            "SELECT coalesce((SELECT status FROM pg_stat_wal_receiver), 'no WAL receiver')"
        };
        let got: String =
            tokio::time::timeout(Duration::from_secs(2), c.client.query_one(sql, &[]))
                .await
                .map_err(|_| format!("{}: no answer", node.name))?
                .map_err(|e| format!("{}: {e}", node.name))?
                .get(0);
        let want = if node.name == leader {
            "true"
        } else {
            "streaming"
        };
        if got != want {
            return Err(format!("{}: {got} on PostgreSQL", node.name));
        }
    }
    Ok(())
}

/// Polls until [`healthy`] and [`confirm`]; the last reason when `bound` passes first.
async fn wait_healthy(lab: &Lab, dcs: &ClusterReader, bound: Duration) -> Result<String, String> {
    let until = tokio::time::Instant::now() + bound;
    loop {
        let why = match dcs.load().await {
            Ok(c) => match healthy(&c, &lab.scope, lab.nodes.len()) {
                Ok(l) if lab.node(&l).is_some() => match confirm(lab, &l).await {
                    Ok(()) => return Ok(l),
                    Err(w) => w,
                },
                Ok(l) => format!("the leader {l} is no node of the lab"),
                Err(w) => w,
            },
            Err(e) => format!("{e:#}"),
        };
        if tokio::time::Instant::now() >= until {
            return Err(why);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
