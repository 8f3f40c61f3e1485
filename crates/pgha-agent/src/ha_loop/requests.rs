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
                                });
                                self.last_member = None;
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
        if let Some(s) = &self.scheduled_restart {
            if s.at_ms <= now_ms() as i64 && self.job.is_none() {
                let s = self.scheduled_restart.take().expect("checked above");
                info!("scheduled restart at {} is due", s.schedule);
                self.last_member = None;
                return (Some(AdminRequest::Restart(s.request)), None);
            }
        }
        (None, None)
    }

    pub(super) fn answer(
        &mut self,
        reply: Option<Reply>,
        to: Option<oneshot::Sender<LocalAnswer>>,
    ) {
        let Some(to) = to else { return };
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
        match loaded {
            Ok(l) => {
                for w in &l.warnings {
                    warn!("{w}");
                }
                if l.config.name != self.cfg.name || l.config.scope != self.cfg.scope {
                    warn!("name and scope cannot change while running; restart the agent to change them");
                }
                info!("reloaded the local configuration");
                self.cfg = Arc::new(l.config);
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
