//! `POST /switchover` and `DELETE /switchover` on a real leader, with Patroni's codes and
//! texts: 412 for a wrong leader or an unknown candidate, 404 when nothing is scheduled, 200
//! `Successfully switched over to "X"` once X holds the leader key.

use std::time::{Duration, Instant};

use anyhow::{ensure, Result};
use pgha_e2e::{report, Cluster, ClusterOptions};
use serde_json::json;

use crate::common::{secs, skip};
use crate::ops_common::{leader, others, rest_call, wait_healthy_under};

#[test]
fn switchover_rest() -> Result<()> {
    if skip("switchover_rest") {
        return Ok(());
    }
    let c = Cluster::start_healthy(ClusterOptions::default())?;
    let old = leader(&c)?;
    let replicas = others(&c, &old);
    let cand = replicas[0].clone();
    wait_healthy_under(&c, &old, Duration::from_secs(60))?;

    // Refusals change nothing.
    let (code, text) = rest_call(
        &c,
        &old,
        "POST",
        "/switchover",
        Some(&json!({"leader": replicas[1], "candidate": cand})),
    )?;
    ensure!(
        (code, text.as_str()) == (412, "leader name does not match"),
        "wrong leader: {code} {text:?}"
    );
    let (code, text) = rest_call(
        &c,
        &old,
        "POST",
        "/switchover",
        Some(&json!({"leader": old, "candidate": "no-such-node"})),
    )?;
    ensure!(
        (code, text.as_str()) == (412, "candidate does not exists"),
        "unknown candidate: {code} {text:?}"
    );
    let (code, text) = rest_call(&c, &old, "DELETE", "/switchover", None)?;
    ensure!(
        code == 404,
        "DELETE /switchover with nothing scheduled: {code} {text:?}"
    );
    ensure!(
        c.etcd_get("failover")?
            .unwrap_or_default()
            .trim_matches(['{', '}'])
            .is_empty(),
        "a refused request left a failover key: {:?}",
        c.etcd_get("failover")?
    );
    ensure!(leader(&c)? == old, "a refused request moved the leadership");

    // The real one: answered once the candidate holds the leader key.
    let t0 = Instant::now();
    let (code, text) = rest_call(
        &c,
        &old,
        "POST",
        "/switchover",
        Some(&json!({"leader": old, "candidate": cand})),
    )?;
    let took = t0.elapsed();
    ensure!(
        (code, text.as_str())
            == (
                200,
                format!("Successfully switched over to \"{cand}\"").as_str()
            ),
        "switchover: {code} {text:?}"
    );
    ensure!(
        leader(&c)? == cand,
        "the answer came before {cand} held the leader key"
    );
    report(&format!(
        "switchover_rest: POST /switchover {old} -> {cand} answered 200 after {:.2}s",
        secs(took)
    ));
    wait_healthy_under(&c, &cand, Duration::from_secs(60))?;
    c.pass();
    Ok(())
}
