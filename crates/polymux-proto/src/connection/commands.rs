//! Commands from the application: open, accept, read and write (copying, or zero-copy by chunk),
//! half-close, reset, release, ping, GoAway and graceful close.
//!
//! A command that cannot complete now returns `Poll::Pending` after registering the caller's
//! waker; the engine wakes it when the condition it waits for changes (credit, budget room,
//! data, ACK, a free open slot, the session's end).

use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::{Connection, State, StreamKey};
use crate::error::Error;
use crate::frame::{Frame, StreamId};
use crate::stream::{register, Opening};

impl Connection {
    fn ended_error(&self) -> Option<Error> {
        self.end_reason().cloned()
    }

    /// Opens a stream. The open is sent at once (data may follow before the peer
    /// acknowledges). Waits while `max_unacked_outbound` opens are unacknowledged (yamux,
    /// net-mux). Fails after the peer's GoAway, after `close()`, or at `max_streams`.
    pub fn poll_open(&mut self, waker: &Waker, now: Instant) -> Poll<Result<StreamKey, Error>> {
        match &self.state {
            State::Ended(e) => return Poll::Ready(Err(e.clone())),
            State::Closing { .. } => return Poll::Ready(Err(Error::SessionClosed)),
            State::Open => {}
        }
        if let Some(code) = self.remote_goaway {
            return Poll::Ready(Err(Error::GoAway(code)));
        }
        let limit = self.config.max_streams();
        if self.streams.len() >= limit {
            return Poll::Ready(Err(Error::TooManyStreams { limit }));
        }
        if self.dialect.has_ack() && self.unacked_outbound >= self.config.max_unacked_outbound() {
            self.open_waiters.register(waker);
            return Poll::Pending;
        }
        let id = StreamId(self.next_outbound_id);
        let Some(next) = self.next_outbound_id.checked_add(2) else {
            return Poll::Ready(Err(Error::TooManyStreams { limit }));
        };
        self.next_outbound_id = next;
        let opening = if self.dialect.has_ack() {
            self.unacked_outbound += 1;
            Opening::LocalUnacked
        } else {
            Opening::LocalAcked
        };
        let key = self.insert_stream(id, opening);
        let s = &mut self.streams[key.0];
        let extra = s.recv.grant_unprobed(now);
        let (open, credit) = crate::policy::open(self.dialect, id, extra);
        self.push_control(&open);
        if let Some(credit) = credit {
            self.push_control(&credit);
        }
        self.stats.opened_outbound += 1;
        Poll::Ready(Ok(key))
    }

    /// Waits until an outbound stream from [`poll_open`](Self::poll_open) may be handed to the
    /// application: at once, except where the dialect's opener waits for the peer's ACK
    /// ([`Dialect::open_waits_for_ack`](crate::Dialect::open_waits_for_ack): no dialect today),
    /// which is then [`poll_established`](Self::poll_established). Callers of `poll_open` call this
    /// next instead of deciding per dialect.
    pub fn poll_open_ready(&mut self, key: StreamKey, waker: &Waker) -> Poll<Result<(), Error>> {
        if !self.dialect.open_waits_for_ack() {
            return Poll::Ready(Ok(()));
        }
        self.poll_established(key, waker)
    }

    /// Waits until the peer acknowledged an outbound stream (ready at once where opens are not
    /// acknowledged). Fails with [`Error::StreamRefused`] if the peer reset it first. Whether
    /// the application must wait for this is the dialect's rule, applied by
    /// [`poll_open_ready`](Self::poll_open_ready).
    pub fn poll_established(&mut self, key: StreamKey, waker: &Waker) -> Poll<Result<(), Error>> {
        let ended = self.ended_error();
        let Some(s) = self.streams.get_mut(key.0) else {
            return Poll::Ready(Err(Error::SessionClosed));
        };
        if s.is_reset() {
            return Poll::Ready(Err(Error::StreamRefused));
        }
        if !s.is_unacked() {
            return Poll::Ready(Ok(()));
        }
        if let Some(e) = ended {
            return Poll::Ready(Err(e));
        }
        register(&mut s.write_waker, waker);
        Poll::Pending
    }

    /// Takes the next inbound stream, acknowledging it to the peer (yamux, net-mux).
    pub fn poll_accept(&mut self, waker: &Waker, now: Instant) -> Poll<Result<StreamKey, Error>> {
        if let Some(key) = self.accept_queue.pop_front() {
            let dialect = self.dialect;
            let s = &mut self.streams[key.0];
            if !s.is_reset() {
                let extra = s.recv.grant_unprobed(now);
                let (ack, credit) = crate::policy::accept(dialect, s.id, extra);
                for frame in [ack, credit].into_iter().flatten() {
                    self.push_control(&frame);
                }
            }
            return Poll::Ready(Ok(key));
        }
        if let Some(e) = self.ended_error() {
            return Poll::Ready(Err(e));
        }
        self.accept_waiters.register(waker);
        Poll::Pending
    }

    /// The wire id of `key`.
    pub fn stream_id(&self, key: StreamKey) -> StreamId {
        self.streams.get(key.0).map_or(StreamId::SESSION, |s| s.id)
    }

    /// Reads received bytes of `key` into `buf`. Returns `Ok(0)` at the peer's FIN. After a
    /// reset or the session's end, bytes that already arrived are still returned first.
    pub fn poll_read(
        &mut self,
        key: StreamKey,
        waker: &Waker,
        buf: &mut [u8],
        now: Instant,
    ) -> Poll<Result<usize, Error>> {
        let ended = self.ended_error();
        let Some(s) = self.streams.get_mut(key.0) else {
            return Poll::Ready(Err(Error::SessionClosed));
        };
        if !s.queue.is_empty() {
            let before = (s.queue.charge(), s.queue.retained());
            let n = s.queue.read_into(buf, &mut self.memory);
            self.consumed(key, n, before, now);
            return Poll::Ready(Ok(n));
        }
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        self.poll_read_end(key, waker, ended)
            .map(|end| end.map(|()| 0))
    }

    /// Takes received bytes of `key` without copying them: the next queued slice, at most
    /// `max` bytes of it, as it came off the wire. Credit is returned exactly as for
    /// [`poll_read`](Self::poll_read) of the same bytes. `Ok(None)` at the peer's FIN; after a
    /// reset or the session's end, bytes that already arrived are still returned first. With
    /// `max == 0` it returns an empty chunk at once.
    ///
    /// A chunk may be a slice of a larger receive buffer that stays allocated while the
    /// chunk lives (the async layer documents the bound); callers that keep chunks for long
    /// should copy them.
    pub fn poll_read_chunk(
        &mut self,
        key: StreamKey,
        waker: &Waker,
        max: usize,
        now: Instant,
    ) -> Poll<Result<Option<Bytes>, Error>> {
        let ended = self.ended_error();
        let Some(s) = self.streams.get_mut(key.0) else {
            return Poll::Ready(Err(Error::SessionClosed));
        };
        if max == 0 {
            return Poll::Ready(Ok(Some(Bytes::new())));
        }
        let before = (s.queue.charge(), s.queue.retained());
        if let Some(chunk) = s.queue.pop_chunk(max, &mut self.memory) {
            self.consumed(key, chunk.len(), before, now);
            return Poll::Ready(Ok(Some(chunk)));
        }
        self.poll_read_end(key, waker, ended)
            .map(|end| end.map(|()| None))
    }

    /// Credit and memory bookkeeping after the application took `n` queued bytes of `key`;
    /// `(charge, retained)` are its queue's figures from before.
    fn consumed(
        &mut self,
        key: StreamKey,
        n: usize,
        (charge, retained): (usize, usize),
        now: Instant,
    ) {
        let Some(s) = self.streams.get_mut(key.0) else {
            return;
        };
        let uncharged = charge - s.queue.charge();
        self.retained = self.retained + s.queue.retained() - retained;
        // Nothing taken is not a first read (it would announce again and again).
        let first_read = n > 0 && s.recv.consumed() == 0;
        s.recv.consume(n as u64);
        self.unbuffer(n, uncharged);
        self.return_credit(key, first_read, now);
    }

    /// A read of `key` that found nothing queued: `Ok(())` at EOF, the stream's or session's
    /// error, or `Pending` with the waker registered.
    fn poll_read_end(
        &mut self,
        key: StreamKey,
        waker: &Waker,
        ended: Option<Error>,
    ) -> Poll<Result<(), Error>> {
        let Some(s) = self.streams.get_mut(key.0) else {
            return Poll::Ready(Err(Error::SessionClosed));
        };
        // Reset before FIN: a local reset discards unread bytes, which a clean EOF would hide.
        if s.is_reset() {
            return Poll::Ready(Err(Error::StreamReset));
        }
        if s.is_remote_closed() {
            return Poll::Ready(Ok(()));
        }
        if let Some(e) = ended {
            return Poll::Ready(Err(e));
        }
        register(&mut s.read_waker, waker);
        Poll::Pending
    }

    /// Queues up to `buf.len()` bytes of `key` for sending; returns how many. Pending while
    /// the peer's credit or the session's write budget is exhausted.
    pub fn poll_write(
        &mut self,
        key: StreamKey,
        waker: &Waker,
        buf: &[u8],
        now: Instant,
    ) -> Poll<Result<usize, Error>> {
        self.poll_queue(key, waker, buf.len(), |tx, key, outbox, n| {
            tx.push_data(key, outbox, &buf[..n], now);
        })
    }

    /// [`poll_write`](Self::poll_write) without the copy: queues a prefix of `data` (the
    /// same length `poll_write` would take) as a slice of the caller's buffer, which frames
    /// then reference until they are written; returns how many bytes. The caller advances
    /// `data` by that much. Flow control, budget, fairness and errors are `poll_write`'s;
    /// the budget is charged the bytes queued (not the allocation they may keep alive), and
    /// slices under 8 KiB are copied, as `poll_write` would.
    pub fn poll_write_chunk(
        &mut self,
        key: StreamKey,
        waker: &Waker,
        data: &Bytes,
        now: Instant,
    ) -> Poll<Result<usize, Error>> {
        self.poll_queue(key, waker, data.len(), |tx, key, outbox, n| {
            tx.push_chunk(key, outbox, data.slice(..n), now);
        })
    }

    /// The admission of a queued write of up to `len` bytes (credit, budget room, frame
    /// size), then `push` of the admitted `n > 0` bytes into the stream's outbox.
    fn poll_queue(
        &mut self,
        key: StreamKey,
        waker: &Waker,
        len: usize,
        push: impl FnOnce(&mut crate::tx::TxBuffers, StreamKey, &mut crate::tx::Outbox, usize),
    ) -> Poll<Result<usize, Error>> {
        if let Some(e) = self.ended_error() {
            return Poll::Ready(Err(e));
        }
        let Some(s) = self.streams.get_mut(key.0) else {
            return Poll::Ready(Err(Error::SessionClosed));
        };
        if s.is_reset() {
            return Poll::Ready(Err(Error::StreamReset));
        }
        if s.is_local_closed() {
            return Poll::Ready(Err(Error::WriteAfterClose));
        }
        if len == 0 {
            return Poll::Ready(Ok(0));
        }
        let credit = s.send.available();
        if credit == 0 {
            register(&mut s.write_waker, waker);
            return Poll::Pending;
        }
        let frame_payload = self.config.max_frame_payload() as usize;
        let room = self.tx.room(&s.outbox, frame_payload);
        if room == 0 {
            register(&mut s.write_waker, waker);
            if !s.waiting_for_budget {
                s.waiting_for_budget = true;
                self.budget_waiters.push_back(key);
            }
            return Poll::Pending;
        }
        let n = len
            .min(credit.min(usize::MAX as u64) as usize)
            .min(room)
            .min(frame_payload);
        s.send.spend(n as u64);
        push(&mut self.tx, key, &mut s.outbox, n);
        self.stats.bytes_sent += n as u64;
        self.wake_driver();
        Poll::Ready(Ok(n))
    }

    /// Half-closes `key`: sends FIN after the data already written. Reading continues.
    pub fn close_write(&mut self, key: StreamKey, now: Instant) -> Result<(), Error> {
        let ended = self.ended_error();
        let Some(s) = self.streams.get_mut(key.0) else {
            return Err(Error::SessionClosed);
        };
        if s.is_reset() {
            return Err(Error::StreamReset);
        }
        if s.is_local_closed() {
            return Ok(());
        }
        if let Some(e) = ended {
            return Err(e);
        }
        s.close_local();
        let fin = crate::policy::fin(self.dialect, s.id);
        self.push_after_data(key, fin, now);
        self.maybe_remove(key);
        self.progress_close();
        Ok(())
    }

    /// Aborts `key` in both directions: RST (FIN on smux, whose peers cannot tell), discards
    /// what was received, fails pending reads and writes.
    pub fn reset(&mut self, key: StreamKey, now: Instant) {
        let ended = self.is_ended();
        let Some(s) = self.streams.get_mut(key.0) else {
            return;
        };
        if s.is_finished() {
            return;
        }
        let send_frame = s.reset_locally(self.dialect.has_reset(), ended);
        let id = s.id;
        let charge = s.queue.charge();
        self.retained -= s.queue.retained();
        let discarded = s.queue.discard(&mut self.memory);
        s.wake_reader();
        s.wake_writer();
        self.unbuffer(discarded, charge);
        if send_frame {
            let frame = crate::policy::reset(self.dialect, id);
            self.push_after_data(key, frame, now);
        }
        self.maybe_remove(key);
        self.progress_close();
    }

    /// The application dropped its handle to `key`. An unfinished stream is half-closed (FIN)
    /// and detached: inbound data is discarded until the peer finishes too.
    pub fn release(&mut self, key: StreamKey, now: Instant) {
        let Some(s) = self.streams.get_mut(key.0) else {
            return;
        };
        s.released = true;
        s.read_waker = None;
        s.write_waker = None;
        let charge = s.queue.charge();
        self.retained -= s.queue.retained();
        let discarded = s.queue.discard(&mut self.memory);
        s.recv.consume(discarded as u64);
        let needs_fin = s.can_send();
        self.unbuffer(discarded, charge);
        if needs_fin && !self.is_ended() {
            let _ = self.close_write(key, now);
        }
        self.maybe_return_credit(key, now);
        self.maybe_remove(key);
    }

    /// Sends a Ping (unless one is already outstanding) and returns a ticket for
    /// [`poll_ping`](Self::poll_ping).
    pub fn start_ping(&mut self, now: Instant) -> Result<u64, Error> {
        if !self.dialect.has_ping() {
            return Err(Error::Unsupported("ping (the dialect has no Ping frame)"));
        }
        if let Some(e) = self.ended_error() {
            return Err(e);
        }
        let (frame, ticket) = self.keepalive.ping(now);
        if let Some(frame) = frame {
            self.push_control(&frame);
        }
        Ok(ticket)
    }

    /// The round trip of the ping identified by `ticket`, once answered.
    pub fn poll_ping(&mut self, ticket: u64, waker: &Waker) -> Poll<Result<Duration, Error>> {
        if self.keepalive.answered() > ticket {
            return Poll::Ready(Ok(self.keepalive.last_ping_rtt().unwrap_or_default()));
        }
        if let Some(e) = self.ended_error() {
            return Poll::Ready(Err(e));
        }
        self.ping_waiters.register(waker);
        Poll::Pending
    }

    /// Stops accepting streams: inbound opens from now on are refused, existing streams
    /// continue, and this side may still open streams. The peer is told with GoAway (code
    /// normal) where the dialect has it; on smux, which has none, nothing is sent and each
    /// further open is refused the way smux can (FIN), so the peer learns it per stream.
    pub fn go_away(&mut self) -> Result<(), Error> {
        if let Some(e) = self.ended_error() {
            return Err(e);
        }
        if !self.local_goaway {
            self.local_goaway = true;
            if self.dialect.has_goaway() {
                let code = self.dialect.goaway_normal();
                self.push_control(&Frame::GoAway { code });
            }
        }
        Ok(())
    }

    /// Starts a graceful close: GoAway (where the dialect has it), no new streams either way,
    /// existing streams run to completion until `close_timeout`; then the session ends with
    /// [`Error::SessionClosed`] and the driver closes the transport.
    pub fn close(&mut self, now: Instant) {
        if !matches!(self.state, State::Open) {
            return;
        }
        let _ = self.go_away();
        self.state = State::Closing {
            deadline: now + self.config.close_timeout(),
        };
        self.wake_open_waiters();
        self.wake_driver();
        self.progress_close();
    }

    /// Ready once the session has ended.
    pub fn poll_ended(&mut self, waker: &Waker) -> Poll<Error> {
        if let Some(e) = self.ended_error() {
            return Poll::Ready(e);
        }
        self.close_waiters.register(waker);
        Poll::Pending
    }
}
