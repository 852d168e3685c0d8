//! An in-memory byte pipe for running two sessions without sockets, every future polled by the
//! test itself (deterministic wake-up and allocation counts).
//!
//! Its vectored write takes all the slices it is given, as a socket's `writev` does (tokio's
//! duplex pipe takes only the first, which would send every direct write's payload through the
//! driver), and it allocates nothing itself, so the allocation tests count only polymux.

use std::io::IoSlice;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead as _, AsyncWrite as _, DuplexStream, ReadBuf};

/// Bytes one vectored write takes at most (a partial write, as a socket's can be).
const VECTORED_MAX: usize = 1024;

/// One end of a pipe from [`pipe`]: `futures::io::AsyncRead + AsyncWrite`.
#[derive(Debug)]
pub struct Pipe(DuplexStream);

/// Two connected ends, each buffering up to `capacity` bytes the other has not read.
pub fn pipe(capacity: usize) -> (Pipe, Pipe) {
    let (a, b) = tokio::io::duplex(capacity);
    (Pipe(a), Pipe(b))
}

impl futures::io::AsyncRead for Pipe {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<std::io::Result<usize>> {
        let mut read = ReadBuf::new(buf);
        match Pin::new(&mut self.0).poll_read(cx, &mut read) {
            Poll::Ready(Ok(())) => Poll::Ready(Ok(read.filled().len())),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl futures::io::AsyncWrite for Pipe {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        // Joined on the stack: up to VECTORED_MAX bytes per call, no allocation.
        let mut joined = [0u8; VECTORED_MAX];
        let mut n = 0;
        for b in bufs {
            let take = b.len().min(joined.len() - n);
            joined[n..n + take].copy_from_slice(&b[..take]);
            n += take;
        }
        Pin::new(&mut self.0).poll_write(cx, &joined[..n])
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}
