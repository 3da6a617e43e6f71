//! The run of a command that makes or reads backups, from start to end: what it did goes into the
//! session's [`Recorder`] as it happens (project, volumes, the backup file, which services were stopped
//! and for how long); a backup also pings its notification targets as it starts and takes the project's
//! lock. When the command ends, however it ends (success, error, Ctrl-C), [`finish`] notifies and writes
//! the run record (see [`crate::runs`] and [`crate::notify`]).

use anyhow::Context as _;

use super::{ExitStatus, Session, UsageError};
use crate::cli::NotifyArgs;
use crate::compose::Project;
use crate::notify::{self, Event, Plan, ProjectNotify, Redactor, Report, Target};
use crate::runs::{self, Delivery, DestinationRun, ProjectLock, Recorder, RunRecord, RunResult};

/// One recorded run, kept by the session while the command runs.
#[derive(Debug)]
pub struct RunContext {
    pub recorder: Recorder,
    /// The notification flags, for the commands that notify (backup).
    notify_args: Option<NotifyArgs>,
    plan: Option<Plan>,
    deliveries: Vec<Delivery>,
    redactor: Redactor,
    _lock: Option<ProjectLock>,
}

impl RunContext {
    pub fn new(command: &str, notify_args: Option<NotifyArgs>) -> RunContext {
        RunContext {
            recorder: Recorder::new(command),
            notify_args,
            plan: None,
            deliveries: Vec::new(),
            redactor: Redactor::default(),
            _lock: None,
        }
    }
}

/// The notification plan of a project: `--notify` flags and `x-persist: {notify: …}` together.
pub fn plan(
    args: &NotifyArgs,
    project: Option<&Project>,
    redactor: Redactor,
) -> Result<Plan, UsageError> {
    let from_project = match project {
        Some(p) => ProjectNotify::from_persist(&p.persist).map_err(|message| UsageError {
            message,
            hint: Some(
                "see `Notifications` in the README for the forms `x-persist.notify` takes".into(),
            ),
        })?,
        None => ProjectNotify::default(),
    };
    let mut targets: Vec<Target> = Vec::new();
    for url in from_project.urls.iter().chain(&args.urls) {
        let t = Target::parse(url).map_err(|message| UsageError {
            message,
            hint: Some(
                "a ping URL (https://hc-ping.com/UUID), ntfy://host/topic, or webhook+https://host/path"
                    .into(),
            ),
        })?;
        if !targets.contains(&t) {
            targets.push(t);
        }
    }
    Ok(Plan {
        targets,
        on: args.notify_on.or(from_project.on).unwrap_or_default(),
        command: args.notify_command.clone().or(from_project.command),
        redactor,
    })
}

impl Session<'_> {
    /// Remembers the project for the run record (called as the project is loaded).
    pub(crate) fn note_project(&self, project: &Project) {
        if let Ok(mut run) = self.run.lock()
            && let Some(run) = run.as_mut()
        {
            run.recorder.project = Some(project.name.clone());
            run.recorder.project_directory = Some(project.directory.clone());
            run.redactor = Redactor::from_environment(&project.environment);
        }
    }

    /// Remembers the project of a backup file read without loading the project (`verify FILE`).
    pub(crate) fn note_project_name(&self, name: &str) {
        if let Ok(mut run) = self.run.lock()
            && let Some(run) = run.as_mut()
            && run.recorder.project.is_none()
        {
            run.recorder.project = Some(name.to_string());
        }
    }

    /// Applies `f` to the recorder of this run, if the command records one.
    pub(crate) fn record(&self, f: impl FnOnce(&mut Recorder)) {
        if let Ok(mut run) = self.run.lock()
            && let Some(run) = run.as_mut()
        {
            f(&mut run.recorder);
        }
    }

    /// A destination the backup file was sent to (`backup --to`), and whether it got it.
    pub fn record_destination(&self, name: &str, location: &str, result: Result<(), String>) {
        self.record(|r| {
            r.destinations.push(DestinationRun {
                name: name.to_string(),
                location: location.to_string(),
                ok: result.is_ok(),
                error: result.err(),
            })
        });
    }

    /// The backup file written, its volumes and sizes, and the local directory that holds it.
    pub(crate) fn record_backup(
        &self,
        finished: &crate::archive::FinishedBackup,
        records: &[crate::archive::VolumeRecord],
        dir: &std::path::Path,
    ) {
        self.record(|r| {
            r.backup = Some(finished.path.clone());
            r.backup_bytes = Some(finished.bytes);
            r.volumes = records
                .iter()
                .map(|v| runs::VolumeRun {
                    key: v.key.clone(),
                    bytes: v.file_bytes,
                    stored_bytes: v.stored_bytes,
                })
                .chain(finished.manifest.dumps.iter().map(|d| runs::VolumeRun {
                    key: d.key.clone(),
                    bytes: d.bytes,
                    stored_bytes: d.stored_bytes,
                }))
                .collect();
            r.destinations.push(DestinationRun {
                name: "local".to_string(),
                location: dir.display().to_string(),
                ok: true,
                error: None,
            });
        });
    }
}

/// The start of a backup run: the notification plan is made (an invalid target is a usage error, before
/// anything happens), ping URLs hear `/start`, and the project's lock is taken — waiting up to
/// `lock_timeout` for another backup of the project that still runs.
pub async fn begin_backup(
    session: &Session<'_>,
    project: &Project,
    lock_timeout: std::time::Duration,
) -> anyhow::Result<()> {
    let printer = session.printer;
    let (args, redactor) = {
        let run = session
            .run
            .lock()
            .map_err(|_| anyhow::anyhow!("the run record is unusable"))?;
        match run.as_ref() {
            Some(r) => (
                r.notify_args.clone().unwrap_or_default(),
                r.redactor.clone(),
            ),
            None => (NotifyArgs::default(), Redactor::default()),
        }
    };
    let plan = plan(&args, Some(project), redactor)?;
    let report = report_of(session, None, None);
    let deliveries = if plan.is_empty() {
        Vec::new()
    } else {
        notify::deliver(&plan, Event::Start, &report).await
    };
    warn_undelivered(printer, &deliveries);
    if let Ok(mut run) = session.run.lock()
        && let Some(run) = run.as_mut()
    {
        run.plan = Some(plan);
        run.deliveries.extend(deliveries);
    }
    let Some(dir) = runs::locks_dir() else {
        printer
            .verbose("no lock against overlapping backups: neither XDG_STATE_HOME nor HOME is set");
        return Ok(());
    };
    let lock = runs::lock_project(&dir, &project.name, lock_timeout, |holder| {
        printer.status(format!(
            "Waiting for another backup of `{}` to finish ({holder}; at most {})",
            project.name,
            runs::format_duration(lock_timeout)
        ));
    })
    .await
    .with_context(|| format!("cannot start a backup of `{}`", project.name))?;
    if let Ok(mut run) = session.run.lock()
        && let Some(run) = run.as_mut()
    {
        run._lock = Some(lock);
    }
    Ok(())
}

fn warn_undelivered(printer: &crate::report::Printer, deliveries: &[Delivery]) {
    for d in deliveries.iter().filter(|d| !d.ok) {
        printer.warn(format!(
            "could not notify {} ({}): {}",
            d.target,
            d.event,
            d.error.as_deref().unwrap_or("failed")
        ));
    }
}

/// What a notification says, from the recorder; `result` `None` for the start.
fn report_of(
    session: &Session<'_>,
    result: Option<(RunResult, Option<String>, jiff::Timestamp)>,
    warnings: Option<Vec<String>>,
) -> Report {
    let run = session.run.lock();
    let rec = run
        .as_ref()
        .ok()
        .and_then(|r| r.as_ref())
        .map(|r| &r.recorder);
    let now = jiff::Timestamp::now();
    let ended = result.as_ref().map(|(_, _, t)| *t);
    let downtime = rec
        .map(|r| r.downtime(ended.unwrap_or(now)))
        .unwrap_or_default();
    let volumes = rec.map(|r| r.volumes.clone()).unwrap_or_default();
    let started = rec.map(|r| r.started).unwrap_or(now);
    Report {
        schema_version: 1,
        event: if result.is_some() { "finish" } else { "start" },
        run_id: rec.map(|r| r.id.clone()).unwrap_or_default(),
        project: rec.and_then(|r| r.project.clone()).unwrap_or_default(),
        command: rec.map(|r| r.command.clone()).unwrap_or_default(),
        result: result.as_ref().map(|(r, _, _)| *r),
        host: rustix::system::uname()
            .nodename()
            .to_string_lossy()
            .into_owned(),
        started,
        ended,
        seconds: ended.map(|e| runs::seconds_between(started, e)),
        backup: rec
            .and_then(|r| r.backup.as_ref())
            .map(|p| p.display().to_string()),
        backup_bytes: rec.and_then(|r| r.backup_bytes),
        bytes: volumes.iter().map(|v| v.bytes).sum(),
        stored_bytes: volumes.iter().map(|v| v.stored_bytes).sum(),
        volumes,
        downtime_seconds: downtime.iter().map(|d| d.seconds).sum(),
        downtime,
        error: result.and_then(|(_, e, _)| e),
        warnings: warnings.unwrap_or_default(),
    }
}

/// The end of a recorded run: notifies (a backup), then writes the run record. Never fails: what goes
/// wrong here is a warning.
pub async fn finish(session: &Session<'_>, outcome: &anyhow::Result<ExitStatus>) {
    let printer = session.printer;
    let is_recorded = session.run.lock().map(|r| r.is_some()).unwrap_or(false);
    if !is_recorded {
        return;
    }
    let ended = jiff::Timestamp::now();
    let (mut result, error, exit_code) = match outcome {
        Ok(ExitStatus::Success) => (RunResult::Success, None, 0),
        Ok(ExitStatus::Interrupted) => (
            RunResult::Interrupted,
            Some("interrupted".to_string()),
            ExitStatus::Interrupted.code(),
        ),
        Ok(other) => (RunResult::Failure, None, other.code()),
        Err(e) => {
            let (status, _) = crate::classify_error(e);
            (RunResult::Failure, Some(format!("{e:#}")), status.code())
        }
    };
    // A command that failed without an error (a destination that did not get the file) says why.
    let error = error.or_else(|| {
        let run = session.run.lock().ok()?;
        let failed: Vec<String> = run
            .as_ref()?
            .recorder
            .destinations
            .iter()
            .filter(|d| !d.ok)
            .map(|d| {
                format!(
                    "`{}` did not get the backup: {}",
                    d.name,
                    d.error.as_deref().unwrap_or("failed")
                )
            })
            .collect();
        (result == RunResult::Failure && !failed.is_empty()).then(|| failed.join("; "))
    });
    let mut warnings = printer.warnings();
    if result == RunResult::Success && !warnings.is_empty() {
        result = RunResult::Warning;
    }
    // The plan: made at the start of a backup; from the flags alone when the project never loaded.
    let (plan, redactor) = {
        let run = session.run.lock();
        let run = run.as_ref().ok().and_then(|r| r.as_ref());
        let redactor = run.map(|r| r.redactor.clone()).unwrap_or_default();
        let plan = run.and_then(|r| {
            r.plan.clone().or_else(|| {
                r.notify_args
                    .as_ref()
                    .and_then(|a| plan(a, None, redactor.clone()).ok())
            })
        });
        (plan, redactor)
    };
    let error = error.map(|e| redactor.redact(&e));
    let mut deliveries = Vec::new();
    if let Some(plan) = plan.filter(|p| !p.is_empty()) {
        let report = report_of(
            session,
            Some((result, error.clone(), ended)),
            Some(warnings.clone()),
        );
        deliveries = notify::deliver(&plan, Event::Finish, &report).await;
        warn_undelivered(printer, &deliveries);
        if deliveries.iter().any(|d| !d.ok) {
            warnings = printer.warnings();
            if result == RunResult::Success {
                result = RunResult::Warning;
            }
        }
    }
    let Some(run) = session.run.lock().ok().and_then(|mut r| r.take()) else {
        return;
    };
    let rec = run.recorder;
    let Some(project) = rec.project.clone() else {
        printer.verbose("no run record: the project was not loaded");
        return;
    };
    let Some(dir) = runs::runs_dir() else {
        printer.verbose("no run record: neither XDG_STATE_HOME nor HOME is set");
        return;
    };
    let record = RunRecord {
        schema_version: 1,
        id: rec.id.clone(),
        project,
        project_directory: rec.project_directory.clone(),
        command: rec.command.clone(),
        started: rec.started,
        ended,
        seconds: runs::seconds_between(rec.started, ended),
        result,
        exit_code,
        error,
        warnings: warnings.iter().map(|w| redactor.redact(w)).collect(),
        backup: rec.backup.clone(),
        backup_bytes: rec.backup_bytes,
        volumes: rec.volumes.clone(),
        destinations: rec.destinations.clone(),
        downtime: rec.downtime(ended),
        notifications: run.deliveries.into_iter().chain(deliveries).collect(),
    };
    match record.write(&dir, runs::KEEP_PER_PROJECT) {
        Ok(path) => printer.verbose(format!("run recorded in `{}`", path.display())),
        Err(e) => printer.warn(format!(
            "could not record the run in `{}`: {e}",
            dir.display()
        )),
    }
}
