//! `inspect VOLUME`: where one piece of data physically lives, how big it is and who uses it.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use super::ls::{ItemJson, SCHEMA_VERSION, users_text, yes_no};
use super::{ExitStatus, Session, UsageError};
use crate::cli::InspectArgs;
use crate::compose::classify::DataKind;
use crate::engine::ContainerInfo;
use crate::inventory::{DataItem, bind_mounts};
use crate::report::{human_size, table};

#[derive(Serialize)]
struct InspectJson<'a> {
    schema_version: u32,
    project: &'a str,
    volume: VolumeJson<'a>,
}

#[derive(Serialize)]
struct VolumeJson<'a> {
    #[serde(flatten)]
    item: ItemJson<'a>,
    driver: Option<&'a str>,
    options: BTreeMap<String, String>,
    mountpoint: Option<&'a str>,
    labels: BTreeMap<String, String>,
    created_at: Option<&'a str>,
    containers: Vec<ContainerJson<'a>>,
}

#[derive(Serialize)]
struct ContainerJson<'a> {
    id: &'a str,
    name: &'a str,
    service: Option<&'a str>,
    state: &'a str,
    target: &'a str,
    read_only: bool,
}

pub async fn run(session: &Session<'_>, args: &InspectArgs) -> anyhow::Result<ExitStatus> {
    let (engine, inventory) = session.inventory().await?;
    let Some(item) = inventory.find(&args.volume) else {
        let keys: Vec<String> = inventory
            .items
            .iter()
            .map(|i| format!("`{}`", i.key))
            .collect();
        return Err(UsageError {
            message: format!(
                "project `{}` has no volume or bind mount `{}`",
                inventory.project.name, args.volume
            ),
            hint: Some(if keys.is_empty() {
                "the project's Compose files declare no data".to_string()
            } else {
                format!("`docker persist ls` lists them: {}", keys.join(", "))
            }),
        }
        .into());
    };

    // Containers that mount it: for volumes any container on the engine, for binds the project's own.
    let containers: Vec<(ContainerInfo, String, bool)> = match (&item.kind, &item.name) {
        (DataKind::Bind, Some(path)) => inventory
            .containers
            .iter()
            .flat_map(|c| {
                bind_mounts(c, Path::new(path))
                    .map(|m| (c.clone(), m.destination.clone(), !m.read_write))
            })
            .collect(),
        (_, Some(name)) if item.exists == Some(true) => engine
            .containers_using_volume(name)
            .await?
            .into_iter()
            .flat_map(|c| {
                c.mounts
                    .iter()
                    .filter(|m| m.name.as_deref() == Some(name.as_str()))
                    .map(|m| (c.clone(), m.destination.clone(), !m.read_write))
                    .collect::<Vec<_>>()
            })
            .collect(),
        _ => Vec::new(),
    };

    let printer = session.printer;
    let volume = item.volume.as_ref();
    let driver = volume
        .map(|v| v.driver.as_str())
        .or_else(|| item.definition.as_ref().and_then(|d| d.driver.as_deref()));
    let options = volume
        .map(|v| v.options.clone())
        .or_else(|| item.definition.as_ref().map(|d| d.driver_opts.clone()))
        .unwrap_or_default();
    let labels = volume
        .map(|v| v.labels.clone())
        .or_else(|| item.definition.as_ref().map(|d| d.labels.clone()))
        .unwrap_or_default();

    if printer.json_mode() {
        printer.json(&InspectJson {
            schema_version: SCHEMA_VERSION,
            project: &inventory.project.name,
            volume: VolumeJson {
                item: {
                    // How a backup would keep it consistent, and why, as `ls --json` says.
                    let mode = super::consistency::resolve(None, item, &inventory.project);
                    let mut json = ItemJson::from(item);
                    json.consistency = Some(mode.mode);
                    json.consistency_reason = Some(mode.reason);
                    json
                },
                driver: driver.or((item.kind != DataKind::Bind).then_some("local")),
                options,
                mountpoint: mountpoint(item),
                labels,
                created_at: volume.and_then(|v| v.created_at.as_deref()),
                containers: containers
                    .iter()
                    .map(|(c, target, ro)| ContainerJson {
                        id: &c.id,
                        name: &c.name,
                        service: c.service.as_deref(),
                        state: &c.state,
                        target,
                        read_only: *ro,
                    })
                    .collect(),
            },
        })?;
        return Ok(ExitStatus::Success);
    }

    let kv = |pairs: &BTreeMap<String, String>| {
        if pairs.is_empty() {
            "-".to_string()
        } else {
            pairs
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(", ")
        }
    };
    let mut rows: Vec<(&str, String)> = vec![
        ("Key", item.key.clone()),
        (
            "Name",
            item.name
                .clone()
                .unwrap_or_else(|| "- (no container yet)".into()),
        ),
        ("Kind", item.kind.to_string()),
        ("Tier", printer.tier(item.tier())),
        ("Why", item.classification.reason.clone()),
        ("Exists", yes_no(item.exists)),
        (
            "Size",
            item.size_bytes
                .map(human_size)
                .unwrap_or_else(|| "unknown".into()),
        ),
        (
            "Removed by down -v",
            if item.removed_by_down_v { "yes" } else { "no" }.into(),
        ),
        ("Consistency", {
            let mode = super::consistency::resolve(None, item, &inventory.project);
            format!("{} ({})", mode.mode, mode.reason)
        }),
    ];
    if item.kind == DataKind::Bind {
        rows.push(("Host path", item.name.clone().unwrap_or_default()));
    } else {
        rows.push(("Driver", driver.unwrap_or("local").to_string()));
        rows.push(("Options", kv(&options)));
        rows.push((
            "Mountpoint",
            mountpoint(item)
                .unwrap_or("- (volume does not exist)")
                .to_string(),
        ));
        rows.push(("Labels", kv(&labels)));
    }
    if let Some(v) = &item.migrated_from {
        rows.push((
            "Migrated from",
            format!("volume `{v}` (`docker persist migrate --rollback {v}` goes back)"),
        ));
    }
    if let Some(p) = &item.left_over_from_migration {
        rows.push((
            "Left over",
            format!("its data was migrated to `{p}`; this volume is kept as it was then"),
        ));
    }
    rows.push(("Used by", users_text(&item.users)));
    let mut out = String::new();
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (k, v) in &rows {
        out.push_str(&format!("{:width$}  {v}\n", format!("{k}:")));
    }
    if containers.is_empty() {
        out.push_str(&format!("{:width$}  none\n", "Containers:"));
    } else {
        out.push('\n');
        let table_rows: Vec<Vec<String>> = containers
            .iter()
            .map(|(c, target, ro)| {
                vec![
                    c.name.clone(),
                    c.service.clone().unwrap_or_else(|| "-".into()),
                    c.state.clone(),
                    format!("{target}{}", if *ro { " (ro)" } else { "" }),
                ]
            })
            .collect();
        out.push_str(&table::render(
            &["CONTAINER", "SERVICE", "STATE", "MOUNTED AT"],
            &table_rows,
        ));
    }
    printer.data(out);
    Ok(ExitStatus::Success)
}

/// Where the data is on the engine host: the volume's mountpoint, or a bind's host path.
fn mountpoint(item: &DataItem) -> Option<&str> {
    match item.kind {
        DataKind::Bind => item.name.as_deref(),
        _ => item.volume.as_ref().map(|v| v.mountpoint.as_str()),
    }
}
