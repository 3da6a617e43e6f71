//! Resolves the engine endpoint exactly as the Docker CLI does: `--context` > `--host` > `DOCKER_HOST` >
//! `DOCKER_CONTEXT` > `currentContext` in config.json > the default socket.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::cli::DockerGlobals;

/// Where and how to reach the engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `unix:///var/run/docker.sock`, `tcp://host:2376`, `ssh://user@host`, …
    pub host: String,
    /// TLS material for `tcp://`, when TLS is on.
    pub tls: Option<TlsMaterial>,
    /// The context this came from (`default` when none was named).
    pub context: String,
    /// Why this endpoint was chosen, for `--verbose` and hints: "--host flag", "DOCKER_HOST", "context `x`".
    pub source: String,
}

/// TLS settings for a `tcp://` endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TlsMaterial {
    pub ca: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// Verify the server's certificate (`--tlsverify`, `DOCKER_TLS_VERIFY`, a context without `SkipTLSVerify`).
    pub verify: bool,
}

/// Errors while resolving the endpoint.
#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    #[error("context `{name}` does not exist")]
    NotFound { name: String },
    #[error("failed to read Docker context `{name}` from `{}`", path.display())]
    ReadMeta {
        name: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid Docker context metadata in `{}`: {message}", path.display())]
    InvalidMeta { path: PathBuf, message: String },
    #[error("invalid Docker config file `{}`: {message}", path.display())]
    InvalidConfig { path: PathBuf, message: String },
    #[error("conflicting options: either specify --host or --context, not both")]
    HostAndContext,
    #[error("unsupported engine address `{0}` (expected unix://, tcp://, ssh:// or npipe://)")]
    UnsupportedScheme(String),
}

/// Resolves the endpoint from Docker's global flags and the environment (`DOCKER_HOST`, `DOCKER_CONTEXT`,
/// `DOCKER_CONFIG`, `DOCKER_TLS_VERIFY`, `DOCKER_CERT_PATH`, `HOME`).
pub fn resolve(
    _globals: &DockerGlobals,
    _env: &BTreeMap<String, String>,
) -> Result<Endpoint, ContextError> {
    todo!("endpoint resolution")
}
