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

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde::Serialize;

use super::backup::{Destination, write_backup};
use super::backups::backup_dir;
use super::compose_cli::ComposeCli;
use super::migrate::{
    automatic_override, check_override_is_ours, restore_override, write_override,
};
use super::restore::Refused;
use super::upgrade_pg::{self, PgMove};
use super::{ExitStatus, Session, UsageError, consistency, plural, quoted, verified};
use crate::archive::{Backup, WriterOptions};
use crate::cli::{RestoreArgs, UpgradeArgs};
use crate::compose::migration::{self, Migration, OverrideFile, Pin};
use crate::compose::{Consistency, Project};
use crate::engine::{ContainerInfo, Engine};
use crate::intent::{Expected, Step, StepId, StepState};
use crate::inventory::{DataItem, Inventory};
use crate::report::{Printer, human_size, prompt, table};

/// Lines of a failed container's log that the report shows.
const LOG_LINES: usize = 15;
/// How often container states are looked at while waiting for health.
const POLL: Duration = Duration::from_millis(500);

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
fn emit_json(
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

/// Why a new version is not healthy.
#[derive(Debug, Clone)]
pub struct Failed {
    pub service: String,
    pub why: String,
    /// The last lines of the failed container's log.
    pub log: String,
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

    /// Everything before the new containers start: the override, the pulls, the stop, the backup.
    /// `None`: nothing is left to upgrade once the images are pulled.
    async fn prepare(
        &self,
        plans: &[ServicePlan],
        new_pins: &[Pin],
        items: &[&DataItem],
        dir: &Path,
    ) -> anyhow::Result<Option<(Vec<ServicePlan>, Option<PathBuf>)>> {
        let printer = self.printer();
        // Undone after a kill: the file as it was, the previous version recreated by Compose.
        let before = std::fs::read_to_string(&self.overrides.path).ok();
        let next = if new_pins != self.pins {
            self.rendered(new_pins)
        } else {
            before.clone()
        };
        let services = plans.iter().map(|p| p.service.clone()).collect();
        let override_step = self.begin_override(before, next, services, plans)?;
        if new_pins != self.pins {
            self.write_pins(new_pins)?;
            printer.status(format!("Wrote `{}`", self.overrides.path.display()));
        }
        self.session.step_mark(override_step, StepState::Done);
        let mut plans = plans.to_vec();
        let pulls: Vec<&str> = plans
            .iter()
            .filter(|p| p.pull)
            .map(|p| p.service.as_str())
            .collect();
        if !pulls.is_empty() {
            let compose = self.compose()?;
            let mut a = vec!["pull"];
            a.extend(pulls.iter().copied());
            printer.status(format!("Pulling the images of {}", quoted(pulls)));
            if let Err(e) = compose.run(&a).await {
                let missing: Vec<&ServicePlan> =
                    plans.iter().filter(|p| p.new_id.is_none()).collect();
                if !missing.is_empty() {
                    return Err(e.context(format!(
                        "the image of {} is not here and could not be pulled; nothing was changed",
                        quoted(missing.iter().map(|p| p.service.as_str()))
                    )));
                }
                printer.warn(format!("{e:#}; using the images that are here already"));
            }
            for p in plans.iter_mut() {
                p.new_id = self.engine.image(&p.new_image).await?.map(|i| i.id);
                if p.new_id.is_none() {
                    bail!(
                        "`{}` is still missing after `docker compose pull`; nothing was changed",
                        p.new_image
                    );
                }
            }
        }
        for p in plans.iter().filter(|p| p.unchanged()) {
            printer.status(format!(
                "`{}` runs `{}` ({}) already",
                p.service,
                p.new_image,
                short_id(&p.current_id)
            ));
        }
        plans.retain(|p| !p.unchanged());
        if plans.is_empty() {
            printer.status("Nothing to upgrade");
            return Ok(None);
        }
        // The new PostgreSQL volumes are initialised and checked while the old servers still run; a
        // killed run's are removed (they carry this process's mark).
        let label = crate::intent::Owner::this().tag();
        for pg in plans.iter().filter_map(|p| p.pg.as_ref()) {
            let step = self.session.step_begin(
                self.project(),
                Step::CreateVolume {
                    key: pg.new_key.clone(),
                    name: pg.new_name.clone(),
                    label: label.clone(),
                },
            )?;
            if let Ok(mut s) = self.steps.lock() {
                s.changes.push(step);
            }
        }
        let prepared =
            upgrade_pg::prepare(self.engine, printer, self.project(), &plans, &label).await?;

        // Stop, then back up what the services keep.
        let mut running: Vec<ContainerInfo> = plans
            .iter()
            .flat_map(|p| p.containers.iter())
            .filter(|c| c.is_running())
            .cloned()
            .collect();
        consistency::sort_for_start(&mut running, &consistency::start_order(self.project()));
        if let Err(e) =
            consistency::stop_saying(self.session, self.engine, self.project(), &running).await
        {
            upgrade_pg::move_aborted(self.engine, printer, prepared, &plans).await;
            return Err(e);
        }
        let items: Vec<&DataItem> = items
            .iter()
            .copied()
            .filter(|i| {
                plans
                    .iter()
                    .any(|p| i.users.iter().any(|u| u.service == p.service))
            })
            .collect();
        // Measured again now that nothing writes (a database writes its shutdown checkpoint as it stops).
        let stopped_inventory =
            match crate::inventory::build(self.project().clone(), self.engine).await {
                Ok(i) => Some(i),
                Err(e) => {
                    printer.verbose(format!("cannot measure the data again: {e}"));
                    None
                }
            };
        let items: Vec<&DataItem> = match &stopped_inventory {
            Some(inv) => items
                .iter()
                .map(|i| inv.items.iter().find(|n| n.key == i.key).unwrap_or(i))
                .collect(),
            None => items,
        };
        let backup = if items.is_empty() {
            printer.status("The services keep no critical or important data: no backup is needed");
            None
        } else {
            match self.backup(&items, dir).await {
                Ok(b) => Some(b),
                Err(e) => {
                    upgrade_pg::move_aborted(self.engine, printer, prepared, &plans).await;
                    return Err(e);
                }
            }
        };
        if let Some(b) = &backup {
            // What the new version writes in is put back from the backup after a kill (a PostgreSQL
            // service's old volume aside: the new version runs on a new one).
            let data: Vec<Step> = items
                .iter()
                .filter(|i| {
                    !plans
                        .iter()
                        .filter_map(|p| p.pg.as_ref())
                        .any(|pg| i.name.as_deref() == Some(pg.old_name.as_str()))
                })
                .filter_map(|i| {
                    let name = i.name.clone()?;
                    let (driver, options, labels) = match &i.volume {
                        Some(v) => (v.driver.clone(), v.options.clone(), v.labels.clone()),
                        None => Default::default(),
                    };
                    Some(Step::ReplaceData {
                        key: i.key.clone(),
                        name,
                        bind: i.kind == crate::compose::classify::DataKind::Bind,
                        safety: Some(b.clone()),
                        was_empty: false,
                        source: b.display().to_string(),
                        driver,
                        options,
                        labels,
                    })
                })
                .collect();
            if let Ok(mut s) = self.steps.lock() {
                s.data = data;
            }
            self.session.note_on_interrupt(format!(
                "the data as it was before the upgrade is in `{}`",
                b.display()
            ));
        }
        upgrade_pg::move_data(self.engine, printer, &plans, prepared).await?;
        // The services switch to their new PostgreSQL volumes with the new image.
        if plans.iter().any(|p| p.pg.is_some()) {
            let mut pins = new_pins.to_vec();
            for p in &plans {
                if let Some(pg) = &p.pg {
                    pins.retain(|x| x.service != p.service);
                    pins.push(pg.pin(&p.service));
                }
            }
            pins.sort_by(|a, b| a.service.cmp(&b.service));
            // Undone before the first override step, which recreates the services: none here.
            let switch = self.begin_override(
                self.rendered(new_pins),
                self.rendered(&pins),
                Vec::new(),
                &plans,
            )?;
            if let Err(e) = self.write_pins(&pins) {
                upgrade_pg::discard_new(self.engine, printer, &plans).await;
                return Err(e.context("could not switch the services to their new volumes"));
            }
            self.session.step_mark(switch, StepState::Done);
        }
        Ok(Some((plans, backup)))
    }

    /// The verified `pre-upgrade` backup of `items`, their services stopped.
    async fn backup(&self, items: &[&DataItem], dir: &Path) -> anyhow::Result<PathBuf> {
        let printer = self.printer();
        // Backup times are whole seconds rounded down: start in the next second, so that the backup is
        // visibly taken after every stop.
        let into_second = u64::from(jiff::Timestamp::now().subsec_nanosecond().unsigned_abs());
        tokio::time::sleep(Duration::from_nanos(
            1_000_000_000 - into_second.min(999_999_999) + 1_000_000,
        ))
        .await;
        let fast = crate::fastpath::select(self.engine, printer, self.args.data_path).await?;
        let (finished, _) = write_backup(
            self.session,
            self.engine,
            self.project(),
            items,
            &Destination {
                dir,
                tag: Some("pre-upgrade"),
                options: WriterOptions::auto(),
                fast: fast.as_ref(),
                consistency: Some(Consistency::Stop),
                // The services are stopped: hooks, which run inside them, have nothing to run in.
                hooks: false,
                follow: None,
            },
        )
        .await
        .context("the backup before the upgrade failed; nothing was changed")?;
        printer.status(format!("Verifying `{}`", finished.path.display()));
        let p = finished.path.clone();
        let report = tokio::task::spawn_blocking(move || Backup::open(&p).and_then(|b| b.verify()))
            .await??;
        let _ = verified::record(&finished.path, &finished.manifest, report.is_ok());
        if !report.is_ok() {
            bail!(
                "the backup `{}` did not verify ({}); nothing was changed",
                finished.path.display(),
                plural(report.problems.len(), "problem")
            );
        }
        printer.status(format!(
            "Backed up and verified {} in `{}` ({})",
            plural(items.len(), "volume"),
            finished.path.display(),
            human_size(finished.bytes)
        ));
        Ok(finished.path)
    }

    /// `up -d` the new version and wait for it; roll back when it fails or the user interrupts.
    async fn start_new(
        &self,
        plans: &[ServicePlan],
        backup: Option<&Path>,
    ) -> anyhow::Result<ExitStatus> {
        let printer = self.printer();
        let services: Vec<&str> = plans.iter().map(|p| p.service.as_str()).collect();
        let started = async {
            let compose = self.compose()?;
            // From here the new version may write: after a kill its containers go, the data is put
            // back from the `pre-upgrade` backup and the previous version is recreated.
            self.session.step_begin(
                self.project(),
                Step::Up {
                    services: services.iter().map(|s| s.to_string()).collect(),
                },
            )?;
            let data = self
                .steps
                .lock()
                .map(|mut s| std::mem::take(&mut s.data))
                .unwrap_or_default();
            for step in data {
                let id = self.session.step_begin(self.project(), step)?;
                self.session.step_mark(id, StepState::Done);
            }
            let mut a = vec!["up", "-d", "--no-deps"];
            a.extend(services.iter().copied());
            printer.status(format!(
                "Starting the new version of {}",
                quoted(services.iter().copied())
            ));
            let ran = compose.run(&a).await;
            upgrade_pg::handed_over();
            // The old containers are replaced (or Compose failed): this command does not start them.
            self.forget_old(plans);
            if let Err(e) = ran {
                return Ok(Err(Failed {
                    service: services.join(", "),
                    why: format!("{e:#}"),
                    log: String::new(),
                }));
            }
            printer.status(format!(
                "Waiting up to {} for {} to be healthy",
                duration_text(self.args.timeout),
                quoted(services.iter().copied())
            ));
            wait_healthy(
                self.engine,
                &self.project().name,
                &services,
                self.args.timeout,
                self.args.settle,
            )
            .await
        };
        let outcome: anyhow::Result<Result<(), Failed>> = tokio::select! {
            r = started => r,
            () = crate::plugin::interrupted() => Ok(Err(Failed {
                service: services.join(", "),
                why: "interrupted".to_string(),
                log: String::new(),
            })),
        };
        let failed = match outcome {
            Ok(Ok(())) => {
                // The new version runs healthy: a kill from here keeps it.
                self.session.steps_settled();
                self.report_success(plans, backup);
                emit_json(printer, plans, false, "upgraded", backup, None)?;
                return Ok(ExitStatus::Success);
            }
            Ok(Err(f)) => f,
            Err(e) => Failed {
                service: services.join(", "),
                why: format!("{e:#}"),
                log: String::new(),
            },
        };
        let interrupted = failed.why == "interrupted";
        if interrupted {
            printer.warn("interrupted; rolling back to the previous version");
        } else {
            printer.warn(format!(
                "the new version of `{}` failed: {}",
                failed.service, failed.why
            ));
        }
        if !failed.log.trim().is_empty() {
            printer.status(format!(
                "Last lines of the log of `{}`:\n{}",
                failed.service,
                indent(failed.log.trim_end())
            ));
        }
        match self.roll_back(plans, backup).await {
            Ok(()) => {
                self.session.steps_settled();
                let back: Vec<String> = plans
                    .iter()
                    .map(|p| {
                        format!(
                            "`{}` runs `{}` ({}) again",
                            p.service,
                            p.current_image,
                            short_id(&p.current_id)
                        )
                    })
                    .collect();
                let data = match backup {
                    Some(b) => format!(", on its data restored from `{}`", b.display()),
                    None => String::new(),
                };
                printer.status(format!("Rolled back: {}{data}", back.join(", ")));
                emit_json(
                    printer,
                    plans,
                    false,
                    "rolled_back",
                    backup,
                    Some(&failed.why),
                )?;
                if interrupted {
                    return Ok(ExitStatus::Interrupted);
                }
                bail!(
                    "the upgrade of `{}` failed ({}) and was rolled back; the previous version runs again",
                    failed.service,
                    failed.why
                )
            }
            Err(e) => {
                let restore = match backup {
                    Some(b) => format!(
                        "the data as it was before the upgrade is in `{}`: `docker persist restore {} --yes` puts it back, then ",
                        b.display(),
                        b.display()
                    ),
                    None => String::new(),
                };
                Err(e.context(format!(
                    "the upgrade of `{}` failed ({}) and so did the rollback; {restore}`docker compose up -d {}` starts the previous version ({} pins its image in `{}`)",
                    failed.service,
                    failed.why,
                    services.join(" "),
                    quoted(plans.iter().map(|p| p.current_id.as_str())),
                    self.overrides.path.display()
                )))
            }
        }
    }

    /// The stopped old containers are replaced: nothing starts them at the end, not even after a kill.
    fn forget_old(&self, plans: &[ServicePlan]) {
        for c in plans.iter().flat_map(|p| p.containers.iter()) {
            self.session.forget_restart(&c.id);
            self.session.journal_started(&c.id);
        }
        if let Ok(mut notes) = self.session.notes.lock() {
            notes.clear();
        }
    }

    /// Back to the previous version: stop the new containers, pin the previous images by id, restore the
    /// data from the backup as `restore` does, start the services and wait for them.
    async fn roll_back(&self, plans: &[ServicePlan], backup: Option<&Path>) -> anyhow::Result<()> {
        let printer = self.printer();
        let services: Vec<&str> = plans.iter().map(|p| p.service.as_str()).collect();
        let now = self.engine.project_containers(&self.project().name).await?;
        for c in now.iter().filter(|c| {
            !c.helper
                && c.is_running()
                && c.service.as_deref().is_some_and(|s| services.contains(&s))
        }) {
            printer.status(format!("Stopping `{}`", c.name));
            self.engine
                .stop_container(&c.id, &c.name)
                .await
                .context("the rollback could not stop the new version")?;
        }
        // Each service as it was before, its image pinned by id (a volume an earlier PostgreSQL upgrade
        // switched it to stays).
        let mut pins: Vec<Pin> = self
            .pins
            .iter()
            .filter(|p| !services.contains(&p.service.as_str()))
            .cloned()
            .collect();
        let at = jiff::Timestamp::now().to_string();
        for p in plans {
            let before = self.pins.iter().find(|x| x.service == p.service);
            pins.push(Pin {
                service: p.service.clone(),
                image: p.current_id.clone(),
                why: "rollback".to_string(),
                at: at.clone(),
                environment: before.map(|b| b.environment.clone()).unwrap_or_default(),
                volume: before.and_then(|b| b.volume.clone()),
            });
        }
        pins.sort_by(|a, b| a.service.cmp(&b.service));
        // A PostgreSQL service goes back to its old volume, which the upgrade never changed.
        let pg_only = plans.iter().all(|p| p.pg.is_some());
        // After a kill from here the first override step puts the file back from what this writes.
        let rollback = self.rendered(&pins);
        let overrides = self
            .steps
            .lock()
            .map(|s| s.overrides.clone())
            .unwrap_or_default();
        for (n, id) in overrides.iter().enumerate() {
            if n == 0 {
                self.session.step_update(*id, |s| {
                    if let Step::Override { next, .. } = s {
                        *next = rollback.clone();
                    }
                });
            } else {
                self.session.step_mark(*id, StepState::Settled);
            }
        }
        self.write_pins(&pins)
            .context("the rollback could not pin the previous image in the override file")?;
        printer.status(format!(
            "Pinned the previous image of {} in `{}`",
            quoted(services.iter().copied()),
            self.overrides.path.display()
        ));
        if let Some(b) = backup.filter(|_| !pg_only) {
            printer.status(format!("Restoring the data from `{}`", b.display()));
            let restore = RestoreArgs {
                args: vec![b.display().to_string()],
                tiers: Vec::new(),
                as_name: None,
                yes: true,
                no_safety_backup: false,
                no_start: true,
                dry_run: false,
                dir: self.args.dir.clone(),
                data_path: self.args.data_path,
                // The `pre-upgrade` file is local: it was just written.
                from: None,
                keys: self.args.keys.clone(),
            };
            // `restore` says what it does on stderr; this command's own JSON is the output.
            let quiet = printer.without_json();
            let engine_cell = tokio::sync::OnceCell::new();
            let _ = engine_cell.set(self.engine.clone());
            let host = std::sync::OnceLock::new();
            if let Some(h) = self.session.host.get() {
                let _ = host.set(h.clone());
            }
            let inner = Session {
                globals: self.session.globals,
                project_args: self.session.project_args,
                printer: &quiet,
                engine: engine_cell,
                restarts: std::sync::Mutex::new(Vec::new()),
                notes: std::sync::Mutex::new(Vec::new()),
                host,
                command: self.session.command,
                // The restore's steps go into this command's own intent record (one per process).
                intent: std::sync::Mutex::new(
                    self.session.intent.lock().ok().and_then(|mut g| g.take()),
                ),
                unresolved: std::sync::Mutex::new(Vec::new()),
                post_hooks: std::sync::Mutex::new(Vec::new()),
                run: std::sync::Mutex::new(None),
            };
            let restored = Box::pin(super::restore::run(&inner, &restore)).await;
            // The record goes back to this command, which closes it when it ends.
            if let (Ok(mut inner_intent), Ok(mut outer_intent)) =
                (inner.intent.lock(), self.session.intent.lock())
            {
                *outer_intent = inner_intent.take();
            }
            // What it stopped and did not start (nothing, normally) is started as any command's would be.
            inner
                .cleanup(restored.as_ref().is_ok_and(|s| *s == ExitStatus::Success))
                .await;
            let status = restored.context("the rollback could not restore the data")?;
            if status != ExitStatus::Success {
                bail!(
                    "the rollback could not restore the data (exit {})",
                    status.code()
                );
            }
        }
        let compose = self.compose()?;
        let mut a = vec!["up", "-d", "--no-deps"];
        a.extend(services.iter().copied());
        printer.status(format!(
            "Starting the previous version of {}",
            quoted(services.iter().copied())
        ));
        compose
            .run(&a)
            .await
            .context("the rollback could not start the previous version")?;
        // The containers of the new version are gone: so can the new PostgreSQL volumes.
        upgrade_pg::discard_new(self.engine, printer, plans).await;
        if let Err(f) = wait_healthy(
            self.engine,
            &self.project().name,
            &services,
            self.args.timeout,
            self.args.settle,
        )
        .await?
        {
            if !f.log.trim().is_empty() {
                printer.status(format!(
                    "Last lines of the log of `{}`:\n{}",
                    f.service,
                    indent(f.log.trim_end())
                ));
            }
            bail!(
                "the previous version of `{}` is not healthy either: {}",
                f.service,
                f.why
            );
        }
        // The images run by id are the ones they ran before.
        let now = self.engine.project_containers(&self.project().name).await?;
        for p in plans {
            for c in now
                .iter()
                .filter(|c| c.service.as_deref() == Some(p.service.as_str()) && !c.helper)
            {
                let s = self.engine.container_status(&c.id).await?;
                if let Some(s) = s
                    && s.image_id != p.current_id
                {
                    bail!(
                        "`{}` runs image {} after the rollback, not the previous {}",
                        c.name,
                        short_id(&s.image_id),
                        short_id(&p.current_id)
                    );
                }
            }
        }
        Ok(())
    }

    fn report_success(&self, plans: &[ServicePlan], backup: Option<&Path>) {
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

/// The services named, else every service of the project that runs or ran.
fn chosen_services(inventory: &Inventory, args: &UpgradeArgs) -> anyhow::Result<Vec<String>> {
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

async fn plan_service(
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
fn protected_items<'a>(inventory: &'a Inventory, services: &BTreeSet<&str>) -> Vec<&'a DataItem> {
    inventory
        .items
        .iter()
        .filter(|i| super::guard::needs_protection(i.tier()))
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
fn pins_for(pins: &[Pin], plans: &[ServicePlan], args: &UpgradeArgs) -> Vec<Pin> {
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

fn print_plan(
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

/// Waits until every container of `services` is healthy: its healthcheck says so, or (without one) it
/// has run for `settle` without restarting. `Ok(Err(…))` says which one failed and why.
pub async fn wait_healthy(
    engine: &Engine,
    project: &str,
    services: &[&str],
    timeout: Duration,
    settle: Duration,
) -> anyhow::Result<Result<(), Failed>> {
    let started = Instant::now();
    // Per container: its restart count and start time when first seen, and when it was first seen running.
    let mut seen: Vec<(String, i64, Option<jiff::Timestamp>, Option<Instant>)> = Vec::new();
    loop {
        let containers = engine.project_containers(project).await?;
        let mut all_ok = true;
        let mut waiting_for = String::new();
        for service in services {
            let mine: Vec<&ContainerInfo> = containers
                .iter()
                .filter(|c| !c.helper && c.service.as_deref() == Some(*service))
                .collect();
            if mine.is_empty() {
                return Ok(Err(Failed {
                    service: service.to_string(),
                    why: "it has no container".to_string(),
                    log: String::new(),
                }));
            }
            for c in mine {
                let Some(s) = engine.container_status(&c.id).await? else {
                    all_ok = false;
                    continue;
                };
                let fail = |why: String| async move {
                    let log = engine.log_tail(&c.id, LOG_LINES).await.unwrap_or_default();
                    Ok(Err(Failed {
                        service: service.to_string(),
                        why,
                        log,
                    }))
                };
                let entry = match seen.iter().position(|(id, ..)| *id == s.id) {
                    Some(i) => &mut seen[i],
                    None => {
                        seen.push((s.id.clone(), s.restart_count, s.started_at, None));
                        let last = seen.len() - 1;
                        &mut seen[last]
                    }
                };
                if s.restarting
                    || s.restart_count > entry.1
                    || (entry.2.is_some() && s.started_at != entry.2)
                {
                    return fail(format!(
                        "`{}` keeps restarting (exit code {})",
                        s.name,
                        s.exit_code.unwrap_or_default()
                    ))
                    .await;
                }
                if !s.running {
                    let why = match (&s.error, s.exit_code) {
                        (Some(e), _) => format!("`{}` could not start: {e}", s.name),
                        (None, Some(code)) if s.status != "created" => {
                            format!("`{}` exited with code {code}", s.name)
                        }
                        _ => format!("`{}` is {}", s.name, s.status),
                    };
                    return fail(why).await;
                }
                let running_since = *entry.3.get_or_insert_with(Instant::now);
                match s.health.as_deref() {
                    Some("healthy") => {}
                    Some("unhealthy") => {
                        return fail(format!(
                            "the healthcheck of `{}` reports it unhealthy",
                            s.name
                        ))
                        .await;
                    }
                    Some(other) => {
                        all_ok = false;
                        waiting_for = format!("`{}` is {other}", s.name);
                    }
                    None => {
                        if running_since.elapsed() < settle {
                            all_ok = false;
                            waiting_for = format!(
                                "`{}` has run for {} of the {} it needs without a restart",
                                s.name,
                                duration_text(running_since.elapsed()),
                                duration_text(settle)
                            );
                        }
                    }
                }
            }
        }
        if all_ok {
            return Ok(Ok(()));
        }
        if started.elapsed() >= timeout {
            let service = services.join(", ");
            let id = containers
                .iter()
                .find(|c| c.service.as_deref().is_some_and(|s| services.contains(&s)))
                .map(|c| c.id.clone());
            let log = match id {
                Some(id) => engine.log_tail(&id, LOG_LINES).await.unwrap_or_default(),
                None => String::new(),
            };
            return Ok(Err(Failed {
                service,
                why: format!(
                    "not healthy after {}: {waiting_for}",
                    duration_text(timeout)
                ),
                log,
            }));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// `sha256:0123456789ab…` → `0123456789ab`.
pub fn short_id(id: &str) -> &str {
    let id = id.strip_prefix("sha256:").unwrap_or(id);
    id.get(..12).unwrap_or(id)
}

/// `90 s`, `2 min`, `1.5 s`.
fn duration_text(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s < 10.0 {
        format!("{s:.1} s")
    } else if s < 120.0 {
        format!("{s:.0} s")
    } else {
        format!("{:.0} min", s / 60.0)
    }
}

fn indent(text: &str) -> String {
    text.lines()
        .map(|l| format!("  | {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_ids_drop_the_algorithm_and_keep_twelve_digits() {
        assert_eq!(short_id("sha256:0123456789abcdef"), "0123456789ab");
        assert_eq!(short_id("abc"), "abc");
    }

    #[test]
    fn durations_read_as_people_say_them() {
        assert_eq!(duration_text(Duration::from_millis(1500)), "1.5 s");
        assert_eq!(duration_text(Duration::from_secs(90)), "90 s");
        assert_eq!(duration_text(Duration::from_secs(300)), "5 min");
    }
}
