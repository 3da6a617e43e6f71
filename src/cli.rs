//! Command-line definition (clap derive, no logic) and the split of Docker's own global flags, which the
//! Docker CLI passes before the word `persist`.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::archive::DigestVersion;
use crate::compose::Tier;
use crate::retention::{Count, Policy, Within};

/// Docker's global flags (`docker [FLAGS] persist …`), honoured when resolving the engine endpoint.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DockerGlobals {
    pub host: Option<String>,
    pub context: Option<String>,
    pub config: Option<PathBuf>,
    pub debug: bool,
    pub log_level: Option<String>,
    pub tls: bool,
    pub tls_verify: bool,
    pub tls_ca_cert: Option<PathBuf>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
}

/// Errors in Docker's global flags; reported as usage errors (exit 2).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum GlobalsError {
    #[error("flag `{0}` needs an argument")]
    MissingValue(String),
}

/// The argv split into Docker's globals and the plugin's own arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitArgs {
    pub globals: DockerGlobals,
    /// argv[0] followed by the plugin's own arguments (everything after `persist`).
    pub args: Vec<OsString>,
}

const VALUE_FLAGS: &[(&str, Option<char>)] = &[
    ("host", Some('H')),
    ("context", Some('c')),
    ("config", None),
    ("log-level", Some('l')),
    ("tlscacert", None),
    ("tlscert", None),
    ("tlskey", None),
];

/// Splits argv as the Docker CLI hands it to a plugin: `docker-persist [DOCKER FLAGS] persist ARGS…`. The
/// standalone forms `docker-persist ARGS…` and `docker-persist [DOCKER FLAGS] ARGS…` work too.
pub fn split_docker_globals(argv: Vec<OsString>) -> Result<SplitArgs, GlobalsError> {
    let mut it = argv.into_iter();
    let argv0 = it
        .next()
        .unwrap_or_else(|| OsString::from("docker-persist"));
    let mut rest: Vec<OsString> = it.collect();
    let mut globals = DockerGlobals::default();
    let mut i = 0;
    while i < rest.len() {
        let Some(arg) = rest[i].to_str() else { break };
        let (name, inline): (String, Option<String>) = if let Some(long) = arg.strip_prefix("--") {
            match long.split_once('=') {
                Some((n, v)) => (n.to_string(), Some(v.to_string())),
                None => (long.to_string(), None),
            }
        } else if let Some(short) = arg.strip_prefix('-').filter(|s| !s.is_empty()) {
            let mut chars = short.chars();
            let c = chars.next().unwrap_or('-');
            let long = match c {
                'H' => "host",
                'c' => "context",
                'l' => "log-level",
                'D' => "debug",
                _ => break,
            };
            let tail: String = chars.collect();
            let tail = tail.strip_prefix('=').map(str::to_string).unwrap_or(tail);
            (long.to_string(), (!tail.is_empty()).then_some(tail))
        } else {
            break;
        };
        let takes_value = VALUE_FLAGS.iter().any(|(n, _)| *n == name);
        if takes_value {
            let value = match inline {
                Some(v) => v,
                None => {
                    i += 1;
                    rest.get(i)
                        .and_then(|v| v.to_str())
                        .map(str::to_string)
                        .ok_or_else(|| GlobalsError::MissingValue(arg.to_string()))?
                }
            };
            match name.as_str() {
                "host" => globals.host = Some(value),
                "context" => globals.context = Some(value),
                "config" => globals.config = Some(PathBuf::from(value)),
                "log-level" => globals.log_level = Some(value),
                "tlscacert" => globals.tls_ca_cert = Some(PathBuf::from(value)),
                "tlscert" => globals.tls_cert = Some(PathBuf::from(value)),
                "tlskey" => globals.tls_key = Some(PathBuf::from(value)),
                _ => unreachable!("VALUE_FLAGS and this match list the same names"),
            }
        } else {
            let on = match inline.as_deref() {
                None | Some("true") | Some("1") => true,
                Some(_) => false,
            };
            match name.as_str() {
                "debug" => globals.debug = on,
                "tls" => globals.tls = on,
                "tlsverify" => globals.tls_verify = on,
                _ => break,
            }
        }
        i += 1;
    }
    let mut rest = rest.split_off(i);
    if rest.first().is_some_and(|a| a == "persist") {
        rest.remove(0);
    }
    let mut args = Vec::with_capacity(rest.len() + 1);
    args.push(argv0);
    args.extend(rest);
    Ok(SplitArgs { globals, args })
}

/// Back up, restore, verify and protect the data of a Docker Compose project.
#[derive(Debug, Parser)]
#[command(
    name = "docker persist",
    bin_name = "docker persist",
    version,
    disable_version_flag = true,
    long_about = None,
    max_term_width = 100,
    after_help = "docker persist reads the project's Compose files and classifies every volume and bind mount \
into a tier: critical, important, regenerable or optional (`docker persist rules` explains how).\n\n\
Examples:\n  docker persist ls                 every piece of data, its tier and why\n  \
docker persist ls --json          the same, for scripts\n  \
docker persist inspect dbdata     where one volume lives and who uses it"
)]
pub struct Cli {
    /// Print the version
    #[arg(long, action = clap::ArgAction::Version)]
    version: Option<bool>,

    #[command(flatten)]
    pub project: ProjectArgs,

    #[command(flatten)]
    pub output: OutputArgs,

    #[command(subcommand)]
    pub command: Command,
}

/// Compose-style options that select the project.
#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "Project options")]
pub struct ProjectArgs {
    /// Compose configuration file (repeatable; default: discovered like `docker compose`)
    #[arg(short = 'f', long = "file", value_name = "FILE", global = true)]
    pub files: Vec<PathBuf>,

    /// Project name (default: `name:` in the Compose file, else the directory name)
    #[arg(short = 'p', long = "project-name", value_name = "NAME", global = true)]
    pub project_name: Option<String>,

    /// Alternate working directory (default: the directory of the first Compose file)
    #[arg(long, value_name = "DIR", global = true)]
    pub project_directory: Option<PathBuf>,

    /// Alternate environment file (repeatable; default: `.env` in the project directory)
    #[arg(long = "env-file", value_name = "FILE", global = true)]
    pub env_files: Vec<PathBuf>,
}

/// Options for what is printed.
#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "Output options")]
pub struct OutputArgs {
    /// Print machine-readable JSON on stdout
    #[arg(long, global = true)]
    pub json: bool,

    /// Print only data and errors, no status messages
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,

    /// Explain more: endpoint, files loaded, decisions taken
    #[arg(short, long, global = true)]
    pub verbose: bool,

    /// When to use colour
    #[arg(long, value_enum, value_name = "WHEN", default_value_t = ColorChoice::Auto, global = true)]
    pub color: ColorChoice,
}

/// How data moves between a volume and a backup file (DESIGN: "Data path").
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DataPath {
    /// The engine's archive API, through a helper container that never starts
    Universal,
    /// This program inside a helper container on the engine's host, reading and writing on disk
    Fast,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum ColorChoice {
    #[default]
    Auto,
    Always,
    Never,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// List every piece of data the project keeps, with its tier and why
    #[command(visible_alias = "volumes")]
    Ls(LsArgs),

    /// Show where one volume's data lives, how big it is and who uses it
    Inspect(InspectArgs),

    /// Back up volumes and bind mounts into one backup file
    Backup(BackupArgs),

    /// List the project's backup files, newest first
    Backups(BackupsArgs),

    /// Check a backup file: structure, checksums, content digests
    Verify(VerifyArgs),

    /// Restore volumes from a backup file (a safety backup of the data it replaces comes first)
    Restore(RestoreArgs),

    /// Move a volume's data into a host directory Compose mounts; `--rollback` moves it back
    Migrate(MigrateArgs),

    /// Print the built-in tier rules, first match wins
    Rules,

    /// Show what `docker compose down -v` would destroy and whether fresh backups protect it
    ///
    /// Exit 0 when every critical and important volume is protected, 3 when one is not.
    Check(CheckArgs),

    /// Run `docker compose down`, refusing `-v` while critical or important data is unprotected
    ///
    /// With `-v`/`--volumes`, `check` runs first; `--backup` takes the missing backups (services
    /// stopped), verifies them, then runs `down -v`.
    #[command(
        after_help = "Every argument that is not an option of `docker persist down` goes to \
`docker compose down` as is; after `down`, `-v` is Compose's `--volumes` (spell out `--verbose`).\n\n\
Examples:\n  docker persist down                same as `docker compose down`\n  \
docker persist down -v             refused (exit 3) while data is unprotected\n  \
docker persist down --backup -v    back up what is unprotected, verify, then `down -v`\n  \
docker persist down --dry-run -v   show what would happen"
    )]
    Down(DownArgs),

    /// Remove the project's volumes by tier or by name (Compose recreates them on `up`)
    ///
    /// The project's containers that hold them are removed too. Critical data needs a fresh, verified
    /// backup; bind mounts are never removed.
    #[command(
        after_help = "Examples:\n  docker persist clean --tier regenerable --dry-run   what would go, space freed\n  \
docker persist clean --tier regenerable --yes       no questions (scripts)\n  \
docker persist clean dbdata                         critical: fresh backup, project name typed"
    )]
    Clean(CleanArgs),

    /// Copy an existing backup file to destinations (again: what is already there is not sent twice)
    #[command(
        after_help = "Examples:\n  docker persist push backups/app-20261122T101500Z.tar --to offsite\n  \
docker persist push app-20261122T101500Z.tar --to s3://bucket/app?region=eu-west-1"
    )]
    Push(PushArgs),

    /// List the destinations (`local` and `x-persist.destinations`) and test each: reachable, writable,
    /// free space where known
    Destinations(DestinationsArgs),

    /// Print a shell function that runs `check` before a plain `docker compose down -v`
    ///
    /// Add one line to the shell's rc file: `eval "$(docker persist shell-init bash)"` (~/.bashrc),
    /// `eval "$(docker persist shell-init zsh)"` (~/.zshrc), or `docker persist shell-init fish | source`
    /// (~/.config/fish/config.fish).
    ShellInit(ShellInitArgs),

    /// Remove old backups by restic's retention rules, never below the safety floor
    ///
    /// The policy comes from the flags, else the destination's `retention:`, else `x-persist.retention`.
    /// Kept whatever the policy: the newest backup, the newest verified backup of each critical or
    /// important volume, and the backups `check` counts as protecting a volume. Safety copies
    /// (`pre-restore`, `pre-migrate`, `pre-down`, `pre-rollback`, `pre-upgrade`) stay 14 days, and the
    /// newest of each tag always.
    #[command(after_help = "Examples:\n  \
docker persist prune --dry-run            every backup, KEEP or REMOVE, and why\n  \
docker persist prune                      by `x-persist.retention`, without asking\n  \
docker persist prune --keep-last 10 -y    a policy of the moment (asks without `--yes`)\n  \
docker persist backup --prune             back up, then prune by the configured policy\n\n\
restic's \"7 daily, 4 weekly, 12 monthly, yearly forever\":\n  \
--keep-daily 7 --keep-weekly 4 --keep-monthly 12 --keep-yearly unlimited")]
    Prune(PruneArgs),

    /// Upgrade services to a new image: a verified backup first, a health check after, and an automatic
    /// rollback (data and image) when the new version fails
    ///
    /// PostgreSQL services whose data directory holds another major version than the new image are
    /// moved by dump and load into a new volume; the old volume stays until `--finish`.
    Upgrade(UpgradeArgs),
    /// Manage the age keys that encrypt backups (`key init`)
    #[command(subcommand)]
    Key(KeyCommand),

    /// Show whether the project's backups are fresh: last backup, last run, verification, schedule
    ///
    /// Exit 0 when the newest backup is younger than `--max-age` and the last backup run worked, 1 when
    /// it is older (or there is none), 2 when the last backup run failed or a verification found the
    /// newest backup damaged: usable as a container HEALTHCHECK or a monitoring probe.
    #[command(
        after_help = "Default --max-age: with a schedule installed, its longest gap between two runs plus 2 \
hours (26h for a daily schedule); without one, 26h.\n\n\
Examples:\n  docker persist status                   the state, as a table\n  \
docker persist status --max-age 2h      stale after two hours\n  \
docker persist status --json            for monitoring"
    )]
    Status(StatusArgs),

    /// Run backups on a schedule: a systemd timer, or a crontab line where systemd is missing
    #[command(subcommand)]
    Schedule(ScheduleCommand),

    /// Send a test notification to the project's notification targets
    #[command(subcommand)]
    Notify(NotifyCommand),
}

#[derive(Debug, Clone, Args)]
pub struct StatusArgs {
    /// How old the newest backup may be before it is stale (26h, 90m, 7d)
    #[arg(long, value_name = "DURATION", value_parser = parse_span)]
    pub max_age: Option<std::time::Duration>,

    /// Directory of backup files (default: `backups` in the project directory)
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

/// Where backup runs report to (see README, "Notifications").
#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "Notification options")]
pub struct NotifyArgs {
    /// Notify this URL (repeatable): a healthchecks-style ping URL, `ntfy://host/topic`,
    /// `webhook+https://…`; added to `x-persist: {notify: …}`
    #[arg(long = "notify", value_name = "URL")]
    pub urls: Vec<String>,

    /// Which results reach ntfy, webhooks and `--notify-command` (ping URLs hear of every run).
    /// Default: `x-persist: {notify: {on: …}}`, else failure
    #[arg(long, value_name = "WHEN", value_enum)]
    pub notify_on: Option<crate::notify::NotifyOn>,

    /// Run this shell command after the run, with the result in `DOCKER_PERSIST_*` variables
    #[arg(long, value_name = "CMD")]
    pub notify_command: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum ScheduleCommand {
    /// Install (or replace) the project's backup schedule
    ///
    /// As root a system timer, otherwise (or with `--user`) a user timer; without systemd the crontab
    /// line is printed, or written with `--cron-file`. The scheduled command is `docker persist backup`
    /// with this project's `-f`, `-p`, `--project-directory`, `--env-file` and Docker context, run in the
    /// project directory.
    #[command(
        after_help = "Arguments after `--` go to the scheduled `docker persist backup` as they are.\n\n\
Examples:\n  docker persist schedule set --daily 03:15\n  \
docker persist schedule set --every 6h --notify https://hc-ping.com/UUID\n  \
docker persist schedule set --cron '30 2 * * mon-fri' --verify -- --all\n  \
docker persist schedule set --daily 03:15 --cron-file /etc/cron.d/docker-persist-app"
    )]
    Set(Box<ScheduleSetArgs>),

    /// Show the installed schedule and its next five runs
    Show,

    /// Remove the project's schedule (timer and service, or the cron file)
    Remove(ScheduleRemoveArgs),
}

#[derive(Debug, Clone, Args)]
#[command(group(clap::ArgGroup::new("when").required(true).args(["daily", "hourly", "every", "cron"])))]
pub struct ScheduleSetArgs {
    /// Every day at this local time (HH:MM)
    #[arg(long, value_name = "HH:MM")]
    pub daily: Option<String>,

    /// Every hour, on the hour
    #[arg(long)]
    pub hourly: bool,

    /// At this interval, aligned on the clock: minutes that divide an hour, hours that divide a day
    /// (15m, 2h, 6h, 1d)
    #[arg(long, value_name = "DURATION", value_parser = parse_span)]
    pub every: Option<std::time::Duration>,

    /// A five-field cron expression (`30 2 * * mon-fri`), or @hourly, @daily, @weekly, @monthly
    #[arg(long, value_name = "EXPR")]
    pub cron: Option<String>,

    /// Send each backup to this destination too (repeatable; passed to `backup --to`)
    #[arg(long = "to", value_name = "DESTINATION")]
    pub to: Vec<String>,

    /// Prune old backups after each backup (passed to `backup --prune`)
    #[arg(long)]
    pub prune: bool,

    /// Verify each new backup right after it is written (`docker persist verify`)
    #[arg(long)]
    pub verify: bool,

    /// Install a user timer (`systemctl --user`) even as root
    #[arg(long)]
    pub user: bool,

    /// Write a cron file (`/etc/cron.d` format, with the user) instead of installing a systemd timer
    #[arg(long, value_name = "PATH", conflicts_with = "systemd")]
    pub cron_file: Option<PathBuf>,

    /// Install a systemd timer even where systemd does not seem to run (`/run/systemd/system` missing)
    #[arg(long)]
    pub systemd: bool,

    /// Start each run up to this much later, at random (systemd's RandomizedDelaySec; default: a tenth
    /// of the schedule's shortest interval, at most 15m)
    #[arg(long, value_name = "DURATION", value_parser = parse_span)]
    pub random_delay: Option<std::time::Duration>,

    /// Print what would be installed, and install nothing
    #[arg(long)]
    pub dry_run: bool,

    /// Arguments for the scheduled `docker persist backup` (after `--`)
    #[arg(value_name = "BACKUP ARGS", last = true)]
    pub backup_args: Vec<String>,

    #[command(flatten)]
    pub notify: NotifyArgs,
}

#[derive(Debug, Clone, Args)]
pub struct ScheduleRemoveArgs {
    /// Print what would be removed, and remove nothing
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Subcommand)]
pub enum NotifyCommand {
    /// Send one test notification to every target (`x-persist: {notify: …}` and `--notify`), whatever
    /// `--notify-on` says; exit 1 if one could not be delivered
    Test(NotifyTestArgs),
}

#[derive(Debug, Clone, Args)]
pub struct NotifyTestArgs {
    #[command(flatten)]
    pub notify: NotifyArgs,
}

/// `26h`, `90m`, `1h30m`, `7d` (days too, unlike Compose's durations).
fn parse_span(s: &str) -> Result<std::time::Duration, String> {
    crate::runs::parse_duration(s)
}

#[derive(Debug, Clone, Args)]
pub struct PruneArgs {
    /// Time zone of the hours, days, weeks, months and years (an IANA name such as `Europe/Berlin`;
    /// default: `tz:` of the retention policy, else the system's)
    #[arg(long, value_name = "ZONE")]
    pub tz: Option<String>,

    /// Where the backups are: `local` (the project's backup directory, the default), a destination of
    /// `x-persist.destinations` (its `retention:` applies), or a directory or URL; repeatable (each place
    /// is pruned on its own, one that fails does not stop the others)
    #[arg(long, value_name = "D")]
    pub from: Vec<String>,

    /// Directory of backup files (default: `backups` in the project directory)
    #[arg(long, value_name = "DIR", conflicts_with = "from")]
    pub dir: Option<PathBuf>,

    /// Show every backup with KEEP or REMOVE and the rule that decided it, and remove nothing
    #[arg(long)]
    pub dry_run: bool,

    /// Do not ask before removing by a policy given on the command line (needed without a terminal)
    #[arg(short, long)]
    pub yes: bool,

    #[command(flatten)]
    pub policy: PolicyArgs,
}

/// restic's `forget` options; any one of them replaces the configured policy as a whole.
#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "Policy (rules are ORed; counts take a number or `unlimited`)")]
pub struct PolicyArgs {
    /// Keep the N newest backups
    #[arg(long, value_name = "N")]
    pub keep_last: Option<Count>,

    /// Keep the newest backup of each of the N most recent hours that have one
    #[arg(long, value_name = "N")]
    pub keep_hourly: Option<Count>,

    /// Keep the newest backup of each of the N most recent days that have one
    #[arg(long, value_name = "N")]
    pub keep_daily: Option<Count>,

    /// Keep the newest backup of each of the N most recent ISO weeks that have one
    #[arg(long, value_name = "N")]
    pub keep_weekly: Option<Count>,

    /// Keep the newest backup of each of the N most recent months that have one
    #[arg(long, value_name = "N")]
    pub keep_monthly: Option<Count>,

    /// Keep the newest backup of each of the N most recent years that have one
    #[arg(long, value_name = "N")]
    pub keep_yearly: Option<Count>,

    /// Keep every backup taken within DURATION of the newest one (`1y2m3d4h`: years, months, days,
    /// hours)
    #[arg(long, value_name = "DURATION")]
    pub keep_within: Option<Within>,

    /// Keep every backup with this tag (repeatable)
    #[arg(long = "keep-tag", value_name = "TAG")]
    pub keep_tags: Vec<String>,
}

impl PolicyArgs {
    /// The policy the flags give, `None` when no policy flag is given.
    pub fn policy(&self) -> Option<Policy> {
        let given = [
            self.keep_last,
            self.keep_hourly,
            self.keep_daily,
            self.keep_weekly,
            self.keep_monthly,
            self.keep_yearly,
        ]
        .iter()
        .any(Option::is_some)
            || self.keep_within.is_some()
            || !self.keep_tags.is_empty();
        given.then(|| Policy {
            keep_last: self.keep_last.unwrap_or_default(),
            keep_hourly: self.keep_hourly.unwrap_or_default(),
            keep_daily: self.keep_daily.unwrap_or_default(),
            keep_weekly: self.keep_weekly.unwrap_or_default(),
            keep_monthly: self.keep_monthly.unwrap_or_default(),
            keep_yearly: self.keep_yearly.unwrap_or_default(),
            keep_within: self.keep_within.unwrap_or_default(),
            keep_tags: self.keep_tags.clone(),
        })
    }
}

#[derive(Debug, Clone, Args)]
pub struct CheckArgs {
    /// Directory of backup files (default: `backups` in the project directory)
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub struct DownArgs {
    /// Back up the unprotected critical and important volumes first (services stopped), verify that
    /// backup, then run `down -v`; nothing is removed if any step fails
    #[arg(long)]
    pub backup: bool,

    /// Run `down -v` even though data is unprotected (asks for the project name on a terminal; needs
    /// `--yes` without one)
    #[arg(long)]
    pub force: bool,

    /// With `--force`: do not ask (needed without a terminal)
    #[arg(short, long)]
    pub yes: bool,

    /// Show what would be backed up and removed, and change nothing
    #[arg(long)]
    pub dry_run: bool,

    /// Directory of backup files (default: `backups` in the project directory)
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,

    /// Arguments for `docker compose down` (`-v`, `--remove-orphans`, `--rmi all`, `-t 5`, …)
    #[arg(
        value_name = "ARGS",
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    pub args: Vec<String>,
}

#[derive(Debug, Clone, Args)]
pub struct CleanArgs {
    /// Volumes to remove: keys or engine names (bind mounts are never removed)
    #[arg(value_name = "VOLUME")]
    pub volumes: Vec<String>,

    /// Remove the volumes of this tier (repeatable)
    #[arg(long = "tier", value_name = "TIER", value_parser = parse_tier)]
    pub tiers: Vec<Tier>,

    /// Show what would be removed and how much space it frees, and change nothing
    #[arg(long)]
    pub dry_run: bool,

    /// Do not ask (needed without a terminal); critical data still needs a fresh backup
    #[arg(short, long)]
    pub yes: bool,

    /// Directory of backup files, for the freshness of critical data (default: `backups` in the project
    /// directory)
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Args)]
#[command(after_help = "Examples:\n  docker persist upgrade --dry-run\n  \
docker persist upgrade db --image postgres:17 --yes\n  docker persist upgrade app --timeout 2m\n  \
docker persist upgrade --finish db      remove the old PostgreSQL volume after a major upgrade\n  \
docker persist upgrade --rollback db    go back to the old PostgreSQL volume and image")]
pub struct UpgradeArgs {
    /// The services to upgrade (default: every service that has a container)
    #[arg(value_name = "SERVICE")]
    pub services: Vec<String>,

    /// The new image (one service only); set in docker persist's override file, never in your Compose
    /// files. Default: the image the Compose file names, pulled first when it comes from a registry
    #[arg(long, value_name = "IMAGE", conflicts_with_all = ["finish", "rollback"])]
    pub image: Option<String>,

    /// How long the new version may take to become healthy before it is rolled back
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = parse_duration)]
    pub timeout: std::time::Duration,

    /// For a service without a healthcheck: how long it must run without restarting to count as healthy
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub settle: std::time::Duration,

    /// After a PostgreSQL major upgrade: remove the old volume (after a confirmation)
    #[arg(long, conflicts_with = "rollback")]
    pub finish: bool,

    /// After a PostgreSQL major upgrade: go back to the old volume and the old image
    #[arg(long)]
    pub rollback: bool,

    /// Go ahead without asking (needed without a terminal)
    #[arg(short, long)]
    pub yes: bool,

    /// Show the plan and change nothing
    #[arg(long)]
    pub dry_run: bool,

    /// Directory of backup files (default: `backups` in the project directory)
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,

    /// How data moves: `fast` or `universal` (see `backup --help`). Default: fast where it works
    #[arg(long = "path", value_name = "PATH", value_enum)]
    pub data_path: Option<DataPath>,

    /// Keys for the rollback's restore of an encrypted `pre-upgrade` backup
    #[command(flatten)]
    pub keys: IdentityArgs,
}

#[derive(Debug, Clone, Args)]
pub struct ShellInitArgs {
    /// The shell to print the function for
    #[arg(value_enum, value_name = "SHELL")]
    pub shell: Shell,
}

/// The shells `shell-init` knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}

/// Options of `docker persist down` itself and of the plugin (project and output); with whether each takes
/// a value. Everything else after `down` belongs to `docker compose down`.
const DOWN_OWN_OPTIONS: &[(&str, bool)] = &[
    ("--backup", false),
    ("--force", false),
    ("--yes", false),
    ("-y", false),
    ("--dry-run", false),
    ("--dir", true),
    ("--json", false),
    ("--quiet", false),
    ("-q", false),
    ("--verbose", false),
    ("--color", true),
    ("--help", false),
    ("-h", false),
    ("--file", true),
    ("-f", true),
    ("--project-name", true),
    ("-p", true),
    ("--project-directory", true),
    ("--env-file", true),
];

/// Options before the subcommand that take a value (to find the subcommand word).
const GLOBAL_VALUE_OPTIONS: &[&str] = &[
    "--file",
    "-f",
    "--project-name",
    "-p",
    "--project-directory",
    "--env-file",
    "--color",
];

/// Rewrites the arguments of `down` so that clap sees `down [OWN OPTIONS] -- [COMPOSE ARGS]`: Compose's
/// `-v` is not our `--verbose`, and options of ours may come anywhere among Compose's. Other
/// subcommands are left as they are.
pub fn route_down_args(args: Vec<OsString>) -> Vec<OsString> {
    let text: Vec<Option<&str>> = args.iter().map(|a| a.to_str()).collect();
    let mut i = 1;
    while i < text.len() {
        match text[i] {
            Some(a) if GLOBAL_VALUE_OPTIONS.contains(&a) => i += 2,
            Some(a) if a.starts_with('-') => i += 1,
            _ => break,
        }
    }
    if text.get(i).copied().flatten() != Some("down") {
        return args;
    }
    let mut own: Vec<OsString> = Vec::new();
    let mut compose: Vec<OsString> = Vec::new();
    let mut j = i + 1;
    while j < args.len() {
        let Some(a) = text[j] else {
            compose.push(args[j].clone());
            j += 1;
            continue;
        };
        if a == "--" {
            compose.extend(args[j + 1..].iter().cloned());
            break;
        }
        let name = a.split_once('=').map_or(a, |(n, _)| n);
        match DOWN_OWN_OPTIONS.iter().find(|(n, _)| *n == name) {
            Some((_, takes_value)) => {
                own.push(args[j].clone());
                if *takes_value && !a.contains('=') && j + 1 < args.len() {
                    own.push(args[j + 1].clone());
                    j += 1;
                }
            }
            None => compose.push(args[j].clone()),
        }
        j += 1;
    }
    let mut out: Vec<OsString> = args[..=i].to_vec();
    out.extend(own);
    out.push(OsString::from("--"));
    out.extend(compose);
    out
}

/// Whether `docker compose down ARGS` removes volumes: `-v`, `--volumes`, `--volumes=true`, or `v` in a
/// cluster of short flags (`-vt5` is not one: `t` takes the rest as its value, but `-v` before it counts).
pub fn down_removes_volumes(args: &[String]) -> bool {
    let mut i = 0;
    let mut on = false;
    while i < args.len() {
        let a = args[i].as_str();
        if a == "--" {
            break;
        }
        if let Some(long) = a.strip_prefix("--") {
            match long.split_once('=') {
                Some(("volumes", v)) => {
                    on = !matches!(v.to_ascii_lowercase().as_str(), "false" | "0" | "f")
                }
                None if long == "volumes" => on = true,
                // Options of `down` that take a separate value: skip it.
                None if matches!(long, "rmi" | "timeout") => i += 1,
                _ => {}
            }
        } else if let Some(short) = a.strip_prefix('-') {
            for (n, c) in short.char_indices() {
                match c {
                    'v' => on = true,
                    // `-t` takes a value: the rest of the cluster, or the next argument.
                    't' => {
                        if n + 1 == short.len() {
                            i += 1;
                        }
                        break;
                    }
                    _ => {}
                }
            }
        }
        i += 1;
    }
    on
}

#[derive(Debug, Clone, Args)]
#[command(
    after_help = "Examples:\n  docker persist migrate dbdata --to /srv/pg --dry-run\n  \
docker persist migrate dbdata --to /srv/pg --yes\n  docker persist migrate --rollback dbdata"
)]
pub struct MigrateArgs {
    /// The volume to migrate (its key in the Compose file, or its engine name)
    #[arg(value_name = "VOLUME")]
    pub volume: String,

    /// The absolute path of the directory on the engine's host that gets the data (created if missing)
    #[arg(
        long,
        value_name = "PATH",
        required_unless_present = "rollback",
        conflicts_with = "rollback"
    )]
    pub to: Option<String>,

    /// Go back to the volume: copy changes made in the directory since the migration into it (after a
    /// safety backup), and remove the Compose change
    #[arg(long)]
    pub rollback: bool,

    /// Copy into a directory that is not empty, such as the partial copy an interrupted migration left:
    /// files the volume has are replaced, and the check afterwards fails if others are in the way
    #[arg(long)]
    pub force: bool,

    /// Go ahead without asking (needed without a terminal, and for an external volume)
    #[arg(short, long)]
    pub yes: bool,

    /// Show the plan and change nothing
    #[arg(long)]
    pub dry_run: bool,

    /// Directory of backup files (default: `backups` in the project directory)
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,

    /// How data moves: `fast` (helper containers run this program on the engine's host and copy on disk;
    /// needs a local engine and a static build) or `universal` (the engine's archive API; works with any
    /// engine). Default: fast where it works, else universal
    #[arg(long = "path", value_name = "PATH", value_enum)]
    pub data_path: Option<DataPath>,
}

/// The keys that read encrypted backups (`restore`, `verify`).
#[derive(Debug, Clone, Default, Args)]
pub struct IdentityArgs {
    /// An identity file that decrypts encrypted backups: an age identity (`key init`, `age-keygen`) or an
    /// unencrypted ssh private key (ed25519, RSA). Repeatable
    #[arg(
        long = "identity",
        value_name = "FILE",
        env = "DOCKER_PERSIST_IDENTITY"
    )]
    pub identities: Vec<PathBuf>,

    /// A file whose first line is the passphrase of passphrase-encrypted backups
    #[arg(long, value_name = "FILE", env = "DOCKER_PERSIST_PASSPHRASE_FILE")]
    pub passphrase_file: Option<PathBuf>,

    /// Use an identity file that group or others can read (refused otherwise, as ssh does)
    #[arg(long)]
    pub insecure_identity: bool,
}

/// How a backup is encrypted (`backup`), beyond `x-persist: {encrypt: …}`.
#[derive(Debug, Clone, Default, Args)]
pub struct EncryptArgs {
    /// Encrypt to this recipient too: an age public key (`age1…`), an ssh public key (`ssh-ed25519 …`,
    /// `ssh-rsa …`) or `file:PATH` (one per line). Repeatable
    #[arg(
        long = "encrypt-to",
        value_name = "RECIPIENT",
        conflicts_with = "no_encrypt"
    )]
    pub encrypt_to: Vec<String>,

    /// Encrypt with the passphrase in this file's first line (scrypt); can be combined with recipients
    #[arg(long, value_name = "FILE", env = "DOCKER_PERSIST_PASSPHRASE_FILE")]
    pub passphrase_file: Option<PathBuf>,

    /// Write a plain backup although `x-persist: {encrypt: …}` names recipients (said in a warning)
    #[arg(long)]
    pub no_encrypt: bool,
}

/// `key …` subcommands.
#[derive(Debug, Clone, Subcommand)]
pub enum KeyCommand {
    /// Write a new age identity (mode 0600) and its public key (`PATH.pub`), and print the public key
    Init(KeyInitArgs),
}

#[derive(Debug, Clone, Args)]
pub struct KeyInitArgs {
    /// Where to write the identity (default: `$XDG_CONFIG_HOME/docker-persist/identity.txt`, else
    /// `~/.config/docker-persist/identity.txt`); never overwritten
    #[arg(value_name = "PATH")]
    pub path: Option<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub struct RestoreArgs {
    /// A backup file (`….tar`), then the volumes to restore from it (default: the newest backup, every
    /// volume in it)
    #[arg(value_name = "BACKUP|VOLUME")]
    pub args: Vec<String>,

    /// Restore only volumes of this tier (repeatable)
    #[arg(long = "tier", value_name = "TIER", value_parser = parse_tier)]
    pub tiers: Vec<Tier>,

    /// Restore into a new volume of this name; the original is left untouched
    #[arg(long = "as", value_name = "NAME")]
    pub as_name: Option<String>,

    /// Replace data without asking (needed without a terminal)
    #[arg(short, long)]
    pub yes: bool,

    /// Skip the backup of the data being replaced
    #[arg(long)]
    pub no_safety_backup: bool,

    /// Leave the services stopped afterwards
    #[arg(long)]
    pub no_start: bool,

    /// Restore from this destination (streamed, not copied first): a name from `x-persist.destinations`,
    /// `local`, a directory, `s3://bucket/prefix` or `sftp://user@host/path`
    #[arg(long, value_name = "DEST")]
    pub from: Option<String>,

    /// Show what would be restored, replaced, stopped and recreated, and change nothing
    #[arg(long)]
    pub dry_run: bool,

    /// Directory of backup files (default: `backups` in the project directory)
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,

    /// How data moves: `fast` (a helper container runs this program on the engine's host and reads or
    /// writes the volume on disk; needs a local engine and a static build) or `universal` (the engine's
    /// archive API; works with any engine). Default: fast where it works, else universal
    #[arg(long = "path", value_name = "PATH", value_enum)]
    pub data_path: Option<DataPath>,

    #[command(flatten)]
    pub keys: IdentityArgs,
}

#[derive(Debug, Clone, Args)]
pub struct BackupArgs {
    /// Volumes to back up: keys, engine names or bind paths (default: by tier)
    #[arg(value_name = "VOLUME")]
    pub volumes: Vec<String>,

    /// Back up data of this tier (repeatable; default: critical and important)
    #[arg(long = "tier", value_name = "TIER", value_parser = parse_tier, conflicts_with = "all")]
    pub tiers: Vec<Tier>,

    /// Back up data of every tier
    #[arg(long)]
    pub all: bool,

    /// Directory for backup files (default: `backups` in the project directory)
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,

    /// A label added to the file name: `<project>-<time>-<tag>.tar`
    #[arg(long, value_name = "LABEL", value_parser = parse_tag)]
    pub tag: Option<String>,

    /// Also store the backup at this destination (repeatable): a name from `x-persist.destinations`, a
    /// directory, `s3://bucket/prefix` or `sftp://user@host/path`. Default: the destinations marked
    /// `default: true`. The local file is always kept; a destination that fails makes the exit status 1
    #[arg(long = "to", value_name = "DEST")]
    pub to: Vec<String>,

    /// zstd compression level, 1 (fastest) to 19 (smallest)
    #[arg(long, value_name = "N", default_value_t = 3, value_parser = clap::value_parser!(i32).range(1..=19))]
    pub level: i32,

    /// zstd worker threads (0: compress on the thread that writes). Default: 2 with 2 cores or more (≈50
    /// MB of memory instead of ≈22 MB, for a faster backup on both data paths), else 0
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(0..=64))]
    pub threads: Option<u32>,

    /// How data moves: `fast` (a helper container runs this program on the engine's host and reads or
    /// writes the volume on disk; needs a local engine and a static build) or `universal` (the engine's
    /// archive API; works with any engine). Default: fast where it works, else universal
    #[arg(long = "path", value_name = "PATH", value_enum)]
    pub data_path: Option<DataPath>,

    /// How each volume is kept consistent while it is read: `stop` (its running containers are stopped
    /// while it is read and started again right after), `live` (copied while they run) or `auto` (stop for
    /// critical and important data, live for the rest). Default: `x-persist: {consistency: …}` of the
    /// volume, else of the project, else auto
    #[arg(long, value_name = "MODE", value_enum)]
    pub consistency: Option<ConsistencyChoice>,

    #[command(flatten)]
    pub encrypt: EncryptArgs,

    /// How long to wait for another backup of the project that still runs, before giving up
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = parse_span)]
    pub lock_timeout: std::time::Duration,

    #[command(flatten)]
    pub notify: NotifyArgs,

    /// After a successful backup (and only then), prune by the configured retention policy (the
    /// destination's `retention:`, else `x-persist.retention`)
    #[arg(long)]
    pub prune: bool,
}

/// The consistency modes `--consistency` accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ConsistencyChoice {
    /// Stop for critical and important data, live for the rest
    Auto,
    /// Stop the running containers that mount the volume while it is read
    Stop,
    /// Copy while the services keep running
    Live,
}

impl From<ConsistencyChoice> for crate::compose::Consistency {
    fn from(c: ConsistencyChoice) -> Self {
        match c {
            ConsistencyChoice::Auto => crate::compose::Consistency::Auto,
            ConsistencyChoice::Stop => crate::compose::Consistency::Stop,
            ConsistencyChoice::Live => crate::compose::Consistency::Live,
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct PushArgs {
    /// The backup file: a path, or a file name in the backup directory
    #[arg(value_name = "BACKUP")]
    pub backup: PathBuf,

    /// Where to store it (repeatable): a name from `x-persist.destinations`, a directory,
    /// `s3://bucket/prefix` or `sftp://user@host/path`
    #[arg(long = "to", value_name = "DEST", required = true)]
    pub to: Vec<String>,

    /// Directory of backup files (default: `backups` in the project directory)
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub struct DestinationsArgs {
    /// Directory of backup files, the destination `local` (default: `backups` in the project directory)
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,

    /// List them without testing them
    #[arg(long)]
    pub no_check: bool,
}

#[derive(Debug, Clone, Args)]
pub struct BackupsArgs {
    /// Directory of backup files (default: `backups` in the project directory)
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,

    /// Read from this destination instead of the local directory: a name from `x-persist.destinations`,
    /// `local`, a directory, `s3://bucket/prefix` or `sftp://user@host/path`
    #[arg(long, value_name = "DEST")]
    pub from: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct VerifyArgs {
    /// The backup file (default: the project's newest)
    #[arg(value_name = "BACKUP")]
    pub backup: Option<PathBuf>,

    /// Directory of backup files (default: `backups` in the project directory)
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,

    /// Also restore every volume into a scratch volume and compare its content digest as the engine
    /// reads it back (the scratch volumes are removed afterwards)
    #[arg(long)]
    pub restore_test: bool,

    /// Read from this destination instead of the local directory: a name from `x-persist.destinations`,
    /// `local`, a directory, `s3://bucket/prefix` or `sftp://user@host/path`
    #[arg(long, value_name = "DEST")]
    pub from: Option<String>,

    /// How data moves: `fast` (a helper container runs this program on the engine's host and writes the
    /// scratch volume on disk; needs a local engine and a static build) or `universal` (the engine's
    /// archive API; works with any engine). Default: fast where it works, else universal
    #[arg(long = "path", value_name = "PATH", value_enum)]
    pub data_path: Option<DataPath>,

    #[command(flatten)]
    pub keys: IdentityArgs,
}

#[derive(Debug, Clone, Args)]
pub struct LsArgs {
    /// Only show data of this tier (repeatable)
    #[arg(long = "tier", value_name = "TIER", value_parser = parse_tier)]
    pub tiers: Vec<Tier>,

    /// Directory of backup files, for the last backup of each volume (default: `backups` in the project
    /// directory)
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub struct InspectArgs {
    /// Volume key (as in the Compose file), engine volume name, or bind mount path
    #[arg(value_name = "VOLUME")]
    pub volume: String,
}

/// The first argument that runs this program as a fast-path helper inside a container (never shown in
/// `--help`: only docker persist itself starts helpers).
pub const HELPER_ARG: &str = "__helper";

/// What a fast-path helper does, inside its container: `docker-persist __helper OP …`.
#[derive(Debug, Parser)]
#[command(name = "docker-persist __helper", no_binary_name = true)]
pub struct HelperCli {
    #[command(subcommand)]
    pub op: HelperOp,
}

#[derive(Debug, Subcommand)]
pub enum HelperOp {
    /// Write the tar of `--root` to the socket
    Pack(HelperArgs),
    /// Unpack the tar read from the socket into `--root`, then digest what is on disk
    Unpack(HelperArgs),
    /// Remove everything below `--root` (not `--root` itself)
    Clear(HelperArgs),
}

impl HelperOp {
    pub fn args(&self) -> &HelperArgs {
        match self {
            HelperOp::Pack(a) | HelperOp::Unpack(a) | HelperOp::Clear(a) => a,
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct HelperArgs {
    /// The unix socket docker persist listens on
    #[arg(long, value_name = "PATH")]
    pub socket: PathBuf,
    /// Sent first on the socket: tells docker persist which helper connected
    #[arg(long, value_name = "HEX")]
    pub nonce: String,
    /// Where the report (JSON) goes
    #[arg(long, value_name = "PATH")]
    pub result: PathBuf,
    /// The tree to pack or unpack into
    #[arg(long, value_name = "DIR")]
    pub root: PathBuf,
    /// Entries of the tar to unpack lie under this directory
    #[arg(long, value_name = "DIR")]
    pub strip_prefix: Option<String>,
    /// The version of the content digest to compute after unpacking: the version of the digest it is
    /// compared with
    #[arg(long, value_name = "v1|v2", default_value = "v2")]
    pub digest: DigestVersion,
}

fn parse_tag(s: &str) -> Result<String, String> {
    crate::archive::validate_tag(s)
        .map(|()| s.to_string())
        .map_err(|e| e.to_string())
}

fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    crate::compose::load::parse_timeout(&serde_json::Value::String(s.to_string()))
        .map_err(|_| format!("expected a duration like `30s`, `2m` or `1h`, not `{s}`"))
}

fn parse_tier(s: &str) -> Result<Tier, String> {
    s.parse()
        .map_err(|e: crate::compose::model::InvalidTier| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(args: &[&str]) -> SplitArgs {
        split_docker_globals(args.iter().map(OsString::from).collect()).unwrap()
    }

    fn rest(s: &SplitArgs) -> Vec<String> {
        s.args[1..]
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn plugin_argv_drops_the_persist_word() {
        let s = split(&["docker-persist", "persist", "ls", "--json"]);
        assert_eq!(rest(&s), ["ls", "--json"]);
        assert_eq!(s.globals, DockerGlobals::default());
    }

    #[test]
    fn docker_globals_before_persist_are_collected() {
        let s = split(&[
            "docker-persist",
            "-H",
            "tcp://h:2376",
            "--tlsverify",
            "--tlscacert=/c/ca.pem",
            "-D",
            "--log-level",
            "debug",
            "persist",
            "ls",
        ]);
        assert_eq!(s.globals.host.as_deref(), Some("tcp://h:2376"));
        assert!(s.globals.tls_verify);
        assert!(s.globals.debug);
        assert_eq!(s.globals.tls_ca_cert, Some(PathBuf::from("/c/ca.pem")));
        assert_eq!(s.globals.log_level.as_deref(), Some("debug"));
        assert_eq!(rest(&s), ["ls"]);
    }

    #[test]
    fn short_flags_with_attached_values() {
        let s = split(&["docker-persist", "-cremote", "-Hunix:///x.sock", "persist"]);
        assert_eq!(s.globals.context.as_deref(), Some("remote"));
        assert_eq!(s.globals.host.as_deref(), Some("unix:///x.sock"));
        assert!(rest(&s).is_empty());
    }

    #[test]
    fn standalone_argv_is_left_alone() {
        let s = split(&["docker-persist", "ls", "-p", "x"]);
        assert_eq!(rest(&s), ["ls", "-p", "x"]);
        let s = split(&["docker-persist", "--context", "c", "ls"]);
        assert_eq!(s.globals.context.as_deref(), Some("c"));
        assert_eq!(rest(&s), ["ls"]);
    }

    #[test]
    fn our_own_flags_after_persist_are_not_taken_as_docker_flags() {
        let s = split(&["docker-persist", "persist", "-f", "a.yml", "ls"]);
        assert_eq!(rest(&s), ["-f", "a.yml", "ls"]);
    }

    #[test]
    fn missing_value_is_an_error() {
        let e = split_docker_globals(vec!["d".into(), "-H".into()]).unwrap_err();
        assert_eq!(e, GlobalsError::MissingValue("-H".into()));
    }

    fn strings(args: &[&str]) -> Vec<String> {
        args.iter().map(|s| s.to_string()).collect()
    }

    fn routed(args: &[&str]) -> Vec<String> {
        route_down_args(args.iter().map(OsString::from).collect())
            .into_iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn down_arguments_go_to_compose_except_our_own() {
        assert_eq!(
            routed(&[
                "dp", "-p", "x", "down", "-v", "--backup", "--rmi", "all", "--dir=b"
            ]),
            [
                "dp", "-p", "x", "down", "--backup", "--dir=b", "--", "-v", "--rmi", "all"
            ]
        );
        assert_eq!(
            routed(&[
                "dp", "down", "--dir", "b", "-t", "3", "-f", "c.yml", "--", "--backup"
            ]),
            [
                "dp", "down", "--dir", "b", "-f", "c.yml", "--", "-t", "3", "--backup"
            ]
        );
        // Other subcommands are untouched.
        assert_eq!(routed(&["dp", "ls", "-v"]), ["dp", "ls", "-v"]);
        let cli = Cli::try_parse_from(routed(&["dp", "down", "-v", "--yes", "--force"])).unwrap();
        let Command::Down(d) = cli.command else {
            panic!("not down")
        };
        assert!(d.yes && d.force && !cli.output.verbose);
        assert_eq!(d.args, ["-v"]);
    }

    #[test]
    fn down_volume_flag_is_found_in_every_spelling() {
        for yes in [
            &["-v"][..],
            &["--volumes"],
            &["--volumes=true"],
            &["--rmi", "all", "-v"],
            &["--remove-orphans", "-vt", "3"],
            &["-t", "3", "--volumes"],
        ] {
            assert!(down_removes_volumes(&strings(yes)), "{yes:?}");
        }
        for no in [
            &[][..],
            &["--volumes=false"],
            &["--remove-orphans"],
            &["-t", "3"],
            &["-tv"],
            &["--rmi", "all"],
            &["--", "-v"],
        ] {
            assert!(!down_removes_volumes(&strings(no)), "{no:?}");
        }
    }

    #[test]
    fn cli_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
        HelperCli::command().debug_assert();
    }

    #[test]
    fn helper_arguments_parse_without_a_binary_name() {
        let cli = HelperCli::try_parse_from([
            "unpack",
            "--socket",
            "/io/s",
            "--nonce",
            "ab",
            "--result",
            "/io/r.json",
            "--root",
            "/data",
            "--strip-prefix",
            "data",
            "--digest",
            "v1",
        ])
        .unwrap();
        assert!(matches!(cli.op, HelperOp::Unpack(_)));
        assert_eq!(cli.op.args().strip_prefix.as_deref(), Some("data"));
        assert_eq!(cli.op.args().root, PathBuf::from("/data"));
        assert_eq!(cli.op.args().digest, DigestVersion::V1);
    }

    #[test]
    fn helper_digests_the_current_version_unless_told() {
        let cli = HelperCli::try_parse_from([
            "unpack", "--socket", "/io/s", "--nonce", "ab", "--result", "/r", "--root", "/data",
        ])
        .unwrap();
        assert_eq!(cli.op.args().digest, DigestVersion::V2);
        assert!(
            HelperCli::try_parse_from([
                "unpack", "--socket", "/s", "--nonce", "ab", "--result", "/r", "--root", "/d",
                "--digest", "v3",
            ])
            .is_err()
        );
    }
}
