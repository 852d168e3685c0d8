//! Liveness bookkeeping: when to probe, when the peer counts as dead, and the measured RTT.
//!
//! yamux and net-mux probe with Ping and measure the round trip; the peer is dead when a probe
//! stays unanswered for the timeout *and* nothing at all arrived since it was sent (a busy peer
//! whose pong waits behind megabytes of data is alive). smux probes with NOP, which has no
//! reply: there the peer is dead when nothing arrived for the timeout (Go smux applies the same
//! rule to us, which is why our NOPs are on by default).
//!
//! The round trip reported ([`KeepAlive::rtt`], `Stats::rtt`) is the path's (issue 13, "a
//! keep-alive that does not lie"): our pings go out before any data (control frames lead every
//! batch), but the answer can still wait behind bulk data in queues below us (the kernel's, a
//! bottleneck's), so one sample taken during a transfer measures those queues too. The
//! reported figure is therefore the smallest sample of the last one to two [`RTT_EPOCH`]s: a
//! transfer cannot inflate it, and a path that really got slower shows within two epochs.
//! Being a minimum, it is only as good as its smallest sample, so a Ping's opaque value is
//! unpredictable (a keyed hash of a counter): a peer cannot answer a Ping before it arrived.

use std::hash::{BuildHasher, RandomState};
use std::time::{Duration, Instant};

use crate::frame::Frame;

/// Round-trip samples count towards the reported minimum for one to two of these.
pub(crate) const RTT_EPOCH: Duration = Duration::from_secs(60);

/// The minimum of the samples of the current and the previous epoch (two values kept, so the
/// filter is constant-size whatever the sample rate).
#[derive(Debug, Clone, Copy, Default)]
struct MinFilter {
    /// Start of the current epoch (set by its first sample).
    epoch: Option<Instant>,
    current: Option<Duration>,
    previous: Option<Duration>,
}

impl MinFilter {
    fn sample(&mut self, rtt: Duration, now: Instant) {
        match self.epoch {
            Some(start) if now.saturating_duration_since(start) < RTT_EPOCH => {}
            Some(start) => {
                // A new epoch; the one before it is forgotten unless it just ended.
                let recent = now.saturating_duration_since(start) < 2 * RTT_EPOCH;
                self.previous = if recent { self.current } else { None };
                self.current = None;
                self.epoch = Some(now);
            }
            None => self.epoch = Some(now),
        }
        self.current = Some(self.current.map_or(rtt, |m| m.min(rtt)));
    }

    fn get(&self) -> Option<Duration> {
        match (self.current, self.previous) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

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
    /// Pings sent so far: the next opaque is this counter hashed with `opaque_key`.
    next_opaque: u64,
    /// A per-session secret: sequential opaques would let a peer send the Pong of our next
    /// Ping ahead of it and forge a zero round trip, which the minimum filter would keep.
    opaque_key: RandomState,
    /// The latest ping's round trip (what an explicit ping returns).
    last_ping: Option<Duration>,
    /// The path's round trip (see the module doc).
    path_rtt: MinFilter,
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
            next_opaque: 0,
            opaque_key: RandomState::new(),
            last_ping: None,
            path_rtt: MinFilter::default(),
            min_rtt: None,
            answered: 0,
        }
    }

    /// The path's round trip: the smallest sample of the last one to two epochs.
    pub(crate) fn rtt(&self) -> Option<Duration> {
        self.path_rtt.get()
    }

    /// The latest ping's own round trip.
    pub(crate) fn last_ping_rtt(&self) -> Option<Duration> {
        self.last_ping
    }

    pub(crate) fn min_rtt(&self) -> Option<Duration> {
        self.min_rtt
    }

    /// A round-trip sample from elsewhere (flow control: never below the path's round trip).
    pub(crate) fn on_rtt_sample(&mut self, rtt: Duration, now: Instant) {
        self.min_rtt = Some(self.min_rtt.map_or(rtt, |m| m.min(rtt)));
        self.path_rtt.sample(rtt, now);
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
        // Truncated: any 32 bits of the keyed hash are as unpredictable as the rest.
        let opaque = self.opaque_key.hash_one(self.next_opaque) as u32;
        self.next_opaque += 1;
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
                self.last_ping = Some(rtt);
                self.on_rtt_sample(rtt, now);
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
        assert_eq!(k.last_ping_rtt(), Some(3 * MS));
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

#[cfg(test)]
mod rtt_tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    /// Answers a ping sent at `at` after `rtt`.
    fn round_trip(k: &mut KeepAlive, at: Instant, rtt: Duration) {
        let (Some(Frame::Ping { opaque, .. }), _) = k.ping(at) else {
            panic!("a ping goes out");
        };
        assert!(k.on_pong(opaque, at + rtt));
    }

    #[test]
    fn the_reported_round_trip_is_the_paths_not_the_queues() {
        let t0 = Instant::now();
        let mut k = KeepAlive::new(true, None, 10 * RTT_EPOCH, t0);
        round_trip(&mut k, t0, 50 * MS);
        // Answers that waited behind bulk data do not raise it; an explicit ping still gets
        // its own round trip.
        for i in 1..=5 {
            round_trip(&mut k, t0 + i * 10 * MS * 100, 180 * MS);
            assert_eq!(k.rtt(), Some(50 * MS));
            assert_eq!(k.last_ping_rtt(), Some(180 * MS));
        }
        // Flow control's samples count too, and only lower it.
        k.on_rtt_sample(48 * MS, t0 + 6 * 1000 * MS);
        assert_eq!(k.rtt(), Some(48 * MS));
        // A path that got slower shows once the faster samples are two epochs old.
        let later = t0 + RTT_EPOCH;
        round_trip(&mut k, later, 120 * MS);
        assert_eq!(k.rtt(), Some(48 * MS));
        round_trip(&mut k, later + RTT_EPOCH, 130 * MS);
        assert_eq!(k.rtt(), Some(120 * MS));
        round_trip(&mut k, later + 2 * RTT_EPOCH + 1000 * MS, 125 * MS);
        assert_eq!(k.rtt(), Some(125 * MS));
        // After a long silence, the first new sample stands alone.
        round_trip(&mut k, later + 10 * RTT_EPOCH, 140 * MS);
        assert_eq!(k.rtt(), Some(140 * MS));
        // The window-sizing minimum keeps the smallest ever seen.
        assert_eq!(k.min_rtt(), Some(48 * MS));
    }
}
