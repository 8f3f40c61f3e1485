//! Choosing the members a command acts on, as patronictl's `get_all_members`, `get_members` and
//! `confirm_members_action` do: by role, by name, by prompt; then the confirmation.

use anyhow::{bail, Result};
use pgha_types::{Cluster, Member, MemberData};

use super::common::Ctx;
use crate::args::RoleArg;
use crate::render::Format;
use crate::term::{confirm, prompt};

/// The leader's member record; a leader key naming a member without a key still counts (with
/// no data), as in Patroni.
pub fn leader_member(cluster: &Cluster) -> Option<Member> {
    let name = cluster.leader_name().filter(|n| !n.is_empty())?;
    Some(cluster.member(name).cloned().unwrap_or(Member {
        name: name.to_string(),
        data: MemberData::default(),
        lease: 0,
    }))
}

/// Members with `role`: the leader (`leader`; `primary` unless it leads a standby cluster;
/// `standby-leader` unless it runs as primary), everybody else (`replica`, `standby`), or all.
pub fn all_members(cluster: &Cluster, role: RoleArg) -> Vec<Member> {
    match role {
        RoleArg::Leader | RoleArg::Primary | RoleArg::StandbyLeader => {
            let Some(leader) = leader_member(cluster) else {
                return Vec::new();
            };
            let leader_role = leader.data.role.as_deref();
            let wanted = match role {
                RoleArg::Leader => true,
                RoleArg::StandbyLeader => !matches!(leader_role, Some("primary" | "master")),
                _ => leader_role != Some("standby_leader"),
            };
            if wanted {
                vec![leader]
            } else {
                Vec::new()
            }
        }
        RoleArg::Replica | RoleArg::Standby => {
            let leader = cluster.leader_name();
            cluster
                .members
                .iter()
                .filter(|m| Some(m.name.as_str()) != leader)
                .cloned()
                .collect()
        }
        RoleArg::Any => cluster.members.clone(),
    }
}

/// `get_any_member`: `member` by name (any role), else the first member with `role` (the
/// leader when neither is given).
pub fn any_member(
    cluster: &Cluster,
    role: Option<RoleArg>,
    member: Option<&str>,
) -> Result<Option<Member>> {
    let role = match (role, member) {
        (Some(_), Some(_)) => bail!("--role and --member are mutually exclusive options"),
        (_, Some(_)) => RoleArg::Any,
        (Some(r), None) => r,
        (None, None) => RoleArg::Leader,
    };
    Ok(all_members(cluster, role)
        .into_iter()
        .find(|m| member.is_none_or(|name| m.name == name)))
}

/// Members with an `api_url`, the leader first (where `pause`, `resume` and `flush switchover`
/// send their request).
pub fn leader_first(cluster: &Cluster) -> Vec<Member> {
    let leader = cluster.leader_member().filter(|m| m.data.api_url.is_some());
    let mut out: Vec<Member> = leader.cloned().into_iter().collect();
    out.extend(
        cluster
            .members
            .iter()
            .filter(|m| m.data.api_url.is_some() && Some(&m.name) != leader.map(|l| &l.name))
            .cloned(),
    );
    out
}

/// patronictl's `get_members`: prints the members table, narrows `names` to members with
/// `role` (all of them when no names are given, except for `reinitialize`), asks which member
/// when none is left and not `force`, then asks for confirmation when `ask_confirmation`.
#[allow(clippy::too_many_arguments)]
pub fn get_members(
    ctx: &mut Ctx<'_>,
    cluster: &Cluster,
    scope: &str,
    names: &[String],
    role: RoleArg,
    force: bool,
    action: &str,
    ask_confirmation: bool,
) -> Result<Vec<Member>> {
    let members = all_members(cluster, role);
    let candidates: Vec<String> = members.iter().map(|m| m.name.clone()).collect();
    if names.is_empty() && candidates.is_empty() {
        bail!("{scope} cluster doesn't have any members");
    }
    ctx.show_members(cluster, scope, Format::Pretty);

    let mut chosen: Vec<String> = if !names.is_empty() {
        let picked: Vec<String> = candidates
            .iter()
            .filter(|c| names.contains(c))
            .cloned()
            .collect();
        if picked.is_empty() {
            bail!("No {} among provided members", role.as_str());
        }
        picked
    } else if action != "reinitialize" {
        candidates.clone()
    } else {
        Vec::new()
    };

    if chosen.is_empty() && !force {
        let question = format!(
            "Which member do you want to {action} [{}]?",
            candidates.join(", ")
        );
        chosen = vec![prompt(ctx.term, &question, Some(""))?];
    }
    for name in &chosen {
        if !candidates.contains(name) {
            bail!("{name} is not a member of cluster");
        }
    }
    let picked: Vec<Member> = members
        .into_iter()
        .filter(|m| chosen.contains(&m.name))
        .collect();
    if ask_confirmation {
        confirm_members_action(ctx, &picked, force, action, None, false)?;
    }
    Ok(picked)
}

/// `Are you sure you want to <action> members a, b?` (or, for a scheduled action, `... schedule
/// <action> of members a, b at <time>?`); declining ends the command with `Aborted <action>`.
pub fn confirm_members_action(
    ctx: &mut Ctx<'_>,
    members: &[Member],
    force: bool,
    action: &str,
    scheduled_at: Option<&str>,
    pending: bool,
) -> Result<()> {
    if force {
        return Ok(());
    }
    let names = members
        .iter()
        .map(|m| m.name.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    match scheduled_at {
        Some(at) => {
            let question = if pending {
                "The nodes needing a restart will be identified at the scheduled time, and might be \
                 different from the ones showing pending restart right now. Is this fine?"
                    .to_string()
            } else {
                format!("Are you sure you want to schedule {action} of members {names} at {at}?")
            };
            if !confirm(ctx.term, &question)? {
                bail!("Aborted scheduled {action}");
            }
        }
        None => {
            if !confirm(
                ctx.term,
                &format!("Are you sure you want to {action} members {names}?"),
            )? {
                bail!("Aborted {action}");
            }
        }
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::rest::Rest;
    use crate::term::ScriptedTerm;
    use pgha_types::KeyValue;

    /// A cluster from `(key, value)` pairs relative to the prefix.
    pub fn cluster(keys: &[(&str, &str)]) -> Cluster {
        let kvs: Vec<KeyValue> = keys
            .iter()
            .map(|(k, v)| KeyValue {
                key: k.to_string(),
                value: v.to_string(),
                lease: 0,
                mod_revision: 7,
            })
            .collect();
        Cluster::from_keys(&kvs)
    }

    pub fn member_json(port: u16, role: &str, api_url: &str) -> String {
        format!(
            r#"{{"conn_url":"postgres://127.0.0.1:{port}/postgres","api_url":"{api_url}","state":"running","role":"{role}","timeline":1}}"#
        )
    }

    pub fn three_nodes() -> Cluster {
        let (a, b, c) = (
            member_json(5451, "replica", "http://127.0.0.1:1/patroni"),
            member_json(5452, "primary", "http://127.0.0.1:2/patroni"),
            member_json(5453, "replica", "http://127.0.0.1:3/patroni"),
        );
        cluster(&[
            ("initialize", "7"),
            ("leader", "node2"),
            ("members/node1", &a),
            ("members/node2", &b),
            ("members/node3", &c),
        ])
    }

    fn names(ms: &[Member]) -> Vec<&str> {
        ms.iter().map(|m| m.name.as_str()).collect()
    }

    #[test]
    fn roles_pick_members() {
        let c = three_nodes();
        assert_eq!(names(&all_members(&c, RoleArg::Leader)), ["node2"]);
        assert_eq!(names(&all_members(&c, RoleArg::Primary)), ["node2"]);
        assert!(all_members(&c, RoleArg::StandbyLeader).is_empty());
        assert_eq!(
            names(&all_members(&c, RoleArg::Replica)),
            ["node1", "node3"]
        );
        assert_eq!(all_members(&c, RoleArg::Any).len(), 3);
        assert_eq!(names(&leader_first(&c)), ["node2", "node1", "node3"]);
        let m = any_member(&c, None, Some("node3")).unwrap().unwrap();
        assert_eq!(m.name, "node3");
        assert_eq!(any_member(&c, None, None).unwrap().unwrap().name, "node2");
        assert!(any_member(&c, Some(RoleArg::Any), Some("x")).is_err());
    }

    #[test]
    fn get_members_prompts_and_confirms() {
        let c = three_nodes();
        let mut term = ScriptedTerm::new(&["y"]);
        let mut ctx = Ctx {
            term: &mut term,
            rest: Rest::new(None).unwrap(),
        };
        let ms = get_members(
            &mut ctx,
            &c,
            "b",
            &[],
            RoleArg::Replica,
            false,
            "reload",
            true,
        )
        .unwrap();
        assert_eq!(names(&ms), ["node1", "node3"]);
        assert!(term
            .output
            .ends_with("Are you sure you want to reload members node1, node3? [y/N]: "));

        let mut term = ScriptedTerm::new(&["node3", "n"]);
        let mut ctx = Ctx {
            term: &mut term,
            rest: Rest::new(None).unwrap(),
        };
        let err = get_members(
            &mut ctx,
            &c,
            "b",
            &[],
            RoleArg::Replica,
            false,
            "reinitialize",
            true,
        )
        .unwrap_err();
        assert_eq!(err.to_string(), "Aborted reinitialize");
        assert!(term.output.contains(
            "Which member do you want to reinitialize [node1, node3]? []: \
             Are you sure you want to reinitialize members node3? [y/N]: "
        ));

        let mut term = ScriptedTerm::new(&[]);
        let mut ctx = Ctx {
            term: &mut term,
            rest: Rest::new(None).unwrap(),
        };
        let err = get_members(
            &mut ctx,
            &c,
            "b",
            &["node2".into()],
            RoleArg::Replica,
            true,
            "restart",
            false,
        )
        .unwrap_err();
        assert_eq!(err.to_string(), "No replica among provided members");
    }
}
