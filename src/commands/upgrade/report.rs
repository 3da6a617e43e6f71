//! What an upgrade says: the `--json` document and the report of a successful upgrade.

use std::path::Path;

use serde::Serialize;

use super::health::short_id;
use super::{ServicePlan, Upgrade};
use crate::commands::upgrade_pg;
use crate::report::Printer;

/// Version of the `--json` output of `upgrade`.
pub const SCHEMA_VERSION: u32 = 1;

#[derive(Serialize)]
struct UpgradeJson<'a> {
    schema_version: u32,
    dry_run: bool,
    /// `planned` (dry run), `unchanged`, `upgraded` or `rolled_back`.
    result: &'a str,
    /// The `pre-upgrade` backup.
    backup: Option<&'a Path>,
    /// What failed, for a rollback.
    failure: Option<&'a str>,
    services: Vec<ServiceJson<'a>>,
}

#[derive(Serialize)]
struct ServiceJson<'a> {
    service: &'a str,
    from_image: &'a str,
    from_id: &'a str,
    to_image: &'a str,
    to_id: Option<&'a str>,
    pull: bool,
    postgres: Option<PostgresJson<'a>>,
}

#[derive(Serialize)]
struct PostgresJson<'a> {
    from_major: &'a str,
    to_major: &'a str,
    old_volume: &'a str,
    new_volume: &'a str,
}

/// The `--json` document, when `--json` is on.
pub(super) fn emit_json(
    printer: &Printer,
    plans: &[ServicePlan],
    dry_run: bool,
    result: &str,
    backup: Option<&Path>,
    failure: Option<&str>,
) -> anyhow::Result<()> {
    if !printer.json_mode() {
        return Ok(());
    }
    printer.json(&UpgradeJson {
        schema_version: SCHEMA_VERSION,
        dry_run,
        result,
        backup,
        failure,
        services: plans
            .iter()
            .map(|p| ServiceJson {
                service: &p.service,
                from_image: &p.current_image,
                from_id: &p.current_id,
                to_image: &p.new_image,
                to_id: p.new_id.as_deref(),
                pull: p.pull,
                postgres: p.pg.as_ref().map(|pg| PostgresJson {
                    from_major: &pg.from_major,
                    to_major: &pg.to_major,
                    old_volume: &pg.old_name,
                    new_volume: &pg.new_name,
                }),
            })
            .collect(),
    })
}

impl Upgrade<'_> {
    pub(super) fn report_success(&self, plans: &[ServicePlan], backup: Option<&Path>) {
        let printer = self.printer();
        for p in plans {
            printer.status(format!(
                "Upgraded `{}`: `{}` ({}) → `{}` ({})",
                p.service,
                p.current_image,
                short_id(&p.current_id),
                p.new_image,
                p.new_id.as_deref().map(short_id).unwrap_or("?")
            ));
            if let Some(pg) = &p.pg {
                upgrade_pg::report_success(printer, &p.service, pg);
            }
        }
        if let Some(b) = backup {
            printer.status(format!(
                "The data as it was before is in `{}` (`docker persist restore {}` brings it back)",
                b.display(),
                b.display()
            ));
        }
        if self.args.image.is_some() {
            printer.status(format!(
                "The new image is set in `{}`; put it in your Compose file when you are ready",
                self.overrides.path.display()
            ));
        }
    }
}

pub(super) fn indent(text: &str) -> String {
    text.lines()
        .map(|l| format!("  | {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}
