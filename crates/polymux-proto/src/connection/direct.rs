//! The direct write path: a stream's writer puts its data frames on the transport itself,
//! with no copy into the session's write buffer and no hop through the driver task. This
//! module owns the path; the async layer only performs the I/O it is handed.
//!
//! Protocol: the caller holds the transport, asks
//! [`poll_write_direct`](Connection::poll_write_direct) for permission, writes the frames it
//! gets, and reports what the transport took with [`direct_done`](Connection::direct_done)
//! (or [`direct_failed`](Connection::direct_failed)). Anything the transport buffers and only
//! a flush sends is the caller's and its driver's business, not the engine's.
//!
//! **Invariant** (kept here, with the output state in `tx.rs`): permission is given only while
//! nothing is being written and no stream's data is queued; the few control bytes queued then
//! (an open, an ACK, a window update, a FIN: at most `tx::DIRECT_CONTROL`) are taken into the direct
//! write, ahead of its frames; between the two calls the engine hands out no batch; what the
//! transport did not take is queued ahead of everything else. So frames never interleave or
//! reorder on the wire and no accepted byte is lost. Such a remainder (at most
//! [`DIRECT_MAX_FRAMES`] frames) may exceed the write budget once, until the driver has
//! written it.

use std::task::{Poll, Waker};
use std::time::Instant;

use bytes::Bytes;

use crate::error::Error;
use crate::tx::DIRECT_CONTROL;

use super::{Connection, StreamKey};

/// Data frames one direct write may carry.
pub const DIRECT_MAX_FRAMES: usize = 4;
/// Pieces of one direct write at most ([`DirectWrite::pieces`]): the control bytes it carries,
/// then a header and a payload piece per frame.
pub const DIRECT_MAX_PIECES: usize = 1 + 2 * DIRECT_MAX_FRAMES;
/// The largest data-frame header of any dialect.
const MAX_HEADER: usize = crate::codec::MAX_HEADER_LEN;

/// Frames a writer may put on the transport itself: for each, a header and a piece of the
/// caller's buffer. Obtained from [`Connection::poll_write_direct`].
#[derive(Debug)]
pub struct DirectWrite {
    /// Control frames that were queued, written first (`control_len` bytes).
    control: [u8; DIRECT_CONTROL],
    control_len: usize,
    /// The frames' headers, back to back, `header_len` bytes each (in the value itself: a
    /// direct write allocates nothing).
    headers: [u8; DIRECT_MAX_FRAMES * MAX_HEADER],
    header_len: usize,
    frames: usize,
    frame_payload: usize,
    payload: usize,
}

impl DirectWrite {
    /// Payload bytes (a prefix of the caller's buffer) these frames carry.
    pub fn payload_len(&self) -> usize {
        self.payload
    }

    /// The frames' bytes in wire order, as header and payload pieces of `buf` (the buffer that
    /// was passed to `poll_write_direct`).
    /// At most [`DIRECT_MAX_PIECES`]; none is empty.
    pub fn pieces<'a>(&'a self, buf: &'a [u8]) -> impl Iterator<Item = &'a [u8]> + 'a {
        let control = &self.control[..self.control_len];
        let frames = (0..self.frames).flat_map(move |i| {
            let start = i * self.frame_payload;
            let end = (start + self.frame_payload).min(self.payload);
            let header = &self.headers[i * self.header_len..(i + 1) * self.header_len];
            [header, &buf[start..end]]
        });
        (!control.is_empty())
            .then_some(control)
            .into_iter()
            .chain(frames)
    }

    /// The pieces after the first `written` bytes.
    fn unwritten<'a>(&'a self, buf: &'a [u8], written: usize) -> impl Iterator<Item = &'a [u8]> {
        let mut skip = written;
        self.pieces(buf).filter_map(move |piece| {
            let n = skip.min(piece.len());
            skip -= n;
            (n < piece.len()).then(|| &piece[n..])
        })
    }
}

/// What [`Connection::poll_write_direct`] decided.
#[derive(Debug)]
pub enum WriteOutcome {
    /// The bytes were queued as by [`Connection::poll_write`]; the driver writes them.
    Queued(usize),
    /// Write these frames to the transport now, then call [`Connection::direct_done`].
    Direct(DirectWrite),
}

impl Connection {
    /// Like [`poll_write`](Self::poll_write), but when the output is idle, returns frames for
    /// the caller to write to the transport itself (the credit is spent already). The caller
    /// must then call [`direct_done`](Self::direct_done) or
    /// [`direct_failed`](Self::direct_failed) before anything else writes to the transport.
    pub fn poll_write_direct(
        &mut self,
        key: StreamKey,
        waker: &Waker,
        buf: &[u8],
        now: Instant,
    ) -> Poll<Result<WriteOutcome, Error>> {
        self.direct_or_queue(key, buf, |c| c.poll_write(key, waker, buf, now))
    }

    /// [`poll_write_direct`](Self::poll_write_direct) for a zero-copy write: when the output
    /// is busy, a prefix of `data` is queued as by
    /// [`poll_write_chunk`](Self::poll_write_chunk) instead of being copied. A direct write's
    /// frames are pieces of `data`, as they are of `buf` above.
    pub fn poll_write_chunk_direct(
        &mut self,
        key: StreamKey,
        waker: &Waker,
        data: &Bytes,
        now: Instant,
    ) -> Poll<Result<WriteOutcome, Error>> {
        self.direct_or_queue(key, data, |c| c.poll_write_chunk(key, waker, data, now))
    }

    /// Frames of `buf` for a direct write when the output is idle; otherwise `queue`.
    fn direct_or_queue(
        &mut self,
        key: StreamKey,
        buf: &[u8],
        queue: impl FnOnce(&mut Self) -> Poll<Result<usize, Error>>,
    ) -> Poll<Result<WriteOutcome, Error>> {
        let credit = match self.streams.get(key.0) {
            Some(s) if s.can_send() => s.send.available(),
            _ => 0,
        };
        if credit == 0 || buf.is_empty() || self.is_ended() || !self.tx.direct_may_start() {
            return queue(self).map(|r| r.map(WriteOutcome::Queued));
        }
        let frame_payload = self.config.max_frame_payload() as usize;
        let n = buf
            .len()
            .min(credit.min(usize::MAX as u64) as usize)
            .min(frame_payload * DIRECT_MAX_FRAMES);
        let Some(s) = self.streams.get_mut(key.0) else {
            return Poll::Ready(Err(Error::SessionClosed));
        };
        s.send.spend(n as u64);
        let id = s.id;
        let header_len = self.dialect.header_len();
        let mut direct = DirectWrite {
            control: [0; DIRECT_CONTROL],
            control_len: 0,
            headers: [0; DIRECT_MAX_FRAMES * MAX_HEADER],
            header_len,
            frames: n.div_ceil(frame_payload),
            frame_payload,
            payload: n,
        };
        for i in 0..direct.frames {
            let len = (n - i * frame_payload).min(frame_payload);
            let slot = &mut direct.headers[i * header_len..(i + 1) * header_len];
            self.tx.data_header_into(id, len, slot);
        }
        self.stats.bytes_sent += n as u64;
        direct.control_len = self.tx.begin_direct(&mut direct.control);
        Poll::Ready(Ok(WriteOutcome::Direct(direct)))
    }

    /// The transport took `written` bytes of `direct`'s frames; the rest is queued first, for
    /// the driver.
    pub fn direct_done(&mut self, direct: &DirectWrite, buf: &[u8], written: usize) {
        self.tx.end_direct(direct.unwritten(buf, written));
        if written > 0 {
            // The transport took bytes: the peer reads (see `handle_write_progress`).
            self.handle_write_progress();
        }
        if self.tx.has_pending() {
            self.wake_driver();
        }
    }

    /// Writing `direct`'s frames failed: the transport is broken and the session ends.
    pub fn direct_failed(&mut self, error: &std::io::Error) {
        self.tx.end_direct(std::iter::empty());
        self.handle_transport_error(error);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Config, Dialect, Role};
    use std::time::Instant;

    fn open_pair(dialect: Dialect, now: Instant) -> (Connection, StreamKey) {
        let config = Config::for_dialect(dialect);
        let mut c = Connection::new(Role::Client, config, now);
        let Poll::Ready(Ok(key)) = c.poll_open(Waker::noop(), now) else {
            panic!("open")
        };
        (c, key)
    }

    fn drain(c: &mut Connection, now: Instant) -> Vec<u8> {
        let mut out = Vec::new();
        while let Some(batch) = c.poll_transmit(now) {
            out.extend(batch.pieces().flatten());
            c.transmitted(batch);
        }
        out
    }

    /// The bytes a direct write produces are the bytes the queued path produces.
    #[test]
    fn direct_frames_match_queued_frames_and_remainders_go_first() {
        for dialect in [
            Dialect::Yamux,
            Dialect::SmuxV1,
            Dialect::SmuxV2,
            Dialect::NetMux,
        ] {
            let now = Instant::now();
            let payload: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
            let (mut queued, qk) = open_pair(dialect, now);
            drain(&mut queued, now);
            let mut expected = Vec::new();
            let mut off = 0;
            while off < payload.len() {
                let Poll::Ready(Ok(n)) = queued.poll_write(qk, Waker::noop(), &payload[off..], now)
                else {
                    panic!("queued write")
                };
                off += n;
                expected.extend(drain(&mut queued, now));
            }

            let (mut direct, dk) = open_pair(dialect, now);
            drain(&mut direct, now);
            let mut wire = Vec::new();
            let mut off = 0;
            while off < payload.len() {
                let buf = &payload[off..];
                let Poll::Ready(Ok(WriteOutcome::Direct(d))) =
                    direct.poll_write_direct(dk, Waker::noop(), buf, now)
                else {
                    panic!("{}: expected a direct write", dialect.name())
                };
                // While it runs, nothing else is handed out, even if queued meanwhile.
                assert!(direct.poll_open(Waker::noop(), now).is_ready());
                assert!(direct.poll_transmit(now).is_none());
                // The transport takes only 7 bytes: the rest is queued ahead of that SYN.
                let all: Vec<u8> = d.pieces(buf).flatten().copied().collect();
                wire.extend_from_slice(&all[..7]);
                direct.direct_done(&d, buf, 7);
                let rest = drain(&mut direct, now);
                assert_eq!(&rest[..all.len() - 7], &all[7..], "{}", dialect.name());
                wire.extend_from_slice(&rest[..all.len() - 7]);
                off += d.payload_len();
            }
            assert_eq!(wire, expected, "{}", dialect.name());
        }
    }

    /// A queued open (a few control bytes) goes out first, in the direct write itself: the
    /// bytes are those of the queued path.
    #[test]
    fn queued_control_bytes_lead_the_direct_write() {
        for dialect in [Dialect::Yamux, Dialect::SmuxV2] {
            let now = Instant::now();
            let (mut queued, qk) = open_pair(dialect, now);
            let Poll::Ready(Ok(3)) = queued.poll_write(qk, Waker::noop(), b"abc", now) else {
                panic!("queued write")
            };
            let expected = drain(&mut queued, now);
            let (mut c, key) = open_pair(dialect, now);
            let Poll::Ready(Ok(WriteOutcome::Direct(d))) =
                c.poll_write_direct(key, Waker::noop(), b"abc", now)
            else {
                panic!("{}: expected a direct write", dialect.name())
            };
            let wire: Vec<u8> = d.pieces(b"abc").flatten().copied().collect();
            assert_eq!(wire, expected, "{}", dialect.name());
            assert!(d.pieces(b"abc").count() <= DIRECT_MAX_PIECES);
            c.direct_done(&d, b"abc", wire.len());
            assert!(drain(&mut c, now).is_empty(), "{}", dialect.name());
        }
    }

    /// Stream data queued (here: a write while another was in flight) keeps later writes on
    /// the queued path: a direct write would overtake it.
    #[test]
    fn queued_data_takes_the_queued_path() {
        let now = Instant::now();
        let (mut c, key) = open_pair(Dialect::Yamux, now);
        let Poll::Ready(Ok(3)) = c.poll_write(key, Waker::noop(), b"abc", now) else {
            panic!("queued write")
        };
        assert!(matches!(
            c.poll_write_direct(key, Waker::noop(), b"def", now),
            Poll::Ready(Ok(WriteOutcome::Queued(3)))
        ));
    }
}
