//! Where the bytes of a backup file come from when it is read: a local file, or a destination that serves
//! byte ranges (an object in a bucket, a file on an SFTP server). The reader ([`super::Backup`]) only ever
//! asks for ranges: the outer tar's headers while it builds its index, each member's bytes when it is
//! verified or streamed, and the file's tail for a listing ([`super::reader::read_tail_manifest`]), so a
//! remote backup is read without a local copy.
//!
//! This works on the whole file's bytes and knows nothing about members: what a member's bytes mean (zstd,
//! and whatever else the reader does to them) stays in [`super::reader`].

use std::fmt;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// A backup file that can be read by byte ranges. Implementations are blocking (they are used from
/// blocking threads, like every read of a backup).
pub trait RangeSource: Send + Sync + fmt::Debug {
    /// Size of the file in bytes.
    fn len(&self) -> u64;

    /// Always `false` for a backup: it has at least a manifest.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A stream of `len` bytes from `offset` (clamped to the end of the file).
    fn read_range(&self, offset: u64, len: u64) -> io::Result<Box<dyn Read + Send>>;

    /// A seekable reader over the whole file, for walking the tar's headers. The default reads windows of
    /// [`WINDOW`] bytes through [`RangeSource::read_range`], so a seek past a member's data costs nothing and
    /// a header costs one small request.
    fn cursor(&self) -> io::Result<Box<dyn ReadSeek + '_>> {
        Ok(Box::new(WindowCursor {
            source: self,
            pos: 0,
            buf: Vec::new(),
            buf_start: 0,
        }))
    }
}

/// Read + Seek, as one object type.
pub trait ReadSeek: Read + Seek + Send {}
impl<T: Read + Seek + Send> ReadSeek for T {}

/// How much [`RangeSource::cursor`]'s default reads at once.
pub const WINDOW: u64 = 64 * 1024;

/// A backup file on the local file system.
#[derive(Debug, Clone)]
pub struct FileSource {
    path: PathBuf,
    len: u64,
}

impl FileSource {
    pub fn open(path: &Path) -> io::Result<FileSource> {
        let len = fs_err::metadata(path)?.len();
        Ok(FileSource {
            path: path.to_path_buf(),
            len,
        })
    }
}

impl RangeSource for FileSource {
    fn len(&self) -> u64 {
        self.len
    }

    fn read_range(&self, offset: u64, len: u64) -> io::Result<Box<dyn Read + Send>> {
        let mut file = fs_err::File::open(&self.path)?;
        file.seek(SeekFrom::Start(offset))?;
        Ok(Box::new(file.take(len)))
    }

    fn cursor(&self) -> io::Result<Box<dyn ReadSeek + '_>> {
        Ok(Box::new(fs_err::File::open(&self.path)?))
    }
}

struct WindowCursor<'a, S: RangeSource + ?Sized> {
    source: &'a S,
    pos: u64,
    buf: Vec<u8>,
    buf_start: u64,
}

impl<S: RangeSource + ?Sized> Read for WindowCursor<'_, S> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let len = self.source.len();
        if self.pos >= len || out.is_empty() {
            return Ok(0);
        }
        let buf_end = self.buf_start + self.buf.len() as u64;
        if self.pos < self.buf_start || self.pos >= buf_end {
            let want = WINDOW.min(len - self.pos);
            let mut buf = Vec::with_capacity(want as usize);
            self.source
                .read_range(self.pos, want)?
                .read_to_end(&mut buf)?;
            if buf.is_empty() {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("the file ended at {} of {len} bytes", self.pos),
                ));
            }
            self.buf = buf;
            self.buf_start = self.pos;
        }
        let at = (self.pos - self.buf_start) as usize;
        let n = out.len().min(self.buf.len() - at);
        out[..n].copy_from_slice(&self.buf[at..at + n]);
        self.pos += n as u64;
        Ok(n)
    }
}

impl<S: RangeSource + ?Sized> Seek for WindowCursor<'_, S> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let base = match to {
            SeekFrom::Start(n) => Some(n),
            SeekFrom::End(d) => self.source.len().checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        self.pos = base.ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "bad seek"))?;
        Ok(self.pos)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A source over bytes in memory that counts its requests.
    #[derive(Debug)]
    struct Counting(Vec<u8>, std::sync::atomic::AtomicUsize);

    impl RangeSource for Counting {
        fn len(&self) -> u64 {
            self.0.len() as u64
        }
        fn read_range(&self, offset: u64, len: u64) -> io::Result<Box<dyn Read + Send>> {
            self.1.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let end = (offset + len).min(self.len()) as usize;
            Ok(Box::new(io::Cursor::new(
                self.0[offset as usize..end].to_vec(),
            )))
        }
    }

    #[test]
    fn window_cursor_reads_and_seeks_like_a_file() {
        let bytes: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let src = Counting(bytes.clone(), Default::default());
        let mut c = src.cursor().unwrap();
        let mut all = Vec::new();
        c.read_to_end(&mut all).unwrap();
        assert_eq!(all, bytes);
        c.seek(SeekFrom::Start(150_000)).unwrap();
        let mut five = [0u8; 5];
        c.read_exact(&mut five).unwrap();
        assert_eq!(five, bytes[150_000..150_005]);
        c.seek(SeekFrom::End(-3)).unwrap();
        let mut rest = Vec::new();
        c.read_to_end(&mut rest).unwrap();
        assert_eq!(rest, bytes[bytes.len() - 3..]);
        // Four windows for the whole read; the seek lands in the last one read; one more for the tail.
        assert_eq!(src.1.load(std::sync::atomic::Ordering::Relaxed), 5);
    }
}
