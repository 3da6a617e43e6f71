//! `migrate VOLUME --to PATH` and `migrate --rollback VOLUME`: moves a named volume's data into a host
//! directory that Compose mounts from then on, and back.
//!
//! Order, so that nothing is lost: plan and check (an absolute PATH on the engine's host that is not a
//! system directory nor inside Docker's storage, empty unless `--force`, `--yes` for an external volume),
//! confirm; stop the containers that use the volume (in the intent record, so a killed run is finished or undone by the next command); take
//! a normal backup tagged `pre-migrate`; copy the tree into PATH through helper containers (fast or
//! universal path) keeping owners, modes, links, times and file capabilities; compare the content digest
//! of the source with PATH read back; only then write docker persist's Compose override file and have
//! Compose recreate the services, and check that their containers mount PATH. A failure before the
//! override is written starts the services again on the untouched volume and removes what was copied
//! into PATH when PATH was empty or created by this command. The source volume is never changed.
//!
//! The rollback stops the services, copies PATH back into the volume when it changed since the migration
//! (after a `pre-rollback` backup of what the volume holds), removes the migration from the override file
//! and has Compose recreate the services on the volume. PATH is left in place.

use std::collections::BTreeSet;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use futures_util::TryStreamExt;
use serde::Serialize;

use super::backup::{Destination, write_backup};
use super::backups::backup_dir;
use super::compose_cli::ComposeCli;
use super::consistency;
use super::restore::{self, Refused};
use super::{ExitStatus, Session, UsageError, quoted};
use crate::archive::digest::{digest_tar, digest_tar_into};
use crate::archive::{ContentDigest, DigestOptions, DigestVersion, rebase_tar};
use crate::cli::MigrateArgs;
use crate::compose::Project;
use crate::compose::classify::DataKind;
use crate::compose::migration::{self, MigratedMount, Migration, OverrideFile};
use crate::engine::helper::HelperMount;
use crate::engine::{ContainerInfo, Engine};
use crate::fastpath::{self, FastPath, Op};
use crate::intent::{Expected, Step, StepState};
use crate::inventory::{self, DataItem, Inventory, bind_mounts, normalize};
use crate::report::{Printer, human_size, prompt};

/// Host directories a migration never writes into (nor below, for the ones marked `true`).
const SYSTEM_DIRS: &[(&str, bool)] = &[
    ("/", false),
    ("/bin", true),
    ("/boot", true),
    ("/dev", true),
    ("/etc", true),
    ("/home", false),
    ("/lib", true),
    ("/lib32", true),
    ("/lib64", true),
    ("/media", false),
    ("/mnt", false),
    ("/opt", false),
    ("/proc", true),
    ("/root", false),
    ("/run", true),
    ("/sbin", true),
    ("/srv", false),
    ("/sys", true),
    ("/tmp", false),
    ("/usr", true),
    ("/var", false),
    ("/var/lib", false),
    ("/var/lib/docker", true),
    ("/var/lib/containerd", true),
    ("/var/run", true),
];

#[derive(Serialize)]
struct MigrateJson<'a> {
    schema_version: u32,
    volume: &'a str,
    engine_name: &'a str,
    to: &'a str,
    rollback: bool,
    dry_run: bool,
    /// The backup taken first (`pre-migrate`, or `pre-rollback` when the rollback replaced data).
    backup: Option<&'a Path>,
    content_digest: Option<String>,
    services: Vec<&'a str>,
    override_file: &'a Path,
    /// Rollback: whether the directory's content had changed and was copied back into the volume.
    #[serde(skip_serializing_if = "Option::is_none")]
    copied_back: Option<bool>,
}

pub async fn run(session: &Session<'_>, args: &MigrateArgs) -> anyhow::Result<ExitStatus> {
    if args.rollback {
        return rollback(session, args).await;
    }
    let printer = session.printer;
    let to = args.to.as_deref().unwrap_or_default();
    let project = session.load_project()?;
    let (recorded, bad) = migration::recorded(&project);
    for b in &bad {
        printer.warn(b);
    }
    let engine = session.connect().await?;
    session.refuse_if_unresolved(&project.name)?;
    engine.remove_leftover_helpers().await?;
    let inventory = inventory::build(project, &engine).await?;
    let item = find_volume(&inventory, &args.volume, &recorded)?;
    let name = item.name.clone().unwrap_or_default();
    if item.exists != Some(true) {
        bail!(UsageError {
            message: format!("volume `{name}` does not exist, so there is nothing to migrate"),
            hint: Some(
                "`docker compose up` creates it; migrate once it holds the data".to_string()
            ),
        });
    }
    let path = checked_path(to, item)?;
    let path_str = path.display().to_string();
    let mounts: Vec<MigratedMount> = item
        .users
        .iter()
        .map(|u| MigratedMount {
            service: u.service.clone(),
            target: u.target.clone(),
            read_only: u.read_only,
        })
        .collect();
    if mounts.is_empty() {
        bail!(UsageError {
            message: format!(
                "no service of project `{}` mounts `{}`, so Compose has nothing to mount instead",
                inventory.project.name, item.key
            ),
            hint: None,
        });
    }

    // Who uses the volume now: every container of any project.
    let users: Vec<ContainerInfo> = engine
        .containers_using_volume(&name)
        .await?
        .into_iter()
        .filter(|c| !c.helper)
        .collect();
    let outsiders: Vec<&ContainerInfo> = users
        .iter()
        .filter(|c| !inventory.containers.iter().any(|p| p.id == c.id))
        .collect();
    if !outsiders.is_empty() {
        return Err(Refused {
            message: format!(
                "`{name}` is also used by containers outside project `{}`: {}; they would keep using the volume while the project moves to `{path_str}`",
                inventory.project.name,
                quoted(outsiders.iter().map(|c| c.name.as_str()))
            ),
            hint: "remove those containers (or point them at the new directory) first".to_string(),
        }
        .into());
    }
    let mut running: Vec<ContainerInfo> =
        users.iter().filter(|c| c.is_running()).cloned().collect();
    consistency::sort_for_start(&mut running, &consistency::start_order(&inventory.project));

    // Where Compose is told.
    let overrides = OverrideFile::locate(&inventory.project)
        .context("the project has no Compose file to put an override next to")?;
    let mut all = recorded.clone();
    all.push(Migration {
        key: item.key.clone(),
        volume: name.clone(),
        to: path_str.clone(),
        at: jiff::Timestamp::now().to_string(),
        content_digest: String::new(),
        mounts: mounts.clone(),
        persist: item
            .definition
            .as_ref()
            .and_then(|d| d.persist.as_ref())
            .map(|p| p.raw.clone())
            .unwrap_or_default(),
    });
    let previous = check_override_is_ours(&overrides, &all)?;

    // What is at PATH now.
    let existed = engine.host_path_exists(&path_str).await?;
    let has_data = existed
        && restore::has_data(
            &engine,
            HelperMount::Bind {
                path: path_str.clone(),
                read_only: true,
            },
            &format!("`{path_str}`"),
        )
        .await?;

    print_plan(
        printer,
        item,
        &path_str,
        existed,
        has_data,
        &running,
        &overrides.path,
        args.dry_run,
    );
    if !automatic_override(session) {
        printer.warn(format!(
            "this project is loaded with `-f` or COMPOSE_FILE, so Compose does not load `{}` by itself: add `-f {}` after your files (or append it to COMPOSE_FILE)",
            overrides.path.display(),
            overrides.path.display()
        ));
    }
    if args.dry_run {
        emit_json(
            printer,
            item,
            &name,
            &path_str,
            false,
            true,
            None,
            None,
            &mounts,
            &overrides.path,
            None,
        )?;
        return Ok(ExitStatus::Success);
    }
    if has_data && !args.force {
        return Err(Refused {
            message: format!(
                "`{path_str}` is not empty; refusing to copy `{}` into it",
                item.key
            ),
            hint:
                "choose an empty or missing directory, or pass `--force` to copy over what is there"
                    .to_string(),
        }
        .into());
    }
    if item.kind == DataKind::External && !args.yes {
        return Err(Refused {
            message: format!(
                "`{}` is an external volume: other projects or tools may use `{name}` too, and after the migration this project no longer does",
                item.key
            ),
            hint: "pass `--yes` once you know nothing else relies on it".to_string(),
        }
        .into());
    }
    if !confirm(
        args.yes,
        &format!(
            "Stop {}, copy `{}` into `{path_str}` and have Compose mount that directory from now on?",
            if running.is_empty() {
                "nothing".to_string()
            } else {
                quoted(running.iter().map(|c| c.name.as_str()))
            },
            item.key
        ),
    )? {
        printer.status("Nothing was changed");
        return Ok(ExitStatus::Refused);
    }
    let fast = fastpath::select(&engine, printer, args.data_path).await?;

    // Stop, back up, copy, verify: any failure here leaves the services on their volume.
    consistency::stop_saying(session, &engine, &inventory.project, &running).await?;
    let clean_target = !has_data;
    let copy_step = std::cell::Cell::new(None);
    session.note_on_interrupt(format!(
        "the services were started again on volume `{name}`, unchanged; `{path_str}` may hold part of the copy: empty it before migrating again"
    ));
    let copied = async {
        let dir = backup_dir(&args.dir, &inventory.project.directory);
        printer.status(format!("Taking a backup of `{}` first", item.key));
        let (finished, _) = write_backup(
            session,
            &engine,
            &inventory.project,
            &[item],
            &Destination {
                dir: &dir,
                tag: Some("pre-migrate"),
                options: crate::archive::WriterOptions::auto(),
                fast: fast.as_ref(),
                consistency: Some(crate::compose::Consistency::Stop),
                // Its services are stopped already.
                hooks: false,
                follow: None,
            },
        )
        .await
        .context("the backup before the migration failed; nothing was changed")?;
        printer.status(format!("Backup: `{}`", finished.path.display()));
        copy_step.set(Some(session.step_begin(
            &inventory.project,
            Step::CopyInto {
                path: path_str.clone(),
                was_empty: clean_target,
            },
        )?));
        if !existed {
            printer.verbose(format!("creating `{path_str}` on the engine's host"));
            engine.create_host_dir(&path_str).await?;
        }
        let digest = copy_tree(
            &engine,
            printer,
            fast.as_ref(),
            &HelperMount::Volume {
                name: name.clone(),
                read_only: true,
            },
            &HelperMount::Bind {
                path: path_str.clone(),
                read_only: false,
            },
            &format!("`{}` → `{path_str}`", item.key),
        )
        .await?;
        anyhow::Ok((finished.path, digest))
    }
    .await;
    let (backup, digest) = match copied {
        Ok(done) => {
            if let Some(step) = copy_step.get() {
                session.step_mark(step, StepState::Done);
            }
            done
        }
        Err(e) => {
            if let Some(step) = copy_step.get() {
                session.step_mark(step, StepState::Settled);
            }
            undo_copy(
                &engine,
                printer,
                fast.as_ref(),
                &path_str,
                existed,
                clean_target,
            )
            .await;
            if !running.is_empty() {
                printer.status(format!(
                    "Starting {} again on volume `{name}`",
                    quoted(running.iter().map(|c| c.name.as_str()))
                ));
            }
            consistency::start_again(session, &engine, &running).await?;
            return Err(e.context(format!(
                "the migration of `{}` failed; the services use volume `{name}` as before and the Compose files are unchanged",
                item.key
            )));
        }
    };

    // Tell Compose, then have it recreate the services on the directory.
    if let Some(m) = all.last_mut() {
        m.content_digest = digest.to_string();
    }
    // From here the directory holds the data, and the old containers must not run on the volume again,
    // not even when this command is killed: Compose starts the services on the directory.
    for c in &running {
        session.forget_restart(&c.id);
    }
    if let Ok(mut notes) = session.notes.lock() {
        notes.clear();
    }
    session.note_on_interrupt(format!(
        "`{}` is migrated to `{path_str}` and Compose is told in `{}`; `docker compose up -d` starts the services on it",
        item.key,
        overrides.path.display()
    ));
    let services: BTreeSet<&str> = running
        .iter()
        .filter_map(|c| c.service.as_deref())
        .collect();
    let (pins, _) = migration::recorded_pins(&inventory.project);
    let next = migration::render_all(&all, &pins);
    // The commit point: once the override file holds the migration, a killed run is finished.
    let override_step = session.step_begin(
        &inventory.project,
        Step::Override {
            path: overrides.path.clone(),
            previous: previous.clone(),
            next: Some(next.clone()),
            services: services.iter().map(|s| s.to_string()).collect(),
            expected: Expected::Bind {
                path: path_str.clone(),
                content_digest: digest.to_string(),
                mounts: mounts.clone(),
            },
        },
    )?;
    if let Err(e) = write_override(&overrides.path, &next) {
        session.step_mark(override_step, StepState::Settled);
        consistency::start_again(session, &engine, &running).await?;
        return Err(e.context(format!(
            "failed to write `{}`; the services use volume `{name}` as before",
            overrides.path.display()
        )));
    }
    session.step_mark(override_step, StepState::Done);
    printer.status(format!("Wrote `{}`", overrides.path.display()));
    let brought_up = recreate(
        session,
        &engine,
        &inventory.project,
        &overrides.path,
        &running,
        &services,
        |c| mounts_bind(c, &mounts, &path),
        &format!("bind `{path_str}`"),
    )
    .await;
    if let Err(e) = brought_up {
        // Back to the volume: the previous override, the containers recreated as they were. This
        // command says what it did; nothing is left for the next one.
        session.steps_settled();
        let reverted = restore_override(&overrides.path, previous.as_deref());
        let again = recreate(
            session,
            &engine,
            &inventory.project,
            &overrides.path,
            &running,
            &services,
            |_| true,
            "",
        )
        .await;
        let mut message = format!(
            "Compose could not start the services on `{path_str}`; the Compose change is undone and volume `{name}` is untouched"
        );
        if let Err(r) = reverted {
            message = format!(
                "Compose could not start the services on `{path_str}`, and the override file could not be put back ({r:#}): remove the migration of `{}` from `{}`",
                item.key,
                overrides.path.display()
            );
        }
        if let Err(a) = again {
            message.push_str(&format!(
                "; the services could not be started again on the volume ({a:#}): run `docker compose up -d`"
            ));
        }
        let e = e.context(message);
        return Err(e);
    }
    printer.status(format!(
        "Migrated `{}` ({}) to `{path_str}`, mounted by {} from now on. Volume `{name}` is left as it was: `docker volume rm {name}` removes it once you no longer need it",
        item.key,
        human_size(item.size_bytes.unwrap_or_default()),
        services_text(&services)
    ));
    emit_json(
        printer,
        item,
        &name,
        &path_str,
        false,
        false,
        Some(&backup),
        Some(digest.to_string()),
        &mounts,
        &overrides.path,
        None,
    )?;
    Ok(ExitStatus::Success)
}

/// "service `db`", "services `a`, `b`", or what applies when none runs now.
fn services_text(services: &BTreeSet<&str>) -> String {
    match services.len() {
        0 => "its services once they start".to_string(),
        1 => format!("service {}", quoted(services.iter().copied())),
        _ => format!("services {}", quoted(services.iter().copied())),
    }
}

/// The volume to migrate: a named or external volume of the project that is not migrated yet.
fn find_volume<'a>(
    inventory: &'a Inventory,
    wanted: &str,
    recorded: &[Migration],
) -> anyhow::Result<&'a DataItem> {
    if let Some(m) = recorded
        .iter()
        .find(|m| m.key == wanted || m.volume == wanted)
    {
        bail!(UsageError {
            message: format!("`{}` is migrated to `{}` already", m.key, m.to),
            hint: Some(format!(
                "`docker persist migrate --rollback {}` goes back to the volume first",
                m.key
            )),
        });
    }
    let item = inventory
        .items
        .iter()
        .find(|i| i.key == wanted || i.name.as_deref() == Some(wanted))
        .ok_or_else(|| UsageError {
            message: format!(
                "project `{}` has no volume `{wanted}`",
                inventory.project.name
            ),
            hint: Some("`docker persist ls` lists the project's volumes".to_string()),
        })?;
    match item.kind {
        DataKind::Named | DataKind::External => Ok(item),
        DataKind::Bind => bail!(UsageError {
            message: format!("`{wanted}` is a bind mount already"),
            hint: None,
        }),
        _ => bail!(UsageError {
            message: format!(
                "`{wanted}` is an anonymous volume; only named volumes can be migrated"
            ),
            hint: Some("give it a name in the Compose file first".to_string()),
        }),
    }
}

/// PATH as an absolute, normalised path that is safe to write into.
fn checked_path(to: &str, item: &DataItem) -> anyhow::Result<PathBuf> {
    if !to.starts_with('/') {
        bail!(UsageError {
            message: format!("`{to}` is not an absolute path"),
            hint: Some("PATH is a directory on the engine's host, e.g. `/srv/pgdata`".to_string()),
        });
    }
    if to.contains([':', ',', '\n']) {
        bail!(UsageError {
            message: format!(
                "`{to}` has a `:`, `,` or newline, which Docker's bind mounts cannot take"
            ),
            hint: None,
        });
    }
    let path = normalize(Path::new(to));
    for (dir, below) in SYSTEM_DIRS {
        let dir = Path::new(dir);
        if path == dir || (*below && path.starts_with(dir)) {
            bail!(UsageError {
                message: format!(
                    "`{}` is a system directory; refusing to put data there",
                    path.display()
                ),
                hint: Some(
                    "choose a directory of its own, e.g. `/srv/<project>/<volume>`".to_string()
                ),
            });
        }
    }
    if let Some(v) = &item.volume {
        let mountpoint = Path::new(&v.mountpoint);
        // `<data root>/volumes/<name>/_data`: nothing inside Docker's storage.
        let storage = mountpoint
            .ancestors()
            .nth(3)
            .filter(|p| *p != Path::new("/"));
        if path.starts_with(mountpoint) || storage.is_some_and(|s| path.starts_with(s)) {
            bail!(UsageError {
                message: format!(
                    "`{}` is inside Docker's own storage (volume `{}` is at `{}`)",
                    path.display(),
                    v.name,
                    v.mountpoint
                ),
                hint: Some("choose a directory outside Docker's data root".to_string()),
            });
        }
    }
    Ok(path)
}

/// Whether the project's files were found by Compose's own discovery, which loads the override file.
pub(crate) fn automatic_override(session: &Session<'_>) -> bool {
    session.project_args.files.is_empty()
        && std::env::var_os("COMPOSE_FILE").is_none_or(|v| v.is_empty())
}

/// The current content of our override file (`None`: there is none), or a refusal when an override file
/// exists that docker persist did not write (its comments and formatting would be lost).
pub(crate) fn check_override_is_ours(
    overrides: &OverrideFile,
    all: &[Migration],
) -> anyhow::Result<Option<String>> {
    if overrides.present.len() > 1 {
        return Err(Refused {
            message: format!(
                "the project directory has several override files ({}); Compose v1 refuses to load such a project",
                quoted(overrides.present.iter().filter_map(|p| p.file_name()?.to_str()))
            ),
            hint: "keep one override file, then run the migration again".to_string(),
        }
        .into());
    }
    if overrides.present.is_empty() {
        return Ok(None);
    }
    let text = fs_err::read_to_string(&overrides.path)?;
    if migration::is_ours(&text) {
        return Ok(Some(text));
    }
    Err(Refused {
        message: format!(
            "`{}` is your own override file, and docker persist does not edit your files (their comments and formatting would be lost); after the migration Compose needs:\n{}{}",
            overrides.path.display(),
            migration::services_snippet(all),
            migration::record_snippet(all)
        ),
        hint: format!(
            "move what `{}` holds into your main Compose file (or load it with `-f`), so that docker persist can write its own override file; then run the migration again",
            overrides.path.display()
        ),
    }
    .into())
}

#[allow(clippy::too_many_arguments)]
fn print_plan(
    printer: &Printer,
    item: &DataItem,
    path: &str,
    existed: bool,
    has_data: bool,
    running: &[ContainerInfo],
    override_file: &Path,
    dry_run: bool,
) {
    let verb = if dry_run {
        "Would migrate"
    } else {
        "Migrating"
    };
    printer.status(format!(
        "{verb} `{}` (volume `{}`, {}) to `{path}`:",
        item.key,
        item.name.as_deref().unwrap_or_default(),
        human_size(item.size_bytes.unwrap_or_default())
    ));
    printer.status(format!(
        "  directory: {}",
        match (existed, has_data) {
            (false, _) => "created (it does not exist)",
            (true, false) => "exists and is empty",
            (true, true) => "exists and is NOT empty (`--force` copies over it)",
        }
    ));
    if !running.is_empty() {
        printer.status(format!(
            "  stopping {} for the copy",
            quoted(running.iter().map(|c| c.name.as_str()))
        ));
    }
    printer
        .status("  a backup tagged `pre-migrate` first, then the copy, checked by content digest");
    for u in &item.users {
        printer.status(format!(
            "  service `{}`: `{}` mounts `{path}` instead{}",
            u.service,
            u.target,
            if u.read_only { " (read-only)" } else { "" }
        ));
    }
    printer.status(format!(
        "  Compose is told in `{}`",
        override_file.display()
    ));
    printer.status(format!(
        "  volume `{}` is kept as it is",
        item.name.as_deref().unwrap_or_default()
    ));
}

#[allow(clippy::too_many_arguments)]
fn emit_json(
    printer: &Printer,
    item: &DataItem,
    name: &str,
    to: &str,
    rollback: bool,
    dry_run: bool,
    backup: Option<&Path>,
    content_digest: Option<String>,
    mounts: &[MigratedMount],
    override_file: &Path,
    copied_back: Option<bool>,
) -> anyhow::Result<()> {
    if !printer.json_mode() {
        return Ok(());
    }
    let mut services: Vec<&str> = mounts.iter().map(|m| m.service.as_str()).collect();
    services.dedup();
    printer.json(&MigrateJson {
        schema_version: 1,
        volume: &item.key,
        engine_name: name,
        to,
        rollback,
        dry_run,
        backup,
        content_digest,
        services,
        override_file,
        copied_back,
    })
}

/// A confirmation: `--yes`, an answer on a terminal, else a refusal (exit 3). `false`: the user said no.
fn confirm(yes: bool, question: &str) -> anyhow::Result<bool> {
    if yes {
        return Ok(true);
    }
    if !prompt::interactive() {
        return Err(Refused {
            message: format!("refusing to go ahead without confirmation: {question}"),
            hint: "run it in a terminal to answer, or pass `--yes`".to_string(),
        }
        .into());
    }
    prompt::confirm(question)
}

/// After a failed copy into `path`: removes what was copied when the directory was empty or created by
/// this command, and says what is there now.
async fn undo_copy(
    engine: &Engine,
    printer: &Printer,
    fast: Option<&FastPath>,
    path: &str,
    existed: bool,
    clean_target: bool,
) {
    if !clean_target {
        printer.warn(format!(
            "`{path}` was not empty before and may now also hold part of the copy; nothing else was changed"
        ));
        return;
    }
    match clear_dir(engine, printer, fast, path).await {
        Ok(()) if existed => printer.status(format!("`{path}` is empty again")),
        Ok(()) => printer.status(format!(
            "`{path}` was created by this migration and is empty again (the directory itself is left)"
        )),
        Err(c) => printer.warn(format!(
            "`{path}` may hold part of the copy and could not be emptied ({c:#}); remove what is in it before migrating again"
        )),
    }
}

/// Empties a host directory through a fast helper: the universal path has no way to remove files, so
/// this needs the fast path's preconditions even when the copy took the universal path.
pub(crate) async fn clear_dir(
    engine: &Engine,
    printer: &Printer,
    fast: Option<&FastPath>,
    path: &str,
) -> anyhow::Result<()> {
    let own;
    let fast = match fast {
        Some(f) => Some(f),
        None => {
            own = fastpath::select(engine, printer, None).await?;
            own.as_ref()
        }
    };
    let mount = HelperMount::Bind {
        path: path.to_string(),
        read_only: false,
    };
    let Some((run, socket)) = fastpath::launch(fast, printer, Op::Clear, &mount, None).await?
    else {
        bail!("emptying a directory needs the fast path, which cannot work here");
    };
    drop(socket);
    run.finish().await?;
    Ok(())
}

/// Copies the tree at `from` into `to` (which it may replace entries of) through helper containers, and
/// checks that `to` read back has the content digest of what was read from `from`. Returns that digest.
async fn copy_tree(
    engine: &Engine,
    printer: &Printer,
    fast: Option<&FastPath>,
    from: &HelperMount,
    to: &HelperMount,
    what: &str,
) -> anyhow::Result<ContentDigest> {
    let started = std::time::Instant::now();
    let version = DigestVersion::default();
    if let Some((pack, pack_socket)) = fastpath::launch(fast, printer, Op::Pack, from, None).await?
    {
        match fastpath::launch(fast, printer, Op::Unpack(version), to, None).await {
            Ok(Some((unpack, unpack_socket))) => {
                printer.verbose(format!("copying {what} on the fast path"));
                let sent = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
                    let result = (|| {
                        let mut sink =
                            std::io::BufWriter::with_capacity(1024 * 1024, &unpack_socket);
                        let summary = digest_tar_into(
                            std::io::BufReader::with_capacity(1024 * 1024, &pack_socket),
                            &mut sink,
                            &DigestOptions::default().with_version(version),
                        )?;
                        sink.flush()?;
                        anyhow::Ok(summary)
                    })();
                    let how = if result.is_ok() {
                        std::net::Shutdown::Write
                    } else {
                        std::net::Shutdown::Both
                    };
                    let _ = unpack_socket.shutdown(how);
                    let _ = pack_socket.shutdown(std::net::Shutdown::Both);
                    result
                })
                .await
                .context("the copy stopped unexpectedly")?;
                let (packed, unpacked) = (pack.finish().await, unpack.finish().await);
                // The helpers' own explanations first, the writing one's when the stream could not be
                // passed on to it, else the reading one's: the stream only shows that it stopped.
                if let Err(e) = &sent {
                    let writing = matches!(
                        e.downcast_ref::<crate::archive::DigestError>(),
                        Some(crate::archive::DigestError::Sink(_))
                    ) || e.downcast_ref::<std::io::Error>().is_some();
                    if !writing {
                        packed
                            .as_ref()
                            .map_err(|p| anyhow::anyhow!("{p:#}"))
                            .context("failed to read the source")?;
                    }
                }
                let unpacked = unpacked.context("failed to write the copy")?;
                packed.context("failed to read the source")?;
                let summary = sent.context("failed to copy")?;
                let found = unpacked
                    .digest
                    .context("the helper did not report the copy's content digest")?;
                printer.verbose(format!(
                    "copied {what} in {:.2} s",
                    started.elapsed().as_secs_f64()
                ));
                return checked(summary.digest, found, what);
            }
            Ok(None) => {
                drop(pack_socket);
                let _ = pack.finish().await;
            }
            Err(e) => {
                drop(pack_socket);
                let _ = pack.finish().await;
                return Err(e);
            }
        }
    }
    printer.verbose(format!("copying {what} through the engine's archive API"));
    let source = engine.create_helper(from).await?;
    let target = engine.create_helper(to).await?;
    let result = async {
        let download = engine
            .with_long_timeout()
            .download_data(&source)
            .map_err(std::io::Error::other);
        let reader = crate::pipe::reader_of(download);
        let (writer, body) = crate::pipe::stream_of();
        let producer = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
            let failer = writer.clone();
            let (pipe_reader, pipe_writer) = std::io::pipe()?;
            // The tree read from the source is digested on this thread and re-rooted under `data/` on
            // another, so that the directory's own owner, mode and times are set too.
            let rebaser = std::thread::spawn(move || {
                let mut pipe_reader = pipe_reader;
                let sink = std::io::BufWriter::with_capacity(256 * 1024, writer);
                let mut sink = rebase_tar(&mut pipe_reader, sink, "data")?;
                sink.flush()?;
                // The padding after the end of the archive is read too, so the digest never sees its
                // last writes refused.
                std::io::copy(&mut pipe_reader, &mut std::io::sink()).map(|_| ())
            });
            let digested = digest_tar_into(
                reader,
                pipe_writer,
                &DigestOptions::default().with_version(version),
            );
            let rebased = rebaser
                .join()
                .map_err(|_| anyhow::anyhow!("the copy stopped unexpectedly"))?;
            let failed: anyhow::Error = match (digested, rebased) {
                (Ok(summary), Ok(())) => return Ok(summary),
                // The digest could not pass the tree on: why is the re-rooting's to say.
                (Err(crate::archive::DigestError::Sink(_)), Err(e)) => e.into(),
                (Err(e), _) => e.into(),
                (Ok(_), Err(e)) => e.into(),
            };
            failer.fail(std::io::Error::other(failed.to_string()));
            Err(failed)
        });
        let upload = engine.with_long_timeout().upload_root(&target, body).await;
        let produced = producer.await.context("the copy stopped unexpectedly")?;
        upload.context("failed to write the copy")?;
        let summary = produced.context("failed to read the source")?;
        let back = engine
            .with_long_timeout()
            .download_data(&target)
            .map_err(std::io::Error::other);
        let reader = crate::pipe::reader_of(back);
        let options = DigestOptions::default().with_version(version);
        let found = tokio::task::spawn_blocking(move || digest_tar(reader, &options)).await??;
        anyhow::Ok((summary.digest, found.digest))
    }
    .await;
    let removed = (source.remove().await, target.remove().await);
    let (expected, found) = result?;
    removed.0?;
    removed.1?;
    printer.verbose(format!(
        "copied {what} in {:.2} s",
        started.elapsed().as_secs_f64()
    ));
    checked(expected, found, what)
}

fn checked(
    expected: ContentDigest,
    found: ContentDigest,
    what: &str,
) -> anyhow::Result<ContentDigest> {
    if expected != found {
        bail!("the copy {what} differs from the source (digest {found} instead of {expected})");
    }
    Ok(found)
}

/// Writes a file whole (a temporary file renamed over it), so that Compose never reads half of it.
pub(crate) fn write_override(path: &Path, text: &str) -> anyhow::Result<()> {
    let tmp = path.with_extension("persist-tmp");
    let mut f = fs_err::File::create(&tmp)?;
    f.write_all(text.as_bytes())?;
    // On disk before it counts: a migration killed by a power cut is resolved from what the file holds.
    f.sync_all()?;
    drop(f);
    fs_err::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        fs_err::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// Puts the override file back as it was: `None` removes it.
pub(crate) fn restore_override(path: &Path, previous: Option<&str>) -> anyhow::Result<()> {
    match previous {
        Some(text) => write_override(path, text),
        None => match fs_err::remove_file(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        },
    }
}

/// Whether a container mounts `path` (a bind) at every target of `mounts` that belongs to its service.
pub(crate) fn mounts_bind(c: &ContainerInfo, mounts: &[MigratedMount], path: &Path) -> bool {
    mounts
        .iter()
        .filter(|m| c.service.as_deref() == Some(m.service.as_str()))
        .all(|m| bind_mounts(c, path).any(|b| same_target(&b.destination, &m.target)))
}

/// Whether a container mounts volume `name` at every target of `mounts` that belongs to its service.
pub(crate) fn mounts_volume(c: &ContainerInfo, mounts: &[MigratedMount], name: &str) -> bool {
    mounts
        .iter()
        .filter(|m| c.service.as_deref() == Some(m.service.as_str()))
        .all(|m| {
            c.mounts.iter().any(|x| {
                x.kind == "volume"
                    && x.name.as_deref() == Some(name)
                    && same_target(&x.destination, &m.target)
            })
        })
}

fn same_target(a: &str, b: &str) -> bool {
    a.trim_end_matches('/') == b.trim_end_matches('/')
}

/// Has Compose recreate `services` (whose containers `stopped` this command stopped) with the current
/// Compose files plus `override_file`, and checks that each new container passes `mounted`.
#[allow(clippy::too_many_arguments)]
async fn recreate(
    session: &Session<'_>,
    engine: &Engine,
    project: &Project,
    override_file: &Path,
    stopped: &[ContainerInfo],
    services: &BTreeSet<&str>,
    mounted: impl Fn(&ContainerInfo) -> bool,
    mount_text: &str,
) -> anyhow::Result<()> {
    // Containers outside Compose's services (none, normally) are simply started again.
    let loose: Vec<ContainerInfo> = stopped
        .iter()
        .filter(|c| c.service.is_none())
        .cloned()
        .collect();
    consistency::start_again(session, engine, &loose).await?;
    if services.is_empty() {
        return Ok(());
    }
    let mut project = project.clone();
    if override_file.exists() && !project.files.iter().any(|f| f == override_file) {
        project.files.push(override_file.to_path_buf());
    }
    project.files.retain(|f| f.exists());
    let prefer_v1 = stopped.iter().any(|c| {
        c.compose_version
            .as_deref()
            .is_some_and(|v| v.starts_with("1."))
    });
    let compose = ComposeCli::find(session.globals, &project, prefer_v1)?;
    let mut a = vec!["up", "-d", "--no-deps"];
    a.extend(services.iter().copied());
    session.printer.status(format!(
        "Recreating {} with Compose",
        quoted(services.iter().copied())
    ));
    let ran = compose.run(&a).await;
    // The old containers are replaced (or Compose failed): they are not started again by this command.
    for c in stopped.iter().filter(|c| c.service.is_some()) {
        session.forget_restart(&c.id);
        session.journal_started(&c.id);
    }
    ran?;
    let now = engine.project_containers(&project.name).await?;
    for service in services {
        let containers: Vec<&ContainerInfo> = now
            .iter()
            .filter(|c| c.service.as_deref() == Some(*service) && !c.helper)
            .collect();
        if containers.is_empty() || !containers.iter().all(|c| c.is_running()) {
            bail!(
                "service `{service}` is not running after `{}`",
                compose.describe(&a)
            );
        }
        if let Some(c) = containers.iter().find(|c| !mounted(c)) {
            bail!(
                "container `{}` of service `{service}` does not {mount_text} where expected",
                c.name
            );
        }
    }
    Ok(())
}

/// `migrate --rollback VOLUME`.
async fn rollback(session: &Session<'_>, args: &MigrateArgs) -> anyhow::Result<ExitStatus> {
    let printer = session.printer;
    let project = session.load_project()?;
    let (recorded, bad) = migration::recorded(&project);
    for b in &bad {
        printer.warn(b);
    }
    let Some(m) = recorded
        .iter()
        .find(|m| m.key == args.volume || m.volume == args.volume)
        .cloned()
    else {
        bail!(UsageError {
            message: format!(
                "`{}` is not migrated in project `{}`",
                args.volume, project.name
            ),
            hint: Some("`docker persist ls` shows migrated data as kind `bind`".to_string()),
        });
    };
    let overrides = OverrideFile::locate(&project)
        .context("the project has no Compose file next to which an override could be")?;
    let previous = fs_err::read_to_string(&overrides.path).ok();
    if !previous.as_deref().is_some_and(migration::is_ours) {
        bail!(
            "the migration of `{}` is recorded, but not in an override file docker persist wrote (`{}`); remove the bind mounts of `{}` from your Compose files by hand",
            m.key,
            overrides.path.display(),
            m.to
        );
    }
    let engine = session.connect().await?;
    session.refuse_if_unresolved(&project.name)?;
    engine.remove_leftover_helpers().await?;
    let inventory = inventory::build(project, &engine).await?;
    let Some(volume_item) = inventory.items.iter().find(|i| i.key == m.key) else {
        bail!(
            "volume `{}` is no longer declared in the Compose files",
            m.key
        );
    };
    if engine.volume(&m.volume).await?.is_none() {
        bail!(
            "volume `{}` no longer exists; the data stays in `{}` (to keep using the directory, leave the migration as it is)",
            m.volume,
            m.to
        );
    }
    let path = PathBuf::from(&m.to);
    let mut running: Vec<ContainerInfo> = inventory
        .containers
        .iter()
        .filter(|c| c.is_running() && !c.helper && bind_mounts(c, &path).next().is_some())
        .cloned()
        .collect();
    consistency::sort_for_start(&mut running, &consistency::start_order(&inventory.project));

    let verb = if args.dry_run {
        "Would roll back"
    } else {
        "Rolling back"
    };
    printer.status(format!(
        "{verb} the migration of `{}` to `{}`:",
        m.key, m.to
    ));
    if !running.is_empty() {
        printer.status(format!(
            "  stopping {}",
            quoted(running.iter().map(|c| c.name.as_str()))
        ));
    }
    printer.status(format!(
        "  if `{}` changed since the migration: a backup of volume `{}` tagged `pre-rollback`, then its content replaced by the directory's",
        m.to, m.volume
    ));
    printer.status(format!(
        "  the migration removed from `{}`; the services mount volume `{}` again",
        overrides.path.display(),
        m.volume
    ));
    printer.status(format!("  `{}` is left in place", m.to));
    if args.dry_run {
        emit_json(
            printer,
            volume_item,
            &m.volume,
            &m.to,
            true,
            true,
            None,
            None,
            &m.mounts,
            &overrides.path,
            None,
        )?;
        return Ok(ExitStatus::Success);
    }
    if !confirm(
        args.yes,
        &format!(
            "Stop {}, copy the changes made in `{}` back into volume `{}` and go back to the volume?",
            if running.is_empty() {
                "nothing".to_string()
            } else {
                quoted(running.iter().map(|c| c.name.as_str()))
            },
            m.to,
            m.volume
        ),
    )? {
        printer.status("Nothing was changed");
        return Ok(ExitStatus::Refused);
    }
    let fast = fastpath::select(&engine, printer, args.data_path).await?;
    consistency::stop_saying(session, &engine, &inventory.project, &running).await?;

    let copied = async {
        let now = tree_digest(
            &engine,
            printer,
            fast.as_ref(),
            &HelperMount::Bind {
                path: m.to.clone(),
                read_only: true,
            },
        )
        .await?;
        if now.to_string() == m.content_digest {
            printer.status(format!(
                "`{}` is unchanged since the migration; volume `{}` holds the same data",
                m.to, m.volume
            ));
            return anyhow::Ok((None, false));
        }
        printer.status(format!(
            "`{}` changed since the migration; taking a backup of volume `{}` first",
            m.to, m.volume
        ));
        let dir = backup_dir(&args.dir, &inventory.project.directory);
        let (finished, _) = write_backup(
            session,
            &engine,
            &inventory.project,
            &[volume_item],
            &Destination {
                dir: &dir,
                tag: Some("pre-rollback"),
                options: crate::archive::WriterOptions::auto(),
                fast: fast.as_ref(),
                consistency: Some(crate::compose::Consistency::Stop),
                // Its services are stopped already.
                hooks: false,
                follow: None,
            },
        )
        .await
        .context("the backup of the volume failed; nothing was changed")?;
        printer.status(format!("Backup: `{}`", finished.path.display()));
        session.note_on_interrupt(format!(
            "volume `{}` as it was before the rollback is in `{}`",
            m.volume,
            finished.path.display()
        ));
        let spec = engine.volume(&m.volume).await?;
        let replace = session.step_begin(
            &inventory.project,
            Step::ReplaceData {
                key: m.key.clone(),
                name: m.volume.clone(),
                bind: false,
                safety: Some(finished.path.clone()),
                was_empty: false,
                source: m.to.clone(),
                driver: spec.as_ref().map(|v| v.driver.clone()).unwrap_or_default(),
                options: spec.as_ref().map(|v| v.options.clone()).unwrap_or_default(),
                labels: spec.map(|v| v.labels).unwrap_or_default(),
            },
        )?;
        recreate_volume(&engine, &m.volume).await?;
        copy_tree(
            &engine,
            printer,
            fast.as_ref(),
            &HelperMount::Bind {
                path: m.to.clone(),
                read_only: true,
            },
            &HelperMount::Volume {
                name: m.volume.clone(),
                read_only: false,
            },
            &format!("`{}` → volume `{}`", m.to, m.volume),
        )
        .await
        .with_context(|| {
            format!(
                "the directory `{}` is untouched; volume `{}` as it was is in `{}`",
                m.to,
                m.volume,
                finished.path.display()
            )
        })?;
        session.step_mark(replace, StepState::Done);
        Ok((Some(finished.path), true))
    }
    .await;
    let (backup, copied_back) = match copied {
        Ok(done) => done,
        Err(e) => {
            consistency::start_again(session, &engine, &running).await?;
            return Err(e.context(format!(
                "the rollback of `{}` failed; the services still use `{}`",
                m.key, m.to
            )));
        }
    };

    // Our Compose change goes; Compose recreates the services on the volume.
    let rest: Vec<Migration> = recorded
        .iter()
        .filter(|r| r.key != m.key)
        .cloned()
        .collect();
    // The images `upgrade` pinned stay.
    let (pins, _) = migration::recorded_pins(&inventory.project);
    let keep_file = !rest.is_empty() || !pins.is_empty();
    let services: BTreeSet<&str> = running
        .iter()
        .filter_map(|c| c.service.as_deref())
        .collect();
    let override_step = session.step_begin(
        &inventory.project,
        Step::Override {
            path: overrides.path.clone(),
            previous: previous.clone(),
            next: keep_file.then(|| migration::render_all(&rest, &pins)),
            services: services.iter().map(|s| s.to_string()).collect(),
            expected: Expected::Volume {
                name: m.volume.clone(),
                mounts: m.mounts.clone(),
            },
        },
    )?;
    for c in &running {
        session.forget_restart(&c.id);
    }
    if !keep_file {
        restore_override(&overrides.path, None)?;
        printer.status(format!("Removed `{}`", overrides.path.display()));
    } else {
        write_override(&overrides.path, &migration::render_all(&rest, &pins))?;
        printer.status(format!(
            "Removed the migration of `{}` from `{}`",
            m.key,
            overrides.path.display()
        ));
    }
    session.step_mark(override_step, StepState::Done);
    let mut project = inventory.project.clone();
    project.files.retain(|f| f != &overrides.path || keep_file);
    recreate(
        session,
        &engine,
        &project,
        &overrides.path,
        &running,
        &services,
        |c| mounts_volume(c, &m.mounts, &m.volume),
        &format!("mount volume `{}`", m.volume),
    )
    .await
    .with_context(|| format!("the migration is undone in the Compose files, and `{}` holds the data; run `docker compose up -d`", m.volume))?;
    printer.status(format!(
        "Rolled back `{}`: volume `{}` is mounted by {} again. `{}` is left in place; remove it once you no longer need it",
        m.key,
        m.volume,
        services_text(&services),
        m.to
    ));
    emit_json(
        printer,
        volume_item,
        &m.volume,
        &m.to,
        true,
        false,
        backup.as_deref(),
        None,
        &m.mounts,
        &overrides.path,
        Some(copied_back),
    )?;
    Ok(ExitStatus::Success)
}

/// The content digest of a tree, read through a helper.
pub(crate) async fn tree_digest(
    engine: &Engine,
    printer: &Printer,
    fast: Option<&FastPath>,
    mount: &HelperMount,
) -> anyhow::Result<ContentDigest> {
    let options = DigestOptions::default();
    if let Some((run, socket)) = fastpath::launch(fast, printer, Op::Pack, mount, None).await? {
        let digested = tokio::task::spawn_blocking(move || {
            digest_tar(
                std::io::BufReader::with_capacity(1024 * 1024, &socket),
                &options,
            )
        })
        .await?;
        run.finish().await?;
        return Ok(digested?.digest);
    }
    let helper = engine.create_helper(mount).await?;
    let stream = engine
        .with_long_timeout()
        .download_data(&helper)
        .map_err(std::io::Error::other);
    let reader = crate::pipe::reader_of(stream);
    let digested = tokio::task::spawn_blocking(move || digest_tar(reader, &options)).await?;
    helper.remove().await?;
    Ok(digested?.digest)
}

/// Empties a volume by recreating it with the same name, driver, options and labels (so Compose still
/// owns it).
async fn recreate_volume(engine: &Engine, name: &str) -> anyhow::Result<()> {
    let v = engine
        .volume(name)
        .await?
        .with_context(|| format!("volume `{name}` no longer exists"))?;
    let users = engine.containers_using_volume(name).await?;
    for c in users.iter().filter(|c| !c.helper) {
        if c.is_running() {
            bail!("container `{}` still runs with volume `{name}`", c.name);
        }
        engine.remove_stopped_container(&c.id, &c.name).await?;
    }
    engine.remove_volume(name).await?;
    engine
        .create_volume(name, &v.driver, &v.options, &v.labels)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compose::classify::Classification;
    use crate::engine::VolumeInfo;

    fn item() -> DataItem {
        DataItem {
            key: "dbdata".into(),
            name: Some("app_dbdata".into()),
            kind: DataKind::Named,
            classification: Classification {
                tier: crate::compose::Tier::Critical,
                source: crate::compose::classify::TierSource::Default,
                rule: None,
                reason: String::new(),
            },
            users: Vec::new(),
            size_bytes: None,
            exists: Some(true),
            removed_by_down_v: true,
            declared: true,
            definition: None,
            volume: Some(VolumeInfo {
                name: "app_dbdata".into(),
                driver: "local".into(),
                mountpoint: "/data/docker/volumes/app_dbdata/_data".into(),
                labels: Default::default(),
                options: Default::default(),
                scope: None,
                created_at: None,
            }),
            migrated_from: None,
            left_over_from_migration: None,
        }
    }

    fn refused(to: &str) -> String {
        let e = checked_path(to, &item()).unwrap_err();
        assert!(e.downcast_ref::<UsageError>().is_some(), "{e:#}");
        e.to_string()
    }

    #[test]
    fn a_path_must_be_absolute_and_usable_in_a_bind() {
        assert!(refused("srv/pg").contains("not an absolute path"));
        assert!(refused("/srv/a:b").contains("cannot take"));
    }

    #[test]
    fn system_directories_and_dockers_storage_are_refused() {
        for p in [
            "/",
            "/etc",
            "/etc/pg",
            "/var/lib/docker/x",
            "/usr/local/pg",
            "/proc/1",
            "/tmp",
            "/var",
        ] {
            assert!(refused(p).contains("system directory"), "{p}");
        }
        assert!(refused("/srv/../etc").contains("system directory"));
        // Inside the volume, and anywhere in a data root that is not /var/lib/docker.
        assert!(
            refused("/data/docker/volumes/app_dbdata/_data/x").contains("Docker's own storage")
        );
        assert!(refused("/data/docker/overlay2").contains("Docker's own storage"));
    }

    #[test]
    fn ordinary_directories_are_taken_normalised() {
        assert_eq!(
            checked_path("/srv/pg/", &item()).unwrap(),
            PathBuf::from("/srv/pg")
        );
        assert_eq!(
            checked_path("/tmp/x/./pg", &item()).unwrap(),
            PathBuf::from("/tmp/x/pg")
        );
        assert_eq!(
            checked_path("/data/pg", &item()).unwrap(),
            PathBuf::from("/data/pg")
        );
    }

    #[test]
    fn services_are_named_in_the_singular_and_plural() {
        assert_eq!(services_text(&BTreeSet::from(["db"])), "service `db`");
        assert_eq!(
            services_text(&BTreeSet::from(["a", "b"])),
            "services `a`, `b`"
        );
        assert_eq!(
            services_text(&BTreeSet::new()),
            "its services once they start"
        );
    }
}
