//! `ls`: every piece of data the project keeps, with its tier and why.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::consistency::{self, Resolved};
use super::{ExitStatus, Session};
use crate::cli::LsArgs;
use crate::compose::classify::{DataKind, TierSource};
use crate::compose::{Consistency, Project, Tier};
use crate::inventory::{DataItem, Inventory, User};
use crate::report::{Printer, human_size, table};

/// Version of the `--json` output of `ls` and `inspect`.
pub const SCHEMA_VERSION: u32 = 1;

#[derive(Serialize)]
struct LsJson<'a> {
    schema_version: u32,
    project: &'a str,
    volumes: Vec<ItemJson<'a>>,
    /// Killed commands whose changes could not be finished or undone (see `docker persist` README,
    /// "Nothing is lost").
    #[serde(skip_serializing_if = "Vec::is_empty")]
    unresolved: Vec<UnresolvedJson>,
}

#[derive(Serialize)]
struct UnresolvedJson {
    command: String,
    pid: u32,
    started_at: String,
    problems: Vec<String>,
}

/// The JSON form of one inventory item; `inspect --json` extends it.
#[derive(Serialize)]
pub struct ItemJson<'a> {
    pub key: &'a str,
    pub name: Option<&'a str>,
    pub kind: DataKind,
    pub tier: Tier,
    pub reason: &'a str,
    pub tier_source: TierSource,
    pub rule: Option<&'static str>,
    pub users: &'a [User],
    pub size_bytes: Option<u64>,
    pub exists: Option<bool>,
    pub removed_by_down_v: bool,
    pub declared: bool,
    /// The newest backup file holding this data, if any.
    pub last_backup: Option<LastBackup>,
    /// How a backup would keep it consistent (`stop` or `live`; `dump` when asked for), in `ls`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consistency: Option<Consistency>,
    /// Why it gets that mode.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consistency_reason: Option<String>,
    /// A bind mount holding a migrated volume's data: that volume's key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub migrated_from: Option<&'a str>,
    /// A volume whose data was migrated: the host directory that holds it now (the volume is left over).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub left_over_from_migration: Option<&'a str>,
}

/// Where and when the newest backup of a piece of data is.
#[derive(Debug, Clone, Serialize)]
pub struct LastBackup {
    pub path: PathBuf,
    pub created: String,
    #[serde(skip)]
    pub at: jiff::Timestamp,
}

/// For each volume key, the newest backup in `dir` that holds it. Problems reading the directory are
/// warnings: the inventory stands without them.
pub fn last_backups(printer: &Printer, dir: &Path, project: &str) -> HashMap<String, LastBackup> {
    let mut out = HashMap::new();
    match super::backups::listing(dir, project) {
        Ok(listing) => {
            for b in listing.backups {
                for key in b.manifest.keys() {
                    out.entry(key.to_string()).or_insert_with(|| LastBackup {
                        path: b.path.clone(),
                        created: b.created().to_string(),
                        at: b.created(),
                    });
                }
            }
        }
        Err(e) => printer.warn(format!("cannot list the backups: {e}")),
    }
    out
}

impl<'a> From<&'a DataItem> for ItemJson<'a> {
    fn from(i: &'a DataItem) -> Self {
        ItemJson {
            key: &i.key,
            name: i.name.as_deref(),
            kind: i.kind,
            tier: i.tier(),
            reason: &i.classification.reason,
            tier_source: i.classification.source,
            rule: i.classification.rule,
            users: &i.users,
            size_bytes: i.size_bytes,
            exists: i.exists,
            removed_by_down_v: i.removed_by_down_v,
            declared: i.declared,
            last_backup: None,
            consistency: None,
            consistency_reason: None,
            migrated_from: i.migrated_from.as_deref(),
            left_over_from_migration: i.left_over_from_migration.as_deref(),
        }
    }
}

pub async fn run(session: &Session<'_>, args: &LsArgs) -> anyhow::Result<ExitStatus> {
    let (_, inventory) = session.inventory().await?;
    let mut items: Vec<&DataItem> = inventory
        .items
        .iter()
        .filter(|i| args.tiers.is_empty() || args.tiers.contains(&i.tier()))
        .collect();
    // Most valuable first; file order within a tier.
    items.sort_by_key(|i| i.tier());

    let printer = session.printer;
    let dir = super::backups::backup_dir(&args.dir, &inventory.project.directory);
    let last = last_backups(printer, &dir, &inventory.project.name);
    let unresolved: Vec<crate::intent::Record> = session
        .unresolved
        .lock()
        .map(|u| {
            u.iter()
                .filter(|r| r.project.name == inventory.project.name)
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    if printer.json_mode() {
        printer.json(&LsJson {
            schema_version: SCHEMA_VERSION,
            project: &inventory.project.name,
            unresolved: unresolved
                .iter()
                .map(|r| UnresolvedJson {
                    command: r.command.clone(),
                    pid: r.owner.pid,
                    started_at: r.started_at.clone(),
                    problems: r.unresolved.clone(),
                })
                .collect(),
            volumes: items
                .iter()
                .map(|i| {
                    let mode = consistency::resolve(None, i, &inventory.project);
                    ItemJson {
                        last_backup: last.get(&i.key).cloned(),
                        consistency: Some(mode.mode),
                        consistency_reason: Some(mode.reason),
                        ..ItemJson::from(*i)
                    }
                })
                .collect(),
        })?;
        return Ok(ExitStatus::Success);
    }
    for r in &unresolved {
        printer.warn(format!(
            "UNRESOLVED: {} was killed and left changes that could not be finished or undone; commands that change this project refuse until they are:\n  - {}",
            r.describe(),
            r.unresolved.join("\n  - ")
        ));
    }
    if items.is_empty() {
        printer.status(format!(
            "Project `{}` keeps no data{}",
            inventory.project.name,
            if args.tiers.is_empty() {
                ": no volumes or bind mounts in its Compose files"
            } else {
                " of the requested tiers"
            }
        ));
        return Ok(ExitStatus::Success);
    }
    printer.data(render(printer, &inventory.project, &items, &last));
    printer.status(summary(&inventory, &items));
    Ok(ExitStatus::Success)
}

/// The `ls` table.
fn render(
    printer: &Printer,
    project: &Project,
    items: &[&DataItem],
    last: &HashMap<String, LastBackup>,
) -> String {
    let now = jiff::Timestamp::now();
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|i| {
            let Resolved { mode, source, .. } = consistency::resolve(None, i, project);
            vec![
                i.key.clone(),
                i.name.clone().unwrap_or_else(|| "-".to_string()),
                i.kind.to_string(),
                printer.tier(i.tier()),
                i.size_bytes
                    .map(human_size)
                    .unwrap_or_else(|| "-".to_string()),
                format!("{mode} ({source})"),
                yes_no(i.exists),
                if i.removed_by_down_v { "yes" } else { "no" }.to_string(),
                last.get(&i.key)
                    .map(|b| super::backups::age(now, b.at))
                    .unwrap_or_else(|| "never".to_string()),
                users_text(&i.users),
                why_text(i),
            ]
        })
        .collect();
    table::render(
        &[
            "KEY",
            "NAME",
            "KIND",
            "TIER",
            "SIZE",
            "CONSISTENCY",
            "EXISTS",
            "DOWN -V",
            "LAST BACKUP",
            "USED BY",
            "WHY",
        ],
        &rows,
    )
}

/// Why the tier, after what a migration made of the data.
pub fn why_text(i: &DataItem) -> String {
    match (&i.migrated_from, &i.left_over_from_migration) {
        (Some(v), _) => format!("migrated from volume `{v}`; {}", i.classification.reason),
        (_, Some(p)) => format!("left over: its data was migrated to `{p}`"),
        _ => i.classification.reason.clone(),
    }
}

/// `yes`, `no`, or `?` when unknown.
pub fn yes_no(value: Option<bool>) -> String {
    match value {
        Some(true) => "yes",
        Some(false) => "no",
        None => "?",
    }
    .to_string()
}

/// `db:/var/lib/postgresql/data, backup:/src (ro)`.
pub fn users_text(users: &[User]) -> String {
    if users.is_empty() {
        return "-".to_string();
    }
    users
        .iter()
        .map(|u| {
            format!(
                "{}:{}{}",
                u.service,
                u.target,
                if u.read_only { " (ro)" } else { "" }
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// One line on stderr: counts per tier and what `down -v` would take.
fn summary(inventory: &Inventory, items: &[&DataItem]) -> String {
    let counts: Vec<String> = Tier::ALL
        .iter()
        .filter_map(|t| {
            let n = items.iter().filter(|i| i.tier() == *t).count();
            (n > 0).then(|| format!("{n} {t}"))
        })
        .collect();
    let removed = items.iter().filter(|i| i.removed_by_down_v).count();
    let at_risk = items
        .iter()
        .filter(|i| {
            i.removed_by_down_v
                && i.exists == Some(true)
                && matches!(i.tier(), Tier::Critical | Tier::Important)
        })
        .count();
    let mut line = format!(
        "Project `{}`: {} ({})",
        inventory.project.name,
        plural(items.len(), "piece of data", "pieces of data"),
        counts.join(", ")
    );
    if removed > 0 {
        line.push_str(&format!(
            "; `docker compose down -v` would remove {removed}"
        ));
        if at_risk > 0 {
            line.push_str(&format!(", {at_risk} of them critical or important"));
        }
    }
    line
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_text_marks_read_only_mounts() {
        let users = vec![
            User {
                service: "db".into(),
                target: "/data".into(),
                read_only: false,
                image: None,
            },
            User {
                service: "web".into(),
                target: "/srv".into(),
                read_only: true,
                image: None,
            },
        ];
        assert_eq!(users_text(&users), "db:/data, web:/srv (ro)");
        assert_eq!(users_text(&[]), "-");
    }
}
