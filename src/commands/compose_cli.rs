//! Running Compose itself, for what only Compose should do: recreating a service's container after its
//! volume was recreated. The Docker CLI that started the plugin (`DOCKER_CLI_PLUGIN_ORIGINAL_CLI_COMMAND`)
//! runs `docker compose`; Compose v1 (`docker-compose` on PATH) serves projects it made, or when v2 is
//! missing.

use std::path::PathBuf;

use anyhow::{Context as _, bail};

use crate::cli::DockerGlobals;
use crate::compose::Project;

/// The environment variable the Docker CLI sets to its own path when it runs a plugin.
pub const ORIGINAL_CLI_ENV: &str = "DOCKER_CLI_PLUGIN_ORIGINAL_CLI_COMMAND";

/// How to run Compose for `project`: the program and the arguments before the Compose subcommand.
pub struct ComposeCli {
    program: PathBuf,
    prefix: Vec<String>,
}

impl ComposeCli {
    /// Picks Compose v1 when `prefer_v1` (the project's containers were made by it) and it is installed,
    /// else `docker compose` through the Docker CLI, else v1.
    pub fn find(
        globals: &DockerGlobals,
        project: &Project,
        prefer_v1: bool,
    ) -> anyhow::Result<ComposeCli> {
        ComposeCli::find_for(
            globals,
            &project.name,
            &project.directory,
            &project.files,
            prefer_v1,
        )
    }

    /// [`ComposeCli::find`] for a project known by its name, directory and files.
    pub fn find_for(
        globals: &DockerGlobals,
        name: &str,
        directory: &std::path::Path,
        files: &[PathBuf],
        prefer_v1: bool,
    ) -> anyhow::Result<ComposeCli> {
        let v1 = which::which("docker-compose").ok();
        let docker = std::env::var_os(ORIGINAL_CLI_ENV)
            .map(PathBuf::from)
            .or_else(|| which::which("docker").ok());
        let mut project_args = vec![
            "--project-name".to_string(),
            name.to_string(),
            "--project-directory".to_string(),
            directory.display().to_string(),
        ];
        for f in files {
            project_args.push("--file".to_string());
            project_args.push(f.display().to_string());
        }
        match (prefer_v1, v1, docker) {
            (true, Some(v1), _) | (false, Some(v1), None) => {
                let mut prefix = Vec::new();
                if let Some(h) = &globals.host {
                    prefix.extend(["--host".to_string(), h.clone()]);
                }
                if let Some(c) = &globals.context {
                    prefix.extend(["--context".to_string(), c.clone()]);
                }
                prefix.extend(project_args);
                Ok(ComposeCli {
                    program: v1,
                    prefix,
                })
            }
            (_, _, Some(docker)) => {
                let mut prefix = docker_global_args(globals);
                prefix.push("compose".to_string());
                prefix.extend(project_args);
                Ok(ComposeCli {
                    program: docker,
                    prefix,
                })
            }
            (_, None, None) => bail!(
                "neither `docker` nor `docker-compose` is on PATH, so Compose cannot recreate the containers"
            ),
        }
    }

    /// Adds `--env-file FILE` for each file, so that Compose interpolates the project as it was loaded.
    pub fn env_files(mut self, files: &[PathBuf]) -> ComposeCli {
        for f in files {
            self.prefix.push("--env-file".to_string());
            self.prefix.push(f.display().to_string());
        }
        self
    }

    /// Runs `compose ARGS`, with its output going to the user's stderr.
    pub async fn run(&self, args: &[&str]) -> anyhow::Result<()> {
        let status = tokio::process::Command::new(&self.program)
            .args(&self.prefix)
            .args(args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::inherit())
            .status()
            .await
            .with_context(|| format!("failed to run `{}`", self.program.display()))?;
        if !status.success() {
            bail!("`{}` failed ({status})", self.describe(args));
        }
        Ok(())
    }

    /// The command line, for messages.
    pub fn describe(&self, args: &[&str]) -> String {
        let mut parts = vec![self.program.display().to_string()];
        parts.extend(self.prefix.iter().cloned());
        parts.extend(args.iter().map(|a| a.to_string()));
        parts.join(" ")
    }
}

/// Docker's global flags to pass on to the Docker CLI.
fn docker_global_args(g: &DockerGlobals) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(c) = &g.config {
        out.extend(["--config".to_string(), c.display().to_string()]);
    }
    if let Some(h) = &g.host {
        out.extend(["--host".to_string(), h.clone()]);
    }
    if let Some(c) = &g.context {
        out.extend(["--context".to_string(), c.clone()]);
    }
    if g.tls {
        out.push("--tls".to_string());
    }
    if g.tls_verify {
        out.push("--tlsverify".to_string());
    }
    for (flag, v) in [
        ("--tlscacert", &g.tls_ca_cert),
        ("--tlscert", &g.tls_cert),
        ("--tlskey", &g.tls_key),
    ] {
        if let Some(p) = v {
            out.extend([flag.to_string(), p.display().to_string()]);
        }
    }
    out
}
