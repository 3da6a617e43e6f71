//! Shows which engine `docker persist` would reach from this shell and what that engine says about
//! itself: a manual check of endpoint resolution and connection against real engines.
//!
//! `cargo run --example engine_info -- [DOCKER GLOBAL FLAGS]`, e.g. `-H tcp://127.0.0.1:23760 --tlsverify`
//! or `--context remote`; the environment (`DOCKER_HOST`, `DOCKER_CONTEXT`, …) is honoured as by docker.

use std::error::Error;
use std::process::ExitCode;

use docker_persist::cli::split_docker_globals;
use docker_persist::context;
use docker_persist::engine::Engine;

fn print_error(e: &dyn Error) {
    eprintln!("error: {e}");
    let mut cause = e.source();
    while let Some(c) = cause {
        eprintln!("  caused by: {c}");
        cause = c.source();
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let split = match split_docker_globals(std::env::args_os().collect()) {
        Ok(s) => s,
        Err(e) => {
            print_error(&e);
            return ExitCode::from(2);
        }
    };
    let env = std::env::vars().collect();
    let endpoint = match context::resolve(&split.globals, &env) {
        Ok(ep) => ep,
        Err(e) => {
            print_error(&e);
            return ExitCode::FAILURE;
        }
    };
    println!("context:  {}", endpoint.context);
    println!("host:     {}", endpoint.host);
    println!("source:   {}", endpoint.source);
    match &endpoint.tls {
        None => println!("tls:      off"),
        Some(t) => println!(
            "tls:      verify={} ca={:?} cert={:?} key={:?}",
            t.verify, t.ca, t.cert, t.key
        ),
    }
    println!("local:    {}", endpoint.is_local());
    let engine = match Engine::connect(&endpoint).await {
        Ok(e) => e,
        Err(e) => {
            print_error(&e);
            if let Some(kind) = e.connect_failure() {
                eprintln!("  (failure kind: {kind:?})");
                eprintln!(
                    "hint: is the Docker daemon running? `docker context ls` shows where docker persist connects"
                );
            }
            return ExitCode::FAILURE;
        }
    };
    match engine.version().await {
        Ok(v) => {
            println!(
                "engine:   {} (API {}, {}/{})",
                v.version, v.api_version, v.os, v.arch
            );
            println!(
                "client API version after negotiation: {}",
                engine.api_version()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            print_error(&e);
            ExitCode::FAILURE
        }
    }
}
