//! Connecting to the engine at a resolved [`Endpoint`]: unix, tcp (with TLS) and ssh, with API version
//! negotiation.

use bollard::Docker;

use super::EngineError;
use crate::context::Endpoint;

/// A connected engine.
#[derive(Debug, Clone)]
pub struct Engine {
    pub(crate) docker: Docker,
    pub(crate) endpoint: Endpoint,
}

impl Engine {
    /// Connects to `endpoint`, checks that the engine answers, and negotiates the API version.
    pub async fn connect(_endpoint: &Endpoint) -> Result<Engine, EngineError> {
        todo!("connect")
    }

    /// Whether the engine runs on this machine, so host paths it mounts are paths here too.
    pub fn is_local(&self) -> bool {
        self.endpoint.host.starts_with("unix://")
    }

    /// The endpoint this engine was reached at.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }
}
