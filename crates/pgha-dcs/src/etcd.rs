use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, Error as EtcdError, EventType, GetOptions,
    LeaseKeepAliveStream, LeaseKeeper, PutOptions, ResponseHeader, Txn, TxnOp, TxnOpResponse,
    WatchOptions,
};
use pgha_types::{Cluster, KeyValue, MemberData};
use tokio::sync::{Mutex, Notify};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use crate::cache::KeyCache;
use crate::DcsError;

/// Where and how to reach etcd, and under which prefix the cluster lives.
#[derive(Clone)]
pub struct EtcdSettings {
    /// `http://host:port` URLs; requests move to the next one when one fails.
    pub endpoints: Vec<String>,
    pub username: Option<String>,
    pub password: Option<String>,
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// `<namespace>/<scope>/`, with leading and trailing slash: `/service/batman/`.
    pub prefix: String,
    /// Budget for one request, across endpoints and retries.
    pub request_timeout: Duration,
}

impl std::fmt::Debug for EtcdSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdSettings")
            .field("endpoints", &self.endpoints)
            .field("username", &self.username)
            // Whether it is set, never its value: Debug output ends up in logs.
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("ca_file", &self.ca_file)
            .field("cert_file", &self.cert_file)
            .field("key_file", &self.key_file)
            .field("prefix", &self.prefix)
            .field("request_timeout", &self.request_timeout)
            .finish()
    }
}

/// Keys whose change should wake the HA loop before `loop_wait` runs out. Member keys change
/// every cycle on a busy cluster and are left out on purpose.
const WAKE_KEYS: &[&str] = &["leader", "failover", "config", "initialize"];

pub struct EtcdDcs {
    /// Swapped by [`EtcdDcs::reload_tls`]; each request clones the current one.
    client: Arc<std::sync::RwLock<Client>>,
    /// Told when `client` was swapped, so the watch moves to the new connection.
    reconnected: Arc<Notify>,
    settings: EtcdSettings,
    /// (lease id, ttl seconds) of this agent's session.
    lease: Mutex<Option<(i64, u64)>>,
    /// The open keep-alive stream of that lease: renewing on it is one message each way,
    /// where a new stream per renewal costs a stream setup and teardown every loop.
    keeper: Mutex<Option<(LeaseKeeper, LeaseKeepAliveStream)>>,
    /// `clock::boottime_ms` taken just before the request that last granted or renewed that
    /// lease (as etcd confirmed it), 0 for none: the lease cannot expire before this + ttl.
    lease_renewed_boot_ms: AtomicU64,
    retry_budget_ms: AtomicU64,
    /// The cluster as the watch keeps it (only while `watch` runs).
    cache: Arc<std::sync::Mutex<KeyCache>>,
    /// Revision of our newest write under the prefix: a cached view older than it is not used.
    written: AtomicI64,
}

/// A background watch on the cluster prefix; dropping it stops the watch.
pub struct WatchHandle(JoinHandle<()>);

impl Drop for WatchHandle {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl EtcdDcs {
    pub async fn connect(settings: EtcdSettings) -> Result<EtcdDcs, DcsError> {
        let client = open(&settings).await?;
        let budget = settings.request_timeout.as_millis() as u64;
        Ok(EtcdDcs {
            client: Arc::new(std::sync::RwLock::new(client)),
            reconnected: Arc::default(),
            settings,
            lease: Mutex::new(None),
            keeper: Mutex::new(None),
            lease_renewed_boot_ms: AtomicU64::new(0),
            retry_budget_ms: AtomicU64::new(budget),
            cache: Arc::default(),
            written: AtomicI64::new(0),
        })
    }

    /// Reads the TLS files (`cacert`, `cert`, `key`) again and moves to a new connection made
    /// with them (SIGHUP: a renewed client certificate is used without a restart). The new
    /// connection must answer a read under the prefix first: files that do not load, or that
    /// etcd does not accept, leave the current connection in place and are the error.
    /// `Ok(false)`: plain http, nothing to reload.
    pub async fn reload_tls(&self) -> Result<bool, DcsError> {
        if !tls_in_use(&self.settings) {
            return Ok(false);
        }
        let client = open(&self.settings).await?;
        let endpoints = self.settings.endpoints.join(",");
        let mut probe_client = client.clone();
        let probe = probe_client.get(
            self.settings.prefix.as_str(),
            Some(GetOptions::new().with_count_only()),
        );
        match tokio::time::timeout(self.settings.request_timeout, probe).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(classify(&endpoints, e)),
            Err(_) => {
                return Err(DcsError::Unreachable {
                    endpoints,
                    detail: "no answer on the new connection".into(),
                })
            }
        }
        *self.client.write().unwrap_or_else(|p| p.into_inner()) = client;
        // The lease keep-alive stream and the watch run on the old connection: both move over
        // (the next renewal opens a new stream; the watch restarts with a fresh read).
        *self.keeper.lock().await = None;
        self.reconnected.notify_waiters();
        Ok(true)
    }

    fn current_client(&self) -> Client {
        self.client
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn prefix(&self) -> &str {
        &self.settings.prefix
    }

    /// How long one operation may keep retrying (the dynamic `retry_timeout`).
    pub fn set_retry_timeout(&self, d: Duration) {
        self.retry_budget_ms
            .store(d.as_millis() as u64, Ordering::Relaxed);
    }

    fn key(&self, rel: &str) -> String {
        format!("{}{}", self.settings.prefix, rel)
    }

    /// Runs `op` until it succeeds, fails for a reason retrying cannot fix, or the retry budget
    /// is spent. Each attempt has its own timeout so a dead endpoint cannot eat the budget.
    async fn call<T, F, Fut>(&self, what: &str, op: F) -> Result<T, DcsError>
    where
        F: Fn(Client) -> Fut,
        Fut: Future<Output = Result<T, EtcdError>>,
    {
        let budget = Duration::from_millis(self.retry_budget_ms.load(Ordering::Relaxed));
        let deadline = tokio::time::Instant::now() + budget;
        let per_attempt = attempt_timeout(budget);
        let endpoints = self.settings.endpoints.join(",");
        let mut last = String::from("no attempt made");
        loop {
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Err(DcsError::Unreachable {
                    endpoints,
                    detail: format!("{what}: {last}"),
                });
            }
            let this_attempt = per_attempt.min(deadline - now);
            match tokio::time::timeout(this_attempt, op(self.current_client())).await {
                Ok(Ok(v)) => return Ok(v),
                Ok(Err(e)) => match classify(&endpoints, e) {
                    DcsError::Unreachable { detail, .. } => last = detail,
                    other => return Err(other),
                },
                Err(_) => last = format!("no answer within {}ms", this_attempt.as_millis()),
            }
            debug!(what, error = %last, "etcd request failed, retrying");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Reads every key under the cluster prefix in one request.
    pub async fn load_cluster(&self) -> Result<Cluster, DcsError> {
        let prefix = self.settings.prefix.clone();
        let (keys, _) = self
            .call("read cluster", |c| {
                let prefix = prefix.clone();
                async move { read_prefix(c, &prefix).await }
            })
            .await?;
        Ok(Cluster::from_keys(&keys))
    }

    /// The cluster as the watch has kept it, without a request; a range read when the watch is
    /// not in place or has not yet delivered our own newest write. The HA loop calls this only
    /// right after renewing the lease, so etcd's quorum answered a moment ago.
    pub async fn load_cluster_cached(&self) -> Result<Cluster, DcsError> {
        let min = self.written.load(Ordering::Acquire);
        let cached = self
            .cache
            .lock()
            .map(|mut c| c.snapshot(min))
            .unwrap_or_default();
        match cached {
            Some(c) => Ok(c),
            None => self.load_cluster().await,
        }
    }

    /// Remembers the revision a successful write of ours under the prefix created.
    fn wrote(&self, header: Option<&ResponseHeader>) {
        if let Some(h) = header {
            self.written.fetch_max(h.revision(), Ordering::AcqRel);
        }
    }

    /// Our lease id, creating a lease with `ttl` seconds when there is none yet or the ttl
    /// changed (the old lease is left to expire: keys move to the new one on their next write).
    pub async fn ensure_lease(&self, ttl: u64) -> Result<i64, DcsError> {
        let mut guard = self.lease.lock().await;
        if let Some((id, lease_ttl)) = *guard {
            if lease_ttl == ttl {
                return Ok(id);
            }
        }
        let asked = crate::clock::boottime_ms();
        let resp = self
            .call("grant lease", |mut c| async move {
                c.lease_grant(ttl as i64, None).await
            })
            .await?;
        info!("created etcd lease {:x} with ttl {ttl}s", resp.id());
        *guard = Some((resp.id(), ttl));
        self.lease_renewed_boot_ms.store(asked, Ordering::Release);
        Ok(resp.id())
    }

    /// When our current lease was last granted or renewed (`clock::boottime_ms` before the
    /// request that etcd answered): it, and every key on it, lasts at least `ttl` from then.
    pub fn lease_renewed_boot_ms(&self) -> Option<u64> {
        Some(self.lease_renewed_boot_ms.load(Ordering::Acquire)).filter(|&t| t > 0)
    }

    pub async fn lease_id(&self) -> Option<i64> {
        self.lease.lock().await.map(|(id, _)| id)
    }

    /// Renews our lease. `LeaseExpired` means the keys on it are gone; the next
    /// `ensure_lease` creates a fresh one.
    pub async fn refresh_lease(&self) -> Result<(), DcsError> {
        let Some((id, _)) = *self.lease.lock().await else {
            return Err(DcsError::LeaseExpired(0));
        };
        let mut keeper = self.keeper.lock().await;
        if let Some((k, stream)) = keeper.as_mut().filter(|(k, _)| k.id() == id) {
            let budget = Duration::from_millis(self.retry_budget_ms.load(Ordering::Relaxed));
            let asked = crate::clock::boottime_ms();
            let renewal = async {
                k.keep_alive().await?;
                stream.message().await
            };
            match tokio::time::timeout(attempt_timeout(budget), renewal).await {
                Ok(Ok(Some(resp))) if resp.ttl() > 0 => {
                    self.lease_renewed_boot_ms.store(asked, Ordering::Release);
                    return Ok(());
                }
                Ok(Ok(Some(_))) => {
                    *keeper = None;
                    drop(keeper);
                    return Err(self.lease_gone(id).await);
                }
                // A broken or silent stream: open a new one below, with the usual retries.
                Ok(Ok(None)) | Ok(Err(_)) | Err(_) => *keeper = None,
            }
        }
        // Opening the stream waits for etcd's answer to a first keep-alive, so it renews the
        // lease as well: its time (taken before the attempt that succeeded) is the new renewal.
        // Without it a leader whose stream broke (etcd lost quorum, say) would count from its
        // last renewal before the outage and its lease guard would fire at once.
        let attempt_asked = AtomicU64::new(0);
        let opened = self
            .call("renew lease", |mut c| {
                attempt_asked.store(crate::clock::boottime_ms(), Ordering::Release);
                async move {
                    match c.lease_keep_alive(id).await {
                        Ok(kept) => Ok(Some(kept)),
                        Err(EtcdError::LeaseKeepAliveError(_)) => Ok(None),
                        Err(e) => Err(e),
                    }
                }
            })
            .await?;
        match opened {
            Some(kept) => {
                *keeper = Some(kept);
                self.lease_renewed_boot_ms
                    .store(attempt_asked.load(Ordering::Acquire), Ordering::Release);
                Ok(())
            }
            None => {
                drop(keeper);
                Err(self.lease_gone(id).await)
            }
        }
    }

    /// etcd no longer knows lease `id`: forget it so that `ensure_lease` grants a new one.
    async fn lease_gone(&self, id: i64) -> DcsError {
        let mut guard = self.lease.lock().await;
        if guard.map(|(i, _)| i) == Some(id) {
            *guard = None;
            self.lease_renewed_boot_ms.store(0, Ordering::Release);
        }
        DcsError::LeaseExpired(id)
    }

    /// Publishes our member record on our lease.
    pub async fn touch_member(&self, name: &str, data: &MemberData) -> Result<(), DcsError> {
        let lease = self.current_lease().await?;
        let key = self.key(&format!("members/{name}"));
        let value = serde_json_compact(data);
        let resp = self
            .call("write member key", |mut c| {
                let (key, value) = (key.clone(), value.clone());
                async move {
                    c.put(key, value, Some(PutOptions::new().with_lease(lease)))
                        .await
                }
            })
            .await?;
        self.wrote(resp.header());
        Ok(())
    }

    async fn current_lease(&self) -> Result<i64, DcsError> {
        self.lease
            .lock()
            .await
            .map(|(id, _)| id)
            .ok_or(DcsError::LeaseExpired(0))
    }

    /// The leader race: creates `leader` = `name` on our lease only if no leader key exists.
    pub async fn acquire_leader(&self, name: &str) -> Result<bool, DcsError> {
        let lease = self.current_lease().await?;
        let key = self.key("leader");
        let resp = self
            .call("acquire leader lock", |mut c| {
                let key = key.clone();
                let name = name.to_string();
                async move {
                    let txn = Txn::new()
                        .when(vec![Compare::create_revision(
                            key.clone(),
                            CompareOp::Equal,
                            0,
                        )])
                        .and_then(vec![TxnOp::put(
                            key.clone(),
                            name,
                            Some(PutOptions::new().with_lease(lease)),
                        )])
                        .or_else(vec![TxnOp::get(key, None)]);
                    c.txn(txn).await
                }
            })
            .await?;
        if resp.succeeded() {
            self.wrote(resp.header());
            return Ok(true);
        }
        // A retried request whose first attempt already won finds its own key here.
        Ok(txn_get_matches(&resp.op_responses(), name, Some(lease)))
    }

    /// Keeps our leadership once the lease is renewed (`refresh_lease`, which renews the lock
    /// with it): moves the leader key onto our current lease if it sits on another one (after a
    /// lease re-creation) — only while it still names us.
    pub async fn keep_leader_on_our_lease(
        &self,
        name: &str,
        leader_lease: i64,
    ) -> Result<bool, DcsError> {
        let lease = self.current_lease().await?;
        if leader_lease == lease {
            return Ok(true);
        }
        let key = self.key("leader");
        let resp = self
            .call("update leader lock", |mut c| {
                let key = key.clone();
                let name = name.to_string();
                async move {
                    let txn = Txn::new()
                        .when(vec![Compare::value(
                            key.clone(),
                            CompareOp::Equal,
                            name.clone(),
                        )])
                        .and_then(vec![TxnOp::put(
                            key,
                            name,
                            Some(PutOptions::new().with_lease(lease)),
                        )]);
                    c.txn(txn).await
                }
            })
            .await?;
        if resp.succeeded() {
            self.wrote(resp.header());
        }
        Ok(resp.succeeded())
    }

    /// Releases the leader lock, only if it still names us.
    pub async fn delete_leader(&self, name: &str) -> Result<bool, DcsError> {
        self.delete_leader_if("release leader lock", name, None)
            .await
    }

    /// Removes another member's leader key while it still is the one observed: naming `name`,
    /// on lease `lease`. A leader that came back meanwhile (a new lease) keeps its key.
    pub async fn delete_dead_leader(&self, name: &str, lease: i64) -> Result<bool, DcsError> {
        self.delete_leader_if("remove a dead leader's key", name, Some(lease))
            .await
    }

    /// Deletes `leader` if it names `name` (and sits on `lease`, when given).
    async fn delete_leader_if(
        &self,
        what: &str,
        name: &str,
        lease: Option<i64>,
    ) -> Result<bool, DcsError> {
        let key = self.key("leader");
        let resp = self
            .call(what, |mut c| {
                let key = key.clone();
                let name = name.to_string();
                async move {
                    let mut when = vec![Compare::value(key.clone(), CompareOp::Equal, name)];
                    if let Some(lease) = lease {
                        when.push(Compare::lease(key.clone(), CompareOp::Equal, lease));
                    }
                    let txn = Txn::new()
                        .when(when)
                        .and_then(vec![TxnOp::delete(key, None)]);
                    c.txn(txn).await
                }
            })
            .await?;
        if resp.succeeded() {
            self.wrote(resp.header());
        }
        Ok(resp.succeeded())
    }

    /// The bootstrap race on `initialize`: with `create_new` only the first caller wins;
    /// without it the value (the system identifier) is written unconditionally.
    pub async fn initialize(&self, create_new: bool, value: &str) -> Result<bool, DcsError> {
        let key = self.key("initialize");
        if create_new {
            self.create_if_absent("take initialize lock", key, value.to_string())
                .await
        } else {
            self.put_key("initialize", value).await.map(|_| true)
        }
    }

    /// Gives up the bootstrap race after a failed initdb, so another node can try.
    pub async fn cancel_initialization(&self) -> Result<(), DcsError> {
        self.delete_key("initialize").await
    }

    async fn create_if_absent(
        &self,
        what: &str,
        key: String,
        value: String,
    ) -> Result<bool, DcsError> {
        let resp = self
            .call(what, |mut c| {
                let (key, value) = (key.clone(), value.clone());
                async move {
                    let txn = Txn::new()
                        .when(vec![Compare::create_revision(
                            key.clone(),
                            CompareOp::Equal,
                            0,
                        )])
                        .and_then(vec![TxnOp::put(key, value, None)]);
                    c.txn(txn).await
                }
            })
            .await?;
        // Only a success counts: the value (e.g. the empty initialize claim) cannot tell our
        // write apart from a competitor's, so an ambiguous retry is treated as a lost race.
        if resp.succeeded() {
            self.wrote(resp.header());
        }
        Ok(resp.succeeded())
    }

    /// Writes the dynamic configuration; with `expected_revision` only if nobody changed it
    /// since (0 = only if absent).
    pub async fn set_config(
        &self,
        value: &str,
        expected_revision: Option<i64>,
    ) -> Result<bool, DcsError> {
        let key = self.key("config");
        match expected_revision {
            None => self.put_key("config", value).await.map(|_| true),
            Some(0) => {
                self.create_if_absent("write config", key, value.to_string())
                    .await
            }
            Some(rev) => {
                let resp = self
                    .call("write config", |mut c| {
                        let (key, value) = (key.clone(), value.to_string());
                        async move {
                            let txn = Txn::new()
                                .when(vec![Compare::mod_revision(
                                    key.clone(),
                                    CompareOp::Equal,
                                    rev,
                                )])
                                .and_then(vec![TxnOp::put(key, value, None)]);
                            c.txn(txn).await
                        }
                    })
                    .await?;
                if resp.succeeded() {
                    self.wrote(resp.header());
                }
                Ok(resp.succeeded())
            }
        }
    }

    /// Plain write of a key without a lease (`status`, `history`, `failover`, ...).
    pub async fn put_key(&self, rel: &str, value: &str) -> Result<(), DcsError> {
        let key = self.key(rel);
        let resp = self
            .call("write key", |mut c| {
                let (key, value) = (key.clone(), value.to_string());
                async move { c.put(key, value, None).await }
            })
            .await?;
        self.wrote(resp.header());
        Ok(())
    }

    pub async fn delete_key(&self, rel: &str) -> Result<(), DcsError> {
        let key = self.key(rel);
        let resp = self
            .call("delete key", |mut c| {
                let key = key.clone();
                async move { c.delete(key, None).await }
            })
            .await?;
        // Deleting nothing creates no revision: the header's is then etcd's newest, which
        // the watch of our prefix may never reach.
        if resp.deleted() > 0 {
            self.wrote(resp.header());
        }
        Ok(())
    }

    /// Removes the whole cluster from the DCS.
    pub async fn delete_cluster(&self) -> Result<(), DcsError> {
        let prefix = self.settings.prefix.clone();
        self.call("delete cluster", |mut c| {
            let prefix = prefix.clone();
            async move {
                c.delete(
                    prefix,
                    Some(etcd_client::DeleteOptions::new().with_prefix()),
                )
                .await
            }
        })
        .await?;
        Ok(())
    }

    /// Ends our session: revoking the lease deletes our member key (and the leader key if we
    /// still held it) at once instead of after `ttl`.
    pub async fn revoke_lease(&self) -> Result<(), DcsError> {
        let Some((id, _)) = self.lease.lock().await.take() else {
            return Ok(());
        };
        self.lease_renewed_boot_ms.store(0, Ordering::Release);
        *self.keeper.lock().await = None;
        self.call(
            "revoke lease",
            |mut c| async move { c.lease_revoke(id).await },
        )
        .await?;
        Ok(())
    }

    /// Watches the cluster prefix in the background: keeps the cache `load_cluster_cached`
    /// serves, and signals `notify` whenever a key that matters to the HA loop (leader,
    /// failover, config, initialize) changes or is deleted, and also on member keys while
    /// `members_too` is set (a node waiting for another member to come up; settled members
    /// need not wake each other). Reconnects on its own; while it is broken the cache is not
    /// used and the loop falls back to a range read every `loop_wait`.
    pub fn watch(&self, notify: Arc<Notify>, members_too: Arc<AtomicBool>) -> WatchHandle {
        let client = self.client.clone();
        let reconnected = self.reconnected.clone();
        let prefix = self.settings.prefix.clone();
        let cache = self.cache.clone();
        WatchHandle(tokio::spawn(async move {
            loop {
                let current = client.read().unwrap_or_else(|p| p.into_inner()).clone();
                let result = tokio::select! {
                    r = watch_once(current, &prefix, &cache, &notify, &members_too) => r,
                    // A new connection (TLS reload): start over on it.
                    _ = reconnected.notified() => Ok(()),
                };
                if let Ok(mut c) = cache.lock() {
                    c.mark_lost();
                }
                if let Err(e) = result {
                    debug!("watch on {prefix} ended: {e}");
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }))
    }
}

/// A client for `settings`: every TLS file read and checked, and, over TLS, one request made
/// so that a certificate problem stops the caller with its reason.
async fn open(settings: &EtcdSettings) -> Result<Client, DcsError> {
    if settings.endpoints.is_empty() {
        return Err(DcsError::Settings("no etcd endpoints configured".into()));
    }
    let per_attempt = attempt_timeout(settings.request_timeout);
    let mut opts = ConnectOptions::new()
        .with_connect_timeout(per_attempt)
        .with_timeout(per_attempt)
        // etcd answers pings more often than every 5 s with GOAWAY too_many_pings.
        .with_keep_alive(Duration::from_secs(10), per_attempt)
        // An etcd member cut off from its cluster's leader refuses our requests and ends our
        // watch instead of serving what it last knew: the watch-fed view of the cluster is
        // only used while the watch is alive, so it never goes stale behind a partition.
        .with_require_leader(true);
    if let (Some(u), Some(p)) = (&settings.username, &settings.password) {
        opts = opts.with_user(u.clone(), p.clone());
    }
    let tls = tls_options(settings)?;
    if let Some(t) = tls {
        opts = opts.with_tls(t);
    }
    let endpoints = settings.endpoints.clone();
    let client = tokio::time::timeout(
        settings.request_timeout,
        Client::connect(endpoints.clone(), Some(opts)),
    )
    .await
    .map_err(|_| DcsError::Unreachable {
        endpoints: endpoints.join(","),
        detail: "timed out connecting".into(),
    })?
    .map_err(|e| classify(&endpoints.join(","), e))?;
    if tls_in_use(settings) {
        // The channel connects lazily: one request now, so a certificate the CA does not
        // verify (or a client certificate etcd refuses) stops the caller with that reason
        // instead of looking like an etcd that is down.
        let probe = tokio::time::timeout(
            settings.request_timeout,
            client
                .clone()
                .get("/", Some(GetOptions::new().with_count_only())),
        )
        .await;
        if let Ok(Err(e)) = probe {
            if let Some(why) = pgha_tls::explain(&format!("{e:?}")) {
                return Err(DcsError::Settings(format!(
                    "TLS to etcd ({}) failed: {why}{}",
                    endpoints.join(","),
                    settings
                        .ca_file
                        .as_ref()
                        .map(|p| format!(" (CA file {})", p.display()))
                        .unwrap_or_default()
                )));
            }
        }
    }
    Ok(client)
}

/// One range read of every key under `prefix`: the keys (relative to it) and the revision the
/// read was taken at.
async fn read_prefix(mut client: Client, prefix: &str) -> Result<(Vec<KeyValue>, i64), EtcdError> {
    let resp = client
        .get(prefix, Some(GetOptions::new().with_prefix()))
        .await?;
    let revision = resp.header().map_or(0, |h| h.revision());
    let keys = resp
        .kvs()
        .iter()
        .filter_map(|kv| key_value(prefix, kv))
        .collect();
    Ok((keys, revision))
}

fn key_value(prefix: &str, kv: &etcd_client::KeyValue) -> Option<KeyValue> {
    let key = String::from_utf8_lossy(kv.key());
    Some(KeyValue {
        key: key.strip_prefix(prefix)?.to_string(),
        value: String::from_utf8_lossy(kv.value()).into_owned(),
        lease: kv.lease(),
        mod_revision: kv.mod_revision(),
    })
}

/// Fills the cache with a range read, then follows every change after it until the watch ends.
async fn watch_once(
    mut client: Client,
    prefix: &str,
    cache: &std::sync::Mutex<KeyCache>,
    notify: &Notify,
    members_too: &AtomicBool,
) -> Result<(), EtcdError> {
    let (keys, revision) = read_prefix(client.clone(), prefix).await?;
    if let Ok(mut c) = cache.lock() {
        c.reset(keys, revision);
    }
    let mut stream = client
        .watch(
            prefix,
            Some(
                WatchOptions::new()
                    .with_prefix()
                    .with_start_revision(revision + 1),
            ),
        )
        .await?;
    while let Some(resp) = stream.message().await? {
        if resp.canceled() {
            warn!(
                "etcd cancelled the watch on {prefix}: {} (compacted at {})",
                resp.cancel_reason(),
                resp.compact_revision()
            );
            break;
        }
        let mut wake = false;
        if let Ok(mut c) = cache.lock() {
            if resp.created() {
                c.mark_synced();
            }
            for ev in resp.events() {
                let Some(kv) = ev.kv() else { continue };
                let Some(kv) = key_value(prefix, kv) else {
                    continue;
                };
                wake |= WAKE_KEYS.contains(&kv.key.as_str())
                    || (kv.key.starts_with("members/") && members_too.load(Ordering::Relaxed));
                match ev.event_type() {
                    EventType::Put => c.put(kv),
                    EventType::Delete => c.delete(&kv.key, kv.mod_revision),
                }
            }
        }
        // The cache already holds what woke the loop.
        if wake {
            notify.notify_one();
        }
    }
    Ok(())
}

fn txn_get_matches(ops: &[TxnOpResponse], value: &str, lease: Option<i64>) -> bool {
    ops.iter().any(|op| match op {
        TxnOpResponse::Get(g) => g
            .kvs()
            .iter()
            .any(|kv| kv.value() == value.as_bytes() && lease.is_none_or(|l| kv.lease() == l)),
        _ => false,
    })
}

fn attempt_timeout(budget: Duration) -> Duration {
    (budget / 3).clamp(Duration::from_millis(500), Duration::from_secs(3))
}

fn serde_json_compact(data: &MemberData) -> String {
    serde_json::to_string(data).expect("member data always serializes")
}

/// Network trouble is retried and ends as `Unreachable`; an answer from etcd that refuses the
/// request is final.
fn tls_in_use(settings: &EtcdSettings) -> bool {
    settings.endpoints.iter().any(|e| e.starts_with("https://"))
}

/// The TLS options of the etcd channel (`None` for http endpoints). Every file is read and
/// checked here, so a missing or unparsable certificate or key is an error naming the file
/// rather than a failed handshake later.
fn tls_options(settings: &EtcdSettings) -> Result<Option<etcd_client::TlsOptions>, DcsError> {
    let https = settings
        .endpoints
        .iter()
        .filter(|e| e.starts_with("https://"))
        .count();
    let files = settings.ca_file.is_some() || settings.cert_file.is_some();
    if https == 0 {
        if files {
            return Err(DcsError::Settings(
                "etcd3.cacert/cert/key are set but the endpoints are http://; set \
                 etcd3.protocol: https or give https:// URLs"
                    .into(),
            ));
        }
        return Ok(None);
    }
    if https != settings.endpoints.len() {
        return Err(DcsError::Settings(format!(
            "the etcd endpoints mix http:// and https:// ({}); use one scheme",
            settings.endpoints.join(",")
        )));
    }
    let check = pgha_tls::ClientTls {
        ca_file: settings.ca_file.clone(),
        cert_file: settings.cert_file.clone(),
        key_file: settings.key_file.clone(),
        ..Default::default()
    };
    check
        .client_config()
        .map_err(|e| DcsError::Settings(e.to_string()))?;
    let read = |p: &PathBuf| {
        std::fs::read(p).map_err(|e| DcsError::Settings(format!("{}: {e}", p.display())))
    };
    // The server name checked against etcd's certificate is each endpoint's host (tonic's
    // default), as with Patroni.
    let mut opts = etcd_client::TlsOptions::new();
    opts = match &settings.ca_file {
        Some(ca) => opts.ca_certificate(etcd_client::Certificate::from_pem(read(ca)?)),
        None => opts.with_native_roots(),
    };
    if let Some(cert) = &settings.cert_file {
        let key = settings.key_file.as_ref().unwrap_or(cert);
        opts = opts.identity(etcd_client::Identity::from_pem(read(cert)?, read(key)?));
    }
    Ok(Some(opts))
}

fn classify(endpoints: &str, e: EtcdError) -> DcsError {
    use tonic_code::is_retryable;
    match &e {
        EtcdError::GRpcStatus(s) if !is_retryable(s.code() as i32) => {
            match pgha_tls::explain(&format!("{s:?}")) {
                Some(why) => DcsError::Rejected(format!("TLS: {why}")),
                None => {
                    DcsError::Rejected(format!("{}: {}", code_name(s.code() as i32), s.message()))
                }
            }
        }
        EtcdError::InvalidArgs(m) | EtcdError::EndpointError(m) => DcsError::Settings(m.clone()),
        EtcdError::InvalidUri(u) => DcsError::Settings(format!("invalid endpoint URL: {u}")),
        _ => DcsError::Unreachable {
            endpoints: endpoints.to_string(),
            // gRPC errors hide a TLS verification failure deep in their source chain.
            detail: match pgha_tls::explain(&format!("{e:?}")) {
                Some(why) => format!("TLS: {why}"),
                None => e.to_string(),
            },
        },
    }
}

fn code_name(code: i32) -> &'static str {
    match code {
        3 => "invalid argument",
        5 => "not found",
        7 => "permission denied",
        9 => "failed precondition",
        16 => "unauthenticated",
        _ => "error",
    }
}

mod tonic_code {
    /// gRPC codes worth retrying on another attempt or endpoint: Unknown (1), DeadlineExceeded
    /// (4), ResourceExhausted (8), Aborted (10), Internal (13), Unavailable (14).
    pub fn is_retryable(code: i32) -> bool {
        matches!(code, 1 | 4 | 8 | 10 | 13 | 14)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_hides_the_password() {
        let s = EtcdSettings {
            endpoints: vec!["http://127.0.0.1:2379".into()],
            username: Some("root".into()),
            password: Some("S3cret".into()),
            ca_file: None,
            cert_file: None,
            key_file: None,
            prefix: "/service/batman/".into(),
            request_timeout: Duration::from_secs(1),
        };
        let debug = format!("{s:?}");
        assert!(
            !debug.contains("S3cret") && debug.contains("<redacted>"),
            "{debug}"
        );
    }
}
