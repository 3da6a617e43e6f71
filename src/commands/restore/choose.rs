//! Which backup a restore reads (the file named, or the newest one that is not a safety copy) and which of
//! its records it restores.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::bail;

use crate::archive::VolumeRecord;
use crate::cli::RestoreArgs;
use crate::commands::{UsageError, quoted};
use crate::report::{Printer, prompt};

use super::Refused;

/// Tags of the copies a command takes of data it is about to replace.
const SAFETY_TAGS: [&str; 2] = ["pre-restore", "pre-rollback"];
/// The backup file (when the first argument names one) and the volume arguments.
pub(super) fn split_args(args: &[String]) -> (Option<PathBuf>, Vec<String>) {
    match args.first() {
        Some(first) if first.ends_with(".tar") || Path::new(first).is_file() => {
            (Some(PathBuf::from(first)), args[1..].to_vec())
        }
        _ => (None, args.to_vec()),
    }
}

/// Without a backup named: pick one on a terminal; off a terminal the newest (safety copies aside, unless
/// there is nothing else), only with `--yes`.
pub(super) fn choose_backup(
    printer: &Printer,
    backups: Vec<crate::archive::BackupSummary>,
    place: &str,
    project: &str,
    yes: bool,
) -> anyhow::Result<PathBuf> {
    if backups.is_empty() {
        bail!(UsageError {
            message: format!("project `{project}` has no backups in `{place}`"),
            hint: Some("name a backup file, or `--dir` where they are".to_string()),
        });
    }
    // The newest backup that is not a safety copy: restoring a `pre-restore` copy by default would undo
    // the last restore, which nobody means by "the newest backup". They stay available by name.
    let newest = backups
        .iter()
        .find(|b| !b.tag().is_some_and(|t| SAFETY_TAGS.contains(&t)))
        .unwrap_or(&backups[0]);
    if yes {
        printer.status(format!(
            "Using the newest backup, `{}`",
            newest.path.display()
        ));
        return Ok(newest.path.clone());
    }
    if !prompt::interactive() {
        return Err(Refused {
            message: format!("no backup named; the newest is `{}`", newest.path.display()),
            hint: "name the backup file, or pass `--yes` to restore the newest".to_string(),
        }
        .into());
    }
    let now = jiff::Timestamp::now();
    let items: Vec<String> = backups
        .iter()
        .map(|b| {
            format!(
                "{}  {}  {}  {}",
                b.created().strftime("%Y-%m-%d %H:%M:%S"),
                crate::commands::backups::age(now, b.created()),
                b.tag().unwrap_or("-"),
                b.manifest.keys().collect::<Vec<_>>().join(", ")
            )
        })
        .collect();
    match prompt::select("Restore from which backup?", &items)? {
        Some(i) => Ok(backups[i].path.clone()),
        None => bail!(Refused {
            message: "no backup chosen; nothing was changed".to_string(),
            hint: "name the backup file on the command line".to_string(),
        }),
    }
}

/// The manifest records to restore: the named ones, else those of the given tiers, else all.
pub(super) fn select_records(
    all: &[VolumeRecord],
    wanted: &[String],
    args: &RestoreArgs,
    allow_empty: bool,
) -> anyhow::Result<Vec<VolumeRecord>> {
    let mut out = Vec::new();
    if !wanted.is_empty() {
        let mut seen = BTreeSet::new();
        for w in wanted {
            let r = all
                .iter()
                .find(|r| &r.key == w || &r.name == w)
                .ok_or_else(|| UsageError {
                    message: format!("the backup holds no volume `{w}`"),
                    hint: Some(format!(
                        "it holds: {}",
                        quoted(all.iter().map(|r| r.key.as_str()))
                    )),
                })?;
            if seen.insert(r.key.clone()) {
                out.push(r.clone());
            }
        }
    } else {
        out = all
            .iter()
            .filter(|r| args.tiers.is_empty() || args.tiers.contains(&r.tier))
            .cloned()
            .collect();
    }
    if out.is_empty() && !allow_empty {
        bail!(UsageError {
            message: "nothing to restore: no volume of the backup is selected".to_string(),
            hint: None,
        });
    }
    Ok(out)
}
