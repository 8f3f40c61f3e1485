//! `switchover` and `failover`, as patronictl 4.1 runs them: the current topology, the prompts
//! for what the command line left out (`Primary [node1]:`, `Candidate ['node2', 'node3'] []:`,
//! `When should the switchover take place (e.g. 2024-02-07T19:50 )  [now]:`), the
//! confirmation, then `POST /switchover` (or `/failover`) to the leader, and the new topology.
//! When no agent can be reached the request is written to the `failover` key instead.

use anyhow::{bail, Result};
use reqwest::Method;
use serde_json::{Map, Value};

use super::common::{isoformat, next_hour, parse_scheduled, py_list, timestamp, Ctx};
use crate::dcs::Store;
use crate::pyfmt::json_dumps_compact;
use crate::render::{is_standby_cluster, is_synchronous_mode, Format};
use crate::term::{confirm, echo, prompt};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
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
}

/// What the command line gave.
#[derive(Debug, Clone, Default)]
pub struct Request {
    pub leader: Option<String>,
    pub candidate: Option<String>,
    pub scheduled: Option<String>,
    pub force: bool,
}

/// `candidate` is not among the synchronous standbys (nor the sync leader) of a cluster in
/// synchronous mode.
fn is_async_candidate(cluster: &pgha_types::Cluster, candidate: &str) -> bool {
    let Some(sync) = cluster.sync.as_ref().filter(|s| s.leader.is_some()) else {
        return false;
    };
    let c = candidate.to_lowercase();
    let in_sync = sync
        .sync_standby
        .as_deref()
        .unwrap_or("")
        .split(',')
        .any(|n| n.trim().to_lowercase() == c);
    let is_leader = sync
        .leader
        .as_deref()
        .is_some_and(|l| l.to_lowercase() == c);
    !(in_sync || is_leader)
}

pub async fn run(
    ctx: &mut Ctx<'_>,
    store: &impl Store,
    scope: &str,
    action: Action,
    req: Request,
) -> Result<()> {
    let mut cluster = store.load().await?;
    ctx.echo("Current cluster topology");
    ctx.show_members(&cluster, scope, Format::Pretty);

    let leader = cluster
        .leader_name()
        .filter(|n| !n.is_empty())
        .map(str::to_string);
    let mut switchover_leader = req.leader.clone();
    if action == Action::Switchover {
        let Some(current) = leader.as_deref() else {
            bail!("This cluster has no leader");
        };
        if switchover_leader.is_none() {
            switchover_leader = Some(if req.force {
                current.to_string()
            } else {
                let label = if is_standby_cluster(&cluster) {
                    "Standby Leader"
                } else {
                    "Primary"
                };
                prompt(ctx.term, label, Some(current))?
            });
        }
        let given = switchover_leader.as_deref().unwrap_or_default();
        if given != current {
            bail!("Member {given} is not the leader of cluster {scope}");
        }
    }

    let mut candidates: Vec<String> = cluster
        .members
        .iter()
        .filter(|m| Some(&m.name) != leader.as_ref() && !m.nofailover())
        .map(|m| m.name.clone())
        .collect();
    candidates.sort();
    if candidates.is_empty() {
        bail!("No candidates found to {} to", action.name());
    }

    let mut candidate = req.candidate.clone();
    if candidate.is_none() && !req.force {
        candidate = Some(prompt(
            ctx.term,
            &format!("Candidate {}", py_list(&candidates)),
            Some(""),
        )?);
    }
    let chosen = candidate.as_deref().filter(|c| !c.is_empty());
    if action == Action::Failover && chosen.is_none() {
        bail!("Failover could be performed only to a specific candidate");
    }
    if let Some(c) = chosen {
        if !candidates.iter().any(|n| n == c) {
            if Some(c) == leader.as_deref() {
                bail!("Member {c} is already the leader of cluster {scope}");
            }
            bail!("Member {c} does not exist in cluster {scope} or is tagged as nofailover");
        }
    }

    if !req.force
        && action == Action::Failover
        && is_synchronous_mode(&cluster)
        && chosen.is_some_and(|c| is_async_candidate(&cluster, c))
    {
        let c = chosen.unwrap_or_default();
        if !confirm(
            ctx.term,
            &format!("Are you sure you want to failover to the asynchronous node {c}?"),
        )? {
            bail!("Aborting {}", action.name());
        }
    }

    let mut scheduled_at = None;
    if action == Action::Switchover {
        let mut scheduled = req.scheduled.clone();
        if scheduled.is_none() && !req.force {
            let question = format!(
                "When should the switchover take place (e.g. {} ) ",
                next_hour()
            );
            scheduled = Some(prompt(ctx.term, &question, Some("now"))?);
        }
        if let Some(at) = parse_scheduled(scheduled.as_deref())? {
            if cluster.is_paused() {
                bail!("Can't schedule switchover in the paused state");
            }
            scheduled_at = Some(isoformat(&at, 'T'));
        }
    }

    let mut body = Map::new();
    body.insert(
        "candidate".into(),
        candidate.clone().map_or(Value::Null, Value::String),
    );
    if action == Action::Switchover {
        body.insert(
            "leader".into(),
            switchover_leader.clone().map_or(Value::Null, Value::String),
        );
    }
    if let Some(at) = &scheduled_at {
        body.insert("scheduled_at".into(), Value::String(at.clone()));
    }
    let body = Value::Object(body);

    if !req.force {
        let demote = leader
            .as_deref()
            .map(|l| format!(", demoting current leader {l}"))
            .unwrap_or_default();
        match &scheduled_at {
            Some(at) => {
                if !confirm(
                    ctx.term,
                    &format!("Are you sure you want to schedule switchover of cluster {scope} at {at}{demote}?"),
                )? {
                    bail!("Aborting scheduled {}", action.name());
                }
            }
            None => {
                if !confirm(
                    ctx.term,
                    &format!("Are you sure you want to {} cluster {scope}{demote}?", action.name()),
                )? {
                    bail!("Aborting {}", action.name());
                }
            }
        }
    }

    // The leader runs the switchover; without one, the candidate promotes itself.
    let target = match leader.as_deref() {
        Some(l) => super::members::leader_member(&cluster).filter(|m| m.name == l),
        None => chosen.and_then(|c| cluster.member(c).cloned()),
    };
    let answer = match &target {
        Some(member) => {
            let mut r = ctx
                .rest
                .call(member, Method::POST, action.name(), Some(&body))
                .await;
            // An agent that predates POST /switchover.
            if let Ok(reply) = &r {
                if reply.status == 501
                    && action == Action::Switchover
                    && reply
                        .text
                        .contains("Server does not support this operation")
                {
                    r = ctx
                        .rest
                        .call(member, Method::POST, "failover", Some(&body))
                        .await;
                }
            }
            r
        }
        None => Err(anyhow::anyhow!("no member to send the request to")),
    };
    match answer {
        Ok(reply) if reply.status == 200 || reply.status == 202 => {
            cluster = store.load().await?;
            echo(ctx.term, &format!("{} {}", timestamp(6), reply.text));
        }
        Ok(reply) => {
            echo(
                ctx.term,
                &format!(
                    "{} failed, details: {}, {}",
                    action.title(),
                    reply.status,
                    reply.text
                ),
            );
            return Ok(());
        }
        Err(e) => {
            crate::commands::warn(&format!("{e:#}"));
            crate::commands::warn("Failing over to DCS");
            echo(
                ctx.term,
                &format!(
                    "{} Could not {} using Patroni api, falling back to DCS",
                    timestamp(6),
                    action.name()
                ),
            );
            let mut key = Map::new();
            if let Some(l) = switchover_leader.filter(|l| !l.is_empty()) {
                key.insert("leader".into(), Value::String(l));
            }
            if let Some(c) = chosen {
                key.insert("member".into(), Value::String(c.to_string()));
            }
            if let Some(at) = scheduled_at {
                key.insert("scheduled_at".into(), Value::String(at));
            }
            store
                .put_key("failover", &json_dumps_compact(&Value::Object(key)))
                .await?;
        }
    }
    ctx.show_members(&cluster, scope, Format::Pretty);
    Ok(())
}

#[cfg(test)]
#[path = "switchover_tests.rs"]
mod tests;
