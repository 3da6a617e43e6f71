//! The [`Loader`]: one document interpolated and typed into a [`Layer`] (services' image, container name,
//! profiles, dependencies, volumes and tmpfs, in short or long syntax; top-level volumes; `x-persist`), and
//! `extends` resolved, in the same file or another.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use indexmap::IndexMap;
use serde_norway::{Mapping, Value};

use super::merge::{Extends, Layer, Patch, ServicePatch, ServiceState, VolumeEntry, VolumePatch};
use super::persist::persist_spec;
use super::short::{clean_target, is_file_path, parse_short_volume, resolve_bind};
use super::yaml::{read_documents, scalar_string, to_json};
use crate::compose::ComposeError;
use crate::compose::discovery;
use crate::compose::interpolate::{interpolate_value, key_display};
use crate::compose::model::{Mount, MountType};

/// Where a document comes from: its file, and the directory its relative bind sources resolve against (the
/// project directory, or the file's own directory for a file reached through `extends: {file: …}`).
#[derive(Debug, Clone)]
pub(super) struct FileCtx {
    pub(super) file: PathBuf,
    pub(super) base_dir: PathBuf,
}

/// Turns documents into layers, with the environment to interpolate them and a cache of files reached by
/// `extends`.
pub(super) struct Loader<'a> {
    pub(super) environment: &'a BTreeMap<String, String>,
    pub(super) home: Option<&'a str>,
    pub(super) warnings: &'a mut Vec<String>,
    pub(super) unset: &'a mut Vec<String>,
    pub(super) extended_files: HashMap<PathBuf, (FileCtx, Layer)>,
}

fn structure(ctx: &FileCtx, message: String) -> ComposeError {
    ComposeError::Structure {
        path: ctx.file.clone(),
        message,
    }
}

impl Loader<'_> {
    /// Interpolates `doc` and types what concerns data.
    pub(super) fn layer(&mut self, mut doc: Value, ctx: &FileCtx) -> Result<Layer, ComposeError> {
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
    pub(super) fn resolve_extends(
        &mut self,
        mut layer: Layer,
        ctx: &FileCtx,
    ) -> Result<Layer, ComposeError> {
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

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
}
