//! Uploads a killed command left unfinished at a destination: a multipart upload open in a bucket (parts
//! that would be billed for good) or a `.partial` on an SFTP server. Ctrl-C and errors abort these
//! themselves; `kill -9`, the OOM killer or a power cut do not, so each is an intent record of its own
//! (see [`crate::intent`]): written, fsynced, as soon as the upload exists at the destination, removed
//! once it is completed or aborted. Every command starts by finishing the records of dead processes
//! ([`resolve_abandoned`]): it aborts the upload or removes the `.partial`, and says so.
//!
//! Records live beside the commands' intent records, in `…/intents/uploads/<machine>-<pid>-<n>.json`.
//! They hold where the upload is (the bucket, endpoint, region and key, or the server and path) and never
//! a credential: the next command finds credentials as any command does.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{S3Url, SftpUrl};
use crate::intent::{self, Owner};
use crate::report::Printer;

const FORMAT: u32 = 1;

/// What is left at the destination if the process dies now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Left {
    /// An open multipart upload.
    S3Upload {
        url: S3Url,
        key: String,
        upload_id: String,
    },
    /// A `.partial` file on the server.
    SftpPartial { url: SftpUrl, path: String },
}

/// One record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unfinished {
    pub format: u32,
    pub owner: Owner,
    /// When the upload began (RFC 3339).
    pub started_at: String,
    /// The destination as messages name it: "`offsite` (s3://bucket/prefix)".
    pub destination: String,
    /// The backup's file name.
    pub file: String,
    #[serde(flatten)]
    pub left: Left,
}

/// The record of one upload of this process, removed by [`Mark::done`]; a mark dropped without it keeps
/// its record (the upload may still be open: the next command aborts it).
#[derive(Debug)]
pub struct Mark {
    path: Option<PathBuf>,
}

impl Mark {
    /// Records `left` for `file` at `destination`. Without a state directory (neither `XDG_STATE_HOME` nor
    /// `HOME`), or when it cannot be written, nothing is recorded: the upload itself goes on (an error, an
    /// interruption still abort it).
    pub fn record(destination: &str, file: &str, left: Left) -> Mark {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let Some(dir) = dir() else {
            return Mark { path: None };
        };
        let owner = Owner::this();
        let n = SEQ.fetch_add(1, Ordering::Relaxed);
        let path = dir.join(format!("{}-{}-{n}.json", owner.machine, owner.pid));
        let record = Unfinished {
            format: FORMAT,
            owner,
            started_at: intent::now(),
            destination: destination.to_string(),
            file: file.to_string(),
            left,
        };
        match intent::write_json(&path, &record) {
            Ok(()) => Mark { path: Some(path) },
            Err(_) => Mark { path: None },
        }
    }

    /// The upload was completed or aborted: nothing is left to undo.
    pub fn done(mut self) {
        if let Some(p) = self.path.take() {
            let _ = fs_err::remove_file(&p);
        }
    }
}

/// `…/intents/uploads`.
fn dir() -> Option<PathBuf> {
    intent::default_dir(|k| std::env::var(k).ok()).map(|d| d.join("uploads"))
}

/// The records in `dir` whose process is gone (by `alive`), oldest first.
pub fn abandoned(dir: &Path, alive: impl Fn(&Owner) -> bool) -> Vec<(PathBuf, Unfinished)> {
    let me = Owner::this();
    let mut found: Vec<(PathBuf, Unfinished)> = intent::read_json_files::<Unfinished>(dir)
        .into_iter()
        .filter(|(_, r)| r.owner.is_gone(&me, &alive))
        .collect();
    found.sort_by(|a, b| (&a.1.started_at, &a.0).cmp(&(&b.1.started_at, &b.0)));
    found
}

/// Aborts the uploads and removes the `.partial` files that killed commands left, saying so. One that
/// cannot be reached now is kept for the next command, with a warning.
pub async fn resolve_abandoned(printer: &Printer) {
    let Some(dir) = dir() else { return };
    for (path, record) in abandoned(&dir, Owner::is_alive) {
        // Two commands started together: only one resolves a record.
        let Some(_lock) = intent::lock(&path) else {
            continue;
        };
        let what = match &record.left {
            Left::S3Upload { .. } => "multipart upload",
            Left::SftpPartial { .. } => "`.partial` copy",
        };
        let outcome = tokio::time::timeout(Duration::from_secs(30), undo(&record.left)).await;
        match outcome {
            Ok(Ok(())) => {
                let _ = fs_err::remove_file(&path);
                printer.status(format!(
                    "a docker persist command (pid {}) was killed while it sent `{}` to {}: its unfinished {what} is removed",
                    record.owner.pid, record.file, record.destination
                ));
            }
            Ok(Err(e)) => printer.warn(format!(
                "the unfinished {what} of `{}` at {} (left by a killed docker persist, pid {}) could not be removed yet: {e}; the next command tries again",
                record.file, record.destination, record.owner.pid
            )),
            Err(_) => printer.warn(format!(
                "the unfinished {what} of `{}` at {} (left by a killed docker persist, pid {}) could not be removed within 30 s; the next command tries again",
                record.file, record.destination, record.owner.pid
            )),
        }
    }
}

async fn undo(left: &Left) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    match left {
        Left::S3Upload {
            url,
            key,
            upload_id,
        } => super::s3::abort_upload(url, key, upload_id).await,
        Left::SftpPartial { url, path } => super::sftp::remove_partial(url, path).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(owner: Owner, at: &str) -> Unfinished {
        Unfinished {
            format: FORMAT,
            owner,
            started_at: at.to_string(),
            destination: "`offsite` (s3://b/p)".into(),
            file: "app-20261204T010203Z.tar".into(),
            left: Left::S3Upload {
                url: S3Url {
                    bucket: "b".into(),
                    prefix: "p".into(),
                    endpoint: Some("http://127.0.0.1:9000".into()),
                    ..S3Url::default()
                },
                key: "p/app-20261204T010203Z.tar".into(),
                upload_id: "u-1".into(),
            },
        }
    }

    /// Records round-trip through their files; only dead processes' records of this machine are
    /// abandoned, this process's never, oldest first.
    #[test]
    fn only_the_records_of_dead_processes_of_this_machine_are_abandoned() {
        let tmp = tempfile::tempdir().unwrap();
        let me = Owner::this();
        let dead = |pid| Owner { pid, ..me.clone() };
        let other_machine = Owner {
            machine: "elsewhere".into(),
            ..dead(7)
        };
        for (name, r) in [
            ("a.json", record(dead(5), "2026-12-04T10:00:01Z")),
            ("b.json", record(dead(6), "2026-12-04T10:00:00Z")),
            ("c.json", record(me.clone(), "2026-12-04T09:00:00Z")),
            ("d.json", record(other_machine, "2026-12-04T09:00:00Z")),
        ] {
            intent::write_json(&tmp.path().join(name), &r).unwrap();
        }
        fs_err::write(tmp.path().join("e.json"), "not a record").unwrap();
        let found = abandoned(tmp.path(), |o| o.pid != 5 && o.pid != 6);
        let pids: Vec<u32> = found.iter().map(|(_, r)| r.owner.pid).collect();
        assert_eq!(pids, [6, 5]);
        assert_eq!(found[1].1, record(dead(5), "2026-12-04T10:00:01Z"));
        let json = fs_err::read_to_string(tmp.path().join("a.json")).unwrap();
        assert!(json.contains("\"kind\": \"s3_upload\""), "{json}");
    }
}
