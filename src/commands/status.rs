//! `status`: whether the project's backups are fresh, for people and for probes. It reads the
//! destinations' listings (manifests only), the run records, the verified records and the installed
//! schedule, never the engine, so that it answers quickly and works as a container HEALTHCHECK.
//!
//! Exit 2 when the last backup run failed (or was interrupted) or a verification found the newest backup
//! damaged, else 1 when the newest backup is older than `--max-age` or there is none, else 0. Default
//! `--max-age`: with a schedule, its longest gap between two runs plus [`SLACK`] (26 h for a daily
//! schedule); without one, 26 h.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

use super::schedule::local_time;
use super::verified::{Verified, recorded_with_time};
use super::{ExitStatus, Session};
use crate::archive::BackupSummary;
use crate::cli::StatusArgs;
use crate::report::human_size;
use crate::runs::{self, Downtime, RunRecord, RunResult};
use crate::schedule::{self, Installed};

/// What a schedule's longest gap gets on top before its newest backup counts as stale.
pub const SLACK: Duration = Duration::from_secs(2 * 3600);
/// The maximum age without a schedule.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(26 * 3600);
/// Tags of the safety copies other commands take: they do not count as the project's backups.
const SAFETY_TAGS: [&str; 5] = [
    "pre-restore",
    "pre-rollback",
    "pre-migrate",
    "pre-down",
    "pre-upgrade",
];

/// The verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Fresh,
    Stale,
    Failed,
}

impl State {
    fn code(self) -> u8 {
        match self {
            State::Fresh => 0,
            State::Stale => 1,
            State::Failed => 2,
        }
    }
}

/// The verdict from the facts: a failed last run (or a newest backup a verification found damaged) first,
/// then the newest backup's age.
pub fn verdict(
    last_run: Option<RunResult>,
    newest_damaged: bool,
    newest_age: Option<Duration>,
    max_age: Duration,
) -> State {
    if newest_damaged || matches!(last_run, Some(RunResult::Failure | RunResult::Interrupted)) {
        return State::Failed;
    }
    match newest_age {
        Some(age) if age <= max_age => State::Fresh,
        _ => State::Stale,
    }
}

/// One place backups are kept, and the newest it holds.
#[derive(Debug, Serialize)]
struct DestinationState {
    name: String,
    location: String,
    newest: Option<BackupJson>,
    count: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
struct BackupJson {
    path: PathBuf,
    created: jiff::Timestamp,
    age_seconds: u64,
    bytes: u64,
    tag: Option<String>,
}

#[derive(Debug, Serialize)]
struct RunJson<'a> {
    id: &'a str,
    command: &'a str,
    result: RunResult,
    started: jiff::Timestamp,
    ended: jiff::Timestamp,
    seconds: f64,
    error: Option<&'a str>,
    backup: Option<&'a Path>,
    downtime: &'a [Downtime],
}

impl<'a> RunJson<'a> {
    fn of(r: &'a RunRecord) -> RunJson<'a> {
        RunJson {
            id: &r.id,
            command: &r.command,
            result: r.result,
            started: r.started,
            ended: r.ended,
            seconds: r.seconds,
            error: r.error.as_deref(),
            backup: r.backup.as_deref(),
            downtime: &r.downtime,
        }
    }
}

#[derive(Debug, Serialize)]
struct VerificationJson {
    path: PathBuf,
    verified_at: jiff::Timestamp,
    ok: bool,
}

#[derive(Debug, Serialize)]
struct ScheduleJson<'a> {
    backend: schedule::Backend,
    cron: &'a str,
    next_run: Option<jiff::Timestamp>,
}

#[derive(Serialize)]
struct StatusJson<'a> {
    schema_version: u32,
    project: &'a str,
    state: State,
    exit_code: u8,
    max_age_seconds: u64,
    last_backup: Option<BackupJson>,
    last_run: Option<RunJson<'a>>,
    last_success: Option<RunJson<'a>>,
    last_verification: Option<VerificationJson>,
    destinations: &'a [DestinationState],
    schedule: Option<ScheduleJson<'a>>,
    downtime_seconds: f64,
}

fn age(now: jiff::Timestamp, then: jiff::Timestamp) -> Duration {
    Duration::try_from(now.duration_since(then)).unwrap_or_default()
}

fn backup_json(now: jiff::Timestamp, b: &BackupSummary) -> BackupJson {
    BackupJson {
        path: b.path.clone(),
        created: b.created(),
        age_seconds: age(now, b.created()).as_secs(),
        bytes: b.bytes,
        tag: b.tag().map(str::to_string),
    }
}

fn is_safety_copy(b: &BackupSummary) -> bool {
    b.tag().is_some_and(|t| SAFETY_TAGS.contains(&t))
}

/// Every destination of the project (`local` and `x-persist.destinations`), each with its newest backup,
/// listed all at once; with `local`'s own backups, which hold the verification records. A destination
/// that cannot be listed says why and holds nothing.
async fn destinations(
    now: jiff::Timestamp,
    dir: &Option<PathBuf>,
    project: &crate::compose::Project,
) -> anyhow::Result<(Vec<DestinationState>, Vec<BackupSummary>)> {
    let all = super::backups::destinations(dir, project)?;
    let mut places = vec![all.local()];
    places.extend(
        all.configured()
            .iter()
            .map(|c| crate::destination::Destination::new(&c.name, c.url.clone())),
    );
    let listed = futures_util::future::join_all(places.iter().map(|d| d.list(&project.name))).await;
    let mut states = Vec::new();
    let mut local = Vec::new();
    for (d, listing) in places.iter().zip(listed) {
        let location = d.url().to_string();
        match listing {
            Ok(l) => {
                let own: Vec<BackupSummary> = l
                    .backups
                    .into_iter()
                    .filter(|b| !is_safety_copy(b))
                    .collect();
                states.push(DestinationState {
                    name: d.name().to_string(),
                    location,
                    newest: own.first().map(|b| backup_json(now, b)),
                    count: own.len(),
                    error: None,
                });
                if d.is_local() {
                    local = own;
                }
            }
            Err(e) => states.push(DestinationState {
                name: d.name().to_string(),
                location,
                newest: None,
                count: 0,
                error: Some(e.to_string()),
            }),
        }
    }
    Ok((states, local))
}

/// The max age: the flag, else the schedule's longest gap plus the slack, else 26 h.
fn max_age(flag: Option<Duration>, installed: Option<&Installed>) -> Duration {
    flag.or_else(|| {
        installed
            .and_then(Installed::calendar)
            .and_then(|c| c.longest_gap(&jiff::Zoned::now()))
            .map(|gap| gap + SLACK)
    })
    .unwrap_or(DEFAULT_MAX_AGE)
}

pub async fn run(session: &Session<'_>, args: &StatusArgs) -> anyhow::Result<ExitStatus> {
    let printer = session.printer;
    let project = session.load_project()?;
    let now = jiff::Timestamp::now();
    let (dests, backups) = destinations(now, &args.dir, &project).await?;
    let records: Vec<RunRecord> = runs::runs_dir()
        .map(|d| runs::list(&d, &project.name))
        .unwrap_or_default();
    let backup_runs: Vec<&RunRecord> = records.iter().filter(|r| r.command == "backup").collect();
    let last_run = backup_runs.first().copied();
    let last_success = backup_runs.iter().copied().find(|r| r.result.succeeded());
    let last_verification = backups
        .iter()
        .filter_map(|b| {
            recorded_with_time(&b.path, &b.manifest).map(|(v, at)| VerificationJson {
                path: b.path.clone(),
                verified_at: at,
                ok: v == Verified::Ok,
            })
        })
        .max_by_key(|v| v.verified_at);
    let installed = schedule::records_dir().and_then(|d| schedule::load(&d, &project.name));
    let next_run = installed
        .as_ref()
        .and_then(Installed::calendar)
        .and_then(|c| c.next_runs(&jiff::Zoned::now(), 1).into_iter().next());
    let max_age = max_age(args.max_age, installed.as_ref());
    // Fresh when any destination holds a fresh backup: the local copy may be pruned sooner.
    let newest = dests
        .iter()
        .filter_map(|d| d.newest.clone())
        .max_by_key(|b| b.created);
    let newest_damaged = backups.first().is_some_and(|b| {
        newest.as_ref().is_some_and(|n| n.path == b.path)
            && matches!(
                recorded_with_time(&b.path, &b.manifest),
                Some((Verified::Failed, _))
            )
    });
    let state = verdict(
        last_run.map(|r| r.result),
        newest_damaged,
        newest.as_ref().map(|b| age(now, b.created)),
        max_age,
    );
    let downtime: &[Downtime] = last_run.map(|r| r.downtime.as_slice()).unwrap_or(&[]);
    let downtime_seconds: f64 = downtime.iter().map(|d| d.seconds).sum();

    if printer.json_mode() {
        printer.json(&StatusJson {
            schema_version: 1,
            project: &project.name,
            state,
            exit_code: state.code(),
            max_age_seconds: max_age.as_secs(),
            last_backup: newest,
            last_run: last_run.map(RunJson::of),
            last_success: last_success.map(RunJson::of),
            last_verification,
            destinations: &dests,
            schedule: installed.as_ref().map(|i| ScheduleJson {
                backend: i.backend,
                cron: &i.cron,
                next_run: next_run.as_ref().map(|z| z.timestamp()),
            }),
            downtime_seconds,
        })?;
        return Ok(exit(state));
    }

    let when = |t: jiff::Timestamp| {
        format!(
            "{} ({})",
            t.strftime("%Y-%m-%d %H:%M:%S UTC"),
            super::backups::age(now, t)
        )
    };
    let mut rows: Vec<(String, String)> = Vec::new();
    rows.push((
        "Project".into(),
        format!("{} ({})", project.name, project.directory.display()),
    ));
    rows.push((
        "Last backup".into(),
        match &newest {
            Some(b) => format!(
                "{}: {}, {}",
                when(b.created),
                b.path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                human_size(b.bytes)
            ),
            None => "none".into(),
        },
    ));
    let run_text = |r: &RunRecord| {
        let mut s = format!("{}, {}, {:.1} s", when(r.started), r.result, r.seconds);
        if let Some(e) = &r.error {
            s.push_str(&format!(": {e}"));
        }
        s
    };
    rows.push((
        "Last run".into(),
        last_run
            .map(run_text)
            .unwrap_or_else(|| "none recorded".into()),
    ));
    rows.push((
        "Last success".into(),
        last_success
            .map(run_text)
            .unwrap_or_else(|| "none recorded".into()),
    ));
    rows.push((
        "Last verified".into(),
        match &last_verification {
            Some(v) => format!(
                "{}: {} {}",
                when(v.verified_at),
                v.path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                if v.ok { "intact" } else { "DAMAGED" }
            ),
            None => "never".into(),
        },
    ));
    for d in &dests {
        rows.push((
            format!("Destination {}", d.name),
            match (&d.newest, &d.error) {
                (_, Some(e)) => format!("{}: cannot list: {e}", d.location),
                (Some(b), None) => format!(
                    "{}: {} backup(s), newest {}",
                    d.location,
                    d.count,
                    when(b.created)
                ),
                (None, None) => format!("{}: no backups", d.location),
            },
        ));
    }
    rows.push((
        "Schedule".into(),
        match (&installed, &next_run) {
            (Some(i), Some(n)) => format!(
                "{} `{}`, next run {}",
                i.backend.describe(),
                i.cron,
                local_time(n)
            ),
            (Some(i), None) => format!("{} `{}`", i.backend.describe(), i.cron),
            (None, _) => "none (`docker persist schedule set` installs one)".into(),
        },
    ));
    rows.push((
        "Downtime".into(),
        if downtime.is_empty() {
            "none in the last run".into()
        } else {
            downtime
                .iter()
                .map(|d| format!("{} {:.1} s", d.service, d.seconds))
                .collect::<Vec<_>>()
                .join(", ")
        },
    ));
    let verdict_text = match state {
        State::Fresh => format!("fresh (max age {})", runs::format_duration(max_age)),
        State::Stale => match &newest {
            Some(b) => format!(
                "STALE: the newest backup is {} old (max age {})",
                runs::format_duration(Duration::from_secs(b.age_seconds)),
                runs::format_duration(max_age)
            ),
            None => "STALE: there is no backup".into(),
        },
        State::Failed if newest_damaged => {
            "FAILED: a verification found the newest backup damaged".into()
        }
        State::Failed => "FAILED: the last backup run did not succeed".into(),
    };
    rows.push(("Status".into(), verdict_text));
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0) + 1;
    let mut out = String::new();
    for (k, v) in rows {
        out.push_str(&format!("{:<width$} {v}\n", format!("{k}:")));
    }
    printer.data(out);
    Ok(exit(state))
}

fn exit(state: State) -> ExitStatus {
    match state {
        State::Fresh => ExitStatus::Success,
        State::Stale => ExitStatus::Failure,
        State::Failed => ExitStatus::Usage,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_last_run_wins_then_age_decides() {
        let day = Duration::from_secs(86_400);
        let max = DEFAULT_MAX_AGE;
        assert_eq!(
            verdict(Some(RunResult::Success), false, Some(day), max),
            State::Fresh
        );
        assert_eq!(
            verdict(Some(RunResult::Warning), false, Some(day), max),
            State::Fresh
        );
        assert_eq!(
            verdict(Some(RunResult::Success), false, Some(2 * day), max),
            State::Stale
        );
        assert_eq!(verdict(None, false, None, max), State::Stale);
        assert_eq!(
            verdict(Some(RunResult::Success), true, Some(day), max),
            State::Failed
        );
        assert_eq!(
            verdict(Some(RunResult::Failure), false, Some(Duration::ZERO), max),
            State::Failed
        );
        assert_eq!(
            verdict(Some(RunResult::Interrupted), false, None, max),
            State::Failed
        );
    }

    #[test]
    fn a_daily_schedule_allows_26_hours_and_no_schedule_too() {
        let installed = Installed {
            schema_version: 1,
            project: "app".into(),
            directory: "/p".into(),
            backend: schedule::Backend::Crontab,
            cron: "15 3 * * *".into(),
            on_calendar: None,
            timer: None,
            files: vec![],
            commands: vec![],
            installed: jiff::Timestamp::UNIX_EPOCH,
        };
        assert_eq!(
            max_age(None, Some(&installed)),
            Duration::from_secs(26 * 3600)
        );
        assert_eq!(max_age(None, None), Duration::from_secs(26 * 3600));
        let hourly = Installed {
            cron: "0 * * * *".into(),
            ..installed
        };
        assert_eq!(max_age(None, Some(&hourly)), Duration::from_secs(3 * 3600));
        assert_eq!(
            max_age(Some(Duration::from_secs(60)), Some(&hourly)),
            Duration::from_secs(60)
        );
    }
}
