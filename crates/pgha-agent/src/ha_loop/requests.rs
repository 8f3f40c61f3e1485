//! Operators' requests reaching the loop: those it answers by itself (reload, scheduling a
//! restart) and the way back for those the core decides on (restart, reinitialize).

use std::sync::Arc;

use pgha_api::{LocalAnswer, LocalRequest};
use pgha_core::{AdminRequest, Reply, RestartRequest};
use tokio::sync::oneshot;
use tracing::{error, info, warn};

use super::{now_ms, Agent};
use crate::admin::Pending;

/// A restart the operator scheduled for later (`POST /restart` with `schedule`).
#[derive(Debug, Clone)]
pub struct ScheduledRestart {
    pub schedule: String,
    pub at_ms: i64,
    pub postgres_version: Option<String>,
    pub request: RestartRequest,
    /// The request as shown in `GET /patroni` and the member key.
    pub details: serde_json::Map<String, serde_json::Value>,
    /// When postgres last started, as it was at scheduling time: a restart since then (by
    /// anyone) makes the scheduled one pointless, as in Patroni.
    pub postmaster_start_time: Option<String>,
}

impl ScheduledRestart {
    /// The member key's `scheduled_restart`: the details plus `postmaster_start_time`.
    pub fn published(&self) -> pgha_types::ScheduledRestart {
        let mut extra = self.details.clone();
        extra.remove("schedule");
        extra.remove("postgres_version");
        extra.insert(
            "postmaster_start_time".into(),
            self.postmaster_start_time
                .as_deref()
                .map_or(serde_json::Value::Null, serde_json::Value::from),
        );
        pgha_types::ScheduledRestart {
            schedule: Some(self.schedule.clone()),
            postgres_version: self.postgres_version.clone(),
            extra,
        }
    }
}

impl Agent {
    /// Takes one queued operator request. Those the loop can answer by itself (reload,
    /// scheduling) are answered here; the rest go to the core with the way back.
    pub(super) fn take_request(
        &mut self,
    ) -> (Option<AdminRequest>, Option<oneshot::Sender<LocalAnswer>>) {
        let answer = |status: u16, text: &str| LocalAnswer {
            status,
            text: text.to_string(),
        };
        if let Ok(Pending { request, reply }) = self.requests.try_recv() {
            match request {
                LocalRequest::Reload => {
                    self.reload_local_config();
                    let _ = reply.send(answer(202, "reload scheduled"));
                }
                LocalRequest::ScheduleRestart {
                    schedule,
                    role,
                    pending_only,
                    postgres_version,
                    timeout: _,
                    details,
                } => {
                    let text = if self.scheduled_restart.is_some() {
                        answer(409, "Another restart is already scheduled")
                    } else {
                        match pgha_types::parse_timestamp_ms(&schedule) {
                            Ok(at_ms) => {
                                info!("restart scheduled at {schedule}");
                                self.scheduled_restart = Some(ScheduledRestart {
                                    schedule,
                                    at_ms,
                                    request: RestartRequest {
                                        role,
                                        pending_only,
                                        below_version: postgres_version
                                            .as_deref()
                                            .and_then(version_num),
                                    },
                                    postgres_version,
                                    details,
                                    postmaster_start_time: self.postmaster_start_time(),
                                });
                                self.last_member = None;
                                self.show_scheduled_restart();
                                answer(202, "Restart scheduled")
                            }
                            Err(e) => answer(400, &e),
                        }
                    };
                    let _ = reply.send(text);
                }
                LocalRequest::CancelScheduledRestart => {
                    let text = if self.scheduled_restart.take().is_some() {
                        self.last_member = None;
                        self.show_scheduled_restart();
                        answer(200, "scheduled restart deleted")
                    } else {
                        answer(404, "no restarts are scheduled")
                    };
                    let _ = reply.send(text);
                }
                LocalRequest::Restart {
                    role,
                    pending_only,
                    postgres_version,
                    timeout: _,
                } => {
                    let req = RestartRequest {
                        role,
                        pending_only,
                        below_version: postgres_version.as_deref().and_then(version_num),
                    };
                    return (Some(AdminRequest::Restart(req)), Some(reply));
                }
                LocalRequest::Reinitialize {
                    force: _,
                    from_leader,
                } => {
                    return (
                        Some(AdminRequest::Reinitialize { from_leader }),
                        Some(reply),
                    )
                }
            }
        }
        (None, None)
    }

    /// The scheduled restart, once it is due, as Patroni's `evaluate_scheduled_restart`: not
    /// while a job runs or the cluster is paused; cancelled when postgres restarted since it was
    /// scheduled; dropped when more than 1.5 × loop_wait late (a stalled loop); within
    /// loop_wait of its time the loop waits for that time, then the restart is asked of the core
    /// with the conditions given.
    pub(super) async fn due_scheduled_restart(&mut self) -> Option<AdminRequest> {
        let s = self.scheduled_restart.as_ref()?;
        if self.job.is_some() || self.policy.pause {
            return None;
        }
        let started = self.postmaster_start_time();
        if let (Some(then), Some(now)) = (&s.postmaster_start_time, &started) {
            if then != now {
                info!(
                    "Cancelling scheduled restart: postgres restart has already happened at {now}"
                );
                self.scheduled_restart = None;
                self.last_member = None;
                return None;
            }
        }
        let loop_wait_ms = self.policy.loop_wait as i64 * 1000;
        let delta = s.at_ms - now_ms() as i64;
        if delta > loop_wait_ms {
            return None;
        }
        if delta < -(loop_wait_ms * 3 / 2) {
            warn!("Found a stale restart value, cleaning up: {}", s.schedule);
            self.scheduled_restart = None;
            self.last_member = None;
            return None;
        }
        if delta > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(delta as u64)).await;
        }
        let s = self.scheduled_restart.take()?;
        info!("Manual scheduled restart at {}", s.schedule);
        self.last_member = None;
        Some(AdminRequest::Restart(s.request))
    }

    /// `GET /patroni` shows a change of schedule as soon as it is answered, as Patroni's does,
    /// not only after the cycle that carried it out.
    fn show_scheduled_restart(&self) {
        let details = self.scheduled_restart.as_ref().map(|s| s.details.clone());
        self.status_tx
            .send_modify(|status| Arc::make_mut(status).scheduled_restart = details);
    }

    fn postmaster_start_time(&self) -> Option<String> {
        self.last_probe
            .as_ref()
            .map(|p| p.postmaster_start_time.clone())
            .filter(|t| !t.is_empty())
    }

    pub(super) fn answer(
        &mut self,
        reply: Option<Reply>,
        to: Option<oneshot::Sender<LocalAnswer>>,
    ) {
        let Some(to) = to else {
            // Only a scheduled restart reaches the core without anyone waiting for the answer.
            if let Some(Reply::Now(status, text)) = &reply {
                if *status >= 300 {
                    warn!("Scheduled restart: {text}");
                }
            }
            return;
        };
        match reply {
            Some(Reply::Now(status, text)) => {
                let _ = to.send(LocalAnswer { status, text });
            }
            Some(Reply::WhenJobEnds) => self.pending_reply = Some(to),
            None => {
                let _ = to.send(LocalAnswer {
                    status: 503,
                    text: "request not handled".into(),
                });
            }
        }
    }

    /// SIGHUP or `POST /reload`: read the local configuration again and reload postgres.
    pub(crate) fn reload_local_config(&mut self) {
        let loaded = match &self.config_path {
            Some(p) => pgha_config::load(p),
            None => pgha_config::load_from_env_and_path(None, &|k| std::env::var(k).ok()),
        };
        // The database users' TLS files are read now: a missing or broken one keeps the
        // configuration (and the connections) as they were.
        // So are the files for requests to the other members (ctl.*, restapi.cafile): a
        // renewed client certificate or a new CA is used from now on.
        let loaded = loaded.map_err(|e| e.to_string()).and_then(|l| {
            let http = crate::peers::member_client(&l.config).map_err(|e| format!("{e:#}"))?;
            self.pg
                .reload_users(&crate::settings::pg_params(&l.config))
                .map_err(|e| format!("postgresql.authentication: {e}"))?;
            Ok((l, http))
        });
        match loaded {
            Ok((l, http)) => {
                self.http = http;
                for w in &l.warnings {
                    warn!("{w}");
                }
                if l.config.name != self.cfg.name || l.config.scope != self.cfg.scope {
                    warn!("name and scope cannot change while running; restart the agent to change them");
                }
                info!("reloaded the local configuration");
                self.cfg = Arc::new(l.config);
                self.watchdog.reload(&self.cfg.watchdog);
                self.lease_guard.reload(&self.cfg.lease_guard);
            }
            Err(e) => error!("keeping the current configuration; the new one is invalid: {e}"),
        }
        self.force_reload = true;
        self.last_member = None;
    }
}

/// "15.2" → 150002, "9.6.24" → 90624: server_version_num of a version string.
pub(crate) fn version_num(v: &str) -> Option<u32> {
    let parts: Vec<u32> = v
        .split('.')
        .map(|p| p.trim().parse().ok())
        .collect::<Option<_>>()?;
    match parts.as_slice() {
        [major, minor] if *major >= 10 => Some(major * 10000 + minor),
        [major] if *major >= 10 => Some(major * 10000),
        [a, b, c] => Some(a * 10000 + b * 100 + c),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn version_numbers() {
        assert_eq!(super::version_num("15.2"), Some(150002));
        assert_eq!(super::version_num("9.6.24"), Some(90624));
        assert_eq!(super::version_num("x"), None);
    }
}
