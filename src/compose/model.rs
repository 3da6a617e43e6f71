//! The loaded Compose project, reduced to what concerns data: services, their mounts, and the top-level
//! volumes. Every later command works from this model, never from raw YAML.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

/// How much a piece of data matters; keys backup scope, the `down -v` guard and `clean`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    /// Cannot be regenerated: databases, uploads, object stores.
    Critical,
    /// Costly to lose: queues with state, search indexes, certificates, metrics.
    Important,
    /// Rebuilt from source or packages: dependencies, collected assets, build caches.
    Regenerable,
    /// Logs and temporary files.
    Optional,
}

impl Tier {
    pub const ALL: [Tier; 4] = [
        Tier::Critical,
        Tier::Important,
        Tier::Regenerable,
        Tier::Optional,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Critical => "critical",
            Tier::Important => "important",
            Tier::Regenerable => "regenerable",
            Tier::Optional => "optional",
        }
    }
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error for a tier name that is not one of the four.
#[derive(Debug, Clone, thiserror::Error)]
#[error("`{0}` is not a tier (expected one of: critical, important, regenerable, optional)")]
pub struct InvalidTier(pub String);

impl FromStr for Tier {
    type Err = InvalidTier;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "critical" => Ok(Tier::Critical),
            "important" => Ok(Tier::Important),
            "regenerable" => Ok(Tier::Regenerable),
            "optional" => Ok(Tier::Optional),
            _ => Err(InvalidTier(s.to_string())),
        }
    }
}

/// How a volume is kept consistent while a backup reads it (`x-persist: {consistency: …}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Consistency {
    /// `stop` for critical and important data, `live` for the rest.
    Auto,
    /// The running containers that mount it are stopped while it is read and started again after.
    Stop,
    /// Read while its services keep running.
    Live,
    /// A logical dump made inside the running service by the recipe of its image (or `x-persist: {dump: …}`).
    Dump,
}

impl Consistency {
    pub fn as_str(self) -> &'static str {
        match self {
            Consistency::Auto => "auto",
            Consistency::Stop => "stop",
            Consistency::Live => "live",
            Consistency::Dump => "dump",
        }
    }
}

impl fmt::Display for Consistency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error for a consistency mode that is not one of the four.
#[derive(Debug, Clone, thiserror::Error)]
#[error("`{0}` is not a consistency mode (expected one of: auto, stop, live, dump)")]
pub struct InvalidConsistency(pub String);

impl FromStr for Consistency {
    type Err = InvalidConsistency;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(Consistency::Auto),
            "stop" => Ok(Consistency::Stop),
            "live" => Ok(Consistency::Live),
            "dump" => Ok(Consistency::Dump),
            _ => Err(InvalidConsistency(s.to_string())),
        }
    }
}

/// The `x-persist` extension found on a top-level volume or a long-syntax service volume entry.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PersistSpec {
    /// `tier:` when given (validated while loading).
    pub tier: Option<Tier>,
    /// `consistency:` when given (validated while loading).
    pub consistency: Option<Consistency>,
    /// `dump:`, the dump recipe to use instead of the one chosen by image.
    pub dump: Option<DumpRecipe>,
    /// `hooks:`, run around the backup of this volume.
    pub hooks: Hooks,
    /// The whole mapping as written (after interpolation), for settings later features read.
    pub raw: serde_json::Value,
}

/// A logical dump recipe (`x-persist: {consistency: dump, dump: …}`): which tool dumps and loads the data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DumpRecipe {
    Postgres,
    Mysql,
    Mariadb,
    Redis,
    Mongodb,
}

impl DumpRecipe {
    pub const ALL: [DumpRecipe; 5] = [
        DumpRecipe::Postgres,
        DumpRecipe::Mysql,
        DumpRecipe::Mariadb,
        DumpRecipe::Redis,
        DumpRecipe::Mongodb,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DumpRecipe::Postgres => "postgres",
            DumpRecipe::Mysql => "mysql",
            DumpRecipe::Mariadb => "mariadb",
            DumpRecipe::Redis => "redis",
            DumpRecipe::Mongodb => "mongodb",
        }
    }
}

impl fmt::Display for DumpRecipe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for DumpRecipe {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wanted = s.trim().to_ascii_lowercase();
        DumpRecipe::ALL
            .into_iter()
            .find(|r| r.as_str() == wanted)
            .ok_or_else(|| {
                format!(
                    "`{s}` is not a dump recipe (expected one of: postgres, mysql, mariadb, redis, mongodb)"
                )
            })
    }
}

/// Commands run inside service containers around a backup (`x-persist: {hooks: {pre: […], post: […]}}`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Hooks {
    /// Run before the data is read (before its services are stopped).
    pub pre: Vec<Hook>,
    /// Run after the data was read (after its services are started again), whatever happened.
    pub post: Vec<Hook>,
}

impl Hooks {
    pub fn is_empty(&self) -> bool {
        self.pre.is_empty() && self.post.is_empty()
    }
}

/// One hook: a command run in a running container of `service`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hook {
    pub service: String,
    pub command: HookCommand,
    /// How long it may run before it is killed and counted as failed.
    pub timeout: std::time::Duration,
    pub on_error: OnError,
}

/// The default hook timeout.
pub const DEFAULT_HOOK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// A hook's command: a string run by `sh -c`, or an argument vector run as is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HookCommand {
    Shell(String),
    Exec(Vec<String>),
}

impl HookCommand {
    /// The argument vector to execute.
    pub fn argv(&self) -> Vec<String> {
        match self {
            HookCommand::Shell(s) => vec!["sh".into(), "-c".into(), s.clone()],
            HookCommand::Exec(v) => v.clone(),
        }
    }
}

impl fmt::Display for HookCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HookCommand::Shell(s) => f.write_str(s),
            HookCommand::Exec(v) => f.write_str(&v.join(" ")),
        }
    }
}

/// What a failing hook does to the backup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnError {
    /// A failing pre hook aborts the backup of its volume (or, project-wide, the whole backup).
    #[default]
    Fail,
    /// A failure is reported and the backup goes on.
    Continue,
}

/// A loaded Compose project.
#[derive(Debug, Clone)]
pub struct Project {
    /// Normalized project name (`-p` > `COMPOSE_PROJECT_NAME` > `name:` > directory name).
    pub name: String,
    /// The project directory: relative paths in the files resolve against it.
    pub directory: PathBuf,
    /// The Compose files loaded, in merge order, as absolute paths.
    pub files: Vec<PathBuf>,
    /// Services in file order.
    pub services: IndexMap<String, Service>,
    /// Top-level `volumes:` in file order, by key.
    pub volumes: IndexMap<String, VolumeDef>,
    /// Top-level `x-persist:` mapping (project defaults), `Null` when absent.
    pub persist: serde_json::Value,
    /// Top-level `x-persist: {consistency: …}` (validated while loading).
    pub consistency: Option<Consistency>,
    /// Top-level `x-persist: {hooks: …}`: run once around the whole backup.
    pub hooks: Hooks,
    /// The environment used for interpolation (OS environment over `.env`).
    pub environment: BTreeMap<String, String>,
    /// What Compose would have warned about while loading (several candidate files, unset variables,
    /// repeated keys, obsolete `version`…), each once, for the caller to print.
    pub warnings: Vec<String>,
}

impl Project {
    /// The engine's name for the top-level volume `key`: `name:` as is; `external` → key; else
    /// `<project>_<key>`. Returns `None` for a key that is not declared.
    pub fn engine_volume_name(&self, key: &str) -> Option<String> {
        self.volumes.get(key).map(|v| v.engine_name(&self.name))
    }
}

/// A service, reduced to what concerns data.
#[derive(Debug, Clone, Default)]
pub struct Service {
    pub name: String,
    /// `image:` after interpolation, if any (a build-only service has none).
    pub image: Option<String>,
    /// `container_name:` if set.
    pub container_name: Option<String>,
    /// `profiles:`; empty means always enabled.
    pub profiles: Vec<String>,
    /// Services this one depends on (`depends_on`, list or mapping form), in file order.
    pub depends_on: Vec<String>,
    /// Mounts from `volumes:` (short and long syntax), merged across files by target.
    pub mounts: Vec<Mount>,
    /// What tells a long-running service from a one-shot job, for classification.
    pub run: RunFacts,
}

/// How a service runs, as far as classification needs it: a one-shot helper (an init or `chown` job) does
/// not say what the data it mounts is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunFacts {
    /// `restart:` as written (`no`, `always`, `unless-stopped`, `on-failure[:n]`).
    pub restart: Option<String>,
    /// `entrypoint:` and `command:`, each joined with spaces when written as a list.
    pub entrypoint: Option<String>,
    pub command: Option<String>,
    /// Services this one waits for with `condition: service_completed_successfully`.
    pub waits_for_completion: Vec<String>,
}

/// What a service mount refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MountType {
    /// A named volume (`source` is the top-level key) or an anonymous one (`source` is `None`).
    Volume,
    /// A host path (`source` is absolute, resolved against the project directory, `~` expanded).
    Bind,
    /// Memory only; nothing persists.
    Tmpfs,
    /// Windows named pipe, image mount, cluster volume: loaded, never treated as data.
    Other,
}

/// One entry of a service's `volumes:`.
#[derive(Debug, Clone, PartialEq)]
pub struct Mount {
    pub kind: MountType,
    /// Volume key for a named volume, absolute host path for a bind, `None` for anonymous/tmpfs.
    pub source: Option<String>,
    /// The source exactly as written in the file (after interpolation), for display: `./data`.
    pub source_as_written: Option<String>,
    /// Path inside the container.
    pub target: String,
    pub read_only: bool,
    /// `x-persist:` on a long-syntax entry.
    pub persist: Option<PersistSpec>,
}

/// A top-level volume definition.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct VolumeDef {
    pub key: String,
    /// `name:` if set (or the legacy `external: {name: …}`).
    pub name: Option<String>,
    pub external: bool,
    pub driver: Option<String>,
    pub driver_opts: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
    pub persist: Option<PersistSpec>,
}

impl VolumeDef {
    /// The engine's name for this volume in project `project`.
    pub fn engine_name(&self, project: &str) -> String {
        match (&self.name, self.external) {
            (Some(name), _) => name.clone(),
            (None, true) => self.key.clone(),
            (None, false) => format!("{project}_{}", self.key),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tier_parses_case_insensitively_and_rejects_others() {
        assert_eq!("Critical".parse::<Tier>().ok(), Some(Tier::Critical));
        assert_eq!(" optional ".parse::<Tier>().ok(), Some(Tier::Optional));
        let err = "precious".parse::<Tier>().unwrap_err();
        assert!(err.to_string().contains("`precious` is not a tier"));
    }

    #[test]
    fn engine_name_follows_compose_rules() {
        let mut v = VolumeDef {
            key: "db".into(),
            ..Default::default()
        };
        assert_eq!(v.engine_name("app"), "app_db");
        v.external = true;
        assert_eq!(v.engine_name("app"), "db");
        v.name = Some("shared-db".into());
        assert_eq!(v.engine_name("app"), "shared-db");
        v.external = false;
        assert_eq!(v.engine_name("app"), "shared-db");
    }
}
