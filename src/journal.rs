//! The journal of containers a backup stopped and has not started again yet, so that a backup killed
//! outright (`kill -9`, a crash, a power cut of the terminal) does not leave services stopped for good.
//!
//! Before a backup stops a container it writes `$XDG_STATE_HOME/docker-persist/stopped/<machine>-<pid>.json`
//! (default `~/.local/state/…`; directories 0700, the file replaced atomically) naming the engine, the
//! project and the containers; it takes each container out again once it runs again, and deletes the file
//! when none is left. Every command that connects to an engine looks for files of this machine whose
//! process is gone and whose engine is the one it connected to, starts their containers again and deletes
//! them. A file of a process that still runs is left alone: that backup will start its containers itself.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// A container stopped by a backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoppedContainer {
    pub id: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
}

/// What one journal file holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The engine endpoint (`unix:///var/run/docker.sock`, `tcp://…`).
    pub host: String,
    pub project: String,
    pub pid: u32,
    /// In the order they are to be started again.
    pub containers: Vec<StoppedContainer>,
}

/// The journal file of this process: written before anything is stopped, removed once all runs again.
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    entry: Entry,
}

impl Journal {
    /// A journal in `dir` for this process; nothing is written until [`Journal::add`].
    pub fn new(dir: &Path, host: &str, project: &str) -> Journal {
        let pid = std::process::id();
        Journal {
            path: dir.join(file_name(&machine_name(), pid)),
            entry: Entry {
                host: host.to_string(),
                project: project.to_string(),
                pid,
                containers: Vec::new(),
            },
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Records containers about to be stopped (in the order they will be started again).
    pub fn add(&mut self, containers: &[StoppedContainer]) -> std::io::Result<()> {
        for c in containers {
            if !self.entry.containers.iter().any(|e| e.id == c.id) {
                self.entry.containers.push(c.clone());
            }
        }
        self.write()
    }

    /// Takes out a container that runs again; deletes the file when none is left.
    pub fn remove(&mut self, id: &str) -> std::io::Result<()> {
        let before = self.entry.containers.len();
        self.entry.containers.retain(|c| c.id != id);
        if self.entry.containers.len() == before {
            return Ok(());
        }
        self.write()
    }

    fn write(&self) -> std::io::Result<()> {
        if self.entry.containers.is_empty() {
            return match fs_err::remove_file(&self.path) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                other => other,
            };
        }
        let json = serde_json::to_vec_pretty(&self.entry).map_err(std::io::Error::other)?;
        write_private_atomic(&self.path, &json)
    }
}

/// Writes `bytes` to `path` so that a reader sees the old file or the new one, never a part: a temporary
/// file in the same directory (created 0700 if missing), synced, then renamed over `path`.
pub fn write_private_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    create_private_dir(dir)?;
    let mut tmp = tempfile::Builder::new().prefix(".tmp-").tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// `$XDG_STATE_HOME/docker-persist`, else `~/.local/state/docker-persist`: where the journal, the verified
/// records and the run records live.
pub fn state_root(env: impl Fn(&str) -> Option<String>) -> Option<PathBuf> {
    Some(xdg_dir(env, "XDG_STATE_HOME", ".local/state")?.join("docker-persist"))
}

/// An XDG base directory: `$VAR` when it is absolute, else `$HOME/<fallback>`.
pub fn xdg_dir(env: impl Fn(&str) -> Option<String>, var: &str, fallback: &str) -> Option<PathBuf> {
    env(var)
        .filter(|s| Path::new(s).is_absolute())
        .map(PathBuf::from)
        .or_else(|| {
            env("HOME")
                .filter(|h| !h.is_empty())
                .map(|h| Path::new(&h).join(fallback))
        })
}

/// `$XDG_STATE_HOME/docker-persist/stopped`, else `~/.local/state/docker-persist/stopped`.
pub fn default_dir(env: impl Fn(&str) -> Option<String>) -> Option<PathBuf> {
    Some(state_root(env)?.join("stopped"))
}

/// Journal files in `dir` that are for this machine and `host`, and whose process is gone (by `alive`).
/// Files that cannot be read or parsed are skipped.
pub fn abandoned(dir: &Path, host: &str, alive: impl Fn(u32) -> bool) -> Vec<(PathBuf, Entry)> {
    let Ok(read) = fs_err::read_dir(dir) else {
        return Vec::new();
    };
    let prefix = format!("{}-", machine_name());
    let mut found: Vec<(PathBuf, Entry)> = read
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().to_str()?.to_string();
            let pid: u32 = name
                .strip_prefix(&prefix)?
                .strip_suffix(".json")?
                .parse()
                .ok()?;
            Some((e.path(), pid))
        })
        .filter(|(_, pid)| *pid != std::process::id() && !alive(*pid))
        .filter_map(|(path, pid)| {
            let entry: Entry = serde_json::from_slice(&fs_err::read(&path).ok()?).ok()?;
            (entry.host == host && entry.pid == pid).then_some((path, entry))
        })
        .collect();
    found.sort_by(|a, b| a.0.cmp(&b.0));
    found
}

/// Whether process `pid` still runs on this machine.
pub fn process_alive(pid: u32) -> bool {
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

pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt as _;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", dir.display())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    fn container(id: &str) -> StoppedContainer {
        StoppedContainer {
            id: id.into(),
            name: format!("app-{id}-1"),
            service: Some(id.into()),
        }
    }

    #[test]
    fn journal_is_written_before_stopping_and_deleted_when_all_run_again() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("state/docker-persist/stopped");
        let mut j = Journal::new(&dir, "unix:///var/run/docker.sock", "app");
        assert!(
            !j.path().exists(),
            "nothing is written before anything stops"
        );
        j.add(&[container("db"), container("web")]).unwrap();
        let entry: Entry = serde_json::from_slice(&std::fs::read(j.path()).unwrap()).unwrap();
        assert_eq!(entry.pid, std::process::id());
        assert_eq!(entry.project, "app");
        assert_eq!(entry.containers, [container("db"), container("web")]);
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        j.remove("db").unwrap();
        let entry: Entry = serde_json::from_slice(&std::fs::read(j.path()).unwrap()).unwrap();
        assert_eq!(entry.containers, [container("web")]);
        j.remove("web").unwrap();
        assert!(!j.path().exists(), "an empty journal is deleted");
        // Nothing left but the directory: no temporary files.
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
    }

    #[test]
    fn abandoned_journals_are_those_of_dead_processes_on_the_same_engine() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let machine = machine_name();
        let write = |file: &str, host: &str, pid: u32| {
            let entry = Entry {
                host: host.into(),
                project: "app".into(),
                pid,
                containers: vec![container("db")],
            };
            std::fs::write(dir.join(file), serde_json::to_vec(&entry).unwrap()).unwrap();
        };
        let host = "unix:///var/run/docker.sock";
        write(&file_name(&machine, 101), host, 101); // dead, same engine: abandoned
        write(&file_name(&machine, 102), host, 102); // alive: left alone
        write(&file_name(&machine, 103), "tcp://other:2376", 103); // another engine
        write(&file_name("elsewhere", 104), host, 104); // another machine
        std::fs::write(dir.join(file_name(&machine, 105)), "not json").unwrap();
        let found = abandoned(dir, host, |pid| pid == 102);
        let pids: Vec<u32> = found.iter().map(|(_, e)| e.pid).collect();
        assert_eq!(pids, [101]);
        assert_eq!(found[0].0, dir.join(file_name(&machine, 101)));
        assert!(abandoned(&dir.join("missing"), host, |_| false).is_empty());
    }

    #[test]
    fn journal_dir_follows_xdg_state_home_then_home() {
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                vars.iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        assert_eq!(
            default_dir(env(&[("XDG_STATE_HOME", "/s"), ("HOME", "/h")])),
            Some(PathBuf::from("/s/docker-persist/stopped"))
        );
        assert_eq!(
            default_dir(env(&[("XDG_STATE_HOME", "relative"), ("HOME", "/h")])),
            Some(PathBuf::from("/h/.local/state/docker-persist/stopped"))
        );
        assert_eq!(default_dir(env(&[])), None);
    }

    #[test]
    fn this_process_is_alive_and_an_unused_pid_is_not() {
        assert!(process_alive(std::process::id()));
        assert!(!process_alive(0));
        assert!(!process_alive(u32::MAX));
    }
}
