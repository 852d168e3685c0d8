//! Liveness bookkeeping: when to probe, when the peer counts as dead, and the measured RTT.
//!
//! yamux and net-mux probe with Ping and measure the round trip; the peer is dead when a probe
//! stays unanswered for the timeout *and* nothing at all arrived since it was sent (a busy peer
//! whose pong waits behind megabytes of data is alive). smux probes with NOP, which has no
//! reply: there the peer is dead when nothing arrived for the timeout (Go smux applies the same
//! rule to us, which is why our NOPs are on by default).

use std::time::{Duration, Instant};

use crate::frame::Frame;

#[derive(Debug, Clone, Copy)]
struct Probe {
    opaque: u32,
    sent_at: Instant,
}

#[derive(Debug)]
pub(crate) struct KeepAlive {
    has_ping: bool,
    interval: Option<Duration>,
    timeout: Duration,
    next_probe: Option<Instant>,
    last_rx: Instant,
    outstanding: Option<Probe>,
    next_opaque: u32,
    rtt: Option<Duration>,
    /// The smallest round trip seen: the path's own, without the queueing behind bulk data
    /// that later samples may include (what window sizing needs).
    min_rtt: Option<Duration>,
    /// Number of pings answered so far; a ping ticket is complete once this passes it.
    answered: u64,
}

impl KeepAlive {
    pub(crate) fn new(
        has_ping: bool,
        interval: Option<Duration>,
        timeout: Duration,
        now: Instant,
    ) -> Self {
        KeepAlive {
            has_ping,
            interval,
            timeout,
            next_probe: interval.map(|i| now + i),
            last_rx: now,
            outstanding: None,
            next_opaque: 1,
            rtt: None,
            min_rtt: None,
            answered: 0,
        }
    }

    pub(crate) fn rtt(&self) -> Option<Duration> {
        self.rtt
    }

    pub(crate) fn min_rtt(&self) -> Option<Duration> {
        self.min_rtt
    }

    /// A round-trip sample from elsewhere (flow control): it can only lower the minimum.
    pub(crate) fn on_rtt_sample(&mut self, rtt: Duration) {
        self.min_rtt = Some(self.min_rtt.map_or(rtt, |m| m.min(rtt)));
    }

    pub(crate) fn answered(&self) -> u64 {
        self.answered
    }

    /// Something arrived from the peer.
    pub(crate) fn on_receive(&mut self, now: Instant) {
        self.last_rx = now;
    }

    /// Starts a ping unless one is outstanding. Returns the frame to send, if any, and the
    /// ticket: the ping is answered once [`answered`](Self::answered) exceeds it.
    pub(crate) fn ping(&mut self, now: Instant) -> (Option<Frame>, u64) {
        let ticket = self.answered;
        if self.outstanding.is_some() {
            return (None, ticket);
        }
        let opaque = self.next_opaque;
        self.next_opaque = self.next_opaque.wrapping_add(1);
        self.outstanding = Some(Probe {
            opaque,
            sent_at: now,
        });
        (Some(Frame::Ping { ack: false, opaque }), ticket)
    }

    /// A Ping reply arrived; returns whether it answered our outstanding ping.
    pub(crate) fn on_pong(&mut self, opaque: u32, now: Instant) -> bool {
        match self.outstanding {
            Some(p) if p.opaque == opaque => {
                let rtt = now.saturating_duration_since(p.sent_at);
                self.rtt = Some(rtt);
                self.min_rtt = Some(self.min_rtt.map_or(rtt, |m| m.min(rtt)));
                self.outstanding = None;
                self.answered += 1;
                true
            }
            _ => false,
        }
    }

    /// The next instant [`poll`](Self::poll) has something to do.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        let dead_at = if self.has_ping {
            self.outstanding.map(|p| p.sent_at + self.timeout)
        } else {
            self.interval.map(|_| self.last_rx + self.timeout)
        };
        match (self.next_probe, dead_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Advances to `now`: `Err(())` if the peer is dead, else the probe to send, if one is due.
    pub(crate) fn poll(&mut self, now: Instant) -> Result<Option<Frame>, ()> {
        if self.has_ping {
            if let Some(p) = self.outstanding {
                if now >= p.sent_at + self.timeout && self.last_rx <= p.sent_at {
                    return Err(());
                }
                if now >= p.sent_at + self.timeout {
                    // The peer is busy but alive: forget this probe and send a fresh one.
                    self.outstanding = None;
                }
            }
        } else if self.interval.is_some() && now >= self.last_rx + self.timeout {
            return Err(());
        }
        match (self.interval, self.next_probe) {
            (Some(interval), Some(at)) if now >= at => {
                self.next_probe = Some(now + interval);
                if self.has_ping {
                    Ok(self.ping(now).0)
                } else {
                    Ok(Some(Frame::Nop))
                }
            }
            _ => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn ping_dialect_probes_measures_and_times_out() {
        let t0 = Instant::now();
        let mut k = KeepAlive::new(true, Some(100 * MS), 50 * MS, t0);
        assert_eq!(k.poll(t0 + 10 * MS), Ok(None));
        let Ok(Some(Frame::Ping { ack: false, opaque })) = k.poll(t0 + 100 * MS) else {
            panic!("expected a probe");
        };
        assert!(k.on_pong(opaque, t0 + 103 * MS));
        assert_eq!(k.rtt(), Some(3 * MS));
        assert_eq!(k.answered(), 1);
        let Ok(Some(Frame::Ping { .. })) = k.poll(t0 + 200 * MS) else {
            panic!("expected a second probe");
        };
        assert_eq!(k.deadline(), Some(t0 + 250 * MS));
        assert_eq!(k.poll(t0 + 250 * MS), Err(()));
    }

    #[test]
    fn busy_peer_is_not_declared_dead() {
        let t0 = Instant::now();
        let mut k = KeepAlive::new(true, Some(100 * MS), 50 * MS, t0);
        let _ = k.poll(t0 + 100 * MS);
        k.on_receive(t0 + 120 * MS);
        assert!(k.poll(t0 + 160 * MS).is_ok());
    }

    #[test]
    fn nop_dialect_times_out_on_silence() {
        let t0 = Instant::now();
        let mut k = KeepAlive::new(false, Some(10 * MS), 30 * MS, t0);
        assert_eq!(k.poll(t0 + 10 * MS), Ok(Some(Frame::Nop)));
        k.on_receive(t0 + 15 * MS);
        assert!(k.poll(t0 + 40 * MS).is_ok());
        assert_eq!(k.poll(t0 + 45 * MS), Err(()));
    }
}
