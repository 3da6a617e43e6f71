//! A destination that is a directory on this machine: the project's `backups/` (the destination `local`),
//! or another one (`/mnt/usb/persist`, `file:///…`). Files are written as `<name>.partial`, fsynced, given
//! their final name without ever replacing one, and the directory fsynced, exactly like the backup writer.

use fs_err::os::unix::fs::OpenOptionsExt;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use super::{Health, Stored, stream};
use crate::archive::format::PARTIAL_SUFFIX;
use crate::archive::growing::Growing;
use crate::archive::writer::{ensure_dir, publish};
use crate::archive::{ArchiveError, BackupListing, list_backups};

/// The suffix of the file beside a backup that holds its SHA-256 (`sha256sum -c` format).
pub const SHA256_SUFFIX: &str = ".sha256";

const COPY_BUFFER: usize = 1024 * 1024;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, Clone)]
pub struct DirDestination {
    dir: PathBuf,
}

impl DirDestination {
    pub fn new(dir: PathBuf) -> Self {
        DirDestination { dir }
    }

    pub fn path(&self, file_name: &str) -> PathBuf {
        self.dir.join(file_name)
    }

    pub fn list(&self, project: &str) -> Result<BackupListing, ArchiveError> {
        list_backups(&self.dir, project)
    }

    /// What is at `<dir>/<name>` before `local` is stored there: the same file (nothing to send), or
    /// nothing (send it, with its size and SHA-256); a different file is an error.
    fn before_put(&self, local: &Path, name: &str) -> Result<(Stored, bool), BoxError> {
        let target = self.path(name);
        let same = fs_err::canonicalize(local)
            .ok()
            .zip(fs_err::canonicalize(&target).ok());
        let (bytes, sha256) = hash_file(local)?;
        let stored = |already_there| Stored {
            location: target.clone(),
            bytes,
            sha256: sha256.clone(),
            already_there,
        };
        if let Some((a, b)) = &same
            && a == b
        {
            // The file is already here (pushing `local` to itself).
            return Ok((stored(true), true));
        }
        if target.symlink_metadata().is_ok() {
            let (there_bytes, there_sha) = hash_file(&target)?;
            if (there_bytes, &there_sha) == (bytes, &sha256) {
                ensure_dir(&self.dir)?;
                write_sha256(&self.dir, name, &sha256)?;
                return Ok((stored(true), true));
            }
            return Err(Box::new(ArchiveError::Exists { path: target }));
        }
        Ok((stored(false), false))
    }

    /// Copies the complete file `local` to `<dir>/<name>` (see [`DirDestination::follow`]), unless it is
    /// there already.
    pub async fn put_file(&self, local: &Path, name: &str) -> Result<Stored, BoxError> {
        let (this, l, n) = (self.clone(), local.to_path_buf(), name.to_string());
        let (stored, there) =
            tokio::task::spawn_blocking(move || this.before_put(&l, &n)).await??;
        if there {
            return Ok(stored);
        }
        let growing = Growing::complete(
            local.to_path_buf(),
            name.to_string(),
            stored.bytes,
            stored.sha256,
        );
        self.follow(&growing).await
    }

    /// Copies the file `growing` follows to `<dir>/<name>` through a `.partial` as it is written (see
    /// [`super::stream`]), then gives it its name and records its SHA-256.
    pub async fn follow(&self, growing: &Growing) -> Result<Stored, BoxError> {
        let local = stream::open_followed(growing).await?;
        let name = local.name.clone();
        let target = self.path(&name);
        if target.symlink_metadata().is_ok() {
            return Err(Box::new(ArchiveError::Exists { path: target }));
        }
        ensure_dir(&self.dir)?;
        let partial = self.path(&format!("{name}{PARTIAL_SUFFIX}"));
        let mut out = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&partial)
            .await
            .map_err(|e| format!("cannot create `{}`: {e}", partial.display()))?;
        let mut guard = PartialGuard(Some(partial.clone()));
        let copied = stream::copy_following(growing, &local, &mut out).await?;
        if copied.written > copied.len {
            out.set_len(copied.len).await?;
        }
        out.sync_all().await?;
        drop(out);
        let sha256 = stream::wait_sha256(growing).await?;
        let there = fs_err::metadata(&partial)?.len();
        if there != copied.len {
            return Err(format!(
                "`{}` holds {there} bytes after the copy, {} were sent",
                partial.display(),
                copied.len
            )
            .into());
        }
        publish(&partial, &target)?;
        guard.0 = None;
        write_sha256(&self.dir, &name, &sha256)?;
        sync_dir(&self.dir);
        Ok(Stored {
            location: target,
            bytes: copied.len,
            sha256,
            already_there: false,
        })
    }

    /// Removes the backup `name` and its `.sha256`: the `.sha256` first, so that however the removal is
    /// cut short, a `.sha256` never names a file that is gone (see [`super::Destination::remove`]).
    pub fn remove(&self, name: &str) -> io::Result<()> {
        match fs_err::remove_file(self.path(&format!("{name}{SHA256_SUFFIX}"))) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        fs_err::remove_file(self.path(name))?;
        sync_dir(&self.dir);
        Ok(())
    }

    pub fn check(&self) -> Health {
        let mut health = Health {
            reachable: false,
            writable: false,
            free_bytes: None,
            error: None,
        };
        // The nearest directory that exists: the destination is created on first use.
        let mut existing = self.dir.as_path();
        while !existing.is_dir() {
            match existing.parent() {
                Some(p) => existing = p,
                None => {
                    health.error = Some(format!("`{}` does not exist", self.dir.display()));
                    return health;
                }
            }
        }
        health.reachable = true;
        health.free_bytes = rustix::fs::statvfs(existing)
            .ok()
            .map(|s| s.f_bavail.saturating_mul(s.f_frsize));
        let probe = existing.join(format!(".docker-persist-probe-{}", std::process::id()));
        match fs_err::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&probe)
        {
            Ok(_) => {
                let _ = std::fs::remove_file(&probe);
                health.writable = true;
            }
            Err(e) => health.error = Some(format!("cannot write in `{}`: {e}", existing.display())),
        }
        health
    }
}

/// Size and SHA-256 of a file, read once.
pub fn hash_file(path: &Path) -> io::Result<(u64, String)> {
    let mut f = fs_err::File::open(path)?;
    let mut sha = Sha256::new();
    let mut buf = vec![0u8; COPY_BUFFER];
    let mut n_total = 0u64;
    loop {
        // Ctrl-C: a large file is not read to its end first (`push` hashes on a thread of its own).
        if crate::cancel::is_cancelled() {
            return Err(crate::cancel::interrupted_error());
        }
        let n = match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        sha.update(&buf[..n]);
        n_total += n as u64;
    }
    Ok((n_total, hex::encode(sha.finalize())))
}

/// The `.sha256` file's content for `name`: `sha256sum` format.
pub fn sha256_line(name: &str, sha256: &str) -> String {
    format!("{sha256}  {name}\n")
}

/// The SHA-256 in a `.sha256` file's content, if it names `name`.
pub fn parse_sha256_line(content: &str, name: &str) -> Option<String> {
    let (hash, file) = content.trim_end().split_once("  ")?;
    (file == name && hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| hash.to_ascii_lowercase())
}

fn write_sha256(dir: &Path, name: &str, sha256: &str) -> io::Result<()> {
    let path = dir.join(format!("{name}{SHA256_SUFFIX}"));
    let tmp = dir.join(format!("{name}{SHA256_SUFFIX}{PARTIAL_SUFFIX}"));
    let mut f = fs_err::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(sha256_line(name, sha256).as_bytes())?;
    f.sync_all()?;
    fs_err::rename(&tmp, &path)
}

fn sync_dir(dir: &Path) {
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Removes a `.partial` on every path that does not publish it.
struct PartialGuard(Option<PathBuf>);

impl Drop for PartialGuard {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn put_copies_through_a_partial_records_the_sha256_and_never_replaces() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("app-20261122T101500Z.tar");
        std::fs::write(&src, vec![7u8; 3_000_000]).unwrap();
        let dest = DirDestination::new(tmp.path().join("usb/persist"));
        let stored = dest
            .put_file(&src, "app-20261122T101500Z.tar")
            .await
            .unwrap();
        assert!(!stored.already_there);
        assert_eq!(
            std::fs::read(&stored.location).unwrap(),
            std::fs::read(&src).unwrap()
        );
        let line = std::fs::read_to_string(dest.path("app-20261122T101500Z.tar.sha256")).unwrap();
        assert_eq!(
            parse_sha256_line(&line, "app-20261122T101500Z.tar"),
            Some(stored.sha256.clone())
        );
        assert_eq!(hash_file(&src).unwrap().1, stored.sha256);
        // Again: identical, nothing sent.
        assert!(
            dest.put_file(&src, "app-20261122T101500Z.tar")
                .await
                .unwrap()
                .already_there
        );
        // A different file under the same name is refused, and the one there is kept.
        let other = tmp.path().join("other.tar");
        std::fs::write(&other, b"different").unwrap();
        assert!(
            dest.put_file(&other, "app-20261122T101500Z.tar")
                .await
                .is_err()
        );
        assert_eq!(std::fs::read(&stored.location).unwrap().len(), 3_000_000);
        let names: Vec<_> = std::fs::read_dir(dest.path(""))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.ends_with(".partial"))
            .collect();
        assert!(names.is_empty(), "{names:?}");
        dest.remove("app-20261122T101500Z.tar").unwrap();
        assert!(!stored.location.exists());
        assert!(!dest.path("app-20261122T101500Z.tar.sha256").exists());
    }

    #[test]
    fn check_reports_writable_and_free_space() {
        let tmp = tempfile::tempdir().unwrap();
        let h = DirDestination::new(tmp.path().join("not/yet")).check();
        assert!(h.reachable && h.writable, "{h:?}");
        assert!(h.free_bytes.unwrap() > 0);
    }
}
