//! The guarded run of an upgrade: the override and the pulls, the stop, the verified `pre-upgrade`
//! backup, then `up -d` of the new version and the wait for it, rolled back when it fails.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, bail};

use super::health::{Failed, duration_text, short_id, wait_healthy};
use super::report::{emit_json, indent};
use super::{ServicePlan, Upgrade};
use crate::archive::{Backup, WriterOptions};
use crate::commands::backup::{Destination, write_backup};
use crate::commands::upgrade_pg;
use crate::commands::{ExitStatus, consistency, plural, quoted, verified};
use crate::compose::Consistency;
use crate::compose::migration::Pin;
use crate::engine::ContainerInfo;
use crate::intent::{Step, StepState};
use crate::inventory::DataItem;
use crate::report::human_size;

impl Upgrade<'_> {
    /// Everything before the new containers start: the override, the pulls, the stop, the backup.
    /// `None`: nothing is left to upgrade once the images are pulled.
    pub(super) async fn prepare(
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
    pub(super) async fn start_new(
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
}
