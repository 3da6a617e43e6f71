//! The only module that talks to the Docker Engine (and the only one that imports bollard): connecting,
//! volumes, containers and disk usage, with errors that name the operation.

pub mod archive;
pub mod connect;
pub mod helper;

pub use connect::Engine;

/// Everything that can go wrong talking to the engine. bollard's own error text is kept as a source,
/// never shown alone.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("cannot connect to the Docker engine at `{host}`: {message}")]
    Connect { host: String, message: String },
    #[error("failed to {operation}: {message}")]
    Api { operation: String, message: String },
}

pub mod state;

pub use state::{ContainerInfo, ContainerMount, VolumeInfo};

/// A one-line description of a bollard error: the engine's own message when it sent one.
pub(crate) fn describe(err: &bollard::errors::Error) -> String {
    use bollard::errors::Error as E;
    match err {
        E::DockerResponseServerError {
            status_code,
            message,
        } => format!("{message} (HTTP {status_code})"),
        other => other.to_string(),
    }
}
