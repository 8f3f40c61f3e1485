//! Serialisers that reproduce what patronictl's Python libraries print, so scripts that parse
//! `patronictl -f json|yaml` output read `pghactl` output unchanged:
//! - [`json_dumps`]: `json.dumps` with its defaults (`", "` and `": "` separators, non-ASCII
//!   escaped as `\uXXXX`, keys in insertion order).
//! - [`yaml_dump`]: PyYAML's `safe_dump(..., default_flow_style=..., allow_unicode=True)`: keys
//!   sorted, strings quoted only when YAML 1.1 would read them as something else.

use serde_json::{Map, Value};

/// `json.dumps(value)`.
pub fn json_dumps(value: &Value) -> String {
    let mut out = String::new();
    write_json(&mut out, value, (", ", ": "));
    out
}

/// `json.dumps(value, separators=(',', ':'))`: how patronictl writes the `config` key.
pub fn json_dumps_compact(value: &Value) -> String {
    let mut out = String::new();
    write_json(&mut out, value, (",", ":"));
    out
}

fn write_json(out: &mut String, value: &Value, seps: (&str, &str)) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&n.to_string()),
        Value::String(s) => write_json_str(out, s),
        Value::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(seps.0);
                }
                write_json(out, v, seps);
            }
            out.push(']');
        }
        Value::Object(map) => {
            out.push('{');
            for (i, (k, v)) in map.iter().enumerate() {
                if i > 0 {
                    out.push_str(seps.0);
                }
                write_json_str(out, k);
                out.push_str(seps.1);
                write_json(out, v, seps);
            }
            out.push('}');
        }
    }
}

fn write_json_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || (c as u32) > 0x7e => {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// `yaml.safe_dump(value, default_flow_style=flow, allow_unicode=True)`: always ends with a
/// newline, as PyYAML's output does.
pub fn yaml_dump(value: &Value, flow: bool) -> String {
    let mut out = String::new();
    if flow {
        write_flow(&mut out, value);
        out.push('\n');
    } else {
        match value {
            Value::Object(m) if !m.is_empty() => write_block_map(&mut out, m, 0, false),
            Value::Array(a) if !a.is_empty() => write_block_seq(&mut out, a, 0, false),
            other => {
                write_value(&mut out, other, false);
                out.push('\n');
            }
        }
    }
    out
}

fn sorted(map: &Map<String, Value>) -> Vec<(&String, &Value)> {
    let mut entries: Vec<_> = map.iter().collect();
    entries.sort_by(|a, b| a.0.cmp(b.0));
    entries
}

/// Writes `map` one key per line at `indent`. With `inline`, the first key continues the
/// current line (the caller just wrote `- `).
fn write_block_map(out: &mut String, map: &Map<String, Value>, indent: usize, inline: bool) {
    for (i, (k, v)) in sorted(map).into_iter().enumerate() {
        if i > 0 || !inline {
            out.push_str(&" ".repeat(indent));
        }
        out.push_str(&scalar(k, false));
        out.push(':');
        match v {
            Value::Object(m) if !m.is_empty() => {
                out.push('\n');
                write_block_map(out, m, indent + 2, false);
            }
            Value::Array(a) if !a.is_empty() => {
                out.push('\n');
                // PyYAML does not indent a sequence inside a mapping.
                write_block_seq(out, a, indent, false);
            }
            other => {
                out.push(' ');
                write_value(out, other, false);
                out.push('\n');
            }
        }
    }
}

fn write_block_seq(out: &mut String, items: &[Value], indent: usize, inline: bool) {
    for (i, v) in items.iter().enumerate() {
        if i > 0 || !inline {
            out.push_str(&" ".repeat(indent));
        }
        out.push_str("- ");
        match v {
            Value::Object(m) if !m.is_empty() => write_block_map(out, m, indent + 2, true),
            Value::Array(a) if !a.is_empty() => write_block_seq(out, a, indent + 2, true),
            other => {
                write_value(out, other, false);
                out.push('\n');
            }
        }
    }
}

fn write_flow(out: &mut String, value: &Value) {
    write_value(out, value, true)
}

/// A value inline: scalars as they read in flow (`in_flow`) or block context, collections in
/// flow style.
fn write_value(out: &mut String, value: &Value, in_flow: bool) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&n.to_string()),
        Value::String(s) => out.push_str(&scalar(s, in_flow)),
        Value::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_flow(out, v);
            }
            out.push(']');
        }
        Value::Object(map) => {
            out.push('{');
            for (i, (k, v)) in sorted(map).into_iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                out.push_str(&scalar(k, true));
                out.push_str(": ");
                write_flow(out, v);
            }
            out.push('}');
        }
    }
}

/// A string scalar as PyYAML writes it: plain when it reads back as the same string, single
/// quoted otherwise, double quoted when it holds characters single quotes cannot carry.
pub fn scalar(s: &str, in_flow: bool) -> String {
    if s.chars().any(|c| c.is_control() && c != '\n') || s.contains('\n') {
        return double_quoted(s);
    }
    if plain_ok(s, in_flow) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "''"))
    }
}

fn double_quoted(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\x{:02X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn plain_ok(s: &str, in_flow: bool) -> bool {
    if s.is_empty() || resolves_to_non_string(s) {
        return false;
    }
    if s.starts_with(' ') || s.ends_with(' ') || s.starts_with("---") || s.starts_with("...") {
        return false;
    }
    let first = s.chars().next().unwrap_or(' ');
    let second = s.chars().nth(1);
    if "#,[]{}&*!|>'\"%@`".contains(first) {
        return false;
    }
    if "-?:".contains(first) && second.is_none_or(|c| c == ' ') {
        return false;
    }
    if s.contains(": ") || s.contains(" #") || s.ends_with(':') {
        return false;
    }
    if in_flow && s.chars().any(|c| ",?[]{}".contains(c)) {
        return false;
    }
    !(in_flow && s.contains(':'))
}

/// True when PyYAML's YAML 1.1 implicit resolvers would load `s` as a bool, null, number,
/// timestamp or merge key.
pub fn resolves_to_non_string(s: &str) -> bool {
    const WORDS: &[&str] = &[
        "yes", "Yes", "YES", "no", "No", "NO", "true", "True", "TRUE", "false", "False", "FALSE",
        "on", "On", "ON", "off", "Off", "OFF", "null", "Null", "NULL", "~", "<<", "=",
    ];
    WORDS.contains(&s) || is_int(s) || is_float(s) || is_timestamp(s)
}

fn strip_sign(s: &str) -> &str {
    s.strip_prefix(['-', '+']).unwrap_or(s)
}

fn all(s: &str, f: impl Fn(char) -> bool) -> bool {
    !s.is_empty() && s.chars().all(f)
}

fn digits_(s: &str) -> bool {
    all(s, |c| c.is_ascii_digit() || c == '_')
}

/// `N(:[0-5]?[0-9])+`: base-60 groups after the first.
fn sexagesimal_tail(groups: &[&str]) -> bool {
    !groups.is_empty()
        && groups.iter().all(|g| {
            (1..=2).contains(&g.len())
                && all(g, |c| c.is_ascii_digit())
                && (g.len() == 1 || g.as_bytes()[0] <= b'5')
        })
}

fn is_int(s: &str) -> bool {
    let u = strip_sign(s);
    if let Some(b) = u.strip_prefix("0b") {
        return all(b, |c| c == '0' || c == '1' || c == '_');
    }
    if let Some(x) = u.strip_prefix("0x") {
        return all(x, |c| c.is_ascii_hexdigit() || c == '_');
    }
    if u == "0" {
        return true;
    }
    if let Some(o) = u.strip_prefix('0') {
        return all(o, |c| ('0'..='7').contains(&c) || c == '_');
    }
    let groups: Vec<&str> = u.split(':').collect();
    let head = groups[0];
    let head_ok = head.starts_with(|c: char| ('1'..='9').contains(&c)) && digits_(head);
    head_ok && (groups.len() == 1 || sexagesimal_tail(&groups[1..]))
}

fn is_float(s: &str) -> bool {
    if matches!(s, ".nan" | ".NaN" | ".NAN") {
        return true;
    }
    let u = strip_sign(s);
    if matches!(u, ".inf" | ".Inf" | ".INF") {
        return true;
    }
    // Mantissa and optional exponent `[eE][-+][0-9]+`.
    let (mant, exp_ok) = match u.find(['e', 'E']) {
        Some(i) => {
            let e = &u[i + 1..];
            let ok = e.starts_with(['-', '+']) && all(&e[1..], |c| c.is_ascii_digit());
            (&u[..i], ok)
        }
        None => (u, true),
    };
    if let Some((int, frac)) = mant.split_once('.') {
        if frac.contains('.') || !(frac.is_empty() || digits_(frac)) {
            return false;
        }
        if int.is_empty() {
            // `.5`, `.5e+3` (no sign allowed before it, but a sign was stripped: accept).
            return exp_ok && frac.starts_with(|c: char| c.is_ascii_digit()) && s == u;
        }
        if int.contains(':') {
            let groups: Vec<&str> = int.split(':').collect();
            return u.find(['e', 'E']).is_none()
                && groups[0].starts_with(|c: char| c.is_ascii_digit())
                && digits_(groups[0])
                && sexagesimal_tail(&groups[1..]);
        }
        return exp_ok && int.starts_with(|c: char| c.is_ascii_digit()) && digits_(int);
    }
    false
}

fn is_timestamp(s: &str) -> bool {
    let b = s.as_bytes();
    let d = |i: usize| b.get(i).is_some_and(u8::is_ascii_digit);
    // YYYY-MM-DD alone.
    if b.len() == 10
        && (0..4).all(d)
        && b[4] == b'-'
        && d(5)
        && d(6)
        && b[7] == b'-'
        && d(8)
        && d(9)
    {
        return true;
    }
    // YYYY-M(M)-D(D)(T|t|spaces)H(H):MM:SS(.f*)?( *(Z|[-+]H(H)(:MM)?))?
    let mut p = Parser { b, i: 0 };
    p.digits(4, 4)
        && p.byte(b'-')
        && p.digits(1, 2)
        && p.byte(b'-')
        && p.digits(1, 2)
        && (p.byte(b'T') || p.byte(b't') || p.spaces() > 0)
        && p.digits(1, 2)
        && p.byte(b':')
        && p.digits(2, 2)
        && p.byte(b':')
        && p.digits(2, 2)
        && {
            if p.byte(b'.') {
                p.digits(0, usize::MAX);
            }
            p.spaces();
            if !p.byte(b'Z') && (p.byte(b'-') || p.byte(b'+')) {
                p.digits(1, 2) && (!p.byte(b':') || p.digits(2, 2))
            } else {
                true
            }
        }
        && p.i == b.len()
}

struct Parser<'a> {
    b: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn byte(&mut self, c: u8) -> bool {
        if self.b.get(self.i) == Some(&c) {
            self.i += 1;
            true
        } else {
            false
        }
    }
    fn digits(&mut self, min: usize, max: usize) -> bool {
        let start = self.i;
        while self.i - start < max && self.b.get(self.i).is_some_and(u8::is_ascii_digit) {
            self.i += 1;
        }
        self.i - start >= min
    }
    fn spaces(&mut self) -> usize {
        let start = self.i;
        while matches!(self.b.get(self.i), Some(b' ' | b'\t')) {
            self.i += 1;
        }
        self.i - start
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_matches_python_defaults() {
        let v = json!([{"Cluster": "c", "TL": 1, "Tags": {"a": true, "b": null}}, {"x": "é\"\n"}]);
        assert_eq!(
            json_dumps(&v),
            r#"[{"Cluster": "c", "TL": 1, "Tags": {"a": true, "b": null}}, {"x": "\u00e9\"\n"}]"#
        );
        assert_eq!(json_dumps(&json!([])), "[]");
        assert_eq!(json_dumps(&json!("😀")), r#""\ud83d\ude00""#);
    }

    #[test]
    fn yaml_quotes_like_pyyaml() {
        for s in [
            "on", "yes", "No", "null", "~", "", "123", "0x1F", "1_000", "1.5", ".5", "1.0e+3",
            "1:20:30",
        ] {
            assert!(scalar(s, false).starts_with('\''), "{s:?} should be quoted");
        }
        for s in [
            "2026-11-22T02:58:28+00:00",
            "2024-02-07",
            "2024-02-07 18:50:54.947",
        ] {
            assert_eq!(scalar(s, false), format!("'{s}'"));
        }
        for s in [
            "0/4000000",
            "127.0.0.1:5451",
            "192.168.2.11",
            "streaming",
            "64MB",
            "replica",
        ] {
            assert_eq!(scalar(s, false), s);
        }
        assert_eq!(scalar("*", false), "'*'");
        assert_eq!(scalar("a: b", false), "'a: b'");
        assert_eq!(scalar("it's", false), "it's");
        assert_eq!(scalar("'x", false), "'''x'");
        assert_eq!(scalar("a,b", true), "'a,b'");
        assert_eq!(scalar("a,b", false), "a,b");
        assert_eq!(scalar("1:20", false), "'1:20'");
        assert_eq!(scalar("1.2.3", false), "1.2.3");
        assert_eq!(scalar("1e+3", false), "1e+3");
    }

    #[test]
    fn yaml_block_and_flow_layout() {
        let v = json!([{"b": 1, "a": {"y": [1, "x"], "x": {}}, "c": "on"}, {"k": []}]);
        assert_eq!(
            yaml_dump(&v, false),
            "- a:\n    x: {}\n    y:\n    - 1\n    - x\n  b: 1\n  c: 'on'\n- k: []\n"
        );
        assert_eq!(
            yaml_dump(&json!({"nofailover": true, "clonefrom": "x"}), true),
            "{clonefrom: x, nofailover: true}\n"
        );
        assert_eq!(yaml_dump(&json!([]), false), "[]\n");
        assert_eq!(
            yaml_dump(&json!({"a": {"b": {"c": 1}}}), false),
            "a:\n  b:\n    c: 1\n"
        );
        assert_eq!(yaml_dump(&json!([[1, 2], 3]), false), "- - 1\n  - 2\n- 3\n");
    }
}
