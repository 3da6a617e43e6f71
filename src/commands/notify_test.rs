//! `notify test`: one test notification to every target of the project (`x-persist: {notify: …}` and
//! `--notify`), whatever `--notify-on` says, so that a wrong URL shows up now and not at the first failed
//! backup. Exit 1 when one could not be delivered.

use serde::Serialize;

use super::{ExitStatus, Session, UsageError};
use crate::cli::NotifyCommand;
use crate::notify::{self, Event, NotifyOn, Redactor, Report};
use crate::runs::{Delivery, RunResult};

#[derive(Serialize)]
struct TestJson<'a> {
    schema_version: u32,
    project: Option<&'a str>,
    deliveries: &'a [Delivery],
}

pub async fn run(session: &Session<'_>, cmd: &NotifyCommand) -> anyhow::Result<ExitStatus> {
    let NotifyCommand::Test(args) = cmd;
    let printer = session.printer;
    // The project is optional: `notify test --notify URL` works anywhere.
    let project = match session.load_project() {
        Ok(p) => Some(p),
        Err(e) if args.notify.urls.is_empty() && args.notify.notify_command.is_none() => {
            return Err(e);
        }
        Err(e) => {
            printer.verbose(format!("no project: {e:#}"));
            None
        }
    };
    let redactor = project
        .as_ref()
        .map(|p| Redactor::from_environment(&p.environment))
        .unwrap_or_default();
    let mut plan = super::runlog::plan(&args.notify, project.as_ref(), redactor)?;
    if plan.is_empty() {
        return Err(UsageError {
            message: "no notification target: the project has no `x-persist: {notify: …}` and no `--notify` was given"
                .to_string(),
            hint: Some("`docker persist notify test --notify https://hc-ping.com/UUID`".to_string()),
        }
        .into());
    }
    plan.on = NotifyOn::Always;
    let now = jiff::Timestamp::now();
    let name = project.as_ref().map(|p| p.name.clone()).unwrap_or_default();
    let report = Report {
        schema_version: 1,
        event: "test",
        run_id: uuid::Uuid::new_v4().to_string(),
        project: name.clone(),
        command: "notify test".to_string(),
        result: Some(RunResult::Success),
        host: rustix::system::uname()
            .nodename()
            .to_string_lossy()
            .into_owned(),
        started: now,
        ended: Some(now),
        seconds: Some(0.0),
        backup: None,
        backup_bytes: None,
        volumes: Vec::new(),
        bytes: 0,
        stored_bytes: 0,
        downtime: Vec::new(),
        downtime_seconds: 0.0,
        error: None,
        warnings: vec!["this is a test notification from `docker persist notify test`".to_string()],
    };
    let deliveries = notify::deliver(&plan, Event::Finish, &report).await;
    if printer.json_mode() {
        printer.json(&TestJson {
            schema_version: 1,
            project: project.as_ref().map(|p| p.name.as_str()),
            deliveries: &deliveries,
        })?;
    }
    for d in &deliveries {
        match &d.error {
            None => printer.status(format!("Sent a test notification to {}", d.target)),
            Some(e) => printer.warn(format!("could not notify {}: {e}", d.target)),
        }
    }
    Ok(if deliveries.iter().all(|d| d.ok) {
        ExitStatus::Success
    } else {
        ExitStatus::Failure
    })
}
