//! Copying a backup file to a destination while it is written (`backup --to`), or once it is complete
//! (`push`): the follower's side of [`crate::archive::growing`].
//!
//! A follower reads what the writer has written back from the local file (the page cache, usually) and
//! sends it on; when it has caught up it waits for more; it ends when the file is complete under its final
//! name and its SHA-256 is known, or gives up when the writer abandoned it. The writer never waits for a
//! follower. What a follower does with a rewrite depends on the destination: a file (a directory, SFTP) is
//! written again in place ([`copy_following`]); an S3 part is uploaded again, and the part holding a header
//! that is still to be rewritten waits for it (see `s3.rs`).

use std::io;
use std::ops::Range;
use std::sync::Arc;

use tokio::io::{AsyncSeekExt as _, AsyncWrite, AsyncWriteExt as _};

use crate::archive::growing::{Cursor, End, Growing, Rewrite, Snapshot};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// How much a follower reads from the local file at once.
pub const CHUNK: u64 = 1 << 20;

/// The local file being followed, opened for reading.
#[derive(Debug, Clone)]
pub struct LocalFile {
    pub file: Arc<std::fs::File>,
    /// The backup's final file name.
    pub name: String,
}

/// A complete backup file to send (`push`), as a followed file whose SHA-256 is computed on a blocking thread
/// while it is sent rather than before: reading it twice costs the page cache's speed, while waiting for the
/// hash first took ≈13 % of a `push` to a local S3 server (docs/benchmarks.md). A follower waits for
/// the hash only at the end ([`wait_sha256`]); a file that cannot be read, or that changed length, is not
/// stored. Returns the file's length with it.
pub fn complete_file(local: &std::path::Path, name: &str) -> Result<(Arc<Growing>, u64), BoxError> {
    let len = fs_err::metadata(local)?.len();
    let growing = Growing::new();
    growing.begin(local.to_path_buf(), name.to_string());
    growing.complete_at(len);
    let (g, path) = (growing.clone(), local.to_path_buf());
    tokio::task::spawn_blocking(move || {
        g.set_sha256(match super::local::hash_file(&path) {
            Ok((n, sha)) if n == len => Ok(sha),
            Ok((n, _)) => Err(format!(
                "`{}` changed while it was sent: {len} bytes, then {n}",
                path.display()
            )),
            Err(e) => Err(format!("cannot read `{}`: {e}", path.display())),
        });
    });
    Ok((growing, len))
}

/// Waits until the writer has created the file and opens it; the file stays readable through this handle
/// when the writer gives it its final name.
pub async fn open_followed(growing: &Growing) -> Result<LocalFile, BoxError> {
    let mut rx = growing.subscribe();
    loop {
        rx.borrow_and_update();
        let snap = growing.snapshot(&mut Cursor::default());
        if let Some((path, name)) = snap.file {
            let file = match growing.reader() {
                Some(file) => file,
                None => Arc::new(fs_err::File::open(&path)?.into_parts().0),
            };
            return Ok(LocalFile { file, name });
        }
        if let Some(End::Abandoned(why)) = snap.end {
            return Err(abandoned(&why));
        }
        changed(&mut rx).await;
    }
}

/// Waits for the complete file's SHA-256; an error when the file was abandoned.
pub async fn wait_sha256(growing: &Growing) -> Result<String, BoxError> {
    let mut rx = growing.subscribe();
    loop {
        rx.borrow_and_update();
        let snap = growing.snapshot(&mut Cursor::default());
        check_going(&snap)?;
        if let (Some(End::Complete { .. }), Some(sha)) = (&snap.end, snap.sha256) {
            return Ok(sha);
        }
        changed(&mut rx).await;
    }
}

/// An error when the file was abandoned or the process interrupted.
pub fn check_going(snap: &Snapshot) -> Result<(), BoxError> {
    if crate::cancel::is_cancelled() {
        return Err(crate::cancel::interrupted_error().into());
    }
    if let Some(End::Abandoned(why)) = &snap.end {
        return Err(abandoned(why));
    }
    Ok(())
}

fn abandoned(why: &str) -> BoxError {
    format!("the backup was not completed ({why}), so nothing was stored").into()
}

/// Waits for the next change (a sender held by the follower's own `Arc` never goes away).
pub async fn changed(rx: &mut tokio::sync::watch::Receiver<u64>) {
    if rx.changed().await.is_err() {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Bytes `range` of the local file, read on a blocking thread.
pub async fn read_range(file: &Arc<std::fs::File>, range: Range<u64>) -> io::Result<Vec<u8>> {
    let file = file.clone();
    tokio::task::spawn_blocking(move || {
        use std::os::unix::fs::FileExt as _;
        let mut buf = vec![0u8; usize::try_from(range.end - range.start).unwrap_or(0)];
        file.read_exact_at(&mut buf, range.start)?;
        Ok(buf)
    })
    .await
    .map_err(io::Error::other)?
}

/// What [`copy_following`] copied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Copied {
    /// The complete file's length: the destination's file must be cut to it if `written` is larger.
    pub len: u64,
    /// The end of the farthest byte written to the destination's file.
    pub written: u64,
}

/// Copies the followed file into `out` (a file opened for writing at offset 0) until the file is complete:
/// appends as it grows and writes again, in place, what the writer rewrites.
pub async fn copy_following<W: AsyncWrite + tokio::io::AsyncSeek + Unpin>(
    growing: &Growing,
    local: &LocalFile,
    out: &mut W,
) -> Result<Copied, BoxError> {
    let mut rx = growing.subscribe();
    let mut cursor = Cursor::default();
    // Bytes [0, sent) of the destination's file are the local file's as last read; `pos` is `out`'s offset.
    let (mut sent, mut pos, mut written) = (0u64, 0u64, 0u64);
    let mut patches: Vec<Range<u64>> = Vec::new();
    loop {
        rx.borrow_and_update();
        let snap = growing.snapshot(&mut cursor);
        check_going(&snap)?;
        for rewrite in &snap.rewrites {
            match rewrite {
                Rewrite::Patch(r) if r.start < sent => patches.push(r.start..r.end.min(sent)),
                Rewrite::Patch(_) => {}
                Rewrite::Cut(len) => {
                    sent = sent.min(*len);
                    patches.retain_mut(|p| {
                        p.end = p.end.min(*len);
                        p.start < p.end
                    });
                }
            }
        }
        for p in std::mem::take(&mut patches) {
            let bytes = read_range(&local.file, p.clone()).await?;
            if pos != p.start {
                out.flush().await?;
                out.seek(io::SeekFrom::Start(p.start)).await?;
            }
            out.write_all(&bytes).await?;
            pos = p.end;
        }
        let mut progressed = false;
        while sent < snap.len {
            let end = snap.len.min(sent + CHUNK);
            let bytes = read_range(&local.file, sent..end).await?;
            if pos != sent {
                out.flush().await?;
                out.seek(io::SeekFrom::Start(sent)).await?;
            }
            out.write_all(&bytes).await?;
            sent = end;
            pos = end;
            written = written.max(end);
            progressed = true;
            // New rewrites and a cancellation are seen between chunks, not only once caught up.
            if growing.has_news(&cursor) {
                break;
            }
        }
        if let Some(End::Complete { len }) = snap.end
            && sent == len
            && !growing.has_news(&cursor)
        {
            out.flush().await?;
            return Ok(Copied { len, written });
        }
        if !progressed {
            changed(&mut rx).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::growing::TrackedFile;
    use std::io::{Seek as _, SeekFrom, Write as _};

    /// A writer on another thread appends, patches what the follower has copied, cuts and appends again;
    /// the follower's copy ends equal to the file.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_followed_file_is_copied_with_its_rewrites_and_cuts() {
        let tmp = tempfile::tempdir().unwrap();
        let partial = tmp.path().join("b.tar.partial");
        let growing = Growing::new();
        let g = growing.clone();
        let p = partial.clone();
        let writer = std::thread::spawn(move || {
            let f = fs_err::File::create(&p).unwrap();
            g.begin(p.clone(), "b.tar".into());
            let mut t = TrackedFile::new(f, Some(g.clone()));
            for i in 0..40u8 {
                t.write_all(&vec![i; 100_000]).unwrap();
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
            t.seek(SeekFrom::Start(10)).unwrap();
            t.write_all(b"patched").unwrap();
            t.seek(SeekFrom::End(0)).unwrap();
            t.set_len(3_000_000).unwrap();
            t.seek(SeekFrom::Start(3_000_000)).unwrap();
            t.write_all(&[9u8; 12_345]).unwrap();
            t.sync_all().unwrap();
            drop(t);
            let final_path = p.with_extension("");
            std::fs::rename(&p, &final_path).unwrap();
            g.complete_at(3_012_345);
            final_path
        });
        let local = open_followed(&growing).await.unwrap();
        let copy_path = tmp.path().join("copy");
        let mut out = tokio::fs::File::create(&copy_path).await.unwrap();
        let copied = copy_following(&growing, &local, &mut out).await.unwrap();
        out.set_len(copied.len).await.unwrap();
        drop(out);
        let final_path = writer.join().unwrap();
        assert_eq!(copied.len, 3_012_345);
        assert_eq!(
            std::fs::read(copy_path).unwrap(),
            std::fs::read(final_path).unwrap()
        );
    }

    /// A small backup can be complete and renamed before a slow follower (an SFTP session being set up)
    /// first looks at it: the follower still reads it, through the handle opened when it was created.
    #[tokio::test]
    async fn a_follower_that_starts_after_the_rename_still_copies_the_file() {
        let tmp = tempfile::tempdir().unwrap();
        let partial = tmp.path().join("b.tar.partial");
        let growing = Growing::new();
        let f = fs_err::File::create(&partial).unwrap();
        growing.begin(partial.clone(), "b.tar".into());
        let mut t = TrackedFile::new(f, Some(growing.clone()));
        t.write_all(b"a small backup").unwrap();
        drop(t);
        let final_path = tmp.path().join("b.tar");
        std::fs::rename(&partial, &final_path).unwrap();
        growing.complete_at(14);
        let local = open_followed(&growing).await.unwrap();
        let copy_path = tmp.path().join("copy");
        let mut out = tokio::fs::File::create(&copy_path).await.unwrap();
        let copied = copy_following(&growing, &local, &mut out).await.unwrap();
        drop(out);
        assert_eq!(copied.len, 14);
        assert_eq!(std::fs::read(copy_path).unwrap(), b"a small backup");
    }

    /// `push`: the file is copied while its SHA-256 is computed beside, and the hash is that of the bytes.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_complete_file_is_copied_while_it_is_hashed() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("b.tar");
        let bytes: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &bytes).unwrap();
        let (growing, len) = complete_file(&path, "b.tar").unwrap();
        assert_eq!(len, bytes.len() as u64);
        let local = open_followed(&growing).await.unwrap();
        let copy_path = tmp.path().join("copy");
        let mut out = tokio::fs::File::create(&copy_path).await.unwrap();
        let copied = copy_following(&growing, &local, &mut out).await.unwrap();
        drop(out);
        assert_eq!(copied.len, len);
        assert_eq!(std::fs::read(copy_path).unwrap(), bytes);
        let sha = wait_sha256(&growing).await.unwrap();
        assert_eq!(sha, super::super::local::hash_file(&path).unwrap().1);
    }

    #[tokio::test]
    async fn an_abandoned_file_stops_its_followers() {
        let growing = Growing::new();
        growing.abandon("a volume failed");
        let e = open_followed(&growing).await.unwrap_err().to_string();
        assert!(e.contains("a volume failed"), "{e}");
    }
}
