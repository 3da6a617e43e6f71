//! Hooks (`x-persist: {hooks: {pre: […], post: […]}}`): commands run inside a running container of a
//! service around the backup of one volume, or around the whole backup (top-level `x-persist`).
//!
//! Order for a volume: its pre hooks, then (in `stop` mode) its services are stopped, the data is read, the
//! services are started again, then its post hooks. A pre hook that fails with `on_error: fail` (the
//! default) aborts the backup: nothing more is read and no backup file is written. Post hooks always run:
//! after success, after a failure, and after Ctrl-C, when [`super::Session::cleanup`] runs the ones still
//! pending. Each hook's exit code, duration and the end of its output go into the manifest.

use std::time::Duration;

use super::Session;
use crate::archive::HookRecord;
use crate::compose::{Hook, OnError};
use crate::engine::{ContainerInfo, Engine, ExecOutcome};
use crate::report::Printer;

/// Output kept in the manifest for each stream of a hook.
const MANIFEST_OUTPUT: usize = 4096;

/// `pre` or `post`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Pre,
    Post,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Pre => "pre",
            Phase::Post => "post",
        }
    }
}

/// Post hooks registered with the session until they ran, so that an interrupted command still runs them.
#[derive(Debug, Clone)]
pub struct PendingPost {
    pub token: u64,
    pub project: String,
    /// What they run around: "`db`" or "the backup".
    pub scope: String,
    pub hooks: Vec<Hook>,
}

/// A running container of `service` in `project` (helpers aside), the first by name.
pub async fn running_container(
    engine: &Engine,
    project: &str,
    service: &str,
) -> anyhow::Result<Option<ContainerInfo>> {
    let mut found: Vec<ContainerInfo> = engine
        .project_containers(project)
        .await?
        .into_iter()
        .filter(|c| !c.helper && c.is_running() && c.service.as_deref() == Some(service))
        .collect();
    found.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(found.into_iter().next())
}

/// Runs `hooks` of `phase` in order. Pre hooks stop at the first that fails with `on_error: fail` and
/// return its error; post hooks all run, and the first such failure is returned after the last one.
/// The records of the hooks that ran come back either way.
pub async fn run(
    engine: &Engine,
    printer: &Printer,
    project: &str,
    scope: &str,
    phase: Phase,
    hooks: &[Hook],
) -> (Vec<HookRecord>, Option<anyhow::Error>) {
    let mut records = Vec::new();
    let mut first_error = None;
    for hook in hooks {
        let (record, failure) = run_one(engine, printer, project, scope, phase, hook).await;
        records.push(record);
        if let Some(e) = failure {
            match hook.on_error {
                OnError::Continue => {
                    printer.warn(format!("{e:#}; going on (`on_error: continue`)"))
                }
                OnError::Fail => {
                    first_error.get_or_insert(e);
                    if phase == Phase::Pre {
                        break;
                    }
                }
            }
        }
    }
    (records, first_error)
}

async fn run_one(
    engine: &Engine,
    printer: &Printer,
    project: &str,
    scope: &str,
    phase: Phase,
    hook: &Hook,
) -> (HookRecord, Option<anyhow::Error>) {
    let mut record = HookRecord {
        phase: phase.as_str().to_string(),
        service: hook.service.clone(),
        command: hook.command.to_string(),
        exit_code: None,
        timed_out: false,
        duration_ms: 0,
        on_error: match hook.on_error {
            OnError::Fail => "fail",
            OnError::Continue => "continue",
        }
        .to_string(),
        error: None,
        stdout: String::new(),
        stderr: String::new(),
    };
    let what = format!(
        "{} hook `{}` of {scope} (service `{}`)",
        phase.as_str(),
        hook.command,
        hook.service
    );
    let container = match running_container(engine, project, &hook.service).await {
        Ok(Some(c)) => c,
        Ok(None) => {
            let e = anyhow::anyhow!(
                "{what} cannot run: service `{}` has no running container",
                hook.service
            );
            record.error = Some(format!("service `{}` is not running", hook.service));
            return (record, Some(e));
        }
        Err(e) => {
            record.error = Some(format!("{e:#}"));
            return (record, Some(e.context(format!("{what} cannot run"))));
        }
    };
    printer.verbose(format!("running the {what} in `{}`", container.name));
    let outcome = engine
        .exec_capture(
            &container.id,
            &hook.command.argv(),
            &[],
            None,
            Some(hook.timeout),
        )
        .await;
    let outcome = match outcome {
        Ok(o) => o,
        Err(e) => {
            record.error = Some(e.to_string());
            return (
                record,
                Some(anyhow::Error::new(e).context(format!("{what} failed"))),
            );
        }
    };
    record.exit_code = outcome.exit_code;
    record.timed_out = outcome.timed_out;
    record.duration_ms = u64::try_from(outcome.duration.as_millis()).unwrap_or(u64::MAX);
    record.stdout = tail(&outcome.stdout);
    record.stderr = tail(&outcome.stderr);
    show_output(printer, &outcome, outcome.success());
    if outcome.success() {
        printer.verbose(format!(
            "the {what} succeeded in {:.2} s",
            outcome.duration.as_secs_f64()
        ));
        return (record, None);
    }
    let why = failure_text(&outcome, hook.timeout);
    record.error = Some(why.clone());
    (record, Some(anyhow::anyhow!("{what} {why}")))
}

/// "exited with code 3", "timed out after 30 s and was killed".
fn failure_text(o: &ExecOutcome, timeout: Duration) -> String {
    if o.timed_out {
        format!(
            "timed out after {} s; {}",
            timeout.as_secs_f64(),
            o.kill_note.as_deref().unwrap_or("it may still be running")
        )
    } else {
        match o.exit_code {
            Some(c) => format!("exited with code {c}"),
            None => "did not report an exit code".to_string(),
        }
    }
}

/// The hook's output: with `-v` always, otherwise when it failed.
fn show_output(printer: &Printer, o: &ExecOutcome, ok: bool) {
    for (name, bytes) in [("stdout", &o.stdout), ("stderr", &o.stderr)] {
        let text = String::from_utf8_lossy(bytes);
        let text = text.trim_end();
        if text.is_empty() {
            continue;
        }
        let lines: Vec<String> = text.lines().map(|l| format!("  {name} | {l}")).collect();
        if ok {
            printer.verbose(lines.join("\n"));
        } else {
            printer.warn(format!("hook output:\n{}", lines.join("\n")));
        }
    }
    if o.truncated > 0 {
        printer.verbose(format!(
            "  ({} bytes of output beyond the first MiB were not kept)",
            o.truncated
        ));
    }
}

/// The last [`MANIFEST_OUTPUT`] bytes of `bytes`, as text.
fn tail(bytes: &[u8]) -> String {
    let start = bytes.len().saturating_sub(MANIFEST_OUTPUT);
    String::from_utf8_lossy(&bytes[start..]).into_owned()
}

/// Registers post hooks to run at the end of the command if it ends before they ran; returns the token
/// with which [`take_pending`] claims them.
pub fn register_post(session: &Session<'_>, project: &str, scope: &str, hooks: &[Hook]) -> u64 {
    session.register_post_hooks(project, scope, hooks)
}

/// Claims the post hooks registered under `token` (so cleanup does not run them as well).
pub fn take_pending(session: &Session<'_>, token: u64) -> Option<PendingPost> {
    session.take_post_hooks(token)
}

/// Runs the post hooks still pending when a command ends early, newest first.
pub async fn run_pending(engine: &Engine, printer: &Printer, pending: Vec<PendingPost>) {
    for p in pending.into_iter().rev() {
        printer.status(format!("Running the post hooks of {}", p.scope));
        let (_, error) = run(engine, printer, &p.project, &p.scope, Phase::Post, &p.hooks).await;
        if let Some(e) = error {
            printer.warn(format!("{e:#}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_say_what_happened() {
        let mut o = ExecOutcome {
            exit_code: Some(3),
            ..Default::default()
        };
        assert_eq!(
            failure_text(&o, Duration::from_secs(5)),
            "exited with code 3"
        );
        o.timed_out = true;
        o.kill_note = Some("it was killed".into());
        assert_eq!(
            failure_text(&o, Duration::from_millis(1500)),
            "timed out after 1.5 s; it was killed"
        );
        assert!(!o.success());
    }

    #[test]
    fn manifest_keeps_the_end_of_long_output() {
        let long: Vec<u8> = (0..10_000).map(|i| b'a' + (i % 26) as u8).collect();
        let t = tail(&long);
        assert_eq!(t.len(), MANIFEST_OUTPUT);
        assert!(long.ends_with(t.as_bytes()));
    }
}
