//! [`Wire`]: one direction of the transport, an ordered byte pipe with a fixed one-way delay.

use super::*;

/// One direction of the transport: an ordered byte pipe with a fixed one-way delay.
pub struct Wire {
    pub delay_ms: u64,
    /// (arrival time, bytes), in order, one chunk per arrival time: arrival times increase
    /// (fixed delay, FIFO).
    pub(crate) chunks: VecDeque<(u64, BytesMut)>,
    /// The sender closed its transport: EOF arrives at this time, after the queued bytes.
    pub eof_at: Option<u64>,
    /// Bytes sent at or after this time are silently dropped (a peer that stopped answering).
    pub blocked_from: Option<u64>,
    pub bytes_sent: u64,
}

impl Wire {
    pub fn new(delay_ms: u64) -> Wire {
        Wire {
            delay_ms,
            chunks: VecDeque::new(),
            eof_at: None,
            blocked_from: None,
            bytes_sent: 0,
        }
    }

    pub(crate) fn send(&mut self, now: u64, bytes: Bytes) {
        if bytes.is_empty() || self.blocked_from.is_some_and(|t| now >= t) {
            return;
        }
        self.bytes_sent += bytes.len() as u64;
        let at = now + self.delay_ms;
        match self.chunks.back_mut() {
            Some((t, chunk)) if *t == at => chunk.extend_from_slice(&bytes),
            _ => self.chunks.push_back((at, BytesMut::from(&bytes[..]))),
        }
    }

    pub(crate) fn close(&mut self, now: u64) {
        if self.blocked_from.is_some_and(|t| now >= t) {
            return;
        }
        self.eof_at = Some(now + self.delay_ms);
    }

    /// The sender's EOF has arrived (after everything it sent).
    pub(crate) fn eof_arrived(&self, now: u64) -> bool {
        self.is_empty() && self.eof_at.is_some_and(|t| t <= now)
    }

    /// Bytes that have arrived by `now`.
    pub(crate) fn arrived(&self, now: u64) -> usize {
        self.chunks
            .iter()
            .take_while(|(t, _)| *t <= now)
            .map(|(_, b)| b.len())
            .sum()
    }

    /// Moves up to `max` arrived bytes to `out`; returns how many.
    pub(crate) fn take(&mut self, now: u64, max: usize, out: &mut BytesMut) -> usize {
        let mut moved = 0;
        while moved < max {
            let Some((t, front)) = self.chunks.front_mut() else {
                break;
            };
            if *t > now {
                break;
            }
            let n = front.len().min(max - moved);
            if out.is_empty() && n == front.len() {
                // Hand over the whole chunk without copying.
                *out = std::mem::take(front);
            } else {
                out.extend_from_slice(&front[..n]);
                front.advance(n);
            }
            moved += n;
            if front.is_empty() {
                self.chunks.pop_front();
            }
        }
        moved
    }

    pub fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }

    pub(crate) fn next_arrival(&self) -> Option<u64> {
        self.chunks.front().map(|(t, _)| *t)
    }
}
