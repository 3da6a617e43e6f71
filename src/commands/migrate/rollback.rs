//! `migrate --rollback VOLUME`: the services back on the volume, the directory's changes copied back into it
//! first (after a `pre-rollback` backup of what the volume holds).

use std::collections::BTreeSet;
use std::path::PathBuf;

use anyhow::{Context as _, bail};

use crate::cli::MigrateArgs;
use crate::commands::backup::{Destination, write_backup};
use crate::commands::backups::backup_dir;
use crate::commands::consistency;
use crate::commands::{ExitStatus, Session, UsageError, quoted};
use crate::compose::migration::{self, Migration, OverrideFile};
use crate::engine::helper::HelperMount;
use crate::engine::{ContainerInfo, Engine};
use crate::fastpath::{self};
use crate::intent::{Expected, Step, StepState};
use crate::inventory::{self, bind_mounts};

use super::copy::{copy_tree, tree_digest};
use super::overrides::{mounts_volume, recreate, restore_override, write_override};
use super::{confirm, emit_json, services_text};

/// `migrate --rollback VOLUME`.
pub(super) async fn rollback(
    session: &Session<'_>,
    args: &MigrateArgs,
) -> anyhow::Result<ExitStatus> {
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

/// Empties a volume by recreating it with the same name, driver, options and labels (so Compose still
/// owns it).
pub(super) async fn recreate_volume(engine: &Engine, name: &str) -> anyhow::Result<()> {
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
