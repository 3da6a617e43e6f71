//! Intent records: what a command that changes something is about to do, kept on disk so that a command
//! killed outright (`kill -9`, the OOM killer, a closed SSH session, a power cut or a reboot) is finished or
//! undone by the next one.
//!
//! Before its first change a command writes `$XDG_STATE_HOME/docker-persist/intents/<machine>-<pid>.json`
//! (default `~/.local/state/…`; directories 0700): the machine, its pid, the boot it runs in and the
//! process's start time (so that a reused pid is not taken for the command still running), the engine
//! endpoint, the project and the command. Then, before each step and after it, it writes the ordered list
//! of steps again — what each stops, removes, creates or replaces, and what was there before — each time to
//! a temporary file that is fsynced and renamed over the record, and the directory fsynced. The record is
//! deleted only when the command has fully finished, or has itself undone every step.
//!
//! [`crate::commands::resolve`] reads the records of dead processes at the start of every command and
//! finishes or undoes them. This module only holds the records: their format, where they are, whose they
//! are and whether that process still runs.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use crate::state::create_private_dir;
use serde::{Deserialize, Serialize};

use crate::compose::migration::MigratedMount;

/// The label a restore puts on a volume it creates (`<machine>:<pid>`): the resolution of a killed restore
/// removes a volume only when it carries its own mark.
pub const RESTORING_LABEL: &str = "persist.restoring";

/// The version of the record format.
const FORMAT: u32 = 1;

/// The process a record belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owner {
    pub machine: String,
    pub pid: u32,
    /// `/proc/sys/kernel/random/boot_id`: after a reboot no process of an earlier boot runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_id: Option<String>,
    /// The process's start time in clock ticks since boot (`/proc/PID/stat`, field 22).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_ticks: Option<u64>,
}

impl Owner {
    /// This process.
    pub fn this() -> Owner {
        let pid = std::process::id();
        Owner {
            machine: machine_name(),
            pid,
            boot_id: boot_id(),
            start_ticks: start_ticks(pid),
        }
    }

    /// `<machine>:<pid>`, as in [`RESTORING_LABEL`].
    pub fn tag(&self) -> String {
        format!("{}:{}", self.machine, self.pid)
    }

    /// Whether this owner is a process of `me`'s machine, not `me`, that no longer runs (by `alive`): its
    /// records are left for the next command to resolve.
    pub fn is_gone(&self, me: &Owner, alive: impl Fn(&Owner) -> bool) -> bool {
        self.machine == me.machine && self != me && !alive(self)
    }

    /// Whether the process still runs: same boot, the pid exists and started when the record says.
    pub fn is_alive(&self) -> bool {
        if self.machine != machine_name() {
            // Another machine's: never taken for dead.
            return true;
        }
        if let (Some(recorded), Some(now)) = (&self.boot_id, boot_id())
            && *recorded != now
        {
            return false;
        }
        if !process_exists(self.pid) {
            return false;
        }
        match (self.start_ticks, start_ticks(self.pid)) {
            (Some(recorded), Some(now)) => recorded == now,
            _ => true,
        }
    }
}

/// What the project was, so that Compose can be run for it without loading the files again.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProjectRef {
    pub name: String,
    pub directory: PathBuf,
    #[serde(default)]
    pub files: Vec<PathBuf>,
    #[serde(default)]
    pub env_files: Vec<PathBuf>,
}

/// A container a command stops.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoppedContainer {
    pub id: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// When its stop was asked for (RFC 3339), once it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_sent: Option<String>,
    /// Its stop grace period in seconds: how long the engine may still be stopping it.
    #[serde(default)]
    pub grace_secs: u64,
    /// Made by Compose v1 (`docker-compose`).
    #[serde(default)]
    pub compose_v1: bool,
}

/// A stopped container a command removes, for Compose to recreate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemovedContainer {
    pub id: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// Whether it ran before the command: Compose starts it again, else only creates it.
    pub ran: bool,
    /// Made by Compose v1 (`docker-compose`).
    #[serde(default)]
    pub compose_v1: bool,
}

/// What services must mount once a migration (or its rollback) is through.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "mount", rename_all = "snake_case")]
pub enum Expected {
    /// The host directory, holding the tree with this content digest.
    Bind {
        path: String,
        content_digest: String,
        mounts: Vec<MigratedMount>,
    },
    /// The volume again.
    Volume {
        name: String,
        mounts: Vec<MigratedMount>,
    },
    /// An upgrade's override: never a point to finish from. Undone, the file is put back and Compose
    /// recreates the services that have no container, which then run these images (service → image id).
    Images { images: BTreeMap<String, String> },
}

/// One change a command makes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "step", rename_all = "snake_case")]
pub enum Step {
    /// Containers stopped (in the order to start them again); each is taken out once it runs again.
    Stop { containers: Vec<StoppedContainer> },
    /// Stopped containers removed so that a volume can be recreated; Compose recreates them.
    RemoveContainers { containers: Vec<RemovedContainer> },
    /// A volume that did not exist, created and filled by a restore, marked with [`RESTORING_LABEL`].
    CreateVolume {
        key: String,
        name: String,
        label: String,
    },
    /// Data being replaced: a volume (recreated) or a host directory (emptied), then filled.
    ReplaceData {
        key: String,
        /// Volume name or host path.
        name: String,
        bind: bool,
        /// The copy taken of what was there, when one was.
        safety: Option<PathBuf>,
        /// Whether it held nothing before (then emptying it again undoes the step).
        was_empty: bool,
        /// Where the new data comes from (a backup file, or a directory for a migration's rollback).
        source: String,
        #[serde(default)]
        driver: String,
        #[serde(default)]
        options: BTreeMap<String, String>,
        #[serde(default)]
        labels: BTreeMap<String, String>,
    },
    /// A host directory a migration copies into.
    CopyInto {
        path: String,
        /// Whether it was empty or missing before (then emptying it undoes the step).
        was_empty: bool,
    },
    /// The override file about to be changed: the point from which a migration (or its rollback) is
    /// finished rather than undone, provided the file holds `next`.
    Override {
        path: PathBuf,
        previous: Option<String>,
        next: Option<String>,
        services: Vec<String>,
        expected: Expected,
    },
    /// `compose up` of an upgrade's new version, recorded before the data it may write: undone first of
    /// all by stopping and removing the services' containers, for the data to be put back and Compose to
    /// recreate the previous version.
    Up { services: Vec<String> },
    /// `compose down ARGS` after a verified backup: finished once begun.
    ComposeDown { args: Vec<String>, backup: PathBuf },
    /// Volumes `clean` removes: finished once begun.
    RemoveVolumes { names: Vec<String> },
    /// Every piece of data is written and checked: from here the command is finished, not undone.
    Committed,
}

impl Step {
    /// A short name, for messages and the kill points of the tests.
    pub fn name(&self) -> &'static str {
        match self {
            Step::Stop { .. } => "stop",
            Step::RemoveContainers { .. } => "remove-containers",
            Step::CreateVolume { .. } => "create-volume",
            Step::ReplaceData { .. } => "replace-data",
            Step::CopyInto { .. } => "copy-into",
            Step::Override { .. } => "override",
            Step::Up { .. } => "up",
            Step::ComposeDown { .. } => "compose-down",
            Step::RemoveVolumes { .. } => "remove-volumes",
            Step::Committed => "committed",
        }
    }
}

/// How far a step got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepState {
    /// About to be taken, or under way.
    Begun,
    /// Taken.
    Done,
    /// Nothing is left to do for it: the command undid it or finished what follows from it.
    Settled,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepEntry {
    pub state: StepState,
    /// When it was begun (RFC 3339).
    pub at: String,
    #[serde(flatten)]
    pub step: Step,
}

impl StepEntry {
    /// Whether the resolution of a killed command has anything to do for it.
    pub fn is_open(&self) -> bool {
        match &self.step {
            Step::Stop { containers } => !containers.is_empty() && self.state != StepState::Settled,
            Step::Committed => false,
            _ => self.state != StepState::Settled,
        }
    }
}

/// One intent record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub format: u32,
    pub owner: Owner,
    /// The engine endpoint (`unix:///var/run/docker.sock`, `tcp://…`).
    pub host: String,
    pub project: ProjectRef,
    /// `backup`, `restore`, `migrate`, …
    pub command: String,
    pub started_at: String,
    pub steps: Vec<StepEntry>,
    /// Why the resolution of this record could not finish, when it was tried and could not.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unresolved: Vec<String>,
}

impl Record {
    /// Whether anything is left to finish or undo.
    pub fn is_open(&self) -> bool {
        self.steps.iter().any(StepEntry::is_open)
    }

    /// One line saying whose record it is.
    pub fn describe(&self) -> String {
        format!(
            "`docker persist {}` of project `{}` (pid {}, started {})",
            self.command, self.project.name, self.owner.pid, self.started_at
        )
    }
}

/// The index of a step in this command's record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepId(pub usize);

/// The record of this process: nothing is written until the first step.
#[derive(Debug)]
pub struct Writer {
    path: PathBuf,
    record: Record,
}

impl Writer {
    pub fn new(dir: &Path, host: &str, project: ProjectRef, command: &str) -> Writer {
        let owner = Owner::this();
        Writer {
            path: dir.join(file_name(&owner.machine, owner.pid)),
            record: Record {
                format: FORMAT,
                owner,
                host: host.to_string(),
                project,
                command: command.to_string(),
                started_at: now(),
                steps: Vec::new(),
                unresolved: Vec::new(),
            },
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn record(&self) -> &Record {
        &self.record
    }

    /// Records a step about to be taken.
    pub fn begin(&mut self, step: Step) -> std::io::Result<StepId> {
        self.record.steps.push(StepEntry {
            state: StepState::Begun,
            at: now(),
            step,
        });
        self.write()?;
        Ok(StepId(self.record.steps.len() - 1))
    }

    /// Sets the state of a step.
    pub fn mark(&mut self, id: StepId, state: StepState) -> std::io::Result<()> {
        match self.record.steps.get_mut(id.0) {
            Some(s) if s.state != state => s.state = state,
            _ => return Ok(()),
        }
        self.write()
    }

    /// Changes a step in place (a container whose stop is sent, one that runs again).
    pub fn update(&mut self, id: StepId, f: impl FnOnce(&mut Step)) -> std::io::Result<()> {
        let Some(s) = self.record.steps.get_mut(id.0) else {
            return Ok(());
        };
        let before = s.step.clone();
        f(&mut s.step);
        if s.step == before {
            return Ok(());
        }
        self.write()
    }

    /// Settles every step: the command is through, one way or the other.
    pub fn settle_all(&mut self) -> std::io::Result<()> {
        for s in &mut self.record.steps {
            s.state = StepState::Settled;
        }
        self.write()
    }

    /// Deletes the record.
    pub fn remove(&self) -> std::io::Result<()> {
        match fs_err::remove_file(&self.path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            other => other,
        }
    }

    fn write(&self) -> std::io::Result<()> {
        write_record(&self.path, &self.record)?;
        kill_point(&self.record);
        Ok(())
    }
}

/// Writes `record` to `path` whole: a temporary file fsynced, renamed over it, and the directory fsynced.
pub fn write_record(path: &Path, record: &Record) -> std::io::Result<()> {
    write_json(path, record)
}

/// Writes `value` as JSON to `path` the way [`write_record`] writes a record (the directory made 0700).
pub fn write_json(path: &Path, value: &impl Serialize) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    create_private_dir(dir)?;
    let json = serde_json::to_vec_pretty(value).map_err(std::io::Error::other)?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".intent-")
        .tempfile_in(dir)?;
    tmp.write_all(&json)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    fs_err::File::open(dir)?.sync_all()?;
    Ok(())
}

/// A record found on disk.
#[derive(Debug)]
pub struct Found {
    pub path: PathBuf,
    pub record: Record,
}

/// Every record in `dir` for `host`, oldest first. Files that cannot be read or parsed are skipped.
pub fn records(dir: &Path, host: &str) -> Vec<Found> {
    let mut found: Vec<Found> = read_json_files::<Record>(dir)
        .into_iter()
        .filter(|(_, record)| record.host == host)
        .map(|(path, record)| Found { path, record })
        .collect();
    found.sort_by(|a, b| (&a.record.started_at, &a.path).cmp(&(&b.record.started_at, &b.path)));
    found
}

/// Every `*.json` file in `dir` that parses as a `T`, with its path; files that cannot be read or parsed
/// are skipped.
pub fn read_json_files<T: serde::de::DeserializeOwned>(dir: &Path) -> Vec<(PathBuf, T)> {
    let Ok(read) = fs_err::read_dir(dir) else {
        return Vec::new();
    };
    read.filter_map(Result::ok)
        .filter(|e| e.file_name().to_str().is_some_and(|n| n.ends_with(".json")))
        .filter_map(|e| {
            let path = e.path();
            let value = serde_json::from_slice(&fs_err::read(&path).ok()?).ok()?;
            Some((path, value))
        })
        .collect()
}

/// The records in `dir` for `host` whose process is gone (by `alive`), this process's aside.
pub fn abandoned(dir: &Path, host: &str, alive: impl Fn(&Owner) -> bool) -> Vec<Found> {
    let me = Owner::this();
    records(dir, host)
        .into_iter()
        .filter(|f| f.record.owner.is_gone(&me, &alive))
        .collect()
}

/// A journal of stopped containers as versions before intent records wrote it (`…/stopped/*.json`).
#[derive(Deserialize)]
struct LegacyJournal {
    host: String,
    project: String,
    pid: u32,
    containers: Vec<LegacyContainer>,
}

#[derive(Deserialize)]
struct LegacyContainer {
    id: String,
    name: String,
    #[serde(default)]
    service: Option<String>,
}

/// Turns the journals of stopped containers an earlier version left in `dir`'s sibling `stopped` into
/// intent records of one stop step each, so that they are resolved like any other (after an upgrade
/// while a backup ran).
pub fn adopt_legacy(dir: &Path) {
    let Some(legacy) = dir.parent().map(|p| p.join("stopped")) else {
        return;
    };
    let Ok(read) = fs_err::read_dir(&legacy) else {
        return;
    };
    let machine = machine_name();
    for e in read.filter_map(Result::ok) {
        let path = e.path();
        let Some(name) = path
            .file_name()
            .and_then(|n| n.to_str())
            .map(str::to_string)
        else {
            continue;
        };
        if !name.starts_with(&format!("{machine}-")) || !name.ends_with(".json") {
            continue;
        }
        let Some(old) = fs_err::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice::<LegacyJournal>(&b).ok())
        else {
            continue;
        };
        let record = Record {
            format: FORMAT,
            owner: Owner {
                machine: machine.clone(),
                pid: old.pid,
                boot_id: None,
                start_ticks: None,
            },
            host: old.host,
            project: ProjectRef {
                name: old.project,
                ..Default::default()
            },
            command: "backup".to_string(),
            started_at: now(),
            steps: vec![StepEntry {
                state: StepState::Done,
                at: now(),
                step: Step::Stop {
                    containers: old
                        .containers
                        .into_iter()
                        .map(|c| StoppedContainer {
                            id: c.id,
                            name: c.name,
                            service: c.service,
                            stop_sent: None,
                            grace_secs: 0,
                            compose_v1: false,
                        })
                        .collect(),
                },
            }],
            unresolved: Vec::new(),
        };
        if write_record(&dir.join(&name), &record).is_ok() {
            let _ = fs_err::remove_file(&path);
        }
    }
}

/// `$XDG_STATE_HOME/docker-persist/intents`, else `~/.local/state/docker-persist/intents`.
pub fn default_dir(env: impl Fn(&str) -> Option<String>) -> Option<PathBuf> {
    let state = env("XDG_STATE_HOME")
        .filter(|s| Path::new(s).is_absolute())
        .map(PathBuf::from)
        .or_else(|| {
            env("HOME")
                .filter(|h| !h.is_empty())
                .map(|h| Path::new(&h).join(".local").join("state"))
        })?;
    Some(state.join("docker-persist").join("intents"))
}

/// Locks a record file for its resolution, so that two commands started together do not both resolve
/// it. `None`: another process holds it.
pub fn lock(path: &Path) -> Option<std::fs::File> {
    let file = std::fs::OpenOptions::new().read(true).open(path).ok()?;
    fs4::FileExt::try_lock(&file).ok()?;
    Some(file)
}

/// The current time, RFC 3339.
pub fn now() -> String {
    jiff::Timestamp::now().to_string()
}

/// Whether a process with this pid exists on this machine.
fn process_exists(pid: u32) -> bool {
    let Some(pid) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    else {
        return false;
    };
    match rustix::process::test_kill_process(pid) {
        Ok(()) => true,
        // It exists, but belongs to someone else.
        Err(e) => e == rustix::io::Errno::PERM,
    }
}

fn boot_id() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

/// Field 22 of `/proc/PID/stat` (after the command name, which may hold spaces and parentheses).
fn start_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_start_ticks(&stat)
}

fn parse_start_ticks(stat: &str) -> Option<u64> {
    let after = &stat[stat.rfind(')')? + 1..];
    // Fields after the name start at 3 (state); the start time is field 22.
    after.split_whitespace().nth(19)?.parse().ok()
}

/// This machine's name as it may appear in a file name.
fn machine_name() -> String {
    let uname = rustix::system::uname();
    let name: String = uname
        .nodename()
        .to_string_lossy()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if name.is_empty() {
        "localhost".to_string()
    } else {
        name
    }
}

fn file_name(machine: &str, pid: u32) -> String {
    format!("{machine}-{pid}.json")
}

/// The crash tests' kill points: a debug build whose `DOCKER_PERSIST_KILL_AT` is `N` kills itself with
/// SIGKILL right after its N-th write of the record. Release builds have no such hook.
#[cfg(debug_assertions)]
fn kill_point(record: &Record) {
    use std::sync::atomic::{AtomicU32, Ordering};
    static WRITES: AtomicU32 = AtomicU32::new(0);
    let n = WRITES.fetch_add(1, Ordering::SeqCst) + 1;
    let Some(at) = std::env::var("DOCKER_PERSIST_KILL_AT")
        .ok()
        .and_then(|v| v.parse::<u32>().ok())
    else {
        return;
    };
    if n == at {
        let last = record.steps.last();
        eprintln!(
            "kill point {n}: {} {:?}",
            last.map(|s| s.step.name()).unwrap_or("-"),
            last.map(|s| s.state)
        );
        let _ =
            rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::KILL);
    }
}

#[cfg(not(debug_assertions))]
fn kill_point(_: &Record) {}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    fn stopped(id: &str) -> StoppedContainer {
        StoppedContainer {
            id: id.into(),
            name: format!("app-{id}-1"),
            service: Some(id.into()),
            stop_sent: None,
            grace_secs: 10,
            compose_v1: false,
        }
    }

    fn project() -> ProjectRef {
        ProjectRef {
            name: "app".into(),
            directory: "/p".into(),
            ..Default::default()
        }
    }

    #[test]
    fn a_record_is_written_at_the_first_step_and_follows_every_step() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("state/docker-persist/intents");
        let mut w = Writer::new(&dir, "unix:///var/run/docker.sock", project(), "restore");
        assert!(!w.path().exists(), "nothing is written before a step");
        let stop = w
            .begin(Step::Stop {
                containers: vec![stopped("db")],
            })
            .unwrap();
        let read =
            |p: &Path| -> Record { serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap() };
        let r = read(w.path());
        assert_eq!(r.owner, Owner::this());
        assert_eq!(r.command, "restore");
        assert_eq!(r.steps[0].state, StepState::Begun);
        assert!(r.is_open());
        w.mark(stop, StepState::Done).unwrap();
        w.update(stop, |s| {
            if let Step::Stop { containers } = s {
                containers.clear();
            }
        })
        .unwrap();
        let r = read(w.path());
        assert_eq!(r.steps[0].state, StepState::Done);
        assert!(
            !r.is_open(),
            "a stop step whose containers run again is closed"
        );
        let created = w
            .begin(Step::CreateVolume {
                key: "db".into(),
                name: "app_db".into(),
                label: Owner::this().tag(),
            })
            .unwrap();
        assert!(read(w.path()).is_open());
        w.mark(created, StepState::Settled).unwrap();
        assert!(!read(w.path()).is_open());
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        w.remove().unwrap();
        assert_eq!(
            std::fs::read_dir(&dir).unwrap().count(),
            0,
            "no temporary file left"
        );
    }

    #[test]
    fn abandoned_records_are_those_of_dead_processes_of_this_machine_and_engine() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let me = Owner::this();
        let write = |pid: u32, machine: &str, host: &str| {
            let mut w = Writer::new(dir, host, project(), "backup");
            w.record.owner = Owner {
                machine: machine.into(),
                pid,
                boot_id: None,
                start_ticks: None,
            };
            w.path = dir.join(file_name(machine, pid));
            w.begin(Step::Committed).unwrap();
        };
        let host = "unix:///var/run/docker.sock";
        write(101, &me.machine, host); // dead, same engine: abandoned
        write(102, &me.machine, host); // alive: left alone
        write(103, &me.machine, "tcp://other:2376"); // another engine
        write(104, "elsewhere", host); // another machine
        std::fs::write(dir.join(file_name(&me.machine, 105)), "not json").unwrap();
        let found = abandoned(dir, host, |o| o.pid == 102);
        let pids: Vec<u32> = found.iter().map(|f| f.record.owner.pid).collect();
        assert_eq!(pids, [101]);
        assert!(abandoned(&dir.join("missing"), host, |_| false).is_empty());
    }

    #[test]
    fn a_reused_pid_or_another_boot_is_not_the_recorded_process() {
        let me = Owner::this();
        assert!(me.is_alive());
        let reused = Owner {
            start_ticks: me.start_ticks.map(|t| t + 1),
            ..me.clone()
        };
        assert!(!reused.is_alive(), "same pid, started at another time");
        let rebooted = Owner {
            boot_id: Some("another-boot".into()),
            ..me.clone()
        };
        assert!(!rebooted.is_alive(), "a process of an earlier boot");
        let gone = Owner {
            pid: u32::MAX,
            ..me.clone()
        };
        assert!(!gone.is_alive());
        let elsewhere = Owner {
            machine: "elsewhere".into(),
            pid: u32::MAX,
            ..me
        };
        assert!(
            elsewhere.is_alive(),
            "another machine's process is never taken for dead"
        );
    }

    #[test]
    fn start_ticks_are_read_past_a_command_name_with_spaces_and_parentheses() {
        let stat =
            "4242 (a (b) c) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10";
        assert_eq!(parse_start_ticks(stat), Some(987654));
        assert_eq!(parse_start_ticks("garbage"), None);
    }

    #[test]
    fn a_journal_of_an_earlier_version_becomes_a_record_with_one_stop_step() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("docker-persist/intents");
        let legacy = tmp.path().join("docker-persist/stopped");
        std::fs::create_dir_all(&legacy).unwrap();
        let file = file_name(&machine_name(), 4242);
        std::fs::write(
            legacy.join(&file),
            r#"{"host":"unix:///s.sock","project":"app","pid":4242,"containers":[{"id":"c1","name":"app-db-1","service":"db"}]}"#,
        )
        .unwrap();
        adopt_legacy(&dir);
        assert!(!legacy.join(&file).exists());
        let found = abandoned(&dir, "unix:///s.sock", |_| false);
        assert_eq!(found.len(), 1);
        let r = &found[0].record;
        assert_eq!((r.owner.pid, r.project.name.as_str()), (4242, "app"));
        assert!(
            matches!(&r.steps[0].step, Step::Stop { containers } if containers[0].name == "app-db-1")
        );
        assert!(r.is_open());
    }

    #[test]
    fn records_dir_follows_xdg_state_home_then_home() {
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                vars.iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        assert_eq!(
            default_dir(env(&[("XDG_STATE_HOME", "/s"), ("HOME", "/h")])),
            Some(PathBuf::from("/s/docker-persist/intents"))
        );
        assert_eq!(
            default_dir(env(&[("XDG_STATE_HOME", "relative"), ("HOME", "/h")])),
            Some(PathBuf::from("/h/.local/state/docker-persist/intents"))
        );
        assert_eq!(default_dir(env(&[])), None);
    }

    #[test]
    fn steps_are_stored_with_their_kind_and_state() {
        let e = StepEntry {
            state: StepState::Begun,
            at: "2026-01-01T00:00:00Z".into(),
            step: Step::ComposeDown {
                args: vec!["-v".into()],
                backup: "/b/x.tar".into(),
            },
        };
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(v["step"], "compose_down");
        assert_eq!(v["state"], "begun");
        let back: StepEntry = serde_json::from_value(v).unwrap();
        assert_eq!(back, e);
    }
}
