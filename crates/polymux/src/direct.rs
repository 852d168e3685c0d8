//! The I/O half of the direct write path: a stream's writer puts its frames on the transport
//! itself while the session's output is idle. The rule it follows (permission, no interleaving,
//! remainder first) is the engine's, stated once in `polymux_proto::connection::direct`; this
//! module only performs the write it is handed and reports what the transport took.
//!
//! It holds the transport's lock from the permission to the report, so nothing else can be
//! written in between, and takes it with `try_lock` only (the lock order in `session.rs`): a
//! writer that finds the driver writing queues its bytes instead.

use std::io::{self, IoSlice};
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use polymux_proto::connection::{WriteOutcome, DIRECT_MAX_PIECES};
use polymux_proto::StreamKey;

use crate::session::Shared;

/// Writes up to `buf.len()` bytes of stream `key`: directly when the engine allows it and the
/// transport is free, queued for the driver otherwise.
pub(crate) fn poll_write(
    shared: &Shared,
    key: StreamKey,
    cx: &mut Context<'_>,
    buf: &[u8],
) -> Poll<io::Result<usize>> {
    poll_write_payload(shared, key, cx, buf, None)
}

/// [`poll_write`] of a prefix of `chunk` without copying it: queued as slices of it when the
/// output is busy (a direct write copies nothing either way). Returns how many bytes; the
/// caller advances `chunk`.
pub(crate) fn poll_write_chunk(
    shared: &Shared,
    key: StreamKey,
    cx: &mut Context<'_>,
    chunk: &Bytes,
) -> Poll<io::Result<usize>> {
    poll_write_payload(shared, key, cx, chunk, Some(chunk))
}

/// The write of `buf`, which is `chunk`'s bytes when there is one (then queued zero-copy).
fn poll_write_payload(
    shared: &Shared,
    key: StreamKey,
    cx: &mut Context<'_>,
    buf: &[u8],
    chunk: Option<&Bytes>,
) -> Poll<io::Result<usize>> {
    let now = Instant::now();
    let Some(mut io) = shared.try_lock_io() else {
        let mut conn = shared.lock();
        let polled = match chunk {
            Some(chunk) => conn.poll_write_chunk(key, cx.waker(), chunk, now),
            None => conn.poll_write(key, cx.waker(), buf, now),
        };
        return polled.map_err(io::Error::from);
    };
    let outcome = {
        let mut conn = shared.lock();
        match chunk {
            Some(chunk) => conn.poll_write_chunk_direct(key, cx.waker(), chunk, now),
            None => conn.poll_write_direct(key, cx.waker(), buf, now),
        }
    };
    let direct = match outcome {
        Poll::Ready(Ok(WriteOutcome::Direct(direct))) => direct,
        Poll::Ready(Ok(WriteOutcome::Queued(n))) => return Poll::Ready(Ok(n)),
        Poll::Ready(Err(e)) => return Poll::Ready(Err(e.into())),
        Poll::Pending => return Poll::Pending,
    };
    let mut slices = [IoSlice::new(&[]); DIRECT_MAX_PIECES];
    for (slot, piece) in slices.iter_mut().zip(direct.pieces(buf)) {
        *slot = IoSlice::new(piece);
    }
    let (written, flushed) = match io.transport.as_mut() {
        Some(transport) => match transport.poll_write_slices(cx, &slices) {
            Poll::Ready(Ok(n)) => (n, transport.poll_flush_out(cx)),
            // The transport is full: everything is queued for the driver instead.
            Poll::Pending => (0, Poll::Ready(Ok(()))),
            Poll::Ready(Err(e)) => (0, Poll::Ready(Err(e))),
        },
        None => (0, Poll::Ready(Ok(()))),
    };
    // Still holding the transport, so nothing can be written between these bytes and
    // whatever of them is left for the driver.
    let mut conn = shared.lock();
    match flushed {
        Poll::Ready(Err(e)) => {
            conn.direct_failed(&e);
            Poll::Ready(Err(e))
        }
        flushed => {
            conn.direct_done(&direct, buf, written);
            if flushed.is_pending() {
                // The transport holds some of the bytes until a flush: the driver's chore.
                io.needs_flush = true;
                conn.wake_driver();
            }
            Poll::Ready(Ok(direct.payload_len()))
        }
    }
}
