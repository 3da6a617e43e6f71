//! A writer whose bytes are written on a thread of their own: zstd's output on its way through age, the
//! SHA-256 of the stored bytes and the file. With zstd workers, the thread that feeds zstd (reading the
//! volume's tar, the content digest) is what a backup waits for; handing the output to another thread takes
//! encryption, hashing and the write calls off that path (docs/benchmarks.md, "Encryption").
//!
//! Memory stays fixed: [`DEPTH`] buffers of [`CHUNK`] bytes go round between the two threads.

use std::io::{self, Write};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::{Scope, ScopedJoinHandle};

/// Bytes gathered before they are handed over.
const CHUNK: usize = 256 * 1024;
/// Chunks that may wait for the writing thread.
const DEPTH: usize = 4;

/// The feeding side: gathers bytes into chunks and hands each full one to the writing thread.
pub(crate) struct Handoff {
    buf: Vec<u8>,
    full: SyncSender<Vec<u8>>,
    empty: Receiver<Vec<u8>>,
}

/// The writing thread: what it returns once every chunk is written (the sink), or the first write error.
pub(crate) type Writing<'scope, S> = ScopedJoinHandle<'scope, io::Result<S>>;

impl Handoff {
    /// Starts the thread that writes into `sink` in `scope`.
    pub(crate) fn start<'scope, 'env, S: Write + Send + 'scope>(
        scope: &'scope Scope<'scope, 'env>,
        mut sink: S,
    ) -> (Handoff, Writing<'scope, S>) {
        let (full_tx, full_rx) = sync_channel::<Vec<u8>>(DEPTH);
        let (empty_tx, empty_rx) = sync_channel::<Vec<u8>>(DEPTH + 2);
        let writing = scope.spawn(move || {
            for mut chunk in full_rx {
                // An error ends the thread; the feeding side then sees a closed channel and stops too.
                sink.write_all(&chunk)?;
                chunk.clear();
                let _ = empty_tx.try_send(chunk);
            }
            sink.flush()?;
            Ok(sink)
        });
        let handoff = Handoff {
            buf: Vec::with_capacity(CHUNK),
            full: full_tx,
            empty: empty_rx,
        };
        (handoff, writing)
    }

    fn hand_over(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let next = self
            .empty
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(CHUNK));
        let chunk = std::mem::replace(&mut self.buf, next);
        self.full
            .send(chunk)
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the writing thread stopped"))
    }

    /// Hands over what is left and closes the channel (dropping it): the writing thread ends once it has
    /// written it.
    pub(crate) fn finish(mut self) -> io::Result<()> {
        self.hand_over()
    }
}

impl Write for Handoff {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let room = CHUNK - self.buf.len();
        let n = buf.len().min(room);
        self.buf.extend_from_slice(&buf[..n]);
        if self.buf.len() == CHUNK {
            self.hand_over()?;
        }
        Ok(n)
    }

    /// Hands over what is gathered; does not wait for it to be written.
    fn flush(&mut self) -> io::Result<()> {
        self.hand_over()
    }
}

/// Waits for the writing thread; a panic there goes on here.
pub(crate) fn join<S>(writing: Writing<'_, S>) -> io::Result<S> {
    writing
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// Records what it was given, and fails once it holds more than `fail_after` bytes.
    struct Recording {
        got: Arc<Mutex<Vec<u8>>>,
        fail_after: usize,
    }

    impl Write for Recording {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let mut got = self.got.lock().unwrap();
            if got.len() + buf.len() > self.fail_after {
                return Err(io::Error::new(io::ErrorKind::StorageFull, "disk full"));
            }
            got.extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn data(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 + i / 4099) as u8).collect()
    }

    #[test]
    fn every_byte_arrives_in_order() {
        let input = data(5 * CHUNK + 12_345);
        let got = Arc::new(Mutex::new(Vec::new()));
        let sink = Recording {
            got: got.clone(),
            fail_after: usize::MAX,
        };
        let back = std::thread::scope(|scope| {
            let (mut handoff, writing) = Handoff::start(scope, sink);
            // Uneven writes, as zstd's are.
            for piece in input.chunks(70_001) {
                handoff.write_all(piece).unwrap();
            }
            handoff.flush().unwrap();
            handoff.finish().unwrap();
            join(writing)
        });
        assert!(back.is_ok());
        assert_eq!(*got.lock().unwrap(), input);
    }

    #[test]
    fn a_write_error_stops_the_feeding_side_and_is_returned() {
        let input = data(40 * CHUNK);
        let got = Arc::new(Mutex::new(Vec::new()));
        let sink = Recording {
            got: got.clone(),
            fail_after: 3 * CHUNK,
        };
        let (fed, back) = std::thread::scope(|scope| {
            let (mut handoff, writing) = Handoff::start(scope, sink);
            let fed = input
                .chunks(CHUNK / 3)
                .try_for_each(|p| handoff.write_all(p));
            drop(handoff);
            (fed, join(writing))
        });
        let fed = fed.expect_err("the feeding side must see that the writer stopped");
        assert_eq!(fed.kind(), io::ErrorKind::BrokenPipe);
        let err = back.err().expect("the write error is returned");
        assert_eq!(err.kind(), io::ErrorKind::StorageFull);
        assert_eq!(got.lock().unwrap().len(), 3 * CHUNK);
    }
}
