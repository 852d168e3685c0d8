//! A stream's two directions used at once: [`Stream::halves`]'s borrowed halves and
//! [`Stream::into_split`]'s owned ones (for two tasks).
//!
//! Rule kept here: at most one reader and one writer per stream at any time. The engine keeps
//! one read waker and one write waker per stream, so a second concurrent reader (or writer)
//! would overwrite the first one's waker and leave it asleep; the halves borrow the stream
//! mutably between them, and the owned halves are one of each by construction, which rules it
//! out at compile time. No lock of their own: every operation goes to the session's engine like
//! the stream's (the owned halves share the stream through one `Arc`).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;

use crate::stream::Stream;

/// The reading half of a [`Stream`], from [`Stream::halves`]: `AsyncRead` (futures', and
/// tokio's with the `tokio` feature) and [`read_chunk`](ReadHalf::read_chunk).
#[derive(Debug)]
pub struct ReadHalf<'a> {
    stream: &'a Stream,
}

/// The writing half of a [`Stream`], from [`Stream::halves`]: `AsyncWrite` (futures', and
/// tokio's with the `tokio` feature) and [`write_chunk`](WriteHalf::write_chunk); closing it half-closes the stream (FIN).
#[derive(Debug)]
pub struct WriteHalf<'a> {
    stream: &'a Stream,
}

impl<'a> ReadHalf<'a> {
    pub(crate) fn new(stream: &'a Stream) -> Self {
        ReadHalf { stream }
    }

    /// [`Stream::read_chunk`] on this half.
    pub async fn read_chunk(&mut self, max: usize) -> io::Result<Option<Bytes>> {
        std::future::poll_fn(|cx| self.stream.chunk(cx, max)).await
    }

    /// [`Stream::poll_read_chunk`] on this half.
    pub fn poll_read_chunk(
        &mut self,
        cx: &mut Context<'_>,
        max: usize,
    ) -> Poll<io::Result<Option<Bytes>>> {
        self.stream.chunk(cx, max)
    }
}

impl<'a> WriteHalf<'a> {
    pub(crate) fn new(stream: &'a Stream) -> Self {
        WriteHalf { stream }
    }

    /// [`Stream::write_chunk`] on this half.
    pub async fn write_chunk(&mut self, mut data: Bytes) -> io::Result<()> {
        std::future::poll_fn(|cx| self.stream.write_all_chunk(cx, &mut data)).await
    }

    /// [`Stream::poll_write_chunk`] on this half.
    pub fn poll_write_chunk(
        &mut self,
        cx: &mut Context<'_>,
        data: &mut Bytes,
    ) -> Poll<io::Result<usize>> {
        self.stream.write_chunk_step(cx, data)
    }
}

/// The reading half of a [`Stream`], from [`Stream::into_split`]: like [`ReadHalf`], but owned,
/// so it can move into a task of its own. The stream is released when both halves are gone.
#[derive(Debug)]
pub struct OwnedReadHalf {
    stream: Arc<Stream>,
}

/// The writing half of a [`Stream`], from [`Stream::into_split`]: like [`WriteHalf`], but
/// owned. Dropping it half-closes the stream (FIN) as closing it does, so a relay that drops
/// its writer at the end of its input signals the end to the peer; the reading half reads on.
#[derive(Debug)]
pub struct OwnedWriteHalf {
    stream: Arc<Stream>,
}

impl OwnedReadHalf {
    pub(crate) fn pair(stream: Stream) -> (OwnedReadHalf, OwnedWriteHalf) {
        let stream = Arc::new(stream);
        (
            OwnedReadHalf {
                stream: stream.clone(),
            },
            OwnedWriteHalf { stream },
        )
    }

    /// [`Stream::read_chunk`] on this half.
    pub async fn read_chunk(&mut self, max: usize) -> io::Result<Option<Bytes>> {
        std::future::poll_fn(|cx| self.stream.chunk(cx, max)).await
    }

    /// [`Stream::poll_read_chunk`] on this half.
    pub fn poll_read_chunk(
        &mut self,
        cx: &mut Context<'_>,
        max: usize,
    ) -> Poll<io::Result<Option<Bytes>>> {
        self.stream.chunk(cx, max)
    }
}

impl OwnedWriteHalf {
    /// [`Stream::write_chunk`] on this half.
    pub async fn write_chunk(&mut self, mut data: Bytes) -> io::Result<()> {
        std::future::poll_fn(|cx| self.stream.write_all_chunk(cx, &mut data)).await
    }

    /// [`Stream::poll_write_chunk`] on this half.
    pub fn poll_write_chunk(
        &mut self,
        cx: &mut Context<'_>,
        data: &mut Bytes,
    ) -> Poll<io::Result<usize>> {
        self.stream.write_chunk_step(cx, data)
    }
}

impl Drop for OwnedWriteHalf {
    fn drop(&mut self) {
        // A FIN already sent, or a stream reset or ended, makes this a no-op or an error
        // nobody is left to see; queueing the FIN never waits.
        let _ = self.stream.close_write();
    }
}

/// The I/O traits of a read half and a write half, borrowed or owned: each call goes to the
/// stream they share.
macro_rules! half_io {
    ($read:ty, $write:ty) => {
        impl futures::io::AsyncRead for $read {
            fn poll_read(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &mut [u8],
            ) -> Poll<io::Result<usize>> {
                self.stream.read(cx, buf)
            }
        }

        impl futures::io::AsyncWrite for $write {
            fn poll_write(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &[u8],
            ) -> Poll<io::Result<usize>> {
                self.stream.write(cx, buf)
            }

            fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                Poll::Ready(Ok(()))
            }

            fn poll_close(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                self.stream.close_write()
            }
        }

        #[cfg(feature = "tokio")]
        impl tokio::io::AsyncRead for $read {
            fn poll_read(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &mut tokio::io::ReadBuf<'_>,
            ) -> Poll<io::Result<()>> {
                self.stream.read_buf(cx, buf)
            }
        }

        #[cfg(feature = "tokio")]
        impl tokio::io::AsyncWrite for $write {
            fn poll_write(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &[u8],
            ) -> Poll<io::Result<usize>> {
                self.stream.write(cx, buf)
            }

            fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                Poll::Ready(Ok(()))
            }

            fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                self.stream.close_write()
            }
        }
    };
}

half_io!(ReadHalf<'_>, WriteHalf<'_>);
half_io!(OwnedReadHalf, OwnedWriteHalf);
