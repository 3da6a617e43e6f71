//! `upgrade [SERVICE…] [--image IMAGE]`: moves services to a new image with their data protected, and
//! back when the new version fails.
//!
//! Order, so that nothing is lost: plan (each service's current image by id, the new image, the critical
//! and important data its services mount) and confirm; set the new image in docker persist's override file
//! (`--image`; the user's Compose files are never edited) and pull it when it comes from a registry —
//! both before anything stops, so that a missing image changes nothing; stop the services (journalled, so
//! that a killed run starts them again); take a backup tagged `pre-upgrade` of their data with them stopped
//! and verify it; `docker compose up -d` the services; wait until each is healthy (its healthcheck, else
//! running without a restart for a settle time).
//!
//! When the new version fails (unhealthy, exited, restarting, not healthy in time, Ctrl-C), the upgrade is
//! rolled back: the new containers are stopped, the previous image is pinned by its id in the override
//! file, the data is restored from the `pre-upgrade` backup by `restore` itself, and the services start
//! again and are waited for. A rollback that fails itself stops there and says where the data is and what
//! to run.
//!
//! PostgreSQL services whose data directory holds another major version than the new image are moved by
//! dump and load instead (see [`super::upgrade_pg`]).
//!
//! The parts: planning (`plan.rs`), the guarded run from the override to the new version's wait
//! (`guarded.rs`), waiting for health (`health.rs`), the rollback (`rollback.rs`) and what the command says
//! (`report.rs`).

use std::collections::BTreeSet;

use anyhow::Context as _;

use super::backups::backup_dir;
use super::compose_cli::ComposeCli;
use super::migrate::{
    automatic_override, check_override_is_ours, restore_override, write_override,
};
use super::restore::Refused;
use super::upgrade_pg::{self, PgMove};
use super::{ExitStatus, Session, quoted};
use crate::cli::UpgradeArgs;
use crate::compose::Project;
use crate::compose::migration::{self, Migration, OverrideFile, Pin};
use crate::engine::{ContainerInfo, Engine};
use crate::intent::{Expected, Step, StepId, StepState};
use crate::inventory::Inventory;
use crate::report::{Printer, prompt};

mod guarded;
mod health;
mod plan;
mod report;
mod rollback;

pub use health::{Failed, short_id, wait_healthy};
use plan::{chosen_services, pins_for, plan_service, print_plan, protected_items};
pub use report::SCHEMA_VERSION;
use report::emit_json;

/// One service to upgrade.
#[derive(Debug, Clone)]
pub struct ServicePlan {
    pub service: String,
    /// Its containers now (running or not).
    pub containers: Vec<ContainerInfo>,
    /// The image its container runs now, as configured, and by id.
    pub current_image: String,
    pub current_id: String,
    /// The image it moves to.
    pub new_image: String,
    /// The new image's id when it is here already.
    pub new_id: Option<String>,
    /// Whether `docker compose pull` runs first (the image comes from a registry, or is not here).
    pub pull: bool,
    /// A PostgreSQL major version change: dump and load into a new volume.
    pub pg: Option<PgMove>,
}

impl ServicePlan {
    fn unchanged(&self) -> bool {
        self.pg.is_none() && self.new_id.as_deref() == Some(self.current_id.as_str())
    }
}

pub async fn run(session: &Session<'_>, args: &UpgradeArgs) -> anyhow::Result<ExitStatus> {
    if args.finish || args.rollback {
        return upgrade_pg::after(session, args).await;
    }
    let printer = session.printer;
    let (engine, inventory) = session.inventory().await?;
    engine.remove_leftover_helpers().await?;
    let project = &inventory.project;
    let (migrations, bad) = migration::recorded(project);
    let (pins, bad_pins) = migration::recorded_pins(project);
    for b in bad.iter().chain(&bad_pins) {
        printer.warn(b);
    }
    let services = chosen_services(&inventory, args)?;
    let mut plans = Vec::new();
    for s in &services {
        plans.push(plan_service(&engine, &inventory, s, args, &pins).await?);
    }
    let names: BTreeSet<&str> = plans.iter().map(|p| p.service.as_str()).collect();
    let items = protected_items(&inventory, &names);
    let dir = backup_dir(&args.dir, &project.directory);
    let overrides = OverrideFile::locate(project)
        .context("the project has no Compose file to put an override next to")?;
    let new_pins = pins_for(&pins, &plans, args);
    print_plan(printer, &plans, &items, &dir, args.dry_run);
    let to_do: Vec<&ServicePlan> = plans.iter().filter(|p| !p.unchanged()).collect();
    if to_do.is_empty() && new_pins == pins {
        printer.status("Every service runs its new image already: nothing to upgrade");
        emit_json(printer, &plans, args.dry_run, "unchanged", None, None)?;
        return Ok(ExitStatus::Success);
    }
    if args.dry_run {
        emit_json(printer, &plans, true, "planned", None, None)?;
        return Ok(ExitStatus::Success);
    }
    let previous = if new_pins != pins {
        check_override_is_ours(&overrides, &migrations)?
    } else {
        std::fs::read_to_string(&overrides.path).ok()
    };
    if !automatic_override(session) && (new_pins != pins || !pins.is_empty()) {
        printer.warn(format!(
            "this project is loaded with `-f` or COMPOSE_FILE, so Compose does not load `{}` by itself: add `-f {}` after your files (or append it to COMPOSE_FILE)",
            overrides.path.display(),
            overrides.path.display()
        ));
    }
    let question = format!(
        "Stop {}, back up {} and start the new version?",
        quoted(names.iter().copied()),
        if items.is_empty() {
            "nothing (no critical or important data)".to_string()
        } else {
            quoted(items.iter().map(|i| i.key.as_str()))
        }
    );
    if !args.yes {
        if !prompt::interactive() {
            return Err(Refused {
                message: format!("refusing to upgrade without confirmation: {question}"),
                hint: "run it in a terminal to answer, or pass `--yes`".to_string(),
            }
            .into());
        }
        if !prompt::confirm(&question)? {
            printer.status("Nothing was changed");
            return Ok(ExitStatus::Refused);
        }
    }

    let ctx = Upgrade {
        session,
        engine: &engine,
        inventory: &inventory,
        args,
        overrides: &overrides,
        migrations: &migrations,
        pins: &pins,
        steps: Default::default(),
    };
    // Until the new containers run, an interruption ends the command like any other: what it stopped is
    // started again on the untouched data, and the override file is put back.
    let prepared = tokio::select! {
        r = ctx.prepare(&plans, &new_pins, &items, &dir) => r,
        () = crate::plugin::interrupted() => {
            crate::cancel::cancel();
            printer.warn("interrupted; the services are started again as they were");
            // The helper servers go first: a volume in use cannot be removed.
            let _ = engine.remove_leftover_helpers().await;
            upgrade_pg::remove_unused_new_volumes(&engine, printer).await;
            match restore_override(&overrides.path, previous.as_deref()) {
                Ok(()) => ctx.settle_own_steps(),
                Err(e) => printer.warn(format!("could not put `{}` back: {e:#}", overrides.path.display())),
            }
            return Ok(ExitStatus::Interrupted);
        }
    };
    let (plans, backup) = match prepared {
        Ok(Some(p)) => p,
        Ok(None) => {
            emit_json(printer, &plans, false, "unchanged", None, None)?;
            return Ok(ExitStatus::Success);
        }
        Err(e) => {
            match restore_override(&overrides.path, previous.as_deref()) {
                Ok(()) => ctx.settle_own_steps(),
                Err(r) => printer.warn(format!(
                    "could not put `{}` back: {r:#}",
                    overrides.path.display()
                )),
            }
            return Err(e);
        }
    };
    ctx.start_new(&plans, backup.as_deref()).await
}

/// What every step of one upgrade needs.
struct Upgrade<'a> {
    session: &'a Session<'a>,
    engine: &'a Engine,
    inventory: &'a Inventory,
    args: &'a UpgradeArgs,
    overrides: &'a OverrideFile,
    migrations: &'a [Migration],
    /// The pins recorded before this command.
    pins: &'a [Pin],
    /// The steps of the intent record this command undoes itself when it fails before `up`, and what it
    /// records when `up` begins.
    steps: std::sync::Mutex<OwnSteps>,
}

/// This upgrade's own steps in its intent record.
#[derive(Default)]
struct OwnSteps {
    /// The override steps (the first one, for the new images, first) and the new volumes' steps.
    changes: Vec<StepId>,
    overrides: Vec<StepId>,
    /// The data the new version will write, each to be put back from the `pre-upgrade` backup.
    data: Vec<Step>,
}

impl Upgrade<'_> {
    fn printer(&self) -> &Printer {
        self.session.printer
    }

    fn project(&self) -> &Project {
        &self.inventory.project
    }

    /// Compose for the project, the override file among its files whether or not it was loaded.
    fn compose(&self) -> anyhow::Result<ComposeCli> {
        let mut project = self.project().clone();
        if self.overrides.path.exists() && !project.files.contains(&self.overrides.path) {
            project.files.push(self.overrides.path.clone());
        }
        project.files.retain(|f| f.exists());
        let prefer_v1 = self.inventory.containers.iter().any(|c| {
            c.compose_version
                .as_deref()
                .is_some_and(|v| v.starts_with("1."))
        });
        Ok(ComposeCli::find(self.session.globals, &project, prefer_v1)?
            .env_files(&self.session.project_args.env_files))
    }

    /// What the override file holds for `pins` (`None`: no file).
    fn rendered(&self, pins: &[Pin]) -> Option<String> {
        if pins.is_empty() && self.migrations.is_empty() {
            return None;
        }
        Some(migration::render_all(self.migrations, pins))
    }

    /// Records an override step (of the previous images of `plans`) before the file is written.
    fn begin_override(
        &self,
        previous: Option<String>,
        next: Option<String>,
        services: Vec<String>,
        plans: &[ServicePlan],
    ) -> anyhow::Result<StepId> {
        let step = self.session.step_begin(
            self.project(),
            Step::Override {
                path: self.overrides.path.clone(),
                previous,
                next,
                services,
                expected: Expected::Images {
                    images: plans
                        .iter()
                        .map(|p| (p.service.clone(), p.current_id.clone()))
                        .collect(),
                },
            },
        )?;
        if let Ok(mut s) = self.steps.lock() {
            s.changes.push(step);
            s.overrides.push(step);
        }
        Ok(step)
    }

    /// This command put back what it changed before `up`: nothing is left for the next one.
    fn settle_own_steps(&self) {
        let ids = self
            .steps
            .lock()
            .map(|s| s.changes.clone())
            .unwrap_or_default();
        for id in ids {
            self.session.step_mark(id, StepState::Settled);
        }
    }

    /// Writes the override file for `pins` (removed when nothing is left in it).
    fn write_pins(&self, pins: &[Pin]) -> anyhow::Result<()> {
        if pins.is_empty() && self.migrations.is_empty() {
            return restore_override(&self.overrides.path, None);
        }
        write_override(
            &self.overrides.path,
            &migration::render_all(self.migrations, pins),
        )
    }
}
