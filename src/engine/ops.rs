//! Changes to engine state that restoring and cleaning need: creating and removing volumes, stopping,
//! starting and removing containers. Each reports what it tried on which object.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use bollard::errors::Error as BollardError;
use bollard::models::VolumeCreateRequest;
use bollard::query_parameters::{
    RemoveContainerOptions, RemoveVolumeOptions, StartContainerOptions, StopContainerOptions,
};

use super::state::VolumeInfo;
use super::{Engine, EngineError};

/// How long a container gets to stop before the engine kills it when it sets no grace period of its own
/// (the engine's default, as `docker stop`).
pub const STOP_TIMEOUT_SECS: i64 = 10;
/// How much longer than the grace period a stop request may take before it counts as failed.
const STOP_REQUEST_SLACK: Duration = Duration::from_secs(60);

fn is_status(err: &BollardError, code: u16) -> bool {
    matches!(err, BollardError::DockerResponseServerError { status_code, .. } if *status_code == code)
}

impl Engine {
    /// Creates a volume with exactly this driver, options and labels.
    pub async fn create_volume(
        &self,
        name: &str,
        driver: &str,
        driver_opts: &BTreeMap<String, String>,
        labels: &BTreeMap<String, String>,
    ) -> Result<VolumeInfo, EngineError> {
        let v = self
            .docker
            .create_volume(VolumeCreateRequest {
                name: Some(name.to_string()),
                driver: Some(driver.to_string()),
                driver_opts: Some(driver_opts.clone().into_iter().collect::<HashMap<_, _>>()),
                labels: Some(labels.clone().into_iter().collect::<HashMap<_, _>>()),
                ..Default::default()
            })
            .await
            .map_err(|e| EngineError::api(format!("create volume `{name}`"), &e))?;
        Ok(super::state::volume_info(v))
    }

    /// Removes a volume; one that does not exist is not an error. A volume still in use is.
    pub async fn remove_volume(&self, name: &str) -> Result<(), EngineError> {
        match self
            .docker
            .remove_volume(name, Some(RemoveVolumeOptions { force: false }))
            .await
        {
            Ok(()) => Ok(()),
            Err(e) if is_status(&e, 404) => Ok(()),
            Err(e) => Err(EngineError::api(format!("remove volume `{name}`"), &e)),
        }
    }

    /// The seconds the engine gives a container to stop before it kills it: its own grace period
    /// (Compose's `stop_grace_period`), else [`STOP_TIMEOUT_SECS`].
    pub async fn stop_grace(&self, id: &str) -> u64 {
        self.docker
            .inspect_container(id, None)
            .await
            .ok()
            .and_then(|c| c.config)
            .and_then(|c| c.stop_timeout)
            .filter(|t| *t >= 0)
            .unwrap_or(STOP_TIMEOUT_SECS)
            .unsigned_abs()
    }

    /// Stops a container the way `docker stop` does: its own stop signal (PostgreSQL images ask for SIGINT,
    /// a fast shutdown), then SIGKILL after its own grace period (Compose's `stop_grace_period`, else
    /// [`STOP_TIMEOUT_SECS`]). A stopped one is fine.
    pub async fn stop_container(&self, id: &str, name: &str) -> Result<(), EngineError> {
        // No `t`: the engine then waits for the container's own grace period. The request must be allowed
        // to last that long; a database that needs minutes for its shutdown checkpoint must get them.
        let grace = self.stop_grace(id).await;
        let docker = self
            .docker
            .clone()
            .with_timeout(Duration::from_secs(grace) + STOP_REQUEST_SLACK);
        match docker
            .stop_container(
                id,
                Some(StopContainerOptions {
                    t: None,
                    signal: None,
                }),
            )
            .await
        {
            Ok(()) => Ok(()),
            Err(e) if is_status(&e, 304) => Ok(()),
            Err(e) => Err(EngineError::api(format!("stop container `{name}`"), &e)),
        }
    }

    /// Starts a container; a running one is fine.
    pub async fn start_container(&self, id: &str, name: &str) -> Result<(), EngineError> {
        match self
            .docker
            .start_container(id, None::<StartContainerOptions>)
            .await
        {
            Ok(()) => Ok(()),
            Err(e) if is_status(&e, 304) => Ok(()),
            Err(e) => Err(EngineError::api(format!("start container `{name}`"), &e)),
        }
    }

    /// Removes a stopped container (its volumes stay).
    pub async fn remove_stopped_container(&self, id: &str, name: &str) -> Result<(), EngineError> {
        match self
            .docker
            .remove_container(
                id,
                Some(RemoveContainerOptions {
                    force: false,
                    v: false,
                    link: false,
                }),
            )
            .await
        {
            Ok(()) => Ok(()),
            Err(e) if is_status(&e, 404) => Ok(()),
            Err(e) => Err(EngineError::api(format!("remove container `{name}`"), &e)),
        }
    }
}
