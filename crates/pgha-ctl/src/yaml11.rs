//! YAML read the way patronictl reads it (PyYAML's `safe_load`): YAML 1.1 scalar resolution, so
//! what an operator types into `edit-config` lands in the DCS with the same JSON types Patroni
//! would write. `on`/`off`/`yes`/`no` are booleans, `0755` is octal, `1:30` is 90, `1e5` is a
//! string (a YAML 1.1 float needs a dot), `8MB` is a string, an empty value is `null`. Quoted,
//! literal and folded scalars are always strings.
//!
//! libyaml parses (its event API, through `unsafe-libyaml`); this module builds the JSON value,
//! with anchors, aliases and `<<` merge keys. Mapping keys become JSON object keys the way
//! `json.dumps` converts them (`1` → `"1"`, `true` → `"true"`, `null` → `"null"`).

use std::collections::HashMap;
use std::mem::MaybeUninit;

use serde_json::{Map, Number, Value};
use unsafe_libyaml as unsafe_libyaml_sys;

/// A parsed event, owning its data.
#[derive(Debug)]
enum Event {
    StreamStart,
    StreamEnd,
    DocumentStart,
    DocumentEnd,
    Alias(String),
    Scalar {
        anchor: Option<String>,
        tag: Option<String>,
        value: String,
        plain: bool,
    },
    SequenceStart(Option<String>),
    SequenceEnd,
    MappingStart(Option<String>),
    MappingEnd,
}

/// Owns a libyaml parser over a copy of the input; the parser lives in a box so its address
/// never changes, and the input outlives it.
struct Parser {
    raw: Box<MaybeUninit<unsafe_libyaml_sys::yaml_parser_t>>,
    _input: Vec<u8>,
}

unsafe fn owned(p: *const u8) -> Option<String> {
    if p.is_null() {
        return None;
    }
    // SAFETY: libyaml hands out NUL-terminated strings valid until the event is deleted.
    let c = unsafe { std::ffi::CStr::from_ptr(p as *const std::ffi::c_char) };
    Some(c.to_string_lossy().into_owned())
}

impl Parser {
    fn new(text: &str) -> Result<Parser, String> {
        let input = text.as_bytes().to_vec();
        let mut raw: Box<MaybeUninit<unsafe_libyaml_sys::yaml_parser_t>> =
            Box::new(MaybeUninit::uninit());
        // SAFETY: the parser is initialized in place before use and deleted in Drop; the input
        // buffer is owned by the same struct and dropped after the parser.
        unsafe {
            let p = raw.as_mut_ptr();
            if unsafe_libyaml_sys::yaml_parser_initialize(p).fail {
                return Err("cannot initialize the YAML parser".into());
            }
            unsafe_libyaml_sys::yaml_parser_set_encoding(p, unsafe_libyaml_sys::YAML_UTF8_ENCODING);
            unsafe_libyaml_sys::yaml_parser_set_input_string(p, input.as_ptr(), input.len() as _);
        }
        Ok(Parser { raw, _input: input })
    }

    fn error(&mut self) -> String {
        // SAFETY: the parser is initialized; problem is a static C string or null.
        unsafe {
            let p: &unsafe_libyaml_sys::yaml_parser_t = self.raw.assume_init_ref();
            let problem = owned(p.problem as *const u8).unwrap_or_else(|| "syntax error".into());
            let mark = p.problem_mark;
            format!(
                "{problem} (line {}, column {})",
                mark.line + 1,
                mark.column + 1
            )
        }
    }

    fn next(&mut self) -> Result<Event, String> {
        let mut event = MaybeUninit::<unsafe_libyaml_sys::yaml_event_t>::uninit();
        // SAFETY: on success the event is fully written; we copy what we need out of it and
        // delete it before returning.
        unsafe {
            let p = self.raw.as_mut_ptr();
            let e = event.as_mut_ptr();
            if unsafe_libyaml_sys::yaml_parser_parse(p, e).fail {
                return Err(self.error());
            }
            let ev = &*e;
            let out = match ev.type_ {
                unsafe_libyaml_sys::YAML_STREAM_START_EVENT => Event::StreamStart,
                unsafe_libyaml_sys::YAML_STREAM_END_EVENT => Event::StreamEnd,
                unsafe_libyaml_sys::YAML_DOCUMENT_START_EVENT => Event::DocumentStart,
                unsafe_libyaml_sys::YAML_DOCUMENT_END_EVENT => Event::DocumentEnd,
                unsafe_libyaml_sys::YAML_ALIAS_EVENT => {
                    Event::Alias(owned(ev.data.alias.anchor).unwrap_or_default())
                }
                unsafe_libyaml_sys::YAML_SCALAR_EVENT => {
                    let s = ev.data.scalar;
                    let bytes = std::slice::from_raw_parts(s.value, s.length as usize);
                    Event::Scalar {
                        anchor: owned(s.anchor),
                        tag: owned(s.tag),
                        value: String::from_utf8_lossy(bytes).into_owned(),
                        plain: s.style == unsafe_libyaml_sys::YAML_PLAIN_SCALAR_STYLE,
                    }
                }
                unsafe_libyaml_sys::YAML_SEQUENCE_START_EVENT => {
                    Event::SequenceStart(owned(ev.data.sequence_start.anchor))
                }
                unsafe_libyaml_sys::YAML_SEQUENCE_END_EVENT => Event::SequenceEnd,
                unsafe_libyaml_sys::YAML_MAPPING_START_EVENT => {
                    Event::MappingStart(owned(ev.data.mapping_start.anchor))
                }
                unsafe_libyaml_sys::YAML_MAPPING_END_EVENT => Event::MappingEnd,
                _ => Event::StreamEnd,
            };
            unsafe_libyaml_sys::yaml_event_delete(e);
            Ok(out)
        }
    }
}

impl Drop for Parser {
    fn drop(&mut self) {
        // SAFETY: initialized in `new` (a failed initialize returns before a Parser exists).
        unsafe { unsafe_libyaml_sys::yaml_parser_delete(self.raw.as_mut_ptr()) }
    }
}

/// A node under construction: PyYAML builds keys as values too, so keys keep their types here
/// until they become JSON object keys.
struct Builder {
    parser: Parser,
    anchors: HashMap<String, Value>,
}

const TAG_PREFIX: &str = "tag:yaml.org,2002:";

impl Builder {
    /// The node that starts with `first`.
    fn node(&mut self, first: Event) -> Result<Value, String> {
        match first {
            Event::Alias(name) => self
                .anchors
                .get(&name)
                .cloned()
                .ok_or_else(|| format!("found undefined alias {name:?}")),
            Event::Scalar {
                anchor,
                tag,
                value,
                plain,
            } => {
                let v = scalar(&value, plain, tag.as_deref())?;
                if let Some(a) = anchor {
                    self.anchors.insert(a, v.clone());
                }
                Ok(v)
            }
            Event::SequenceStart(anchor) => {
                let mut items = Vec::new();
                loop {
                    match self.parser.next()? {
                        Event::SequenceEnd => break,
                        e => items.push(self.node(e)?),
                    }
                }
                let v = Value::Array(items);
                if let Some(a) = anchor {
                    self.anchors.insert(a, v.clone());
                }
                Ok(v)
            }
            Event::MappingStart(anchor) => {
                let mut merged = Map::new();
                let mut own = Map::new();
                loop {
                    let key = match self.parser.next()? {
                        Event::MappingEnd => break,
                        Event::Scalar {
                            value, plain: true, ..
                        } if value == "<<" => {
                            let e = self.parser.next()?;
                            let v = self.node(e)?;
                            merge_into(&mut merged, v)?;
                            continue;
                        }
                        e => self.node(e)?,
                    };
                    let e = self.parser.next()?;
                    let value = self.node(e)?;
                    own.insert(json_key(&key)?, value);
                }
                for (k, v) in own {
                    merged.insert(k, v);
                }
                let v = Value::Object(merged);
                if let Some(a) = anchor {
                    self.anchors.insert(a, v.clone());
                }
                Ok(v)
            }
            other => Err(format!("unexpected YAML event {other:?}")),
        }
    }
}

/// `<<: *base` or `<<: [*a, *b]`: keys not yet present are taken, earlier maps first.
fn merge_into(into: &mut Map<String, Value>, v: Value) -> Result<(), String> {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                into.entry(k).or_insert(v);
            }
            Ok(())
        }
        Value::Array(items) => items.into_iter().try_for_each(|i| match i {
            Value::Object(_) => merge_into(into, i),
            _ => Err("expected a mapping for merging".to_string()),
        }),
        _ => Err("expected a mapping or list of mappings for merging".to_string()),
    }
}

/// A key as `json.dumps` writes it.
fn json_key(key: &Value) -> Result<String, String> {
    match key {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(if *b { "true" } else { "false" }.to_string()),
        Value::Null => Ok("null".to_string()),
        _ => Err("found unhashable key".to_string()),
    }
}

fn scalar(value: &str, plain: bool, tag: Option<&str>) -> Result<Value, String> {
    let tag = tag.map(|t| {
        t.strip_prefix("!!")
            .map_or(t.to_string(), |s| format!("{TAG_PREFIX}{s}"))
    });
    match tag.as_deref() {
        None if plain => Ok(resolve_plain(value)),
        None | Some("!") => Ok(Value::String(value.to_string())),
        Some(t) => match t.strip_prefix(TAG_PREFIX) {
            Some("str") => Ok(Value::String(value.to_string())),
            Some("null") => Ok(Value::Null),
            Some("bool") => bool_value(value)
                .map(Value::Bool)
                .ok_or_else(|| format!("invalid boolean {value:?}")),
            Some("int") => int_value(value).ok_or_else(|| format!("invalid integer {value:?}")),
            Some("float") => float_value(value)
                .or_else(|| int_value(value))
                .ok_or_else(|| format!("invalid float {value:?}")),
            _ => Err(format!(
                "could not determine a constructor for the tag '{t}'"
            )),
        },
    }
}

fn bool_value(s: &str) -> Option<bool> {
    match s {
        "yes" | "Yes" | "YES" | "true" | "True" | "TRUE" | "on" | "On" | "ON" => Some(true),
        "no" | "No" | "NO" | "false" | "False" | "FALSE" | "off" | "Off" | "OFF" => Some(false),
        _ => None,
    }
}

fn split_sign(s: &str) -> (i64, &str) {
    match s.as_bytes().first() {
        Some(b'-') => (-1, &s[1..]),
        Some(b'+') => (1, &s[1..]),
        _ => (1, s),
    }
}

fn all(s: &str, f: impl Fn(char) -> bool) -> bool {
    !s.is_empty() && s.chars().all(f)
}

/// `1:30:00` style: every group after the first is 0..59 written with one or two digits.
fn sexagesimal_groups(rest: &[&str]) -> bool {
    !rest.is_empty()
        && rest.iter().all(|g| {
            (1..=2).contains(&g.len())
                && all(g, |c| c.is_ascii_digit())
                && g.parse::<u32>().is_ok_and(|n| n < 60)
        })
}

/// PyYAML's int resolver and constructor.
fn int_value(text: &str) -> Option<Value> {
    let (sign, body) = split_sign(text);
    let digits_ = |s: &str, radix: u32| all(s, |c| c == '_' || c.is_digit(radix));
    let clean = |s: &str| s.replace('_', "");
    let n: i128 = if let Some(b) = body.strip_prefix("0b") {
        if !digits_(b, 2) {
            return None;
        }
        i128::from_str_radix(&clean(b), 2).ok()?
    } else if let Some(h) = body.strip_prefix("0x") {
        if !digits_(h, 16) {
            return None;
        }
        i128::from_str_radix(&clean(h), 16).ok()?
    } else if body == "0" {
        0
    } else if body.starts_with('0') && body.len() > 1 {
        if !digits_(&body[1..], 8) {
            return None;
        }
        let c = clean(&body[1..]);
        if c.is_empty() {
            0
        } else {
            i128::from_str_radix(&c, 8).ok()?
        }
    } else if body.contains(':') {
        let groups: Vec<&str> = body.split(':').collect();
        let first = groups[0];
        if !(first.starts_with(|c: char| ('1'..='9').contains(&c))
            && digits_(first, 10)
            && sexagesimal_groups(&groups[1..]))
        {
            return None;
        }
        groups.iter().try_fold(0i128, |acc, g| {
            Some(acc * 60 + clean(g).parse::<i128>().ok()?)
        })?
    } else {
        if !(body.starts_with(|c: char| ('1'..='9').contains(&c)) && digits_(body, 10)) {
            return None;
        }
        clean(body).parse().ok()?
    };
    let n = n * sign as i128;
    if let Ok(i) = i64::try_from(n) {
        Some(Value::from(i))
    } else if let Ok(u) = u64::try_from(n) {
        Some(Value::from(u))
    } else {
        Number::from_f64(n as f64).map(Value::Number)
    }
}

/// PyYAML's float resolver and constructor. `.inf` and `.nan` have no JSON form and stay strings.
fn float_value(text: &str) -> Option<Value> {
    let (sign, body) = split_sign(text);
    let is_digit_ = |c: char| c == '_' || c.is_ascii_digit();
    let exponent_ok = |e: &str| {
        let Some(rest) = e.strip_prefix(['e', 'E']) else {
            return false;
        };
        let Some(digits) = rest.strip_prefix(['+', '-']) else {
            return false;
        };
        all(digits, |c| c.is_ascii_digit())
    };
    let value: f64 = if body.contains(':') {
        // [-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]*
        let (int_part, frac) = body.rsplit_once('.')?;
        if !all(frac, is_digit_) && !frac.is_empty() {
            return None;
        }
        let groups: Vec<&str> = int_part.split(':').collect();
        if !all(groups[0], is_digit_) || !groups[0].starts_with(|c: char| c.is_ascii_digit()) {
            return None;
        }
        if !sexagesimal_groups(&groups[1..]) {
            return None;
        }
        let mut v = 0f64;
        for g in &groups {
            v = v * 60.0 + g.replace('_', "").parse::<f64>().ok()?;
        }
        let frac = frac.replace('_', "");
        v + if frac.is_empty() {
            0.0
        } else {
            format!("0.{frac}").parse::<f64>().ok()?
        }
    } else {
        let (mantissa, exp) = match body.find(['e', 'E']) {
            Some(i) => (&body[..i], &body[i..]),
            None => (body, ""),
        };
        if !exp.is_empty() && !exponent_ok(exp) {
            return None;
        }
        let (int_part, frac) = mantissa.split_once('.')?;
        if int_part.is_empty() {
            // \.[0-9][0-9_]*: no sign allowed, a digit first
            if sign < 0 || text.starts_with('+') || !frac.starts_with(|c: char| c.is_ascii_digit())
            {
                return None;
            }
        } else if !int_part.starts_with(|c: char| c.is_ascii_digit()) || !all(int_part, is_digit_) {
            return None;
        }
        if !frac.is_empty() && !all(frac, is_digit_) {
            return None;
        }
        let clean = format!(
            "{}.{}{}",
            int_part.replace('_', ""),
            frac.replace('_', ""),
            exp
        );
        let clean = if clean.starts_with('.') {
            format!("0{clean}")
        } else {
            clean
        };
        clean.parse::<f64>().ok()?
    };
    Number::from_f64(value * sign as f64).map(Value::Number)
}

/// The value of a plain (unquoted) scalar under YAML 1.1 rules.
pub fn resolve_plain(s: &str) -> Value {
    if matches!(s, "" | "~" | "null" | "Null" | "NULL") {
        return Value::Null;
    }
    if let Some(b) = bool_value(s) {
        return Value::Bool(b);
    }
    if let Some(v) = int_value(s) {
        return v;
    }
    if let Some(v) = float_value(s) {
        return v;
    }
    Value::String(s.to_string())
}

/// Parses one YAML document (`null` for an empty one), as `yaml.safe_load` does.
pub fn load(text: &str) -> Result<Value, String> {
    let mut b = Builder {
        parser: Parser::new(text)?,
        anchors: HashMap::new(),
    };
    let mut doc = Value::Null;
    let mut documents = 0;
    loop {
        match b.parser.next()? {
            Event::StreamStart | Event::DocumentEnd => {}
            Event::StreamEnd => break,
            Event::DocumentStart => {
                documents += 1;
                if documents > 1 {
                    return Err("expected a single document in the stream".into());
                }
                let first = b.parser.next()?;
                doc = b.node(first)?;
            }
            other => return Err(format!("unexpected YAML event {other:?}")),
        }
    }
    Ok(doc)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn plain_scalars_resolve_as_in_yaml_1_1() {
        let cases = [
            ("20", json!(20)),
            ("-3", json!(-3)),
            ("1_000", json!(1000)),
            ("0755", json!(493)),
            ("0x1F", json!(31)),
            ("0b101", json!(5)),
            ("1:30", json!(90)),
            ("1.1", json!(1.1)),
            ("0.9", json!(0.9)),
            ("1.", json!(1.0)),
            (".5", json!(0.5)),
            ("1.0e+3", json!(1000.0)),
            ("1e5", json!("1e5")),
            ("1.0e5", json!("1.0e5")),
            ("8MB", json!("8MB")),
            ("off", json!(false)),
            ("On", json!(true)),
            ("yes", json!(true)),
            ("y", json!("y")),
            ("", Value::Null),
            ("~", Value::Null),
            ("null", Value::Null),
            ("2024-01-01", json!("2024-01-01")),
            (".inf", json!(".inf")),
            ("09", json!("09")),
        ];
        for (text, want) in cases {
            assert_eq!(resolve_plain(text), want, "{text:?}");
        }
    }

    #[test]
    fn documents_keep_order_quotes_anchors_and_merges() {
        let doc = load(
            "ttl: 30\nloop_wait: 10\npostgresql:\n  parameters:\n    hot_standby: 'on'\n    \
             synchronous_commit: off\n    work_mem: 8MB\n  pg_hba:\n  - host all all 0.0.0.0/0 md5\n\
             base: &b {x: 1, y: 2}\nderived:\n  <<: *b\n  y: 3\n1: one\n",
        )
        .unwrap();
        assert_eq!(
            serde_json::to_string(&doc).unwrap(),
            r#"{"ttl":30,"loop_wait":10,"postgresql":{"parameters":{"hot_standby":"on","synchronous_commit":false,"work_mem":"8MB"},"pg_hba":["host all all 0.0.0.0/0 md5"]},"base":{"x":1,"y":2},"derived":{"x":1,"y":3},"1":"one"}"#
        );
        assert_eq!(load("").unwrap(), Value::Null);
        assert_eq!(load("[a, 'b', 1]").unwrap(), json!(["a", "b", 1]));
        assert_eq!(load("!!str 123").unwrap(), json!("123"));
        assert!(load("a: [").is_err());
        assert!(load("a: 1\n---\nb: 2\n").is_err());
        let err = load("a: b: c").unwrap_err();
        assert!(err.contains("line 1"), "{err}");
    }
}
