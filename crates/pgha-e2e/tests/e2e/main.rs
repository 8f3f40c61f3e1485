//! End-to-end scenarios: real etcd, real PostgreSQL 15, the real `pgha` and `pghactl`.
//!
//! Run (as root, the agents then run as `postgres`; or as any user owning nothing special):
//!
//! ```text
//! cargo build -p pgha-agent -p pgha-ctl          # the binaries under test
//! cargo test -p pgha-e2e --test e2e              # all scenarios, at most two clusters at a time
//! cargo test -p pgha-e2e --test e2e failover     # scenarios whose name contains "failover"
//! PGHA_E2E_KEEP=1 cargo test ...                 # keep /tmp/pgha-e2e-* for inspection
//! PGHA_E2E_SKIP=1 cargo test ...                 # skip them (no etcd/postgres here)
//! ```
//!
//! Every scenario holds one of two file-lock slots for its whole run (both, when it needs the
//! machine to itself: see `pgha_e2e::cluster::exclusive_lock` and .config/nextest.toml), so at
//! most two small clusters share the two cores, with `cargo test` threads and `cargo nextest`
//! processes alike.
//! Measured times are printed as `pgha-e2e: ...` lines (and appended to $PGHA_E2E_REPORT).

mod add_node;
mod bootstrap;
mod callbacks;
mod cluster_wide_order;
mod common;
mod custom_methods;
mod drill;
mod drill_netns;
mod etcd_outage;
mod failover_manual;
mod failover_priority;
mod failsafe;
mod foreign_datadir;
mod frozen_leader;
mod garbage_keys;
mod harness;
mod kill_leader;
mod member_slots;
mod mixed_cluster;
mod nostream_archive;
mod ops_common;
mod patronictl_compat;
mod pause_mode;
mod pending_restart;
mod permanent_slots;
mod postmaster_crash;
mod reload_reinit;
mod replica_ahead;
mod replicatefrom;
mod rest_completeness;
mod same_timeline_fork;
mod sample_configs;
mod scheduled_switchover;
mod sigterm_leader;
mod standby_cluster;
mod startup_refusals;
mod switchover_rest;
mod switchover_writes;
mod sync_mode;
mod tls;
mod watchdog;

// Production fit: HAProxy, /metrics, logs, packaging, load.
mod prod_ansible;
mod prod_ansible_systemd;
mod prod_haproxy;
mod prod_lab;
mod prod_lab_tls;
mod prod_logs;
mod prod_monitoring;
mod prod_packaging;
mod prod_pgbench;
mod prod_support;
