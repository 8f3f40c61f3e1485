//! The HA decision of pgha, free of IO.
//!
//! The agent observes the world (the DCS view, the local PostgreSQL, the outcome of the lock
//! renewal it just attempted, long actions in flight, peers' answers) into an [`Observation`],
//! and [`decide`] returns what to do next plus the one line to log. Every rule of the HA loop
//! lives here so it can be tested in milliseconds: where is the leader race decided? In
//! `race.rs`. When does a primary demote? In `decide.rs`.

mod dead_leader;
mod decide;
pub mod failsafe;
mod fence;
mod model;
mod race;
mod requests;
mod rewind;
mod slots;
mod switchover;
mod sync;

pub use dead_leader::{
    judge as judge_dead_leader, should_probe as should_probe_leader, DeadLeaderVerdict,
    RefusalAnswer, REFUSING_RECHECKS,
};
pub use decide::decide;
pub use failsafe::{FailsafeObs, FailsafeReply, LeaderPing};
pub use fence::{guard_deadline, guard_plan, GuardInputs, GuardPlan};
pub use model::{
    Action, AdminRequest, ControlSummary, DcsView, Decision, HaState, Job, JobKind, JobOutcome,
    LocalPg, LockRenewal, Observation, PeerReply, PeerStatus, PgProcess, PgRunning, Reply,
    RestartRequest, Role, SettingBelowPrimary, StandbyConn, StopMode, WatchdogView,
    RECHECK_SOON_MS,
};
pub use race::{healthiest_verdict, Candidate, RaceVerdict};
pub use rewind::{assess_divergence, Divergence};
pub use slots::{
    plan_slots, slot_name, slot_targets, upstream, wanted_slots, SlotAdvance, SlotPlan, SlotTargets,
};

#[cfg(test)]
mod failsafe_tests;
#[cfg(test)]
mod slots_tests;
#[cfg(test)]
mod tests;
