//! The lease guard's policy (see the agent's `lease_guard`): when the guard outside the agent
//! must be armed, with which deadline, and when it may be disarmed. Pure, so the rule is
//! tested here and the simulator runs the very same one.

/// What the agent knows at the end of a cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuardInputs {
    /// `lease_guard.mode` is on.
    pub enabled: bool,
    /// The cluster is paused: nothing is fenced, as Patroni's pause promises.
    pub paused: bool,
    /// We hold the leader key of a cluster that is not a standby cluster.
    pub leading: bool,
    /// A postmaster runs in our data directory.
    pub postmaster_runs: bool,
    /// It last ran as a primary (it may still commit).
    pub ran_as_primary: bool,
    /// A job is starting postgres as the primary (no postmaster to name yet).
    pub starting_primary: bool,
    /// Boottime ms of the newest lease renewal etcd (or, in failsafe mode, every member)
    /// confirmed; the request was sent at that moment.
    pub renewed_boot_ms: Option<u64>,
    pub ttl: u64,
    pub margin_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuardPlan {
    /// Nothing to fence.
    Disarm,
    /// Leave it as it is: a primary we no longer lead may still run, and its deadline must
    /// not move.
    Keep,
    /// Kill the postmaster at this boottime ms unless told otherwise before.
    Arm { deadline_ms: u64 },
    /// The same for the postmaster the data directory names at the deadline: a primary is
    /// being started, and a freeze of the agent now must not leave it writable.
    ArmDataDir { deadline_ms: u64 },
}

/// The moment before which etcd cannot have expired a lease of `ttl` seconds whose renewal
/// was sent at `renewed_ms`: less the margin, capped at half the ttl.
pub fn guard_deadline(renewed_ms: u64, ttl: u64, margin_ms: u64) -> u64 {
    let ttl_ms = ttl.saturating_mul(1000);
    renewed_ms + ttl_ms - margin_ms.min(ttl_ms / 2)
}

pub fn guard_plan(i: &GuardInputs) -> GuardPlan {
    if i.paused || !i.enabled {
        return GuardPlan::Disarm;
    }
    if !i.postmaster_runs {
        return match (i.starting_primary, i.leading, i.renewed_boot_ms) {
            (true, true, Some(t)) => GuardPlan::ArmDataDir {
                deadline_ms: guard_deadline(t, i.ttl, i.margin_ms),
            },
            // The start goes on without the lock (the DCS went away): the primary it brings
            // up stays fenced by the deadline already set.
            (true, _, _) => GuardPlan::Keep,
            _ => GuardPlan::Disarm,
        };
    }
    if !i.leading {
        return if i.ran_as_primary {
            GuardPlan::Keep
        } else {
            GuardPlan::Disarm
        };
    }
    match i.renewed_boot_ms {
        Some(t) => GuardPlan::Arm {
            deadline_ms: guard_deadline(t, i.ttl, i.margin_ms),
        },
        None => GuardPlan::Keep,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leader() -> GuardInputs {
        GuardInputs {
            enabled: true,
            paused: false,
            leading: true,
            postmaster_runs: true,
            ran_as_primary: true,
            starting_primary: false,
            renewed_boot_ms: Some(50_000),
            ttl: 10,
            margin_ms: 1000,
        }
    }

    #[test]
    fn a_leader_is_fenced_a_margin_before_its_lease_can_expire() {
        assert_eq!(
            guard_plan(&leader()),
            GuardPlan::Arm {
                deadline_ms: 59_000
            }
        );
        // The margin never eats more than half the ttl.
        assert_eq!(guard_deadline(0, 1, 5000), 500);
    }

    #[test]
    fn a_primary_being_started_is_fenced_before_it_runs() {
        // Found by pgha-sim: the agent started postgres as primary and froze before the
        // postmaster existed; nothing was armed and it came up writable past the lease.
        let starting = GuardInputs {
            postmaster_runs: false,
            starting_primary: true,
            ..leader()
        };
        assert_eq!(
            guard_plan(&starting),
            GuardPlan::ArmDataDir {
                deadline_ms: 59_000
            }
        );
        // Lost the lock (DCS gone) while the start goes on: the deadline set stays.
        let not_leading = GuardInputs {
            leading: false,
            ..starting
        };
        assert_eq!(guard_plan(&not_leading), GuardPlan::Keep);
        let nothing_starting = GuardInputs {
            starting_primary: false,
            ..not_leading
        };
        assert_eq!(guard_plan(&nothing_starting), GuardPlan::Disarm);
    }

    #[test]
    fn a_primary_that_lost_the_lock_stays_fenced() {
        let lost = GuardInputs {
            leading: false,
            ..leader()
        };
        assert_eq!(guard_plan(&lost), GuardPlan::Keep);
        let replica = GuardInputs {
            ran_as_primary: false,
            ..lost
        };
        assert_eq!(guard_plan(&replica), GuardPlan::Disarm);
    }

    #[test]
    fn off_paused_or_without_postgres_nothing_is_fenced() {
        for i in [
            GuardInputs {
                enabled: false,
                ..leader()
            },
            GuardInputs {
                paused: true,
                ..leader()
            },
            GuardInputs {
                postmaster_runs: false,
                ..leader()
            },
        ] {
            assert_eq!(guard_plan(&i), GuardPlan::Disarm);
        }
    }
}
