//! One multiplexed stream: `futures::io::AsyncRead + AsyncWrite`, and tokio's traits with the
//! `tokio` feature. Errors become `io::Error` here, at the edge, with the typed
//! [`Error`](polymux_proto::Error) inside (`io::Error::get_ref` / `into_inner`).
//!
//! | event | `read` | `write` |
//! |---|---|---|
//! | peer half-closed (FIN) | buffered bytes, then `Ok(0)` | continues |
//! | this side half-closed (`close`) | continues | `BrokenPipe` |
//! | reset (either side) | buffered bytes, then `ConnectionReset` | `ConnectionReset` |
//! | session ended | buffered bytes, then the end reason | the end reason |

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use bytes::{Buf, Bytes};
use polymux_proto::{StreamId, StreamKey};

use crate::inline_read::read_for_driver;
use crate::session::Shared;
use crate::split::{OwnedReadHalf, OwnedWriteHalf, ReadHalf, WriteHalf};

/// A bidirectional stream within a [`Session`](crate::Session).
///
/// Writes go straight to the transport when the session has nothing else to send, and are
/// otherwise copied into the session's write buffer; they return `Pending` while the peer's
/// credit or the session's write budget is exhausted. `flush` returns at once: the driver
/// writes queued bytes as soon as the transport accepts them. `close` half-closes (FIN).
/// Dropping the handle half-closes an unfinished stream and discards what arrives for it.
///
/// Besides `AsyncRead`, [`read_chunk`](Stream::read_chunk) hands out received data as the
/// [`Bytes`] it arrived in, without copying, and [`write_chunk`](Stream::write_chunk) sends a
/// caller's [`Bytes`] without copying it into the write buffer; [`halves`](Stream::halves) gives a reading and a
/// writing half that can be used at the same time (e.g. by the two directions of a relay).
#[derive(Debug)]
pub struct Stream {
    shared: Arc<Shared>,
    key: StreamKey,
    id: StreamId,
    /// Written to since data was last read: a reader that waits now is likely waiting for a
    /// reply, and is worth waking straight from the transport (`inline_read.rs`). A stream
    /// that only receives (a sink) leaves that to the driver, which decodes the data first.
    awaits_reply: AtomicBool,
}

impl Stream {
    pub(crate) fn new(shared: Arc<Shared>, key: StreamKey) -> Stream {
        let id = shared.lock().stream_id(key);
        shared.acquire();
        Stream {
            shared,
            key,
            id,
            awaits_reply: AtomicBool::new(false),
        }
    }

    /// The stream's id on the wire.
    ///
    /// ```
    /// # use tokio_util::compat::TokioAsyncReadCompatExt;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use polymux::{Config, Session};
    /// # let (a, b) = tokio::io::duplex(64 * 1024);
    /// # let (client, driver) = Session::client(a.compat(), Config::yamux());
    /// # tokio::spawn(driver);
    /// # let (server, driver) = Session::server(b.compat(), Config::yamux());
    /// # tokio::spawn(driver);
    /// let stream = client.open().await?;
    /// assert_eq!(stream.id(), polymux::StreamId(1)); // a client's first stream on yamux
    /// # Ok(()) }
    /// ```
    pub fn id(&self) -> StreamId {
        self.id
    }

    /// Aborts the stream in both directions: RST on yamux and net-mux; on smux, which has no
    /// reset, a FIN (the peer sees an orderly end) while this side discards what arrives.
    /// Pending and later reads and writes fail with `ConnectionReset`.
    ///
    /// ```
    /// # use tokio_util::compat::TokioAsyncReadCompatExt;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use polymux::{Config, Session};
    /// # let (a, b) = tokio::io::duplex(64 * 1024);
    /// # let (client, driver) = Session::client(a.compat(), Config::yamux());
    /// # tokio::spawn(driver);
    /// # let (server, driver) = Session::server(b.compat(), Config::yamux());
    /// # tokio::spawn(driver);
    /// use futures::AsyncWriteExt;
    ///
    /// let mut stream = client.open().await?;
    /// stream.reset();
    /// let err = stream.write_all(b"late").await.unwrap_err();
    /// assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset);
    /// # Ok(()) }
    /// ```
    pub fn reset(&mut self) {
        self.shared.lock().reset(self.key, Instant::now());
    }

    /// Takes up to `max` received bytes as they arrived, without copying them into a
    /// caller's buffer: the next queued piece of the stream (a frame's payload, or what is left
    /// of it), or its first `max` bytes. `Ok(None)` at the peer's FIN; errors as for
    /// [`AsyncRead`](futures::io::AsyncRead) (see the table in this module's docs). Taking a
    /// chunk returns credit to the peer exactly as reading the same bytes would. With
    /// `max == 0` it returns an empty chunk at once.
    ///
    /// A chunk is usually a slice of one of the session's receive buffers (128 KiB), which
    /// stays allocated while any slice of it lives; small payloads (under 8 KiB) arrive
    /// copied into chunks of their own. Drop chunks once handled, or copy the ones kept for
    /// long, so that receive buffers can be reused.
    ///
    /// ```no_run
    /// # async fn demo(mut stream: polymux::Stream) -> std::io::Result<()> {
    /// // Counts a stream's bytes without copying any of them.
    /// let mut total = 0;
    /// while let Some(chunk) = stream.read_chunk(64 * 1024).await? {
    ///     total += chunk.len(); // `chunk` is a `bytes::Bytes`
    /// }
    /// println!("{total} bytes until EOF");
    /// # Ok(()) }
    /// ```
    pub async fn read_chunk(&mut self, max: usize) -> io::Result<Option<Bytes>> {
        std::future::poll_fn(|cx| self.poll_read_chunk(cx, max)).await
    }

    /// The poll form of [`read_chunk`](Stream::read_chunk): `Pending` (with `cx`'s waker
    /// registered) until data, EOF or an error is there.
    pub fn poll_read_chunk(
        &mut self,
        cx: &mut Context<'_>,
        max: usize,
    ) -> Poll<io::Result<Option<Bytes>>> {
        self.chunk(cx, max)
    }

    /// Writes all of `data` without copying it into the session's write buffer: while the
    /// output is busy, the stream's frames are queued as slices of `data` (each at most a
    /// frame's payload, headers encoded apart) and written straight from it; while it is idle,
    /// they go to the transport directly, as with `write`. Flow control, the write budget,
    /// fairness between streams and errors are exactly those of writing the same bytes with
    /// `write_all` (see the table in this module's docs). If the future is dropped, a prefix
    /// of `data` may have been sent.
    ///
    /// The write budget is charged the bytes queued, not the allocation behind them: a queued
    /// slice keeps the whole buffer `data` came from alive until its frame is written. Pieces
    /// under 8 KiB are copied instead (a tiny slice is not worth a pinned buffer).
    ///
    /// ```
    /// # use tokio_util::compat::TokioAsyncReadCompatExt;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use polymux::{Config, Session};
    /// # let (a, b) = tokio::io::duplex(64 * 1024);
    /// # let (client, driver) = Session::client(a.compat(), Config::yamux());
    /// # tokio::spawn(driver);
    /// # let (server, driver) = Session::server(b.compat(), Config::yamux());
    /// # tokio::spawn(driver);
    /// use bytes::Bytes;
    /// use futures::{AsyncReadExt, AsyncWriteExt};
    ///
    /// let mut stream = client.open().await?;
    /// let payload = Bytes::from(vec![7u8; 200 * 1024]);
    /// stream.write_chunk(payload.clone()).await?; // shares `payload`'s buffer, no copy
    /// stream.close().await?;
    ///
    /// let mut inbound = server.accept().await?;
    /// let mut got = Vec::new();
    /// inbound.read_to_end(&mut got).await?;
    /// assert_eq!(got, payload);
    /// # Ok(()) }
    /// ```
    pub async fn write_chunk(&mut self, mut data: Bytes) -> io::Result<()> {
        std::future::poll_fn(|cx| self.write_all_chunk(cx, &mut data)).await
    }

    /// The poll form of one step of [`write_chunk`](Stream::write_chunk): writes a prefix of
    /// `data` (as much as a `write` would take), advances `data` past it and returns its
    /// length; `Pending` (with `cx`'s waker registered) while there is no credit or budget
    /// room.
    pub fn poll_write_chunk(
        &mut self,
        cx: &mut Context<'_>,
        data: &mut Bytes,
    ) -> Poll<io::Result<usize>> {
        self.write_chunk_step(cx, data)
    }

    /// Splits the stream into a reading and a writing half that borrow it, so that both
    /// directions can be driven concurrently (e.g. joined in one task), the reader with
    /// [`ReadHalf::read_chunk`] too. The stream itself stays with the caller, to
    /// [`reset`](Stream::reset) or drop afterwards. (Not named `split`: that is
    /// `futures::AsyncReadExt::split`, which takes the stream by value and locks per call.)
    pub fn halves(&mut self) -> (ReadHalf<'_>, WriteHalf<'_>) {
        (ReadHalf::new(self), WriteHalf::new(self))
    }

    /// Splits the stream into owned reading and writing halves, e.g. to move each into a task
    /// of its own; lock-free like [`halves`](Stream::halves) (they share the stream through an
    /// `Arc`). Dropping the writing half sends FIN; the stream is released when both are gone.
    ///
    /// ```no_run
    /// # async fn demo(stream: polymux::Stream) -> std::io::Result<()> {
    /// use futures::{AsyncReadExt, AsyncWriteExt};
    ///
    /// let (mut reader, mut writer) = stream.into_split();
    /// let echo_reader = async move {
    ///     let mut reply = Vec::new();
    ///     reader.read_to_end(&mut reply).await.map(|_| reply)
    /// };
    /// writer.write_all(b"hello").await?;
    /// drop(writer); // FIN: the peer sees the end of our data
    /// let reply = echo_reader.await?;
    /// # let _ = reply;
    /// # Ok(()) }
    /// ```
    pub fn into_split(self) -> (OwnedReadHalf, OwnedWriteHalf) {
        OwnedReadHalf::pair(self)
    }

    // The I/O below takes `&self`: every piece of state lives in the shared engine, behind its
    // lock. `halves` relies on this; one reader and one writer at a time is what keeps each
    // side's waker from being overwritten by another task's, and `&mut self` / the halves'
    // borrows guarantee it.

    pub(crate) fn chunk(
        &self,
        cx: &mut Context<'_>,
        max: usize,
    ) -> Poll<io::Result<Option<Bytes>>> {
        let read = |waker: &Waker| {
            self.shared
                .lock()
                .poll_read_chunk(self.key, waker, max, Instant::now())
        };
        // First without registering: see `read`.
        let polled = read(Waker::noop());
        if polled.is_ready() {
            return self.note_read(polled.map_err(io::Error::from), Option::is_some);
        }
        self.read_for_driver(cx);
        self.note_read(read(cx.waker()).map_err(io::Error::from), Option::is_some)
    }

    /// Copies received bytes into `buf`. With nothing queued, it first reads the transport
    /// for the driver (`inline_read.rs`), which saves a reply that has already arrived the
    /// hand-off through the driver task. The first look registers no waker (a no-op one), so
    /// that what that read decodes wakes only other tasks, or other futures of this one (a
    /// writer `join`ed with this reader, waiting for credit), never this read for its own
    /// bytes; the second look registers the task's waker, and sees whatever arrived between.
    pub(crate) fn read(&self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        let read = |waker: &Waker, buf: &mut [u8]| {
            self.shared
                .lock()
                .poll_read(self.key, waker, buf, Instant::now())
        };
        let polled = read(Waker::noop(), buf);
        if polled.is_ready() {
            return self.note_read(polled.map_err(io::Error::from), |&n| n > 0);
        }
        self.read_for_driver(cx);
        self.note_read(read(cx.waker(), buf).map_err(io::Error::from), |&n| n > 0)
    }

    /// [`read`](Self::read) into tokio's `ReadBuf`.
    #[cfg(feature = "tokio")]
    pub(crate) fn read_buf(
        &self,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let n = match self.read(cx, buf.initialize_unfilled()) {
            Poll::Ready(Ok(n)) => n,
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => return Poll::Pending,
        };
        buf.advance(n);
        Poll::Ready(Ok(()))
    }

    /// Writes directly to the transport when the session's output is idle and the transport
    /// free (no copy, no driver hop); otherwise queues the bytes for the driver.
    pub(crate) fn write(&self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let polled = crate::direct::poll_write(&self.shared, self.key, cx, buf);
        self.note_written(&polled);
        polled
    }

    /// A write's outcome: bytes written start a wait for a reply.
    fn note_written(&self, polled: &Poll<io::Result<usize>>) {
        if matches!(polled, Poll::Ready(Ok(n)) if *n > 0) {
            self.set_awaits_reply(true);
        }
    }

    /// Stores only a change: the halves of a split stream read and write on different threads,
    /// and a store per operation would move the cache line between them.
    fn set_awaits_reply(&self, awaits: bool) {
        if self.awaits_reply.load(Ordering::Relaxed) != awaits {
            self.awaits_reply.store(awaits, Ordering::Relaxed);
        }
    }

    /// Reads the transport for the driver before this reader waits (`inline_read.rs`); if it
    /// waits for a reply, the transport will wake it too.
    fn read_for_driver(&self, cx: &Context<'_>) {
        let reader = self
            .awaits_reply
            .load(Ordering::Relaxed)
            .then(|| cx.waker());
        read_for_driver(&self.shared, reader);
    }

    /// A read's outcome: data read ends the wait for a reply.
    fn note_read<T>(
        &self,
        polled: Poll<io::Result<T>>,
        got_data: impl FnOnce(&T) -> bool,
    ) -> Poll<io::Result<T>> {
        if let Poll::Ready(Ok(v)) = &polled {
            if got_data(v) {
                self.set_awaits_reply(false);
            }
        }
        polled
    }

    /// One zero-copy write of a prefix of `data`, which it advances.
    pub(crate) fn write_chunk_step(
        &self,
        cx: &mut Context<'_>,
        data: &mut Bytes,
    ) -> Poll<io::Result<usize>> {
        let polled = crate::direct::poll_write_chunk(&self.shared, self.key, cx, data);
        self.note_written(&polled);
        if let Poll::Ready(Ok(n)) = polled {
            data.advance(n);
        }
        polled
    }

    /// Zero-copy writes until `data` is empty.
    pub(crate) fn write_all_chunk(
        &self,
        cx: &mut Context<'_>,
        data: &mut Bytes,
    ) -> Poll<io::Result<()>> {
        while !data.is_empty() {
            match self.write_chunk_step(cx, data) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(_)) => {}
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(Ok(()))
    }

    pub(crate) fn close_write(&self) -> Poll<io::Result<()>> {
        let closed = self.shared.lock().close_write(self.key, Instant::now());
        Poll::Ready(closed.map_err(io::Error::from))
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        self.shared.lock().release(self.key, Instant::now());
        self.shared.release();
    }
}

impl futures::io::AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        self.read(cx, buf)
    }
}

impl futures::io::AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_close(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.close_write()
    }
}

#[cfg(feature = "tokio")]
impl tokio::io::AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.read_buf(cx, buf)
    }
}

#[cfg(feature = "tokio")]
impl tokio::io::AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.close_write()
    }
}
