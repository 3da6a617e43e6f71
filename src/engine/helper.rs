//! Helper containers: how docker persist reaches the inside of a volume without pulling any image.
//!
//! The universal data path creates a container from a locally imported image without executables, mounts the volume
//! (or bind mount) at a fixed path and never starts it; the engine's archive endpoints then read and write
//! the mounted data. Helper containers carry the label `persist.helper=true`, have no network, and are
//! removed on every exit path: by [`HelperContainer::remove`], by its `Drop`, and by
//! [`Engine::remove_leftover_helpers`] at the end of a command and at the start of the next one (for a
//! process that was killed outright).

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use bollard::models::{ContainerCreateBody, HostConfig, HostConfigLogConfig, Mount, MountType};
use bollard::query_parameters::{
    CreateContainerOptions, CreateImageOptions, ListContainersOptions, ListImagesOptions,
    RemoveContainerOptions, RemoveImageOptions, StartContainerOptions, WaitContainerOptions,
};
use futures_util::{StreamExt, TryStreamExt};

use super::{Engine, EngineError, short};

/// The label on every helper image and container.
pub const HELPER_LABEL: &str = "persist.helper";
/// The label naming the process that created a helper container: `<hostname>:<pid>`.
pub const OWNER_LABEL: &str = "persist.helper.owner";
/// The helper image of the universal path: no executable, only the names of uids and gids
/// ([`crate::archive::rootfs`] says why).
pub const HELPER_IMAGE: &str = "docker-persist-helper:1";
/// Where a helper mounts the data it works on.
pub const DATA_PATH: &str = "/data";

/// Helper containers this process created and has not removed yet.
static LIVE: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());
/// Helper creations under way.
static IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);

/// What a helper mounts at [`DATA_PATH`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HelperMount {
    /// A volume by engine name.
    Volume { name: String, read_only: bool },
    /// A host path (on the engine's host).
    Bind { path: String, read_only: bool },
}

/// A created (never started) helper container. Remove it with [`HelperContainer::remove`]; dropping it
/// schedules the removal instead.
#[derive(Debug)]
pub struct HelperContainer {
    engine: Engine,
    id: String,
    removed: bool,
}

impl HelperContainer {
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Starts a helper made by [`Engine::create_runner`].
    pub async fn start(&self) -> Result<(), EngineError> {
        self.engine
            .docker
            .start_container(&self.id, None::<StartContainerOptions>)
            .await
            .map_err(|e| {
                EngineError::api(format!("start helper container `{}`", short(&self.id)), &e)
            })
    }

    /// Waits until the helper has stopped and returns its exit code.
    pub async fn wait(&self) -> Result<i64, EngineError> {
        let docker = self.engine.with_long_timeout().docker;
        let mut waits = docker.wait_container(
            &self.id,
            Some(WaitContainerOptions {
                condition: "not-running".to_string(),
            }),
        );
        match waits.next().await {
            Some(Ok(r)) => Ok(r.status_code),
            // A non-zero exit comes back as this error.
            Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => Ok(code),
            Some(Err(e)) => Err(EngineError::api(
                format!("wait for helper container `{}`", short(&self.id)),
                &e,
            )),
            None => Err(EngineError::Api {
                operation: format!("wait for helper container `{}`", short(&self.id)),
                message: "the engine ended the wait without a result".to_string(),
            }),
        }
    }

    /// Removes the container (and nothing else: the volume stays).
    pub async fn remove(mut self) -> Result<(), EngineError> {
        self.removed = true;
        remove_container(&self.engine, &self.id).await
    }
}

impl Drop for HelperContainer {
    fn drop(&mut self) {
        if self.removed {
            return;
        }
        // Best effort now; `remove_leftover_helpers` at the end of the command catches the rest.
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            let engine = self.engine.clone();
            let id = self.id.clone();
            handle.spawn(async move {
                let _ = remove_container(&engine, &id).await;
            });
        }
    }
}

async fn remove_container(engine: &Engine, id: &str) -> Result<(), EngineError> {
    let result = engine
        .docker
        .remove_container(
            id,
            Some(RemoveContainerOptions {
                force: true,
                // The anonymous volumes a server image's `VOLUME` gave it (`create_server`); named volumes
                // and binds are never removed this way.
                v: true,
                link: false,
            }),
        )
        .await;
    // 404: already gone. 409 "removal … already in progress": another path of ours is removing it — wait
    // until it is gone, so that nothing is listed after the command ends.
    let gone = match &result {
        Ok(()) => true,
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        }) => true,
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 409,
            message,
        }) if message.contains("already in progress") => {
            for _ in 0..200 {
                if engine.docker.inspect_container(id, None).await.is_err() {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            true
        }
        Err(_) => false,
    };
    match result {
        Err(e) if !gone => Err(EngineError::api(
            format!("remove helper container `{id}`"),
            &e,
        )),
        _ => {
            if let Ok(mut live) = LIVE.lock() {
                live.remove(id);
            }
            Ok(())
        }
    }
}

/// `<hostname>:<pid>` of this process.
fn owner() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default();
    format!("{host}:{}", std::process::id())
}

/// Whether the owner of a helper is certainly gone: a process of this host that no longer runs.
fn owner_is_gone(owner: &str) -> bool {
    let Some((host, pid)) = owner.rsplit_once(':') else {
        return true;
    };
    let this = self::owner();
    let this_host = this.rsplit_once(':').map(|(h, _)| h).unwrap_or_default();
    host == this_host && !std::path::Path::new(&format!("/proc/{pid}")).exists()
}

impl HelperMount {
    /// The volume name or host path.
    pub fn source(&self) -> &str {
        match self {
            HelperMount::Volume { name, .. } => name,
            HelperMount::Bind { path, .. } => path,
        }
    }
}

/// The mount of the data a helper works on, at [`DATA_PATH`].
pub fn data_mount(mount: &HelperMount) -> Mount {
    let (typ, source, read_only) = match mount {
        HelperMount::Volume { name, read_only } => (MountType::VOLUME, name, *read_only),
        HelperMount::Bind { path, read_only } => (MountType::BIND, path, *read_only),
    };
    Mount {
        target: Some(DATA_PATH.to_string()),
        source: Some(source.clone()),
        typ: Some(typ),
        read_only: Some(read_only),
        ..Default::default()
    }
}

/// A bind mount of a host directory into a helper.
pub fn bind_mount(source: &str, target: &str, read_only: bool) -> Mount {
    Mount {
        target: Some(target.to_string()),
        source: Some(source.to_string()),
        typ: Some(MountType::BIND),
        read_only: Some(read_only),
        ..Default::default()
    }
}

/// A named volume mounted read-write at `target`.
pub fn volume_mount(name: &str, target: &str) -> Mount {
    Mount {
        target: Some(target.to_string()),
        source: Some(name.to_string()),
        typ: Some(MountType::VOLUME),
        read_only: Some(false),
        ..Default::default()
    }
}

fn helper_body(
    image: &str,
    cmd: Vec<String>,
    mounts: Vec<Mount>,
    host: HostConfig,
) -> ContainerCreateBody {
    let labels = HashMap::from([
        (HELPER_LABEL.to_string(), "true".to_string()),
        (OWNER_LABEL.to_string(), owner()),
    ]);
    ContainerCreateBody {
        image: Some(image.to_string()),
        cmd: Some(cmd),
        labels: Some(labels),
        network_disabled: Some(true),
        host_config: Some(HostConfig {
            network_mode: Some("none".to_string()),
            mounts: Some(mounts),
            ..host
        }),
        ..Default::default()
    }
}

impl Engine {
    /// Makes sure the helper image exists, importing it (never pulling it) when it does not.
    pub async fn ensure_helper_image(&self) -> Result<(), EngineError> {
        self.ensure_image(HELPER_IMAGE, crate::archive::rootfs::helper_rootfs)
            .await
            .map(|_| ())
    }

    /// Makes sure the image `tag` exists, importing the root filesystem `rootfs` builds (an uncompressed
    /// tar) when it does not. Returns whether it was imported.
    pub async fn ensure_image(
        &self,
        tag: &str,
        rootfs: impl FnOnce() -> std::io::Result<Vec<u8>>,
    ) -> Result<bool, EngineError> {
        if self.docker.inspect_image(tag).await.is_ok() {
            return Ok(false);
        }
        let operation = || format!("import the helper image `{tag}`");
        let (repo, version) = tag.split_once(':').unwrap_or((tag, "latest"));
        let rootfs = rootfs().map_err(|e| EngineError::Api {
            operation: operation(),
            message: e.to_string(),
        })?;
        let body = bollard::body_full(rootfs.into());
        let mut progress = self.docker.create_image(
            Some(CreateImageOptions {
                from_src: Some("-".to_string()),
                repo: Some(repo.to_string()),
                tag: Some(version.to_string()),
                changes: vec![format!("LABEL {HELPER_LABEL}=true")],
                ..Default::default()
            }),
            Some(body),
            None,
        );
        while let Some(item) = progress.next().await {
            let info = item.map_err(|e| EngineError::api(operation(), &e))?;
            if let Some(err) = info.error_detail.and_then(|d| d.message) {
                return Err(EngineError::Api {
                    operation: operation(),
                    message: err,
                });
            }
        }
        Ok(true)
    }

    /// Removes the images of `repo` labelled as helpers whose tag starts with `prefix`, except `keep`
    /// (older builds' fast-path images). Images in use are left alone; nothing here is an error.
    pub async fn remove_other_helper_images(&self, repo: &str, prefix: &str, keep: &str) {
        let filters = HashMap::from([("label".to_string(), vec![format!("{HELPER_LABEL}=true")])]);
        let Ok(images) = self
            .docker
            .list_images(Some(ListImagesOptions {
                filters: Some(filters),
                ..Default::default()
            }))
            .await
        else {
            return;
        };
        for tag in images.iter().flat_map(|i| i.repo_tags.iter()) {
            let Some((r, t)) = tag.split_once(':') else {
                continue;
            };
            if r == repo && t.starts_with(prefix) && tag != keep {
                let _ = self
                    .docker
                    .remove_image(tag, None::<RemoveImageOptions>, None)
                    .await;
            }
        }
    }

    /// Creates a helper container from the helper image with `mount` at [`DATA_PATH`]. It is never started.
    pub async fn create_helper(&self, mount: &HelperMount) -> Result<HelperContainer, EngineError> {
        self.ensure_helper_image().await?;
        let body = helper_body(
            HELPER_IMAGE,
            vec!["/docker-persist-helper-never-started".to_string()],
            vec![data_mount(mount)],
            HostConfig::default(),
        );
        self.create_registered(body, mount.source()).await
    }

    /// Whether `path` exists on the engine's host, as the engine sees it: a helper with a bind mount of a
    /// missing host path is refused.
    pub async fn host_path_exists(&self, path: &str) -> Result<bool, EngineError> {
        let mount = HelperMount::Bind {
            path: path.to_string(),
            read_only: true,
        };
        match self.create_helper(&mount).await {
            Ok(helper) => {
                helper.remove().await?;
                Ok(true)
            }
            Err(EngineError::Api { message, .. }) if message.contains("does not exist") => {
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    /// Creates the directory `path` (and its missing parents) on the engine's host, owned by root, mode
    /// 0755: the engine creates a missing host path of a `-v`-style bind when the container's mounts are
    /// first set up, which reading its (empty) data does.
    pub async fn create_host_dir(&self, path: &str) -> Result<(), EngineError> {
        self.ensure_helper_image().await?;
        let body = helper_body(
            HELPER_IMAGE,
            vec!["/docker-persist-helper-never-started".to_string()],
            Vec::new(),
            HostConfig {
                binds: Some(vec![format!("{path}:{DATA_PATH}")]),
                ..Default::default()
            },
        );
        let helper = self.create_registered(body, path).await?;
        let drained = self
            .download_data(&helper)
            .try_for_each(|_| async { Ok(()) })
            .await;
        helper.remove().await?;
        drained.map_err(|e| EngineError::Api {
            operation: format!("create the directory `{path}` on the engine's host"),
            message: e.to_string(),
        })
    }

    /// Creates a helper container that runs: `image` with `cmd`, `mounts`, no network, no log output,
    /// only the capabilities a tree copy needs. Start it with [`HelperContainer::start`].
    pub async fn create_runner(
        &self,
        image: &str,
        cmd: Vec<String>,
        mounts: Vec<Mount>,
        what: &str,
    ) -> Result<HelperContainer, EngineError> {
        let host = HostConfig {
            log_config: Some(HostConfigLogConfig {
                typ: Some("none".to_string()),
                config: None,
            }),
            cap_drop: Some(vec!["ALL".to_string()]),
            // Reading and writing any file, keeping owners, modes, devices and file capabilities.
            cap_add: Some(
                [
                    "CHOWN",
                    "DAC_OVERRIDE",
                    "DAC_READ_SEARCH",
                    "FOWNER",
                    "FSETID",
                    "MKNOD",
                    "SETFCAP",
                ]
                .map(String::from)
                .to_vec(),
            ),
            readonly_rootfs: Some(true),
            security_opt: Some(vec!["no-new-privileges".to_string()]),
            ..Default::default()
        };
        let body = helper_body(image, cmd, mounts, host);
        self.create_registered(body, what).await
    }

    /// Creates a helper container that runs a service's own image as its server would: the image's
    /// entrypoint with `cmd` (`None`: the image's own), `env`, `mounts`, no network (no client can reach
    /// it), the engine's default capabilities (an entrypoint drops to its own user) and a log to read
    /// when it fails. Start it with [`HelperContainer::start`].
    pub async fn create_server(
        &self,
        image: &str,
        cmd: Option<Vec<String>>,
        env: Vec<String>,
        mounts: Vec<Mount>,
        what: &str,
    ) -> Result<HelperContainer, EngineError> {
        let mut body = helper_body(image, Vec::new(), mounts, HostConfig::default());
        body.cmd = cmd;
        body.env = Some(env);
        self.create_registered(body, what).await
    }

    /// Creates a container in a task of its own, so that a creation in flight when the command is
    /// interrupted still registers its container, and the sweep at the end (which waits for it) removes it.
    async fn create_registered(
        &self,
        body: ContainerCreateBody,
        what: &str,
    ) -> Result<HelperContainer, EngineError> {
        let docker = self.docker.clone();
        IN_FLIGHT.fetch_add(1, Ordering::SeqCst);
        let created = tokio::spawn(async move {
            let created = docker
                .create_container(None::<CreateContainerOptions>, body)
                .await;
            if let (Ok(c), Ok(mut live)) = (&created, LIVE.lock()) {
                live.insert(c.id.clone());
            }
            IN_FLIGHT.fetch_sub(1, Ordering::SeqCst);
            created
        })
        .await
        .map_err(|e| EngineError::Api {
            operation: format!("create a helper container for `{what}`"),
            message: e.to_string(),
        })?
        .map_err(|e| EngineError::api(format!("create a helper container for `{what}`"), &e))?;
        Ok(HelperContainer {
            engine: self.clone(),
            id: created.id,
            removed: false,
        })
    }

    /// Removes the helper containers this process created and has not removed, and those left by
    /// processes of this host that no longer run. Returns how many were removed.
    pub async fn remove_leftover_helpers(&self) -> Result<usize, EngineError> {
        // Creations still in flight (an interrupted command) finish first, so their containers are known.
        for _ in 0..500 {
            if IN_FLIGHT.load(Ordering::SeqCst) == 0 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        let me = owner();
        let mine: Vec<String> = LIVE
            .lock()
            .map(|l| l.iter().cloned().collect())
            .unwrap_or_default();
        let filters = HashMap::from([("label".to_string(), vec![format!("{HELPER_LABEL}=true")])]);
        let all = self
            .docker
            .list_containers(Some(ListContainersOptions {
                all: true,
                filters: Some(filters),
                ..Default::default()
            }))
            .await
            .map_err(|e| EngineError::api("list helper containers", &e))?;
        let mut removed = 0;
        let mut first_error = None;
        for c in all {
            let Some(id) = c.id else { continue };
            let owner = c
                .labels
                .as_ref()
                .and_then(|l| l.get(OWNER_LABEL).cloned())
                .unwrap_or_default();
            if mine.contains(&id) || owner == me || owner_is_gone(&owner) {
                // One that cannot be removed does not stop the others.
                match remove_container(self, &id).await {
                    Ok(()) => removed += 1,
                    Err(e) => first_error = first_error.or(Some(e)),
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(removed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Helper tests share this process's registry of live helpers, which the sweep empties: one at a time.
    static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

    async fn local_engine() -> Engine {
        let env: std::collections::BTreeMap<String, String> = std::env::vars().collect();
        let ep = crate::context::resolve(&crate::cli::DockerGlobals::default(), &env).unwrap();
        Engine::connect(&ep).await.unwrap()
    }

    /// A volume for one test, removed when dropped (with any container still using it).
    struct TestVolume(String);

    impl TestVolume {
        async fn new(engine: &Engine, name: &str) -> TestVolume {
            use bollard::models::VolumeCreateRequest;
            let name = format!("persist-unit-{name}-{}", std::process::id());
            engine
                .docker
                .create_volume(VolumeCreateRequest {
                    name: Some(name.clone()),
                    labels: Some(HashMap::from([(
                        "persist.test.run".to_string(),
                        "unit".to_string(),
                    )])),
                    ..Default::default()
                })
                .await
                .unwrap();
            TestVolume(name)
        }
    }

    impl Drop for TestVolume {
        fn drop(&mut self) {
            let _ = std::process::Command::new("docker")
                .args(["volume", "rm", "-f", &self.0])
                .output();
        }
    }

    fn tar_of(files: &[(&str, &[u8])]) -> Vec<u8> {
        // A minimal ustar writer is not needed: the engine accepts GNU tar too, so build with `tar`.
        let dir = tempfile::tempdir().unwrap();
        for (name, data) in files {
            let p = dir.path().join(name);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, data).unwrap();
        }
        let out = std::process::Command::new("tar")
            .args([
                "-C",
                dir.path().to_str().unwrap(),
                "--owner=999",
                "--group=999",
                "-cf",
                "-",
                ".",
            ])
            .output()
            .unwrap();
        assert!(out.status.success());
        out.stdout
    }

    #[tokio::test]
    async fn helper_uploads_and_downloads_volume_data_and_is_removed() {
        let _serial = SERIAL.lock().await;
        let engine = local_engine().await;
        let volume = TestVolume::new(&engine, "helper-rt").await;
        let helper = engine
            .create_helper(&HelperMount::Volume {
                name: volume.0.clone(),
                read_only: false,
            })
            .await
            .unwrap();
        let id = helper.id().to_string();
        let tar = tar_of(&[("a.txt", b"hello"), ("sub/b.bin", &[7u8; 5000])]);
        let body = futures_util::stream::iter([Ok::<_, std::io::Error>(bytes::Bytes::from(tar))]);
        engine.upload_data(&helper, body).await.unwrap();

        let mut stream = std::pin::pin!(engine.download_data(&helper));
        let mut downloaded = Vec::new();
        while let Some(chunk) = stream.next().await {
            downloaded.extend_from_slice(&chunk.unwrap());
        }
        let listing = std::process::Command::new("tar")
            .args(["-tvf", "-", "--numeric-owner"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut child| {
                use std::io::Write;
                child.stdin.take().unwrap().write_all(&downloaded)?;
                child.wait_with_output()
            })
            .unwrap();
        let listing = String::from_utf8_lossy(&listing.stdout);
        assert!(
            listing.contains("999/999") && listing.contains("./sub/b.bin"),
            "{listing}"
        );
        assert!(listing.contains("5000"), "{listing}");

        // The helper is never started, and removing it leaves the volume.
        let inspect = engine.docker.inspect_container(&id, None).await.unwrap();
        assert_eq!(inspect.state.and_then(|s| s.running), Some(false));
        helper.remove().await.unwrap();
        assert!(engine.docker.inspect_container(&id, None).await.is_err());
        assert!(engine.volume(&volume.0).await.unwrap().is_some());
    }

    #[tokio::test]
    async fn dropped_helpers_are_removed_at_the_end() {
        let _serial = SERIAL.lock().await;
        let engine = local_engine().await;
        let volume = TestVolume::new(&engine, "helper-drop").await;
        let helper = engine
            .create_helper(&HelperMount::Volume {
                name: volume.0.clone(),
                read_only: true,
            })
            .await
            .unwrap();
        let id = helper.id().to_string();
        // Forgotten without Drop running: only the end-of-command sweep can remove it.
        std::mem::forget(helper);
        assert!(engine.docker.inspect_container(&id, None).await.is_ok());
        assert!(engine.remove_leftover_helpers().await.unwrap() >= 1);
        assert!(engine.docker.inspect_container(&id, None).await.is_err());
    }

    #[test]
    fn owner_is_host_and_pid() {
        let o = owner();
        assert!(o.ends_with(&format!(":{}", std::process::id())), "{o}");
    }

    #[test]
    fn a_running_owner_is_not_gone_and_a_dead_one_is() {
        assert!(!owner_is_gone(&owner()));
        let host = owner()
            .rsplit_once(':')
            .map(|(h, _)| h.to_string())
            .unwrap();
        // PIDs are below 2^22 on Linux.
        assert!(owner_is_gone(&format!("{host}:99999999")));
        // Another host's helper is left to that host.
        assert!(!owner_is_gone("some-other-host:1"));
    }
}
