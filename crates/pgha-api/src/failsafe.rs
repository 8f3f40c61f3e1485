//! The replica's side of failsafe mode: `POST /failsafe` from a leader that lost the DCS.
//!
//! A member accepts (200 `Accepted`, its WAL position in the `lsn` header) only while it is not
//! a primary, not racing for or holding the leader key, and only from the member it knows as
//! leader; it remembers the ping so the HA loop keeps following that leader for `ttl` even if
//! the leader key has expired meanwhile. Anything else is refused with 500 and the reason, which
//! makes the leader demote. The check and the record happen under one lock with the HA loop's
//! claim on the leader key ([`FailsafeMemory::claim`]): a member never both accepts a leader's
//! ping and starts a race on a view that predates it.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::{HeaderValue, StatusCode};
use axum::response::Response;
use serde_json::{Map, Value};

use crate::wire::text_response;
use crate::NodeStatus;

/// A leader's `POST /failsafe` this member accepted.
#[derive(Debug, Clone, PartialEq)]
pub struct FailsafePing {
    pub name: String,
    pub conn_url: Option<String>,
    pub api_url: Option<String>,
    /// The leader's replication slots and their positions, as it sent them.
    pub slots: Option<Map<String, Value>>,
    pub at: Instant,
}

#[derive(Debug, Default)]
struct Inner {
    ping: Option<FailsafePing>,
    /// The HA loop races for or holds the leader key: pings are refused.
    claimed: bool,
}

/// Shared by the REST API (which records pings) and the HA loop (which reads them and claims
/// the leader key before racing).
#[derive(Debug, Default)]
pub struct FailsafeMemory {
    inner: Mutex<Inner>,
}

impl FailsafeMemory {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The last accepted ping.
    pub fn last_ping(&self) -> Option<FailsafePing> {
        self.lock().ping.clone()
    }

    /// The HA loop is about to race for the leader key. Refused (false) when a leader's ping
    /// arrived less than `fresh` ago: that leader still runs, the race must wait. Otherwise
    /// pings are refused from now on, until [`FailsafeMemory::release`].
    pub fn claim(&self, fresh: Duration) -> bool {
        let mut inner = self.lock();
        if inner.ping.as_ref().is_some_and(|p| p.at.elapsed() < fresh) {
            return false;
        }
        inner.claimed = true;
        true
    }

    /// Whether this member holds the leader key, set every HA cycle.
    pub fn set_claimed(&self, holds_lock: bool) {
        self.lock().claimed = holds_lock;
    }

    /// Forgets the pings (this member became the leader).
    pub fn forget(&self) {
        self.lock().ping = None;
    }

    /// Checks a ping and records it if accepted; the error is the refusal's text.
    fn accept(&self, s: &NodeStatus, ping: FailsafePing) -> Result<(), String> {
        let mut inner = self.lock();
        if inner.claimed
            || s.is_leader
            || (s.state == "running" && s.role.as_deref() == Some("primary"))
        {
            return Err("Running as a leader".into());
        }
        match s.known_leader.as_deref() {
            Some(l) if l == ping.name => {}
            Some(l) => {
                return Err(format!(
                    "{} is not the leader here: following {l}",
                    ping.name
                ))
            }
            None => {
                return Err(format!(
                    "{} is not the leader here: no leader known",
                    ping.name
                ))
            }
        }
        inner.ping = Some(ping);
        Ok(())
    }
}

/// `POST /failsafe` with a parsed body, while failsafe mode is on.
pub(crate) fn post(
    memory: &FailsafeMemory,
    s: &NodeStatus,
    request: &Map<String, Value>,
) -> Response {
    let text = |k: &str| request.get(k).and_then(Value::as_str).map(str::to_string);
    let Some(name) = text("name").filter(|n| !n.is_empty()) else {
        return text_response(StatusCode::BAD_REQUEST, "the request names no leader");
    };
    let ping = FailsafePing {
        name: name.clone(),
        conn_url: text("conn_url"),
        api_url: text("api_url"),
        slots: request.get("slots").and_then(Value::as_object).cloned(),
        at: Instant::now(),
    };
    match memory.accept(s, ping) {
        Ok(()) => {
            let mut resp = text_response(StatusCode::OK, "Accepted");
            let lsn = match (s.received_location, s.replayed_location) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            };
            if let Some(lsn) = lsn {
                if let Ok(v) = HeaderValue::from_str(&lsn.to_string()) {
                    resp.headers_mut().insert("lsn", v);
                }
            }
            resp
        }
        Err(why) => {
            tracing::info!("refusing POST /failsafe from {name}: {why}");
            text_response(StatusCode::INTERNAL_SERVER_ERROR, why)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replica(leader: Option<&str>) -> NodeStatus {
        NodeStatus {
            state: "running".into(),
            role: Some("replica".into()),
            known_leader: leader.map(str::to_string),
            failsafe_mode: true,
            received_location: Some(500),
            replayed_location: Some(400),
            ..Default::default()
        }
    }

    fn ping(name: &str) -> FailsafePing {
        FailsafePing {
            name: name.into(),
            conn_url: None,
            api_url: None,
            slots: None,
            at: Instant::now(),
        }
    }

    #[test]
    fn accepts_only_the_known_leader_and_never_while_leading() {
        let m = FailsafeMemory::default();
        assert!(m.accept(&replica(Some("node1")), ping("node1")).is_ok());
        assert_eq!(m.last_ping().map(|p| p.name), Some("node1".into()));
        let e = m
            .accept(&replica(Some("node1")), ping("node2"))
            .unwrap_err();
        assert!(e.contains("following node1"), "{e}");
        assert!(m.accept(&replica(None), ping("node1")).is_err());
        let primary = NodeStatus {
            role: Some("primary".into()),
            ..replica(Some("node1"))
        };
        assert_eq!(
            m.accept(&primary, ping("node1")).unwrap_err(),
            "Running as a leader"
        );
        // Racing for the key: refused until released.
        m.set_claimed(true);
        assert!(m.accept(&replica(Some("node1")), ping("node1")).is_err());
        m.set_claimed(false);
        assert!(m.accept(&replica(Some("node1")), ping("node1")).is_ok());
    }

    #[test]
    fn accepted_answers_carry_the_wal_position() {
        let m = FailsafeMemory::default();
        let mut req = Map::new();
        req.insert("name".into(), Value::from("node1"));
        req.insert(
            "api_url".into(),
            Value::from("http://127.0.0.1:8011/patroni"),
        );
        let resp = post(&m, &replica(Some("node1")), &req);
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.headers().get("lsn").unwrap(), "500");
        let p = m.last_ping().unwrap();
        assert_eq!(p.api_url.as_deref(), Some("http://127.0.0.1:8011/patroni"));
        let resp = post(&m, &replica(Some("node2")), &req);
        assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert!(resp.headers().get("lsn").is_none());
    }

    #[test]
    fn a_fresh_ping_holds_back_the_race() {
        let m = FailsafeMemory::default();
        assert!(m.claim(Duration::from_secs(10)));
        m.set_claimed(false);
        m.accept(&replica(Some("node1")), ping("node1")).unwrap();
        assert!(!m.claim(Duration::from_secs(10)));
        assert!(m.claim(Duration::ZERO));
        m.forget();
        assert!(m.last_ping().is_none());
    }
}
