//! `prune` (and `backup --prune`): removes the project's old backups by a retention policy, never below the
//! safety floor. The rules and the floor are decided in [`crate::retention`]; this module finds the
//! policy (flags, else the destination's `retention:`, else `x-persist.retention`), lists the backups,
//! asks `check`'s rule which backups protect a volume now, shows the plan, and removes.
//!
//! Only files the listing recognises as backups of this project (a valid manifest naming it) are ever
//! candidates: foreign files, other projects' backups and `.partial` files are not in the listing, so they
//! cannot be removed. Times come from the manifests. Each removal is one `unlink`, so an interrupted prune
//! leaves every file either whole or gone; a listing that fails removes nothing.
//!
//! Confirmation: a policy written in the Compose file is the operator's decision, taken once, and a
//! scheduled `backup --prune` must run unattended, so a prune by the configured policy does not ask. A
//! policy typed on the command line is a decision of the moment: it asks on a terminal and needs `--yes`
//! without one (exit 3), like `clean`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use serde::Serialize;

use super::backups::destinations;
use super::guard::{Protection, assess, needs_protection, removed_by_down_v};
use super::restore::Refused;
use super::verified::{Verified, recorded};
use super::{ExitStatus, Session, UsageError, plural};
use crate::archive::{BackupListing, BackupSummary};
use crate::cli::PruneArgs;
use crate::compose::Project;
use crate::destination::Destination;
use crate::engine::Engine;
use crate::inventory::{self, Inventory};
use crate::report::{Printer, human_size, prompt, table};
use crate::retention::{self, Candidate, Config, DEFAULT_SAFETY_WITHIN, Plan, Policy, Within};

/// Version of the `--json` output of `prune`.
pub const SCHEMA_VERSION: u32 = 1;

/// Where the policy came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicySource {
    /// `--keep-*` flags: a policy of the moment, confirmed before anything is removed.
    Flags,
    /// `x-persist.retention`.
    Project,
    /// `retention:` of a named destination.
    Destination(String),
}

impl PolicySource {
    fn describe(&self) -> String {
        match self {
            PolicySource::Flags => "the command line".to_string(),
            PolicySource::Project => "`x-persist.retention`".to_string(),
            PolicySource::Destination(d) => format!("the `retention:` of destination `{d}`"),
        }
    }
}

/// The policy and how to apply it.
#[derive(Debug, Clone)]
pub struct Settings {
    pub policy: Policy,
    pub source: PolicySource,
    /// `None`: the system's time zone.
    pub tz: Option<String>,
    pub safety_within: Within,
}

/// The settings for a prune: the flags' policy when one is given, else the destination's `retention:`
/// (`destination` is its name and the value of that key), else the project's `x-persist.retention`. An
/// empty policy (none anywhere, or one without a rule) is a usage error.
pub fn settings(
    project: &Project,
    flags: Option<Policy>,
    tz: Option<&str>,
    destination: Option<(&str, &serde_json::Value)>,
) -> anyhow::Result<Settings> {
    let invalid = |location: String, message: String| UsageError {
        message: format!("invalid retention policy in {location}: {message}"),
        hint: Some("the README's `prune` section lists the keys".to_string()),
    };
    let config = match destination {
        Some((name, raw)) => Some((
            PolicySource::Destination(name.to_string()),
            Config::from_json(raw).map_err(|m| invalid(format!("destination `{name}`"), m))?,
        )),
        None => match project.persist.get("retention") {
            None | Some(serde_json::Value::Null) => None,
            Some(raw) => Some((
                PolicySource::Project,
                Config::from_json(raw).map_err(|m| invalid("`x-persist.retention`".into(), m))?,
            )),
        },
    };
    let (policy, source) = match (flags, &config) {
        (Some(p), _) => (p, PolicySource::Flags),
        (None, Some((source, c))) => (c.policy.clone(), source.clone()),
        (None, None) => bail!(UsageError {
            message: "no retention policy: nothing says which backups to keep".to_string(),
            hint: Some(
                "pass one (`--keep-daily 7 --keep-weekly 4`), or write it in the Compose file: `x-persist: {retention: {keep-daily: 7, keep-weekly: 4}}`"
                    .to_string()
            ),
        }),
    };
    if policy.is_empty() {
        bail!(UsageError {
            message: format!(
                "the retention policy of {} has no rule: it would keep nothing",
                source.describe()
            ),
            hint: Some("give at least one of --keep-last/-hourly/-daily/-weekly/-monthly/-yearly N, --keep-within DURATION or --keep-tag TAG".to_string()),
        });
    }
    let config = config.map(|(_, c)| c);
    let tz = tz
        .map(str::to_string)
        .or_else(|| config.as_ref().and_then(|c| c.tz.clone()));
    retention::time_zone(tz.as_deref()).map_err(|message| UsageError {
        message,
        hint: Some("`--tz` takes an IANA name such as `Europe/Berlin` or `UTC`".to_string()),
    })?;
    Ok(Settings {
        policy,
        source,
        tz,
        safety_within: config
            .and_then(|c| c.safety_within)
            .unwrap_or(DEFAULT_SAFETY_WITHIN),
    })
}

/// Where the backups are ([`Destination`]), and what prune does there: list, tell verified files, remove.
#[derive(Debug, Clone)]
pub struct Store {
    dest: Destination,
}

impl Store {
    pub fn new(dest: Destination) -> Store {
        Store { dest }
    }

    pub fn describe(&self) -> String {
        self.dest.describe()
    }

    /// The project's own backup directory, the one `check` looks at.
    fn is_local(&self) -> bool {
        self.dest.is_local()
    }

    async fn list(&self, project: &str) -> anyhow::Result<BackupListing> {
        self.dest
            .list(project)
            .await
            .with_context(|| format!("failed to list the backups in {}", self.describe()))
    }

    /// Removes one backup file; `false` when it was gone already.
    async fn remove(&self, backup: &BackupSummary) -> anyhow::Result<bool> {
        let name = backup
            .path
            .file_name()
            .and_then(|n| n.to_str())
            .context("a backup without a file name")?;
        match self.dest.remove(name).await {
            Ok(()) => Ok(true),
            // A directory tells a file that is gone from one that cannot be removed.
            Err(_) if self.dest.dir().is_some() && !backup.path.exists() => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Only files in a directory on this machine carry a verification record.
    fn verified(&self, backup: &BackupSummary) -> bool {
        self.dest.dir().is_some() && recorded(&backup.path, &backup.manifest) == Some(Verified::Ok)
    }

    fn remove_stale_partials(&self, printer: &Printer, project: &str) {
        let Some(dir) = self.dest.dir() else { return };
        match crate::archive::remove_stale_partials(dir, project) {
            Ok(removed) => {
                for p in removed {
                    printer.verbose(format!(
                        "removed `{}`, left by a backup that did not finish",
                        p.display()
                    ));
                }
            }
            Err(e) => printer.verbose(format!("cannot look for unfinished backups: {e}")),
        }
    }
}

/// How a prune runs.
#[derive(Debug, Clone, Copy)]
pub struct Mode {
    pub dry_run: bool,
    pub yes: bool,
    /// Print the JSON document (off when the caller embeds the result in its own).
    pub print_json: bool,
}

#[derive(Debug, Serialize)]
pub struct PruneJson {
    pub schema_version: u32,
    pub project: String,
    pub destination: String,
    pub dry_run: bool,
    pub policy: Policy,
    pub policy_source: String,
    pub tz: String,
    pub keep_safety_copies: Within,
    /// The policy keeps none of the backups it applies to: only the floor keeps any.
    pub policy_keeps_none: bool,
    pub backups: Vec<PrunedJson>,
    pub kept: usize,
    pub removed: usize,
    pub freed_bytes: u64,
}

#[derive(Debug, Serialize)]
pub struct PrunedJson {
    pub path: PathBuf,
    pub created: String,
    pub tag: Option<String>,
    pub bytes: u64,
    pub verified: bool,
    /// `keep` or `remove`.
    pub decision: &'static str,
    pub reasons: Vec<retention::Reason>,
    pub why: String,
    /// Whether the file is gone now (false on `--dry-run`).
    pub removed: bool,
}

/// What `check` counts as protecting, per backup file: assessed on the engine when there is one, else
/// the conservative [`retention::may_protect`].
async fn protection(
    printer: &Printer,
    engine: Option<(&Engine, &Inventory)>,
    backups: &[BackupSummary],
    candidates: &[Candidate],
) -> Vec<Vec<String>> {
    if let Some((engine, inventory)) = engine {
        let items: Vec<_> = removed_by_down_v(inventory)
            .into_iter()
            .filter(|i| needs_protection(i.tier()))
            .collect();
        match assess(engine, printer, &items, backups).await {
            Ok(assessed) => {
                let mut by_path: BTreeMap<&Path, Vec<String>> = BTreeMap::new();
                for a in &assessed {
                    if let Protection::Protected { backup } = &a.protection
                        && let Some(b) = backups.iter().find(|b| b.path == *backup)
                    {
                        by_path
                            .entry(b.path.as_path())
                            .or_default()
                            .push(a.item.key.clone());
                    }
                }
                return backups
                    .iter()
                    .map(|b| by_path.remove(b.path.as_path()).unwrap_or_default())
                    .collect();
            }
            Err(e) => printer.warn(format!(
                "cannot tell which backups protect the data now ({e:#}); keeping every backup of each critical and important volume down to its newest verified one"
            )),
        }
    }
    retention::may_protect(candidates)
}

/// Decides, shows and (unless `--dry-run`) removes. `engine` gives `check`'s view of the data; without
/// it the floor keeps more.
pub async fn prune(
    session: &Session<'_>,
    project: &str,
    engine: Option<(&Engine, &Inventory)>,
    store: &Store,
    settings: &Settings,
    mode: Mode,
) -> anyhow::Result<(ExitStatus, PruneJson)> {
    let printer = session.printer;
    let tz = retention::time_zone(settings.tz.as_deref()).map_err(|message| UsageError {
        message,
        hint: None,
    })?;
    let listing = store.list(project).await?;
    for s in &listing.skipped {
        printer.verbose(format!(
            "not a backup, left alone: `{}`: {}",
            s.path.display(),
            s.reason
        ));
    }
    let backups = listing.backups;
    let mut candidates: Vec<Candidate> = backups
        .iter()
        .map(|b| Candidate {
            created: b.created(),
            tag: b.tag().map(str::to_string),
            valuable: valuable_keys(b),
            verified: store.verified(b),
            protects: Vec::new(),
        })
        .collect();
    // `check` looks at the project's backup directory only: a backup elsewhere protects nothing for it.
    let protects = if store.is_local() {
        protection(printer, engine, &backups, &candidates).await
    } else {
        vec![Vec::new(); candidates.len()]
    };
    for (c, p) in candidates.iter_mut().zip(protects) {
        c.protects = p;
    }
    let plan = retention::decide(
        &settings.policy,
        settings.safety_within,
        &tz,
        jiff::Timestamp::now(),
        &candidates,
    );
    let mut report = PruneJson {
        schema_version: SCHEMA_VERSION,
        project: project.to_string(),
        destination: store.describe(),
        dry_run: mode.dry_run,
        policy: settings.policy.clone(),
        policy_source: settings.source.describe(),
        tz: tz.iana_name().unwrap_or("local").to_string(),
        keep_safety_copies: settings.safety_within,
        policy_keeps_none: plan.policy_keeps_none,
        backups: backups
            .iter()
            .zip(&plan.decisions)
            .zip(&candidates)
            .map(|((b, d), c)| PrunedJson {
                path: b.path.clone(),
                created: b.created().to_string(),
                tag: b.tag().map(str::to_string),
                bytes: b.bytes,
                verified: c.verified,
                decision: if d.keep { "keep" } else { "remove" },
                reasons: d.reasons.clone(),
                why: d.why(),
                removed: false,
            })
            .collect(),
        kept: plan.decisions.iter().filter(|d| d.keep).count(),
        removed: 0,
        freed_bytes: 0,
    };
    let to_remove: Vec<usize> = (0..backups.len())
        .filter(|&i| !plan.decisions[i].keep)
        .collect();
    let to_free: u64 = to_remove.iter().map(|&i| backups[i].bytes).sum();

    if backups.is_empty() {
        printer.status(format!(
            "No backups of project `{project}` in {}",
            store.describe()
        ));
        return finish(printer, mode, report);
    }
    if plan.policy_keeps_none {
        printer.warn(format!(
            "the policy ({}) keeps none of the {}: only the safety floor keeps any",
            settings.policy,
            plural(
                candidates.iter().filter(|c| !is_safety(c)).count(),
                "backup"
            )
        ));
    }
    let human_plan = || plan_table(&backups, &plan, &candidates);
    if mode.dry_run {
        if !printer.json_mode() {
            printer.data(human_plan());
        }
        printer.status(format!(
            "Would remove {} ({}) and keep {}, by {} ({}, {})",
            plural(to_remove.len(), "backup"),
            human_size(to_free),
            report.kept,
            settings.source.describe(),
            settings.policy,
            report.tz
        ));
        return finish(printer, mode, report);
    }
    if to_remove.is_empty() {
        printer.status(format!(
            "Nothing to remove: the policy and the floor keep all {}",
            plural(backups.len(), "backup")
        ));
        return finish(printer, mode, report);
    }
    if settings.source == PolicySource::Flags && !mode.yes {
        let what = format!(
            "{} ({}) of project `{project}` in {}",
            plural(to_remove.len(), "backup"),
            human_size(to_free),
            store.describe()
        );
        if !prompt::interactive() {
            bail!(Refused {
                message: format!("refusing to remove {what} without confirmation"),
                hint: "run it in a terminal to confirm, pass `--yes`, or write the policy in `x-persist.retention` (a configured policy runs without asking)".to_string(),
            });
        }
        printer.data(human_plan());
        if !prompt::confirm(&format!("Remove {what}?"))? {
            printer.status("Nothing was removed");
            return Ok((ExitStatus::Refused, report));
        }
    }

    store.remove_stale_partials(printer, project);
    for &i in &to_remove {
        if crate::cancel::is_cancelled() {
            break;
        }
        let b = &backups[i];
        let gone = store
            .remove(b)
            .await
            .with_context(|| format!("failed to remove `{}`", b.path.display()));
        let gone = match gone {
            Ok(g) => g,
            Err(e) => {
                printer.warn(format!(
                    "removed {} before the failure; the others are untouched",
                    plural(report.removed, "backup")
                ));
                return Err(e);
            }
        };
        report.backups[i].removed = true;
        report.removed += 1;
        report.freed_bytes += b.bytes;
        printer.verbose(format!(
            "removed `{}` ({}){}",
            b.path.display(),
            plan.decisions[i].why(),
            if gone { "" } else { ", already gone" }
        ));
        // Lets Ctrl-C end the command between two removals, never inside one.
        tokio::task::yield_now().await;
    }
    printer.status(format!(
        "Removed {} ({}), kept {}, by {} ({})",
        plural(report.removed, "backup"),
        human_size(report.freed_bytes),
        report.kept,
        settings.source.describe(),
        settings.policy
    ));
    finish(printer, mode, report)
}

fn finish(
    printer: &Printer,
    mode: Mode,
    report: PruneJson,
) -> anyhow::Result<(ExitStatus, PruneJson)> {
    if mode.print_json && printer.json_mode() {
        printer.json(&report)?;
    }
    Ok((ExitStatus::Success, report))
}

fn is_safety(c: &Candidate) -> bool {
    c.tag.as_deref().is_some_and(retention::is_safety_tag)
}

/// The critical and important volumes a backup holds.
fn valuable_keys(b: &BackupSummary) -> Vec<String> {
    let trees = b
        .manifest
        .volumes
        .iter()
        .filter(|v| needs_protection(v.tier))
        .map(|v| v.key.clone());
    let dumps = b
        .manifest
        .dumps
        .iter()
        .filter(|d| needs_protection(d.tier))
        .map(|d| d.key.clone());
    trees.chain(dumps).collect()
}

fn plan_table(backups: &[BackupSummary], plan: &Plan, candidates: &[Candidate]) -> String {
    let rows: Vec<Vec<String>> = backups
        .iter()
        .zip(&plan.decisions)
        .zip(candidates)
        .map(|((b, d), c)| {
            vec![
                if d.keep { "KEEP" } else { "REMOVE" }.to_string(),
                b.created().strftime("%Y-%m-%d %H:%M:%S UTC").to_string(),
                b.tag().unwrap_or("-").to_string(),
                human_size(b.bytes),
                if c.verified { "yes" } else { "no" }.to_string(),
                d.why(),
                b.path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
            ]
        })
        .collect();
    table::render(
        &["", "CREATED", "TAG", "SIZE", "VERIFIED", "WHY", "FILE"],
        &rows,
    )
}

/// The destination `--from` names (`local` by default, `--dir` moving it), and its `retention:` when
/// it is a configured one.
fn store_of(
    project: &Project,
    args: &PruneArgs,
) -> anyhow::Result<(Store, Option<(String, serde_json::Value)>)> {
    let all = destinations(&args.dir, project)?;
    let dest = all.resolve(args.from.as_deref().unwrap_or("local"))?;
    let retention = all
        .configured()
        .iter()
        .find(|c| c.name == dest.name())
        .and_then(|c| c.raw.get("retention").cloned())
        .filter(|r| !r.is_null())
        .map(|r| (dest.name().to_string(), r));
    Ok((Store::new(dest), retention))
}

pub async fn run(session: &Session<'_>, args: &PruneArgs) -> anyhow::Result<ExitStatus> {
    let project = session.load_project()?;
    let (store, retention) = store_of(&project, args)?;
    let settings = settings(
        &project,
        args.policy.policy(),
        args.tz.as_deref(),
        retention.as_ref().map(|(n, r)| (n.as_str(), r)),
    )?;
    let name = project.name.clone();
    let engine = if store.is_local() {
        check_view(session, project).await
    } else {
        None
    };
    let (status, _) = prune(
        session,
        &name,
        engine.as_ref().map(|(e, i)| (e, i)),
        &store,
        &settings,
        Mode {
            dry_run: args.dry_run,
            yes: args.yes,
            print_json: true,
        },
    )
    .await?;
    Ok(status)
}

/// The engine and the project's data on it, for `check`'s rule; `None` (with a warning) when either cannot
/// be had.
async fn check_view(session: &Session<'_>, project: Project) -> Option<(Engine, Inventory)> {
    let printer = session.printer;
    let fallback = "keeping every backup of each critical and important volume down to its newest verified one";
    match session.connect().await {
        Ok(engine) => match inventory::build(project, &engine).await {
            Ok(inv) => {
                for w in &inv.warnings {
                    printer.warn(w);
                }
                Some((engine, inv))
            }
            Err(e) => {
                printer.warn(format!(
                    "cannot read the project's data on the engine ({e}); {fallback}"
                ));
                None
            }
        },
        Err(e) => {
            printer.warn(format!("cannot reach the engine ({e:#}); {fallback}"));
            None
        }
    }
}

/// `backup --prune`: the settings, checked before the backup is taken (a missing or broken policy is
/// a usage error before anything is written).
pub fn settings_for_backup(project: &Project) -> anyhow::Result<Settings> {
    settings(project, None, None, None)
}

/// `backup --prune`, after the backup succeeded: prune `dir` by the configured policy, without asking.
pub async fn after_backup(
    session: &Session<'_>,
    engine: &Engine,
    inventory: &Inventory,
    dir: &Path,
    settings: &Settings,
) -> anyhow::Result<PruneJson> {
    let all = crate::destination::Destinations::from_config(
        &inventory.project.persist,
        dir.to_path_buf(),
        &inventory.project.directory,
    )?;
    let store = Store::new(all.local());
    let (_, report) = prune(
        session,
        &inventory.project.name,
        Some((engine, inventory)),
        &store,
        settings,
        Mode {
            dry_run: false,
            yes: true,
            print_json: false,
        },
    )
    .await?;
    Ok(report)
}
