//! Test doubles for the commands: an in-memory DCS with Patroni's key layout.

use std::cell::RefCell;

use anyhow::Result;
use pgha_types::{Cluster, KeyValue};

use super::common::Ctx;
use crate::dcs::Store;
use crate::rest::Rest;
use crate::term::ScriptedTerm;

/// Keys (relative to the cluster prefix) with their modify revisions.
#[derive(Default)]
pub struct MemStore {
    pub keys: RefCell<Vec<KeyValue>>,
    revision: RefCell<i64>,
}

impl MemStore {
    pub fn new(keys: &[(&str, &str)]) -> MemStore {
        let s = MemStore::default();
        for (k, v) in keys {
            s.put(k, v);
        }
        s
    }

    pub fn put(&self, key: &str, value: &str) {
        let rev = {
            let mut r = self.revision.borrow_mut();
            *r += 1;
            *r
        };
        let mut keys = self.keys.borrow_mut();
        keys.retain(|kv| kv.key != key);
        keys.push(KeyValue {
            key: key.to_string(),
            value: value.to_string(),
            lease: 0,
            mod_revision: rev,
        });
    }

    pub fn get(&self, key: &str) -> Option<String> {
        self.keys
            .borrow()
            .iter()
            .find(|kv| kv.key == key)
            .map(|kv| kv.value.clone())
    }
}

impl Store for MemStore {
    async fn load(&self) -> Result<Cluster> {
        Ok(Cluster::from_keys(&self.keys.borrow()))
    }

    async fn set_config(&self, value: &str, revision: i64) -> Result<bool> {
        let current = self
            .keys
            .borrow()
            .iter()
            .find(|kv| kv.key == "config")
            .map_or(0, |kv| kv.mod_revision);
        if current != revision {
            return Ok(false);
        }
        self.put("config", value);
        Ok(true)
    }

    async fn put_key(&self, key: &str, value: &str) -> Result<()> {
        self.put(key, value);
        Ok(())
    }

    async fn delete_cluster(&self) -> Result<()> {
        self.keys.borrow_mut().clear();
        Ok(())
    }
}

/// A context over a scripted terminal.
pub fn ctx(term: &mut ScriptedTerm) -> Ctx<'_> {
    Ctx {
        term,
        rest: Rest::new(None).expect("a reqwest client builds"),
    }
}

pub fn member_json(port: u16, role: &str, api_url: &str) -> String {
    format!(
        r#"{{"conn_url":"postgres://127.0.0.1:{port}/postgres","api_url":"{api_url}","state":"running","role":"{role}","timeline":1}}"#
    )
}
