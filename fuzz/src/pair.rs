//! The `engine_pair` target: a client and a server [`Connection`] back to back, driven by an
//! arbitrary interleaving of API calls on either side, partial writes of each side's output
//! onto its wire, partial reads of the wire into the peer, virtual time passing, and a
//! transport dying.
//!
//! Both peers are our engine, so more holds than against a hostile peer:
//! - neither session ever ends with a protocol violation (each emits only what the other
//!   accepts), and every byte read is the byte written at that offset;
//! - per stream, what a writer has written and its reader has not read stays within the credit
//!   the reader can have granted (flow control never lets a writer overrun: credit is never
//!   negative), on the dialects that have it;
//! - at the end (the `finish` phase): once everything is delivered and read, no bytes stay
//!   buffered; a stream its writer closed is read to EOF with every byte (unless a session
//!   ended first or someone reset it); after `close()` on both sides and every handle
//!   released, both sessions end with no time passing, and an ended session answers every
//!   call at once.

use std::time::{Duration, Instant};

use arbitrary::Arbitrary;
use bytes::BytesMut;
use polymux_proto::{Connection, Dialect, Error, Role, Transmit, PROTOCOL_INITIAL_WINDOW};

use crate::engine::{self, Api, App, DialectSel, OutputParser, Profile, ReadResult};

/// One step of a run.
#[derive(Arbitrary, Debug, Clone)]
pub enum PairOp {
    /// The client's (`true`) or server's application calls the API.
    Api(bool, Api),
    /// The side's driver writes up to `n` bytes of its output onto its wire (`0`: all of it).
    Send(bool, u16),
    /// The side's driver reads up to `n` bytes from its incoming wire (`0`: all of it).
    Recv(bool, u16),
    /// Virtual time passes (milliseconds); due timers fire on both sides.
    Advance(u16),
    /// The side's transport fails (only between frames: a half-written frame, of a batch or
    /// a direct write, would make the peer see a truncated frame, a legitimate violation).
    Kill(bool),
}

/// A whole run.
#[derive(Arbitrary, Debug, Clone)]
pub struct PairInput {
    /// The dialect.
    pub dialect: DialectSel,
    /// The configuration of both sides.
    pub profile: Profile,
    /// The steps; the finish phase follows.
    pub ops: Vec<PairOp>,
}

/// Figures of one run (used to pick seeds that make a whole conversation).
#[derive(Debug, Default, Clone)]
pub struct Summary {
    /// Payload bytes each side received.
    pub received: [u64; 2],
    /// Streams each side opened.
    pub opened: [u64; 2],
    /// Whether a session ended before the finish phase.
    pub ended_early: bool,
    /// Bytes that crossed each wire.
    pub wire_bytes: [u64; 2],
}

struct Side {
    conn: Connection,
    app: App,
    client: bool,
    /// The batch being written, and how much of it is on the wire.
    sending: Option<(Transmit, usize)>,
    /// Received bytes not yet decoded.
    rx: BytesMut,
    /// The transport this side writes to is closed (EOF after the wire's bytes).
    closed: bool,
    /// handle_eof was called (the peer's EOF reached us).
    eof_seen: bool,
    /// The output as the peer will parse it (checks its validity).
    parser: OutputParser,
}

/// The two sides, their wires and the clock. `wires[i]` carries what `sides[i]` sent.
pub struct Pair {
    dialect: Dialect,
    sides: [Side; 2],
    wires: [BytesMut; 2],
    base: Instant,
    ms: u64,
    scratch: Vec<u8>,
    killed: bool,
    /// Record every byte sent per direction (for seed generation).
    pub record: Option<[Vec<u8>; 2]>,
}

impl Pair {
    /// A fresh pair speaking `dialect` with `profile`.
    pub fn new(dialect: Dialect, profile: Profile) -> Pair {
        let config = engine::config(dialect, profile);
        let base = Instant::now();
        let side = |role: Role| Side {
            conn: Connection::new(role, config.clone(), base),
            app: App::default(),
            client: role == Role::Client,
            sending: None,
            rx: BytesMut::new(),
            closed: false,
            eof_seen: false,
            parser: OutputParser::default(),
        };
        Pair {
            dialect,
            sides: [side(Role::Client), side(Role::Server)],
            wires: [BytesMut::new(), BytesMut::new()],
            base,
            ms: 0,
            scratch: Vec::new(),
            killed: false,
            record: None,
        }
    }

    fn now(&self) -> Instant {
        self.base + Duration::from_millis(self.ms)
    }

    fn put_on_wire(&mut self, s: usize, bytes: &[u8]) {
        let dialect = self.dialect;
        self.sides[s].parser.feed(dialect, bytes, |_| {}, |_, _| {});
        self.wires[s].extend_from_slice(bytes);
        if let Some(rec) = &mut self.record {
            rec[s].extend_from_slice(bytes);
        }
    }

    /// Applies one op, then checks the invariants.
    pub fn step(&mut self, op: &PairOp) {
        match *op {
            PairOp::Api(client, ref api) => {
                let s = usize::from(!client);
                let now = self.now();
                let side = &mut self.sides[s];
                if side.closed {
                    return;
                }
                let direct = engine::apply_api(
                    &mut side.conn,
                    &mut side.app,
                    side.client,
                    true,
                    api,
                    now,
                    &mut self.scratch,
                );
                if let Some(bytes) = direct {
                    self.put_on_wire(s, &bytes);
                }
            }
            PairOp::Send(client, n) => {
                let max = if n == 0 { usize::MAX } else { usize::from(n) };
                self.send(usize::from(!client), max);
            }
            PairOp::Recv(client, n) => {
                let max = if n == 0 { usize::MAX } else { usize::from(n) };
                self.recv(usize::from(!client), max);
            }
            PairOp::Advance(ms) => {
                self.ms += u64::from(ms);
                let now = self.now();
                for side in &mut self.sides {
                    if side.conn.poll_timeout().is_some_and(|t| t <= now) {
                        side.conn.handle_timeout(now);
                    }
                }
            }
            PairOp::Kill(client) => {
                let side = &mut self.sides[usize::from(!client)];
                if side.parser.at_boundary() && !side.closed {
                    let err = std::io::Error::from(std::io::ErrorKind::BrokenPipe);
                    side.conn.handle_transport_error(&err);
                    side.closed = true;
                    self.killed = true;
                }
            }
        }
        self.check();
    }

    /// Writes up to `max` bytes of side `s`'s output to its wire. Returns the bytes written.
    fn send(&mut self, s: usize, max: usize) -> usize {
        let mut total = 0;
        let now = self.now();
        while total < max {
            let side = &mut self.sides[s];
            if side.closed {
                break;
            }
            if side.sending.is_none() {
                match side.conn.poll_transmit(now) {
                    Some(batch) => side.sending = Some((batch, 0)),
                    None => break,
                }
            }
            let Some((batch, done)) = &mut side.sending else {
                break;
            };
            let len = batch.len();
            let n = (max - total).min(len - *done);
            let (start, end) = (*done, *done + n);
            // The wire bytes `start..end` of the batch, across its pieces.
            let mut piece = Vec::with_capacity(n);
            let mut at = 0;
            for part in batch.pieces() {
                let (lo, hi) = (start.max(at), end.min(at + part.len()));
                if lo < hi {
                    piece.extend_from_slice(&part[lo - at..hi - at]);
                }
                at += part.len();
            }
            *done = end;
            if end == len {
                if let Some((batch, _)) = side.sending.take() {
                    side.conn.transmitted(batch);
                }
            }
            total += n;
            self.put_on_wire(s, &piece);
        }
        // An ended session whose output is flushed closes its transport.
        let side = &mut self.sides[s];
        if side.conn.is_ended() && side.sending.is_none() && !side.conn.has_pending_output() {
            side.closed = true;
        }
        total
    }

    /// Moves up to `max` bytes from side `s`'s incoming wire into it, decoding while it wants
    /// input; delivers the EOF once the wire is closed and drained.
    fn recv(&mut self, s: usize, max: usize) -> usize {
        let now = self.now();
        let peer_closed = self.sides[1 - s].closed;
        let wire = &mut self.wires[1 - s];
        let side = &mut self.sides[s];
        if side.closed || side.eof_seen || !side.conn.wants_input() {
            return 0;
        }
        // Leftover bytes first. Progress is bytes taken off the wire plus leftover bytes
        // decoded (input that had paused on the budget resumes from `rx` alone).
        let leftover = side.rx.len();
        if leftover > 0 {
            side.conn.handle_input(&mut side.rx, now);
        }
        let mut progress = leftover - side.rx.len();
        let n = max.min(wire.len());
        if n > 0 && side.conn.wants_input() {
            side.rx.extend_from_slice(&wire.split_to(n));
            side.conn.handle_input(&mut side.rx, now);
            progress += n;
        }
        if peer_closed && wire.is_empty() && side.conn.wants_input() {
            side.eof_seen = true;
            side.conn.handle_eof(side.rx.len());
        }
        progress
    }

    /// The invariants after every op.
    fn check(&mut self) {
        let bound = u64::from(
            self.sides[0]
                .conn
                .config()
                .max_stream_window()
                .max(PROTOCOL_INITIAL_WINDOW),
        );
        for s in 0..2 {
            let side = &self.sides[s];
            let peer = &self.sides[1 - s];
            engine::check_bounds(&side.conn);
            if let Some(Error::ProtocolViolation(v)) = side.conn.end_reason() {
                panic!(
                    "{:?} saw a protocol violation from our own engine: {v}",
                    role(s)
                );
            }
            let stats = side.conn.stats();
            assert_eq!(stats.bytes_sent, side.app.bytes_written, "bytes_sent");
            assert_eq!(stats.opened_outbound, side.app.opens, "opened_outbound");
            assert!(
                stats.bytes_received <= peer.app.bytes_written,
                "received {} payload bytes, the peer wrote {}",
                stats.bytes_received,
                peer.app.bytes_written
            );
            if !self.dialect.has_stream_credit() {
                continue;
            }
            for h in &side.app.handles {
                let read = match peer.app.reads.get(&h.id) {
                    Some(&(_, true)) => continue,
                    Some(&(read, false)) => read,
                    None => 0,
                };
                assert!(
                    h.written - read <= bound,
                    "stream {}: {} written, {read} read: over the credit bound {bound}",
                    h.id,
                    h.written
                );
            }
        }
    }

    /// Delivers everything both ways, accepting and reading everything, until nothing moves.
    fn settle(&mut self) {
        for _ in 0..10_000 {
            let mut moved = 0;
            for s in 0..2 {
                let client = self.sides[s].client;
                let side = &mut self.sides[s];
                if !side.closed {
                    let now = self.base + Duration::from_millis(self.ms);
                    while side.conn.stats().pending_accept > 0 {
                        let api = Api::Accept;
                        engine::apply_api(
                            &mut side.conn,
                            &mut side.app,
                            client,
                            true,
                            &api,
                            now,
                            &mut self.scratch,
                        );
                    }
                    // Read every stream held (accepted ones included) as far as it goes.
                    for h in &mut side.app.handles {
                        while let ReadResult::Bytes(_) = engine::read_once(
                            &mut side.conn,
                            h,
                            Some(!client),
                            64 * 1024,
                            &mut self.scratch,
                            now,
                        ) {
                            moved += 1;
                        }
                        if let Some(r) = side.app.reads.get_mut(&h.id) {
                            r.0 = h.read;
                        }
                    }
                }
                moved += self.send(s, usize::MAX);
            }
            for s in 0..2 {
                let was_eof = self.sides[s].eof_seen;
                moved += self.recv(s, usize::MAX);
                if self.sides[s].eof_seen != was_eof {
                    moved += 1;
                }
            }
            self.check();
            if moved == 0 {
                return;
            }
        }
        panic!("settle did not converge");
    }

    /// The finish phase: see the module docs.
    pub fn finish(&mut self) -> Summary {
        let ended_early = self.sides.iter().any(|s| s.conn.is_ended()) || self.killed;
        self.settle();
        // (An ended session drops its unaccepted streams from the accept queue, whose bytes
        // nobody can read any more: only a live session must have none left.)
        for s in (0..2).filter(|&s| !self.sides[s].conn.is_ended()) {
            let side = &self.sides[s];
            assert_eq!(
                side.conn.stats().recv_buffered,
                0,
                "{:?}: bytes stay buffered after everything was read",
                role(s)
            );
        }
        if !ended_early {
            // Every stream its writer closed was read to EOF with every byte.
            for s in 0..2 {
                let (w, r) = (&self.sides[s], &self.sides[1 - s]);
                for h in w.app.handles.iter().filter(|h| h.write_closed && !h.reset) {
                    let Some(rh) = r.app.handles.iter().find(|x| x.id == h.id) else {
                        continue; // released or refused by the reader
                    };
                    if rh.reset || rh.saw_reset || h.saw_reset {
                        continue;
                    }
                    assert!(
                        rh.eof && rh.read == h.written,
                        "stream {} ({:?} -> {:?}): {} written and closed, {} read, EOF {}",
                        h.id,
                        role(s),
                        role(1 - s),
                        h.written,
                        rh.read,
                        rh.eof
                    );
                }
            }
        }
        let mut summary = Summary {
            ended_early,
            ..Summary::default()
        };
        for s in 0..2 {
            summary.received[s] = self.sides[s].conn.stats().bytes_received;
            summary.opened[s] = self.sides[s].app.opens;
        }
        // Everything closes: graceful close on both sides, every handle released.
        let now = self.now();
        for side in &mut self.sides {
            side.conn.close(now);
            for h in side.app.handles.drain(..) {
                side.conn.release(h.key, now);
            }
        }
        self.settle();
        let now = self.now();
        for s in 0..2 {
            let side = &mut self.sides[s];
            assert!(
                side.conn.is_ended(),
                "{:?}: closed with every stream released, yet the session goes on ({} streams)",
                role(s),
                side.conn.stats().streams
            );
            engine::check_ended_answers(&mut side.conn, &mut side.app, &mut self.scratch, now);
        }
        summary.wire_bytes = [
            self.sides[0].conn.stats().bytes_sent,
            self.sides[1].conn.stats().bytes_sent,
        ];
        summary
    }
}

fn role(s: usize) -> Role {
    if s == 0 {
        Role::Client
    } else {
        Role::Server
    }
}

/// Runs a whole input: every op, then the finish phase.
pub fn run(input: &PairInput) -> Summary {
    let mut pair = Pair::new(input.dialect.dialect(), input.profile);
    for op in &input.ops {
        pair.step(op);
    }
    pair.finish()
}
