//! `GET /metrics`: Prometheus text format (0.0.4, `text/plain`), in two parts.
//!
//! * The `patroni_*` series are rendered by hand, byte for byte as Patroni 4.1.5 prints them
//!   (series names, HELP texts, types, `{scope="...",name="..."}` label order, values such as
//!   `patroni_version ... 040105`), so existing Grafana dashboards and alerts keep working. A
//!   Prometheus library cannot reproduce them: Patroni's counters (`patroni_xlog_location`) have
//!   no `_total` suffix and `040105` is not a number a library would print.
//! * pgha's own series (`pgha_*`: HA loop duration and cycles, DCS read latency and errors, the
//!   last decision) go through `prometheus-client`'s text encoder, with the same two labels.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::sync::atomic::AtomicU64;

use pgha_types::PATRONI_COMPAT_VERSION;
use prometheus_client::encoding::text::encode_registry;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::view::{is_running, own_sync_role, role_is};
use crate::NodeStatus;

/// Patroni's `PostgresqlState` values in their promised-stable order (`patroni_postgres_state`).
const POSTGRES_STATES: &[(&str, &str)] = &[
    ("initdb", "initializing new cluster"),
    ("initdb_failed", "initdb failed"),
    ("custom_bootstrap", "running custom bootstrap script"),
    ("custom_bootstrap_failed", "custom bootstrap failed"),
    ("creating_replica", "creating replica"),
    ("running", "running"),
    ("starting", "starting"),
    ("bootstrap_starting", "starting after custom bootstrap"),
    ("start_failed", "start failed"),
    ("restarting", "restarting"),
    ("restart_failed", "restart failed"),
    ("stopping", "stopping"),
    ("stopped", "stopped"),
    ("stop_failed", "stop failed"),
    ("crashed", "crashed"),
];

/// The `/metrics` body for a status: Patroni's series, then pgha's.
pub fn metrics_text(s: &NodeStatus) -> String {
    let mut out = patroni_text(s);
    out.push_str(&pgha_text(s));
    out
}

/// pgha's own series, encoded by `prometheus-client` (counters get its `_total` suffix). The
/// OpenMetrics `# EOF` marker is not written: the body is Prometheus text format 0.0.4.
fn pgha_text(s: &NodeStatus) -> String {
    let st = &s.loop_stats;
    let labels = [("scope", s.scope.clone()), ("name", s.name.clone())];
    let mut registry = Registry::with_labels(
        labels
            .into_iter()
            .map(|(k, v)| (Cow::Borrowed(k), Cow::Owned(v))),
    );
    // prometheus-client appends the final period to each HELP text.
    let gauge = |v: f64| {
        let g = Gauge::<f64, AtomicU64>::default();
        g.set(finite(v));
        g
    };
    let counter = |v: u64| {
        let c = Counter::<u64>::default();
        c.inc_by(v);
        c
    };
    registry.register(
        "pgha_ha_loop_duration_seconds",
        "Duration of the last HA loop cycle in seconds",
        gauge(st.last_cycle_seconds),
    );
    registry.register(
        "pgha_ha_loop_cycles",
        "HA loop cycles run since the agent started",
        counter(st.cycles_total),
    );
    registry.register(
        "pgha_dcs_read_duration_seconds",
        "Latency of the last read of the cluster from the DCS in seconds",
        gauge(st.dcs_read_seconds),
    );
    registry.register(
        "pgha_dcs_errors",
        "Failed reads of the cluster from the DCS since the agent started",
        counter(st.dcs_errors_total),
    );
    let decision = Family::<Vec<(String, String)>, Gauge>::default();
    if !st.last_decision.is_empty() {
        decision
            .get_or_create(&vec![("decision".to_string(), st.last_decision.clone())])
            .set(1);
    }
    registry.register(
        "pgha_last_decision_info",
        "The last decision of the HA loop, as logged; the value is always 1",
        decision,
    );
    let mut out = String::with_capacity(1024);
    if let Err(e) = encode_registry(&mut out, &registry) {
        // Writing into a String cannot fail; keep the Patroni part served regardless.
        tracing::warn!("cannot encode the pgha_* metrics: {e}");
        return String::new();
    }
    out
}

/// Prometheus accepts NaN and infinities, but a dashboard would show them as data: keep 0.
fn finite(v: f64) -> f64 {
    if v.is_finite() && v >= 0.0 {
        v
    } else {
        0.0
    }
}

/// Patroni's series, as Patroni 4.1.5 prints them.
fn patroni_text(s: &NodeStatus) -> String {
    let mut out = String::with_capacity(4096);
    let labels = format!(
        "{{scope=\"{}\",name=\"{}\"}}",
        escape_label(&s.scope),
        escape_label(&s.name)
    );
    let mut metric = |name: &str, kind: &str, help: &str, value: String| {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        let _ = writeln!(out, "{name}{labels} {value}");
    };
    let flag = |b: bool| u8::from(b).to_string();
    let detailed = matches!(s.state.as_str(), "running" | "starting" | "restarting");
    let primary = role_is(s, "primary");
    let replica = role_is(s, "replica");
    let sync = own_sync_role(s);
    let xlog = |v: Option<u64>, applies: bool| {
        if detailed && applies {
            v.unwrap_or(0)
        } else {
            0
        }
        .to_string()
    };

    let version: String = PATRONI_COMPAT_VERSION
        .split('.')
        .map(|p| format!("{p:0>2}"))
        .collect();
    metric(
        "patroni_version",
        "gauge",
        "Patroni semver without periods.",
        version,
    );
    metric(
        "patroni_postgres_running",
        "gauge",
        "Value is 1 if Postgres is running, 0 otherwise.",
        flag(is_running(s)),
    );
    metric(
        "patroni_postmaster_start_time",
        "gauge",
        "Epoch seconds since Postgres started.",
        epoch(s.postmaster_start_time.as_deref().filter(|_| detailed)),
    );
    metric(
        "patroni_primary",
        "gauge",
        "Value is 1 if this node is the leader, 0 otherwise.",
        flag(primary),
    );
    metric(
        "patroni_xlog_location",
        "counter",
        "Current location of the Postgres transaction log, 0 if this node is not the leader.",
        xlog(s.xlog_location, primary),
    );
    metric(
        "patroni_standby_leader",
        "gauge",
        "Value is 1 if this node is the standby_leader, 0 otherwise.",
        flag(role_is(s, "standby_leader")),
    );
    metric(
        "patroni_replica",
        "gauge",
        "Value is 1 if this node is a replica, 0 otherwise.",
        flag(replica),
    );
    metric(
        "patroni_sync_standby",
        "gauge",
        "Value is 1 if this node is a sync standby, 0 otherwise.",
        flag(sync.sync_standby),
    );
    metric(
        "patroni_quorum_standby",
        "gauge",
        "Value is 1 if this node is a quorum standby, 0 otherwise.",
        flag(sync.quorum_standby),
    );
    metric(
        "patroni_xlog_received_location",
        "counter",
        "Current location of the received Postgres transaction log, 0 if this node is not a replica.",
        xlog(s.received_location.or(s.replayed_location), !primary),
    );
    metric(
        "patroni_xlog_replayed_location",
        "counter",
        "Current location of the replayed Postgres transaction log, 0 if this node is not a replica.",
        xlog(s.replayed_location, !primary),
    );
    metric(
        "patroni_xlog_replayed_timestamp",
        "gauge",
        "Current timestamp of the replayed Postgres transaction log, 0 if null.",
        epoch(
            s.replayed_timestamp
                .as_deref()
                .filter(|_| detailed && !primary),
        ),
    );
    metric(
        "patroni_xlog_paused",
        "gauge",
        "Value is 1 if the Postgres xlog is paused, 0 otherwise.",
        flag(detailed && !primary && s.replay_paused),
    );
    let server_version = if detailed {
        s.server_version.unwrap_or(0)
    } else {
        0
    };
    if server_version >= 90600 {
        let rs = s.replication_state.as_deref().filter(|_| detailed);
        metric(
            "patroni_postgres_streaming",
            "gauge",
            "Value is 1 if Postgres is streaming, 0 otherwise.",
            flag(rs == Some("streaming")),
        );
        metric(
            "patroni_postgres_in_archive_recovery",
            "gauge",
            "Value is 1 if Postgres is replicating from archive, 0 otherwise.",
            flag(rs == Some("in archive recovery")),
        );
    }
    metric(
        "patroni_postgres_server_version",
        "gauge",
        "Version of Postgres (if running), 0 otherwise.",
        server_version.to_string(),
    );
    metric(
        "patroni_cluster_unlocked",
        "gauge",
        "Value is 1 if the cluster is unlocked, 0 if locked.",
        flag(s.cluster_unlocked),
    );
    metric(
        "patroni_failsafe_mode_is_active",
        "gauge",
        "Value is 1 if failsafe mode is active, 0 if inactive.",
        flag(s.failsafe_active),
    );
    metric(
        "patroni_postgres_timeline",
        "gauge",
        "Postgres timeline of this node (if running), 0 otherwise.",
        s.timeline.filter(|_| detailed).unwrap_or(0).to_string(),
    );
    metric(
        "patroni_dcs_last_seen",
        "gauge",
        "Epoch timestamp when DCS was last contacted successfully by Patroni.",
        s.dcs_last_seen.unwrap_or(0).to_string(),
    );
    metric(
        "patroni_pending_restart",
        "gauge",
        "Value is 1 if the node needs a restart, 0 otherwise.",
        flag(s.pending_restart || !s.pending_restart_reason.is_empty()),
    );
    metric(
        "patroni_is_paused",
        "gauge",
        "Value is 1 if auto failover is disabled, 0 otherwise.",
        flag(s.pause),
    );

    let state_index = POSTGRES_STATES
        .iter()
        .position(|(_, text)| *text == s.state)
        .map_or(-1, |i| i as i64);
    let values: Vec<String> = POSTGRES_STATES
        .iter()
        .enumerate()
        .map(|(i, (name, _))| format!("{i}={name}"))
        .collect();
    let _ = writeln!(
        out,
        "# HELP patroni_postgres_state Numeric representation of Postgres state."
    );
    let _ = writeln!(out, "# Values: {}", values.join(", "));
    let _ = writeln!(out, "# TYPE patroni_postgres_state gauge");
    let _ = writeln!(out, "patroni_postgres_state{labels} {state_index}");
    out
}

/// Epoch seconds of a Patroni timestamp (`2026-11-22 01:58:08.202807+00:00`) printed as Python
/// prints a float (`1795312688.202807`), or `0` when absent or unparsable.
fn epoch(ts: Option<&str>) -> String {
    let Some(ts) = ts else {
        return "0".into();
    };
    let ts = ts.trim();
    let parsed = chrono::DateTime::parse_from_str(ts, "%Y-%m-%d %H:%M:%S%.f%:z")
        .or_else(|_| chrono::DateTime::parse_from_str(ts, "%Y-%m-%d %H:%M:%S%.f%#z"))
        .or_else(|_| chrono::DateTime::parse_from_rfc3339(ts));
    match parsed {
        Ok(t) => {
            let secs = t.timestamp() as f64 + f64::from(t.timestamp_subsec_micros()) / 1e6;
            if secs.fract() == 0.0 {
                format!("{secs:.1}")
            } else {
                format!("{secs}")
            }
        }
        Err(_) => "0".into(),
    }
}

fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
#[path = "metrics_tests.rs"]
mod tests;
