//! Free loopback ports: ask the kernel (bind 127.0.0.1:0) and never hand out one twice in this
//! process, so several clusters in one test binary cannot collide.

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::sync::Mutex;

use anyhow::{bail, Context, Result};

static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

pub fn free_port() -> Result<u16> {
    let mut used = HANDED_OUT.lock().unwrap_or_else(|p| p.into_inner());
    for _ in 0..100 {
        let l = TcpListener::bind("127.0.0.1:0").context("bind 127.0.0.1:0")?;
        let port = l.local_addr()?.port();
        if port != 5432 && used.insert(port) {
            return Ok(port);
        }
    }
    bail!("no free loopback port found in 100 tries")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distinct_ports() {
        let a: BTreeSet<u16> = (0..20).map(|_| free_port().unwrap()).collect();
        assert_eq!(a.len(), 20);
    }
}
