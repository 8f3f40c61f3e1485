//! Tolerant typed reads from the JSON tree. Every read that fails records a [`Problem`] with
//! the key path and carries on, so one pass reports everything that is wrong.

use serde_json::{Map, Value};

use crate::error::Problem;

/// Problems and warnings gathered while reading one configuration.
#[derive(Debug, Default)]
pub(crate) struct Ctx {
    pub problems: Vec<Problem>,
    pub warnings: Vec<String>,
}

impl Ctx {
    pub fn problem(&mut self, path: &str, message: impl Into<String>) {
        self.problems.push(Problem::new(path, message));
    }

    pub fn warn(&mut self, message: impl Into<String>) {
        self.warnings.push(message.into());
    }

    pub fn required(&mut self, path: &str) {
        self.problem(path, "is required");
    }
}

/// `parent.key`, or `key` at the top level.
pub(crate) fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

/// "a string", "a list", ... for messages.
pub(crate) fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "nothing (null)",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

/// A scalar shown in a message, shortened.
fn shown(v: &Value) -> String {
    let s = match v {
        Value::String(s) => format!("{s:?}"),
        Value::Array(_) | Value::Object(_) => return kind(v).to_string(),
        other => other.to_string(),
    };
    if s.chars().count() > 60 {
        let cut: String = s.chars().take(57).collect();
        format!("{cut}...")
    } else {
        s
    }
}

/// A value that is absent or `null` counts as not set.
fn present(v: Option<&Value>) -> Option<&Value> {
    v.filter(|v| !v.is_null())
}

/// A mapping section. Not set gives `None`; any other type is a problem.
pub(crate) fn section<'a>(
    ctx: &mut Ctx,
    path: &str,
    v: Option<&'a Value>,
) -> Option<&'a Map<String, Value>> {
    match present(v)? {
        Value::Object(m) => Some(m),
        other => {
            ctx.problem(path, format!("expected a mapping, got {}", kind(other)));
            None
        }
    }
}

/// A mapping kept as is (parameters, tags, ...); empty when not set.
pub(crate) fn map_or_empty(ctx: &mut Ctx, path: &str, v: Option<&Value>) -> Map<String, Value> {
    section(ctx, path, v).cloned().unwrap_or_default()
}

/// A string. Numbers and booleans are taken as their text (`port: 5432`, `password: 1234`).
pub(crate) fn string(ctx: &mut Ctx, path: &str, v: Option<&Value>) -> Option<String> {
    match present(v)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        other => {
            ctx.problem(path, format!("expected a string, got {}", kind(other)));
            None
        }
    }
}

/// A string that must be set and not blank.
pub(crate) fn required_string(ctx: &mut Ctx, path: &str, v: Option<&Value>) -> String {
    let before = ctx.problems.len();
    match string(ctx, path, v) {
        Some(s) if !s.trim().is_empty() => s,
        _ => {
            if ctx.problems.len() == before {
                ctx.required(path);
            }
            String::new()
        }
    }
}

/// A boolean: `true`/`false`, and the strings Patroni accepts (`on`, `yes`, `1`, ...).
pub(crate) fn boolean(ctx: &mut Ctx, path: &str, v: Option<&Value>) -> Option<bool> {
    let v = present(v)?;
    let parsed = match v {
        Value::Bool(b) => Some(*b),
        Value::Number(n) => match n.as_i64() {
            Some(0) => Some(false),
            Some(1) => Some(true),
            _ => None,
        },
        Value::String(s) => parse_bool(s),
        _ => None,
    };
    if parsed.is_none() {
        ctx.problem(path, format!("expected true or false, got {}", shown(v)));
    }
    parsed
}

pub(crate) fn parse_bool(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "true" | "on" | "yes" | "y" | "1" => Some(true),
        "false" | "off" | "no" | "n" | "0" => Some(false),
        _ => None,
    }
}

/// A non-negative whole number; numeric strings are accepted.
pub(crate) fn uint(ctx: &mut Ctx, path: &str, v: Option<&Value>, what: &str) -> Option<u64> {
    let v = present(v)?;
    let parsed = match v {
        Value::Number(n) => n.as_u64().or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f <= u64::MAX as f64)
                .map(|f| f as u64)
        }),
        Value::String(s) => s.trim().parse::<u64>().ok(),
        _ => None,
    };
    if parsed.is_none() {
        ctx.problem(path, format!("expected {what}, got {}", shown(v)));
    }
    parsed
}

/// A list of strings. A single string is split at commas (`"h1:2379,h2:2379"`), as Patroni
/// allows for host lists.
pub(crate) fn string_list(ctx: &mut Ctx, path: &str, v: Option<&Value>) -> Option<Vec<String>> {
    match present(v)? {
        Value::Array(items) => {
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                match item {
                    Value::String(s) => out.push(s.clone()),
                    Value::Number(_) | Value::Bool(_) => out.push(item.to_string()),
                    Value::Null => {}
                    other => ctx.problem(
                        &format!("{path}[{i}]"),
                        format!("expected a string, got {}", kind(other)),
                    ),
                }
            }
            Some(out)
        }
        Value::String(s) => Some(split_commas(s)),
        other => {
            ctx.problem(
                path,
                format!("expected a list of strings, got {}", kind(other)),
            );
            None
        }
    }
}

/// A list of strings where a single string is not split (`pg_hba` lines).
pub(crate) fn strict_string_list(
    ctx: &mut Ctx,
    path: &str,
    v: Option<&Value>,
) -> Option<Vec<String>> {
    match present(v)? {
        Value::Array(_) => string_list(ctx, path, v),
        other => {
            ctx.problem(
                path,
                format!("expected a list of strings, got {}", kind(other)),
            );
            None
        }
    }
}

pub(crate) fn split_commas(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tolerant_types() {
        let mut ctx = Ctx::default();
        assert_eq!(uint(&mut ctx, "a", Some(&json!("60")), "n"), Some(60));
        assert_eq!(uint(&mut ctx, "a", Some(&json!(60.0)), "n"), Some(60));
        assert_eq!(boolean(&mut ctx, "b", Some(&json!("on"))), Some(true));
        assert_eq!(boolean(&mut ctx, "b", Some(&json!("False"))), Some(false));
        assert_eq!(
            string(&mut ctx, "s", Some(&json!(5432))),
            Some("5432".into())
        );
        assert_eq!(
            string_list(&mut ctx, "l", Some(&json!("a:1, b:2,"))),
            Some(vec!["a:1".to_string(), "b:2".to_string()])
        );
        assert_eq!(string(&mut ctx, "s", Some(&Value::Null)), None);
        assert!(ctx.problems.is_empty());
    }

    #[test]
    fn wrong_types_are_problems() {
        let mut ctx = Ctx::default();
        assert_eq!(uint(&mut ctx, "a", Some(&json!(-1)), "a number"), None);
        assert_eq!(boolean(&mut ctx, "b", Some(&json!("maybe"))), None);
        assert_eq!(string(&mut ctx, "s", Some(&json!([1]))), None);
        assert!(section(&mut ctx, "m", Some(&json!("x"))).is_none());
        assert_eq!(required_string(&mut ctx, "r", None), "");
        assert_eq!(
            string_list(&mut ctx, "l", Some(&json!([{"a": 1}]))),
            Some(vec![])
        );
        let shown: Vec<String> = ctx.problems.iter().map(|p| p.to_string()).collect();
        assert_eq!(
            shown,
            vec![
                "a: expected a number, got -1",
                "b: expected true or false, got \"maybe\"",
                "s: expected a string, got a list",
                "m: expected a mapping, got a string",
                "r: is required",
                "l[0]: expected a string, got a mapping",
            ]
        );
    }
}
