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
//!
//! Here: the plan, its checks and the migration itself; `copy.rs` copies a tree through helper containers
//! and reads its digest back; `overrides.rs` writes the override file and recreates the services with it;
//! `rollback.rs` is `migrate --rollback`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use serde::Serialize;

use super::backup::{Destination, write_backup};
use super::backups::backup_dir;
use super::consistency;
use super::restore::{self, Refused};
use super::{ExitStatus, Session, UsageError, quoted};
use crate::cli::MigrateArgs;
use crate::compose::classify::DataKind;
use crate::compose::migration::{self, MigratedMount, Migration, OverrideFile};
use crate::engine::ContainerInfo;
use crate::engine::helper::HelperMount;
use crate::fastpath::{self};
use crate::intent::{Expected, Step, StepState};
use crate::inventory::{self, DataItem, Inventory, normalize};
use crate::report::{Printer, human_size, prompt};

mod copy;
mod overrides;
mod rollback;

pub(crate) use copy::{clear_dir, tree_digest};
use copy::{copy_tree, undo_copy};
use overrides::recreate;
pub(crate) use overrides::{
    automatic_override, check_override_is_ours, mounts_bind, mounts_volume, restore_override,
    write_override,
};
use rollback::rollback;

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
pub(super) fn services_text(services: &BTreeSet<&str>) -> String {
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
pub(super) fn emit_json(
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
pub(super) fn confirm(yes: bool, question: &str) -> anyhow::Result<bool> {
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
