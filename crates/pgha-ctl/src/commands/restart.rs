//! Member operations over REST, as patronictl runs them: `restart` (`POST /restart`), `reload`
//! (`POST /reload`), `reinit` (`POST /reinitialize`) and `flush` (`DELETE /restart`,
//! `DELETE /switchover`). Each prints the members table, picks members by name and role, asks
//! for confirmation unless `--force`, then reports one line per member. A member that cannot
//! be reached gets an `Error: ...` line on stderr and the command goes on with the others
//! (exit code 1 at the end).

use std::time::Duration;

use anyhow::{bail, Result};
use pgha_types::Member;
use reqwest::Method;
use serde_json::{json, Map, Value};

use super::common::{
    check_pg_version, isoformat, loop_wait, next_hour, parse_scheduled, timestamp, Ctx,
};
use super::members::{confirm_members_action, get_members, leader_first};
use crate::args::{FlushTarget, RoleArg};
use crate::dcs::Store;
use crate::rest::Reply;
use crate::term::{confirm, prompt};

/// Members that could not be reached: reported, then the command fails at the end.
#[derive(Default)]
struct Unreachable(usize);

impl Unreachable {
    fn report(&mut self, e: &anyhow::Error) {
        eprintln!("Error: {e:#}");
        self.0 += 1;
    }

    /// Exit code 1 when a member could not be reached (each was already reported).
    fn finish(self) -> Result<()> {
        if self.0 > 0 {
            return Err(crate::term::AlreadyReported.into());
        }
        Ok(())
    }
}

/// patronictl's `check_response`: `Failed: <action> for member X, status code=N, (text)` or
/// `Success: <action> for member X`.
fn check_response(
    ctx: &mut Ctx<'_>,
    reply: &Reply,
    member: &str,
    action: &str,
    silent: bool,
) -> bool {
    if reply.status >= 400 {
        ctx.echo(&format!(
            "Failed: {action} for member {member}, status code={}, ({})",
            reply.status, reply.text
        ));
        return false;
    }
    if !silent {
        ctx.echo(&format!("Success: {action} for member {member}"));
    }
    true
}

#[derive(Debug, Clone)]
pub struct RestartRequest {
    pub members: Vec<String>,
    pub role: RoleArg,
    pub any: bool,
    pub scheduled: Option<String>,
    pub pg_version: Option<String>,
    pub pending: bool,
    pub timeout: Option<String>,
    pub force: bool,
}

pub async fn restart(
    ctx: &mut Ctx<'_>,
    store: &impl Store,
    scope: &str,
    req: RestartRequest,
) -> Result<()> {
    let cluster = store.load().await?;
    let mut members = get_members(
        ctx,
        &cluster,
        scope,
        &req.members,
        req.role,
        req.force,
        "restart",
        false,
    )?;
    let mut scheduled = req.scheduled.clone();
    if scheduled.is_none() && !req.force {
        let question = format!("When should the restart take place (e.g. {}) ", next_hour());
        scheduled = Some(prompt(ctx.term, &question, Some("now"))?);
    }
    let scheduled_at = parse_scheduled(scheduled.as_deref())?;

    let mut content = Map::new();
    if req.pending {
        content.insert("restart_pending".into(), Value::Bool(true));
        // A scheduled restart decides at its time which members need it.
        if scheduled_at.is_none() {
            members.retain(|m| m.data.pending_restart == Some(true));
        }
    }
    if req.any && members.len() > 1 {
        let pick = (std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0) as usize)
            % members.len();
        members = vec![members.swap_remove(pick)];
    }
    let shown_at = scheduled_at.as_ref().map(|t| isoformat(t, ' '));
    confirm_members_action(
        ctx,
        &members,
        req.force,
        "restart",
        shown_at.as_deref(),
        req.pending,
    )?;

    let mut version = req.pg_version.clone();
    if version.is_none() && !req.force {
        version = Some(prompt(
            ctx.term,
            "Restart if the PostgreSQL version is less than provided (e.g. 9.5.2) ",
            Some(""),
        )?);
    }
    if let Some(v) = version.as_deref().filter(|v| !v.is_empty()) {
        check_pg_version(v)?;
        content.insert("postgres_version".into(), Value::String(v.to_string()));
    }
    if let Some(at) = &scheduled_at {
        if cluster.is_paused() {
            bail!("Can't schedule restart in the paused state");
        }
        content.insert("schedule".into(), Value::String(isoformat(at, 'T')));
    }
    if let Some(t) = &req.timeout {
        content.insert("timeout".into(), Value::String(t.clone()));
    }
    let body = Value::Object(content);

    let mut unreachable = Unreachable::default();
    for member in &members {
        if body.get("schedule").is_some() && req.force && member.data.scheduled_restart.is_some() {
            match ctx.rest.call(member, Method::DELETE, "restart", None).await {
                Ok(r) => {
                    check_response(ctx, &r, &member.name, "flush scheduled restart", true);
                }
                Err(e) => {
                    unreachable.report(&e);
                    continue;
                }
            }
        }
        match ctx
            .rest
            .call(member, Method::POST, "restart", Some(&body))
            .await
        {
            Ok(r) => {
                let line = match r.status {
                    200 => format!("Success: restart on member {}", member.name),
                    202 => format!("Success: restart scheduled on member {}", member.name),
                    409 => format!(
                        "Failed: another restart is already scheduled on member {}",
                        member.name
                    ),
                    s => format!(
                        "Failed: restart for member {}, status code={s}, ({})",
                        member.name, r.text
                    ),
                };
                ctx.echo(&line);
            }
            Err(e) => unreachable.report(&e),
        }
    }
    unreachable.finish()
}

pub async fn reload(
    ctx: &mut Ctx<'_>,
    store: &impl Store,
    scope: &str,
    names: &[String],
    role: RoleArg,
    force: bool,
) -> Result<()> {
    let cluster = store.load().await?;
    let members = get_members(ctx, &cluster, scope, names, role, force, "reload", true)?;
    let mut unreachable = Unreachable::default();
    for member in &members {
        match ctx.rest.call(member, Method::POST, "reload", None).await {
            Ok(r) if r.status == 200 => {
                ctx.echo(&format!("No changes to apply on member {}", member.name))
            }
            Ok(r) if r.status == 202 => ctx.echo(&format!(
                "Reload request received for member {} and will be processed within {} seconds",
                member.name,
                loop_wait(&cluster)
            )),
            Ok(r) => ctx.echo(&format!(
                "Failed: reload for member {}, status code={}, ({})",
                member.name, r.status, r.text
            )),
            Err(e) => unreachable.report(&e),
        }
    }
    unreachable.finish()
}

/// How long `reinit --wait` polls between looks at the members.
const REINIT_POLL: Duration = Duration::from_secs(2);

pub async fn reinit(
    ctx: &mut Ctx<'_>,
    store: &impl Store,
    scope: &str,
    names: &[String],
    force: bool,
    from_leader: bool,
    wait: bool,
) -> Result<()> {
    let cluster = store.load().await?;
    let members = get_members(
        ctx,
        &cluster,
        scope,
        names,
        RoleArg::Replica,
        force,
        "reinitialize",
        true,
    )?;
    let mut unreachable = Unreachable::default();
    let mut waiting: Vec<Member> = Vec::new();
    for member in &members {
        let mut body = json!({"force": force, "from_leader": from_leader});
        loop {
            let r = match ctx
                .rest
                .call(member, Method::POST, "reinitialize", Some(&body))
                .await
            {
                Ok(r) => r,
                Err(e) => {
                    unreachable.report(&e);
                    break;
                }
            };
            let started = check_response(ctx, &r, &member.name, "reinitialize", false);
            if !started
                && r.text.ends_with(" already in progress")
                && !force
                && confirm(
                    ctx.term,
                    "Do you want to cancel it and reinitialize anyway?",
                )?
            {
                body["force"] = Value::Bool(true);
                continue;
            }
            if started && wait {
                waiting.push(member.clone());
            }
            break;
        }
    }
    let mut shown: Vec<String> = Vec::new();
    while !waiting.is_empty() {
        let names: Vec<String> = waiting.iter().map(|m| m.name.clone()).collect();
        if names != shown {
            ctx.echo(&format!(
                "Waiting for reinitialize to complete on: {}",
                names.join(", ")
            ));
            shown = names;
        }
        tokio::time::sleep(REINIT_POLL).await;
        let mut still = Vec::new();
        for member in waiting {
            // An agent busy copying the data directory may not answer; look again later.
            let state = ctx
                .rest
                .status(&member)
                .await
                .ok()
                .and_then(|s| s.get("state").and_then(Value::as_str).map(str::to_string));
            match state {
                Some(s) if s != "creating replica" => {
                    ctx.echo(&format!("Reinitialize is completed on: {}", member.name))
                }
                _ => still.push(member),
            }
        }
        waiting = still;
    }
    unreachable.finish()
}

pub async fn flush(
    ctx: &mut Ctx<'_>,
    store: &impl Store,
    scope: &str,
    names: &[String],
    target: FlushTarget,
    role: RoleArg,
    force: bool,
) -> Result<()> {
    let cluster = store.load().await?;
    let mut unreachable = Unreachable::default();
    match target {
        FlushTarget::Restart => {
            for member in get_members(ctx, &cluster, scope, names, role, force, "flush", true)? {
                if member.data.scheduled_restart.is_none() {
                    ctx.echo(&format!("No scheduled restart for member {}", member.name));
                    continue;
                }
                match ctx
                    .rest
                    .call(&member, Method::DELETE, "restart", None)
                    .await
                {
                    Ok(r) => {
                        check_response(ctx, &r, &member.name, "flush scheduled restart", false);
                    }
                    Err(e) => unreachable.report(&e),
                }
            }
        }
        FlushTarget::Switchover => {
            let scheduled = cluster
                .failover
                .as_ref()
                .and_then(|f| f.scheduled_at.as_deref())
                .is_some_and(|s| !s.is_empty());
            if !scheduled {
                ctx.echo("No pending scheduled switchover");
                return Ok(());
            }
            for member in leader_first(&cluster) {
                match ctx
                    .rest
                    .call(&member, Method::DELETE, "switchover", None)
                    .await
                {
                    Ok(r) if r.status == 200 || r.status == 404 => {
                        let prefix = if r.status == 200 { "Success" } else { "Failed" };
                        ctx.echo(&format!("{prefix}: {}", r.text));
                        return Ok(());
                    }
                    Ok(r) => ctx.echo(&format!(
                        "Failed: member={}, status_code={}, ({})",
                        member.name, r.status, r.text
                    )),
                    Err(e) => {
                        super::warn(&format!("{e:#}"));
                        super::warn(&format!("Member {} is not accessible", member.name));
                    }
                }
            }
            super::warn("Failing over to DCS");
            ctx.echo(&format!(
                "{} Could not find any accessible member of cluster {scope}",
                timestamp(6)
            ));
            store.put_key("failover", "{}").await?;
        }
    }
    unreachable.finish()
}

#[cfg(test)]
#[path = "restart_tests.rs"]
mod tests;
