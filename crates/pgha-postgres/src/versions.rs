//! Settings written for one PostgreSQL major version, run on another.
//!
//! Configurations outlive the servers they were written for: Patroni's own samples still set
//! `wal_keep_segments`, which PostgreSQL 13 replaced by `wal_keep_size`. As Patroni does, the
//! agent translates such settings for the major version it runs, so one dynamic
//! configuration serves a cluster whose members run different majors during an upgrade.

use serde_json::{Map, Value};

use crate::params::render_value;

/// WAL segment size assumed when converting between segments and sizes. The real one can
/// differ (initdb --wal-segsize); the conversion only has to keep old configurations working.
const ASSUMED_SEGMENT_MB: i64 = 16;

/// `130000` style number of a major version (`15` → `150000`).
pub fn version_num(major: u32) -> u32 {
    major * 10_000
}

/// Parses the major version from `postgres --version` output:
/// `postgres (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)` → 15.
pub fn parse_major_version(text: &str) -> Option<u32> {
    let after = text.split(')').nth(1).unwrap_or(text);
    let word = after.split_whitespace().next()?;
    let major = word.split(['.', 'b', 'r', 'd']).next()?;
    major.parse().ok().filter(|m| *m >= 9)
}

/// Rewrites `params` (a `postgresql.parameters` map) for PostgreSQL `major`: renamed settings
/// get their new name (an explicit value under the new name wins), values whose spelling
/// changed get the new spelling. `major == 0` (unknown) changes nothing.
pub fn translate_parameters(params: &Map<String, Value>, major: u32) -> Map<String, Value> {
    let mut out = params.clone();
    if major == 0 {
        return out;
    }
    if major >= 13 {
        if let Some(segments) = out.remove("wal_keep_segments") {
            if !out.contains_key("wal_keep_size") {
                if let Some(n) = as_integer(&segments) {
                    out.insert(
                        "wal_keep_size".into(),
                        Value::String(format!("{}MB", n.max(0) * ASSUMED_SEGMENT_MB)),
                    );
                }
            }
        }
    } else if let Some(size) = out.remove("wal_keep_size") {
        if !out.contains_key("wal_keep_segments") {
            if let Some(mb) = render_value(&size).and_then(|s| size_in_mb(&s)) {
                let segments = (mb + ASSUMED_SEGMENT_MB / 2) / ASSUMED_SEGMENT_MB;
                out.insert("wal_keep_segments".into(), Value::from(segments));
            }
        }
    }
    // PostgreSQL 16 renamed the developer option force_parallel_mode.
    let (old, new) = ("force_parallel_mode", "debug_parallel_query");
    let (from, to) = if major >= 16 { (old, new) } else { (new, old) };
    if let Some(v) = out.remove(from) {
        out.entry(to.to_string()).or_insert(v);
    }
    // `hot_standby` is the pre-9.6 spelling of wal_level `replica`.
    if let Some(level) = out.get("wal_level").and_then(render_value) {
        if level.trim().eq_ignore_ascii_case("hot_standby") {
            out.insert("wal_level".into(), Value::String("replica".into()));
        }
    }
    out
}

fn as_integer(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// `"128MB"`, `"1GB"`, `"2048kB"`, `"64"` (MB, wal_keep_size's unit) → megabytes.
fn size_in_mb(s: &str) -> Option<i64> {
    let t = s.trim();
    let split = t
        .find(|c: char| !c.is_ascii_digit() && c != '-')
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: i64 = num.parse().ok()?;
    let factor_kb: i64 = match unit.trim() {
        "" | "MB" => 1024,
        "kB" => 1,
        "GB" => 1024 * 1024,
        "TB" => 1024 * 1024 * 1024,
        _ => return None,
    };
    Some(n * factor_kb / 1024)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(v: Value) -> Map<String, Value> {
        v.as_object().cloned().expect("an object")
    }

    #[test]
    fn wal_keep_segments_becomes_wal_keep_size_from_13_on() {
        for major in [13, 14, 15, 16, 17] {
            let out = translate_parameters(&map(json!({"wal_keep_segments": 8})), major);
            assert_eq!(out.get("wal_keep_size"), Some(&json!("128MB")), "{major}");
            assert!(!out.contains_key("wal_keep_segments"));
        }
        let out = translate_parameters(&map(json!({"wal_keep_segments": "10"})), 15);
        assert_eq!(out["wal_keep_size"], json!("160MB"));
    }

    #[test]
    fn an_explicit_wal_keep_size_wins() {
        let out = translate_parameters(
            &map(json!({"wal_keep_segments": 8, "wal_keep_size": "1GB"})),
            15,
        );
        assert_eq!(out["wal_keep_size"], json!("1GB"));
        assert!(!out.contains_key("wal_keep_segments"));
    }

    #[test]
    fn wal_keep_size_becomes_segments_before_13() {
        let out = translate_parameters(&map(json!({"wal_keep_size": "1GB"})), 12);
        assert_eq!(out["wal_keep_segments"], json!(64));
        assert!(!out.contains_key("wal_keep_size"));
        let out = translate_parameters(&map(json!({"wal_keep_size": 128})), 12);
        assert_eq!(out["wal_keep_segments"], json!(8));
    }

    #[test]
    fn unparseable_values_are_dropped_not_guessed() {
        let out = translate_parameters(&map(json!({"wal_keep_segments": "many"})), 15);
        assert!(!out.contains_key("wal_keep_segments"));
        assert!(!out.contains_key("wal_keep_size"));
    }

    #[test]
    fn force_parallel_mode_rename_follows_the_version() {
        let out = translate_parameters(&map(json!({"force_parallel_mode": "on"})), 16);
        assert_eq!(out["debug_parallel_query"], json!("on"));
        assert!(!out.contains_key("force_parallel_mode"));
        let out = translate_parameters(&map(json!({"debug_parallel_query": "on"})), 15);
        assert_eq!(out["force_parallel_mode"], json!("on"));
    }

    #[test]
    fn wal_level_hot_standby_is_replica() {
        let out = translate_parameters(&map(json!({"wal_level": "hot_standby"})), 15);
        assert_eq!(out["wal_level"], json!("replica"));
        let out = translate_parameters(&map(json!({"wal_level": "logical"})), 15);
        assert_eq!(out["wal_level"], json!("logical"));
    }

    #[test]
    fn unknown_version_changes_nothing() {
        let m = map(json!({"wal_keep_segments": 8}));
        assert_eq!(translate_parameters(&m, 0), m);
    }

    #[test]
    fn major_versions_parse() {
        assert_eq!(
            parse_major_version("postgres (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)"),
            Some(15)
        );
        assert_eq!(
            parse_major_version("postgres (PostgreSQL) 17beta2"),
            Some(17)
        );
        assert_eq!(parse_major_version("postgres (PostgreSQL) 13.1"), Some(13));
        assert_eq!(parse_major_version("garbage"), None);
        assert_eq!(version_num(13), 130000);
    }
}
