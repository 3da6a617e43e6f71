//! A backup file followed while it is written: what the writer tells the readers that copy it to its
//! destinations at the same time (`backup --to`, DESIGN.md "Destinations": the local file and each
//! destination are written in one pass over the data).
//!
//! The writer does not only append: a member's header is written first with size 0 and rewritten in place
//! once its data has ended, and a member whose stream fails is cut off again (the file truncated back to
//! where it began). So a follower is told, besides how long the file is, every **rewrite** of bytes it may
//! already have copied: a patch (the range rewritten in place) or a cut (the new, shorter length). The
//! header being written is announced as a **hold** (bytes there will change), so that a follower that
//! cannot rewrite what it sent (an S3 part) waits for them. Then the end: the file is complete under its
//! final name (with its length and, a moment later, its SHA-256), or it was abandoned.
//!
//! The local file is the followers' buffer: they read it back from the page cache at their own pace, and
//! the writer never waits for them, so a slow destination never keeps services stopped. Memory does not
//! grow with the file: the state is a length, a few offsets and one entry per rewrite.

use std::io::{self, Seek, SeekFrom, Write};
use std::ops::Range;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// A rewrite of bytes below the file's length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rewrite {
    /// These bytes were written again in place.
    Patch(Range<u64>),
    /// The file was truncated to this length.
    Cut(u64),
}

/// How the file ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// Complete and under its final name, this long.
    Complete { len: u64 },
    /// It will not be completed (an error, an interruption); the reason, for messages.
    Abandoned(String),
}

/// What a follower sees at one moment.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// The `.partial` being written and the backup's final file name, once the writer has created it.
    pub file: Option<(PathBuf, String)>,
    /// Bytes written to the file (visible to another reader of it).
    pub len: u64,
    /// The start of a header that will be rewritten.
    pub hold: Option<u64>,
    /// Rewrites since the follower's previous snapshot.
    pub rewrites: Vec<Rewrite>,
    pub end: Option<End>,
    /// SHA-256 of the complete file, lowercase hex (after [`End::Complete`]).
    pub sha256: Option<String>,
}

#[derive(Debug, Default)]
struct State {
    file: Option<(PathBuf, String)>,
    /// The `.partial` opened for reading when it was created: it stays readable through this handle once
    /// the writer has renamed it, however soon that happens.
    reader: Option<Arc<std::fs::File>>,
    len: u64,
    hold: Option<u64>,
    rewrites: Vec<Rewrite>,
    end: Option<End>,
    sha256: Option<String>,
}

/// The shared state of one file being written; cheap to update from the writing thread.
#[derive(Debug)]
pub struct Growing {
    state: Mutex<State>,
    changed: tokio::sync::watch::Sender<u64>,
}

/// Where a follower is in the list of rewrites.
#[derive(Debug, Default, Clone, Copy)]
pub struct Cursor(usize);

impl Growing {
    pub fn new() -> Arc<Growing> {
        Arc::new(Growing {
            state: Mutex::new(State::default()),
            changed: tokio::sync::watch::Sender::new(0),
        })
    }

    /// A file that is complete already (`push`): its path, name, length and SHA-256.
    pub fn complete(path: PathBuf, name: String, len: u64, sha256: String) -> Arc<Growing> {
        let g = Growing::new();
        g.update(|s| {
            s.file = Some((path, name));
            s.len = len;
            s.end = Some(End::Complete { len });
            s.sha256 = Some(sha256);
        });
        g
    }

    fn update(&self, f: impl FnOnce(&mut State)) {
        if let Ok(mut s) = self.state.lock() {
            f(&mut s);
        }
        self.changed.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// The writer created `partial`, which will be named `name`. It is opened for reading here, before the
    /// writer can rename it: a follower that starts late (an SFTP session still being set up) may find a
    /// small backup already complete under its final name.
    pub fn begin(&self, partial: PathBuf, name: String) {
        let reader = std::fs::File::open(&partial).ok().map(Arc::new);
        self.update(|s| {
            s.file = Some((partial, name));
            s.reader = reader;
        });
    }

    /// The handle opened by [`Growing::begin`], if it could open the file.
    pub fn reader(&self) -> Option<Arc<std::fs::File>> {
        self.state.lock().ok().and_then(|s| s.reader.clone())
    }

    /// The writer is about to write a header at `at` that it will rewrite; `None` once it has.
    pub fn hold(&self, at: Option<u64>) {
        self.update(|s| s.hold = at);
    }

    /// The file was completed under its final name.
    pub fn complete_at(&self, len: u64) {
        self.update(|s| {
            if s.end.is_none() {
                s.len = len;
                s.end = Some(End::Complete { len });
            }
        });
    }

    /// The SHA-256 of the complete file; or why it is not to be sent after all (it could not be read back,
    /// or the command failed after it was complete): the followers then give up as for an abandoned file.
    pub fn set_sha256(&self, sha256: Result<String, String>) {
        self.update(|s| match sha256 {
            Ok(sha) => s.sha256 = Some(sha),
            Err(why) => s.end = Some(End::Abandoned(why)),
        });
    }

    /// The file will not be completed. Does nothing once it is complete.
    pub fn abandon(&self, reason: &str) {
        self.update(|s| {
            if s.end.is_none() {
                s.end = Some(End::Abandoned(reason.to_string()));
            }
        });
    }

    /// Bytes `[at, at + n)` were written.
    fn wrote(&self, at: u64, n: u64) {
        self.update(|s| {
            if at < s.len {
                s.rewrites.push(Rewrite::Patch(at..(at + n).min(s.len)));
            }
            s.len = s.len.max(at + n);
        });
    }

    fn cut(&self, len: u64) {
        self.update(|s| {
            if len < s.len {
                s.rewrites.push(Rewrite::Cut(len));
                s.len = len;
            }
        });
    }

    /// What changed since `cursor`, which moves past it.
    pub fn snapshot(&self, cursor: &mut Cursor) -> Snapshot {
        match self.state.lock() {
            Ok(s) => {
                let rewrites = s.rewrites.get(cursor.0..).unwrap_or_default().to_vec();
                cursor.0 = s.rewrites.len();
                Snapshot {
                    file: s.file.clone(),
                    len: s.len,
                    hold: s.hold,
                    rewrites,
                    end: s.end.clone(),
                    sha256: s.sha256.clone(),
                }
            }
            Err(_) => Snapshot {
                end: Some(End::Abandoned("the writer failed".into())),
                ..Snapshot::default()
            },
        }
    }

    /// The backup's final file name, once the writer has created it.
    pub fn file_name(&self) -> Option<String> {
        self.state
            .lock()
            .ok()
            .and_then(|s| s.file.as_ref().map(|f| f.1.clone()))
    }

    /// Whether there are rewrites past `cursor`, or the file ended badly (or the process was interrupted):
    /// a follower in the middle of a long copy looks again.
    pub fn has_news(&self, cursor: &Cursor) -> bool {
        crate::cancel::is_cancelled()
            || self.state.lock().map_or(true, |s| {
                s.rewrites.len() > cursor.0 || matches!(s.end, Some(End::Abandoned(_)))
            })
    }

    /// A receiver that wakes when anything changes.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changed.subscribe()
    }
}

/// The backup file as the writer writes it: every write, seek and truncation is told to the followers.
#[derive(Debug)]
pub(crate) struct TrackedFile {
    file: fs_err::File,
    pos: u64,
    growing: Option<Arc<Growing>>,
}

impl TrackedFile {
    pub(crate) fn new(file: fs_err::File, growing: Option<Arc<Growing>>) -> Self {
        TrackedFile {
            file,
            pos: 0,
            growing,
        }
    }

    pub(crate) fn set_len(&self, len: u64) -> io::Result<()> {
        self.file.set_len(len)?;
        if let Some(g) = &self.growing {
            g.cut(len);
        }
        Ok(())
    }

    pub(crate) fn sync_all(&self) -> io::Result<()> {
        self.file.sync_all()
    }

    pub(crate) fn growing(&self) -> Option<&Arc<Growing>> {
        self.growing.as_ref()
    }
}

impl Write for TrackedFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        if let Some(g) = &self.growing {
            g.wrote(self.pos, n as u64);
        }
        self.pos += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl Seek for TrackedFile {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        self.pos = self.file.seek(to)?;
        Ok(self.pos)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewrites_below_the_length_are_reported_once_and_cuts_shorten_it() {
        let tmp = tempfile::tempdir().unwrap();
        let g = Growing::new();
        let f = fs_err::File::create(tmp.path().join("f")).unwrap();
        let mut t = TrackedFile::new(f, Some(g.clone()));
        let mut c = Cursor::default();
        t.write_all(&[1u8; 1000]).unwrap();
        let s = g.snapshot(&mut c);
        assert_eq!((s.len, s.rewrites.len()), (1000, 0));
        t.seek(SeekFrom::Start(100)).unwrap();
        t.write_all(&[2u8; 10]).unwrap();
        t.seek(SeekFrom::Start(995)).unwrap();
        t.write_all(&[3u8; 10]).unwrap();
        let s = g.snapshot(&mut c);
        assert_eq!(s.len, 1005);
        assert_eq!(
            s.rewrites,
            vec![Rewrite::Patch(100..110), Rewrite::Patch(995..1000)]
        );
        assert!(g.snapshot(&mut c).rewrites.is_empty());
        t.set_len(500).unwrap();
        let s = g.snapshot(&mut c);
        assert_eq!((s.len, s.rewrites.clone()), (500, vec![Rewrite::Cut(500)]));
        g.complete_at(500);
        g.abandon("late");
        assert_eq!(
            g.snapshot(&mut c).end,
            Some(End::Complete { len: 500 }),
            "a complete file stays complete"
        );
    }
}
