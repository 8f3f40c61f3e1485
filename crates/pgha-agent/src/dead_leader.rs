//! Proof that the leader is dead, so a replica need not wait for its lease to expire.
//!
//! A refused TCP connection comes from the leader's host itself: it answers and nothing
//! listens. When the leader's PostgreSQL port and its REST port both refuse, its postmaster is
//! gone (no new connection, no walsender) and its agent is gone (it would be serving REST); a
//! PostgreSQL without an agent cannot be made to come back as primary without a new agent,
//! which takes a new lease and so a new leader key. A timeout (a partition, a frozen host)
//! proves nothing and leaves the lease to decide. The proof must hold for every member:
//! each one publishes its own check at `GET /leader-refusing`; whether they agree is judged by
//! pgha-core (`judge_dead_leader`), and only then does the decision remove the leader key.

use std::time::Duration;

use pgha_types::{Cluster, Member};
use serde_json::Value;
use tokio::net::TcpStream;
use tracing::debug;

const CONNECT_TIMEOUT: Duration = Duration::from_millis(300);
const ASK_TIMEOUT: Duration = Duration::from_millis(500);

/// `host:port` of a URL (`postgres://h:p/db`, `http://h:p/patroni`).
fn authority(url: &str) -> Option<(String, u16)> {
    let u = reqwest::Url::parse(url).ok()?;
    let host = u.host_str()?.trim_matches(['[', ']']).to_string();
    let port = u.port_or_known_default().or(match u.scheme() {
        "postgres" | "postgresql" => Some(5432),
        _ => None,
    })?;
    Some((host, port))
}

async fn refuses(host: &str, port: u16) -> bool {
    match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect((host, port))).await {
        Ok(Err(e)) => e.kind() == std::io::ErrorKind::ConnectionRefused,
        _ => false,
    }
}

/// This member's own check: the leader named in `cluster`, when both its PostgreSQL and its
/// REST ports refuse connections.
pub async fn check_leader(cluster: &Cluster, me: &str) -> Option<String> {
    let leader = cluster.leader_name().filter(|l| *l != me)?;
    let m: &Member = cluster.member(leader)?;
    let pg = authority(m.data.conn_url.as_deref()?)?;
    let api = authority(m.data.api_url.as_deref()?)?;
    // The REST port first: a live leader's postgres would log every empty connection.
    if !refuses(&api.0, api.1).await {
        return None;
    }
    let pg_refused = refuses(&pg.0, pg.1).await;
    debug!(
        leader,
        pg_refused, "the leader's REST port refuses connections"
    );
    pg_refused.then(|| leader.to_string())
}

/// The leader's REST address a replica watches (see [`watch_leader`]); None while we lead or
/// know no leader.
pub type WatchTarget = std::sync::Arc<std::sync::Mutex<Option<(String, u16)>>>;

/// The REST address of the leader named in `cluster`, unless it is us.
pub fn watch_target(cluster: &Cluster, me: &str) -> Option<(String, u16)> {
    let leader = cluster.leader_name().filter(|l| *l != me)?;
    authority(cluster.member(leader)?.data.api_url.as_deref()?)
}

/// Every half second, a TCP connect to the leader's REST port; when it is refused the HA loop
/// runs at once (at most every 2 s) instead of at its next `loop_wait`, so a dead leader is
/// proven dead in about a second whatever `loop_wait` is. Connecting costs the leader nothing
/// (no request is sent, and the REST server does not log bare connections).
pub fn watch_leader(
    target: WatchTarget,
    wake: std::sync::Arc<tokio::sync::Notify>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut last_wake: Option<tokio::time::Instant> = None;
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let Some((host, port)) = target.lock().ok().and_then(|t| t.clone()) else {
                continue;
            };
            if !refuses(&host, port).await {
                continue;
            }
            if last_wake.is_none_or(|t| t.elapsed() >= Duration::from_secs(2)) {
                debug!("the leader's REST port {host}:{port} refuses connections: checking now");
                last_wake = Some(tokio::time::Instant::now());
                wake.notify_one();
            }
        }
    })
}

/// What every other member (not the leader, not us) finds in its own check (`GET
/// /leader-refusing`); pgha-core's `judge_dead_leader` decides whether they agree.
pub async fn ask_others(
    http: &reqwest::Client,
    cluster: &Cluster,
    me: &str,
    leader: &str,
) -> Vec<pgha_core::RefusalAnswer> {
    let asks = cluster
        .members
        .iter()
        .filter(|m| m.name != me && m.name != leader)
        .map(|m| async move {
            let answer = match m.data.api_url.as_deref().and_then(|u| Some((u, authority(u)?))) {
                Some((url, (host, port))) => {
                    let scheme = if url.starts_with("https") { "https" } else { "http" };
                    let ask = format!("{scheme}://{host}:{port}/leader-refusing");
                    match http.get(&ask).timeout(ASK_TIMEOUT).send().await {
                        Ok(r) if r.status().is_success() => r.json::<Value>().await.ok(),
                        _ => None,
                    }
                }
                None => None,
            };
            let refusing = answer
                .as_ref()
                .and_then(|v| v["leader"].as_str())
                .map(str::to_string);
            if refusing.as_deref() != Some(leader) {
                debug!(member = %m.name, ?answer, "does not confirm that {leader} refuses connections");
            }
            pgha_core::RefusalAnswer {
                member: m.name.clone(),
                refusing,
            }
        });
    futures::future::join_all(asks).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorities() {
        assert_eq!(
            authority("postgres://127.0.0.1:5433/postgres"),
            Some(("127.0.0.1".into(), 5433))
        );
        assert_eq!(
            authority("postgres://db1/postgres"),
            Some(("db1".into(), 5432))
        );
        assert_eq!(
            authority("http://[::1]:8008/patroni"),
            Some(("::1".into(), 8008))
        );
        assert_eq!(authority("not a url"), None);
    }

    #[tokio::test]
    async fn a_closed_port_refuses_and_an_open_one_does_not() {
        let open = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = open.local_addr().unwrap().port();
        assert!(!refuses("127.0.0.1", port).await);
        drop(open);
        assert!(refuses("127.0.0.1", port).await);
    }
}
