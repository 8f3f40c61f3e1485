//! The write load of a drill: a writer that inserts one row per interval through whichever
//! node the REST API calls the primary and records every acknowledged id, and a probe that
//! tries a write on every node every 100 ms and records each commit, so two writable nodes show.
//!
//! A commit counts only when PostgreSQL acknowledged it within the bound: in synchronous mode a
//! commit that waits for a standby that never comes is not a write the application saw.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;
use tokio_postgres::Client;

use super::lab::Node;
use super::report::Commit;

/// The table the writer fills; ids are the writer's, so every acknowledged one is known.
pub const ROWS_TABLE: &str = "pgha_drill";
pub const PROBE_TABLE: &str = "pgha_drill_probe";
pub const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS pgha_drill(id bigint PRIMARY KEY, \
     drill text NOT NULL, at timestamptz NOT NULL DEFAULT now()); \
     CREATE TABLE IF NOT EXISTS pgha_drill_probe(node text NOT NULL, \
     at timestamptz NOT NULL DEFAULT now())";

const PROBE_EVERY: Duration = Duration::from_millis(100);
/// A probe commit slower than this is not counted (nor waited for).
const PROBE_BOUND: Duration = Duration::from_secs(1);
const WRITE_BOUND: Duration = Duration::from_secs(2);
const CONNECT_BOUND: Duration = Duration::from_secs(1);
const REST_BOUND: Duration = Duration::from_millis(400);

/// How to reach one node's PostgreSQL and REST API.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub index: usize,
    pub name: String,
    host: String,
    pg_port: u16,
    rest_port: u16,
    user: pgha_postgres::PgUser,
    rest_scheme: &'static str,
    rest_tls: pgha_tls::ClientTls,
}

impl From<&Node> for Endpoint {
    fn from(n: &Node) -> Self {
        Endpoint {
            index: n.index,
            name: n.name.clone(),
            host: n.host.clone(),
            pg_port: n.pg_port,
            rest_port: n.rest_port,
            user: pgha_postgres::PgUser {
                username: n.user.clone(),
                password: n.password.clone(),
                options: n.pg_options.clone(),
            },
            rest_scheme: n.rest_scheme,
            rest_tls: n.rest_tls.clone(),
        }
    }
}

/// A client plus the task driving its connection; dropping it closes the socket at once
/// (a connection to a frozen server would otherwise linger).
pub struct Conn {
    pub client: Client,
    task: JoinHandle<()>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Endpoint {
    pub async fn connect(&self) -> Result<Conn, String> {
        let mut cfg = tokio_postgres::Config::new();
        cfg.host(&self.host)
            .port(self.pg_port)
            .user(&self.user.username)
            .dbname("postgres")
            .application_name("pghactl-drill")
            .connect_timeout(CONNECT_BOUND);
        if let Some(p) = &self.user.password {
            cfg.password(p);
        }
        let tls = pgha_postgres::tls::configure(&mut cfg, &self.user, &self.host)
            .map_err(|e| format!("{}: {e}", self.name))?;
        let (client, connection) = tokio::time::timeout(CONNECT_BOUND, cfg.connect(tls))
            .await
            .map_err(|_| format!("{}: connect timed out", self.name))?
            .map_err(|e| format!("{}: {e}", self.name))?;
        let task = tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(Conn { client, task })
    }

    /// Does `GET /primary` answer 200 (this agent runs the writable primary)?
    async fn is_primary(&self, http: &reqwest::Client) -> bool {
        let url = format!(
            "{}://{}:{}/primary",
            self.rest_scheme, self.host, self.rest_port
        );
        matches!(http.get(url).send().await, Ok(r) if r.status().as_u16() == 200)
    }
}

/// What the load saw, times since the load started.
#[derive(Debug, Default)]
pub struct LoadLog {
    /// (id, commit) of every row the writer saw acknowledged.
    pub acked: Vec<(i64, Commit)>,
    /// Every acknowledged probe commit.
    pub probes: Vec<Commit>,
    pub last_writer_error: Option<String>,
}

pub struct Load {
    pub started: Instant,
    stop: Arc<AtomicBool>,
    pub log: Arc<Mutex<LoadLog>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Load {
    /// Starts the writer (ids from `first_id`, tagged `drill`) and one probe per node.
    pub fn start(nodes: &[Endpoint], drill: &str, first_id: i64, interval: Duration) -> Load {
        let started = Instant::now();
        let stop = Arc::new(AtomicBool::new(false));
        let log: Arc<Mutex<LoadLog>> = Arc::default();
        let mut tasks = vec![tokio::spawn(writer(
            nodes.to_vec(),
            drill.to_string(),
            first_id,
            interval,
            started,
            stop.clone(),
            log.clone(),
        ))];
        for ep in nodes {
            tasks.push(tokio::spawn(probe(
                ep.clone(),
                started,
                stop.clone(),
                log.clone(),
            )));
        }
        Load {
            started,
            stop,
            log,
            tasks,
        }
    }

    pub fn now(&self) -> Duration {
        self.started.elapsed()
    }

    pub fn acked_count(&self) -> usize {
        self.log.lock().map(|l| l.acked.len()).unwrap_or(0)
    }

    /// Stops every task (an insert in flight is abandoned: not acknowledged) and returns the log.
    pub async fn finish(mut self) -> LoadLog {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks.drain(..) {
            // Each task looks at `stop` at least every WRITE_BOUND + CONNECT_BOUND + REST_BOUND × n.
            let abort = t.abort_handle();
            if tokio::time::timeout(Duration::from_secs(10), t)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
        std::mem::take(&mut *self.log.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in &self.tasks {
            t.abort();
        }
    }
}

async fn writer(
    nodes: Vec<Endpoint>,
    drill: String,
    first_id: i64,
    interval: Duration,
    started: Instant,
    stop: Arc<AtomicBool>,
    log: Arc<Mutex<LoadLog>>,
) {
    // The lab's REST TLS (ctl.* of node1.yml): the same for every node.
    let tls = nodes
        .first()
        .map(|n| n.rest_tls.clone())
        .unwrap_or_default();
    let http =
        match crate::rest::http_client(&tls).and_then(|b| Ok(b.timeout(REST_BOUND).build()?)) {
            Ok(h) => h,
            Err(e) => {
                log.lock().unwrap().last_writer_error = Some(e.to_string());
                return;
            }
        };
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut conn: Option<(usize, Conn)> = None;
    let mut id = first_id;
    let sql = format!("INSERT INTO {ROWS_TABLE}(id, drill) VALUES ($1, $2)");
    while !stop.load(Ordering::Relaxed) {
        tick.tick().await;
        if conn.is_none() {
            conn = find_primary(&nodes, &http).await;
            if conn.is_none() {
                continue;
            }
        }
        let Some((node, c)) = conn.as_ref() else {
            continue;
        };
        let begin = started.elapsed();
        let result =
            tokio::time::timeout(WRITE_BOUND, c.client.execute(sql.as_str(), &[&id, &drill])).await;
        match result {
            Ok(Ok(_)) => {
                let commit = Commit {
                    node: *node,
                    start: begin,
                    end: started.elapsed(),
                };
                log.lock().unwrap().acked.push((id, commit));
            }
            Ok(Err(e)) => {
                log.lock().unwrap().last_writer_error = Some(pg_error(&e));
                conn = None;
            }
            Err(_) => {
                log.lock().unwrap().last_writer_error = Some("insert timed out".into());
                conn = None;
            }
        }
        // An id whose insert failed or timed out may still have committed: never reuse it.
        id += 1;
    }
}

/// PostgreSQL's own message when there is one (tokio-postgres displays just "db error").
pub fn pg_error(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{}: {}", db.severity(), db.message()),
        None => e.to_string(),
    }
}

/// A connection to the node whose agent answers `GET /primary` with 200.
async fn find_primary(nodes: &[Endpoint], http: &reqwest::Client) -> Option<(usize, Conn)> {
    for ep in nodes {
        if ep.is_primary(http).await {
            if let Ok(c) = ep.connect().await {
                return Some((ep.index, c));
            }
        }
    }
    None
}

async fn probe(ep: Endpoint, started: Instant, stop: Arc<AtomicBool>, log: Arc<Mutex<LoadLog>>) {
    let mut tick = tokio::time::interval(PROBE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let sql = format!("INSERT INTO {PROBE_TABLE}(node) VALUES ($1)");
    let mut conn: Option<Conn> = None;
    while !stop.load(Ordering::Relaxed) {
        tick.tick().await;
        if conn.as_ref().is_some_and(|c| c.client.is_closed()) {
            conn = None;
        }
        if conn.is_none() {
            conn = ep.connect().await.ok();
        }
        let Some(c) = conn.as_ref() else {
            continue;
        };
        let begin = started.elapsed();
        match tokio::time::timeout(PROBE_BOUND, c.client.execute(sql.as_str(), &[&ep.name])).await {
            Ok(Ok(_)) => log.lock().unwrap().probes.push(Commit {
                node: ep.index,
                start: begin,
                end: started.elapsed(),
            }),
            // A read-only replica refuses the INSERT on a healthy connection: keep it, so a
            // promotion is seen on the same session without a new backend every 100 ms.
            Ok(Err(_)) => {}
            Err(_) => conn = None,
        }
    }
}
