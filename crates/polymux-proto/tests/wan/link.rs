//! One direction of a WAN path in virtual time: a bottleneck that serialises packets at a fixed
//! rate, a FIFO of bounded size in front of it, and a fixed propagation delay behind it.
//!
//! This is the model of the userspace relay the WAN findings were measured with (issue 13): a
//! sender may put bytes on the link only while the queue has room (back-pressure, as a full
//! socket buffer gives), each packet leaves the bottleneck `len / rate` after the one before it,
//! and arrives `delay` later, in order. Time is a [`Duration`] since the start of the run, so
//! every result is exact and repeatable.
//!
//! Invariant: `queued` is the sum of the lengths of the packets in `queue` (not yet through
//! the bottleneck), and never exceeds `queue_cap + sndbuf`.

use std::collections::VecDeque;
use std::time::Duration;

use bytes::{Bytes, BytesMut};

/// Packet size on the bottleneck: a TCP segment's payload on a 1500-byte MTU.
pub const MSS: usize = 1448;

/// The shape of one direction of a path.
#[derive(Clone, Copy, Debug)]
pub struct LinkShape {
    /// Bottleneck rate, bytes per second.
    pub rate: u64,
    /// One-way propagation delay.
    pub delay: Duration,
    /// Bytes that may wait at the bottleneck (the relay's queue).
    pub queue_cap: usize,
    /// Bytes the sender's socket buffer may hold beyond what the bottleneck queue takes:
    /// written by the application, not yet sent (the kernel's "notsent" bytes).
    pub sndbuf: usize,
}

impl LinkShape {
    /// The bandwidth-delay product of a path with this shape in both directions.
    pub fn bdp(&self) -> usize {
        (self.rate as u128 * 2 * self.delay.as_nanos() / 1_000_000_000) as usize
    }

    fn serialisation(&self, len: usize) -> Duration {
        Duration::from_nanos((len as u128 * 1_000_000_000 / u128::from(self.rate)) as u64)
    }
}

/// One direction of the path.
pub struct Link {
    shape: LinkShape,
    /// Packets waiting for or in the bottleneck, with the time each leaves it.
    queue: VecDeque<(Duration, Bytes)>,
    queued: usize,
    /// Packets past the bottleneck, with their arrival time.
    flight: VecDeque<(Duration, Bytes)>,
    /// When the bottleneck is done with the last queued packet.
    busy_until: Duration,
    /// Bytes delivered to the receiver so far.
    pub delivered: u64,
}

impl Link {
    pub fn new(shape: LinkShape) -> Link {
        Link {
            shape,
            queue: VecDeque::new(),
            queued: 0,
            flight: VecDeque::new(),
            busy_until: Duration::ZERO,
            delivered: 0,
        }
    }

    /// Moves packets that left the bottleneck by `now` into flight.
    fn advance(&mut self, now: Duration) {
        while let Some(&(leaves, _)) = self.queue.front() {
            if leaves > now {
                break;
            }
            let (leaves, packet) = self.queue.pop_front().expect("front checked");
            self.queued -= packet.len();
            self.flight.push_back((leaves + self.shape.delay, packet));
        }
    }

    /// Puts as much of `bytes` on the link as its queue has room for at `now`; returns how
    /// many bytes it took.
    pub fn offer(&mut self, now: Duration, bytes: &[u8]) -> usize {
        self.advance(now);
        let n = bytes.len().min(self.capacity() - self.queued);
        for packet in bytes[..n].chunks(MSS) {
            let start = self.busy_until.max(now);
            self.busy_until = start + self.shape.serialisation(packet.len());
            self.queue
                .push_back((self.busy_until, Bytes::copy_from_slice(packet)));
            self.queued += packet.len();
        }
        n
    }

    /// The socket buffer and the bottleneck queue in series act as one FIFO of their summed
    /// size: the sender's unsent bytes are what does not fit in the bottleneck queue.
    fn capacity(&self) -> usize {
        self.shape.queue_cap + self.shape.sndbuf
    }

    /// Room for the sender at `now`.
    pub fn room(&mut self, now: Duration) -> usize {
        self.advance(now);
        self.capacity() - self.queued
    }

    /// Bytes in the sender's socket buffer not yet sent at `now` (what `TCP_NOTSENT_LOWAT`
    /// bounds).
    pub fn unsent(&mut self, now: Duration) -> usize {
        self.advance(now);
        self.queued.saturating_sub(self.shape.queue_cap)
    }

    /// Appends to `out` every byte that has arrived by `now`; returns how many.
    pub fn deliver(&mut self, now: Duration, out: &mut BytesMut) -> usize {
        self.advance(now);
        let mut n = 0;
        while let Some(&(arrives, _)) = self.flight.front() {
            if arrives > now {
                break;
            }
            let (_, packet) = self.flight.pop_front().expect("front checked");
            out.extend_from_slice(&packet);
            n += packet.len();
        }
        self.delivered += n as u64;
        n
    }

    /// The next time something changes on this link: a packet leaves the bottleneck (room for
    /// the sender) or arrives (input for the receiver).
    pub fn next_event(&self) -> Option<Duration> {
        let leaves = self.queue.front().map(|&(t, _)| t);
        let arrives = self.flight.front().map(|&(t, _)| t);
        match (leaves, arrives) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}
