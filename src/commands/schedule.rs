//! `schedule set|show|remove`: backups that run on their own. `set` installs a systemd service and timer
//! (a system timer as root, a user timer otherwise or with `--user`) that runs `docker persist backup` for
//! this project, with the same Compose options and Docker endpoint, from the project directory; where
//! systemd does not run, it prints the crontab line (or writes a cron file with `--cron-file`). What was
//! installed is recorded (see [`crate::schedule`]) for `show`, `remove` and `status`.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use serde::Serialize;

use super::{ExitStatus, Session, UsageError};
use crate::calendar::Calendar;
use crate::cli::{ScheduleCommand, ScheduleRemoveArgs, ScheduleSetArgs};
use crate::schedule::{self, Backend, Installed, Job};

/// How many next runs `show` lists.
const SHOWN_RUNS: usize = 5;
/// The longest default randomized delay.
const MAX_DEFAULT_DELAY: std::time::Duration = std::time::Duration::from_secs(15 * 60);

pub async fn run(session: &Session<'_>, cmd: &ScheduleCommand) -> anyhow::Result<ExitStatus> {
    match cmd {
        ScheduleCommand::Set(args) => set(session, args).await,
        ScheduleCommand::Show => show(session),
        ScheduleCommand::Remove(args) => remove(session, args).await,
    }
}

/// The calendar the flags ask for.
fn calendar(args: &ScheduleSetArgs) -> Result<Calendar, UsageError> {
    let made = if let Some(at) = &args.daily {
        Calendar::daily(at)
    } else if args.hourly {
        Ok(Calendar::hourly())
    } else if let Some(every) = args.every {
        Calendar::every(every)
    } else if let Some(expr) = &args.cron {
        Calendar::cron(expr)
    } else {
        unreachable!("clap requires one of --daily, --hourly, --every, --cron")
    };
    let calendar = made.map_err(|e| UsageError {
        message: e.0,
        hint: None,
    })?;
    if calendar.next_runs(&jiff::Zoned::now(), 1).is_empty() {
        return Err(UsageError {
            message: format!("`{}` never runs", calendar.cron),
            hint: None,
        });
    }
    Ok(calendar)
}

/// The Docker CLI to run (`docker persist …`), else this executable itself.
fn launcher() -> anyhow::Result<(PathBuf, bool)> {
    if let Ok(docker) = which::which("docker") {
        return Ok((docker, true));
    }
    let me = std::env::current_exe().context("cannot find this program's own path")?;
    Ok((me, false))
}

fn absolute(path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .map(|d| d.join(path))
            .unwrap_or_else(|_| path.to_path_buf())
    }
}

/// An argv, and the environment it runs with.
type Launch = (Vec<String>, Vec<(String, String)>);

/// The argv prefix every scheduled command shares: the launcher, Docker's endpoint flags, `persist`, and
/// the Compose options that select this project; with the environment the run needs.
fn base_argv(session: &Session<'_>, project: &crate::compose::Project) -> anyhow::Result<Launch> {
    let env: std::collections::BTreeMap<String, String> = std::env::vars().collect();
    let endpoint = crate::context::resolve(session.globals, &env)?;
    let (launcher, is_docker) = launcher()?;
    let mut argv = vec![launcher.to_string_lossy().into_owned()];
    let g = session.globals;
    if let Some(config) = &g.config {
        argv.extend([
            "--config".into(),
            absolute(config).to_string_lossy().into_owned(),
        ]);
    }
    // The endpoint it was set up with, pinned: a named context by name, else the host itself.
    if endpoint.context != "default" {
        argv.extend(["--context".into(), endpoint.context.clone()]);
    } else {
        argv.extend(["--host".into(), endpoint.host.clone()]);
        if let Some(tls) = &endpoint.tls {
            argv.push(if tls.verify { "--tlsverify" } else { "--tls" }.into());
            for (flag, path) in [
                ("--tlscacert", &tls.ca),
                ("--tlscert", &tls.cert),
                ("--tlskey", &tls.key),
            ] {
                if let Some(p) = path {
                    argv.extend([flag.into(), absolute(p).to_string_lossy().into_owned()]);
                }
            }
        }
    }
    if is_docker {
        argv.push("persist".into());
    }
    let args = session.project_args;
    // Files named on the command line or in COMPOSE_FILE are pinned; otherwise the run discovers them in
    // the project directory as this command did.
    if !args.files.is_empty() || env.get("COMPOSE_FILE").is_some_and(|f| !f.is_empty()) {
        for f in &project.files {
            argv.extend(["-f".into(), f.to_string_lossy().into_owned()]);
        }
    }
    argv.extend(["-p".into(), project.name.clone()]);
    if args.project_directory.is_some() {
        argv.extend([
            "--project-directory".into(),
            project.directory.to_string_lossy().into_owned(),
        ]);
    }
    for e in &args.env_files {
        argv.extend([
            "--env-file".into(),
            absolute(e).to_string_lossy().into_owned(),
        ]);
    }
    let mut environment = Vec::new();
    for key in ["HOME", "XDG_STATE_HOME", "XDG_CONFIG_HOME", "DOCKER_CONFIG"] {
        if let Some(v) = env.get(key).filter(|v| !v.is_empty()) {
            environment.push((key.to_string(), v.clone()));
        }
    }
    Ok((argv, environment))
}

/// The default randomized delay: a tenth of the shortest gap between runs, at most 15 minutes.
fn default_delay(calendar: &Calendar) -> std::time::Duration {
    let runs = calendar.next_runs(&jiff::Zoned::now(), 50);
    let shortest = runs
        .windows(2)
        .filter_map(|w| {
            std::time::Duration::try_from(w[1].timestamp().duration_since(w[0].timestamp())).ok()
        })
        .min()
        .unwrap_or(MAX_DEFAULT_DELAY * 10);
    (shortest / 10).min(MAX_DEFAULT_DELAY)
}

/// One file `set` writes (or would write).
#[derive(Debug, Serialize)]
struct FileJson {
    path: PathBuf,
    content: String,
}

#[derive(Serialize)]
struct SetJson<'a> {
    schema_version: u32,
    project: &'a str,
    backend: Backend,
    dry_run: bool,
    cron: &'a str,
    on_calendar: Option<String>,
    files: Vec<FileJson>,
    crontab_line: Option<String>,
    commands: &'a [Vec<String>],
    next_runs: Vec<String>,
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

async fn set(session: &Session<'_>, args: &ScheduleSetArgs) -> anyhow::Result<ExitStatus> {
    let printer = session.printer;
    let calendar = calendar(args)?;
    let project = session.load_project()?;
    // Notification targets are checked now, not at the first scheduled run.
    super::runlog::plan(&args.notify, Some(&project), Default::default())?;
    let (base, environment) = base_argv(session, &project)?;
    let mut backup = base.clone();
    backup.push("backup".into());
    for d in &args.to {
        backup.extend(["--to".into(), d.clone()]);
    }
    if args.prune {
        backup.push("--prune".into());
    }
    for u in &args.notify.urls {
        backup.extend(["--notify".into(), u.clone()]);
    }
    if let Some(on) = args.notify.notify_on {
        backup.extend([
            "--notify-on".into(),
            clap::ValueEnum::to_possible_value(&on)
                .map(|v| v.get_name().to_string())
                .unwrap_or_default(),
        ]);
    }
    if let Some(c) = &args.notify.notify_command {
        backup.extend(["--notify-command".into(), c.clone()]);
    }
    backup.extend(args.backup_args.iter().cloned());
    let mut commands = vec![backup];
    if args.verify {
        let mut verify = base.clone();
        verify.push("verify".into());
        commands.push(verify);
    }
    let job = Job {
        project: project.name.clone(),
        directory: project.directory.clone(),
        random_delay: args
            .random_delay
            .unwrap_or_else(|| default_delay(&calendar)),
        calendar,
        commands,
        environment,
    };
    let backend = if args.cron_file.is_some() {
        Backend::CronFile
    } else if args.systemd || (schedule::systemd_running() && which::which("systemctl").is_ok()) {
        if is_root() && !args.user {
            Backend::SystemdSystem
        } else {
            Backend::SystemdUser
        }
    } else {
        Backend::Crontab
    };
    let stem = schedule::unit_stem(&project.name);
    let mut files: Vec<FileJson> = Vec::new();
    let mut crontab = None;
    match backend {
        Backend::SystemdSystem | Backend::SystemdUser => {
            let dir = schedule::unit_dir(backend, |k| std::env::var(k).ok()).context(
                "cannot find where user units go: neither XDG_CONFIG_HOME nor HOME is set",
            )?;
            files.push(FileJson {
                path: dir.join(format!("{stem}.service")),
                content: schedule::service_unit(&job, backend == Backend::SystemdSystem),
            });
            files.push(FileJson {
                path: dir.join(format!("{stem}.timer")),
                content: schedule::timer_unit(&job),
            });
        }
        Backend::CronFile => {
            let user = rustix::process::geteuid();
            let name = user_name(user.as_raw()).unwrap_or_else(|| user.as_raw().to_string());
            let path = args
                .cron_file
                .clone()
                .map(|p| absolute(&p))
                .unwrap_or_default();
            if path
                .file_name()
                .is_some_and(|n| n.to_string_lossy().contains('.'))
                && path.starts_with("/etc/cron.d")
            {
                printer.warn(format!(
                    "cron ignores files in /etc/cron.d whose names contain a dot: `{}`",
                    path.display()
                ));
            }
            files.push(FileJson {
                path,
                content: schedule::cron_file(&job, &name),
            });
        }
        Backend::Crontab => crontab = Some(schedule::crontab_line(&job)),
    }
    let now = jiff::Zoned::now();
    let next: Vec<String> = job
        .calendar
        .next_runs(&now, SHOWN_RUNS)
        .iter()
        .map(local_time)
        .collect();
    let on_calendar = backend.is_systemd().then(|| job.calendar.on_calendar());
    if printer.json_mode() {
        printer.json(&SetJson {
            schema_version: 1,
            project: &project.name,
            backend,
            dry_run: args.dry_run,
            cron: &job.calendar.cron,
            on_calendar: on_calendar.clone(),
            files: files
                .iter()
                .map(|f| FileJson {
                    path: f.path.clone(),
                    content: f.content.clone(),
                })
                .collect(),
            crontab_line: crontab.clone(),
            commands: &job.commands,
            next_runs: next.clone(),
        })?;
    } else if args.dry_run {
        for f in &files {
            printer.data(format!("# {}\n{}\n", f.path.display(), f.content));
        }
        if let Some(line) = &crontab {
            printer.data(format!("{line}\n"));
        }
    }
    if args.dry_run {
        printer.status(format!(
            "Would install a {} for `{}`; next runs: {}",
            backend.describe(),
            project.name,
            next.join(", ")
        ));
        return Ok(ExitStatus::Success);
    }
    let records = schedule::records_dir()
        .context("cannot record the schedule: neither XDG_STATE_HOME nor HOME is set")?;
    // A schedule installed before, elsewhere (another backend or unit directory), goes first.
    if let Some(old) = schedule::load(&records, &project.name) {
        let replaced_here = old.files.iter().all(|p| files.iter().any(|f| &f.path == p));
        if !replaced_here {
            uninstall(printer, &old, false).await?;
        }
    }
    for f in &files {
        if let Some(dir) = f.path.parent() {
            fs_err::create_dir_all(dir)?;
        }
        fs_err::write(&f.path, &f.content)?;
    }
    if backend.is_systemd() {
        let user = backend == Backend::SystemdUser;
        systemctl(user, &["daemon-reload"]).await?;
        systemctl(user, &["enable", "--now", &format!("{stem}.timer")]).await?;
    }
    let installed = Installed {
        schema_version: 1,
        project: project.name.clone(),
        directory: project.directory.clone(),
        backend,
        cron: job.calendar.cron.clone(),
        on_calendar,
        timer: backend.is_systemd().then(|| format!("{stem}.timer")),
        files: files.iter().map(|f| f.path.clone()).collect(),
        commands: job.commands.clone(),
        installed: jiff::Timestamp::now(),
    };
    schedule::save(&records, &installed)?;
    if let Some(line) = &crontab {
        if !printer.json_mode() {
            printer.data(format!("{line}\n"));
        }
        printer.status(format!(
            "systemd does not run here: add the line above to your crontab (`crontab -e`), or write a cron \
             file with `--cron-file /etc/cron.d/{stem}`; next runs: {}",
            next.join(", ")
        ));
    } else {
        printer.status(format!(
            "Installed a {} for `{}` ({}); next runs: {}",
            backend.describe(),
            project.name,
            files
                .iter()
                .map(|f| format!("`{}`", f.path.display()))
                .collect::<Vec<_>>()
                .join(", "),
            next.join(", ")
        ));
        if backend == Backend::SystemdUser {
            printer.status(
                "hint: a user timer runs only while you are logged in, unless `loginctl enable-linger` is on",
            );
        }
    }
    Ok(ExitStatus::Success)
}

/// The name of user `uid` from /etc/passwd.
fn user_name(uid: u32) -> Option<String> {
    let passwd = fs_err::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|l| {
        let mut f = l.split(':');
        let name = f.next()?;
        let _ = f.next();
        (f.next()? == uid.to_string()).then(|| name.to_string())
    })
}

/// `systemctl [--user] ARGS`; an error with its output when it fails.
async fn systemctl(user: bool, args: &[&str]) -> anyhow::Result<()> {
    let mut cmd = tokio::process::Command::new("systemctl");
    if user {
        cmd.arg("--user");
    }
    cmd.args(args).stdin(std::process::Stdio::null());
    let out = cmd.output().await.context("failed to run `systemctl`")?;
    if !out.status.success() {
        bail!(
            "`systemctl {}{}` failed: {}",
            if user { "--user " } else { "" },
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Disables and deletes what `installed` names (`dry_run`: only says what it would do).
async fn uninstall(
    printer: &crate::report::Printer,
    installed: &Installed,
    dry_run: bool,
) -> anyhow::Result<()> {
    let verb = if dry_run { "Would remove" } else { "Removed" };
    if installed.backend.is_systemd()
        && let Some(timer) = &installed.timer
    {
        let user = installed.backend == Backend::SystemdUser;
        if !dry_run && schedule::systemd_running() {
            systemctl(user, &["disable", "--now", timer]).await?;
        }
    }
    for f in &installed.files {
        if !dry_run {
            match fs_err::remove_file(f) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
                _ => {}
            }
        }
        printer.status(format!("{verb} `{}`", f.display()));
    }
    if installed.backend.is_systemd() && !dry_run && schedule::systemd_running() {
        systemctl(
            installed.backend == Backend::SystemdUser,
            &["daemon-reload"],
        )
        .await?;
    }
    if installed.backend == Backend::Crontab {
        printer.status(format!(
            "the crontab line was installed by hand: remove the line with `{}` from your crontab (`crontab -e`)",
            installed.cron
        ));
    }
    Ok(())
}

async fn remove(session: &Session<'_>, args: &ScheduleRemoveArgs) -> anyhow::Result<ExitStatus> {
    let printer = session.printer;
    let project = session.load_project()?;
    let records = schedule::records_dir()
        .context("cannot find the schedule: neither XDG_STATE_HOME nor HOME is set")?;
    let Some(installed) = schedule::load(&records, &project.name) else {
        printer.status(format!("No schedule is installed for `{}`", project.name));
        return Ok(ExitStatus::Success);
    };
    uninstall(printer, &installed, args.dry_run).await?;
    if !args.dry_run {
        schedule::forget(&records, &project.name)?;
        printer.status(format!(
            "Removed the {} of `{}`",
            installed.backend.describe(),
            project.name
        ));
    }
    Ok(ExitStatus::Success)
}

#[derive(Serialize)]
struct ShowJson<'a> {
    schema_version: u32,
    project: &'a str,
    schedule: Option<&'a Installed>,
    /// Files the schedule names that no longer exist.
    missing_files: Vec<&'a Path>,
    next_runs: Vec<String>,
}

/// A time as `show` and `status` print it: local, with its offset.
pub fn local_time(z: &jiff::Zoned) -> String {
    z.strftime("%Y-%m-%d %H:%M %Z").to_string()
}

fn show(session: &Session<'_>) -> anyhow::Result<ExitStatus> {
    let printer = session.printer;
    let project = session.load_project()?;
    let installed = schedule::records_dir().and_then(|d| schedule::load(&d, &project.name));
    let next: Vec<String> = installed
        .as_ref()
        .and_then(Installed::calendar)
        .map(|c| {
            c.next_runs(&jiff::Zoned::now(), SHOWN_RUNS)
                .iter()
                .map(local_time)
                .collect()
        })
        .unwrap_or_default();
    let missing: Vec<&Path> = installed
        .iter()
        .flat_map(|i| &i.files)
        .filter(|f| !f.exists())
        .map(PathBuf::as_path)
        .collect();
    if printer.json_mode() {
        printer.json(&ShowJson {
            schema_version: 1,
            project: &project.name,
            schedule: installed.as_ref(),
            missing_files: missing,
            next_runs: next,
        })?;
        return Ok(ExitStatus::Success);
    }
    let Some(i) = &installed else {
        printer.status(format!(
            "No schedule is installed for `{}`; `docker persist schedule set --daily 03:15` installs one",
            project.name
        ));
        return Ok(ExitStatus::Success);
    };
    let mut out = String::new();
    out.push_str(&format!("Project:   {}\n", i.project));
    out.push_str(&format!(
        "Installed: {} on {}\n",
        i.backend.describe(),
        i.installed.strftime("%Y-%m-%d %H:%M UTC")
    ));
    out.push_str(&format!("Schedule:  {}", i.cron));
    if let Some(c) = &i.on_calendar {
        out.push_str(&format!(" (OnCalendar={c})"));
    }
    out.push('\n');
    for f in &i.files {
        out.push_str(&format!("File:      {}\n", f.display()));
    }
    for c in &i.commands {
        let words: Vec<String> = c.iter().map(|a| schedule::shell_word(a)).collect();
        out.push_str(&format!("Runs:      {}\n", words.join(" ")));
    }
    out.push_str("Next runs:\n");
    for n in &next {
        out.push_str(&format!("  {n}\n"));
    }
    printer.data(out);
    for f in missing {
        printer.warn(format!(
            "`{}` no longer exists: the schedule is not installed as recorded; `docker persist schedule set` installs it again",
            f.display()
        ));
    }
    Ok(ExitStatus::Success)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_delay_is_a_tenth_of_the_interval_at_most_fifteen_minutes() {
        assert_eq!(
            default_delay(&Calendar::daily("03:00").unwrap()),
            MAX_DEFAULT_DELAY
        );
        assert_eq!(
            default_delay(&Calendar::cron("*/10 * * * *").unwrap()),
            std::time::Duration::from_secs(60)
        );
    }
}
