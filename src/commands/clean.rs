//! `clean [VOLUME…] --tier T`: removes the project's volumes by name or by tier, with the containers that
//! hold them (Compose recreates both on the next `up`). What it asks before removing grows with the tier:
//! regenerable and optional data needs a yes (or `--yes`), important data the same, and critical data a
//! fresh, verified backup (the rule of `check`) and, on a terminal, the project name typed. Bind mounts are
//! never removed: their files belong to the host.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::bail;
use serde::Serialize;

use super::backups::backup_dir;
use super::guard::{Protection, assess, project_backups};
use super::restore::Refused;
use super::{ExitStatus, Session, UsageError, plural, quoted};
use crate::cli::CleanArgs;
use crate::compose::Tier;
use crate::compose::classify::DataKind;
use crate::engine::ContainerInfo;
use crate::intent::{Step, StepState};
use crate::inventory::{DataItem, Inventory};
use crate::report::{human_size, prompt, table};

/// A volume left over by `migrate` (its data moved to a bind mount): the host directory that now holds
/// its data, from the migration record. Such a volume is protected by that copy rather than by a backup.
pub fn migration_leftover(item: &DataItem) -> Option<&Path> {
    item.left_over_from_migration.as_deref().map(Path::new)
}

/// What one `clean` removes.
struct CleanPlan<'a> {
    volumes: Vec<&'a DataItem>,
    /// Containers that hold them, by id.
    containers: BTreeMap<String, ContainerInfo>,
    /// Bind mounts of the chosen tiers, left alone.
    binds: Vec<&'a DataItem>,
}

/// Chooses the volumes: the named ones, else those of `tiers`. Usage errors for what `clean` never removes.
fn choose<'a>(
    inventory: &'a Inventory,
    volumes: &[String],
    tiers: &[Tier],
) -> Result<(Vec<&'a DataItem>, Vec<&'a DataItem>), UsageError> {
    let project = &inventory.project.name;
    if volumes.is_empty() && tiers.is_empty() {
        return Err(UsageError {
            message: "name the volumes to remove, or choose them with `--tier`".to_string(),
            hint: Some(
                "`docker persist clean --tier regenerable --dry-run` shows what that would remove"
                    .to_string(),
            ),
        });
    }
    let mut chosen: Vec<&DataItem> = Vec::new();
    let mut binds = Vec::new();
    for wanted in volumes {
        let item = inventory.find(wanted).ok_or_else(|| UsageError {
            message: format!("project `{project}` has no volume `{wanted}`"),
            hint: Some("`docker persist ls` lists them".to_string()),
        })?;
        match item.kind {
            DataKind::Bind => {
                return Err(UsageError {
                    message: format!(
                        "`{wanted}` is a bind mount: `clean` never removes bind mounts, their files belong to the host"
                    ),
                    hint: Some(format!(
                        "remove the files yourself if you mean to: `{}`",
                        item.name.as_deref().unwrap_or(wanted)
                    )),
                });
            }
            DataKind::External => {
                return Err(UsageError {
                    message: format!(
                        "`{wanted}` is an external volume: project `{project}` uses it but does not own it"
                    ),
                    hint: Some(
                        "`docker volume rm` removes it, if nothing else needs it".to_string(),
                    ),
                });
            }
            DataKind::Named | DataKind::Anonymous => {
                if !chosen.iter().any(|c| c.key == item.key) {
                    chosen.push(item);
                }
            }
        }
    }
    for item in &inventory.items {
        if !tiers.contains(&item.tier()) || chosen.iter().any(|c| c.key == item.key) {
            continue;
        }
        match item.kind {
            DataKind::Named | DataKind::Anonymous => chosen.push(item),
            DataKind::Bind => binds.push(item),
            DataKind::External => {}
        }
    }
    chosen.retain(|i| i.exists == Some(true) && i.name.is_some());
    Ok((chosen, binds))
}

#[derive(Serialize)]
struct CleanJson<'a> {
    schema_version: u32,
    project: &'a str,
    dry_run: bool,
    volumes: Vec<CleanItemJson<'a>>,
    containers: Vec<&'a str>,
    bytes_freed: u64,
}

#[derive(Serialize)]
struct CleanItemJson<'a> {
    key: &'a str,
    name: Option<&'a str>,
    tier: Tier,
    size_bytes: Option<u64>,
    /// The host directory that holds the data of a volume left over by `migrate`.
    #[serde(skip_serializing_if = "Option::is_none")]
    left_over_from_migration: Option<&'a Path>,
}

pub async fn run(session: &Session<'_>, args: &CleanArgs) -> anyhow::Result<ExitStatus> {
    let printer = session.printer;
    let (engine, inventory) = session.inventory().await?;
    let name = inventory.project.name.clone();
    session.refuse_if_unresolved(&name)?;
    let (volumes, binds) = choose(&inventory, &args.volumes, &args.tiers)?;
    let mut plan = CleanPlan {
        volumes,
        containers: BTreeMap::new(),
        binds,
    };
    for item in &plan.volumes {
        let vol = item.name.as_deref().unwrap_or_default();
        for c in engine.containers_using_volume(vol).await? {
            if c.helper {
                continue;
            }
            if !inventory.containers.iter().any(|p| p.id == c.id) {
                bail!(
                    "`{}` is also used by container `{}`, which is not part of project `{name}`; nothing was removed",
                    item.key,
                    c.name
                );
            }
            plan.containers.insert(c.id.clone(), c);
        }
    }
    for b in &plan.binds {
        printer.status(format!(
            "Leaving bind mount `{}` ({}): `clean` never removes bind mounts",
            b.key,
            b.tier()
        ));
    }
    let freed: u64 = plan.volumes.iter().filter_map(|i| i.size_bytes).sum();
    if plan.volumes.is_empty() {
        printer.status(format!(
            "Nothing to remove: project `{name}` has no existing volume of that choice"
        ));
        if printer.json_mode() {
            print_json(printer, &name, &plan, freed, args.dry_run)?;
        }
        return Ok(ExitStatus::Success);
    }

    // Critical data goes only when a fresh, verified backup holds it.
    let critical: Vec<&DataItem> = plan
        .volumes
        .iter()
        .copied()
        .filter(|i| i.tier() == Tier::Critical && migration_leftover(i).is_none())
        .collect();
    if !critical.is_empty() {
        let dir = backup_dir(&args.dir, &inventory.project.directory);
        let backups = project_backups(printer, &dir, &name);
        let assessed = assess(&engine, printer, &critical, &backups).await?;
        let unprotected: Vec<String> = assessed
            .iter()
            .filter_map(|a| match &a.protection {
                Protection::Unprotected { why } => Some(format!("`{}`: {why}", a.item.key)),
                _ => None,
            })
            .collect();
        if !unprotected.is_empty() {
            bail!(Refused {
                message: format!(
                    "refusing to remove critical data without a fresh, verified backup: {}; nothing was removed",
                    unprotected.join("; ")
                ),
                hint: format!(
                    "stop the services (`docker compose stop`), then `docker persist backup {}`, then clean again",
                    critical
                        .iter()
                        .map(|i| i.key.as_str())
                        .collect::<Vec<_>>()
                        .join(" ")
                ),
            });
        }
    }

    if args.dry_run {
        if printer.json_mode() {
            print_json(printer, &name, &plan, freed, true)?;
        } else {
            printer.data(plan_table(printer, &plan));
            printer.status(format!(
                "Would remove {}{}, freeing {}",
                plural(plan.volumes.len(), "volume"),
                containers_text(&plan),
                human_size(freed)
            ));
        }
        return Ok(ExitStatus::Success);
    }

    if !args.yes {
        let what = format!(
            "{} ({}){}",
            plural(plan.volumes.len(), "volume"),
            quoted(plan.volumes.iter().map(|i| i.key.as_str())),
            containers_text(&plan)
        );
        if !prompt::interactive() {
            bail!(Refused {
                message: format!("refusing to remove {what} without confirmation"),
                hint: "run it in a terminal to confirm, or pass `--yes`".to_string(),
            });
        }
        printer.data(plan_table(printer, &plan));
        let confirmed = if critical.is_empty() {
            prompt::confirm(&format!("Remove {what}?"))?
        } else {
            prompt::type_to_confirm(
                &format!(
                    "This removes critical data ({}). Type the project name `{name}` to go on",
                    quoted(critical.iter().map(|i| i.key.as_str()))
                ),
                &name,
            )?
        };
        if !confirmed {
            printer.status("Nothing was removed");
            return Ok(ExitStatus::Refused);
        }
    }

    // Until the first volume goes, a killed `clean` is undone (Compose recreates the containers); from
    // then on it is finished.
    let project = &inventory.project;
    let running: Vec<_> = plan
        .containers
        .values()
        .filter(|c| c.is_running())
        .cloned()
        .collect();
    for c in &running {
        printer.status(format!("Stopping `{}`", c.name));
    }
    super::consistency::stop(session, &engine, project, &running).await?;
    if !plan.containers.is_empty() {
        let step = session.step_begin(
            project,
            Step::RemoveContainers {
                containers: plan
                    .containers
                    .values()
                    .map(super::consistency::removed)
                    .collect(),
            },
        )?;
        for c in plan.containers.values() {
            engine.remove_stopped_container(&c.id, &c.name).await?;
            session.forget_restart(&c.id);
            session.journal_started(&c.id);
            printer.verbose(format!("removed container `{}`", c.name));
        }
        session.step_mark(step, StepState::Done);
    }
    session.step_begin(
        project,
        Step::RemoveVolumes {
            names: plan.volumes.iter().filter_map(|i| i.name.clone()).collect(),
        },
    )?;
    for item in &plan.volumes {
        let vol = item.name.as_deref().unwrap_or_default();
        engine.remove_volume(vol).await?;
        printer.status(format!(
            "Removed `{}` ({}, {})",
            item.key,
            item.tier(),
            item.size_bytes
                .map(human_size)
                .unwrap_or_else(|| "size unknown".to_string())
        ));
    }
    if printer.json_mode() {
        print_json(printer, &name, &plan, freed, false)?;
    }
    printer.status(format!(
        "Freed {}{}",
        human_size(freed),
        if plan.containers.is_empty() {
            String::new()
        } else {
            "; `docker compose up -d` recreates the containers and empty volumes".to_string()
        }
    ));
    Ok(ExitStatus::Success)
}

fn containers_text(plan: &CleanPlan<'_>) -> String {
    if plan.containers.is_empty() {
        String::new()
    } else {
        format!(
            " and {} that {} ({})",
            plural(plan.containers.len(), "container"),
            if plan.containers.len() == 1 {
                "holds it"
            } else {
                "hold them"
            },
            quoted(plan.containers.values().map(|c| c.name.as_str()))
        )
    }
}

fn plan_table(printer: &crate::report::Printer, plan: &CleanPlan<'_>) -> String {
    let rows: Vec<Vec<String>> = plan
        .volumes
        .iter()
        .map(|i| {
            vec![
                i.key.clone(),
                i.name.clone().unwrap_or_default(),
                printer.tier(i.tier()),
                i.size_bytes
                    .map(human_size)
                    .unwrap_or_else(|| "-".to_string()),
                match migration_leftover(i) {
                    Some(dir) => format!(
                        "left over by `migrate`: its data is in `{}` now",
                        dir.display()
                    ),
                    None => i.classification.reason.clone(),
                },
            ]
        })
        .collect();
    table::render(&["KEY", "NAME", "TIER", "SIZE", "WHY"], &rows)
}

fn print_json(
    printer: &crate::report::Printer,
    project: &str,
    plan: &CleanPlan<'_>,
    freed: u64,
    dry_run: bool,
) -> anyhow::Result<()> {
    printer.json(&CleanJson {
        schema_version: 1,
        project,
        dry_run,
        volumes: plan
            .volumes
            .iter()
            .map(|i| CleanItemJson {
                key: &i.key,
                name: i.name.as_deref(),
                tier: i.tier(),
                size_bytes: i.size_bytes,
                left_over_from_migration: migration_leftover(i),
            })
            .collect(),
        containers: plan.containers.values().map(|c| c.name.as_str()).collect(),
        bytes_freed: freed,
    })
}
