//! The local configuration of a pgha agent, in Patroni's YAML schema: an existing
//! `patroni.yml` (with an `etcd3` section) loads unchanged.
//!
//! Sources, as Patroni reads them:
//! - a YAML file, or a directory whose `*.yml`/`*.yaml` files are deep-merged in sorted order
//!   (later files win, lists are replaced, `null` removes a key), then the `PATRONI_*`
//!   environment variables on top;
//! - without a path, the whole YAML from `PATRONI_CONFIGURATION` (no other variable is applied
//!   then), or else the `PATRONI_*` variables alone.
//!
//! Validation reports every problem with its key path ([`ConfigError::Invalid`]); keys outside
//! Patroni's schema are returned as warnings ([`Loaded::warnings`]) and never fail a load.

mod addr;
mod build;
mod build_pg;
mod env;
mod error;
mod model;
mod reader;
mod schema;
mod source;

use std::path::Path;

pub use env::PATRONI_CONFIGURATION;
pub use error::{ConfigError, Problem};
pub use model::{
    python_str, split_command, Auth, Authentication, Bootstrap, BootstrapMethod, Config, Ctl, Etcd,
    InitdbOption, LeaseGuard, Log, PgUser, Postgresql, ReplicaMethod, RestApi, Watchdog,
    WatchdogDriver, WatchdogMode,
};

/// A configuration that passed validation, and what deserves the operator's attention
/// without stopping the node (unknown keys, ignored sections, ...).
#[derive(Debug, Clone, PartialEq)]
pub struct Loaded {
    pub config: Config,
    pub warnings: Vec<String>,
}

/// Loads a file or a directory of YAML files, with the process's `PATRONI_*` environment
/// variables applied on top.
pub fn load(path: &Path) -> Result<Loaded, ConfigError> {
    load_from_env_and_path(Some(path), &|name: &str| std::env::var(name).ok())
}

/// [`load`] with the environment given as a lookup function (`|name| map.get(name).cloned()`
/// in tests). With `path: None` the configuration comes from `PATRONI_CONFIGURATION`, or
/// from the `PATRONI_*` variables alone when that is not set.
pub fn load_from_env_and_path(
    path: Option<&Path>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Loaded, ConfigError> {
    let parsed = match path {
        Some(path) => {
            let mut parsed = source::read_path(path)?;
            source::merge(&mut parsed.tree, env::overrides(env));
            parsed
        }
        None => match env(PATRONI_CONFIGURATION).filter(|v| !v.trim().is_empty()) {
            Some(yaml) => source::parse_yaml(&yaml, Path::new("$PATRONI_CONFIGURATION"))?,
            None => source::Parsed {
                tree: env::overrides(env),
                warnings: Vec::new(),
            },
        },
    };
    build::build(&parsed.tree, parsed.warnings)
}

/// Parses and validates YAML text, without any environment variable.
pub fn parse_str(yaml: &str) -> Result<Loaded, ConfigError> {
    let parsed = source::parse_yaml(yaml, Path::new("<string>"))?;
    build::build(&parsed.tree, parsed.warnings)
}
