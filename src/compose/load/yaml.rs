//! YAML reading: a file's documents parsed into mappings (anchors, aliases and `<<` merge keys resolved; a
//! repeated key keeps its last value with a warning), errors with their line and column, and YAML values
//! read as text or as JSON.

use std::cell::RefCell;
use std::fmt;
use std::path::Path;

use serde::de::{
    self, DeserializeSeed, Deserializer, EnumAccess, MapAccess, SeqAccess, VariantAccess, Visitor,
};
use serde_norway::value::{Tag, TaggedValue};
use serde_norway::{Mapping, Value};

use crate::compose::ComposeError;
use crate::compose::interpolate::key_display;

/// Reads `path` and returns its documents (see [`parse_documents`]).
pub(super) fn read_documents(
    path: &Path,
    warnings: &mut Vec<String>,
) -> Result<Vec<Mapping>, ComposeError> {
    let text = fs_err::read_to_string(path).map_err(|source| ComposeError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse_documents(&text, path, warnings)
}

/// Parses the YAML documents of `text` (read from `path`, for errors) into top-level mappings, with anchors,
/// aliases and `<<` merge keys resolved. A repeated key keeps its last value and adds a warning. An empty
/// file has no document; a document that is not a mapping is an error, as in Compose.
pub fn parse_documents(
    text: &str,
    path: &Path,
    warnings: &mut Vec<String>,
) -> Result<Vec<Mapping>, ComposeError> {
    let duplicates = RefCell::new(Vec::new());
    let mut values = Vec::new();
    for document in serde_norway::Deserializer::from_str(text) {
        let seed = Tolerant {
            duplicates: &duplicates,
            path: String::new(),
        };
        let value = seed
            .deserialize(document)
            .map_err(|e| yaml_error(path, &e))?;
        values.push(value);
    }
    for key in duplicates.into_inner() {
        warnings.push(format!(
            "{}: mapping key `{key}` is defined more than once; the last definition is used",
            path.display()
        ));
    }
    let count = values.len();
    let mut docs = Vec::new();
    for mut value in values {
        apply_merges(&mut value).map_err(|message| ComposeError::Structure {
            path: path.to_path_buf(),
            message,
        })?;
        match value {
            Value::Mapping(map) => docs.push(map),
            Value::Null if count == 1 => {}
            _ => {
                return Err(ComposeError::Structure {
                    path: path.to_path_buf(),
                    message: "top-level object must be a mapping".to_string(),
                });
            }
        }
    }
    Ok(docs)
}

/// Resolves `<<` merge keys everywhere in `value`, innermost first, so that a merged mapping which itself
/// merges another is complete before it is used (serde_norway's `apply_merge` does not do that). Keys
/// written in the mapping win over merged ones; with a list of aliases the first one that has a key wins.
fn apply_merges(value: &mut Value) -> Result<(), String> {
    match value {
        Value::Mapping(map) => {
            for (_, child) in map.iter_mut() {
                apply_merges(child)?;
            }
            if let Some(merge) = map.shift_remove("<<") {
                let sources = match merge {
                    Value::Mapping(m) => vec![m],
                    Value::Sequence(items) => items
                        .into_iter()
                        .map(|item| match item {
                            Value::Mapping(m) => Ok(m),
                            _ => Err("a `<<` merge list may only hold mappings".to_string()),
                        })
                        .collect::<Result<_, _>>()?,
                    Value::Null => Vec::new(),
                    _ => {
                        return Err(
                            "a `<<` merge key needs a mapping or a list of mappings".to_string()
                        );
                    }
                };
                for source in sources {
                    for (k, v) in source {
                        if !map.contains_key(&k) {
                            map.insert(k, v);
                        }
                    }
                }
            }
        }
        Value::Sequence(items) => {
            for item in items {
                apply_merges(item)?;
            }
        }
        Value::Tagged(t) => apply_merges(&mut t.value)?,
        Value::Null | Value::Bool(_) | Value::Number(_) | Value::String(_) => {}
    }
    Ok(())
}

/// A YAML error with its location, the message without serde_norway's own " at line … column …".
fn yaml_error(path: &Path, e: &serde_norway::Error) -> ComposeError {
    let message = strip_marks(&e.to_string());
    match e.location() {
        Some(loc) => ComposeError::Yaml {
            path: path.to_path_buf(),
            line: loc.line(),
            column: loc.column(),
            message,
        },
        None => ComposeError::Structure {
            path: path.to_path_buf(),
            message,
        },
    }
}

/// Removes every " at line N column M" from `s`.
fn strip_marks(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find(" at line ") {
        out.push_str(&rest[..i]);
        let after = &rest[i + " at line ".len()..];
        let digits = after.bytes().take_while(u8::is_ascii_digit).count();
        let tail = &after[digits..];
        match tail.strip_prefix(" column ") {
            Some(col) if digits > 0 => {
                let d = col.bytes().take_while(u8::is_ascii_digit).count();
                rest = &col[d..];
            }
            _ => {
                out.push_str(" at line ");
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// Deserializes any YAML into a [`Value`] like serde_norway's own impl, except that a repeated mapping key
/// replaces the earlier value (recorded in `duplicates`) instead of failing.
struct Tolerant<'a> {
    duplicates: &'a RefCell<Vec<String>>,
    path: String,
}

impl<'a> Tolerant<'a> {
    fn child(&self, part: &str) -> Tolerant<'a> {
        Tolerant {
            duplicates: self.duplicates,
            path: if self.path.is_empty() {
                part.to_string()
            } else {
                format!("{}.{part}", self.path)
            },
        }
    }
}

impl<'de> DeserializeSeed<'de> for Tolerant<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

/// Reads a tag name.
struct TagSeed;

impl<'de> DeserializeSeed<'de> for TagSeed {
    type Value = Tag;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Tag, D::Error> {
        let s = <String as serde::Deserialize>::deserialize(deserializer)?;
        if s.is_empty() {
            return Err(de::Error::custom("empty YAML tag is not allowed"));
        }
        Ok(Tag::new(s))
    }
}

impl<'de> Visitor<'de> for Tolerant<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML value")
    }

    fn visit_bool<E: de::Error>(self, b: bool) -> Result<Value, E> {
        Ok(Value::Bool(b))
    }

    fn visit_i64<E: de::Error>(self, i: i64) -> Result<Value, E> {
        Ok(Value::Number(i.into()))
    }

    fn visit_u64<E: de::Error>(self, u: u64) -> Result<Value, E> {
        Ok(Value::Number(u.into()))
    }

    fn visit_f64<E: de::Error>(self, f: f64) -> Result<Value, E> {
        Ok(Value::Number(f.into()))
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<Value, E> {
        Ok(Value::String(s.to_owned()))
    }

    fn visit_string<E: de::Error>(self, s: String) -> Result<Value, E> {
        Ok(Value::String(s))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        self.deserialize(deserializer)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(self.child(&items.len().to_string()))? {
            items.push(item);
        }
        Ok(Value::Sequence(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut mapping = Mapping::new();
        while let Some(key) = map.next_key_seed(self.child("<key>"))? {
            let name = key_display(&key);
            let value = map.next_value_seed(self.child(&name))?;
            if mapping.insert(key, value).is_some() {
                let full = if self.path.is_empty() {
                    name
                } else {
                    format!("{}.{name}", self.path)
                };
                self.duplicates.borrow_mut().push(full);
            }
        }
        Ok(Value::Mapping(mapping))
    }

    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<Value, A::Error> {
        let (tag, contents) = data.variant_seed(TagSeed)?;
        let value = contents.newtype_variant_seed(self)?;
        Ok(Value::Tagged(Box::new(TaggedValue { tag, value })))
    }
}

/// A scalar as text: strings as they are, numbers and booleans as written in YAML.
pub(super) fn scalar_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Tagged(t) => scalar_string(&t.value),
        _ => None,
    }
}

/// A YAML value as JSON (tags dropped, keys as text).
pub(super) fn to_json(v: &Value) -> serde_json::Value {
    match v {
        Value::Null => serde_json::Value::Null,
        Value::Bool(b) => serde_json::Value::Bool(*b),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                i.into()
            } else if let Some(u) = n.as_u64() {
                u.into()
            } else {
                n.as_f64()
                    .and_then(serde_json::Number::from_f64)
                    .map(serde_json::Value::Number)
                    .unwrap_or(serde_json::Value::Null)
            }
        }
        Value::String(s) => serde_json::Value::String(s.clone()),
        Value::Sequence(items) => serde_json::Value::Array(items.iter().map(to_json).collect()),
        Value::Mapping(map) => serde_json::Value::Object(
            map.iter()
                .map(|(k, v)| (key_display(k), to_json(v)))
                .collect(),
        ),
        Value::Tagged(t) => to_json(&t.value),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn strip_marks_removes_serde_positions() {
        assert_eq!(
            strip_marks(
                "did not find expected ',' or ']' at line 3 column 12, while parsing a flow sequence at line 3 column 12"
            ),
            "did not find expected ',' or ']', while parsing a flow sequence"
        );
        assert_eq!(strip_marks("at line one"), "at line one");
    }

    fn docs(text: &str) -> Result<Vec<Mapping>, ComposeError> {
        parse_documents(text, Path::new("/p/compose.yaml"), &mut Vec::new())
    }

    #[test]
    fn yaml_error_has_one_based_location() {
        let err = docs("services:\n  a:\n    image: [x\n").unwrap_err();
        match err {
            ComposeError::Yaml {
                path,
                line,
                column,
                message,
            } => {
                assert_eq!(path, Path::new("/p/compose.yaml"));
                assert_eq!(line, 4, "{message}");
                assert_eq!(column, 1, "{message}");
                assert!(message.contains("did not find expected"), "{message}");
                assert!(!message.contains("at line"), "{message}");
            }
            other => panic!("unexpected {other:?}"),
        }
        match docs("a: b\n c: d\n").unwrap_err() {
            ComposeError::Yaml { line, column, .. } => assert_eq!((line, column), (2, 3)),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn empty_and_non_mapping_documents() {
        assert!(docs("").unwrap().is_empty());
        assert!(docs("# only a comment\n").unwrap().is_empty());
        assert!(docs("---\n").unwrap().is_empty());
        for bad in ["- a\n- b\n", "hello\n", "a: 1\n---\n"] {
            match docs(bad) {
                Err(ComposeError::Structure { message, .. }) => {
                    assert!(message.contains("must be a mapping"), "{bad}: {message}")
                }
                other => panic!("{bad}: unexpected {other:?}"),
            }
        }
        assert_eq!(docs("a: 1\n---\nb: 2\n").unwrap().len(), 2);
    }

    #[test]
    fn duplicate_keys_keep_the_last_value_with_a_warning() {
        let mut warnings = Vec::new();
        let d = parse_documents(
            "services:\n  web:\n    environment:\n      A: 1\n    image: x\n    environment:\n      B: 2\n",
            Path::new("/p/c.yml"),
            &mut warnings,
        )
        .unwrap();
        let env = &d[0]["services"]["web"]["environment"];
        assert_eq!(env.get("B"), Some(&Value::Number(2.into())));
        assert_eq!(env.get("A"), None);
        assert_eq!(warnings.len(), 1);
        assert!(
            warnings[0].contains("services.web.environment"),
            "{}",
            warnings[0]
        );
    }

    #[test]
    fn merge_keys_single_list_and_nested() {
        let d = docs(
            "x-a: &a {image: a, restart: always}\n\
             x-b: &b {image: b, user: bob}\n\
             x-c: &c\n  <<: *a\n  tty: true\n\
             services:\n\
             \x20 one:\n    <<: *a\n    image: own\n\
             \x20 two:\n    <<: [*b, *a]\n\
             \x20 three:\n    <<: *c\n",
        )
        .unwrap();
        let s = &d[0]["services"];
        assert_eq!(s["one"]["image"], Value::String("own".into()));
        assert_eq!(s["one"]["restart"], Value::String("always".into()));
        assert_eq!(
            s["two"]["image"],
            Value::String("b".into()),
            "first alias in the list wins"
        );
        assert_eq!(s["two"]["restart"], Value::String("always".into()));
        assert_eq!(s["three"]["tty"], Value::Bool(true));
        assert_eq!(s["three"]["restart"], Value::String("always".into()));
        assert!(s["three"].get("<<").is_none());
    }

    #[test]
    fn anchors_on_sequences_are_expanded() {
        let d =
            docs("x-v: &vols\n  - ./a:/a\n  - data:/data\nservices:\n  s:\n    volumes: *vols\n")
                .unwrap();
        assert_eq!(
            d[0]["services"]["s"]["volumes"][1],
            Value::String("data:/data".into())
        );
    }

    #[test]
    fn tags_are_kept_for_reset_and_override() {
        let d = docs("services:\n  s:\n    volumes: !reset []\n    image: !override x\n").unwrap();
        match &d[0]["services"]["s"]["volumes"] {
            Value::Tagged(t) => assert!(t.tag == "reset"),
            other => panic!("unexpected {other:?}"),
        }
    }
}
