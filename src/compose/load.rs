//! Reads, interpolates and merges Compose files into a [`Project`](super::Project).
//!
//! The pipeline follows Compose v2 (compose-go): [`discover`](super::discovery::discover) the files and the
//! environment; parse every YAML document (anchors, aliases and `<<` merge keys resolved; a repeated key keeps
//! its last value with a warning instead of failing); settle the project name; interpolate each document;
//! turn it into a typed layer of what concerns data (services' image, container name, profiles, dependencies,
//! volumes and tmpfs; top-level volumes; `x-persist`), resolving `extends`; merge the layers in order
//! (service volumes by target, `!reset`/`!override` honoured); and check the result (named sources must be
//! declared, `x-persist` tiers must be tiers). Everything else in the files is ignored.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};

use indexmap::IndexMap;
use serde::de::{
    self, DeserializeSeed, Deserializer, EnumAccess, MapAccess, SeqAccess, VariantAccess, Visitor,
};
use serde_norway::value::{Tag, TaggedValue};
use serde_norway::{Mapping, Value};

use super::discovery::{self, clean_path};
use super::interpolate::{self, interpolate_value, key_display, substitute};
use super::model::{
    Consistency, DEFAULT_HOOK_TIMEOUT, DumpRecipe, Hook, HookCommand, Hooks, Mount, MountType,
    OnError, PersistSpec, Project, RunFacts, Service, Tier, VolumeDef,
};
use super::{ComposeError, ProjectOptions};

/// Loads the project described by `opts` the way `docker compose` would.
pub fn load_project(opts: &ProjectOptions) -> Result<Project, ComposeError> {
    let found = discovery::discover(opts)?;
    let mut warnings = found.warnings;
    let project_dir = found.project_dir;
    let home = opts.os_env.get("HOME").cloned();

    let mut docs = Vec::new();
    for file in &found.files {
        for map in read_documents(file, &mut warnings)? {
            docs.push(Doc {
                file: file.clone(),
                map,
            });
        }
    }
    if docs
        .iter()
        .all(|d| d.map.keys().all(|k| k.as_str() == Some("version")))
    {
        let path = found.files.first().cloned().unwrap_or_default();
        return Err(ComposeError::Structure {
            path,
            message: "empty compose file".to_string(),
        });
    }
    for doc in &docs {
        if doc.map.contains_key("version") {
            warnings.push(format!(
                "{}: the attribute `version` is obsolete, it will be ignored, please remove it to avoid potential confusion",
                doc.file.display()
            ));
        }
    }

    let mut environment = found.environment;
    let mut unset = Vec::new();
    let name = project_name(opts, &environment, &docs, &project_dir, &mut unset)?;
    environment
        .entry("COMPOSE_PROJECT_NAME".to_string())
        .or_insert_with(|| name.clone());

    let mut loader = Loader {
        environment: &environment,
        home: home.as_deref(),
        warnings: &mut warnings,
        unset: &mut unset,
        extended_files: HashMap::new(),
    };
    let mut merged = Merged::default();
    for doc in docs {
        let ctx = FileCtx {
            file: doc.file.clone(),
            base_dir: project_dir.clone(),
        };
        let layer = loader.layer(Value::Mapping(doc.map), &ctx)?;
        let layer = loader.resolve_extends(layer, &ctx)?;
        merged.apply(layer);
    }

    let project = merged.finish(name, project_dir, found.files, environment)?;
    let mut seen = std::collections::HashSet::new();
    let mut all_warnings = Vec::new();
    for w in warnings
        .into_iter()
        .chain(unset.iter().map(|name| interpolate::unset_warning(name)))
        .chain(project.warnings.iter().cloned())
    {
        if seen.insert(w.clone()) {
            all_warnings.push(w);
        }
    }
    Ok(Project {
        warnings: all_warnings,
        ..project
    })
}

/// One YAML document of one file.
struct Doc {
    file: PathBuf,
    map: Mapping,
}

/// Reads `path` and returns its documents (see [`parse_documents`]).
fn read_documents(path: &Path, warnings: &mut Vec<String>) -> Result<Vec<Mapping>, ComposeError> {
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

/// The Compose project-name rules: lowercase, only `[a-z0-9_-]`, not starting with `_` or `-`.
pub fn normalize_project_name(name: &str) -> String {
    let lowered: String = name
        .to_lowercase()
        .chars()
        .filter(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_' || *c == '-')
        .collect();
    lowered.trim_start_matches(['_', '-']).to_string()
}

fn check_explicit_name(name: &str) -> Result<String, ComposeError> {
    if normalize_project_name(name) == name {
        Ok(name.to_string())
    } else {
        Err(ComposeError::ProjectName {
            name: name.to_string(),
            message: "must consist only of lowercase alphanumeric characters, hyphens, and underscores as well as start with a letter or number".to_string(),
        })
    }
}

/// `-p` > `COMPOSE_PROJECT_NAME` > `name:` (last file that sets it, interpolated and normalized) > the
/// project directory's name (normalized). An explicit name that is not already normal is an error.
fn project_name(
    opts: &ProjectOptions,
    environment: &BTreeMap<String, String>,
    docs: &[Doc],
    project_dir: &Path,
    unset: &mut Vec<String>,
) -> Result<String, ComposeError> {
    if let Some(p) = opts.project_name.as_deref().filter(|p| !p.is_empty()) {
        return check_explicit_name(p);
    }
    if let Some(p) = environment
        .get("COMPOSE_PROJECT_NAME")
        .filter(|p| !p.is_empty())
    {
        return check_explicit_name(p);
    }
    let mut from_yaml = None;
    for doc in docs {
        if let Some(raw) = doc.map.get("name").and_then(scalar_string)
            && !raw.is_empty()
        {
            from_yaml = Some((raw, &doc.file));
        }
    }
    if let Some((raw, file)) = from_yaml {
        let lookup = |k: &str| environment.get(k).cloned();
        let done =
            substitute(&raw, &lookup).map_err(|e| e.into_compose_error(file, "name", &raw))?;
        unset.extend(done.unset);
        let normalized = normalize_project_name(&done.value);
        if !normalized.is_empty() {
            return Ok(normalized);
        }
    }
    let dir_name = project_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let normalized = normalize_project_name(&dir_name);
    if normalized.is_empty() {
        return Err(ComposeError::ProjectName {
            name: dir_name,
            message: "project name must not be empty (the directory name has no usable character); use `-p` or `name:`".to_string(),
        });
    }
    Ok(normalized)
}

/// A scalar as text: strings as they are, numbers and booleans as written in YAML.
fn scalar_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Tagged(t) => scalar_string(&t.value),
        _ => None,
    }
}

/// `command:` or `entrypoint:` as one line: a list joined with spaces, a string as written.
fn command_text(v: &Value) -> String {
    match v {
        Value::Sequence(items) => items
            .iter()
            .filter_map(scalar_string)
            .collect::<Vec<_>>()
            .join(" "),
        Value::Tagged(t) => command_text(&t.value),
        other => scalar_string(other).unwrap_or_default(),
    }
}

/// A YAML value as JSON (tags dropped, keys as text).
fn to_json(v: &Value) -> serde_json::Value {
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

/// Merges `over` into `base`: mappings key by key, recursively; anything else is replaced.
fn deep_merge(base: &mut serde_json::Value, over: serde_json::Value) {
    match (base, over) {
        (serde_json::Value::Object(b), serde_json::Value::Object(o)) => {
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(existing) => deep_merge(existing, v),
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (slot, over) => *slot = over,
    }
}

/// Validates an `x-persist` mapping found at `location`.
fn persist_spec(raw: serde_json::Value, location: &str) -> Result<PersistSpec, ComposeError> {
    let invalid = |message: String| ComposeError::InvalidPersist {
        location: location.to_string(),
        message,
    };
    let serde_json::Value::Object(map) = &raw else {
        return Err(invalid("it must be a mapping".to_string()));
    };
    let tier = match map.get("tier") {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(s)) => {
            Some(s.parse::<Tier>().map_err(|e| invalid(e.to_string()))?)
        }
        Some(other) => {
            return Err(invalid(format!(
                "`tier` must be one of critical, important, regenerable, optional, not `{other}`"
            )));
        }
    };
    let consistency = consistency_of(map).map_err(invalid)?;
    let dump = match map.get("dump") {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(s)) => Some(s.parse::<DumpRecipe>().map_err(invalid)?),
        Some(other) => {
            return Err(invalid(format!(
                "`dump` must be one of postgres, mysql, mariadb, redis, mongodb, not `{other}`"
            )));
        }
    };
    let hooks = hooks_of(map).map_err(invalid)?;
    Ok(PersistSpec {
        tier,
        consistency,
        dump,
        hooks,
        raw,
    })
}

/// The `hooks: {pre: […], post: […]}` of an `x-persist` mapping; empty when absent.
fn hooks_of(map: &serde_json::Map<String, serde_json::Value>) -> Result<Hooks, String> {
    let raw = match map.get("hooks") {
        None | Some(serde_json::Value::Null) => return Ok(Hooks::default()),
        Some(serde_json::Value::Object(h)) => h,
        Some(other) => {
            return Err(format!(
                "`hooks` must be a mapping with `pre` and/or `post`, not `{other}`"
            ));
        }
    };
    if let Some(k) = raw.keys().find(|k| *k != "pre" && *k != "post") {
        return Err(format!(
            "`hooks` has an unknown key `{k}` (expected `pre` and/or `post`)"
        ));
    }
    let list = |phase: &str| -> Result<Vec<Hook>, String> {
        match raw.get(phase) {
            None | Some(serde_json::Value::Null) => Ok(Vec::new()),
            Some(serde_json::Value::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(i, h)| hook_of(h).map_err(|e| format!("`hooks.{phase}[{i}]`: {e}")))
                .collect(),
            Some(other) => Err(format!(
                "`hooks.{phase}` must be a list of hooks, not `{other}`"
            )),
        }
    };
    Ok(Hooks {
        pre: list("pre")?,
        post: list("post")?,
    })
}

/// One hook: `{service, command, timeout, on_error}`.
fn hook_of(raw: &serde_json::Value) -> Result<Hook, String> {
    let serde_json::Value::Object(h) = raw else {
        return Err(format!(
            "a hook must be a mapping with `service` and `command`, not `{raw}`"
        ));
    };
    if let Some(k) = h
        .keys()
        .find(|k| !["service", "command", "timeout", "on_error"].contains(&k.as_str()))
    {
        return Err(format!(
            "unknown key `{k}` (expected service, command, timeout, on_error)"
        ));
    }
    let service = match h.get("service") {
        Some(serde_json::Value::String(s)) if !s.trim().is_empty() => s.trim().to_string(),
        _ => {
            return Err(
                "`service` must name the service whose container runs the hook".to_string(),
            );
        }
    };
    let command = match h.get("command") {
        Some(serde_json::Value::String(s)) if !s.trim().is_empty() => HookCommand::Shell(s.clone()),
        Some(serde_json::Value::Array(v)) if !v.is_empty() => HookCommand::Exec(
            v.iter()
                .map(|a| match a {
                    serde_json::Value::String(s) => Ok(s.clone()),
                    serde_json::Value::Number(n) => Ok(n.to_string()),
                    other => Err(format!("`command` items must be strings, not `{other}`")),
                })
                .collect::<Result<_, _>>()?,
        ),
        _ => {
            return Err(
                "`command` must be a non-empty string (run with `sh -c`) or list (run as is)"
                    .to_string(),
            );
        }
    };
    let timeout = match h.get("timeout") {
        None | Some(serde_json::Value::Null) => DEFAULT_HOOK_TIMEOUT,
        Some(v) => parse_timeout(v)?,
    };
    let on_error = match h.get("on_error") {
        None | Some(serde_json::Value::Null) => OnError::Fail,
        Some(serde_json::Value::String(s)) => match s.trim().to_ascii_lowercase().as_str() {
            "fail" => OnError::Fail,
            "continue" => OnError::Continue,
            _ => {
                return Err(format!(
                    "`on_error` must be `fail` or `continue`, not `{s}`"
                ));
            }
        },
        Some(other) => {
            return Err(format!(
                "`on_error` must be `fail` or `continue`, not `{other}`"
            ));
        }
    };
    Ok(Hook {
        service,
        command,
        timeout,
        on_error,
    })
}

/// A hook timeout: a number of seconds, or a string with a unit: `500ms`, `30s`, `2m`, `1h`.
pub(crate) fn parse_timeout(v: &serde_json::Value) -> Result<std::time::Duration, String> {
    let bad =
        || format!("`timeout` must be a duration like `30s`, `2m` or `1h` (or seconds), not `{v}`");
    let d = match v {
        serde_json::Value::Number(n) => n
            .as_f64()
            .filter(|s| s.is_finite() && *s > 0.0)
            .map(std::time::Duration::from_secs_f64)
            .ok_or_else(bad)?,
        serde_json::Value::String(s) => {
            let s = s.trim();
            let split = s
                .find(|c: char| !c.is_ascii_digit() && c != '.')
                .unwrap_or(s.len());
            let (num, unit) = s.split_at(split);
            let num: f64 = num.parse().map_err(|_| bad())?;
            let factor = match unit.trim() {
                "ms" => 0.001,
                "" | "s" => 1.0,
                "m" => 60.0,
                "h" => 3600.0,
                _ => return Err(bad()),
            };
            let secs = num * factor;
            if !secs.is_finite() || secs <= 0.0 || secs > 86_400.0 * 7.0 {
                return Err(bad());
            }
            std::time::Duration::from_secs_f64(secs)
        }
        _ => return Err(bad()),
    };
    if d.is_zero() {
        return Err(bad());
    }
    Ok(d)
}

/// Every hook's service must be a service of the project.
fn check_hook_services(project: &Project) -> Result<(), ComposeError> {
    let mut places: Vec<(String, &Hooks)> =
        vec![("the top-level `x-persist`".to_string(), &project.hooks)];
    for (key, v) in &project.volumes {
        if let Some(p) = &v.persist {
            places.push((format!("volume `{key}`"), &p.hooks));
        }
    }
    for (name, s) in &project.services {
        for m in &s.mounts {
            if let Some(p) = &m.persist {
                places.push((format!("service `{name}` mount `{}`", m.target), &p.hooks));
            }
        }
    }
    for (location, hooks) in places {
        for h in hooks.pre.iter().chain(&hooks.post) {
            if !project.services.contains_key(&h.service) {
                return Err(ComposeError::InvalidPersist {
                    location,
                    message: format!(
                        "the hook runs in service `{}`, which the project does not define",
                        h.service
                    ),
                });
            }
        }
    }
    Ok(())
}

/// The `consistency:` of an `x-persist` mapping, when given.
fn consistency_of(
    map: &serde_json::Map<String, serde_json::Value>,
) -> Result<Option<Consistency>, String> {
    match map.get("consistency") {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(s)) => s.parse().map(Some).map_err(|e| format!("{e}")),
        Some(other) => Err(format!(
            "`consistency` must be one of auto, stop, live, dump, not `{other}`"
        )),
    }
}

/// A field as written in one layer: absent, a value to merge, a value replacing what came before
/// (`!override`), or a reset (`!reset`).
#[derive(Debug, Clone, Default)]
enum Patch<T> {
    #[default]
    Absent,
    Merge(T),
    Replace(T),
    Reset,
}

/// `extends:` of a service.
#[derive(Debug, Clone)]
struct Extends {
    service: String,
    file: Option<String>,
}

/// What one layer says about a service.
#[derive(Debug, Clone, Default)]
struct ServicePatch {
    image: Patch<String>,
    container_name: Patch<String>,
    profiles: Patch<Vec<String>>,
    depends_on: Patch<Vec<String>>,
    volumes: Patch<Vec<Mount>>,
    tmpfs: Patch<Vec<String>>,
    extends: Option<Extends>,
    restart: Patch<String>,
    entrypoint: Patch<String>,
    command: Patch<String>,
    waits_for_completion: Patch<Vec<String>>,
}

/// A service after merging layers.
#[derive(Debug, Clone, Default)]
struct ServiceState {
    image: Option<String>,
    container_name: Option<String>,
    profiles: Vec<String>,
    depends_on: Vec<String>,
    mounts: Vec<Mount>,
    tmpfs: Vec<String>,
    run: RunFacts,
}

fn apply_scalar<T>(slot: &mut Option<T>, patch: Patch<T>) {
    match patch {
        Patch::Absent => {}
        Patch::Merge(v) | Patch::Replace(v) => *slot = Some(v),
        Patch::Reset => *slot = None,
    }
}

fn apply_list<T>(slot: &mut Vec<T>, patch: Patch<Vec<T>>, merge: fn(&mut Vec<T>, Vec<T>)) {
    match patch {
        Patch::Absent => {}
        Patch::Merge(v) => merge(slot, v),
        Patch::Replace(v) => *slot = v,
        Patch::Reset => slot.clear(),
    }
}

fn union(base: &mut Vec<String>, over: Vec<String>) {
    for item in over {
        if !base.contains(&item) {
            base.push(item);
        }
    }
}

/// A later mount with the same target replaces the earlier one in place; others are appended.
fn merge_mounts(base: &mut Vec<Mount>, over: Vec<Mount>) {
    for mount in over {
        match base.iter_mut().find(|m| m.target == mount.target) {
            Some(existing) => *existing = mount,
            None => base.push(mount),
        }
    }
}

impl ServiceState {
    fn apply(&mut self, patch: ServicePatch) {
        apply_scalar(&mut self.image, patch.image);
        apply_scalar(&mut self.container_name, patch.container_name);
        apply_list(&mut self.profiles, patch.profiles, union);
        apply_list(&mut self.depends_on, patch.depends_on, union);
        apply_list(&mut self.mounts, patch.volumes, merge_mounts);
        apply_list(&mut self.tmpfs, patch.tmpfs, union);
        apply_scalar(&mut self.run.restart, patch.restart);
        apply_scalar(&mut self.run.entrypoint, patch.entrypoint);
        apply_scalar(&mut self.run.command, patch.command);
        apply_list(
            &mut self.run.waits_for_completion,
            patch.waits_for_completion,
            union,
        );
    }

    /// This state as a layer to merge onto earlier files.
    fn into_patch(self) -> ServicePatch {
        let opt = |v: Option<String>| v.map_or(Patch::Absent, Patch::Merge);
        let list = |v: Vec<String>| {
            if v.is_empty() {
                Patch::Absent
            } else {
                Patch::Merge(v)
            }
        };
        ServicePatch {
            image: opt(self.image),
            container_name: opt(self.container_name),
            profiles: list(self.profiles),
            depends_on: list(self.depends_on),
            volumes: if self.mounts.is_empty() {
                Patch::Absent
            } else {
                Patch::Merge(self.mounts)
            },
            tmpfs: list(self.tmpfs),
            extends: None,
            restart: opt(self.run.restart),
            entrypoint: opt(self.run.entrypoint),
            command: opt(self.run.command),
            waits_for_completion: list(self.run.waits_for_completion),
        }
    }
}

/// What one layer says about a top-level volume.
#[derive(Debug, Clone, Default)]
struct VolumePatch {
    name: Option<String>,
    external: Option<bool>,
    driver: Option<String>,
    driver_opts: BTreeMap<String, String>,
    labels: BTreeMap<String, String>,
    persist: Option<serde_json::Value>,
}

impl VolumePatch {
    fn apply(&mut self, over: VolumePatch) {
        if over.name.is_some() {
            self.name = over.name;
        }
        if over.external.is_some() {
            self.external = over.external;
        }
        if over.driver.is_some() {
            self.driver = over.driver;
        }
        self.driver_opts.extend(over.driver_opts);
        self.labels.extend(over.labels);
        if let Some(p) = over.persist {
            match &mut self.persist {
                Some(base) => deep_merge(base, p),
                None => self.persist = Some(p),
            }
        }
    }
}

#[derive(Debug, Clone)]
enum VolumeEntry {
    Define(VolumePatch),
    Reset,
}

/// One document, typed.
#[derive(Debug, Default)]
struct Layer {
    services: IndexMap<String, ServicePatch>,
    volumes: IndexMap<String, VolumeEntry>,
    persist: Option<serde_json::Value>,
}

/// Where a document comes from: its file, and the directory its relative bind sources resolve against (the
/// project directory, or the file's own directory for a file reached through `extends: {file: …}`).
#[derive(Debug, Clone)]
struct FileCtx {
    file: PathBuf,
    base_dir: PathBuf,
}

/// The merged layers.
#[derive(Debug, Default)]
struct Merged {
    services: IndexMap<String, ServiceState>,
    volumes: IndexMap<String, VolumePatch>,
    persist: Option<serde_json::Value>,
}

impl Merged {
    fn apply(&mut self, layer: Layer) {
        for (name, patch) in layer.services {
            self.services.entry(name).or_default().apply(patch);
        }
        for (key, entry) in layer.volumes {
            match entry {
                VolumeEntry::Reset => {
                    self.volumes.shift_remove(&key);
                }
                VolumeEntry::Define(patch) => self.volumes.entry(key).or_default().apply(patch),
            }
        }
        if let Some(p) = layer.persist {
            match &mut self.persist {
                Some(base) => deep_merge(base, p),
                None => self.persist = Some(p),
            }
        }
    }

    fn finish(
        self,
        name: String,
        directory: PathBuf,
        files: Vec<PathBuf>,
        environment: BTreeMap<String, String>,
    ) -> Result<Project, ComposeError> {
        let mut volumes = IndexMap::new();
        for (key, v) in self.volumes {
            let persist = v
                .persist
                .map(|raw| persist_spec(raw, &format!("volume `{key}`")))
                .transpose()?;
            volumes.insert(
                key.clone(),
                VolumeDef {
                    key,
                    name: v.name.filter(|n| !n.is_empty()),
                    external: v.external.unwrap_or(false),
                    driver: v.driver,
                    driver_opts: v.driver_opts,
                    labels: v.labels,
                    persist,
                },
            );
        }
        let mut services = IndexMap::new();
        let mut warnings = Vec::new();
        for (service_name, state) in self.services {
            let mut mounts = state.mounts;
            mounts.extend(state.tmpfs.into_iter().map(|target| Mount {
                kind: MountType::Tmpfs,
                source: None,
                source_as_written: None,
                target,
                read_only: false,
                persist: None,
            }));
            for m in &mounts {
                // Compose refuses such a file; the inventory still shows the data, as the volume Compose
                // would create once it is declared.
                if let (MountType::Volume, Some(src)) = (m.kind, &m.source)
                    && !volumes.contains_key(src)
                {
                    warnings.push(format!(
                        "service `{service_name}` refers to undefined volume `{src}`: Compose refuses this file until `{src}` is declared under the top-level `volumes:` key"
                    ));
                    volumes.insert(
                        src.clone(),
                        VolumeDef {
                            key: src.clone(),
                            ..Default::default()
                        },
                    );
                }
            }
            services.insert(
                service_name.clone(),
                Service {
                    name: service_name,
                    image: state.image,
                    container_name: state.container_name,
                    profiles: state.profiles,
                    depends_on: state.depends_on,
                    mounts,
                    run: state.run,
                },
            );
        }
        let persist = self.persist.unwrap_or(serde_json::Value::Null);
        let top_invalid = |message| ComposeError::InvalidPersist {
            location: "the top-level `x-persist`".to_string(),
            message,
        };
        let (consistency, hooks) = match &persist {
            serde_json::Value::Object(map) => (
                consistency_of(map).map_err(top_invalid)?,
                hooks_of(map).map_err(top_invalid)?,
            ),
            _ => (None, Hooks::default()),
        };
        let project = Project {
            name,
            directory,
            files,
            services,
            volumes,
            persist,
            consistency,
            hooks,
            environment,
            warnings,
        };
        check_hook_services(&project)?;
        Ok(project)
    }
}

/// Turns documents into layers, with the environment to interpolate them and a cache of files reached by
/// `extends`.
struct Loader<'a> {
    environment: &'a BTreeMap<String, String>,
    home: Option<&'a str>,
    warnings: &'a mut Vec<String>,
    unset: &'a mut Vec<String>,
    extended_files: HashMap<PathBuf, (FileCtx, Layer)>,
}

fn structure(ctx: &FileCtx, message: String) -> ComposeError {
    ComposeError::Structure {
        path: ctx.file.clone(),
        message,
    }
}

impl Loader<'_> {
    /// Interpolates `doc` and types what concerns data.
    fn layer(&mut self, mut doc: Value, ctx: &FileCtx) -> Result<Layer, ComposeError> {
        let env = self.environment;
        let lookup = |k: &str| env.get(k).cloned();
        interpolate_value(&mut doc, &ctx.file, "", &lookup, self.unset)?;
        let Value::Mapping(map) = doc else {
            return Err(structure(ctx, "top-level object must be a mapping".into()));
        };
        let mut layer = Layer::default();
        match map.get("services") {
            None => {}
            Some(Value::Mapping(services)) => {
                for (key, value) in services {
                    let name = key_display(key);
                    let patch = self.service_patch(&name, value, ctx)?;
                    layer.services.insert(name, patch);
                }
            }
            Some(_) => return Err(structure(ctx, "services must be a mapping".into())),
        }
        match map.get("volumes") {
            None | Some(Value::Null) => {}
            Some(Value::Mapping(volumes)) => {
                for (key, value) in volumes {
                    let key = key_display(key);
                    let entry = self.volume_entry(&key, value)?;
                    layer.volumes.insert(key, entry);
                }
            }
            Some(_) => return Err(structure(ctx, "volumes must be a mapping".into())),
        }
        if let Some(p) = map.get("x-persist") {
            layer.persist = Some(to_json(p));
        }
        Ok(layer)
    }

    fn service_patch(
        &mut self,
        name: &str,
        value: &Value,
        ctx: &FileCtx,
    ) -> Result<ServicePatch, ComposeError> {
        let Value::Mapping(map) = value else {
            return Err(structure(ctx, format!("services.{name} must be a mapping")));
        };
        let text = |field: &str, v: &Value| {
            scalar_string(v)
                .ok_or_else(|| structure(ctx, format!("services.{name}.{field} must be a string")))
        };
        let list = |field: &str, v: &Value| -> Result<Vec<String>, ComposeError> {
            match v {
                Value::Sequence(items) => items.iter().map(|i| text(field, i)).collect(),
                Value::Null => Ok(Vec::new()),
                other => Ok(vec![text(field, other)?]),
            }
        };
        let mut patch = ServicePatch {
            image: field(map, "image", |v| text("image", v))?,
            container_name: field(map, "container_name", |v| text("container_name", v))?,
            profiles: field(map, "profiles", |v| list("profiles", v))?,
            depends_on: field(map, "depends_on", |v| match v {
                Value::Mapping(deps) => Ok(deps.keys().map(key_display).collect()),
                other => list("depends_on", other),
            })?,
            restart: field(map, "restart", |v| text("restart", v))?,
            entrypoint: field(map, "entrypoint", |v| Ok(command_text(v)))?,
            command: field(map, "command", |v| Ok(command_text(v)))?,
            waits_for_completion: field(map, "depends_on", |v| {
                Ok(match v {
                    Value::Mapping(deps) => deps
                        .iter()
                        .filter(|(_, d)| {
                            d.get("condition").and_then(scalar_string).as_deref()
                                == Some("service_completed_successfully")
                        })
                        .map(|(k, _)| key_display(k))
                        .collect(),
                    _ => Vec::new(),
                })
            })?,
            tmpfs: field(map, "tmpfs", |v| {
                Ok(list("tmpfs", v)?
                    .into_iter()
                    .map(|t| clean_target(t.split(':').next().unwrap_or_default()))
                    .collect())
            })?,
            ..Default::default()
        };
        patch.volumes = field(map, "volumes", |v| match v {
            Value::Sequence(items) => items
                .iter()
                .map(|item| self.mount(name, item, ctx))
                .collect(),
            Value::Null => Ok(Vec::new()),
            _ => Err(structure(
                ctx,
                format!("services.{name}.volumes must be a list"),
            )),
        })?;
        patch.extends = match map.get("extends") {
            None | Some(Value::Null) => None,
            Some(Value::Mapping(e)) => Some(Extends {
                service: e.get("service").and_then(scalar_string).ok_or_else(|| {
                    structure(ctx, format!("services.{name}.extends needs `service`"))
                })?,
                file: e.get("file").and_then(scalar_string),
            }),
            Some(other) => Some(Extends {
                service: text("extends", other)?,
                file: None,
            }),
        };
        Ok(patch)
    }

    /// One entry of a service's `volumes:`.
    fn mount(&self, service: &str, item: &Value, ctx: &FileCtx) -> Result<Mount, ComposeError> {
        match item {
            Value::String(spec) => self.short_mount(service, spec, ctx),
            Value::Mapping(map) => self.long_mount(service, map, ctx),
            Value::Tagged(t) => self.mount(service, &t.value, ctx),
            _ => Err(structure(
                ctx,
                format!("services.{service}.volumes entries must be strings or mappings"),
            )),
        }
    }

    fn short_mount(&self, service: &str, spec: &str, ctx: &FileCtx) -> Result<Mount, ComposeError> {
        let parsed = parse_short_volume(spec).map_err(|message| ComposeError::InvalidMount {
            service: service.to_string(),
            spec: spec.to_string(),
            message: if spec.starts_with(':') {
                format!("{message}; the source is empty — is a variable it is built from unset?")
            } else {
                message
            },
        })?;
        let target = clean_target(&parsed.target);
        Ok(match parsed.source {
            None => Mount {
                kind: MountType::Volume,
                source: None,
                source_as_written: None,
                target,
                read_only: parsed.read_only,
                persist: None,
            },
            Some(src) if is_file_path(&src) => Mount {
                kind: MountType::Bind,
                source: Some(resolve_bind(&src, &ctx.base_dir, self.home)),
                source_as_written: Some(src),
                target,
                read_only: parsed.read_only,
                persist: None,
            },
            Some(src) => Mount {
                kind: MountType::Volume,
                source: Some(src.clone()),
                source_as_written: Some(src),
                target,
                read_only: parsed.read_only,
                persist: None,
            },
        })
    }

    fn long_mount(
        &self,
        service: &str,
        map: &Mapping,
        ctx: &FileCtx,
    ) -> Result<Mount, ComposeError> {
        let spec = describe_long(map);
        let invalid = |message: String| ComposeError::InvalidMount {
            service: service.to_string(),
            spec: spec.clone(),
            message,
        };
        let kind_text = map.get("type").and_then(scalar_string).ok_or_else(|| {
            invalid(
                "a long-syntax entry needs `type` (volume, bind, tmpfs, npipe, cluster or image)"
                    .into(),
            )
        })?;
        let source = map
            .get("source")
            .and_then(scalar_string)
            .filter(|s| !s.is_empty());
        let target = map
            .get("target")
            .and_then(scalar_string)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| invalid("missing a mount target".into()))?;
        let target = clean_target(&target);
        let read_only = match map.get("read_only") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(v) => scalar_string(v)
                .as_deref()
                .and_then(parse_bool)
                .ok_or_else(|| {
                    invalid(format!(
                        "`read_only` must be a boolean, not {}",
                        key_display(v)
                    ))
                })?,
        };
        let persist = map
            .get("x-persist")
            .map(|p| persist_spec(to_json(p), &format!("service `{service}` mount `{target}`")))
            .transpose()?;
        let (kind, source, as_written) = match kind_text.as_str() {
            "volume" => (MountType::Volume, source.clone(), source),
            "bind" => {
                let src = source.ok_or_else(|| invalid("a bind mount needs a `source`".into()))?;
                (
                    MountType::Bind,
                    Some(resolve_bind(&src, &ctx.base_dir, self.home)),
                    Some(src),
                )
            }
            "tmpfs" => (MountType::Tmpfs, None, None),
            "npipe" | "cluster" | "image" => (MountType::Other, source.clone(), source),
            other => {
                return Err(invalid(format!(
                    "unknown type `{other}` (expected volume, bind, tmpfs, npipe, cluster or image)"
                )));
            }
        };
        Ok(Mount {
            kind,
            source,
            source_as_written: as_written,
            target,
            read_only,
            persist,
        })
    }

    fn volume_entry(&mut self, key: &str, value: &Value) -> Result<VolumeEntry, ComposeError> {
        let invalid = |message: String| ComposeError::InvalidVolume {
            volume: key.to_string(),
            message,
        };
        let map = match value {
            Value::Null => return Ok(VolumeEntry::Define(VolumePatch::default())),
            Value::Tagged(t) if t.tag == "reset" => return Ok(VolumeEntry::Reset),
            Value::Tagged(t) => return self.volume_entry(key, &t.value),
            Value::Mapping(map) => map,
            _ => return Err(invalid("it must be a mapping".into())),
        };
        let mut patch = VolumePatch {
            name: map.get("name").and_then(scalar_string),
            driver: map.get("driver").and_then(scalar_string),
            ..Default::default()
        };
        match map.get("external") {
            None | Some(Value::Null) => {}
            Some(Value::Mapping(ext)) => {
                patch.external = Some(true);
                if let Some(ext_name) = ext.get("name").and_then(scalar_string) {
                    self.warnings.push(format!(
                        "volumes.{key}: external.name is deprecated. Please set name and external: true"
                    ));
                    match &patch.name {
                        Some(n) if *n != ext_name => {
                            return Err(invalid(
                                "name and external.name conflict; only use name".into(),
                            ));
                        }
                        _ => patch.name = Some(ext_name),
                    }
                }
            }
            Some(v) => {
                let b = match v {
                    Value::Bool(b) => Some(*b),
                    other => scalar_string(other).as_deref().and_then(parse_bool),
                };
                patch.external =
                    Some(b.ok_or_else(|| invalid("`external` must be a boolean".into()))?);
            }
        }
        patch.driver_opts = string_map(map.get("driver_opts"))
            .ok_or_else(|| invalid("`driver_opts` must be a mapping".into()))?;
        patch.labels = string_map(map.get("labels"))
            .ok_or_else(|| invalid("`labels` must be a mapping or a list of KEY=VALUE".into()))?;
        if let Some(p) = map.get("x-persist") {
            let raw = to_json(p);
            // Validate early so the error names the file's own entry; merged specs are checked again.
            persist_spec(raw.clone(), &format!("volume `{key}`"))?;
            patch.persist = Some(raw);
        }
        Ok(VolumeEntry::Define(patch))
    }

    /// Replaces every service with `extends` by the merge of the service it extends and itself.
    fn resolve_extends(&mut self, mut layer: Layer, ctx: &FileCtx) -> Result<Layer, ComposeError> {
        let names: Vec<String> = layer
            .services
            .iter()
            .filter(|(_, p)| p.extends.is_some())
            .map(|(n, _)| n.clone())
            .collect();
        for name in names {
            let mut visiting = Vec::new();
            let state = self.resolve_service(&name, &layer.services, ctx, &mut visiting)?;
            layer.services.insert(name, state.into_patch());
        }
        Ok(layer)
    }

    fn resolve_service(
        &mut self,
        name: &str,
        services: &IndexMap<String, ServicePatch>,
        ctx: &FileCtx,
        visiting: &mut Vec<(PathBuf, String)>,
    ) -> Result<ServiceState, ComposeError> {
        let patch = services.get(name).cloned().ok_or_else(|| {
            structure(
                ctx,
                format!("cannot extend service `{name}`: no such service in this file"),
            )
        })?;
        let here = (ctx.file.clone(), name.to_string());
        if visiting.contains(&here) {
            return Err(structure(
                ctx,
                format!("circular `extends` through service `{name}`"),
            ));
        }
        visiting.push(here);
        let mut state = match &patch.extends {
            None => ServiceState::default(),
            Some(Extends {
                service,
                file: None,
            }) => self.resolve_service(service, services, ctx, visiting)?,
            Some(Extends {
                service,
                file: Some(file),
            }) => {
                let dir = ctx.file.parent().unwrap_or(Path::new("/"));
                let path = discovery::absolutize(dir, Path::new(file));
                if !self.extended_files.contains_key(&path) {
                    let loaded = self.load_extended_file(&path)?;
                    self.extended_files.insert(path.clone(), loaded);
                }
                let (other_ctx, other_services) = match self.extended_files.get(&path) {
                    Some((c, l)) => (c.clone(), l.services.clone()),
                    None => {
                        return Err(structure(ctx, format!("cannot load `{}`", path.display())));
                    }
                };
                self.resolve_service(service, &other_services, &other_ctx, visiting)?
            }
        };
        visiting.pop();
        state.apply(ServicePatch {
            extends: None,
            ..patch
        });
        Ok(state)
    }

    fn load_extended_file(&mut self, path: &Path) -> Result<(FileCtx, Layer), ComposeError> {
        let ctx = FileCtx {
            file: path.to_path_buf(),
            base_dir: path.parent().map(Path::to_path_buf).unwrap_or_default(),
        };
        let mut merged = Layer::default();
        for map in read_documents(path, self.warnings)? {
            let layer = self.layer(Value::Mapping(map), &ctx)?;
            for (name, patch) in layer.services {
                merged.services.insert(name, patch);
            }
        }
        Ok((ctx, merged))
    }
}

/// Reads `key` of `map` as a patch: `!reset` → reset, `!override` → replace, null → absent, else merge.
/// (`!reset` and `!override` are Compose's tags for override files.)
fn field<T>(
    map: &Mapping,
    key: &str,
    parse: impl FnOnce(&Value) -> Result<T, ComposeError>,
) -> Result<Patch<T>, ComposeError> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(Patch::Absent),
        Some(Value::Tagged(t)) if t.tag == "reset" => Ok(Patch::Reset),
        Some(Value::Tagged(t)) if t.tag == "override" => Ok(Patch::Replace(parse(&t.value)?)),
        // Any other tag is not Compose's business: read the value under it.
        Some(Value::Tagged(t)) => Ok(Patch::Merge(parse(&t.value)?)),
        Some(v) => Ok(Patch::Merge(parse(v)?)),
    }
}

/// `driver_opts` / `labels`: a mapping of scalars (null → empty), or a list of `KEY=VALUE` / `KEY`.
/// `None` when the shape is wrong.
fn string_map(v: Option<&Value>) -> Option<BTreeMap<String, String>> {
    match v {
        None | Some(Value::Null) => Some(BTreeMap::new()),
        Some(Value::Mapping(m)) => Some(
            m.iter()
                .map(|(k, v)| (key_display(k), scalar_string(v).unwrap_or_default()))
                .collect(),
        ),
        Some(Value::Sequence(items)) => items
            .iter()
            .map(|i| {
                scalar_string(i).map(|s| match s.split_once('=') {
                    Some((k, v)) => (k.to_string(), v.to_string()),
                    None => (s, String::new()),
                })
            })
            .collect(),
        Some(Value::Tagged(t)) => string_map(Some(&t.value)),
        Some(_) => None,
    }
}

/// Booleans as Compose accepts them in strings (YAML 1.1 spellings included).
fn parse_bool(s: &str) -> Option<bool> {
    match s.to_ascii_lowercase().as_str() {
        "true" | "yes" | "y" | "on" | "1" => Some(true),
        "false" | "no" | "n" | "off" | "0" => Some(false),
        _ => None,
    }
}

/// A long-syntax entry shown in one line, for errors: `{type: bind, source: ./x, target: /y}`.
fn describe_long(map: &Mapping) -> String {
    let parts: Vec<String> = ["type", "source", "target"]
        .iter()
        .filter_map(|k| {
            map.get(*k)
                .and_then(scalar_string)
                .map(|v| format!("{k}: {v}"))
        })
        .collect();
    format!("{{{}}}", parts.join(", "))
}

/// The short syntax `[SOURCE:]TARGET[:MODE]`, parsed as compose-go's `format.ParseVolume` does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShortVolume {
    /// `None` for an anonymous volume.
    pub source: Option<String>,
    pub target: String,
    pub read_only: bool,
}

/// Parses a short-syntax volume. Like Compose: a one- or two-character spec is an anonymous target; a
/// single letter followed by `:` is a Windows drive, not a separator; `${…}` is never split; modes are
/// comma-separated and unknown ones ignored (`ro`/`rw` set read-only, the last one wins). Errors are
/// Compose's ("invalid spec: …: empty section between colons", "too many colons").
pub fn parse_short_volume(spec: &str) -> Result<ShortVolume, String> {
    match spec.len() {
        0 => return Err("invalid empty volume spec".to_string()),
        1 | 2 => {
            return Ok(ShortVolume {
                source: None,
                target: spec.to_string(),
                read_only: false,
            });
        }
        _ => {}
    }
    let mut source: Option<String> = None;
    let mut target: Option<String> = None;
    let mut read_only = false;
    let mut buffer: Vec<char> = Vec::new();
    let mut depth = 0usize;
    let bytes = spec.as_bytes();
    let chars: Vec<(usize, char)> = spec.char_indices().collect();
    let fail = |m: &str| Err(format!("invalid spec: {spec}: {m}"));
    for idx in 0..=chars.len() {
        let (i, ch) = match chars.get(idx) {
            Some(&(i, c)) => (i, Some(c)),
            None => (spec.len(), None),
        };
        if ch == Some('$') && bytes.get(i + 1) == Some(&b'{') {
            depth += 1;
            buffer.push('$');
            continue;
        }
        if ch == Some('}') && depth > 0 {
            depth -= 1;
            buffer.push('}');
            continue;
        }
        let is_drive = ch == Some(':') && buffer.len() == 1 && buffer[0].is_alphabetic();
        if is_drive {
            buffer.push(':');
            continue;
        }
        let at_end = ch.is_none();
        if (ch == Some(':') && depth == 0) || at_end {
            let text: String = buffer.drain(..).collect();
            if text.is_empty() {
                return fail("empty section between colons");
            }
            if source.is_none() && at_end {
                target = Some(text);
            } else if source.is_none() {
                source = Some(text);
            } else if target.is_none() {
                target = Some(text);
            } else if !at_end {
                return fail("too many colons");
            } else {
                for option in text.split(',') {
                    match option {
                        "ro" => read_only = true,
                        "rw" => read_only = false,
                        _ => {}
                    }
                }
            }
            continue;
        }
        if let Some(c) = ch {
            buffer.push(c);
        }
    }
    Ok(ShortVolume {
        source,
        target: target.unwrap_or_default(),
        read_only,
    })
}

/// Whether a short-syntax source is a host path (bind) rather than a volume name: it starts with `.`, `/`
/// or `~`, is a UNC path, or starts with a drive letter.
pub fn is_file_path(source: &str) -> bool {
    match source.chars().next() {
        None => false,
        Some('.' | '/' | '~') => true,
        Some(first) => {
            source.starts_with("\\\\")
                || (first.is_alphabetic() && source[first.len_utf8()..].starts_with(':'))
        }
    }
}

/// A Windows absolute path: `C:\…`, `C:/…` or `\\server\share`.
fn is_windows_abs(p: &str) -> bool {
    let b = p.as_bytes();
    p.starts_with("\\\\")
        || (b.len() >= 3
            && b[0].is_ascii_alphabetic()
            && b[1] == b':'
            && (b[2] == b'\\' || b[2] == b'/'))
}

/// A bind source as Compose resolves it: `~` → `home`, relative → against `base_dir` (cleaned), absolute
/// (Unix or Windows) → as written.
pub fn resolve_bind(source: &str, base_dir: &Path, home: Option<&str>) -> String {
    let expanded = match (source.strip_prefix('~'), home) {
        (Some(rest), Some(home)) => clean_path(&PathBuf::from(format!("{home}/{rest}")))
            .to_string_lossy()
            .into_owned(),
        _ => source.to_string(),
    };
    if expanded.starts_with('/') || is_windows_abs(&expanded) {
        expanded
    } else {
        clean_path(&base_dir.join(&expanded))
            .to_string_lossy()
            .into_owned()
    }
}

/// A container path cleaned like Go's `path.Clean` (what Compose prints): `/data/` → `/data`.
pub fn clean_target(target: &str) -> String {
    if target.is_empty() {
        return String::new();
    }
    let rooted = target.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in target.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|p| *p != "..") {
                    parts.pop();
                } else if !rooted {
                    parts.push("..");
                }
            }
            p => parts.push(p),
        }
    }
    let joined = parts.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_string(),
        (false, false) => joined,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn short(spec: &str) -> ShortVolume {
        parse_short_volume(spec).unwrap()
    }

    fn sv(source: Option<&str>, target: &str, ro: bool) -> ShortVolume {
        ShortVolume {
            source: source.map(str::to_string),
            target: target.to_string(),
            read_only: ro,
        }
    }

    #[test]
    fn short_syntax_table() {
        let cases: &[(&str, ShortVolume)] = &[
            ("/data", sv(None, "/data", false)),
            (
                "db:/var/lib/postgresql/data",
                sv(Some("db"), "/var/lib/postgresql/data", false),
            ),
            ("./data:/data:ro", sv(Some("./data"), "/data", true)),
            ("./data:/data:rw", sv(Some("./data"), "/data", false)),
            (
                "/etc/localtime:/etc/localtime:ro",
                sv(Some("/etc/localtime"), "/etc/localtime", true),
            ),
            ("./db:/var/lib/db:Z", sv(Some("./db"), "/var/lib/db", false)),
            ("./db:/var/lib/db:z", sv(Some("./db"), "/var/lib/db", false)),
            (
                "/var/run/docker.sock:/var/run/docker.sock:ro,z",
                sv(Some("/var/run/docker.sock"), "/var/run/docker.sock", true),
            ),
            ("./app:/app:Z,cached", sv(Some("./app"), "/app", false)),
            ("..:/app:cached", sv(Some(".."), "/app", false)),
            ("./src:/src:delegated", sv(Some("./src"), "/src", false)),
            ("./src:/src:consistent", sv(Some("./src"), "/src", false)),
            ("data:/data:nocopy", sv(Some("data"), "/data", false)),
            ("data:/data:rw,ro", sv(Some("data"), "/data", true)),
            ("data:/data:bogus,ro", sv(Some("data"), "/data", true)),
            ("ab", sv(None, "ab", false)),
            ("~/x:/a", sv(Some("~/x"), "/a", false)),
            ("C:\\data:/win", sv(Some("C:\\data"), "/win", false)),
            // A single letter followed by a colon is a Windows drive, as in Compose.
            ("a:/b:rw,ro", sv(Some("a:/b"), "rw,ro", false)),
            ("${X:-./a}:/b", sv(Some("${X:-./a}"), "/b", false)),
        ];
        for (spec, expected) in cases {
            assert_eq!(&short(spec), expected, "spec {spec}");
        }
    }

    #[test]
    fn short_syntax_errors_match_compose() {
        assert_eq!(
            parse_short_volume(":/var/lib/postgresql/data").unwrap_err(),
            "invalid spec: :/var/lib/postgresql/data: empty section between colons"
        );
        assert_eq!(
            parse_short_volume("./a:/b:ro:z").unwrap_err(),
            "invalid spec: ./a:/b:ro:z: too many colons"
        );
        assert_eq!(
            parse_short_volume("./a:/b:").unwrap_err(),
            "invalid spec: ./a:/b:: empty section between colons"
        );
        assert_eq!(
            parse_short_volume("").unwrap_err(),
            "invalid empty volume spec"
        );
    }

    #[test]
    fn file_path_detection() {
        for bind in [
            "./x",
            "../x",
            ".",
            "/x",
            "~",
            "~/x",
            "\\\\srv\\share",
            "C:\\x",
            "c:/x",
        ] {
            assert!(is_file_path(bind), "{bind}");
        }
        for named in ["data", "my-vol", "x_1", ""] {
            assert!(!is_file_path(named), "{named}");
        }
    }

    #[test]
    fn bind_sources_resolve_like_compose() {
        let base = Path::new("/proj/app");
        let home = Some("/home/u");
        assert_eq!(resolve_bind("./data", base, home), "/proj/app/data");
        assert_eq!(resolve_bind("../up/./x/", base, home), "/proj/up/x");
        assert_eq!(resolve_bind(".", base, home), "/proj/app");
        assert_eq!(resolve_bind("~/x", base, home), "/home/u/x");
        assert_eq!(resolve_bind("~", base, home), "/home/u");
        assert_eq!(resolve_bind("~foo", base, home), "/home/u/foo");
        // Absolute paths are kept exactly as written, as Compose does.
        assert_eq!(resolve_bind("/abs//p/../q/", base, home), "/abs//p/../q/");
        assert_eq!(resolve_bind("C:\\data", base, home), "C:\\data");
        assert_eq!(resolve_bind("a:b", base, home), "/proj/app/a:b");
    }

    #[test]
    fn targets_are_cleaned() {
        assert_eq!(clean_target("/data/"), "/data");
        assert_eq!(clean_target("/usr/src/app/"), "/usr/src/app");
        assert_eq!(clean_target("/a/./b/../c"), "/a/c");
        assert_eq!(clean_target("./a"), "a");
        assert_eq!(clean_target("/"), "/");
        assert_eq!(clean_target("/.."), "/");
    }

    #[test]
    fn project_name_normalization() {
        assert_eq!(normalize_project_name("MyProj"), "myproj");
        assert_eq!(normalize_project_name("Hello World!"), "helloworld");
        assert_eq!(normalize_project_name("__-app.v2"), "appv2");
        assert_eq!(normalize_project_name("été-2"), "t-2");
        assert_eq!(normalize_project_name("..."), "");
        assert!(check_explicit_name("my_app-1").is_ok());
        let err = check_explicit_name("My.App").unwrap_err();
        assert!(
            err.to_string().contains("invalid project name `My.App`"),
            "{err}"
        );
        assert!(check_explicit_name("-app").is_err());
    }

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

    fn mount(kind: MountType, source: Option<&str>, target: &str) -> Mount {
        Mount {
            kind,
            source: source.map(str::to_string),
            source_as_written: source.map(str::to_string),
            target: target.to_string(),
            read_only: false,
            persist: None,
        }
    }

    #[test]
    fn merging_mounts_replaces_by_target_in_place() {
        let mut base = vec![
            mount(MountType::Volume, Some("data"), "/data"),
            mount(MountType::Bind, Some("/p/code"), "/code"),
        ];
        merge_mounts(
            &mut base,
            vec![
                mount(MountType::Bind, Some("/p/other"), "/code"),
                mount(MountType::Volume, Some("logs"), "/logs"),
            ],
        );
        let targets: Vec<(&str, Option<&str>)> = base
            .iter()
            .map(|m| (m.target.as_str(), m.source.as_deref()))
            .collect();
        assert_eq!(
            targets,
            vec![
                ("/data", Some("data")),
                ("/code", Some("/p/other")),
                ("/logs", Some("logs"))
            ]
        );
    }

    #[test]
    fn service_state_merge_rules() {
        let mut state = ServiceState::default();
        state.apply(ServicePatch {
            image: Patch::Merge("web:1".into()),
            container_name: Patch::Merge("w1".into()),
            profiles: Patch::Merge(vec!["a".into()]),
            depends_on: Patch::Merge(vec!["db".into()]),
            volumes: Patch::Merge(vec![mount(MountType::Volume, Some("data"), "/data")]),
            ..Default::default()
        });
        state.apply(ServicePatch {
            image: Patch::Merge("web:2".into()),
            profiles: Patch::Merge(vec!["b".into(), "a".into()]),
            depends_on: Patch::Merge(vec!["cache".into()]),
            volumes: Patch::Merge(vec![mount(MountType::Volume, Some("x"), "/x")]),
            ..Default::default()
        });
        assert_eq!(state.image.as_deref(), Some("web:2"));
        assert_eq!(state.container_name.as_deref(), Some("w1"));
        assert_eq!(state.profiles, vec!["a".to_string(), "b".to_string()]);
        assert_eq!(
            state.depends_on,
            vec!["db".to_string(), "cache".to_string()]
        );
        assert_eq!(state.mounts.len(), 2);
        state.apply(ServicePatch {
            container_name: Patch::Reset,
            volumes: Patch::Replace(vec![mount(MountType::Tmpfs, None, "/t")]),
            depends_on: Patch::Reset,
            ..Default::default()
        });
        assert_eq!(state.container_name, None);
        assert!(state.depends_on.is_empty());
        assert_eq!(state.mounts, vec![mount(MountType::Tmpfs, None, "/t")]);
    }

    #[test]
    fn deep_merge_of_extension_maps() {
        let mut base = serde_json::json!({"dir": "./b", "keep": {"daily": 7}, "list": [1]});
        deep_merge(
            &mut base,
            serde_json::json!({"keep": {"weekly": 4}, "list": [2], "new": true}),
        );
        assert_eq!(
            base,
            serde_json::json!({"dir": "./b", "keep": {"daily": 7, "weekly": 4}, "list": [2], "new": true})
        );
    }

    #[test]
    fn persist_spec_validation() {
        let ok = persist_spec(
            serde_json::json!({"tier": "Critical", "consistency": "dump"}),
            "volume `db`",
        )
        .unwrap();
        assert_eq!(ok.tier, Some(Tier::Critical));
        assert_eq!(ok.raw["consistency"], "dump");
        let none = persist_spec(serde_json::json!({}), "volume `db`").unwrap();
        assert_eq!(none.tier, None);
        let err = persist_spec(serde_json::json!({"tier": "precious"}), "volume `db`").unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid `x-persist` in volume `db`: `precious` is not a tier (expected one of: critical, important, regenerable, optional)"
        );
        let err =
            persist_spec(serde_json::json!("critical"), "service `web` mount `/data`").unwrap_err();
        assert!(
            err.to_string().contains("service `web` mount `/data`"),
            "{err}"
        );
    }

    #[test]
    fn string_maps_accept_mappings_and_lists() {
        let v: Value = serde_norway::from_str("{a: 1, b: true, c: }").unwrap();
        let m = string_map(Some(&v)).unwrap();
        assert_eq!(m.get("a").map(String::as_str), Some("1"));
        assert_eq!(m.get("b").map(String::as_str), Some("true"));
        assert_eq!(m.get("c").map(String::as_str), Some(""));
        let v: Value = serde_norway::from_str("[a=b, \"c=d=e\", f]").unwrap();
        let m = string_map(Some(&v)).unwrap();
        assert_eq!(m.get("a").map(String::as_str), Some("b"));
        assert_eq!(m.get("c").map(String::as_str), Some("d=e"));
        assert_eq!(m.get("f").map(String::as_str), Some(""));
        assert!(string_map(Some(&Value::String("x".into()))).is_none());
    }

    /// Writes `files` (relative path → content) into a temp dir and loads it from there.
    fn load_in(
        files: &[(&str, &str)],
        tweak: impl FnOnce(&mut ProjectOptions),
    ) -> (tempfile::TempDir, Result<Project, ComposeError>) {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("My_App");
        for (name, text) in files {
            let path = root.join(name);
            fs_err::create_dir_all(path.parent().unwrap()).unwrap();
            fs_err::write(&path, text).unwrap();
        }
        fs_err::create_dir_all(&root).unwrap();
        let mut opts = ProjectOptions {
            working_dir: root,
            os_env: [("HOME".to_string(), "/home/u".to_string())].into(),
            ..Default::default()
        };
        tweak(&mut opts);
        let result = load_project(&opts);
        (tmp, result)
    }

    fn ok(files: &[(&str, &str)]) -> Project {
        let (_tmp, result) = load_in(files, |_| {});
        result.unwrap()
    }

    fn err(files: &[(&str, &str)]) -> ComposeError {
        let (_tmp, result) = load_in(files, |_| {});
        result.unwrap_err()
    }

    const WEB: &str =
        "services:\n  web:\n    image: web\n    volumes: [data:/data]\nvolumes:\n  data:\n";

    #[test]
    fn project_name_comes_from_the_directory_normalized() {
        let p = ok(&[("compose.yaml", WEB)]);
        assert_eq!(p.name, "my_app");
        assert_eq!(p.engine_volume_name("data").as_deref(), Some("my_app_data"));
        assert_eq!(p.directory.file_name().unwrap(), "My_App");
    }

    #[test]
    fn project_name_precedence() {
        let named = "name: From-Yaml\nservices: {}\n";
        assert_eq!(ok(&[("compose.yaml", named)]).name, "from-yaml");
        let (_t, p) = load_in(
            &[
                ("compose.yaml", named),
                (".env", "COMPOSE_PROJECT_NAME=from_env\n"),
            ],
            |_| {},
        );
        assert_eq!(p.unwrap().name, "from_env");
        let (_t, p) = load_in(
            &[
                ("compose.yaml", named),
                (".env", "COMPOSE_PROJECT_NAME=from_env\n"),
            ],
            |o| o.project_name = Some("from-flag".into()),
        );
        assert_eq!(p.unwrap().name, "from-flag");
        // The last file that sets `name:` wins; it is interpolated.
        let (_t, p) = load_in(
            &[("a.yml", named), ("b.yml", "name: ${SECOND:-second}\n")],
            |o| o.files = vec!["a.yml".into(), "b.yml".into()],
        );
        assert_eq!(p.unwrap().name, "second");
    }

    #[test]
    fn explicit_invalid_project_names_are_errors() {
        let (_t, r) = load_in(&[("compose.yaml", WEB)], |o| {
            o.project_name = Some("My.App".into())
        });
        assert!(matches!(r, Err(ComposeError::ProjectName { ref name, .. }) if name == "My.App"));
        let (_t, r) = load_in(&[("compose.yaml", WEB)], |o| {
            o.os_env
                .insert("COMPOSE_PROJECT_NAME".into(), "MyApp".into());
        });
        assert!(matches!(r, Err(ComposeError::ProjectName { ref name, .. }) if name == "MyApp"));
    }

    #[test]
    fn compose_project_name_is_available_for_interpolation() {
        let p = ok(&[(
            "compose.yaml",
            "name: demo\nservices:\n  web:\n    image: ${COMPOSE_PROJECT_NAME}-web\n",
        )]);
        assert_eq!(p.services["web"].image.as_deref(), Some("demo-web"));
        assert_eq!(
            p.environment
                .get("COMPOSE_PROJECT_NAME")
                .map(String::as_str),
            Some("demo")
        );
    }

    #[test]
    fn os_environment_wins_over_dotenv_in_interpolation() {
        let files = [
            (
                "compose.yaml",
                "services:\n  web:\n    image: app:${TAG}\n    volumes: [\"${DATA}:/data\"]\n",
            ),
            (".env", "TAG=dotenv\nDATA=./from-dotenv\n"),
        ];
        let (_t, p) = load_in(&files, |o| {
            o.os_env.insert("TAG".into(), "os".into());
        });
        let p = p.unwrap();
        assert_eq!(p.services["web"].image.as_deref(), Some("app:os"));
        let m = &p.services["web"].mounts[0];
        assert_eq!(m.source_as_written.as_deref(), Some("./from-dotenv"));
        assert!(
            m.source
                .as_deref()
                .unwrap()
                .ends_with("/My_App/from-dotenv")
        );
    }

    #[test]
    fn multi_file_merge_by_target_and_volume_fields() {
        let base = "services:\n  web:\n    image: web:1\n    volumes:\n      - data:/data\n      - ./code:/code\n\
                    volumes:\n  data:\n    labels: {a: \"1\"}\n    driver_opts: {o: bind}\n    x-persist: {tier: critical, keep: {daily: 7}}\n";
        let over = "services:\n  web:\n    volumes:\n      - ./other:/code:ro\n      - /srv/logs:/logs\n\
                    volumes:\n  data:\n    name: shared\n    labels: [b=2]\n    driver: local\n    x-persist: {keep: {weekly: 4}}\n";
        let (_t, p) = load_in(&[("base.yml", base), ("over.yml", over)], |o| {
            o.files = vec!["base.yml".into(), "over.yml".into()];
        });
        let p = p.unwrap();
        let mounts: Vec<(&str, Option<&str>, bool)> = p.services["web"]
            .mounts
            .iter()
            .map(|m| {
                (
                    m.target.as_str(),
                    m.source_as_written.as_deref(),
                    m.read_only,
                )
            })
            .collect();
        assert_eq!(
            mounts,
            vec![
                ("/data", Some("data"), false),
                ("/code", Some("./other"), true),
                ("/logs", Some("/srv/logs"), false)
            ]
        );
        let data = &p.volumes["data"];
        assert_eq!(data.name.as_deref(), Some("shared"));
        assert_eq!(data.driver.as_deref(), Some("local"));
        assert_eq!(data.labels.len(), 2);
        assert_eq!(data.driver_opts.get("o").map(String::as_str), Some("bind"));
        let persist = data.persist.as_ref().unwrap();
        assert_eq!(persist.tier, Some(Tier::Critical));
        assert_eq!(
            persist.raw,
            serde_json::json!({"tier": "critical", "keep": {"daily": 7, "weekly": 4}})
        );
        assert_eq!(p.engine_volume_name("data").as_deref(), Some("shared"));
    }

    #[test]
    fn reset_and_override_tags() {
        let base = "services:\n  web:\n    image: web\n    container_name: c1\n    depends_on: [db]\n\
                    \x20   volumes: [./a:/a, ./b:/b]\n    tmpfs: [/t1]\n  db:\n    image: db\nvolumes:\n  gone:\n  kept:\n";
        let over = "services:\n  web:\n    container_name: !reset null\n    depends_on: !reset []\n\
                    \x20   volumes: !override\n      - ./c:/c\n    tmpfs: !reset []\nvolumes:\n  gone: !reset\n";
        let p = ok(&[("compose.yaml", base), ("compose.override.yaml", over)]);
        let web = &p.services["web"];
        assert_eq!(web.container_name, None);
        assert!(web.depends_on.is_empty());
        let targets: Vec<&str> = web.mounts.iter().map(|m| m.target.as_str()).collect();
        assert_eq!(targets, ["/c"]);
        assert_eq!(p.volumes.keys().collect::<Vec<_>>(), ["kept"]);
    }

    #[test]
    fn tmpfs_key_and_long_syntax_give_tmpfs_mounts() {
        let p = ok(&[(
            "compose.yaml",
            "services:\n  a:\n    image: x\n    tmpfs: /run:size=1m\n    volumes:\n      - type: tmpfs\n        target: /cache/\n",
        )]);
        let kinds: Vec<(MountType, &str)> = p.services["a"]
            .mounts
            .iter()
            .map(|m| (m.kind, m.target.as_str()))
            .collect();
        assert_eq!(
            kinds,
            [(MountType::Tmpfs, "/cache"), (MountType::Tmpfs, "/run")]
        );
    }

    #[test]
    fn long_syntax_errors_name_the_service() {
        for (entry, needle) in [
            ("{source: ./a, target: /a}", "needs `type`"),
            ("{type: bind, target: /a}", "needs a `source`"),
            ("{type: volume, source: data}", "missing a mount target"),
            (
                "{type: bogus, source: a, target: /a}",
                "unknown type `bogus`",
            ),
            (
                "{type: bind, source: ./a, target: /a, read_only: maybe}",
                "`read_only` must be a boolean",
            ),
        ] {
            let e = err(&[(
                "compose.yaml",
                &format!("services:\n  web:\n    image: x\n    volumes: [{entry}]\n"),
            )]);
            match e {
                ComposeError::InvalidMount {
                    service, message, ..
                } => {
                    assert_eq!(service, "web");
                    assert!(message.contains(needle), "{entry}: {message}");
                }
                other => panic!("{entry}: unexpected {other:?}"),
            }
        }
    }

    #[test]
    fn invalid_x_persist_names_where() {
        let e = err(&[(
            "compose.yaml",
            "services: {}\nvolumes:\n  db:\n    x-persist: {tier: gold}\n",
        )]);
        assert_eq!(
            e.to_string(),
            "invalid `x-persist` in volume `db`: `gold` is not a tier (expected one of: critical, important, regenerable, optional)"
        );
        let e = err(&[(
            "compose.yaml",
            "services:\n  web:\n    image: x\n    volumes:\n      - type: bind\n        source: ./d\n        target: /data\n        x-persist: {tier: 3}\n",
        )]);
        match e {
            ComposeError::InvalidPersist { location, .. } => {
                assert_eq!(location, "service `web` mount `/data`")
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn undefined_named_volume_is_a_warning_and_an_implicit_volume() {
        let p = ok(&[(
            "compose.yaml",
            "services:\n  web:\n    image: x\n    volumes: [data:/data]\n",
        )]);
        assert!(
            p.warnings[0].starts_with("service `web` refers to undefined volume `data`"),
            "{:?}",
            p.warnings
        );
        assert_eq!(
            p.volumes["data"].engine_name(&p.name),
            format!("{}_data", p.name)
        );
    }

    #[test]
    fn top_level_volume_forms() {
        let p = ok(&[(
            "compose.yaml",
            "services: {}\nvolumes:\n  nul:\n  empty: {}\n  ext: {external: true}\n  exts: {external: \"true\"}\n\
             \x20 legacy: {external: {name: real}}\n  named: {name: \"${N:-custom}\"}\n  blank: {name: \"\"}\n",
        )]);
        let names: Vec<(String, String)> = p
            .volumes
            .keys()
            .map(|k| (k.clone(), p.engine_volume_name(k).unwrap()))
            .collect();
        assert_eq!(
            names,
            [
                ("nul", "my_app_nul"),
                ("empty", "my_app_empty"),
                ("ext", "ext"),
                ("exts", "exts"),
                ("legacy", "real"),
                ("named", "custom"),
                ("blank", "my_app_blank"),
            ]
            .map(|(a, b)| (a.to_string(), b.to_string()))
        );
        assert!(p.volumes["legacy"].external);
        let e = err(&[(
            "compose.yaml",
            "services: {}\nvolumes:\n  v: {name: a, external: {name: b}}\n",
        )]);
        assert!(
            matches!(e, ComposeError::InvalidVolume { ref volume, .. } if volume == "v"),
            "{e}"
        );
    }

    #[test]
    fn extends_in_the_same_file_and_another_file() {
        let p = ok(&[
            (
                "compose.yaml",
                "services:\n  base:\n    image: b\n    volumes: [./a:/a, v1:/v]\n  child:\n    extends: base\n    volumes: [./c:/a]\n\
                 \x20 grandchild:\n    extends: {service: child}\n    image: g\n\
                 \x20 remote:\n    extends: {file: lib/common.yaml, service: tmpl}\nvolumes:\n  v1:\n  v2:\n",
            ),
            (
                "lib/common.yaml",
                "services:\n  tmpl:\n    image: t\n    volumes: [./data:/d, v2:/v2]\n",
            ),
        ]);
        let sources = |svc: &str| -> Vec<String> {
            p.services[svc]
                .mounts
                .iter()
                .map(|m| format!("{}<-{}", m.target, m.source.as_deref().unwrap_or("")))
                .collect()
        };
        let root = p.directory.to_string_lossy().into_owned();
        assert_eq!(
            sources("child"),
            [format!("/a<-{root}/c"), "/v<-v1".to_string()]
        );
        assert_eq!(p.services["grandchild"].image.as_deref(), Some("g"));
        assert_eq!(sources("grandchild"), sources("child"));
        assert_eq!(p.services["remote"].image.as_deref(), Some("t"));
        // Relative paths of the extended file resolve against that file's directory.
        assert_eq!(
            sources("remote"),
            [format!("/d<-{root}/lib/data"), "/v2<-v2".to_string()]
        );
    }

    #[test]
    fn extends_errors() {
        let e = err(&[(
            "compose.yaml",
            "services:\n  a:\n    extends: b\n  b:\n    extends: a\n",
        )]);
        assert!(e.to_string().contains("circular `extends`"), "{e}");
        let e = err(&[("compose.yaml", "services:\n  a:\n    extends: nope\n")]);
        assert!(
            e.to_string().contains("cannot extend service `nope`"),
            "{e}"
        );
    }

    #[test]
    fn empty_project_is_an_error_but_an_empty_override_is_not() {
        for text in ["", "# nothing\n", "version: '3'\n", "{}\n"] {
            let e = err(&[("compose.yaml", text)]);
            assert!(
                matches!(e, ComposeError::Structure { ref message, .. } if message == "empty compose file"),
                "{text:?}: {e}"
            );
        }
        let p = ok(&[("compose.yaml", WEB), ("compose.override.yml", "")]);
        assert_eq!(p.files.len(), 2);
        assert_eq!(p.services.len(), 1);
    }

    #[test]
    fn structure_errors_name_the_file() {
        let e = err(&[("compose.yaml", "services:\n")]);
        assert!(
            matches!(e, ComposeError::Structure { ref message, .. } if message == "services must be a mapping"),
            "{e}"
        );
        let e = err(&[("compose.yaml", "services:\n  web: [a]\n")]);
        assert!(
            e.to_string().contains("services.web must be a mapping"),
            "{e}"
        );
        let e = err(&[("compose.yaml", "- a\n")]);
        assert!(e.to_string().contains("compose.yaml"), "{e}");
    }

    #[test]
    fn yaml_error_from_a_file_has_its_location() {
        let e = err(&[(
            "compose.yaml",
            "services:\n  web:\n    image: x\n   bad: [\n",
        )]);
        match e {
            ComposeError::Yaml { path, line, .. } => {
                assert!(path.ends_with("My_App/compose.yaml"));
                assert!(line >= 4, "line {line}");
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn interpolation_errors_name_file_and_value() {
        let e = err(&[(
            "compose.yaml",
            "services:\n  web:\n    image: \"app:${TAG\"\n",
        )]);
        match &e {
            ComposeError::Interpolation {
                path,
                value,
                message,
            } => {
                assert!(path.ends_with("compose.yaml"));
                assert_eq!(value, "app:${TAG");
                assert!(message.contains("services.web.image"), "{message}");
            }
            other => panic!("unexpected {other:?}"),
        }
        let e = err(&[(
            "compose.yaml",
            "services:\n  web:\n    image: \"${TAG:?}\"\n",
        )]);
        assert_eq!(e.to_string(), "required variable `TAG` is missing a value");
    }

    #[test]
    fn x_persist_hooks_and_dump_parse_with_defaults() {
        let p = ok(&[(
            "compose.yaml",
            "x-persist:\n  hooks:\n    post: [{service: db, command: [redis-cli, 1], on_error: Continue}]\nservices:\n  db:\n    image: x\n    volumes:\n      - type: bind\n        source: ./d\n        target: /data\n        x-persist: {hooks: {pre: [{service: db, command: sync, timeout: 500ms}]}}\nvolumes:\n  data:\n    x-persist:\n      consistency: dump\n      dump: Postgres\n      hooks:\n        pre:\n          - {service: db, command: \"psql -c 'CHECKPOINT'\", timeout: 2m}\n          - {service: db, command: x, timeout: 90}\n",
        )]);
        assert_eq!(
            p.hooks.post,
            [Hook {
                service: "db".into(),
                command: HookCommand::Exec(vec!["redis-cli".into(), "1".into()]),
                timeout: DEFAULT_HOOK_TIMEOUT,
                on_error: OnError::Continue,
            }]
        );
        assert!(p.hooks.pre.is_empty());
        let data = p.volumes["data"].persist.as_ref().unwrap();
        assert_eq!(data.dump, Some(DumpRecipe::Postgres));
        assert_eq!(data.hooks.pre.len(), 2);
        assert_eq!(
            data.hooks.pre[0].command,
            HookCommand::Shell("psql -c 'CHECKPOINT'".into())
        );
        assert_eq!(
            data.hooks.pre[0].command.argv(),
            ["sh", "-c", "psql -c 'CHECKPOINT'"]
        );
        assert_eq!(
            data.hooks.pre[0].timeout,
            std::time::Duration::from_secs(120)
        );
        assert_eq!(data.hooks.pre[0].on_error, OnError::Fail);
        assert_eq!(
            data.hooks.pre[1].timeout,
            std::time::Duration::from_secs(90)
        );
        let bind = p.services["db"].mounts[0].persist.as_ref().unwrap();
        assert_eq!(
            bind.hooks.pre[0].timeout,
            std::time::Duration::from_millis(500)
        );
    }

    #[test]
    fn invalid_hooks_and_dump_name_where_and_what() {
        for (yaml, message) in [
            (
                "services: {db: {image: x}}\nvolumes:\n  v:\n    x-persist: {dump: sqlite}\n",
                "invalid `x-persist` in volume `v`: `sqlite` is not a dump recipe (expected one of: postgres, mysql, mariadb, redis, mongodb)",
            ),
            (
                "services: {db: {image: x}}\nvolumes:\n  v:\n    x-persist: {hooks: [{service: db, command: x}]}\n",
                "invalid `x-persist` in volume `v`: `hooks` must be a mapping with `pre` and/or `post`, not `[{\"service\":\"db\",\"command\":\"x\"}]`",
            ),
            (
                "services: {db: {image: x}}\nvolumes:\n  v:\n    x-persist: {hooks: {before: []}}\n",
                "invalid `x-persist` in volume `v`: `hooks` has an unknown key `before` (expected `pre` and/or `post`)",
            ),
            (
                "services: {db: {image: x}}\nvolumes:\n  v:\n    x-persist: {hooks: {pre: [{command: x}]}}\n",
                "invalid `x-persist` in volume `v`: `hooks.pre[0]`: `service` must name the service whose container runs the hook",
            ),
            (
                "services: {db: {image: x}}\nvolumes:\n  v:\n    x-persist: {hooks: {post: [{service: db, command: []}]}}\n",
                "invalid `x-persist` in volume `v`: `hooks.post[0]`: `command` must be a non-empty string (run with `sh -c`) or list (run as is)",
            ),
            (
                "services: {db: {image: x}}\nvolumes:\n  v:\n    x-persist: {hooks: {pre: [{service: db, command: x, timeout: 3 days}]}}\n",
                "invalid `x-persist` in volume `v`: `hooks.pre[0]`: `timeout` must be a duration like `30s`, `2m` or `1h` (or seconds), not `\"3 days\"`",
            ),
            (
                "services: {db: {image: x}}\nvolumes:\n  v:\n    x-persist: {hooks: {pre: [{service: db, command: x, timeout: 0s}]}}\n",
                "invalid `x-persist` in volume `v`: `hooks.pre[0]`: `timeout` must be a duration like `30s`, `2m` or `1h` (or seconds), not `\"0s\"`",
            ),
            (
                "services: {db: {image: x}}\nvolumes:\n  v:\n    x-persist: {hooks: {pre: [{service: db, command: x, on_error: ignore}]}}\n",
                "invalid `x-persist` in volume `v`: `hooks.pre[0]`: `on_error` must be `fail` or `continue`, not `ignore`",
            ),
            (
                "services: {db: {image: x}}\nvolumes:\n  v:\n    x-persist: {hooks: {pre: [{service: db, command: x, retries: 3}]}}\n",
                "invalid `x-persist` in volume `v`: `hooks.pre[0]`: unknown key `retries` (expected service, command, timeout, on_error)",
            ),
            (
                "x-persist: {hooks: {post: [{service: web, command: x}]}}\nservices: {db: {image: x}}\n",
                "invalid `x-persist` in the top-level `x-persist`: the hook runs in service `web`, which the project does not define",
            ),
        ] {
            assert_eq!(
                err(&[("compose.yaml", yaml)]).to_string(),
                message,
                "{yaml}"
            );
        }
    }

    #[test]
    fn x_persist_consistency_is_validated_like_tiers() {
        let p = ok(&[(
            "compose.yaml",
            "x-persist: {consistency: Live}\nservices:\n  web:\n    image: x\n    volumes:\n      - type: bind\n        source: ./d\n        target: /data\n        x-persist: {consistency: stop}\nvolumes:\n  db:\n    x-persist: {consistency: dump}\n",
        )]);
        assert_eq!(p.consistency, Some(Consistency::Live));
        assert_eq!(
            p.volumes["db"].persist.as_ref().unwrap().consistency,
            Some(Consistency::Dump)
        );
        assert_eq!(
            p.services["web"].mounts[0]
                .persist
                .as_ref()
                .unwrap()
                .consistency,
            Some(Consistency::Stop)
        );
        let e = err(&[(
            "compose.yaml",
            "services: {}\nvolumes:\n  db:\n    x-persist: {consistency: snapshot}\n",
        )]);
        assert_eq!(
            e.to_string(),
            "invalid `x-persist` in volume `db`: `snapshot` is not a consistency mode (expected one of: auto, stop, live, dump)"
        );
        let e = err(&[(
            "compose.yaml",
            "x-persist: {consistency: [stop]}\nservices: {}\n",
        )]);
        assert_eq!(
            e.to_string(),
            "invalid `x-persist` in the top-level `x-persist`: `consistency` must be one of auto, stop, live, dump, not `[\"stop\"]`"
        );
    }

    #[test]
    fn x_extensions_are_interpolated_and_top_level_persist_kept() {
        let p = ok(&[(
            "compose.yaml",
            "x-persist:\n  dir: ${BACKUPS:-./backups}\n  keep: 3\nservices: {}\n",
        )]);
        assert_eq!(
            p.persist,
            serde_json::json!({"dir": "./backups", "keep": 3})
        );
        let e = err(&[(
            "compose.yaml",
            "x-other:\n  a: ${NEEDED?set NEEDED}\nservices: {}\n",
        )]);
        assert!(
            matches!(e, ComposeError::MissingVariable { ref name, .. } if name == "NEEDED"),
            "{e}"
        );
        let p = ok(&[("compose.yaml", WEB)]);
        assert_eq!(p.persist, serde_json::Value::Null);
    }

    #[test]
    fn warnings_are_collected_once() {
        let p = ok(&[(
            "compose.yaml",
            "version: '3'\nservices:\n  a:\n    image: ${NOPE}\n  b:\n    image: ${NOPE}\n",
        )]);
        let unset: Vec<&String> = p.warnings.iter().filter(|w| w.contains("NOPE")).collect();
        assert_eq!(
            unset,
            ["The \"NOPE\" variable is not set. Defaulting to a blank string."]
        );
        assert!(
            p.warnings
                .iter()
                .any(|w| w.contains("`version` is obsolete"))
        );
    }

    #[test]
    fn discovery_found_files_are_absolute_and_ordered() {
        let (_t, p) = load_in(
            &[
                ("compose.yml", WEB),
                ("docker-compose.yml", WEB),
                ("compose.override.yaml", "services: {}\n"),
            ],
            |o| o.working_dir = o.working_dir.join("sub/dir"),
        );
        // The start dir does not exist; discovery still walks up from it.
        let p = p.unwrap();
        let names: Vec<String> = p
            .files
            .iter()
            .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["compose.yml", "compose.override.yaml"]);
        assert!(p.files.iter().all(|f| f.is_absolute()));
        assert!(
            p.warnings
                .iter()
                .any(|w| w.starts_with("Found multiple config files"))
        );
    }

    #[test]
    fn missing_file_option_is_a_read_error_naming_it() {
        let (_t, r) = load_in(&[("compose.yaml", WEB)], |o| {
            o.files = vec!["nope.yml".into()]
        });
        match r {
            Err(ComposeError::Read { path, .. }) => {
                assert!(path.ends_with("My_App/nope.yml"), "{path:?}")
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}
