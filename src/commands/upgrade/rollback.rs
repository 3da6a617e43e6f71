//! Rolling an upgrade back: the new containers stopped, the previous images pinned by id, the data
//! restored from the `pre-upgrade` backup, and the services started again and waited for.

use std::path::Path;

use anyhow::{Context as _, bail};

use super::health::{short_id, wait_healthy};
use super::report::indent;
use super::{ServicePlan, Upgrade};
use crate::cli::RestoreArgs;
use crate::commands::upgrade_pg;
use crate::commands::{ExitStatus, Session, quoted};
use crate::compose::migration::Pin;
use crate::intent::{Step, StepState};

impl Upgrade<'_> {
    /// Back to the previous version: stop the new containers, pin the previous images by id, restore the
    /// data from the backup as `restore` does, start the services and wait for them.
    pub(super) async fn roll_back(
        &self,
        plans: &[ServicePlan],
        backup: Option<&Path>,
    ) -> anyhow::Result<()> {
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
            let restored = Box::pin(super::super::restore::run(&inner, &restore)).await;
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
}
