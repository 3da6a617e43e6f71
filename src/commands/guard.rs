//! The guard against `docker compose down -v`: `check` (what it would destroy and whether a fresh, verified
//! backup protects each), `down` (Compose's `down`, refused with `-v` while data is unprotected, or after
//! taking the missing backups with `--backup`), and `shell-init` (a shell function that puts `check` in
//! front of the plain `docker compose down -v`).
//!
//! Protection (issue 5, item 1) is decided by [`freshness`], a pure function over the backup's creation
//! time, the manifest's record of how the volume was read, and the run times of every container (of any
//! project) that mounts the volume read-write: a backup protects a volume only if nothing can have written
//! to it since the backup read it.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use serde::Serialize;

use super::backup::{Destination, write_backup};
use super::backups::{age, backup_dir, listing};
use super::compose_cli::ComposeCli;
use super::restore::Refused;
use super::verified::{self, Verified};
use super::{ExitStatus, Session, consistency, plural, quoted};
use crate::archive::{Backup, BackupSummary, VolumeRecord, WriterOptions};
use crate::cli::{CheckArgs, DownArgs, Shell, ShellInitArgs, down_removes_volumes};
use crate::compose::classify::DataKind;
use crate::compose::{Consistency, Tier};
use crate::engine::{ContainerInfo, Engine, RunTimes};
use crate::inventory::{self, DataItem, Inventory};
use crate::report::{Printer, human_size, prompt, table};

/// Version of the `--json` output of `check`.
pub const SCHEMA_VERSION: u32 = 1;

/// A container that mounts a volume read-write, and when it last ran.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Writer {
    pub name: String,
    pub service: Option<String>,
    pub times: RunTimes,
}

/// Whether a backup created at `created` whose record of the volume says it was read with `consistency`
/// while `stopped` (service or container names) were stopped still holds the volume's current content,
/// given its `writers`. `Err` says why not.
///
/// `created` is when the backup began reading the volume: its record's `read_at` (full precision, taken
/// after the services it stopped had stopped), or for files without one the manifest's creation time, in
/// whole seconds rounded down, so it is never later than the moment the volume was read. Per writer:
/// - running now: it can write at any moment;
/// - never started: it never wrote;
/// - stopped at or before `created`: its writes all precede the backup;
/// - started at or after `created`: it ran (and may have written) after the backup began;
/// - running at `created` and stopped since, without starting again: only safe when the backup itself
///   stopped it before reading (`stop` consistency, named in `stopped`); a `live` copy of a running writer
///   is not a consistent backup.
pub fn freshness(
    created: jiff::Timestamp,
    consistency: &str,
    stopped: &[String],
    writers: &[Writer],
) -> Result<(), String> {
    for w in writers {
        let t = &w.times;
        if t.running {
            return Err(format!("`{}` is running and can write to it", w.name));
        }
        let Some(started) = t.started_at else {
            continue;
        };
        let Some(finished) = t.finished_at else {
            return Err(format!(
                "`{}` started and the engine has no record of it stopping",
                w.name
            ));
        };
        if finished <= created {
            continue;
        }
        if started >= created {
            return Err(format!(
                "`{}` ran after the backup was taken (started {})",
                w.name,
                started.strftime("%Y-%m-%d %H:%M:%S UTC")
            ));
        }
        let stopped_by_backup = consistency == Consistency::Stop.as_str()
            && stopped
                .iter()
                .any(|s| Some(s) == w.service.as_ref() || *s == w.name);
        if !stopped_by_backup {
            return Err(format!(
                "`{}` was running while the backup read it ({} copy)",
                w.name,
                if consistency.is_empty() {
                    "live"
                } else {
                    consistency
                }
            ));
        }
    }
    Ok(())
}

/// Whether the content of a volume can differ from a backup's record of it by size: the engine's
/// measure now against the bytes the backup holds.
pub fn size_unchanged(size_now: Option<u64>, held: u64) -> Result<(), String> {
    match size_now {
        Some(now) if now != held => Err(format!(
            "its size changed since the backup ({} now, {} in the backup)",
            human_size(now),
            human_size(held)
        )),
        _ => Ok(()),
    }
}

/// Whether a piece of data is protected against loss.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Protection {
    /// A verified backup holds its current content.
    Protected { backup: PathBuf },
    /// Regenerable or optional: losing it costs time, not data.
    NotNeeded,
    /// Critical or important, and no backup holds its current content.
    Unprotected { why: String },
}

impl Protection {
    pub fn is_protected(&self) -> bool {
        !matches!(self, Protection::Unprotected { .. })
    }

    fn why(&self, tier: Tier) -> String {
        match self {
            Protection::Protected { backup } => format!(
                "verified backup `{}`",
                backup
                    .file_name()
                    .map(|f| f.to_string_lossy().into_owned())
                    .unwrap_or_default()
            ),
            Protection::NotNeeded => format!("{tier}: needs no backup"),
            Protection::Unprotected { why } => why.clone(),
        }
    }
}

/// One piece of data and its protection.
#[derive(Debug, Clone)]
pub struct Assessed<'a> {
    pub item: &'a DataItem,
    pub protection: Protection,
    /// The newest backup holding it, protecting or not.
    pub last_backup: Option<(PathBuf, jiff::Timestamp)>,
}

/// The tiers a guarded `down -v` and a `clean` require a fresh backup for (critical also needs typed
/// confirmation in `clean`).
pub fn needs_protection(tier: Tier) -> bool {
    matches!(tier, Tier::Critical | Tier::Important)
}

/// What `docker compose down -v` would remove: the project's non-external named volumes and the
/// anonymous volumes of its containers, where they exist.
pub fn removed_by_down_v(inventory: &Inventory) -> Vec<&DataItem> {
    inventory
        .items
        .iter()
        .filter(|i| i.removed_by_down_v && i.exists == Some(true) && i.name.is_some())
        .filter(|i| matches!(i.kind, DataKind::Named | DataKind::Anonymous))
        .collect()
}

/// The read-write users of volume `name` (any project, helpers aside) with their run times.
async fn writers(engine: &Engine, name: &str) -> anyhow::Result<Vec<Writer>> {
    let mut out = Vec::new();
    let containers: Vec<ContainerInfo> = engine.containers_using_volume(name).await?;
    for c in containers.into_iter().filter(|c| !c.helper) {
        let writes = c
            .mounts
            .iter()
            .any(|m| m.name.as_deref() == Some(name) && m.read_write);
        if !writes {
            continue;
        }
        // Removed meanwhile: it writes no more.
        let Some(times) = engine.run_times(&c.id).await? else {
            continue;
        };
        out.push(Writer {
            name: c.name,
            service: c.service,
            times,
        });
    }
    Ok(out)
}

/// Assesses `items` against the backups in `backups` (newest first): for each critical or important
/// item, the newest backup that holds its current content and verifies.
pub async fn assess<'a>(
    engine: &Engine,
    printer: &Printer,
    items: &[&'a DataItem],
    backups: &[BackupSummary],
) -> anyhow::Result<Vec<Assessed<'a>>> {
    let mut out = Vec::new();
    let mut verdicts: Vec<(PathBuf, Verified)> = Vec::new();
    for item in items {
        let name = item.name.as_deref().unwrap_or_default();
        let holding: Vec<(&BackupSummary, &VolumeRecord)> = backups
            .iter()
            .filter_map(|b| {
                let r = b.manifest.volume(&item.key)?;
                (r.name == name).then_some((b, r))
            })
            .collect();
        let last_backup = holding.first().map(|(b, _)| (b.path.clone(), b.created()));
        if !needs_protection(item.tier()) {
            out.push(Assessed {
                item,
                protection: Protection::NotNeeded,
                last_backup,
            });
            continue;
        }
        let protection = if holding.is_empty() {
            Protection::Unprotected {
                why: "no backup holds it".to_string(),
            }
        } else {
            let users = writers(engine, name).await?;
            let mut first_reason: Option<String> = None;
            let mut found = None;
            for (b, r) in &holding {
                let read_at = r.read_at.unwrap_or(b.created());
                let fresh = freshness(read_at, &r.consistency, &r.stopped, &users)
                    .and_then(|()| size_unchanged(item.size_bytes, r.file_bytes + r.symlink_bytes));
                if let Err(why) = fresh {
                    first_reason.get_or_insert(why);
                    continue;
                }
                // A container removed since cannot be asked when it ran; the engine's recent events can
                // still tell that it started with the volume.
                if let Some((container, at)) = engine
                    .volume_written_since(name, b.created())
                    .await?
                    .into_iter()
                    .next()
                {
                    first_reason.get_or_insert(format!(
                        "container `{container}` mounted it read-write after the backup ({})",
                        at.strftime("%Y-%m-%d %H:%M:%S UTC")
                    ));
                    continue;
                }
                // A backup at a destination counts once `verify --from` found it intact there; it is not
                // downloaded here.
                if verified::is_remote(&b.path)
                    && verified::recorded(&b.path, &b.manifest).is_none()
                {
                    first_reason.get_or_insert(format!(
                        "`{}` is not verified yet (`docker persist verify --from …` verifies it there)",
                        b.path.display()
                    ));
                    continue;
                }
                let verdict = match verdicts.iter().find(|(p, _)| *p == b.path) {
                    Some((_, v)) => *v,
                    None => {
                        if verified::recorded(&b.path, &b.manifest).is_none() {
                            printer.status(format!(
                                "Verifying `{}` (every checksum; not verified before)",
                                b.path.display()
                            ));
                        }
                        let v = verified::ensure(&b.path, &b.manifest).await?;
                        verdicts.push((b.path.clone(), v));
                        v
                    }
                };
                match verdict {
                    Verified::Ok => {
                        found = Some(b.path.clone());
                        break;
                    }
                    Verified::Failed => {
                        first_reason.get_or_insert(format!(
                            "backup `{}` failed verification",
                            b.path.display()
                        ));
                    }
                }
            }
            match found {
                Some(backup) => Protection::Protected { backup },
                None => Protection::Unprotected {
                    why: format!(
                        "not since its last backup: {}",
                        first_reason.unwrap_or_default()
                    ),
                },
            }
        };
        out.push(Assessed {
            item,
            protection,
            last_backup,
        });
    }
    Ok(out)
}

/// Every backup `check` weighs, newest first: the project's backup directory (`dir`, else `backups/`),
/// then the destinations marked `default: true` (backups there protect data too). A place that cannot be
/// listed is a warning.
pub async fn checked_backups(
    printer: &Printer,
    dir: &Option<PathBuf>,
    project: &crate::compose::Project,
) -> Vec<BackupSummary> {
    let mut backups = project_backups(printer, &backup_dir(dir, &project.directory), &project.name);
    backups.extend(default_destination_backups(printer, dir, project).await);
    backups.sort_by_key(|b| std::cmp::Reverse(b.created()));
    backups
}

/// Whether `check` weighs the backups at `dest`: the project's backup directory and the destinations
/// marked `default: true` (by where they are, whatever name reached them).
pub fn checks_at(
    known: &crate::destination::Destinations,
    dest: &crate::destination::Destination,
) -> bool {
    dest.is_local()
        || dest.url() == known.local().url()
        || known.defaults().iter().any(|d| d.url() == dest.url())
}

/// The backups of the project in `dir`, newest first; unreadable directories are a warning.
pub fn project_backups(printer: &Printer, dir: &Path, project: &str) -> Vec<BackupSummary> {
    match listing(dir, project) {
        Ok(l) => l.backups,
        Err(e) => {
            printer.warn(format!("cannot list the backups: {e:#}"));
            Vec::new()
        }
    }
}

/// The backups of the project at its `default: true` destinations; one that cannot be listed is a warning.
async fn default_destination_backups(
    printer: &Printer,
    dir: &Option<PathBuf>,
    project: &crate::compose::Project,
) -> Vec<BackupSummary> {
    let known = match super::backups::destinations(dir, project) {
        Ok(k) => k,
        Err(e) => {
            printer.warn(format!("{e:#}"));
            return Vec::new();
        }
    };
    let mut out = Vec::new();
    for d in known.defaults() {
        match d.list(&project.name).await {
            Ok(l) => out.extend(l.backups),
            Err(e) => printer.warn(format!("{e:#}")),
        }
    }
    out
}

#[derive(Serialize)]
struct CheckJson<'a> {
    schema_version: u32,
    project: &'a str,
    /// Every critical and important volume `down -v` would remove is protected.
    safe: bool,
    volumes: Vec<CheckItemJson<'a>>,
}

#[derive(Serialize)]
struct CheckItemJson<'a> {
    key: &'a str,
    name: Option<&'a str>,
    kind: DataKind,
    tier: Tier,
    size_bytes: Option<u64>,
    last_backup: Option<LastBackupJson>,
    needs_protection: bool,
    protected: bool,
    /// The backup that protects it.
    protected_by: Option<&'a Path>,
    why: String,
}

#[derive(Serialize)]
struct LastBackupJson {
    path: PathBuf,
    created: String,
}

/// `check`: exit 0 when `down -v` would lose nothing critical or important, 3 when it would.
pub async fn check(session: &Session<'_>, args: &CheckArgs) -> anyhow::Result<ExitStatus> {
    let printer = session.printer;
    let (engine, inventory) = session.inventory().await?;
    let backups = checked_backups(printer, &args.dir, &inventory.project).await;
    let mut items = removed_by_down_v(&inventory);
    items.sort_by_key(|i| i.tier());
    let assessed = assess(&engine, printer, &items, &backups).await?;
    let safe = assessed.iter().all(|a| a.protection.is_protected());
    if printer.json_mode() {
        printer.json(&CheckJson {
            schema_version: SCHEMA_VERSION,
            project: &inventory.project.name,
            safe,
            volumes: assessed.iter().map(check_item_json).collect(),
        })?;
    } else {
        print_assessment(printer, &inventory.project.name, &assessed);
    }
    Ok(if safe {
        ExitStatus::Success
    } else {
        ExitStatus::Refused
    })
}

fn check_item_json<'a>(a: &'a Assessed<'a>) -> CheckItemJson<'a> {
    CheckItemJson {
        key: &a.item.key,
        name: a.item.name.as_deref(),
        kind: a.item.kind,
        tier: a.item.tier(),
        size_bytes: a.item.size_bytes,
        last_backup: a.last_backup.as_ref().map(|(p, t)| LastBackupJson {
            path: p.clone(),
            created: t.to_string(),
        }),
        needs_protection: needs_protection(a.item.tier()),
        protected: a.protection.is_protected(),
        protected_by: match &a.protection {
            Protection::Protected { backup } => Some(backup),
            _ => None,
        },
        why: a.protection.why(a.item.tier()),
    }
}

/// The table of what `down -v` would remove (stdout) and a one-line verdict (stderr).
fn print_assessment(printer: &Printer, project: &str, assessed: &[Assessed<'_>]) {
    if assessed.is_empty() {
        printer.status(format!(
            "`docker compose down -v` would remove no volumes of project `{project}`"
        ));
        return;
    }
    printer.data(assessment_table(printer, assessed));
    let unprotected: Vec<&Assessed<'_>> = assessed
        .iter()
        .filter(|a| !a.protection.is_protected())
        .collect();
    if unprotected.is_empty() {
        printer.status(format!(
            "`docker compose down -v` would remove {}; everything critical and important is protected",
            plural(assessed.len(), "volume")
        ));
    } else {
        printer.status(format!(
            "`docker compose down -v` would lose {}: {}",
            plural(unprotected.len(), "unprotected volume"),
            quoted(unprotected.iter().map(|a| a.item.key.as_str()))
        ));
    }
}

fn assessment_table(printer: &Printer, assessed: &[Assessed<'_>]) -> String {
    let now = jiff::Timestamp::now();
    let rows: Vec<Vec<String>> = assessed
        .iter()
        .map(|a| {
            let protected = match a.protection {
                Protection::Protected { .. } => "yes",
                Protection::NotNeeded => "not needed",
                Protection::Unprotected { .. } => "NO",
            };
            vec![
                a.item.key.clone(),
                a.item.name.clone().unwrap_or_else(|| "-".to_string()),
                printer.tier(a.item.tier()),
                a.item
                    .size_bytes
                    .map(human_size)
                    .unwrap_or_else(|| "-".to_string()),
                a.last_backup
                    .as_ref()
                    .map(|(_, t)| age(now, *t))
                    .unwrap_or_else(|| "never".to_string()),
                protected.to_string(),
                a.protection.why(a.item.tier()),
            ]
        })
        .collect();
    table::render(
        &[
            "KEY",
            "NAME",
            "TIER",
            "SIZE",
            "LAST BACKUP",
            "PROTECTED",
            "WHY",
        ],
        &rows,
    )
}

/// Compose for this project: v1 when its containers were made by v1, else `docker compose`; with the
/// project's name, directory, files and env files, so that Compose sees the same project.
fn compose_for(session: &Session<'_>, inventory: &Inventory) -> anyhow::Result<ComposeCli> {
    let prefer_v1 = inventory.containers.iter().any(|c| {
        c.compose_version
            .as_deref()
            .is_some_and(|v| v.starts_with("1."))
    });
    Ok(
        ComposeCli::find(session.globals, &inventory.project, prefer_v1)?
            .env_files(&session.project_args.env_files),
    )
}

/// `down [ARGS…]`.
pub async fn down(session: &Session<'_>, args: &DownArgs) -> anyhow::Result<ExitStatus> {
    let printer = session.printer;
    let project = session.load_project()?;
    let engine = session.connect().await?;
    if down_removes_volumes(&args.args) {
        session.refuse_if_unresolved(&project.name)?;
    }
    let inventory = inventory::build(project, &engine).await?;
    let compose = compose_for(session, &inventory)?;
    let mut compose_args: Vec<&str> = vec!["down"];
    compose_args.extend(args.args.iter().map(String::as_str));
    if !down_removes_volumes(&args.args) {
        if args.backup {
            printer.status("Without `-v`, `down` removes no volumes: no backup is needed");
        }
        if args.dry_run {
            printer.status(format!(
                "Would run `{}`; no volume would be removed",
                compose.describe(&compose_args)
            ));
            return Ok(ExitStatus::Success);
        }
        compose.run(&compose_args).await?;
        return Ok(ExitStatus::Success);
    }
    for w in &inventory.warnings {
        printer.warn(w);
    }
    let dir = backup_dir(&args.dir, &inventory.project.directory);
    let backups = project_backups(printer, &dir, &inventory.project.name);
    let items = removed_by_down_v(&inventory);
    let assessed = assess(&engine, printer, &items, &backups).await?;
    let unprotected: Vec<&Assessed<'_>> = assessed
        .iter()
        .filter(|a| !a.protection.is_protected())
        .collect();
    let removed = quoted(assessed.iter().map(|a| a.item.key.as_str()));
    if unprotected.is_empty() {
        if args.dry_run {
            printer.data(assessment_table(printer, &assessed));
            printer.status(format!(
                "Would run `{}`: every critical and important volume is protected",
                compose.describe(&compose_args)
            ));
            return Ok(ExitStatus::Success);
        }
        if !assessed.is_empty() {
            printer.status(format!(
                "Every critical and important volume is protected; removing {removed}"
            ));
        }
        compose.run(&compose_args).await?;
        return Ok(ExitStatus::Success);
    }
    let lost: Vec<String> = unprotected
        .iter()
        .map(|a| {
            format!(
                "`{}` ({}, {}): {}",
                a.item.key,
                a.item.tier(),
                a.item
                    .size_bytes
                    .map(human_size)
                    .unwrap_or_else(|| "size unknown".to_string()),
                a.protection.why(a.item.tier())
            )
        })
        .collect();

    if args.backup {
        return down_with_backup(session, &engine, &inventory, &compose, args, &unprotected).await;
    }
    if args.force {
        if args.dry_run {
            printer.status(format!(
                "Would run `{}` after confirmation, losing:\n  {}",
                compose.describe(&compose_args),
                lost.join("\n  ")
            ));
            return Ok(ExitStatus::Success);
        }
        for l in &lost {
            printer.warn(format!("will be lost: {l}"));
        }
        if !args.yes {
            if !prompt::interactive() {
                bail!(Refused {
                    message: format!(
                        "refusing `down -v --force` without confirmation: it would lose {}",
                        plural(lost.len(), "unprotected volume")
                    ),
                    hint: "run it in a terminal to confirm, pass `--yes` as well, or `--backup` to back them up first"
                        .to_string(),
                });
            }
            let typed = prompt::type_to_confirm(
                &format!(
                    "This deletes {} for good. Type the project name `{}` to go on",
                    plural(lost.len(), "unprotected volume"),
                    inventory.project.name
                ),
                &inventory.project.name,
            )?;
            if !typed {
                printer.status("Nothing was removed");
                return Ok(ExitStatus::Refused);
            }
        }
        compose.run(&compose_args).await?;
        return Ok(ExitStatus::Success);
    }
    for l in &lost {
        printer.status(format!("  would be lost: {l}"));
    }
    bail!(Refused {
        message: format!(
            "refusing `docker compose down -v`: it would lose {} ({}); nothing was removed",
            plural(unprotected.len(), "unprotected volume"),
            quoted(unprotected.iter().map(|a| a.item.key.as_str()))
        ),
        hint: "`docker persist down --backup -v` backs them up first (services stopped), then removes them; `--force` removes them anyway"
            .to_string(),
    })
}

/// `down --backup -v`: stop the services, back up and verify what is unprotected, check again, then
/// `down -v`. Until `down` runs, every failure leaves the volumes and starts the services again.
async fn down_with_backup(
    session: &Session<'_>,
    engine: &Engine,
    inventory: &Inventory,
    compose: &ComposeCli,
    args: &DownArgs,
    unprotected: &[&Assessed<'_>],
) -> anyhow::Result<ExitStatus> {
    let printer = session.printer;
    let project = &inventory.project;
    let items: Vec<&DataItem> = unprotected.iter().map(|a| a.item).collect();
    let mut running: Vec<ContainerInfo> = inventory
        .containers
        .iter()
        .filter(|c| c.is_running() && !c.helper)
        .cloned()
        .collect();
    consistency::sort_for_start(&mut running, &consistency::start_order(project));
    let dir = backup_dir(&args.dir, &project.directory);
    let mut compose_args: Vec<&str> = vec!["down"];
    compose_args.extend(args.args.iter().map(String::as_str));
    if args.dry_run {
        printer.status(format!(
            "Would stop {}, back up {} into `{}` and verify the backup, then run `{}`",
            if running.is_empty() {
                "nothing (no service runs)".to_string()
            } else {
                quoted(running.iter().map(|c| c.name.as_str()))
            },
            quoted(items.iter().map(|i| i.key.as_str())),
            dir.display(),
            compose.describe(&compose_args)
        ));
        return Ok(ExitStatus::Success);
    }
    consistency::stop_saying(session, engine, project, &running).await?;
    // Backup times are whole seconds rounded down: start in the next second, so that the backup is
    // visibly taken after every stop.
    let into_second = u64::from(jiff::Timestamp::now().subsec_nanosecond().unsigned_abs());
    tokio::time::sleep(std::time::Duration::from_nanos(
        1_000_000_000 - into_second.min(999_999_999) + 1_000_000,
    ))
    .await;
    let fast = crate::fastpath::select(engine, printer, None).await?;
    let (finished, _) = write_backup(
        session,
        engine,
        project,
        &items,
        &Destination {
            dir: &dir,
            tag: Some("pre-down"),
            options: WriterOptions::auto(),
            fast: fast.as_ref(),
            consistency: Some(Consistency::Stop),
            // The services are stopped: hooks, which run inside them, have nothing to run in.
            hooks: false,
            follow: None,
        },
    )
    .await
    .context("the backup before `down -v` failed; nothing was removed")?;
    session.note_on_interrupt(format!(
        "the backup `{}` was written; nothing was removed",
        finished.path.display()
    ));
    printer.status(format!("Verifying `{}`", finished.path.display()));
    let p = finished.path.clone();
    let report =
        tokio::task::spawn_blocking(move || Backup::open(&p).and_then(|b| b.verify())).await??;
    let _ = verified::record(&finished.path, &finished.manifest, report.is_ok());
    if !report.is_ok() {
        bail!(
            "the backup `{}` did not verify ({}); nothing was removed",
            finished.path.display(),
            plural(report.problems.len(), "problem")
        );
    }
    // The same rule as `check`, on the state after the backup.
    let after = inventory::build(project.clone(), engine).await?;
    let backups = project_backups(printer, &dir, &project.name);
    let still: Vec<String> = assess(engine, printer, &removed_by_down_v(&after), &backups)
        .await?
        .into_iter()
        .filter(|a| !a.protection.is_protected())
        .map(|a| format!("`{}`: {}", a.item.key, a.protection.why(a.item.tier())))
        .collect();
    if !still.is_empty() {
        bail!(Refused {
            message: format!(
                "still unprotected after the backup, so nothing was removed: {}",
                still.join("; ")
            ),
            hint: "stop what else uses these volumes (`docker persist inspect VOLUME` names it), then try again"
                .to_string(),
        });
    }
    printer.status(format!(
        "Backed up and verified {} in `{}`; running `down -v`",
        plural(items.len(), "volume"),
        finished.path.display()
    ));
    // Once begun, a killed `down` is finished: the backup is verified and the user asked for it.
    let step = session.step_begin(
        project,
        crate::intent::Step::ComposeDown {
            args: args.args.clone(),
            backup: finished.path.clone(),
        },
    )?;
    let result = compose.run(&compose_args).await;
    if result.is_ok() {
        session.step_mark(step, crate::intent::StepState::Done);
        // `down` removed the containers: there is nothing left to start.
        for c in &running {
            session.forget_restart(&c.id);
            session.journal_started(&c.id);
        }
    }
    result?;
    printer.status(format!(
        "`docker persist restore {}` brings the data back",
        finished.path.display()
    ));
    Ok(ExitStatus::Success)
}

/// `shell-init SHELL`: prints the guard function.
pub fn shell_init(printer: &Printer, args: &ShellInitArgs) -> anyhow::Result<ExitStatus> {
    printer.data(match args.shell {
        Shell::Bash | Shell::Zsh => POSIX_GUARD,
        Shell::Fish => FISH_GUARD,
    });
    Ok(ExitStatus::Success)
}

/// The guard for bash and zsh. `docker [GLOBALS] compose [OPTIONS] down … -v` and `docker-compose [OPTIONS]
/// down … -v` run `docker [GLOBALS] persist [PROJECT OPTIONS] check` first and stop there when it does not
/// succeed; every other command goes straight through.
pub const POSIX_GUARD: &str = r#"# docker persist guard: `docker compose down -v` and `docker-compose down -v` run
# `docker persist check` first. Add to ~/.bashrc or ~/.zshrc: eval "$(docker persist shell-init bash)"
__docker_persist_guard() {
  # $1: the word before the Compose arguments (`compose` or `docker-compose`), then the Docker
  # globals count, the globals, and the Compose arguments.
  local kind="$1" nglobals="$2"; shift 2
  local -a globals project
  globals=()
  project=()
  while [ "$nglobals" -gt 0 ]; do globals+=("$1"); shift; nglobals=$((nglobals - 1)); done
  local sub=""
  while [ $# -gt 0 ]; do
    case "$1" in
      -f|--file|-p|--project-name|--project-directory|--env-file)
        [ $# -ge 2 ] || break
        project+=("$1" "$2"); shift 2 ;;
      --file=*|--project-name=*|--project-directory=*|--env-file=*|-f?*|-p?*)
        project+=("$1"); shift ;;
      --profile|--ansi|--progress|--parallel|-c|--context|-H|--host|--log-level|--tlscacert|--tlscert|--tlskey)
        shift 2 ;;
      -*) shift ;;
      *) sub="$1"; shift; break ;;
    esac
  done
  [ "$sub" = down ] || return 0
  local volumes=0
  while [ $# -gt 0 ]; do
    case "$1" in
      --) break ;;
      --volumes|--volumes=true|--volumes=1) volumes=1 ;;
      --volumes=*) volumes=0 ;;
      --rmi|--timeout|-t) shift ;;
      --*) ;;
      -*) case "${1%%t*}" in *v*) volumes=1 ;; esac
          case "$1" in *t) shift ;; esac ;;
    esac
    [ $# -gt 0 ] && shift
  done
  [ "$volumes" = 1 ] || return 0
  command docker "${globals[@]}" persist "${project[@]}" check >&2
  local rc=$?
  [ "$rc" = 0 ] && return 0
  if [ "$rc" = 3 ]; then
    echo "docker persist: refusing \`$kind down -v\`: the data above is not protected by a fresh backup" >&2
  else
    echo "docker persist: \`docker persist check\` failed (exit $rc), so \`$kind down -v\` did not run" >&2
  fi
  echo "hint: \`docker persist down --backup -v\` backs it up first; \`command $kind …\` skips this guard" >&2
  return 3
}
docker() {
  local -a globals rest
  globals=()
  rest=("$@")
  while [ ${#rest[@]} -gt 0 ]; do
    case "${rest[@]:0:1}" in
      -H|--host|-c|--context|--config|-l|--log-level|--tlscacert|--tlscert|--tlskey)
        globals+=("${rest[@]:0:2}"); rest=("${rest[@]:2}") ;;
      -*) globals+=("${rest[@]:0:1}"); rest=("${rest[@]:1}") ;;
      *) break ;;
    esac
  done
  local sub="${rest[@]:0:1}"
  if [ "$sub" = compose ]; then
    __docker_persist_guard "docker compose" "${#globals[@]}" "${globals[@]}" "${rest[@]:1}" || return $?
  fi
  command docker "$@"
}
docker-compose() {
  __docker_persist_guard docker-compose 0 "$@" || return $?
  command docker-compose "$@"
}
"#;

/// The guard for fish, the same logic as [`POSIX_GUARD`].
pub const FISH_GUARD: &str = r#"# docker persist guard: `docker compose down -v` and `docker-compose down -v` run
# `docker persist check` first. Add to ~/.config/fish/config.fish: docker persist shell-init fish | source
function __docker_persist_guard
    set -l kind $argv[1]
    set -l nglobals $argv[2]
    # Reverse ranges run backwards in fish: shift elements off instead of slicing.
    set -l args $argv
    set -e args[1..2]
    set -l globals
    for i in (seq $nglobals)
        set globals $globals $args[1]
        set -e args[1]
    end
    set -l project
    set -l sub ""
    while test (count $args) -gt 0
        switch $args[1]
            case -f --file -p --project-name --project-directory --env-file
                test (count $args) -ge 2; or break
                set project $project $args[1..2]
                set -e args[1..2]
            case '--file=*' '--project-name=*' '--project-directory=*' '--env-file=*' '-f?*' '-p?*'
                set project $project $args[1]
                set -e args[1]
            case --profile --ansi --progress --parallel -c --context -H --host --log-level --tlscacert --tlscert --tlskey
                set -e args[1..2]
            case '-*'
                set -e args[1]
            case '*'
                set sub $args[1]
                set -e args[1]
                break
        end
    end
    test "$sub" = down; or return 0
    set -l volumes 0
    while test (count $args) -gt 0
        switch $args[1]
            case --
                break
            case --volumes --volumes=true --volumes=1
                set volumes 1
            case '--volumes=*'
                set volumes 0
            case --rmi --timeout -t
                set -e args[1]
            case '--*'
            case '-*'
                set -l before (string split -m1 t -- $args[1])[1]
                string match -q '*v*' -- $before; and set volumes 1
                string match -q '*t' -- $args[1]; and set -e args[1]
        end
        test (count $args) -gt 0; and set -e args[1]
    end
    test $volumes = 1; or return 0
    command docker $globals persist $project check >&2
    set -l rc $status
    test $rc = 0; and return 0
    if test $rc = 3
        echo "docker persist: refusing `$kind down -v`: the data above is not protected by a fresh backup" >&2
    else
        echo "docker persist: `docker persist check` failed (exit $rc), so `$kind down -v` did not run" >&2
    end
    echo "hint: `docker persist down --backup -v` backs it up first; `command $kind …` skips this guard" >&2
    return 3
end
function docker --wraps docker
    set -l i 1
    while test $i -le (count $argv)
        switch $argv[$i]
            case -H --host -c --context --config -l --log-level --tlscacert --tlscert --tlskey
                set i (math $i + 2)
            case '-*'
                set i (math $i + 1)
            case '*'
                break
        end
    end
    if test $i -le (count $argv); and test $argv[$i] = compose
        set -l globals
        test $i -gt 1; and set globals $argv[1..(math $i - 1)]
        set -l rest $argv
        set -e rest[1..$i]
        __docker_persist_guard "docker compose" (count $globals) $globals $rest; or return $status
    end
    command docker $argv
end
function docker-compose --wraps docker-compose
    __docker_persist_guard docker-compose 0 $argv; or return $status
    command docker-compose $argv
end
"#;

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> jiff::Timestamp {
        jiff::Timestamp::from_second(1_800_000_000 + s).unwrap()
    }

    fn w(running: bool, started: Option<i64>, finished: Option<i64>) -> Writer {
        Writer {
            name: "app-db-1".into(),
            service: Some("db".into()),
            times: RunTimes {
                running,
                started_at: started.map(t),
                finished_at: finished.map(t),
            },
        }
    }

    const BACKUP: i64 = 100;

    fn fresh(consistency: &str, stopped: &[&str], writers: &[Writer]) -> Result<(), String> {
        let stopped: Vec<String> = stopped.iter().map(|s| s.to_string()).collect();
        freshness(t(BACKUP), consistency, &stopped, writers)
    }

    #[test]
    fn no_writers_is_fresh() {
        assert_eq!(fresh("live", &[], &[]), Ok(()));
    }

    #[test]
    fn a_running_writer_breaks_protection() {
        let e = fresh("stop", &["db"], &[w(true, Some(10), None)]).unwrap_err();
        assert!(e.contains("is running"), "{e}");
    }

    #[test]
    fn a_writer_stopped_before_the_backup_keeps_it_fresh() {
        assert_eq!(fresh("live", &[], &[w(false, Some(10), Some(50))]), Ok(()));
        // Stopped in the very second the backup's time is rounded down to.
        assert_eq!(
            fresh("live", &[], &[w(false, Some(10), Some(BACKUP))]),
            Ok(())
        );
    }

    #[test]
    fn a_writer_stopped_within_the_second_before_the_read_keeps_it_fresh() {
        // Stopped at .3 s, read from .6 s: the whole second the file name shows would call it running.
        let ms = |s: i64, ms: i64| t(s) + jiff::SignedDuration::from_millis(ms);
        let writer = Writer {
            times: RunTimes {
                running: false,
                started_at: Some(t(10)),
                finished_at: Some(ms(BACKUP, 300)),
            },
            ..w(false, None, None)
        };
        let writers = [writer];
        assert_eq!(freshness(ms(BACKUP, 600), "stop", &[], &writers), Ok(()));
        let e = freshness(t(BACKUP), "stop", &[], &writers).unwrap_err();
        assert!(e.contains("was running while the backup read it"), "{e}");
    }

    #[test]
    fn a_writer_that_never_started_never_wrote() {
        assert_eq!(fresh("live", &[], &[w(false, None, None)]), Ok(()));
    }

    #[test]
    fn a_writer_restarted_after_the_backup_breaks_protection() {
        // The backup stopped it and started it again; it has been stopped since.
        let e = fresh(
            "stop",
            &["db"],
            &[w(false, Some(BACKUP + 5), Some(BACKUP + 60))],
        )
        .unwrap_err();
        assert!(e.contains("ran after the backup"), "{e}");
        // Started in the backup's own second: it may have run after the read.
        assert!(
            fresh(
                "stop",
                &["db"],
                &[w(false, Some(BACKUP), Some(BACKUP + 60))]
            )
            .is_err()
        );
    }

    #[test]
    fn a_writer_the_backup_stopped_and_nobody_started_keeps_it_fresh() {
        assert_eq!(
            fresh("stop", &["db"], &[w(false, Some(10), Some(BACKUP + 2))]),
            Ok(())
        );
        // Named by container instead of service (outside Compose).
        let mut x = w(false, Some(10), Some(BACKUP + 2));
        x.service = None;
        assert_eq!(fresh("stop", &["app-db-1"], &[x]), Ok(()));
    }

    #[test]
    fn a_live_copy_of_a_running_writer_does_not_protect() {
        let e = fresh("live", &[], &[w(false, Some(10), Some(BACKUP + 2))]).unwrap_err();
        assert!(
            e.contains("running while the backup read it (live copy)"),
            "{e}"
        );
        // `stop` consistency that did not stop this writer does not protect either.
        assert!(fresh("stop", &["web"], &[w(false, Some(10), Some(BACKUP + 2))]).is_err());
    }

    #[test]
    fn a_writer_with_no_stop_record_is_not_trusted() {
        assert!(fresh("stop", &["db"], &[w(false, Some(10), None)]).is_err());
    }

    #[test]
    fn every_writer_counts() {
        let ok = w(false, Some(10), Some(50));
        let mut bad = w(true, Some(10), None);
        bad.name = "other-project-worker-1".into();
        bad.service = Some("worker".into());
        let e = fresh("stop", &["db"], &[ok, bad]).unwrap_err();
        assert!(e.contains("other-project-worker-1"), "{e}");
    }

    #[test]
    fn a_size_change_breaks_protection() {
        assert_eq!(size_unchanged(Some(105), 105), Ok(()));
        assert_eq!(size_unchanged(None, 105), Ok(()));
        assert!(size_unchanged(Some(106), 105).is_err());
    }
}
