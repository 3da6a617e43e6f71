//! Changes to engine state that restoring and cleaning need: creating and removing volumes, stopping,
//! starting and removing containers. Each reports what it tried on which object.

use std::collections::{BTreeMap, HashMap};

use bollard::errors::Error as BollardError;
use bollard::models::VolumeCreateRequest;
use bollard::query_parameters::{
    RemoveContainerOptions, RemoveVolumeOptions, StartContainerOptions, StopContainerOptions,
};

use super::state::VolumeInfo;
use super::{Engine, EngineError};

/// How long a container gets to stop before the engine kills it, as `docker stop` does by default.
pub const STOP_TIMEOUT_SECS: i32 = 10;

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

    /// Stops a container (SIGTERM, then SIGKILL after [`STOP_TIMEOUT_SECS`]); a stopped one is fine.
    pub async fn stop_container(&self, id: &str, name: &str) -> Result<(), EngineError> {
        match self
            .docker
            .stop_container(
                id,
                Some(StopContainerOptions {
                    t: Some(STOP_TIMEOUT_SECS),
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
