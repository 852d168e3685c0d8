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
//!
//! Window sizing (issue 13, "windows sized to the path"): a stream's first window tells how
//! fast the path delivers when it arrives whole, faster than a round trip. With the round trip
//! known, the window is set at once to that rate × round trip × [`RAMP_HEADROOM`]; without
//! it, credit is paced out at that rate until a round trip is measured (at most one round trip
//! later, since the paced credit itself yields a sample), so the sender never idles for want of
//! credit while the receiver learns the path, and what was granted then is about one
//! bandwidth-delay product. After that, [`RecvCredit::retune`] keeps the window within
//! [`BDP_HEADROOM`] bandwidth-delay products of what is delivered, shrinking it when the reader
//! or the path slows. Round trips below [`MIN_SIZING_RTT`] count as that: the credit loop also
//! waits for tasks to wake, which a short path's round trip does not show.

use std::time::{Duration, Instant};

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
    /// When credit was last returned.
    last_grant: Option<Instant>,
    /// What window sizing measures once credit flows back; allocated by the first grant of
    /// credit that fell due (or was paced) or the first retune with a round trip known, so
    /// that an idle stream holds only an empty pointer (`tests/idle_memory.rs`).
    measures: Option<Box<Measures>>,
    /// While the first window arrives: when its first payload did, in microseconds since the
    /// session began (wrapping; [`FIRST_RX_DONE`] once measured). Four bytes in what would
    /// otherwise be padding: idle streams must stay small (`tests/idle_memory.rs`).
    first_rx: u32,
}

/// The measurements behind [`RecvCredit::retune`] and the round-trip samples of credit grants.
#[derive(Debug, Clone, Default)]
struct Measures {
    /// Set when credit is returned (one at a time): when, and the limit before. The first byte
    /// beyond that limit cannot arrive before the grant reached the peer and the byte came
    /// back, so its arrival is a round-trip sample, never below the path's round trip, even
    /// where the dialect has no ping (smux v2).
    rtt_probe: Option<(Instant, u64)>,
    /// Where the delivered rate is measured from: a time and `consumed` then, moved on after
    /// at least a round trip (so a window that arrives in one burst is measured over the
    /// round trip it took, not over the burst).
    rate_mark: Option<(Instant, u64)>,
}

/// [`RecvCredit::first_rx`] once the first window was measured (or cannot be).
const FIRST_RX_DONE: u32 = u32::MAX;

/// Window per bandwidth-delay product when the first window sizes the stream: one to keep the
/// path busy, one for the rate estimate's error; `retune` takes over from there.
const RAMP_HEADROOM: u64 = 2;

/// Longest credit pacing without a round trip (a paced grant normally yields one after one round
/// trip; this bounds what a stream that then sends nothing more is granted).
pub(crate) const PACE_LIMIT: Duration = Duration::from_secs(1);

/// The shortest round trip a window is sized for. Credit makes a longer loop than a ping: the
/// reading task must be woken to read before credit is returned, and the writing task woken by
/// it, on top of the path. On a short path (loopback, a LAN) a window sized to the path's round
/// trip alone stays at the configured floor, and the sender waits for credit every half window
/// (`polymux-bench/PROFILES.md`, "Credit on a short path"); a millisecond covers a late
/// wake-up and leaves longer paths' sizing alone.
pub(crate) const MIN_SIZING_RTT: Duration = Duration::from_millis(1);

/// Shortest interval, in µs, the first window's arrival rate is measured over: a window that
/// arrived in one read says only that the path is at least this fast.
const MIN_ARRIVAL_SPAN_US: u64 = 1000;

/// The window sizing of one stream from its first window, once that arrived whole: held by
/// the session for the few streams in that phase (see the module doc), dropped when done.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ramp {
    /// When the first window had arrived.
    at: Instant,
    /// Its arrival rate, bytes/s.
    rate: u64,
    /// While pacing: the credit beyond which paced credit is counted.
    base: Option<u64>,
}

impl Ramp {
    /// The first window arrived whole at `at`, at `rate` bytes/s.
    pub(crate) fn new(at: Instant, rate: u64) -> Ramp {
        Ramp {
            at,
            rate,
            base: None,
        }
    }

    /// Sizes `c`'s window at `now` (call [`RecvCredit::grant`] after it); returns whether the
    /// ramp goes on. Once the reader has the whole first window: with a round trip known, the
    /// window becomes rate × round trip × [`RAMP_HEADROOM`] at once and the ramp ends; without
    /// one, the credit grows by the rate × the time since the first window arrived (while the
    /// reader keeps up) until a round trip is known (then sized as above) or for at most
    /// [`PACE_LIMIT`]. The window never shrinks here; within `max`, growth within
    /// `budget_left`.
    pub(crate) fn step(
        &mut self,
        c: &mut RecvCredit,
        now: Instant,
        rtt: Option<Duration>,
        max: u32,
        budget_left: u64,
    ) -> bool {
        let elapsed = now.saturating_duration_since(self.at);
        if elapsed > PACE_LIMIT {
            return false;
        }
        let drained = c.received == c.consumed;
        if self.base.is_none() && !drained {
            return true;
        }
        if let Some(rtt) = rtt.map(|rtt| rtt.max(MIN_SIZING_RTT)) {
            // Saturating: the peer sets both factors (a round trip it stretched, a first
            // window it sent in one frame); `grow_to` caps the result at `max`.
            let target = bdp(self.rate, rtt).saturating_mul(RAMP_HEADROOM);
            c.grow_to(target, max, budget_left);
            return false;
        }
        // On top of the credit the current window gives anyway.
        let base = *self
            .base
            .get_or_insert(c.limit.max(c.consumed + u64::from(c.window)));
        if drained {
            let credit = base.saturating_add(bdp(self.rate, elapsed));
            c.grow_to(credit.saturating_sub(c.consumed), max, budget_left);
        }
        true
    }
}

/// Window per delivered bandwidth-delay product. While a window ramps up, the rate delivered
/// over a round trip is about the window of the round trip before, half the current one: a
/// factor of 4 lets it keep doubling each round trip (like slow start); once the path limits
/// the rate, the window settles within 4 bandwidth-delay products.
const BDP_HEADROOM: u64 = 4;

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
            measures: None,
            first_rx: 0,
        }
    }

    /// A stream without flow control (smux v1): the peer may send without limit, and no
    /// credit is ever returned (the window is 0). Memory is bounded by the session receive
    /// budget instead.
    pub(crate) fn unlimited() -> Self {
        RecvCredit {
            limit: u64::MAX,
            first_rx: FIRST_RX_DONE,
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

    /// A round-trip sample, once the first byte beyond the limit before the probed grant has
    /// arrived (call after [`receive`](Self::receive)). At least the path's round trip, more
    /// when the peer still had credit to send first: the minimum over many is what counts.
    pub(crate) fn take_rtt_sample(&mut self, now: Instant) -> Option<Duration> {
        let measures = self.measures.as_deref_mut()?;
        let (granted_at, old_limit) = measures.rtt_probe?;
        if self.received <= old_limit {
            return None;
        }
        measures.rtt_probe = None;
        Some(now.saturating_duration_since(granted_at))
    }

    /// A payload of `n` bytes was announced at `now_us` (µs since the session began, wrapping;
    /// call after [`receive`](Self::receive)). Returns the first window's arrival rate, in
    /// bytes/s, once `first_window` bytes (the credit a stream starts with) have arrived: the
    /// bytes before this payload over the time since the first payload, so each byte counted
    /// arrived within the span measured.
    pub(crate) fn note_arrival(&mut self, now_us: u32, n: u64, first_window: u64) -> Option<u64> {
        if self.first_rx == FIRST_RX_DONE {
            return None;
        }
        if self.received == n {
            self.first_rx = now_us.min(FIRST_RX_DONE - 1);
        }
        if self.received < first_window {
            return None;
        }
        let span = u64::from(now_us.wrapping_sub(self.first_rx)).max(MIN_ARRIVAL_SPAN_US);
        // A window in one payload: all of it in the shortest span.
        let bytes = match self.received - n {
            0 => self.received,
            b => b,
        };
        self.first_rx = FIRST_RX_DONE;
        Some((u128::from(bytes) * 1_000_000 / u128::from(span)).min(u128::from(u64::MAX)) as u64)
    }

    /// Grows the window towards `target` (never shrinks it), within `max` and `budget_left`.
    fn grow_to(&mut self, target: u64, max: u32, budget_left: u64) {
        let target = target.min(u64::from(max));
        let window = u64::from(self.window);
        if target > window {
            self.window += (target - window).min(budget_left) as u32;
        }
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

    /// Credit a [`grant`](Self::grant) would return now.
    pub(crate) fn grantable(&self) -> u64 {
        (self.consumed + u64::from(self.window)).saturating_sub(self.limit)
    }

    /// Auto-tuning, when credit falls due; returns the new window (the caller accounts the
    /// change in the session's window sum).
    ///
    /// The window doubles when it is what limits the stream: the grant was used up within two
    /// round trips of the path (`rtt`, its minimum, taken as at least [`MIN_SIZING_RTT`]), or,
    /// while no round trip is known, the reader has drained everything yet a grant is due.
    /// With a round trip known, it is also sized to the path: at most [`BDP_HEADROOM`] × the
    /// rate delivered over the last round trip (or more) × the round trip, and halved (per
    /// grant) towards that when the path or the reader slows down: a window-limited stream
    /// keeps doubling, a path-limited one settles within four bandwidth-delay products. Always
    /// within `floor` (the configured initial window) and `max`, and growth within
    /// `budget_left`.
    pub(crate) fn retune(
        &mut self,
        now: Instant,
        rtt: Option<Duration>,
        floor: u32,
        max: u32,
        budget_left: u64,
    ) -> u32 {
        let starved = self.received == self.consumed;
        let mut target = self.window;
        match rtt.map(|rtt| rtt.max(MIN_SIZING_RTT)) {
            Some(rtt) => {
                if self
                    .last_grant
                    .is_some_and(|at| now.saturating_duration_since(at) < rtt * 2)
                {
                    target = self.window.saturating_mul(2);
                }
                let measures = self.measures.get_or_insert_with(Box::default);
                let (mark_at, mark_consumed) =
                    *measures.rate_mark.get_or_insert((now, self.consumed));
                let elapsed = now.saturating_duration_since(mark_at);
                if elapsed >= rtt {
                    let delivered = u128::from(self.consumed - mark_consumed);
                    let bdp = delivered * rtt.as_nanos() / elapsed.as_nanos().max(1);
                    let bound = (bdp * u128::from(BDP_HEADROOM)).min(u128::from(u32::MAX)) as u32;
                    if bound < self.window {
                        // Shrink gradually: one slow round trip is not a trend.
                        target = (self.window / 2).max(bound);
                    } else {
                        target = target.min(bound);
                    }
                    measures.rate_mark = Some((now, self.consumed));
                }
            }
            None if starved => target = self.window.saturating_mul(2),
            None => {}
        }
        let target = target.clamp(floor.min(max), max);
        if target > self.window {
            let growth = u64::from(target - self.window).min(budget_left) as u32;
            self.window += growth;
        } else {
            self.window = target;
        }
        self.window
    }

    /// Tops credit back up to `consumed + window`, for credit that fell due or was paced;
    /// returns the delta granted. The first grant with nothing else pending starts a
    /// round-trip probe ([`take_rtt_sample`](Self::take_rtt_sample)).
    pub(crate) fn grant(&mut self, now: Instant) -> u32 {
        let limit_before = self.limit;
        let delta = self.grant_unprobed(now);
        if delta > 0 {
            let measures = self.measures.get_or_insert_with(Box::default);
            if measures.rtt_probe.is_none() {
                measures.rtt_probe = Some((now, limit_before));
            }
        }
        delta
    }

    /// Like [`grant`](Self::grant) but starts no probe: for credit that did not fall due (an
    /// open's or accept's credit beyond the protocol's, smux v2's first-read announcement).
    /// The peer may still hold most of its first window then, so the first byte beyond the
    /// old limit comes late and says little; and a stream whose credit never fell due (an
    /// idle one) keeps no measures.
    pub(crate) fn grant_unprobed(&mut self, now: Instant) -> u32 {
        let delta = self.grantable().min(u64::from(u32::MAX));
        self.limit += delta;
        self.last_grant = Some(now);
        delta as u32
    }
}

/// Bytes delivered at `rate` bytes/s over `span`.
fn bdp(rate: u64, span: Duration) -> u64 {
    (u128::from(rate) * span.as_nanos() / 1_000_000_000).min(u128::from(u64::MAX)) as u64
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

    /// Receives and reads up to `n` more bytes (what credit allows), then returns credit at
    /// `at`, retuning first; returns the new window.
    fn deliver(
        c: &mut RecvCredit,
        n: u64,
        at: Instant,
        rtt: Option<Duration>,
        max: u32,
        budget: u64,
    ) -> u32 {
        let n = n.min(c.available());
        assert!(c.receive(n));
        c.consume(n);
        let w = c.retune(at, rtt, 100, max, budget);
        c.grant(at);
        w
    }

    #[test]
    fn window_follows_the_delivered_bandwidth_delay_product() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let rtt = Some(ms(10));
        let mut c = RecvCredit::new(100, 100);
        c.grant(t0);
        // Window-limited: a window per round trip delivered; the window doubles.
        assert_eq!(deliver(&mut c, 100, t0 + ms(10), rtt, 10_000, 10_000), 200);
        assert_eq!(deliver(&mut c, 200, t0 + ms(20), rtt, 10_000, 10_000), 400);
        // The path delivers at most 600 per round trip: the window settles at 4 × 600.
        let mut at = t0 + ms(20);
        for _ in 0..6 {
            at += ms(10);
            deliver(&mut c, 600, at, rtt, 10_000, 10_000);
        }
        assert_eq!(c.window(), 2400);
        // The reader slows to 100 per round trip: the window halves per grant down to 400.
        for expected in [1200, 600, 400, 400] {
            at += ms(10);
            assert_eq!(deliver(&mut c, 100, at, rtt, 10_000, 10_000), expected);
        }
        // Never below the floor, never above the maximum, growth within the budget.
        at += ms(10);
        assert_eq!(deliver(&mut c, 10, at, rtt, 10_000, 10_000), 200);
        at += ms(10);
        assert_eq!(deliver(&mut c, 1, at, rtt, 10_000, 10_000), 100);
        at += ms(10);
        assert_eq!(deliver(&mut c, 100_000, at, rtt, 150, 10_000), 150);
        at += ms(10);
        assert_eq!(deliver(&mut c, 100_000, at, rtt, 10_000, 30), 180);
    }

    #[test]
    fn a_window_on_a_short_path_is_sized_for_a_wake_up_not_just_the_path() {
        // Loopback: a 20 µs round trip, each window read within 40 µs of its grant. Sized to
        // the path alone, 40 µs is two round trips and the window would stay at the floor;
        // the credit loop also waits for wake-ups, so the window doubles while it limits.
        let t0 = Instant::now();
        let us = Duration::from_micros;
        let rtt = Some(us(20));
        let mut c = RecvCredit::new(100, 100);
        c.grant(t0);
        let mut at = t0;
        for expected in [200, 400, 800] {
            at += us(40);
            let window = u64::from(c.window());
            assert_eq!(deliver(&mut c, window, at, rtt, 10_000, 10_000), expected);
        }
        // A reader at 100 bytes per 40 µs, credit returned when due: the window stops doubling
        // once a grant lasts two sizing round trips: between 1 and 4 × the 2500 bytes a
        // millisecond delivers.
        for _ in 0..2000 {
            at += us(40);
            let n = c.available().min(100);
            assert!(c.receive(n));
            c.consume(n);
            if c.wants_update() {
                c.retune(at, rtt, 100, 1 << 20, 1 << 20);
                c.grant(at);
            }
        }
        assert!((2_500..=10_000).contains(&c.window()), "{}", c.window());
    }

    #[test]
    fn without_a_round_trip_the_window_grows_only_for_a_drained_reader() {
        let t0 = Instant::now();
        let mut c = RecvCredit::new(100, 100);
        c.grant(t0);
        assert!(c.receive(80));
        c.consume(60);
        assert_eq!(c.retune(t0, None, 100, 1000, 1000), 100);
        c.consume(20);
        assert_eq!(c.retune(t0, None, 100, 1000, 1000), 200);
        assert_eq!(c.window(), 200);
    }

    #[test]
    fn the_first_byte_beyond_a_grant_yields_a_round_trip_sample() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut c = RecvCredit::new(100, 100);
        assert!(c.receive(100));
        c.consume(100);
        // Credit returned at 10 ms; bytes up to the old limit do not count; the first byte
        // beyond it arrives at 35 ms.
        c.grant(t0 + ms(10));
        assert_eq!(c.take_rtt_sample(t0 + ms(20)), None);
        assert!(c.receive(1));
        assert_eq!(c.take_rtt_sample(t0 + ms(35)), Some(ms(25)));
        assert_eq!(c.take_rtt_sample(t0 + ms(40)), None);
        // One probe at a time: a grant while one is pending does not restart it.
        c.consume(1);
        c.grant(t0 + ms(50));
        assert!(c.receive(50));
        assert_eq!(c.take_rtt_sample(t0 + ms(55)), None);
        c.consume(50);
        c.grant(t0 + ms(60));
        assert!(c.receive(50));
        assert_eq!(c.take_rtt_sample(t0 + ms(90)), Some(ms(40)));
    }

    /// 1000 bytes of first window in 100-byte payloads, one every ms from `t0`: the rate
    /// counted is 900 bytes over 9 ms, 100 bytes/ms.
    fn first_window(c: &mut RecvCredit) -> Option<u64> {
        let mut rate = None;
        for i in 0..10u32 {
            assert!(c.receive(100));
            let r = c.note_arrival(5_000 + i * 1000, 100, 1000);
            assert!(r.is_none() || i == 9, "measured early");
            rate = r;
        }
        rate
    }

    #[test]
    fn a_first_window_faster_than_a_round_trip_sizes_the_window_at_once() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut c = RecvCredit::new(1000, 1000);
        let rate = first_window(&mut c).expect("measured");
        assert_eq!(rate, 100_000);
        // Measured once.
        assert_eq!(c.note_arrival(20_000, 100, 1000), None);
        // Not before the reader has it all; then 2 × rate × round trip at once.
        let mut ramp = Ramp::new(t0, rate);
        assert!(ramp.step(&mut c, t0 + ms(1), Some(ms(50)), 1 << 20, 1 << 20));
        assert_eq!(c.window(), 1000);
        c.consume(1000);
        assert!(!ramp.step(&mut c, t0 + ms(1), Some(ms(50)), 1 << 20, 1 << 20));
        assert_eq!(c.window(), 10_000);
        // Within the budget (and the maximum).
        let mut c = RecvCredit::new(1000, 1000);
        first_window(&mut c);
        c.consume(1000);
        assert!(!Ramp::new(t0, rate).step(&mut c, t0, Some(ms(50)), 1 << 20, 500));
        assert_eq!(c.window(), 1500);
        // A window that came in one payload: as if in a millisecond.
        let mut c = RecvCredit::new(1000, 1000);
        assert!(c.receive(1000));
        assert_eq!(c.note_arrival(7, 1000, 1000), Some(1_000_000));
    }

    #[test]
    fn without_a_round_trip_credit_is_paced_at_the_first_windows_rate() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut c = RecvCredit::new(1000, 1000);
        let rate = first_window(&mut c).expect("measured");
        c.consume(1000);
        let mut ramp = Ramp::new(t0, rate);
        // At once: only the window's own credit.
        assert!(ramp.step(&mut c, t0, None, 1 << 20, 1 << 20));
        assert_eq!(c.grant(t0), 1000);
        // 20 ms later: 2000 more bytes of credit (100 bytes/ms).
        assert!(ramp.step(&mut c, t0 + ms(20), None, 1 << 20, 1 << 20));
        assert_eq!(c.grant(t0 + ms(20)), 2000);
        // A reader that falls behind gets nothing more while behind.
        assert!(c.receive(500));
        assert!(ramp.step(&mut c, t0 + ms(30), None, 1 << 20, 1 << 20));
        assert_eq!(c.grant(t0 + ms(30)), 0);
        // A round trip is known: pacing ends with the window at 2 × rate × round trip.
        c.consume(500);
        assert!(!ramp.step(&mut c, t0 + ms(40), Some(ms(40)), 1 << 20, 1 << 20));
        assert_eq!(c.window(), 8000);
        // Without one, pacing stops after PACE_LIMIT.
        let mut ramp = Ramp::new(t0, rate);
        assert!(ramp.step(&mut c, t0, None, 1 << 30, 1 << 30));
        assert!(!ramp.step(&mut c, t0 + PACE_LIMIT + ms(1), None, 1 << 30, 1 << 30));
    }

    #[test]
    fn the_fastest_first_window_over_the_longest_round_trip_stays_within_max() {
        // A window as large as credit can be (u32::MAX bytes) within the shortest span, and a
        // round trip the peer stretched to 30 days: rate × round trip × headroom exceeds u64.
        let t0 = Instant::now();
        let mut c = RecvCredit::new(1000, 1000);
        assert!(c.receive(1000));
        c.consume(1000);
        let rate = u64::from(u32::MAX) * 1000;
        let month = Duration::from_secs(30 * 24 * 3600);
        assert!(!Ramp::new(t0, rate).step(&mut c, t0, Some(month), 1 << 24, 1 << 30));
        assert_eq!(c.window(), 1 << 24);
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
