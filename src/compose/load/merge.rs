//! The merge of several Compose files: what one document says (a layer of patches to services and
//! top-level volumes, `!reset`/`!override` honoured), the services and volumes after merging the layers in
//! order, and the [`Project`] they make.

use std::collections::BTreeMap;
use std::path::PathBuf;

use indexmap::IndexMap;

use super::persist::{check_hook_services, consistency_of, hooks_of, persist_spec};
use crate::compose::ComposeError;
use crate::compose::model::{Hooks, Mount, MountType, Project, RunFacts, Service, VolumeDef};

/// A field as written in one layer: absent, a value to merge, a value replacing what came before
/// (`!override`), or a reset (`!reset`).
#[derive(Debug, Clone, Default)]
pub(super) enum Patch<T> {
    #[default]
    Absent,
    Merge(T),
    Replace(T),
    Reset,
}

/// `extends:` of a service.
#[derive(Debug, Clone)]
pub(super) struct Extends {
    pub(super) service: String,
    pub(super) file: Option<String>,
}

/// What one layer says about a service.
#[derive(Debug, Clone, Default)]
pub(super) struct ServicePatch {
    pub(super) image: Patch<String>,
    pub(super) container_name: Patch<String>,
    pub(super) profiles: Patch<Vec<String>>,
    pub(super) depends_on: Patch<Vec<String>>,
    pub(super) volumes: Patch<Vec<Mount>>,
    pub(super) tmpfs: Patch<Vec<String>>,
    pub(super) extends: Option<Extends>,
    pub(super) restart: Patch<String>,
    pub(super) entrypoint: Patch<String>,
    pub(super) command: Patch<String>,
    pub(super) waits_for_completion: Patch<Vec<String>>,
}

/// A service after merging layers.
#[derive(Debug, Clone, Default)]
pub(super) struct ServiceState {
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
    pub(super) fn apply(&mut self, patch: ServicePatch) {
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
    pub(super) fn into_patch(self) -> ServicePatch {
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
pub(super) struct VolumePatch {
    pub(super) name: Option<String>,
    pub(super) external: Option<bool>,
    pub(super) driver: Option<String>,
    pub(super) driver_opts: BTreeMap<String, String>,
    pub(super) labels: BTreeMap<String, String>,
    pub(super) persist: Option<serde_json::Value>,
}

impl VolumePatch {
    pub(super) fn apply(&mut self, over: VolumePatch) {
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
pub(super) enum VolumeEntry {
    Define(VolumePatch),
    Reset,
}

/// One document, typed.
#[derive(Debug, Default)]
pub(super) struct Layer {
    pub(super) services: IndexMap<String, ServicePatch>,
    pub(super) volumes: IndexMap<String, VolumeEntry>,
    pub(super) persist: Option<serde_json::Value>,
}

/// The merged layers.
#[derive(Debug, Default)]
pub(super) struct Merged {
    services: IndexMap<String, ServiceState>,
    volumes: IndexMap<String, VolumePatch>,
    persist: Option<serde_json::Value>,
}

impl Merged {
    pub(super) fn apply(&mut self, layer: Layer) {
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

    pub(super) fn finish(
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

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
}
