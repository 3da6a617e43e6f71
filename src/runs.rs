//! Run records: every `backup`, `restore` and `verify` (scheduled or not) leaves one small JSON file saying
//! how it ended, so that `status` can tell a fresh backup from one that silently stopped weeks ago.
//!
//! Records live in `$XDG_STATE_HOME/docker-persist/runs/<project>/` (else `~/.local/state/…`; directories
//! 0700), one file per run named `<start time>-<command>-<id>.json` so that names sort by time, each written
//! atomically (temporary file, fsync, rename). Only the newest [`KEEP_PER_PROJECT`] of a project are kept.
//! A record holds the command, start and end, result (success, warning, failure, interrupted), the error,
//! the volumes and their sizes, the backup file, the destinations that got it, how long each stopped
//! service was down, and which notifications were delivered.
//!
//! The same module holds the per-project lock: one backup of a project at a time on this machine, a second
//! one waits (with a timeout) for the first instead of overlapping it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// How many records of one project are kept; older ones are deleted as new ones are written.
pub const KEEP_PER_PROJECT: usize = 200;

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunResult {
    /// It did what it was asked, without a warning.
    Success,
    /// It did what it was asked, with warnings (a notification not delivered, a size mismatch, …).
    Warning,
    /// It failed; `error` says why.
    Failure,
    /// Ctrl-C, SIGTERM or the Docker CLI ended it.
    Interrupted,
}

impl RunResult {
    pub fn as_str(self) -> &'static str {
        match self {
            RunResult::Success => "success",
            RunResult::Warning => "warning",
            RunResult::Failure => "failure",
            RunResult::Interrupted => "interrupted",
        }
    }

    /// Success or warning: the command did its job.
    pub fn succeeded(self) -> bool {
        matches!(self, RunResult::Success | RunResult::Warning)
    }
}

impl std::fmt::Display for RunResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One volume of a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeRun {
    pub key: String,
    /// Uncompressed bytes.
    pub bytes: u64,
    /// Bytes in the backup file.
    pub stored_bytes: u64,
}

/// A destination of the backup file, and whether it got it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DestinationRun {
    /// `local`, or the destination's name.
    pub name: String,
    /// Where: a directory, a URL without credentials.
    pub location: String,
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// How long one container was stopped by the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Downtime {
    /// The Compose service, else the container name.
    pub service: String,
    pub container: String,
    pub stopped: Timestamp,
    /// When it ran again; `None` when the run left it stopped (e.g. `restore --no-start`).
    pub started: Option<Timestamp>,
    pub seconds: f64,
}

/// A notification and whether it was delivered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    /// The target without its secret parts (scheme, host and kind).
    pub target: String,
    /// `start`, `success`, `failure`, …
    pub event: String,
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What one run file holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    pub schema_version: u32,
    pub id: String,
    pub project: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project_directory: Option<PathBuf>,
    pub command: String,
    pub started: Timestamp,
    pub ended: Timestamp,
    pub seconds: f64,
    pub result: RunResult,
    pub exit_code: u8,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default)]
    pub warnings: Vec<String>,
    /// The backup file written (backup) or read (restore, verify).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<PathBuf>,
    /// Size of the backup file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_bytes: Option<u64>,
    #[serde(default)]
    pub volumes: Vec<VolumeRun>,
    #[serde(default)]
    pub destinations: Vec<DestinationRun>,
    #[serde(default)]
    pub downtime: Vec<Downtime>,
    #[serde(default)]
    pub notifications: Vec<Delivery>,
}

/// `runs/` in the state directory; `None` when neither `XDG_STATE_HOME` nor `HOME` is set.
pub fn default_dir(env: impl Fn(&str) -> Option<String>) -> Option<PathBuf> {
    Some(crate::state::state_root(env)?.join("runs"))
}

/// The run directory of this process's environment.
pub fn runs_dir() -> Option<PathBuf> {
    default_dir(|k| std::env::var(k).ok())
}

/// A project name as a file or unit name: Compose names are `[a-z0-9_-]` already; anything else becomes
/// `_`.
pub fn safe_name(project: &str) -> String {
    let s: String = project
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.is_empty() || s.starts_with('.') {
        format!("_{s}")
    } else {
        s
    }
}

impl RunRecord {
    fn file_name(&self) -> String {
        let id: String = self.id.chars().filter(|c| *c != '-').take(12).collect();
        format!(
            "{}-{}-{id}.json",
            self.started.strftime("%Y%m%dT%H%M%S%.3fZ"),
            safe_name(&self.command)
        )
    }

    /// Writes the record into `dir/<project>/` and deletes the project's oldest beyond `keep`.
    pub fn write(&self, dir: &Path, keep: usize) -> std::io::Result<PathBuf> {
        let project_dir = dir.join(safe_name(&self.project));
        crate::state::create_private_dir(dir)?;
        let path = project_dir.join(self.file_name());
        let json = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        crate::state::write_private_atomic(&path, &json)?;
        let mut names = record_files(&project_dir);
        if names.len() > keep {
            names.truncate(names.len() - keep);
            for old in names {
                let _ = fs_err::remove_file(old);
            }
        }
        Ok(path)
    }
}

/// The record files of a project directory, oldest first.
fn record_files(project_dir: &Path) -> Vec<PathBuf> {
    let Ok(read) = fs_err::read_dir(project_dir) else {
        return Vec::new();
    };
    let mut names: Vec<PathBuf> = read
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.extension().is_some_and(|e| e == "json")
                && p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| !n.starts_with('.'))
        })
        .collect();
    names.sort();
    names
}

/// The records of `project` in `dir`, newest first; unreadable files are skipped.
pub fn list(dir: &Path, project: &str) -> Vec<RunRecord> {
    let mut records: Vec<RunRecord> = record_files(&dir.join(safe_name(project)))
        .into_iter()
        .filter_map(|p| serde_json::from_slice(&fs_err::read(&p).ok()?).ok())
        .filter(|r: &RunRecord| r.project == project)
        .collect();
    records.sort_by_key(|r| std::cmp::Reverse(r.started));
    records
}

/// A container stopped during the run, for [`Downtime`].
#[derive(Debug, Clone)]
struct Stop {
    id: String,
    container: String,
    service: String,
    stopped: Timestamp,
    started: Option<Timestamp>,
}

/// What a command learns about its run while it runs; turned into a [`RunRecord`] when it ends.
#[derive(Debug)]
pub struct Recorder {
    pub id: String,
    pub command: String,
    pub started: Timestamp,
    pub project: Option<String>,
    pub project_directory: Option<PathBuf>,
    pub backup: Option<PathBuf>,
    pub backup_bytes: Option<u64>,
    pub volumes: Vec<VolumeRun>,
    pub destinations: Vec<DestinationRun>,
    stops: Vec<Stop>,
}

impl Recorder {
    pub fn new(command: &str) -> Recorder {
        Recorder {
            id: uuid::Uuid::new_v4().to_string(),
            command: command.to_string(),
            started: Timestamp::now(),
            project: None,
            project_directory: None,
            backup: None,
            backup_bytes: None,
            volumes: Vec::new(),
            destinations: Vec::new(),
            stops: Vec::new(),
        }
    }

    /// A container is about to be stopped.
    pub fn stopping(&mut self, id: &str, container: &str, service: Option<&str>) {
        self.stops.push(Stop {
            id: id.to_string(),
            container: container.to_string(),
            service: service.unwrap_or(container).to_string(),
            stopped: Timestamp::now(),
            started: None,
        });
    }

    /// A container runs again.
    pub fn started(&mut self, id: &str) {
        if let Some(s) = self
            .stops
            .iter_mut()
            .rev()
            .find(|s| s.id == id && s.started.is_none())
        {
            s.started = Some(Timestamp::now());
        }
    }

    /// The downtime so far: a container still stopped counts until `now`.
    pub fn downtime(&self, now: Timestamp) -> Vec<Downtime> {
        self.stops
            .iter()
            .map(|s| Downtime {
                service: s.service.clone(),
                container: s.container.clone(),
                stopped: s.stopped,
                started: s.started,
                seconds: seconds_between(s.stopped, s.started.unwrap_or(now)),
            })
            .collect()
    }
}

/// Seconds from `a` to `b`, to the millisecond.
pub fn seconds_between(a: Timestamp, b: Timestamp) -> f64 {
    let d = b.duration_since(a);
    (d.as_millis() as f64 / 1000.0).max(0.0)
}

/// The lock of one project's backups: held while a backup runs, released when dropped (or when the process
/// ends, however it ends: the kernel drops `flock` locks with the file descriptor).
#[derive(Debug)]
pub struct ProjectLock {
    _file: std::fs::File,
}

/// Why a lock was not taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("another backup of project `{project}` ({holder}) still runs after waiting {waited}")]
    Timeout {
        project: String,
        holder: String,
        waited: String,
    },
    #[error("failed to lock `{path}`: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Takes the lock of `project` in `dir` (`locks/` of the state directory). When another process holds it,
/// calls `waiting` once with what that process wrote (`pid N since TIME`) and tries again every half
/// second until `timeout`.
pub async fn lock_project(
    dir: &Path,
    project: &str,
    timeout: Duration,
    waiting: impl FnOnce(&str),
) -> Result<ProjectLock, LockError> {
    use std::io::{Seek as _, Write as _};
    let path = dir.join(format!("{}.lock", safe_name(project)));
    let io = |source| LockError::Io {
        path: path.clone(),
        source,
    };
    crate::state::create_private_dir(dir).map_err(io)?;
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io)?;
    let start = std::time::Instant::now();
    let mut waiting = Some(waiting);
    loop {
        match fs4::FileExt::try_lock(&file) {
            Ok(()) => break,
            Err(fs4::TryLockError::WouldBlock) => {
                let holder = fs_err::read_to_string(&path)
                    .ok()
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .unwrap_or_else(|| "another process".to_string());
                if let Some(w) = waiting.take() {
                    w(&holder);
                }
                if start.elapsed() >= timeout {
                    return Err(LockError::Timeout {
                        project: project.to_string(),
                        holder,
                        waited: format_duration(timeout),
                    });
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(fs4::TryLockError::Error(e)) => return Err(io(e)),
        }
    }
    // Who holds it, for the next one that waits.
    let _ = file.set_len(0);
    let _ = file.rewind();
    let _ = write!(
        file,
        "pid {} since {}",
        std::process::id(),
        Timestamp::now().strftime("%Y-%m-%d %H:%M:%S UTC")
    );
    Ok(ProjectLock { _file: file })
}

/// `locks/` in the state directory.
pub fn locks_dir() -> Option<PathBuf> {
    Some(crate::state::state_root(|k| std::env::var(k).ok())?.join("locks"))
}

/// Parses a duration as people write it: `26h`, `90m`, `1h30m`, `7d`, `45s`, `2 days`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let span: jiff::Span = s
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a duration (examples: 26h, 90m, 1h30m, 7d)"))?;
    let d = span
        .to_duration(jiff::SpanRelativeTo::days_are_24_hours())
        .map_err(|e| format!("`{s}`: {e}"))?;
    if d.is_negative() || d.is_zero() {
        return Err(format!("`{s}` must be longer than zero"));
    }
    d.try_into()
        .map_err(|_| format!("`{s}` is not a duration (examples: 26h, 90m, 1h30m, 7d)"))
}

/// `26h`, `1h30m`, `45s`, `2d`: the shortest way to write a duration back.
pub fn format_duration(d: Duration) -> String {
    let mut secs = d.as_secs();
    if secs == 0 {
        return format!("{}ms", d.as_millis());
    }
    let mut out = String::new();
    // Days only for whole days: `26h` reads better than `1d2h`.
    let units: &[(&str, u64)] = if secs.is_multiple_of(86_400) {
        &[("d", 86_400)]
    } else {
        &[("h", 3_600), ("m", 60), ("s", 1)]
    };
    for &(unit, n) in units {
        if secs >= n {
            out.push_str(&format!("{}{unit}", secs / n));
            secs %= n;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    fn record(project: &str, started: i64, result: RunResult) -> RunRecord {
        let t = Timestamp::from_second(started).unwrap();
        RunRecord {
            schema_version: 1,
            id: uuid::Uuid::new_v4().to_string(),
            project: project.into(),
            project_directory: None,
            command: "backup".into(),
            started: t,
            ended: t,
            seconds: 0.0,
            result,
            exit_code: 0,
            error: None,
            warnings: vec![],
            backup: None,
            backup_bytes: None,
            volumes: vec![],
            destinations: vec![],
            downtime: vec![],
            notifications: vec![],
        }
    }

    #[test]
    fn records_are_listed_newest_first_and_only_the_newest_are_kept() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("runs");
        for i in 0..7 {
            record("app", 1_700_000_000 + i * 60, RunResult::Success)
                .write(&dir, 5)
                .unwrap();
        }
        record("other", 1_800_000_000, RunResult::Failure)
            .write(&dir, 5)
            .unwrap();
        let app = list(&dir, "app");
        assert_eq!(app.len(), 5, "only the newest 5 are kept");
        let secs: Vec<i64> = app.iter().map(|r| r.started.as_second()).collect();
        assert_eq!(
            secs,
            (2..7)
                .rev()
                .map(|i| 1_700_000_000 + i * 60)
                .collect::<Vec<_>>()
        );
        assert_eq!(list(&dir, "other")[0].result, RunResult::Failure);
        assert!(list(&dir, "missing").is_empty());
        for d in [&dir, &dir.join("app")] {
            let mode = std::fs::metadata(d).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o700, "{}", d.display());
        }
        // No temporary file is left beside the records.
        let names: Vec<String> = std::fs::read_dir(dir.join("app"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(
            names
                .iter()
                .all(|n| n.ends_with(".json") && !n.starts_with('.'))
        );
    }

    #[test]
    fn a_record_round_trips_through_its_file() {
        let tmp = tempfile::tempdir().unwrap();
        let mut r = record("app", 1_700_000_000, RunResult::Warning);
        r.error = Some("boom".into());
        r.volumes = vec![VolumeRun {
            key: "db".into(),
            bytes: 10,
            stored_bytes: 3,
        }];
        r.downtime = vec![Downtime {
            service: "db".into(),
            container: "app-db-1".into(),
            stopped: r.started,
            started: None,
            seconds: 1.5,
        }];
        let path = r.write(tmp.path(), 10).unwrap();
        assert!(path.starts_with(tmp.path().join("app")));
        assert_eq!(list(tmp.path(), "app"), [r]);
    }

    #[test]
    fn downtime_counts_from_stop_to_start_and_to_now_while_stopped() {
        let mut rec = Recorder::new("backup");
        rec.stopping("c1", "app-db-1", Some("db"));
        rec.stopping("c2", "loose", None);
        rec.started("c1");
        let later = Timestamp::now() + jiff::SignedDuration::from_secs(5);
        let d = rec.downtime(later);
        assert_eq!(d[0].service, "db");
        assert!(d[0].started.is_some() && d[0].seconds < 1.0);
        assert_eq!(d[1].service, "loose");
        assert!(d[1].started.is_none() && d[1].seconds >= 5.0);
    }

    #[test]
    fn durations_parse_as_people_write_them() {
        assert_eq!(parse_duration("26h"), Ok(Duration::from_secs(26 * 3600)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(7 * 86400)));
        assert_eq!(parse_duration("45s"), Ok(Duration::from_secs(45)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("0s").is_err());
        assert_eq!(format_duration(Duration::from_secs(26 * 3600)), "26h");
        assert_eq!(format_duration(Duration::from_secs(7 * 86400)), "7d");
        assert_eq!(format_duration(Duration::from_secs(5400)), "1h30m");
    }

    #[tokio::test]
    async fn a_second_lock_waits_for_the_first_and_times_out() {
        let tmp = tempfile::tempdir().unwrap();
        let first = lock_project(tmp.path(), "app", Duration::ZERO, |_| {})
            .await
            .unwrap();
        let mut seen = String::new();
        let err = lock_project(tmp.path(), "app", Duration::from_millis(600), |h| {
            seen = h.to_string()
        })
        .await
        .unwrap_err();
        assert!(matches!(err, LockError::Timeout { .. }), "{err}");
        assert!(
            seen.starts_with(&format!("pid {} since", std::process::id())),
            "{seen}"
        );
        // Another project is not affected.
        lock_project(tmp.path(), "other", Duration::ZERO, |_| {})
            .await
            .unwrap();
        drop(first);
        lock_project(tmp.path(), "app", Duration::ZERO, |_| {})
            .await
            .unwrap();
    }
}
