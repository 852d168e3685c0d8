//! What the driver needs from a transport: read into a `BytesMut`, vectored write, flush, close.
//!
//! Any `futures::io::AsyncRead + AsyncWrite` is a transport; its reads go into zero-filled
//! buffer space, since `futures-io` reads need initialised memory. With the `tokio` feature,
//! [`TokioIo`] wraps a tokio transport and reads straight into the buffer's spare capacity
//! (tokio's `ReadBuf` allows uninitialised memory), which saves a memset per read.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::BytesMut;

mod sealed {
    pub trait Sealed {}
}

/// A byte stream a [`Driver`](crate::Driver) can run a session over. Implemented for every
/// `futures::io::AsyncRead + AsyncWrite + Unpin`, and for [`TokioIo`] with the `tokio` feature.
///
/// A tokio transport (`tokio::net::TcpStream`, …) implements tokio's traits, not these: wrap
/// it in `TokioIo`, or use `polymux::tokio::client`/`server`, which do that and spawn the
/// driver (feature `tokio`). Passing it bare is an error that says so:
///
/// ```compile_fail
/// # async fn demo(tcp: tokio::net::TcpStream) {
/// // error: `tokio::net::TcpStream` is not a polymux transport … use `polymux::tokio::client`
/// let (session, driver) = polymux::Session::client(tcp, polymux::Config::yamux());
/// # }
/// ```
// The hint names the adapter because the bare E0277 only says that futures' `AsyncRead` is
// missing, which reads as if tokio I/O were unsupported.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a polymux transport (a `futures::io::AsyncRead + AsyncWrite + Unpin` byte stream)",
    label = "not a `futures::io` byte stream",
    note = "a tokio transport (e.g. `tokio::net::TcpStream`) needs the adapter: enable polymux's `tokio` feature and call `polymux::tokio::client(io, config)` (or `server`), or pass `polymux::TokioIo(io)`"
)]
pub trait Transport: sealed::Sealed + Unpin {
    /// Reads at most `max` bytes, appending them to `buf`; `Ok(0)` is EOF.
    #[doc(hidden)]
    fn poll_read_into(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut BytesMut,
        max: usize,
    ) -> Poll<io::Result<usize>>;

    /// Writes from `slices` in order.
    #[doc(hidden)]
    fn poll_write_slices(
        &mut self,
        cx: &mut Context<'_>,
        slices: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>>;

    /// Flushes buffered writes.
    #[doc(hidden)]
    fn poll_flush_out(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;

    /// Closes the write side (and the transport).
    #[doc(hidden)]
    fn poll_shutdown_out(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
}

impl<T: futures::io::AsyncRead + futures::io::AsyncWrite + Unpin> sealed::Sealed for T {}

impl<T: futures::io::AsyncRead + futures::io::AsyncWrite + Unpin> Transport for T {
    fn poll_read_into(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut BytesMut,
        max: usize,
    ) -> Poll<io::Result<usize>> {
        let start = buf.len();
        buf.resize(start + max, 0);
        let polled = Pin::new(&mut *self).poll_read(cx, &mut buf[start..]);
        let n = match &polled {
            Poll::Ready(Ok(n)) => *n,
            _ => 0,
        };
        buf.truncate(start + n);
        polled
    }

    fn poll_write_slices(
        &mut self,
        cx: &mut Context<'_>,
        slices: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(self).poll_write_vectored(cx, slices)
    }

    fn poll_flush_out(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(self).poll_flush(cx)
    }

    fn poll_shutdown_out(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(self).poll_close(cx)
    }
}

/// A tokio transport (`tokio::io::AsyncRead + AsyncWrite`) as a polymux [`Transport`].
#[cfg(feature = "tokio")]
#[derive(Debug)]
pub struct TokioIo<T>(pub T);

#[cfg(feature = "tokio")]
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin> sealed::Sealed for TokioIo<T> {}

#[cfg(feature = "tokio")]
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin> Transport for TokioIo<T> {
    fn poll_read_into(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut BytesMut,
        max: usize,
    ) -> Poll<io::Result<usize>> {
        buf.reserve(max);
        // `poll_read_buf` reads into the spare capacity without initialising it first; cap
        // it at `max` by reading through a `Take`-like limit on the buffer.
        let mut limited = bytes::BufMut::limit(&mut *buf, max);
        tokio_util::io::poll_read_buf(Pin::new(&mut self.0), cx, &mut limited)
    }

    fn poll_write_slices(
        &mut self,
        cx: &mut Context<'_>,
        slices: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        tokio::io::AsyncWrite::poll_write_vectored(Pin::new(&mut self.0), cx, slices)
    }

    fn poll_flush_out(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        tokio::io::AsyncWrite::poll_flush(Pin::new(&mut self.0), cx)
    }

    fn poll_shutdown_out(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        tokio::io::AsyncWrite::poll_shutdown(Pin::new(&mut self.0), cx)
    }
}
