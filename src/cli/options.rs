//! The option groups several commands share: project and output options (global), the data path, colour,
//! notification targets, a retention policy, the keys that decrypt and encrypt, and the consistency modes.

use std::path::PathBuf;

use clap::{Args, ValueEnum};

use crate::retention::{Count, Policy, Within};

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
