//! `list` and `topology` output, byte-for-byte as patronictl 4.1 prints it. Pure: a parsed
//! [`Cluster`] in, text out.
//!
//! The member view follows patronictl's: the holder of the leader key is `Leader` (`Standby
//! Leader` in a standby cluster); with synchronous mode, members named in the `sync` key are
//! `Sync Standby` (`Quorum Standby` in quorum mode); everybody else is a `Replica`. Replicas show
//! their received and replayed WAL positions and how far (in MB, rounded) they are behind the
//! leader's last position as published in the `status` key.

use chrono::DateTime;
use pgha_types::{tag_is_true, Cluster, Lsn, Member};
use serde_json::{Map, Value};

use crate::pyfmt::{json_dumps, yaml_dump};
use crate::table::{Align, Table};

/// Output formats of `list` (`-f`), plus `topology`, which is `pretty` with members ordered as
/// a replication tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Pretty,
    Tsv,
    Json,
    Yaml,
    Topology,
}

const BASE_COLUMNS: [&str; 10] = [
    "Cluster",
    "Member",
    "Host",
    "Role",
    "State",
    "TL",
    "Receive LSN",
    "Receive Lag",
    "Replay LSN",
    "Replay Lag",
];
const EXTRA_COLUMNS: [&str; 4] = [
    "Pending restart",
    "Pending restart reason",
    "Scheduled restart",
    "Tags",
];
const RIGHT_ALIGNED: [&str; 4] = ["TL", "Receive LSN", "Replay LSN", "Lag"];
/// Longer `param: old->new` lines are hidden in the table formats.
const MAX_REASON_LEN: usize = 50;

/// A WAL position of a replica and its distance behind the cluster's position.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Position {
    Unknown,
    Known { lsn: Lsn, lag: u64 },
}

/// What patronictl knows about one member (its `cluster_as_json` record).
#[derive(Debug, Clone)]
struct MemberView<'a> {
    name: String,
    /// `leader`, `standby_leader`, `sync_standby`, `quorum_standby` or `replica`.
    role: &'static str,
    state: String,
    host: Option<(String, u16)>,
    member: &'a Member,
    /// receive, replay and overall position; `None` for the leader.
    positions: Option<[Position; 3]>,
}

impl MemberView<'_> {
    fn is_leader(&self) -> bool {
        self.role.ends_with("leader")
    }

    fn has_pending_restart(&self) -> bool {
        self.member.data.pending_restart == Some(true)
    }

    fn has_reason(&self) -> bool {
        self.member
            .data
            .pending_restart_reason
            .as_ref()
            .is_some_and(|m| !m.is_empty())
    }

    fn has_scheduled_restart(&self) -> bool {
        self.member
            .data
            .scheduled_restart
            .as_ref()
            .is_some_and(|s| s.schedule.is_some() || s.postgres_version.is_some())
    }

    fn replicatefrom(&self) -> Option<&str> {
        self.member
            .data
            .tags
            .get("replicatefrom")
            .and_then(Value::as_str)
    }
}

/// The position replicas are measured against: the leader's last position from `status`.
/// Without a `status` optime (a cluster not written by a Patroni-compatible leader), the
/// leader member's `xlog_location`, else the furthest position any member reports.
fn cluster_lsn(cluster: &Cluster) -> u64 {
    cluster
        .status
        .optime
        .or_else(|| cluster.leader_member().and_then(|m| m.data.xlog_location))
        .unwrap_or_else(|| {
            cluster
                .members
                .iter()
                .map(Member::wal_position)
                .max()
                .unwrap_or(0)
        })
}

fn setting<'a>(cluster: &'a Cluster, key: &str) -> Option<&'a Value> {
    cluster.config.as_ref().and_then(|c| c.get(key))
}

pub(crate) fn is_standby_cluster(cluster: &Cluster) -> bool {
    let Some(Value::Object(sc)) = setting(cluster, "standby_cluster") else {
        return false;
    };
    ["host", "port", "restore_command"]
        .iter()
        .any(|k| match sc.get(*k) {
            None | Some(Value::Null) | Some(Value::Bool(false)) => false,
            Some(Value::String(s)) => !s.is_empty(),
            Some(Value::Number(n)) => n.as_f64() != Some(0.0),
            Some(_) => true,
        })
}

fn is_quorum_mode(cluster: &Cluster) -> bool {
    matches!(setting(cluster, "synchronous_mode"), Some(Value::String(s)) if s.eq_ignore_ascii_case("quorum"))
}

pub(crate) fn is_synchronous_mode(cluster: &Cluster) -> bool {
    (tag_is_true(setting(cluster, "synchronous_mode")) || is_quorum_mode(cluster))
        && !is_standby_cluster(cluster)
}

fn is_sync_standby(cluster: &Cluster, name: &str) -> bool {
    let standbys = cluster
        .sync
        .as_ref()
        .and_then(|s| s.sync_standby.as_deref());
    standbys.is_some_and(|s| s.split(',').any(|n| n.trim().eq_ignore_ascii_case(name)))
}

/// Host and port as patronictl reads them: `conn_kwargs` when published, else `conn_url`
/// (host lower-cased, port 5432 when absent).
pub(crate) fn host_port(m: &Member) -> Option<(String, u16)> {
    if let Some(Value::Object(kw)) = m.data.extra.get("conn_kwargs") {
        let host = kw
            .get("host")
            .and_then(Value::as_str)
            .filter(|h| !h.is_empty())?;
        let port = match kw.get("port") {
            Some(Value::Number(n)) => n.as_u64().and_then(|p| u16::try_from(p).ok()),
            Some(Value::String(s)) => s.parse().ok(),
            _ => None,
        };
        return Some((host.to_string(), port.unwrap_or(0)));
    }
    m.host_port()
        .filter(|(h, _)| !h.is_empty())
        .map(|(h, p)| (h.to_ascii_lowercase(), p))
}

fn position(lsn: Option<u64>, cluster_lsn: u64) -> Position {
    match lsn {
        None | Some(0) => Position::Unknown,
        Some(l) => Position::Known {
            lsn: Lsn(l),
            lag: cluster_lsn.saturating_sub(l),
        },
    }
}

fn member_views(cluster: &Cluster) -> Vec<MemberView<'_>> {
    let leader = cluster.leader_name();
    let standby = is_standby_cluster(cluster);
    let sync = is_synchronous_mode(cluster);
    let sync_role = if is_quorum_mode(cluster) {
        "quorum_standby"
    } else {
        "sync_standby"
    };
    let lsn = cluster_lsn(cluster);
    let mut views: Vec<MemberView> = cluster
        .members
        .iter()
        .map(|m| {
            let is_leader = Some(m.name.as_str()) == leader;
            let role = if is_leader {
                if standby {
                    "standby_leader"
                } else {
                    "leader"
                }
            } else if sync && is_sync_standby(cluster, &m.name) {
                sync_role
            } else {
                "replica"
            };
            let d = &m.data;
            let replication_state = if role != "leader" {
                d.replication_state.clone().unwrap_or_default()
            } else {
                String::new()
            };
            let state = if replication_state.is_empty() {
                let state = d.state.clone().unwrap_or_default();
                // A pgha replica being cloned with pg_basebackup says how far it is.
                match d.extra.get("basebackup_progress").and_then(|v| v.as_u64()) {
                    Some(pct) if state == "creating replica" => format!("{state} ({pct}%)"),
                    _ => state,
                }
            } else {
                replication_state
            };
            let positions = (!is_leader).then(|| {
                [
                    position(d.receive_lsn, lsn),
                    position(d.replay_lsn, lsn),
                    position(d.xlog_location, lsn),
                ]
            });
            MemberView {
                name: m.name.clone(),
                role,
                state,
                host: host_port(m),
                member: m,
                positions,
            }
        })
        .collect();
    views.sort_by(|a, b| a.name.cmp(&b.name));
    views
}

/// Leader first, then each member under the member it replicates from (`replicatefrom` tag,
/// when that names another replica), the leader's replicas prefixed `+ `, theirs `  + `, ...
/// Members caught in a `replicatefrom` cycle would never be reached from the leader; they are
/// listed under it rather than hidden.
fn topology_order(views: Vec<MemberView<'_>>) -> Vec<MemberView<'_>> {
    let leader = views.iter().position(MemberView::is_leader);
    let leader_name = leader.map(|i| views[i].name.clone());
    let is_replica = |name: &str| views.iter().any(|v| !v.is_leader() && v.name == name);
    let parents: Vec<Option<String>> = views
        .iter()
        .map(|v| match v.replicatefrom() {
            Some(p) if p != v.name && is_replica(p) => Some(p.to_string()),
            _ => leader_name.clone(),
        })
        .collect();

    struct Walk<'v, 'a> {
        views: &'v [MemberView<'a>],
        parents: Vec<Option<String>>,
        order: Vec<(usize, usize)>, // (index into views, level)
        seen: Vec<bool>,
    }
    impl Walk<'_, '_> {
        fn visit(&mut self, i: usize, level: usize) {
            self.seen[i] = true;
            self.order.push((i, level));
            self.children(Some(self.views[i].name.clone()), level + 1);
        }
        fn children(&mut self, parent: Option<String>, level: usize) {
            for i in 0..self.views.len() {
                if !self.seen[i] && !self.views[i].is_leader() && self.parents[i] == parent {
                    self.visit(i, level);
                }
            }
        }
    }
    let n = views.len();
    let mut w = Walk {
        views: &views,
        parents,
        order: Vec::with_capacity(n),
        seen: vec![false; n],
    };
    match leader {
        Some(i) => w.visit(i, 0),
        None => w.children(None, 1),
    }
    for i in 0..n {
        if !w.seen[i] {
            w.visit(i, 1);
        }
    }
    let order = w.order;

    let mut slots: Vec<Option<MemberView>> = views.into_iter().map(Some).collect();
    order
        .into_iter()
        .filter_map(|(i, level)| {
            let mut v = slots[i].take()?;
            if level > 0 {
                v.name = format!("{}+ {}", " ".repeat((level - 1) * 2), v.name);
            }
            Some(v)
        })
        .collect()
}

/// Python's `round(bytes / 1024 / 1024)`: to the nearest MB, ties to even.
fn round_mb(bytes: u64) -> u64 {
    let mb = bytes as f64 / 1024.0 / 1024.0;
    let floor = mb.floor();
    let diff = mb - floor;
    let r = if diff > 0.5 || (diff == 0.5 && floor % 2.0 != 0.0) {
        floor + 1.0
    } else {
        floor
    };
    r as u64
}

fn lsn_cells(p: Position) -> (Value, Value) {
    match p {
        Position::Unknown => ("unknown".into(), "".into()),
        Position::Known { lsn, lag } => (lsn.to_string().into(), round_mb(lag).into()),
    }
}

fn restart_reason(v: &MemberView, hide_long: bool) -> String {
    let Some(reason) = v.member.data.pending_restart_reason.as_ref() else {
        return String::new();
    };
    let text = |v: Option<&Value>| match v {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    };
    reason
        .iter()
        .map(|(param, values)| {
            let diff = format!(
                "{param}: {}->{}",
                text(values.get("old_value")),
                text(values.get("new_value"))
            );
            if hide_long && diff.chars().count() > MAX_REASON_LEN {
                format!("{param}: [hidden - too long]")
            } else {
                diff
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn scheduled_restart(v: &MemberView) -> Value {
    match &v.member.data.scheduled_restart {
        Some(s) if v.has_scheduled_restart() => {
            let mut text = s.schedule.clone().unwrap_or_default();
            if let Some(ver) = &s.postgres_version {
                text.push_str(&format!(" if version < {ver}"));
            }
            text.into()
        }
        _ => "".into(),
    }
}

/// Column names and rows (values typed as patronictl has them: numbers stay numbers for JSON).
fn table_data(
    cluster: &Cluster,
    scope: &str,
    extended: bool,
    fmt: Format,
) -> (Vec<&'static str>, Vec<Vec<Value>>) {
    let mut views = member_views(cluster);
    let with_host: Vec<&MemberView> = views.iter().filter(|v| v.host.is_some()).collect();
    let mut columns: Vec<&'static str> = BASE_COLUMNS.to_vec();
    let wanted = [
        with_host.iter().any(|v| v.has_pending_restart()),
        with_host.iter().any(|v| v.has_reason()),
        with_host.iter().any(|v| v.has_scheduled_restart()),
        with_host.iter().any(|v| !v.member.data.tags.is_empty()),
    ];
    for (name, any) in EXTRA_COLUMNS.iter().zip(wanted) {
        if extended || any {
            columns.push(name);
        }
    }
    let hosts: Vec<&(String, u16)> = with_host.iter().filter_map(|v| v.host.as_ref()).collect();
    let mut distinct: Vec<&str> = hosts.iter().map(|(h, _)| h.as_str()).collect();
    distinct.sort();
    distinct.dedup();
    let append_port = hosts.iter().any(|(_, p)| *p != 5432) || distinct.len() < hosts.len();

    if fmt == Format::Topology {
        views = topology_order(views);
    }
    let hide_long = matches!(fmt, Format::Pretty | Format::Topology);
    let rows = views
        .iter()
        .map(|v| {
            let (mut receive, mut replay) = (("".into(), "".into()), ("".into(), "".into()));
            if let Some([r, p, l]) = v.positions {
                (receive, replay) = (lsn_cells(r), lsn_cells(p));
                // Agents that publish only `xlog_location`.
                if r == Position::Unknown && p == Position::Unknown && l != Position::Unknown {
                    if v.state == "streaming" {
                        receive = lsn_cells(l);
                    } else {
                        replay = lsn_cells(l);
                    }
                }
            }
            let host = match &v.host {
                Some((h, p)) if append_port && *p != 0 => format!("{h}:{p}"),
                Some((h, _)) => h.clone(),
                None => String::new(),
            };
            let timeline = v.member.data.timeline.map_or(Value::from(""), Value::from);
            columns
                .iter()
                .map(|c| match *c {
                    "Cluster" => scope.into(),
                    "Member" => v.name.clone().into(),
                    "Host" => host.clone().into(),
                    "Role" => title_case(v.role).into(),
                    "State" => v.state.clone().into(),
                    "TL" => timeline.clone(),
                    "Receive LSN" => receive.0.clone(),
                    "Receive Lag" => receive.1.clone(),
                    "Replay LSN" => replay.0.clone(),
                    "Replay Lag" => replay.1.clone(),
                    "Pending restart" => if v.has_pending_restart() { "*" } else { "" }.into(),
                    "Pending restart reason" => restart_reason(v, hide_long).into(),
                    "Scheduled restart" => scheduled_restart(v),
                    _ => match &v.member.data.tags {
                        t if t.is_empty() => "".into(),
                        t => Value::Object(t.clone()),
                    },
                })
                .collect()
        })
        .collect();
    (columns, rows)
}

fn title_case(role: &str) -> String {
    role.split('_')
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_uppercase().chain(c).collect::<String>())
                .unwrap_or_default()
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Python's `str()` of a cell.
fn cell_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Bool(b) => if *b { "True" } else { "False" }.into(),
        Value::Null => "None".into(),
        other => other.to_string(),
    }
}

/// `isoformat()` of the scheduled switchover time, as patronictl re-prints it.
fn isoformat(ts: &str) -> String {
    match DateTime::parse_from_rfc3339(ts.trim()) {
        Ok(dt) => {
            let micros = dt.timestamp_subsec_micros();
            let frac = if micros == 0 {
                String::new()
            } else {
                format!(".{micros:06}")
            };
            format!(
                "{}{frac}{}",
                dt.format("%Y-%m-%dT%H:%M:%S"),
                dt.format("%:z")
            )
        }
        Err(_) => ts.to_string(),
    }
}

/// The lines printed under the table: maintenance mode and a scheduled switchover.
fn service_info(cluster: &Cluster) -> Option<String> {
    let mut info = Vec::new();
    if cluster.is_paused() {
        info.push("Maintenance mode: on".to_string());
    }
    if let Some(f) = cluster.failover.as_ref() {
        if let Some(at) = f.scheduled_at.as_deref().filter(|s| !s.is_empty()) {
            let mut s = format!("Switchover scheduled at: {}", isoformat(at));
            for (label, who) in [("from", &f.leader), ("to", &f.member)] {
                if let Some(who) = who.as_deref().filter(|w| !w.is_empty()) {
                    s.push_str(&format!("\n{label:>24}: {who}"));
                }
            }
            info.push(s);
        }
    }
    (!info.is_empty()).then(|| format!(" {}", info.join("\n ")))
}

/// The title written over the top border: ` Cluster: <scope> (<system id>) `.
pub fn title(cluster: &Cluster, scope: &str) -> String {
    // An empty initialize key is a bootstrap in progress.
    let init = match cluster.initialize.as_deref() {
        None => "uninitialized",
        Some("") => "initializing",
        Some(id) => id,
    };
    format!(" Cluster: {scope} ({init}) ")
}

/// Everything `pghactl list -f <fmt>` (or `topology`) prints for one cluster, newline-terminated.
pub fn render_members(cluster: &Cluster, scope: &str, extended: bool, fmt: Format) -> String {
    let (columns, mut rows) = table_data(cluster, scope, extended, fmt);
    match fmt {
        Format::Json | Format::Yaml => {
            let records: Vec<Value> = rows
                .into_iter()
                .map(|row| {
                    let mut rec = Map::new();
                    for (c, v) in columns.iter().zip(row) {
                        if !cell_text(&v).is_empty() {
                            rec.insert(c.to_string(), v);
                        }
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
        Format::Tsv | Format::Pretty | Format::Topology => {
            if let Some(i) = columns.iter().position(|c| *c == "Tags") {
                for row in &mut rows {
                    if matches!(&row[i], Value::Object(_)) {
                        let text = yaml_dump(&row[i], fmt != Format::Pretty);
                        row[i] = text.trim().into();
                    }
                }
            }
            if fmt == Format::Tsv {
                let mut out = String::new();
                let header: Vec<String> = columns.iter().map(|c| c.to_string()).collect();
                for r in std::iter::once(header)
                    .chain(rows.iter().map(|r| r.iter().map(cell_text).collect()))
                {
                    out.push_str(&r.join("\t"));
                    out.push('\n');
                }
                return out;
            }
            let cols = columns[1..]
                .iter()
                .map(|c| {
                    let name = if c.ends_with(" Lag") { "Lag" } else { c };
                    let align = if RIGHT_ALIGNED.contains(&name) {
                        Align::Right
                    } else {
                        Align::Left
                    };
                    (name.to_string(), align)
                })
                .collect();
            let mut table = Table::new(Some(title(cluster, scope)), cols);
            for row in &rows {
                table.add_row(row[1..].iter().map(cell_text).collect());
            }
            let mut out = table.render();
            out.push('\n');
            if let Some(info) = service_info(cluster) {
                out.push_str(&info);
                out.push('\n');
            }
            out
        }
    }
}

#[cfg(test)]
#[path = "render_tests.rs"]
mod tests;
