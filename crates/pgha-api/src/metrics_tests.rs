//! Tests of `/metrics`: Patroni's lines byte for byte, and the whole body as a Prometheus
//! text-format parser reads it.

use super::*;

#[test]
fn epoch_like_python() {
    assert_eq!(
        epoch(Some("2026-11-22 01:58:08.202807+00:00")),
        "1795312688.202807"
    );
    assert_eq!(epoch(Some("2026-11-22 01:58:08+00:00")), "1795312688.0");
    assert_eq!(epoch(Some("2026-11-22 01:58:08.5+01")), "1795309088.5");
    assert_eq!(epoch(None), "0");
    assert_eq!(epoch(Some("nope")), "0");
}

#[test]
fn leader_metrics() {
    let s = NodeStatus {
        scope: "pgha-bench".into(),
        name: "node3".into(),
        state: "running".into(),
        role: Some("primary".into()),
        postmaster_start_time: Some("2026-11-22 01:58:08.202807+00:00".into()),
        server_version: Some(150018),
        xlog_location: Some(67108864),
        timeline: Some(1),
        ..Default::default()
    };
    let text = metrics_text(&s);
    for line in [
        "patroni_version{scope=\"pgha-bench\",name=\"node3\"} 040105",
        "patroni_postgres_running{scope=\"pgha-bench\",name=\"node3\"} 1",
        "patroni_postmaster_start_time{scope=\"pgha-bench\",name=\"node3\"} 1795312688.202807",
        "patroni_primary{scope=\"pgha-bench\",name=\"node3\"} 1",
        "patroni_xlog_location{scope=\"pgha-bench\",name=\"node3\"} 67108864",
        "patroni_xlog_received_location{scope=\"pgha-bench\",name=\"node3\"} 0",
        "patroni_postgres_streaming{scope=\"pgha-bench\",name=\"node3\"} 0",
        "patroni_postgres_server_version{scope=\"pgha-bench\",name=\"node3\"} 150018",
        "patroni_postgres_state{scope=\"pgha-bench\",name=\"node3\"} 5",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in\n{text}"
        );
    }
    assert!(text.starts_with(
        "# HELP patroni_version Patroni semver without periods.\n# TYPE patroni_version gauge\n"
    ));
}

fn stats() -> crate::LoopStats {
    crate::LoopStats {
        last_cycle_seconds: 0.0125,
        cycles_total: 42,
        dcs_read_seconds: 0.002,
        dcs_errors_total: 3,
        last_decision: "no action. I am (node3), the leader with the lock".into(),
    }
}

fn leader() -> NodeStatus {
    NodeStatus {
        scope: "pgha-bench".into(),
        name: "node3".into(),
        state: "running".into(),
        role: Some("primary".into()),
        postmaster_start_time: Some("2026-11-22 01:58:08.202807+00:00".into()),
        server_version: Some(150018),
        xlog_location: Some(67108864),
        timeline: Some(2),
        dcs_last_seen: Some(1795312699),
        loop_stats: stats(),
        ..Default::default()
    }
}

fn replica() -> NodeStatus {
    NodeStatus {
        name: "node1".into(),
        role: Some("replica".into()),
        xlog_location: None,
        received_location: Some(67109000),
        replayed_location: Some(67108900),
        replication_state: Some("streaming".into()),
        loop_stats: crate::LoopStats {
            last_decision: "no action. I am (node1), a secondary, and following a leader (node3)"
                .into(),
            ..stats()
        },
        ..leader()
    }
}

/// `/metrics` as a scraper reads it: metric name → (value, labels in order).
fn scrape(text: &str) -> prometheus_parse::Scrape {
    let lines = text.lines().map(|l| Ok(l.to_string()));
    prometheus_parse::Scrape::parse(lines).expect("the body parses as Prometheus text")
}

fn value(scrape: &prometheus_parse::Scrape, name: &str) -> f64 {
    use prometheus_parse::Value;
    let sample = scrape
        .samples
        .iter()
        .find(|s| s.metric == name)
        .unwrap_or_else(|| panic!("no sample {name}"));
    assert_eq!(sample.labels.get("scope"), Some("pgha-bench"), "{name}");
    match sample.value {
        Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => v,
        ref other => panic!("{name}: unexpected {other:?}"),
    }
}

#[test]
fn parses_with_correct_values_on_leader_and_replica() {
    let text = metrics_text(&leader());
    let l = scrape(&text);
    for (name, want) in [
        ("patroni_version", 40105.0),
        ("patroni_postgres_running", 1.0),
        ("patroni_postmaster_start_time", 1795312688.202807),
        ("patroni_primary", 1.0),
        ("patroni_replica", 0.0),
        ("patroni_xlog_location", 67108864.0),
        ("patroni_xlog_received_location", 0.0),
        ("patroni_postgres_streaming", 0.0),
        ("patroni_postgres_timeline", 2.0),
        ("patroni_cluster_unlocked", 0.0),
        ("patroni_dcs_last_seen", 1795312699.0),
        ("patroni_postgres_state", 5.0),
        ("pgha_ha_loop_duration_seconds", 0.0125),
        ("pgha_ha_loop_cycles_total", 42.0),
        ("pgha_dcs_read_duration_seconds", 0.002),
        ("pgha_dcs_errors_total", 3.0),
        ("pgha_last_decision_info", 1.0),
    ] {
        assert_eq!(value(&l, name), want, "{name} on the leader");
    }
    let info = l
        .samples
        .iter()
        .find(|s| s.metric == "pgha_last_decision_info")
        .expect("decision sample");
    assert_eq!(info.labels.get("name"), Some("node3"));
    // prometheus-parse splits label values at commas (Prometheus itself does not): check
    // the decision's line as written.
    assert!(text.contains(
        "pgha_last_decision_info{scope=\"pgha-bench\",name=\"node3\",decision=\"no action. I am (node3), the leader with the lock\"} 1\n"
    ));
    assert_eq!(
        l.docs.get("patroni_xlog_location").map(String::as_str),
        Some("Current location of the Postgres transaction log, 0 if this node is not the leader.")
    );

    let r = scrape(&metrics_text(&replica()));
    for (name, want) in [
        ("patroni_primary", 0.0),
        ("patroni_replica", 1.0),
        ("patroni_xlog_location", 0.0),
        ("patroni_xlog_received_location", 67109000.0),
        ("patroni_xlog_replayed_location", 67108900.0),
        ("patroni_postgres_streaming", 1.0),
        ("patroni_postgres_in_archive_recovery", 0.0),
    ] {
        assert_eq!(value(&r, name), want, "{name} on the replica");
    }
}

#[test]
fn patroni_lines_stay_byte_exact() {
    let text = metrics_text(&leader());
    // Patroni's counters keep their names (no `_total`), labels stay scope then name.
    assert!(text.contains(
        "# HELP patroni_xlog_location Current location of the Postgres transaction log, 0 if this node is not the leader.\n\
         # TYPE patroni_xlog_location counter\n\
         patroni_xlog_location{scope=\"pgha-bench\",name=\"node3\"} 67108864\n"
    ));
    assert!(text.contains(
        "# TYPE patroni_postgres_state gauge\npatroni_postgres_state{scope=\"pgha-bench\",name=\"node3\"} 5\n# HELP pgha_"
    ));
    assert!(
        !text.contains("# EOF"),
        "no OpenMetrics trailer in 0.0.4 text"
    );
    assert!(text.contains(
        "# HELP pgha_ha_loop_duration_seconds Duration of the last HA loop cycle in seconds.\n\
         # TYPE pgha_ha_loop_duration_seconds gauge\n\
         pgha_ha_loop_duration_seconds{scope=\"pgha-bench\",name=\"node3\"} 0.0125\n"
    ));
    assert!(text.ends_with('\n'));
}

#[test]
fn odd_inputs_do_not_break_the_format() {
    let s = NodeStatus {
        name: "we\"ird\nname".into(),
        loop_stats: crate::LoopStats {
            last_cycle_seconds: f64::NAN,
            last_decision: "quote \" and \\ and\nnewline".into(),
            ..stats()
        },
        state: String::new(),
        ..leader()
    };
    let parsed = scrape(&metrics_text(&s));
    assert_eq!(value(&parsed, "pgha_ha_loop_duration_seconds"), 0.0);
    // Before the first decision there is no decision sample.
    let fresh = NodeStatus {
        loop_stats: crate::LoopStats::default(),
        ..leader()
    };
    let text = metrics_text(&fresh);
    assert!(!text.contains("pgha_last_decision_info{"));
    scrape(&text);
}
