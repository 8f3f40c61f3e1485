//! Operators' requests to this node: restart and reinitialize.

use pgha_types::Cluster;

use crate::decide::Draft;
use crate::{
    Action, AdminRequest, JobKind, Observation, PgProcess, Reply, RestartRequest, Role, StopMode,
};

/// Decides what to do with `req`; returns the cycle's message when it acted or refused.
pub(crate) fn handle(
    d: &mut Draft,
    obs: &Observation,
    cluster: &Cluster,
    process: &PgProcess,
    req: &AdminRequest,
) -> Option<String> {
    match req {
        AdminRequest::Restart(r) => restart(d, obs, cluster, process, r),
        AdminRequest::Reinitialize { from_leader } => {
            reinitialize(d, obs, cluster, process, *from_leader)
        }
    }
}

fn restart(
    d: &mut Draft,
    obs: &Observation,
    cluster: &Cluster,
    process: &PgProcess,
    r: &RestartRequest,
) -> Option<String> {
    let PgProcess::Running(run) = process else {
        d.reply = Some(Reply::Now(503, "postgres is not running".into()));
        return None;
    };
    let role = if run.in_recovery {
        "replica"
    } else {
        "primary"
    };
    let role_ok = match r.role.as_deref() {
        None | Some("any") => true,
        Some("master") | Some("primary") | Some("leader") => role == "primary",
        Some(other) => other == role,
    };
    let pending_ok = !r.pending_only || run.pending_restart;
    let version_ok = r.below_version.is_none_or(|v| run.server_version < v);
    if !(role_ok && pending_ok && version_ok) {
        d.reply = Some(Reply::Now(
            503,
            "restart conditions are not satisfied".into(),
        ));
        return None;
    }
    let me = obs.me.as_str();
    let restart_role = if run.in_recovery {
        Role::Replica {
            leader: cluster
                .leader_name()
                .filter(|l| *l != me)
                .map(str::to_string),
        }
    } else {
        Role::Primary
    };
    d.act(Action::StartJob(JobKind::Restart { role: restart_role }));
    d.reply = Some(Reply::WhenJobEnds);
    Some("restarting postgres on request".into())
}

fn reinitialize(
    d: &mut Draft,
    obs: &Observation,
    cluster: &Cluster,
    process: &PgProcess,
    from_leader: bool,
) -> Option<String> {
    let refuse = |d: &mut Draft, why: &str| {
        d.reply = Some(Reply::Now(503, why.to_string()));
        None
    };
    match cluster.leader_name() {
        Some(l) if l == obs.me => return refuse(d, "I am the leader, can not reinitialize"),
        None => return refuse(d, "Cluster has no leader, can not reinitialize"),
        Some(_) => {}
    }
    remove_to_clone(d, process, from_leader);
    d.reply = Some(Reply::Now(200, "reinitialize started".into()));
    Some("reinitializing: removing the data directory to clone it again".into())
}

/// Stop postgres at once and remove its data directory: the next cycles clone it again
/// (from the leader when `from_leader`, else as `clonefrom` tags say).
pub(crate) fn remove_to_clone(d: &mut Draft, process: &PgProcess, from_leader: bool) {
    if !matches!(process, PgProcess::Stopped) {
        d.act(Action::Stop {
            mode: StopMode::Immediate,
        });
    }
    d.act(Action::RemoveDataDirectory);
    d.next.needs_rejoin = false;
    d.next.clone_from_leader = from_leader;
}
