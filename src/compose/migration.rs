//! The Compose file docker persist writes when `migrate` moves a volume's data into a host directory, and
//! when `upgrade` sets a service's image or moves its PostgreSQL data to a new volume.
//!
//! The user's own Compose files are never edited (that would lose their comments and formatting).
//! Instead docker persist owns one override file next to the first Compose file
//! (`compose.override.yaml`, or `docker-compose.override.yml` next to a `docker-compose.*` file), which
//! Compose v1 and v2 both load automatically after it. For every migrated volume, that file replaces each
//! service's mount of the volume with a bind mount of the host directory at the same target (Compose
//! merges service volumes by target), and records the migration under the top-level
//! `x-persist: {migrations: …}` so that `ls`, `inspect`, `clean` and `migrate --rollback` know which volume
//! the data came from. For every service `upgrade` pins (the image named with `--image`, the previous image
//! by id after a rollback, a PostgreSQL data volume of a new major version), it sets the service's `image`
//! (and the new volume at the data directory's target) and records the pin under `x-persist: {upgrades: …}`.
//! The file is generated whole from those records; nothing else is ever written in it.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::Project;
use super::discovery::DEFAULT_OVERRIDE_FILE_NAMES;

/// The first line of every override file docker persist writes: how it knows the file is its own.
pub const HEADER: &str =
    "# Written by `docker persist migrate`. docker persist owns this file and rewrites it:";

/// One service mount a migration replaced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MigratedMount {
    pub service: String,
    pub target: String,
    #[serde(default)]
    pub read_only: bool,
}

/// The data volume a PostgreSQL major upgrade moved a service to: the dump of the old cluster loaded into
/// a new volume, the old volume kept untouched until `upgrade --finish`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SwitchedVolume {
    /// The key of the volume the service's Compose file mounts (the old data).
    pub key: String,
    /// The engine name of the old volume.
    pub old_name: String,
    /// The key under which the override declares the new volume.
    pub new_key: String,
    /// The engine name of the new volume.
    pub new_name: String,
    /// Where the service mounts it.
    pub target: String,
    /// The image id of the old server, which `upgrade --rollback` puts back.
    pub previous_image: String,
    /// PostgreSQL major versions, old and new.
    pub from_major: String,
    pub to_major: String,
    /// `upgrade --finish` removed the old volume.
    #[serde(default)]
    pub finished: bool,
}

/// One service whose image (and maybe data volume) docker persist sets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pin {
    /// The service.
    #[serde(skip)]
    pub service: String,
    /// The image the service runs: a name, or an id (`sha256:…`) for a rollback.
    pub image: String,
    /// `upgrade` (the image named with `upgrade --image`) or `rollback` (the previous image, by id, after an
    /// upgrade failed).
    pub why: String,
    /// When (RFC 3339, UTC).
    pub at: String,
    /// Environment the service gets (`PGDATA` where a new major keeps its data at the old target).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub environment: BTreeMap<String, String>,
    /// The data volume of a PostgreSQL major upgrade.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume: Option<SwitchedVolume>,
}

/// One volume whose data now lives in a host directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Migration {
    /// The volume key in the Compose files.
    #[serde(skip)]
    pub key: String,
    /// The engine name of the source volume, left untouched by the migration.
    pub volume: String,
    /// The absolute host path (on the engine's host) that holds the data now.
    pub to: String,
    /// When the data was copied (RFC 3339, UTC).
    pub at: String,
    /// The content digest of the data as copied: tells `--rollback` whether it changed since.
    pub content_digest: String,
    /// The service mounts that now bind `to`.
    pub mounts: Vec<MigratedMount>,
    /// The volume's own `x-persist` (tier, consistency), carried over to the bind mounts.
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub persist: serde_json::Value,
}

/// The migrations recorded for a project (`x-persist: {migrations: {KEY: …}}`), by volume key: in the
/// loaded files, or in docker persist's override file when the project was loaded without it (`-f`,
/// COMPOSE_FILE). Entries that do not parse are returned as errors, by key.
pub fn recorded(project: &Project) -> (Vec<Migration>, Vec<String>) {
    recorded_entries(
        project,
        "migrations",
        |key| format!("migration record of `{key}`"),
        |m: Migration, key| Migration {
            key: key.to_string(),
            ..m
        },
    )
}

/// The pins recorded for a project (`x-persist: {upgrades: {SERVICE: …}}`), by service, found like
/// [`recorded`] finds migrations.
pub fn recorded_pins(project: &Project) -> (Vec<Pin>, Vec<String>) {
    recorded_entries(
        project,
        "upgrades",
        |service| format!("upgrade record of service `{service}`"),
        |p: Pin, service| Pin {
            service: service.to_string(),
            ..p
        },
    )
}

/// The entries of one recorded `x-persist` section, each parsed and given its key (`keyed`); entries
/// that do not parse are returned as errors, named by `what`.
fn recorded_entries<T: serde::de::DeserializeOwned>(
    project: &Project,
    section: &str,
    what: impl Fn(&str) -> String,
    keyed: impl Fn(T, &str) -> T,
) -> (Vec<T>, Vec<String>) {
    let mut found = Vec::new();
    let mut bad = Vec::new();
    if let Some(map) = recorded_section(project, section)
        .as_ref()
        .and_then(|m| m.as_object())
    {
        for (key, value) in map {
            match serde_json::from_value::<T>(value.clone()) {
                Ok(entry) => found.push(keyed(entry, key)),
                Err(e) => bad.push(format!("{}: {e}", what(key))),
            }
        }
    }
    (found, bad)
}

/// `x-persist.<name>` of the loaded files, or of docker persist's override file when the project was
/// loaded without it.
fn recorded_section(project: &Project, name: &str) -> Option<serde_json::Value> {
    let loaded = project.persist.get(name).cloned();
    let unloaded = || {
        let o = OverrideFile::locate(project).filter(|o| !project.files.contains(&o.path))?;
        let text = std::fs::read_to_string(&o.path)
            .ok()
            .filter(|t| is_ours(t))?;
        // Only docker persist doubles `$` in this file.
        let value: serde_json::Value = serde_norway::from_str(&text.replace("$$", "$")).ok()?;
        value.get("x-persist")?.get(name).cloned()
    };
    loaded.or_else(unloaded)
}

/// Where docker persist keeps its override file for `project`, and whether Compose loads it without
/// being told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverrideFile {
    pub path: PathBuf,
    /// The override files present in that directory now (Compose v1 refuses more than one).
    pub present: Vec<PathBuf>,
}

impl OverrideFile {
    /// The override file next to the first Compose file of `project`: the one present, else the name of
    /// the main file's family.
    pub fn locate(project: &Project) -> Option<OverrideFile> {
        let main = project.files.first()?;
        let dir = main.parent()?;
        let present: Vec<PathBuf> = DEFAULT_OVERRIDE_FILE_NAMES
            .iter()
            .map(|n| dir.join(n))
            .filter(|p| p.exists())
            .collect();
        let family = main
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("docker-compose"));
        let path = present.first().cloned().unwrap_or_else(|| {
            dir.join(if family {
                "docker-compose.override.yml"
            } else {
                "compose.override.yaml"
            })
        });
        Some(OverrideFile { path, present })
    }
}

/// Whether `text` is an override file docker persist wrote.
pub fn is_ours(text: &str) -> bool {
    text.starts_with(HEADER)
}

/// A string as a YAML scalar Compose reads back unchanged: JSON-quoted (valid YAML), `$` doubled so
/// that Compose's interpolation leaves it alone.
fn scalar(s: &str) -> String {
    serde_json::Value::String(s.replace('$', "$$")).to_string()
}

/// The service-level part of the override for `migrations`: each replaced mount as a long-syntax bind.
pub fn services_snippet(migrations: &[Migration]) -> String {
    services_with_pins(migrations, &[])
}

/// The service-level part of the override: each replaced mount as a long-syntax bind, each pinned
/// service's image, environment and switched volume.
fn services_with_pins(migrations: &[Migration], pins: &[Pin]) -> String {
    let mut by_service: BTreeMap<&str, Vec<(&Migration, &MigratedMount)>> = BTreeMap::new();
    for m in migrations {
        for mount in &m.mounts {
            by_service
                .entry(mount.service.as_str())
                .or_default()
                .push((m, mount));
        }
    }
    for p in pins {
        by_service.entry(p.service.as_str()).or_default();
    }
    let mut out = String::from("services:\n");
    for (service, mounts) in by_service {
        out.push_str(&format!("  {}:\n", scalar(service)));
        let pin = pins.iter().find(|p| p.service == service);
        if let Some(p) = pin {
            out.push_str(&format!("    image: {}\n", scalar(&p.image)));
            if !p.environment.is_empty() {
                let env: serde_json::Map<String, serde_json::Value> = p
                    .environment
                    .iter()
                    .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
                    .collect();
                out.push_str(&format!("    environment: {}\n", escape_json(&env)));
            }
        }
        let switched = pin.and_then(|p| p.volume.as_ref());
        if mounts.is_empty() && switched.is_none() {
            continue;
        }
        out.push_str("    volumes:\n");
        if let Some(v) = switched {
            out.push_str(&format!(
                "      - type: volume\n        source: {}\n        target: {}\n",
                scalar(&v.new_key),
                scalar(&v.target)
            ));
        }
        for (m, mount) in mounts {
            out.push_str(&format!(
                "      - type: bind\n        source: {}\n        target: {}\n",
                scalar(&m.to),
                scalar(&mount.target)
            ));
            if mount.read_only {
                out.push_str("        read_only: true\n");
            }
            let mut persist = match &m.persist {
                serde_json::Value::Object(o) => o.clone(),
                _ => serde_json::Map::new(),
            };
            persist.insert(
                "migrated_from".to_string(),
                serde_json::Value::String(m.key.clone()),
            );
            out.push_str(&format!("        x-persist: {}\n", escape_json(&persist)));
        }
    }
    out
}

/// A JSON value as flow YAML, with `$` doubled.
fn escape_json(v: &serde_json::Map<String, serde_json::Value>) -> String {
    serde_json::Value::Object(v.clone())
        .to_string()
        .replace('$', "$$")
}

/// The record part of the override: `x-persist: {migrations: …}`.
pub fn record_snippet(migrations: &[Migration]) -> String {
    let mut out = String::from("x-persist:\n  migrations:\n");
    for m in migrations {
        let value = serde_json::to_value(m).unwrap_or_default();
        out.push_str(&format!(
            "    {}: {}\n",
            scalar(&m.key),
            value.to_string().replace('$', "$$")
        ));
    }
    out
}

/// The record part of the override for pins: `x-persist: {upgrades: …}` (without the `x-persist:` line).
fn pins_record_snippet(pins: &[Pin]) -> String {
    let mut out = String::from("  upgrades:\n");
    for p in pins {
        let value = serde_json::to_value(p).unwrap_or_default();
        out.push_str(&format!(
            "    {}: {}\n",
            scalar(&p.service),
            value.to_string().replace('$', "$$")
        ));
    }
    out
}

/// The top-level `volumes:` the switched volumes of `pins` need: each declared under its new key with its
/// engine name, so that Compose mounts the volume the upgrade filled.
fn volumes_snippet(pins: &[Pin]) -> String {
    let switched: Vec<&SwitchedVolume> = pins.iter().filter_map(|p| p.volume.as_ref()).collect();
    if switched.is_empty() {
        return String::new();
    }
    let mut out = String::from("volumes:\n");
    for v in switched {
        out.push_str(&format!(
            "  {}:\n    name: {}\n",
            scalar(&v.new_key),
            scalar(&v.new_name)
        ));
    }
    out
}

/// The whole override file for `migrations` (none: the file should be removed).
pub fn render(migrations: &[Migration]) -> String {
    render_all(migrations, &[])
}

/// The whole override file for `migrations` and `pins` (none of either: the file should be removed).
pub fn render_all(migrations: &[Migration], pins: &[Pin]) -> String {
    let mut what = Vec::new();
    if !migrations.is_empty() {
        let keys: Vec<String> = migrations.iter().map(|m| format!("`{}`", m.key)).collect();
        what.push(format!(
            "# the data of {} now lives in a host directory (`docker persist ls` shows where).\n\
             # `docker persist migrate --rollback VOLUME` goes back to the volume; edits here are lost then.\n",
            keys.join(", ")
        ));
    }
    if !pins.is_empty() {
        let services: Vec<String> = pins.iter().map(|p| format!("`{}`", p.service)).collect();
        what.push(format!(
            "# `docker persist upgrade` sets the image of {} here (see `x-persist.upgrades` below);\n\
             # `docker persist upgrade SERVICE` (or `--finish`/`--rollback`) rewrites it; edits here are lost then.\n",
            services.join(", ")
        ));
    }
    let mut record = String::new();
    if !migrations.is_empty() {
        record.push_str(&record_snippet(migrations));
    }
    if !pins.is_empty() {
        if record.is_empty() {
            record.push_str("x-persist:\n");
        }
        record.push_str(&pins_record_snippet(pins));
    }
    format!(
        "{HEADER}\n\
         {}\
         # Compose loads this file after the main Compose file when neither `-f` nor COMPOSE_FILE is used.\n\
         {}{}{}",
        what.concat(),
        services_with_pins(migrations, pins),
        volumes_snippet(pins),
        record,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compose::{ProjectOptions, load_project};

    fn migration() -> Migration {
        Migration {
            key: "dbdata".into(),
            volume: "app_dbdata".into(),
            to: "/srv/pg $HOME".into(),
            at: "2026-11-22T22:00:00Z".into(),
            content_digest: "tree-v2:abc".into(),
            mounts: vec![
                MigratedMount {
                    service: "db".into(),
                    target: "/var/lib/postgresql/data".into(),
                    read_only: false,
                },
                MigratedMount {
                    service: "backup".into(),
                    target: "/in".into(),
                    read_only: true,
                },
            ],
            persist: serde_json::json!({"tier": "critical"}),
        }
    }

    #[test]
    fn the_override_replaces_the_mounts_and_loads_back_with_its_record() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(
            tmp.path().join("compose.yaml"),
            "services:\n  db:\n    image: postgres:16\n    volumes:\n      - dbdata:/var/lib/postgresql/data\n  backup:\n    image: busybox\n    volumes:\n      - dbdata:/in:ro\nvolumes:\n  dbdata: {}\n",
        )
        .unwrap();
        let text = render(&[migration()]);
        assert!(is_ours(&text));
        std::fs::write(tmp.path().join("compose.override.yaml"), &text).unwrap();
        let project = load_project(&ProjectOptions {
            working_dir: tmp.path().to_path_buf(),
            ..Default::default()
        })
        .unwrap();
        let db = &project.services["db"].mounts;
        assert_eq!(db.len(), 1);
        assert_eq!(db[0].kind, crate::compose::MountType::Bind);
        assert_eq!(db[0].source.as_deref(), Some("/srv/pg $HOME"));
        let tier = db[0].persist.as_ref().and_then(|p| p.tier);
        assert_eq!(tier, Some(crate::compose::Tier::Critical));
        assert!(project.services["backup"].mounts[0].read_only);
        let (found, bad) = recorded(&project);
        assert!(bad.is_empty(), "{bad:?}");
        assert_eq!(found, vec![migration()]);
    }

    #[test]
    fn the_record_is_read_from_our_file_when_the_project_is_loaded_without_it() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(
            tmp.path().join("compose.yaml"),
            "services:\n  db:\n    image: postgres:16\n    volumes:\n      - dbdata:/var/lib/postgresql/data\n  backup:\n    image: busybox\n    volumes:\n      - dbdata:/in:ro\nvolumes:\n  dbdata: {}\n",
        )
        .unwrap();
        std::fs::write(
            tmp.path().join("compose.override.yaml"),
            render(&[migration()]),
        )
        .unwrap();
        let project = load_project(&ProjectOptions {
            working_dir: tmp.path().to_path_buf(),
            files: vec![tmp.path().join("compose.yaml")],
            ..Default::default()
        })
        .unwrap();
        assert_eq!(project.files.len(), 1);
        assert_eq!(recorded(&project).0, vec![migration()]);
    }

    fn pin() -> Pin {
        Pin {
            service: "db".into(),
            image: "postgres:17".into(),
            why: "upgrade".into(),
            at: "2026-12-03T06:00:00Z".into(),
            environment: BTreeMap::from([(
                "PGDATA".to_string(),
                "/var/lib/postgresql/data".to_string(),
            )]),
            volume: Some(SwitchedVolume {
                key: "dbdata".into(),
                old_name: "app_dbdata".into(),
                new_key: "dbdata-pg17".into(),
                new_name: "app_dbdata-pg17".into(),
                target: "/var/lib/postgresql/data".into(),
                previous_image: "sha256:0123".into(),
                from_major: "15".into(),
                to_major: "17".into(),
                finished: false,
            }),
        }
    }

    #[test]
    fn pins_set_the_image_and_the_switched_volume_next_to_migrations_and_load_back() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(
            tmp.path().join("compose.yaml"),
            "services:\n  db:\n    image: postgres:15\n    volumes:\n      - dbdata:/var/lib/postgresql/data\n  backup:\n    image: busybox\n    volumes:\n      - dbdata:/in:ro\nvolumes:\n  dbdata: {}\n",
        )
        .unwrap();
        let mut m = migration();
        m.mounts.retain(|x| x.service == "backup");
        let text = render_all(&[m.clone()], &[pin()]);
        assert!(is_ours(&text));
        std::fs::write(tmp.path().join("compose.override.yaml"), &text).unwrap();
        let project = load_project(&ProjectOptions {
            working_dir: tmp.path().to_path_buf(),
            ..Default::default()
        })
        .unwrap();
        let db = &project.services["db"];
        assert_eq!(db.image.as_deref(), Some("postgres:17"));
        assert_eq!(db.mounts.len(), 1);
        assert_eq!(db.mounts[0].source.as_deref(), Some("dbdata-pg17"));
        assert_eq!(
            project.volumes["dbdata-pg17"].name.as_deref(),
            Some("app_dbdata-pg17")
        );
        // The migration's bind of the other service is still there.
        assert_eq!(
            project.services["backup"].mounts[0].kind,
            crate::compose::MountType::Bind
        );
        assert_eq!(recorded_pins(&project), (vec![pin()], Vec::new()));
        assert_eq!(recorded(&project).0, vec![m]);
    }

    #[test]
    fn the_override_is_named_after_the_main_files_family() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(
            tmp.path().join("docker-compose.yml"),
            "services:\n  a:\n    image: x\n",
        )
        .unwrap();
        let project = load_project(&ProjectOptions {
            working_dir: tmp.path().to_path_buf(),
            ..Default::default()
        })
        .unwrap();
        let o = OverrideFile::locate(&project).unwrap();
        assert_eq!(o.path, tmp.path().join("docker-compose.override.yml"));
        assert!(o.present.is_empty());
    }
}
