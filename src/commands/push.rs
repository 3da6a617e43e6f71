//! `push BACKUP --to D…`: copies an existing backup file to destinations ([`send`]); `backup --to` sends
//! its file while it is written ([`send_following`]). What is already at a destination (same size and recorded
//! SHA-256) is not sent again, so a `push` after a failed `backup --to` sends only what is missing.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;

use super::{ExitStatus, Session, UsageError};
use crate::archive::growing::Growing;
use crate::archive::{Backup, BackupName};
use crate::cli::PushArgs;
use crate::destination::{Destination, DestinationError, Destinations, Stored};
use crate::report::{Printer, human_size};

/// What one destination did with the file, for `--json`.
#[derive(Serialize)]
pub struct SentJson {
    pub destination: String,
    pub url: String,
    pub ok: bool,
    pub location: Option<PathBuf>,
    pub sha256: Option<String>,
    pub already_there: bool,
    pub error: Option<String>,
}

#[derive(Serialize)]
struct PushJson<'a> {
    schema_version: u32,
    path: &'a Path,
    bytes: u64,
    destinations: Vec<SentJson>,
}

/// Resolves each `--to` (a name or a URL); a bad one is a usage error, before anything is written.
pub fn resolve_all(
    destinations: &Destinations,
    specs: &[String],
) -> anyhow::Result<Vec<Destination>> {
    let mut out: Vec<Destination> = Vec::new();
    for spec in specs {
        let d = destinations.resolve(spec).map_err(|e| UsageError {
            message: e.to_string(),
            hint: Some("`docker persist destinations` lists the configured ones".to_string()),
        })?;
        if !out.iter().any(|o| o.url() == d.url()) {
            out.push(d);
        }
    }
    Ok(out)
}

/// Sends the complete file `local` to every destination at once; reports each and returns one entry per
/// destination. The local file is never touched.
pub async fn send(
    printer: &Printer,
    dests: &[Destination],
    local: &Path,
) -> Vec<(Destination, Result<Stored, DestinationError>)> {
    for d in dests {
        printer.status(format!("Sending to {}", d.describe()));
    }
    let results = futures_util::future::join_all(
        dests
            .iter()
            .map(|d| async move { (d.clone(), d.put_file(local).await) }),
    )
    .await;
    report(printer, &results);
    results
}

/// Sends the backup file that `growing` follows to every destination while it is written (`backup --to`),
/// each on a task of its own so that no destination slows the backup or another destination. Dropping the
/// returned future (Ctrl-C) stops the tasks, whose uploads are then aborted.
pub async fn send_following(
    printer: &Printer,
    dests: &[Destination],
    growing: Arc<Growing>,
    size_hint: Option<u64>,
) -> Vec<(Destination, Result<Stored, DestinationError>)> {
    for d in dests {
        printer.status(format!(
            "Sending to {} while the backup is written",
            d.describe()
        ));
    }
    let tasks: Vec<_> = dests
        .iter()
        .map(|d| {
            let (d, g) = (d.clone(), growing.clone());
            AbortOnDrop(Some(tokio::spawn(
                async move { d.follow(&g, size_hint).await },
            )))
        })
        .collect();
    let mut results = Vec::new();
    for (d, mut task) in dests.iter().zip(tasks) {
        let result = task.join().await.unwrap_or_else(|e| {
            Err(DestinationError::Failed {
                op: crate::destination::Op::Write,
                destination: d.describe(),
                file: growing.file_name().unwrap_or_else(|| "the backup".into()),
                source: format!("the upload stopped unexpectedly: {e}").into(),
            })
        });
        results.push((d.clone(), result));
    }
    // A backup that failed says so itself; that its destinations got nothing goes without saying.
    let abandoned = matches!(
        growing.snapshot(&mut Default::default()).end,
        Some(crate::archive::growing::End::Abandoned(_))
    );
    if !abandoned {
        report(printer, &results);
    }
    results
}

/// A task that is aborted when this is dropped before it was joined. Its future is then dropped on the
/// runtime a moment later (an upload's guard starts the abort of the upload there): waiting for that is
/// registered as a cleanup, for [`crate::destination::finish_cleanups`].
struct AbortOnDrop<T: Send + 'static>(Option<tokio::task::JoinHandle<T>>);

impl<T: Send + 'static> AbortOnDrop<T> {
    async fn join(&mut self) -> Result<T, tokio::task::JoinError> {
        let Some(handle) = self.0.as_mut() else {
            unreachable!("a task is joined once")
        };
        let joined = handle.await;
        self.0 = None;
        joined
    }
}

impl<T: Send + 'static> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        if let Some(handle) = self.0.take() {
            handle.abort();
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                crate::destination::register_cleanup(rt.spawn(async move {
                    let _ = handle.await;
                }));
            }
        }
    }
}

fn report(printer: &Printer, results: &[(Destination, Result<Stored, DestinationError>)]) {
    for (d, r) in results {
        match r {
            Ok(s) if s.already_there => printer.status(format!(
                "  {} already holds it (SHA-256 {})",
                d.describe(),
                &s.sha256[..12]
            )),
            Ok(s) => printer.status(format!(
                "  stored at `{}` ({}, SHA-256 {})",
                s.location.display(),
                human_size(s.bytes),
                &s.sha256[..12]
            )),
            Err(e) => printer.warn(chain(e)),
        }
    }
}

/// The `--json` form of [`send`]'s results.
pub fn sent_json(results: &[(Destination, Result<Stored, DestinationError>)]) -> Vec<SentJson> {
    results
        .iter()
        .map(|(d, r)| SentJson {
            destination: d.name().to_string(),
            url: d.url().to_string(),
            ok: r.is_ok(),
            location: r.as_ref().ok().map(|s| s.location.clone()),
            sha256: r.as_ref().ok().map(|s| s.sha256.clone()),
            already_there: r.as_ref().is_ok_and(|s| s.already_there),
            error: r.as_ref().err().map(|e| chain(e)),
        })
        .collect()
}

/// Says which destinations failed; the local file is kept.
pub fn failed_note(
    printer: &Printer,
    results: &[(Destination, Result<Stored, DestinationError>)],
    local: &Path,
) -> bool {
    let failed: Vec<String> = results
        .iter()
        .filter(|(_, r)| r.is_err())
        .map(|(d, _)| d.describe())
        .collect();
    if failed.is_empty() {
        return false;
    }
    printer.error(
        &format!("{} of {} destination(s) did not get the backup: {}", failed.len(), results.len(), failed.join(", ")),
        &[],
        &[format!(
            "the local file `{}` is complete and kept; `docker persist push {} --to …` sends it again",
            local.display(),
            local.display()
        )],
    );
    true
}

pub async fn run(session: &Session<'_>, args: &PushArgs) -> anyhow::Result<ExitStatus> {
    let printer = session.printer;
    let project = session.load_project()?;
    let destinations = super::backups::destinations(&args.dir, &project)?;
    let dests = resolve_all(&destinations, &args.to)?;
    let local = locate_local(&args.backup, destinations.local_dir());
    // Only a complete backup is sent: its index and manifest must read.
    let p = local.clone();
    let backup = tokio::task::spawn_blocking(move || Backup::open(&p)).await??;
    let name = local
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    if BackupName::parse(name).is_none() {
        return Err(UsageError {
            message: format!("`{name}` is not named like a backup file (`<project>-<YYYYMMDDTHHMMSSZ>[-<tag>].tar`)"),
            hint: None,
        }
        .into());
    }
    let results = send(printer, &dests, &local).await;
    if printer.json_mode() {
        printer.json(&PushJson {
            schema_version: 1,
            path: &local,
            bytes: backup.file_len(),
            destinations: sent_json(&results),
        })?;
    }
    Ok(if failed_note(printer, &results, &local) {
        ExitStatus::Failure
    } else {
        ExitStatus::Success
    })
}

/// A path as given, else a file name in the backup directory.
fn locate_local(given: &Path, dir: &Path) -> PathBuf {
    if given.exists() || given.components().count() > 1 {
        given.to_path_buf()
    } else {
        dir.join(given)
    }
}

pub fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !s.contains(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        cause = c.source();
    }
    s
}
