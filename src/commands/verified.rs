//! The verified state of backup files: `verify` (and the verification `down --backup` and `check` do)
//! records its outcome, `backups` shows it, and `check` counts a backup as protecting data only when its
//! verification succeeded.
//!
//! A record is a small JSON file under `$XDG_STATE_HOME/docker-persist/verified/` (else
//! `~/.local/state/…`), named after a digest of what identifies the file exactly: its absolute path, size,
//! modification time and the sha256 of its manifest. A file that is replaced, appended to, truncated or
//! touched no longer matches its record and counts as unverified again. The records live in the user's
//! state directory, not beside the backups, on purpose: the backup directory is listed, copied and synced
//! as a set of plain `.tar` files, may be read-only or shared, and a hidden file copied along with a backup
//! would claim a verification that was done on another copy. Losing the records costs only a new
//! verification.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::archive::{Backup, Manifest};

/// What a verification found, as recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verified {
    /// Every checksum and digest matched.
    Ok,
    /// The file is damaged.
    Failed,
}

#[derive(Serialize, Deserialize)]
struct Record {
    path: PathBuf,
    bytes: u64,
    modified_ns: i128,
    manifest_sha256: String,
    ok: bool,
    verified_at: String,
}

/// What identifies one backup file exactly.
struct Identity {
    path: PathBuf,
    bytes: u64,
    modified_ns: i128,
    manifest_sha256: String,
}

impl Identity {
    fn of(path: &Path, manifest: &Manifest) -> Option<Identity> {
        if is_remote(path) {
            // A file at a remote destination (`s3://…/name.tar`, `sftp://…`): its URL and manifest identify
            // it (names are never reused for other contents there: a store never replaces a file).
            return Some(Identity {
                path: path.to_path_buf(),
                bytes: 0,
                modified_ns: 0,
                manifest_sha256: hex::encode(Sha256::digest(serde_json::to_vec(manifest).ok()?)),
            });
        }
        let path = fs_err::canonicalize(path).ok()?;
        let meta = fs_err::metadata(&path).ok()?;
        let modified = meta.modified().ok()?;
        let modified_ns = match modified.duration_since(std::time::UNIX_EPOCH) {
            Ok(d) => d.as_nanos() as i128,
            Err(e) => -(e.duration().as_nanos() as i128),
        };
        let manifest_sha256 = hex::encode(Sha256::digest(serde_json::to_vec(manifest).ok()?));
        Some(Identity {
            path,
            bytes: meta.len(),
            modified_ns,
            manifest_sha256,
        })
    }

    fn record_file(&self, dir: &Path) -> PathBuf {
        let mut h = Sha256::new();
        h.update(self.path.as_os_str().as_encoded_bytes());
        h.update([0]);
        h.update(self.bytes.to_le_bytes());
        h.update(self.modified_ns.to_le_bytes());
        h.update(self.manifest_sha256.as_bytes());
        dir.join(format!("{}.json", &hex::encode(h.finalize())[..32]))
    }
}

/// Whether `path` names a file at a remote destination (a URL) rather than a local file.
pub fn is_remote(path: &Path) -> bool {
    path.to_str().is_some_and(|p| p.contains("://"))
}

/// Where records are kept; `None` when neither `XDG_STATE_HOME` nor `HOME` is set.
pub fn default_dir(env: impl Fn(&str) -> Option<String>) -> Option<PathBuf> {
    crate::intent::default_dir(env).and_then(|intents| intents.parent().map(|p| p.join("verified")))
}

fn state_dir() -> Option<PathBuf> {
    default_dir(|k| std::env::var(k).ok())
}

/// The recorded outcome for this exact file, if any.
pub fn recorded(path: &Path, manifest: &Manifest) -> Option<Verified> {
    recorded_in(&state_dir()?, path, manifest)
}

fn recorded_in(dir: &Path, path: &Path, manifest: &Manifest) -> Option<Verified> {
    let id = Identity::of(path, manifest)?;
    let text = fs_err::read(id.record_file(dir)).ok()?;
    let r: Record = serde_json::from_slice(&text).ok()?;
    let same = r.path == id.path
        && r.bytes == id.bytes
        && r.modified_ns == id.modified_ns
        && r.manifest_sha256 == id.manifest_sha256;
    same.then_some(if r.ok { Verified::Ok } else { Verified::Failed })
}

/// Records the outcome of a verification of `path`. Failing to record is not an error: the next command
/// verifies again.
pub fn record(path: &Path, manifest: &Manifest, ok: bool) -> std::io::Result<()> {
    match state_dir() {
        Some(dir) => record_in(&dir, path, manifest, ok),
        None => Ok(()),
    }
}

fn record_in(dir: &Path, path: &Path, manifest: &Manifest, ok: bool) -> std::io::Result<()> {
    let Some(id) = Identity::of(path, manifest) else {
        return Ok(());
    };
    fs_err::create_dir_all(dir)?;
    let file = id.record_file(dir);
    let record = Record {
        path: id.path.clone(),
        bytes: id.bytes,
        modified_ns: id.modified_ns,
        manifest_sha256: id.manifest_sha256.clone(),
        ok,
        verified_at: jiff::Timestamp::now().to_string(),
    };
    let tmp = file.with_extension("json.tmp");
    fs_err::write(
        &tmp,
        serde_json::to_vec_pretty(&record).map_err(std::io::Error::other)?,
    )?;
    fs_err::rename(&tmp, &file)
}

/// Whether the backup at `path` is intact: the recorded outcome, else a verification of every checksum
/// now (no restore test), recorded for next time.
pub async fn ensure(path: &Path, manifest: &Manifest) -> anyhow::Result<Verified> {
    if let Some(v) = recorded(path, manifest) {
        return Ok(v);
    }
    let p = path.to_path_buf();
    let ok = tokio::task::spawn_blocking(move || {
        Backup::open(&p)
            .and_then(|b| b.verify())
            .map(|r| r.is_ok())
            // A file that cannot even be opened as a backup is not intact.
            .unwrap_or(false)
    })
    .await?;
    let _ = record(path, manifest, ok);
    Ok(if ok { Verified::Ok } else { Verified::Failed })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest() -> Manifest {
        serde_json::from_value(serde_json::json!({
            "format": 1,
            "tool": {"name": "docker-persist", "version": "0"},
            "created": "2026-11-22T10:00:00Z",
            "project": "app",
            "engine": {"version": "1", "os": "linux", "arch": "x86_64"},
        }))
        .unwrap()
    }

    #[test]
    fn a_record_matches_only_the_same_unchanged_file() {
        let state = tempfile::tempdir().unwrap();
        let files = tempfile::tempdir().unwrap();
        let file = files.path().join("app-20261122T100000Z.tar");
        fs_err::write(&file, b"backup bytes").unwrap();
        let m = manifest();
        assert_eq!(recorded_in(state.path(), &file, &m), None);
        record_in(state.path(), &file, &m, true).unwrap();
        assert_eq!(recorded_in(state.path(), &file, &m), Some(Verified::Ok));
        // Another manifest (another backup of the same name) does not match.
        let mut other = m.clone();
        other.project = "other".into();
        assert_eq!(recorded_in(state.path(), &file, &other), None);
        // A changed file does not match.
        fs_err::write(&file, b"backup bytes, changed").unwrap();
        assert_eq!(recorded_in(state.path(), &file, &m), None);
        record_in(state.path(), &file, &m, false).unwrap();
        assert_eq!(recorded_in(state.path(), &file, &m), Some(Verified::Failed));
    }

    #[test]
    fn records_live_beside_the_intent_records_in_the_state_dir() {
        let env = |k: &str| (k == "HOME").then(|| "/home/u".to_string());
        assert_eq!(
            default_dir(env),
            Some(PathBuf::from(
                "/home/u/.local/state/docker-persist/verified"
            ))
        );
    }
}
