//! The only module that talks to the Docker Engine (and the only one that imports bollard): connecting,
//! volumes, containers and disk usage, with errors that name the operation.

pub mod connect;

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
