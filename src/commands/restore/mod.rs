//! `restore [BACKUP] [VOLUME…]`: puts volumes and bind mounts back from a backup file, bit for bit.
//!
//! Order, so that nothing is lost: verify the members it needs (a damaged backup changes nothing); show
//! what will be replaced and get a confirmation; take a safety backup (tag `pre-restore`) of data it
//! replaces; stop the containers that use it; recreate each volume with its name, driver, options and
//! labels (containers that still reference it are removed first, and Compose recreates them); stream the
//! decoded tar into the engine; compare the content digest; bring back what was running.
//!
//! Here: the plan, the confirmation and the order of the steps; `choose.rs` picks the backup and its
//! records; `data.rs` writes one volume or directory from its member and checks its digest.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context as _, bail};
use futures_util::TryStreamExt;
use serde::Serialize;

use super::backup::{Destination, write_backup};
use super::backups::{backup_dir, listing};
use super::compose_cli::ComposeCli;
use super::restore_dump;
use super::verify::problem_text;
use super::{ExitStatus, Session, UsageError, plural, quoted};
use crate::archive::{VolumeRecord, digest::has_more_entries_than};
use crate::cli::RestoreArgs;
use crate::compose::classify::DataKind;
use crate::engine::helper::HelperMount;
use crate::engine::{ContainerInfo, Engine};
use crate::fastpath::{self};
use crate::intent::{Step, StepState};
use crate::inventory::{self, DataItem, bind_mounts};
use crate::report::{Printer, human_size, prompt};

mod choose;
mod data;

use choose::{choose_backup, select_records, split_args};
pub(crate) use data::put_back;
pub use data::restore_into_scratch;
use data::restore_one;

/// The refusal when a confirmation is needed and cannot be asked.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Refused {
    pub message: String,
    pub hint: String,
}

/// One volume or bind mount to restore.
#[derive(Debug)]
struct Target {
    record: VolumeRecord,
    /// Engine volume name or host path to restore into.
    name: String,
    kind: DataKind,
    /// The volume as it is now, when it exists.
    existing: Option<crate::engine::VolumeInfo>,
    /// Whether there is data now that the restore replaces.
    has_data: bool,
    /// Containers that use it now (any project), running or not.
    containers: Vec<ContainerInfo>,
}

impl Target {
    fn is_bind(&self) -> bool {
        self.kind == DataKind::Bind
    }

    /// A volume that does not exist yet: its member is verified as it streams in, and the volume is
    /// removed again when that fails, so a damaged backup still changes nothing.
    fn verified_as_it_streams(&self) -> bool {
        !self.is_bind() && self.existing.is_none()
    }
}

#[derive(Serialize)]
struct RestoreJson<'a> {
    schema_version: u32,
    backup: &'a Path,
    safety_backup: Option<&'a Path>,
    dry_run: bool,
    volumes: Vec<RestoredJson<'a>>,
    /// Volumes loaded back from logical dumps.
    dumps: Vec<super::restore_dump::DumpJson<'a>>,
}

#[derive(Serialize)]
struct RestoredJson<'a> {
    key: &'a str,
    name: &'a str,
    replaced_data: bool,
    content_digest: String,
}

pub async fn run(session: &Session<'_>, args: &RestoreArgs) -> anyhow::Result<ExitStatus> {
    let printer = session.printer;
    let project = session.load_project()?;
    let dir = backup_dir(&args.dir, &project.directory);

    // Which backup, which volumes.
    let (explicit, wanted) = split_args(&args.args);
    let from = super::backups::from_destination(&args.dir, &project, &args.from)?;
    let path = match (explicit, &from) {
        (Some(p), _) => super::backups::locate_backup(from.as_ref(), &p),
        (None, Some(d)) => choose_backup(
            printer,
            d.list(&project.name).await?.backups,
            &d.url().to_string(),
            &project.name,
            args.yes,
        )?,
        (None, None) => choose_backup(
            printer,
            listing(&dir, &project.name)?.backups,
            &dir.display().to_string(),
            &project.name,
            args.yes,
        )?,
    };
    session.record(|r| r.backup = Some(path.clone()));
    // From a destination the file is read by ranges as the restore goes, never copied first.
    let keys = crate::encryption::load_keys(&args.keys)?;
    let mut opened = super::backups::open_backup(from.as_ref(), &path).await?;
    let backup = Arc::new(
        tokio::task::spawn_blocking(move || opened.unlock(&keys).map(|()| opened)).await??,
    );
    let (dump_records, tree_wanted) =
        restore_dump::select(&backup.manifest().dumps, &wanted, &args.tiers);
    let records = if !wanted.is_empty() && tree_wanted.is_empty() {
        Vec::new()
    } else {
        select_records(
            backup.manifest().volumes.as_slice(),
            &tree_wanted,
            args,
            !dump_records.is_empty(),
        )?
    };
    if args.as_name.is_some() && !dump_records.is_empty() {
        bail!(UsageError {
            message: format!(
                "{} backed up as a dump; `--as` restores files into a new volume",
                quoted(dump_records.iter().map(|d| d.key.as_str()))
            ),
            hint: Some("restore the dump into its service without `--as`".to_string()),
        });
    }
    if args.as_name.is_some() && records.len() != 1 {
        bail!(UsageError {
            message: format!(
                "`--as` restores one volume, and {} are selected",
                records.len()
            ),
            hint: Some("name the volume to restore after the backup file".to_string()),
        });
    }
    if args.as_name.is_some() && records[0].kind == DataKind::Bind {
        bail!(UsageError {
            message: format!(
                "`{}` is a bind mount; `--as` names a new volume",
                records[0].key
            ),
            hint: None,
        });
    }

    let engine = session.connect().await?;
    engine.remove_leftover_helpers().await?;
    let inventory = inventory::build(project, &engine).await?;
    let mut targets = Vec::new();
    for record in records {
        targets.push(
            plan_target(
                &engine,
                &inventory.containers,
                record,
                args.as_name.as_deref(),
            )
            .await?,
        );
    }

    let dumps = restore_dump::plan(&engine, &inventory.project, dump_records).await?;

    // A damaged backup changes nothing: data that is replaced is verified before anything changes; a
    // volume that does not exist yet is verified as it streams in (one read of the backup instead of two)
    // and removed again if the backup turns out damaged. A dry run verifies everything; dumps are always
    // verified first.
    let keys: Vec<String> = targets
        .iter()
        .filter(|t| args.dry_run || !t.verified_as_it_streams())
        .map(|t| t.record.key.clone())
        .chain(dumps.iter().map(|d| d.record.key.clone()))
        .collect();
    if !keys.is_empty() {
        printer.status(format!(
            "Verifying {} in `{}`",
            plural(keys.len(), "volume"),
            path.display()
        ));
        let report = {
            let b = Arc::clone(&backup);
            tokio::task::spawn_blocking(move || {
                let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
                b.verify_volumes(&refs)
            })
            .await??
        };
        if !report.is_ok() {
            for p in &report.problems {
                printer.warn(problem_text(p));
            }
            bail!(
                "`{}` is damaged ({} problem(s)); nothing was changed",
                path.display(),
                report.problems.len()
            );
        }
    }

    let replacing: Vec<&Target> = targets.iter().filter(|t| t.has_data).collect();
    let to_remove: BTreeMap<String, ContainerInfo> = targets
        .iter()
        .filter(|t| !t.is_bind() && t.existing.is_some())
        .flat_map(|t| t.containers.iter().map(|c| (c.id.clone(), c.clone())))
        .collect();
    let to_stop: BTreeMap<String, ContainerInfo> = targets
        .iter()
        .flat_map(|t| t.containers.iter())
        .filter(|c| c.is_running())
        .map(|c| (c.id.clone(), c.clone()))
        .collect();

    print_plan(printer, &path, &targets, &to_stop, &to_remove, args);
    restore_dump::print_plan(printer, &dumps);
    if args.dry_run {
        if printer.json_mode() {
            printer.json(&RestoreJson {
                schema_version: 1,
                backup: &path,
                safety_backup: None,
                dry_run: true,
                volumes: targets
                    .iter()
                    .map(|t| RestoredJson {
                        key: &t.record.key,
                        name: &t.name,
                        replaced_data: t.has_data,
                        content_digest: t.record.digest_text(),
                    })
                    .collect(),
                dumps: dumps.iter().map(restore_dump::DumpTarget::json).collect(),
            })?;
        }
        return Ok(ExitStatus::Success);
    }
    if let Some(t) = targets
        .iter()
        .find(|t| args.as_name.is_some() && t.existing.is_some())
    {
        bail!(UsageError {
            message: format!("volume `{}` already exists", t.name),
            hint: Some(
                "`--as` restores into a new volume: choose a name that is not taken".to_string()
            ),
        });
    }
    let replacing_dumps: Vec<&restore_dump::DumpTarget> =
        dumps.iter().filter(|d| d.exists).collect();
    if (!replacing.is_empty() || !to_remove.is_empty() || !replacing_dumps.is_empty()) && !args.yes
    {
        let question = format!(
            "Replace the current data of {}{}?",
            quoted(
                replacing
                    .iter()
                    .map(|t| t.record.key.as_str())
                    .chain(replacing_dumps.iter().map(|d| d.record.key.as_str()))
            ),
            if to_remove.is_empty() {
                String::new()
            } else {
                format!(
                    " and recreate container(s) {}",
                    quoted(to_remove.values().map(|c| c.name.as_str()))
                )
            }
        );
        if !prompt::interactive() {
            return Err(Refused {
                message: format!("refusing to replace data without confirmation: {question}"),
                hint: "run it in a terminal to answer, or pass `--yes`".to_string(),
            }
            .into());
        }
        if !prompt::confirm(&question)? {
            printer.status("Nothing was changed");
            return Ok(ExitStatus::Refused);
        }
    }

    let fast = fastpath::select(&engine, printer, args.data_path).await?;

    // A restore is how data a killed command could not put back is put right.
    session.allow_unresolved();
    // Stop first, so that the safety copy is consistent and nothing writes while data is replaced.
    let mut stopping: Vec<ContainerInfo> = to_stop.values().cloned().collect();
    super::consistency::sort_for_start(
        &mut stopping,
        &super::consistency::start_order(&inventory.project),
    );
    for c in &stopping {
        printer.status(format!("Stopping `{}`", c.name));
    }
    super::consistency::stop(session, &engine, &inventory.project, &stopping).await?;

    // The safety copy of what is about to be replaced.
    let mut safety = None;
    if (!replacing.is_empty() || !replacing_dumps.is_empty()) && !args.no_safety_backup {
        let names: Vec<&str> = replacing
            .iter()
            .map(|t| t.name.as_str())
            .chain(replacing_dumps.iter().map(|d| d.record.name.as_str()))
            .collect();
        let items: Vec<&DataItem> = names
            .iter()
            .filter_map(|n| {
                inventory
                    .items
                    .iter()
                    .find(|i| i.name.as_deref() == Some(*n))
            })
            .collect();
        if items.len() != names.len() {
            bail!(
                "cannot take the safety backup: some data to replace is not part of project `{}`",
                inventory.project.name
            );
        }
        printer.status("Taking a safety backup of the data being replaced");
        let (finished, _) = write_backup(
            session,
            &engine,
            &inventory.project,
            &items,
            &Destination {
                dir: &dir,
                tag: Some("pre-restore"),
                options: crate::archive::WriterOptions::auto(),
                fast: fast.as_ref(),
                // Its containers are stopped already; one that runs anyway is stopped while read (a
                // database whose dump is loaded back is copied as files, with its service stopped).
                consistency: Some(crate::compose::Consistency::Stop),
                hooks: false,
                follow: None,
            },
        )
        .await
        .context("the safety backup failed; nothing was changed")?;
        printer.status(format!("Safety backup: `{}`", finished.path.display()));
        session.note_on_interrupt(format!(
            "the data as it was before this restore is in `{}`",
            finished.path.display()
        ));
        safety = Some(finished.path);
    }

    // Recreate, upload, compare.
    if !to_remove.is_empty() {
        session.note_on_interrupt(format!(
            "removed for the restore: {}; once the data is restored, `docker compose up -d` recreates them",
            quoted(to_remove.values().map(|c| c.name.as_str()))
        ));
    }
    let removing = if to_remove.is_empty() {
        None
    } else {
        Some(
            session.step_begin(
                &inventory.project,
                Step::RemoveContainers {
                    containers: to_remove
                        .values()
                        .map(super::consistency::removed)
                        .collect(),
                },
            )?,
        )
    };
    for c in to_remove.values() {
        printer.verbose(format!(
            "removing container `{}` (Compose recreates it)",
            c.name
        ));
        engine.remove_stopped_container(&c.id, &c.name).await?;
        session.forget_restart(&c.id);
    }
    if let Some(step) = removing {
        session.step_mark(step, StepState::Done);
    }
    let mut restored = Vec::new();
    let mut failed: Option<anyhow::Error> = None;
    for t in &targets {
        // From here this data may be partly written: its containers are not started on it automatically.
        for c in &t.containers {
            session.forget_restart(&c.id);
        }
        session.note_on_interrupt(format!(
            "`{}` may be only partly restored and its services are left stopped; the next docker persist command puts back what it held (or says which file to restore)",
            t.record.key
        ));
        let step =
            session.step_begin(&inventory.project, data_step(t, safety.as_deref(), &path))?;
        match restore_one(&engine, printer, fast.as_ref(), &backup, t).await {
            Ok(digest) => {
                session.step_mark(step, StepState::Done);
                printer.status(format!(
                    "Restored `{}` ({}, {} entries) from `{}`",
                    t.record.key,
                    human_size(t.record.file_bytes),
                    t.record.entries,
                    path.display()
                ));
                restored.push((t, digest));
            }
            Err(mut e) => {
                if t.verified_as_it_streams() {
                    // It did not exist before: remove what was partly written.
                    e = match engine.remove_volume(&t.name).await {
                        Ok(()) => {
                            session.step_mark(step, StepState::Settled);
                            e
                        }
                        .context(format!(
                            "volume `{}` did not exist before and was removed again",
                            t.name
                        )),
                        Err(r) => e.context(format!(
                            "volume `{}` is partly restored and could not be removed: {r}",
                            t.name
                        )),
                    };
                }
                failed = Some(e.context(format!("failed to restore `{}`", t.record.key)));
                break;
            }
        }
    }

    // Bring back what was running (and recreate what Compose must), unless a volume failed.
    if failed.is_none() {
        // From here a killed restore is finished, not undone.
        session.step_begin(&inventory.project, Step::Committed)?;
        bring_back(
            session,
            &engine,
            &inventory.project,
            &to_stop,
            &to_remove,
            args.no_start,
        )
        .await?;
    } else {
        if !to_stop.is_empty() {
            printer.warn(format!(
                "left stopped so that nothing runs on partly restored data: {}",
                quoted(to_stop.values().map(|c| c.name.as_str()))
            ));
        }
        session.clear_restarts();
    }
    if failed.is_none() {
        for d in &dumps {
            session.note_on_interrupt(format!(
                "`{}` may be only partly loaded; run the restore again",
                d.record.key
            ));
            if let Err(e) = restore_dump::restore(session, &engine, &inventory, &backup, d).await {
                failed = Some(e.context(format!("failed to restore `{}`", d.record.key)));
                break;
            }
        }
    }
    if let Some(e) = failed {
        if let Some(s) = &safety {
            printer.warn(format!("the data as it was before is in `{}`", s.display()));
        }
        return Err(e);
    }
    if let Some(host) = session.host.get() {
        let names: Vec<String> = restored.iter().map(|(t, _)| t.name.clone()).collect();
        super::resolve::after_restore(session, &engine, host, &names).await;
    }
    if printer.json_mode() {
        printer.json(&RestoreJson {
            schema_version: 1,
            backup: &path,
            safety_backup: safety.as_deref(),
            dry_run: false,
            volumes: restored
                .iter()
                .map(|(t, d)| RestoredJson {
                    key: &t.record.key,
                    name: &t.name,
                    replaced_data: t.has_data,
                    content_digest: d.to_string(),
                })
                .collect(),
            dumps: dumps.iter().map(restore_dump::DumpTarget::json).collect(),
        })?;
    }
    Ok(ExitStatus::Success)
}

/// The intent step of restoring one target: creating a volume, or replacing what is there.
fn data_step(t: &Target, safety: Option<&Path>, source: &Path) -> Step {
    if t.verified_as_it_streams() {
        return Step::CreateVolume {
            key: t.record.key.clone(),
            name: t.name.clone(),
            label: crate::intent::Owner::this().tag(),
        };
    }
    let (driver, options, labels) = match &t.existing {
        Some(v) => (v.driver.clone(), v.options.clone(), v.labels.clone()),
        None => Default::default(),
    };
    Step::ReplaceData {
        key: t.record.key.clone(),
        name: t.name.clone(),
        bind: t.is_bind(),
        safety: safety.filter(|_| t.has_data).map(Path::to_path_buf),
        was_empty: !t.has_data,
        source: source.display().to_string(),
        driver,
        options,
        labels,
    }
}

async fn plan_target(
    engine: &Engine,
    project_containers: &[ContainerInfo],
    record: VolumeRecord,
    as_name: Option<&str>,
) -> anyhow::Result<Target> {
    if record.kind == DataKind::Bind {
        let path = record.name.clone();
        let has_data =
            engine.is_local() && std::fs::read_dir(&path).is_ok_and(|mut d| d.next().is_some());
        let containers = project_containers
            .iter()
            .filter(|c| bind_mounts(c, Path::new(&path)).next().is_some())
            .cloned()
            .collect();
        return Ok(Target {
            name: path,
            kind: DataKind::Bind,
            existing: None,
            has_data,
            containers,
            record,
        });
    }
    let name = as_name
        .map(str::to_string)
        .unwrap_or_else(|| record.name.clone());
    let existing = engine.volume(&name).await?;
    let (has_data, containers) = if existing.is_some() {
        (
            has_data(
                engine,
                HelperMount::Volume {
                    name: name.clone(),
                    read_only: true,
                },
                &format!("volume `{name}`"),
            )
            .await?,
            engine.containers_using_volume(&name).await?,
        )
    } else {
        (false, Vec::new())
    };
    Ok(Target {
        kind: record.kind,
        name,
        existing,
        has_data,
        containers,
        record,
    })
}

/// Whether a volume or host directory holds anything besides its root directory; `what` names it in the
/// error.
pub(crate) async fn has_data(
    engine: &Engine,
    mount: HelperMount,
    what: &str,
) -> anyhow::Result<bool> {
    let helper = engine.create_helper(&mount).await?;
    let stream = engine.download_data(&helper).map_err(std::io::Error::other);
    let reader = crate::pipe::reader_of(stream);
    // The root directory and one more entry are enough to tell; the rest is never read.
    let more = tokio::task::spawn_blocking(move || has_more_entries_than(reader, 1)).await?;
    helper.remove().await?;
    more.with_context(|| format!("failed to read {what}"))
}

fn print_plan(
    printer: &Printer,
    path: &Path,
    targets: &[Target],
    to_stop: &BTreeMap<String, ContainerInfo>,
    to_remove: &BTreeMap<String, ContainerInfo>,
    args: &RestoreArgs,
) {
    let verb = if args.dry_run {
        "Would restore"
    } else {
        "Restoring"
    };
    printer.status(format!("{verb} from `{}`:", path.display()));
    for t in targets {
        let what = match (&t.existing, t.is_bind(), t.has_data) {
            (_, true, true) => "replacing the files there",
            (_, true, false) => "into an empty directory",
            (Some(_), false, true) => "replacing its current data",
            (Some(_), false, false) => "into the existing empty volume",
            (None, false, _) => "creating it",
        };
        printer.status(format!(
            "  `{}` → `{}` ({}, {} entries): {what}",
            t.record.key,
            t.name,
            human_size(t.record.file_bytes),
            t.record.entries
        ));
    }
    if !to_stop.is_empty() {
        printer.status(format!(
            "  stopping {}",
            quoted(to_stop.values().map(|c| c.name.as_str()))
        ));
    }
    if !to_remove.is_empty() {
        printer.status(format!(
            "  removing and recreating with Compose: {}",
            quoted(to_remove.values().map(|c| c.name.as_str()))
        ));
    }
}

/// The label on scratch volumes of `verify --restore-test`.
pub const SCRATCH_LABEL: &str = "persist.scratch";

/// Starts what was running; has Compose recreate the containers that were removed.
async fn bring_back(
    session: &Session<'_>,
    engine: &Engine,
    project: &crate::compose::Project,
    to_stop: &BTreeMap<String, ContainerInfo>,
    to_remove: &BTreeMap<String, ContainerInfo>,
    no_start: bool,
) -> anyhow::Result<()> {
    let printer = session.printer;
    // Containers that were only stopped.
    for c in to_stop.values().filter(|c| !to_remove.contains_key(&c.id)) {
        if no_start {
            printer.status(format!("Left `{}` stopped (--no-start)", c.name));
        } else {
            session.start_again(engine, &c.id, &c.name).await?;
        }
        session.forget_restart(&c.id);
    }
    if to_remove.is_empty() {
        return Ok(());
    }
    let prefer_v1 = to_remove.values().any(|c| {
        c.compose_version
            .as_deref()
            .is_some_and(|v| v.starts_with("1."))
    });
    let compose = ComposeCli::find(session.globals, project, prefer_v1)?;
    let mut running: BTreeSet<&str> = BTreeSet::new();
    let mut stopped: BTreeSet<&str> = BTreeSet::new();
    for c in to_remove.values() {
        let Some(s) = c.service.as_deref() else {
            continue;
        };
        if c.is_running() && !no_start {
            running.insert(s);
        } else {
            stopped.insert(s);
        }
    }
    stopped.retain(|s| !running.contains(s));
    if !running.is_empty() {
        let mut a = vec!["up", "-d", "--no-deps"];
        a.extend(running.iter().copied());
        printer.status(format!(
            "Recreating {} with Compose",
            quoted(running.iter().copied())
        ));
        compose.run(&a).await.with_context(|| {
            format!(
                "the data is restored, but Compose could not recreate the containers; run `{}`",
                compose.describe(&a)
            )
        })?;
    }
    if !stopped.is_empty() {
        let mut a = vec!["up", "--no-start", "--no-deps"];
        a.extend(stopped.iter().copied());
        compose.run(&a).await.with_context(|| {
            format!(
                "the data is restored, but Compose could not recreate the containers; run `{}`",
                compose.describe(&a)
            )
        })?;
    }
    Ok(())
}
