//! The DCS adapter: Patroni's key layout in etcd v3.
//!
//! Every agent owns one lease (TTL = `ttl`); its `members/<name>` key and, while it leads, the
//! `leader` key are attached to it, so both vanish when the agent stops renewing. The leader race
//! is a create-if-absent transaction, and every later write or delete of `leader` is conditional
//! on the key still naming this member.

mod cache;
pub mod clock;
mod error;
mod etcd;

pub use error::DcsError;
pub use etcd::{EtcdDcs, EtcdSettings, WatchHandle};
