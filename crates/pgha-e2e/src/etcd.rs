//! A single-member etcd 3.4 on loopback, plus a small etcdctl-based client (v3 API).

use std::fs::OpenOptions;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use base64::Engine as _;
use nix::sys::signal::Signal;

use crate::config::TlsFiles;
use crate::proc::{run_with_timeout, signal, wait_pid_gone};
use crate::wait::wait_until;

pub const ETCD_BIN: &str = "/usr/bin/etcd";
pub const ETCDCTL_BIN: &str = "/usr/bin/etcdctl";

/// One key as etcd returns it.
#[derive(Debug, Clone, PartialEq)]
pub struct EtcdKv {
    pub key: String,
    pub value: String,
    /// 0 when the key has no lease.
    pub lease: i64,
    pub mod_revision: i64,
}

pub struct EtcdServer {
    pub client_port: u16,
    pub peer_port: u16,
    /// Working directory of the process (the harness's base dir) and its data under it.
    pub base: PathBuf,
    pub data_dir: PathBuf,
    pub log_path: PathBuf,
    /// Serve clients over https and require client certificates signed by the CA.
    pub tls: Option<TlsFiles>,
    child: Option<Child>,
}

impl EtcdServer {
    pub fn new(base: PathBuf, client_port: u16, peer_port: u16) -> EtcdServer {
        EtcdServer {
            client_port,
            peer_port,
            data_dir: base.join("etcd"),
            log_path: base.join("etcd.log"),
            base,
            tls: None,
            child: None,
        }
    }

    pub fn endpoint(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.client_port)
    }

    /// An etcdctl client with this server's scheme and certificates.
    pub fn client(&self) -> EtcdClient {
        EtcdClient {
            endpoint: self.endpoint(),
            tls: self.tls.clone(),
        }
    }

    pub fn pid(&self) -> Option<i32> {
        self.child.as_ref().map(|c| c.id() as i32)
    }

    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Starts etcd (same data dir and ports on every call) and waits until it answers.
    pub fn start(&mut self) -> Result<()> {
        if self.is_running() {
            bail!("etcd is already running (pid {:?})", self.pid());
        }
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .with_context(|| format!("open {}", self.log_path.display()))?;
        let client = self.endpoint();
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let mut cmd = Command::new(ETCD_BIN);
        cmd.current_dir(&self.base)
            .args(["--name", "default"])
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(["--listen-client-urls", &client])
            .args(["--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &format!("default={peer}")]);
        if let Some(t) = &self.tls {
            cmd.arg(format!("--cert-file={}", t.cert.display()))
                .arg(format!("--key-file={}", t.key.display()))
                .arg(format!("--trusted-ca-file={}", t.ca.display()))
                .arg("--client-cert-auth");
        }
        cmd.stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        // Dies with the test process even when that is killed before any cleanup can run.
        unsafe {
            cmd.pre_exec(|| {
                nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(std::io::Error::from)
            });
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("start {ETCD_BIN} (install etcd-server)"))?;
        let pid = child.id();
        self.child = Some(child);
        std::fs::write(self.base.join("etcd.pid"), format!("{pid}\n"))?;
        let client = self.client();
        wait_until(
            "etcd to answer",
            Duration::from_secs(30),
            Duration::from_millis(100),
            || {
                if !self.is_running() {
                    bail!("etcd exited; see {}", self.log_path.display());
                }
                client.get_raw("/pgha-e2e-probe").map(|_| ())
            },
        )
    }

    /// Kills etcd (SIGKILL, an outage as seen by its clients) and reaps it.
    pub fn stop(&mut self) -> Result<()> {
        let Some(mut child) = self.child.take() else {
            bail!("etcd is not running");
        };
        let pid = child.id() as i32;
        let _ = signal(pid, Signal::SIGKILL);
        child.wait().context("reap etcd")?;
        wait_pid_gone(pid, Duration::from_secs(5));
        Ok(())
    }
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Talks to etcd through `etcdctl` (v3 API, JSON output).
#[derive(Debug, Clone)]
pub struct EtcdClient {
    endpoint: String,
    tls: Option<TlsFiles>,
}

impl EtcdClient {
    pub fn new(client_port: u16) -> EtcdClient {
        EtcdClient {
            endpoint: format!("http://127.0.0.1:{client_port}"),
            tls: None,
        }
    }

    fn ctl(&self, args: &[&str], stdin: Option<&[u8]>) -> Result<Vec<u8>> {
        let mut cmd = Command::new(ETCDCTL_BIN);
        cmd.env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", self.endpoint))
            .args(["--dial-timeout=2s", "--command-timeout=3s"]);
        if let Some(t) = &self.tls {
            cmd.arg(format!("--cacert={}", t.ca.display()))
                .arg(format!("--cert={}", t.cert.display()))
                .arg(format!("--key={}", t.key.display()));
        }
        cmd.args(args);
        let out = run_with_timeout(&mut cmd, stdin, Duration::from_secs(10))?;
        if !out.status.success() {
            bail!(
                "etcdctl {} failed ({}): {}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(out.stdout)
    }

    /// Raw `get` of one key (absolute), or all keys under a prefix.
    fn get_json(&self, key: &str, prefix: bool) -> Result<Vec<EtcdKv>> {
        let mut args = vec!["get", key, "-w", "json"];
        if prefix {
            args.push("--prefix");
        }
        parse_get_json(&self.ctl(&args, None)?)
    }

    pub fn get_raw(&self, key: &str) -> Result<Option<EtcdKv>> {
        Ok(self.get_json(key, false)?.into_iter().next())
    }

    pub fn get_prefix(&self, prefix: &str) -> Result<Vec<EtcdKv>> {
        self.get_json(prefix, true)
    }

    pub fn put(&self, key: &str, value: &str) -> Result<()> {
        // The value goes through stdin so that one starting with '-' is not taken for a flag.
        self.ctl(&["put", key], Some(value.as_bytes())).map(|_| ())
    }

    pub fn del(&self, key: &str) -> Result<()> {
        self.ctl(&["del", key], None).map(|_| ())
    }

    /// `etcdctl lease timetolive` in seconds: (granted TTL, remaining).
    pub fn lease_ttl(&self, lease: i64) -> Result<(i64, i64)> {
        let out = self.ctl(
            &["lease", "timetolive", &format!("{lease:x}"), "-w", "json"],
            None,
        )?;
        let v: serde_json::Value = serde_json::from_slice(&out).context("parse lease JSON")?;
        Ok((
            v["granted-ttl"].as_i64().unwrap_or(-1),
            v["ttl"].as_i64().unwrap_or(-1),
        ))
    }
}

/// Parses `etcdctl get -w json` output (keys and values are base64).
pub fn parse_get_json(out: &[u8]) -> Result<Vec<EtcdKv>> {
    let v: serde_json::Value = serde_json::from_slice(out)
        .with_context(|| format!("parse etcdctl JSON: {}", String::from_utf8_lossy(out)))?;
    let b64 = |s: &serde_json::Value| -> Result<String> {
        let raw = base64::engine::general_purpose::STANDARD.decode(s.as_str().unwrap_or(""))?;
        Ok(String::from_utf8_lossy(&raw).into_owned())
    };
    let mut kvs = Vec::new();
    for kv in v["kvs"].as_array().into_iter().flatten() {
        kvs.push(EtcdKv {
            key: b64(&kv["key"])?,
            value: b64(&kv["value"])?,
            lease: kv["lease"].as_i64().unwrap_or(0),
            mod_revision: kv["mod_revision"].as_i64().unwrap_or(0),
        });
    }
    Ok(kvs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_etcdctl_json() {
        // Shape of `etcdctl get /service/x/leader -w json` (3.4).
        let out = br#"{"header":{"cluster_id":1,"member_id":2,"revision":9,"raft_term":2},"kvs":[{"key":"L3NlcnZpY2UveC9sZWFkZXI=","create_revision":5,"mod_revision":7,"version":1,"value":"bm9kZTI=","lease":7587872937028591629}],"count":1}"#;
        let kvs = parse_get_json(out).unwrap();
        assert_eq!(kvs.len(), 1);
        assert_eq!(kvs[0].key, "/service/x/leader");
        assert_eq!(kvs[0].value, "node2");
        assert_eq!(kvs[0].lease, 7587872937028591629);
        assert_eq!(kvs[0].mod_revision, 7);
        let empty = br#"{"header":{"cluster_id":1,"member_id":2,"revision":9,"raft_term":2}}"#;
        assert!(parse_get_json(empty).unwrap().is_empty());
    }
}
