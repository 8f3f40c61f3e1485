//! Permanent replication slots (`slots` in the dynamic configuration), `ignore_slots` matchers,
//! and the slots a server has, in the words both the core and the postgres adapter use.

use serde_json::{Map, Value};

use crate::Lsn;

/// What a permanent slot is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SlotKind {
    Physical,
    Logical { database: String, plugin: String },
}

/// One entry of `slots`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PermanentSlot {
    pub name: String,
    pub kind: SlotKind,
}

impl PermanentSlot {
    pub fn is_logical(&self) -> bool {
        matches!(self.kind, SlotKind::Logical { .. })
    }
}

/// One entry of `ignore_slots`: every attribute given must match; absent ones match anything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SlotMatcher {
    pub name: Option<String>,
    pub kind: Option<String>,
    pub database: Option<String>,
    pub plugin: Option<String>,
}

/// A non-temporary slot as `pg_replication_slots` shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SlotInfo {
    pub name: String,
    /// `physical` or `logical`.
    pub kind: String,
    pub database: Option<String>,
    pub plugin: Option<String>,
    pub active: bool,
    pub restart_lsn: Option<Lsn>,
    pub confirmed_flush_lsn: Option<Lsn>,
}

impl SlotInfo {
    pub fn is_logical(&self) -> bool {
        self.kind == "logical"
    }

    /// The position other members follow: confirmed_flush_lsn for a logical slot (what the
    /// consumer acknowledged), restart_lsn for a physical one.
    pub fn position(&self) -> Option<Lsn> {
        if self.is_logical() {
            self.confirmed_flush_lsn
        } else {
            self.restart_lsn
        }
    }

    /// Whether this slot is what `want` describes (same type; same database and plugin for
    /// a logical one).
    pub fn is(&self, want: &SlotKind) -> bool {
        match want {
            SlotKind::Physical => self.kind == "physical",
            SlotKind::Logical { database, plugin } => {
                self.is_logical()
                    && self.database.as_deref() == Some(database.as_str())
                    && self.plugin.as_deref() == Some(plugin.as_str())
            }
        }
    }
}

impl SlotMatcher {
    pub fn matches(&self, slot: &SlotInfo) -> bool {
        let eq = |want: &Option<String>, have: Option<&str>| {
            want.as_deref().is_none_or(|w| Some(w) == have)
        };
        eq(&self.name, Some(&slot.name))
            && eq(&self.kind, Some(&slot.kind))
            && eq(&self.database, slot.database.as_deref())
            && eq(&self.plugin, slot.plugin.as_deref())
    }
}

/// What PostgreSQL accepts as a slot name: 1 to 63 bytes of `[a-z0-9_]`.
pub fn valid_slot_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

fn text(v: Option<&Value>) -> Option<String> {
    match v {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.is_empty() => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(other) => Some(other.to_string()),
    }
}

/// The permanent slots of a dynamic configuration (Patroni reads `permanent_replication_slots`,
/// `permanent_slots` or `slots`, the first one set). Entries that cannot work are left out,
/// each with a warning naming `slots.NAME`; nothing else is affected.
pub fn parse_permanent_slots(config: &Map<String, Value>) -> (Vec<PermanentSlot>, Vec<String>) {
    let set = |k: &str| config.get(k).filter(|v| is_truthy(v));
    let Some((key, value)) = ["permanent_replication_slots", "permanent_slots", "slots"]
        .into_iter()
        .find_map(|k| set(k).map(|v| (k, v)))
    else {
        return (Vec::new(), Vec::new());
    };
    let Value::Object(entries) = value else {
        return (
            Vec::new(),
            vec![format!(
                "{key}: expected a mapping of slot names to {{type: physical}} or {{type: logical, database: DB, plugin: PLUGIN}}, got {value}; no permanent slots"
            )],
        );
    };
    let mut slots = Vec::new();
    let mut warnings = Vec::new();
    for (name, v) in entries {
        let setting = format!("{key}.{name}");
        if !valid_slot_name(name) {
            warnings.push(format!(
                "{setting}: invalid replication slot name {name:?} (use 1 to 63 characters from [a-z0-9_]); slot skipped"
            ));
            continue;
        }
        let attrs = match v {
            Value::Object(m) => m.clone(),
            // An empty value is a physical slot, as in Patroni.
            other if !is_truthy(other) => Map::new(),
            other => {
                warnings.push(format!(
                    "{setting}: expected {{type: physical}} or {{type: logical, database: DB, plugin: PLUGIN}}, got {other}; slot skipped"
                ));
                continue;
            }
        };
        let database = text(attrs.get("database"));
        let plugin = text(attrs.get("plugin"));
        let kind = match text(attrs.get("type")) {
            Some(t) => t,
            None if database.is_some() && plugin.is_some() => "logical".into(),
            None => "physical".into(),
        };
        let kind = match (kind.as_str(), database, plugin) {
            ("physical", _, _) => SlotKind::Physical,
            ("logical", Some(database), Some(plugin)) => SlotKind::Logical { database, plugin },
            ("logical", _, _) => {
                warnings.push(format!(
                    "{setting}: a logical slot needs both database and plugin; slot skipped"
                ));
                continue;
            }
            (other, _, _) => {
                warnings.push(format!(
                    "{setting}: unknown slot type {other:?} (physical or logical); slot skipped"
                ));
                continue;
            }
        };
        slots.push(PermanentSlot {
            name: name.clone(),
            kind,
        });
    }
    (slots, warnings)
}

/// `ignore_slots`: a list of matchers; entries that are not mappings are left out with a warning.
pub fn parse_ignore_slots(value: Option<&Value>) -> (Vec<SlotMatcher>, Vec<String>) {
    let items = match value {
        None | Some(Value::Null) => return (Vec::new(), Vec::new()),
        Some(Value::Array(items)) => items,
        Some(other) => {
            return (
                Vec::new(),
                vec![format!(
                    "ignore_slots: expected a list of {{name, type, database, plugin}} matchers, got {other}; ignored"
                )],
            )
        }
    };
    let mut matchers = Vec::new();
    let mut warnings = Vec::new();
    for (i, item) in items.iter().enumerate() {
        match item {
            Value::Object(m) => matchers.push(SlotMatcher {
                name: text(m.get("name")),
                kind: text(m.get("type")),
                database: text(m.get("database")),
                plugin: text(m.get("plugin")),
            }),
            other => warnings.push(format!(
                "ignore_slots[{i}]: expected a mapping of name, type, database, plugin, got {other}; entry ignored"
            )),
        }
    }
    (matchers, warnings)
}

/// Python truthiness, which decides whether Patroni sees a setting as given.
fn is_truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64() != Some(0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: Value) -> (Vec<PermanentSlot>, Vec<String>) {
        parse_permanent_slots(v.as_object().unwrap())
    }

    #[test]
    fn permanent_slots_in_patroni_shapes() {
        let (slots, w) = parse(json!({"slots": {
            "phys": {"type": "physical"},
            "empty": null,
            "cdc": {"type": "logical", "database": "postgres", "plugin": "pgoutput"},
            "guessed": {"database": "app", "plugin": "test_decoding"},
        }}));
        assert!(w.is_empty(), "{w:?}");
        let names: Vec<&str> = slots.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["phys", "empty", "cdc", "guessed"]);
        assert!(slots[2].is_logical() && slots[3].is_logical());
        assert_eq!(slots[1].kind, SlotKind::Physical);
        assert_eq!(
            slots[3].kind,
            SlotKind::Logical {
                database: "app".into(),
                plugin: "test_decoding".into()
            }
        );
        let (slots, _) = parse(json!({"permanent_slots": {"a": {}}, "slots": {"b": {}}}));
        assert_eq!(slots[0].name, "a", "permanent_slots wins over slots");
    }

    #[test]
    fn bad_permanent_slots_are_skipped_with_a_warning_each() {
        let mut config = json!({"slots": {
            "Bad-Name": {"type": "physical"},
            "odd": {"type": "weird"},
            "half": {"type": "logical", "database": "postgres"},
            "num": 5,
            "ok": {"type": "physical"},
        }});
        config["slots"]["x".repeat(64)] = json!({"type": "physical"});
        let (slots, w) = parse(config);
        assert_eq!(slots.len(), 1);
        assert_eq!(slots[0].name, "ok");
        assert_eq!(w.len(), 5, "{w:?}");
        for (needle, warning) in [
            ("slots.Bad-Name: invalid", &w[0]),
            ("slots.odd: unknown slot type", &w[1]),
            ("slots.half: a logical slot needs", &w[2]),
            ("slots.num: expected", &w[3]),
            ("slots.xxxx", &w[4]),
        ] {
            assert!(warning.starts_with(needle), "{warning}");
        }
        let (slots, w) = parse(json!({"slots": ["a"]}));
        assert!(slots.is_empty());
        assert!(w[0].starts_with("slots: expected a mapping"), "{w:?}");
    }

    #[test]
    fn ignore_slot_matchers() {
        let (m, w) = parse_ignore_slots(Some(&json!([
            {"name": "keep_me"},
            {"type": "logical", "plugin": "wal2json"},
            "junk"
        ])));
        assert_eq!(m.len(), 2);
        assert_eq!(w.len(), 1);
        assert!(w[0].starts_with("ignore_slots[2]"));
        let slot = |name: &str, kind: &str, plugin: Option<&str>| SlotInfo {
            name: name.into(),
            kind: kind.into(),
            plugin: plugin.map(str::to_string),
            database: plugin.map(|_| "postgres".to_string()),
            ..SlotInfo::default()
        };
        assert!(m[0].matches(&slot("keep_me", "physical", None)));
        assert!(!m[0].matches(&slot("other", "physical", None)));
        assert!(m[1].matches(&slot("any", "logical", Some("wal2json"))));
        assert!(!m[1].matches(&slot("any", "logical", Some("pgoutput"))));
        assert!(!m[1].matches(&slot("any", "physical", None)));
        assert!(parse_ignore_slots(Some(&json!({"name": "x"}))).1[0].starts_with("ignore_slots:"));
    }

    #[test]
    fn slot_names() {
        assert!(valid_slot_name("node_1"));
        assert!(!valid_slot_name(""));
        assert!(!valid_slot_name("Node"));
        assert!(!valid_slot_name("a-b"));
        assert!(!valid_slot_name(&"a".repeat(64)));
    }
}
