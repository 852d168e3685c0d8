//! The harness as the application: open, accept, write, read, half-close, reset, release,
//! ping, GoAway and close, each checked against the model and its wake-ups.

use super::*;

impl Sim {
    // ---- legitimacy of what the application observes ----------------------------------------

    /// Whether side `s`'s stream `id` may legitimately fail with `StreamReset`/`StreamRefused`.
    pub(crate) fn reset_explained(&self, s: usize, id: u32) -> bool {
        let me = &self.sides[s];
        let peer = &self.sides[1 - s];
        if me.streams.get(&id).is_some_and(|st| st.reset_local) {
            return true;
        }
        match peer.streams.get(&id) {
            Some(p) => p.reset_local && self.dialect.has_reset(),
            // The peer never accepted it: refused (RST on yamux/net-mux).
            None => peer.conn.stats().refused_inbound > 0,
        }
    }

    /// Whether side `s` may see EOF on stream `id`, and how many bytes it must have read then.
    pub(crate) fn eof_expected_len(&self, s: usize, id: u32) -> Option<u64> {
        let peer = &self.sides[1 - s];
        match peer.streams.get(&id) {
            Some(p) if p.write_closed => Some(p.written),
            Some(_) => None,
            // Refused with FIN (smux), before anything was written.
            None if !self.dialect.has_reset() && peer.conn.stats().refused_inbound > 0 => Some(0),
            None => None,
        }
    }

    /// Side `s` got `err`; it must be the session's end reason, and the session must be over.
    pub(crate) fn check_session_error(&self, s: usize, what: &str, err: &Error) {
        let reason = self.sides[s].end_reason();
        assert_eq!(
            reason.as_ref(),
            Some(err),
            "{:?}: {what} failed with {err:?} but the session has not ended with it",
            self.sides[s].role
        );
    }

    // ---- application operations -------------------------------------------------------------

    /// How many bytes a new stream's writer will send: mostly small, `big_pct` percent large
    /// (beyond a window, so credit and budgets come into play).
    pub(crate) fn target_len(&mut self) -> u64 {
        let r = &mut self.rng;
        if r.percent(self.big_pct) {
            return if r.percent(80) {
                r.range(32 * 1024, 300 * 1024)
            } else {
                r.range(300 * 1024, 1200 * 1024)
            };
        }
        match r.below(100) {
            0..=26 => r.range(0, 64),
            27..=69 => r.range(65, 4096),
            _ => r.range(4097, 32 * 1024),
        }
    }

    pub(crate) fn add_stream(&mut self, s: usize, key: StreamKey, local: bool) -> u32 {
        let id = self.sides[s].conn.stream_id(key).0;
        let established = !(local && self.dialect.open_waits_for_ack());
        let target = self.target_len();
        let side = &mut self.sides[s];
        let ours = (id % 2 == 1) == (side.role == Role::Client);
        assert_eq!(
            ours, local,
            "{:?}: stream {id} has the wrong parity",
            side.role
        );
        let fresh = side
            .streams
            .insert(id, SimStream::new(key, local, established, target))
            .is_none();
        assert!(fresh, "{:?}: stream id {id} handed out twice", side.role);
        side.live.push(id);
        self.cov.streams += 1;
        self.progress += 1;
        id
    }

    pub fn op_open(&mut self, s: usize) {
        let now = self.now();
        let side = &mut self.sides[s];
        let waker = side.open_w.waker().clone();
        match side.conn.poll_open(&waker, now) {
            Poll::Pending => {
                assert!(
                    self.dialect.has_ack(),
                    "open pending on a dialect without ACK"
                );
                if !side.open_w.is_armed() {
                    self.cov.open_pending += 1;
                }
                side.open_w.arm();
            }
            Poll::Ready(r) => {
                assert!(
                    side.open_w.complete(),
                    "{:?}: lost wake-up in poll_open",
                    side.role
                );
                match r {
                    Ok(key) => {
                        side.opens += 1;
                        let id = self.add_stream(s, key, true);
                        let prev = self.sides[s]
                            .streams
                            .range(..id)
                            .filter(|(_, st)| st.local)
                            .count();
                        assert_eq!(
                            prev as u64 + 1,
                            self.sides[s].opens,
                            "outbound ids not increasing"
                        );
                    }
                    Err(Error::GoAway(code)) => {
                        assert!(
                            self.sides[1 - s].goaway,
                            "open failed with GoAway({code}) but the peer sent none"
                        );
                    }
                    Err(Error::SessionClosed) if side.goaway && side.closed_at.is_some() => {}
                    Err(e) => self.check_session_error(s, "open", &e),
                }
            }
        }
    }

    pub fn op_accept(&mut self, s: usize) -> bool {
        let now = self.now();
        let side = &mut self.sides[s];
        let waker = side.accept_w.waker().clone();
        match side.conn.poll_accept(&waker, now) {
            Poll::Pending => {
                side.accept_w.arm();
                false
            }
            Poll::Ready(r) => {
                assert!(
                    side.accept_w.complete(),
                    "{:?}: lost wake-up in poll_accept",
                    side.role
                );
                match r {
                    Ok(key) => {
                        side.accepted += 1;
                        let id = self.add_stream(s, key, false);
                        assert!(
                            self.sides[1 - s].streams.contains_key(&id),
                            "accepted stream {id}, which the peer never opened"
                        );
                        true
                    }
                    Err(e) => {
                        self.check_session_error(s, "accept", &e);
                        false
                    }
                }
            }
        }
    }

    /// net-mux: waits for the ACK before the stream is used for writing.
    pub fn op_established(&mut self, s: usize, id: u32) {
        let side = &mut self.sides[s];
        let st = side.streams.get_mut(&id).expect("modelled stream");
        let Some(key) = st.key else { return };
        match side.conn.poll_established(key, st.write_w.waker()) {
            Poll::Pending => st.write_w.arm(),
            Poll::Ready(r) => {
                assert!(
                    st.write_w.complete(),
                    "stream {id}: lost wake-up in poll_established"
                );
                match r {
                    Ok(()) => {
                        st.established = true;
                        self.progress += 1;
                    }
                    Err(Error::StreamRefused | Error::StreamReset) => {
                        st.saw_reset = true;
                        assert!(
                            self.reset_explained(s, id),
                            "stream {id}: refused, but the peer accepted it"
                        );
                    }
                    Err(e) => {
                        st.session_gone = true;
                        self.check_session_error(s, "poll_established", &e);
                    }
                }
            }
        }
    }

    /// Writes one chunk of at most `max` bytes of the stream's payload. Returns whether bytes
    /// were written.
    pub fn op_write(&mut self, s: usize, id: u32, max: usize) -> bool {
        let now = self.now();
        let role = self.sides[s].role;
        let st = self.sides[s].streams.get_mut(&id).expect("modelled stream");
        let Some(key) = st.key else { return false };
        let remaining = (st.target - st.written) as usize;
        let misuse = st.write_closed && !st.reset_local;
        if remaining == 0 && !misuse {
            return false;
        }
        let len = if misuse { 1 } else { remaining.min(max).max(1) };
        let salt = payload_salt(role, id);
        let from = st.written;
        // One call takes at most a frame's payload: only that prefix gets real payload, the rest
        // is filler that must never be sent (the reader would see wrong bytes).
        let max_take = self.config.max_frame_payload() as usize;
        self.scratch.clear();
        self.scratch.resize(len, 0);
        let real = len.min(max_take);
        fill_payload(salt, from, &mut self.scratch[..real]);
        let side = &mut self.sides[s];
        let st = side.streams.get_mut(&id).expect("modelled stream");
        let polled = side
            .conn
            .poll_write(key, st.write_w.waker(), &self.scratch, now);
        if self.trace {
            eprintln!(
                "[step {} t={}] {role:?} write stream {id} ({len} at {from}): {polled:?}",
                self.step, self.now_ms
            );
        }
        match polled {
            Poll::Pending => {
                assert!(
                    !misuse,
                    "stream {id}: write after close_write is pending, not an error"
                );
                if !st.write_w.is_armed() {
                    self.cov.write_pending += 1;
                }
                st.write_w.arm();
                false
            }
            Poll::Ready(r) => {
                assert!(
                    st.write_w.complete(),
                    "{role:?} stream {id}: lost wake-up in poll_write"
                );
                match r {
                    Ok(n) => {
                        assert!(!misuse, "stream {id}: write after close_write succeeded");
                        assert!(
                            n >= 1 && n <= real,
                            "stream {id}: wrote {n} of {len} (frame payload limit {max_take})"
                        );
                        st.written += n as u64;
                        side.bytes_written += n as u64;
                        self.cov.bytes += n as u64;
                        self.progress += 1;
                        true
                    }
                    Err(Error::WriteAfterClose) => {
                        assert!(misuse, "stream {id}: WriteAfterClose on an open stream");
                        false
                    }
                    Err(Error::StreamReset) => {
                        st.saw_reset = true;
                        assert!(self.reset_explained(s, id), "{role:?} stream {id}: write failed with StreamReset, but nobody reset it");
                        false
                    }
                    Err(e) => {
                        st.session_gone = true;
                        self.check_session_error(s, "write", &e);
                        false
                    }
                }
            }
        }
    }

    /// Reads once with a buffer of `len` bytes, verifying every byte. Returns whether the read
    /// completed (data, EOF or error).
    pub fn op_read(&mut self, s: usize, id: u32, len: usize) -> bool {
        let now = self.now();
        let peer_role = self.sides[1 - s].role;
        let role = self.sides[s].role;
        let peer_written = self.sides[1 - s].streams.get(&id).map_or(0, |p| p.written);
        let eof_len = self.eof_expected_len(s, id);
        let side = &mut self.sides[s];
        let st = side.streams.get_mut(&id).expect("modelled stream");
        let Some(key) = st.key else { return false };
        if st.eof {
            return false;
        }
        self.scratch.clear();
        self.scratch.resize(len, 0);
        let polled = side
            .conn
            .poll_read(key, st.read_w.waker(), &mut self.scratch, now);
        if self.trace {
            eprintln!(
                "[step {} t={}] {role:?} read stream {id} ({len} at {}): {polled:?}",
                self.step, self.now_ms, st.read
            );
        }
        match polled {
            Poll::Pending => {
                if !st.read_w.is_armed() {
                    self.cov.read_pending += 1;
                }
                st.read_w.arm();
                false
            }
            Poll::Ready(r) => {
                assert!(
                    st.read_w.complete(),
                    "{role:?} stream {id}: lost wake-up in poll_read"
                );
                match r {
                    Ok(0) => {
                        assert!(
                            !st.reset_local || st.reset_maybe_noop,
                            "stream {id}: EOF after a local reset"
                        );
                        assert_eq!(
                            Some(st.read),
                            eof_len,
                            "{role:?} stream {id}: EOF after {} bytes; the writer wrote {peer_written} (None: it never closed)",
                            st.read
                        );
                        st.eof = true;
                        self.progress += 1;
                    }
                    Ok(n) => {
                        assert!(
                            !st.reset_local || st.reset_maybe_noop,
                            "stream {id}: data after a local reset"
                        );
                        assert!(
                            st.read + n as u64 <= peer_written,
                            "{role:?} stream {id}: read {} bytes but only {peer_written} were written",
                            st.read + n as u64
                        );
                        let salt = payload_salt(peer_role, id);
                        self.expected.resize(n, 0);
                        fill_payload(salt, st.read, &mut self.expected);
                        let bad = (self.scratch[..n] != self.expected[..])
                            .then(|| (0..n).find(|&i| self.scratch[i] != self.expected[i]))
                            .flatten();
                        if let Some(i) = bad {
                            let off = st.read + i as u64;
                            let got = self.scratch[i..n.min(i + 16)].to_vec();
                            let at = st.read;
                            panic!(
                                "{role:?} stream {id}: wrong byte at offset {off} (read of {n} at {at}); the bytes are {}",
                                self.identify(&got)
                            );
                        }
                        st.read += n as u64;
                        self.progress += 1;
                    }
                    Err(Error::StreamReset) => {
                        st.saw_reset = true;
                        assert!(self.reset_explained(s, id), "{role:?} stream {id}: read failed with StreamReset, but nobody reset it");
                    }
                    Err(e) => {
                        st.session_gone = true;
                        self.check_session_error(s, "read", &e);
                    }
                }
                true
            }
        }
    }

    pub(crate) fn op_close_write(&mut self, s: usize, id: u32) {
        let now = self.now();
        trace!(self, "{:?} close_write stream {id}", self.sides[s].role);
        let side = &mut self.sides[s];
        let st = side.streams.get_mut(&id).expect("modelled stream");
        let Some(key) = st.key else { return };
        if st.write_closed || st.reset_local || !st.established {
            return;
        }
        match side.conn.close_write(key, now) {
            Ok(()) => {
                // A write still pending is abandoned: closing is this application's own doing.
                st.write_w.cancel();
                st.write_closed = true;
                st.abandoned |= st.written < st.target;
                st.target = st.written;
                self.progress += 1;
            }
            Err(Error::StreamReset) => {
                st.saw_reset = true;
                assert!(
                    self.reset_explained(s, id),
                    "stream {id}: close_write failed with StreamReset, but nobody reset it"
                );
            }
            Err(e) => {
                st.session_gone = true;
                self.check_session_error(s, "close_write", &e);
            }
        }
    }

    pub(crate) fn op_reset(&mut self, s: usize, id: u32) {
        let now = self.now();
        trace!(self, "{:?} reset stream {id}", self.sides[s].role);
        let has_reset = self.dialect.has_reset();
        let peer_reset = has_reset
            && self.sides[1 - s]
                .streams
                .get(&id)
                .is_some_and(|p| p.reset_local);
        let side = &mut self.sides[s];
        let st = side.streams.get_mut(&id).expect("modelled stream");
        let Some(key) = st.key else { return };
        if st.reset_local {
            return;
        }
        side.conn.reset(key, now);
        st.reset_local = true;
        st.reset_maybe_noop = st.write_closed || peer_reset;
        st.abandoned = true;
        if !has_reset {
            // smux has no RST: the engine sends FIN (unless one was sent) and discards input.
            st.write_closed = true;
        }
        self.cov.resets += 1;
        self.progress += 1;
    }

    pub(crate) fn op_release(&mut self, s: usize, id: u32) {
        let now = self.now();
        trace!(self, "{:?} release stream {id}", self.sides[s].role);
        let side = &mut self.sides[s];
        let st = side.streams.get_mut(&id).expect("modelled stream");
        let Some(key) = st.key.take() else { return };
        side.conn.release(key, now);
        if !st.eof && !st.reset_local && !st.saw_reset && !st.session_gone {
            st.released_early = true;
            self.cov.releases_early += 1;
        }
        if !st.write_closed && !st.reset_local {
            // Release half-closes an unfinished stream.
            st.write_closed = true;
            st.abandoned |= st.written < st.target;
        }
        side.forget(id);
        self.progress += 1;
    }

    /// Starts a ping (at most three outstanding tickets), then polls the outstanding ones.
    pub(crate) fn op_ping(&mut self, s: usize) {
        let now = self.now();
        let side = &mut self.sides[s];
        if side.pings.len() < 3 {
            match side.conn.start_ping(now) {
                Ok(ticket) => {
                    assert!(
                        self.dialect.has_ping(),
                        "ping started on a dialect without Ping"
                    );
                    side.pings.push((ticket, Waiter::new()));
                    self.cov.pings += 1;
                }
                Err(Error::Unsupported(_)) => assert!(!self.dialect.has_ping()),
                Err(e) => self.check_session_error(s, "start_ping", &e),
            }
        }
        self.poll_pings(s);
    }

    pub(crate) fn poll_pings(&mut self, s: usize) {
        let min_rtt = self.wires[0].delay_ms + self.wires[1].delay_ms;
        let side = &mut self.sides[s];
        let mut i = 0;
        while i < side.pings.len() {
            let (ticket, w) = &mut side.pings[i];
            match side.conn.poll_ping(*ticket, w.waker()) {
                Poll::Pending => {
                    w.arm();
                    i += 1;
                }
                Poll::Ready(r) => {
                    assert!(w.complete(), "{:?}: lost wake-up in poll_ping", side.role);
                    match r {
                        Ok(rtt) => assert!(
                            rtt >= Duration::from_millis(min_rtt),
                            "ping rtt {rtt:?} is shorter than the wire's round trip of {min_rtt} ms"
                        ),
                        Err(e) => self.check_session_error(s, "poll_ping", &e),
                    }
                    self.sides[s].pings.swap_remove(i);
                    return;
                }
            }
        }
    }

    pub(crate) fn op_go_away(&mut self, s: usize) {
        let side = &mut self.sides[s];
        match side.conn.go_away() {
            Ok(()) => {
                side.goaway = true;
                self.cov.goaways += 1;
            }
            Err(Error::Unsupported(_)) => assert!(!self.dialect.has_goaway()),
            Err(e) => self.check_session_error(s, "go_away", &e),
        }
    }

    pub(crate) fn op_close(&mut self, s: usize) {
        let now = self.now();
        let side = &mut self.sides[s];
        if side.closed_at.is_none() {
            side.conn.close(now);
            side.goaway = true;
            side.closed_at = Some(self.now_ms);
            self.progress += 1;
        }
    }
}
