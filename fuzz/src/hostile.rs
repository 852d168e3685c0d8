//! The `engine_hostile` target: one [`Connection`] facing a peer that sends whatever it
//! likes: structured frames encoded with the dialect's own codec (so the fuzzer gets past the
//! header checks, deep into the engine), raw bytes, truncated or over-long Data frames; that
//! reads our output or never does; while our application calls the API and time passes.
//!
//! Checked on the way: no panic; buffered received bytes within the session budget, backlog
//! and stream limit respected (`check_bounds`); our output is always valid frames; on
//! yamux/net-mux we never send a stream more payload than the peer's credit (256 KiB plus the
//! deltas it granted for that id: credit never negative). At the end the transport closes:
//! the session ends and answers every call at once.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use arbitrary::Arbitrary;
use bytes::BytesMut;
use polymux_proto::{Config, Connection, Dialect, Flags, Frame, Role, StreamId};

use crate::engine::{self, Api, App, DialectSel, OutputParser, Profile};

/// Which stream id a hostile frame names.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum StreamSel {
    /// The id of the n-th stream our side opened (modulo their number; 1 if none).
    Ours(u8),
    /// A small id: the ones a peer would open first.
    Small(u8),
    /// Any id.
    Any(u32),
}

/// The frame kinds a peer can send (mapped onto what the dialect can express).
#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum Kind {
    /// Data with `payload` bytes, which follow.
    Data,
    /// Data whose header claims `value` bytes; only `payload` bytes follow (a lie, either way).
    DataLie,
    /// yamux WindowUpdate (`value` = delta); smux v2 UPD (`value` = consumed, `value2` =
    /// window); smux v1 NOP.
    Credit,
    /// Ping (`value` = opaque); smux NOP.
    Ping,
    /// GoAway (`value` = code); smux NOP.
    GoAway,
}

/// One frame from the peer.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub struct PeerFrame {
    /// What kind of frame.
    pub kind: Kind,
    /// Which stream it names.
    pub stream: StreamSel,
    /// Low four bits: SYN, ACK, FIN, RST (yamux-shaped); on smux, SYN or FIN pick those
    /// commands. Higher bits are kept on yamux-shaped frames (unknown flags).
    pub flags: u16,
    /// Data length (`DataLie`), credit delta or smux `consumed`, ping opaque, GoAway code.
    pub value: u32,
    /// smux v2 UPD window.
    pub value2: u32,
    /// Payload bytes that follow a Data header.
    pub payload: u16,
}

impl PeerFrame {
    /// A frame with these fields (see the field docs).
    pub fn new(
        kind: Kind,
        stream: StreamSel,
        flags: u16,
        value: u32,
        value2: u32,
        payload: u16,
    ) -> PeerFrame {
        PeerFrame {
            kind,
            stream,
            flags,
            value,
            value2,
            payload,
        }
    }
}

/// One step of a run.
#[derive(Arbitrary, Debug, Clone)]
pub enum HostileOp {
    /// Our application calls the API.
    Api(Api),
    /// The peer sends a frame (queued on the wire toward us).
    Frame(PeerFrame),
    /// The peer sends raw bytes.
    Raw(Vec<u8>),
    /// Our driver reads up to `n` bytes of what the peer sent (`0`: all of it).
    Feed(u16),
    /// The peer reads our output: `n` batches (`0`: everything queued).
    Drain(u8),
    /// Virtual time passes (milliseconds, times 8); due timers fire.
    Advance(u16),
    /// The peer closes the transport: our driver reaches EOF after what was sent.
    Eof,
}

/// A whole run.
#[derive(Arbitrary, Debug, Clone)]
pub struct HostileInput {
    /// The dialect.
    pub dialect: DialectSel,
    /// The configuration.
    pub profile: Profile,
    /// Our role (the peer has the other).
    pub server: bool,
    /// The steps; the transport closes after them.
    pub ops: Vec<HostileOp>,
}

struct Run {
    dialect: Dialect,
    conn: Connection,
    app: App,
    client: bool,
    /// Peer bytes not yet read by our driver, and bytes read but not decoded.
    wire: BytesMut,
    rx: BytesMut,
    eof: bool,
    eof_seen: bool,
    parser: OutputParser,
    /// yamux/net-mux: per stream id, payload we sent and credit the peer granted.
    sent: HashMap<u32, u64>,
    granted: HashMap<u32, u64>,
    base: Instant,
    ms: u64,
    scratch: Vec<u8>,
    frame_buf: BytesMut,
}

impl Run {
    fn new(dialect: Dialect, config: Config, server: bool) -> Run {
        let base = Instant::now();
        let role = if server { Role::Server } else { Role::Client };
        Run {
            dialect,
            conn: Connection::new(role, config, base),
            app: App::default(),
            client: !server,
            wire: BytesMut::new(),
            rx: BytesMut::new(),
            eof: false,
            eof_seen: false,
            parser: OutputParser::default(),
            sent: HashMap::new(),
            granted: HashMap::new(),
            base,
            ms: 0,
            scratch: Vec::new(),
            frame_buf: BytesMut::new(),
        }
    }

    fn now(&self) -> Instant {
        self.base + Duration::from_millis(self.ms)
    }

    fn stream_id(&self, sel: StreamSel) -> StreamId {
        match sel {
            StreamSel::Ours(i) => {
                let ours: Vec<u32> = self.app.reads.keys().copied().collect();
                let mut ours = ours;
                ours.sort_unstable();
                StreamId(
                    ours.get(usize::from(i) % ours.len().max(1))
                        .copied()
                        .unwrap_or(1),
                )
            }
            StreamSel::Small(i) => StreamId(u32::from(i % 16)),
            StreamSel::Any(id) => StreamId(id),
        }
    }

    /// Encodes `f` as the dialect can express it and queues it on the wire.
    fn peer_frame(&mut self, f: &PeerFrame) {
        let stream = self.stream_id(f.stream);
        let flags = Flags(f.flags);
        let smux = matches!(self.dialect, Dialect::SmuxV1 | Dialect::SmuxV2);
        let (frame, payload) = match f.kind {
            Kind::Data | Kind::DataLie => {
                let claimed = if matches!(f.kind, Kind::Data) {
                    u32::from(f.payload)
                } else {
                    f.value
                };
                if smux {
                    let frame = if flags.contains(Flags::SYN) {
                        Frame::Data {
                            stream,
                            flags: Flags::SYN,
                            len: 0,
                        }
                    } else if flags.contains(Flags::FIN) {
                        Frame::Data {
                            stream,
                            flags: Flags::FIN,
                            len: 0,
                        }
                    } else {
                        Frame::Data {
                            stream,
                            flags: Flags::NONE,
                            len: claimed & 0xFFFF,
                        }
                    };
                    (frame, usize::from(f.payload))
                } else {
                    (
                        Frame::Data {
                            stream,
                            flags,
                            len: claimed,
                        },
                        usize::from(f.payload),
                    )
                }
            }
            Kind::Credit => match self.dialect {
                Dialect::Yamux | Dialect::NetMux => {
                    *self.granted.entry(stream.0).or_default() += u64::from(f.value);
                    (
                        Frame::WindowUpdate {
                            stream,
                            flags,
                            delta: f.value,
                        },
                        0,
                    )
                }
                Dialect::SmuxV2 => (
                    Frame::Update {
                        stream,
                        consumed: f.value,
                        window: f.value2,
                    },
                    0,
                ),
                Dialect::SmuxV1 => (Frame::Nop, 0),
            },
            Kind::Ping if !smux => (
                Frame::Ping {
                    ack: flags.contains(Flags::ACK),
                    opaque: f.value,
                },
                0,
            ),
            Kind::GoAway if !smux => (Frame::GoAway { code: f.value }, 0),
            Kind::Ping | Kind::GoAway => (Frame::Nop, 0),
        };
        self.frame_buf.clear();
        self.dialect.encode(&frame, &mut self.frame_buf);
        self.wire.extend_from_slice(&self.frame_buf);
        let start = self.wire.len();
        self.wire.resize(start + payload, 0);
        for (i, b) in self.wire[start..].iter_mut().enumerate() {
            *b = i as u8;
        }
    }

    /// Our driver reads up to `max` bytes of the peer's, and the EOF once everything before
    /// it was taken.
    fn feed(&mut self, max: usize) {
        let now = self.now();
        if self.eof_seen || !self.conn.wants_input() {
            return;
        }
        if !self.rx.is_empty() {
            self.conn.handle_input(&mut self.rx, now);
        }
        let n = max.min(self.wire.len());
        if n > 0 && self.conn.wants_input() {
            self.rx.extend_from_slice(&self.wire.split_to(n));
            self.conn.handle_input(&mut self.rx, now);
        }
        if self.eof && self.wire.is_empty() && self.conn.wants_input() {
            self.eof_seen = true;
            self.conn.handle_eof(self.rx.len());
        }
    }

    /// The peer reads `batches` batches of our output (`usize::MAX`: all).
    fn drain(&mut self, batches: usize) {
        let dialect = self.dialect;
        let track = dialect.has_ack();
        for _ in 0..batches {
            let Some(batch) = self.conn.poll_transmit(self.now()) else {
                break;
            };
            let sent = &mut self.sent;
            for part in batch.pieces() {
                self.parser.feed(
                    dialect,
                    part,
                    |_| {},
                    |id, n| {
                        if track {
                            *sent.entry(id).or_default() += n as u64;
                        }
                    },
                );
            }
            self.conn.transmitted(batch);
        }
    }

    fn put_direct(&mut self, bytes: &[u8]) {
        let dialect = self.dialect;
        let track = dialect.has_ack();
        let sent = &mut self.sent;
        self.parser.feed(
            dialect,
            bytes,
            |_| {},
            |id, n| {
                if track {
                    *sent.entry(id).or_default() += n as u64;
                }
            },
        );
    }

    fn step(&mut self, op: &HostileOp) {
        match op {
            HostileOp::Api(api) => {
                let now = self.now();
                let direct = engine::apply_api(
                    &mut self.conn,
                    &mut self.app,
                    self.client,
                    false,
                    api,
                    now,
                    &mut self.scratch,
                );
                if let Some(bytes) = direct {
                    self.put_direct(&bytes);
                }
            }
            HostileOp::Frame(f) => {
                if !self.eof {
                    self.peer_frame(f);
                }
            }
            HostileOp::Raw(bytes) => {
                if !self.eof {
                    self.wire.extend_from_slice(bytes);
                }
            }
            HostileOp::Feed(n) => self.feed(if *n == 0 { usize::MAX } else { usize::from(*n) }),
            HostileOp::Drain(n) => self.drain(if *n == 0 { usize::MAX } else { usize::from(*n) }),
            HostileOp::Advance(ms) => {
                self.ms += u64::from(*ms) * 8;
                let now = self.now();
                if self.conn.poll_timeout().is_some_and(|t| t <= now) {
                    self.conn.handle_timeout(now);
                }
            }
            HostileOp::Eof => self.eof = true,
        }
        self.check();
    }

    fn check(&self) {
        engine::check_bounds(&self.conn);
        for (id, &sent) in &self.sent {
            let granted = u64::from(polymux_proto::PROTOCOL_INITIAL_WINDOW)
                + self.granted.get(id).copied().unwrap_or(0);
            assert!(
                sent <= granted,
                "stream {id}: sent {sent} payload bytes, the peer granted {granted}"
            );
        }
    }

    fn finish(&mut self) {
        self.drain(usize::MAX);
        self.eof = true;
        // Our driver reads up to the EOF, with our application reading everything so that the
        // receive budget never holds the EOF back.
        for _ in 0..100_000 {
            if self.eof_seen || self.conn.is_ended() {
                break;
            }
            let now = self.now();
            for h in &mut self.app.handles {
                while let engine::ReadResult::Bytes(_) =
                    engine::read_once(&mut self.conn, h, None, 64 * 1024, &mut self.scratch, now)
                {
                }
            }
            while self.conn.stats().pending_accept > 0 {
                let now = self.now();
                engine::apply_api(
                    &mut self.conn,
                    &mut self.app,
                    self.client,
                    false,
                    &Api::Accept,
                    now,
                    &mut self.scratch,
                );
                if let Some(h) = self.app.handles.last() {
                    // Accepted and dropped: what arrives for it is discarded.
                    let key = h.key;
                    self.app.handles.pop();
                    self.conn.release(key, now);
                }
            }
            self.feed(usize::MAX);
            self.drain(usize::MAX);
            self.check();
        }
        assert!(
            self.conn.is_ended(),
            "the transport reached EOF, yet the session goes on"
        );
        let now = self.now();
        engine::check_ended_answers(&mut self.conn, &mut self.app, &mut self.scratch, now);
        self.drain(usize::MAX);
        let now = self.now();
        for h in self.app.handles.drain(..) {
            self.conn.release(h.key, now);
        }
        self.check();
    }
}

/// Figures of one run (used to pick seeds that get deep).
#[derive(Debug, Default, Clone)]
pub struct Summary {
    /// Payload bytes the engine received.
    pub received: u64,
    /// Streams the peer opened (accepted or refused).
    pub opened_inbound: u64,
    /// Streams our application opened.
    pub opened_outbound: u64,
    /// Whether the session ended with a protocol violation before the transport closed.
    pub violation: bool,
}

/// Runs a whole input: every op, then the transport closes.
pub fn run(input: &HostileInput) -> Summary {
    let dialect = input.dialect.dialect();
    let config = engine::config(dialect, input.profile);
    let mut run = Run::new(dialect, config, input.server);
    for op in &input.ops {
        run.step(op);
    }
    let violation = matches!(
        run.conn.end_reason(),
        Some(polymux_proto::Error::ProtocolViolation(_))
    );
    run.finish();
    let stats = run.conn.stats();
    Summary {
        received: stats.bytes_received,
        opened_inbound: stats.opened_inbound,
        opened_outbound: stats.opened_outbound,
        violation,
    }
}
