//! Bridges between the async engine streams and the blocking archive code, with a bounded queue between
//! them so both sides work at once: the engine keeps producing a volume's tar while the previous chunks are
//! hashed and compressed (reading chunk by chunk on demand made each side wait for the other).

use std::io::{self, Read, Write};

use bytes::{Buf, Bytes};
use futures_util::{Stream, StreamExt};
use tokio::sync::mpsc;

/// Chunks queued between the two sides (the engine sends chunks of tens of KiB).
const QUEUE: usize = 128;

/// Drains `stream` on a task of its own into a queue and returns the blocking reader of that queue. The
/// task ends when the stream does, or when the reader is dropped.
pub fn reader_of<S>(stream: S) -> ChannelReader
where
    S: Stream<Item = io::Result<Bytes>> + Send + 'static,
{
    let (tx, rx) = mpsc::channel(QUEUE);
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(item) = stream.next().await {
            let failed = item.is_err();
            if tx.send(item).await.is_err() || failed {
                break;
            }
        }
    });
    ChannelReader {
        rx,
        current: Bytes::new(),
    }
}

/// The blocking end of [`reader_of`]. Must not be read on an async worker thread.
pub struct ChannelReader {
    rx: mpsc::Receiver<io::Result<Bytes>>,
    current: Bytes,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(chunk)) => self.current = chunk,
                Some(Err(e)) => return Err(e),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        self.current.advance(n);
        Ok(n)
    }
}

/// A blocking writer whose bytes become the items of an async stream ([`stream_of`]).
#[derive(Clone)]
pub struct ChannelWriter(mpsc::Sender<io::Result<Bytes>>);

impl Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0
            .blocking_send(Ok(Bytes::copy_from_slice(buf)))
            .map_err(|_| io::Error::other("the upload to the engine stopped"))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl ChannelWriter {
    /// Ends the stream with an error, so the engine does not take a truncated upload for a whole one.
    pub fn fail(&self, error: io::Error) {
        let _ = self.0.blocking_send(Err(error));
    }
}

/// A blocking writer and the async stream of what is written to it.
pub fn stream_of() -> (
    ChannelWriter,
    impl Stream<Item = io::Result<Bytes>> + Send + 'static,
) {
    let (tx, rx) = mpsc::channel(QUEUE);
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    (ChannelWriter(tx), stream)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn bytes_cross_in_order_and_errors_end_the_stream() {
        let chunks = futures_util::stream::iter(vec![
            Ok(Bytes::from_static(b"hello ")),
            Ok(Bytes::from_static(b"world")),
        ]);
        let mut reader = reader_of(chunks);
        let text = tokio::task::spawn_blocking(move || {
            let mut s = String::new();
            reader.read_to_string(&mut s).map(|_| s)
        })
        .await
        .unwrap()
        .unwrap();
        assert_eq!(text, "hello world");

        let failing = futures_util::stream::iter(vec![
            Ok(Bytes::from_static(b"x")),
            Err(io::Error::other("engine went away")),
        ]);
        let mut reader = reader_of(failing);
        let err = tokio::task::spawn_blocking(move || {
            let mut v = Vec::new();
            reader.read_to_end(&mut v)
        })
        .await
        .unwrap()
        .unwrap_err();
        assert_eq!(err.to_string(), "engine went away");
    }
}
