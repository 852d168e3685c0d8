//! The harness as the driver: output batches onto the wire, input from it, and time (timers,
//! settling, running to a virtual instant).

use super::*;

impl Sim {
    // ---- driver: output ---------------------------------------------------------------------

    /// Writes up to `max` bytes of side `s`'s output to its wire, taking a new batch if none is
    /// being written. Returns the bytes written.
    pub fn transmit(&mut self, s: usize, max: usize) -> usize {
        let now = self.now_ms;
        let at = self.now();
        let dialect = self.dialect;
        let budget = self.config.write_budget();
        let side = &mut self.sides[s];
        if side.sending.is_none() {
            if let Some(batch) = side.conn.poll_transmit(at) {
                side.took_output = true;
                // One flat data piece: the wire model writes byte ranges of it.
                let batch = Transmit {
                    data: vec![Bytes::from(batch.data.concat())],
                    ..batch
                };
                let (_, control_payload, _) = walk(dialect, &batch.control, "control part");
                assert_eq!(control_payload, 0, "stream payload in the control part");
                let (frames, payload, _) = walk(dialect, &batch.data[0], "data part");
                // Nothing is in flight when a batch is taken (the previous one was reported
                // written), so the data part alone must respect the write budget: payload within
                // it, framing (headers, FIN/RST frames) beyond it.
                assert!(
                    payload <= budget,
                    "{:?}: batch carries {payload} payload bytes, write budget is {budget}",
                    side.role
                );
                let slack = dialect.header_len() * frames;
                assert!(
                    batch.data_len() <= budget + slack,
                    "{:?}: batch data part is {} bytes, write budget {budget} + slack {slack}",
                    side.role,
                    batch.data_len()
                );
                if self.trace {
                    eprintln!(
                        "[step {} t={}] {:?} takes a batch: control {} data {} ({payload} payload)",
                        self.step,
                        self.now_ms,
                        side.role,
                        batch.control.len(),
                        batch.data_len()
                    );
                }
                side.sending = Some((batch, 0));
            }
        }
        let Some((batch, done)) = &mut side.sending else {
            return 0;
        };
        let total = batch.len();
        let n = max.min(total - *done);
        let control = batch.control.len();
        let (start, end) = (*done, *done + n);
        if start < control {
            self.wires[s].send(now, batch.control.slice(start..end.min(control)));
        }
        if end > control {
            self.wires[s].send(
                now,
                batch.data[0].slice(start.max(control) - control..end - control),
            );
        }
        *done = end;
        if end == total {
            let (batch, _) = side.sending.take().expect("a batch is being written");
            side.conn.transmitted(batch);
            if self.trace {
                eprintln!(
                    "[step {} t={}] {:?} batch written",
                    self.step, self.now_ms, side.role
                );
            }
        }
        n
    }

    /// Writes everything side `s` has queued.
    pub(crate) fn transmit_all(&mut self, s: usize) {
        while self.transmit(s, usize::MAX) > 0 {}
        self.maybe_close_transport(s);
    }

    /// An ended session whose output is flushed closes its transport.
    pub(crate) fn maybe_close_transport(&mut self, s: usize) {
        let side = &mut self.sides[s];
        if side.conn.is_ended() {
            if side.ended_at.is_none() {
                side.ended_at = Some(self.now_ms);
            }
            if side.sending.is_none()
                && !side.conn.has_pending_output()
                && self.wires[s].eof_at.is_none()
            {
                self.wires[s].close(self.now_ms);
            }
        }
    }

    // ---- driver: input ----------------------------------------------------------------------

    /// Feeds side `s` up to `max` of the bytes that have arrived for it (`max == 0`: a random
    /// piece size), honouring `wants_input`. Returns the bytes moved off the wire.
    pub fn deliver(&mut self, s: usize, max: usize) -> usize {
        let now_ms = self.now_ms;
        let now = self.now();
        let wire = &mut self.wires[1 - s];
        let side = &mut self.sides[s];
        if side.conn.is_ended() {
            return 0;
        }
        if !side.conn.wants_input() {
            if !side.driver_w.is_armed() {
                self.cov.input_paused += 1;
                side.driver_w.arm();
                side.took_output = false;
            }
            side.conn.register_driver(side.driver_w.waker());
            return 0;
        }
        if side.driver_w.is_armed() {
            // Input resumed: the engine must have woken the driver, unless the driver itself
            // made room (it took output, which empties a full control queue).
            let woken = side.driver_w.woken() || side.took_output;
            side.driver_w.cancel();
            assert!(
                woken,
                "{:?}: input resumed without the driver being woken (lost driver wake-up)",
                side.role
            );
        }
        // Leftover bytes from a pause are offered again first.
        if !side.rx.is_empty() {
            let before = side.rx.len();
            side.conn.handle_input(&mut side.rx, now);
            if side.rx.len() != before || !side.conn.wants_input() {
                return 0;
            }
        }
        let avail = wire.arrived(now_ms);
        if avail == 0 {
            if wire.eof_arrived(now_ms) && !side.eof_seen {
                side.eof_seen = true;
                side.conn.handle_eof(side.rx.len());
            }
            return 0;
        }
        let n = if max == 0 {
            self.rng.size(avail)
        } else {
            max.min(avail)
        };
        if n == 1 {
            self.cov.one_byte_pieces += 1;
        }
        let moved = wire.take(now_ms, n, &mut side.rx);
        side.conn.handle_input(&mut side.rx, now);
        moved
    }

    /// Feeds side `s` everything that has arrived, in random pieces, while it wants input.
    pub(crate) fn deliver_all(&mut self, s: usize, random_pieces: bool) {
        for _ in 0..100_000 {
            let before = (
                self.wires[1 - s].arrived(self.now_ms),
                self.sides[s].rx.len(),
            );
            let piece = if random_pieces { 0 } else { usize::MAX };
            self.deliver(s, piece);
            let after = (
                self.wires[1 - s].arrived(self.now_ms),
                self.sides[s].rx.len(),
            );
            if before == after {
                return;
            }
        }
        panic!("deliver_all did not settle");
    }

    // ---- time -------------------------------------------------------------------------------

    pub(crate) fn fire_timers(&mut self) {
        let now = self.now();
        for s in 0..2 {
            let side = &mut self.sides[s];
            if side.conn.poll_timeout().is_some_and(|t| t <= now) {
                side.conn.handle_timeout(now);
            }
            self.maybe_close_transport(s);
        }
    }

    pub fn advance(&mut self, ms: u64) {
        self.now_ms += ms;
        self.fire_timers();
    }

    pub(crate) fn to_ms(&self, t: Instant) -> u64 {
        let d = t.saturating_duration_since(self.base);
        // Round up: a deadline between two milliseconds is due at the later one.
        (d.as_nanos().div_ceil(1_000_000)) as u64
    }

    /// Event-driven mode: handles everything due now (whole arrived bytes, timers, output)
    /// until nothing changes.
    pub fn settle(&mut self) {
        for _ in 0..10_000 {
            let before = (
                self.wires[0].bytes_sent,
                self.wires[1].bytes_sent,
                self.wires[0].arrived(self.now_ms),
                self.wires[1].arrived(self.now_ms),
                self.sides[0].conn.poll_timeout(),
                self.sides[1].conn.poll_timeout(),
                self.sides[0].conn.is_ended(),
                self.sides[1].conn.is_ended(),
            );
            for s in 0..2 {
                self.transmit_all(s);
            }
            for s in 0..2 {
                self.deliver_all(s, false);
            }
            self.fire_timers();
            for s in 0..2 {
                self.transmit_all(s);
                self.maybe_close_transport(s);
            }
            let after = (
                self.wires[0].bytes_sent,
                self.wires[1].bytes_sent,
                self.wires[0].arrived(self.now_ms),
                self.wires[1].arrived(self.now_ms),
                self.sides[0].conn.poll_timeout(),
                self.sides[1].conn.poll_timeout(),
                self.sides[0].conn.is_ended(),
                self.sides[1].conn.is_ended(),
            );
            if before == after {
                return;
            }
        }
        panic!("settle did not converge at t = {} ms", self.now_ms);
    }

    /// Event-driven mode: runs to `target_ms`, stopping at every arrival and timer on the way.
    pub fn run_until(&mut self, target_ms: u64) {
        loop {
            self.settle();
            let mut next = u64::MAX;
            for s in 0..2 {
                if let Some(t) = self.sides[s].conn.poll_timeout() {
                    next = next.min(self.to_ms(t).max(self.now_ms + 1));
                }
                if let Some(t) = self.wires[s].next_arrival() {
                    next = next.min(t.max(self.now_ms + 1));
                }
                if let Some(t) = self.wires[s].eof_at.filter(|_| !self.sides[1 - s].eof_seen) {
                    next = next.min(t.max(self.now_ms + 1));
                }
            }
            if next > target_ms {
                self.now_ms = self.now_ms.max(target_ms);
                self.settle();
                return;
            }
            self.now_ms = next;
        }
    }
}
