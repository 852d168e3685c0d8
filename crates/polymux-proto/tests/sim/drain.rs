//! The drain phase and the final checks: finish every stream, close gracefully, compare what
//! each side read with what the other wrote.

use super::*;

impl Sim {
    /// Nothing is in flight: every byte either side sent was decoded by the other.
    pub(crate) fn quiet(&self) -> bool {
        (0..2).all(|s| {
            let side = &self.sides[s];
            self.wires[s].is_empty()
                && side.sending.is_none()
                && !side.conn.has_pending_output()
                && side.rx.is_empty()
        })
    }

    pub(crate) fn all_released(&self) -> bool {
        self.sides.iter().all(|side| side.live.is_empty())
    }

    /// The application finishes what it started on side `s`: accepts everything, writes every
    /// stream to its target and half-closes it, reads to EOF, releases what is done.
    pub(crate) fn drain_app(&mut self, s: usize) {
        while self.op_accept(s) {}
        let ids = self.sides[s].live.clone();
        for id in ids {
            if !self.sides[s].streams[&id].established {
                self.op_established(s, id);
            }
            for _ in 0..8 {
                let st = &self.sides[s].streams[&id];
                if !st.can_write() || st.written == st.target {
                    break;
                }
                let max = self.rng.size(64 * 1024);
                if !self.op_write(s, id, max) {
                    break;
                }
            }
            let st = &self.sides[s].streams[&id];
            // The peer refused (never had) or reset the stream.
            let peer_gone = match self.sides[1 - s].streams.get(&id) {
                Some(p) => p.reset_local,
                None => true,
            };
            if st.can_write()
                && st.written < st.target
                && st.write_w.is_armed()
                && st.eof
                && peer_gone
                && !self.dialect.has_reset()
            {
                // smux has no RST: the peer reset (or refused) the stream with a FIN and discards
                // what follows without returning credit, so a writer out of credit can never
                // finish. The application gives up (Go's smux returns EOF to such a writer).
                self.op_close_write(s, id);
            }
            let st = &self.sides[s].streams[&id];
            if st.can_write() && st.written == st.target {
                self.op_close_write(s, id);
            }
            for _ in 0..8 {
                if self.sides[s].streams[&id].read_done() {
                    break;
                }
                let len = self.rng.size(64 * 1024);
                if !self.op_read(s, id, len) {
                    break;
                }
            }
            let st = &self.sides[s].streams[&id];
            if st.read_done() && st.write_done() {
                self.op_release(s, id);
            }
        }
        if !self.sides[s].pings.is_empty() {
            self.poll_pings(s);
        }
    }

    pub(crate) fn finished(&self) -> bool {
        // Bytes still on a wire towards an ended session are never read, as on a real socket.
        self.sides
            .iter()
            .all(|side| side.conn.is_ended() && side.live.is_empty() && side.sending.is_none())
    }

    /// Finishes every stream, closes gracefully (one side, the other, or both; while streams
    /// are still open or after all are released), and runs until both sessions ended.
    pub fn drain(&mut self) {
        self.phase = "drain";
        let closers = match self.rng.below(3) {
            0 => [true, false],
            1 => [false, true],
            _ => [true, true],
        };
        let close_early = self.rng.percent(50);
        let mut closed = false;
        let mut idle = 0;
        loop {
            self.step += 1;
            let before = self.progress;
            for s in 0..2 {
                self.drain_app(s);
            }
            // Quiet after the application acted: every byte sent was decoded (every open
            // accepted or refused), and the application's last actions produced nothing new.
            if !closed && self.quiet() && (close_early || self.all_released()) {
                if !close_early {
                    for side in &self.sides {
                        assert_eq!(
                            side.conn.stats().streams,
                            0,
                            "{:?}: every stream is finished and released, yet the table is not empty",
                            side.role
                        );
                    }
                }
                for (s, &closes) in closers.iter().enumerate() {
                    if closes {
                        self.op_close(s);
                    }
                }
                closed = true;
            }
            for s in 0..2 {
                for _ in 0..4 {
                    let max = self.rng.size(256 * 1024);
                    self.transmit(s, max);
                }
                self.maybe_close_transport(s);
            }
            for s in 0..2 {
                self.deliver_all(s, true);
            }
            let ms = self.rng.range(0, 2);
            self.advance(ms);
            self.check_invariants();
            if self.finished() {
                break;
            }
            if self.progress == before {
                idle += 1;
                assert!(
                    idle < 5_000,
                    "no progress for {idle} drain rounds: stalled\n{}",
                    self.dump()
                );
            } else {
                idle = 0;
            }
        }
    }

    /// End-of-run checks: every stream's bytes, the streams' accounting, the end reasons.
    pub fn final_checks(&self) {
        assert!(self.finished(), "final checks before the run finished");
        let mut disturbed = false;
        for s in 0..2 {
            let w = &self.sides[s];
            let r = &self.sides[1 - s];
            let reason = w.end_reason().expect("the session ended");
            if let Some(closed_at) = w.closed_at {
                assert_eq!(
                    reason,
                    Error::SessionClosed,
                    "{:?}: closed, but ended with {reason:?}",
                    w.role
                );
                let took = w.ended_at.expect("end time recorded") - closed_at;
                assert!(
                    Duration::from_millis(took) < self.config.close_timeout(),
                    "{:?}: graceful close took {took} ms: it ran into close_timeout instead of completing",
                    w.role
                );
            } else {
                let expected = if self.dialect.has_goaway() {
                    Error::GoAway(0)
                } else {
                    Error::TransportClosed
                };
                assert_eq!(
                    reason, expected,
                    "{:?}: the peer closed gracefully, yet ended with {reason:?}",
                    w.role
                );
            }
            let rstats = r.conn.stats();
            assert_eq!(
                rstats.opened_inbound, w.opens,
                "{:?}: opened_inbound != the peer's opens",
                r.role
            );
            assert_eq!(
                w.opens,
                r.accepted + rstats.refused_inbound,
                "{:?} opened {} streams; the peer accepted {} and refused {}: streams were lost",
                w.role,
                w.opens,
                r.accepted,
                rstats.refused_inbound
            );
            disturbed |= rstats.refused_inbound > 0;
            for (&id, ws) in &w.streams {
                assert!(
                    ws.key.is_none(),
                    "{:?} stream {id} was never released",
                    w.role
                );
                disturbed |= ws.reset_local || ws.released_early;
                if !ws.abandoned && !ws.reset_local && !ws.saw_reset {
                    assert!(
                        ws.write_closed && ws.written == ws.target && !ws.session_gone,
                        "{:?} stream {id}: wrote {} of {} bytes (closed: {}, session gone: {})",
                        w.role,
                        ws.written,
                        ws.target,
                        ws.write_closed,
                        ws.session_gone
                    );
                }
                let Some(rs) = r.streams.get(&id) else {
                    continue; // Refused: accounted above.
                };
                if ws.reset_local || rs.reset_local || rs.released_early {
                    continue;
                }
                assert!(
                    rs.eof && rs.read == ws.written,
                    "stream {id} ({:?} -> {:?}): {} bytes written and closed, {} read, EOF seen: {}",
                    w.role,
                    r.role,
                    ws.written,
                    rs.read,
                    rs.eof
                );
            }
        }
        if !disturbed {
            for s in 0..2 {
                assert_eq!(
                    self.sides[1 - s].conn.stats().bytes_received,
                    self.sides[s].bytes_written,
                    "nothing was reset or refused, yet not every written byte was received"
                );
            }
        }
    }

    /// Where misdelivered bytes came from: the stream direction and offset whose payload they
    /// match, searching everything written so far.
    pub(crate) fn identify(&self, got: &[u8]) -> String {
        let mut found = Vec::new();
        for side in &self.sides {
            for (&id, st) in &side.streams {
                let salt = payload_salt(side.role, id);
                for off in 0..st.written.saturating_sub(got.len() as u64 - 1) {
                    if got
                        .iter()
                        .enumerate()
                        .all(|(i, &b)| b == payload_byte(salt, off + i as u64))
                    {
                        found.push(format!(
                            "stream {id}'s bytes from {:?} at offset {off}",
                            side.role
                        ));
                    }
                }
            }
        }
        if found.is_empty() {
            format!("{got:?}, from no stream's payload")
        } else {
            found.join(" or ")
        }
    }

    /// A description of what is still pending, for stall reports.
    pub fn dump(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        for s in 0..2 {
            let side = &self.sides[s];
            let peer = &self.sides[1 - s];
            let _ = writeln!(
                out,
                "{:?}: ended {:?}, wants_input {}, rx {} bytes, sending {:?}, pending output {}, wire out (arrival ms, len) {:?} (eof at {:?}), {:?}",
                side.role,
                side.end_reason(),
                side.conn.wants_input(),
                side.rx.len(),
                side.sending.as_ref().map(|(b, d)| (b.len(), *d)),
                side.conn.has_pending_output(),
                self.wires[s].chunks.iter().map(|(t, b)| (*t, b.len())).collect::<Vec<_>>(),
                self.wires[s].eof_at,
                side.conn.stats(),
            );
            for id in &side.live {
                let st = &side.streams[id];
                let p = peer.streams.get(id);
                let _ = writeln!(
                    out,
                    "  stream {id}: local {} est {} target {} written {} closed {} | read {} eof {} | reset {} saw_reset {} gone {} | write pending {} read pending {} | peer: written {:?} closed {:?} read {:?} reset {:?} released {:?}",
                    st.local, st.established, st.target, st.written, st.write_closed, st.read, st.eof,
                    st.reset_local, st.saw_reset, st.session_gone, st.write_w.is_armed(), st.read_w.is_armed(),
                    p.map(|p| p.written), p.map(|p| p.write_closed), p.map(|p| p.read), p.map(|p| p.reset_local), p.map(|p| p.key.is_none()),
                );
            }
        }
        out
    }
}
