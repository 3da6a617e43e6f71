//! docker-persist: back up, restore, verify and protect the data of Docker Compose projects, keyed to a tier
//! for every volume and bind mount.
//!
//! `main.rs` parses arguments and calls [`run`]; everything else lives in the modules below.

pub mod archive;
pub mod calendar;
pub mod cancel;
pub mod cli;
pub mod commands;
pub mod compose;
pub mod context;
pub mod destination;
pub mod encryption;
pub mod engine;
pub mod fastpath;
pub mod intent;
pub mod inventory;
pub mod notify;
pub mod pipe;
pub mod plugin;
pub mod report;
pub mod retention;
pub mod runs;
pub mod schedule;
pub mod state;

use cli::{Cli, Command, DockerGlobals};
use commands::{ExitStatus, Session};
use report::Printer;

/// Runs one parsed command line. Ctrl-C and the Docker CLI closing the plugin socket end it with
/// [`ExitStatus::Interrupted`]; the command's own guards clean up as its future is dropped.
pub async fn run(
    globals: DockerGlobals,
    cli: Cli,
    printer: &Printer,
) -> anyhow::Result<ExitStatus> {
    let session = Session {
        globals: &globals,
        project_args: &cli.project,
        printer,
        engine: tokio::sync::OnceCell::new(),
        restarts: std::sync::Mutex::new(Vec::new()),
        notes: std::sync::Mutex::new(Vec::new()),
        host: std::sync::OnceLock::new(),
        command: command_name(&cli.command),
        intent: std::sync::Mutex::new(None),
        unresolved: std::sync::Mutex::new(Vec::new()),
        post_hooks: std::sync::Mutex::new(Vec::new()),
        run: std::sync::Mutex::new(recorded_run(&cli.command)),
    };
    // Uploads a killed command left open at a destination are aborted first (parts left to bill,
    // `.partial` files), by every command that may use a destination.
    if !matches!(
        cli.command,
        Command::Rules | Command::ShellInit(_) | Command::Key(_)
    ) {
        destination::unfinished::resolve_abandoned(printer).await;
    }
    let command = async {
        match &cli.command {
            Command::Ls(args) => commands::ls::run(&session, args).await,
            Command::Inspect(args) => commands::inspect::run(&session, args).await,
            Command::Backup(args) => commands::backup::run(&session, args).await,
            Command::Backups(args) => commands::backups::run(&session, args).await,
            Command::Verify(args) => commands::verify::run(&session, args).await,
            Command::Restore(args) => commands::restore::run(&session, args).await,
            Command::Migrate(args) => commands::migrate::run(&session, args).await,
            Command::Rules => commands::rules::run(printer),
            Command::Check(args) => commands::guard::check(&session, args).await,
            Command::Down(args) => commands::guard::down(&session, args).await,
            Command::Clean(args) => commands::clean::run(&session, args).await,
            Command::Push(args) => commands::push::run(&session, args).await,
            Command::Destinations(args) => commands::destinations::run(&session, args).await,
            Command::ShellInit(args) => commands::guard::shell_init(printer, args),
            Command::Status(args) => commands::status::run(&session, args).await,
            Command::Schedule(cmd) => commands::schedule::run(&session, cmd).await,
            Command::Notify(cmd) => commands::notify_test::run(&session, cmd).await,
            Command::Prune(args) => commands::prune::run(&session, args).await,
            Command::Upgrade(args) => commands::upgrade::run(&session, args).await,
            Command::Key(cli::KeyCommand::Init(args)) => commands::key::init(printer, args),
        }
    };
    // `upgrade` answers an interruption itself: once the new version runs, Ctrl-C rolls it back.
    let handles_interrupts = matches!(cli.command, Command::Upgrade(_));
    let outcome = if handles_interrupts {
        command.await
    } else {
        tokio::select! {
            result = command => result,
            () = plugin::interrupted() => {
                cancel::cancel();
                printer.warn("interrupted; cleaning up");
                // Uploads cut short are aborted (no parts left to bill), unfinished remote files removed.
                destination::finish_cleanups(std::time::Duration::from_secs(20)).await;
                Ok(ExitStatus::Interrupted)
            }
        }
    };
    session
        .cleanup(matches!(outcome, Ok(ExitStatus::Success)))
        .await;
    commands::runlog::finish(&session, &outcome).await;
    outcome
}

/// The command's name in intent records.
fn command_name(command: &Command) -> &'static str {
    match command {
        Command::Ls(_) => "ls",
        Command::Inspect(_) => "inspect",
        Command::Backup(_) => "backup",
        Command::Backups(_) => "backups",
        Command::Verify(_) => "verify",
        Command::Restore(_) => "restore",
        Command::Migrate(m) if m.rollback => "migrate --rollback",
        Command::Migrate(_) => "migrate",
        Command::Rules => "rules",
        Command::Check(_) => "check",
        Command::Down(_) => "down",
        Command::Clean(_) => "clean",
        Command::Push(_) => "push",
        Command::Destinations(_) => "destinations",
        Command::ShellInit(_) => "shell-init",
        Command::Prune(_) => "prune",
        Command::Upgrade(u) if u.finish => "upgrade --finish",
        Command::Upgrade(u) if u.rollback => "upgrade --rollback",
        Command::Upgrade(_) => "upgrade",
        Command::Key(_) => "key",
        Command::Status(_) => "status",
        Command::Schedule(_) => "schedule",
        Command::Notify(_) => "notify",
    }
}

/// The run record a command keeps, if it keeps one: those that make, restore or check backups.
fn recorded_run(command: &Command) -> Option<commands::runlog::RunContext> {
    use commands::runlog::RunContext;
    match command {
        Command::Backup(args) => Some(RunContext::new("backup", Some(args.notify.clone()))),
        Command::Restore(args) if !args.dry_run => Some(RunContext::new("restore", None)),
        Command::Verify(_) => Some(RunContext::new("verify", None)),
        _ => None,
    }
}

/// Maps an error to its exit status and the hints that help with it.
pub fn classify_error(err: &anyhow::Error) -> (ExitStatus, Vec<String>) {
    use compose::ComposeError;
    use context::ContextError;
    use engine::{ConnectFailure, EngineError};

    for cause in err.chain() {
        if let Some(e) = cause.downcast_ref::<commands::restore::Refused>() {
            return (ExitStatus::Refused, vec![e.hint.clone()]);
        }
        if let Some(e) = cause.downcast_ref::<commands::UsageError>() {
            return (ExitStatus::Usage, e.hint.iter().cloned().collect());
        }
        if let Some(e) = cause.downcast_ref::<EngineError>() {
            let hints = match e.connect_failure() {
                Some(ConnectFailure::PermissionDenied) => vec![
                    "add this user to the `docker` group, or run with the rights to open the socket"
                        .to_string(),
                ],
                Some(ConnectFailure::Tls) => vec![
                    "check the certificates of the context or of `--tlscacert`/`--tlscert`/`--tlskey`"
                        .to_string(),
                ],
                Some(_) => vec![
                    "is the Docker daemon running? `docker context ls` shows where docker persist connects"
                        .to_string(),
                ],
                None => Vec::new(),
            };
            return (ExitStatus::Failure, hints);
        }
        if let Some(e) = cause.downcast_ref::<ContextError>() {
            let hint = match e {
                ContextError::NotFound { .. } => {
                    vec!["`docker context ls` lists the contexts".to_string()]
                }
                ContextError::HostAndContext => {
                    return (ExitStatus::Usage, Vec::new());
                }
                _ => Vec::new(),
            };
            return (ExitStatus::Failure, hint);
        }
        if let Some(e) = cause.downcast_ref::<archive::ArchiveError>() {
            let hint = match e {
                archive::ArchiveError::Locked {
                    source: archive::UnlockError::NoKeys { .. },
                    ..
                } => vec![
                    "pass its identity with `--identity FILE` (or `DOCKER_PERSIST_IDENTITY`), or its passphrase with `--passphrase-file FILE`"
                        .to_string(),
                ],
                archive::ArchiveError::Locked {
                    source: archive::UnlockError::NoMatchingIdentity { .. },
                    ..
                } => vec![
                    "`ssh-keygen -lf KEY.pub` prints an ssh key's fingerprint; an age key's is SHA256 of its `age1…` text (docs/format.md)"
                        .to_string(),
                ],
                _ => Vec::new(),
            };
            if !hint.is_empty() {
                return (ExitStatus::Failure, hint);
            }
        }
        if cause
            .downcast_ref::<encryption::InsecureIdentity>()
            .is_some()
        {
            return (
                ExitStatus::Failure,
                vec![
                    "`chmod 600` the file, or pass `--insecure-identity` to use it anyway"
                        .to_string(),
                ],
            );
        }
        if let Some(e) = cause.downcast_ref::<ComposeError>() {
            let hint = match e {
                ComposeError::NotFound { .. } => vec![
                    "run it in a Compose project's directory, or name the file with `-f FILE`"
                        .to_string(),
                ],
                ComposeError::MissingVariable { name, .. } => vec![format!(
                    "set `{name}` in the environment or in the project's `.env` file"
                )],
                _ => Vec::new(),
            };
            return (ExitStatus::Failure, hint);
        }
    }
    (ExitStatus::Failure, Vec::new())
}
