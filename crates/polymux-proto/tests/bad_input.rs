//! Scripted, byte-exact conversations with a misbehaving peer.
//!
//! Each test plays the peer: it writes raw frame bytes (header layouts spelled out in the
//! helpers below and pinned by `helpers_match_the_wire_layouts`), feeds them to a
//! [`Connection`] and checks what the engine does about it:
//!
//! - the session ends with exactly the expected [`Violation`];
//! - what it transmits then ends with GoAway(protocol error) where the dialect has GoAway
//!   (yamux, net-mux), and is empty on smux (which has none);
//! - streams opened or accepted before still return the bytes that arrived, then the error;
//!   writes, opens and accepts fail with it; later input and EOF change nothing;
//! - nothing panics.
//!
//! Plus the resource bounds a hostile peer probes: accept backlog, unacknowledged opens, GoAway,
//! Ping and SYN floods against the control queue, and the session receive budget.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock};
use std::task::{Poll, Wake, Waker};
use std::time::Instant;

use bytes::BytesMut;
use polymux_proto::{
    Config, Connection, Dialect, Error, Frame, Role, StreamId, StreamKey, Violation,
};

const KIB: usize = 1024;
/// The window every yamux / net-mux / smux v2 stream starts with.
const INITIAL_WINDOW: usize = 256 * KIB;

const YAMUX_SHAPED: [Dialect; 2] = [Dialect::Yamux, Dialect::NetMux];
const SMUX: [Dialect; 2] = [Dialect::SmuxV1, Dialect::SmuxV2];
const ALL: [Dialect; 4] = [
    Dialect::Yamux,
    Dialect::NetMux,
    Dialect::SmuxV1,
    Dialect::SmuxV2,
];

// ---- the peer's frames, byte by byte --------------------------------------------------------

// yamux / net-mux types and flags.
const DATA: u8 = 0;
const WINDOW_UPDATE: u8 = 1;
const PING: u8 = 2;
const GO_AWAY: u8 = 3;
const SYN: u16 = 1;
const ACK: u16 = 2;
const FIN: u16 = 4;
const RST: u16 = 8;

// smux commands.
const CMD_SYN: u8 = 0;
const CMD_FIN: u8 = 1;
const CMD_PSH: u8 = 2;
const CMD_NOP: u8 = 3;
const CMD_UPD: u8 = 4;

fn is_smux(d: Dialect) -> bool {
    matches!(d, Dialect::SmuxV1 | Dialect::SmuxV2)
}

fn version(d: Dialect) -> u8 {
    match d {
        Dialect::Yamux => 0,
        Dialect::NetMux | Dialect::SmuxV1 => 1,
        Dialect::SmuxV2 => 2,
    }
}

/// yamux-shaped header: `version u8 | type u8 | flags u16 | stream u32 | length u32`, BE.
fn hdr(d: Dialect, kind: u8, flags: u16, stream: u32, len: u32) -> Vec<u8> {
    assert!(!is_smux(d));
    let mut h = vec![version(d), kind];
    h.extend_from_slice(&flags.to_be_bytes());
    h.extend_from_slice(&stream.to_be_bytes());
    h.extend_from_slice(&len.to_be_bytes());
    h
}

/// smux header: `version u8 | cmd u8 | length u16 LE | stream u32 LE`.
fn cmd(d: Dialect, cmd: u8, len: u16, stream: u32) -> Vec<u8> {
    assert!(is_smux(d));
    let mut h = vec![version(d), cmd];
    h.extend_from_slice(&len.to_le_bytes());
    h.extend_from_slice(&stream.to_le_bytes());
    h
}

/// Opens `stream`: yamux WindowUpdate|SYN, net-mux empty Data|SYN, smux SYN.
fn syn(d: Dialect, stream: u32) -> Vec<u8> {
    flagged(d, SYN, CMD_SYN, stream)
}

/// Half-close: yamux WindowUpdate|FIN, net-mux empty Data|FIN, smux FIN.
fn fin(d: Dialect, stream: u32) -> Vec<u8> {
    flagged(d, FIN, CMD_FIN, stream)
}

/// Accept: yamux WindowUpdate|ACK, net-mux empty Data|ACK (no smux equivalent).
fn ack(d: Dialect, stream: u32) -> Vec<u8> {
    flagged(d, ACK, u8::MAX, stream)
}

/// Reset: yamux WindowUpdate|RST, net-mux empty Data|RST (no smux equivalent).
fn rst(d: Dialect, stream: u32) -> Vec<u8> {
    flagged(d, RST, u8::MAX, stream)
}

fn flagged(d: Dialect, flags: u16, smux_cmd: u8, stream: u32) -> Vec<u8> {
    match d {
        Dialect::Yamux => hdr(d, WINDOW_UPDATE, flags, stream, 0),
        Dialect::NetMux => hdr(d, DATA, flags, stream, 0),
        _ => {
            assert_ne!(smux_cmd, u8::MAX, "no smux equivalent");
            cmd(d, smux_cmd, 0, stream)
        }
    }
}

/// How the engine refuses an inbound stream: RST, or FIN on smux.
fn refusal(d: Dialect, stream: u32) -> Vec<u8> {
    if is_smux(d) {
        fin(d, stream)
    } else {
        rst(d, stream)
    }
}

/// Stream payload: one yamux Data frame, or smux PSH frames of at most 65535 bytes.
fn data(d: Dialect, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    if is_smux(d) {
        for chunk in payload.chunks(usize::from(u16::MAX)) {
            out.extend(cmd(d, CMD_PSH, chunk.len() as u16, stream));
            out.extend_from_slice(chunk);
        }
    } else {
        out.extend(hdr(d, DATA, 0, stream, payload.len() as u32));
        out.extend_from_slice(payload);
    }
    out
}

fn window_update(d: Dialect, stream: u32, delta: u32) -> Vec<u8> {
    hdr(d, WINDOW_UPDATE, 0, stream, delta)
}

/// smux v2 `UPD`: header plus `consumed u32 LE | window u32 LE`.
fn upd(d: Dialect, stream: u32, consumed: u32, window: u32) -> Vec<u8> {
    let mut f = cmd(d, CMD_UPD, 8, stream);
    f.extend_from_slice(&consumed.to_le_bytes());
    f.extend_from_slice(&window.to_le_bytes());
    f
}

/// What the first read of `consumed` bytes on `stream` sends: a UPD on smux v2 (as Go's smux
/// does), nothing elsewhere (credit returns after half a window).
fn first_read_update(d: Dialect, stream: u32, consumed: u32) -> Vec<u8> {
    if d == Dialect::SmuxV2 {
        upd(d, stream, consumed, polymux_proto::PROTOCOL_INITIAL_WINDOW)
    } else {
        Vec::new()
    }
}

/// Ping request: yamux flags SYN, net-mux no flags.
fn ping(d: Dialect, opaque: u32) -> Vec<u8> {
    let flags = if d == Dialect::Yamux { SYN } else { 0 };
    hdr(d, PING, flags, 0, opaque)
}

fn pong(d: Dialect, opaque: u32) -> Vec<u8> {
    hdr(d, PING, ACK, 0, opaque)
}

fn go_away(d: Dialect, code: u32) -> Vec<u8> {
    hdr(d, GO_AWAY, 0, 0, code)
}

/// Recognisable payload for stream `tag`.
fn payload(tag: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| tag.wrapping_add((i % 251) as u8))
        .collect()
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

// ---- the session under test -----------------------------------------------------------------

/// A waker that does nothing (`Waker::noop()` is newer than the crate's MSRV of 1.80).
fn noop() -> &'static Waker {
    struct Noop;
    impl Wake for Noop {
        fn wake(self: Arc<Self>) {}
    }
    static NOOP: LazyLock<Waker> = LazyLock::new(|| Waker::from(Arc::new(Noop)));
    &NOOP
}

/// Wakers that record being woken.
struct Flag(AtomicBool);

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.0.store(true, Ordering::SeqCst);
    }
}

struct Session {
    conn: Connection,
    d: Dialect,
    rx: BytesMut,
    now: Instant,
}

impl Session {
    fn new(d: Dialect, role: Role) -> Session {
        Session::with_config(Config::for_dialect(d), role)
    }

    fn with_config(config: Config, role: Role) -> Session {
        let now = Instant::now();
        Session {
            d: config.dialect(),
            conn: Connection::new(role, config, now),
            rx: BytesMut::new(),
            now,
        }
    }

    fn ctx(&self) -> &'static str {
        self.d.name()
    }

    /// The peer's bytes arrive (appended to whatever is still unread).
    fn feed(&mut self, bytes: &[u8]) {
        self.rx.extend_from_slice(bytes);
        self.conn.handle_input(&mut self.rx, self.now);
    }

    /// Feeds `bytes` and checks they were all consumed with the session still up.
    fn feed_ok(&mut self, bytes: &[u8]) {
        self.feed(bytes);
        assert_eq!(self.conn.end_reason(), None, "{}", self.ctx());
        assert!(
            self.rx.is_empty(),
            "{}: {} bytes left unread",
            self.ctx(),
            self.rx.len()
        );
    }

    /// Everything the engine transmits now, in wire order (control, then data, per batch).
    fn output(&mut self) -> Vec<u8> {
        let mut wire = Vec::new();
        while let Some(batch) = self.conn.poll_transmit() {
            batch.copy_to(&mut wire);
            self.conn.transmitted(batch);
        }
        wire
    }

    fn accept(&mut self) -> StreamKey {
        match self.conn.poll_accept(noop()) {
            Poll::Ready(Ok(key)) => key,
            other => panic!("{}: accept: {other:?}", self.ctx()),
        }
    }

    fn open(&mut self) -> StreamKey {
        match self.conn.poll_open(noop()) {
            Poll::Ready(Ok(key)) => key,
            other => panic!("{}: open: {other:?}", self.ctx()),
        }
    }

    /// Reads until the stream yields no more bytes; returns them and the final poll.
    fn read_all(&mut self, key: StreamKey) -> (Vec<u8>, Poll<Result<usize, Error>>) {
        let mut got = Vec::new();
        let mut buf = vec![0; 1024 * KIB];
        loop {
            match self.conn.poll_read(key, noop(), &mut buf) {
                Poll::Ready(Ok(n)) if n > 0 => got.extend_from_slice(&buf[..n]),
                other => return (got, other),
            }
        }
    }

    fn write(&mut self, key: StreamKey, bytes: &[u8]) -> Poll<Result<usize, Error>> {
        self.conn.poll_write(key, noop(), bytes)
    }
}

/// A server session with one accepted stream (#3, "hello" unread) and one it opened (#2,
/// "world" unread), all output taken.
struct Fixture {
    s: Session,
    inbound: StreamKey,
    outbound: StreamKey,
    /// What each stream should still return before the error.
    in_unread: Vec<u8>,
    out_unread: Vec<u8>,
}

impl Fixture {
    fn new(d: Dialect) -> Fixture {
        let mut s = Session::new(d, Role::Server);
        s.feed_ok(&cat(&[&syn(d, 3), &data(d, 3, b"hello")]));
        let inbound = s.accept();
        let outbound = s.open();
        assert_eq!(s.conn.stream_id(outbound), StreamId(2));
        // Byte-exact: our ACK of #3 (yamux-shaped), then the open of #2.
        let expected = if is_smux(d) {
            syn(d, 2)
        } else {
            cat(&[&ack(d, 3), &syn(d, 2)])
        };
        assert_eq!(s.output(), expected, "{}", d.name());
        if !is_smux(d) {
            s.feed_ok(&ack(d, 2));
        }
        s.feed_ok(&data(d, 2, b"world"));
        assert_eq!(s.output(), b"", "{}", d.name());
        Fixture {
            s,
            inbound,
            outbound,
            in_unread: b"hello".to_vec(),
            out_unread: b"world".to_vec(),
        }
    }

    /// Feeds `bad` and checks the session ended with `v` (see [`Fixture::check_ended`]).
    fn violate(&mut self, bad: &[u8], v: Violation) {
        assert_eq!(
            self.s.output(),
            b"",
            "{}: drain before the bad input",
            self.s.ctx()
        );
        self.s.feed(bad);
        self.check_ended(v);
    }

    /// The session ended with `v`: GoAway(1) last on the wire (none on smux); both streams
    /// return their unread bytes and then the error; everything else fails; later input is
    /// ignored.
    fn check_ended(&mut self, v: Violation) {
        check_ended_by(&mut self.s, &v);
        let err = Error::ProtocolViolation(v);
        for (key, unread) in [
            (self.inbound, self.in_unread.clone()),
            (self.outbound, self.out_unread.clone()),
        ] {
            let (got, last) = self.s.read_all(key);
            assert!(
                got == unread,
                "{}: {} unread bytes, {} expected",
                self.s.ctx(),
                got.len(),
                unread.len()
            );
            assert_eq!(last, Poll::Ready(Err(err.clone())), "{}", self.s.ctx());
            assert_eq!(
                self.s.write(key, b"x"),
                Poll::Ready(Err(err.clone())),
                "{}",
                self.s.ctx()
            );
            assert_eq!(
                self.s.conn.close_write(key),
                Err(err.clone()),
                "{}",
                self.s.ctx()
            );
        }
    }
}

/// Session-level consequences of a violation `v`, for any session.
fn check_ended_by(s: &mut Session, v: &Violation) {
    let ctx = s.ctx();
    let err = Error::ProtocolViolation(v.clone());
    assert_eq!(s.conn.end_reason(), Some(&err), "{ctx}");
    assert!(s.conn.is_ended() && !s.conn.wants_input(), "{ctx}");
    let wire = s.output();
    if s.d.has_goaway() {
        // net-mux names flow-control (3) and version (5) violations; the rest, and yamux, 1.
        let code = match (s.d, v) {
            (Dialect::NetMux, Violation::DataBeyondCredit { .. })
            | (Dialect::NetMux, Violation::WindowOverflow { .. }) => 3,
            (Dialect::NetMux, Violation::UnsupportedVersion { .. }) => 5,
            _ => 1,
        };
        let goaway = go_away(s.d, code);
        assert!(
            wire.ends_with(&goaway),
            "{ctx}: {wire:?} does not end with GoAway({code})"
        );
    } else {
        assert_eq!(wire, b"", "{ctx}: smux has no GoAway and must send nothing");
    }
    assert_eq!(
        s.conn.poll_open(noop()),
        Poll::Ready(Err(err.clone())),
        "{ctx}"
    );
    assert_eq!(
        s.conn.poll_accept(noop()),
        Poll::Ready(Err(err.clone())),
        "{ctx}"
    );
    if s.d.has_goaway() {
        assert_eq!(s.conn.start_ping(s.now), Err(err.clone()), "{ctx}");
        assert_eq!(s.conn.go_away(), Err(err.clone()), "{ctx}");
    }
    // Nothing after the end is decoded or answered, and EOF does not replace the reason.
    let unread = s.rx.len();
    let more = if is_smux(s.d) {
        syn(s.d, 101)
    } else {
        ping(s.d, 9)
    };
    s.feed(&more);
    assert_eq!(
        s.rx.len(),
        unread + more.len(),
        "{ctx}: input decoded after the end"
    );
    s.conn.handle_eof(s.rx.len());
    assert_eq!(s.conn.end_reason(), Some(&err), "{ctx}");
    assert_eq!(s.output(), b"", "{ctx}: output after the end");
    assert_eq!(s.conn.poll_timeout(), None, "{ctx}");
}

// ---- the helpers speak the dialects ---------------------------------------------------------

#[test]
fn helpers_match_the_wire_layouts() {
    use Dialect::*;
    assert_eq!(syn(Yamux, 1), [0, 1, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0]);
    assert_eq!(rst(Yamux, 9), [0, 1, 0, 8, 0, 0, 0, 9, 0, 0, 0, 0]);
    assert_eq!(go_away(Yamux, 1), [0, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    assert_eq!(ping(Yamux, 7), [0, 2, 0, 1, 0, 0, 0, 0, 0, 0, 0, 7]);
    assert_eq!(
        data(Yamux, 3, b"hi"),
        [0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 2, b'h', b'i']
    );
    assert_eq!(
        window_update(Yamux, 3, 0x0102_0304),
        [0, 1, 0, 0, 0, 0, 0, 3, 1, 2, 3, 4]
    );
    assert_eq!(syn(NetMux, 1), [1, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0]);
    assert_eq!(ack(NetMux, 1), [1, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 0]);
    assert_eq!(ping(NetMux, 7), [1, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7]);
    assert_eq!(pong(NetMux, 7), [1, 2, 0, 2, 0, 0, 0, 0, 0, 0, 0, 7]);
    assert_eq!(go_away(NetMux, 1), [1, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    assert_eq!(syn(SmuxV1, 3), [1, 0, 0, 0, 3, 0, 0, 0]);
    assert_eq!(fin(SmuxV1, 3), [1, 1, 0, 0, 3, 0, 0, 0]);
    assert_eq!(data(SmuxV2, 3, b"hi"), [2, 2, 2, 0, 3, 0, 0, 0, b'h', b'i']);
    // docs/peer-facts.md: "v2 UPD sid 3, consumed 2, window 65536".
    assert_eq!(
        upd(SmuxV2, 3, 2, 65536),
        [2, 4, 8, 0, 3, 0, 0, 0, 2, 0, 0, 0, 0, 0, 1, 0]
    );
    // And the engine's own codec reads them as intended.
    let decoded = |d: Dialect, b: Vec<u8>| d.decode(&b).unwrap().unwrap().0;
    assert_eq!(
        decoded(NetMux, ping(NetMux, 7)),
        Frame::Ping {
            ack: false,
            opaque: 7
        }
    );
    assert_eq!(
        decoded(SmuxV2, upd(SmuxV2, 3, 2, 65536)),
        Frame::Update {
            stream: StreamId(3),
            consumed: 2,
            window: 65536
        }
    );
    let big = data(SmuxV1, 5, &payload(0, 70_000));
    assert_eq!(big.len(), 70_000 + 2 * 8);
    assert_eq!(&big[..8], [1, 2, 0xff, 0xff, 5, 0, 0, 0]);
}

// ---- header-level violations ----------------------------------------------------------------

#[test]
fn bad_version_byte() {
    for d in ALL {
        let (got, expected) = match d {
            Dialect::Yamux => (1, 0),
            Dialect::NetMux => (0, 1),
            Dialect::SmuxV1 => (2, 1),
            Dialect::SmuxV2 => (1, 2),
        };
        let mut bad = if is_smux(d) {
            cmd(d, CMD_NOP, 0, 0)
        } else {
            ping(d, 1)
        };
        bad[0] = got;
        Fixture::new(d).violate(&bad, Violation::UnsupportedVersion { got, expected });
    }
}

#[test]
fn unknown_frame_type() {
    for d in YAMUX_SHAPED {
        for kind in [4, 0xff] {
            let bad = hdr(d, kind, 0, 3, 0);
            Fixture::new(d).violate(&bad, Violation::UnknownFrameType { got: kind });
        }
    }
    for d in SMUX {
        let bad = cmd(d, 5, 0, 3);
        Fixture::new(d).violate(&bad, Violation::UnknownFrameType { got: 5 });
    }
    // UPD only exists in v2: in a v1 session it is an unknown command.
    let d = Dialect::SmuxV1;
    let bad = cat(&[&cmd(d, CMD_UPD, 8, 3), &[0; 8]]);
    Fixture::new(d).violate(&bad, Violation::UnknownFrameType { got: CMD_UPD });
}

#[test]
fn session_frames_on_a_stream() {
    for d in YAMUX_SHAPED {
        let ping_flags = if d == Dialect::Yamux { SYN } else { 0 };
        let bad = hdr(d, PING, ping_flags, 3, 1);
        let frame = "Ping";
        Fixture::new(d).violate(
            &bad,
            Violation::SessionFrameOnStream {
                frame,
                stream: StreamId(3),
            },
        );
        let bad = hdr(d, GO_AWAY, 0, 1, 0);
        let frame = "GoAway";
        Fixture::new(d).violate(
            &bad,
            Violation::SessionFrameOnStream {
                frame,
                stream: StreamId(1),
            },
        );
    }
}

#[test]
fn stream_frames_on_session() {
    for d in YAMUX_SHAPED {
        for (bad, frame) in [
            (data(d, 0, b"x"), "Data"),
            (hdr(d, DATA, SYN, 0, 0), "Data"),
            (window_update(d, 0, 1), "WindowUpdate"),
            (hdr(d, WINDOW_UPDATE, SYN, 0, 0), "WindowUpdate"),
        ] {
            Fixture::new(d).violate(&bad, Violation::StreamFrameOnSession { frame });
        }
    }
    for d in SMUX {
        let mut cases = vec![
            (syn(d, 0), "SYN"),
            (fin(d, 0), "FIN"),
            (data(d, 0, b"x"), "PSH"),
        ];
        if d == Dialect::SmuxV2 {
            cases.push((upd(d, 0, 0, 1), "UPD"));
        }
        for (bad, frame) in cases {
            Fixture::new(d).violate(&bad, Violation::StreamFrameOnSession { frame });
        }
    }
}

#[test]
fn ping_with_invalid_flags() {
    // yamux: a request is SYN, a reply ACK. net-mux: a request has no flags.
    for (d, flags) in [
        (Dialect::Yamux, 0),
        (Dialect::Yamux, SYN | ACK),
        (Dialect::Yamux, FIN),
        (Dialect::Yamux, RST),
        (Dialect::NetMux, SYN),
        (Dialect::NetMux, SYN | ACK),
        (Dialect::NetMux, 0x10),
    ] {
        let bad = hdr(d, PING, flags, 0, 1);
        Fixture::new(d).violate(
            &bad,
            Violation::InvalidFlags {
                frame: "Ping",
                flags,
            },
        );
    }
}

#[test]
fn smux_control_frames_with_a_length() {
    for d in SMUX {
        // A SYN/FIN/NOP with a length would desynchronise Go's reader.
        for (c, frame) in [(CMD_SYN, "SYN"), (CMD_FIN, "FIN"), (CMD_NOP, "NOP")] {
            let bad = cat(&[&cmd(d, c, 5, 5), b"abcde"]);
            Fixture::new(d).violate(&bad, Violation::InvalidLength { frame, len: 5 });
        }
    }
    // UPD must carry exactly 8 bytes.
    let d = Dialect::SmuxV2;
    for len in [0u16, 4, 9, 0xffff] {
        let bad = cmd(d, CMD_UPD, len, 3);
        Fixture::new(d).violate(
            &bad,
            Violation::InvalidLength {
                frame: "UPD",
                len: len.into(),
            },
        );
    }
}

// ---- flow control ---------------------------------------------------------------------------

#[test]
fn data_beyond_credit_on_a_fresh_stream() {
    // yamux-shaped: one frame of 256 KiB + 1 right after the SYN; the header alone is enough.
    for d in YAMUX_SHAPED {
        let len = INITIAL_WINDOW as u32 + 1;
        let bad = cat(&[&syn(d, 5), &hdr(d, DATA, 0, 5, len)]);
        let v = Violation::DataBeyondCredit {
            stream: StreamId(5),
            len,
            credit: INITIAL_WINDOW as u64,
        };
        Fixture::new(d).violate(&bad, v);
        // The same with the SYN riding on the Data frame itself.
        let bad = hdr(d, DATA, SYN, 5, len);
        let v = Violation::DataBeyondCredit {
            stream: StreamId(5),
            len,
            credit: INITIAL_WINDOW as u64,
        };
        Fixture::new(d).violate(&bad, v);
    }
    // smux v2: the peer may assume 256 KiB before any UPD. 256 KiB = 4 × 65535 + 4.
    let d = Dialect::SmuxV2;
    let bad = cat(&[
        &syn(d, 5),
        &data(d, 5, &payload(5, 4 * 65535)),
        &cmd(d, CMD_PSH, 5, 5),
        b"12345",
    ]);
    let v = Violation::DataBeyondCredit {
        stream: StreamId(5),
        len: 5,
        credit: 4,
    };
    Fixture::new(d).violate(&bad, v);
}

#[test]
fn data_beyond_credit_after_partial_use() {
    // #3 already holds "hello"; 200 000 more leave 62 139 bytes of credit; send one more.
    for d in [Dialect::Yamux, Dialect::NetMux, Dialect::SmuxV2] {
        let mut fx = Fixture::new(d);
        let more = payload(3, 200_000);
        fx.s.feed_ok(&data(d, 3, &more));
        fx.in_unread.extend_from_slice(&more);
        let credit = INITIAL_WINDOW - 200_005;
        let len = credit as u32 + 1;
        let bad = if is_smux(d) {
            cmd(d, CMD_PSH, len as u16, 3)
        } else {
            hdr(d, DATA, 0, 3, len)
        };
        let v = Violation::DataBeyondCredit {
            stream: StreamId(3),
            len,
            credit: credit as u64,
        };
        fx.violate(&bad, v);
    }
    // smux v1 has no per-stream credit: the same bytes are fine.
    let d = Dialect::SmuxV1;
    let mut fx = Fixture::new(d);
    fx.s.feed_ok(&data(d, 3, &payload(3, INITIAL_WINDOW + 1)));
}

#[test]
fn credit_returned_is_credit_usable() {
    // Not a violation: after the application reads, the returned credit may be used in full.
    for d in [Dialect::Yamux, Dialect::NetMux, Dialect::SmuxV2] {
        let mut fx = Fixture::new(d);
        let first = payload(1, INITIAL_WINDOW - 5);
        fx.s.feed_ok(&data(d, 3, &first));
        let (got, _) = fx.s.read_all(fx.inbound);
        assert_eq!(got.len(), INITIAL_WINDOW, "{}", d.name());
        // The reader drained its queue when credit was due and no round trip is known yet:
        // auto-tuning doubles the window.
        let window = 2 * INITIAL_WINDOW;
        let (expected, granted) = if is_smux(d) {
            (upd(d, 3, INITIAL_WINDOW as u32, window as u32), window)
        } else {
            // The first returned credit also starts an RTT probe, for window auto-tuning.
            let update = window_update(d, 3, window as u32);
            (cat(&[&update, &ping(d, 1)]), window)
        };
        assert_eq!(fx.s.output(), expected, "{}", d.name());
        fx.s.feed_ok(&data(d, 3, &payload(2, granted)));
        let bad = if is_smux(d) {
            cmd(d, CMD_PSH, 1, 3)
        } else {
            hdr(d, DATA, 0, 3, 1)
        };
        fx.in_unread = payload(2, granted);
        let v = Violation::DataBeyondCredit {
            stream: StreamId(3),
            len: 1,
            credit: 0,
        };
        fx.violate(&cat(&[&bad, b"!"]), v);
    }
}

#[test]
fn window_update_overflowing_u32() {
    for d in YAMUX_SHAPED {
        let mut fx = Fixture::new(d);
        // #3's send window is 256 KiB; growing it to exactly 2^32 - 1 is allowed.
        fx.s.feed_ok(&window_update(d, 3, u32::MAX - INITIAL_WINDOW as u32));
        assert_eq!(fx.s.output(), b"", "{}", d.name());
        fx.violate(
            &window_update(d, 3, 1),
            Violation::WindowOverflow {
                stream: StreamId(3),
            },
        );

        // In one step, on the stream we opened.
        let mut fx = Fixture::new(d);
        let bad = window_update(d, 2, u32::MAX - INITIAL_WINDOW as u32 + 1);
        fx.violate(
            &bad,
            Violation::WindowOverflow {
                stream: StreamId(2),
            },
        );

        // On the open itself (yamux WindowUpdate|SYN carries a delta beyond 256 KiB).
        if d == Dialect::Yamux {
            let max = u32::MAX - INITIAL_WINDOW as u32;
            let mut fx = Fixture::new(d);
            fx.s.feed_ok(&hdr(d, WINDOW_UPDATE, SYN, 5, max));
            fx.violate(
                &hdr(d, WINDOW_UPDATE, SYN, 7, max + 1),
                Violation::WindowOverflow {
                    stream: StreamId(7),
                },
            );
        }

        // After spending some of it, the window is what is left, not what was granted.
        let mut fx = Fixture::new(d);
        assert_eq!(
            fx.s.write(fx.inbound, &[7; 1000]),
            Poll::Ready(Ok(1000)),
            "{}",
            d.name()
        );
        let sent = fx.s.output();
        assert_eq!(sent, data(d, 3, &[7; 1000]), "{}", d.name());
        fx.s.feed_ok(&window_update(
            d,
            3,
            u32::MAX - INITIAL_WINDOW as u32 + 1000,
        ));
        fx.violate(
            &window_update(d, 3, 1),
            Violation::WindowOverflow {
                stream: StreamId(3),
            },
        );
    }
}

// ---- stream ids -----------------------------------------------------------------------------

#[test]
fn syn_with_our_parity() {
    for d in ALL {
        // A client allocates odd ids, so an odd SYN from the server is ours to use.
        let mut s = Session::new(d, Role::Client);
        let mine = s.open();
        let mine_id = s.conn.stream_id(mine).0;
        assert_eq!(mine_id % 2, 1, "{}", d.name());
        if !is_smux(d) {
            s.feed_ok(&ack(d, mine_id));
        }
        s.feed_ok(&data(d, mine_id, b"early"));
        s.output();
        s.feed(&syn(d, mine_id + 2));
        let v = Violation::WrongStreamParity {
            stream: StreamId(mine_id + 2),
        };
        check_ended_by(&mut s, &v);
        let (got, last) = s.read_all(mine);
        assert_eq!(got, b"early", "{}", d.name());
        assert_eq!(
            last,
            Poll::Ready(Err(Error::ProtocolViolation(v))),
            "{}",
            d.name()
        );

        // And a server allocates even ids.
        let mut fx = Fixture::new(d);
        fx.violate(
            &syn(d, 4),
            Violation::WrongStreamParity {
                stream: StreamId(4),
            },
        );
        // Even one it already allocated.
        let mut fx = Fixture::new(d);
        fx.violate(
            &syn(d, 2),
            Violation::WrongStreamParity {
                stream: StreamId(2),
            },
        );
    }
}

#[test]
fn reused_stream_id() {
    for d in ALL {
        // #3 is open: SYN again.
        Fixture::new(d).violate(
            &syn(d, 3),
            Violation::StreamIdReused {
                stream: StreamId(3),
            },
        );
        // #1 was skipped when the peer opened #3: its open may arrive late (Go sends SYNs from
        // concurrent goroutines, Rust yamux sends SYN with the first write), but only once.
        let mut fx = Fixture::new(d);
        fx.s.feed_ok(&syn(d, 1));
        assert_eq!(fx.s.conn.stats().pending_accept, 1, "{}", d.name());
        fx.violate(
            &syn(d, 1),
            Violation::StreamIdReused {
                stream: StreamId(1),
            },
        );
        // #3 finished and was removed: still taken.
        let mut fx = Fixture::new(d);
        let (got, _) = fx.s.read_all(fx.inbound);
        assert_eq!(got, b"hello");
        fx.in_unread.clear();
        fx.s.feed_ok(&fin(d, 3));
        fx.s.conn.close_write(fx.inbound).unwrap();
        fx.s.conn.release(fx.inbound);
        assert_eq!(
            fx.s.output(),
            cat(&[&first_read_update(d, 3, 5), &fin(d, 3)]),
            "{}",
            d.name()
        );
        assert_eq!(fx.s.conn.stats().streams, 1, "{}", d.name());
        fx.s.feed(&syn(d, 3));
        let v = Violation::StreamIdReused {
            stream: StreamId(3),
        };
        check_ended_by(&mut fx.s, &v);
        let (got, last) = fx.s.read_all(fx.outbound);
        assert_eq!(got, b"world", "{}", d.name());
        assert_eq!(
            last,
            Poll::Ready(Err(Error::ProtocolViolation(v))),
            "{}",
            d.name()
        );
    }
}

#[test]
fn frame_for_a_stream_never_opened() {
    for d in ALL {
        // Peer parity, above the highest id the peer opened.
        // The frame type that carries yamux-shaped flags: WindowUpdate on yamux, Data elsewhere.
        let flag_frame = if d == Dialect::Yamux {
            "WindowUpdate"
        } else {
            "Data"
        };
        let mut cases = vec![(data(d, 7, b"??"), 7, "Data"), (fin(d, 7), 7, flag_frame)];
        // Our parity, never allocated (we only opened #2).
        cases.push((data(d, 4, b"??"), 4, "Data"));
        if is_smux(d) {
            if d == Dialect::SmuxV2 {
                cases.push((upd(d, 7, 0, 1), 7, "UPD"));
            }
        } else {
            cases.push((window_update(d, 7, 1), 7, "WindowUpdate"));
            cases.push((window_update(d, 4, 1), 4, "WindowUpdate"));
            cases.push((rst(d, 7), 7, flag_frame));
            cases.push((ack(d, 4), 4, flag_frame));
        }
        for (bad, stream, frame) in cases {
            if is_smux(d) {
                let v = Violation::UnknownStream {
                    frame,
                    stream: StreamId(stream),
                };
                Fixture::new(d).violate(&bad, v);
            } else {
                // yamux-shaped peers send such frames legitimately (Rust yamux: a FIN without
                // SYN for a stream closed before its first write): dropped, unanswered.
                let mut fx = Fixture::new(d);
                fx.s.feed_ok(&bad);
                assert_eq!(fx.s.output(), b"", "{}: {frame} on #{stream}", d.name());
                assert!(!fx.s.conn.is_ended(), "{}", d.name());
            }
        }
    }
}

#[test]
fn frame_for_a_closed_or_reset_stream_is_dropped() {
    for d in ALL {
        let ctx = d.name();
        let mut fx = Fixture::new(d);
        let s = &mut fx.s;
        // #3 (the peer's) closes in order: both FINs, the handle is released, it is gone.
        assert_eq!(s.read_all(fx.inbound).0, b"hello");
        s.feed_ok(&fin(d, 3));
        s.conn.close_write(fx.inbound).unwrap();
        s.conn.release(fx.inbound);
        // #2 (ours) is reset by us and released.
        s.conn.reset(fx.outbound);
        s.conn.release(fx.outbound);
        let expected = if is_smux(d) {
            cat(&[&first_read_update(d, 3, 5), &fin(d, 3), &fin(d, 2)])
        } else {
            cat(&[&fin(d, 3), &rst(d, 2)])
        };
        assert_eq!(s.output(), expected, "{ctx}");
        // smux has no RST: the peer saw a FIN, so #2 lingers (discarding, returning credit)
        // until the peer's own FIN.
        let lingering = usize::from(is_smux(d));
        assert_eq!(s.conn.stats().streams, lingering, "{ctx}");

        // Late frames for either are dropped: no error, no reply.
        let mut late = cat(&[
            &data(d, 3, &payload(3, 10_000)),
            &fin(d, 3),
            &data(d, 2, b"in flight"),
            &fin(d, 2),
        ]);
        if is_smux(d) {
            if d == Dialect::SmuxV2 {
                late.extend(upd(d, 3, 5, 1 << 20));
                late.extend(upd(d, 2, 0, 1 << 20));
            }
        } else {
            late.extend(window_update(d, 3, 1 << 20));
            late.extend(ack(d, 2));
            late.extend(rst(d, 2));
            late.extend(rst(d, 3));
            // Beyond any credit the stream ever had: there is no stream to account it to.
            late.extend(data(d, 2, &payload(2, INITIAL_WINDOW + 1)));
        }
        s.feed_ok(&late);
        assert_eq!(
            s.output(),
            b"",
            "{ctx}: a dropped frame must not be answered"
        );
        assert!(s.conn.wants_input(), "{ctx}");
        assert_eq!(s.conn.stats().streams, 0, "{ctx}");

        // The session is alive: a new stream works.
        s.feed_ok(&cat(&[&syn(d, 5), &data(d, 5, b"still here")]));
        let k = s.accept();
        assert_eq!(
            s.read_all(k),
            (b"still here".to_vec(), Poll::Pending),
            "{ctx}"
        );
    }

    // yamux-shaped: the peer resets a stream; its in-flight data afterwards is dropped.
    for d in YAMUX_SHAPED {
        let ctx = d.name();
        let mut fx = Fixture::new(d);
        let s = &mut fx.s;
        s.feed_ok(&rst(d, 3));
        // Bytes that arrived before the RST are still readable, then the reset.
        assert_eq!(
            s.read_all(fx.inbound),
            (b"hello".to_vec(), Poll::Ready(Err(Error::StreamReset))),
            "{ctx}"
        );
        s.conn.release(fx.inbound);
        assert_eq!(s.output(), b"", "{ctx}: no reply to a RST");
        s.feed_ok(&cat(&[&data(d, 3, b"late"), &window_update(d, 3, 10)]));
        assert_eq!(s.output(), b"", "{ctx}");
        assert_eq!(s.conn.stats().streams, 1, "{ctx}");
        assert_eq!(
            s.read_all(fx.outbound),
            (b"world".to_vec(), Poll::Pending),
            "{ctx}"
        );
    }
}

// ---- truncation at EOF ----------------------------------------------------------------------

#[test]
fn truncated_header_at_eof() {
    for d in ALL {
        let header_len = d.header_len();
        for got in [1, header_len - 1] {
            let mut fx = Fixture::new(d);
            let frame = data(d, 3, b"xyz");
            fx.s.feed(&frame[..got]);
            assert_eq!(fx.s.rx.len(), got, "{}", d.name());
            assert_eq!(fx.s.conn.end_reason(), None);
            fx.s.conn.handle_eof(fx.s.rx.len());
            fx.check_ended(Violation::TruncatedFrame {
                got,
                needed: header_len,
            });
        }
    }
    // A smux v2 UPD is a 16-byte unit: header plus body.
    let d = Dialect::SmuxV2;
    let mut fx = Fixture::new(d);
    fx.s.feed(&upd(d, 3, 0, 1 << 20)[..11]);
    assert_eq!(fx.s.rx.len(), 11);
    fx.s.conn.handle_eof(fx.s.rx.len());
    fx.check_ended(Violation::TruncatedFrame {
        got: 11,
        needed: 16,
    });
}

#[test]
fn truncated_payload_at_eof() {
    for d in ALL {
        // A large piece is delivered to the stream as it arrives; the rest never comes.
        let mut fx = Fixture::new(d);
        let body = payload(9, 30_000);
        let frame = data(d, 3, &body);
        let arrived = 20_000;
        fx.s.feed(&frame[..d.header_len() + arrived]);
        assert!(fx.s.rx.is_empty(), "{}", d.name());
        fx.in_unread.extend_from_slice(&body[..arrived]);
        fx.s.conn.handle_eof(0);
        fx.check_ended(Violation::TruncatedFrame {
            got: arrived,
            needed: 30_000,
        });

        // A small piece waits in the read buffer for the rest of its frame.
        let mut fx = Fixture::new(d);
        let frame = data(d, 3, &payload(9, 100));
        fx.s.feed(&frame[..d.header_len() + 40]);
        assert_eq!(fx.s.rx.len(), 40, "{}", d.name());
        fx.s.conn.handle_eof(fx.s.rx.len());
        fx.check_ended(Violation::TruncatedFrame {
            got: 40,
            needed: 100,
        });
    }
}

#[test]
fn clean_eof_is_not_a_violation() {
    for d in ALL {
        let mut fx = Fixture::new(d);
        fx.s.conn.handle_eof(0);
        assert_eq!(
            fx.s.conn.end_reason(),
            Some(&Error::TransportClosed),
            "{}",
            d.name()
        );
        assert_eq!(fx.s.output(), b"", "{}", d.name());
        let (got, last) = fx.s.read_all(fx.inbound);
        assert_eq!(got, b"hello");
        assert_eq!(last, Poll::Ready(Err(Error::TransportClosed)));
    }
}

// ---- resource bounds ------------------------------------------------------------------------

#[test]
fn accept_backlog_refuses_the_fifth_stream() {
    for d in ALL {
        let ctx = d.name();
        let config = Config::for_dialect(d)
            .to_builder()
            .accept_backlog(4)
            .build()
            .unwrap();
        let mut s = Session::with_config(config, Role::Server);
        s.feed_ok(&cat(&[&syn(d, 1), &syn(d, 3), &syn(d, 5), &syn(d, 7)]));
        assert_eq!(s.output(), b"", "{ctx}: nothing is sent before accept");
        s.feed_ok(&syn(d, 9));
        // Byte-exact: yamux WindowUpdate|RST #9, net-mux Data|RST #9, smux FIN #9.
        assert_eq!(s.output(), refusal(d, 9), "{ctx}");
        let stats = s.conn.stats();
        assert_eq!(
            (
                stats.pending_accept,
                stats.opened_inbound,
                stats.refused_inbound
            ),
            (4, 5, 1),
            "{ctx}"
        );
        // What the peer had already sent on #9 is dropped; the session stays up.
        s.feed_ok(&cat(&[&data(d, 9, b"refused"), &fin(d, 9)]));
        assert_eq!(s.output(), b"", "{ctx}");
        assert!(s.conn.wants_input(), "{ctx}");
        // Accepting one makes room for the next.
        let first = s.accept();
        assert_eq!(s.conn.stream_id(first), StreamId(1));
        let ack1 = if is_smux(d) { vec![] } else { ack(d, 1) };
        assert_eq!(s.output(), ack1, "{ctx}");
        s.feed_ok(&syn(d, 11));
        assert_eq!(s.output(), b"", "{ctx}");
        assert_eq!(s.conn.stats().pending_accept, 4, "{ctx}");
        // #9 is still known as used.
        s.feed(&syn(d, 9));
        check_ended_by(
            &mut s,
            &Violation::StreamIdReused {
                stream: StreamId(9),
            },
        );
    }
}

#[test]
fn refusal_flood_is_bounded() {
    // Every SYN beyond the backlog costs us a reply; unread replies must stop the decoding.
    const SYNS: u32 = 50_000;
    for d in ALL {
        let ctx = d.name();
        let config = Config::for_dialect(d)
            .to_builder()
            .accept_backlog(1)
            .build()
            .unwrap();
        let mut s = Session::with_config(config, Role::Server);
        let flood: Vec<u8> = (0..SYNS).flat_map(|i| syn(d, 2 * i + 1)).collect();
        s.feed(&flood);
        assert!(
            !s.conn.wants_input() && !s.rx.is_empty(),
            "{ctx}: refusals must be bounded"
        );
        let mut refused = 0;
        let mut next = 3;
        while refused < SYNS - 1 {
            let batch = s.conn.poll_transmit().expect("refusals queued");
            assert!(batch.control.len() <= 64 * KIB + 12, "{ctx}");
            for frame in batch.control.chunks(d.header_len()) {
                assert_eq!(frame, refusal(d, next), "{ctx}");
                next += 2;
                refused += 1;
            }
            s.conn.transmitted(batch);
            s.feed(&[]);
        }
        assert!(s.rx.is_empty(), "{ctx}");
        let stats = s.conn.stats();
        assert_eq!(
            (stats.pending_accept, stats.refused_inbound),
            (1, u64::from(SYNS) - 1),
            "{ctx}"
        );
        assert_eq!(s.conn.end_reason(), None, "{ctx}");
    }
}

#[test]
fn syn_after_our_goaway_is_refused() {
    for d in YAMUX_SHAPED {
        let ctx = d.name();
        let mut fx = Fixture::new(d);
        fx.s.conn.go_away().unwrap();
        assert_eq!(fx.s.output(), go_away(d, 0), "{ctx}");
        fx.s.feed_ok(&cat(&[&syn(d, 5), &data(d, 5, b"too late")]));
        assert_eq!(fx.s.output(), rst(d, 5), "{ctx}");
        // Existing streams go on.
        fx.s.feed_ok(&data(d, 3, b" again"));
        assert_eq!(
            fx.s.read_all(fx.inbound),
            (b"hello again".to_vec(), Poll::Pending),
            "{ctx}"
        );
        assert_eq!(fx.s.conn.stats().refused_inbound, 1, "{ctx}");
    }
}

#[test]
fn max_unacked_outbound_holds_the_third_open() {
    for d in YAMUX_SHAPED {
        let ctx = d.name();
        let config = Config::for_dialect(d)
            .to_builder()
            .max_unacked_outbound(2)
            .build()
            .unwrap();
        let mut s = Session::with_config(config, Role::Client);
        let a = s.open();
        let b = s.open();
        assert_eq!(s.output(), cat(&[&syn(d, 1), &syn(d, 3)]), "{ctx}");
        let flag = Arc::new(Flag(AtomicBool::new(false)));
        let waker = Waker::from(flag.clone());
        assert_eq!(s.conn.poll_open(&waker), Poll::Pending, "{ctx}");
        assert_eq!(s.output(), b"", "{ctx}: nothing sent for a waiting open");
        // Data and credit for an unacknowledged stream do not count as its ACK.
        s.feed_ok(&cat(&[&window_update(d, 1, 10), &data(d, 1, b"data")]));
        assert!(!flag.0.load(Ordering::SeqCst), "{ctx}");
        assert_eq!(s.conn.poll_open(&waker), Poll::Pending, "{ctx}");
        s.feed_ok(&ack(d, 1));
        assert!(
            flag.0.load(Ordering::SeqCst),
            "{ctx}: the ACK wakes the waiting open"
        );
        let c = s.open();
        assert_eq!(s.conn.stream_id(c), StreamId(5), "{ctx}");
        assert_eq!(s.output(), syn(d, 5), "{ctx}");
        assert_eq!(s.conn.poll_open(noop()), Poll::Pending, "{ctx}");
        // A refusal (RST before ACK) frees a slot too.
        s.feed_ok(&rst(d, 3));
        assert_eq!(
            s.conn.poll_established(b, noop()),
            Poll::Ready(Err(Error::StreamRefused)),
            "{ctx}"
        );
        let e = s.open();
        assert_eq!(s.conn.stream_id(e), StreamId(7), "{ctx}");
        assert_eq!(s.read_all(a), (b"data".to_vec(), Poll::Pending), "{ctx}");
        // A waiting open learns of the peer's GoAway.
        let flag = Arc::new(Flag(AtomicBool::new(false)));
        let waker = Waker::from(flag.clone());
        assert_eq!(s.conn.poll_open(&waker), Poll::Pending, "{ctx}");
        s.feed_ok(&go_away(d, 0));
        assert!(
            flag.0.load(Ordering::SeqCst),
            "{ctx}: GoAway wakes the waiting open"
        );
        assert_eq!(
            s.conn.poll_open(&waker),
            Poll::Ready(Err(Error::GoAway(0))),
            "{ctx}"
        );
    }
    // smux has no ACK: opens are never held.
    for d in SMUX {
        let config = Config::for_dialect(d)
            .to_builder()
            .max_unacked_outbound(2)
            .build()
            .unwrap();
        let mut s = Session::with_config(config, Role::Client);
        for id in [3, 5, 7] {
            let k = s.open();
            assert_eq!(s.conn.stream_id(k), StreamId(id), "{}", d.name());
        }
    }
}

#[test]
fn goaway_received_stops_opens_not_streams() {
    for d in YAMUX_SHAPED {
        let ctx = d.name();
        let mut s = Session::new(d, Role::Client);
        let k = s.open();
        assert_eq!(s.output(), syn(d, 1), "{ctx}");
        s.feed_ok(&cat(&[&ack(d, 1), &go_away(d, 0)]));
        assert_eq!(s.conn.end_reason(), None, "{ctx}");
        assert_eq!(
            s.conn.poll_open(noop()),
            Poll::Ready(Err(Error::GoAway(0))),
            "{ctx}"
        );
        assert_eq!(s.output(), b"", "{ctx}: GoAway is not answered");
        // The existing stream carries data both ways.
        assert_eq!(s.write(k, b"ping"), Poll::Ready(Ok(4)), "{ctx}");
        assert_eq!(s.output(), data(d, 1, b"ping"), "{ctx}");
        s.feed_ok(&data(d, 1, b"pong"));
        assert_eq!(s.read_all(k), (b"pong".to_vec(), Poll::Pending), "{ctx}");
        // A second GoAway does not change the code.
        s.feed_ok(&go_away(d, 2));
        assert_eq!(
            s.conn.poll_open(noop()),
            Poll::Ready(Err(Error::GoAway(0))),
            "{ctx}"
        );
        s.feed_ok(&data(d, 1, b"last"));
        // EOF after GoAway: the session ends for that reason, with no GoAway of ours.
        s.conn.handle_eof(0);
        assert_eq!(s.conn.end_reason(), Some(&Error::GoAway(0)), "{ctx}");
        assert_eq!(s.output(), b"", "{ctx}");
        assert_eq!(
            s.read_all(k),
            (b"last".to_vec(), Poll::Ready(Err(Error::GoAway(0)))),
            "{ctx}"
        );
        assert_eq!(
            s.write(k, b"x"),
            Poll::Ready(Err(Error::GoAway(0))),
            "{ctx}"
        );
    }
}

#[test]
fn ping_flood_is_bounded() {
    const PINGS: u32 = 100_000;
    for d in YAMUX_SHAPED {
        let ctx = d.name();
        let mut s = Session::new(d, Role::Server);
        let mut flood = Vec::with_capacity(PINGS as usize * 12);
        for i in 0..PINGS {
            flood.extend(ping(d, i));
        }
        s.feed(&flood);
        // The control queue filled up: decoding stopped with input left over.
        assert!(!s.conn.wants_input(), "{ctx}");
        assert!(!s.rx.is_empty(), "{ctx}");
        assert_eq!(s.conn.end_reason(), None, "{ctx}");
        let mut expected = 0u32;
        let mut rounds = 0;
        loop {
            let batch = s.conn.poll_transmit().expect("pongs queued");
            assert!(
                batch.control.len() <= 64 * KIB + 12,
                "{ctx}: {} control bytes queued",
                batch.control.len()
            );
            assert!(batch.data.is_empty(), "{ctx}");
            for frame in batch.control.chunks(12) {
                assert_eq!(frame, pong(d, expected), "{ctx}");
                expected += 1;
            }
            s.conn.transmitted(batch);
            rounds += 1;
            if s.rx.is_empty() {
                break;
            }
            // Drained: decoding resumes where it stopped.
            assert!(s.conn.wants_input(), "{ctx}");
            let before = s.rx.len();
            s.feed(&[]);
            assert!(s.rx.len() < before, "{ctx}: no progress after draining");
        }
        assert_eq!(s.output().len(), 0, "{ctx}");
        assert_eq!(expected, PINGS, "{ctx}: every ping answered once, in order");
        assert!(
            rounds > 10,
            "{ctx}: only {rounds} rounds, so the queue was not bounded"
        );
        assert!(
            s.conn.wants_input() && s.conn.end_reason().is_none(),
            "{ctx}"
        );
    }
}

#[test]
fn receive_budget_pauses_decoding() {
    const BUDGET: usize = 512 * KIB;
    for d in ALL {
        let ctx = d.name();
        let config = Config::for_dialect(d)
            .to_builder()
            .session_recv_budget(BUDGET)
            .build()
            .unwrap();
        let mut s = Session::with_config(config, Role::Server);
        let ids = [1u32, 3, 5, 7];
        let mut wire = Vec::new();
        for id in ids {
            wire.extend(syn(d, id));
            wire.extend(data(d, id, &payload(id as u8, INITIAL_WINDOW)));
        }
        s.feed(&wire);
        assert!(
            !s.conn.wants_input(),
            "{ctx}: decoding must pause at the budget"
        );
        assert!(!s.rx.is_empty(), "{ctx}");
        assert!(
            s.conn.stats().recv_buffered <= BUDGET,
            "{ctx}: {:?}",
            s.conn.stats()
        );
        assert_eq!(s.conn.end_reason(), None, "{ctx}");
        // Feeding again while paused changes nothing.
        let left = s.rx.len();
        s.feed(&[]);
        assert_eq!(s.rx.len(), left, "{ctx}");

        let mut keys = Vec::new();
        let mut done = Vec::new();
        while done.len() < ids.len() {
            while let Poll::Ready(Ok(k)) = s.conn.poll_accept(noop()) {
                keys.push(k);
            }
            let Some(&k) = keys.iter().find(|k| !done.contains(*k)) else {
                panic!(
                    "{ctx}: no stream to read while paused: {:?}",
                    s.conn.stats()
                );
            };
            let id = s.conn.stream_id(k).0;
            let mut got = Vec::new();
            while got.len() < INITIAL_WINDOW {
                let (more, last) = s.read_all(k);
                got.extend(more);
                assert_eq!(last, Poll::Pending, "{ctx}");
                if got.len() < INITIAL_WINDOW {
                    // The rest of this stream's bytes wait behind the budget.
                    assert!(s.conn.wants_input(), "{ctx}: reading must resume decoding");
                    let before = s.rx.len();
                    s.feed(&[]);
                    assert!(s.rx.len() < before, "{ctx}: no progress");
                }
            }
            assert!(
                got == payload(id as u8, INITIAL_WINDOW),
                "{ctx}: stream {id} corrupted"
            );
            done.push(k);
            assert!(s.conn.stats().recv_buffered <= BUDGET, "{ctx}");
            s.feed(&[]);
            assert!(s.conn.stats().recv_buffered <= BUDGET, "{ctx}");
        }
        assert!(s.rx.is_empty(), "{ctx}");
        assert!(s.conn.wants_input(), "{ctx}");
        assert_eq!(s.conn.stats().recv_buffered, 0, "{ctx}");
        assert_eq!(s.conn.end_reason(), None, "{ctx}");
    }
}

// ---- robustness -----------------------------------------------------------------------------

#[test]
fn garbage_never_panics() {
    // Plausible-looking random frames (right version byte, small types and ids), in random
    // pieces, with the application accepting, reading and writing in between. The engine may
    // end the session, but must not panic, and a violation must still be announced last.
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut rand = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut violations = 0;
    for round in 0..2_000 {
        let d = ALL[round % 4];
        let role = if round % 8 < 4 {
            Role::Server
        } else {
            Role::Client
        };
        let mut s = Session::new(d, role);
        let mut wire = Vec::new();
        for _ in 0..(rand() % 24) {
            let r = rand();
            let id = (r >> 8) as u32 % 8;
            let len = match (r >> 16) % 4 {
                0 => 0,
                1 => (r >> 24) as u32 % 64,
                2 => 8,
                _ => (r >> 24) as u32,
            };
            let mut frame = if is_smux(d) {
                cmd(d, (r % 6) as u8, len as u16, id)
            } else {
                hdr(d, (r % 5) as u8, ((r >> 4) % 16) as u16, id, len)
            };
            if (r >> 40) % 50 == 0 {
                frame[0] ^= 1;
            }
            wire.extend(frame);
            let body = (len as usize).min(64);
            wire.extend(std::iter::repeat_n(0xa5, body));
        }
        let mut sent = Vec::new();
        let mut rest = &wire[..];
        while !rest.is_empty() {
            let n = (rand() as usize % 40 + 1).min(rest.len());
            s.feed(&rest[..n]);
            rest = &rest[n..];
            if rand() % 3 == 0 {
                if let Poll::Ready(Ok(k)) = s.conn.poll_accept(noop()) {
                    let _ = s.read_all(k);
                    let _ = s.write(k, b"reply");
                }
            }
            sent.extend(s.output());
        }
        s.conn.handle_eof(s.rx.len());
        sent.extend(s.output());
        assert!(s.conn.is_ended(), "round {round}");
        if let Some(reason @ Error::ProtocolViolation(_)) = s.conn.end_reason() {
            violations += 1;
            if let Some(code) = d.goaway_code_for(reason) {
                assert!(
                    sent.ends_with(&go_away(d, code)),
                    "round {round}: no GoAway({code}) last"
                );
            }
        }
    }
    // Both outcomes are exercised (about 95 % violations with this seed).
    assert!(
        (1_000..2_000).contains(&violations),
        "{violations} violations"
    );
}
