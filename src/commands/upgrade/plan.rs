//! Planning an upgrade: which services, each one's current and new image, the data it protects, the pins
//! the override file gets, and the plan as shown before it is confirmed.

use std::collections::BTreeSet;
use std::path::Path;

use anyhow::{Context as _, bail};

use super::ServicePlan;
use super::health::short_id;
use crate::cli::UpgradeArgs;
use crate::commands::upgrade_pg;
use crate::commands::{UsageError, quoted};
use crate::compose::Project;
use crate::compose::migration::Pin;
use crate::engine::{ContainerInfo, Engine};
use crate::inventory::{DataItem, Inventory};
use crate::report::{Printer, human_size, table};

/// The services named, else every service of the project that runs or ran.
pub(super) fn chosen_services(
    inventory: &Inventory,
    args: &UpgradeArgs,
) -> anyhow::Result<Vec<String>> {
    let project = &inventory.project;
    let has_container = |s: &str| {
        inventory
            .containers
            .iter()
            .any(|c| !c.helper && c.service.as_deref() == Some(s))
    };
    let services: Vec<String> = if args.services.is_empty() {
        project
            .services
            .keys()
            .filter(|s| has_container(s))
            .cloned()
            .collect()
    } else {
        let mut out: Vec<String> = Vec::new();
        for s in &args.services {
            if !project.services.contains_key(s) {
                bail!(UsageError {
                    message: format!("project `{}` has no service `{s}`", project.name),
                    hint: Some(format!(
                        "its services: {}",
                        quoted(project.services.keys().map(String::as_str))
                    )),
                });
            }
            if !has_container(s) {
                bail!(UsageError {
                    message: format!("service `{s}` has no container: nothing runs to upgrade"),
                    hint: Some(format!("`docker compose up -d {s}` starts it")),
                });
            }
            if !out.contains(s) {
                out.push(s.clone());
            }
        }
        out
    };
    if services.is_empty() {
        bail!(UsageError {
            message: format!("no service of project `{}` has a container", project.name),
            hint: Some("`docker compose up -d` starts them; then upgrade".to_string()),
        });
    }
    if args.image.is_some() && services.len() != 1 {
        bail!(UsageError {
            message: format!(
                "`--image` sets the image of one service, and {} are chosen",
                services.len()
            ),
            hint: Some(
                "name the service: `docker persist upgrade SERVICE --image IMAGE`".to_string()
            ),
        });
    }
    Ok(services)
}

/// The image a service moves to: `--image`, else the image an earlier `--image` pinned, else the
/// Compose file's.
fn new_image_name(
    project: &Project,
    service: &str,
    args: &UpgradeArgs,
    pins: &[Pin],
) -> Option<String> {
    if let Some(i) = &args.image {
        return Some(i.clone());
    }
    if let Some(p) = pins
        .iter()
        .find(|p| p.service == service && p.why == "upgrade")
    {
        return Some(p.image.clone());
    }
    project.services.get(service)?.image.clone()
}

pub(super) async fn plan_service(
    engine: &Engine,
    inventory: &Inventory,
    service: &str,
    args: &UpgradeArgs,
    pins: &[Pin],
) -> anyhow::Result<ServicePlan> {
    let mut containers: Vec<ContainerInfo> = inventory
        .containers
        .iter()
        .filter(|c| !c.helper && c.service.as_deref() == Some(service))
        .cloned()
        .collect();
    containers.sort_by_key(|c| (!c.is_running(), c.name.clone()));
    let first = containers
        .first()
        .cloned()
        .context("a chosen service has no container")?;
    let status = engine
        .container_status(&first.id)
        .await?
        .with_context(|| format!("container `{}` disappeared", first.name))?;
    let new_image =
        new_image_name(&inventory.project, service, args, pins).ok_or_else(|| UsageError {
            message: format!(
                "service `{service}` names no image (it is built): there is no new image to move to"
            ),
            hint: Some(format!(
                "build the new image, then `docker persist upgrade {service} --image IMAGE`"
            )),
        })?;
    let local = engine.image(&new_image).await?;
    let pull = local.as_ref().is_none_or(|i| !i.repo_digests.is_empty());
    let pg = upgrade_pg::plan(
        engine,
        inventory,
        service,
        &status,
        &new_image,
        local.as_ref(),
    )
    .await?;
    Ok(ServicePlan {
        service: service.to_string(),
        containers,
        current_image: if status.image.is_empty() {
            first.image.clone()
        } else {
            status.image.clone()
        },
        current_id: status.image_id,
        new_id: local.map(|i| i.id),
        new_image,
        pull,
        pg,
    })
}

/// The critical and important data the services mount, that exists.
pub(super) fn protected_items<'a>(
    inventory: &'a Inventory,
    services: &BTreeSet<&str>,
) -> Vec<&'a DataItem> {
    inventory
        .items
        .iter()
        .filter(|i| super::super::guard::needs_protection(i.tier()))
        .filter(|i| i.exists == Some(true) && i.name.is_some())
        .filter(|i| i.classification.rule != Some("host-system"))
        .filter(|i| {
            i.users
                .iter()
                .any(|u| services.contains(u.service.as_str()))
        })
        .collect()
}

/// The pins after this upgrade: `--image` pins its service; a service upgraded to its Compose file's
/// image loses a rollback pin; pins of switched PostgreSQL volumes stay.
pub(super) fn pins_for(pins: &[Pin], plans: &[ServicePlan], args: &UpgradeArgs) -> Vec<Pin> {
    let mut out: Vec<Pin> = pins
        .iter()
        .filter(|p| {
            !plans.iter().any(|s| s.service == p.service)
                || p.why == "upgrade"
                || p.volume.is_some()
        })
        .cloned()
        .collect();
    if let (Some(image), Some(plan)) = (&args.image, plans.first()) {
        let kept = out.iter().position(|p| p.service == plan.service);
        let old = kept.map(|i| out.remove(i));
        if old
            .as_ref()
            .is_some_and(|p| &p.image == image && p.why == "upgrade")
        {
            out.extend(old);
        } else {
            out.push(Pin {
                service: plan.service.clone(),
                image: image.clone(),
                why: "upgrade".to_string(),
                at: jiff::Timestamp::now().to_string(),
                environment: old
                    .as_ref()
                    .map(|p| p.environment.clone())
                    .unwrap_or_default(),
                volume: old.and_then(|p| p.volume),
            });
        }
    }
    out.sort_by(|a, b| a.service.cmp(&b.service));
    out
}

pub(super) fn print_plan(
    printer: &Printer,
    plans: &[ServicePlan],
    items: &[&DataItem],
    dir: &Path,
    dry_run: bool,
) {
    let rows: Vec<Vec<String>> = plans
        .iter()
        .map(|p| {
            vec![
                p.service.clone(),
                format!("{} ({})", p.current_image, short_id(&p.current_id)),
                match (&p.new_id, p.unchanged()) {
                    (_, true) => format!("{} (unchanged)", p.new_image),
                    (Some(id), _) if !p.pull => {
                        format!("{} ({}, local)", p.new_image, short_id(id))
                    }
                    _ => format!("{} (pulled first)", p.new_image),
                },
                match &p.pg {
                    Some(pg) => pg.describe(),
                    None => "-".to_string(),
                },
            ]
        })
        .collect();
    if !printer.json_mode() {
        printer.data(table::render(
            &["SERVICE", "CURRENT IMAGE", "NEW IMAGE", "POSTGRESQL"],
            &rows,
        ));
    }
    let verb = if dry_run {
        "Would back up"
    } else {
        "Backing up"
    };
    if items.is_empty() {
        printer.status("The services keep no critical or important data: no backup is needed");
    } else {
        printer.status(format!(
            "{verb} {} into `{}` (tag `pre-upgrade`) with the services stopped; a failed upgrade restores it",
            items
                .iter()
                .map(|i| format!(
                    "`{}` ({}, {})",
                    i.key,
                    i.tier(),
                    i.size_bytes.map(human_size).unwrap_or_else(|| "size unknown".to_string())
                ))
                .collect::<Vec<_>>()
                .join(", "),
            dir.display()
        ));
    }
}
