//! The arguments of each command, and the subcommands of `schedule`, `notify` and `key`.

use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};

use super::options::{
    ConsistencyChoice, DataPath, EncryptArgs, IdentityArgs, NotifyArgs, PolicyArgs,
};
use super::parsers::{parse_duration, parse_span, parse_tag, parse_tier};
use crate::compose::Tier;

#[derive(Debug, Clone, Args)]
pub struct StatusArgs {
    /// How old the newest backup may be before it is stale (26h, 90m, 7d)
    #[arg(long, value_name = "DURATION", value_parser = parse_span)]
    pub max_age: Option<std::time::Duration>,

    /// Directory of backup files (default: `backups` in the project directory)
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
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
