//! `backup`: one backup file with the chosen volumes and bind mounts.
//!
//! Each piece of data is read through a helper container that mounts it read-only; the engine's tar stream
//! goes through the content digest and zstd straight into the backup file (on a blocking thread, so the
//! async side only moves bytes). The file is written as `.partial` and renamed once complete: an error or
//! an interruption leaves no file that looks like a backup.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context as _, bail};
use futures_util::TryStreamExt;
use serde::Serialize;

use super::consistency::{self, Resolved};
use super::dump::{self, DumpChoice};
use super::hooks::{self, Phase};
use super::{ExitStatus, Session, UsageError, plural, quoted};
use crate::archive::growing::Growing;
use crate::archive::{
    BackupName, BackupWriter, DumpSpec, EngineInfo, FinishedBackup, VolumeRecord, VolumeSpec,
    VolumeUser, WriterOptions,
};
use crate::cancel::CancellableReader;
use crate::cli::BackupArgs;
use crate::compose::classify::DataKind;
use crate::compose::{Consistency, Project, Tier};
use crate::encryption::EncryptPlan;
use crate::engine::Engine;
use crate::engine::helper::HelperMount;
use crate::fastpath::{self, FastPath, Op};
use crate::inventory::{self, DataItem, Inventory};
use crate::report::progress::Progress;
use crate::report::{Printer, human_size};

/// The tiers backed up when none is named.
pub const DEFAULT_TIERS: [Tier; 2] = [Tier::Critical, Tier::Important];

/// What one backup will hold.
#[derive(Debug)]
pub struct BackupPlan<'a> {
    pub items: Vec<&'a DataItem>,
    /// Data that was asked for (or is in scope) but cannot be read, and why.
    pub skipped: Vec<(&'a DataItem, &'static str)>,
}

/// Chooses the data: the named volumes, else the given tiers, else critical and important.
pub fn plan<'a>(
    inventory: &'a Inventory,
    volumes: &[String],
    tiers: &[Tier],
    all: bool,
) -> Result<BackupPlan<'a>, UsageError> {
    let chosen: Vec<&DataItem> = if !volumes.is_empty() {
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for wanted in volumes {
            let item = inventory.find(wanted).ok_or_else(|| UsageError {
                message: format!(
                    "project `{}` has no volume or bind mount `{wanted}`",
                    inventory.project.name
                ),
                hint: Some("`docker persist ls` lists them".to_string()),
            })?;
            if seen.insert(&item.key) {
                out.push(item);
            }
        }
        out
    } else {
        let tiers: &[Tier] = if all {
            &Tier::ALL
        } else if tiers.is_empty() {
            &DEFAULT_TIERS
        } else {
            tiers
        };
        inventory
            .items
            .iter()
            .filter(|i| tiers.contains(&i.tier()))
            // Host system paths are never data to back up unless named.
            .filter(|i| i.classification.rule != Some("host-system"))
            .collect()
    };
    let mut plan = BackupPlan {
        items: Vec::new(),
        skipped: Vec::new(),
    };
    for item in chosen {
        match (item.exists, &item.name) {
            (Some(false), _) | (_, None) => plan.skipped.push((item, "it does not exist")),
            _ => plan.items.push(item),
        }
    }
    Ok(plan)
}

#[derive(Serialize)]
struct BackupJson<'a> {
    schema_version: u32,
    path: &'a Path,
    bytes: u64,
    volumes: &'a [VolumeRecord],
    /// Volumes backed up as logical dumps (`consistency: dump`).
    dumps: &'a [crate::archive::DumpRecord],
    /// What `--prune` did, when given.
    #[serde(skip_serializing_if = "Option::is_none")]
    prune: Option<&'a super::prune::BackupPruneJson>,
    /// What each destination (`--to`, or those marked `default: true`) did with the file.
    destinations: Vec<super::push::SentJson>,
}

pub async fn run(session: &Session<'_>, args: &BackupArgs) -> anyhow::Result<ExitStatus> {
    let printer = session.printer;
    let project = session.load_project()?;
    super::runlog::begin_backup(session, &project, args.lock_timeout).await?;
    let engine = session.connect().await?;
    engine.remove_leftover_helpers().await?;
    let inventory = inventory::build(project, &engine).await?;
    for w in &inventory.warnings {
        printer.warn(w);
    }
    let plan = plan(&inventory, &args.volumes, &args.tiers, args.all)?;
    for (item, why) in &plan.skipped {
        printer.warn(format!("skipping `{}`: {why}", item.key));
    }
    if plan.items.is_empty() {
        bail!(UsageError {
            message: "nothing to back up: no existing data in the chosen scope".to_string(),
            hint: Some(
                "`docker persist ls` shows what exists; name volumes, or use `--tier` or `--all`"
                    .to_string()
            ),
        });
    }
    let dir = super::backups::backup_dir(&args.dir, &inventory.project.directory);
    let mut encryption =
        crate::encryption::plan(&inventory.project, &args.encrypt, |w| printer.warn(w))?;
    // Where the file goes besides the local directory: resolved first, so a bad name stops before any
    // service is stopped.
    let remote = {
        let known = super::backups::destinations(&args.dir, &inventory.project)?;
        if args.to.is_empty() {
            known.defaults()
        } else {
            super::push::resolve_all(&known, &args.to)?
        }
    };
    let remote: Vec<_> = remote
        .into_iter()
        .filter(|d| d.dir() != Some(dir.as_path()))
        .collect();
    // `--prune`: the policy of every place the file goes, checked before anything is stopped.
    let prune = if args.prune {
        let known = super::backups::destinations(&args.dir, &inventory.project)?;
        Some(super::prune::settings_for_backup(
            &inventory.project,
            &known,
            &remote,
        )?)
    } else {
        None
    };
    // A destination's own `encrypt:` recipients: the one file goes everywhere, so it is encrypted to the
    // recipients of every place it goes (unless `--no-encrypt`). Then a destination that requires
    // encryption refuses a plain backup, before anything is stopped.
    {
        let project_config = crate::encryption::EncryptConfig::of_project(&inventory.project)?;
        let known = super::backups::destinations(&args.dir, &inventory.project)?;
        let raw_of = |name: &str| {
            known
                .configured()
                .iter()
                .find(|c| c.name == name)
                .map(|c| c.raw.clone())
                .unwrap_or_default()
        };
        if !args.encrypt.no_encrypt {
            let mut extra = Vec::new();
            for d in &remote {
                extra.extend(crate::encryption::destination_recipients(
                    d.name(),
                    &raw_of(d.name()),
                    &inventory.project.directory,
                )?);
            }
            encryption = EncryptPlan::with_recipients(encryption, extra);
        }
        for d in &remote {
            let raw = raw_of(d.name());
            let rule = crate::encryption::for_destination(
                d.name(),
                &raw,
                d.is_local(),
                project_config.as_ref(),
            )?;
            if let Some(w) = crate::encryption::check_plain_allowed(
                d.name(),
                rule.require,
                encryption.is_some(),
                args.encrypt.no_encrypt,
            )? {
                printer.warn(w);
            }
        }
    }

    let fast = fastpath::select(&engine, printer, args.data_path).await?;
    // The destinations get the file while it is written: one pass over the data (DESIGN.md).
    let growing = (!remote.is_empty()).then(Growing::new);
    let backup = async {
        let written = write_backup_with(
            session,
            &engine,
            &inventory.project,
            &plan.items,
            &Destination {
                dir: &dir,
                tag: args.tag.as_deref(),
                options: WriterOptions {
                    level: args.level,
                    workers: args.threads.unwrap_or(WriterOptions::auto().workers),
                },
                fast: fast.as_ref(),
                consistency: args.consistency.map(Consistency::from),
                hooks: true,
                follow: growing.clone(),
            },
            encryption.as_ref(),
        )
        .await;
        if let Some(g) = &growing {
            g.set_sha256(match &written {
                Ok((finished, _)) => {
                    let path = finished.path.clone();
                    tokio::task::spawn_blocking(move || crate::destination::local::hash_file(&path))
                        .await
                        .map_err(|e| e.to_string())
                        .and_then(|r| r.map(|(_, sha)| sha).map_err(|e| e.to_string()))
                }
                Err(e) => Err(format!("{e:#}")),
            });
        }
        written
    };
    let (written, sent) = match &growing {
        Some(g) => {
            let size_hint = size_hint(&plan.items);
            tokio::join!(
                backup,
                super::push::send_following(printer, &remote, g.clone(), size_hint)
            )
        }
        None => (backup.await, Vec::new()),
    };
    let (finished, records) = written?;
    session.record_backup(&finished, &records, &dir);
    for (d, result) in &sent {
        session.record_destination(
            d.name(),
            &d.url().to_string(),
            result.as_ref().map(|_| ()).map_err(|e| e.to_string()),
        );
    }
    let failed = sent.iter().any(|(_, r)| r.is_err());
    if !printer.json_mode() {
        printer.status(format!(
            "Backed up {} to `{}` ({}{})",
            plural(records.len() + finished.manifest.dumps.len(), "volume"),
            finished.path.display(),
            human_size(finished.bytes),
            encryption
                .as_ref()
                .map(|e| format!(", encrypted to {}", e.describe()))
                .unwrap_or_default()
        ));
    }
    // Only after a backup that succeeded everywhere: a failed one returned above, or failed to reach a
    // destination, and prunes nothing.
    let pruned = match &prune {
        Some(settings) if !failed => Some(
            super::prune::after_backup(session, &engine, &inventory, &dir, settings, &remote).await,
        ),
        Some(_) => {
            printer.warn("not pruning: the backup did not reach every destination");
            None
        }
        None => None,
    };
    if printer.json_mode() {
        printer.json(&BackupJson {
            schema_version: 1,
            path: &finished.path,
            bytes: finished.bytes,
            volumes: &records,
            dumps: &finished.manifest.dumps,
            prune: pruned.as_ref(),
            destinations: super::push::sent_json(&sent),
        })?;
    } else {
        printer.data(format!("{}\n", finished.path.display()));
    }
    if super::push::failed_note(printer, &sent, &finished.path) {
        return Ok(ExitStatus::Failure);
    }
    Ok(ExitStatus::Success)
}

/// At most what the backup file of `items` will hold, for the part size of an upload: their size as the
/// engine measured it (compressed, the file is smaller; incompressible data grows a little), with room for
/// the headers and the manifest. `None` when a size is unknown.
fn size_hint(items: &[&DataItem]) -> Option<u64> {
    let mut total = 0u64;
    for i in items {
        total = total.saturating_add(i.size_bytes?);
    }
    Some(total.saturating_add(total / 20).saturating_add(16 << 20))
}

/// Where and how a backup file is written.
pub struct Destination<'a> {
    pub dir: &'a Path,
    pub tag: Option<&'a str>,
    pub options: WriterOptions,
    /// The fast path, when the command chose it; `None`: the universal path.
    pub fast: Option<&'a FastPath>,
    /// `--consistency`, when given: it wins over every `x-persist` setting.
    pub consistency: Option<Consistency>,
    /// Whether the `x-persist` hooks run (not for the safety backup of a restore, whose services are
    /// stopped already).
    pub hooks: bool,
    /// Told every write, when the file is sent to destinations while it is written.
    pub follow: Option<Arc<Growing>>,
}

/// The consistency mode of each item, with the dump recipe of those in `dump` mode; a usage error when a
/// dump volume has no recipe.
fn consistency_modes(
    items: &[&DataItem],
    project: &Project,
    flag: Option<Consistency>,
) -> Result<Vec<(Resolved, Option<DumpChoice>)>, UsageError> {
    items
        .iter()
        .map(|i| {
            let mode = consistency::resolve(flag, i, project);
            let choice = if mode.mode == Consistency::Dump {
                Some(dump::choose(i, project)?)
            } else {
                None
            };
            Ok((mode, choice))
        })
        .collect()
}

/// Writes one backup file of `items` into `dest.dir`, encrypted to the project's `x-persist: {encrypt: …}`
/// recipients when it names some (the safety backups of `restore`, `migrate` and `down`); see
/// [`write_backup_with`].
pub async fn write_backup(
    session: &Session<'_>,
    engine: &Engine,
    project: &Project,
    items: &[&DataItem],
    dest: &Destination<'_>,
) -> anyhow::Result<(FinishedBackup, Vec<VolumeRecord>)> {
    let encryption = crate::encryption::project_plan(project)?;
    write_backup_with(session, engine, project, items, dest, encryption.as_ref()).await
}

/// Writes one backup file of `items` into `dest.dir` (encrypted when `encryption` is given) and returns it
/// with the volume records. Each item is
/// read in its consistency mode: for `stop`, its running containers are stopped just before it is read
/// and started again right after, whatever happened; for `dump`, the recipe's tool runs in the service.
/// Hooks run around each item and around the whole backup; post hooks run whatever happened.
pub async fn write_backup_with(
    session: &Session<'_>,
    engine: &Engine,
    project: &Project,
    items: &[&DataItem],
    dest: &Destination<'_>,
    encryption: Option<&EncryptPlan>,
) -> anyhow::Result<(FinishedBackup, Vec<VolumeRecord>)> {
    let printer = session.printer;
    let modes = consistency_modes(items, project, dest.consistency)?;
    for p in crate::archive::remove_stale_partials(dest.dir, &project.name)? {
        printer.status(format!(
            "Removed `{}`, left by a backup that did not finish",
            p.display()
        ));
    }
    check_free_space(dest.dir, items)?;
    let no_hooks = crate::compose::Hooks::default();
    let project_hooks = if dest.hooks {
        &project.hooks
    } else {
        &no_hooks
    };
    let scope = "the backup";
    let token = hooks::register_post(session, &project.name, scope, &project_hooks.post);
    let (mut pre, pre_error) = hooks::run(
        engine,
        printer,
        &project.name,
        scope,
        Phase::Pre,
        &project_hooks.pre,
    )
    .await;
    let written = match pre_error {
        Some(e) => Err(e.context("a project-wide pre hook failed; nothing was backed up")),
        None => write_items(session, engine, project, items, &modes, dest, encryption).await,
    };
    // Post hooks always run; with the backup's own result first in line.
    let mut post = Vec::new();
    let mut post_error = None;
    if hooks::take_pending(session, token).is_some() {
        (post, post_error) = hooks::run(
            engine,
            printer,
            &project.name,
            scope,
            Phase::Post,
            &project_hooks.post,
        )
        .await;
    }
    let (mut writer, records) = match (written, post_error.take()) {
        (Ok(w), e) => {
            post_error = e;
            w
        }
        (Err(e), post_failed) => {
            if let Some(p) = post_failed {
                printer.warn(format!("{p:#}"));
            }
            return Err(e);
        }
    };
    pre.append(&mut post);
    writer.record_project_hooks(pre);
    let started = std::time::Instant::now();
    let finished = tokio::task::spawn_blocking(move || writer.finish())
        .await
        .context("the backup writer stopped unexpectedly")??;
    printer.verbose(format!(
        "wrote the manifest and synced the file in {:.2} s",
        started.elapsed().as_secs_f64()
    ));
    if let Some(e) = post_error {
        return Err(e.context(format!(
            "the backup `{}` is complete, but a project-wide post hook failed",
            finished.path.display()
        )));
    }
    Ok((finished, records))
}

/// Creates the backup file and adds the Compose files and every item, each with its hooks.
async fn write_items(
    session: &Session<'_>,
    engine: &Engine,
    project: &Project,
    items: &[&DataItem],
    modes: &[(Resolved, Option<DumpChoice>)],
    dest: &Destination<'_>,
    encryption: Option<&EncryptPlan>,
) -> anyhow::Result<(BackupWriter, Vec<VolumeRecord>)> {
    let printer = session.printer;
    let Destination {
        dir,
        tag,
        options,
        fast,
        consistency: _,
        hooks: run_hooks,
        ref follow,
    } = *dest;
    let version = engine.version().await?;
    let engine_info = EngineInfo {
        version: version.version,
        os: version.os,
        arch: version.arch,
    };
    // File names carry the time to the second: when one is taken (another backup in the same second),
    // wait for the next second rather than fail or replace anything.
    let mut attempts = 0;
    let mut writer = loop {
        let name = BackupName::new(&project.name, jiff::Timestamp::now(), tag)?;
        match BackupWriter::create_followed(
            dir,
            &name,
            engine_info.clone(),
            options,
            follow.clone(),
        ) {
            Err(crate::archive::ArchiveError::Exists { .. }) if attempts < 30 => {
                attempts += 1;
                let into_second =
                    u64::from(jiff::Timestamp::now().subsec_nanosecond().unsigned_abs());
                tokio::time::sleep(std::time::Duration::from_nanos(
                    1_000_000_000 - into_second.min(999_999_999),
                ))
                .await;
            }
            other => break other?,
        }
    };
    if let Some(plan) = encryption {
        // Passphrase mode runs scrypt (≈1 s of CPU): off the async threads.
        let plan = plan.clone();
        let sealer = tokio::task::spawn_blocking(move || plan.sealer())
            .await
            .context("the encryption setup stopped unexpectedly")??;
        writer.encrypt(sealer)?;
    }
    add_compose_files(&mut writer, &project.files)?;
    let mut records = Vec::new();
    for (item, (mode, choice)) in items.iter().zip(modes) {
        let volume_hooks = if run_hooks {
            consistency::volume_hooks(item, project)
        } else {
            crate::compose::Hooks::default()
        };
        let scope = format!("`{}`", item.key);
        let token = hooks::register_post(session, &project.name, &scope, &volume_hooks.post);
        let (mut ran, pre_error) = hooks::run(
            engine,
            printer,
            &project.name,
            &scope,
            Phase::Pre,
            &volume_hooks.pre,
        )
        .await;
        let read = match pre_error {
            Some(e) => Err(e.context(format!(
                "a pre hook of `{}` failed; the backup was not written",
                item.key
            ))),
            None => match choice {
                Some(choice) => dump_one(engine, printer, project, writer, item, choice).await,
                None => read_one(session, engine, project, fast, writer, item, mode).await,
            },
        };
        let mut post_error = None;
        if hooks::take_pending(session, token).is_some() {
            let mut post;
            (post, post_error) = hooks::run(
                engine,
                printer,
                &project.name,
                &scope,
                Phase::Post,
                &volume_hooks.post,
            )
            .await;
            ran.append(&mut post);
        }
        let (w, record) = match read {
            Ok(done) => done,
            Err(e) => {
                if let Some(p) = post_error {
                    printer.warn(format!("{p:#}"));
                }
                return Err(e);
            }
        };
        writer = w;
        if let Some(e) = post_error {
            return Err(e.context(format!(
                "a post hook of `{}` failed; the backup was not written",
                item.key
            )));
        }
        writer.record_volume_hooks(&item.key, ran);
        if let Some(record) = record {
            report_volume(printer, item, &record);
            records.push(record);
        }
    }
    Ok((writer, records))
}

/// Reads one item in `stop` or `live` mode: its running containers are stopped first for `stop`, and
/// started again right after, whether the read worked or not.
async fn read_one(
    session: &Session<'_>,
    engine: &Engine,
    project: &Project,
    fast: Option<&FastPath>,
    writer: BackupWriter,
    item: &DataItem,
    mode: &Resolved,
) -> anyhow::Result<(BackupWriter, Option<VolumeRecord>)> {
    let printer = session.printer;
    let stopped = match mode.mode {
        Consistency::Stop => {
            let running = consistency::running_users(engine, project, item).await?;
            if !running.is_empty() {
                printer.status(format!(
                    "Stopping {} while `{}` is read",
                    quoted(running.iter().map(|c| c.name.as_str())),
                    item.key
                ));
            }
            consistency::stop(session, engine, project, &running).await?;
            running
        }
        _ => Vec::new(),
    };
    let read = back_up_one(engine, printer, fast, writer, item, mode, &stopped).await;
    // Started again before anything else happens, whether the read worked or not.
    let started = consistency::start_again(session, engine, &stopped).await;
    let (w, record) = read?;
    started?;
    Ok((w, Some(record)))
}

/// Dumps one item with its recipe, inside the running container of the recipe's service, into
/// `dumps/<service>.<ext>.zst`. Its services keep running; its file tree is not read.
async fn dump_one(
    engine: &Engine,
    printer: &Printer,
    project: &Project,
    mut writer: BackupWriter,
    item: &DataItem,
    choice: &DumpChoice,
) -> anyhow::Result<(BackupWriter, Option<VolumeRecord>)> {
    let container = hooks::running_container(engine, &project.name, &choice.service)
        .await?
        .ok_or_else(|| UsageError {
            message: format!(
                "`{}` is backed up as a dump, made inside service `{}`, and `{}` is not running",
                item.key, choice.service, choice.service
            ),
            hint: Some(format!(
                "start it (`docker compose up -d {}`), or back it up as files with `--consistency stop`",
                choice.service
            )),
        })?;
    let (tool, _) = dump::tools(choice.recipe);
    printer.status(format!(
        "Dumping `{}` with `{tool}` in `{}` ({} recipe, from the {})",
        item.key, container.name, choice.recipe, choice.reason
    ));
    let started = std::time::Instant::now();
    let argv = dump::dump_command(engine, printer, &container, choice.recipe).await?;
    let stream = engine.exec_stdout(&container.id, &argv).await?;
    let source = crate::pipe::reader_of(stream);
    let name = item.name.clone().unwrap_or_else(|| item.key.clone());
    let mut spec = volume_spec(item, name);
    spec.consistency = Consistency::Dump.to_string();
    let dump_spec = DumpSpec {
        recipe: choice.recipe.to_string(),
        service: choice.service.clone(),
        image: if container.image.is_empty() {
            choice.image.clone()
        } else {
            container.image.clone()
        },
        ext: dump::ext(choice.recipe).to_string(),
    };
    let progress = Progress::bytes(printer.progress_enabled(), &item.key, None);
    let bar = progress.clone();
    let (writer, result) = tokio::task::spawn_blocking(move || {
        let reader = CancellableReader::new(source, |n| bar.inc(n));
        let result = writer.add_dump(spec, dump_spec, reader);
        (writer, result)
    })
    .await
    .context("the backup writer stopped unexpectedly")?;
    progress.finish();
    let record = result.with_context(|| format!("failed to dump `{}`", item.key))?;
    printer.status(format!(
        "Dumped `{}` in {:.1} s: {} as `{}`, stored as {}",
        item.key,
        started.elapsed().as_secs_f64(),
        human_size(record.bytes),
        record.member,
        human_size(record.stored_bytes)
    ));
    Ok((writer, None))
}

/// Reads one piece of data through a helper container into the writer: on the fast path when it is in
/// use, else (or when a fast helper cannot connect back) through the engine's archive endpoint.
async fn back_up_one(
    engine: &Engine,
    printer: &Printer,
    fast: Option<&FastPath>,
    writer: BackupWriter,
    item: &DataItem,
    mode: &Resolved,
    stopped: &[crate::engine::ContainerInfo],
) -> anyhow::Result<(BackupWriter, VolumeRecord)> {
    let name = item
        .name
        .clone()
        .context("an item without a name cannot be read")?;
    let mount = match item.kind {
        DataKind::Bind => HelperMount::Bind {
            path: name.clone(),
            read_only: true,
        },
        _ => HelperMount::Volume {
            name: name.clone(),
            read_only: true,
        },
    };
    let mut spec = volume_spec(item, name);
    spec.consistency = mode.mode.to_string();
    spec.stopped = consistency::stopped_names(stopped);
    spec.read_at = Some(jiff::Timestamp::now());
    let started = std::time::Instant::now();
    if let Some((run, stream)) = fastpath::launch(fast, printer, Op::Pack, &mount, None).await? {
        printer.verbose(format!("reading `{}` on the fast path", item.key));
        let (writer, result) = add_volume(printer, writer, item, spec, stream).await?;
        let finished = run.finish().await;
        let record = match (result, finished) {
            (Ok(record), Ok(report)) => {
                if report.skipped_sockets > 0 {
                    printer.verbose(format!(
                        "`{}`: {} unix socket(s) left out (they hold no data)",
                        item.key, report.skipped_sockets
                    ));
                }
                record
            }
            // The helper's own explanation first: the stream only shows that it stopped.
            (_, Err(e)) => {
                return Err(e.context(format!("failed to back up `{}`", item.key)));
            }
            (Err(e), Ok(_)) => {
                return Err(
                    anyhow::Error::new(e).context(format!("failed to back up `{}`", item.key))
                );
            }
        };
        printer.verbose(format!(
            "read `{}` in {:.2} s",
            item.key,
            started.elapsed().as_secs_f64()
        ));
        return Ok((writer, record));
    }
    printer.verbose(format!(
        "reading `{}` through the engine's archive API",
        item.key
    ));
    let helper = engine.create_helper(&mount).await?;
    let stream = engine
        .with_long_timeout()
        .download_data(&helper)
        .map_err(std::io::Error::other);
    let bridge = crate::pipe::reader_of(stream);
    let (writer, result) = add_volume(printer, writer, item, spec, bridge).await?;
    printer.verbose(format!(
        "read `{}` in {:.2} s",
        item.key,
        started.elapsed().as_secs_f64()
    ));
    helper.remove().await?;
    let record = result.with_context(|| format!("failed to back up `{}`", item.key))?;
    Ok((writer, record))
}

/// Streams one volume's tar from `source` into the writer on a blocking thread, with a progress bar.
async fn add_volume(
    printer: &Printer,
    mut writer: BackupWriter,
    item: &DataItem,
    spec: VolumeSpec,
    source: impl std::io::Read + Send + 'static,
) -> anyhow::Result<(
    BackupWriter,
    Result<VolumeRecord, crate::archive::ArchiveError>,
)> {
    let progress = Progress::bytes(printer.progress_enabled(), &item.key, item.size_bytes);
    let bar = progress.clone();
    let done = tokio::task::spawn_blocking(move || {
        let reader = CancellableReader::new(source, |n| bar.inc(n));
        let result = writer.add_volume(spec, reader);
        (writer, result)
    })
    .await
    .context("the backup writer stopped unexpectedly")?;
    progress.finish();
    Ok(done)
}

fn volume_spec(item: &DataItem, name: String) -> VolumeSpec {
    let volume = item.volume.as_ref();
    let definition = item.definition.as_ref();
    VolumeSpec {
        key: item.key.clone(),
        name,
        kind: item.kind,
        tier: item.tier(),
        reason: item.classification.reason.clone(),
        driver: volume
            .map(|v| v.driver.clone())
            .or_else(|| definition.and_then(|d| d.driver.clone()))
            .unwrap_or_else(|| {
                if item.kind == DataKind::Bind {
                    String::new()
                } else {
                    "local".to_string()
                }
            }),
        driver_opts: volume.map(|v| v.options.clone()).unwrap_or_default(),
        labels: volume.map(|v| v.labels.clone()).unwrap_or_default(),
        users: item
            .users
            .iter()
            .map(|u| VolumeUser {
                service: u.service.clone(),
                target: u.target.clone(),
                read_only: u.read_only,
            })
            .collect(),
        consistency: Consistency::Live.to_string(),
        stopped: Vec::new(),
        read_at: None,
        tar_prefix: None,
    }
}

/// One status line per volume, and a loud warning when the stream held fewer bytes than the engine
/// measured: the engine skips files it cannot read and still answers with success.
fn report_volume(printer: &Printer, item: &DataItem, record: &VolumeRecord) {
    let how = if record.consistency == Consistency::Live.as_str() {
        " live, its services running".to_string()
    } else if record.stopped.is_empty() {
        String::new()
    } else {
        format!(
            " with {} stopped",
            quoted(record.stopped.iter().map(String::as_str))
        )
    };
    printer.status(format!(
        "Backed up `{}`{how}: {} in {} entries, stored as {}",
        item.key,
        human_size(record.file_bytes),
        record.entries,
        human_size(record.stored_bytes)
    ));
    // The engine's measure: every non-directory once (hardlinks once), a symlink by its target's length.
    // It was taken before the services were stopped for the read, so where they were, the files it
    // measured were still being written (a database writes its shutdown checkpoint as it stops), and the
    // two cannot be compared.
    let streamed = record.file_bytes + record.symlink_bytes;
    if let Some(measured) = item.size_bytes
        && measured != streamed
        && record.stopped.is_empty()
    {
        printer.warn(format!(
            "`{}`: the engine measured {} of files but the backup holds {}: files may have been unreadable or changed while they were read; check the engine's log and compare with `docker persist inspect {}`",
            item.key,
            measured_text(measured),
            measured_text(streamed),
            item.key
        ));
    }
}

fn measured_text(bytes: u64) -> String {
    format!("{} ({bytes} bytes)", human_size(bytes))
}

fn add_compose_files(writer: &mut BackupWriter, files: &[PathBuf]) -> anyhow::Result<()> {
    let mut used = HashSet::new();
    for (n, path) in files.iter().enumerate() {
        let base = path
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_else(|| "compose.yaml".to_string());
        // Two files of the same name from different directories keep both.
        let name = if used.insert(base.clone()) {
            base
        } else {
            format!("{}-{base}", n + 1)
        };
        let bytes = fs_err::read(path)?;
        writer.add_compose_file(&name, &bytes)?;
    }
    Ok(())
}

/// Refuses to start when the destination cannot hold the data uncompressed.
fn check_free_space(dir: &Path, items: &[&DataItem]) -> anyhow::Result<()> {
    let needed: u64 = items.iter().filter_map(|i| i.size_bytes).sum();
    // The directory may not exist yet: measure the nearest existing ancestor.
    let mut probe = dir;
    while !probe.exists() {
        match probe.parent() {
            Some(p) if !p.as_os_str().is_empty() => probe = p,
            _ => {
                probe = Path::new(".");
                break;
            }
        }
    }
    let available = fs4::available_space(probe)
        .with_context(|| format!("failed to read the free space of `{}`", probe.display()))?;
    if available < needed {
        bail!(
            "not enough space in `{}`: the data to back up measures {}, {} is free",
            dir.display(),
            human_size(needed),
            human_size(available)
        );
    }
    Ok(())
}
