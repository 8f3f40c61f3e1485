//! `POST /switchover`, `POST /failover` and `DELETE /switchover`, answering as Patroni 4.1.5's
//! `do_POST_failover` / `do_DELETE_switchover`: the same checks in the same order, the same
//! texts, the `failover` key written the same way, and the result polled from the DCS.

use std::time::Duration;

use axum::http::StatusCode;
use axum::response::Response;
use pgha_types::{Cluster, Failover, Member};
use serde_json::{Map, Value};

use super::schedule::{iso, parse_schedule};
use super::{admin, dcs_unavailable, not_supported, text, truthy};
use crate::view::{sync_key_lists, sync_mode, SyncMode};
use crate::wire::{error_page, text_response};
use crate::{Admin, ApiState};

/// The poll budget is `2 * max(MIN_POLL_WAIT, loop_wait)` seconds, as Patroni.
const MIN_POLL_WAIT: u64 = 10;
/// How often the DCS is read while waiting for the new leader.
const POLL_INTERVAL: Duration = Duration::from_millis(500);

/// What the operator asked for; a failover that names a leader becomes a switchover.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    Switchover,
    Failover,
}

impl Action {
    fn name(self) -> &'static str {
        match self {
            Action::Switchover => "switchover",
            Action::Failover => "failover",
        }
    }

    fn title(self) -> &'static str {
        match self {
            Action::Switchover => "Switchover",
            Action::Failover => "Failover",
        }
    }

    /// `switched` / `failed`, as in `Successfully switched over to "X"`.
    fn past(self) -> &'static str {
        match self {
            Action::Switchover => "switched",
            Action::Failover => "failed",
        }
    }

    fn past_title(self) -> &'static str {
        match self {
            Action::Switchover => "Switched",
            Action::Failover => "Failed",
        }
    }
}

/// A member name from the request: absent, `null`, `""` and other false values are no name.
fn name_of(v: Option<&Value>) -> Option<String> {
    match v {
        Some(v) if truthy(v) => Some(match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        }),
        _ => None,
    }
}

fn bad_request(msg: &str) -> Response {
    text_response(StatusCode::BAD_REQUEST, msg)
}

pub(super) async fn post(
    state: &ApiState,
    request: &Map<String, Value>,
    action: Action,
) -> Response {
    let Some(admin) = admin(state) else {
        return not_supported();
    };
    let leader = name_of(request.get("leader"));
    let candidate = name_of(request.get("candidate")).or_else(|| name_of(request.get("member")));
    let scheduled = request.get("scheduled_at").filter(|v| truthy(v));
    tracing::info!(
        "received {} request with leader={} candidate={} scheduled_at={}",
        action.name(),
        leader.as_deref().unwrap_or("None"),
        candidate.as_deref().unwrap_or("None"),
        scheduled.map_or_else(|| "None".to_string(), |v| v.to_string()),
    );

    if action == Action::Failover && candidate.is_none() {
        return bad_request("Failover could be performed only to a specific candidate");
    }
    if action == Action::Switchover && leader.is_none() {
        return bad_request("Switchover could be performed only from a specific leader");
    }
    let cluster = match admin.load_cluster().await {
        Ok(c) => c,
        Err(e) => return dcs_unavailable(action.name(), &e),
    };
    let paused = cluster.is_paused();

    let mut scheduled_at = None;
    if let Some(value) = scheduled {
        if action == Action::Failover {
            return bad_request("Failover can't be scheduled");
        }
        if paused {
            return bad_request("Can't schedule switchover in the paused state");
        }
        match parse_schedule(value, action.name(), chrono::Utc::now()) {
            Ok(at) => scheduled_at = Some(iso(&at)),
            Err((code, msg)) => return text_response(code, msg),
        }
    }
    if paused && candidate.is_none() {
        return bad_request(
            "Switchover is possible only to a specific candidate in a paused state",
        );
    }
    let action = if action == Action::Failover && leader.is_some() {
        tracing::warn!(
            "received failover request with leader specified - performing switchover instead"
        );
        Action::Switchover
    } else {
        action
    };
    if leader.is_some() && leader == candidate {
        return bad_request("Switchover target and source are the same");
    }
    if scheduled_at.is_none() {
        if let Err(reason) =
            failover_possible(&cluster, leader.as_deref(), candidate.as_deref(), action)
        {
            return text_response(StatusCode::PRECONDITION_FAILED, reason);
        }
    }

    let value = Failover {
        leader,
        member: candidate.clone(),
        scheduled_at: scheduled_at.clone(),
    };
    if let Err(e) = admin.write_failover(Some(value)).await {
        tracing::warn!("failed to write failover key: {e}");
        return text_response(
            StatusCode::SERVICE_UNAVAILABLE,
            "failed to write failover key into DCS",
        );
    }
    if scheduled_at.is_some() {
        return text_response(
            StatusCode::ACCEPTED,
            format!("{} scheduled", action.title()),
        );
    }
    let budget = Duration::from_secs(2 * MIN_POLL_WAIT.max(admin.loop_wait()).min(3600));
    let (code, msg) = poll_result(
        admin,
        cluster.leader_name(),
        candidate.as_deref(),
        action,
        budget,
    )
    .await;
    text(code, msg)
}

/// Patroni's `is_failover_possible`: whether someone could take over. Member health is read
/// from the members' DCS keys (running, not `nofailover`) rather than by calling their APIs.
fn failover_possible(
    cluster: &Cluster,
    leader: Option<&str>,
    candidate: Option<&str>,
    action: Action,
) -> Result<(), String> {
    if let Some(leader) = leader {
        if cluster.leader_name() != Some(leader) {
            return Err("leader name does not match".into());
        }
    }
    let not_possible = |why: &str| format!("{} is not possible: {why}", action.name());
    let mode = sync_mode(cluster);
    let members: Vec<&Member> = if let Some(candidate) = candidate {
        if action == Action::Switchover
            && mode == SyncMode::Sync
            && !sync_key_lists(cluster, candidate)
        {
            return Err("candidate name does not match with sync_standby".into());
        }
        let Some(member) = cluster.member(candidate) else {
            return Err("candidate does not exists".into());
        };
        // A manual failover in a leaderless cluster is the operator's last resort: the
        // candidate's own checks decide, not what its member key last said.
        if action == Action::Failover && cluster.leader.is_none() {
            return Ok(());
        }
        vec![member]
    } else if mode == SyncMode::Sync {
        let members: Vec<&Member> = cluster
            .members
            .iter()
            .filter(|m| sync_key_lists(cluster, &m.name))
            .collect();
        if members.is_empty() {
            return Err(not_possible("can not find sync_standby"));
        }
        members
    } else {
        let members: Vec<&Member> = match cluster.leader_name() {
            None => cluster.members.iter().collect(),
            Some(l) => cluster
                .members
                .iter()
                .filter(|m| m.name != l && m.data.api_url.as_deref().is_some_and(|u| !u.is_empty()))
                .collect(),
        };
        if members.is_empty() {
            return Err(not_possible("cluster does not have members except leader"));
        }
        members
    };
    if members.iter().any(|m| m.may_promote()) {
        Ok(())
    } else {
        Err(not_possible("no good candidates have been found"))
    }
}

/// Waits until a member other than `old_leader` holds the leader key (200), the `failover` key
/// is emptied with nobody new in charge (503 `... failed`), or `budget` runs out.
async fn poll_result(
    admin: &dyn Admin,
    old_leader: Option<&str>,
    candidate: Option<&str>,
    action: Action,
    budget: Duration,
) -> (u16, String) {
    let deadline = tokio::time::Instant::now() + budget;
    loop {
        tokio::time::sleep(POLL_INTERVAL).await;
        match admin.load_cluster().await {
            Ok(cluster) => {
                if let Some(new) = cluster
                    .leader_name()
                    .filter(|n| !n.is_empty() && Some(*n) != old_leader)
                {
                    return match candidate {
                        Some(c) if c != new => (
                            200,
                            format!(
                                "{} over to \"{new}\" instead of \"{c}\"",
                                action.past_title()
                            ),
                        ),
                        _ => (
                            200,
                            format!("Successfully {} over to \"{new}\"", action.past()),
                        ),
                    };
                }
                if cluster.failover.as_ref().is_none_or(Failover::is_empty) {
                    return (503, format!("{} failed", action.title()));
                }
            }
            Err(e) => tracing::debug!("exception while polling {} result: {e}", action.name()),
        }
        if tokio::time::Instant::now() >= deadline {
            return (503, format!("{} status unknown", action.title()));
        }
    }
}

/// `DELETE /switchover`: empties a scheduled `failover` key.
pub(super) async fn delete(state: &ApiState) -> Response {
    let Some(admin) = admin(state) else {
        return not_supported();
    };
    let cluster = match admin.load_cluster().await {
        Ok(c) => c,
        Err(e) => return dcs_unavailable("delete switchover", &e),
    };
    let scheduled = cluster
        .failover
        .as_ref()
        .and_then(|f| f.scheduled_at.as_deref())
        .is_some_and(|s| !s.is_empty());
    if !scheduled {
        return text_response(StatusCode::NOT_FOUND, "no switchover is scheduled");
    }
    match admin.write_failover(None).await {
        Ok(()) => text_response(StatusCode::OK, "scheduled switchover deleted"),
        Err(e) => {
            tracing::warn!("failed to delete the scheduled switchover: {e}");
            error_page(StatusCode::CONFLICT, None)
        }
    }
}
