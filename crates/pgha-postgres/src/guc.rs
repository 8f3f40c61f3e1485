//! Checking `postgresql.parameters` against the running server's catalogue before they are
//! stored, so a value PostgreSQL would reject never reaches postgresql.conf on every node.

use serde_json::{Map, Value};

use crate::params::render_value;
use crate::sql::{quote_literal, rows};
use crate::{LocalPostgres, PgError};

/// One row of `pg_settings`.
#[derive(Debug, Clone, PartialEq)]
pub struct GucSpec {
    pub name: String,
    pub vartype: String,
    pub unit: Option<String>,
    pub min_val: Option<f64>,
    pub max_val: Option<f64>,
    pub enumvals: Vec<String>,
    /// The server's current value in its base unit (`4096` for work_mem = 4MB).
    pub setting: String,
    /// `postmaster` when only a restart applies a change.
    pub context: String,
}

impl LocalPostgres {
    /// `pg_settings` rows for `names` (unknown names are simply absent).
    pub async fn guc_specs(&self, names: &[String]) -> Result<Vec<GucSpec>, PgError> {
        if names.is_empty() {
            return Ok(Vec::new());
        }
        let list = names
            .iter()
            .map(|n| quote_literal(n))
            .collect::<Vec<_>>()
            .join(",");
        let sql = format!(
            "SELECT name, vartype, coalesce(unit, ''), coalesce(min_val, ''), coalesce(max_val, ''), \
             coalesce(array_to_string(enumvals, ','), ''), setting, context FROM pg_catalog.pg_settings WHERE name IN ({list})"
        );
        let messages = self.simple_query(&sql, self.timeouts.probe).await?;
        Ok(rows(messages)
            .iter()
            .map(|r| {
                let get = |i: usize| r.get(i).unwrap_or("").to_string();
                let opt = |s: String| (!s.is_empty()).then_some(s);
                GucSpec {
                    name: get(0),
                    vartype: get(1),
                    unit: opt(get(2)),
                    min_val: get(3).parse().ok(),
                    max_val: get(4).parse().ok(),
                    enumvals: get(5)
                        .split(',')
                        .filter(|s| !s.is_empty())
                        .map(str::to_string)
                        .collect(),
                    setting: get(6),
                    context: get(7),
                }
            })
            .collect())
    }

    /// Every problem with `params` as `postgresql.parameters.<name>: <why>`.
    pub async fn check_parameters(
        &self,
        params: &Map<String, Value>,
    ) -> Result<Vec<String>, PgError> {
        // Judged as this server will run them: wal_keep_segments is fine on 15 (it becomes
        // wal_keep_size), as Patroni accepts it.
        let params = &crate::translate_parameters(params, self.major_version());
        let names: Vec<String> = params.keys().cloned().collect();
        let specs = self.guc_specs(&names).await?;
        Ok(check_parameters(params, &specs))
    }
}

/// Pure check of `params` against `specs` (see [`LocalPostgres::check_parameters`]).
pub fn check_parameters(params: &Map<String, Value>, specs: &[GucSpec]) -> Vec<String> {
    let mut problems = Vec::new();
    for (name, value) in params {
        let Some(text) = render_value(value) else {
            continue;
        };
        let lname = name.to_ascii_lowercase();
        let Some(spec) = specs.iter().find(|s| s.name == lname) else {
            // Extension settings (`auto_explain.log_min_duration`) are only known once loaded.
            if !name.contains('.') {
                problems.push(format!(
                    "postgresql.parameters.{name}: unknown PostgreSQL parameter"
                ));
            }
            continue;
        };
        if let Err(why) = check_value(spec, &text) {
            problems.push(format!("postgresql.parameters.{name}: {why}"));
        }
    }
    problems
}

fn check_value(spec: &GucSpec, text: &str) -> Result<(), String> {
    let t = text.trim();
    match spec.vartype.as_str() {
        "bool" => {
            let l = t.to_ascii_lowercase();
            let ok = ["on", "off", "true", "false", "yes", "no", "1", "0"]
                .iter()
                .any(|w| !l.is_empty() && w.starts_with(&l) && l != "o");
            if ok {
                Ok(())
            } else {
                Err(format!("{text:?} is not a boolean (on/off)"))
            }
        }
        "enum" => {
            if spec.enumvals.iter().any(|v| v.eq_ignore_ascii_case(t)) {
                Ok(())
            } else {
                Err(format!(
                    "{text:?} is not one of {}",
                    spec.enumvals.join(", ")
                ))
            }
        }
        "integer" | "real" => {
            let n = parse_number(t, spec.unit.as_deref(), spec.vartype == "integer")
                .ok_or_else(|| format!("{text:?} is not a valid {} value", spec.vartype))?;
            if let Some(min) = spec.min_val {
                if n < min {
                    return Err(format!(
                        "{text} is below the minimum {min}{}",
                        unit_suffix(spec)
                    ));
                }
            }
            if let Some(max) = spec.max_val {
                if n > max {
                    return Err(format!(
                        "{text} is above the maximum {max}{}",
                        unit_suffix(spec)
                    ));
                }
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

fn unit_suffix(spec: &GucSpec) -> String {
    spec.unit
        .as_deref()
        .map(|u| format!(" (unit {u})"))
        .unwrap_or_default()
}

/// A number with an optional unit, converted into the setting's own unit (e.g. `8MB` for a
/// setting in `8kB` pages is 1024).
fn parse_number(t: &str, unit: Option<&str>, integer: bool) -> Option<f64> {
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-' || c == '+'))
        .unwrap_or(t.len());
    let (num, suffix) = t.split_at(split);
    let n: f64 = num.parse().ok()?;
    let suffix = suffix.trim();
    if suffix.is_empty() {
        return Some(n);
    }
    let base = unit?;
    let (scale_in, kind) = unit_scale(suffix)?;
    let (scale_base, base_kind) = unit_scale(base)?;
    if kind != base_kind {
        return None;
    }
    let v = n * scale_in / scale_base;
    Some(if integer { v.floor() } else { v })
}

/// (scale, kind): memory in bytes, time in milliseconds. Accepts `8kB`-style base units.
fn unit_scale(u: &str) -> Option<(f64, char)> {
    let split = u.find(|c: char| !c.is_ascii_digit()).unwrap_or(0);
    let (mult, u) = u.split_at(split);
    let mult: f64 = if mult.is_empty() {
        1.0
    } else {
        mult.parse().ok()?
    };
    let (scale, kind) = match u {
        "B" => (1.0, 'm'),
        "kB" => (1024.0, 'm'),
        "MB" => (1024.0 * 1024.0, 'm'),
        "GB" => (1024.0 * 1024.0 * 1024.0, 'm'),
        "TB" => (1024.0_f64.powi(4), 'm'),
        "us" => (0.001, 't'),
        "ms" => (1.0, 't'),
        "s" => (1000.0, 't'),
        "min" => (60_000.0, 't'),
        "h" => (3_600_000.0, 't'),
        "d" => (86_400_000.0, 't'),
        _ => return None,
    };
    Some((mult * scale, kind))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(
        name: &str,
        vartype: &str,
        unit: Option<&str>,
        min: f64,
        max: f64,
        enums: &[&str],
    ) -> GucSpec {
        GucSpec {
            name: name.into(),
            vartype: vartype.into(),
            unit: unit.map(str::to_string),
            min_val: Some(min),
            max_val: Some(max),
            enumvals: enums.iter().map(|s| s.to_string()).collect(),
            setting: String::new(),
            context: "user".into(),
        }
    }

    #[test]
    fn accepts_good_and_names_bad_values() {
        let specs = vec![
            spec("work_mem", "integer", Some("kB"), 64.0, 2147483647.0, &[]),
            spec(
                "shared_buffers",
                "integer",
                Some("8kB"),
                16.0,
                1073741823.0,
                &[],
            ),
            spec("max_connections", "integer", None, 1.0, 262143.0, &[]),
            spec(
                "wal_level",
                "enum",
                None,
                0.0,
                0.0,
                &["minimal", "replica", "logical"],
            ),
            spec("hot_standby", "bool", None, 0.0, 0.0, &[]),
            spec(
                "checkpoint_timeout",
                "integer",
                Some("s"),
                30.0,
                86400.0,
                &[],
            ),
        ];
        let good = json!({"work_mem": "8MB", "shared_buffers": "64MB", "max_connections": 100,
            "wal_level": "replica", "hot_standby": "on", "checkpoint_timeout": "5min", "x.y": 1});
        assert!(check_parameters(good.as_object().unwrap(), &specs).is_empty());
        let bad = json!({"work_mem": "1kB", "max_connections": "lots", "wal_level": "archive",
            "hot_standby": "maybe", "checkpoint_timeout": "2d", "nonsense_param": 1});
        let problems = check_parameters(bad.as_object().unwrap(), &specs);
        assert_eq!(problems.len(), 6, "{problems:?}");
        assert!(problems
            .iter()
            .any(|p| p.starts_with("postgresql.parameters.work_mem: ")));
        assert!(problems
            .iter()
            .any(|p| p.contains("unknown PostgreSQL parameter")));
    }
}
