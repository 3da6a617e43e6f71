//! The project's data inventory: the Compose model joined with engine state. One [`DataItem`] per piece of
//! data the project keeps (named, external and anonymous volumes, bind mounts), each with its tier and
//! why, whether it exists, how big it is and who mounts it. `ls`, `inspect` and every later command that
//! picks volumes by tier start from here.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};

use futures_util::future::try_join_all;
use serde::Serialize;

use crate::compose::classify::{self, Classification, DataKind, Subject, TIER_LABEL, Use};
use crate::compose::{MountType, Project, Tier, VolumeDef};
use crate::engine::state::VOLUME_LABEL;
use crate::engine::{ContainerInfo, ContainerMount, Engine, EngineError, VolumeInfo};

/// A service mount of a piece of data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct User {
    pub service: String,
    pub target: String,
    pub read_only: bool,
    /// The service's image (from the Compose file, else from its container).
    #[serde(skip)]
    pub image: Option<String>,
}

/// One piece of data the project keeps.
#[derive(Debug, Clone)]
pub struct DataItem {
    /// The volume key (`dbdata`), `service:target` for an anonymous volume, or the bind path as written.
    pub key: String,
    /// The engine volume name, or the absolute host path of a bind; `None` for an anonymous volume whose
    /// container does not exist yet.
    pub name: Option<String>,
    pub kind: DataKind,
    pub classification: Classification,
    pub users: Vec<User>,
    /// Bytes, when known (engine disk usage for volumes; a walk of the host path for local binds).
    pub size_bytes: Option<u64>,
    /// Whether the volume or host path exists; `None` when it cannot be known (bind on a remote engine).
    pub exists: Option<bool>,
    /// Whether `docker compose down -v` would remove it.
    pub removed_by_down_v: bool,
    /// Declared in the Compose files (false for a project volume the files no longer mention).
    pub declared: bool,
    /// The top-level definition, for named and external volumes.
    pub definition: Option<VolumeDef>,
    /// The engine's view of the volume, when it exists.
    pub volume: Option<VolumeInfo>,
    /// A bind mount that holds a migrated volume's data (`migrate`): the volume's key.
    pub migrated_from: Option<String>,
    /// A volume whose data was migrated to a host directory: that directory. The volume itself is left
    /// over, untouched since the migration.
    pub left_over_from_migration: Option<String>,
}

impl DataItem {
    pub fn tier(&self) -> Tier {
        self.classification.tier
    }
}

/// The joined view of a project.
#[derive(Debug, Clone)]
pub struct Inventory {
    pub project: Project,
    pub items: Vec<DataItem>,
    /// The project's containers, running or not.
    pub containers: Vec<ContainerInfo>,
    /// What could not be found out (sizes), for the command to report.
    pub warnings: Vec<String>,
}

impl Inventory {
    /// Finds an item by key, engine name, or (for binds) host path as written or absolute.
    pub fn find(&self, wanted: &str) -> Option<&DataItem> {
        let absolute = (wanted.starts_with('.') || wanted.starts_with('/'))
            .then(|| normalize(&self.project.directory.join(wanted)));
        self.items.iter().find(|i| {
            i.key == wanted
                || i.name.as_deref() == Some(wanted)
                || (i.kind == DataKind::Bind
                    && absolute.is_some()
                    && i.name.as_deref().map(PathBuf::from) == absolute)
        })
    }
}

/// What classification knows about a project beyond its mounts: which services are one-shot helpers, the
/// images of all its services, and the `VOLUME` paths of the images present locally.
#[derive(Debug, Clone, Default)]
pub struct ClassifyFacts {
    pub one_shot: BTreeSet<String>,
    /// The image of every service of the project (what a search index or cache is used by).
    pub project_images: Vec<String>,
    /// Image reference (as the Compose file or container names it) → its `VOLUME` paths.
    pub image_volumes: HashMap<String, Vec<String>>,
}

impl ClassifyFacts {
    /// The facts the Compose files alone give (no engine: image `VOLUME`s unknown).
    pub fn of_project(project: &Project) -> ClassifyFacts {
        ClassifyFacts {
            one_shot: classify::one_shot_services(project),
            project_images: project
                .services
                .values()
                .filter_map(|s| s.image.clone())
                .collect(),
            image_volumes: HashMap::new(),
        }
    }

    /// Adds the `VOLUME`s of every image the project's services use that the engine has locally. An
    /// image that is missing or cannot be inspected is left out: classification works without it.
    async fn with_images(mut self, engine: &Engine, images: BTreeSet<String>) -> ClassifyFacts {
        let found = futures_util::future::join_all(images.into_iter().map(|image| async move {
            let volumes = engine.image_volumes(&image).await.ok().flatten();
            (image, volumes)
        }))
        .await;
        for (image, volumes) in found {
            if let Some(v) = volumes {
                self.image_volumes.insert(image, v);
            }
        }
        self
    }

    fn use_of<'a>(&self, u: &'a User) -> Use<'a> {
        Use {
            service: &u.service,
            image: u.image.as_deref(),
            target: &u.target,
            read_only: u.read_only,
            helper: self.one_shot.contains(&u.service),
            image_volume: u.image.as_ref().is_some_and(|i| {
                self.image_volumes
                    .get(i)
                    .is_some_and(|vs| vs.iter().any(|v| under_path(&u.target, v)))
            }),
        }
    }
}

/// `path` is `prefix` or lies under it, component-wise.
fn under_path(path: &str, prefix: &str) -> bool {
    Path::new(path).starts_with(Path::new(prefix))
}

/// A piece of data the Compose files declare, classified from the files alone (no engine state).
#[derive(Debug, Clone)]
pub struct DeclaredItem {
    pub key: String,
    pub kind: DataKind,
    pub users: Vec<User>,
    pub classification: Classification,
}

/// Classifies every named, external, anonymous and bind mount the Compose files declare, as the
/// inventory would before any container or volume exists.
pub fn classify_declared(project: &Project, facts: &ClassifyFacts) -> Vec<DeclaredItem> {
    let mut items = Vec::new();
    for def in project.volumes.values() {
        let users = volume_users(project, &[], &def.key);
        let kind = if def.external {
            DataKind::External
        } else {
            DataKind::Named
        };
        let classification = classify_item(
            kind,
            &def.key,
            None,
            None,
            def.persist.as_ref().and_then(|p| p.tier),
            None,
            &users,
            facts,
        );
        items.push(DeclaredItem {
            key: def.key.clone(),
            kind,
            users,
            classification,
        });
    }
    for service in project.services.values() {
        for m in &service.mounts {
            if m.kind == MountType::Volume && m.source.is_none() {
                let users = vec![User {
                    service: service.name.clone(),
                    target: m.target.clone(),
                    read_only: m.read_only,
                    image: service.image.clone(),
                }];
                let key = format!("{}:{}", service.name, m.target);
                let classification = classify_item(
                    DataKind::Anonymous,
                    &key,
                    None,
                    None,
                    None,
                    None,
                    &users,
                    facts,
                );
                items.push(DeclaredItem {
                    key,
                    kind: DataKind::Anonymous,
                    users,
                    classification,
                });
            }
        }
    }
    for (path, written, users, declared) in bind_groups(project) {
        let host = path.to_string_lossy().into_owned();
        let classification = classify_item(
            DataKind::Bind,
            &written,
            Some(&host),
            None,
            declared,
            None,
            &users,
            facts,
        );
        items.push(DeclaredItem {
            key: written,
            kind: DataKind::Bind,
            users,
            classification,
        });
    }
    items
}

/// Builds the inventory of `project` from the engine's state.
pub async fn build(project: Project, engine: &Engine) -> Result<Inventory, EngineError> {
    let declared_names: Vec<String> = project
        .volumes
        .values()
        .map(|v| v.engine_name(&project.name))
        .collect();
    let (containers, labelled, declared, sizes) = tokio::join!(
        engine.project_containers(&project.name),
        engine.project_volumes(&project.name),
        try_join_all(declared_names.iter().map(|n| engine.volume(n))),
        engine.volume_sizes(),
    );
    let (containers, labelled, declared) = (containers?, labelled?, declared?);
    let mut warnings = Vec::new();
    // Sizes are worth having, not worth failing for.
    let sizes = sizes.unwrap_or_else(|e| {
        warnings.push(format!("volume sizes are unknown: {e}"));
        HashMap::new()
    });
    let local = engine.is_local();
    let images: BTreeSet<String> = project
        .services
        .values()
        .filter_map(|s| s.image.clone())
        .chain(containers.iter().map(|c| c.image.clone()))
        .collect();
    let facts = ClassifyFacts::of_project(&project)
        .with_images(engine, images)
        .await;

    let mut items = Vec::new();
    let mut known_names: HashSet<String> = HashSet::new();

    // Named and external volumes, in file order.
    for (def, volume) in project.volumes.values().zip(declared) {
        let name = def.engine_name(&project.name);
        known_names.insert(name.clone());
        let users = volume_users(&project, &containers, &def.key);
        let kind = if def.external {
            DataKind::External
        } else {
            DataKind::Named
        };
        let label = volume
            .as_ref()
            .and_then(|v| v.labels.get(TIER_LABEL).cloned());
        let classification = classify_item(
            kind,
            &def.key,
            None,
            None,
            def.persist.as_ref().and_then(|p| p.tier),
            label.as_deref(),
            &users,
            &facts,
        );
        items.push(DataItem {
            key: def.key.clone(),
            size_bytes: sizes.get(&name).copied(),
            exists: Some(volume.is_some()),
            removed_by_down_v: !def.external,
            name: Some(name),
            kind,
            classification,
            users,
            declared: true,
            definition: Some(def.clone()),
            volume,
            migrated_from: None,
            left_over_from_migration: None,
        });
    }

    // Anonymous volumes: declared without a source, or created from an image's VOLUME.
    items.extend(anonymous_items(
        &project,
        &containers,
        &known_names,
        &labelled,
        &sizes,
        &facts,
    ));

    // Bind mounts, one row per host path.
    items.extend(bind_items(&project, local, &facts).await);

    // Project volumes the Compose files no longer mention.
    for v in labelled {
        if known_names.contains(&v.name) || items.iter().any(|i| i.name.as_ref() == Some(&v.name)) {
            continue;
        }
        let key = v
            .labels
            .get(VOLUME_LABEL)
            .cloned()
            .unwrap_or_else(|| v.name.clone());
        let users = container_users(&containers, &v.name);
        let mut classification = classify_item(
            DataKind::Named,
            &key,
            None,
            None,
            None,
            v.labels.get(TIER_LABEL).map(String::as_str),
            &users,
            &facts,
        );
        classification.reason = format!("not in the Compose files; {}", classification.reason);
        items.push(DataItem {
            key,
            name: Some(v.name.clone()),
            kind: DataKind::Named,
            classification,
            users,
            size_bytes: sizes.get(&v.name).copied(),
            exists: Some(true),
            removed_by_down_v: false,
            declared: false,
            definition: None,
            volume: Some(v),
            migrated_from: None,
            left_over_from_migration: None,
        });
    }

    link_migrations(&project, &mut items, &mut warnings);
    Ok(Inventory {
        project,
        items,
        containers,
        warnings,
    })
}

/// Marks the data `migrate` moved: the bind mount that holds it now, and the volume it came from.
fn link_migrations(project: &Project, items: &mut [DataItem], warnings: &mut Vec<String>) {
    let (migrations, bad) = crate::compose::migration::recorded(project);
    warnings.extend(bad);
    for m in migrations {
        let to = normalize(Path::new(&m.to));
        for item in items.iter_mut() {
            if item.kind == DataKind::Bind
                && item.name.as_deref().map(|n| normalize(Path::new(n))) == Some(to.clone())
            {
                item.migrated_from = Some(m.key.clone());
            } else if matches!(item.kind, DataKind::Named | DataKind::External)
                && (item.key == m.key || item.name.as_deref() == Some(m.volume.as_str()))
            {
                item.left_over_from_migration = Some(m.to.clone());
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn classify_item(
    kind: DataKind,
    key: &str,
    host_path: Option<&str>,
    host_is_file: Option<bool>,
    declared: Option<Tier>,
    label: Option<&str>,
    users: &[User],
    facts: &ClassifyFacts,
) -> Classification {
    let uses: Vec<Use<'_>> = users.iter().map(|u| facts.use_of(u)).collect();
    let project_images: Vec<&str> = facts.project_images.iter().map(String::as_str).collect();
    classify::classify(&Subject {
        kind,
        key,
        host_path,
        host_is_file,
        declared,
        label,
        uses: &uses,
        project_images: &project_images,
    })
}

/// The image of `service`: from the Compose file, else from one of its containers.
fn service_image(project: &Project, containers: &[ContainerInfo], service: &str) -> Option<String> {
    project
        .services
        .get(service)
        .and_then(|s| s.image.clone())
        .or_else(|| {
            containers
                .iter()
                .find(|c| c.service.as_deref() == Some(service))
                .map(|c| c.image.clone())
        })
}

/// The service mounts of top-level volume `key`.
fn volume_users(project: &Project, containers: &[ContainerInfo], key: &str) -> Vec<User> {
    let mut users = Vec::new();
    for service in project.services.values() {
        for m in &service.mounts {
            if m.kind == MountType::Volume && m.source.as_deref() == Some(key) {
                users.push(User {
                    service: service.name.clone(),
                    target: m.target.clone(),
                    read_only: m.read_only,
                    image: service_image(project, containers, &service.name),
                });
            }
        }
    }
    users
}

/// Users of volume `name` as seen on containers (for volumes the Compose files do not describe).
fn container_users(containers: &[ContainerInfo], name: &str) -> Vec<User> {
    containers
        .iter()
        .flat_map(|c| {
            c.mounts
                .iter()
                .filter(|m| m.name.as_deref() == Some(name))
                .map(|m| User {
                    service: c.service.clone().unwrap_or_else(|| c.name.clone()),
                    target: m.destination.clone(),
                    read_only: !m.read_write,
                    image: Some(c.image.clone()),
                })
        })
        .collect()
}

fn anonymous_items(
    project: &Project,
    containers: &[ContainerInfo],
    known_names: &HashSet<String>,
    labelled: &[VolumeInfo],
    sizes: &HashMap<String, u64>,
    facts: &ClassifyFacts,
) -> Vec<DataItem> {
    let labelled_names: HashSet<&str> = labelled.iter().map(|v| v.name.as_str()).collect();
    // (service, target) → declared read-only flag, for anonymous mounts in the Compose files.
    let mut declared: Vec<(String, String, bool)> = Vec::new();
    for service in project.services.values() {
        for m in &service.mounts {
            if m.kind == MountType::Volume && m.source.is_none() {
                declared.push((service.name.clone(), m.target.clone(), m.read_only));
            }
        }
    }
    let mut items = Vec::new();
    let mut seen_keys: HashSet<String> = HashSet::new();
    let mut found: HashSet<(String, String)> = HashSet::new();
    for c in containers {
        let Some(service) = c.service.clone() else {
            continue;
        };
        for m in &c.mounts {
            if m.kind != "volume" {
                continue;
            }
            let Some(name) = m.name.clone() else { continue };
            // Named volumes are listed elsewhere; a project-labelled volume is a named one too.
            if known_names.contains(&name) || labelled_names.contains(name.as_str()) {
                continue;
            }
            found.insert((service.clone(), m.destination.clone()));
            let mut key = format!("{service}:{}", m.destination);
            if !seen_keys.insert(key.clone()) {
                key = format!("{}:{}", c.name, m.destination);
                seen_keys.insert(key.clone());
            }
            let users = vec![User {
                service: service.clone(),
                target: m.destination.clone(),
                read_only: !m.read_write,
                image: service_image(project, containers, &service),
            }];
            let from_image = !declared
                .iter()
                .any(|(s, t, _)| *s == service && same_path(t, &m.destination));
            let mut classification = classify_item(
                DataKind::Anonymous,
                &key,
                None,
                None,
                None,
                None,
                &users,
                facts,
            );
            if from_image {
                classification.reason =
                    format!("created from the image's VOLUME; {}", classification.reason);
            }
            items.push(DataItem {
                key,
                size_bytes: sizes.get(&name).copied(),
                name: Some(name),
                kind: DataKind::Anonymous,
                classification,
                users,
                exists: Some(true),
                removed_by_down_v: true,
                declared: !from_image,
                definition: None,
                volume: None,
                migrated_from: None,
                left_over_from_migration: None,
            });
        }
    }
    // Declared anonymous volumes whose container does not exist yet.
    for (service, target, read_only) in declared {
        if found
            .iter()
            .any(|(s, t)| *s == service && same_path(t, &target))
        {
            continue;
        }
        let key = format!("{service}:{target}");
        let users = vec![User {
            image: service_image(project, containers, &service),
            service,
            target,
            read_only,
        }];
        let classification = classify_item(
            DataKind::Anonymous,
            &key,
            None,
            None,
            None,
            None,
            &users,
            facts,
        );
        items.push(DataItem {
            key,
            name: None,
            kind: DataKind::Anonymous,
            classification,
            users,
            size_bytes: None,
            exists: Some(false),
            removed_by_down_v: true,
            declared: true,
            definition: None,
            volume: None,
            migrated_from: None,
            left_over_from_migration: None,
        });
    }
    items
}

/// The bind mounts of `project`, one per host path: (path, as written, users, declared tier).
fn bind_groups(project: &Project) -> Vec<(PathBuf, String, Vec<User>, Option<Tier>)> {
    let mut binds: BTreeMap<PathBuf, (String, Vec<User>, Option<Tier>)> = BTreeMap::new();
    let mut order: Vec<PathBuf> = Vec::new();
    for service in project.services.values() {
        for m in &service.mounts {
            if m.kind != MountType::Bind {
                continue;
            }
            let Some(source) = &m.source else { continue };
            let path = normalize(Path::new(source));
            let entry = binds.entry(path.clone()).or_insert_with(|| {
                order.push(path.clone());
                (
                    m.source_as_written
                        .clone()
                        .unwrap_or_else(|| source.clone()),
                    Vec::new(),
                    None,
                )
            });
            entry.1.push(User {
                service: service.name.clone(),
                target: m.target.clone(),
                read_only: m.read_only,
                image: service.image.clone(),
            });
            if let Some(tier) = m.persist.as_ref().and_then(|p| p.tier) {
                entry.2.get_or_insert(tier);
            }
        }
    }
    order
        .into_iter()
        .filter_map(|path| {
            let (written, users, declared) = binds.remove(&path)?;
            Some((path, written, users, declared))
        })
        .collect()
}

async fn bind_items(project: &Project, local: bool, facts: &ClassifyFacts) -> Vec<DataItem> {
    let mut items = Vec::new();
    for (path, written, users, declared) in bind_groups(project) {
        let host = path.to_string_lossy().into_owned();
        // A local host path says whether it is a file; a remote one leaves it to the mount's name.
        let host_is_file = local
            .then(|| std::fs::metadata(&path).ok().map(|m| !m.is_dir()))
            .flatten();
        let classification = classify_item(
            DataKind::Bind,
            &written,
            Some(&host),
            host_is_file,
            declared,
            None,
            &users,
            facts,
        );
        // Host system paths (`/`, `/proc`, the Docker socket) are never walked.
        let walk = local && classification.rule != Some("host-system");
        let (exists, size_bytes) = if local {
            let p = path.clone();
            let measured = if walk {
                tokio::task::spawn_blocking(move || host_size(&p))
                    .await
                    .ok()
                    .flatten()
            } else {
                None
            };
            (Some(path.exists()), measured)
        } else {
            (None, None)
        };
        items.push(DataItem {
            key: written,
            name: Some(host),
            kind: DataKind::Bind,
            classification,
            users,
            size_bytes,
            exists,
            removed_by_down_v: false,
            declared: true,
            definition: None,
            volume: None,
            migrated_from: None,
            left_over_from_migration: None,
        });
    }
    items
}

/// The most entries a bind mount walk visits before giving up on a size.
const MAX_WALK_ENTRIES: usize = 1_000_000;

/// Bytes under `path` as the engine measures a volume: every non-directory by its own size (a symlink by
/// its target's length, never followed), hard links once; `None` when it does not exist or is too large to
/// measure quickly.
fn host_size(path: &Path) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::symlink_metadata(path).ok()?;
    if !meta.is_dir() {
        return Some(meta.len());
    }
    let mut seen: HashSet<(u64, u64)> = HashSet::new();
    let mut total = 0u64;
    for (n, entry) in walkdir::WalkDir::new(path)
        .follow_links(false)
        .into_iter()
        .enumerate()
    {
        if n >= MAX_WALK_ENTRIES {
            return None;
        }
        let Ok(entry) = entry else { continue };
        let Ok(meta) = entry.metadata() else { continue };
        if !meta.is_dir() && (meta.nlink() < 2 || seen.insert((meta.dev(), meta.ino()))) {
            total += meta.len();
        }
    }
    Some(total)
}

/// A path without `.` components, `..` resolved lexically, and no trailing slash.
pub fn normalize(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// The bind mounts of `container` whose host path is `path` (both compared after [`normalize`]).
pub fn bind_mounts<'a>(
    container: &'a ContainerInfo,
    path: &Path,
) -> impl Iterator<Item = &'a ContainerMount> + 'a {
    let path = normalize(path);
    container
        .mounts
        .iter()
        .filter(move |m| m.kind == "bind" && normalize(Path::new(&m.source)) == path)
}

fn same_path(a: &str, b: &str) -> bool {
    a.trim_end_matches('/') == b.trim_end_matches('/')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_resolves_dots_and_trailing_slashes() {
        assert_eq!(normalize(Path::new("/p/./data/")), PathBuf::from("/p/data"));
        assert_eq!(
            normalize(Path::new("/p/app/../data")),
            PathBuf::from("/p/data")
        );
    }

    #[test]
    fn host_size_counts_hard_links_once_and_symlinks_by_target_length() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        std::fs::write(&a, vec![0u8; 1000]).unwrap();
        std::fs::hard_link(&a, dir.path().join("b")).unwrap();
        std::fs::write(dir.path().join("c"), vec![0u8; 24]).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", dir.path().join("l")).unwrap();
        // The symlink counts by the length of its target, as the engine's disk usage does.
        assert_eq!(
            host_size(dir.path()),
            Some(1024 + "/etc/passwd".len() as u64)
        );
        assert_eq!(host_size(&dir.path().join("missing")), None);
    }
}
