//! `prune` (and `backup --prune`): removes the project's old backups by a retention policy, never below the
//! safety floor. The rules and the floor are decided in [`crate::retention`]; this module finds the
//! policy (flags, else the destination's `retention:`, else `x-persist.retention`), lists the backups,
//! asks `check`'s rule which backups protect a volume now, shows the plan, and removes.
//!
//! Only files the listing recognises as backups of this project (a valid manifest naming it) are ever
//! candidates: foreign files, other projects' backups and `.partial` files are not in the listing, so they
//! cannot be removed. Times come from the manifests. A backup goes oldest first, its `.sha256` before it
//! and each in one step (an `unlink`, a `DELETE`; see [`Destination::remove`]), so an interrupted prune
//! leaves every file whole or gone, never a `.sha256` without its backup, and the newest of the backups
//! it meant to remove; a listing that fails removes nothing. Several `--from` places are pruned one after
//! the other, each on its own: one that fails is reported (`failed`, exit 1) and the others are pruned.
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
use super::guard::{
    Protection, assess, checked_backups, checks_at, needs_protection, removed_by_down_v,
};
use super::restore::Refused;
use super::verified::{Verified, recorded};
use super::{ExitStatus, Session, UsageError, plural};
use crate::archive::{BackupListing, BackupSummary};
use crate::cli::PruneArgs;
use crate::compose::Project;
use crate::destination::{Destination, Destinations};
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

    /// Whether `verify` found this exact file intact: a file on this machine by its path, size and time;
    /// one at a remote destination by its URL and manifest, once `verify --from` read it there.
    fn verified(&self, backup: &BackupSummary) -> bool {
        recorded(&backup.path, &backup.manifest) == Some(Verified::Ok)
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

#[derive(Debug, Clone, Serialize)]
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

#[derive(Debug, Clone, Serialize)]
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

/// How the floor's `check` rule sees the place being pruned.
pub enum CheckView<'a> {
    /// `check` does not look there (a destination not marked `default: true`): nothing there protects a
    /// volume for it.
    Elsewhere,
    /// `check` looks there, but the engine cannot be asked: the conservative [`retention::may_protect`].
    Unknown,
    /// `check` looks there: it is asked, over every backup it weighs (`weighed`, newest first; the
    /// backups of the place being pruned among them).
    Engine {
        engine: &'a Engine,
        inventory: &'a Inventory,
        weighed: Vec<BackupSummary>,
    },
}

impl<'a> CheckView<'a> {
    /// The view for `store`: whether `check` looks there, and what it weighs now. `dir` is `--dir`.
    pub async fn of(
        printer: &Printer,
        known: &Destinations,
        dir: &Option<PathBuf>,
        store: &Store,
        engine: Option<(&'a Engine, &'a Inventory)>,
    ) -> CheckView<'a> {
        if !checks_at(known, &store.dest) {
            return CheckView::Elsewhere;
        }
        match engine {
            None => CheckView::Unknown,
            Some((engine, inventory)) => CheckView::Engine {
                engine,
                inventory,
                weighed: checked_backups(printer, dir, &inventory.project).await,
            },
        }
    }
}

/// What `check` counts as protecting, per backup file of the place pruned: assessed on the engine when
/// there is one, else the conservative [`retention::may_protect`].
async fn protection(
    printer: &Printer,
    view: &CheckView<'_>,
    backups: &[BackupSummary],
    candidates: &[Candidate],
) -> Vec<Vec<String>> {
    if let CheckView::Engine {
        engine,
        inventory,
        weighed,
    } = view
    {
        let items: Vec<_> = removed_by_down_v(inventory)
            .into_iter()
            .filter(|i| needs_protection(i.tier()))
            .collect();
        match assess(engine, printer, &items, weighed).await {
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
    match view {
        CheckView::Elsewhere => vec![Vec::new(); backups.len()],
        _ => retention::may_protect(candidates),
    }
}

/// Decides, shows and (unless `--dry-run`) removes. `view` is `check`'s view of the place; without the
/// engine the floor keeps more.
pub async fn prune(
    session: &Session<'_>,
    project: &str,
    view: &CheckView<'_>,
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
    let protects = protection(printer, view, &backups, &candidates).await;
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
    // Oldest first: a prune cut short leaves the newest of the backups it meant to remove, so what is
    // left is what a longer policy would have kept, and the next prune finishes the job.
    let to_remove: Vec<usize> = (0..backups.len())
        .rev()
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
            "Nothing to remove in {}: the policy and the floor keep all {}",
            store.describe(),
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
        "Removed {} ({}) from {}, kept {}, by {} ({})",
        plural(report.removed, "backup"),
        human_size(report.freed_bytes),
        store.describe(),
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

/// The places `--from` names (`local` by default, `--dir` moving it), each with its settings: the flags'
/// policy, else its own `retention:`, else `x-persist.retention`. A name that resolves to nothing, or a
/// place without a policy, is a usage error before anything is pruned.
fn places_of(
    project: &Project,
    known: &Destinations,
    args: &PruneArgs,
) -> anyhow::Result<Vec<(Store, Settings)>> {
    let specs: Vec<&str> = if args.from.is_empty() {
        vec!["local"]
    } else {
        args.from.iter().map(String::as_str).collect()
    };
    let mut places: Vec<(Store, Settings)> = Vec::new();
    for spec in specs {
        let dest = known.resolve(spec)?;
        if places.iter().any(|(s, _)| s.dest.url() == dest.url()) {
            continue;
        }
        let settings = settings(
            project,
            args.policy.policy(),
            args.tz.as_deref(),
            retention_of(known, dest.name()).map(|r| (dest.name(), r)),
        )?;
        places.push((Store::new(dest), settings));
    }
    Ok(places)
}

pub async fn run(session: &Session<'_>, args: &PruneArgs) -> anyhow::Result<ExitStatus> {
    let printer = session.printer;
    let project = session.load_project()?;
    let known = destinations(&args.dir, &project)?;
    let places = places_of(&project, &known, args)?;
    let name = project.name.clone();
    let engine = if places.iter().any(|(s, _)| checks_at(&known, &s.dest)) {
        check_view(session, project).await
    } else {
        None
    };
    let engine = engine.as_ref().map(|(e, i)| (e, i));
    let mode = Mode {
        dry_run: args.dry_run,
        yes: args.yes,
        print_json: places.len() == 1,
    };
    if let [(store, settings)] = places.as_slice() {
        let view = CheckView::of(printer, &known, &args.dir, store, engine).await;
        let (status, _) = prune(session, &name, &view, store, settings, mode).await?;
        return Ok(status);
    }
    // Several places: each is pruned on its own; one that fails is reported and the others still are.
    let mut out = Vec::new();
    for (store, settings) in &places {
        let view = CheckView::of(printer, &known, &args.dir, store, engine).await;
        let result = prune(session, &name, &view, store, settings, mode).await;
        match place_outcome(printer, store, result, "") {
            Outcome::Place(place) => out.push(*place),
            // Declined at the prompt: the places after it are not asked.
            Outcome::Declined => return Ok(ExitStatus::Refused),
            Outcome::Stop(e) => return Err(e),
        }
    }
    let failed = out.iter().any(|p| p.outcome == "failed");
    let status = if !failed {
        ExitStatus::Success
    } else {
        ExitStatus::Failure
    };
    if printer.json_mode() {
        printer.json(&PlacesJson {
            schema_version: SCHEMA_VERSION,
            project: &name,
            dry_run: args.dry_run,
            destinations: &out,
        })?;
    }
    Ok(status)
}

/// `prune --from A --from B --json`: one entry per place, in the order given.
#[derive(Serialize)]
struct PlacesJson<'a> {
    schema_version: u32,
    project: &'a str,
    dry_run: bool,
    destinations: &'a [PlacePruneJson],
}

/// What one place's prune came to.
enum Outcome {
    /// `pruned` with its document, or `failed` with the error.
    Place(Box<PlacePruneJson>),
    /// The question was answered no.
    Declined,
    /// A refusal (a confirmation needed) or a usage error: it concerns every place.
    Stop(anyhow::Error),
}

/// Sorts one place's result into an [`Outcome`]; a failure is warned, naming the place (`also` ends the
/// warning).
fn place_outcome(
    printer: &Printer,
    store: &Store,
    result: anyhow::Result<(ExitStatus, PruneJson)>,
    also: &str,
) -> Outcome {
    match result {
        Ok((ExitStatus::Refused, _)) => Outcome::Declined,
        Ok((_, report)) => Outcome::Place(Box::new(PlacePruneJson {
            name: store.dest.name().to_string(),
            destination: store.describe(),
            outcome: "pruned",
            error: None,
            result: Some(report),
        })),
        Err(e) if e.is::<Refused>() || e.is::<UsageError>() => Outcome::Stop(e),
        Err(e) => Outcome::Place(Box::new(failed_place(
            printer,
            store,
            &format!("{e:#}"),
            also,
        ))),
    }
}

fn failed_place(printer: &Printer, store: &Store, error: &str, also: &str) -> PlacePruneJson {
    printer.warn(format!(
        "could not prune {}: {error}{also}",
        store.describe()
    ));
    PlacePruneJson {
        name: store.dest.name().to_string(),
        destination: store.describe(),
        outcome: "failed",
        error: Some(error.to_string()),
        result: None,
    }
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

/// The `retention:` a destination of `known` carries, when it is a configured one with one.
fn retention_of<'a>(
    known: &'a crate::destination::Destinations,
    name: &str,
) -> Option<&'a serde_json::Value> {
    known
        .configured()
        .iter()
        .find(|c| c.name == name)
        .and_then(|c| c.raw.get("retention"))
        .filter(|r| !r.is_null())
}

/// The configured settings for one destination: its own `retention:`, else `x-persist.retention`;
/// `None` when neither exists. A policy that exists but is broken is a usage error.
fn configured_settings(
    project: &Project,
    name: &str,
    retention: Option<&serde_json::Value>,
) -> anyhow::Result<Option<Settings>> {
    let has_project = !matches!(
        project.persist.get("retention"),
        None | Some(serde_json::Value::Null)
    );
    if retention.is_none() && !has_project {
        return Ok(None);
    }
    settings(project, None, None, retention.map(|r| (name, r))).map(Some)
}

/// `backup --prune`: the policy of each place the backup goes, decided before the backup is taken (a
/// broken policy, or none anywhere, is a usage error before anything is written).
#[derive(Debug)]
pub struct BackupPrune {
    /// The project's backup directory.
    local: Option<Settings>,
    /// Each destination the file is sent to, by name; `None`: it has no policy and is skipped.
    remote: Vec<(String, Option<Settings>)>,
}

pub fn settings_for_backup(
    project: &Project,
    known: &crate::destination::Destinations,
    remote: &[Destination],
) -> anyhow::Result<BackupPrune> {
    let local = known.local();
    let plan = BackupPrune {
        local: configured_settings(project, local.name(), retention_of(known, local.name()))?,
        remote: remote
            .iter()
            .map(|d| {
                configured_settings(project, d.name(), retention_of(known, d.name()))
                    .map(|s| (d.name().to_string(), s))
            })
            .collect::<anyhow::Result<_>>()?,
    };
    if plan.local.is_none() && plan.remote.iter().all(|(_, s)| s.is_none()) {
        // The error a prune without any policy gives.
        settings(project, None, None, None)?;
    }
    Ok(plan)
}

/// What `backup --prune` did in one place.
#[derive(Debug, Serialize)]
pub struct PlacePruneJson {
    /// The destination's name (`local` for the project's backup directory).
    pub name: String,
    /// Where it is (a URL without secrets, or a directory).
    pub destination: String,
    /// `pruned`, `skipped` (no policy) or `failed`.
    pub outcome: &'static str,
    /// Why it was skipped, or the error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<PruneJson>,
}

/// The `prune` field of `backup --json`: the local directory's prune at the top level (as before
/// destinations were pruned; absent when the directory has no policy), and every place in `destinations`.
#[derive(Debug, Serialize)]
pub struct BackupPruneJson {
    #[serde(flatten)]
    pub local: Option<PruneJson>,
    pub destinations: Vec<PlacePruneJson>,
}

/// `backup --prune`, after a backup that reached every destination: prunes the project's backup
/// directory and each destination in `remote` by its configured policy, without asking. A place
/// without a policy is skipped with a note; one whose prune fails gets a warning naming it, and the
/// others are still pruned: the backup itself succeeded, so the command does not fail for it.
pub async fn after_backup(
    session: &Session<'_>,
    engine: &Engine,
    inventory: &Inventory,
    dir: &Path,
    plan: &BackupPrune,
    remote: &[Destination],
) -> BackupPruneJson {
    let printer = session.printer;
    let project = &inventory.project.name;
    let local = Destination::new(
        "local",
        crate::destination::DestinationUrl::Dir(dir.to_path_buf()),
    );
    let mut places = vec![(local, plan.local.as_ref(), true)];
    for (d, (_, s)) in remote.iter().zip(&plan.remote) {
        places.push((d.clone(), s.as_ref(), false));
    }
    let mut out = BackupPruneJson {
        local: None,
        destinations: Vec::new(),
    };
    let dir_arg = Some(dir.to_path_buf());
    let known = super::backups::destinations(&dir_arg, &inventory.project);
    for (dest, settings, is_local) in places {
        let store = Store::new(dest.clone());
        let Some(settings) = settings else {
            let note = "no retention policy (neither its `retention:` nor `x-persist.retention`)";
            printer.status(format!("Not pruning {}: {note}", store.describe()));
            out.destinations.push(PlacePruneJson {
                name: dest.name().to_string(),
                destination: store.describe(),
                outcome: "skipped",
                error: Some(note.to_string()),
                result: None,
            });
            continue;
        };
        let view = match &known {
            Ok(known) => {
                CheckView::of(printer, known, &dir_arg, &store, Some((engine, inventory))).await
            }
            // The configuration was read before the backup; should it fail now, the floor keeps more.
            Err(_) => CheckView::Unknown,
        };
        let mode = Mode {
            dry_run: false,
            yes: true,
            print_json: false,
        };
        let result = prune(session, project, &view, &store, settings, mode).await;
        // Without questions (`yes`), nothing is declined; a refusal is this place's failure.
        let place = match place_outcome(printer, &store, result, "; the backup itself succeeded") {
            Outcome::Place(place) => *place,
            Outcome::Declined => failed_place(printer, &store, "declined", ""),
            Outcome::Stop(e) => failed_place(printer, &store, &format!("{e:#}"), ""),
        };
        if is_local && let Some(report) = &place.result {
            out.local = Some(report.clone());
        }
        out.destinations.push(place);
    }
    out
}
