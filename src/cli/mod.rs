//! Command-line definition (clap derive, no logic) and the split of Docker's own global flags, which the
//! Docker CLI passes before the word `persist`.
//!
//! The parts live in files of their own: Docker's global flags (`globals.rs`), the option groups several
//! commands share (`options.rs`), each command's arguments (`args.rs`), the value parsers (`parsers.rs`),
//! the routing of `down`'s arguments (`down.rs`) and a fast-path helper's command line (`helper.rs`).

use clap::{Parser, Subcommand};

mod args;
mod down;
mod globals;
mod helper;
mod options;
mod parsers;

pub use args::{
    BackupArgs, BackupsArgs, CheckArgs, CleanArgs, DestinationsArgs, DownArgs, InspectArgs,
    KeyCommand, KeyInitArgs, LsArgs, MigrateArgs, NotifyCommand, NotifyTestArgs, PruneArgs,
    PushArgs, RestoreArgs, ScheduleCommand, ScheduleRemoveArgs, ScheduleSetArgs, Shell,
    ShellInitArgs, StatusArgs, UpgradeArgs, VerifyArgs,
};
pub use down::{down_removes_volumes, route_down_args};
pub use globals::{DockerGlobals, GlobalsError, SplitArgs, split_docker_globals};
pub use helper::{HELPER_ARG, HelperArgs, HelperCli, HelperOp};
pub use options::{
    ColorChoice, ConsistencyChoice, DataPath, EncryptArgs, IdentityArgs, NotifyArgs, OutputArgs,
    PolicyArgs, ProjectArgs,
};

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
        HelperCli::command().debug_assert();
    }
}
