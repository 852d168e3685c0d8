//! [`Stream::halves`]'s borrowed halves: one reads, one writes, both usable at once.
//!
//! Rule kept here: at most one reader and one writer per stream at any time. The engine keeps
//! one read waker and one write waker per stream, so a second concurrent reader (or writer)
//! would overwrite the first one's waker and leave it asleep; the halves borrow the stream
//! mutably between them, which rules that out at compile time. No lock or allocation of their
//! own: every operation goes to the session's engine like the stream's.

use std::io;
use std::pin::Pin;
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

impl futures::io::AsyncRead for ReadHalf<'_> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        self.stream.read(cx, buf)
    }
}

impl futures::io::AsyncWrite for WriteHalf<'_> {
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
impl tokio::io::AsyncRead for ReadHalf<'_> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.stream.read_buf(cx, buf)
    }
}

#[cfg(feature = "tokio")]
impl tokio::io::AsyncWrite for WriteHalf<'_> {
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
