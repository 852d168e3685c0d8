//! Hostile peers against the real engine: liveness, limits and shutdown (issue 9, items 3–5).
//!
//! Each test plays a hostile peer as raw frames (encoded with the dialect's own codec) and the
//! driver by hand on a virtual clock (`Instant` arithmetic, no sleeps), and asserts typed
//! errors, bounds on what the session holds (through `Stats` and the output it queues), and
//! that a well-behaved stream keeps working where the session survives. Rules checked:
//! - a peer that stops reading ends the session with `WriteTimeout` after `write_timeout` of
//!   no write progress, whatever it sends; a slow reader is never cut off;
//! - while input is paused on the receive budget, a driver that reads ahead still detects a
//!   dead peer, and a live one (or a full read-ahead) keeps the session up;
//! - floods (SYN, Ping, NOP) are refused or answered within fixed bounds, refusals counted per
//!   reason, and `max_streams` N admits exactly N streams;
//! - credit violations and window-update overflow end the session with the typed violation
//!   (and GoAway where the dialect has it);
//! - on smux, which has no GoAway, `go_away()`/`close()` refuse new streams locally and drain
//!   the open ones.
//! - refusals are logged at info once per burst, then summarised.

use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use polymux_proto::{
    Config, Connection, Dialect, Error, Flags, Frame, Role, StreamId, StreamKey, Violation,
    PAUSED_READ_AHEAD,
};

const ALL: [Dialect; 4] = [
    Dialect::Yamux,
    Dialect::SmuxV1,
    Dialect::SmuxV2,
    Dialect::NetMux,
];
const MS: Duration = Duration::from_millis(1);
const KIB: usize = 1024;
/// The control queue's cap (see `tx.rs`), plus the one frame that may cross it.
const CONTROL_CAP: usize = 64 * KIB + 12;

fn waker() -> &'static Waker {
    Waker::noop()
}

fn is_smux(d: Dialect) -> bool {
    matches!(d, Dialect::SmuxV1 | Dialect::SmuxV2)
}

// ---- the hostile peer's frames ------------------------------------------------------------

fn encode(d: Dialect, frame: &Frame) -> Vec<u8> {
    let mut out = BytesMut::new();
    d.encode(frame, &mut out);
    out.to_vec()
}

fn flagged(d: Dialect, id: u32, flags: Flags) -> Vec<u8> {
    encode(
        d,
        &Frame::Data {
            stream: StreamId(id),
            flags,
            len: 0,
        },
    )
}

fn syn(d: Dialect, id: u32) -> Vec<u8> {
    flagged(d, id, Flags::SYN)
}

fn fin(d: Dialect, id: u32) -> Vec<u8> {
    flagged(d, id, Flags::FIN)
}

fn data(d: Dialect, id: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = encode(
        d,
        &Frame::Data {
            stream: StreamId(id),
            flags: Flags::NONE,
            len: payload.len() as u32,
        },
    );
    out.extend_from_slice(payload);
    out
}

/// A keep-alive from the peer: Ping on yamux-shaped dialects, NOP on smux.
fn keepalive(d: Dialect, opaque: u32) -> Vec<u8> {
    if is_smux(d) {
        encode(d, &Frame::Nop)
    } else {
        encode(d, &Frame::Ping { ack: false, opaque })
    }
}

/// The frames in `wire` (Data payloads skipped).
fn frames(d: Dialect, wire: &[u8]) -> Vec<Frame> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < wire.len() {
        let Ok(Some((frame, used))) = d.decode(&wire[at..]) else {
            panic!("{}: undecodable output at {at}", d.name());
        };
        at += used;
        if let Frame::Data { len, .. } = frame {
            at += len as usize;
        }
        out.push(frame);
    }
    out
}

// ---- our side, with the test as its driver and application -------------------------------

struct Side {
    d: Dialect,
    conn: Connection,
    /// Bytes received and not yet decoded (the driver's receive buffer).
    rx: BytesMut,
    now: Instant,
}

impl Side {
    fn server(config: Config) -> Side {
        let now = Instant::now();
        Side {
            d: config.dialect(),
            conn: Connection::new(Role::Server, config, now),
            rx: BytesMut::new(),
            now,
        }
    }

    fn ctx(&self) -> &'static str {
        self.d.name()
    }

    /// The peer's bytes arrive; the engine decodes what it will.
    fn feed(&mut self, bytes: &[u8]) {
        self.rx.extend_from_slice(bytes);
        self.conn.handle_input(&mut self.rx, self.now);
    }

    /// Everything queued for the peer, taken and reported written (the peer reads).
    fn output(&mut self) -> Vec<u8> {
        let mut wire = Vec::new();
        while let Some(batch) = self.conn.poll_transmit(self.now) {
            batch.copy_to(&mut wire);
            self.conn.transmitted(batch);
        }
        wire
    }

    /// Feeds `bytes` as a driver would: whenever input pauses on the control queue, the peer
    /// reads our output. Returns the largest batch of control bytes that was queued.
    fn feed_draining(&mut self, bytes: &[u8]) -> usize {
        self.rx.extend_from_slice(bytes);
        let mut largest = 0;
        for _ in 0..1_000_000 {
            self.conn.handle_input(&mut self.rx, self.now);
            while let Some(batch) = self.conn.poll_transmit(self.now) {
                largest = largest.max(batch.control.len());
                self.conn.transmitted(batch);
            }
            if self.rx.is_empty() || self.conn.is_ended() {
                return largest;
            }
            assert!(self.conn.wants_input(), "{}: input stuck", self.ctx());
        }
        panic!("{}: input did not drain", self.ctx());
    }

    fn accept(&mut self) -> StreamKey {
        match self.conn.poll_accept(waker(), self.now) {
            Poll::Ready(Ok(key)) => key,
            other => panic!("{}: accept: {other:?}", self.ctx()),
        }
    }

    fn read_all(&mut self, key: StreamKey) -> Vec<u8> {
        let mut got = Vec::new();
        let mut buf = vec![0; 64 * KIB];
        while let Poll::Ready(Ok(n)) = self.conn.poll_read(key, waker(), &mut buf, self.now) {
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        got
    }

    /// Advances the clock to `t`, firing the timer as a driver would.
    fn advance_to(&mut self, t: Instant) {
        self.now = t;
        self.conn.handle_timeout(t);
    }

    /// Runs the engine's timers until it ends or `limit` passes, calling `each` at every
    /// deadline first (the peer's turn). Returns when it ended.
    fn run_until(&mut self, limit: Instant, mut each: impl FnMut(&mut Side)) -> Option<Instant> {
        for _ in 0..100_000 {
            let Some(at) = self.conn.poll_timeout() else {
                break;
            };
            assert!(at >= self.now, "{}: a deadline in the past", self.ctx());
            if at > limit {
                break;
            }
            self.now = at;
            each(self);
            self.conn.handle_timeout(at);
            if self.conn.is_ended() {
                return Some(at);
            }
        }
        None
    }
}

fn config(d: Dialect) -> polymux_proto::ConfigBuilder {
    Config::for_dialect(d)
        .to_builder()
        .keepalive_interval(Some(Duration::from_secs(1)))
        .keepalive_timeout(Duration::from_secs(2))
        .write_timeout(Some(Duration::from_secs(5)))
}

/// A server with one accepted stream (#1) carrying "hello", all output taken.
fn with_stream(config: Config) -> (Side, StreamKey) {
    let mut s = Side::server(config);
    let d = s.d;
    s.feed(&[syn(d, 1), data(d, 1, b"hello")].concat());
    let key = s.accept();
    assert_eq!(s.read_all(key), b"hello", "{}", d.name());
    s.output();
    (s, key)
}

/// The well-behaved stream still carries data both ways.
fn check_stream_works(s: &mut Side, key: StreamKey) {
    let d = s.d;
    s.feed(&data(d, 1, b"still here"));
    assert_eq!(s.read_all(key), b"still here", "{}", d.name());
    assert_eq!(
        s.conn.poll_write(key, waker(), b"reply", s.now),
        Poll::Ready(Ok(5)),
        "{}",
        d.name()
    );
    let out = frames(d, &s.output());
    assert!(
        out.iter().any(|f| matches!(
            f,
            Frame::Data {
                stream: StreamId(1),
                len: 5,
                ..
            }
        )),
        "{}: the reply was not sent: {out:?}",
        d.name()
    );
}

// ---- a peer that never reads ---------------------------------------------------------------

/// The peer keeps sending keep-alives (so it looks alive on input) but reads nothing: our
/// output stays blocked, and the session ends with `WriteTimeout` exactly `write_timeout`
/// after the transport first refused bytes — never earlier, and the deadline is announced.
#[test]
fn never_reading_peer_ends_with_write_timeout() {
    for d in ALL {
        let (mut s, key) = with_stream(config(d).build().unwrap());
        // The application writes until the session refuses more.
        let chunk = vec![7u8; 64 * KIB];
        let mut queued = 0;
        while let Poll::Ready(Ok(n)) = s.conn.poll_write(key, waker(), &chunk, s.now) {
            queued += n;
            assert!(queued <= 2 * 1024 * KIB, "{}: writes unbounded", d.name());
        }
        assert!(queued > 0, "{}", d.name());
        // The driver takes a batch; the transport accepts none of it.
        let batch = s.conn.poll_transmit(s.now).expect("output");
        assert!(!batch.is_empty());
        let blocked_at = s.now;
        s.conn.handle_write_blocked(blocked_at);
        let deadline = blocked_at + Duration::from_secs(5);
        let mut opaque = 0;
        let ended = s.run_until(blocked_at + Duration::from_secs(60), |s| {
            assert!(s.conn.poll_timeout() <= Some(deadline));
            // The peer sends a keep-alive at every turn; it never reads.
            opaque += 1;
            let ka = keepalive(s.d, opaque);
            s.feed(&ka);
            // Later stalls do not restart the clock.
            s.conn.handle_write_blocked(s.now);
        });
        assert_eq!(ended, Some(deadline), "{}", d.name());
        assert_eq!(
            s.conn.end_reason(),
            Some(&Error::WriteTimeout),
            "{}",
            d.name()
        );
        assert_eq!(
            s.conn.poll_write(key, waker(), b"x", s.now),
            Poll::Ready(Err(Error::WriteTimeout)),
            "{}",
            d.name()
        );
    }
}

/// A peer that reads slowly, but reads, is never cut off: each byte the transport takes
/// restarts the clock.
#[test]
fn slow_reader_is_not_cut_off() {
    for d in ALL {
        let (mut s, key) = with_stream(config(d).build().unwrap());
        let step = Duration::from_millis(4_500);
        let start = s.now;
        for i in 1..=20u32 {
            s.conn.handle_write_blocked(s.now);
            let t = start + step * i;
            // Keep-alive traffic both ways so only the write side is in question.
            let ka = keepalive(d, i);
            s.feed(&ka);
            s.run_until(t, |s| {
                let ka = keepalive(s.d, 1000);
                s.feed(&ka);
            });
            s.advance_to(t);
            assert_eq!(
                s.conn.end_reason(),
                None,
                "{} after {i} slow steps",
                d.name()
            );
            // A little progress (the transport took a few bytes), then blocked again.
            s.conn.handle_write_progress();
            s.output();
        }
        check_stream_works(&mut s, key);
    }
}

/// With `write_timeout` disabled, a blocked transport never ends the session by itself.
#[test]
fn write_timeout_none_waits_forever() {
    let d = Dialect::Yamux;
    let (mut s, _key) = with_stream(config(d).write_timeout(None).build().unwrap());
    s.conn.handle_write_blocked(s.now);
    let mut opaque = 0;
    let ended = s.run_until(s.now + Duration::from_secs(600), |s| {
        opaque += 1;
        let ka = keepalive(s.d, opaque);
        s.feed(&ka);
        // Our probes are answered, so keep-alive is satisfied.
        for f in frames(s.d, &s.output()) {
            if let Frame::Ping { ack: false, opaque } = f {
                let pong = encode(s.d, &Frame::Ping { ack: true, opaque });
                s.feed(&pong);
            }
        }
    });
    assert_eq!(ended, None);
}

// ---- keep-alive while input is paused on the receive budget ---------------------------------

/// A server whose receive budget (256 KiB) is full: stream #1 holds most of it unread and the
/// rest of its data, then a frame for stream #3, wait undecoded. Returns it with the keys of streams #1 and #3.
fn paused_on_budget(d: Dialect) -> (Side, StreamKey, StreamKey) {
    let config = config(d).session_recv_budget(256 * KIB).build().unwrap();
    let mut s = Side::server(config);
    s.feed(&[syn(d, 1), syn(d, 3)].concat());
    let one = s.accept();
    let three = s.accept();
    s.output();
    let piece = vec![1u8; 16 * KIB];
    for _ in 0..16 {
        s.feed(&data(d, 1, &piece));
    }
    // The budget counts the memory held (slices pin their input buffer): it fills within the
    // last piece, which waits undecoded with the frame for #3 behind it.
    let buffered = s.conn.stats().recv_buffered;
    assert!(buffered > 200 * KIB, "{}: {buffered}", d.name());
    s.feed(&data(d, 3, b"behind the pause"));
    assert!(!s.conn.wants_input(), "{}", d.name());
    assert!(s.conn.wants_read_ahead(), "{}", d.name());
    assert!(!s.rx.is_empty(), "{}", d.name());
    (s, one, three)
}

/// A driver that does not read ahead: the silence is ours, so the session stays up however
/// long the application does not read (the pre-existing contract, kept for such drivers).
#[test]
fn paused_without_read_ahead_is_not_a_dead_peer() {
    for d in ALL {
        let (mut s, _, _) = paused_on_budget(d);
        let ended = s.run_until(s.now + Duration::from_secs(120), |s| {
            s.output();
        });
        assert_eq!(ended, None, "{}", d.name());
    }
}

/// A driver that reads ahead during the pause and sees nothing arrive: the peer is dead, and
/// keep-alive says so within interval + timeout.
#[test]
fn paused_with_read_ahead_detects_a_dead_peer() {
    for d in ALL {
        let (mut s, _, _) = paused_on_budget(d);
        let paused_at = s.now;
        let undecoded = s.rx.len();
        s.conn.handle_paused_input(undecoded, false, s.now);
        let ended = s.run_until(paused_at + Duration::from_secs(120), |s| {
            s.output();
            // Still reading ahead; nothing arrives.
            let undecoded = s.rx.len();
            s.conn.handle_paused_input(undecoded, false, s.now);
        });
        let ended = ended.unwrap_or_else(|| panic!("{}: a dead peer went unnoticed", d.name()));
        assert!(
            ended <= paused_at + Duration::from_secs(3),
            "{}: ended {:?} after the pause",
            d.name(),
            ended - paused_at
        );
        assert_eq!(
            s.conn.end_reason(),
            Some(&Error::KeepAliveTimeout),
            "{}",
            d.name()
        );
    }
}

/// A driver that reads ahead and sees the peer's keep-alives (answers to our probes on
/// yamux-shaped dialects, NOPs on smux) arrive: the peer is alive, the session stays up; once
/// the application reads, everything read ahead is decoded, nothing lost.
#[test]
fn paused_with_read_ahead_keeps_a_live_peer() {
    for d in ALL {
        let (mut s, one, three) = paused_on_budget(d);
        let start = s.now;
        let ended = s.run_until(start + Duration::from_secs(60), |s| {
            let d = s.d;
            let mut reply = Vec::new();
            for f in frames(d, &s.output()) {
                if let Frame::Ping { ack: false, opaque } = f {
                    reply.extend(encode(d, &Frame::Ping { ack: true, opaque }));
                }
            }
            if is_smux(d) {
                reply.extend(keepalive(d, 0));
            }
            // Read ahead: the bytes wait undecoded, but they arrived.
            s.rx.extend_from_slice(&reply);
            let undecoded = s.rx.len();
            s.conn.handle_paused_input(undecoded, false, s.now);
        });
        assert_eq!(ended, None, "{}: a live peer was declared dead", d.name());
        assert!(s.rx.len() < PAUSED_READ_AHEAD, "{}", d.name());
        // The application reads stream #1: input resumes (the driver offers the undecoded
        // bytes again), and stream #3 gets its bytes.
        let mut got = s.read_all(one).len();
        assert!(s.conn.wants_input(), "{}", d.name());
        s.conn.handle_input(&mut s.rx, s.now);
        assert!(s.rx.is_empty(), "{}: read-ahead bytes left", d.name());
        got += s.read_all(one).len();
        assert_eq!(got, 256 * KIB, "{}", d.name());
        assert_eq!(s.read_all(three), b"behind the pause", "{}", d.name());
        assert_eq!(s.conn.end_reason(), None, "{}", d.name());
    }
}

/// The peer sent its last bytes and closed the transport while we were paused: the driver
/// saw EOF during the read-ahead. Nothing more can arrive, so the silence is not the peer's
/// fault; the bytes wait for the application, and the EOF is reported after them.
#[test]
fn eof_during_read_ahead_waits_for_the_application() {
    for d in ALL {
        let (mut s, one, three) = paused_on_budget(d);
        let last = fin(d, 3);
        s.rx.extend_from_slice(&last);
        let undecoded = s.rx.len();
        s.conn.handle_paused_input(undecoded, true, s.now);
        let ended = s.run_until(s.now + Duration::from_secs(120), |s| {
            s.output();
            let undecoded = s.rx.len();
            s.conn.handle_paused_input(undecoded, true, s.now);
        });
        assert_eq!(ended, None, "{}", d.name());
        let mut got = s.read_all(one).len();
        s.conn.handle_input(&mut s.rx, s.now);
        assert!(s.rx.is_empty(), "{}", d.name());
        got += s.read_all(one).len();
        assert_eq!(got, 256 * KIB, "{}", d.name());
        s.conn.handle_eof(0);
        assert_eq!(s.read_all(three), b"behind the pause", "{}", d.name());
        assert_eq!(
            s.conn.end_reason(),
            Some(&Error::TransportClosed),
            "{}",
            d.name()
        );
    }
}

/// Once the read-ahead is full, the silence is ours again: no timeout, however long.
#[test]
fn full_read_ahead_is_our_silence() {
    for d in ALL {
        let (mut s, _, _) = paused_on_budget(d);
        let filler = data(d, 3, &vec![2u8; PAUSED_READ_AHEAD]);
        s.rx.extend_from_slice(&filler);
        let undecoded = s.rx.len();
        s.conn.handle_paused_input(undecoded, false, s.now);
        let ended = s.run_until(s.now + Duration::from_secs(120), |s| {
            s.output();
            let undecoded = s.rx.len();
            s.conn.handle_paused_input(undecoded, false, s.now);
        });
        assert_eq!(ended, None, "{}", d.name());
    }
}

// ---- floods -----------------------------------------------------------------------------------

/// 10,000 opens in one burst, each with a little data: the backlog, then the stream limit,
/// refuse them (counted per reason), the queued refusals stay within the control cap, the
/// table never exceeds `max_streams`, and the well-behaved stream carries on.
#[test]
fn syn_flood_burst_is_refused_within_bounds() {
    for d in ALL {
        let config = config(d)
            .max_streams(100)
            .accept_backlog(64)
            .build()
            .unwrap();
        let (mut s, key) = with_stream(config);
        let flood: Vec<u8> = (0..10_000u32)
            .flat_map(|i| [syn(d, 3 + 2 * i), data(d, 3 + 2 * i, &[9; 16])].concat())
            .collect();
        let largest = s.feed_draining(&flood);
        assert!(
            largest <= CONTROL_CAP,
            "{}: control queue {largest}",
            d.name()
        );
        let st = s.conn.stats();
        assert_eq!(st.opened_inbound, 10_001, "{}", d.name());
        assert_eq!(st.pending_accept, 64, "{}", d.name());
        assert_eq!(st.refused_backlog, 10_000 - 64, "{}", d.name());
        assert_eq!(
            (st.refused_limit, st.refused_closing),
            (0, 0),
            "{}",
            d.name()
        );
        assert_eq!(st.refused_inbound, st.refused_backlog, "{}", d.name());
        // Only admitted streams hold data: 16 bytes each.
        assert_eq!(st.recv_buffered, 64 * 16, "{}", d.name());

        // The application accepts them all; a second burst meets the stream limit first.
        let held: Vec<StreamKey> = (0..64).map(|_| s.accept()).collect();
        let flood: Vec<u8> = (10_000..11_000u32)
            .flat_map(|i| syn(d, 3 + 2 * i))
            .collect();
        let largest = s.feed_draining(&flood);
        assert!(largest <= CONTROL_CAP, "{}", d.name());
        let st = s.conn.stats();
        // N means N: exactly `max_streams` streams are live, the rest refused for the limit.
        assert_eq!(st.streams, 100, "{}", d.name());
        assert_eq!(st.refused_limit, 1_000 - 35, "{}", d.name());
        assert_eq!(
            st.refused_inbound,
            st.refused_backlog + st.refused_limit,
            "{}",
            d.name()
        );
        assert_eq!(held.len(), 64);
        check_stream_works(&mut s, key);
    }
}

/// Opens arriving one every 10 ms of virtual time, which the application accepts and keeps:
/// exactly `max_streams` are admitted; once the peer and the application close them, the
/// same pace is admitted again.
#[test]
fn syn_flood_paced_admits_exactly_the_limit() {
    for d in ALL {
        let config = config(d)
            .max_streams(100)
            .accept_backlog(64)
            .build()
            .unwrap();
        let (mut s, key) = with_stream(config);
        let mut held = Vec::new();
        let mut next_id = 3;
        for _ in 0..2_000 {
            let t = s.now + 10 * MS;
            s.feed(&syn(d, next_id));
            next_id += 2;
            while let Poll::Ready(Ok(k)) = s.conn.poll_accept(waker(), s.now) {
                held.push(k);
            }
            s.output();
            // The peer answers keep-alives, so the session stays up throughout.
            s.run_until(t, |s| {
                let ka = keepalive(s.d, 7);
                s.feed(&ka);
            });
            s.advance_to(t);
        }
        let st = s.conn.stats();
        assert_eq!(s.conn.end_reason(), None, "{}", d.name());
        assert_eq!((held.len(), st.streams), (99, 100), "{}", d.name());
        assert_eq!(st.refused_limit, 2_000 - 99, "{}", d.name());
        assert_eq!(st.refused_backlog, 0, "{}", d.name());

        // Both ends close the held streams: their slots are free again.
        for (i, k) in held.drain(..).enumerate() {
            s.feed(&fin(d, 3 + 2 * i as u32));
            assert_eq!(s.conn.close_write(k, s.now), Ok(()), "{}", d.name());
            s.conn.release(k, s.now);
        }
        s.output();
        assert_eq!(s.conn.stats().streams, 1, "{}", d.name());
        for _ in 0..50 {
            s.feed(&syn(d, next_id));
            next_id += 2;
            held.push(s.accept());
        }
        assert_eq!(s.conn.stats().refused_limit, 2_000 - 99, "{}", d.name());
        check_stream_works(&mut s, key);
    }
}

/// 100,000 Pings at once from a peer that never reads: decoding stops once the control queue
/// is full (no unbounded growth), the bytes wait in the receive buffer, and keep-alive does
/// not blame the peer for the silence we caused; the write timeout ends the session. A peer
/// that does read gets every answer, in batches within the cap.
#[test]
fn ping_flood_is_held_at_the_control_cap() {
    for d in [Dialect::Yamux, Dialect::NetMux] {
        let (mut s, key) = with_stream(config(d).build().unwrap());
        let flood: Vec<u8> = (0..100_000u32).flat_map(|i| keepalive(d, i)).collect();
        s.feed(&flood);
        assert!(!s.conn.wants_input(), "{}", d.name());
        let answered = flood.len() - s.rx.len();
        assert!(
            answered <= CONTROL_CAP,
            "{}: {answered} bytes decoded",
            d.name()
        );
        // A reading peer drains it all, in bounded batches.
        let mut rest = s.rx.split().to_vec();
        rest.extend(data(d, 1, b"after the flood"));
        let largest = s.feed_draining(&rest);
        assert!(
            largest <= CONTROL_CAP,
            "{}: control queue {largest}",
            d.name()
        );
        assert_eq!(s.read_all(key), b"after the flood", "{}", d.name());

        // Again, but the peer reads nothing: the session holds, then ends on the write side.
        s.feed(&flood);
        assert!(!s.conn.wants_input(), "{}", d.name());
        let batch = s.conn.poll_transmit(s.now).expect("pongs");
        assert!(batch.control.len() <= CONTROL_CAP, "{}", d.name());
        let blocked_at = s.now;
        s.conn.handle_write_blocked(blocked_at);
        let ended = s.run_until(blocked_at + Duration::from_secs(60), |s| {
            // The driver offers the waiting pings whenever the engine wants them; they prove
            // the peer alive, and the control cap stops decoding again at once.
            if s.conn.wants_input() {
                s.conn.handle_input(&mut s.rx, s.now);
                assert!(!s.conn.wants_input());
            }
        });
        assert!(
            !s.rx.is_empty(),
            "{}: the flood was not held back",
            d.name()
        );
        assert_eq!(
            ended,
            Some(blocked_at + Duration::from_secs(5)),
            "{}",
            d.name()
        );
        assert_eq!(
            s.conn.end_reason(),
            Some(&Error::WriteTimeout),
            "{}",
            d.name()
        );
    }
}

/// smux has no Ping: a NOP flood is consumed without any output or growth.
#[test]
fn nop_flood_costs_nothing() {
    for d in [Dialect::SmuxV1, Dialect::SmuxV2] {
        let (mut s, key) = with_stream(config(d).build().unwrap());
        let flood: Vec<u8> = (0..100_000).flat_map(|_| keepalive(d, 0)).collect();
        s.feed(&flood);
        assert!(s.rx.is_empty(), "{}", d.name());
        assert_eq!(s.output(), b"", "{}", d.name());
        assert_eq!(s.conn.stats().recv_buffered, 0, "{}", d.name());
        check_stream_works(&mut s, key);
    }
}

// ---- credit -----------------------------------------------------------------------------------

/// Data beyond the credit granted ends the session with the typed violation before any of
/// it is buffered, announced with GoAway where the dialect has one; bytes that arrived within
/// credit on another stream are still readable.
#[test]
fn credit_violation_is_typed_and_announced() {
    for d in [Dialect::Yamux, Dialect::SmuxV2, Dialect::NetMux] {
        let (mut s, key) = with_stream(config(d).build().unwrap());
        s.feed(&[syn(d, 3), data(d, 1, b" world")].concat());
        s.output();
        // The whole initial window (in frames smux can carry), then one byte more.
        let piece = vec![0u8; 32 * KIB];
        for _ in 0..8 {
            s.feed(&data(d, 3, &piece));
        }
        assert_eq!(s.conn.end_reason(), None, "{}", d.name());
        s.feed(&data(d, 3, b"!"));
        assert_eq!(
            s.conn.end_reason(),
            Some(&Error::ProtocolViolation(Violation::DataBeyondCredit {
                stream: StreamId(3),
                len: 1,
                credit: 0,
            })),
            "{}",
            d.name()
        );
        // Memory stayed within the credit: nothing of the violating frame was kept.
        assert_eq!(s.conn.stats().recv_buffered, 6 + 256 * KIB, "{}", d.name());
        let goaway = frames(d, &s.output()).into_iter().find_map(|f| match f {
            Frame::GoAway { code } => Some(code),
            _ => None,
        });
        let expected = match d {
            Dialect::Yamux => Some(1),
            Dialect::NetMux => Some(3),
            _ => None,
        };
        assert_eq!(goaway, expected, "{}", d.name());
        assert_eq!(s.read_all(key), b" world", "{}", d.name());
    }
}

/// A window update that would push the send window past 2^32 - 1 is a typed violation
/// (GoAway on yamux-shaped dialects). smux v2's UPD states the window instead of adding to
/// it, so it cannot overflow; a huge one still leaves writes bounded by the write budget.
#[test]
fn window_update_overflow_is_typed() {
    for d in [Dialect::Yamux, Dialect::NetMux] {
        let (mut s, _key) = with_stream(config(d).build().unwrap());
        let update = encode(
            d,
            &Frame::WindowUpdate {
                stream: StreamId(1),
                flags: Flags::NONE,
                delta: u32::MAX,
            },
        );
        s.feed(&update);
        assert_eq!(
            s.conn.end_reason(),
            Some(&Error::ProtocolViolation(Violation::WindowOverflow {
                stream: StreamId(1)
            })),
            "{}",
            d.name()
        );
        let goaway = frames(d, &s.output())
            .into_iter()
            .any(|f| matches!(f, Frame::GoAway { .. }));
        assert!(goaway, "{}", d.name());
    }
    let d = Dialect::SmuxV2;
    let (mut s, key) = with_stream(config(d).build().unwrap());
    let update = encode(
        d,
        &Frame::Update {
            stream: StreamId(1),
            consumed: 0,
            window: u32::MAX,
        },
    );
    s.feed(&update);
    assert_eq!(s.conn.end_reason(), None);
    let chunk = vec![0u8; 256 * KIB];
    let mut queued = 0;
    while let Poll::Ready(Ok(n)) = s.conn.poll_write(key, waker(), &chunk, s.now) {
        queued += n;
        // One stream may hold a quarter of the write budget (the others find room).
        assert!(
            queued <= 256 * KIB,
            "writes beyond the stream's share of the write budget"
        );
    }
    assert_eq!(queued, 256 * KIB);
}

// ---- shutdown without GoAway ------------------------------------------------------------------

/// `go_away()` and then `close()` behave alike on every dialect, minus the wire frame on smux:
/// new streams are refused (RST, FIN on smux) and counted, open ones carry on to their end,
/// and then the session ends.
#[test]
fn go_away_and_close_refuse_new_streams_and_drain_open_ones() {
    for d in ALL {
        let (mut s, key) = with_stream(config(d).build().unwrap());
        assert_eq!(s.conn.go_away(), Ok(()), "{}", d.name());
        let sent = frames(d, &s.output());
        let expected = if d.has_goaway() {
            vec![Frame::GoAway { code: 0 }]
        } else {
            Vec::new()
        };
        assert_eq!(sent, expected, "{}", d.name());

        s.feed(&[syn(d, 3), data(d, 3, b"too late")].concat());
        let refusal = frames(d, &s.output());
        let refused = refusal.iter().any(|f| match f {
            Frame::Data { stream, flags, .. } | Frame::WindowUpdate { stream, flags, .. } => {
                *stream == StreamId(3)
                    && flags.contains(if d.has_reset() {
                        Flags::RST
                    } else {
                        Flags::FIN
                    })
            }
            _ => false,
        });
        assert!(refused, "{}: {refusal:?}", d.name());
        assert_eq!(s.conn.stats().refused_closing, 1, "{}", d.name());
        assert_eq!(s.conn.stats().pending_accept, 0, "{}", d.name());
        check_stream_works(&mut s, key);

        s.conn.close(s.now);
        s.feed(&syn(d, 5));
        assert_eq!(s.conn.stats().refused_closing, 2, "{}", d.name());
        assert_eq!(
            s.conn.poll_open(waker(), s.now),
            Poll::Ready(Err(Error::SessionClosed)),
            "{}",
            d.name()
        );
        // The open stream drains: more data, then both FINs end the session.
        s.feed(&data(d, 1, b"last words"));
        assert_eq!(s.read_all(key), b"last words", "{}", d.name());
        assert_eq!(s.conn.end_reason(), None, "{}", d.name());
        s.feed(&fin(d, 1));
        assert_eq!(s.conn.end_reason(), None, "{}", d.name());
        assert_eq!(s.conn.close_write(key, s.now), Ok(()), "{}", d.name());
        s.conn.release(key, s.now);
        assert_eq!(
            s.conn.end_reason(),
            Some(&Error::SessionClosed),
            "{}",
            d.name()
        );
    }
}

// ---- refusals are logged once per burst ---------------------------------------------------

/// Records the message of every event at info or more severe, on the thread it is set for.
#[derive(Clone, Default)]
struct InfoLog(std::sync::Arc<std::sync::Mutex<Vec<String>>>);

struct Message<'a>(&'a mut String);

impl tracing::field::Visit for Message<'_> {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            *self.0 = format!("{value:?}");
        }
    }
}

impl tracing::Subscriber for InfoLog {
    fn enabled(&self, metadata: &tracing::Metadata<'_>) -> bool {
        *metadata.level() <= tracing::Level::INFO
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        let mut message = String::new();
        event.record(&mut Message(&mut message));
        self.0.lock().unwrap().push(message);
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

/// A burst of 1,000 refusals logs one line at info when it starts and one summary when it is
/// over (the engine's timer asks to be called then); a refusal after the burst starts anew.
#[test]
fn refusals_are_logged_once_per_burst() {
    let log = InfoLog::default();
    let d = Dialect::Yamux;
    tracing::subscriber::with_default(log.clone(), || {
        let config = Config::yamux()
            .to_builder()
            .accept_backlog(1)
            .keepalive_interval(None)
            .build()
            .unwrap();
        let mut s = Side::server(config);
        let flood: Vec<u8> = (0..1_001u32).flat_map(|i| syn(d, 1 + 2 * i)).collect();
        s.feed_draining(&flood);
        assert_eq!(s.conn.stats().refused_backlog, 1_000);
        let first: Vec<String> = log.0.lock().unwrap().clone();
        assert_eq!(first.len(), 1, "{first:?}");
        assert!(first[0].contains("refusing inbound stream"), "{first:?}");
        // The summary is due when the burst is over.
        let due = s.conn.poll_timeout().expect("a summary is due");
        assert_eq!(due, s.now + Duration::from_secs(1));
        s.advance_to(due);
        let lines = log.0.lock().unwrap().clone();
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(
            lines[1].contains("refused 999 more inbound streams"),
            "{lines:?}"
        );
        assert_eq!(s.conn.poll_timeout(), None);
        // A refusal later is a new burst, logged again.
        s.now += Duration::from_secs(5);
        s.feed_draining(&syn(d, 5_001));
        assert_eq!(log.0.lock().unwrap().len(), 3);
    });
}
