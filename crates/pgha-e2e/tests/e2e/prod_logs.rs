//! (c) Logs as operators read them: a node with `log: {type: json, dir, file_size, file_num,
//! deduplicate_heartbeat_logs}` writes `<dir>/pgha.log` (rotated by size, `file_num` old files)
//! where every line parses as JSON with time, level and message, and the leader's heartbeat
//! appears once; a node with the default settings writes Patroni's text lines (level at
//! column 25) to stderr.

use std::path::Path;
use std::time::Duration;

use anyhow::{anyhow, ensure, Context, Result};
use pgha_e2e::{report, ClusterOptions};
use serde_json::Value;

use crate::common::skip;
use crate::prod_support::start_edited;

const NAME: &str = "json_logs_rotation_and_text_layout";
const FILE_SIZE: u64 = 1500;
const FILE_NUM: u32 = 2;

/// Every `pgha.log*` file in `dir` (current first), each line parsed as JSON.
fn read_json_logs(dir: &Path) -> Result<Vec<(String, Vec<Value>)>> {
    let mut files: Vec<String> = std::fs::read_dir(dir)
        .with_context(|| format!("read {}", dir.display()))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("pgha.log"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(dir.join(&f))?;
        let mut lines = Vec::new();
        for (no, line) in text.lines().enumerate() {
            let v: Value = serde_json::from_str(line)
                .with_context(|| format!("{f} line {}: not JSON: {line}", no + 1))?;
            for key in ["time", "level", "message"] {
                ensure!(
                    v.get(key).and_then(Value::as_str).is_some(),
                    "{f} line {}: no {key}: {line}",
                    no + 1
                );
            }
            let level = v["level"].as_str().unwrap_or_default();
            ensure!(
                ["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"].contains(&level),
                "{f}: level {level}"
            );
            lines.push(v);
        }
        out.push((f, lines));
    }
    Ok(out)
}

#[test]
fn json_logs_rotation_and_text_layout() -> Result<()> {
    if skip(NAME) {
        return Ok(());
    }
    let c = start_edited(ClusterOptions::default().nodes(2), |name, dir, yaml| {
        if name != "node1" {
            return yaml;
        }
        format!(
            "{yaml}log:\n  type: \"json\"\n  dir: \"{}\"\n  file_size: {FILE_SIZE}\n  \
             file_num: {FILE_NUM}\n  deduplicate_heartbeat_logs: true\n",
            dir.join("logs").display()
        )
    })?;
    let dir = c
        .config_path("node1")
        .parent()
        .ok_or_else(|| anyhow!("no node dir"))?
        .join("logs");
    c.wait(
        "node1's agent to log a few cycles",
        Duration::from_secs(30),
        || {
            let logs = read_json_logs(&dir)?;
            let beats = logs
                .iter()
                .flat_map(|(_, l)| l.iter())
                .filter(|v| {
                    v["message"]
                        .as_str()
                        .is_some_and(|m| m.starts_with("no action. "))
                })
                .count();
            ensure!(beats >= 1, "no heartbeat line yet");
            Ok(())
        },
    )?;
    // Several more cycles (loop_wait 1): the heartbeat must not repeat.
    std::thread::sleep(Duration::from_secs(4));
    let logs = read_json_logs(&dir)?;
    let names: Vec<&str> = logs.iter().map(|(f, _)| f.as_str()).collect();
    ensure!(
        names.len() <= 1 + FILE_NUM as usize,
        "more than file_num old files: {names:?}"
    );
    ensure!(names.first() == Some(&"pgha.log"), "files {names:?}");
    for (f, _) in &logs {
        let len = std::fs::metadata(dir.join(f))?.len();
        ensure!(len < FILE_SIZE + 1000, "{f} is {len} bytes");
    }
    let current = &logs[0].1;
    let beats: Vec<&str> = current
        .iter()
        .filter_map(|v| v["message"].as_str())
        .filter(|m| m.starts_with("no action. "))
        .collect();
    let mut distinct = beats.clone();
    distinct.dedup();
    ensure!(
        beats == distinct,
        "repeated heartbeat lines with deduplication on: {beats:?}"
    );
    let lines: usize = logs.iter().map(|(_, l)| l.len()).sum();
    report(&format!(
        "logs: node1 wrote {lines} JSON lines in {names:?} (file_size {FILE_SIZE}, file_num \
         {FILE_NUM}), heartbeat deduplicated"
    ));

    // node2 kept the defaults: Patroni's text layout on stderr, level at column 25.
    // node2 clones first, so its heartbeats start later than node1's: wait for them.
    let heartbeats = |text: &str| -> Vec<String> {
        text.lines()
            .filter(|l| l.contains(": no action. I am (node2)"))
            .map(str::to_owned)
            .collect()
    };
    c.wait("node2 to log 3 heartbeats", Duration::from_secs(20), || {
        let n = heartbeats(&c.log_since("node2", 0)).len();
        ensure!(n >= 3, "node2 logged {n} heartbeats");
        Ok(())
    })?;
    let beats = heartbeats(&c.log_since("node2", 0));
    for l in &beats {
        ensure!(
            l.len() > 30 && &l[23..24] == " " && l[24..].starts_with("INFO: no action."),
            "level not at column 25: {l}"
        );
    }
    c.pass();
    Ok(())
}
