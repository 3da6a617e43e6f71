//! What `upgrade` asks the engine about a service as it changes its image: the image a container runs (by
//! id), whether an image is local or came from a registry, a container's health and restarts, and the last
//! lines of its log when it fails.

use std::collections::BTreeMap;

use bollard::query_parameters::LogsOptions;
use futures_util::StreamExt;

use super::{Engine, EngineError};

/// An image as far as an upgrade is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageInfo {
    /// `sha256:…`
    pub id: String,
    pub repo_tags: Vec<String>,
    /// Set when the image came from a registry (pulled or pushed); empty for one built or loaded here.
    pub repo_digests: Vec<String>,
    /// `KEY=VALUE`, as the image sets them.
    pub env: Vec<String>,
    pub labels: BTreeMap<String, String>,
}

impl ImageInfo {
    /// The value of `key` in the image's environment.
    pub fn env_var(&self, key: &str) -> Option<&str> {
        self.env
            .iter()
            .find_map(|e| e.strip_prefix(key)?.strip_prefix('='))
    }
}

/// A container's state as a health check reads it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ContainerStatus {
    pub id: String,
    pub name: String,
    /// The id of the image it runs (`sha256:…`).
    pub image_id: String,
    /// The image as its configuration names it.
    pub image: String,
    /// `created`, `running`, `restarting`, `exited`, …
    pub status: String,
    pub running: bool,
    pub restarting: bool,
    pub exit_code: Option<i64>,
    /// The engine's error for a container that could not start.
    pub error: Option<String>,
    /// `starting`, `healthy` or `unhealthy` when it has a health check.
    pub health: Option<String>,
    /// How often the engine restarted it since it was created.
    pub restart_count: i64,
    pub started_at: Option<jiff::Timestamp>,
    /// Its configuration's environment (`KEY=VALUE`) and command.
    pub env: Vec<String>,
    pub cmd: Vec<String>,
}

impl ContainerStatus {
    /// The value of `key` in the container's environment.
    pub fn env_var(&self, key: &str) -> Option<&str> {
        self.env
            .iter()
            .find_map(|e| e.strip_prefix(key)?.strip_prefix('='))
    }
}

impl Engine {
    /// One image by name or id; `None` when the engine has no such image.
    pub async fn image(&self, name: &str) -> Result<Option<ImageInfo>, EngineError> {
        match self.docker.inspect_image(name).await {
            Ok(i) => {
                let config = i.config.unwrap_or_default();
                Ok(Some(ImageInfo {
                    id: i.id.unwrap_or_default(),
                    repo_tags: i.repo_tags.unwrap_or_default(),
                    repo_digests: i.repo_digests.unwrap_or_default(),
                    env: config.env.unwrap_or_default(),
                    labels: config.labels.unwrap_or_default().into_iter().collect(),
                }))
            }
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(None),
            Err(e) => Err(EngineError::api(format!("inspect image `{name}`"), &e)),
        }
    }

    /// A container's state, health and image; `None` when it does not exist.
    pub async fn container_status(&self, id: &str) -> Result<Option<ContainerStatus>, EngineError> {
        let c = match self.docker.inspect_container(id, None).await {
            Ok(c) => c,
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => return Ok(None),
            Err(e) => {
                return Err(EngineError::api(format!("inspect container `{id}`"), &e));
            }
        };
        let state = c.state.unwrap_or_default();
        let config = c.config.unwrap_or_default();
        let health = state
            .health
            .and_then(|h| h.status)
            .map(|s| s.to_string())
            .filter(|s| !s.is_empty() && s != "none");
        Ok(Some(ContainerStatus {
            id: c.id.unwrap_or_default(),
            name: c
                .name
                .unwrap_or_default()
                .trim_start_matches('/')
                .to_string(),
            image_id: c.image.unwrap_or_default(),
            image: config.image.unwrap_or_default(),
            status: state.status.map(|s| s.to_string()).unwrap_or_default(),
            running: state.running.unwrap_or(false),
            restarting: state.restarting.unwrap_or(false),
            exit_code: state.exit_code,
            error: state.error.filter(|e| !e.is_empty()),
            health,
            restart_count: c.restart_count.unwrap_or(0),
            started_at: state
                .started_at
                .as_deref()
                .and_then(|t| t.parse::<jiff::Timestamp>().ok())
                .filter(|t| t.as_second() > 0),
            env: config.env.unwrap_or_default(),
            cmd: config.cmd.unwrap_or_default(),
        }))
    }

    /// The last `lines` lines a container wrote to its stdout and stderr (interleaved as the engine keeps
    /// them). A container without a log driver that can be read gives an empty text.
    pub async fn log_tail(&self, id: &str, lines: usize) -> Result<String, EngineError> {
        let mut stream = self.docker.logs(
            id,
            Some(LogsOptions {
                stdout: true,
                stderr: true,
                tail: lines.to_string(),
                ..Default::default()
            }),
        );
        let mut out = String::new();
        while let Some(item) = stream.next().await {
            match item {
                Ok(chunk) => out.push_str(&String::from_utf8_lossy(&chunk.into_bytes())),
                Err(e) => {
                    return Err(EngineError::api(
                        format!("read the log of container `{}`", super::short(id)),
                        &e,
                    ));
                }
            }
        }
        Ok(out)
    }
}
