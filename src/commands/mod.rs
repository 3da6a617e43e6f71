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
pub mod key;
pub mod ls;
pub mod migrate;
pub mod notify_test;
pub mod prune;
pub mod push;
pub mod resolve;
pub mod restore;
pub mod restore_dump;
pub mod rules;
pub mod runlog;
pub mod schedule;
pub mod status;
pub mod upgrade;
pub mod upgrade_pg;
pub mod verified;
pub mod verify;

use anyhow::Context as _;

use crate::cli::{DockerGlobals, ProjectArgs};
use crate::compose::{self, Project, ProjectOptions};
use crate::context;
use crate::engine::Engine;
use crate::intent::{self, Step, StepId, StepState};
use crate::inventory::{self, Inventory};
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
    /// The engine endpoint once connected (`unix:///var/run/docker.sock`), for the intent record.
    pub host: std::sync::OnceLock<String>,
    /// The command's name in its intent record (`backup`, `restore`, …).
    pub command: &'static str,
    /// This command's intent record, once it began changing something (see [`crate::intent`]).
    pub intent: std::sync::Mutex<Option<intent::Writer>>,
    /// Records of killed commands of this engine that could not be resolved (see [`resolve`]).
    pub unresolved: std::sync::Mutex<Vec<intent::Record>>,
    /// Post hooks not run yet: run by [`Session::cleanup`] when the command ends early.
    pub post_hooks: std::sync::Mutex<Vec<hooks::PendingPost>>,
    /// The run record of a command that keeps one (backup, restore, verify; see [`runlog`]).
    pub run: std::sync::Mutex<Option<runlog::RunContext>>,
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
        self.note_project(&project);
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
                resolve::resolve_abandoned(self, &engine, &endpoint.host).await;
                anyhow::Ok(engine)
            })
            .await?;
        Ok(engine.clone())
    }

    /// Records a step this command is about to take in its intent record, which is begun (for
    /// `project`) at the first one. Refuses (exit 3) when a killed command left changes to this project
    /// that could not be resolved, unless [`Session::allow_unresolved`] was called.
    pub fn step_begin(&self, project: &Project, step: Step) -> anyhow::Result<StepId> {
        let Some(dir) = intent_dir() else {
            self.printer.verbose(
                "no intent record: neither XDG_STATE_HOME nor HOME is set, so a killed command cannot be resolved by the next one",
            );
            return Ok(StepId(usize::MAX));
        };
        let mut guard = self
            .intent
            .lock()
            .map_err(|_| anyhow::anyhow!("the intent record is unusable"))?;
        if guard.is_none() {
            self.refuse_if_unresolved(&project.name)?;
            let host = self.host.get().cloned().unwrap_or_default();
            let project = intent::ProjectRef {
                name: project.name.clone(),
                directory: project.directory.clone(),
                files: project.files.clone(),
                env_files: self.project_args.env_files.clone(),
            };
            *guard = Some(intent::Writer::new(&dir, &host, project, self.command));
        }
        let Some(writer) = guard.as_mut() else {
            unreachable!("the intent record was just made")
        };
        let name = step.name();
        writer.begin(step).with_context(|| {
            format!(
                "failed to write the intent record `{}` (step {name}); nothing more was changed",
                writer.path().display()
            )
        })
    }

    /// Sets the state of a step of this command's intent record (a failure to write is only warned
    /// about: the step itself is taken).
    pub fn step_mark(&self, id: StepId, state: StepState) {
        self.with_intent(|w| w.mark(id, state));
    }

    /// Changes a step of this command's intent record in place.
    pub fn step_update(&self, id: StepId, f: impl FnOnce(&mut Step)) {
        self.with_intent(|w| w.update(id, f));
    }

    /// Settles every step: the command dealt with all it changed itself.
    pub fn steps_settled(&self) {
        self.with_intent(intent::Writer::settle_all);
    }

    /// Lets this command run although a killed command's changes could not be resolved: a restore, which
    /// is how such data is put right.
    pub fn allow_unresolved(&self) {
        if let Ok(mut u) = self.unresolved.lock() {
            for r in u.iter() {
                self.printer.warn(format!(
                    "going ahead although {} left changes that could not be resolved",
                    r.describe()
                ));
            }
            u.clear();
        }
    }

    /// Refuses (exit 3) when a killed command left changes to `project` that could not be resolved.
    pub fn refuse_if_unresolved(&self, project: &str) -> anyhow::Result<()> {
        let unresolved = self
            .unresolved
            .lock()
            .map(|u| u.clone())
            .unwrap_or_default();
        if let Some(r) = unresolved.iter().find(|r| r.project.name == project) {
            return Err(restore::Refused {
                message: format!(
                    "{} was killed and what it changed could not be finished or undone: {}",
                    r.describe(),
                    r.unresolved.join("; ")
                ),
                hint: "fix what is named above; the next docker persist command tries again (a `restore` of the data named is allowed)"
                    .to_string(),
            }
            .into());
        }
        Ok(())
    }

    fn with_intent(&self, f: impl FnOnce(&mut intent::Writer) -> std::io::Result<()>) {
        if let Ok(mut guard) = self.intent.lock()
            && let Some(w) = guard.as_mut()
            && let Err(e) = f(w)
        {
            self.printer.warn(format!(
                "failed to update the intent record `{}`: {e}",
                w.path().display()
            ));
        }
    }

    /// Takes a container that runs again out of the intent record's stop steps.
    pub fn journal_started(&self, id: &str) {
        self.with_intent(|w| {
            let ids: Vec<StepId> = (0..w.record().steps.len()).map(StepId).collect();
            for i in ids {
                w.update(i, |s| {
                    if let Step::Stop { containers } = s {
                        containers.retain(|c| c.id != id);
                    }
                })?;
            }
            Ok(())
        });
    }

    /// Marks a container's stop as sent in the intent record (the engine may still be stopping it when
    /// the command is killed).
    pub fn journal_stop_sent(&self, step: StepId, id: &str) {
        self.step_update(step, |s| {
            if let Step::Stop { containers } = s {
                for c in containers.iter_mut().filter(|c| c.id == id) {
                    c.stop_sent = Some(intent::now());
                }
            }
        });
    }

    /// Starts a container this command stopped, says so, and forgets it: nothing is left to start at the
    /// end, and the intent record no longer names it.
    pub async fn start_again(
        &self,
        engine: &Engine,
        id: &str,
        name: &str,
    ) -> Result<(), crate::engine::EngineError> {
        engine.start_container(id, name).await?;
        self.record(|r| r.started(id));
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
        self.close_intent(succeeded);
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

impl Session<'_> {
    /// Deletes this command's intent record when it succeeded or nothing is left open in it; otherwise
    /// leaves it for the next command to finish or undo (this process ends, so its pid is gone).
    fn close_intent(&self, succeeded: bool) {
        let Ok(mut guard) = self.intent.lock() else {
            return;
        };
        let Some(w) = guard.take() else { return };
        if succeeded || !w.record().is_open() {
            if let Err(e) = w.remove() {
                self.printer.warn(format!(
                    "cannot delete the intent record `{}`: {e}",
                    w.path().display()
                ));
            }
        } else {
            self.printer.warn(
                "what this command changed and did not put back is recorded: the next docker persist command finishes or undoes it",
            );
        }
    }
}

/// Where intent records are kept (see [`crate::intent`]).
pub(crate) fn intent_dir() -> Option<std::path::PathBuf> {
    intent::default_dir(|k| std::env::var(k).ok())
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
