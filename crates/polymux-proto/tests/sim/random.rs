//! The random phase: the invariants checked after every step, and the random step itself.

use super::*;

impl Sim {
    // ---- invariants -------------------------------------------------------------------------

    /// The bounds that must hold after every step.
    pub fn check_invariants(&mut self) {
        for side in &self.sides {
            let pct = side.conn.stats().recv_buffered as u64 * 100
                / self.config.session_recv_budget() as u64;
            self.cov.peak_buffered_pct = self.cov.peak_buffered_pct.max(pct);
        }
        let bound = self.credit_bound();
        for s in 0..2 {
            let side = &self.sides[s];
            let peer = &self.sides[1 - s];
            let stats = side.conn.stats();
            assert!(
                stats.recv_buffered <= self.config.session_recv_budget(),
                "{:?}: {} bytes buffered, over the session budget of {}",
                side.role,
                stats.recv_buffered,
                self.config.session_recv_budget()
            );
            assert!(
                stats.pending_accept <= self.config.accept_backlog(),
                "{:?}: {} streams wait for accept, backlog is {}",
                side.role,
                stats.pending_accept,
                self.config.accept_backlog()
            );
            assert_eq!(
                stats.bytes_sent, side.bytes_written,
                "{:?}: bytes_sent disagrees with the writes",
                side.role
            );
            assert_eq!(
                stats.opened_outbound, side.opens,
                "{:?}: opened_outbound disagrees with the opens",
                side.role
            );
            assert!(
                stats.bytes_received <= peer.bytes_written,
                "{:?}: received {} payload bytes, the peer wrote {}",
                side.role,
                stats.bytes_received,
                peer.bytes_written
            );
            if !self.flow_controlled() {
                continue;
            }
            // Per stream: what the writer has handed to its engine but the reader has not read
            // (in flight + buffered at the reader) never exceeds the credit the reader granted.
            for (id, w) in &side.streams {
                let read = match peer.streams.get(id) {
                    Some(r) if r.reset_local || r.released_early => continue,
                    Some(r) => r.read,
                    None => 0,
                };
                assert!(
                    w.written - read <= bound,
                    "stream {id}: {:?} wrote {} bytes, the reader read {read}: {} outstanding, over the credit bound {bound}",
                    side.role,
                    w.written,
                    w.written - read
                );
            }
        }
    }

    // ---- the random phase -------------------------------------------------------------------

    pub(crate) fn random_live(&mut self, s: usize) -> Option<u32> {
        let live = &self.sides[s].live;
        if live.is_empty() {
            None
        } else {
            let i = self.rng.below(live.len() as u64) as usize;
            Some(live[i])
        }
    }

    /// A live stream of side `s` for which `want` holds, trying a few random picks.
    pub(crate) fn pick_stream(
        &mut self,
        s: usize,
        want: impl Fn(u32, &SimStream, &Side) -> bool,
    ) -> Option<u32> {
        for _ in 0..4 {
            let id = self.random_live(s)?;
            let side = &self.sides[s];
            let peer = &self.sides[1 - s];
            if want(id, &side.streams[&id], peer) {
                return Some(id);
            }
        }
        None
    }

    /// One random step of the application or the driver on a random side.
    pub fn random_step(&mut self, plan: &Plan) {
        self.step += 1;
        let s = self.rng.below(2) as usize;
        let roll = self.rng.below(1000);
        match roll {
            0..=119 => {
                let max = self.rng.size(256 * 1024);
                self.transmit(s, max);
                self.maybe_close_transport(s);
            }
            120..=319 => {
                self.deliver(s, 0);
            }
            320..=379 => {
                let ms = if self.rng.percent(90) {
                    self.rng.range(1, 5)
                } else {
                    self.rng.range(5, 300)
                };
                self.advance(ms);
            }
            380..=439 => {
                if self.sides[s].opens < plan.opens_per_side || self.sides[s].open_w.is_armed() {
                    self.op_open(s);
                }
            }
            440..=489 => {
                for _ in 0..self.rng.range(1, 3) {
                    if !self.op_accept(s) {
                        break;
                    }
                }
            }
            490..=699 => {
                let id = self.pick_stream(s, |_, st, _| {
                    st.key.is_some() && (st.written < st.target || st.write_closed)
                });
                if let Some(id) = id {
                    let established = self.sides[s].streams[&id].established;
                    if !established {
                        self.op_established(s, id);
                    } else if self.sides[s].streams[&id].can_write() || self.rng.percent(2) {
                        let max = self.rng.size(96 * 1024);
                        self.op_write(s, id, max);
                    }
                }
            }
            700..=899 if self.step < self.sides[s].reads_stalled_until => {}
            700..=899 => {
                if self.rng.below(300) == 0 {
                    let until = self.step + self.rng.range(300, 1500);
                    self.sides[s].reads_stalled_until = until;
                }
                // Half the time prefer streams with bytes to read (buffers drain as an
                // application's would), else any stream (readers lag and budgets fill up).
                let id = if self.rng.percent(50) {
                    self.pick_stream(s, |id, st, peer| {
                        !st.eof
                            && peer
                                .streams
                                .get(&id)
                                .is_some_and(|w| w.written > st.read || w.write_closed)
                    })
                } else {
                    None
                };
                let id = id.or_else(|| self.random_live(s));
                if let Some(id) = id {
                    let len = self.rng.size(64 * 1024);
                    self.op_read(s, id, len);
                }
            }
            900..=939 => {
                let early = self.rng.percent(10);
                let id = self.pick_stream(s, |_, st, _| {
                    st.key.is_some()
                        && !st.write_closed
                        && st.established
                        && (early || st.written == st.target)
                });
                if let Some(id) = id {
                    self.op_close_write(s, id);
                }
            }
            940..=947 => {
                if let Some(id) = self.random_live(s) {
                    self.op_reset(s, id);
                }
            }
            948..=974 => {
                let early = self.rng.percent(15);
                let id =
                    self.pick_stream(s, |_, st, _| early || (st.read_done() && st.write_done()));
                if let Some(id) = id {
                    self.op_release(s, id);
                }
            }
            975..=993 => self.op_ping(s),
            _ => self.poll_pings(s),
        }
        if plan.goaway_at == Some(self.step) {
            self.op_go_away(s);
        }
        self.check_invariants();
    }
}
