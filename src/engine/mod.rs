//! The only module that talks to the Docker Engine (and the only one that imports bollard): connecting,
//! volumes, containers and disk usage, with errors that name the operation.

pub mod archive;
pub mod connect;
pub mod exec;
pub mod helper;
pub mod ops;

pub mod state;
pub mod status;

pub use connect::{Engine, EngineVersion};
pub use exec::ExecOutcome;
pub use state::{ContainerInfo, ContainerMount, RunTimes, VolumeInfo};
pub use status::{ContainerStatus, ImageInfo};

/// Why a connection to the engine failed, so that the top level can pick a hint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectFailure {
    /// The unix socket does not exist.
    NoSocket,
    /// The socket exists but this user may not open it.
    PermissionDenied,
    /// Nothing listens at the address.
    Refused,
    /// No answer in time.
    Timeout,
    /// The TLS handshake failed (certificates, or TLS on one side only).
    Tls,
    /// `ssh` could not reach the machine or run `docker system dial-stdio` there.
    Ssh,
    /// Something answered, but not like a Docker Engine.
    Protocol,
    /// Anything else (name resolution, reset connections, …).
    Other,
}

/// Everything that can go wrong talking to the engine. bollard's own error text is kept as a source,
/// never shown alone.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("cannot connect to the Docker engine at `{host}`: {message}")]
    Connect {
        host: String,
        message: String,
        kind: ConnectFailure,
    },
    /// The endpoint cannot be used as configured (unreadable TLS files, an address bollard cannot reach);
    /// not a sign that the engine is down.
    #[error("cannot use the Docker engine endpoint `{host}`: {message}")]
    InvalidEndpoint { host: String, message: String },
    #[error("failed to {operation}: {message}")]
    Api { operation: String, message: String },
}

impl EngineError {
    /// `Some` when the engine could not be reached at all — the case for the hint "is the Docker daemon
    /// running? `docker context ls` shows where docker persist connects".
    pub fn connect_failure(&self) -> Option<ConnectFailure> {
        match self {
            EngineError::Connect { kind, .. } => Some(*kind),
            _ => None,
        }
    }

    /// An API call failed: the engine's own message for error responses, a described cause otherwise.
    pub(crate) fn api(operation: impl Into<String>, err: &bollard::errors::Error) -> EngineError {
        EngineError::Api {
            operation: operation.into(),
            message: connect::describe(err).1,
        }
    }
}

/// The short form of a container id, as `docker ps` shows it.
pub(crate) fn short(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

/// A one-line description of a bollard error: the engine's own message when it sent one.
pub(crate) fn describe(err: &bollard::errors::Error) -> String {
    connect::describe(err).1
}
