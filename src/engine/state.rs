//! Read-only queries of engine state that the inventory joins with the Compose model: the project's
//! volumes, its containers and their mounts, and volume sizes from the disk usage API.

use std::collections::{BTreeMap, HashMap};

use bollard::query_parameters::{ListContainersOptions, ListVolumesOptions};
use serde::Deserialize;

use super::{Engine, EngineError};

/// The label Compose puts on everything it creates for a project.
pub const PROJECT_LABEL: &str = "com.docker.compose.project";
/// The label Compose puts on a container with the service name.
pub const SERVICE_LABEL: &str = "com.docker.compose.service";
/// The label Compose puts on a volume with its key (v2) or name (v1).
pub const VOLUME_LABEL: &str = "com.docker.compose.volume";

/// A volume as the engine describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeInfo {
    pub name: String,
    pub driver: String,
    pub mountpoint: String,
    pub labels: BTreeMap<String, String>,
    pub options: BTreeMap<String, String>,
    pub scope: Option<String>,
    pub created_at: Option<String>,
}

/// A container as far as data is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerInfo {
    pub id: String,
    pub name: String,
    /// `com.docker.compose.service`, when Compose made it.
    pub service: Option<String>,
    pub image: String,
    /// `running`, `exited`, `created`, …
    pub state: String,
    pub mounts: Vec<ContainerMount>,
    /// `com.docker.compose.version`: which Compose made it (`1.29.2`, `2.40.3`).
    pub compose_version: Option<String>,
    /// A helper container of docker persist (label `persist.helper=true`).
    pub helper: bool,
}

impl ContainerInfo {
    pub fn is_running(&self) -> bool {
        matches!(self.state.as_str(), "running" | "restarting" | "paused")
    }
}

/// One mount of a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerMount {
    /// `volume`, `bind`, `tmpfs`, …
    pub kind: String,
    /// Volume name, for volumes.
    pub name: Option<String>,
    /// Host path (bind) or the volume's mountpoint.
    pub source: String,
    pub destination: String,
    pub read_write: bool,
}

/// When a container last ran, from the engine's inspect answer: what tells whether it can have written
/// to a volume since some instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunTimes {
    /// Running, restarting or paused now.
    pub running: bool,
    /// The last start; `None` when it never started.
    pub started_at: Option<jiff::Timestamp>,
    /// The last stop; `None` when it never stopped.
    pub finished_at: Option<jiff::Timestamp>,
}

impl Engine {
    /// The run times of a container; `None` when it does not exist.
    pub async fn run_times(&self, id: &str) -> Result<Option<RunTimes>, EngineError> {
        let inspect = match self.docker.inspect_container(id, None).await {
            Ok(i) => i,
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => return Ok(None),
            Err(e) => return Err(EngineError::api(format!("inspect container `{id}`"), &e)),
        };
        let state = inspect.state.unwrap_or_default();
        let running = state.running.unwrap_or(false)
            || state.restarting.unwrap_or(false)
            || state.paused.unwrap_or(false);
        Ok(Some(RunTimes {
            running,
            started_at: engine_time(state.started_at.as_deref()),
            finished_at: engine_time(state.finished_at.as_deref()),
        }))
    }

    /// The containers that mounted volume `name` read-write (engine `mount` events) since `since`, with
    /// when: a container that started with the volume, even if it was removed since. The engine keeps a
    /// limited event history in memory (and none across its restarts), so an empty answer proves less
    /// than a non-empty one.
    pub async fn volume_written_since(
        &self,
        name: &str,
        since: jiff::Timestamp,
    ) -> Result<Vec<(String, jiff::Timestamp)>, EngineError> {
        use futures_util::StreamExt as _;
        let now = jiff::Timestamp::now();
        let stamp = |t: jiff::Timestamp| format!("{}.{:09}", t.as_second(), t.subsec_nanosecond());
        let filters = HashMap::from([
            ("type".to_string(), vec!["volume".to_string()]),
            ("volume".to_string(), vec![name.to_string()]),
            ("event".to_string(), vec!["mount".to_string()]),
        ]);
        let mut stream = self
            .docker
            .events(Some(bollard::query_parameters::EventsOptions {
                since: Some(stamp(since)),
                until: Some(stamp(now)),
                filters: Some(filters),
            }));
        let mut out = Vec::new();
        while let Some(event) = stream.next().await {
            let event = event.map_err(|e| EngineError::api("read engine events", &e))?;
            let attributes = event.actor.and_then(|a| a.attributes).unwrap_or_default();
            if attributes.get("read/write").map(String::as_str) != Some("true") {
                continue;
            }
            let at = event
                .time_nano
                .and_then(|n| jiff::Timestamp::from_nanosecond(i128::from(n)).ok())
                .unwrap_or(now);
            let container = attributes.get("container").cloned().unwrap_or_default();
            out.push((super::short(&container).to_string(), at));
        }
        Ok(out)
    }

    /// The volumes labelled as belonging to Compose project `project`.
    pub async fn project_volumes(&self, project: &str) -> Result<Vec<VolumeInfo>, EngineError> {
        let filters = HashMap::from([(
            "label".to_string(),
            vec![format!("{PROJECT_LABEL}={project}")],
        )]);
        let response = self
            .docker
            .list_volumes(Some(ListVolumesOptions {
                filters: Some(filters),
            }))
            .await
            .map_err(|e| EngineError::api("list volumes", &e))?;
        Ok(response
            .volumes
            .unwrap_or_default()
            .into_iter()
            .map(volume_info)
            .collect())
    }

    /// One volume by name; `None` when it does not exist.
    pub async fn volume(&self, name: &str) -> Result<Option<VolumeInfo>, EngineError> {
        match self.docker.inspect_volume(name).await {
            Ok(v) => Ok(Some(volume_info(v))),
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(None),
            Err(e) => Err(EngineError::api(format!("inspect volume `{name}`"), &e)),
        }
    }

    /// The `VOLUME` paths the local image `image` declares (`/images/{name}/json`); `None` when the image
    /// is not present locally (before `pull`, say).
    pub async fn image_volumes(&self, image: &str) -> Result<Option<Vec<String>>, EngineError> {
        match self.docker.inspect_image(image).await {
            Ok(i) => Ok(Some(i.config.and_then(|c| c.volumes).unwrap_or_default())),
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(None),
            Err(e) => Err(EngineError::api(format!("inspect image `{image}`"), &e)),
        }
    }

    /// The containers of Compose project `project`, running or not.
    pub async fn project_containers(
        &self,
        project: &str,
    ) -> Result<Vec<ContainerInfo>, EngineError> {
        self.containers_with_filter("label", format!("{PROJECT_LABEL}={project}"))
            .await
    }

    /// Every container (of any project) that mounts volume `name`, running or not.
    pub async fn containers_using_volume(
        &self,
        name: &str,
    ) -> Result<Vec<ContainerInfo>, EngineError> {
        self.containers_with_filter("volume", name.to_string())
            .await
    }

    /// One container by id, running or not; `None` when it does not exist.
    pub async fn container_state(&self, id: &str) -> Result<Option<ContainerInfo>, EngineError> {
        let found = self.containers_with_filter("id", id.to_string()).await?;
        Ok(found.into_iter().find(|c| c.id == id))
    }

    async fn containers_with_filter(
        &self,
        key: &str,
        value: String,
    ) -> Result<Vec<ContainerInfo>, EngineError> {
        let filters = HashMap::from([(key.to_string(), vec![value])]);
        let list = self
            .docker
            .list_containers(Some(ListContainersOptions {
                all: true,
                filters: Some(filters),
                ..Default::default()
            }))
            .await
            .map_err(|e| EngineError::api("list containers", &e))?;
        Ok(list.into_iter().map(container_info).collect())
    }

    /// Sizes of all volumes in bytes, from the disk usage API (`/system/df`). Volumes the engine could not
    /// measure (size -1, or a driver that does not report) are absent.
    ///
    /// bollard 0.21 types this endpoint in its API 1.52 shape (`VolumeUsage.Items`), while engines answering
    /// at an older API version (Docker 20.10–28) send `Volumes`. The body is therefore read as text and
    /// parsed here in both shapes; the request goes through a clone of the client whose request modifier
    /// points bollard's plain-text `_ping` call at `system/df`.
    pub async fn volume_sizes(&self) -> Result<HashMap<String, u64>, EngineError> {
        let docker = self.docker.clone().with_request_modifier(|mut req| {
            let rewritten = req
                .uri()
                .to_string()
                .replacen("/_ping", "/system/df?type=volume", 1);
            if let Ok(uri) = rewritten.parse() {
                *req.uri_mut() = uri;
            }
            req
        });
        // Engines run one disk usage computation at a time and refuse a second one meanwhile (another
        // `docker system df`, another docker persist): wait for it rather than fail.
        let mut attempt = 0;
        let body = loop {
            match docker.ping().await {
                Ok(body) => break body,
                Err(bollard::errors::Error::DockerResponseServerError { message, .. })
                    if message.contains("already running") && attempt < 100 =>
                {
                    attempt += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
                Err(e) => return Err(EngineError::api("read disk usage", &e)),
            }
        };
        parse_volume_sizes(&body).map_err(|message| EngineError::Api {
            operation: "read disk usage".to_string(),
            message,
        })
    }
}

/// An engine timestamp; the engine's zero time (`0001-01-01T00:00:00Z`, "never") and garbage are `None`.
fn engine_time(text: Option<&str>) -> Option<jiff::Timestamp> {
    let t: jiff::Timestamp = text?.parse().ok()?;
    (t.as_second() > 0).then_some(t)
}

pub(crate) fn volume_info(v: bollard::models::Volume) -> VolumeInfo {
    VolumeInfo {
        name: v.name,
        driver: v.driver,
        mountpoint: v.mountpoint,
        labels: v.labels.into_iter().collect(),
        options: v.options.into_iter().collect(),
        scope: v.scope.map(|s| s.to_string()),
        created_at: v.created_at.map(|d| d.to_string()),
    }
}

fn container_info(c: bollard::models::ContainerSummary) -> ContainerInfo {
    let labels = c.labels.unwrap_or_default();
    let name = c
        .names
        .unwrap_or_default()
        .into_iter()
        .next()
        .map(|n| n.trim_start_matches('/').to_string())
        .unwrap_or_default();
    ContainerInfo {
        id: c.id.unwrap_or_default(),
        name,
        service: labels.get(SERVICE_LABEL).cloned(),
        compose_version: labels.get("com.docker.compose.version").cloned(),
        helper: labels.get(super::helper::HELPER_LABEL).map(String::as_str) == Some("true"),
        image: c.image.unwrap_or_default(),
        state: c.state.map(|s| s.to_string()).unwrap_or_default(),
        mounts: c
            .mounts
            .unwrap_or_default()
            .into_iter()
            .map(|m| ContainerMount {
                kind: m.typ.unwrap_or_default(),
                name: m.name.filter(|n| !n.is_empty()),
                source: m.source.unwrap_or_default(),
                destination: m.destination.unwrap_or_default(),
                read_write: m.rw.unwrap_or(true),
            })
            .collect(),
    }
}

#[derive(Deserialize)]
struct DiskUsage {
    #[serde(rename = "Volumes", default)]
    volumes: Option<Vec<DiskUsageVolume>>,
    #[serde(rename = "VolumeUsage", default)]
    volume_usage: Option<DiskUsageItems>,
}

#[derive(Deserialize)]
struct DiskUsageItems {
    #[serde(rename = "Items", default)]
    items: Option<Vec<DiskUsageVolume>>,
}

#[derive(Deserialize)]
struct DiskUsageVolume {
    #[serde(rename = "Name")]
    name: String,
    #[serde(rename = "UsageData", default)]
    usage: Option<DiskUsageData>,
}

#[derive(Deserialize)]
struct DiskUsageData {
    #[serde(rename = "Size")]
    size: i64,
}

/// Volume sizes from a `/system/df` body of either shape.
fn parse_volume_sizes(body: &str) -> Result<HashMap<String, u64>, String> {
    let du: DiskUsage =
        serde_json::from_str(body).map_err(|e| format!("unexpected answer: {e}"))?;
    let items = du
        .volumes
        .or(du.volume_usage.and_then(|u| u.items))
        .unwrap_or_default();
    Ok(items
        .into_iter()
        .filter_map(|v| {
            let size = v.usage?.size;
            u64::try_from(size).ok().map(|s| (v.name, s))
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_usage_legacy_shape() {
        let body = r#"{"LayersSize":0,"Volumes":[
            {"Name":"a","UsageData":{"Size":1234,"RefCount":1}},
            {"Name":"b","UsageData":{"Size":-1,"RefCount":0}},
            {"Name":"c"}]}"#;
        let sizes = parse_volume_sizes(body).unwrap();
        assert_eq!(sizes.get("a"), Some(&1234));
        assert_eq!(sizes.len(), 1);
    }

    #[test]
    fn disk_usage_api_1_52_shape() {
        let body = r#"{"VolumeUsage":{"TotalSize":5,"Items":[
            {"Name":"x","UsageData":{"Size":5,"RefCount":0}}]}}"#;
        assert_eq!(parse_volume_sizes(body).unwrap().get("x"), Some(&5));
    }

    #[test]
    fn engine_zero_time_means_never() {
        assert_eq!(engine_time(Some("0001-01-01T00:00:00Z")), None);
        assert_eq!(engine_time(None), None);
        assert_eq!(
            engine_time(Some("2026-11-22T10:00:00.123456789Z")).map(|t| t.as_second()),
            Some(1_795_341_600)
        );
    }

    #[test]
    fn disk_usage_garbage_is_an_error() {
        assert!(parse_volume_sizes("OK").is_err());
    }
}
