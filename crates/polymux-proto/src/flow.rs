//! Per-stream flow control as two small value types, in cumulative byte counts.
//!
//! Counting totals in `u64` (bytes ever allowed, ever sent/received, ever consumed) instead of
//! a shrinking "window" keeps every dialect's rule a one-liner and never wraps: yamux and
//! net-mux credit arrives as a delta ([`SendCredit::grant`]), smux v2 as an absolute window
//! over a wrapping `consumed` counter ([`SendCredit::set_window`]).
//!
//! Invariant kept by [`RecvCredit`]: `consumed ≤ received ≤ limit`, and the bytes buffered for
//! the application (`received - consumed`) never exceed the credit granted (`limit - consumed`,
//! at most the current window). Credit is returned when the application *reads*, never when
//! bytes merely arrive.

use std::time::{Duration, Instant};

/// How auto-tuning tells that a stream's window, not its reader, limits throughput.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Pace {
    /// Dialects with a ping measure the round trip (`None` until it is known): credit used up
    /// within two round trips means the window is too small for the path.
    RoundTrip(Option<Duration>),
    /// smux has no ping: a reader that has drained its queue when credit is due is waiting on
    /// the window. (A writer that is itself slow never uses half its credit, so never grows it.)
    ReaderStarved,
}

/// What the receiving side of one stream has allowed and seen.
#[derive(Debug, Clone)]
pub(crate) struct RecvCredit {
    /// Total payload bytes the peer may have sent so far.
    limit: u64,
    /// Total payload bytes received.
    received: u64,
    /// Total payload bytes the application has read (or that were discarded).
    consumed: u64,
    /// Current window: credit is topped back up to `consumed + window`.
    window: u32,
    /// When credit was last returned, for auto-tuning.
    last_grant: Option<Instant>,
}

impl RecvCredit {
    /// `initial_limit` is what the peer may send before hearing from us; `window` what we will
    /// keep granting.
    pub(crate) fn new(initial_limit: u32, window: u32) -> Self {
        RecvCredit {
            limit: initial_limit.into(),
            received: 0,
            consumed: 0,
            window,
            last_grant: None,
        }
    }

    /// A stream without flow control (smux v1): the peer may send without limit, and no
    /// credit is ever returned (the window is 0). Memory is bounded by the session receive
    /// budget instead.
    pub(crate) fn unlimited() -> Self {
        RecvCredit {
            limit: u64::MAX,
            ..RecvCredit::new(0, 0)
        }
    }

    /// Bytes the peer may still send.
    pub(crate) fn available(&self) -> u64 {
        self.limit - self.received
    }

    /// Records `n` received bytes; `false` (and nothing recorded) if they exceed the credit.
    pub(crate) fn receive(&mut self, n: u64) -> bool {
        if n > self.available() {
            return false;
        }
        self.received += n;
        true
    }

    /// Records `n` bytes read by the application.
    pub(crate) fn consume(&mut self, n: u64) {
        self.consumed = (self.consumed + n).min(self.received);
    }

    /// Total bytes consumed (the smux v2 `consumed` field is this modulo 2^32).
    pub(crate) fn consumed(&self) -> u64 {
        self.consumed
    }

    /// Current window.
    pub(crate) fn window(&self) -> u32 {
        self.window
    }

    /// Whether enough was read that returning credit is worth a frame: at least half a window
    /// (the threshold every peer uses, so updates stay rare without stalling the sender).
    pub(crate) fn wants_update(&self) -> bool {
        self.grantable() >= u64::from(self.window / 2).max(1)
    }

    /// Whether announcing the current window as an absolute figure now (smux v2's UPD: the
    /// peer may have `consumed + window` bytes sent) would not take back credit the peer
    /// already has, e.g. the protocol's initial 256 KiB under a smaller configured window.
    pub(crate) fn announcement_keeps_credit(&self) -> bool {
        self.consumed + u64::from(self.window) >= self.limit
    }

    fn grantable(&self) -> u64 {
        (self.consumed + u64::from(self.window)).saturating_sub(self.limit)
    }

    /// Auto-tuning: when the window is what limits throughput, double it (up to `max`, and
    /// only by what `budget_left` allows). Returns how much the window grew. See [`Pace`] for
    /// how "the window limits throughput" is told.
    pub(crate) fn maybe_grow(
        &mut self,
        now: Instant,
        pace: Pace,
        max: u32,
        budget_left: u64,
    ) -> u32 {
        if self.window >= max {
            return 0;
        }
        let window_limits = match pace {
            // The previous grant was used up within two round trips.
            Pace::RoundTrip(Some(rtt)) => self
                .last_grant
                .is_some_and(|last| now.saturating_duration_since(last) < rtt * 2),
            Pace::RoundTrip(None) => false,
            // The application has read everything that arrived, yet the peer has already used
            // at least half its credit (a grant is due): the reader waits on the window.
            Pace::ReaderStarved => self.received == self.consumed,
        };
        if !window_limits {
            return 0;
        }
        let grown = self.window.saturating_mul(2).min(max);
        let growth = u64::from(grown - self.window).min(budget_left) as u32;
        self.window += growth;
        growth
    }

    /// Tops credit back up to `consumed + window`; returns the delta granted.
    pub(crate) fn grant(&mut self, now: Instant) -> u32 {
        let delta = self.grantable().min(u64::from(u32::MAX));
        self.limit += delta;
        self.last_grant = Some(now);
        delta as u32
    }
}

/// What the sending side of one stream may still send.
#[derive(Debug, Clone)]
pub(crate) struct SendCredit {
    /// Total payload bytes sent.
    sent: u64,
    /// Total payload bytes the peer allows; `u64::MAX` when the dialect has no flow control.
    limit: u64,
}

/// The peer announced credit that does not fit the protocol's 32-bit window.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct WindowOverflow;

impl SendCredit {
    /// Credit of `initial` bytes; `None` for a dialect without per-stream flow control.
    pub(crate) fn new(initial: Option<u32>) -> Self {
        SendCredit {
            sent: 0,
            limit: initial.map_or(u64::MAX, u64::from),
        }
    }

    /// Bytes that may be sent now.
    pub(crate) fn available(&self) -> u64 {
        self.limit - self.sent
    }

    /// Records `n` bytes sent (the caller sends at most [`available`](Self::available)).
    pub(crate) fn spend(&mut self, n: u64) {
        debug_assert!(n <= self.available());
        self.sent += n;
    }

    /// yamux/net-mux: the peer granted `delta` more bytes. The resulting window must fit u32.
    pub(crate) fn grant(&mut self, delta: u32) -> Result<(), WindowOverflow> {
        if self.limit == u64::MAX {
            return Ok(());
        }
        let limit = self.limit + u64::from(delta);
        if limit - self.sent > u64::from(u32::MAX) {
            return Err(WindowOverflow);
        }
        self.limit = limit;
        Ok(())
    }

    /// smux v2: the peer has consumed `consumed` bytes (mod 2^32) and its window is `window`.
    /// In flight is `sent - consumed` (computed with wrapping, as the peer does); a peer that
    /// claims more than was sent is treated as having consumed everything.
    pub(crate) fn set_window(&mut self, consumed: u32, window: u32) {
        let in_flight = u64::from((self.sent as u32).wrapping_sub(consumed)).min(self.sent);
        self.limit = self.sent - in_flight + u64::from(window);
        // The limit may shrink below `sent` if the peer shrank its window: nothing more may be
        // sent until it grows again.
        self.limit = self.limit.max(self.sent);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receive_is_bounded_by_credit() {
        let mut c = RecvCredit::new(10, 10);
        assert!(c.receive(6));
        assert!(!c.receive(5));
        assert!(c.receive(4));
        assert_eq!(c.available(), 0);
    }

    #[test]
    fn a_stream_without_flow_control_outlives_u32_bytes() {
        // smux v1: a long-lived stream carries more than 4 GiB and never owes a credit frame.
        let mut c = RecvCredit::unlimited();
        for _ in 0..3 {
            assert!(c.receive(u64::from(u32::MAX)));
            c.consume(u64::from(u32::MAX));
            assert!(!c.wants_update());
        }
        assert_eq!(c.window(), 0);
    }

    #[test]
    fn credit_returns_after_half_a_window_is_read() {
        let now = Instant::now();
        let mut c = RecvCredit::new(100, 100);
        assert!(c.receive(100));
        c.consume(49);
        assert!(!c.wants_update());
        c.consume(1);
        assert!(c.wants_update());
        assert_eq!(c.grant(now), 50);
        assert_eq!(c.available(), 50);
        assert!(!c.wants_update());
    }

    #[test]
    fn window_grows_only_when_used_within_two_rtts_and_within_budget() {
        let t0 = Instant::now();
        let rtt = Pace::RoundTrip(Some(Duration::from_millis(10)));
        let mut c = RecvCredit::new(100, 100);
        c.grant(t0);
        assert_eq!(
            c.maybe_grow(t0 + Duration::from_millis(50), rtt, 1000, 1000),
            0
        );
        assert_eq!(
            c.maybe_grow(t0 + Duration::from_millis(5), rtt, 1000, 1000),
            100
        );
        assert_eq!(c.window(), 200);
        assert_eq!(
            c.maybe_grow(t0 + Duration::from_millis(5), rtt, 1000, 30),
            30
        );
        assert_eq!(c.maybe_grow(t0, rtt, 230, 1000), 0);
    }

    #[test]
    fn without_a_round_trip_the_window_grows_only_for_a_starved_reader() {
        let t0 = Instant::now();
        let mut c = RecvCredit::new(100, 100);
        c.grant(t0);
        assert!(c.receive(80));
        c.consume(60);
        assert_eq!(c.maybe_grow(t0, Pace::RoundTrip(None), 1000, 1000), 0);
        assert_eq!(c.maybe_grow(t0, Pace::ReaderStarved, 1000, 1000), 0);
        c.consume(20);
        assert_eq!(c.maybe_grow(t0, Pace::ReaderStarved, 1000, 1000), 100);
        assert_eq!(c.window(), 200);
    }

    #[test]
    fn send_grant_overflow_is_detected() {
        let mut s = SendCredit::new(Some(u32::MAX - 10));
        assert_eq!(s.grant(10), Ok(()));
        assert_eq!(s.grant(1), Err(WindowOverflow));
        s.spend(5);
        assert_eq!(s.grant(5), Ok(()));
    }

    #[test]
    fn smux_window_follows_wrapping_consumed() {
        let mut s = SendCredit::new(Some(256 * 1024));
        s.spend(100_000);
        s.set_window(40_000, 65_536);
        assert_eq!(s.available(), 65_536 - 60_000);
        // Near the u32 wrap: sent = 2^32 + 10, consumed reported as 5 (wrapped).
        let mut s = SendCredit {
            sent: (1u64 << 32) + 10,
            limit: (1u64 << 32) + 10,
        };
        s.set_window(5, 100);
        assert_eq!(s.available(), 95);
    }

    #[test]
    fn no_flow_control_means_unbounded_credit() {
        let mut s = SendCredit::new(None);
        s.spend(1 << 40);
        assert!(s.available() > 1 << 60);
        assert_eq!(s.grant(5), Ok(()));
    }
}
