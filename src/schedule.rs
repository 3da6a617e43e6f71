//! Scheduled backups without a daemon of our own: the files that make systemd (a `.service` and a
//! `.timer`) or cron run `docker persist backup` for a project, and the record of what was installed.
//!
//! The record (`$XDG_STATE_HOME/docker-persist/schedules/<project>.json`) is what `schedule show`,
//! `schedule remove` and `status` read: the backend, the calendar, the files written and the command line.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::calendar::Calendar;

/// Who runs the scheduled backups.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Backend {
    /// A system timer (`/etc/systemd/system`), as root.
    SystemdSystem,
    /// A user timer (`~/.config/systemd/user`).
    SystemdUser,
    /// A file in cron's format with a user field (`--cron-file`).
    CronFile,
    /// A crontab line that was printed for the user to install.
    Crontab,
}

impl Backend {
    pub fn describe(self) -> &'static str {
        match self {
            Backend::SystemdSystem => "systemd system timer",
            Backend::SystemdUser => "systemd user timer",
            Backend::CronFile => "cron file",
            Backend::Crontab => "crontab line (printed, installed by hand)",
        }
    }

    pub fn is_systemd(self) -> bool {
        matches!(self, Backend::SystemdSystem | Backend::SystemdUser)
    }
}

/// What `schedule set` installed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Installed {
    pub schema_version: u32,
    pub project: String,
    pub directory: PathBuf,
    pub backend: Backend,
    /// The calendar as a cron expression.
    pub cron: String,
    /// The systemd `OnCalendar=` value (systemd backends).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_calendar: Option<String>,
    /// The timer unit (systemd backends).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timer: Option<String>,
    /// Files written.
    pub files: Vec<PathBuf>,
    /// The commands each run executes, in order, as argv.
    pub commands: Vec<Vec<String>>,
    pub installed: jiff::Timestamp,
}

impl Installed {
    pub fn calendar(&self) -> Option<Calendar> {
        Calendar::cron(&self.cron).ok()
    }
}

/// `schedules/` in the state directory.
pub fn records_dir() -> Option<PathBuf> {
    Some(crate::state::state_root(|k| std::env::var(k).ok())?.join("schedules"))
}

fn record_path(dir: &Path, project: &str) -> PathBuf {
    dir.join(format!("{}.json", unit_stem(project)))
}

/// The installed schedule of `project`, if one is recorded in `dir`.
pub fn load(dir: &Path, project: &str) -> Option<Installed> {
    let bytes = fs_err::read(record_path(dir, project)).ok()?;
    serde_json::from_slice::<Installed>(&bytes)
        .ok()
        .filter(|i| i.project == project)
}

pub fn save(dir: &Path, installed: &Installed) -> std::io::Result<PathBuf> {
    let path = record_path(dir, &installed.project);
    let json = serde_json::to_vec_pretty(installed).map_err(std::io::Error::other)?;
    crate::state::write_private_atomic(&path, &json)?;
    Ok(path)
}

pub fn forget(dir: &Path, project: &str) -> std::io::Result<()> {
    match fs_err::remove_file(record_path(dir, project)) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// `docker-persist-<project>`: the name of the units (Compose project names are `[a-z0-9_-]`; anything
/// else is escaped as `_`).
pub fn unit_stem(project: &str) -> String {
    format!("docker-persist-{}", crate::runs::safe_name(project))
}

/// Where unit files go: `/etc/systemd/system` for a system timer, `$XDG_CONFIG_HOME/systemd/user` (else
/// `~/.config/systemd/user`) for a user timer.
pub fn unit_dir(backend: Backend, env: impl Fn(&str) -> Option<String>) -> Option<PathBuf> {
    match backend {
        Backend::SystemdSystem => Some(PathBuf::from("/etc/systemd/system")),
        Backend::SystemdUser => Some(
            crate::state::xdg_dir(env, "XDG_CONFIG_HOME", ".config")?
                .join("systemd")
                .join("user"),
        ),
        _ => None,
    }
}

/// Everything a scheduled run needs, whatever runs it.
#[derive(Debug, Clone)]
pub struct Job {
    pub project: String,
    pub directory: PathBuf,
    pub calendar: Calendar,
    /// Each run's commands, in order; the next runs only when one succeeds.
    pub commands: Vec<Vec<String>>,
    /// Environment the commands need (`HOME`, `DOCKER_CONFIG`, …).
    pub environment: Vec<(String, String)>,
    pub random_delay: std::time::Duration,
}

/// One argument as systemd's `ExecStart=` reads it: quoted when it has to be, `%` and `$` doubled so
/// that systemd expands neither specifiers nor variables.
fn systemd_word(arg: &str) -> String {
    let escaped = arg.replace('%', "%%").replace('$', "$$");
    let plain = !escaped.is_empty()
        && escaped
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=@+,%$".contains(c));
    if plain {
        escaped
    } else {
        format!("\"{}\"", escaped.replace('\\', "\\\\").replace('"', "\\\""))
    }
}

/// An `Environment=` assignment, quoted.
fn systemd_assignment(key: &str, value: &str) -> String {
    format!(
        "\"{key}={}\"",
        value
            .replace('%', "%%")
            .replace('\\', "\\\\")
            .replace('"', "\\\"")
    )
}

/// The `.service` unit.
pub fn service_unit(job: &Job, system: bool) -> String {
    let mut s = String::new();
    s.push_str("# Written by `docker persist schedule set`; `docker persist schedule remove` removes it.\n");
    s.push_str("[Unit]\n");
    s.push_str(&format!(
        "Description=docker persist backup of the Compose project {}\n",
        job.project
    ));
    if system {
        s.push_str("Wants=network-online.target\nAfter=network-online.target docker.service\n");
    }
    s.push_str("\n[Service]\nType=oneshot\n");
    s.push_str(&format!(
        "WorkingDirectory={}\n",
        systemd_word(&job.directory.to_string_lossy())
    ));
    for (k, v) in &job.environment {
        s.push_str(&format!("Environment={}\n", systemd_assignment(k, v)));
    }
    for argv in &job.commands {
        let words: Vec<String> = argv.iter().map(|a| systemd_word(a)).collect();
        s.push_str(&format!("ExecStart={}\n", words.join(" ")));
    }
    // A backup stops services while it reads their data: let it finish its cleanup on SIGTERM.
    s.push_str("TimeoutStopSec=5min\n");
    s
}

/// The `.timer` unit.
pub fn timer_unit(job: &Job) -> String {
    let mut s = String::new();
    s.push_str("# Written by `docker persist schedule set`; `docker persist schedule remove` removes it.\n");
    s.push_str(&format!("# Schedule (cron): {}\n", job.calendar.cron));
    s.push_str("[Unit]\n");
    s.push_str(&format!(
        "Description=Scheduled docker persist backup of the Compose project {}\n",
        job.project
    ));
    s.push_str("\n[Timer]\n");
    s.push_str(&format!("OnCalendar={}\n", job.calendar.on_calendar()));
    // A run missed while the machine was off happens at the next boot.
    s.push_str("Persistent=true\n");
    s.push_str(&format!(
        "RandomizedDelaySec={}\n",
        job.random_delay.as_secs()
    ));
    s.push_str("\n[Install]\nWantedBy=timers.target\n");
    s
}

/// One word for `sh`: single-quoted unless it is plain.
pub fn shell_word(arg: &str) -> String {
    let plain = !arg.is_empty()
        && arg
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=@+,".contains(c));
    if plain {
        arg.to_string()
    } else {
        format!("'{}'", arg.replace('\'', "'\\''"))
    }
}

/// The command part of a crontab line: `cd DIR && ENV… CMD && ENV… CMD2`, with `%` escaped (cron turns a
/// bare `%` into a newline).
pub fn cron_command(job: &Job) -> String {
    let env: String = job
        .environment
        .iter()
        .map(|(k, v)| format!("{k}={} ", shell_word(v)))
        .collect();
    let mut parts = vec![format!(
        "cd {}",
        shell_word(&job.directory.to_string_lossy())
    )];
    for argv in &job.commands {
        let words: Vec<String> = argv.iter().map(|a| shell_word(a)).collect();
        parts.push(format!("{env}{}", words.join(" ")));
    }
    parts.join(" && ").replace('%', "\\%")
}

/// A line for `crontab -e`.
pub fn crontab_line(job: &Job) -> String {
    format!("{} {}", job.calendar.cron, cron_command(job))
}

/// A file for `/etc/cron.d` (with the user who runs it).
pub fn cron_file(job: &Job, user: &str) -> String {
    format!(
        "# Written by `docker persist schedule set`; `docker persist schedule remove` removes it.\n\
         # Backups of the Compose project {}.\n\
         SHELL=/bin/sh\n\
         PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n\
         {} {user} {}\n",
        job.project,
        job.calendar.cron,
        cron_command(job)
    )
}

/// Whether systemd runs this machine (`sd_booted()`: `/run/systemd/system` exists).
pub fn systemd_running() -> bool {
    Path::new("/run/systemd/system").is_dir()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job() -> Job {
        Job {
            project: "app".into(),
            directory: "/srv/my app".into(),
            calendar: Calendar::daily("03:15").unwrap(),
            commands: vec![
                vec![
                    "/usr/bin/docker".into(),
                    "persist".into(),
                    "-p".into(),
                    "app".into(),
                    "backup".into(),
                    "--notify".into(),
                    "https://hc.example/p?x=1&y=50%".into(),
                ],
                vec!["/usr/bin/docker".into(), "persist".into(), "verify".into()],
            ],
            environment: vec![("HOME".into(), "/home/u".into())],
            random_delay: std::time::Duration::from_secs(900),
        }
    }

    #[test]
    fn units_carry_the_calendar_the_directory_and_quoted_commands() {
        let service = service_unit(&job(), false);
        assert!(
            service.contains("WorkingDirectory=\"/srv/my app\"\n"),
            "{service}"
        );
        assert!(service.contains("Environment=\"HOME=/home/u\"\n"));
        assert!(
            service.contains(
                "ExecStart=/usr/bin/docker persist -p app backup --notify \"https://hc.example/p?x=1&y=50%%\"\n"
            ),
            "{service}"
        );
        assert!(service.contains("ExecStart=/usr/bin/docker persist verify\n"));
        assert!(!service.contains("docker.service"));
        assert!(service_unit(&job(), true).contains("After=network-online.target docker.service"));
        let timer = timer_unit(&job());
        for line in [
            "OnCalendar=*-*-* 03:15:00\n",
            "Persistent=true\n",
            "RandomizedDelaySec=900\n",
            "WantedBy=timers.target\n",
        ] {
            assert!(timer.contains(line), "{line} in {timer}");
        }
    }

    #[test]
    fn the_crontab_line_cds_and_escapes_percent() {
        assert_eq!(
            crontab_line(&job()),
            "15 3 * * * cd '/srv/my app' && HOME=/home/u /usr/bin/docker persist -p app backup --notify \
             'https://hc.example/p?x=1&y=50\\%' && HOME=/home/u /usr/bin/docker persist verify"
        );
        let file = cron_file(&job(), "root");
        assert!(
            file.contains("\n15 3 * * * root cd '/srv/my app' && "),
            "{file}"
        );
        assert_eq!(shell_word("it's"), "'it'\\''s'");
    }

    #[test]
    fn records_round_trip_per_project() {
        let tmp = tempfile::tempdir().unwrap();
        let i = Installed {
            schema_version: 1,
            project: "app".into(),
            directory: "/srv/app".into(),
            backend: Backend::SystemdUser,
            cron: "15 3 * * *".into(),
            on_calendar: Some("*-*-* 03:15:00".into()),
            timer: Some("docker-persist-app.timer".into()),
            files: vec![],
            commands: vec![],
            installed: jiff::Timestamp::UNIX_EPOCH,
        };
        save(tmp.path(), &i).unwrap();
        assert_eq!(load(tmp.path(), "app"), Some(i));
        assert_eq!(load(tmp.path(), "other"), None);
        forget(tmp.path(), "app").unwrap();
        forget(tmp.path(), "app").unwrap();
        assert_eq!(load(tmp.path(), "app"), None);
    }

    #[test]
    fn user_units_go_to_the_config_dir() {
        let env = |k: &str| (k == "HOME").then(|| "/home/u".to_string());
        assert_eq!(
            unit_dir(Backend::SystemdUser, env),
            Some(PathBuf::from("/home/u/.config/systemd/user"))
        );
        assert_eq!(
            unit_dir(Backend::SystemdSystem, env),
            Some(PathBuf::from("/etc/systemd/system"))
        );
    }
}
