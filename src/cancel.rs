//! Process-wide cancellation. When the user interrupts (or the Docker CLI closes the plugin socket), the
//! command's future is dropped; work running on blocking threads (compression, file writes) sees this flag
//! through [`CancellableReader`] and stops with an error, so that its guards remove partial files.

use std::io::{self, Read};
use std::sync::atomic::{AtomicBool, Ordering};

static CANCELLED: AtomicBool = AtomicBool::new(false);

/// Marks the process as interrupted.
pub fn cancel() {
    CANCELLED.store(true, Ordering::SeqCst);
}

pub fn is_cancelled() -> bool {
    CANCELLED.load(Ordering::SeqCst)
}

/// The error a cancelled read returns.
pub fn interrupted_error() -> io::Error {
    io::Error::other("interrupted")
}

/// A reader that fails once the process is interrupted, and reports each chunk it reads to `progress`.
pub struct CancellableReader<R, F> {
    inner: R,
    progress: F,
}

impl<R: Read, F: FnMut(u64)> CancellableReader<R, F> {
    pub fn new(inner: R, progress: F) -> Self {
        CancellableReader { inner, progress }
    }
}

impl<R, F> CancellableReader<R, F> {
    pub fn into_inner(self) -> R {
        self.inner
    }
}

impl<R: Read, F: FnMut(u64)> Read for CancellableReader<R, F> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if is_cancelled() {
            return Err(interrupted_error());
        }
        let n = self.inner.read(buf)?;
        (self.progress)(n as u64);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reader_counts_bytes_as_it_reads() {
        let mut seen = 0;
        let mut r = CancellableReader::new(&b"hello world"[..], |n| seen += n);
        let mut out = Vec::new();
        r.read_to_end(&mut out).unwrap();
        assert_eq!(out, b"hello world");
        assert_eq!(seen, 11);
    }
}
