//! Deterministic simulation of pgha's HA core.
//!
//! Several agents run the real decision (`pgha_core::decide`) and the real lease-guard policy
//! (`pgha_core::guard_plan`) against a simulated etcd (keys, leases that expire, revisions),
//! simulated PostgreSQL servers (a log of write ids per server, timelines, streaming
//! replication, synchronous and quorum acknowledgements) and a client that writes to every
//! server that accepts writes. Virtual time advances in steps of [`STEP_MS`]; everything
//! random comes from one seed, so a seed replays exactly.
//!
//! Faults, seeded: frozen agent or postgres (SIGSTOP), crashes (agent, postgres, both),
//! power-off, an isolated node, a node cut from etcd, etcd down, a slow disk, delayed
//! execution of decisions, clock jumps, operator switchovers.
//!
//! Invariants, checked at every step ([`Violation`]):
//! * at most one server acknowledges writes at any instant;
//! * in synchronous and quorum mode no acknowledged write is missing from a server that
//!   becomes primary, nor from the leader once the cluster converged;
//! * after the faults stop, the cluster converges (one leader, every other node streaming
//!   from it) within a bound;
//! * no agent exits.
//!
//! What is abstracted away: WAL is a list of write ids (a replica streams when its list is a
//! prefix of its upstream's); jobs (start, rewind, clone, promote) take a random time and act
//! at their end; the DCS calls of one cycle are atomic.

mod rng;

use std::collections::{BTreeMap, BTreeSet};

use pgha_core::{
    decide, guard_plan, Action, ControlSummary, DcsView, Decision, FailsafeObs, GuardInputs,
    GuardPlan, HaState, Job, JobKind, JobOutcome, LocalPg, LockRenewal, Observation, PeerReply,
    PeerStatus, PgProcess, PgRunning, Role, StandbyConn, StopMode, WatchdogView, RECHECK_SOON_MS,
};
use pgha_types::{Cluster, ClusterPolicy, KeyValue};
pub use rng::Rng;

/// Virtual time per step.
pub const STEP_MS: u64 = 50;
const SYSID: &str = "7000000000000000001";
const LSN_BASE: u64 = 0x0300_0000;
const LSN_PER_WRITE: u64 = 0x80;
/// Unix ms at virtual time 0, so the core sees plausible wall-clock times.
const EPOCH_MS: u64 = 1_796_000_000_000;
const GUARD_MARGIN_MS: u64 = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Async,
    Sync,
    Quorum,
}

#[derive(Debug, Clone)]
pub struct SimConfig {
    pub nodes: usize,
    pub ttl: u64,
    pub loop_wait: u64,
    pub retry_timeout: u64,
    pub mode: Mode,
    /// Faults start in [5 s, faults_until_ms).
    pub faults_until_ms: u64,
    /// The cluster must have converged this long after the last fault ended.
    pub converge_within_ms: u64,
    pub max_faults: usize,
    /// The lease guard (`lease_guard.mode`); off shows what it prevents.
    pub lease_guard: bool,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            nodes: 3,
            ttl: 10,
            loop_wait: 1,
            retry_timeout: 3,
            mode: Mode::Sync,
            faults_until_ms: 40_000,
            converge_within_ms: 60_000,
            max_faults: 6,
            lease_guard: true,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    FreezeAgent,
    FreezePostgres,
    CrashAgent,
    CrashPostgres,
    /// Agent and postmaster killed; the host answers (ports refuse connections).
    CrashNode,
    /// Everything on the node dies, the lease guard too; the host does not answer.
    PowerOff,
    Isolate,
    CutEtcd,
    EtcdDown,
    SlowDisk,
    DelayMessages,
    ClockJump,
    Switchover,
}

const FAULT_KINDS: [FaultKind; 13] = [
    FaultKind::FreezeAgent,
    FaultKind::FreezePostgres,
    FaultKind::CrashAgent,
    FaultKind::CrashPostgres,
    FaultKind::CrashNode,
    FaultKind::PowerOff,
    FaultKind::Isolate,
    FaultKind::CutEtcd,
    FaultKind::EtcdDown,
    FaultKind::SlowDisk,
    FaultKind::DelayMessages,
    FaultKind::ClockJump,
    FaultKind::Switchover,
];

#[derive(Debug, Clone)]
pub struct Fault {
    pub at: u64,
    pub until: u64,
    pub node: usize,
    /// Aimed at whoever holds the leader key when the fault starts (`node` otherwise).
    pub at_leader: bool,
    pub kind: FaultKind,
    /// Kind-specific amount: clock jump in ms (signed), message delay in ms.
    pub amount: i64,
}

/// A broken invariant, with the virtual time it was seen at.
#[derive(Debug, Clone)]
pub struct Violation {
    pub at_ms: u64,
    pub what: String,
}

/// The result of one seed.
pub struct Outcome {
    pub seed: u64,
    pub faults: Vec<Fault>,
    pub violations: Vec<Violation>,
    pub acknowledged: usize,
    pub converged_at_ms: Option<u64>,
    pub trace: Vec<String>,
}

impl Outcome {
    pub fn ok(&self) -> bool {
        self.violations.is_empty()
    }

    /// The faults, the violations and the last `lines` lines of the trace.
    pub fn report(&self, lines: usize) -> String {
        let mut s = format!("seed {}: faults:\n", self.seed);
        for f in &self.faults {
            s.push_str(&format!(
                "  {:>7.2}s..{:>7.2}s {} {:?} {}\n",
                secs(f.at),
                secs(f.until),
                if f.at_leader {
                    "leader".to_string()
                } else {
                    format!("pg{}", f.node + 1)
                },
                f.kind,
                f.amount
            ));
        }
        for v in &self.violations {
            s.push_str(&format!("VIOLATION at {:.2}s: {}\n", secs(v.at_ms), v.what));
        }
        let skip = self.trace.len().saturating_sub(lines);
        s.push_str(&format!(
            "trace (last {} lines):\n",
            self.trace.len() - skip
        ));
        for l in &self.trace[skip..] {
            s.push_str(l);
            s.push('\n');
        }
        s
    }
}

fn secs(ms: u64) -> f64 {
    ms as f64 / 1000.0
}

fn lsn(len: usize) -> u64 {
    LSN_BASE + len as u64 * LSN_PER_WRITE
}

// ----- etcd -----

struct Etcd {
    kv: BTreeMap<String, (String, i64, i64)>,
    /// lease id → expiry (virtual ms)
    leases: BTreeMap<i64, u64>,
    revision: i64,
    next_lease: i64,
    down_until: u64,
}

impl Etcd {
    fn put(&mut self, key: &str, value: String, lease: i64) {
        self.revision += 1;
        self.kv.insert(key.into(), (value, lease, self.revision));
    }

    fn delete(&mut self, key: &str) -> bool {
        self.revision += 1;
        self.kv.remove(key).is_some()
    }

    fn get(&self, key: &str) -> Option<&(String, i64, i64)> {
        self.kv.get(key)
    }

    fn grant(&mut self, now: u64, ttl: u64) -> i64 {
        self.next_lease += 1;
        self.leases.insert(self.next_lease, now + ttl * 1000);
        self.next_lease
    }

    /// Drops expired leases and their keys; true when the leader key went with them.
    fn expire(&mut self, now: u64) -> bool {
        let gone: Vec<i64> = self
            .leases
            .iter()
            .filter(|(_, &exp)| exp <= now)
            .map(|(&id, _)| id)
            .collect();
        if gone.is_empty() {
            return false;
        }
        let leader_before = self.kv.contains_key("leader");
        for id in &gone {
            self.leases.remove(id);
        }
        self.kv
            .retain(|_, (_, lease, _)| *lease == 0 || !gone.contains(lease));
        self.revision += 1;
        leader_before && !self.kv.contains_key("leader")
    }

    fn cluster(&self) -> Cluster {
        let keys: Vec<KeyValue> = self
            .kv
            .iter()
            .map(|(k, (v, lease, rev))| KeyValue {
                key: k.clone(),
                value: v.clone(),
                lease: *lease,
                mod_revision: *rev,
            })
            .collect();
        Cluster::from_keys(&keys)
    }
}

// ----- PostgreSQL -----

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Proc {
    Stopped,
    Running,
}

struct Pg {
    data: bool,
    proc: Proc,
    primary: bool,
    frozen_until: u64,
    upstream: Option<usize>,
    log: Vec<u64>,
    tl: u32,
    /// (timeline, where it ended) of the timelines before `tl`.
    history: Vec<(u32, u64)>,
    ssn: String,
    clean: bool,
    streaming: bool,
    /// Our writes waiting for synchronous acknowledgements.
    pending: Vec<u64>,
}

impl Pg {
    fn frozen(&self, now: u64) -> bool {
        self.frozen_until > now
    }

    fn running(&self, now: u64) -> bool {
        self.proc == Proc::Running && !self.frozen(now)
    }

    fn writable(&self, now: u64) -> bool {
        self.running(now) && self.primary
    }

    fn stop(&mut self, clean: bool) {
        self.proc = Proc::Stopped;
        self.clean = clean;
        self.streaming = false;
        self.pending.clear();
        self.frozen_until = 0;
    }
}

/// `synchronous_standby_names` as PostgreSQL reads it: (quorum?, k, names; empty = any).
fn parse_ssn(s: &str) -> Option<(bool, usize, Vec<String>)> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    if s == "*" {
        return Some((false, 1, Vec::new()));
    }
    let (quorum, rest) = match s.strip_prefix("ANY ") {
        Some(r) => (true, r.trim()),
        None => (false, s.strip_prefix("FIRST ").unwrap_or(s).trim()),
    };
    let (k, list) = match rest.split_once('(') {
        Some((k, list)) => (
            k.trim().parse().unwrap_or(1),
            list.trim_end_matches(')').to_string(),
        ),
        None => (1, rest.to_string()),
    };
    let names = list
        .split(',')
        .map(|n| n.trim().trim_matches('"').to_string())
        .filter(|n| !n.is_empty())
        .collect();
    Some((quorum, k, names))
}

// ----- agents -----

struct SimJob {
    job: Job,
    done_at: u64,
}

struct Agent {
    state: HaState,
    next_cycle: u64,
    lease: Option<i64>,
    /// Virtual ms of the newest lease renewal etcd confirmed.
    renewed_at: Option<u64>,
    job: Option<SimJob>,
    finished: Option<JobOutcome>,
    last_role_primary: Option<bool>,
    /// A decision whose actions run later (the delayed-messages fault).
    delayed: Option<(u64, Decision, Observation)>,
    last_message: String,
    /// Quick rechecks spent waiting for the others to confirm a refusing leader.
    refusing_rechecks: u32,
    /// Run the next cycle soon: the others have not confirmed a refusing leader yet.
    recheck_refusing: bool,
}

impl Agent {
    fn new(now: u64) -> Agent {
        Agent {
            state: HaState::default(),
            next_cycle: now,
            lease: None,
            renewed_at: None,
            job: None,
            finished: None,
            last_role_primary: None,
            delayed: None,
            last_message: String::new(),
            refusing_rechecks: 0,
            recheck_refusing: false,
        }
    }
}

struct Node {
    name: String,
    agent: Option<Agent>,
    agent_frozen_until: u64,
    agent_restart_at: Option<u64>,
    pg: Pg,
    /// The lease guard's deadline (virtual ms), None when disarmed.
    guard: Option<u64>,
    powered_off: bool,
    isolated_until: u64,
    etcd_cut_until: u64,
    slow_until: u64,
    delay_until: u64,
    delay_ms: u64,
    clock_offset: i64,
}

// ----- the world -----

pub struct Sim {
    cfg: SimConfig,
    policy: ClusterPolicy,
    now: u64,
    rng: Rng,
    etcd: Etcd,
    nodes: Vec<Node>,
    next_write: u64,
    /// write id → (node, virtual ms) of its acknowledgement.
    acked: BTreeMap<u64, (usize, u64)>,
    violations: Vec<Violation>,
    trace: Vec<String>,
    faults: Vec<Fault>,
}

impl Sim {
    pub fn new(cfg: SimConfig, seed: u64) -> Sim {
        let mut rng = Rng::new(seed);
        let policy = ClusterPolicy {
            ttl: cfg.ttl,
            loop_wait: cfg.loop_wait,
            retry_timeout: cfg.retry_timeout,
            use_pg_rewind: true,
            synchronous_mode: cfg.mode != Mode::Async,
            synchronous_quorum: cfg.mode == Mode::Quorum,
            synchronous_node_count: 1,
            ..ClusterPolicy::default()
        };
        let mut etcd = Etcd {
            kv: BTreeMap::new(),
            leases: BTreeMap::new(),
            revision: 1,
            next_lease: 0x1000,
            down_until: 0,
        };
        etcd.put("initialize", SYSID.into(), 0);
        let sync = match cfg.mode {
            Mode::Async => "false",
            Mode::Sync => "true",
            Mode::Quorum => "\"quorum\"",
        };
        etcd.put(
            "config",
            format!(
                r#"{{"ttl":{},"loop_wait":{},"retry_timeout":{},"synchronous_mode":{sync},"postgresql":{{"use_pg_rewind":true}}}}"#,
                cfg.ttl, cfg.loop_wait, cfg.retry_timeout
            ),
            0,
        );
        etcd.put("history", "[]".into(), 0);
        let nodes = (0..cfg.nodes)
            .map(|i| Node {
                name: format!("pg{}", i + 1),
                agent: Some(Agent::new(rng.range(0, 1000))),
                agent_frozen_until: 0,
                agent_restart_at: None,
                pg: Pg {
                    data: true,
                    proc: Proc::Running,
                    primary: i == 0,
                    frozen_until: 0,
                    upstream: (i != 0).then_some(0),
                    log: Vec::new(),
                    tl: 1,
                    history: Vec::new(),
                    ssn: String::new(),
                    clean: true,
                    streaming: i != 0,
                    pending: Vec::new(),
                },
                guard: None,
                powered_off: false,
                isolated_until: 0,
                etcd_cut_until: 0,
                slow_until: 0,
                delay_until: 0,
                delay_ms: 0,
                clock_offset: 0,
            })
            .collect();
        let mut sim = Sim {
            policy,
            now: 0,
            etcd,
            nodes,
            next_write: 1,
            acked: BTreeMap::new(),
            violations: Vec::new(),
            trace: Vec::new(),
            faults: Vec::new(),
            cfg,
            rng,
        };
        // pg1 leads from the start, on its own lease.
        let lease = sim.etcd.grant(0, sim.cfg.ttl);
        sim.etcd.put("leader", "pg1".into(), lease);
        if let Some(a) = sim.nodes[0].agent.as_mut() {
            a.lease = Some(lease);
            a.renewed_at = Some(0);
        }
        sim.faults = sim.schedule();
        sim
    }

    fn schedule(&mut self) -> Vec<Fault> {
        let n = self.rng.range(1, self.cfg.max_faults.max(1) as u64) as usize;
        let ttl_ms = self.cfg.ttl * 1000;
        let mut faults: Vec<Fault> = (0..n)
            .map(|_| {
                let kind = self.rng.pick(&FAULT_KINDS);
                let at = self.rng.range(
                    5_000,
                    self.cfg.faults_until_ms.saturating_sub(2_000).max(5_000),
                );
                let length = match kind {
                    FaultKind::FreezeAgent | FaultKind::FreezePostgres => {
                        self.rng.range(ttl_ms / 2, ttl_ms * 5 / 2)
                    }
                    FaultKind::EtcdDown => self.rng.range(2_000, 30_000),
                    FaultKind::ClockJump | FaultKind::Switchover => 0,
                    _ => self.rng.range(1_000, 20_000),
                };
                let amount = match kind {
                    FaultKind::ClockJump => {
                        let bound = ttl_ms as i64 / 4;
                        self.rng.range(0, 2 * bound as u64) as i64 - bound
                    }
                    FaultKind::DelayMessages => self.rng.range(100, 1_500) as i64,
                    _ => 0,
                };
                Fault {
                    at,
                    until: at + length,
                    node: self.rng.range(0, self.cfg.nodes as u64 - 1) as usize,
                    at_leader: self.rng.chance(60),
                    kind,
                    amount,
                }
            })
            .collect();
        faults.sort_by_key(|f| f.at);
        faults
    }

    fn log(&mut self, line: String) {
        self.trace.push(format!("{:>8.2}s {line}", secs(self.now)));
    }

    fn violation(&mut self, what: String) {
        // The same breach step after step says nothing new.
        if self.violations.last().is_some_and(|v| v.what == what) {
            return;
        }
        self.log(format!("VIOLATION: {what}"));
        self.violations.push(Violation {
            at_ms: self.now,
            what,
        });
    }

    // ----- reachability -----

    fn up(&self, i: usize) -> bool {
        !self.nodes[i].powered_off
    }

    fn isolated(&self, i: usize) -> bool {
        self.nodes[i].isolated_until > self.now || self.nodes[i].powered_off
    }

    fn etcd_ok(&self, i: usize) -> bool {
        self.etcd.down_until <= self.now
            && !self.isolated(i)
            && self.nodes[i].etcd_cut_until <= self.now
    }

    fn link(&self, a: usize, b: usize) -> bool {
        !self.isolated(a) && !self.isolated(b)
    }

    fn index(&self, name: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.name == name)
    }

    // ----- the run -----

    /// Runs the seed to its end: faults, then convergence (or the bound).
    pub fn run(mut self, seed: u64) -> Outcome {
        let faults_end = self
            .faults
            .iter()
            .map(|f| f.until.max(f.at))
            .max()
            .unwrap_or(0)
            .max(self.cfg.faults_until_ms);
        let deadline = faults_end + self.cfg.converge_within_ms;
        let mut converged_at = None;
        let mut stable_since = None;
        while self.now <= deadline {
            self.step();
            if self.now > faults_end {
                if self.converged() {
                    let since = *stable_since.get_or_insert(self.now);
                    // Converged, and stays so for a few loops.
                    if self.now - since >= 3_000 {
                        converged_at = Some(since);
                        break;
                    }
                } else {
                    stable_since = None;
                }
            }
            self.now += STEP_MS;
        }
        match converged_at {
            Some(_) => self.check_final_log(),
            None => {
                let why = self.why_not_converged();
                self.violation(format!(
                    "no convergence within {:.0}s after the last fault: {why}",
                    secs(self.cfg.converge_within_ms)
                ));
            }
        }
        Outcome {
            seed,
            faults: self.faults.clone(),
            violations: self.violations,
            acknowledged: self.acked.len(),
            converged_at_ms: converged_at,
            trace: self.trace,
        }
    }

    fn step(&mut self) {
        self.apply_faults();
        if self.etcd.down_until <= self.now && self.etcd.expire(self.now) {
            self.log("etcd: the leader key expired with its lease".into());
            self.wake_all();
        }
        self.fire_guards();
        self.finish_jobs();
        self.replicate();
        self.write_and_acknowledge();
        for i in 0..self.nodes.len() {
            self.run_agent(i);
        }
    }

    fn apply_faults(&mut self) {
        let now = self.now;
        let starting: Vec<Fault> = self
            .faults
            .iter()
            .filter(|f| f.at >= now && f.at < now + STEP_MS)
            .cloned()
            .collect();
        for mut f in starting {
            if f.at_leader {
                if let Some(l) = self.etcd.get("leader").and_then(|(n, ..)| self.index(n)) {
                    f.node = l;
                }
            }
            self.log(format!(
                "FAULT pg{} {:?} for {:.1}s ({})",
                f.node + 1,
                f.kind,
                secs(f.until - f.at),
                f.amount
            ));
            let n = &mut self.nodes[f.node];
            match f.kind {
                FaultKind::FreezeAgent => n.agent_frozen_until = f.until,
                FaultKind::FreezePostgres => {
                    if n.pg.proc == Proc::Running {
                        n.pg.frozen_until = f.until
                    }
                }
                FaultKind::CrashAgent => {
                    n.agent = None;
                    n.agent_restart_at = Some(f.until);
                }
                FaultKind::CrashPostgres => {
                    if n.pg.proc == Proc::Running {
                        n.pg.stop(false)
                    }
                }
                FaultKind::CrashNode => {
                    n.agent = None;
                    n.agent_restart_at = Some(f.until);
                    if n.pg.proc == Proc::Running {
                        n.pg.stop(false)
                    }
                }
                FaultKind::PowerOff => {
                    n.agent = None;
                    n.agent_restart_at = Some(f.until);
                    n.powered_off = true;
                    n.guard = None;
                    if n.pg.proc == Proc::Running {
                        n.pg.stop(false)
                    }
                }
                FaultKind::Isolate => n.isolated_until = f.until,
                FaultKind::CutEtcd => n.etcd_cut_until = f.until,
                FaultKind::EtcdDown => self.etcd.down_until = self.etcd.down_until.max(f.until),
                FaultKind::SlowDisk => n.slow_until = f.until,
                FaultKind::DelayMessages => {
                    n.delay_until = f.until;
                    n.delay_ms = f.amount as u64;
                }
                FaultKind::ClockJump => n.clock_offset += f.amount,
                FaultKind::Switchover => {
                    if self.etcd.down_until <= now {
                        let leader = self.etcd.get("leader").map(|v| v.0.clone());
                        let target = self.nodes[f.node].name.clone();
                        if let Some(l) = leader.filter(|l| *l != target) {
                            self.etcd.put(
                                "failover",
                                format!(r#"{{"leader":"{l}","member":"{target}"}}"#),
                                0,
                            );
                            self.wake_all();
                        }
                    }
                }
            }
        }
        // Restarts and ends of faults.
        for i in 0..self.nodes.len() {
            if self.nodes[i].agent_restart_at.is_some_and(|t| t <= now) {
                let n = &mut self.nodes[i];
                n.agent_restart_at = None;
                n.powered_off = false;
                n.agent = Some(Agent::new(now));
                let name = n.name.clone();
                self.log(format!("{name}: agent started again"));
            }
        }
        if self.etcd.down_until > 0 && self.etcd.down_until <= now {
            // A restarted etcd gives every lease its full ttl again.
            self.etcd.down_until = 0;
            let ttl_ms = self.cfg.ttl * 1000;
            for exp in self.etcd.leases.values_mut() {
                *exp = now + ttl_ms;
            }
            self.log("etcd is back".into());
        }
    }

    fn wake_all(&mut self) {
        let now = self.now;
        for n in &mut self.nodes {
            if let Some(a) = n.agent.as_mut() {
                a.next_cycle = a.next_cycle.min(now + 20);
            }
        }
    }

    fn fire_guards(&mut self) {
        let now = self.now;
        for i in 0..self.nodes.len() {
            let n = &mut self.nodes[i];
            if n.guard.is_some_and(|d| d <= now) {
                n.guard = None;
                if n.pg.proc == Proc::Running {
                    n.pg.stop(false);
                    let name = n.name.clone();
                    self.log(format!("{name}: lease guard killed postgres"));
                }
            }
        }
    }

    // ----- jobs -----

    fn job_duration(&mut self, i: usize, kind: &JobKind) -> u64 {
        let base = match kind {
            JobKind::Start { .. } => self.rng.range(300, 1500),
            JobKind::Rejoin { .. } => self.rng.range(500, 3000),
            JobKind::Promote => self.rng.range(100, 600),
            JobKind::Clone { .. } => self.rng.range(1000, 4000),
            JobKind::Restart { .. } => self.rng.range(500, 2000),
            JobKind::Bootstrap | JobKind::BootstrapStandby => self.rng.range(1000, 3000),
        };
        if self.nodes[i].slow_until > self.now {
            base * 5
        } else {
            base
        }
    }

    fn finish_jobs(&mut self) {
        for i in 0..self.nodes.len() {
            let done = self.nodes[i]
                .agent
                .as_ref()
                .and_then(|a| a.job.as_ref())
                .is_some_and(|j| j.done_at <= self.now);
            if !done {
                continue;
            }
            let job = self.nodes[i]
                .agent
                .as_mut()
                .and_then(|a| a.job.take())
                .expect("a job that is done");
            let result = self.complete_job(i, &job.job.kind);
            let name = self.nodes[i].name.clone();
            self.log(format!(
                "{name}: job {:?} {}",
                job.job.kind,
                match &result {
                    Ok(()) => "done".to_string(),
                    Err(e) => format!("failed: {e}"),
                }
            ));
            if let Some(a) = self.nodes[i].agent.as_mut() {
                a.finished = Some(JobOutcome {
                    kind: job.job.kind.clone(),
                    ok: result.is_ok(),
                    message: result.err().unwrap_or_default(),
                    refused_by_pre_promote: false,
                });
                a.next_cycle = a.next_cycle.min(self.now + 20);
            }
        }
    }

    fn source_ok(&self, i: usize, src: usize) -> bool {
        src != i && self.link(i, src) && self.up(src) && self.nodes[src].pg.running(self.now)
    }

    fn complete_job(&mut self, i: usize, kind: &JobKind) -> Result<(), String> {
        let now = self.now;
        match kind {
            JobKind::Start { role } | JobKind::Restart { role } => {
                let upstream = match role {
                    Role::Replica { leader } => leader.as_deref().and_then(|l| self.index(l)),
                    _ => None,
                };
                let pg = &mut self.nodes[i].pg;
                if !pg.data {
                    return Err("no data directory".into());
                }
                if pg.frozen(now) {
                    return Err("postgres does not answer".into());
                }
                // A standby's data directory started as the primary ends recovery like a
                // promotion: on a new timeline.
                let promoted = *role == Role::Primary && !pg.primary;
                pg.proc = Proc::Running;
                pg.primary = *role == Role::Primary;
                pg.upstream = upstream;
                pg.streaming = false;
                if promoted {
                    pg.history.push((pg.tl, lsn(pg.log.len())));
                    pg.tl += 1;
                    self.check_promoted(i);
                }
                Ok(())
            }
            JobKind::Rejoin { leader } => {
                let src = self.index(leader).ok_or("unknown leader")?;
                if !self.source_ok(i, src) {
                    return Err(format!("cannot reach {leader}"));
                }
                let (slog, stl, shist) = {
                    let s = &self.nodes[src].pg;
                    (s.log.clone(), s.tl, s.history.clone())
                };
                let pg = &mut self.nodes[i].pg;
                // As the agent's rejoin: pg_rewind only where the timeline histories show a
                // divergence (it can see no other), and then it keeps what both share.
                let diverged = matches!(
                    pgha_core::assess_divergence(
                        pg.tl,
                        lsn(pg.log.len()),
                        stl,
                        &shist,
                        &pg.history
                    ),
                    pgha_core::Divergence::Diverged(_)
                );
                let mut rewound = 0;
                if diverged {
                    let common = pg.log.iter().zip(&slog).take_while(|(a, b)| a == b).count();
                    rewound = pg.log.len() - common;
                    pg.log.truncate(common);
                    pg.tl = stl;
                    pg.history = shist;
                }
                pg.proc = Proc::Running;
                pg.primary = false;
                pg.frozen_until = 0;
                pg.upstream = Some(src);
                pg.streaming = false;
                if rewound > 0 {
                    let name = self.nodes[i].name.clone();
                    self.log(format!("{name}: pg_rewind dropped {rewound} writes"));
                }
                Ok(())
            }
            JobKind::Clone { from, .. } => {
                let src = from
                    .as_deref()
                    .and_then(|f| self.index(f))
                    .ok_or("no source to clone from")?;
                if !self.source_ok(i, src) {
                    return Err("cannot reach the source".into());
                }
                let (slog, stl, shist) = {
                    let s = &self.nodes[src].pg;
                    (s.log.clone(), s.tl, s.history.clone())
                };
                let pg = &mut self.nodes[i].pg;
                pg.data = true;
                pg.log = slog;
                pg.tl = stl;
                pg.history = shist;
                pg.proc = Proc::Running;
                pg.primary = false;
                pg.upstream = Some(src);
                pg.streaming = false;
                Ok(())
            }
            JobKind::Promote => {
                let pg = &mut self.nodes[i].pg;
                if !pg.running(now) {
                    return Err("postgres is not running".into());
                }
                if pg.primary {
                    return Ok(());
                }
                pg.history.push((pg.tl, lsn(pg.log.len())));
                pg.tl += 1;
                pg.primary = true;
                pg.upstream = None;
                pg.streaming = false;
                pg.ssn.clear();
                self.check_promoted(i);
                Ok(())
            }
            JobKind::Bootstrap | JobKind::BootstrapStandby => {
                Err("bootstrap is not simulated".into())
            }
        }
    }

    /// In synchronous and quorum mode a server that becomes primary holds every write
    /// acknowledged so far.
    fn check_promoted(&mut self, i: usize) {
        if self.cfg.mode == Mode::Async {
            return;
        }
        let log: BTreeSet<u64> = self.nodes[i].pg.log.iter().copied().collect();
        let missing: Vec<u64> = self
            .acked
            .keys()
            .filter(|id| !log.contains(id))
            .copied()
            .collect();
        if !missing.is_empty() {
            let name = self.nodes[i].name.clone();
            self.violation(format!(
                "{name} promoted without {} acknowledged writes (first {:?})",
                missing.len(),
                &missing[..missing.len().min(5)]
            ));
        }
    }

    // ----- PostgreSQL -----

    fn replicate(&mut self) {
        let now = self.now;
        for i in 0..self.nodes.len() {
            let pg = &self.nodes[i].pg;
            if !pg.running(now) || pg.primary {
                continue;
            }
            let Some(u) = pg.upstream else {
                self.nodes[i].pg.streaming = false;
                continue;
            };
            if !self.source_ok(i, u) {
                self.nodes[i].pg.streaming = false;
                continue;
            }
            let (ulog, utl, uhist) = {
                let s = &self.nodes[u].pg;
                (s.log.clone(), s.tl, s.history.clone())
            };
            let pg = &mut self.nodes[i].pg;
            let prefix = pg.log.len() <= ulog.len() && ulog[..pg.log.len()] == pg.log[..];
            if prefix && utl >= pg.tl {
                pg.log = ulog;
                pg.tl = utl;
                pg.history = uhist;
                pg.streaming = true;
            } else {
                pg.streaming = false;
            }
        }
    }

    /// The standbys streaming from `p`, as its pg_stat_replication shows them.
    fn standbys_of(&self, p: usize) -> Vec<(usize, String)> {
        let ssn = parse_ssn(&self.nodes[p].pg.ssn);
        let mut connected: Vec<usize> = (0..self.nodes.len())
            .filter(|&r| {
                let pg = &self.nodes[r].pg;
                r != p && pg.running(self.now) && pg.upstream == Some(p) && pg.streaming
            })
            .collect();
        connected.sort();
        let mut out = Vec::new();
        match ssn {
            None => {
                for r in connected {
                    out.push((r, "async".to_string()));
                }
            }
            Some((quorum, k, names)) => {
                let listed = |r: usize| names.is_empty() || names.contains(&self.nodes[r].name);
                // FIRST: the first k connected standbys in list order are sync.
                let mut order: Vec<usize> =
                    connected.iter().copied().filter(|&r| listed(r)).collect();
                order.sort_by_key(|&r| {
                    names
                        .iter()
                        .position(|n| *n == self.nodes[r].name)
                        .unwrap_or(0)
                });
                for r in connected {
                    let state = if !listed(r) {
                        "async"
                    } else if quorum {
                        "quorum"
                    } else if order.iter().take(k).any(|&s| s == r) {
                        "sync"
                    } else {
                        "potential"
                    };
                    out.push((r, state.to_string()));
                }
            }
        }
        out
    }

    fn write_and_acknowledge(&mut self) {
        let now = self.now;
        let mut ackers = BTreeSet::new();
        for p in 0..self.nodes.len() {
            if !self.nodes[p].pg.writable(now) || self.isolated(p) {
                continue;
            }
            let id = self.next_write;
            self.next_write += 1;
            let pg = &mut self.nodes[p].pg;
            pg.log.push(id);
            let ssn = parse_ssn(&pg.ssn);
            if ssn.is_none() {
                self.acked.insert(id, (p, now));
                ackers.insert(p);
                continue;
            }
            pg.pending.push(id);
        }
        // Synchronous acknowledgements of what the standbys have flushed.
        for p in 0..self.nodes.len() {
            if self.nodes[p].pg.pending.is_empty() || !self.nodes[p].pg.running(now) {
                continue;
            }
            let Some((quorum, k, _)) = parse_ssn(&self.nodes[p].pg.ssn) else {
                continue;
            };
            let standbys = self.standbys_of(p);
            let voters: Vec<usize> = standbys
                .iter()
                .filter(|(_, s)| s == if quorum { "quorum" } else { "sync" })
                .map(|(r, _)| *r)
                .collect();
            if voters.len() < k {
                continue;
            }
            let pending = std::mem::take(&mut self.nodes[p].pg.pending);
            let mut still = Vec::new();
            for id in pending {
                let have = voters
                    .iter()
                    .filter(|&&r| self.nodes[r].pg.log.contains(&id))
                    .count();
                if have >= k {
                    self.acked.insert(id, (p, now));
                    ackers.insert(p);
                } else {
                    still.push(id);
                }
            }
            self.nodes[p].pg.pending = still;
        }
        if ackers.len() > 1 {
            let names: Vec<String> = ackers.iter().map(|&i| self.nodes[i].name.clone()).collect();
            self.violation(format!(
                "two servers acknowledged writes at once: {names:?}"
            ));
        }
    }

    // ----- one agent cycle -----

    fn run_agent(&mut self, i: usize) {
        let now = self.now;
        let Some(agent) = self.nodes[i].agent.as_ref() else {
            return;
        };
        if self.nodes[i].agent_frozen_until > now {
            return;
        }
        if let Some((at, _, _)) = &agent.delayed {
            if *at <= now {
                let (_, decision, obs) = self.nodes[i]
                    .agent
                    .as_mut()
                    .and_then(|a| a.delayed.take())
                    .expect("a delayed decision");
                self.execute(i, &decision, &obs);
            }
            return;
        }
        if agent.next_cycle > now {
            return;
        }
        let state = agent.state.clone();
        let obs = self.observe(i);
        let mut decision = decide(&state, &obs);
        let mut obs = obs;
        if decision.actions.first() == Some(&Action::ProbePeers) {
            obs.peers = Some(self.peers(i));
            decision = decide(&state, &obs);
        }
        if decision.actions.first() == Some(&Action::PostFailsafe) {
            obs.failsafe.replies = Some(Vec::new());
            decision = decide(&state, &obs);
        }
        let name = self.nodes[i].name.clone();
        let interesting = decision.actions.iter().any(|a| {
            !matches!(
                a,
                Action::SyncSlots(_) | Action::WriteStatus | Action::ApplyConfig { .. }
            )
        });
        let a = self.nodes[i].agent.as_mut().expect("agent");
        if interesting || decision.message != a.last_message {
            a.last_message = decision.message.clone();
            let actions: Vec<String> = decision
                .actions
                .iter()
                .filter(|a| !matches!(a, Action::SyncSlots(_)))
                .map(|a| format!("{a:?}"))
                .collect();
            let line = format!("{name}: {} {actions:?}", decision.message);
            self.log(line);
        }
        let node = &self.nodes[i];
        if node.delay_until > now {
            let at = now + node.delay_ms;
            if let Some(a) = self.nodes[i].agent.as_mut() {
                a.delayed = Some((at, decision, obs));
            }
            return;
        }
        self.execute(i, &decision, &obs);
    }

    fn observe(&mut self, i: usize) -> Observation {
        let now = self.now;
        let ttl = self.cfg.ttl;
        let reachable = self.etcd_ok(i);
        // The session: renew our lease, or get a new one.
        if reachable {
            let lease = self.nodes[i].agent.as_ref().and_then(|a| a.lease);
            let alive = lease.is_some_and(|l| self.etcd.leases.contains_key(&l));
            let id = match lease {
                Some(l) if alive => {
                    self.etcd.leases.insert(l, now + ttl * 1000);
                    l
                }
                _ => self.etcd.grant(now, ttl),
            };
            let a = self.nodes[i].agent.as_mut().expect("agent");
            a.lease = Some(id);
            a.renewed_at = Some(now);
        }
        let me = self.nodes[i].name.clone();
        let my_lease = self.nodes[i].agent.as_ref().and_then(|a| a.lease);
        let (dcs, lock) = if reachable {
            let mut cluster = self.etcd.cluster();
            let lock = match &cluster.leader {
                Some(l) if l.name == me => {
                    if Some(l.lease) != my_lease {
                        // A restarted agent moves the key it still holds to its lease.
                        let lease = my_lease.unwrap_or(0);
                        self.etcd.put("leader", me.clone(), lease);
                        cluster = self.etcd.cluster();
                    }
                    LockRenewal::Renewed
                }
                _ => LockRenewal::NotHeld,
            };
            (DcsView::Reachable(Box::new(cluster)), lock)
        } else {
            (
                DcsView::Unreachable("etcd does not answer".into()),
                LockRenewal::NotHeld,
            )
        };
        let pg = &self.nodes[i].pg;
        let local = if !pg.data {
            LocalPg::Empty
        } else {
            let process = match pg.proc {
                Proc::Stopped => PgProcess::Stopped,
                Proc::Running if pg.frozen(now) => PgProcess::NotReady,
                Proc::Running => PgProcess::Running(PgRunning {
                    in_recovery: !pg.primary,
                    timeline: pg.tl,
                    wal_position: lsn(pg.log.len()),
                    streaming: pg.streaming,
                    pending_restart: false,
                    server_version: 150018,
                    below_primary: Vec::new(),
                    history: if pg.primary || pg.streaming {
                        Vec::new()
                    } else {
                        pg.history.clone()
                    },
                    standbys: if pg.primary {
                        self.standbys_of(i)
                            .into_iter()
                            .map(|(r, sync_state)| StandbyConn {
                                name: self.nodes[r].name.clone(),
                                state: "streaming".into(),
                                sync_state,
                                flush_lsn: lsn(self.nodes[r].pg.log.len()),
                            })
                            .collect()
                    } else {
                        Vec::new()
                    },
                }),
            };
            let control = (pg.proc == Proc::Stopped).then(|| ControlSummary {
                was_primary: pg.primary,
                clean_shutdown: pg.clean,
                timeline: pg.tl,
                lsn: lsn(pg.log.len()),
            });
            LocalPg::Initialized {
                system_id: SYSID.into(),
                process,
                control,
            }
        };
        if let LocalPg::Initialized {
            process: PgProcess::Running(r),
            ..
        } = &local
        {
            let primary = !r.in_recovery;
            if let Some(a) = self.nodes[i].agent.as_mut() {
                a.last_role_primary = Some(primary);
            }
        }
        let dead_leader = self.prove_leader_dead(i, &dcs);
        let offset = self.nodes[i].clock_offset;
        let a = self.nodes[i].agent.as_mut().expect("agent");
        Observation {
            now: (EPOCH_MS as i64 + now as i64 + offset) as u64,
            me,
            nofailover: false,
            failover_priority: 1,
            replicatefrom: None,
            clone_without_leader: false,
            dcs,
            policy: self.policy.clone(),
            lock,
            local,
            job: a.job.as_ref().map(|j| j.job.clone()),
            finished: a.finished.take(),
            peers: None,
            request: None,
            watchdog: WatchdogView::Off,
            failsafe: FailsafeObs::default(),
            dead_leader,
            // The simulated nodes run with remove_data_directory_on_diverged_timelines: true.
            reclone_on_divergence: true,
        }
    }

    /// The agent's proof of a dead leader: its PostgreSQL and REST ports refuse connections
    /// (processes gone, host up and reachable), seen from a replica that stopped streaming.
    /// What node `i`'s own probe finds (`GET /leader-refusing`): the leader named in `c`, when
    /// it is a running replica that stopped streaming and the leader's ports refuse
    /// connections (its processes gone, its host up and reachable from `i`).
    fn probe_refusing(&self, i: usize, c: &Cluster) -> Option<String> {
        let pg = &self.nodes[i].pg;
        let replica = pg.running(self.now) && !pg.primary;
        let leader = c.leader.as_ref()?;
        let l = self.index(&leader.name)?;
        if !pgha_core::should_probe_leader(replica, pg.streaming, self.policy.pause, false)
            || l == i
        {
            return None;
        }
        let n = &self.nodes[l];
        let refused =
            self.up(l) && self.link(i, l) && n.agent.is_none() && n.pg.proc == Proc::Stopped;
        refused.then(|| leader.name.clone())
    }

    /// The agent's proof of a dead leader: its own probe, the other members' answers (a member
    /// whose agent is down or frozen, or that we cannot reach, does not answer), judged by the
    /// core as the agent does.
    fn prove_leader_dead(&mut self, i: usize, dcs: &DcsView) -> Option<String> {
        let DcsView::Reachable(c) = dcs else {
            return None;
        };
        let own = self.probe_refusing(i, c);
        let answers: Vec<pgha_core::RefusalAnswer> = c
            .members
            .iter()
            .filter_map(|m| self.index(&m.name).map(|o| (m, o)))
            .filter(|(_, o)| *o != i)
            .map(|(m, o)| {
                let n = &self.nodes[o];
                let answers =
                    self.link(i, o) && n.agent.is_some() && n.agent_frozen_until <= self.now;
                pgha_core::RefusalAnswer {
                    member: m.name.clone(),
                    refusing: answers.then(|| self.probe_refusing(o, c)).flatten(),
                }
            })
            .collect();
        let me = self.nodes[i].name.clone();
        let a = self.nodes[i].agent.as_mut()?;
        let verdict =
            pgha_core::judge_dead_leader(c, &me, own.as_deref(), &answers, a.refusing_rechecks);
        a.refusing_rechecks = verdict.rechecks;
        a.recheck_refusing = verdict.recheck;
        verdict.proven
    }

    fn peers(&self, i: usize) -> Vec<PeerStatus> {
        let now = self.now;
        (0..self.nodes.len())
            .filter(|&p| p != i)
            .map(|p| {
                let n = &self.nodes[p];
                let answers = self.link(i, p) && n.agent.is_some() && n.agent_frozen_until <= now;
                PeerStatus {
                    name: n.name.clone(),
                    reply: answers.then(|| PeerReply {
                        running: n.pg.running(now),
                        is_primary: n.pg.running(now) && n.pg.primary,
                        wal_position: lsn(n.pg.log.len()),
                        nofailover: false,
                        failover_priority: 1,
                        timeline: n.pg.tl,
                    }),
                }
            })
            .collect()
    }

    fn execute(&mut self, i: usize, decision: &Decision, obs: &Observation) {
        let now = self.now;
        if let Some(a) = self.nodes[i].agent.as_mut() {
            a.state = decision.next.clone();
            a.next_cycle = now
                + if decision.recheck_soon || std::mem::take(&mut a.recheck_refusing) {
                    RECHECK_SOON_MS
                } else {
                    self.cfg.loop_wait * 1000
                };
        }
        for action in &decision.actions {
            match self.act(i, action, obs) {
                Ok(true) => {}
                Ok(false) => {
                    if let Some(a) = self.nodes[i].agent.as_mut() {
                        a.state.has_lock = false;
                        a.state.configured_as = None;
                    }
                    break;
                }
                Err(e) => {
                    let name = self.nodes[i].name.clone();
                    self.log(format!("{name}: {action:?} failed: {e}"));
                    if let Some(a) = self.nodes[i].agent.as_mut() {
                        a.state.configured_as = None;
                        if matches!(action, Action::AcquireLock) {
                            a.state.has_lock = false;
                        }
                    }
                    break;
                }
            }
        }
        self.update_guard(i);
        self.publish(i);
    }

    fn dcs(&self, i: usize) -> Result<(), String> {
        if self.etcd_ok(i) {
            Ok(())
        } else {
            Err("etcd does not answer".into())
        }
    }

    fn act(&mut self, i: usize, action: &Action, obs: &Observation) -> Result<bool, String> {
        let now = self.now;
        let me = self.nodes[i].name.clone();
        match action {
            Action::TakeInitializeLock => {
                self.dcs(i)?;
                if self.etcd.get("initialize").is_some() {
                    return Ok(false);
                }
                self.etcd.put("initialize", String::new(), 0);
                Ok(true)
            }
            Action::CancelInitialization => {
                self.dcs(i)?;
                self.etcd.delete("initialize");
                Ok(true)
            }
            Action::AcquireLock => {
                self.dcs(i)?;
                if self.etcd.get("leader").is_some() {
                    self.log(format!("{me}: lost the race for the lock"));
                    return Ok(false);
                }
                let lease = match self.nodes[i].agent.as_ref().and_then(|a| a.lease) {
                    Some(l) if self.etcd.leases.contains_key(&l) => l,
                    _ => {
                        let l = self.etcd.grant(now, self.cfg.ttl);
                        let a = self.nodes[i].agent.as_mut().expect("agent");
                        a.lease = Some(l);
                        a.renewed_at = Some(now);
                        l
                    }
                };
                self.etcd.put("leader", me.clone(), lease);
                if self.etcd.get("failover").is_some_and(|f| f.0 != "{}") {
                    self.etcd.put("failover", "{}".into(), 0);
                }
                self.log(format!("{me}: took the leader lock"));
                self.wake_all();
                Ok(true)
            }
            Action::ReleaseLock => {
                self.dcs(i)?;
                if self.etcd.get("leader").is_some_and(|l| l.0 == me) {
                    self.etcd.delete("leader");
                    self.log(format!("{me}: released the leader lock"));
                    self.wake_all();
                }
                Ok(true)
            }
            Action::RemoveDeadLeader { leader, lease } => {
                self.dcs(i)?;
                if self
                    .etcd
                    .get("leader")
                    .is_some_and(|l| l.0 == *leader && l.1 == *lease)
                {
                    self.etcd.delete("leader");
                    self.log(format!("{me}: removed dead leader {leader}'s key"));
                    self.wake_all();
                }
                Ok(true)
            }
            Action::ActivateWatchdog | Action::ProbePeers | Action::PostFailsafe => Ok(true),
            Action::SyncSlots(_) => Ok(true),
            Action::StartJob(kind) => {
                if matches!(kind, JobKind::Restart { .. }) {
                    self.nodes[i].pg.stop(true);
                }
                let d = self.job_duration(i, kind);
                let a = self.nodes[i].agent.as_mut().expect("agent");
                a.job = Some(SimJob {
                    job: Job {
                        kind: kind.clone(),
                        started_at: obs.now,
                    },
                    done_at: now + d,
                });
                Ok(true)
            }
            Action::Stop { mode } => {
                let frozen = self.nodes[i].pg.frozen(now);
                match mode {
                    StopMode::Fast if frozen => Err("pg_ctl stop timed out".into()),
                    StopMode::Fast => {
                        // A clean shutdown sends every WAL record to the streaming replicas.
                        self.replicate();
                        self.nodes[i].pg.stop(true);
                        Ok(true)
                    }
                    StopMode::Immediate => {
                        self.nodes[i].pg.stop(false);
                        Ok(true)
                    }
                }
            }
            Action::KillPostgres => {
                self.nodes[i].pg.stop(false);
                Ok(true)
            }
            Action::Follow { leader } => {
                self.nodes[i].pg.upstream = self.index(leader);
                Ok(true)
            }
            Action::ApplyConfig { role } => {
                match role {
                    Role::Primary => {
                        let ssn = self.nodes[i]
                            .agent
                            .as_ref()
                            .and_then(|a| a.state.synchronous_standby_names.clone())
                            .unwrap_or_default();
                        self.nodes[i].pg.ssn = ssn;
                    }
                    Role::Replica { leader } => {
                        if let Some(l) = leader.as_deref().and_then(|l| self.index(l)) {
                            self.nodes[i].pg.upstream = Some(l);
                        }
                    }
                    Role::StandbyLeader => {}
                }
                Ok(true)
            }
            Action::RemoveDataDirectory => {
                let pg = &mut self.nodes[i].pg;
                pg.stop(false);
                pg.data = false;
                pg.log.clear();
                pg.history.clear();
                pg.tl = 1;
                Ok(true)
            }
            Action::WriteStatus => {
                self.dcs(i)?;
                let at = lsn(self.nodes[i].pg.log.len());
                self.etcd.put("status", format!(r#"{{"optime":{at}}}"#), 0);
                Ok(true)
            }
            Action::UpdateHistory => {
                self.dcs(i)?;
                let entries: Vec<String> = self.nodes[i]
                    .pg
                    .history
                    .iter()
                    .map(|(tl, end)| {
                        format!(r#"[{tl},{end},"no recovery target specified","2026-12-07T00:00:00+00:00","{me}"]"#)
                    })
                    .collect();
                self.etcd
                    .put("history", format!("[{}]", entries.join(",")), 0);
                Ok(true)
            }
            Action::SetInitialize(s) => {
                self.dcs(i)?;
                self.etcd.put("initialize", s.clone(), 0);
                Ok(true)
            }
            Action::ClearFailover => {
                self.dcs(i)?;
                self.etcd.put("failover", "{}".into(), 0);
                Ok(true)
            }
            Action::WriteInitialConfig => Ok(true),
            Action::WriteSyncKey { standbys, quorum } => {
                self.dcs(i)?;
                let list = if standbys.is_empty() {
                    "null".to_string()
                } else {
                    format!("\"{}\"", standbys.join(","))
                };
                self.etcd.put(
                    "sync",
                    format!(r#"{{"leader":"{me}","quorum":{quorum},"sync_standby":{list}}}"#),
                    0,
                );
                Ok(true)
            }
            Action::DeleteSyncKey => {
                self.dcs(i)?;
                self.etcd.delete("sync");
                Ok(true)
            }
            Action::WriteFailsafe(_) => Ok(true),
            Action::Exit(msg) => {
                self.violation(format!("{me} exited: {msg}"));
                self.nodes[i].agent = None;
                self.nodes[i].agent_restart_at = Some(now + 5_000);
                Ok(false)
            }
        }
    }

    fn update_guard(&mut self, i: usize) {
        let Some(a) = self.nodes[i].agent.as_ref() else {
            return;
        };
        let plan = guard_plan(&GuardInputs {
            enabled: self.cfg.lease_guard,
            paused: false,
            leading: a.state.has_lock,
            postmaster_runs: self.nodes[i].pg.proc == Proc::Running,
            ran_as_primary: a.last_role_primary == Some(true),
            starting_primary: a.job.as_ref().is_some_and(|j| j.job.kind.starts_primary()),
            renewed_boot_ms: a.renewed_at,
            ttl: self.cfg.ttl,
            margin_ms: GUARD_MARGIN_MS,
        });
        match plan {
            GuardPlan::Disarm => self.nodes[i].guard = None,
            GuardPlan::Keep => {}
            GuardPlan::Arm { deadline_ms } | GuardPlan::ArmDataDir { deadline_ms } => {
                self.nodes[i].guard = Some(deadline_ms)
            }
        }
    }

    fn publish(&mut self, i: usize) {
        if !self.etcd_ok(i) {
            return;
        }
        let now = self.now;
        let n = &self.nodes[i];
        let Some(a) = n.agent.as_ref() else {
            return;
        };
        let Some(lease) = a.lease.filter(|l| self.etcd.leases.contains_key(l)) else {
            return;
        };
        let state = match a.job.as_ref().map(|j| &j.job.kind) {
            Some(JobKind::Clone { .. }) => "creating replica",
            Some(JobKind::Restart { .. }) => "restarting",
            Some(JobKind::Promote) => "running",
            Some(_) => "starting",
            None => match n.pg.proc {
                _ if !n.pg.data => "stopped",
                Proc::Running if n.pg.frozen(now) => "starting",
                Proc::Running => "running",
                Proc::Stopped if !n.pg.clean && n.pg.primary => "crashed",
                Proc::Stopped => "stopped",
            },
        };
        let role = if a.last_role_primary == Some(true) {
            "primary"
        } else {
            "replica"
        };
        let k = i + 1;
        let value = format!(
            r#"{{"conn_url":"postgres://10.0.0.{k}:5432/postgres","api_url":"http://10.0.0.{k}:8008/patroni","state":"{state}","role":"{role}","xlog_location":{},"timeline":{}}}"#,
            lsn(n.pg.log.len()),
            n.pg.tl
        );
        let key = format!("members/{}", n.name);
        if self
            .etcd
            .get(&key)
            .is_none_or(|v| v.0 != value || v.1 != lease)
        {
            self.etcd.put(&key, value, lease);
        }
    }

    // ----- convergence -----

    fn converged(&self) -> bool {
        self.why_not_converged().is_empty()
    }

    fn why_not_converged(&self) -> String {
        let now = self.now;
        let Some((leader, ..)) = self.etcd.get("leader") else {
            return "no leader key".into();
        };
        let Some(l) = self.index(leader) else {
            return format!("leader key names {leader}");
        };
        let lp = &self.nodes[l].pg;
        if !lp.writable(now) || self.nodes[l].agent.is_none() {
            return format!("{leader} holds the key but is not a running primary");
        }
        for (r, n) in self.nodes.iter().enumerate() {
            if r == l {
                continue;
            }
            if n.agent.is_none() {
                return format!("{}: agent not running", n.name);
            }
            let pg = &n.pg;
            if !pg.running(now) || pg.primary {
                return format!("{}: not a running replica", n.name);
            }
            if pg.upstream != Some(l) || !pg.streaming {
                let upstream = pg.upstream.map(|u| self.nodes[u].name.as_str());
                return format!(
                    "{}: not streaming from {leader} (upstream {upstream:?}, {} writes on TL {} \
                     against the leader's {} on TL {}, history {:?} vs {:?})",
                    n.name,
                    pg.log.len(),
                    pg.tl,
                    lp.log.len(),
                    lp.tl,
                    pg.history,
                    lp.history
                );
            }
        }
        String::new()
    }

    fn check_final_log(&mut self) {
        if self.cfg.mode == Mode::Async {
            return;
        }
        let Some(l) = self
            .etcd
            .get("leader")
            .and_then(|(name, ..)| self.index(name))
        else {
            return;
        };
        let log: BTreeSet<u64> = self.nodes[l].pg.log.iter().copied().collect();
        let missing = self.acked.keys().filter(|id| !log.contains(id)).count();
        if missing > 0 {
            let name = self.nodes[l].name.clone();
            self.violation(format!(
                "the converged leader {name} lacks {missing} acknowledged writes"
            ));
        }
    }
}

/// Runs one seed with `cfg`.
pub fn simulate(cfg: &SimConfig, seed: u64) -> Outcome {
    Sim::new(cfg.clone(), seed).run(seed)
}

/// Runs `faults` instead of the seed's random schedule (the seed still drives timings).
pub fn simulate_faults(cfg: &SimConfig, seed: u64, faults: Vec<Fault>) -> Outcome {
    let mut sim = Sim::new(cfg.clone(), seed);
    sim.faults = faults;
    sim.run(seed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standby_names_parse_as_postgres_reads_them() {
        assert_eq!(parse_ssn(""), None);
        assert_eq!(parse_ssn("*"), Some((false, 1, vec![])));
        assert_eq!(parse_ssn("pg2"), Some((false, 1, vec!["pg2".into()])));
        assert_eq!(
            parse_ssn("2 (pg2,\"pg3\")"),
            Some((false, 2, vec!["pg2".into(), "pg3".into()]))
        );
        assert_eq!(
            parse_ssn("ANY 1 (pg2,pg3)"),
            Some((true, 1, vec!["pg2".into(), "pg3".into()]))
        );
    }

    #[test]
    fn a_quiet_cluster_converges_and_acknowledges_writes() {
        let cfg = SimConfig {
            max_faults: 0,
            ..SimConfig::default()
        };
        let mut sim = Sim::new(cfg, 1);
        sim.faults.clear();
        let out = sim.run(1);
        assert!(out.ok(), "{}", out.report(60));
        assert!(out.acknowledged > 100, "{}", out.report(60));
    }

    fn frozen_leader_agent() -> Vec<Fault> {
        vec![Fault {
            at: 10_000,
            until: 35_000,
            node: 0,
            at_leader: true,
            kind: FaultKind::FreezeAgent,
            amount: 0,
        }]
    }

    #[test]
    fn without_the_lease_guard_a_frozen_leader_agent_leaves_two_primaries() {
        // The checker can fail: with the fence off, the old primary keeps acknowledging
        // writes after another node promoted.
        let cfg = SimConfig {
            mode: Mode::Async,
            lease_guard: false,
            ..SimConfig::default()
        };
        let out = simulate_faults(&cfg, 3, frozen_leader_agent());
        assert!(
            out.violations
                .iter()
                .any(|v| v.what.contains("two servers acknowledged writes")),
            "{}",
            out.report(80)
        );
        // With it, the same run is safe.
        let cfg = SimConfig {
            lease_guard: true,
            ..cfg
        };
        let out = simulate_faults(&cfg, 3, frozen_leader_agent());
        assert!(out.ok(), "{}", out.report(80));
    }

    #[test]
    fn the_same_seed_replays_the_same_run() {
        let cfg = SimConfig::default();
        let a = simulate(&cfg, 42);
        let b = simulate(&cfg, 42);
        assert_eq!(a.trace, b.trace);
        assert_eq!(a.acknowledged, b.acknowledged);
    }
}
