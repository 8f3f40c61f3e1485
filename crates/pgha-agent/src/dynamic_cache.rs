//! `patroni.dynamic.json` in the data directory: the last dynamic configuration this member
//! saw, kept as Patroni keeps it. An agent that starts while etcd is down, or before its first
//! read, then runs with the cluster's settings (ttl, loop_wait, parameters) rather than its own
//! `bootstrap.dcs`, which may be years out of date.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use pgha_types::DynamicConfig;
use tracing::warn;

pub const FILE: &str = "patroni.dynamic.json";

fn path(data_dir: &Path) -> PathBuf {
    data_dir.join(FILE)
}

/// The saved configuration, if there is a readable one.
pub fn load(data_dir: &Path) -> Option<DynamicConfig> {
    let p = path(data_dir);
    let text = std::fs::read_to_string(&p).ok()?;
    match serde_json::from_str::<DynamicConfig>(&text) {
        Ok(c) => Some(c),
        Err(e) => {
            warn!("ignoring {}: not a JSON object ({e})", p.display());
            None
        }
    }
}

/// Saves `config` (atomically: a half-written file would be ignored at the next start) when the
/// data directory holds a cluster; a directory still being created is left alone.
pub fn save(data_dir: &Path, config: &DynamicConfig) -> std::io::Result<bool> {
    if !data_dir.join("PG_VERSION").is_file() {
        return Ok(false);
    }
    let target = path(data_dir);
    let tmp = data_dir.join(format!(".{FILE}.tmp"));
    let body = serde_json::to_string(config).map_err(std::io::Error::other)?;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(body.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, &target)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn saves_only_into_a_cluster_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let cfg: DynamicConfig = serde_json::from_value(
            json!({"ttl": 30, "postgresql": {"parameters": {"work_mem": "8MB"}}}),
        )
        .unwrap();
        assert!(
            !save(dir.path(), &cfg).unwrap(),
            "no PG_VERSION: nothing written"
        );
        assert!(load(dir.path()).is_none());
        std::fs::write(dir.path().join("PG_VERSION"), "15\n").unwrap();
        assert!(save(dir.path(), &cfg).unwrap());
        assert_eq!(load(dir.path()), Some(cfg));
        std::fs::write(dir.path().join(FILE), "[1, 2").unwrap();
        assert!(load(dir.path()).is_none(), "garbage is ignored");
    }
}
