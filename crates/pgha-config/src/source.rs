//! Reading YAML text, files and configuration directories into one JSON tree.

use std::path::{Path, PathBuf};

use std::cell::RefCell;
use std::fmt;

use serde::de::{
    DeserializeSeed, Deserializer, EnumAccess, IgnoredAny, MapAccess, SeqAccess, VariantAccess,
    Visitor,
};
use serde_json::{Map, Value};

use crate::error::ConfigError;

/// Parses one YAML document into a mapping. An empty document is an empty mapping.
/// `origin` names the source in error messages. Returns warnings for duplicate keys, which
/// are accepted as PyYAML (and so Patroni) accepts them: the last one wins.
pub(crate) fn parse_yaml(text: &str, origin: &Path) -> Result<Parsed, ConfigError> {
    let yaml_err = |message: String| ConfigError::Yaml {
        path: origin.to_path_buf(),
        message,
    };
    let duplicates = RefCell::new(Vec::new());
    let seed = LooseSeed {
        path: String::new(),
        duplicates: &duplicates,
    };
    let mut doc = seed
        .deserialize(serde_yaml_ng::Deserializer::from_str(text))
        .map_err(|e| yaml_err(e.to_string()))?;
    apply_merge_keys(&mut doc);
    let warnings = duplicates
        .into_inner()
        .into_iter()
        .map(|k| {
            format!(
                "duplicate configuration key '{k}' in {}: the last one is used",
                origin.display()
            )
        })
        .collect();
    match doc {
        Value::Object(tree) => Ok(Parsed { tree, warnings }),
        Value::Null => Ok(Parsed::default()),
        other => Err(yaml_err(format!(
            "the top level must be a mapping of sections (scope, name, postgresql, ...), got {}",
            crate::reader::kind(&other)
        ))),
    }
}

/// A parsed document and the warnings found while parsing it.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Parsed {
    pub tree: Map<String, Value>,
    pub warnings: Vec<String>,
}

/// Deserialises any YAML node into JSON, as PyYAML reads it: duplicate keys are allowed (the
/// last wins, and the key is recorded), non-string keys become their text, custom tags are
/// dropped, non-finite floats become strings.
struct LooseSeed<'a> {
    path: String,
    duplicates: &'a RefCell<Vec<String>>,
}

impl<'de> DeserializeSeed<'de> for LooseSeed<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for LooseSeed<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_i128<E>(self, v: i128) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }
    fn visit_u128<E>(self, v: u128) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v)
            .map_or_else(|| Value::String(v.to_string()), Value::Number))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        self.deserialize(d)
    }
    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        self.deserialize(d)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        loop {
            let seed = LooseSeed {
                path: format!("{}[{}]", self.path, out.len()),
                duplicates: self.duplicates,
            };
            match seq.next_element_seed(seed)? {
                Some(v) => out.push(v),
                None => return Ok(Value::Array(out)),
            }
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        let key_seed = || LooseSeed {
            path: self.path.clone(),
            duplicates: self.duplicates,
        };
        while let Some(key) = map.next_key_seed(key_seed())? {
            let key = match key {
                Value::String(s) => s,
                Value::Null => "null".to_string(),
                other => other.to_string(),
            };
            let path = crate::reader::join(&self.path, &key);
            let value = map.next_value_seed(LooseSeed {
                path: path.clone(),
                duplicates: self.duplicates,
            })?;
            if out.insert(key, value).is_some() {
                self.duplicates.borrow_mut().push(path);
            }
        }
        Ok(Value::Object(out))
    }

    /// A node with a custom tag (`!Tag value`): the tag is dropped.
    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<Value, A::Error> {
        let (_tag, variant): (IgnoredAny, _) = data.variant()?;
        variant.newtype_variant_seed(self)
    }
}

/// YAML merge keys (`<<: *anchor`, `<<: [*a, *b]`): keys of the mapping win, then the merged
/// mappings in order.
fn apply_merge_keys(v: &mut Value) {
    match v {
        Value::Object(m) => {
            if let Some(merge) = m.shift_remove("<<") {
                let sources = match merge {
                    Value::Array(items) => items,
                    other => vec![other],
                };
                for source in sources {
                    if let Value::Object(src) = source {
                        for (k, val) in src {
                            m.entry(k).or_insert(val);
                        }
                    }
                }
            }
            m.values_mut().for_each(apply_merge_keys);
        }
        Value::Array(items) => items.iter_mut().for_each(apply_merge_keys),
        _ => {}
    }
}

/// Reads a file, or every `*.yml` / `*.yaml` file of a directory in sorted order merged with
/// [`merge`].
pub(crate) fn read_path(path: &Path) -> Result<Parsed, ConfigError> {
    let io_err = |path: &Path, source| ConfigError::Io {
        path: path.to_path_buf(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(|e| io_err(path, e))?;
    if !meta.is_dir() {
        return read_file(path);
    }
    let mut files: Vec<PathBuf> = Vec::new();
    for entry in std::fs::read_dir(path).map_err(|e| io_err(path, e))? {
        let entry = entry.map_err(|e| io_err(path, e))?;
        let p = entry.path();
        let is_yaml = p
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| e == "yml" || e == "yaml");
        // Follows symlinks, so a linked file counts and a linked directory does not.
        if is_yaml && p.is_file() {
            files.push(p);
        }
    }
    if files.is_empty() {
        return Err(ConfigError::EmptyDirectory {
            path: path.to_path_buf(),
        });
    }
    files.sort();
    let mut merged = Parsed::default();
    for f in &files {
        let doc = read_file(f)?;
        merge(&mut merged.tree, doc.tree);
        merged.warnings.extend(doc.warnings);
    }
    Ok(merged)
}

fn read_file(path: &Path) -> Result<Parsed, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Io {
        path: path.to_path_buf(),
        source: e,
    })?;
    parse_yaml(&text, path)
}

/// Deep merge of `patch` into `base`, as Patroni merges configuration files: mappings merge
/// key by key, any other value (lists included) replaces, and a `null` removes the key.
pub(crate) fn merge(base: &mut Map<String, Value>, patch: Map<String, Value>) {
    for (k, v) in patch {
        match v {
            Value::Null => {
                base.remove(&k);
            }
            Value::Object(p) => match base.get_mut(&k) {
                Some(Value::Object(b)) => merge(b, p),
                _ => {
                    base.insert(k, Value::Object(p));
                }
            },
            other => {
                base.insert(k, other);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    #[test]
    fn yaml_conversion() {
        let m = parse_yaml(
            "a: 1\nb: on\nc: [x, 2]\n1: k\nd: !!str 5\ne: 1.5\nf: ~\nbase: &b {x: 1}\ng:\n  <<: *b\n  y: 2\n",
            Path::new("t"),
        )
        .unwrap_or_default()
        .tree;
        assert_eq!(m["a"], json!(1));
        assert_eq!(m["b"], json!("on"));
        assert_eq!(m["c"], json!(["x", 2]));
        assert_eq!(m["1"], json!("k"));
        assert_eq!(m["d"], json!("5"));
        assert_eq!(m["e"], json!(1.5));
        assert_eq!(m["f"], Value::Null);
        assert_eq!(m["g"], json!({"x": 1, "y": 2}));
    }

    #[test]
    fn top_level_must_be_mapping() {
        assert!(parse_yaml("[1, 2]", Path::new("t")).is_err());
        assert!(parse_yaml("a: [", Path::new("t")).is_err());
        for empty in ["", "# only a comment\n", "---\n", "~"] {
            assert_eq!(
                parse_yaml(empty, Path::new("t")).ok(),
                Some(Parsed::default()),
                "{empty:?}"
            );
        }
    }

    #[test]
    fn duplicate_keys_last_wins_with_a_warning() {
        let p =
            parse_yaml("a: 1\nb:\n  c: 1\n  c: 2\na: 3\n", Path::new("f.yml")).unwrap_or_default();
        assert_eq!(Value::Object(p.tree), json!({"a": 3, "b": {"c": 2}}));
        assert_eq!(
            p.warnings,
            vec![
                "duplicate configuration key 'b.c' in f.yml: the last one is used",
                "duplicate configuration key 'a' in f.yml: the last one is used",
            ]
        );
    }

    #[test]
    fn custom_tags_and_odd_keys() {
        let p =
            parse_yaml("a: !Ref x\n? [1, 2]\n: y\ntrue: z\n", Path::new("t")).unwrap_or_default();
        assert_eq!(
            Value::Object(p.tree),
            json!({"a": "x", "[1,2]": "y", "true": "z"})
        );
    }

    #[test]
    fn merge_rules() {
        let mut base = obj(json!({"a": {"x": 1, "y": [1, 2]}, "b": 1, "c": 2}));
        merge(
            &mut base,
            obj(json!({"a": {"y": [3], "z": 1}, "b": {"n": 1}, "c": null})),
        );
        assert_eq!(
            Value::Object(base),
            json!({"a": {"x": 1, "y": [3], "z": 1}, "b": {"n": 1}})
        );
    }
}
