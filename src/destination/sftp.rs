//! A destination that is a directory on an SFTP server: `sftp://[user@]host[:port]/path`.
//!
//! The connection is the system's OpenSSH client, `ssh -s HOST sftp`, with the SFTP protocol spoken over its
//! stdin/stdout by the `openssh-sftp-client` crate. Driving `ssh` itself, rather than an SSH library, means
//! that the agent, key files, `~/.ssh/config` (`Host` aliases, `ProxyJump`, `IdentityFile`, ports) and
//! `known_hosts` behave exactly as they do for `ssh` and `scp` on that machine: an unknown host or a changed
//! host key is refused by ssh itself (`BatchMode=yes`: it never prompts), with ssh's own message. The argv of
//! the child holds the host, port, user and key file path, never a secret. `DOCKER_PERSIST_SSH` replaces the
//! `ssh` program and its leading options (split on whitespace, like `rsync -e`), e.g.
//! `ssh -F /etc/persist/ssh_config`.
//!
//! Files are written as `<name>.partial`, fsynced where the server supports it, then renamed (the server's
//! `posix-rename` when offered, which never leaves the name missing); a failed or interrupted upload removes
//! its `.partial` when the connection still allows it, and listings skip any that remain.

use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;

use futures_util::StreamExt as _;
use openssh_sftp_client::file::TokioCompatFile;
use openssh_sftp_client::{Sftp, SftpAuxiliaryData, SftpOptions};
use tokio::io::{AsyncReadExt as _, AsyncSeekExt as _};

use super::local::{SHA256_SUFFIX, parse_sha256_line, sha256_line};
use super::unfinished;
use super::{Health, SftpUrl, Stored, stream};
use crate::archive::format::PARTIAL_SUFFIX;
use crate::archive::growing::Growing;
use crate::archive::{Backup, BackupListing, RangeSource};

/// The pattern of a server's answer that a file does not exist.
macro_rules! NO_SUCH_FILE {
    () => {
        openssh_sftp_client::Error::SftpError(
            openssh_sftp_client::error::SftpErrorKind::NoSuchFile,
            _,
        )
    };
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug)]
pub struct SftpDestination {
    url: SftpUrl,
    display: String,
    session: tokio::sync::OnceCell<Arc<Session>>,
}

struct Session {
    sftp: Sftp,
    /// What ssh said on stderr, for the message when the connection fails.
    stderr: Arc<std::sync::Mutex<String>>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Session")
    }
}

/// The `ssh` command line for `url`: program, options, then `-s HOST sftp`.
pub fn ssh_argv(url: &SftpUrl, program: Option<&str>) -> Vec<String> {
    let mut argv: Vec<String> = program
        .filter(|p| !p.trim().is_empty())
        .map(|p| p.split_whitespace().map(str::to_string).collect())
        .unwrap_or_else(|| vec!["ssh".to_string()]);
    argv.extend(
        [
            "-o",
            "BatchMode=yes",
            "-o",
            "ServerAliveInterval=15",
            "-o",
            "ServerAliveCountMax=3",
            "-o",
            "ConnectTimeout=15",
        ]
        .map(str::to_string),
    );
    if let Some(p) = url.port {
        argv.extend(["-p".to_string(), p.to_string()]);
    }
    if let Some(u) = &url.user {
        argv.extend(["-l".to_string(), u.clone()]);
    }
    if let Some(k) = &url.identity {
        argv.extend([
            "-i".to_string(),
            k.display().to_string(),
            "-o".to_string(),
            "IdentitiesOnly=yes".to_string(),
        ]);
    }
    argv.extend([
        "-s".to_string(),
        "--".to_string(),
        url.host.clone(),
        "sftp".to_string(),
    ]);
    argv
}

impl SftpDestination {
    pub fn new(url: SftpUrl) -> Self {
        let display = super::DestinationUrl::Sftp(url.clone()).to_string();
        SftpDestination {
            url,
            display,
            session: tokio::sync::OnceCell::new(),
        }
    }

    async fn session(&self) -> Result<Arc<Session>, BoxError> {
        self.session
            .get_or_try_init(|| async { self.connect().await.map(Arc::new) })
            .await
            .cloned()
    }

    async fn connect(&self) -> Result<Session, BoxError> {
        let argv = ssh_argv(
            &self.url,
            std::env::var("DOCKER_PERSIST_SSH").ok().as_deref(),
        );
        let mut child = tokio::process::Command::new(&argv[0])
            .args(&argv[1..])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot run `{}`: {e}", argv[0]))?;
        let (Some(stdin), Some(stdout), Some(mut stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err("ssh's pipes are missing".into());
        };
        let said = Arc::new(std::sync::Mutex::new(String::new()));
        let said_w = said.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            while let Ok(n) = stderr.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                if let Ok(mut s) = said_w.lock()
                    && s.len() < 16 * 1024
                {
                    s.push_str(&String::from_utf8_lossy(&buf[..n]));
                }
            }
        });
        let started = Sftp::new_with_auxiliary(
            stdin,
            stdout,
            SftpOptions::new(),
            SftpAuxiliaryData::Boxed(Box::new(std::sync::Mutex::new(child))),
        )
        .await;
        match started {
            Ok(sftp) => Ok(Session { sftp, stderr: said }),
            Err(e) => {
                // Give ssh a moment to finish its message.
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                let said = said
                    .lock()
                    .map(|s| s.trim().to_string())
                    .unwrap_or_default();
                Err(if said.is_empty() {
                    format!("ssh to `{}` failed: {e}", self.url.host).into()
                } else {
                    format!("ssh to `{}` failed: {said}", self.url.host).into()
                })
            }
        }
    }

    fn remote(&self, name: &str) -> PathBuf {
        Path::new(&self.url.path).join(name)
    }

    fn locate(&self, name: &str) -> PathBuf {
        PathBuf::from(format!("{}/{name}", self.display.trim_end_matches('/')))
    }

    /// An error from the session, with what ssh said when the connection went away.
    fn err(&self, session: &Session, e: impl std::fmt::Display) -> BoxError {
        let said = session
            .stderr
            .lock()
            .map(|s| s.trim().to_string())
            .unwrap_or_default();
        if said.is_empty() {
            e.to_string().into()
        } else {
            format!("{e} (ssh: {said})").into()
        }
    }

    pub async fn list(&self, project: &str) -> Result<BackupListing, BoxError> {
        let s = self.session().await?;
        let mut listing = BackupListing::default();
        let mut fs = s.sftp.fs();
        let dir = match fs.open_dir(&self.url.path).await {
            Ok(d) => d,
            Err(openssh_sftp_client::Error::SftpError(
                openssh_sftp_client::error::SftpErrorKind::NoSuchFile,
                _,
            )) => return Ok(listing),
            Err(e) => return Err(self.err(&s, e)),
        };
        let mut entries = Box::pin(dir.read_dir());
        let mut candidates = Vec::new();
        while let Some(entry) = entries.next().await {
            let entry = entry.map_err(|e| self.err(&s, e))?;
            let Some(name) = entry.filename().to_str().map(str::to_string) else {
                continue;
            };
            if !listing.is_candidate(project, &name, &self.locate(&name)) {
                continue;
            }
            candidates.push((name, entry.metadata().len().unwrap_or(0)));
        }
        candidates.sort();
        for (name, size) in candidates {
            let path = self.locate(&name);
            let source = FileSource {
                session: s.clone(),
                path: self.remote(&name),
                len: size,
                handle: tokio::runtime::Handle::current(),
            };
            let p = path.clone();
            let got = tokio::task::spawn_blocking(move || {
                crate::archive::read_tail_manifest(&p, &source)
            })
            .await?;
            listing.add_read(project, path, size, got.map_err(|e| e.to_string()));
        }
        listing.sort_newest_first();
        Ok(listing)
    }

    pub async fn open(&self, name: &str) -> Result<Backup, BoxError> {
        let s = self.session().await?;
        let remote = self.remote(name);
        let meta = s
            .sftp
            .fs()
            .metadata(&remote)
            .await
            .map_err(|e| self.err(&s, e))?;
        let source = FileSource {
            session: s.clone(),
            path: remote,
            len: meta.len().unwrap_or(0),
            handle: tokio::runtime::Handle::current(),
        };
        let path = self.locate(name);
        Ok(
            tokio::task::spawn_blocking(move || Backup::open_source(path, Arc::new(source)))
                .await??,
        )
    }

    async fn recorded_sha256(&self, s: &Session, name: &str) -> Option<String> {
        let bytes = s
            .sftp
            .fs()
            .read(self.remote(&format!("{name}{SHA256_SUFFIX}")))
            .await
            .ok()?;
        parse_sha256_line(&String::from_utf8_lossy(&bytes), name)
    }

    pub async fn put_file(&self, local: &Path, name: &str) -> Result<Stored, BoxError> {
        let s = self.session().await?;
        if let Ok(meta) = s.sftp.fs().metadata(self.remote(name)).await {
            let p = local.to_path_buf();
            let (local_len, local_sha) =
                tokio::task::spawn_blocking(move || super::local::hash_file(&p)).await??;
            let recorded = self.recorded_sha256(&s, name).await;
            if meta.len() == Some(local_len) && recorded.as_deref() == Some(local_sha.as_str()) {
                return Ok(Stored {
                    location: self.locate(name),
                    bytes: local_len,
                    sha256: local_sha,
                    already_there: true,
                });
            }
            return Err(
                format!("a different `{name}` is already there; it is left as it is").into(),
            );
        }
        let (growing, _) = stream::complete_file(local, name)?;
        self.follow(&growing).await
    }

    /// Copies the file `growing` follows to the server's `<path>/<name>.partial` as it is written (see
    /// [`super::stream`]), then gives it its name and records its SHA-256.
    pub async fn follow(&self, growing: &Growing) -> Result<Stored, BoxError> {
        let s = self.session().await?;
        let local = stream::open_followed(growing).await?;
        let name = local.name.clone();
        let mut fs = s.sftp.fs();
        let target = self.remote(&name);
        if fs.metadata(&target).await.is_ok() {
            return Err(
                format!("a different `{name}` is already there; it is left as it is").into(),
            );
        }
        // The directory, as `mkdir -p` would (each missing component, 0700).
        let mut at = PathBuf::from("/");
        for c in Path::new(&self.url.path).components().skip(1) {
            at.push(c);
            if fs.metadata(&at).await.is_err() {
                let mut b = fs.dir_builder();
                b.permissions(openssh_sftp_client::metadata::Permissions::from(0o700u16));
                if let Err(e) = b.create(&at).await
                    && fs.metadata(&at).await.is_err()
                {
                    return Err(self.err(&s, format!("cannot create `{}`: {e}", at.display())));
                }
            }
        }
        let partial = self.remote(&format!("{name}{PARTIAL_SUFFIX}"));
        // Recorded before it exists: a kill -9 from here leaves it to the next command to remove.
        let mark = unfinished::Mark::record(
            &format!("`{}`", self.display),
            &name,
            unfinished::Left::SftpPartial {
                url: self.url.clone(),
                path: partial.to_string_lossy().into_owned(),
            },
        );
        let mut guard = RemovePartial {
            session: Some(s.clone()),
            path: partial.clone(),
            mark: Some(mark),
        };
        let out = s
            .sftp
            .options()
            .write(true)
            // A `.partial` left by a killed process is only ever an unfinished copy: start it again.
            .create(true)
            .truncate(true)
            .open(&partial)
            .await
            .map_err(|e| self.err(&s, format!("cannot create `{}`: {e}", partial.display())))?;
        let mut out = Box::pin(TokioCompatFile::new(out));
        let copied = match stream::copy_following(growing, &local, &mut out).await {
            Ok(c) => c,
            Err(e) => {
                // SFTP has no "disk full" status (the server says `Failure`): ask the server for its free
                // space, so that a full disk is said as such.
                drop(out);
                return Err(match self.no_space(&s).await {
                    Some(full) => full.into(),
                    None => self.err(&s, e),
                });
            }
        };
        if copied.written > copied.len {
            out.as_mut()
                .as_mut_file()
                .set_len(copied.len)
                .await
                .map_err(|e| self.err(&s, format!("cannot truncate: {e}")))?;
        }
        if s.sftp.support_fsync() {
            out.as_mut()
                .as_mut_file()
                .sync_all()
                .await
                .map_err(|e| self.err(&s, format!("fsync failed: {e}")))?;
        }
        drop(out);
        let len = copied.len;
        let sha256 = stream::wait_sha256(growing).await?;
        let there = fs
            .metadata(&partial)
            .await
            .map_err(|e| self.err(&s, e))?
            .len();
        if there != Some(len) {
            return Err(format!(
                "the server holds {there:?} bytes of `{name}` after the upload, {len} were sent"
            )
            .into());
        }
        // Never replace: the name was free a moment ago; a hard link (when offered) fails if it was taken since.
        if s.sftp.support_hardlink() {
            fs.hard_link(&partial, &target)
                .await
                .map_err(|e| self.err(&s, format!("cannot give `{name}` its name: {e}")))?;
            let _ = fs.remove_file(&partial).await;
        } else {
            fs.rename(&partial, &target)
                .await
                .map_err(|e| self.err(&s, format!("cannot give `{name}` its name: {e}")))?;
        }
        guard.session = None;
        if let Some(m) = guard.mark.take() {
            m.done();
        }
        fs.write(
            self.remote(&format!("{name}{SHA256_SUFFIX}")),
            sha256_line(&name, &sha256).as_bytes(),
        )
        .await
        .map_err(|e| self.err(&s, e))?;
        Ok(Stored {
            location: self.locate(&name),
            bytes: len,
            sha256,
            already_there: false,
        })
    }

    pub async fn remove(&self, name: &str) -> Result<(), BoxError> {
        let s = self.session().await?;
        let mut fs = s.sftp.fs();
        // The `.sha256` first (see `Destination::remove`); one already gone is no obstacle.
        let _ = fs
            .remove_file(self.remote(&format!("{name}{SHA256_SUFFIX}")))
            .await;
        // A file already gone (another prune, a hand) is what removing it asked for.
        match fs.remove_file(self.remote(name)).await {
            Ok(()) | Err(NO_SUCH_FILE!()) => Ok(()),
            Err(e) => Err(self.err(&s, e)),
        }
    }

    /// After a failed write: "no space left on the server …" when the destination's filesystem has less
    /// than a follower's chunk free (statvfs, where the server offers it); `None` otherwise.
    async fn no_space(&self, s: &Session) -> Option<String> {
        if !s.sftp.support_statvfs() {
            return None;
        }
        let v = s.sftp.fs().statvfs(&self.url.path).await.ok()?;
        let free = v.bavail.saturating_mul(v.frsize);
        (free < stream::CHUNK).then(|| {
            format!(
                "no space left on the server ({} free in `{}`); the partial copy is removed",
                crate::report::human_size(free),
                self.url.path
            )
        })
    }

    pub async fn check(&self) -> Health {
        let mut h = Health {
            reachable: false,
            writable: false,
            free_bytes: None,
            error: None,
        };
        let s = match self.session().await {
            Ok(s) => s,
            Err(e) => {
                h.error = Some(e.to_string());
                return h;
            }
        };
        h.reachable = true;
        let mut fs = s.sftp.fs();
        // The nearest directory that exists: the destination is created on first use.
        let mut dir = PathBuf::from(&self.url.path);
        while fs.metadata(&dir).await.is_err() {
            if !dir.pop() {
                break;
            }
        }
        if s.sftp.support_statvfs()
            && let Ok(v) = fs.statvfs(&dir).await
        {
            h.free_bytes = Some(v.bavail.saturating_mul(v.frsize));
        }
        let probe = dir.join(format!(".docker-persist-probe-{}", std::process::id()));
        match fs.write(&probe, b"probe").await {
            Ok(()) => {
                h.writable = fs.remove_file(&probe).await.is_ok();
            }
            Err(e) => h.error = Some(format!("cannot write in `{}`: {e}", dir.display())),
        }
        h
    }
}

/// Removes an unfinished upload's `.partial` on the server, unless disarmed.
struct RemovePartial {
    session: Option<Arc<Session>>,
    path: PathBuf,
    /// Its record for the next command, removed once the file is.
    mark: Option<unfinished::Mark>,
}

impl Drop for RemovePartial {
    fn drop(&mut self) {
        if let Some(s) = self.session.take()
            && let Ok(handle) = tokio::runtime::Handle::try_current()
        {
            let path = std::mem::take(&mut self.path);
            let mark = self.mark.take();
            let task = handle.spawn(async move {
                let removed = tokio::time::timeout(
                    std::time::Duration::from_secs(10),
                    s.sftp.fs().remove_file(&path),
                )
                .await;
                if let (Ok(Ok(()) | Err(NO_SUCH_FILE!())), Some(m)) = (removed, mark) {
                    m.done();
                }
            });
            super::register_cleanup(task);
        }
    }
}

/// Removes the `.partial` at `path` on `url`'s server (one left by a killed command); one already gone is
/// fine.
pub async fn remove_partial(url: &SftpUrl, path: &str) -> Result<(), BoxError> {
    let d = SftpDestination::new(url.clone());
    let s = d.session().await?;
    match s.sftp.fs().remove_file(path).await {
        Ok(()) | Err(NO_SUCH_FILE!()) => Ok(()),
        Err(e) => Err(d.err(&s, e)),
    }
}

/// A remote file read by ranges, from a blocking thread.
#[derive(Debug)]
struct FileSource {
    session: Arc<Session>,
    path: PathBuf,
    len: u64,
    handle: tokio::runtime::Handle,
}

impl RangeSource for FileSource {
    fn len(&self) -> u64 {
        self.len
    }

    fn read_range(&self, offset: u64, len: u64) -> io::Result<Box<dyn Read + Send>> {
        let end = offset.saturating_add(len).min(self.len);
        if offset >= end {
            return Ok(Box::new(io::empty()));
        }
        let file = self
            .handle
            .block_on(self.session.sftp.open(&self.path))
            .map_err(|e| io::Error::other(format!("cannot open `{}`: {e}", self.path.display())))?;
        let mut file = Box::pin(TokioCompatFile::new(file));
        self.handle
            .block_on(file.seek(io::SeekFrom::Start(offset)))?;
        Ok(Box::new(BlockingFile {
            file,
            left: end - offset,
            handle: self.handle.clone(),
        }))
    }
}

struct BlockingFile {
    file: std::pin::Pin<Box<TokioCompatFile>>,
    left: u64,
    handle: tokio::runtime::Handle,
}

impl Read for BlockingFile {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 || buf.is_empty() {
            return Ok(0);
        }
        if crate::cancel::is_cancelled() {
            return Err(crate::cancel::interrupted_error());
        }
        let want = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let n = self.handle.block_on(self.file.read(&mut buf[..want]))?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the file ended early",
            ));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssh_argv_never_prompts_and_ends_with_the_sftp_subsystem() {
        let url = SftpUrl {
            user: Some("bob".into()),
            host: "backup.example".into(),
            port: Some(2222),
            path: "/srv".into(),
            identity: Some("/keys/id_ed25519".into()),
        };
        let argv = ssh_argv(&url, None);
        assert_eq!(argv[0], "ssh");
        assert!(argv.windows(2).any(|w| w == ["-o", "BatchMode=yes"]));
        assert!(argv.windows(2).any(|w| w == ["-p", "2222"]));
        assert!(argv.windows(2).any(|w| w == ["-l", "bob"]));
        assert!(argv.windows(2).any(|w| w == ["-i", "/keys/id_ed25519"]));
        assert_eq!(
            &argv[argv.len() - 4..],
            ["-s", "--", "backup.example", "sftp"]
        );
        let argv = ssh_argv(&url, Some("ssh -F /etc/x"));
        assert_eq!(&argv[..3], ["ssh", "-F", "/etc/x"]);
    }
}
