//! Inputs: decoding received bytes and applying each frame to the session.
//!
//! Rules implemented here (the per-dialect wire rules; peer behaviour cited in
//! `docs/peer-facts.md`): SYN opens (parity and reuse checked; refused with RST —
//! FIN on smux — when the backlog or stream limit is full or after our GoAway); ACK completes
//! an open; FIN and RST are honoured on Data and WindowUpdate alike; data beyond the credit
//! granted is a violation; a frame for a stream that existed but is gone is dropped quietly, one
//! for a stream that never existed is a violation.

use std::time::Instant;

use bytes::{Buf, BytesMut};

use super::{Connection, Refusal, RxFrame, State, StreamKey};
use crate::error::Violation;
use crate::frame::{Flags, Frame, StreamId};
use crate::memory::PinKey;
use crate::stream::Opening;

/// Payload pieces smaller than this are copied into their stream's chunks (merged, so a flood
/// of tiny frames costs no allocation per frame); larger ones are zero-copy slices, and the
/// first slice of an input buffer is charged the whole buffer (see the memory bounds on
/// `Config`). Reads end at frame boundaries where they can
/// ([`read_hint`](Connection::read_hint)), so large payloads are rarely cut into small pieces.
pub const COPY_BELOW: usize = 8 * 1024;

impl Connection {
    /// Decodes and applies as much of `rx` as possible, consuming what it used. Stops early
    /// (leaving bytes in `rx`) when the receive budget or the control queue is full — see
    /// [`wants_input`](Self::wants_input) — or when the session ends.
    pub fn handle_input(&mut self, rx: &mut BytesMut, now: Instant) {
        self.memory.pins.observe(rx);
        // Re-evaluated below: the pool may have room again.
        self.paused_on_pool = None;
        while !self.is_ended() && !rx.is_empty() {
            match self.rx_frame {
                RxFrame::Payload { .. } => {
                    if !self.take_payload(rx, now) {
                        break;
                    }
                }
                RxFrame::Header => {
                    if self.tx.control_full() {
                        break;
                    }
                    match self.dialect.decode(rx) {
                        Ok(None) => break,
                        Ok(Some((frame, used))) => {
                            rx.advance(used);
                            self.keepalive.on_receive(now);
                            tracing::trace!(?frame, "received");
                            if let Err(v) = self.on_frame(frame, now) {
                                self.end(v.into());
                            }
                        }
                        Err(v) => self.end(v.into()),
                    }
                }
            }
        }
        // A read-ahead during a budget pause must be declared anew (`handle_paused_input`).
        self.undecoded = rx.len();
        self.reading_ahead = false;
        self.progress_close();
    }

    /// [`handle_input`](Self::handle_input) for the driver, which wakes the tasks this input
    /// made ready itself, once it has released the engine: their wakers are appended to
    /// `woken` instead of woken here. A task woken while the driver still holds the engine
    /// would, on another thread, find the lock taken and sleep on it.
    ///
    /// The driver must poll its output and input again before it waits: its own waker is not
    /// woken by what this input queues (control frames, resumed input).
    pub fn handle_input_deferring(
        &mut self,
        rx: &mut BytesMut,
        now: Instant,
        woken: &mut Vec<std::task::Waker>,
    ) {
        self.deferred_wakes = Some(std::mem::take(woken));
        self.handle_input(rx, now);
        if let Some(list) = self.deferred_wakes.take() {
            *woken = list;
        }
    }

    /// How many bytes to read next so that the read ends right after the next frame's header:
    /// the rest of the Data payload being received (of which `buffered` bytes are already in
    /// the receive buffer) plus one header. `None` between frames, where any size will do.
    /// Reads sized like this hand large payloads over whole, as one zero-copy slice.
    pub fn read_hint(&self, buffered: usize) -> Option<usize> {
        match self.rx_frame {
            RxFrame::Payload { remaining, .. } => {
                Some((remaining as usize).saturating_sub(buffered) + self.dialect.header_len())
            }
            RxFrame::Header => None,
        }
    }

    /// Moves payload bytes of the current Data frame from `rx` to its stream. Returns `false`
    /// when it cannot make progress (need more bytes, or the receive memory is full).
    fn take_payload(&mut self, rx: &mut BytesMut, now: Instant) -> bool {
        let RxFrame::Payload {
            key,
            flags,
            len,
            remaining,
        } = self.rx_frame
        else {
            return false;
        };
        let mut n = rx.len().min(remaining as usize);
        let delivering = key.filter(|k| self.streams.get(k.0).is_some_and(|s| !s.discards_input()));
        if let Some(k) = delivering {
            if n < COPY_BELOW && n < remaining as usize && n == rx.len() {
                // Wait for more of this frame rather than copy a small piece of a large one.
                return false;
            }
            match self.queue_payload(k, rx, n) {
                Some(taken) => n = taken,
                None => return false,
            }
        } else {
            rx.advance(n);
            if let Some(k) = key {
                // A detached or reset stream: discard, and return the credit at once so the
                // peer's writer is never stuck on a stream nobody reads.
                if let Some(s) = self.streams.get_mut(k.0) {
                    s.recv.consume(n as u64);
                }
                self.maybe_return_credit(k, now);
            }
        }
        self.stats.bytes_received += n as u64;
        let remaining = remaining - n as u32;
        if remaining == 0 {
            self.rx_frame = RxFrame::Header;
            if let Some(k) = key {
                self.apply_close_flags(k, flags);
            }
        } else {
            self.rx_frame = RxFrame::Payload {
                key,
                flags,
                len,
                remaining,
            };
        }
        true
    }

    /// Queues up to `n` bytes from the front of `rx` on stream `k`, charging the memory they
    /// hold (see `crate::memory`); returns how many, or `None` (input paused) when not even a
    /// small piece fits, even after the rings kept by drained streams were given back.
    fn queue_payload(&mut self, k: StreamKey, rx: &mut BytesMut, n: usize) -> Option<usize> {
        let taken = match self.try_queue(k, rx, n) {
            Some(taken) => taken,
            // Give back memory that holds no unread data, then try again.
            None if self.trim_retained() | self.compact_pins() => self.try_queue(k, rx, n)?,
            None => return None,
        };
        // A first attempt may have marked input paused before the retry fitted.
        self.paused_on_budget = false;
        self.paused_on_pool = None;
        self.recv_buffered += taken;
        self.wake_reader_of(k);
        Some(taken)
    }

    /// One attempt of [`queue_payload`](Self::queue_payload). In order of preference: a
    /// zero-copy slice (≥ [`COPY_BELOW`]) whose buffer is already pinned or fits; an append to
    /// the stream's chunks; an exact copy of what fits (so the budget fills up to its last
    /// bytes). When nothing fits, marks input paused on whichever budget is short.
    ///
    /// Invariant kept here: every byte charged was admitted by `RecvMemory::try_charge`
    /// first, with an upper bound that the queue's actual growth never exceeds.
    fn try_queue(&mut self, k: StreamKey, rx: &mut BytesMut, n: usize) -> Option<usize> {
        let s = self.streams.get_mut(k.0)?;
        let before = (s.queue.charge(), s.queue.retained());
        let memory = &mut self.memory;
        let taken = 'plan: {
            if n >= COPY_BELOW {
                let (pin, pin_charge) = memory.pins.cost();
                let bound = s.queue.slice_bound();
                if memory.try_charge(pin_charge + bound) {
                    memory.pin(pin, pin_charge, n);
                    s.queue.push_slice(rx.split_to(n), pin);
                    break 'plan Some((n, bound));
                }
            }
            let chunk = s.queue.chunk_size(n);
            let bound = s.queue.append_bound(n, chunk);
            if memory.try_charge(bound) {
                s.queue.append(&rx[..n], chunk);
                rx.advance(n);
                break 'plan Some((n, bound));
            }
            // An exact copy of what still fits, at least a small chunk's worth (or all of it).
            let slots = s.queue.append_bound(usize::MAX, 0);
            let fits = memory.room().saturating_sub(slots).min(n);
            if fits >= n.min(crate::recv_queue::SMALL_CHUNK) {
                let bound = s.queue.append_bound(fits, fits);
                if memory.try_charge(bound) {
                    s.queue.append(&rx[..fits], fits);
                    rx.advance(fits);
                    break 'plan Some((fits, bound));
                }
            }
            None
        };
        let Some((taken, bound)) = taken else {
            // Nothing fits: pause until memory is freed (a read, or elsewhere in the pool).
            let need = s
                .queue
                .append_bound(n.min(crate::recv_queue::SMALL_CHUNK), n);
            if need > self.memory.own_room() {
                self.paused_on_budget = true;
            } else {
                self.paused_on_pool = Some(need);
                if let Some(w) = &self.driver_waker {
                    self.memory.wait_shared(w);
                }
            }
            return None;
        };
        let grew = s.queue.charge() - before.0;
        debug_assert!(grew <= bound, "queue grew {grew} > bound {bound}");
        self.retained = self.retained + s.queue.retained() - before.1;
        self.memory.release(bound.saturating_sub(grew));
        Some(taken)
    }

    /// Copies out the unread slices of pinned input buffers that are charged well beyond them,
    /// so that their buffers are freed; returns whether that gave memory back.
    ///
    /// A buffer is charged whole while any of its slices is unread, so once readers have taken
    /// some of the streams sharing it, the budget holds less data than it is charged for: many
    /// streams with 32 KiB frames in 128 KiB buffers can fill it at a quarter of its payload.
    /// Pausing then would stall an application that writes before it reads (an echo) for good:
    /// the window update it waits for is behind the data we no longer read. Compacting keeps a
    /// pause for when the payload itself fills the budget.
    ///
    /// Cost: a pass over the queued pieces, and each pinned byte copied at most once (a copy
    /// is never pinned again); it runs only when input would otherwise pause and at least an
    /// eighth of what is held is waste. Each buffer is copied out before the next, so the heap
    /// exceeds the charge by at most one buffer's unread bytes while it runs.
    fn compact_pins(&mut self) -> bool {
        let waste = self.memory.pinned_waste();
        if waste == 0 || waste < self.memory.held() / 8 {
            return false;
        }
        let mut slices: Vec<(PinKey, usize, usize, usize)> = self
            .streams
            .iter()
            .flat_map(|(k, s)| s.queue.pinned().map(move |(pin, i, len)| (pin, k, i, len)))
            .collect();
        slices.sort_unstable_by_key(|&(pin, ..)| pin);
        let mut freed = 0;
        for buffer in slices.chunk_by(|a, b| a.0 == b.0) {
            let pin = buffer[0].0;
            let unread: usize = buffer.iter().map(|&(.., len)| len).sum();
            if unread >= self.memory.pin_charge(pin) {
                continue; // copying would free nothing
            }
            let mut copies = 0;
            for &(_, k, i, _) in buffer {
                if let Some(s) = self.streams.get_mut(k) {
                    copies += s.queue.copy_out(i);
                }
            }
            freed += self.memory.unpin_copied(pin, unread, copies);
        }
        tracing::debug!(freed, waste, "receive memory compacted");
        freed > 0
    }

    fn on_frame(&mut self, frame: Frame, now: Instant) -> Result<(), Violation> {
        match frame {
            Frame::Data { stream, flags, len } => {
                let key = self.stream_for(stream, flags, "Data", now)?;
                if len == 0 {
                    if let Some(k) = key {
                        self.apply_close_flags(k, flags);
                    }
                    return Ok(());
                }
                if let Some(k) = key {
                    if let Some(s) = self.streams.get_mut(k.0) {
                        if !s.recv.receive(len.into()) {
                            return Err(Violation::DataBeyondCredit {
                                stream,
                                len,
                                credit: s.recv.available(),
                            });
                        }
                        let rtt = s.recv.take_rtt_sample(now);
                        // The time base is the session's start, in wrapping microseconds.
                        let now_us = now.saturating_duration_since(self.epoch).as_micros() as u32;
                        let first = u64::from(crate::config::PROTOCOL_INITIAL_WINDOW);
                        let rate = self
                            .dialect
                            .has_stream_credit()
                            .then(|| s.recv.note_arrival(now_us, len.into(), first))
                            .flatten();
                        if let Some(rtt) = rtt {
                            self.keepalive.on_rtt_sample(rtt, now);
                        }
                        if let Some(rate) = rate {
                            self.start_ramp(k, rate, now);
                        }
                    }
                }
                self.rx_frame = RxFrame::Payload {
                    key,
                    flags,
                    len,
                    remaining: len,
                };
                Ok(())
            }
            Frame::WindowUpdate {
                stream,
                flags,
                delta,
            } => {
                let Some(k) = self.stream_for(stream, flags, "WindowUpdate", now)? else {
                    return Ok(());
                };
                if let Some(s) = self.streams.get_mut(k.0) {
                    if s.send.grant(delta).is_err() {
                        return Err(Violation::WindowOverflow { stream });
                    }
                    if delta > 0 {
                        self.wake_writer_of(k);
                    }
                }
                self.apply_close_flags(k, flags);
                Ok(())
            }
            Frame::Update {
                stream,
                consumed,
                window,
            } => {
                if let Some(k) = self.stream_for(stream, Flags::NONE, "UPD", now)? {
                    if let Some(s) = self.streams.get_mut(k.0) {
                        s.send.set_window(consumed, window);
                        self.wake_writer_of(k);
                    }
                }
                Ok(())
            }
            Frame::Ping { ack: false, opaque } => {
                self.push_control(&Frame::Ping { ack: true, opaque });
                Ok(())
            }
            Frame::Ping { ack: true, opaque } => {
                if self.keepalive.on_pong(opaque, now) {
                    match &mut self.deferred_wakes {
                        Some(list) => list.extend(self.ping_waiters.take_all()),
                        None => self.ping_waiters.wake_all(),
                    }
                }
                Ok(())
            }
            Frame::GoAway { code } => {
                tracing::debug!(code, "peer sent GoAway");
                self.remote_goaway.get_or_insert(code);
                self.wake_open_waiters();
                Ok(())
            }
            Frame::Nop => Ok(()),
        }
    }

    /// Resolves the stream a frame is for: opens it on SYN, completes an open on ACK. `None`:
    /// the stream existed once and is gone (or was refused), so the frame is dropped.
    fn stream_for(
        &mut self,
        id: StreamId,
        flags: Flags,
        frame: &'static str,
        now: Instant,
    ) -> Result<Option<StreamKey>, Violation> {
        if flags.contains(Flags::SYN) {
            return self.on_remote_open(id, now);
        }
        let Some(key) = self.ids.get(&id).map(|&key| StreamKey(key as usize)) else {
            // yamux-shaped peers legitimately send frames for streams we never saw opened
            // (Rust yamux sends a FIN without SYN for a stream closed before its first write),
            // so only smux, whose peers always open first, treats that as a violation.
            let strict = !self.dialect.has_ack();
            return if self.was_opened(id) || !strict {
                Ok(None)
            } else {
                Err(Violation::UnknownStream { frame, stream: id })
            };
        };
        if flags.contains(Flags::ACK)
            && self
                .streams
                .get_mut(key.0)
                .is_some_and(|s| s.acknowledged())
        {
            self.wake_writer_of(key);
            self.unacked_outbound -= 1;
            self.wake_open_waiters();
        }
        Ok(Some(key))
    }

    fn is_peer_parity(&self, id: StreamId) -> bool {
        // The client's ids are odd in every dialect.
        (id.0 % 2 == 1) != (self.role == super::Role::Client)
    }

    /// Whether `id` was opened at some point by either side.
    fn was_opened(&self, id: StreamId) -> bool {
        if self.is_peer_parity(id) {
            self.inbound_ids.was_opened(id)
        } else {
            id.0 < self.next_outbound_id
        }
    }

    fn on_remote_open(
        &mut self,
        id: StreamId,
        now: Instant,
    ) -> Result<Option<StreamKey>, Violation> {
        if !self.is_peer_parity(id) {
            return Err(Violation::WrongStreamParity { stream: id });
        }
        // The lowest id of the peer's parity: allocators differ (Go smux starts clients at 3,
        // the Rust smux crate at 1), and an unused low id costs one remembered gap at most.
        let lowest = if self.role == super::Role::Server {
            1
        } else {
            2
        };
        if self.inbound_ids.open(id, lowest).is_err() {
            return Err(Violation::StreamIdReused { stream: id });
        }
        self.stats.opened_inbound += 1;
        let refuse = if self.local_goaway || !matches!(self.state, State::Open) {
            Some(Refusal::Closing)
        } else if self.accept_queue.len() >= self.config.accept_backlog() {
            Some(Refusal::Backlog)
        } else if self.streams.len() >= self.config.max_streams() {
            Some(Refusal::Limit)
        } else {
            None
        };
        if let Some(why) = refuse {
            self.note_refusal(id, why, now);
            self.push_control(&crate::policy::reset(self.dialect, id));
            return Ok(None);
        }
        let key = self.insert_stream(id, Opening::Remote);
        self.accept_queue.push_back(key);
        match &mut self.deferred_wakes {
            Some(list) => list.extend(self.accept_waiters.take_all()),
            None => self.accept_waiters.wake_all(),
        }
        Ok(Some(key))
    }

    /// Applies FIN / RST carried by a frame, after its payload.
    fn apply_close_flags(&mut self, key: StreamKey, flags: Flags) {
        let Some(s) = self.streams.get_mut(key.0) else {
            return;
        };
        if flags.contains(Flags::RST) && s.reset_by_peer() {
            if s.acknowledged() {
                // Refused before it was ever acknowledged.
                self.unacked_outbound -= 1;
                self.wake_open_waiters();
            }
            self.wake_reader_of(key);
            self.wake_writer_of(key);
        } else if flags.contains(Flags::FIN) && s.close_remote() {
            self.wake_reader_of(key);
        }
        self.maybe_remove(key);
    }
}
