//! One module per subcommand. Each turns its arguments into a plan, then carries it out; all share the
//! [`Session`] that loads the project and connects to the engine.

pub mod backup;
pub mod backups;
pub mod clean;
pub mod compose_cli;
pub mod consistency;
pub mod destinations;
pub mod dump;
pub mod guard;
pub mod hooks;
pub mod inspect;
pub mod ls;
pub mod migrate;
pub mod prune;
pub mod push;
pub mod restore;
pub mod restore_dump;
pub mod rules;
pub mod verified;
pub mod verify;

use anyhow::Context as _;

use crate::cli::{DockerGlobals, ProjectArgs};
use crate::compose::{self, Project, ProjectOptions};
use crate::context;
use crate::engine::Engine;
use crate::inventory::{self, Inventory};
use crate::journal::{self, Journal, StoppedContainer};
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
    /// Containers this command stopped and has not started again: started by [`Session::cleanup`] when
    /// the command ends early.
    pub restarts: std::sync::Mutex<Vec<(String, String)>>,
    /// What the user should know when the command ends early (where a safety backup is).
    pub notes: std::sync::Mutex<Vec<String>>,
    /// The engine endpoint once connected (`unix:///var/run/docker.sock`), for the journal.
    pub host: std::sync::OnceLock<String>,
    /// The journal of containers a backup stopped, once it stopped some (see [`crate::journal`]).
    pub journal: std::sync::Mutex<Option<Journal>>,
    /// Post hooks not run yet: run by [`Session::cleanup`] when the command ends early.
    pub post_hooks: std::sync::Mutex<Vec<hooks::PendingPost>>,
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

    /// The engine and the inventory of the project's data, with the loader's and the inventory's warnings
    /// printed: what the commands that look before they act start with.
    pub async fn inventory(&self) -> anyhow::Result<(Engine, Inventory)> {
        let project = self.load_project()?;
        let engine = self.connect().await?;
        let inventory = inventory::build(project, &engine).await?;
        for w in &inventory.warnings {
            self.printer.warn(w);
        }
        Ok((engine, inventory))
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
                let engine = Engine::connect(&endpoint).await?;
                let _ = self.host.set(endpoint.host.clone());
                self.start_abandoned(&engine, &endpoint.host).await;
                anyhow::Ok(engine)
            })
            .await?;
        Ok(engine.clone())
    }

    /// Starts again what a killed backup stopped on this engine and did not start (its journal file is
    /// left by a process that no longer runs), then deletes the journal file.
    async fn start_abandoned(&self, engine: &Engine, host: &str) {
        let Some(dir) = journal_dir() else { return };
        for (path, entry) in journal::abandoned(&dir, host, journal::process_alive) {
            let mut all_done = true;
            for c in &entry.containers {
                match engine.container_state(&c.id).await {
                    Ok(Some(state)) if state.is_running() => {}
                    Ok(Some(_)) => match engine.start_container(&c.id, &c.name).await {
                        Ok(()) => self.printer.status(format!(
                            "Started `{}` again: a docker persist command (pid {}) stopped it and did not finish",
                            c.name, entry.pid
                        )),
                        Err(e) => {
                            all_done = false;
                            self.printer.warn(format!(
                                "`{}` was stopped by a docker persist command (pid {}) that did not finish, and could not be started again: {e}; start it with `docker start {}`",
                                c.name, entry.pid, c.name
                            ));
                        }
                    },
                    // Removed meanwhile: nothing to start.
                    Ok(None) => {}
                    Err(e) => {
                        all_done = false;
                        self.printer.verbose(format!(
                            "cannot look at `{}`, stopped by backup pid {}: {e}",
                            c.name, entry.pid
                        ));
                    }
                }
            }
            if all_done && let Err(e) = fs_err::remove_file(&path) {
                self.printer
                    .warn(format!("cannot delete the journal file: {e}"));
            }
        }
    }

    /// Writes containers about to be stopped by a backup to the journal (before they are stopped).
    pub fn journal_stopping(
        &self,
        project: &str,
        containers: &[StoppedContainer],
    ) -> anyhow::Result<()> {
        let Some(dir) = journal_dir() else {
            self.printer.verbose(
                "no journal of stopped containers: neither XDG_STATE_HOME nor HOME is set",
            );
            return Ok(());
        };
        let host = self.host.get().cloned().unwrap_or_default();
        let mut guard = self
            .journal
            .lock()
            .map_err(|_| anyhow::anyhow!("the journal is unusable"))?;
        let journal = guard.get_or_insert_with(|| Journal::new(&dir, &host, project));
        journal
            .add(containers)
            .with_context(|| format!("failed to write the journal `{}`", journal.path().display()))
    }

    /// Takes a container that runs again out of the journal.
    pub fn journal_started(&self, id: &str) {
        if let Ok(mut guard) = self.journal.lock()
            && let Some(journal) = guard.as_mut()
            && let Err(e) = journal.remove(id)
        {
            self.printer.warn(format!(
                "failed to update the journal `{}`: {e}",
                journal.path().display()
            ));
        }
    }

    /// Starts a container this command stopped, says so, and forgets it: nothing is left to start at the
    /// end, and the journal no longer names it.
    pub async fn start_again(
        &self,
        engine: &Engine,
        id: &str,
        name: &str,
    ) -> Result<(), crate::engine::EngineError> {
        engine.start_container(id, name).await?;
        self.forget_restart(id);
        self.journal_started(id);
        self.printer.status(format!("Started `{name}` again"));
        Ok(())
    }

    /// Remembers a container this command stopped, to start again if the command ends early.
    pub fn restart_on_interrupt(&self, id: String, name: String) {
        if let Ok(mut r) = self.restarts.lock() {
            r.push((id, name));
        }
    }

    /// The container is back (or deliberately not): nothing to do for it at the end.
    pub fn forget_restart(&self, id: &str) {
        if let Ok(mut r) = self.restarts.lock() {
            r.retain(|(i, _)| i != id);
        }
    }

    /// Leaves every stopped container stopped (their data is not in a state to run on).
    pub fn clear_restarts(&self) {
        if let Ok(mut r) = self.restarts.lock() {
            r.clear();
        }
    }

    /// Registers post hooks to run at the end if the command ends before it runs them itself.
    pub fn register_post_hooks(
        &self,
        project: &str,
        scope: &str,
        hooks: &[crate::compose::Hook],
    ) -> u64 {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let token = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if !hooks.is_empty()
            && let Ok(mut p) = self.post_hooks.lock()
        {
            p.push(hooks::PendingPost {
                token,
                project: project.to_string(),
                scope: scope.to_string(),
                hooks: hooks.to_vec(),
            });
        }
        token
    }

    /// Claims the post hooks registered under `token`.
    pub fn take_post_hooks(&self, token: u64) -> Option<hooks::PendingPost> {
        let mut p = self.post_hooks.lock().ok()?;
        let i = p.iter().position(|h| h.token == token)?;
        Some(p.remove(i))
    }

    /// A line to print if the command ends early.
    pub fn note_on_interrupt(&self, note: String) {
        if let Ok(mut n) = self.notes.lock() {
            n.push(note);
        }
    }

    /// At the end of every command: start what it stopped and did not start again, remove the helper
    /// containers it left, and (when it did not succeed) say what the user should know.
    pub async fn cleanup(&self, succeeded: bool) {
        let restarts: Vec<(String, String)> = self
            .restarts
            .lock()
            .map(|mut r| std::mem::take(&mut *r))
            .unwrap_or_default();
        if let Some(engine) = self.engine.get() {
            for (id, name) in restarts {
                if let Err(e) = self.start_again(engine, &id, &name).await {
                    self.printer.warn(format!(
                        "`{name}` is stopped and could not be started again: {e}; start it with `docker start {name}`"
                    ));
                }
            }
        }
        let pending: Vec<hooks::PendingPost> = self
            .post_hooks
            .lock()
            .map(|mut p| std::mem::take(&mut *p))
            .unwrap_or_default();
        if let Some(engine) = self.engine.get()
            && !pending.is_empty()
        {
            hooks::run_pending(engine, self.printer, pending).await;
        }
        if !succeeded {
            let notes: Vec<String> = self.notes.lock().map(|n| n.clone()).unwrap_or_default();
            for n in notes {
                self.printer.warn(n);
            }
        }
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

/// Where journals of stopped containers are kept (see [`crate::journal`]).
fn journal_dir() -> Option<std::path::PathBuf> {
    journal::default_dir(|k| std::env::var(k).ok())
}

/// "1 volume", "2 volumes".
pub(crate) fn plural(n: usize, word: &str) -> String {
    format!("{n} {word}{}", if n == 1 { "" } else { "s" })
}

/// "`a`, `b`, `c`".
pub(crate) fn quoted<'a>(xs: impl IntoIterator<Item = &'a str>) -> String {
    xs.into_iter()
        .map(|x| format!("`{x}`"))
        .collect::<Vec<_>>()
        .join(", ")
}
