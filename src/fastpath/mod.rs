//! The local fast path: when the engine runs on this machine, with this program's OS and architecture, and
//! this program is a static executable, docker persist imports its own executable as a one-file helper
//! image and runs it in a container with the volume mounted. The helper reads (or writes) the volume on
//! disk and streams the tar over a unix socket that docker persist listens on, in a private directory
//! bind-mounted into the helper. docker persist keeps doing everything else — the content digest, zstd,
//! the backup file, its checks — exactly as on the universal path, so both paths make the same members
//! and the backup file is always written by the invoking user.
//!
//! Preconditions are checked, not assumed ([`select`]): the executable, the engine's OS and architecture,
//! an engine on this machine, and finally the helper connecting back with its nonce through the bind mount,
//! which proves the engine sees this machine's files. When a check fails the universal path is used
//! (said with `--verbose`), unless `--path fast` asked for this one.

pub mod exe;
pub mod inside;

use std::io::Read as _;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::archive::{ContentDigest, DigestVersion};
use crate::cli::DataPath;
use crate::engine::Engine;
use crate::engine::helper::{DATA_PATH, HelperContainer, HelperMount, bind_mount, data_mount};
use crate::report::Printer;

/// The repository of fast-path helper images; the tag is `fast-<version>-<executable digest>`.
const IMAGE_REPO: &str = "docker-persist-helper";
const TAG_PREFIX: &str = "fast-";
/// Where the private socket directory is mounted in a helper.
const IO_PATH: &str = "/io";
/// How long a started helper may take to connect before the fast path is given up.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// What a helper reports when it ends (the file `result.json` in the socket directory).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct HelperReport {
    /// Why it failed; `None` when it succeeded.
    pub error: Option<String>,
    /// Entries packed or unpacked.
    pub entries: u64,
    /// Bytes of regular-file content packed or unpacked.
    pub file_bytes: u64,
    /// Unix sockets found and left out (the engine's tar leaves them out too).
    pub skipped_sockets: u64,
    /// After an unpack: the content digest of the tree on disk.
    pub digest: Option<ContentDigest>,
    /// After an unpack: the entries of the tree on disk.
    pub digest_entries: u64,
}

/// The fast path, once its static checks passed. Shared by the volumes of one command; after a helper
/// could not connect it is given up for the rest of the command (unless it was asked for).
#[derive(Debug)]
pub struct FastPath {
    engine: Engine,
    image: String,
    forced: bool,
    given_up: AtomicBool,
}

/// Why a helper run did not happen.
#[derive(Debug)]
enum LaunchError {
    /// The fast path cannot work here (the helper could not connect): use the universal path.
    Unavailable(String),
    /// Something failed that would fail on any path.
    Failed(anyhow::Error),
}

/// Chooses the data path for a command: `Some` for the fast path, `None` for the universal one.
pub async fn select(
    engine: &Engine,
    printer: &Printer,
    choice: Option<DataPath>,
) -> anyhow::Result<Option<FastPath>> {
    if choice == Some(DataPath::Universal) {
        printer.verbose("data path: universal (`--path universal`)");
        return Ok(None);
    }
    let forced = choice == Some(DataPath::Fast);
    match prepare(engine).await {
        Ok(image) => {
            printer.verbose(format!(
                "data path: fast, through helper image `{image}`, if a helper can connect back"
            ));
            Ok(Some(FastPath {
                engine: engine.clone(),
                image,
                forced,
                given_up: AtomicBool::new(false),
            }))
        }
        Err(reason) if forced => {
            anyhow::bail!("`--path fast` cannot be used: {reason}")
        }
        Err(reason) => {
            printer.verbose(format!("data path: universal, because {reason}"));
            Ok(None)
        }
    }
}

/// The static checks, then the helper image (imported when missing). Returns the image's tag.
async fn prepare(engine: &Engine) -> Result<String, String> {
    if !engine.is_local() {
        return Err(
            "the engine is not on this machine (neither a unix socket nor a loopback address reaches it)".into(),
        );
    }
    let version = engine
        .version()
        .await
        .map_err(|e| format!("the engine's version is unknown: {e}"))?;
    let executable = tokio::task::spawn_blocking(|| std::fs::read("/proc/self/exe"))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("this program's executable cannot be read: {e}"))?;
    if let Some(reason) = exe::unfit_reason(&executable, &version.os, &version.arch) {
        return Err(reason);
    }
    let digest = hex::encode(Sha256::digest(&executable));
    let tag = format!(
        "{IMAGE_REPO}:{TAG_PREFIX}{}-{}",
        env!("CARGO_PKG_VERSION"),
        &digest[..12]
    );
    let imported = engine
        .ensure_image(&tag, || {
            crate::archive::rootfs::fast_helper_rootfs(&executable)
        })
        .await
        .map_err(|e| e.to_string())?;
    if imported {
        engine
            .remove_other_helper_images(IMAGE_REPO, TAG_PREFIX, &tag)
            .await;
    }
    Ok(tag)
}

/// What a helper does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Pack,
    /// Unpack, then digest what is on disk with this version of the digest.
    Unpack(DigestVersion),
    /// Remove everything below the data root.
    Clear,
}

/// Starts a helper for `op` on `mount` when the command uses the fast path, and returns it once it has
/// connected, with its connection. `Ok(None)`: take the universal path — the command does not use the fast
/// path, or gave it up, or gives it up now because a helper cannot connect (said with `--verbose`; an error
/// instead when `--path fast` asked for it).
pub async fn launch(
    fast: Option<&FastPath>,
    printer: &Printer,
    op: Op,
    mount: &HelperMount,
    strip_prefix: Option<&str>,
) -> anyhow::Result<Option<(HelperRun, UnixStream)>> {
    let Some(fast) = fast.filter(|f| !f.given_up.load(Ordering::SeqCst)) else {
        return Ok(None);
    };
    match fast.try_launch(op, mount, strip_prefix).await {
        Ok(connected) => Ok(Some(connected)),
        Err(LaunchError::Unavailable(reason)) if fast.forced => {
            anyhow::bail!("`--path fast` cannot be used: {reason}")
        }
        Err(LaunchError::Unavailable(reason)) => {
            fast.given_up.store(true, Ordering::SeqCst);
            printer.verbose(format!(
                "data path: universal from now on, because {reason}"
            ));
            Ok(None)
        }
        Err(LaunchError::Failed(e)) => Err(e),
    }
}

impl FastPath {
    async fn try_launch(
        &self,
        op: Op,
        mount: &HelperMount,
        strip_prefix: Option<&str>,
    ) -> Result<(HelperRun, UnixStream), LaunchError> {
        let failed = |e: anyhow::Error| LaunchError::Failed(e);
        static SWEPT: std::sync::Once = std::sync::Once::new();
        SWEPT.call_once(|| sweep_dead_io_dirs(&std::env::temp_dir()));
        let dir = tempfile::Builder::new()
            .prefix(&io_dir_prefix(std::process::id()))
            .tempdir()
            .context("failed to create a private directory for the helper's socket")
            .map_err(failed)?;
        let socket = dir.path().join("s");
        let listener = tokio::net::UnixListener::bind(&socket)
            .with_context(|| format!("failed to listen on `{}`", socket.display()))
            .map_err(failed)?;
        let nonce = nonce().map_err(failed)?;
        let io_dir = dir.path().to_string_lossy().into_owned();
        let mut cmd = vec![
            "/docker-persist".to_string(),
            crate::cli::HELPER_ARG.to_string(),
            match op {
                Op::Pack => "pack",
                Op::Unpack(_) => "unpack",
                Op::Clear => "clear",
            }
            .to_string(),
            "--socket".to_string(),
            format!("{IO_PATH}/s"),
            "--nonce".to_string(),
            nonce.clone(),
            "--result".to_string(),
            format!("{IO_PATH}/result.json"),
            "--root".to_string(),
            DATA_PATH.to_string(),
        ];
        if let Some(p) = strip_prefix {
            cmd.extend(["--strip-prefix".to_string(), p.to_string()]);
        }
        if let Op::Unpack(version) = op {
            cmd.extend(["--digest".to_string(), version.short_name().to_string()]);
        }
        let helper = self
            .engine
            .create_runner(
                &self.image,
                cmd,
                vec![data_mount(mount), bind_mount(&io_dir, IO_PATH, false)],
                mount.source(),
            )
            .await
            // The engine refuses the container when it cannot see the socket directory (a bind source
            // that does not exist on its host): the fast path cannot work with this engine.
            .map_err(|e| {
                LaunchError::Unavailable(format!("a helper container could not be created: {e}"))
            })?;
        let run = HelperRun { helper, dir };
        if let Err(e) = run.helper.start().await {
            // A helper that cannot start (a bind mount the engine refuses, a runtime without this
            // architecture) means this engine cannot run the fast path.
            let _ = run.finish_quietly().await;
            return Err(LaunchError::Unavailable(format!(
                "a helper container could not start: {e}"
            )));
        }
        let accepted = tokio::select! {
            a = accept(&listener, &nonce) => a,
            code = run.helper.wait() => Err(match code {
                Ok(code) => {
                    let why = run.read_report().and_then(|r| r.error).unwrap_or_default();
                    format!("the helper exited (code {code}) before connecting back{}", if why.is_empty() { String::new() } else { format!(": {why}") })
                }
                Err(e) => format!("the helper could not be watched: {e}"),
            }),
            () = tokio::time::sleep(CONNECT_TIMEOUT) => Err(format!(
                "the helper did not connect back within {} s",
                CONNECT_TIMEOUT.as_secs()
            )),
        };
        match accepted {
            Ok(stream) => Ok((run, stream)),
            Err(reason) => {
                let _ = run.finish_quietly().await;
                Err(LaunchError::Unavailable(reason))
            }
        }
    }
}

/// Accepts the helper's connection and checks its nonce; other connections are dropped.
async fn accept(listener: &tokio::net::UnixListener, nonce: &str) -> Result<UnixStream, String> {
    loop {
        let (stream, _) = listener
            .accept()
            .await
            .map_err(|e| format!("the helper's socket failed: {e}"))?;
        let stream = stream
            .into_std()
            .and_then(|s| s.set_nonblocking(false).map(|()| s))
            .map_err(|e| format!("the helper's connection failed: {e}"))?;
        let greeted = tokio::task::spawn_blocking(move || {
            stream.set_read_timeout(Some(Duration::from_secs(10)))?;
            let mut line = vec![0u8; NONCE_HEX_LEN + 1];
            (&stream).read_exact(&mut line)?;
            stream.set_read_timeout(None)?;
            Ok::<_, std::io::Error>((stream, line))
        })
        .await
        .map_err(|e| e.to_string())?;
        if let Ok((stream, line)) = greeted
            && line.strip_suffix(b"\n") == Some(nonce.as_bytes())
        {
            return Ok(stream);
        }
    }
}

/// The nonce's length in hex digits.
const NONCE_HEX_LEN: usize = 32;

/// `NONCE_HEX_LEN / 2` random bytes in hex.
/// The name of a socket directory starts with the pid of the process that made it, so that a later run can
/// tell one left by a process killed outright (which never removes it) from one in use.
fn io_dir_prefix(pid: u32) -> String {
    format!("{IO_DIR_PREFIX}{pid}-")
}

const IO_DIR_PREFIX: &str = "docker-persist-io-";

/// How old a dead process's socket directory must be before it is removed.
const SWEEP_AFTER: Duration = Duration::from_secs(600);

/// Removes the socket directories in `tmp` whose process is gone. A directory holds at most the socket
/// and the helper's report, never data; one whose pid is alive (or reused) is left alone.
fn sweep_dead_io_dirs(tmp: &Path) {
    let Ok(entries) = std::fs::read_dir(tmp) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(IO_DIR_PREFIX))
            .and_then(|rest| rest.split_once('-'))
            .and_then(|(pid, _)| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == std::process::id() || Path::new("/proc").join(pid.to_string()).exists() {
            continue;
        }
        // A process in another pid namespace sharing this directory looks dead from here: only its
        // directories older than a helper's connection take are candidates.
        let old_enough = entry
            .metadata()
            .and_then(|m| m.modified())
            .is_ok_and(|t| t.elapsed().is_ok_and(|age| age >= SWEEP_AFTER));
        let path = entry.path();
        if old_enough && path.is_dir() && !path.is_symlink() {
            let _ = std::fs::remove_dir_all(&path);
        }
    }
}

fn nonce() -> anyhow::Result<String> {
    let mut bytes = [0u8; NONCE_HEX_LEN / 2];
    fs_err::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(hex::encode(bytes))
}

/// A helper that has connected: move the data over its connection, then [`HelperRun::finish`].
#[derive(Debug)]
pub struct HelperRun {
    helper: HelperContainer,
    dir: tempfile::TempDir,
}

impl HelperRun {
    /// Waits for the helper to end, removes it and its socket directory, and returns its report; an
    /// error when it failed, with the helper's own explanation. Close the connection first.
    pub async fn finish(self) -> anyhow::Result<HelperReport> {
        let code = self.helper.wait().await;
        let report = read_report(self.dir.path());
        self.helper.remove().await?;
        let code = code?;
        match report {
            Some(r) if r.error.is_none() && code == 0 => Ok(r),
            Some(HelperReport {
                error: Some(why), ..
            }) => anyhow::bail!("the helper failed: {why}"),
            _ => anyhow::bail!("the helper ended with exit code {code} without a report"),
        }
    }

    fn read_report(&self) -> Option<HelperReport> {
        read_report(self.dir.path())
    }

    async fn finish_quietly(self) -> anyhow::Result<()> {
        self.helper.remove().await?;
        Ok(())
    }
}

fn read_report(dir: &Path) -> Option<HelperReport> {
    let bytes = std::fs::read(dir.join("result.json")).ok()?;
    serde_json::from_slice(&bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set_age(path: &Path, secs: u64) {
        let t = std::time::SystemTime::now() - Duration::from_secs(secs);
        std::fs::File::open(path).unwrap().set_modified(t).unwrap();
    }

    #[test]
    fn only_old_socket_directories_of_dead_processes_are_swept() {
        let tmp = tempfile::tempdir().unwrap();
        // A pid above the kernel's maximum (4194304) never runs.
        let dead = tmp.path().join(format!("{}abc", io_dir_prefix(4_194_305)));
        let dead_recent = tmp.path().join(format!("{}def", io_dir_prefix(4_194_306)));
        let alive = tmp
            .path()
            .join(format!("{}ghi", io_dir_prefix(std::process::id())));
        let parent = tmp.path().join(format!(
            "{}jkl",
            io_dir_prefix(std::os::unix::process::parent_id())
        ));
        let foreign = tmp.path().join("docker-persist-io-xyz");
        for d in [&dead, &dead_recent, &alive, &parent, &foreign] {
            std::fs::create_dir(d).unwrap();
        }
        std::fs::write(dead.join("result.json"), "{}").unwrap();
        for d in [&dead, &alive, &parent, &foreign] {
            set_age(d, 3600);
        }
        sweep_dead_io_dirs(tmp.path());
        assert!(!dead.exists());
        for d in [&dead_recent, &alive, &parent, &foreign] {
            assert!(d.exists(), "{} was removed", d.display());
        }
    }
}
