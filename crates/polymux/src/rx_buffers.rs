//! The driver's receive buffers: read into spare capacity, handed to streams as zero-copy
//! slices, and recycled once every slice of them has been read.
//!
//! Streams hold slices of these buffers until their application reads them, so a buffer may
//! still be in use when the driver wants to read more. Instead of allocating a fresh buffer
//! for every read, the driver keeps a few spares and reuses the first one whose slices are all
//! gone ([`BytesMut::try_reclaim`]): steady-state traffic reads without allocating. It tracks
//! the buffers streams still hold (memory the session's receive budget already accounts for)
//! so it can reuse them when they are freed, and keeps the freed ones while data flows:
//! dropping free buffers beyond a fixed count made a reader that drains in large gulps (more
//! than 4 MiB between its turns) allocate a fresh 128 KiB buffer for nearly every read.
//!
//! Bound: at most `max_tracked` = `recv_budget / BUFFER` + [`FREE_SPARES`] + 1 buffers are
//! tracked, held or free, besides the current one (the receive budget plus about 4 MiB per
//! session). Buffers that streams still pin beyond that are no longer tracked (freed with
//! their last slice). What streams pin is charged to the session's receive budget: the first
//! slice of a buffer charges the whole buffer (`polymux_proto`'s `memory` module), so pinned
//! buffers never exceed the budget; the free spares kept for reuse are this layer's own
//! overhead. [`RxBuffers::trim`] drops every spare once nothing arrived
//! for a second (checked whenever the driver runs, at the latest at the next keep-alive): a
//! quiet session keeps no receive memory.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::BytesMut;

/// Capacity of one receive buffer. A slice of it (payload pieces of 8 KiB or more,
/// `polymux_proto::connection::COPY_BELOW`) pins all of it, and the engine charges all of it.
pub(crate) const BUFFER: usize = 128 * 1024;
/// Spares are dropped once nothing arrived for this long.
const TRIM_AFTER: Duration = Duration::from_secs(1);
/// Buffers tracked beyond those the receive budget can fill: what the driver reads in one poll
/// before the readers get to run (its turn limit × read size = 4 MiB).
const FREE_SPARES: usize = 32;

#[derive(Debug)]
pub(crate) struct RxBuffers {
    /// The buffer being read into; its filled part is undecoded input.
    pub(crate) current: BytesMut,
    /// Earlier buffers, oldest first: still held by streams, or free for reuse.
    spares: VecDeque<BytesMut>,
    max_tracked: usize,
    /// When a read last returned data (set by whoever read).
    pub(crate) last_read: Instant,
}

impl RxBuffers {
    /// Buffers for a session whose streams may hold `recv_budget` bytes.
    pub(crate) fn new(recv_budget: usize) -> Self {
        RxBuffers {
            current: BytesMut::new(),
            spares: VecDeque::new(),
            max_tracked: recv_budget / BUFFER + FREE_SPARES + 1,
            last_read: Instant::now(),
        }
    }

    /// Makes room for at least `want` more bytes in `current`, moving any undecoded bytes to a
    /// recycled (or, if none is free, a new) buffer when it is full. The caller keeps
    /// `current.len() + want ≤ BUFFER`, so the move never needs a larger buffer.
    pub(crate) fn reserve(&mut self, want: usize) {
        debug_assert!(self.current.len() + want <= BUFFER);
        // Everything read was decoded and nothing holds a slice of it: read into the front of
        // the buffer again, whose cache lines are warm, instead of moving on through it.
        if self.current.is_empty() && self.current.try_reclaim(BUFFER) {
            return;
        }
        if self.current.capacity() - self.current.len() >= want || self.current.try_reclaim(want) {
            return;
        }
        // A spare is empty; reclaiming it succeeds once no slice of it is left anywhere. The
        // oldest reclaimable one is taken; the rest stay (bounded by `max_tracked`).
        let next = self
            .spares
            .iter_mut()
            .position(|b| b.try_reclaim(BUFFER))
            .and_then(|i| self.spares.remove(i));
        let mut next = next.unwrap_or_else(|| BytesMut::with_capacity(BUFFER));
        next.extend_from_slice(&self.current);
        let mut old = std::mem::replace(&mut self.current, next);
        old.clear();
        if self.spares.len() < self.max_tracked {
            self.spares.push_back(old);
        }
    }

    /// [`trim`](Self::trim)s once nothing arrived for [`TRIM_AFTER`].
    pub(crate) fn trim_if_quiet(&mut self, now: Instant) {
        if now.saturating_duration_since(self.last_read) >= TRIM_AFTER {
            self.trim();
        }
    }

    /// Drops the spares and, if nothing undecoded is left, the current buffer: a quiet session
    /// keeps no receive memory.
    pub(crate) fn trim(&mut self) {
        self.spares.clear();
        if self.current.is_empty() {
            self.current = BytesMut::new();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_recycled_once_their_slices_are_gone() {
        let mut rx = RxBuffers::new(1 << 20);
        let mut first = None;
        for round in 0..20 {
            rx.reserve(64 * 1024);
            if round == 0 {
                first = Some(rx.current.as_ptr());
            }
            rx.current.extend_from_slice(&[round as u8; 64 * 1024]);
            // A stream takes the bytes and reads them at once.
            let slice = rx.current.split().freeze();
            assert!(slice.iter().all(|&b| b == round as u8));
            drop(slice);
        }
        // 20 reads of 64 KiB went through at most two distinct allocations.
        assert!(rx.spares.len() <= 1, "{} spares", rx.spares.len());
        let _ = first;
    }

    #[test]
    fn undecoded_bytes_move_to_the_next_buffer_and_held_slices_stay_valid() {
        let mut rx = RxBuffers::new(1 << 20);
        rx.reserve(BUFFER - 10);
        rx.current.extend_from_slice(&vec![1u8; BUFFER - 10]);
        let held = rx.current.split_to(BUFFER - 13).freeze(); // a stream keeps this
                                                              // Three undecoded bytes remain; there is no room for more in this buffer.
        rx.reserve(64 * 1024);
        assert_eq!(&rx.current[..], &[1, 1, 1]);
        assert!(rx.current.capacity() - rx.current.len() >= 64 * 1024);
        assert!(held.iter().all(|&b| b == 1));
        rx.trim();
        assert_eq!(rx.spares.len(), 0);
        assert_eq!(&rx.current[..], &[1, 1, 1]);
    }
}
