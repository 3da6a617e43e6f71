//! `backups`: the project's backup files, newest first. A file without a valid manifest (an unfinished
//! `.partial`, a damaged file) is never listed as a backup.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::verified::{Verified, recorded};
use super::{ExitStatus, Session};
use crate::archive::{Backup, BackupListing};
use crate::cli::BackupsArgs;
use crate::destination::local::DirDestination;
use crate::destination::{Destination, Destinations};
use crate::report::{human_size, table};

#[derive(Serialize)]
struct BackupsJson<'a> {
    schema_version: u32,
    project: &'a str,
    dir: &'a Path,
    backups: Vec<BackupJson<'a>>,
}

#[derive(Serialize)]
struct BackupJson<'a> {
    path: &'a Path,
    created: String,
    tag: Option<&'a str>,
    bytes: u64,
    volumes: Vec<&'a str>,
    /// `true`: a verification found it intact; `false`: damaged; `null`: not verified yet (or changed since).
    verified: Option<bool>,
}

/// The backup directory of a command (the destination `local`): `--dir`, else `backups` in the project
/// directory.
pub fn backup_dir(dir: &Option<PathBuf>, project_dir: &Path) -> PathBuf {
    dir.clone().unwrap_or_else(|| project_dir.join("backups"))
}

/// The destinations of `project`: `local` (`--dir`, else `backups/`) and `x-persist.destinations`.
pub fn destinations(
    dir: &Option<PathBuf>,
    project: &crate::compose::Project,
) -> anyhow::Result<Destinations> {
    Ok(Destinations::from_config(
        &project.persist,
        backup_dir(dir, &project.directory),
        &project.directory,
    )?)
}

/// The destination of `--from`, when given (a name or a URL); `None` reads the local directory.
pub fn from_destination(
    dir: &Option<PathBuf>,
    project: &crate::compose::Project,
    from: &Option<String>,
) -> anyhow::Result<Option<Destination>> {
    match from {
        None => Ok(None),
        Some(spec) => {
            let known = destinations(dir, project)?;
            Ok(Some(
                super::push::resolve_all(&known, std::slice::from_ref(spec))?.remove(0),
            ))
        }
    }
}

/// Opens the backup at `path`: a local file, or, with a destination, the file of that name there (read by
/// ranges, not copied).
pub async fn open_backup(from: Option<&Destination>, path: &Path) -> anyhow::Result<Backup> {
    match from {
        Some(d) if d.dir().is_none() => {
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            Ok(d.open(name).await?)
        }
        _ => {
            let p = path.to_path_buf();
            Ok(tokio::task::spawn_blocking(move || Backup::open(&p)).await??)
        }
    }
}

/// Where `BACKUP` is: as given locally; at a destination, the file of that name there.
pub fn locate_backup(from: Option<&Destination>, given: &Path) -> PathBuf {
    match from {
        None => given.to_path_buf(),
        Some(d) => d.locate(
            given
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default(),
        ),
    }
}

/// The project's backups in the local directory `dir`, newest first (the destination `local`'s listing,
/// read synchronously: a directory needs no network).
pub fn listing(dir: &Path, project: &str) -> anyhow::Result<BackupListing> {
    Ok(DirDestination::new(dir.to_path_buf()).list(project)?)
}

pub async fn run(session: &Session<'_>, args: &BackupsArgs) -> anyhow::Result<ExitStatus> {
    let printer = session.printer;
    let project = session.load_project()?;
    let destinations = destinations(&args.dir, &project)?;
    let from = match &args.from {
        Some(spec) => {
            super::push::resolve_all(&destinations, std::slice::from_ref(spec))?.remove(0)
        }
        None => destinations.local(),
    };
    let place = from
        .dir()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(from.url().to_string()));
    let dir = place.as_path();
    let listing = from.list(&project.name).await?;
    for s in &listing.skipped {
        printer.verbose(format!(
            "not a backup: `{}`: {}",
            s.path.display(),
            s.reason
        ));
    }
    if printer.json_mode() {
        printer.json(&BackupsJson {
            schema_version: 1,
            project: &project.name,
            dir,
            backups: listing
                .backups
                .iter()
                .map(|b| BackupJson {
                    path: &b.path,
                    created: b.created().to_string(),
                    tag: b.tag(),
                    bytes: b.bytes,
                    volumes: b.manifest.keys().collect(),
                    verified: recorded(&b.path, &b.manifest).map(|v| v == Verified::Ok),
                })
                .collect(),
        })?;
        return Ok(ExitStatus::Success);
    }
    if listing.backups.is_empty() {
        printer.status(format!(
            "No backups of project `{}` in `{}`",
            project.name,
            dir.display()
        ));
        skipped_note(printer, &listing, dir);
        return Ok(ExitStatus::Success);
    }
    let now = jiff::Timestamp::now();
    let rows: Vec<Vec<String>> = listing
        .backups
        .iter()
        .map(|b| {
            vec![
                b.created().strftime("%Y-%m-%d %H:%M:%S UTC").to_string(),
                age(now, b.created()),
                b.tag().unwrap_or("-").to_string(),
                human_size(b.bytes),
                match recorded(&b.path, &b.manifest) {
                    Some(Verified::Ok) => "yes",
                    Some(Verified::Failed) => "FAILED",
                    None => "no",
                }
                .to_string(),
                b.manifest.keys().collect::<Vec<_>>().join(", "),
                b.path.display().to_string(),
            ]
        })
        .collect();
    printer.data(table::render(
        &[
            "CREATED", "AGE", "TAG", "SIZE", "VERIFIED", "VOLUMES", "FILE",
        ],
        &rows,
    ));
    skipped_note(printer, &listing, dir);
    Ok(ExitStatus::Success)
}

/// Says how many files that look like backups by name are not (unfinished `.partial`, damaged).
fn skipped_note(printer: &crate::report::Printer, listing: &BackupListing, dir: &Path) {
    if !listing.skipped.is_empty() {
        printer.status(format!(
            "{} file(s) in `{}` are not complete backups (`--verbose` names them)",
            listing.skipped.len(),
            dir.display()
        ));
    }
}

/// `12 seconds ago`, `3 minutes ago`, `5 hours ago`, `2 days ago`.
pub fn age(now: jiff::Timestamp, then: jiff::Timestamp) -> String {
    let secs = now.as_second().saturating_sub(then.as_second()).max(0);
    let (n, unit) = match secs {
        0..60 => (secs, "second"),
        60..3600 => (secs / 60, "minute"),
        3600..86400 => (secs / 3600, "hour"),
        _ => (secs / 86400, "day"),
    };
    format!("{n} {unit}{} ago", if n == 1 { "" } else { "s" })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_naturally() {
        let t = |s: i64| jiff::Timestamp::from_second(s).unwrap();
        assert_eq!(age(t(100), t(99)), "1 second ago");
        assert_eq!(age(t(4000), t(400)), "1 hour ago");
        assert_eq!(age(t(200_000), t(0)), "2 days ago");
        assert_eq!(age(t(0), t(10)), "0 seconds ago");
    }
}
