//! PostgreSQL major versions for `upgrade`: a server of a new major version cannot start on the data
//! directory of an older one, so the data moves by dump and load into a new volume.

use anyhow::bail;

use super::upgrade::ServicePlan;
use super::{ExitStatus, Session};
use crate::cli::UpgradeArgs;
use crate::compose::Project;
use crate::engine::{Engine, ImageInfo};
use crate::inventory::Inventory;
use crate::report::Printer;

/// A PostgreSQL service whose data directory holds another major version than its new image.
#[derive(Debug, Clone)]
pub struct PgMove {
    pub from_major: String,
    pub to_major: String,
}

impl PgMove {
    pub fn describe(&self) -> String {
        format!("{} → {} (dump and load)", self.from_major, self.to_major)
    }
}

/// The dumps taken from the old servers.
pub struct Dumps;

pub async fn plan(
    _engine: &Engine,
    _inventory: &Inventory,
    _service: &str,
    _current_image_id: &str,
    _new_image: Option<&ImageInfo>,
) -> anyhow::Result<Option<PgMove>> {
    Ok(None)
}

pub async fn check(_engine: &Engine, _printer: &Printer, _plans: &[ServicePlan]) -> anyhow::Result<()> {
    Ok(())
}

pub async fn dump_all(
    _session: &Session<'_>,
    _engine: &Engine,
    _plans: &[ServicePlan],
) -> anyhow::Result<Dumps> {
    Ok(Dumps)
}

pub async fn load_all(
    _session: &Session<'_>,
    _engine: &Engine,
    _project: &Project,
    _plans: &mut [ServicePlan],
    _dumps: Dumps,
) -> anyhow::Result<()> {
    Ok(())
}

pub async fn discard_new(_engine: &Engine, _printer: &Printer, _plans: &[ServicePlan]) {}

pub fn report_success(_printer: &Printer, _service: &str, _pg: &PgMove) {}

pub async fn after(_session: &Session<'_>, _args: &UpgradeArgs) -> anyhow::Result<ExitStatus> {
    bail!("no PostgreSQL major upgrade is recorded")
}
