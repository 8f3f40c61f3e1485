use super::*;
use crate::commands::testutil::{ctx, MemStore};
use crate::term::ScriptedTerm;
use serde_json::json;

const CONFIG: &str = r#"{"ttl":20,"loop_wait":1,"retry_timeout":3,"maximum_lag_on_failover":1048576,"postgresql":{"use_pg_rewind":true,"use_slots":true,"parameters":{"wal_level":"replica","hot_standby":"on","max_connections":100,"shared_buffers":"64MB"}}}"#;

fn no_editor(_: &str, _: &str) -> Result<String> {
    panic!("the editor must not be opened")
}

fn req(set: &[&str], pg: &[&str], force: bool) -> EditRequest {
    EditRequest {
        set: set.iter().map(|s| s.to_string()).collect(),
        pg: pg.iter().map(|s| s.to_string()).collect(),
        force,
        ..EditRequest::default()
    }
}

#[test]
fn set_pairs_parse_yaml_scalars() {
    let data = serde_json::from_str::<Value>(CONFIG).unwrap();
    let out = apply_pairs(
        &data,
        &[
            "ttl=30".into(),
            "postgresql.parameters.work_mem=8MB".into(),
            "postgresql.parameters.synchronous_commit=off".into(),
            "postgresql.parameters.pg_stat_statements.max=1000".into(),
            "maximum_lag_on_failover=null".into(),
            "synchronous_mode=on".into(),
            "new.nested.key='quoted'".into(),
        ],
    )
    .unwrap();
    assert_eq!(out["ttl"], json!(30));
    let params = &out["postgresql"]["parameters"];
    assert_eq!(params["work_mem"], json!("8MB"));
    assert_eq!(params["synchronous_commit"], json!(false));
    assert_eq!(params["pg_stat_statements.max"], json!(1000));
    assert!(out.get("maximum_lag_on_failover").is_none());
    assert_eq!(out["synchronous_mode"], json!(true));
    assert_eq!(out["new"]["nested"]["key"], json!("quoted"));
    // Removing the last key of a mapping removes the mapping.
    let out = apply_pairs(&json!({"a": {"b": 1}, "c": 2}), &["a.b=null".into()]).unwrap();
    assert_eq!(out, json!({"c": 2}));
    assert_eq!(
        apply_pairs(&json!({}), &["ttl".into()])
            .unwrap_err()
            .to_string(),
        "Invalid parameter setting ttl"
    );
}

#[test]
fn merge_like_patch_config() {
    let mut config = serde_json::from_str::<Value>(CONFIG).unwrap();
    let patch_doc = yaml11::load(
        "ttl: 30\npostgresql:\n  parameters:\n    max_connections: '100'\n    work_mem: 4MB\n    hot_standby: null\n",
    )
    .unwrap();
    patch(
        config.as_object_mut().unwrap(),
        patch_doc.as_object().unwrap(),
    );
    assert_eq!(config["ttl"], json!(30));
    let params = &config["postgresql"]["parameters"];
    // Same printed value: the old one (an int) stays.
    assert_eq!(params["max_connections"], json!(100));
    assert_eq!(params["work_mem"], json!("4MB"));
    assert!(params.get("hot_standby").is_none());
    assert!(py_eq(
        &json!({"a": 1, "b": [1.0]}),
        &json!({"b": [1], "a": true})
    ));
    assert!(!py_eq(&json!({"a": "1"}), &json!({"a": 1})));
}

#[tokio::test]
async fn set_shows_diff_confirms_and_writes_with_cas() {
    let store = MemStore::new(&[("config", CONFIG)]);
    let mut term = ScriptedTerm::new(&["y"]);
    let r = req(&["ttl=30"], &["work_mem=8MB"], false);
    edit_config(&mut ctx(&mut term), &store, "b", &r, &no_editor)
        .await
        .unwrap();
    assert_eq!(
        term.output,
        "--- \n+++ \n@@ -6,7 +6,8 @@\n     max_connections: 100\n     shared_buffers: 64MB\n\
         \x20    wal_level: replica\n+    work_mem: 8MB\n   use_pg_rewind: true\n   use_slots: true\n\
         \x20retry_timeout: 3\n-ttl: 20\n+ttl: 30\n\
         Apply these changes? [y/N]: Configuration changed\n"
    );
    assert_eq!(
        store.get("config").unwrap(),
        r#"{"ttl":30,"loop_wait":1,"retry_timeout":3,"maximum_lag_on_failover":1048576,"postgresql":{"use_pg_rewind":true,"use_slots":true,"parameters":{"wal_level":"replica","hot_standby":"on","max_connections":100,"shared_buffers":"64MB","work_mem":"8MB"}}}"#
    );
}

#[tokio::test]
async fn not_changed_declined_and_bad_timings() {
    let store = MemStore::new(&[("config", CONFIG)]);
    let mut term = ScriptedTerm::new(&[]);
    edit_config(
        &mut ctx(&mut term),
        &store,
        "b",
        &req(&["ttl=20"], &[], false),
        &no_editor,
    )
    .await
    .unwrap();
    assert_eq!(term.output, "Not changed\n");

    let mut term = ScriptedTerm::new(&["n"]);
    let mut r = req(&["loop_wait=2"], &[], false);
    r.quiet = true;
    edit_config(&mut ctx(&mut term), &store, "b", &r, &no_editor)
        .await
        .unwrap();
    assert_eq!(term.output, "Apply these changes? [y/N]: ");
    assert_eq!(store.get("config").unwrap(), CONFIG);

    let mut term = ScriptedTerm::new(&[]);
    let mut r = req(&["ttl=4"], &[], true);
    r.quiet = true;
    let err = edit_config(&mut ctx(&mut term), &store, "b", &r, &no_editor)
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "ttl: 4 is below the minimum of 5; the configuration was not changed"
    );
    let mut r = req(&["retry_timeout=10"], &[], true);
    r.quiet = true;
    let err = edit_config(&mut ctx(&mut term), &store, "b", &r, &no_editor)
        .await
        .unwrap_err();
    assert!(err.to_string().starts_with("ttl: 20 is too small"), "{err}");
}

#[tokio::test]
async fn editor_apply_replace_and_cas_loss() {
    let store = MemStore::new(&[("config", CONFIG)]);
    let mut term = ScriptedTerm::new(&[]);
    let editor = |before: &str, scope: &str| {
        assert_eq!(scope, "b");
        Ok(before.replace("loop_wait: 1\n", "loop_wait: 2\n"))
    };
    let r = EditRequest {
        force: true,
        ..EditRequest::default()
    };
    edit_config(&mut ctx(&mut term), &store, "b", &r, &editor)
        .await
        .unwrap();
    assert!(
        term.output.contains("-loop_wait: 1\n+loop_wait: 2\n"),
        "{}",
        term.output
    );
    assert!(term.output.ends_with("Configuration changed\n"));
    // After an edit the keys are stored in the order of the YAML (sorted).
    assert!(store
        .get("config")
        .unwrap()
        .starts_with(r#"{"loop_wait":2,"maximum_lag_on_failover""#));

    let mut term = ScriptedTerm::new(&[]);
    let r = EditRequest {
        apply: Some(("-".into(), "pause: true\n".into())),
        ..EditRequest::default()
    };
    edit_config(&mut ctx(&mut term), &store, "b", &r, &no_editor)
        .await
        .unwrap();
    assert!(term.output.contains("\n+pause: true\n"), "{}", term.output);
    assert!(term
        .output
        .ends_with("\nUse --force option to apply changes\n"));

    let mut term = ScriptedTerm::new(&[]);
    let r = EditRequest {
        replace: Some((
            "new.yml".into(),
            "ttl: 30\nloop_wait: 10\nretry_timeout: 10\n".into(),
        )),
        force: true,
        quiet: true,
        ..EditRequest::default()
    };
    edit_config(&mut ctx(&mut term), &store, "b", &r, &no_editor)
        .await
        .unwrap();
    assert_eq!(
        store.get("config").unwrap(),
        r#"{"ttl":30,"loop_wait":10,"retry_timeout":10}"#
    );

    // Somebody else writes between our read and our write.
    struct Racing(MemStore);
    impl Store for Racing {
        async fn load(&self) -> Result<pgha_types::Cluster> {
            let c = self.0.load().await;
            self.0.put("config", r#"{"ttl":40}"#);
            c
        }
        async fn set_config(&self, v: &str, rev: i64) -> Result<bool> {
            self.0.set_config(v, rev).await
        }
        async fn put_key(&self, k: &str, v: &str) -> Result<()> {
            self.0.put_key(k, v).await
        }
        async fn delete_cluster(&self) -> Result<()> {
            self.0.delete_cluster().await
        }
    }
    let racing = Racing(MemStore::new(&[("config", CONFIG)]));
    let r = req(&["ttl=25"], &[], true);
    let err = edit_config(&mut ctx(&mut term), &racing, "b", &r, &no_editor)
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "Config modification aborted due to concurrent changes"
    );

    let empty = MemStore::new(&[]);
    let err = edit_config(&mut ctx(&mut term), &empty, "b", &r, &no_editor)
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "The config key does not exist in the cluster b"
    );
}

#[tokio::test]
async fn show_config_without_the_key_prints_nothing() {
    // As patronictl: no config key (deleted, or not written yet) is no output and success.
    let store = MemStore::new(&[("leader", "node1"), ("initialize", "1")]);
    let mut term = ScriptedTerm::new(&[]);
    show_config(&mut ctx(&mut term), &store).await.unwrap();
    assert_eq!(term.output, "");
}

#[tokio::test]
async fn show_config_prints_sorted_yaml() {
    let store = MemStore::new(&[("config", CONFIG)]);
    let mut term = ScriptedTerm::new(&[]);
    show_config(&mut ctx(&mut term), &store).await.unwrap();
    assert_eq!(
        term.output,
        "loop_wait: 1\nmaximum_lag_on_failover: 1048576\npostgresql:\n  parameters:\n    hot_standby: 'on'\n\
         \x20   max_connections: 100\n    shared_buffers: 64MB\n    wal_level: replica\n  use_pg_rewind: true\n\
         \x20 use_slots: true\nretry_timeout: 3\nttl: 20\n\n"
    );
}

#[tokio::test]
async fn new_parameters_are_checked_by_the_leader_first() {
    use crate::commands::testutil::member_json;
    use crate::rest::tests::stub_agent;

    let (api, seen) = stub_agent(|method, path, body| match (method, path) {
        ("POST", "/config/check") if body.contains("\"lots\"") => (
            400,
            "postgresql.parameters.max_connections: invalid value \"lots\"".into(),
        ),
        ("POST", "/config/check") => (200, body.to_string()),
        _ => (404, String::new()),
    })
    .await;
    let store = MemStore::new(&[
        ("config", CONFIG),
        ("leader", "pg1"),
        ("members/pg1", &member_json(5451, "primary", &api)),
    ]);

    let mut term = ScriptedTerm::new(&[]);
    let mut r = req(&[], &["max_connections=lots", "work_mem=8MB"], true);
    r.quiet = true;
    let err = edit_config(&mut ctx(&mut term), &store, "b", &r, &no_editor)
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "postgresql.parameters.max_connections: invalid value \"lots\"\n\
         PostgreSQL on pg1 refuses these values; the configuration was not changed"
    );
    assert_eq!(store.get("config").unwrap(), CONFIG);
    // Only what changed is sent.
    let sent = seen.lock().unwrap().last().cloned().unwrap();
    assert_eq!(sent.1, "/config/check");
    let sent: Value = serde_json::from_str(&sent.3).unwrap();
    assert_eq!(
        sent,
        json!({"postgresql": {"parameters": {"max_connections": "lots", "work_mem": "8MB"}}})
    );

    let r = req(&[], &["max_connections=150"], true);
    edit_config(&mut ctx(&mut term), &store, "b", &r, &no_editor)
        .await
        .unwrap();
    assert!(store
        .get("config")
        .unwrap()
        .contains("\"max_connections\":150"));

    // A change without new parameter values asks nobody.
    let before = seen.lock().unwrap().len();
    let r = req(&["ttl=30"], &[], true);
    edit_config(&mut ctx(&mut term), &store, "b", &r, &no_editor)
        .await
        .unwrap();
    assert_eq!(seen.lock().unwrap().len(), before);
}

#[tokio::test]
async fn parameters_are_stored_unchecked_when_nobody_can_check_them() {
    use crate::commands::testutil::member_json;
    use crate::rest::tests::stub_agent;

    // A Patroni agent has no /config/check: it answers 501.
    let (api, _) = stub_agent(|_, _, _| (501, "Unsupported method ('POST')".into())).await;
    let store = MemStore::new(&[
        ("config", CONFIG),
        ("leader", "pg1"),
        ("members/pg1", &member_json(5451, "primary", &api)),
    ]);
    let mut term = ScriptedTerm::new(&[]);
    let r = req(&[], &["work_mem=8MB"], true);
    edit_config(&mut ctx(&mut term), &store, "b", &r, &no_editor)
        .await
        .unwrap();
    assert!(store
        .get("config")
        .unwrap()
        .contains("\"work_mem\":\"8MB\""));
    assert!(term.output.ends_with("Configuration changed\n"));
}

#[test]
fn changed_parameters_are_new_or_different_values() {
    let before = json!({"postgresql": {"parameters": {"a": 1, "b": "x", "c": true}}});
    let after = json!({"postgresql": {"parameters": {"a": 1.0, "b": "y", "d": 5}}});
    assert_eq!(
        Value::Object(changed_parameters(&before, &after)),
        json!({"b": "y", "d": 5})
    );
    assert!(changed_parameters(&after, &json!({})).is_empty());
}
