//! Which slots a member creates, drops, keeps, copies and advances.

use pgha_types::{
    Cluster, ClusterPolicy, DynamicConfig, KeyValue, Lsn, SlotInfo, SlotKind, SlotMatcher,
};

use crate::{plan_slots, slot_targets, SlotAdvance, SlotTargets};

fn kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: value.into(),
        lease: 1,
        mod_revision: 1,
    }
}

fn member(name: &str, tags: &str) -> KeyValue {
    kv(
        &format!("members/{name}"),
        &format!(
            r#"{{"conn_url":"postgres://127.0.0.1:5432/postgres","api_url":"http://127.0.0.1:8008/patroni","state":"running","role":"replica","xlog_location":1000,"tags":{{{tags}}}}}"#
        ),
    )
}

fn cluster(status: &str, pg3_tags: &str) -> Cluster {
    Cluster::from_keys(&[
        kv("leader", "pg1"),
        kv("status", status),
        member("pg1", ""),
        member("pg2", ""),
        member("pg3", pg3_tags),
    ])
}

fn policy(config: &str) -> ClusterPolicy {
    let (p, _) = DynamicConfig::parse(config).unwrap().policy();
    p
}

const CONFIG: &str = r#"{"slots":{"phys":{"type":"physical"},"cdc":{"type":"logical","database":"postgres","plugin":"test_decoding"},"pg2":{"type":"logical","database":"postgres","plugin":"pgoutput"}},"ignore_slots":[{"name":"keep_me"},{"type":"logical","plugin":"wal2json"}]}"#;

fn slot(name: &str, kind: &str, active: bool, lsn: u64) -> SlotInfo {
    SlotInfo {
        name: name.into(),
        kind: kind.into(),
        database: (kind == "logical").then(|| "postgres".into()),
        plugin: (kind == "logical").then(|| "test_decoding".into()),
        active,
        restart_lsn: Some(Lsn(lsn)),
        confirmed_flush_lsn: (kind == "logical").then_some(Lsn(lsn)),
    }
}

#[test]
fn targets_follow_patroni_rules() {
    let c = cluster(r#"{"optime":500,"slots":{"cdc":300}}"#, "");
    let p = policy(CONFIG);
    let t = slot_targets(&c, "pg1", &p, true, false);
    assert_eq!(t.members, vec!["pg2".to_string(), "pg3".to_string()]);
    let names: Vec<&str> = t.permanent.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["phys", "cdc"], "pg2 clashes with a member slot");
    assert_eq!(t.skipped.len(), 1);
    assert!(t.skipped[0].starts_with("slots.pg2: "), "{:?}", t.skipped);
    assert_eq!(t.positions.get("cdc"), Some(&300));
    assert_eq!(t.ignore.len(), 2);

    // A physical permanent slot named after the member itself is not kept there.
    let p2 = policy(r#"{"slots":{"pg2":{"type":"physical"},"phys":null}}"#);
    let t = slot_targets(&c, "pg2", &p2, false, false);
    assert_eq!(t.permanent.len(), 1);
    assert_eq!(t.permanent[0].name, "phys");

    // nofailover: no permanent slots; nostream: physical ones only.
    assert!(slot_targets(&c, "pg2", &p, false, true)
        .permanent
        .is_empty());
    let c_nostream = cluster("{}", r#""nostream":true"#);
    let t = slot_targets(&c_nostream, "pg3", &p, false, false);
    assert_eq!(t.permanent.len(), 1);
    assert_eq!(t.permanent[0].kind, SlotKind::Physical);

    // use_slots: false: neither member nor permanent slots; ignore_slots still holds.
    let off = policy(&CONFIG.replace(
        r#""ignore_slots""#,
        r#""postgresql":{"use_slots":false},"ignore_slots""#,
    ));
    let t = slot_targets(&c, "pg1", &off, true, false);
    assert!(t.members.is_empty() && t.permanent.is_empty());
    assert_eq!(t.ignore.len(), 2);
}

#[test]
fn primary_creates_missing_slots_and_drops_only_unknown_inactive_unignored_ones() {
    let c = cluster("{}", "");
    let t = slot_targets(&c, "pg1", &policy(CONFIG), true, false);
    let mut wal2json = slot("cdc_ext", "logical", false, 10);
    wal2json.plugin = Some("wal2json".into());
    let existing = vec![
        slot("pg2", "physical", true, 100),
        slot("keep_me", "physical", false, 10),
        slot("old_member", "physical", false, 10),
        slot("busy", "logical", true, 10),
        slot("stale_logical", "logical", false, 10),
        wal2json,
    ];
    let plan = plan_slots(&t, &existing, None);
    assert_eq!(
        plan.create_physical,
        vec!["phys".to_string(), "pg3".to_string()]
    );
    assert_eq!(plan.create_logical.len(), 1);
    assert_eq!(plan.create_logical[0].name, "cdc");
    assert_eq!(
        plan.drop,
        vec!["old_member".to_string(), "stale_logical".to_string()]
    );
    assert!(plan.copy.is_empty() && plan.advance.is_empty());

    // Paused: nothing is dropped.
    let paused = SlotTargets {
        paused: true,
        ..t.clone()
    };
    assert!(plan_slots(&paused, &existing, None).drop.is_empty());

    // All there: nothing to do.
    let done = vec![
        slot("phys", "physical", false, 10),
        slot("pg2", "physical", true, 10),
        slot("pg3", "physical", true, 10),
        slot("cdc", "logical", false, 10),
    ];
    assert!(plan_slots(&t, &done, None).is_empty());

    // A permanent logical slot with another plugin is replaced: dropped now, created next.
    let mut wrong = done.clone();
    wrong[3].plugin = Some("pgoutput".into());
    let plan = plan_slots(&t, &wrong, None);
    assert_eq!(plan.drop, vec!["cdc".to_string()]);
    assert!(plan.create_logical.is_empty());
}

#[test]
fn replica_copies_advances_and_keeps_permanent_slots() {
    let c = cluster(
        r#"{"optime":900,"slots":{"pg1":900,"phys":400,"cdc":700}}"#,
        "",
    );
    let t = slot_targets(&c, "pg2", &policy(CONFIG), false, false);
    assert!(t.members.is_empty());

    // Nothing yet: the physical slot is created here; the logical one is copied (the leader
    // publishes a position for it).
    let plan = plan_slots(&t, &[], Some(Lsn(800)));
    assert_eq!(plan.create_physical, vec!["phys".to_string()]);
    assert_eq!(plan.copy, vec!["cdc".to_string()]);
    assert!(plan.create_logical.is_empty());

    // Without a published position there is nothing to copy yet.
    let unpublished = SlotTargets {
        positions: Default::default(),
        ..t.clone()
    };
    assert!(plan_slots(&unpublished, &[], None).copy.is_empty());

    // Present and behind: advanced, the logical one no further than replay.
    let existing = vec![
        slot("phys", "physical", false, 100),
        slot("cdc", "logical", false, 200),
        slot("pg1", "physical", false, 10),
    ];
    let plan = plan_slots(&t, &existing, Some(Lsn(600)));
    assert_eq!(
        plan.advance,
        vec![
            SlotAdvance {
                name: "phys".into(),
                database: None,
                lsn: Lsn(400)
            },
            SlotAdvance {
                name: "cdc".into(),
                database: Some("postgres".into()),
                lsn: Lsn(600)
            },
        ]
    );
    assert_eq!(plan.drop, vec!["pg1".to_string()], "the old leader's slot");
    assert!(plan.copy.is_empty() && plan.create_physical.is_empty());

    // Up to date: nothing to do.
    let current = vec![
        slot("phys", "physical", false, 400),
        slot("cdc", "logical", false, 700),
    ];
    assert!(plan_slots(&t, &current, Some(Lsn(900))).is_empty());

    // A physical slot made without reserving WAL can never be advanced: dropped, recreated.
    let mut unreserved = current.clone();
    unreserved[0].restart_lsn = None;
    assert_eq!(
        plan_slots(&t, &unreserved, Some(Lsn(900))).drop,
        vec!["phys".to_string()]
    );
}

#[test]
fn use_slots_false_drops_unknown_slots_but_not_ignored_ones() {
    let t = SlotTargets {
        primary: true,
        ignore: vec![SlotMatcher {
            name: Some("keep_me".into()),
            ..SlotMatcher::default()
        }],
        ..SlotTargets::default()
    };
    let existing = vec![
        slot("pg2", "physical", false, 10),
        slot("keep_me", "logical", false, 10),
        slot("streaming", "physical", true, 10),
    ];
    let plan = plan_slots(&t, &existing, None);
    assert_eq!(plan.drop, vec!["pg2".to_string()]);
    assert!(plan.create_physical.is_empty() && plan.create_logical.is_empty());
}
