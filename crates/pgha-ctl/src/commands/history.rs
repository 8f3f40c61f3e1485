//! Commands that read (or wipe) the DCS only: `history`, `dsn` and `remove`.

use anyhow::{bail, Result};
use serde_json::{Map, Value};

use super::common::Ctx;
use super::members::any_member;
use crate::args::RoleArg;
use crate::dcs::Store;
use crate::pyfmt::{json_dumps, yaml_dump};
use crate::render::{host_port, Format};
use crate::table::{Align, Table};
use crate::term::prompt;

/// A result table in patronictl's `print_output` formats (no title; `right` columns
/// right-aligned in the pretty table; every column in tsv, json and yaml).
pub fn print_rows(
    columns: Option<&[String]>,
    rows: &[Vec<Value>],
    right: &[&str],
    fmt: Format,
    delimiter: &str,
) -> String {
    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Null => "None".into(),
        Value::Bool(b) => if *b { "True" } else { "False" }.into(),
        other => other.to_string(),
    };
    match fmt {
        Format::Json | Format::Yaml => {
            let cols = columns.unwrap_or_default();
            let records: Vec<Value> = rows
                .iter()
                .map(|r| {
                    let mut rec = Map::new();
                    for (c, v) in cols.iter().zip(r) {
                        rec.insert(c.clone(), v.clone());
                    }
                    Value::Object(rec)
                })
                .collect();
            let list = Value::Array(records);
            if fmt == Format::Json {
                format!("{}\n", json_dumps(&list))
            } else {
                format!("{}\n", yaml_dump(&list, false))
            }
        }
        Format::Tsv => {
            let mut out = String::new();
            if let Some(cols) = columns {
                out.push_str(&cols.join(delimiter));
                out.push('\n');
            }
            for r in rows {
                out.push_str(&r.iter().map(text).collect::<Vec<_>>().join(delimiter));
                out.push('\n');
            }
            out
        }
        Format::Pretty | Format::Topology => {
            let width = rows.iter().map(Vec::len).max().unwrap_or(0);
            let names: Vec<String> = match columns {
                Some(c) => c.to_vec(),
                None => (1..=width).map(|i| format!("Field {i}")).collect(),
            };
            let cols = names
                .into_iter()
                .map(|n| {
                    let align = if right.contains(&n.as_str()) {
                        Align::Right
                    } else {
                        Align::Left
                    };
                    (n, align)
                })
                .collect();
            let mut table = Table::new(None, cols);
            for r in rows {
                table.add_row(r.iter().map(text).collect());
            }
            format!("{}\n", table.render())
        }
    }
}

/// The `history` table: `TL | LSN | Reason | Timestamp | New Leader`, LSNs as integers.
pub fn render_history(cluster: &pgha_types::Cluster, fmt: Format) -> String {
    let columns: Vec<String> = ["TL", "LSN", "Reason", "Timestamp", "New Leader"]
        .iter()
        .map(|c| c.to_string())
        .collect();
    let rows: Vec<Vec<Value>> = cluster
        .history
        .iter()
        .map(|h| {
            vec![
                Value::from(h.timeline),
                Value::from(h.lsn),
                Value::from(h.reason.clone()),
                Value::from(h.timestamp.clone().unwrap_or_default()),
                Value::from(h.new_leader.clone().unwrap_or_default()),
            ]
        })
        .collect();
    print_rows(Some(&columns), &rows, &["TL", "LSN"], fmt, "\t")
}

pub async fn history(ctx: &mut Ctx<'_>, store: &impl Store, fmt: Format) -> Result<()> {
    let cluster = store.load().await?;
    ctx.term.print(&render_history(&cluster, fmt));
    Ok(())
}

/// `dsn`: `host=127.0.0.1 port=5432` of the leader, of a member with `role`, or of `member`.
pub async fn dsn(
    ctx: &mut Ctx<'_>,
    store: &impl Store,
    role: Option<RoleArg>,
    member: Option<&str>,
) -> Result<()> {
    let cluster = store.load().await?;
    let m = any_member(&cluster, role, member)?;
    let Some((host, port)) = m.as_ref().and_then(host_port) else {
        bail!("Can not find a suitable member");
    };
    ctx.echo(&format!("host={host} port={port}"));
    Ok(())
}

/// `remove`: the table, three confirmations (cluster name, `Yes I am aware`, the leader's name
/// while there is one), then every key of the cluster is deleted.
pub async fn remove(ctx: &mut Ctx<'_>, store: &impl Store, scope: &str, fmt: Format) -> Result<()> {
    let cluster = store.load().await?;
    ctx.show_members(&cluster, scope, fmt);
    if prompt(ctx.term, "Please confirm the cluster name to remove", None)? != scope {
        bail!("Cluster names specified do not match");
    }
    let aware = "Yes I am aware";
    let q = format!(
        "You are about to remove all information in DCS for {scope}, please type: \"{aware}\""
    );
    if prompt(ctx.term, &q, None)? != aware {
        bail!("You did not exactly type \"{aware}\"");
    }
    if let Some(leader) = cluster.leader_name().filter(|l| !l.is_empty()) {
        let q = "This cluster currently is healthy. Please specify the leader name to continue";
        if prompt(ctx.term, q, None)? != leader {
            bail!("You did not specify the current leader of the cluster");
        }
    }
    store.delete_cluster().await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::testutil::{ctx, member_json, MemStore};
    use crate::term::ScriptedTerm;

    const HISTORY: &str = r#"[[1,67109200,"no recovery target specified","2026-11-22T01:58:24.372054+00:00","node1"],[2,67109480,"no recovery target specified"]]"#;

    #[test]
    fn history_formats() {
        let c = crate::commands::members::tests::cluster(&[("history", HISTORY)]);
        assert_eq!(
            render_history(&c, Format::Pretty),
            "+----+----------+------------------------------+----------------------------------+------------+\n\
             | TL |      LSN | Reason                       | Timestamp                        | New Leader |\n\
             +----+----------+------------------------------+----------------------------------+------------+\n\
             |  1 | 67109200 | no recovery target specified | 2026-11-22T01:58:24.372054+00:00 | node1      |\n\
             |  2 | 67109480 | no recovery target specified |                                  |            |\n\
             +----+----------+------------------------------+----------------------------------+------------+\n"
        );
        assert_eq!(
            render_history(&c, Format::Tsv),
            "TL\tLSN\tReason\tTimestamp\tNew Leader\n\
             1\t67109200\tno recovery target specified\t2026-11-22T01:58:24.372054+00:00\tnode1\n\
             2\t67109480\tno recovery target specified\t\t\n"
        );
        assert!(render_history(&c, Format::Json).starts_with(
            r#"[{"TL": 1, "LSN": 67109200, "Reason": "no recovery target specified", "Timestamp": "2026-11-22T01:58:24.372054+00:00", "New Leader": "node1"}, "#
        ));
        assert!(render_history(&c, Format::Yaml).starts_with(
            "- LSN: 67109200\n  New Leader: node1\n  Reason: no recovery target specified\n  TL: 1\n  Timestamp: '2026-11-22T01:58:24.372054+00:00'\n"
        ));
        let empty = crate::commands::members::tests::cluster(&[]);
        assert_eq!(
            render_history(&empty, Format::Pretty),
            "+----+-----+--------+-----------+------------+\n\
             | TL | LSN | Reason | Timestamp | New Leader |\n\
             +----+-----+--------+-----------+------------+\n\
             +----+-----+--------+-----------+------------+\n"
        );
    }

    fn store() -> MemStore {
        MemStore::new(&[
            ("initialize", "1"),
            ("leader", "node2"),
            (
                "members/node1",
                &member_json(5451, "replica", "http://x:1/patroni"),
            ),
            (
                "members/node2",
                &member_json(5452, "primary", "http://x:2/patroni"),
            ),
        ])
    }

    #[tokio::test]
    async fn dsn_of_leader_member_and_role() {
        let s = store();
        let mut term = ScriptedTerm::new(&[]);
        dsn(&mut ctx(&mut term), &s, None, None).await.unwrap();
        dsn(&mut ctx(&mut term), &s, None, Some("node1"))
            .await
            .unwrap();
        dsn(&mut ctx(&mut term), &s, Some(RoleArg::Replica), None)
            .await
            .unwrap();
        assert_eq!(
            term.output,
            "host=127.0.0.1 port=5452\nhost=127.0.0.1 port=5451\nhost=127.0.0.1 port=5451\n"
        );
        let err = dsn(&mut ctx(&mut term), &s, Some(RoleArg::StandbyLeader), None)
            .await
            .unwrap_err();
        assert_eq!(err.to_string(), "Can not find a suitable member");
    }

    #[tokio::test]
    async fn remove_asks_three_times() {
        let s = store();
        let mut term = ScriptedTerm::new(&["b", "Yes I am aware", "node2"]);
        remove(&mut ctx(&mut term), &s, "b", Format::Pretty)
            .await
            .unwrap();
        assert!(term.output.ends_with(
            "Please confirm the cluster name to remove: \
             You are about to remove all information in DCS for b, please type: \"Yes I am aware\": \
             This cluster currently is healthy. Please specify the leader name to continue: "
        ));
        assert!(s.keys.borrow().is_empty());

        let s = store();
        for (answers, want) in [
            (vec!["x"], "Cluster names specified do not match"),
            (
                vec!["b", "yes"],
                "You did not exactly type \"Yes I am aware\"",
            ),
            (
                vec!["b", "Yes I am aware", "node1"],
                "You did not specify the current leader of the cluster",
            ),
        ] {
            let mut term = ScriptedTerm::new(&answers);
            let err = remove(&mut ctx(&mut term), &s, "b", Format::Pretty)
                .await
                .unwrap_err();
            assert_eq!(err.to_string(), want);
        }
        assert!(!s.keys.borrow().is_empty());
    }
}
