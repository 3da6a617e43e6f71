//! Loads a Compose project the way Compose does (discovery, `.env`, interpolation, multi-file merge) and
//! classifies every piece of data it keeps into a tier.

pub mod classify;
pub mod discovery;
pub mod interpolate;
pub mod load;
pub mod migration;
pub mod model;

use std::collections::BTreeMap;
use std::path::PathBuf;

pub use load::load_project;
pub use model::{
    Consistency, DumpRecipe, Hook, HookCommand, Hooks, Mount, MountType, OnError, PersistSpec,
    Project, RunFacts, Service, Tier, VolumeDef,
};

/// How to find and load a project: the Compose-style command-line options plus the process environment.
#[derive(Debug, Clone, Default)]
pub struct ProjectOptions {
    /// `-f/--file`, in order (empty: `COMPOSE_FILE` or discovery).
    pub files: Vec<PathBuf>,
    /// `-p/--project-name`.
    pub project_name: Option<String>,
    /// `--project-directory`.
    pub project_directory: Option<PathBuf>,
    /// `--env-file`, in order (empty: `.env` in the project directory, if present).
    pub env_files: Vec<PathBuf>,
    /// Where the command runs; discovery starts here.
    pub working_dir: PathBuf,
    /// The OS environment (wins over `.env`). Passed in so tests need not touch the process environment.
    pub os_env: BTreeMap<String, String>,
}

impl ProjectOptions {
    /// Options with the current directory and the process environment.
    pub fn from_process() -> std::io::Result<Self> {
        Ok(ProjectOptions {
            working_dir: std::env::current_dir()?,
            os_env: std::env::vars().collect(),
            ..Default::default()
        })
    }
}

/// Everything that can go wrong while finding, reading and loading Compose files.
#[derive(Debug, thiserror::Error)]
pub enum ComposeError {
    #[error(
        "no Compose file found in `{}` or any parent directory (looked for compose.yaml, compose.yml, docker-compose.yml, docker-compose.yaml)",
        dir.display()
    )]
    NotFound { dir: PathBuf },

    #[error("failed to read `{}`", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("invalid YAML in `{}` at line {line}, column {column}: {message}", path.display())]
    Yaml {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },

    #[error("`{}` is not a Compose file: {message}", path.display())]
    Structure { path: PathBuf, message: String },

    /// `${V:?message}` / `${V?message}` with `V` missing; `message` is empty when the file gives none (the
    /// error then reads like Compose's: "required variable `V` is missing a value").
    #[error(
        "required variable `{name}` is missing a value{}",
        if message.is_empty() { String::new() } else { format!(": {message}") }
    )]
    MissingVariable { name: String, message: String },

    #[error("invalid interpolation format in `{}` for `{value}`: {message}", path.display())]
    Interpolation {
        path: PathBuf,
        value: String,
        message: String,
    },

    #[error("invalid env file `{}` at line {line}: {message}", path.display())]
    EnvFile {
        path: PathBuf,
        line: usize,
        message: String,
    },

    #[error("service `{service}` has an invalid volume `{spec}`: {message}")]
    InvalidMount {
        service: String,
        spec: String,
        message: String,
    },

    #[error("invalid `x-persist` in {location}: {message}")]
    InvalidPersist { location: String, message: String },

    #[error("invalid project name `{name}`: {message}")]
    ProjectName { name: String, message: String },

    #[error("top-level volume `{volume}` is invalid: {message}")]
    InvalidVolume { volume: String, message: String },
}
