//! `demote-cluster` and `promote-cluster` (patronictl 4.1): turn a cluster into a standby
//! cluster (`PATCH /config {"standby_cluster": {...}}` on the leader) or back into a regular one
//! (`{"standby_cluster": null}`), then follow the leader once a second until it runs in the
//! new role.

use std::time::Duration;

use anyhow::{bail, Result};
use reqwest::Method;
use serde_json::{json, Value};

use super::common::Ctx;
use super::members::leader_member;
use crate::dcs::Store;
use crate::render::Format;
use crate::term::confirm;

/// Python's `str()` of an optional value, as the progress lines print it.
fn py(v: Option<&str>) -> String {
    v.map_or("None".to_string(), str::to_string)
}

/// `standby` is the `standby_cluster` section to set (demotion) or `None` (promotion).
pub async fn change_cluster_role(
    ctx: &mut Ctx<'_>,
    store: &impl Store,
    scope: &str,
    force: bool,
    standby: Option<Value>,
) -> Result<()> {
    let demote = standby.is_some();
    let (stem, target_role) = if demote {
        ("demot", "standby_leader")
    } else {
        ("promot", "primary")
    };
    let cluster = store.load().await?;
    let Some(leader) = leader_member(&cluster) else {
        bail!("Cluster has no leader, {stem}ion is not possible");
    };
    if leader.data.role.as_deref() == Some(target_role) {
        bail!("Cluster is already in the required state");
    }
    ctx.echo("Current cluster topology");
    ctx.show_members(&cluster, scope, Format::Pretty);
    if !force
        && !confirm(
            ctx.term,
            &format!("Are you sure you want to {stem}e {scope} cluster?"),
        )?
    {
        bail!("Aborted cluster {stem}ion");
    }
    let body = json!({"standby_cluster": standby.unwrap_or(Value::Null)});
    match ctx
        .rest
        .call(&leader, Method::PATCH, "config", Some(&body))
        .await
    {
        Ok(r) if r.status == 200 => {}
        Ok(r) => bail!(
            "Failed to {stem}e {scope} cluster: /config PATCH status code={}, ({})",
            r.status,
            r.text
        ),
        Err(e) => bail!("Failed to {stem}e {scope} cluster: {e:#}"),
    }

    let mut cluster;
    loop {
        cluster = store.load().await?;
        let now = chrono::Local::now().format("%Y-%m-%d %H:%M:%S").to_string();
        let current = leader_member(&cluster);
        let unlocked = current.is_none();
        let role = current.as_ref().and_then(|m| m.data.role.clone());
        let state = current.as_ref().and_then(|m| m.data.state.clone());
        let old_state = cluster
            .member(&leader.name)
            .and_then(|m| m.data.state.clone());
        let done = !unlocked
            && role.as_deref() == Some(target_role)
            && state.as_deref() == Some("running")
            && (!demote || old_state.as_deref() == Some("running"));
        if done {
            ctx.echo(&format!("{now} cluster is successfully {stem}ed"));
            break;
        }
        let mut parts = vec![
            format!(
                "{now} cluster is unlocked: {}",
                if unlocked { "True" } else { "False" }
            ),
            format!("leader role: {}", py(role.as_deref())),
            format!("leader state: {}", py(state.as_deref())),
        ];
        if let (true, Some(c), Some(old)) = (demote, current.as_ref(), old_state.as_deref()) {
            if c.name != leader.name {
                parts.push(format!("previous leader state: '{old}'"));
            }
        }
        ctx.echo(&parts.join(", "));
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    ctx.show_members(&cluster, scope, Format::Pretty);
    Ok(())
}

/// The `standby_cluster` section from `demote-cluster`'s options (only those given).
pub fn standby_section(
    host: Option<String>,
    port: Option<u16>,
    restore_command: Option<String>,
    primary_slot_name: Option<String>,
) -> Result<Value> {
    if host.is_none() && port.is_none() && restore_command.is_none() {
        bail!("At least --host, --port or --restore-command should be specified");
    }
    let mut section = serde_json::Map::new();
    let entries = [
        ("host", host.filter(|h| !h.is_empty()).map(Value::from)),
        ("port", port.filter(|p| *p != 0).map(Value::from)),
        (
            "primary_slot_name",
            primary_slot_name.filter(|s| !s.is_empty()).map(Value::from),
        ),
        (
            "restore_command",
            restore_command.filter(|c| !c.is_empty()).map(Value::from),
        ),
    ];
    for (k, v) in entries {
        if let Some(v) = v {
            section.insert(k.to_string(), v);
        }
    }
    Ok(Value::Object(section))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::testutil::{ctx, member_json, MemStore};
    use crate::rest::tests::stub_agent;
    use crate::term::ScriptedTerm;

    #[test]
    fn standby_sections() {
        assert_eq!(
            standby_section(Some("10.0.0.1".into()), Some(5432), None, Some("s".into())).unwrap(),
            json!({"host": "10.0.0.1", "port": 5432, "primary_slot_name": "s"})
        );
        assert_eq!(
            standby_section(None, None, None, Some("s".into()))
                .unwrap_err()
                .to_string(),
            "At least --host, --port or --restore-command should be specified"
        );
    }

    #[tokio::test]
    async fn promote_and_refusals() {
        let (api, seen) = stub_agent(|_, _, _| (200, "{}".into())).await;
        let standby = member_json(5451, "standby_leader", &api);
        let s = MemStore::new(&[("leader", "node1"), ("members/node1", &standby)]);
        let mut term = ScriptedTerm::new(&["n"]);
        let err = change_cluster_role(&mut ctx(&mut term), &s, "b", false, None)
            .await
            .unwrap_err();
        assert_eq!(err.to_string(), "Aborted cluster promotion");
        assert!(term
            .output
            .ends_with("Are you sure you want to promote b cluster? [y/N]: "));
        let err = change_cluster_role(
            &mut ctx(&mut term),
            &s,
            "b",
            true,
            Some(json!({"host": "h"})),
        )
        .await
        .unwrap_err();
        assert_eq!(err.to_string(), "Cluster is already in the required state");

        // The agent flips its role right away.
        s.put("members/node1", &member_json(5451, "primary", &api));
        let mut term = ScriptedTerm::new(&[]);
        s.put("members/node1", &standby);
        let store = &s;
        let flip = async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            store.put("members/node1", &member_json(5451, "primary", &api));
        };
        let mut c = ctx(&mut term);
        let (r, _) = tokio::join!(change_cluster_role(&mut c, store, "b", true, None), flip);
        drop(c);
        r.unwrap();
        assert!(term.output.contains(
            "cluster is unlocked: False, leader role: standby_leader, leader state: running\n"
        ));
        assert!(term.output.contains(" cluster is successfully promoted\n"));
        assert_eq!(seen.lock().unwrap()[0].3, r#"{"standby_cluster": null}"#);

        let empty = MemStore::new(&[]);
        let err = change_cluster_role(&mut ctx(&mut term), &empty, "b", true, None)
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "Cluster has no leader, promotion is not possible"
        );
    }
}
