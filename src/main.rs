//! The `docker-persist` executable: answers the Docker CLI's metadata query, splits Docker's global flags
//! from ours, parses arguments, runs the command and maps its outcome to an exit code.

use std::process::ExitCode;

use clap::Parser;
use docker_persist::cli::{Cli, route_down_args, split_docker_globals};
use docker_persist::commands::ExitStatus;
use docker_persist::report::Printer;
use docker_persist::{classify_error, plugin, run};

fn main() -> ExitCode {
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if argv.get(1).is_some_and(|a| a == plugin::METADATA_ARG) {
        println!("{}", plugin::metadata_json());
        return ExitCode::SUCCESS;
    }
    if argv
        .get(1)
        .is_some_and(|a| a == docker_persist::cli::HELPER_ARG)
    {
        return docker_persist::fastpath::inside::main(argv[2..].to_vec());
    }
    let split = match split_docker_globals(argv) {
        Ok(split) => split,
        Err(e) => {
            Printer::plain().error(&e.to_string(), &[], &[]);
            return ExitCode::from(ExitStatus::Usage.code());
        }
    };
    let cli = match Cli::try_parse_from(route_down_args(split.args)) {
        Ok(cli) => cli,
        Err(e) => {
            // Help and version go to stdout with exit 0; usage errors to stderr with exit 2.
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() {
                ExitStatus::Usage.code()
            } else {
                0
            });
        }
    };
    let printer = Printer::new(&cli.output);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            printer.error(&format!("failed to start the async runtime: {e}"), &[], &[]);
            return ExitCode::from(ExitStatus::Failure.code());
        }
    };
    let outcome = runtime.block_on(run(split.globals, cli, &printer));
    // Give blocking work (a backup being written) a moment to notice an interruption and remove its partial
    // file; do not wait for a long bind mount walk.
    runtime.shutdown_timeout(std::time::Duration::from_secs(10));
    match outcome {
        Ok(status) => ExitCode::from(status.code()),
        Err(err) => {
            let (status, hints) = classify_error(&err);
            let causes: Vec<String> = err.chain().skip(1).map(|c| c.to_string()).collect();
            printer.error(&err.to_string(), &causes, &hints);
            ExitCode::from(status.code())
        }
    }
}
