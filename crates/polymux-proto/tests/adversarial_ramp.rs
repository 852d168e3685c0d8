//! Hostile peers against the first-window ramp and credit pacing (issue 13's window sizing,
//! `flow.rs`'s `Ramp`, `connection`'s ramp map and pacing timer) and the round-trip filter
//! behind `Stats::rtt`: a raw-frame peer drives a real server [`Connection`] on a virtual clock
//! (no sleeps), and the tests assert the rules the ramp must keep whatever the peer does:
//! - the ramp map and its 5 ms timer end: however many streams ramp at once (or are reset
//!   mid-ramp, their slots reused), the timer stops within the pacing limit (one second), so
//!   it costs a bounded number of wake-ups;
//! - credit stays within the memory budget and the maximum window, whatever round trip the
//!   peer makes us measure (a huge one: windows sized from it);
//! - a forged zero round trip (a Pong sent before our Ping could arrive) harms only the
//!   peer's own throughput: windows keep their floor and the stream keeps flowing.

use std::collections::HashMap;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use polymux_proto::{Config, Connection, Dialect, Flags, Frame, Role, StreamId, StreamKey};

const MS: Duration = Duration::from_millis(1);
const KIB: usize = 1024;
/// The credit a stream starts with in both dialects with per-stream credit.
const FIRST_WINDOW: usize = 256 * KIB;
/// The dialects whose streams ramp (per-stream credit and Ping).
const RAMPING: [Dialect; 2] = [Dialect::Yamux, Dialect::NetMux];

fn encode(d: Dialect, frame: &Frame) -> Vec<u8> {
    let mut out = BytesMut::new();
    d.encode(frame, &mut out);
    out.to_vec()
}

fn syn(d: Dialect, id: u32) -> Vec<u8> {
    let frame = Frame::Data {
        stream: StreamId(id),
        flags: Flags::SYN,
        len: 0,
    };
    encode(d, &frame)
}

fn rst(d: Dialect, id: u32) -> Vec<u8> {
    let frame = Frame::Data {
        stream: StreamId(id),
        flags: Flags::RST,
        len: 0,
    };
    encode(d, &frame)
}

/// `len` bytes for stream `id`, in 64 KiB frames.
fn data(d: Dialect, id: u32, len: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let mut left = len;
    while left > 0 {
        let n = left.min(64 * KIB);
        out.extend(encode(
            d,
            &Frame::Data {
                stream: StreamId(id),
                flags: Flags::NONE,
                len: n as u32,
            },
        ));
        out.resize(out.len() + n, 0x5a);
        left -= n;
    }
    out
}

/// Credit granted per stream id in `wire` (Data payloads skipped), and the Pings' opaques.
fn scan(d: Dialect, wire: &[u8], credit: &mut HashMap<u32, u64>, pings: &mut Vec<u32>) {
    let mut at = 0;
    while at < wire.len() {
        let Ok(Some((frame, used))) = d.decode(&wire[at..]) else {
            panic!("{}: undecodable output at {at}", d.name());
        };
        at += used;
        match frame {
            Frame::Data { len, .. } => at += len as usize,
            Frame::WindowUpdate { stream, delta, .. } => {
                *credit.entry(stream.0).or_default() += u64::from(delta);
            }
            Frame::Ping { ack: false, opaque } => pings.push(opaque),
            _ => {}
        }
    }
}

/// Our side, with the test as its driver and application.
struct Side {
    d: Dialect,
    conn: Connection,
    rx: BytesMut,
    now: Instant,
    /// Credit granted beyond the first window, per stream id, as seen on the wire.
    credit: HashMap<u32, u64>,
    /// Opaques of the Pings we sent, oldest first.
    pings: Vec<u32>,
}

impl Side {
    fn server(config: Config) -> Side {
        let now = Instant::now();
        Side {
            d: config.dialect(),
            conn: Connection::new(Role::Server, config, now),
            rx: BytesMut::new(),
            now,
            credit: HashMap::new(),
            pings: Vec::new(),
        }
    }

    fn feed(&mut self, bytes: &[u8]) {
        self.rx.extend_from_slice(bytes);
        self.conn.handle_input(&mut self.rx, self.now);
        assert!(self.rx.is_empty(), "{}: input not taken", self.d.name());
        assert!(!self.conn.is_ended(), "{}: session ended", self.d.name());
    }

    /// The peer reads all our output.
    fn drain(&mut self) {
        let mut wire = Vec::new();
        while let Some(batch) = self.conn.poll_transmit(self.now) {
            batch.copy_to(&mut wire);
            self.conn.transmitted(batch);
        }
        scan(self.d, &wire, &mut self.credit, &mut self.pings);
    }

    fn accept(&mut self) -> StreamKey {
        match self.conn.poll_accept(Waker::noop(), self.now) {
            Poll::Ready(Ok(key)) => key,
            other => panic!("{}: accept: {other:?}", self.d.name()),
        }
    }

    fn read_all(&mut self, key: StreamKey) -> usize {
        let mut got = 0;
        let mut buf = vec![0; 64 * KIB];
        while let Poll::Ready(Ok(n)) = self.conn.poll_read(key, Waker::noop(), &mut buf, self.now) {
            if n == 0 {
                break;
            }
            got += n;
        }
        got
    }

    /// Opens stream `id` from the peer and sends its whole first window at once (the fastest
    /// arrival rate there is); the application accepts and reads it all.
    fn ramp_stream(&mut self, id: u32) -> StreamKey {
        self.feed(&[syn(self.d, id), data(self.d, id, FIRST_WINDOW)].concat());
        let key = self.accept();
        assert_eq!(self.read_all(key), FIRST_WINDOW, "{}", self.d.name());
        self.drain();
        key
    }

    /// Runs the timers (the peer reading everything) until `limit`; returns how many times
    /// the engine asked to be woken.
    fn run_until(&mut self, limit: Instant) -> usize {
        let mut wakes = 0;
        while let Some(at) = self.conn.poll_timeout() {
            assert!(at >= self.now, "{}: a deadline in the past", self.d.name());
            if at > limit {
                break;
            }
            wakes += 1;
            assert!(wakes < 100_000, "{}: the timer spins", self.d.name());
            self.now = at;
            self.conn.handle_timeout(at);
            self.drain();
        }
        self.now = self.now.max(limit);
        wakes
    }
}

/// Many streams ramping at once, on a session that never measures a round trip (no
/// keep-alive; the peer never sends beyond a grant): every ramp paces for at most a second,
/// then the timer stops; the paced credit stays within the window budget (half the receive
/// budget) and each stream's within the maximum window.
#[test]
fn many_ramps_without_a_round_trip_end_within_the_pacing_limit() {
    for d in RAMPING {
        let budget = 64 << 20;
        let config = Config::for_dialect(d)
            .to_builder()
            .keepalive_interval(None)
            .session_recv_budget(budget)
            .max_stream_window(4 << 20)
            .build()
            .unwrap();
        let mut s = Side::server(config);
        let start = s.now;
        for i in 0..40u32 {
            s.ramp_stream(2 * i + 1);
        }
        let wakes = s.run_until(start + Duration::from_secs(10));
        // One tick per 5 ms for a second (plus the one that finds nothing left).
        assert!(wakes <= 202, "{}: {wakes} wake-ups", d.name());
        assert_eq!(s.conn.poll_timeout(), None, "{}: a timer left", d.name());
        // Nothing was read beyond the first windows: all the grants are outstanding credit.
        // Pacing grew it (each stream wants its maximum window, at the first window's pace)
        // until the window budget, half the receive budget, stopped it.
        let granted: u64 = s.credit.values().sum();
        let initial = 40 * FIRST_WINDOW as u64;
        assert!(granted > initial, "{}: nothing paced", d.name());
        for (id, c) in &s.credit {
            assert!(*c <= 4 << 20, "{}: stream {id} granted {c}", d.name());
        }
        assert!(
            granted <= budget as u64 / 2,
            "{}: {granted} credit outstanding",
            d.name()
        );
        assert!(
            s.conn.stats().recv_windows <= budget as u64 / 2,
            "{}",
            d.name()
        );
    }
}

/// Streams reset by the peer mid-ramp and released, their slots reused by the next stream,
/// over and over: the ramps go with their streams (nothing carries over to a reused slot) and
/// the timer stops a second after the last one.
#[test]
fn streams_reset_mid_ramp_leave_no_ramp_behind() {
    for d in RAMPING {
        let config = Config::for_dialect(d)
            .to_builder()
            .keepalive_interval(None)
            .build()
            .unwrap();
        let mut s = Side::server(config);
        let mut slots = std::collections::HashSet::new();
        for i in 0..500u32 {
            let id = 2 * i + 1;
            let key = s.ramp_stream(id);
            slots.insert(key);
            s.now += MS;
            s.conn.handle_timeout(s.now);
            s.feed(&rst(d, id));
            s.conn.release(key, s.now);
            s.drain();
        }
        assert!(slots.len() <= 2, "{}: slots not reused", d.name());
        assert_eq!(s.conn.stats().streams, 0, "{}", d.name());
        assert_eq!(s.conn.stats().recv_windows, 0, "{}", d.name());
        let last = s.now;
        let wakes = s.run_until(last + Duration::from_secs(10));
        assert!(
            wakes <= 2,
            "{}: {wakes} wake-ups after the last stream",
            d.name()
        );
        assert_eq!(s.conn.poll_timeout(), None, "{}: a timer left", d.name());
        // A stream reset while its credit is being paced, its slot reused at once: the new
        // stream ramps as the first stream of a new session does (at its own pace, from its
        // own start), not with what is left of the old one's ramp.
        let a = s.ramp_stream(1001);
        s.run_until(s.now + 500 * MS);
        s.feed(&rst(d, 1001));
        s.conn.release(a, s.now);
        let reused = paced_credit(&mut s, 1003);
        let expected = paced_credit(&mut fresh(d), 1);
        // The pace: 3 × 64 KiB over 30 ms. Ticks fall at other times in the two sessions.
        let slack = (3 * 64 * KIB / 3 + 16 * KIB) as u64;
        assert!(
            reused.abs_diff(expected) <= slack,
            "{}: {reused} paced to a reused slot, {expected} to a new session",
            d.name()
        );
    }
}

/// A server whose session never measures a round trip.
fn fresh(d: Dialect) -> Side {
    let config = Config::for_dialect(d)
        .to_builder()
        .keepalive_interval(None)
        .build()
        .unwrap();
    Side::server(config)
}

/// Credit granted to stream `id` within 100 ms of its first window, which arrives in four
/// frames 10 ms apart (a path of about 6.5 MB/s) and is read at once.
fn paced_credit(s: &mut Side, id: u32) -> u64 {
    let d = s.d;
    s.feed(&syn(d, id));
    let key = s.accept();
    for i in 0..4 {
        if i > 0 {
            s.run_until(s.now + 10 * MS);
        }
        s.feed(&data(d, id, 64 * KIB));
    }
    assert_eq!(s.read_all(key), FIRST_WINDOW, "{}", d.name());
    s.drain();
    let start = s.now;
    s.run_until(start + 100 * MS);
    s.credit.get(&id).copied().unwrap_or(0)
}

/// The peer answers our first Ping only after 20 s (it keeps the session alive with its own
/// Pings): windows sized from that round trip are capped by the maximum window, and their
/// growth, summed, by the window budget.
#[test]
fn a_huge_round_trip_sizes_windows_within_the_maximum_and_the_budget() {
    for d in RAMPING {
        let budget = 8 << 20;
        let config = Config::for_dialect(d)
            .to_builder()
            .keepalive_interval(Some(Duration::from_secs(1)))
            .keepalive_timeout(Duration::from_secs(60))
            .session_recv_budget(budget)
            .max_stream_window(2 << 20)
            .build()
            .unwrap();
        let mut s = Side::server(config);
        let start = s.now;
        s.run_until(start + Duration::from_secs(1));
        let opaque = s.pings[0];
        s.now = start + Duration::from_secs(21);
        s.feed(&encode(d, &Frame::Ping { ack: true, opaque }));
        assert_eq!(
            s.conn.stats().rtt,
            Some(Duration::from_secs(20)),
            "{}",
            d.name()
        );
        for i in 0..8u32 {
            s.ramp_stream(2 * i + 1);
        }
        for (id, c) in &s.credit {
            assert!(
                *c <= 2 << 20,
                "{}: stream {id} granted {c} beyond its maximum window",
                d.name()
            );
        }
        let granted: u64 = s.credit.values().sum();
        assert!(
            granted > 8 * FIRST_WINDOW as u64,
            "{}: no window sized",
            d.name()
        );
        // Growth within the window budget; a new stream's initial window always comes on
        // top (the receive budget, which pauses input, bounds the memory behind it).
        let bound = budget as u64 / 2 + 8 * FIRST_WINDOW as u64;
        assert!(
            granted <= bound,
            "{}: {granted} credit outstanding",
            d.name()
        );
        assert!(s.conn.stats().recv_windows <= bound, "{}", d.name());
    }
}

/// The peer forges a zero round trip by answering our Ping before it could have arrived:
/// Pongs for the opaques a counter would use, sent as soon as each Ping is queued. They
/// answer nothing (`Stats::rtt` stays unknown, windows are not sized from them); the real
/// answer, 30 ms later, is the round trip.
#[test]
fn a_guessed_pong_is_not_a_round_trip() {
    for d in RAMPING {
        let config = Config::for_dialect(d)
            .to_builder()
            .keepalive_interval(Some(Duration::from_secs(1)))
            .build()
            .unwrap();
        let mut s = Side::server(config);
        let start = s.now;
        // The Ping is queued; the guesses arrive before the peer could have read it.
        s.run_until(start + Duration::from_secs(1));
        let guesses: Vec<u8> = (0..=16)
            .flat_map(|opaque| encode(d, &Frame::Ping { ack: true, opaque }))
            .collect();
        s.feed(&guesses);
        assert_eq!(
            s.conn.stats().rtt,
            None,
            "{}: a guess was a round trip",
            d.name()
        );
        let opaque = s.pings[0];
        s.now += 30 * MS;
        s.feed(&encode(d, &Frame::Ping { ack: true, opaque }));
        assert_eq!(s.conn.stats().rtt, Some(30 * MS), "{}", d.name());
    }
}

/// A zero round trip all the same (data beyond a grant arriving the instant it was made: a
/// peer that sent beyond its credit, betting on the grant, and won): `Stats::rtt` reports what
/// was measured; windows keep their floor (the initial window) and the stream keeps flowing,
/// so the forgery harms only the forger's own throughput.
#[test]
fn a_zero_round_trip_leaves_windows_at_their_floor() {
    for d in RAMPING {
        let config = Config::for_dialect(d)
            .to_builder()
            .keepalive_interval(None)
            .build()
            .unwrap();
        let mut s = Side::server(config);
        let key = s.ramp_stream(1);
        // Beyond the first window, at the instant its credit was returned.
        s.feed(&data(d, 1, 1));
        assert_eq!(s.conn.stats().rtt, Some(Duration::ZERO), "{}", d.name());
        assert_eq!(s.read_all(key), 1, "{}", d.name());
        s.drain();
        // Window after window, the stream flows; credit keeps coming.
        let mut sent = FIRST_WINDOW as u64 + 1;
        for _ in 0..20 {
            let credit = FIRST_WINDOW as u64 + s.credit.get(&1).copied().unwrap_or(0);
            let n = (credit - sent) as usize;
            assert!(n > 0, "{}: the stream stalled", d.name());
            s.run_until(s.now + MS);
            s.feed(&data(d, 1, n));
            sent += n as u64;
            assert_eq!(s.read_all(key), n, "{}", d.name());
            s.drain();
        }
        assert!(
            s.conn.stats().recv_windows >= FIRST_WINDOW as u64,
            "{}",
            d.name()
        );
    }
}
