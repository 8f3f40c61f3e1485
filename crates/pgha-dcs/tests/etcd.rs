//! The etcd adapter against a real etcd (Debian's etcd-server) on loopback: the leader race,
//! conditional leader writes, lease expiry, the watch and the view it keeps, a member that loses
//! its leader, and moving past a dead endpoint; and TLS with client-certificate authentication
//! (a private CA made at test time): the right CA and client certificate work, a wrong CA, a
//! wrong host name, a missing client certificate and an unreadable key each fail with their
//! reason.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use std::path::{Path, PathBuf};

use pgha_dcs::{DcsError, EtcdDcs, EtcdSettings};
use pgha_tls::test_ca::TestCa;
use pgha_types::MemberData;
use tokio::sync::Notify;

struct Etcd {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

fn etcd_installed() -> bool {
    let there = std::path::Path::new("/usr/bin/etcd").exists();
    if !there {
        eprintln!("skipping: /usr/bin/etcd is not installed (apt-get install etcd-server)");
    }
    there
}

/// Starts member `name` of the etcd cluster `initial` (`name=peer-url,...`) on loopback.
fn spawn_member(name: &str, client: u16, peer: u16, initial: &str, extra: &[&str]) -> Etcd {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("http://127.0.0.1:{client}");
    let peer_url = format!("http://127.0.0.1:{peer}");
    let child = Command::new("/usr/bin/etcd")
        .args(["--name", name])
        .args(["--data-dir", &dir.path().join("data").to_string_lossy()])
        .args([
            "--listen-client-urls",
            &url,
            "--advertise-client-urls",
            &url,
        ])
        .args(["--listen-peer-urls", &peer_url])
        .args(["--initial-advertise-peer-urls", &peer_url])
        .args(["--initial-cluster", initial])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start etcd");
    Etcd {
        child,
        url,
        _dir: dir,
    }
}

/// Waits until etcd itself listens on its client port. `false` when it exited first: a port
/// picked by `free_port` can be taken by another test's process before etcd binds it, and then a
/// plain connect would reach that other server (a test that froze "its" etcd with SIGSTOP would
/// see the other one answer).
fn wait_listening(etcd: &mut Etcd) -> bool {
    let port: u16 = etcd.url.rsplit(':').next().unwrap().parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if etcd.child.try_wait().ok().flatten().is_some() {
            return false;
        }
        if listens(etcd.child.id(), port) {
            return true;
        }
        assert!(Instant::now() < deadline, "etcd did not start within 20 s");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Whether process `pid` holds the listening socket on loopback `port` (`ss` from iproute2).
fn listens(pid: u32, port: u16) -> bool {
    let out = Command::new("ss")
        .args(["-Hltnp", &format!("sport = :{port}")])
        .output()
        .expect("run ss (apt-get install iproute2)");
    String::from_utf8_lossy(&out.stdout).contains(&format!("pid={pid},"))
}

/// Starts etcd, or returns None (test skipped with a note) when it is not installed.
fn start_etcd() -> Option<Etcd> {
    if !etcd_installed() {
        return None;
    }
    for _ in 0..5 {
        let (client, peer) = (free_port(), free_port());
        let initial = format!("default=http://127.0.0.1:{peer}");
        let mut etcd = spawn_member("default", client, peer, &initial, &[]);
        if wait_listening(&mut etcd) {
            return Some(etcd);
        }
        eprintln!("etcd exited at start (a port taken meanwhile?): trying other ports");
    }
    panic!("etcd did not start on 5 pairs of free ports");
}

/// Sends `sig` (e.g. "-STOP") to an etcd this test started, by its PID.
fn signal(etcd: &Etcd, sig: &str) {
    let pid = etcd.child.id().to_string();
    let ok = Command::new("kill")
        .args([sig, &pid])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "kill {sig} {pid}");
}

async fn client(endpoints: Vec<String>, prefix: &str) -> EtcdDcs {
    EtcdDcs::connect(EtcdSettings {
        endpoints,
        username: None,
        password: None,
        ca_file: None,
        cert_file: None,
        key_file: None,
        prefix: prefix.to_string(),
        request_timeout: Duration::from_secs(3),
    })
    .await
    .expect("connect to etcd")
}

#[tokio::test]
async fn leader_race_conditional_writes_lease_expiry_and_watch() {
    let Some(etcd) = start_etcd() else { return };
    let prefix = "/service/race/";
    let a = client(vec![etcd.url.clone()], prefix).await;
    let b = client(vec![etcd.url.clone()], prefix).await;
    a.ensure_lease(5).await.unwrap();
    b.ensure_lease(5).await.unwrap();

    // Exactly one wins the race; the loser cannot delete or take over the key.
    assert!(a.acquire_leader("a").await.unwrap());
    assert!(!b.acquire_leader("b").await.unwrap());
    assert!(!b.delete_leader("b").await.unwrap());
    let c = a.load_cluster().await.unwrap();
    let leader = c.leader.clone().expect("leader key");
    assert_eq!(leader.name, "a");
    a.refresh_lease().await.unwrap();
    assert!(a.keep_leader_on_our_lease("a", leader.lease).await.unwrap());

    // Exactly one wins the bootstrap race too.
    assert!(a.initialize(true, "").await.unwrap());
    assert!(!b.initialize(true, "").await.unwrap());

    // The watch wakes us when the leader key goes away.
    let notify = Arc::new(Notify::new());
    let members_too = Arc::new(AtomicBool::new(false));
    let _watch = b.watch(notify.clone(), members_too.clone());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(a.delete_leader("a").await.unwrap());
    tokio::time::timeout(Duration::from_secs(2), notify.notified())
        .await
        .expect("the watch woke us within 2 s of the leader key's deletion");

    // Member keys wake us only when asked for.
    a.touch_member("a", &MemberData::default()).await.unwrap();
    assert!(
        tokio::time::timeout(Duration::from_millis(700), notify.notified())
            .await
            .is_err(),
        "a member key change woke a settled member"
    );
    members_too.store(true, std::sync::atomic::Ordering::Relaxed);
    let data = MemberData {
        state: Some("running".into()),
        ..MemberData::default()
    };
    a.touch_member("a", &data).await.unwrap();
    tokio::time::timeout(Duration::from_secs(2), notify.notified())
        .await
        .expect("the watch woke us within 2 s of a member key change");

    // Member keys live on the lease: they vanish when it is no longer renewed.
    b.touch_member("b", &MemberData::default()).await.unwrap();
    assert!(a.load_cluster().await.unwrap().member("b").is_some());
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if a.load_cluster().await.unwrap().member("b").is_none() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "member key outlived its 5 s lease"
        );
        a.refresh_lease().await.unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(b.refresh_lease().await.is_err(), "b's lease has expired");
}

#[tokio::test]
async fn a_dead_endpoint_is_skipped() {
    let Some(etcd) = start_etcd() else { return };
    let dead = format!("http://127.0.0.1:{}", free_port());
    let dcs = client(vec![dead, etcd.url.clone()], "/service/multi/").await;
    for _ in 0..5 {
        dcs.put_key("config", "{}")
            .await
            .expect("write through the live endpoint");
        assert!(dcs.load_cluster().await.unwrap().config.is_some());
    }
}

#[tokio::test]
async fn unreachable_etcd_is_reported_within_the_retry_budget() {
    let dead = format!("http://127.0.0.1:{}", free_port());
    let started = Instant::now();
    let res = EtcdDcs::connect(EtcdSettings {
        endpoints: vec![dead],
        username: None,
        password: None,
        ca_file: None,
        cert_file: None,
        key_file: None,
        prefix: "/service/x/".into(),
        request_timeout: Duration::from_secs(2),
    })
    .await;
    if let Ok(dcs) = res {
        let err = dcs.load_cluster().await.expect_err("nothing listens there");
        assert!(err.is_unreachable(), "{err}");
    }
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test]
async fn the_watch_fed_view_follows_every_change_and_our_own_writes() {
    let Some(etcd) = start_etcd() else { return };
    let prefix = "/service/cache/";
    let a = client(vec![etcd.url.clone()], prefix).await;
    let b = client(vec![etcd.url.clone()], prefix).await;
    a.put_key("initialize", "7000").await.unwrap();

    // Without a watch the cached read is a plain range read.
    assert_eq!(
        a.load_cluster_cached().await.unwrap().initialize.as_deref(),
        Some("7000")
    );

    let notify = Arc::new(Notify::new());
    let _watch = a.watch(notify.clone(), Arc::new(AtomicBool::new(false)));
    b.ensure_lease(10).await.unwrap();
    assert!(b.acquire_leader("b").await.unwrap());
    tokio::time::timeout(Duration::from_secs(3), notify.notified())
        .await
        .expect("the watch saw b take the lock");
    assert_eq!(
        a.load_cluster_cached().await.unwrap().leader_name(),
        Some("b")
    );

    // Another member's deletion reaches the view through the watch alone.
    assert!(b.delete_leader("b").await.unwrap());
    let deadline = Instant::now() + Duration::from_secs(3);
    while a.load_cluster_cached().await.unwrap().leader.is_some() {
        assert!(
            Instant::now() < deadline,
            "the view kept a deleted leader key"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // What we wrote ourselves is in the very next read, event or not.
    for i in 0..20 {
        let value = format!("{{\"leader\":\"pg{i}\"}}");
        a.put_key("failover", &value).await.unwrap();
        let c = a.load_cluster_cached().await.unwrap();
        assert_eq!(
            c.failover.as_ref().and_then(|f| f.leader.clone()),
            Some(format!("pg{i}"))
        );
    }

    // The view is served without asking etcd: it answers even while etcd is stopped (SIGSTOP;
    // the Etcd guard's SIGKILL still ends a stopped etcd if an assertion fails here).
    signal(&etcd, "-STOP");
    let served = tokio::time::timeout(Duration::from_millis(500), a.load_cluster_cached()).await;
    signal(&etcd, "-CONT");
    let c = served.expect("a cached read needs no request").unwrap();
    assert_eq!(c.initialize.as_deref(), Some("7000"));
}

#[tokio::test]
async fn a_lease_revoked_elsewhere_is_reported_on_the_open_keepalive_stream() {
    let Some(etcd) = start_etcd() else { return };
    let a = client(vec![etcd.url.clone()], "/service/lease/").await;
    let id = a.ensure_lease(10).await.unwrap();
    for _ in 0..3 {
        a.refresh_lease().await.expect("renewed on the open stream");
    }
    let mut raw = etcd_client::Client::connect([etcd.url.as_str()], None)
        .await
        .unwrap();
    raw.lease_revoke(id).await.unwrap();
    match a.refresh_lease().await {
        Err(pgha_dcs::DcsError::LeaseExpired(gone)) => assert_eq!(gone, id),
        other => panic!("expected LeaseExpired, got {other:?}"),
    }
    let fresh = a.ensure_lease(10).await.unwrap();
    assert_ne!(fresh, id);
    a.refresh_lease().await.expect("the new lease renews");
}

/// A keep-alive stream that broke while etcd did not answer is opened again by the next renewal,
/// and that renewal counts: the lease guard's deadline comes from it, so a leader whose etcd came
/// back must not be measured from its last renewal before the outage.
#[tokio::test]
async fn a_renewal_on_a_reopened_keepalive_stream_moves_the_renewal_time() {
    let Some(etcd) = start_etcd() else { return };
    let a = client(vec![etcd.url.clone()], "/service/reopen/").await;
    a.set_retry_timeout(Duration::from_secs(1));
    a.ensure_lease(30).await.unwrap();
    a.refresh_lease().await.expect("renewed on the open stream");
    let before = a.lease_renewed_boot_ms().expect("a renewal time");
    signal(&etcd, "-STOP");
    let stalled = a.refresh_lease().await;
    std::thread::sleep(Duration::from_millis(1500));
    signal(&etcd, "-CONT");
    assert!(stalled.is_err(), "a frozen etcd cannot renew: {stalled:?}");
    let mut renewed = Err(pgha_dcs::DcsError::LeaseExpired(0));
    for _ in 0..20 {
        renewed = a.refresh_lease().await;
        if renewed.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    renewed.expect("etcd is back: the lease renews on a new stream");
    let after = a.lease_renewed_boot_ms().expect("a renewal time");
    assert!(
        after >= before + 1500,
        "the renewal after the outage must count from its own time ({before} -> {after} ms)"
    );
}

/// Three etcd members on loopback (or None when etcd is not installed); dropping it kills all.
fn start_etcd_cluster() -> Option<Vec<Etcd>> {
    if !etcd_installed() {
        return None;
    }
    // Quick elections, so that losing the leader shows within a second or two.
    let extra = [
        "--initial-cluster-token",
        "pgha-dcs-test",
        "--heartbeat-interval",
        "50",
        "--election-timeout",
        "500",
    ];
    for _ in 0..5 {
        let ports: Vec<(u16, u16)> = (0..3).map(|_| (free_port(), free_port())).collect();
        let initial: Vec<String> = ports
            .iter()
            .enumerate()
            .map(|(i, (_, peer))| format!("m{i}=http://127.0.0.1:{peer}"))
            .collect();
        let initial = initial.join(",");
        let mut members: Vec<Etcd> = ports
            .iter()
            .enumerate()
            .map(|(i, (client, peer))| {
                spawn_member(&format!("m{i}"), *client, *peer, &initial, &extra)
            })
            .collect();
        if members.iter_mut().all(wait_listening) {
            return Some(members);
        }
        eprintln!("an etcd member exited at start (a port taken meanwhile?): trying other ports");
    }
    panic!("the etcd cluster did not start on 5 sets of free ports");
}

#[tokio::test]
async fn a_member_that_loses_its_leader_ends_the_watch_fed_view() {
    let Some(members) = start_etcd_cluster() else {
        return;
    };
    // Only member 0's endpoint: everything this client sees comes through it.
    let a = client(vec![members[0].url.clone()], "/service/quorum/").await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while a.put_key("initialize", "42").await.is_err() {
        assert!(
            Instant::now() < deadline,
            "the etcd cluster elected no leader"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let _watch = a.watch(Arc::new(Notify::new()), Arc::new(AtomicBool::new(false)));
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let c = a.load_cluster_cached().await.unwrap();
        if c.initialize.as_deref() == Some("42") {
            break;
        }
        assert!(Instant::now() < deadline, "no view of the cluster");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Give the watch time to be in place, so that the copy is what would be served below.
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Members 1 and 2 stop: member 0 is alone, without a leader. What it last knew must not
    // keep being served as the cluster.
    signal(&members[1], "-STOP");
    signal(&members[2], "-STOP");
    let deadline = Instant::now() + Duration::from_secs(15);
    let outcome = loop {
        let read = tokio::time::timeout(Duration::from_secs(5), a.load_cluster_cached()).await;
        if !matches!(read, Ok(Ok(_))) {
            break Ok(());
        }
        if Instant::now() > deadline {
            break Err("the cut-off member kept serving the cluster from the watch for 15 s");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    signal(&members[1], "-CONT");
    signal(&members[2], "-CONT");
    outcome.unwrap();
}

struct Pki {
    dir: tempfile::TempDir,
    ca: PathBuf,
    other_ca: PathBuf,
    client: (PathBuf, PathBuf),
    /// The CA etcd trusts, to issue more client certificates.
    issuer: TestCa,
}

/// Starts etcd on https loopback with client-certificate authentication, with a private CA.
fn start_tls() -> Option<(Etcd, Pki)> {
    if !etcd_installed() {
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ca1 = TestCa::new("pgha test CA");
    let (ca, other_ca) = (d.join("ca.pem"), d.join("other-ca.pem"));
    ca1.write(&ca).unwrap();
    TestCa::new("some other CA").write(&other_ca).unwrap();
    let (scert, skey) = ca1.issue(d, "etcd", &["localhost", "127.0.0.1"]).unwrap();
    let client = ca1.issue(d, "client", &["pgha"]).unwrap();
    let (port, peer) = (free_port(), free_port());
    let url = format!("https://127.0.0.1:{port}");
    let peer_url = format!("http://127.0.0.1:{peer}");
    let child = Command::new("/usr/bin/etcd")
        .args(["--data-dir", &d.join("data").to_string_lossy()])
        // Also on 127.0.0.2, a name etcd's certificate does not hold.
        .args([
            "--listen-client-urls",
            &format!("{url},https://127.0.0.2:{port}"),
            "--advertise-client-urls",
            &url,
        ])
        .args(["--listen-peer-urls", &peer_url])
        .args(["--initial-advertise-peer-urls", &peer_url])
        .args(["--initial-cluster", &format!("default={peer_url}")])
        .arg(format!("--cert-file={}", scert.display()))
        .arg(format!("--key-file={}", skey.display()))
        .arg(format!("--trusted-ca-file={}", ca.display()))
        .arg("--client-cert-auth")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start etcd");
    let mut etcd = Etcd {
        child,
        url,
        _dir: tempfile::tempdir().unwrap(),
    };
    assert!(
        wait_listening(&mut etcd),
        "etcd with TLS exited at start (its port {port} taken meanwhile?)"
    );
    Some((
        etcd,
        Pki {
            dir,
            ca,
            other_ca,
            client,
            issuer: ca1,
        },
    ))
}

fn tls_settings(
    endpoints: Vec<String>,
    ca: &Path,
    client: Option<&(PathBuf, PathBuf)>,
) -> EtcdSettings {
    EtcdSettings {
        endpoints,
        username: None,
        password: None,
        ca_file: Some(ca.to_path_buf()),
        cert_file: client.map(|c| c.0.clone()),
        key_file: client.map(|c| c.1.clone()),
        prefix: "/service/tls/".into(),
        request_timeout: Duration::from_secs(3),
    }
}

fn tls_settings_error(r: Result<EtcdDcs, DcsError>) -> String {
    match r {
        Err(DcsError::Settings(m)) => m,
        Err(e) => panic!("expected a settings error, got {e}"),
        Ok(_) => panic!("expected a settings error, connected"),
    }
}

#[tokio::test]
async fn verified_tls_with_client_certificates() {
    let Some((etcd, pki)) = start_tls() else {
        return;
    };

    // Right CA and client certificate: a write and a read, with a dead endpoint listed first
    // (several hosts).
    let dead = format!("https://127.0.0.1:{}", free_port());
    let ok = tls_settings(vec![dead, etcd.url.clone()], &pki.ca, Some(&pki.client));
    let dcs = EtcdDcs::connect(ok).await.expect("connect over TLS");
    dcs.initialize(true, "7000000000000000001").await.unwrap();
    let c = dcs.load_cluster().await.unwrap();
    assert_eq!(c.initialize.as_deref(), Some("7000000000000000001"));

    // etcd's certificate does not verify against another CA.
    let e = tls_settings_error(
        EtcdDcs::connect(tls_settings(
            vec![etcd.url.clone()],
            &pki.other_ca,
            Some(&pki.client),
        ))
        .await,
    );
    assert!(
        e.contains("not signed by the configured CA") && e.contains("other-ca.pem"),
        "{e}"
    );

    // The name checked is the endpoint's host: etcd's certificate does not name 127.0.0.2.
    let port = etcd.url.rsplit(':').next().unwrap();
    let e = tls_settings_error(
        EtcdDcs::connect(tls_settings(
            vec![format!("https://127.0.0.2:{port}")],
            &pki.ca,
            Some(&pki.client),
        ))
        .await,
    );
    assert!(e.contains("not valid for the host name"), "{e}");

    // A key file that is not there is named before any connection.
    let missing = (pki.client.0.clone(), pki.dir.path().join("nope.key"));
    let e = tls_settings_error(
        EtcdDcs::connect(tls_settings(
            vec![etcd.url.clone()],
            &pki.ca,
            Some(&missing),
        ))
        .await,
    );
    assert!(
        e.contains("cannot read the private key file") && e.contains("nope.key"),
        "{e}"
    );

    // TLS files with http endpoints: a configuration mistake, said so.
    let e = tls_settings_error(
        EtcdDcs::connect(tls_settings(
            vec!["http://127.0.0.1:1".into()],
            &pki.ca,
            Some(&pki.client),
        ))
        .await,
    );
    assert!(e.contains("endpoints are http://"), "{e}");
}

#[tokio::test]
async fn missing_client_certificate_is_refused_by_etcd() {
    let Some((etcd, pki)) = start_tls() else {
        return;
    };
    let r = EtcdDcs::connect(tls_settings(vec![etcd.url.clone()], &pki.ca, None)).await;
    let e = match r {
        Err(e) => e.to_string(),
        Ok(d) => d.load_cluster().await.unwrap_err().to_string(),
    };
    // With TLS 1.3 the client finishes its side of the handshake before etcd checks for a
    // certificate: etcd's alert usually arrives (and is explained), but a busy machine can see
    // the connection closed first, which tonic reports as a bare transport error.
    assert!(
        e.contains("client certificate") || e.contains("transport error"),
        "{e}"
    );
}

/// `etcdctl` against the TLS etcd, with the test client certificate.
fn etcdctl_tls(etcd: &Etcd, pki: &Pki, args: &[&str]) {
    let out = Command::new("/usr/bin/etcdctl")
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={}", etcd.url))
        .arg(format!("--cacert={}", pki.ca.display()))
        .arg(format!("--cert={}", pki.client.0.display()))
        .arg(format!("--key={}", pki.client.1.display()))
        .args(args)
        .output()
        .expect("run etcdctl");
    assert!(
        out.status.success(),
        "etcdctl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn etcd_authentication_over_tls() {
    let Some((etcd, pki)) = start_tls() else {
        return;
    };
    if !Path::new("/usr/bin/etcdctl").exists() {
        return;
    }
    etcdctl_tls(&etcd, &pki, &["user", "add", "root:rootpw"]);
    etcdctl_tls(&etcd, &pki, &["auth", "enable"]);
    let with = |password: &str| {
        let mut s = tls_settings(vec![etcd.url.clone()], &pki.ca, Some(&pki.client));
        s.username = Some("root".into());
        s.password = Some(password.into());
        s
    };
    let dcs = EtcdDcs::connect(with("rootpw"))
        .await
        .expect("authenticated");
    dcs.initialize(true, "7000000000000000002").await.unwrap();
    let e = match EtcdDcs::connect(with("wrong")).await {
        Err(e) => e.to_string(),
        Ok(d) => d.load_cluster().await.unwrap_err().to_string(),
    };
    assert!(e.contains("authentication failed"), "{e}");
}

/// SIGHUP's etcd TLS reload: the client certificate and key are read again and a new
/// connection is made with them. Files that do not load, or a certificate etcd does not
/// accept, leave the current connection working; a renewed certificate of the right CA takes
/// over requests, lease renewals and the watch.
#[tokio::test]
async fn client_certificate_reload_moves_to_a_new_connection_only_when_it_works() {
    let Some((etcd, pki)) = start_tls() else {
        return;
    };
    let d = pki.dir.path();
    // The agent's own certificate files, renewed in place below.
    let agent = pki.issuer.issue(d, "agent", &["pgha"]).unwrap();
    let settings = tls_settings(vec![etcd.url.clone()], &pki.ca, Some(&agent));
    let dcs = EtcdDcs::connect(settings).await.expect("connect over TLS");
    dcs.put_key("initialize", "7000").await.unwrap();
    dcs.ensure_lease(10).await.unwrap();
    let notify = Arc::new(Notify::new());
    let _watch = dcs.watch(notify.clone(), Arc::new(AtomicBool::new(false)));
    let still_works = || async {
        dcs.refresh_lease().await.expect("lease renewed");
        let c = dcs.load_cluster().await.expect("read");
        assert_eq!(c.initialize.as_deref(), Some("7000"));
    };

    std::fs::write(&agent.1, "broken").unwrap();
    let e = dcs.reload_tls().await.unwrap_err().to_string();
    assert!(e.contains("agent.key"), "{e}");
    still_works().await;

    // Signed by a CA etcd does not trust: etcd refuses the new connection.
    TestCa::new("rogue CA")
        .issue(d, "agent", &["pgha"])
        .unwrap();
    assert!(dcs.reload_tls().await.is_err());
    still_works().await;

    pki.issuer.issue(d, "agent", &["pgha"]).unwrap();
    assert!(dcs.reload_tls().await.expect("reloaded"));
    still_works().await;
    assert!(dcs.acquire_leader("n1").await.unwrap());
    // The watch restarts on the new connection (after its one-second pause): a change of a
    // key it wakes on reaches it, within a bound.
    let deadline = Instant::now() + Duration::from_secs(10);
    for i in 0.. {
        assert!(Instant::now() < deadline, "the watch did not come back");
        dcs.put_key("failover", &format!("{{\"leader\":\"n{i}\"}}"))
            .await
            .unwrap();
        if tokio::time::timeout(Duration::from_millis(500), notify.notified())
            .await
            .is_ok()
        {
            break;
        }
    }
}
