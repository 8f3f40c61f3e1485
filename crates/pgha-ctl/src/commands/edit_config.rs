//! `edit-config` and `show-config`: the dynamic configuration (the `config` key) as YAML with
//! sorted keys, changed with `-s key.path=value`, `-p param=value`, `--apply FILE`,
//! `--replace FILE` or in `$EDITOR`, shown as a unified diff, confirmed with
//! `Apply these changes? [y/N]:`, and written back with compare-and-set on the key's revision.
//! Values are read as patronictl reads them (YAML 1.1: `-p synchronous_commit=off` is `false`,
//! `null` removes the key).

use std::io::Write;
use std::process::{Command, Stdio};

use anyhow::{anyhow, bail, Context, Result};
use pgha_types::check_timings;
use serde_json::{Map, Value};

use super::common::Ctx;
use crate::dcs::Store;
use crate::diff::{colorize, unified_diff};
use crate::pyfmt::{json_dumps_compact, yaml_dump};
use crate::term::confirm;
use crate::yaml11;

/// patronictl's `format_config_for_editing`.
pub fn format_config(v: &Value) -> String {
    yaml_dump(v, false)
}

/// Python's `==` on the parsed documents: `1 == 1.0 == True`.
pub fn py_eq(a: &Value, b: &Value) -> bool {
    let num = |v: &Value| match v {
        Value::Bool(b) => Some(if *b { 1.0 } else { 0.0 }),
        Value::Number(n) => n.as_f64(),
        _ => None,
    };
    match (a, b) {
        (Value::Null, Value::Null) => true,
        (Value::String(x), Value::String(y)) => x == y,
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| py_eq(p, q))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| py_eq(v, w)))
        }
        (Value::Number(x), Value::Number(y)) if x.is_i64() || x.is_u64() => {
            if y.is_i64() || y.is_u64() {
                x == y
            } else {
                num(a) == num(b)
            }
        }
        _ => match (num(a), num(b)) {
            (Some(x), Some(y)) => x == y,
            _ => false,
        },
    }
}

/// Python's `str()` of a scalar, which Patroni's `patch_config` compares.
fn py_str(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Bool(b) => if *b { "True" } else { "False" }.into(),
        Value::Null => "None".into(),
        other => other.to_string(),
    }
}

/// Patroni's `patch_config`: `data` merged into `config`; `null` removes a key, mappings merge
/// recursively, other values replace (unless they print the same).
pub fn patch(config: &mut Map<String, Value>, data: &Map<String, Value>) {
    for (name, value) in data {
        match (config.get_mut(name), value) {
            (_, Value::Null) => {
                config.remove(name);
            }
            (Some(Value::Object(old)), Value::Object(new)) => patch(old, new),
            (Some(old), new) if !new.is_object() && py_str(old) == py_str(new) => {}
            _ => {
                config.insert(name.clone(), value.clone());
            }
        }
    }
}

/// One `-s` path: dots separate levels, except under `postgresql.parameters`, where the rest is
/// one parameter name (GUCs may contain dots). A `null` value removes the key; mappings left
/// empty by that are removed too.
fn set_path(config: &mut Map<String, Value>, path: &[&str], value: &Value, prefix: &[&str]) {
    let joined;
    let path: Vec<&str> = if prefix == ["postgresql", "parameters"] {
        joined = path.join(".");
        vec![joined.as_str()]
    } else {
        path.to_vec()
    };
    let key = path[0];
    if path.len() == 1 {
        if value.is_null() {
            config.remove(key);
        } else {
            config.insert(key.to_string(), value.clone());
        }
        return;
    }
    if !config.get(key).is_some_and(Value::is_object) {
        config.insert(key.to_string(), Value::Object(Map::new()));
    }
    let mut next_prefix = prefix.to_vec();
    next_prefix.push(key);
    if let Some(Value::Object(child)) = config.get_mut(key) {
        set_path(child, &path[1..], value, &next_prefix);
        if child.is_empty() {
            config.remove(key);
        }
    }
}

/// `-s key.path=value` pairs (and `-p`, already prefixed) applied to `data`.
pub fn apply_pairs(data: &Value, pairs: &[String]) -> Result<Value> {
    let mut changed = data.as_object().cloned().unwrap_or_default();
    for pair in pairs {
        let Some((path, raw)) = pair.split_once('=').filter(|_| !pair.is_empty()) else {
            bail!("Invalid parameter setting {pair}");
        };
        let value =
            yaml11::load(raw).map_err(|e| anyhow!("Invalid parameter setting {pair}: {e}"))?;
        let parts: Vec<&str> = path.trim().split('.').collect();
        set_path(&mut changed, &parts, &value, &[]);
    }
    Ok(Value::Object(changed))
}

/// A YAML document that must be a mapping (a configuration).
fn load_mapping(text: &str, source: &str) -> Result<Map<String, Value>> {
    match yaml11::load(text).map_err(|e| anyhow!("{source} is not valid YAML: {e}"))? {
        Value::Object(m) => Ok(m),
        _ => bail!("{source} does not hold a YAML mapping of settings"),
    }
}

/// A timing key as a number of seconds (`default` when unset).
fn seconds(config: &Value, key: &str, default: u64) -> Result<u64> {
    match config.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(Value::Number(n)) => n
            .as_u64()
            .or_else(|| n.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64))
            .ok_or_else(|| anyhow!("{key}: {n} is not a valid number of seconds")),
        Some(Value::String(s)) => s
            .trim()
            .parse()
            .map_err(|_| anyhow!("{key}: {s:?} is not a valid number of seconds")),
        Some(other) => bail!("{key}: {other} is not a valid number of seconds"),
    }
}

/// pgha refuses timing combinations its agents cannot keep (`loop_wait + 2*retry_timeout <=
/// ttl`, minimums), checked when any of the three keys changes.
pub fn check_new_timings(before: &Value, after: &Value) -> Result<()> {
    let keys = ["ttl", "loop_wait", "retry_timeout"];
    let null = Value::Null;
    let changed = keys.iter().any(|k| {
        !py_eq(
            before.get(*k).unwrap_or(&null),
            after.get(*k).unwrap_or(&null),
        )
    });
    if !changed {
        return Ok(());
    }
    let ttl = seconds(after, "ttl", 30)?;
    let loop_wait = seconds(after, "loop_wait", 10)?;
    let retry_timeout = seconds(after, "retry_timeout", 10)?;
    check_timings(ttl, loop_wait, retry_timeout)
        .map_err(|e| anyhow!("{e}; the configuration was not changed"))
}

/// `postgresql.parameters` entries of `after` that are new or different from `before`.
pub fn changed_parameters(before: &Value, after: &Value) -> Map<String, Value> {
    let params = |v: &Value| {
        v.get("postgresql")
            .and_then(|p| p.get("parameters"))
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default()
    };
    let old = params(before);
    params(after)
        .into_iter()
        .filter(|(k, v)| !old.get(k).is_some_and(|o| py_eq(o, v)))
        .collect()
}

/// New parameter values go past the leader's PostgreSQL (`POST /config/check`) before they are
/// stored, so a value it would reject never reaches postgresql.conf on every node. A member
/// that cannot check them (a Patroni agent in a mixed cluster, or none reachable) leaves them
/// unchecked, as patronictl stores them, with a warning on stderr.
async fn check_new_parameters(
    ctx: &mut Ctx<'_>,
    cluster: &pgha_types::Cluster,
    before: &Value,
    after: &Value,
) -> Result<()> {
    let params = changed_parameters(before, after);
    if params.is_empty() {
        return Ok(());
    }
    let checker = cluster
        .leader_member()
        .filter(|m| m.data.api_url.is_some())
        .or_else(|| {
            cluster
                .members
                .iter()
                .find(|m| m.is_running() && m.data.api_url.is_some())
        });
    let Some(member) = checker else {
        eprintln!("Warning: no member to check the new parameters with; storing them unchecked");
        return Ok(());
    };
    let body = serde_json::json!({"postgresql": {"parameters": params}});
    match ctx
        .rest
        .call(member, reqwest::Method::POST, "config/check", Some(&body))
        .await
    {
        Ok(r) if r.status == 200 => Ok(()),
        Ok(r) if r.status == 400 => bail!(
            "{}\nPostgreSQL on {} refuses these values; the configuration was not changed",
            r.text.trim(),
            member.name
        ),
        Ok(r) => {
            eprintln!(
                "Warning: member {} cannot check parameters (HTTP {}); storing them unchecked",
                member.name, r.status
            );
            Ok(())
        }
        Err(e) => {
            eprintln!("Warning: {e:#}; storing the new parameters unchecked");
            Ok(())
        }
    }
}

/// What `edit-config` was asked to do.
#[derive(Debug, Clone, Default)]
pub struct EditRequest {
    pub quiet: bool,
    pub set: Vec<String>,
    pub pg: Vec<String>,
    /// (name as given, content) of `--replace`.
    pub replace: Option<(String, String)>,
    /// (name as given, content) of `--apply`.
    pub apply: Option<(String, String)>,
    pub force: bool,
}

/// Prints the diff: on a terminal colored through `$PAGER` (else `less`, else `more`), as
/// patronictl does; otherwise plain lines.
fn show_diff(ctx: &mut Ctx<'_>, before: &str, after: &str) -> Result<()> {
    let lines = unified_diff(before, after);
    if !ctx.term.is_tty() {
        for l in &lines {
            ctx.echo(l);
        }
        return Ok(());
    }
    let pager = std::env::var("PAGER")
        .ok()
        .filter(|p| !p.trim().is_empty() && which(p.split_whitespace().next().unwrap_or("")))
        .or_else(|| {
            ["less", "more"]
                .iter()
                .find(|p| which(p))
                .map(|p| p.to_string())
        })
        .ok_or_else(|| {
            anyhow!(
                "No pager could be found. Either set PAGER environment variable with your pager \
                 or install either \"less\" or \"more\" in the host."
            )
        })?;
    let cmd = if pager == "less" {
        "less -FRSX".to_string()
    } else {
        pager
    };
    let mut child = Command::new("sh")
        .args(["-c", &cmd])
        .stdin(Stdio::piped())
        .spawn()
        .with_context(|| format!("start the pager {cmd}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(format!("{}\n", colorize(&lines)).as_bytes());
    }
    child
        .wait()
        .with_context(|| format!("wait for the pager {cmd}"))?;
    Ok(())
}

/// `name` is an executable in `$PATH` (or a path to one).
pub fn which(name: &str) -> bool {
    if name.is_empty() {
        return false;
    }
    let is_exec = |p: &std::path::Path| {
        use std::os::unix::fs::PermissionsExt;
        p.metadata()
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if name.contains('/') {
        return is_exec(std::path::Path::new(name));
    }
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| is_exec(&dir.join(name))))
}

/// Opens `$EDITOR` (else `editor`, else `vi`) on a temporary copy of the configuration and
/// returns what the operator saved.
pub fn invoke_editor(before: &str, scope: &str) -> Result<String> {
    let editor = std::env::var("EDITOR")
        .ok()
        .filter(|e| !e.trim().is_empty())
        .or_else(|| {
            ["editor", "vi"]
                .iter()
                .find(|e| which(e))
                .map(|e| e.to_string())
        })
        .ok_or_else(|| {
            anyhow!("EDITOR environment variable is not set. editor or vi are not available")
        })?;
    let mut file = tempfile::Builder::new()
        .prefix(&format!("{}-config-", scope.replace('/', "_")))
        .suffix(".yaml")
        .tempfile()
        .context("create a temporary file to edit")?;
    file.write_all(before.as_bytes())
        .and_then(|_| file.flush())
        .context("write the temporary file to edit")?;
    let path = file.path().to_path_buf();
    let status = Command::new("sh")
        .args(["-c", &format!("{editor} \"$1\""), "pghactl-editor"])
        .arg(&path)
        .status()
        .with_context(|| format!("start the editor {editor}"))?;
    if !status.success() {
        bail!(
            "Editor exited with return code {}",
            status.code().unwrap_or(1)
        );
    }
    std::fs::read_to_string(&path).context("read back the edited configuration")
}

pub async fn edit_config(
    ctx: &mut Ctx<'_>,
    store: &impl Store,
    scope: &str,
    req: &EditRequest,
    editor: &dyn Fn(&str, &str) -> Result<String>,
) -> Result<()> {
    let cluster = store.load().await?;
    let Some(config) = cluster.config.as_ref() else {
        bail!("The config key does not exist in the cluster {scope}");
    };
    let before = Value::Object(config.0.clone());
    let before_text = format_config(&before);
    let mut after_text = None;
    let mut changed = before.clone();

    if let Some((name, text)) = &req.replace {
        let mut fresh = Map::new();
        patch(&mut fresh, &load_mapping(text, name)?);
        changed = Value::Object(fresh);
        after_text = Some(format_config(&changed));
    }
    if let Some((name, text)) = &req.apply {
        let mut merged = changed.as_object().cloned().unwrap_or_default();
        patch(&mut merged, &load_mapping(text, name)?);
        changed = Value::Object(merged);
        after_text = Some(format_config(&changed));
    }
    if !req.set.is_empty() || !req.pg.is_empty() {
        let pairs: Vec<String> = req
            .set
            .iter()
            .cloned()
            .chain(
                req.pg
                    .iter()
                    .map(|p| format!("postgresql.parameters.{}", p.trim_start())),
            )
            .collect();
        changed = apply_pairs(&changed, &pairs)?;
        after_text = Some(format_config(&changed));
    }
    let after_text = match after_text {
        Some(t) => t,
        None => {
            let edited = editor(&before_text, scope)?;
            changed = Value::Object(load_mapping(&edited, "the edited configuration")?);
            edited
        }
    };

    if py_eq(&before, &changed) {
        if !req.quiet {
            ctx.echo("Not changed");
        }
        return Ok(());
    }
    if !req.quiet {
        show_diff(ctx, &before_text, &after_text)?;
    }
    check_new_timings(&before, &changed)?;
    check_new_parameters(ctx, &cluster, &before, &changed).await?;

    let from_stdin = |f: &Option<(String, String)>| f.as_ref().is_some_and(|(n, _)| n == "-");
    if (from_stdin(&req.apply) || from_stdin(&req.replace)) && !req.force {
        ctx.echo("Use --force option to apply changes");
        return Ok(());
    }
    if req.force || confirm(ctx.term, "Apply these changes?")? {
        if !store
            .set_config(&json_dumps_compact(&changed), cluster.config_revision)
            .await?
        {
            bail!("Config modification aborted due to concurrent changes");
        }
        ctx.echo("Configuration changed");
    }
    Ok(())
}

/// `show-config`: the configuration as YAML (nothing when the key is missing).
pub async fn show_config(ctx: &mut Ctx<'_>, store: &impl Store) -> Result<()> {
    let cluster = store.load().await?;
    if let Some(config) = cluster.config.as_ref() {
        ctx.echo(&format_config(&Value::Object(config.0.clone())));
    }
    Ok(())
}

#[cfg(test)]
#[path = "edit_config_tests.rs"]
mod tests;
