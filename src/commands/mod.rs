//! One module per subcommand. Each turns its arguments into a plan, then carries it out; all share the
//! [`Session`] that loads the project and connects to the engine.

pub mod backup;
pub mod backups;
pub mod inspect;
pub mod ls;
pub mod rules;
pub mod verify;

use anyhow::Context as _;

use crate::cli::{DockerGlobals, ProjectArgs};
use crate::compose::{self, Project, ProjectOptions};
use crate::context;
use crate::engine::Engine;
use crate::report::Printer;

/// How a command ended, as an exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    Success,
    /// Something failed; an error was printed.
    Failure,
    /// Bad arguments.
    Usage,
    /// Refused for safety (a confirmation was needed, or data would be lost).
    Refused,
    /// Interrupted by Ctrl-C or the Docker CLI.
    Interrupted,
}

impl ExitStatus {
    pub fn code(self) -> u8 {
        match self {
            ExitStatus::Success => 0,
            ExitStatus::Failure => 1,
            ExitStatus::Usage => 2,
            ExitStatus::Refused => 3,
            ExitStatus::Interrupted => 130,
        }
    }
}

/// An error that is the user's to fix in the arguments (exit 2), with an optional hint.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct UsageError {
    pub message: String,
    pub hint: Option<String>,
}

/// What every command starts from: the parsed global options and the printer; the engine once connected.
pub struct Session<'a> {
    pub globals: &'a DockerGlobals,
    pub project_args: &'a ProjectArgs,
    pub printer: &'a Printer,
    pub engine: tokio::sync::OnceCell<Engine>,
}

impl Session<'_> {
    /// Loads the Compose project named by the options and the environment.
    pub fn load_project(&self) -> anyhow::Result<Project> {
        let mut opts =
            ProjectOptions::from_process().context("failed to read the current directory")?;
        opts.files = self.project_args.files.clone();
        opts.project_name = self.project_args.project_name.clone();
        opts.project_directory = self.project_args.project_directory.clone();
        opts.env_files = self.project_args.env_files.clone();
        let project = compose::load::load_project(&opts)?;
        for w in &project.warnings {
            self.printer.warn(w);
        }
        self.printer.verbose(format!(
            "project `{}` in `{}` from {}",
            project.name,
            project.directory.display(),
            project
                .files
                .iter()
                .map(|f| format!("`{}`", f.display()))
                .collect::<Vec<_>>()
                .join(", ")
        ));
        Ok(project)
    }

    /// Resolves the endpoint like the Docker CLI and connects (once per command).
    pub async fn connect(&self) -> anyhow::Result<Engine> {
        let engine = self
            .engine
            .get_or_try_init(|| async {
                let env: std::collections::BTreeMap<String, String> = std::env::vars().collect();
                let endpoint = context::resolve(self.globals, &env)?;
                self.printer.verbose(format!(
                    "engine `{}` (context `{}`, from {})",
                    endpoint.host, endpoint.context, endpoint.source
                ));
                anyhow::Ok(Engine::connect(&endpoint).await?)
            })
            .await?;
        Ok(engine.clone())
    }

    /// Removes the helper containers this command left (on an error or an interruption).
    pub async fn cleanup(&self) {
        if let Some(engine) = self.engine.get() {
            match engine.remove_leftover_helpers().await {
                Ok(0) => {}
                Ok(n) => self
                    .printer
                    .verbose(format!("removed {n} helper container(s)")),
                Err(e) => self.printer.warn(format!(
                    "helper containers may be left behind: {e}; `docker ps -a --filter label=persist.helper=true` lists them"
                )),
            }
        }
    }
}
