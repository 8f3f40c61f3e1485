//! The ordering rules for the cluster-wide shared-memory settings (`max_connections`,
//! `max_worker_processes`, `max_wal_senders`, `max_prepared_transactions`,
//! `max_locks_per_transaction`).
//!
//! A hot standby cannot run with less of these than its primary: the primary records its values
//! in WAL, the standby copies them into its control file while replaying, and PostgreSQL refuses
//! to start a standby below them, or pauses replay when a running standby meets a record that
//! raises them. So:
//! * increasing: restart the replicas first, then the primary; when the primary goes first, a
//!   standby's replay stops and only a restart with the new value resumes it
//!   ([`insufficient_for_replay`] tells the HA loop so);
//! * decreasing: restart the primary first; until a standby has replayed the primary's new
//!   values, it keeps the old ones ([`hold_for_standby`]).

use std::collections::BTreeMap;

use crate::conf::ServerConfig;
use crate::controldata::ControlData;
use crate::error::PgError;
use crate::LocalPostgres;

/// The settings a standby must hold at least at the primary's value, with the name of the
/// `pg_controldata` field that records the primary's value.
pub const CONTROL_FILE_SETTINGS: &[(&str, &str)] = &[
    ("max_connections", "max_connections setting"),
    ("max_worker_processes", "max_worker_processes setting"),
    ("max_wal_senders", "max_wal_senders setting"),
    ("max_prepared_transactions", "max_prepared_xacts setting"),
    ("max_locks_per_transaction", "max_locks_per_xact setting"),
];

/// A standby keeps a higher value than configured because its primary still runs with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldSetting {
    pub name: String,
    /// What the configuration asks for.
    pub configured: i64,
    /// What the standby keeps: the primary's value from the control file.
    pub kept: i64,
}

/// A running standby has less of a setting than its primary now runs with: replay has paused
/// and resumes only after a restart with at least the primary's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InsufficientSetting {
    pub name: String,
    /// The value the standby's postmaster runs with.
    pub standby: i64,
    /// The primary's value, replayed into the standby's control file.
    pub primary: i64,
}

impl ControlData {
    /// The primary's value of a [`CONTROL_FILE_SETTINGS`] setting as recorded in this control
    /// file; None for other names or when the field is missing or malformed.
    pub fn recorded_setting(&self, guc: &str) -> Option<i64> {
        let (_, field) = CONTROL_FILE_SETTINGS.iter().find(|(n, _)| *n == guc)?;
        self.raw.get(*field)?.trim().parse().ok()
    }
}

/// Raise the standby's command-line values of [`CONTROL_FILE_SETTINGS`] to the primary's values
/// recorded in its control file, and list what was raised. Values that are not plain integers
/// are left alone (PostgreSQL reports them on start).
pub fn hold_for_standby(
    command_line: &mut BTreeMap<String, String>,
    control: &ControlData,
) -> Vec<HeldSetting> {
    let mut held = Vec::new();
    for (name, _) in CONTROL_FILE_SETTINGS {
        let Some(primary) = control.recorded_setting(name) else {
            continue;
        };
        let Some(configured) = command_line
            .get(*name)
            .and_then(|v| v.trim().parse::<i64>().ok())
        else {
            continue;
        };
        if configured < primary {
            command_line.insert(name.to_string(), primary.to_string());
            held.push(HeldSetting {
                name: name.to_string(),
                configured,
                kept: primary,
            });
        }
    }
    held
}

/// The settings a running standby (started with `running`, its postmaster's command line) has
/// below the primary's values recorded in its control file.
pub fn insufficient_for_replay(
    running: &BTreeMap<String, String>,
    control: &ControlData,
) -> Vec<InsufficientSetting> {
    CONTROL_FILE_SETTINGS
        .iter()
        .filter_map(|(name, _)| {
            let primary = control.recorded_setting(name)?;
            let standby = running.get(*name)?.trim().parse::<i64>().ok()?;
            (standby < primary).then(|| InsufficientSetting {
                name: name.to_string(),
                standby,
                primary,
            })
        })
        .collect()
}

/// Whether `wanted` differs from `running` in any [`CONTROL_FILE_SETTINGS`] setting: only then
/// can the control file change what a running standby should be configured with.
pub(crate) fn differs(
    wanted: &BTreeMap<String, String>,
    running: &BTreeMap<String, String>,
) -> bool {
    CONTROL_FILE_SETTINGS
        .iter()
        .any(|(name, _)| wanted.get(*name) != running.get(*name))
}

impl LocalPostgres {
    /// [`hold_for_standby`] on `cfg.command_line`, reading the control file only when it can
    /// matter: before a start (`running` is None) or when the wanted values differ from those
    /// the postmaster runs with. Logs when what is held changes.
    pub(crate) async fn hold_for_standby(
        &self,
        cfg: &mut ServerConfig,
        running: Option<&BTreeMap<String, String>>,
    ) -> Vec<HeldSetting> {
        if running.is_some_and(|r| !differs(&cfg.command_line, r)) {
            return self.note_held(Vec::new());
        }
        let held = match self.controldata().await {
            Ok(control) => hold_for_standby(&mut cfg.command_line, &control),
            Err(e) => {
                tracing::warn!("cannot compare the shared-memory settings with the primary's: {e}");
                Vec::new()
            }
        };
        self.note_held(held)
    }

    fn note_held(&self, held: Vec<HeldSetting>) -> Vec<HeldSetting> {
        let mut last = self
            .held_settings
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if *last != held {
            for h in &held {
                tracing::info!(
                    "keeping {} = {} on this standby instead of {}: the primary still runs with \
                     {}; it is lowered once the primary has restarted with the new value",
                    h.name,
                    h.kept,
                    h.configured,
                    h.kept
                );
            }
            *last = held.clone();
        }
        held
    }

    /// For a running standby: the settings its postmaster runs below the primary's values
    /// replayed into its control file (replay is paused until a restart). Empty when postgres
    /// was not started by us (no postmaster.opts) or runs none of these below the primary.
    pub async fn replay_blockers(&self) -> Result<Vec<InsufficientSetting>, PgError> {
        let Some(running) = self.last_start_command_line() else {
            return Ok(Vec::new());
        };
        let control = self.controldata().await?;
        Ok(insufficient_for_replay(&running, &control))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controldata::FIXTURE_PG15;

    fn control(max_connections: &str, max_wal_senders: &str) -> ControlData {
        let text = FIXTURE_PG15
            .replace(
                "max_connections setting:              100",
                &format!("max_connections setting:              {max_connections}"),
            )
            .replace(
                "max_wal_senders setting:              10",
                &format!("max_wal_senders setting:              {max_wal_senders}"),
            );
        ControlData::parse(&text).expect("fixture parses")
    }

    fn cmdline(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn fixture_settings_are_read() {
        let c = control("100", "10");
        assert_eq!(c.recorded_setting("max_connections"), Some(100));
        assert_eq!(c.recorded_setting("max_wal_senders"), Some(10));
        assert_eq!(c.recorded_setting("max_worker_processes"), Some(8));
        assert_eq!(c.recorded_setting("max_prepared_transactions"), Some(0));
        assert_eq!(c.recorded_setting("max_locks_per_transaction"), Some(64));
        assert_eq!(c.recorded_setting("work_mem"), None);
    }

    #[test]
    fn standby_keeps_the_primarys_higher_value_until_it_is_replayed() {
        // Decrease 150 -> 120 while the primary still runs 150: keep 150.
        let mut line = cmdline(&[
            ("max_connections", "120"),
            ("max_wal_senders", "10"),
            ("wal_level", "replica"),
        ]);
        let held = hold_for_standby(&mut line, &control("150", "10"));
        assert_eq!(
            held,
            vec![HeldSetting {
                name: "max_connections".into(),
                configured: 120,
                kept: 150
            }]
        );
        assert_eq!(line["max_connections"], "150");
        assert_eq!(line["wal_level"], "replica");
        // Once the primary restarted with 120 and the standby replayed it: 120.
        let mut line = cmdline(&[("max_connections", "120")]);
        assert!(hold_for_standby(&mut line, &control("120", "10")).is_empty());
        assert_eq!(line["max_connections"], "120");
    }

    #[test]
    fn increases_are_never_held_back() {
        let mut line = cmdline(&[("max_connections", "200"), ("max_wal_senders", "20")]);
        assert!(hold_for_standby(&mut line, &control("100", "10")).is_empty());
        assert_eq!(line["max_connections"], "200");
        assert_eq!(line["max_wal_senders"], "20");
    }

    #[test]
    fn unparsable_values_are_left_alone() {
        let mut line = cmdline(&[("max_connections", "lots")]);
        assert!(hold_for_standby(&mut line, &control("150", "10")).is_empty());
        assert_eq!(line["max_connections"], "lots");
    }

    #[test]
    fn a_standby_below_the_primary_cannot_replay() {
        let running = cmdline(&[("max_connections", "100"), ("max_wal_senders", "10")]);
        assert_eq!(
            insufficient_for_replay(&running, &control("150", "12")),
            vec![
                InsufficientSetting {
                    name: "max_connections".into(),
                    standby: 100,
                    primary: 150
                },
                InsufficientSetting {
                    name: "max_wal_senders".into(),
                    standby: 10,
                    primary: 12
                },
            ]
        );
        assert!(insufficient_for_replay(&running, &control("100", "10")).is_empty());
        assert!(insufficient_for_replay(&running, &control("90", "3")).is_empty());
    }

    #[test]
    fn differs_looks_only_at_the_control_file_settings() {
        let a = cmdline(&[("max_connections", "100"), ("wal_level", "replica")]);
        let b = cmdline(&[("max_connections", "100"), ("wal_level", "logical")]);
        assert!(!differs(&a, &b));
        let c = cmdline(&[("max_connections", "120"), ("wal_level", "replica")]);
        assert!(differs(&a, &c));
    }
}
