//! End-to-end test harness for pgha: real etcd 3.4, real PostgreSQL 15 and the real `pgha` /
//! `pghactl` binaries on loopback. The scenarios are in `tests/e2e/`; see its README section in
//! `tests/e2e/main.rs` for how to run them.
//!
//! Layout of one cluster's temp dir (`/tmp/pgha-e2e-<id>`, mode 0755):
//! `bin/{pgha,pghactl}` (copies, so the postgres user can execute them wherever the repo is),
//! `etcd/` + `etcd.log`, and per node `nodeN/` (owned by postgres) holding `nodeN.yml`,
//! `pgpass`, the unix socket, `agent.log` and `data/`.

pub mod client;
pub mod cluster;
pub mod config;
pub mod etcd;
pub mod ports;
pub mod proc;
pub mod wait;

pub use client::{PgConn, PgEndpoint, RestEndpoint, Rows};
pub use cluster::{locate_binaries, report, tail, Cluster};
pub use config::{render_node_config, yaml_set, ClusterOptions, Customize, NodeSpec, TlsFiles};
pub use etcd::EtcdKv;
pub use nix::sys::signal::Signal;
pub use proc::pid_alive;
pub use wait::{timed_wait, wait_until};
