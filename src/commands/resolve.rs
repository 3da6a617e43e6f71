//! The resolution of killed commands: at the start of every command, before anything else is done with
//! the engine, the intent records (see [`crate::intent`]) of processes of this machine that no longer run
//! and that used this engine are finished or undone, and what was done is said.
//!
//! A record is finished from its commit point on — a restore that wrote and checked all its data
//! (`committed`), a migration or rollback whose override file holds the change, a `down` that began
//! running `compose down`, a `clean` that began removing volumes — and undone before it, step by step in
//! reverse order:
//! - data being replaced is put back from the safety backup (or emptied again when it held nothing); when
//!   that is impossible the services are left stopped and the record stays, naming the file to restore;
//! - a volume a restore created is removed, once its `persist.restoring` label shows it is that restore's;
//! - a directory a migration copied into is emptied again when it was empty before;
//! - an upgrade is always undone until its new version runs healthy: the new version's containers are
//!   stopped and removed, the data it may have written is put back from the `pre-upgrade` backup (as
//!   above), its override file is put back and Compose recreates the previous version, which must run the
//!   previous image ids;
//! - containers removed for a volume to be recreated are recreated by Compose (`up -d --no-deps`);
//! - stopped containers are started again, after waiting for one the engine may still be stopping (its
//!   stop grace period from when its stop was sent, plus a margin).
//!
//! A record whose resolution fails stays, with the reasons: `ls` shows it, and commands that change
//! something refuse (exit 3) until it is resolved.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;

use super::compose_cli::ComposeCli;
use super::{Session, intent_dir, migrate, quoted, restore};
use crate::engine::helper::HelperMount;
use crate::engine::{Engine, VolumeInfo};
use crate::intent::{self, Expected, Found, Record, Step, StepEntry, StepState};

/// How long past its grace period a container the engine is stopping is waited for.
const STOP_MARGIN: Duration = Duration::from_secs(5);

/// Finishes or undoes the records of killed commands on this engine; keeps those that cannot be resolved
/// in [`Session::unresolved`].
pub async fn resolve_abandoned(session: &Session<'_>, engine: &Engine, host: &str) {
    let Some(dir) = intent_dir() else { return };
    intent::adopt_legacy(&dir);
    let found = intent::abandoned(&dir, host, intent::Owner::is_alive);
    if found.is_empty() {
        return;
    }
    // A fast-path helper of a killed command may still be writing: it goes before anything is put back.
    if let Err(e) = engine.remove_leftover_helpers().await {
        session.printer.warn(format!(
            "helper containers of a killed command may still run: {e}"
        ));
    }
    for f in found {
        resolve_one(session, engine, f, &[]).await;
    }
}

/// After a restore wrote `names` (volume names or host paths): records left unresolved because that data
/// could not be put back no longer need to, and are resolved again (their services are started).
pub async fn after_restore(session: &Session<'_>, engine: &Engine, host: &str, names: &[String]) {
    let Some(dir) = intent_dir() else { return };
    for f in intent::abandoned(&dir, host, intent::Owner::is_alive) {
        if f.record.unresolved.is_empty() {
            continue;
        }
        resolve_one(session, engine, f, names).await;
    }
}

async fn resolve_one(session: &Session<'_>, engine: &Engine, f: Found, superseded: &[String]) {
    let printer = session.printer;
    // Two commands started together: only one resolves a record.
    let Some(_lock) = intent::lock(&f.path) else {
        return;
    };
    let Ok(bytes) = fs_err::read(&f.path) else {
        return;
    };
    let Ok(mut record) = serde_json::from_slice::<Record>(&bytes) else {
        return;
    };
    for s in &mut record.steps {
        if let Step::ReplaceData { name, .. } | Step::CreateVolume { name, .. } = &s.step
            && superseded.contains(name)
        {
            s.state = StepState::Settled;
        }
    }
    if record.is_open() {
        printer.status(format!(
            "{} did not finish; finishing or undoing what it changed",
            capitalized(&record.describe())
        ));
    }
    let mut r = Resolver {
        session,
        engine,
        record: &record,
        problems: Vec::new(),
        data_failed: false,
    };
    r.run().await;
    let problems = r.problems;
    if problems.is_empty() {
        if let Err(e) = fs_err::remove_file(&f.path) {
            printer.warn(format!("cannot delete the intent record: {e}"));
        }
        return;
    }
    record.unresolved = problems;
    if let Err(e) = intent::write_record(&f.path, &record) {
        printer.warn(format!("cannot update the intent record: {e}"));
    }
    printer.warn(format!(
        "UNRESOLVED: {} was killed, and not everything it changed could be finished or undone:\n  - {}\n  commands that change this project refuse to run until this is resolved; `{}` holds the record",
        record.describe(),
        record.unresolved.join("\n  - "),
        f.path.display()
    ));
    if let Ok(mut u) = session.unresolved.lock() {
        u.push(record);
    }
}

/// Where a record's resolution goes from.
enum Commit {
    /// Undo every step.
    None,
    /// Finish from the step at this index (or, for a restore, from the `committed` marker).
    At(usize),
}

struct Resolver<'s, 'a> {
    session: &'s Session<'a>,
    engine: &'s Engine,
    record: &'s Record,
    /// What could not be resolved, for the record and the user.
    problems: Vec<String>,
    /// Data could not be put back: nothing is started on it.
    data_failed: bool,
}

impl Resolver<'_, '_> {
    async fn run(&mut self) {
        let commit = match commit_point(self.record) {
            Ok(c) => c,
            Err(problem) => {
                self.problems.push(problem);
                return;
            }
        };
        let steps: Vec<(usize, &StepEntry)> = self
            .record
            .steps
            .iter()
            .enumerate()
            .filter(|(_, s)| s.is_open())
            .collect();
        match commit {
            Commit::None => {
                // An upgrade's new version goes before anything is put back: it may hold the data.
                let up = |s: &StepEntry| matches!(s.step, Step::Up { .. });
                for (_, s) in steps.iter().filter(|(_, s)| up(s)) {
                    self.undo(s).await;
                }
                for (_, s) in steps.iter().rev().filter(|(_, s)| !up(s)) {
                    self.undo(s).await;
                }
            }
            Commit::At(at) => {
                let restore_commit = matches!(self.record.steps[at].step, Step::Committed);
                if let Some((_, s)) = steps.iter().find(|(i, _)| *i == at) {
                    self.finish(s).await;
                }
                for (i, s) in steps.iter().rev() {
                    if *i == at {
                        continue;
                    }
                    match &s.step {
                        Step::Stop { .. } => self.undo(s).await,
                        // A restore brings back what it removed; `down`, `clean` and migrations leave
                        // that to what finished them.
                        Step::RemoveContainers { .. } if restore_commit => self.undo(s).await,
                        _ => {}
                    }
                }
            }
        }
    }

    fn say(&self, what: String) {
        self.session.printer.status(format!("  {what}"));
    }

    fn compose(&self, files: &[PathBuf]) -> anyhow::Result<ComposeCli> {
        let v1 = self.record.steps.iter().any(|s| match &s.step {
            Step::Stop { containers } => containers.iter().any(|c| c.compose_v1),
            Step::RemoveContainers { containers } => containers.iter().any(|c| c.compose_v1),
            _ => false,
        });
        let p = &self.record.project;
        let files: Vec<PathBuf> = files.iter().filter(|f| f.exists()).cloned().collect();
        Ok(
            ComposeCli::find_for(self.session.globals, &p.name, &p.directory, &files, v1)?
                .env_files(&p.env_files),
        )
    }

    /// Undoes one step.
    async fn undo(&mut self, s: &StepEntry) {
        let pid = self.record.owner.pid;
        match &s.step {
            Step::Stop { containers } => {
                if self.data_failed {
                    self.problems.push(format!(
                        "left stopped so that nothing runs on data that could not be put back: {}",
                        quoted(containers.iter().map(|c| c.name.as_str()))
                    ));
                    return;
                }
                for c in containers {
                    self.wait_for_stop(c).await;
                    match self.engine.container_state(&c.id).await {
                        Ok(Some(state)) if state.is_running() => {}
                        Ok(Some(_)) => match self.engine.start_container(&c.id, &c.name).await {
                            Ok(()) => self.session.printer.status(format!(
                                "Started `{}` again: a docker persist command (pid {pid}) stopped it and did not finish",
                                c.name
                            )),
                            Err(e) => self.problems.push(format!(
                                "`{}` could not be started again: {e}; start it with `docker start {}`",
                                c.name, c.name
                            )),
                        },
                        // Removed meanwhile (by Compose, or a `down`): nothing to start.
                        Ok(None) => {}
                        Err(e) => self
                            .problems
                            .push(format!("cannot look at container `{}`: {e}", c.name)),
                    }
                }
            }
            Step::RemoveContainers { containers } => {
                if self.data_failed {
                    self.problems.push(format!(
                        "not recreated so that nothing runs on data that could not be put back: {}",
                        quoted(containers.iter().map(|c| c.name.as_str()))
                    ));
                    return;
                }
                let ran: BTreeSet<&str> = containers
                    .iter()
                    .filter(|c| c.ran)
                    .filter_map(|c| c.service.as_deref())
                    .collect();
                let created: BTreeSet<&str> = containers
                    .iter()
                    .filter(|c| !c.ran)
                    .filter_map(|c| c.service.as_deref())
                    .filter(|s| !ran.contains(s))
                    .collect();
                let files = self.record.project.files.clone();
                for (services, up) in [
                    (ran, vec!["up", "-d", "--no-deps"]),
                    (created, vec!["up", "--no-start", "--no-deps"]),
                ] {
                    if services.is_empty() {
                        continue;
                    }
                    let mut a = up;
                    a.extend(services.iter().copied());
                    let ran = match self.compose(&files) {
                        Ok(c) => c.run(&a).await.map(|()| c),
                        Err(e) => Err(e),
                    };
                    match ran {
                        Ok(_) => self.say(format!(
                            "recreated {} with Compose",
                            quoted(services.iter().copied())
                        )),
                        Err(e) => self.problems.push(format!(
                            "Compose could not recreate {} ({e:#}); run `docker compose up -d`",
                            quoted(services.iter().copied())
                        )),
                    }
                }
            }
            Step::CreateVolume { key, name, label } => match self.engine.volume(name).await {
                Ok(None) => {}
                Ok(Some(v)) if v.labels.get(intent::RESTORING_LABEL) == Some(label) => {
                    match self.engine.remove_volume(name).await {
                            Ok(()) => self.say(format!(
                                "removed volume `{name}`: the restore of `{key}` created it and did not finish"
                            )),
                            Err(e) => {
                                self.data_failed = true;
                                self.problems.push(format!(
                                    "volume `{name}` is only partly restored and could not be removed ({e}); remove it with `docker volume rm {name}`"
                                ));
                            }
                        }
                }
                Ok(Some(_)) => self.say(format!(
                    "left volume `{name}`: it is not the one the restore created"
                )),
                Err(e) => {
                    self.data_failed = true;
                    self.problems
                        .push(format!("cannot look at volume `{name}`: {e}"));
                }
            },
            Step::ReplaceData {
                key,
                name,
                bind,
                safety,
                was_empty,
                source,
                driver,
                options,
                labels,
            } => {
                let spec = VolumeInfo {
                    name: name.clone(),
                    driver: if driver.is_empty() {
                        "local".to_string()
                    } else {
                        driver.clone()
                    },
                    mountpoint: String::new(),
                    labels: labels.clone(),
                    options: options.clone(),
                    scope: None,
                    created_at: None,
                };
                let printer = self.session.printer;
                match safety {
                    Some(file) if file.exists() => {
                        match restore::put_back(self.engine, printer, file, key, name, *bind, spec)
                            .await
                        {
                            Ok(_) => self.say(format!(
                                "put back `{key}` as it was, from `{}`",
                                file.display()
                            )),
                            Err(e) => {
                                self.data_failed = true;
                                self.problems.push(format!(
                                    "`{key}` may be only partly replaced and could not be put back from `{}` ({e:#}): its services are left stopped; `docker persist restore {} {key}` puts back what it held",
                                    file.display(),
                                    file.display()
                                ));
                            }
                        }
                    }
                    _ if *was_empty => match self.empty_again(name, *bind, &spec).await {
                        Ok(()) => {
                            self.say(format!("emptied `{key}` again: it held nothing before"))
                        }
                        Err(e) => {
                            self.data_failed = true;
                            self.problems.push(format!(
                                "`{key}` may be only partly restored and could not be emptied again ({e:#})"
                            ));
                        }
                    },
                    other => {
                        self.data_failed = true;
                        let why = match other {
                            Some(f) => format!("its safety backup `{}` is gone", f.display()),
                            None => "no safety backup was taken".to_string(),
                        };
                        self.problems.push(format!(
                            "`{key}` may be only partly replaced and {why}: its services are left stopped; `docker persist restore {source} {key}` puts the data of `{source}` there"
                        ));
                    }
                }
            }
            Step::CopyInto { path, was_empty } => {
                if !*was_empty {
                    self.session.printer.warn(format!(
                        "`{path}` was not empty before the migration and may also hold part of its copy"
                    ));
                    return;
                }
                let mut cleared =
                    migrate::clear_dir(self.engine, self.session.printer, None, path).await;
                // Without the fast path's helper, a local engine's directory is emptied from here.
                if cleared.is_err() && self.engine.is_local() {
                    cleared = empty_dir(Path::new(path));
                }
                match cleared {
                    Ok(()) => self.say(format!(
                        "emptied `{path}` again (the killed migration had copied into it)"
                    )),
                    Err(e) => self.session.printer.warn(format!(
                        "`{path}` may hold part of a migration's copy and could not be emptied ({e:#}); empty it before migrating again"
                    )),
                }
            }
            Step::Up { services } => self.remove_new_version(services).await,
            Step::Override {
                path,
                previous,
                next,
                services,
                expected: Expected::Images { images },
            } => {
                self.undo_upgrade_override(
                    path,
                    previous.as_deref(),
                    next.as_deref(),
                    services,
                    images,
                )
                .await
            }
            // Not begun, or only the marker: nothing to undo.
            Step::Override { .. }
            | Step::ComposeDown { .. }
            | Step::RemoveVolumes { .. }
            | Step::Committed => {}
        }
    }

    /// Finishes the step a record is finished from.
    async fn finish(&mut self, s: &StepEntry) {
        match &s.step {
            Step::Committed => {
                self.say("the restore had written and checked all its data: keeping it".to_string())
            }
            Step::ComposeDown { args, backup } => {
                if s.state == StepState::Done {
                    return;
                }
                let mut a = vec!["down"];
                a.extend(args.iter().map(String::as_str));
                let files = self.record.project.files.clone();
                let ran = match self.compose(&files) {
                    Ok(c) => c.run(&a).await,
                    Err(e) => Err(e),
                };
                match ran {
                    Ok(()) => self.say(format!(
                        "finished `docker compose down {}` after the verified backup `{}`",
                        args.join(" "),
                        backup.display()
                    )),
                    Err(e) => self.problems.push(format!(
                        "`docker compose down {}` could not be finished ({e:#}); the verified backup is `{}`",
                        args.join(" "),
                        backup.display()
                    )),
                }
            }
            Step::RemoveVolumes { names } => {
                for n in names {
                    match self.engine.remove_volume(n).await {
                        Ok(()) => {
                            self.say(format!("removed `{n}`, as the killed `clean` was doing"))
                        }
                        Err(e) => self
                            .problems
                            .push(format!("`clean` could not finish removing `{n}`: {e}")),
                    }
                }
            }
            Step::Override {
                path,
                previous,
                services,
                expected,
                ..
            } => {
                self.finish_override(path, previous.as_deref(), services, expected)
                    .await
            }
            _ => {}
        }
    }

    /// A migration (or rollback) whose override file holds the change: Compose recreates the services
    /// on what it names, and the change is kept only if they run there (for a migration: on a directory
    /// with the recorded content digest); otherwise it is rolled back.
    async fn finish_override(
        &mut self,
        path: &Path,
        previous: Option<&str>,
        services: &[String],
        expected: &Expected,
    ) {
        let printer = self.session.printer;
        let mut files = self.record.project.files.clone();
        if !files.iter().any(|f| f == path) {
            files.push(path.to_path_buf());
        }
        let keep = match expected {
            Expected::Bind {
                path: dir,
                content_digest,
                ..
            } => {
                let mount = HelperMount::Bind {
                    path: dir.clone(),
                    read_only: true,
                };
                match migrate::tree_digest(self.engine, printer, None, &mount).await {
                    Ok(d) if d.to_string() == *content_digest => Ok(()),
                    Ok(d) => Err(format!(
                        "`{dir}` holds other content than the migration copied (digest {d})"
                    )),
                    Err(e) => Err(format!("`{dir}` cannot be read ({e:#})")),
                }
            }
            Expected::Volume { .. } | Expected::Images { .. } => Ok(()),
        };
        let kept = match keep {
            Ok(()) => self.up_and_check(&files, services, expected).await,
            Err(e) => Err(e),
        };
        match (kept, expected) {
            (Ok(()), Expected::Bind { path: dir, .. }) => {
                self.say(format!(
                    "finished the migration: {} run on `{dir}`",
                    quoted(services.iter().map(String::as_str))
                ));
            }
            (Ok(()), Expected::Volume { name, .. }) => {
                self.say(format!(
                    "finished the rollback: {} mount volume `{name}` again",
                    quoted(services.iter().map(String::as_str))
                ));
            }
            (Err(why), Expected::Bind { .. }) => {
                // Back to the volume, which the migration never changes.
                if let Err(e) = migrate::restore_override(path, previous) {
                    self.problems.push(format!(
                        "the migration could not be finished ({why}), and `{}` could not be put back ({e:#})",
                        path.display()
                    ));
                    return;
                }
                let files: Vec<PathBuf> = files
                    .into_iter()
                    .filter(|f| f != path || previous.is_some())
                    .collect();
                let no_expectation = Expected::Volume {
                    name: String::new(),
                    mounts: Vec::new(),
                };
                match self.up_and_check(&files, services, &no_expectation).await {
                    Ok(()) => self.say(format!(
                        "rolled back the migration ({why}): {} run on the volume as before",
                        quoted(services.iter().map(String::as_str))
                    )),
                    Err(e) => self.problems.push(format!(
                        "the migration is rolled back in `{}` ({why}), but the services did not start again ({e}); run `docker compose up -d`",
                        path.display()
                    )),
                }
            }
            (Ok(()), Expected::Images { .. }) => {}
            (Err(why), Expected::Volume { .. } | Expected::Images { .. }) => self.problems.push(format!(
                "the rollback is written to `{}`, but the services did not start on the volume ({why}); run `docker compose up -d`",
                path.display()
            )),
        }
    }

    /// A killed upgrade's new version: its containers are stopped and removed (the old ones too, when
    /// Compose had not replaced them yet), so that its data can be put back and Compose recreates the
    /// previous version once the override file is as before.
    async fn remove_new_version(&mut self, services: &[String]) {
        let now = match self
            .engine
            .project_containers(&self.record.project.name)
            .await
        {
            Ok(c) => c,
            Err(e) => {
                self.data_failed = true;
                self.problems
                    .push(format!("cannot list the containers of the upgrade: {e}"));
                return;
            }
        };
        for c in now.iter().filter(|c| {
            !c.helper
                && c.service
                    .as_deref()
                    .is_some_and(|s| services.iter().any(|x| x == s))
        }) {
            // Stopped whatever it was listed as: the engine may still be starting it for the killed
            // Compose, and a start in flight is stopped again.
            let mut removed = Ok(());
            for _ in 0..3 {
                removed = match self.engine.stop_container(&c.id, &c.name).await {
                    Ok(()) => self.engine.remove_stopped_container(&c.id, &c.name).await,
                    Err(e) => Err(e),
                };
                if removed.is_ok() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            match removed {
                Ok(()) => self.say(format!(
                    "removed `{}`: the killed upgrade had started its new version",
                    c.name
                )),
                Err(e) => {
                    self.data_failed = true;
                    self.problems.push(format!(
                        "`{}` of the killed upgrade's new version could not be stopped and removed: {e}",
                        c.name
                    ));
                }
            }
        }
    }

    /// A killed upgrade's override file is put back as it was; Compose recreates the services that have
    /// no container (`up -d --no-deps`), which must then run their previous images. When their data could
    /// not be put back they are left without containers.
    async fn undo_upgrade_override(
        &mut self,
        path: &Path,
        previous: Option<&str>,
        next: Option<&str>,
        services: &[String],
        images: &std::collections::BTreeMap<String, String>,
    ) {
        let now = fs_err::read_to_string(path).ok();
        if now.as_deref() != previous {
            if now.as_deref() != next {
                self.problems.push(format!(
                    "the override file `{}` was changed by something else since the upgrade; look at it, then run `docker compose up -d`",
                    path.display()
                ));
                return;
            }
            if let Err(e) = migrate::restore_override(path, previous) {
                self.problems.push(format!(
                    "the override file `{}` could not be put back as it was before the upgrade ({e:#})",
                    path.display()
                ));
                return;
            }
            self.say(format!(
                "put `{}` back as it was before the upgrade",
                path.display()
            ));
        }
        if self.data_failed {
            self.problems.push(format!(
                "not started again so that nothing runs on data that could not be put back: {}",
                quoted(services.iter().map(String::as_str))
            ));
            return;
        }
        let containers = match self
            .engine
            .project_containers(&self.record.project.name)
            .await
        {
            Ok(c) => c,
            Err(e) => {
                self.problems
                    .push(format!("cannot list the containers of the upgrade: {e}"));
                return;
            }
        };
        let missing: Vec<String> = services
            .iter()
            .filter(|s| {
                !containers
                    .iter()
                    .any(|c| !c.helper && c.service.as_deref() == Some(s.as_str()))
            })
            .cloned()
            .collect();
        if missing.is_empty() {
            return;
        }
        let mut files = self.record.project.files.clone();
        if previous.is_some() && !files.iter().any(|f| f == path) {
            files.push(path.to_path_buf());
        }
        let no_expectation = Expected::Volume {
            name: String::new(),
            mounts: Vec::new(),
        };
        if let Err(e) = self.up_and_check(&files, &missing, &no_expectation).await {
            self.problems.push(format!(
                "the previous version of {} did not start again ({e}); run `docker compose up -d`",
                quoted(missing.iter().map(String::as_str))
            ));
            return;
        }
        for service in &missing {
            let Some(want) = images.get(service) else {
                continue;
            };
            let now = self
                .engine
                .project_containers(&self.record.project.name)
                .await
                .unwrap_or_default();
            for c in now
                .iter()
                .filter(|c| !c.helper && c.service.as_deref() == Some(service.as_str()))
            {
                match self.engine.container_status(&c.id).await {
                    Ok(Some(st)) if st.image_id != *want => self.problems.push(format!(
                        "`{}` runs image {} after the upgrade was undone, not the previous {want}; `docker persist upgrade {service} --image {want}` puts it back",
                        c.name, st.image_id
                    )),
                    Ok(_) => {}
                    Err(e) => self
                        .problems
                        .push(format!("cannot look at container `{}`: {e}", c.name)),
                }
            }
        }
        self.say(format!(
            "recreated the previous version of {} with Compose",
            quoted(missing.iter().map(String::as_str))
        ));
    }

    /// `compose up -d --no-deps SERVICES` with `files`, then checks that every service runs and mounts
    /// what `expected` says (nothing, for a volume with no name).
    async fn up_and_check(
        &self,
        files: &[PathBuf],
        services: &[String],
        expected: &Expected,
    ) -> Result<(), String> {
        if services.is_empty() {
            return Ok(());
        }
        let compose = self.compose(files).map_err(|e| format!("{e:#}"))?;
        let mut a = vec!["up", "-d", "--no-deps"];
        a.extend(services.iter().map(String::as_str));
        compose.run(&a).await.map_err(|e| format!("{e:#}"))?;
        let now = self
            .engine
            .project_containers(&self.record.project.name)
            .await
            .map_err(|e| e.to_string())?;
        for service in services {
            let containers: Vec<_> = now
                .iter()
                .filter(|c| c.service.as_deref() == Some(service.as_str()) && !c.helper)
                .collect();
            if containers.is_empty() || !containers.iter().all(|c| c.is_running()) {
                return Err(format!("service `{service}` does not run"));
            }
            let mounted = |c: &crate::engine::ContainerInfo| match expected {
                Expected::Bind { path, mounts, .. } => {
                    migrate::mounts_bind(c, mounts, Path::new(path))
                }
                Expected::Volume { name, .. } if name.is_empty() => true,
                Expected::Volume { name, mounts } => migrate::mounts_volume(c, mounts, name),
                Expected::Images { .. } => true,
            };
            if let Some(c) = containers.iter().find(|c| !mounted(c)) {
                return Err(format!(
                    "container `{}` does not mount what it should",
                    c.name
                ));
            }
        }
        Ok(())
    }

    /// Waits while the engine may still be stopping `c` (its stop was sent by the killed command): its
    /// grace period from then, plus a margin. A container that stops meanwhile is started again; one still
    /// running after that runs.
    async fn wait_for_stop(&self, c: &intent::StoppedContainer) {
        let Some(sent) = c
            .stop_sent
            .as_deref()
            .and_then(|s| s.parse::<jiff::Timestamp>().ok())
        else {
            return;
        };
        let limit = Duration::from_secs(c.grace_secs) + STOP_MARGIN;
        let Ok(deadline) =
            sent.checked_add(jiff::SignedDuration::try_from(limit).unwrap_or_default())
        else {
            return;
        };
        let mut said = false;
        while jiff::Timestamp::now() < deadline {
            match self.engine.container_state(&c.id).await {
                Ok(Some(state)) if state.is_running() => {}
                _ => return,
            }
            if !said {
                self.say(format!(
                    "waiting for the engine to finish stopping `{}` (up to {} s)",
                    c.name,
                    limit.as_secs()
                ));
                said = true;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Empties data that held nothing before: a volume is recreated, a host directory emptied.
    async fn empty_again(&self, name: &str, bind: bool, spec: &VolumeInfo) -> anyhow::Result<()> {
        if bind {
            return empty_dir(Path::new(name));
        }
        self.engine.remove_volume(name).await?;
        self.engine
            .create_volume(name, &spec.driver, &spec.options, &spec.labels)
            .await
            .with_context(|| format!("failed to create volume `{name}` again"))?;
        Ok(())
    }
}

/// The step a record is finished from, if it got that far; an error when its override file was changed by
/// something else.
fn commit_point(record: &Record) -> Result<Commit, String> {
    for (i, s) in record.steps.iter().enumerate() {
        if s.state == StepState::Settled {
            continue;
        }
        match &s.step {
            Step::Committed | Step::ComposeDown { .. } | Step::RemoveVolumes { .. } => {
                return Ok(Commit::At(i));
            }
            // An upgrade's override is undone, never finished (see the undo).
            Step::Override {
                expected: Expected::Images { .. },
                ..
            } => {}
            Step::Override {
                path,
                previous,
                next,
                ..
            } => {
                let now = fs_err::read_to_string(path).ok();
                if now == *next {
                    return Ok(Commit::At(i));
                }
                if now != *previous {
                    return Err(format!(
                        "the override file `{}` was changed by something else since; look at it, then run `docker compose up -d`",
                        path.display()
                    ));
                }
            }
            _ => {}
        }
    }
    Ok(Commit::None)
}

/// Removes what a local directory holds (the directory itself stays); a missing one is empty.
fn empty_dir(dir: &Path) -> anyhow::Result<()> {
    if !dir.exists() {
        return Ok(());
    }
    for entry in fs_err::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            fs_err::remove_dir_all(entry.path())?;
        } else {
            fs_err::remove_file(entry.path())?;
        }
    }
    Ok(())
}

fn capitalized(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(steps: Vec<(Step, StepState)>) -> Record {
        Record {
            format: 1,
            owner: intent::Owner::this(),
            host: "unix:///x.sock".into(),
            project: intent::ProjectRef::default(),
            command: "migrate".into(),
            started_at: intent::now(),
            steps: steps
                .into_iter()
                .map(|(step, state)| StepEntry {
                    state,
                    at: intent::now(),
                    step,
                })
                .collect(),
            unresolved: Vec::new(),
        }
    }

    fn stop() -> Step {
        Step::Stop {
            containers: Vec::new(),
        }
    }

    fn at(c: Result<Commit, String>) -> Option<usize> {
        match c {
            Ok(Commit::At(i)) => Some(i),
            Ok(Commit::None) => None,
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn a_record_before_its_commit_point_is_undone_and_after_it_finished() {
        assert_eq!(
            at(commit_point(&record(vec![(stop(), StepState::Done)]))),
            None
        );
        let restore = record(vec![
            (stop(), StepState::Done),
            (Step::Committed, StepState::Begun),
        ]);
        assert_eq!(at(commit_point(&restore)), Some(1));
        let down = record(vec![
            (stop(), StepState::Done),
            (
                Step::ComposeDown {
                    args: vec!["-v".into()],
                    backup: "/b.tar".into(),
                },
                StepState::Begun,
            ),
        ]);
        assert_eq!(at(commit_point(&down)), Some(1));
        // A settled commit step is no commit point: the command dealt with it.
        let settled = record(vec![(Step::Committed, StepState::Settled)]);
        assert_eq!(at(commit_point(&settled)), None);
    }

    #[test]
    fn an_upgrade_is_undone_whatever_its_override_file_holds() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("compose.override.yaml");
        std::fs::write(&path, "new").unwrap();
        let r = record(vec![
            (
                Step::Override {
                    path: path.clone(),
                    previous: None,
                    next: Some("new".into()),
                    services: vec!["app".into()],
                    expected: Expected::Images {
                        images: [("app".to_string(), "sha256:old".to_string())].into(),
                    },
                },
                StepState::Done,
            ),
            (stop(), StepState::Done),
            (
                Step::Up {
                    services: vec!["app".into()],
                },
                StepState::Begun,
            ),
        ]);
        assert_eq!(at(commit_point(&r)), None);
        // The new kinds are stored and read back.
        let v = serde_json::to_value(&r).unwrap();
        let back: Record = serde_json::from_value(v).unwrap();
        assert_eq!(back, r);
    }

    #[test]
    fn a_migration_is_finished_only_when_its_override_file_holds_the_change() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("compose.override.yaml");
        let step = |previous: Option<&str>, next: Option<&str>| Step::Override {
            path: path.clone(),
            previous: previous.map(str::to_string),
            next: next.map(str::to_string),
            services: vec!["db".into()],
            expected: Expected::Volume {
                name: "v".into(),
                mounts: Vec::new(),
            },
        };
        let r = record(vec![
            (stop(), StepState::Done),
            (step(None, Some("new")), StepState::Begun),
        ]);
        // Not written yet (no file, as before): undone.
        assert_eq!(at(commit_point(&r)), None);
        std::fs::write(&path, "new").unwrap();
        assert_eq!(at(commit_point(&r)), Some(1));
        std::fs::write(&path, "someone else's").unwrap();
        assert!(
            commit_point(&r).is_err(),
            "a file changed by something else is not guessed at"
        );
        // A rollback that removes the file: finished once it is gone.
        let r = record(vec![(step(Some("old"), None), StepState::Begun)]);
        std::fs::write(&path, "old").unwrap();
        assert_eq!(at(commit_point(&r)), None);
        std::fs::remove_file(&path).unwrap();
        assert_eq!(at(commit_point(&r)), Some(0));
    }
}
