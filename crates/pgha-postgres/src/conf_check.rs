//! Asking the installed `postgres` binary which settings it accepts before they reach
//! postgresql.conf: a name it does not know or a value it rejects would stop the server from
//! starting at all (and, during a bootstrap, would wipe and retry for ever).
//!
//! The judge is PostgreSQL itself: `postgres --config-file=SCRATCH -C NAME` parses a scratch
//! file holding the settings and exits non-zero naming the first one it rejects. That one is
//! left out and the rest asked again, so the answer is exactly what this binary, of this
//! major version, would say at start.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use crate::cmd::Cmd;
use crate::conf::render_postgresql_conf;
use crate::LocalPostgres;

/// A setting left out of postgresql.conf, and PostgreSQL's words for why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    pub name: String,
    pub reason: String,
}

/// The last question and its answer: postgresql.conf is written again every time the role or
/// the configuration changes, and the settings rarely change with it.
pub(crate) type CheckCache = std::sync::Mutex<Option<(BTreeMap<String, String>, Vec<Rejected>)>>;

/// Settings the scratch file must carry for `-C` to get as far as reading the rest.
const SCAFFOLD: &[&str] = &["data_directory", "hba_file", "ident_file"];

impl LocalPostgres {
    /// Removes from `params` every setting the installed PostgreSQL rejects, logging each once
    /// (per distinct set of settings) with PostgreSQL's own message. When the check itself
    /// cannot run, nothing is removed.
    pub(crate) async fn drop_rejected(
        &self,
        params: &mut BTreeMap<String, String>,
    ) -> Vec<Rejected> {
        let cached = {
            let cache = self.conf_check.lock().unwrap_or_else(|p| p.into_inner());
            cache
                .as_ref()
                .filter(|(asked, _)| asked == params)
                .map(|(_, answer)| answer.clone())
        };
        let rejected = match cached {
            Some(r) => r,
            None => {
                let asked = params.clone();
                let answer = self.ask_postgres(&asked).await;
                for r in &answer {
                    tracing::warn!(
                        "postgresql.parameters.{}: PostgreSQL rejects it ({}); not written to postgresql.conf",
                        r.name,
                        r.reason
                    );
                }
                *self.conf_check.lock().unwrap_or_else(|p| p.into_inner()) =
                    Some((asked, answer.clone()));
                answer
            }
        };
        for r in &rejected {
            params.remove(&r.name);
        }
        rejected
    }

    async fn ask_postgres(&self, params: &BTreeMap<String, String>) -> Vec<Rejected> {
        let scratch = match tempfile::Builder::new()
            .prefix("pgha-conf-check-")
            .tempdir()
        {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!("cannot check the postgres settings (scratch directory: {e}); writing them unchecked");
                return Vec::new();
            }
        };
        let dir = scratch.path().to_path_buf();
        let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700));
        let _ = self.fix_owner(&dir);
        let file = dir.join("postgresql.conf");
        let mut remaining: BTreeMap<String, String> = params
            .iter()
            .filter(|(k, _)| !SCAFFOLD.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let mut rejected = Vec::new();
        // Each round removes one setting, so this ends.
        for _ in 0..=params.len() {
            let mut body = remaining.clone();
            body.insert("data_directory".into(), dir.to_string_lossy().into_owned());
            body.insert("hba_file".into(), "/dev/null".into());
            body.insert("ident_file".into(), "/dev/null".into());
            if let Err(e) = std::fs::write(&file, render_postgresql_conf(&body, false)) {
                tracing::warn!(
                    "cannot check the postgres settings ({}: {e}); writing them unchecked",
                    file.display()
                );
                return rejected;
            }
            let _ = self.fix_owner(&file);
            let cmd = Cmd::new(self.bin("postgres"))
                .arg(format!("--config-file={}", file.display()))
                .args(["-C", "port"])
                // PostgreSQL's messages are parsed below: never translated.
                .env("LC_ALL", "C")
                .env("LC_MESSAGES", "C");
            let out = match self.run(&cmd, Duration::from_secs(30)).await {
                Ok(o) => o,
                Err(e) => {
                    tracing::warn!(
                        "cannot check the postgres settings: {e}; writing them unchecked"
                    );
                    return rejected;
                }
            };
            if out.status.success() {
                return rejected;
            }
            let text = format!("{}\n{}", out.stderr, out.stdout);
            match first_rejection(&text) {
                Some(r) if remaining.remove(&r.name).is_some() => rejected.push(r),
                _ => {
                    let last = text
                        .lines()
                        .rev()
                        .find(|l| !l.trim().is_empty())
                        .unwrap_or("");
                    tracing::warn!(
                        "cannot check the postgres settings ({last}); writing them unchecked"
                    );
                    return rejected;
                }
            }
        }
        rejected
    }
}

/// The first setting PostgreSQL complains about in its startup messages, e.g.
/// `LOG:  invalid value for parameter "work_mem": "abc"` (with the HINT that follows).
pub fn first_rejection(stderr: &str) -> Option<Rejected> {
    let lines: Vec<&str> = stderr.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        let Some(at) = line.find("parameter \"") else {
            continue;
        };
        let rest = &line[at + "parameter \"".len()..];
        let name = rest.split('"').next()?.to_ascii_lowercase();
        if name.is_empty() {
            continue;
        }
        let msg = line
            .split_once("LOG:")
            .or_else(|| line.split_once("FATAL:"))
            .or_else(|| line.split_once("ERROR:"))
            .map(|(_, m)| m.trim())
            .unwrap_or(line.trim());
        let mut reason = strip_location(msg).to_string();
        if let Some(hint) = lines
            .get(i + 1)
            .and_then(|l| l.split_once("HINT:"))
            .map(|(_, h)| h.trim())
        {
            reason.push_str("; ");
            reason.push_str(hint);
        }
        return Some(Rejected { name, reason });
    }
    None
}

/// Drops ` in file "..." line N`: it names our scratch file, which means nothing to a reader.
fn strip_location(msg: &str) -> &str {
    match msg.find(" in file \"") {
        Some(at) => &msg[..at],
        None => msg,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_rejected_setting_and_its_reason() {
        let out = "2026-12-05 20:24:51.628 GMT [1] LOG:  skipping missing configuration file \"/x/postgresql.auto.conf\"\n\
                   2026-12-05 20:24:51.628 GMT [1] LOG:  unrecognized configuration parameter \"wal_keep_segments\" in file \"/x/postgresql.conf\" line 1\n\
                   2026-12-05 20:24:51.628 GMT [1] FATAL:  configuration file \"/x/postgresql.conf\" contains errors\n";
        let r = first_rejection(out).expect("one rejection");
        assert_eq!(r.name, "wal_keep_segments");
        assert_eq!(
            r.reason,
            "unrecognized configuration parameter \"wal_keep_segments\""
        );
    }

    #[test]
    fn keeps_the_hint() {
        let out = "... LOG:  invalid value for parameter \"wal_level\": \"bogus\"\n\
                   ... HINT:  Available values: minimal, replica, logical.\n\
                   ... FATAL:  configuration file \"/x\" contains errors\n";
        let r = first_rejection(out).unwrap();
        assert_eq!(r.name, "wal_level");
        assert_eq!(
            r.reason,
            "invalid value for parameter \"wal_level\": \"bogus\"; Available values: minimal, replica, logical."
        );
    }

    #[test]
    fn range_errors_name_the_parameter() {
        let out = "x LOG:  -4 is outside the valid range for parameter \"max_connections\" (1 .. 262143)\n";
        assert_eq!(first_rejection(out).unwrap().name, "max_connections");
    }

    #[test]
    fn nothing_to_blame() {
        assert_eq!(
            first_rejection("postgres: could not access the server configuration file"),
            None
        );
    }
}
