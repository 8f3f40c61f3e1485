//! `pause` and `resume`: `PATCH /config {"pause": true}` (or `{"pause": null}`) on the first
//! member that answers, the leader first; with `--wait`, until every member reports the new
//! state in its member key (at most `loop_wait + 1` seconds, as patronictl).

use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use reqwest::Method;
use serde_json::json;

use super::common::{loop_wait, Ctx};
use super::members::leader_first;
use crate::dcs::Store;

fn word(paused: bool) -> (&'static str, &'static str) {
    if paused {
        ("pause", "paused")
    } else {
        ("resume", "resumed")
    }
}

pub async fn toggle_pause(
    ctx: &mut Ctx<'_>,
    store: &impl Store,
    paused: bool,
    wait: bool,
) -> Result<()> {
    let cluster = store.load().await?;
    if cluster.is_paused() == paused {
        bail!(
            "Cluster is {} paused",
            if paused { "already" } else { "not" }
        );
    }
    let (verb, done) = word(paused);
    let body = json!({"pause": if paused { json!(true) } else { json!(null) }});
    for member in leader_first(&cluster) {
        let reply = match ctx
            .rest
            .call(&member, Method::PATCH, "config", Some(&body))
            .await
        {
            Ok(r) => r,
            Err(e) => {
                super::warn(&format!("{e:#}"));
                super::warn(&format!("Member {} is not accessible", member.name));
                continue;
            }
        };
        if reply.status == 200 {
            if wait {
                return wait_until_applied(ctx, store, paused, &cluster).await;
            }
            ctx.echo(&format!("Success: cluster management is {done}"));
        } else {
            ctx.echo(&format!(
                "Failed: {verb} cluster management status code={}, ({})",
                reply.status, reply.text
            ));
        }
        return Ok(());
    }
    bail!("Can not find accessible cluster member")
}

async fn wait_until_applied(
    ctx: &mut Ctx<'_>,
    store: &impl Store,
    paused: bool,
    old: &pgha_types::Cluster,
) -> Result<()> {
    let (verb, done) = word(paused);
    ctx.echo(&format!(
        "'{verb}' request sent, waiting until it is recognized by all nodes"
    ));
    let watched: Vec<(String, pgha_types::MemberData)> = old
        .members
        .iter()
        .filter(|m| m.data.api_url.is_some())
        .map(|m| (m.name.clone(), m.data.clone()))
        .collect();
    let seconds = loop_wait(old);
    let deadline = Instant::now() + Duration::from_secs(seconds + 1);
    loop {
        let cluster = store.load().await?;
        let pending: Vec<&pgha_types::Member> = cluster
            .members
            .iter()
            .filter(|m| watched.iter().any(|(n, _)| *n == m.name))
            .filter(|m| m.data.pause.unwrap_or(false) != paused)
            .collect();
        if pending.is_empty() {
            break;
        }
        if Instant::now() >= deadline {
            // Members that published since the request and still show the old state.
            let remaining: Vec<&str> = pending
                .iter()
                .filter(|m| watched.iter().any(|(n, d)| *n == m.name && *d != m.data))
                .map(|m| m.name.as_str())
                .collect();
            if !remaining.is_empty() {
                ctx.echo(&format!(
                    "{} members didn't recognized pause state after {seconds} seconds",
                    remaining.join(", ")
                ));
                return Ok(());
            }
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    ctx.echo(&format!("Success: cluster management is {done}"));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::testutil::{ctx, member_json, MemStore};
    use crate::rest::tests::stub_agent;
    use crate::term::ScriptedTerm;

    #[tokio::test]
    async fn pause_and_resume() {
        let (api, seen) = stub_agent(|_, _, _| (200, "{}".into())).await;
        let s = MemStore::new(&[
            ("config", r#"{"loop_wait":1}"#),
            ("leader", "node2"),
            (
                "members/node1",
                &member_json(5451, "replica", "http://127.0.0.1:9/patroni"),
            ),
            ("members/node2", &member_json(5452, "primary", &api)),
        ]);
        let mut term = ScriptedTerm::new(&[]);
        toggle_pause(&mut ctx(&mut term), &s, true, false)
            .await
            .unwrap();
        assert_eq!(term.output, "Success: cluster management is paused\n");
        {
            let seen = seen.lock().unwrap();
            assert_eq!(
                (seen[0].0.as_str(), seen[0].1.as_str()),
                ("PATCH", "/config")
            );
            assert_eq!(seen[0].3, r#"{"pause": true}"#);
        }
        let err = toggle_pause(&mut ctx(&mut term), &s, false, false)
            .await
            .unwrap_err();
        assert_eq!(err.to_string(), "Cluster is not paused");

        s.put("config", r#"{"loop_wait":1,"pause":true}"#);
        let err = toggle_pause(&mut ctx(&mut term), &s, true, false)
            .await
            .unwrap_err();
        assert_eq!(err.to_string(), "Cluster is already paused");

        // Every member already reports the new state: --wait returns at once.
        let mut term = ScriptedTerm::new(&[]);
        toggle_pause(&mut ctx(&mut term), &s, false, true)
            .await
            .unwrap();
        assert_eq!(
            term.output,
            "'resume' request sent, waiting until it is recognized by all nodes\n\
             Success: cluster management is resumed\n"
        );
        assert_eq!(seen.lock().unwrap()[1].3, r#"{"pause": null}"#);
    }
}
