//! The two-peer simulation harness used by `tests/simulation.rs`.
//!
//! One [`Sim`] holds a client and a server [`Connection`], a [`Wire`] in each direction with a
//! fixed one-way delay, a virtual clock (`base + now_ms`), a seeded [`Rng`] and, per side, a
//! model of every stream the application handled ([`SimStream`]). The model is what the
//! checks compare the engine against: which bytes were written, read, closed, reset, released.
//!
//! The harness acts as the application *and* the driver, with the driver contract of the
//! `polymux` crate: take a batch with `poll_transmit`, write it (here: in random pieces onto the
//! wire), report it with `transmitted`, only then take the next; feed input only while
//! `wants_input()`, re-offering leftover bytes first; call `handle_eof(rx.len())` when the
//! peer's transport is closed and everything before the EOF was consumed; close the transport
//! once the session ended and its output is flushed.
//!
//! Wake-ups are checked too: every command that returns `Pending` arms a [`Waiter`], and when a
//! later poll of the same operation completes, the engine must have woken that waiter in
//! between (the condition changed, so a real task would otherwise sleep forever).
//!
//! Any panic prints the dialect, seed, step and virtual time (see `Drop for Sim`), and the run
//! can be replayed with `SIM_DIALECT=<name> SIM_SEED=<seed>`.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Poll, Wake, Waker};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use polymux_proto::{
    Config, Connection, Dialect, Error, Flags, Frame, Role, StreamKey, Transmit,
    PROTOCOL_INITIAL_WINDOW,
};

// ---- randomness and payloads ------------------------------------------------------------------

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// xorshift64*, seeded through splitmix64 so that neighbouring seeds are unrelated.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        // xorshift's state must never be zero.
        Rng(splitmix(seed) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n` (`n > 0`; the modulo bias is irrelevant here).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }

    pub fn percent(&mut self, p: u64) -> bool {
        self.below(100) < p
    }

    /// A size in `1..=max` skewed towards the edges: single bytes, tiny, small, and anything.
    pub fn size(&mut self, max: usize) -> usize {
        if max <= 1 {
            return max;
        }
        let cap = match self.below(10) {
            0 => 1,
            1 | 2 => 16,
            3..=5 => 1024,
            6 | 7 => 16 * 1024,
            _ => max,
        };
        self.range(1, cap.min(max) as u64) as usize
    }
}

/// The deterministic payload of the direction of stream `id` written by `writer`: byte `off`
/// is a keyed hash of the offset, so a lost, duplicated or reordered byte shows up as a wrong
/// value at the reader.
pub fn payload_salt(writer: Role, id: u32) -> u64 {
    splitmix(u64::from(id) << 1 | u64::from(writer == Role::Client))
}

/// Fills `out` with the payload bytes at offsets `off..off + out.len()`.
pub fn fill_payload(salt: u64, off: u64, out: &mut [u8]) {
    let mut i = 0;
    while i < out.len() {
        let at = off + i as u64;
        let block = splitmix(salt ^ (at >> 3)).to_le_bytes();
        let skip = (at & 7) as usize;
        let n = (8 - skip).min(out.len() - i);
        out[i..i + n].copy_from_slice(&block[skip..skip + n]);
        i += n;
    }
}

pub fn payload_byte(salt: u64, off: u64) -> u8 {
    // A hash per 8-byte block (not a linear function of the offset, whose streams would all be
    // shifted copies of one sequence).
    (splitmix(salt ^ (off >> 3)) >> ((off & 7) * 8)) as u8
}

// ---- wakers -----------------------------------------------------------------------------------

struct Flag(AtomicBool);

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.0.store(true, Ordering::SeqCst);
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// One waiting "task": a waker that records being woken, and whether a wake-up is owed.
pub struct Waiter {
    flag: Arc<Flag>,
    waker: Waker,
    armed: bool,
}

impl Waiter {
    pub fn new() -> Waiter {
        let flag = Arc::new(Flag(AtomicBool::new(false)));
        Waiter {
            waker: Waker::from(flag.clone()),
            flag,
            armed: false,
        }
    }

    pub fn waker(&self) -> &Waker {
        &self.waker
    }

    /// The poll returned `Pending`: the engine now owes this waiter a wake-up.
    pub fn arm(&mut self) {
        self.flag.0.store(false, Ordering::SeqCst);
        self.armed = true;
    }

    /// The application gave up waiting (its own action made the operation moot).
    pub fn cancel(&mut self) {
        self.armed = false;
    }

    pub fn is_armed(&self) -> bool {
        self.armed
    }

    pub fn woken(&self) -> bool {
        self.flag.0.load(Ordering::SeqCst)
    }

    /// The operation completed. Returns `false` if it had been pending and nobody woke it: a
    /// lost wake-up (the task would have slept forever).
    pub fn complete(&mut self) -> bool {
        let ok = !self.armed || self.woken();
        self.armed = false;
        ok
    }
}

impl Default for Waiter {
    fn default() -> Self {
        Waiter::new()
    }
}

// ---- the wire ---------------------------------------------------------------------------------

/// One direction of the transport: an ordered byte pipe with a fixed one-way delay.
pub struct Wire {
    pub delay_ms: u64,
    /// (arrival time, bytes), in order, one chunk per arrival time: arrival times increase
    /// (fixed delay, FIFO).
    chunks: VecDeque<(u64, BytesMut)>,
    /// The sender closed its transport: EOF arrives at this time, after the queued bytes.
    pub eof_at: Option<u64>,
    /// Bytes sent at or after this time are silently dropped (a peer that stopped answering).
    pub blocked_from: Option<u64>,
    pub bytes_sent: u64,
}

impl Wire {
    pub fn new(delay_ms: u64) -> Wire {
        Wire {
            delay_ms,
            chunks: VecDeque::new(),
            eof_at: None,
            blocked_from: None,
            bytes_sent: 0,
        }
    }

    fn send(&mut self, now: u64, bytes: Bytes) {
        if bytes.is_empty() || self.blocked_from.is_some_and(|t| now >= t) {
            return;
        }
        self.bytes_sent += bytes.len() as u64;
        let at = now + self.delay_ms;
        match self.chunks.back_mut() {
            Some((t, chunk)) if *t == at => chunk.extend_from_slice(&bytes),
            _ => self.chunks.push_back((at, BytesMut::from(&bytes[..]))),
        }
    }

    fn close(&mut self, now: u64) {
        if self.blocked_from.is_some_and(|t| now >= t) {
            return;
        }
        self.eof_at = Some(now + self.delay_ms);
    }

    /// The sender's EOF has arrived (after everything it sent).
    fn eof_arrived(&self, now: u64) -> bool {
        self.is_empty() && self.eof_at.is_some_and(|t| t <= now)
    }

    /// Bytes that have arrived by `now`.
    fn arrived(&self, now: u64) -> usize {
        self.chunks
            .iter()
            .take_while(|(t, _)| *t <= now)
            .map(|(_, b)| b.len())
            .sum()
    }

    /// Moves up to `max` arrived bytes to `out`; returns how many.
    fn take(&mut self, now: u64, max: usize, out: &mut BytesMut) -> usize {
        let mut moved = 0;
        while moved < max {
            let Some((t, front)) = self.chunks.front_mut() else {
                break;
            };
            if *t > now {
                break;
            }
            let n = front.len().min(max - moved);
            if out.is_empty() && n == front.len() {
                // Hand over the whole chunk without copying.
                *out = std::mem::take(front);
            } else {
                out.extend_from_slice(&front[..n]);
                front.advance(n);
            }
            moved += n;
            if front.is_empty() {
                self.chunks.pop_front();
            }
        }
        moved
    }

    pub fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }

    fn next_arrival(&self) -> Option<u64> {
        self.chunks.front().map(|(t, _)| *t)
    }
}

// ---- the model --------------------------------------------------------------------------------

/// What the application of one side did with one stream.
pub struct SimStream {
    /// `None` once released.
    pub key: Option<StreamKey>,
    /// This side opened it.
    pub local: bool,
    /// net-mux: the open was acknowledged (`poll_established` returned `Ok`).
    pub established: bool,
    /// Bytes this side means to write.
    pub target: u64,
    pub written: u64,
    /// This side sent FIN (close_write, release, or a smux reset, which is a FIN on the wire).
    pub write_closed: bool,
    /// Stopped writing before `target` (closed early, or released).
    pub abandoned: bool,
    pub read: u64,
    /// Read returned `Ok(0)`.
    pub eof: bool,
    pub reset_local: bool,
    /// `reset()` was called after this side's FIN or the peer's RST: if the stream was already
    /// finished (peer's FIN arrived too, or its RST did), the reset is a no-op and bytes that
    /// arrived stay readable.
    pub reset_maybe_noop: bool,
    /// An operation failed with `StreamReset`/`StreamRefused`.
    pub saw_reset: bool,
    /// An operation failed with the session's end reason.
    pub session_gone: bool,
    /// Released before reading to EOF (inbound bytes are then discarded by design).
    pub released_early: bool,
    pub read_w: Waiter,
    pub write_w: Waiter,
}

impl SimStream {
    fn new(key: StreamKey, local: bool, established: bool, target: u64) -> SimStream {
        SimStream {
            key: Some(key),
            local,
            established,
            target,
            written: 0,
            write_closed: false,
            abandoned: false,
            read: 0,
            eof: false,
            reset_local: false,
            reset_maybe_noop: false,
            saw_reset: false,
            session_gone: false,
            released_early: false,
            read_w: Waiter::new(),
            write_w: Waiter::new(),
        }
    }

    fn can_write(&self) -> bool {
        self.key.is_some()
            && self.established
            && !self.write_closed
            && !self.reset_local
            && !self.saw_reset
            && !self.session_gone
    }

    fn read_done(&self) -> bool {
        self.eof || self.reset_local || self.saw_reset || self.session_gone
    }

    fn write_done(&self) -> bool {
        self.write_closed || self.reset_local || self.saw_reset || self.session_gone
    }
}

/// Counters that show what a run exercised (printed per dialect, and checked to be non-zero
/// where the configuration makes the situation reachable).
#[derive(Clone, Debug, Default)]
pub struct Coverage {
    pub streams: u64,
    pub bytes: u64,
    pub resets: u64,
    pub releases_early: u64,
    pub refused: u64,
    pub write_pending: u64,
    pub read_pending: u64,
    pub open_pending: u64,
    pub input_paused: u64,
    /// Peak of `stats().recv_buffered` on either side, over the session budget (percent).
    pub peak_buffered_pct: u64,
    pub one_byte_pieces: u64,
    pub pings: u64,
    pub goaways: u64,
    pub steps: u64,
    pub virtual_ms: u64,
}

impl Coverage {
    pub fn add(&mut self, o: &Coverage) {
        self.streams += o.streams;
        self.bytes += o.bytes;
        self.resets += o.resets;
        self.releases_early += o.releases_early;
        self.refused += o.refused;
        self.write_pending += o.write_pending;
        self.read_pending += o.read_pending;
        self.open_pending += o.open_pending;
        self.input_paused += o.input_paused;
        self.peak_buffered_pct = self.peak_buffered_pct.max(o.peak_buffered_pct);
        self.one_byte_pieces += o.one_byte_pieces;
        self.pings += o.pings;
        self.goaways += o.goaways;
        self.steps += o.steps;
        self.virtual_ms += o.virtual_ms;
    }
}

/// One peer: the engine, the driver's buffers, and the application's model.
pub struct Side {
    pub role: Role,
    pub conn: Connection,
    rx: BytesMut,
    /// The batch being written to the wire, and how many of its bytes were written.
    sending: Option<(Transmit, usize)>,
    pub streams: BTreeMap<u32, SimStream>,
    /// Ids of streams the application still holds, for random picks.
    live: Vec<u32>,
    pub opens: u64,
    pub accepted: u64,
    pub bytes_written: u64,
    open_w: Waiter,
    accept_w: Waiter,
    driver_w: Waiter,
    /// Output was taken since the driver last paused input (a control-queue pause clears so).
    took_output: bool,
    pings: Vec<(u64, Waiter)>,
    /// handle_eof was called.
    pub eof_seen: bool,
    /// go_away() or close() was called.
    pub goaway: bool,
    /// The application reads nothing before this step (a busy application; buffers fill up).
    reads_stalled_until: u64,
    pub closed_at: Option<u64>,
    pub ended_at: Option<u64>,
}

impl Side {
    fn new(role: Role, config: Config, now: Instant) -> Side {
        Side {
            role,
            conn: Connection::new(role, config, now),
            rx: BytesMut::new(),
            sending: None,
            streams: BTreeMap::new(),
            live: Vec::new(),
            opens: 0,
            accepted: 0,
            bytes_written: 0,
            open_w: Waiter::new(),
            accept_w: Waiter::new(),
            driver_w: Waiter::new(),
            took_output: false,
            pings: Vec::new(),
            eof_seen: false,
            goaway: false,
            reads_stalled_until: 0,
            closed_at: None,
            ended_at: None,
        }
    }

    fn end_reason(&self) -> Option<Error> {
        self.conn.end_reason().cloned()
    }

    fn forget(&mut self, id: u32) {
        if let Some(i) = self.live.iter().position(|&x| x == id) {
            self.live.swap_remove(i);
        }
    }
}

fn is_flag_frame(frame: &Frame) -> bool {
    let close = |f: Flags| f.contains(Flags::FIN) || f.contains(Flags::RST);
    match *frame {
        Frame::Data { flags, len: 0, .. } | Frame::WindowUpdate { flags, .. } => close(flags),
        _ => false,
    }
}

/// Decodes a batch part completely: (frames, payload bytes, FIN/RST-only frames). Panics if
/// the part is not a whole number of valid frames.
fn walk(dialect: Dialect, mut buf: &[u8], what: &str) -> (usize, usize, usize) {
    let (mut frames, mut payload, mut flag_frames) = (0, 0, 0);
    while !buf.is_empty() {
        let (frame, used) = match dialect.decode(buf) {
            Ok(Some(x)) => x,
            Ok(None) => panic!("{what}: a batch part ends in the middle of a frame header"),
            Err(v) => panic!("{what}: the engine emitted an invalid frame: {v}"),
        };
        buf = &buf[used..];
        frames += 1;
        if is_flag_frame(&frame) {
            flag_frames += 1;
        }
        if let Frame::Data { len, .. } = frame {
            let len = len as usize;
            assert!(
                buf.len() >= len,
                "{what}: a batch part ends in the middle of a payload"
            );
            buf = &buf[len..];
            payload += len;
        }
    }
    (frames, payload, flag_frames)
}

// ---- the simulation ---------------------------------------------------------------------------

/// Tunables of a random run.
#[derive(Clone, Debug)]
pub struct Plan {
    /// Random steps before the drain phase.
    pub steps: u64,
    /// Streams each side opens at most.
    pub opens_per_side: u64,
    /// The step at which a random side sends GoAway, if any.
    pub goaway_at: Option<u64>,
}

pub struct Sim {
    pub dialect: Dialect,
    pub seed: u64,
    pub rng: Rng,
    pub config: Config,
    base: Instant,
    pub now_ms: u64,
    pub step: u64,
    pub phase: &'static str,
    /// `sides[0]` is the client, `sides[1]` the server.
    pub sides: [Side; 2],
    /// `wires[i]` carries what `sides[i]` sends.
    pub wires: [Wire; 2],
    pub cov: Coverage,
    /// Percentage of streams with a large payload.
    pub big_pct: u64,
    /// App-level progress (bytes read/written, opens, closes...), for stall detection.
    progress: u64,
    scratch: Vec<u8>,
    expected: Vec<u8>,
    /// `SIM_TRACE`: print every application operation and batch (for replaying a failure).
    trace: bool,
}

macro_rules! trace {
    ($sim:expr, $($arg:tt)*) => {
        if $sim.trace {
            eprintln!("[step {} t={}] {}", $sim.step, $sim.now_ms, format_args!($($arg)*));
        }
    };
}

impl Drop for Sim {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "\n*** simulation failed: dialect {} seed {} at step {} ({} phase, virtual t = {} ms)\n    \
                 replay: SIM_DIALECT=\"{}\" SIM_SEED={} cargo test -p polymux-proto --test simulation\n",
                self.dialect.name(),
                self.seed,
                self.step,
                self.phase,
                self.now_ms,
                self.dialect.name(),
                self.seed,
            );
        }
    }
}

impl Sim {
    /// A pair of sessions with `config` on both sides; `delays[i]` is the one-way delay of
    /// what `sides[i]` sends.
    pub fn new(dialect: Dialect, seed: u64, config: Config, delays: [u64; 2]) -> Sim {
        assert_eq!(config.dialect(), dialect);
        let base = Instant::now();
        Sim {
            dialect,
            seed,
            rng: Rng::new(seed ^ 0x5eed_0000 ^ (dialect as u64) << 40),
            sides: [
                Side::new(Role::Client, config.clone(), base),
                Side::new(Role::Server, config.clone(), base),
            ],
            wires: [Wire::new(delays[0]), Wire::new(delays[1])],
            config,
            base,
            now_ms: 0,
            step: 0,
            phase: "setup",
            cov: Coverage::default(),
            big_pct: 8,
            progress: 0,
            scratch: Vec::new(),
            expected: Vec::new(),
            trace: std::env::var_os("SIM_TRACE").is_some(),
        }
    }

    pub fn now(&self) -> Instant {
        self.base + Duration::from_millis(self.now_ms)
    }

    fn flow_controlled(&self) -> bool {
        self.dialect.has_stream_credit()
    }

    /// The most a writer can be ahead of its reader on one stream: the largest credit the
    /// reader can have granted. Every stream starts with the protocol's 256 KiB whatever the
    /// configured window (smux v2 included, like Go's `initialPeerWindow`).
    fn credit_bound(&self) -> u64 {
        u64::from(self.config.max_stream_window().max(PROTOCOL_INITIAL_WINDOW))
    }

    // ---- driver: output ---------------------------------------------------------------------

    /// Writes up to `max` bytes of side `s`'s output to its wire, taking a new batch if none is
    /// being written. Returns the bytes written.
    pub fn transmit(&mut self, s: usize, max: usize) -> usize {
        let now = self.now_ms;
        let dialect = self.dialect;
        let budget = self.config.write_budget();
        let side = &mut self.sides[s];
        if side.sending.is_none() {
            if let Some(batch) = side.conn.poll_transmit() {
                side.took_output = true;
                // One flat data piece: the wire model writes byte ranges of it.
                let batch = Transmit {
                    data: vec![Bytes::from(batch.data.concat())],
                    ..batch
                };
                let (_, control_payload, _) = walk(dialect, &batch.control, "control part");
                assert_eq!(control_payload, 0, "stream payload in the control part");
                let (frames, payload, _) = walk(dialect, &batch.data[0], "data part");
                // Nothing is in flight when a batch is taken (the previous one was reported
                // written), so the data part alone must respect the write budget: payload within
                // it, framing (headers, FIN/RST frames) beyond it.
                assert!(
                    payload <= budget,
                    "{:?}: batch carries {payload} payload bytes, write budget is {budget}",
                    side.role
                );
                let slack = dialect.header_len() * frames;
                assert!(
                    batch.data_len() <= budget + slack,
                    "{:?}: batch data part is {} bytes, write budget {budget} + slack {slack}",
                    side.role,
                    batch.data_len()
                );
                if self.trace {
                    eprintln!(
                        "[step {} t={}] {:?} takes a batch: control {} data {} ({payload} payload)",
                        self.step,
                        self.now_ms,
                        side.role,
                        batch.control.len(),
                        batch.data_len()
                    );
                }
                side.sending = Some((batch, 0));
            }
        }
        let Some((batch, done)) = &mut side.sending else {
            return 0;
        };
        let total = batch.len();
        let n = max.min(total - *done);
        let control = batch.control.len();
        let (start, end) = (*done, *done + n);
        if start < control {
            self.wires[s].send(now, batch.control.slice(start..end.min(control)));
        }
        if end > control {
            self.wires[s].send(
                now,
                batch.data[0].slice(start.max(control) - control..end - control),
            );
        }
        *done = end;
        if end == total {
            let (batch, _) = side.sending.take().expect("a batch is being written");
            side.conn.transmitted(batch);
            if self.trace {
                eprintln!(
                    "[step {} t={}] {:?} batch written",
                    self.step, self.now_ms, side.role
                );
            }
        }
        n
    }

    /// Writes everything side `s` has queued.
    fn transmit_all(&mut self, s: usize) {
        while self.transmit(s, usize::MAX) > 0 {}
        self.maybe_close_transport(s);
    }

    /// An ended session whose output is flushed closes its transport.
    fn maybe_close_transport(&mut self, s: usize) {
        let side = &mut self.sides[s];
        if side.conn.is_ended() {
            if side.ended_at.is_none() {
                side.ended_at = Some(self.now_ms);
            }
            if side.sending.is_none()
                && !side.conn.has_pending_output()
                && self.wires[s].eof_at.is_none()
            {
                self.wires[s].close(self.now_ms);
            }
        }
    }

    // ---- driver: input ----------------------------------------------------------------------

    /// Feeds side `s` up to `max` of the bytes that have arrived for it (`max == 0`: a random
    /// piece size), honouring `wants_input`. Returns the bytes moved off the wire.
    pub fn deliver(&mut self, s: usize, max: usize) -> usize {
        let now_ms = self.now_ms;
        let now = self.now();
        let wire = &mut self.wires[1 - s];
        let side = &mut self.sides[s];
        if side.conn.is_ended() {
            return 0;
        }
        if !side.conn.wants_input() {
            if !side.driver_w.is_armed() {
                self.cov.input_paused += 1;
                side.driver_w.arm();
                side.took_output = false;
            }
            side.conn.register_driver(side.driver_w.waker());
            return 0;
        }
        if side.driver_w.is_armed() {
            // Input resumed: the engine must have woken the driver, unless the driver itself
            // made room (it took output, which empties a full control queue).
            let woken = side.driver_w.woken() || side.took_output;
            side.driver_w.cancel();
            assert!(
                woken,
                "{:?}: input resumed without the driver being woken (lost driver wake-up)",
                side.role
            );
        }
        // Leftover bytes from a pause are offered again first.
        if !side.rx.is_empty() {
            let before = side.rx.len();
            side.conn.handle_input(&mut side.rx, now);
            if side.rx.len() != before || !side.conn.wants_input() {
                return 0;
            }
        }
        let avail = wire.arrived(now_ms);
        if avail == 0 {
            if wire.eof_arrived(now_ms) && !side.eof_seen {
                side.eof_seen = true;
                side.conn.handle_eof(side.rx.len());
            }
            return 0;
        }
        let n = if max == 0 {
            self.rng.size(avail)
        } else {
            max.min(avail)
        };
        if n == 1 {
            self.cov.one_byte_pieces += 1;
        }
        let moved = wire.take(now_ms, n, &mut side.rx);
        side.conn.handle_input(&mut side.rx, now);
        moved
    }

    /// Feeds side `s` everything that has arrived, in random pieces, while it wants input.
    fn deliver_all(&mut self, s: usize, random_pieces: bool) {
        for _ in 0..100_000 {
            let before = (
                self.wires[1 - s].arrived(self.now_ms),
                self.sides[s].rx.len(),
            );
            let piece = if random_pieces { 0 } else { usize::MAX };
            self.deliver(s, piece);
            let after = (
                self.wires[1 - s].arrived(self.now_ms),
                self.sides[s].rx.len(),
            );
            if before == after {
                return;
            }
        }
        panic!("deliver_all did not settle");
    }

    // ---- time -------------------------------------------------------------------------------

    fn fire_timers(&mut self) {
        let now = self.now();
        for s in 0..2 {
            let side = &mut self.sides[s];
            if side.conn.poll_timeout().is_some_and(|t| t <= now) {
                side.conn.handle_timeout(now);
            }
            self.maybe_close_transport(s);
        }
    }

    pub fn advance(&mut self, ms: u64) {
        self.now_ms += ms;
        self.fire_timers();
    }

    fn to_ms(&self, t: Instant) -> u64 {
        let d = t.saturating_duration_since(self.base);
        // Round up: a deadline between two milliseconds is due at the later one.
        (d.as_nanos().div_ceil(1_000_000)) as u64
    }

    /// Event-driven mode: handles everything due now (whole arrived bytes, timers, output)
    /// until nothing changes.
    pub fn settle(&mut self) {
        for _ in 0..10_000 {
            let before = (
                self.wires[0].bytes_sent,
                self.wires[1].bytes_sent,
                self.wires[0].arrived(self.now_ms),
                self.wires[1].arrived(self.now_ms),
                self.sides[0].conn.poll_timeout(),
                self.sides[1].conn.poll_timeout(),
                self.sides[0].conn.is_ended(),
                self.sides[1].conn.is_ended(),
            );
            for s in 0..2 {
                self.transmit_all(s);
            }
            for s in 0..2 {
                self.deliver_all(s, false);
            }
            self.fire_timers();
            for s in 0..2 {
                self.transmit_all(s);
                self.maybe_close_transport(s);
            }
            let after = (
                self.wires[0].bytes_sent,
                self.wires[1].bytes_sent,
                self.wires[0].arrived(self.now_ms),
                self.wires[1].arrived(self.now_ms),
                self.sides[0].conn.poll_timeout(),
                self.sides[1].conn.poll_timeout(),
                self.sides[0].conn.is_ended(),
                self.sides[1].conn.is_ended(),
            );
            if before == after {
                return;
            }
        }
        panic!("settle did not converge at t = {} ms", self.now_ms);
    }

    /// Event-driven mode: runs to `target_ms`, stopping at every arrival and timer on the way.
    pub fn run_until(&mut self, target_ms: u64) {
        loop {
            self.settle();
            let mut next = u64::MAX;
            for s in 0..2 {
                if let Some(t) = self.sides[s].conn.poll_timeout() {
                    next = next.min(self.to_ms(t).max(self.now_ms + 1));
                }
                if let Some(t) = self.wires[s].next_arrival() {
                    next = next.min(t.max(self.now_ms + 1));
                }
                if let Some(t) = self.wires[s].eof_at.filter(|_| !self.sides[1 - s].eof_seen) {
                    next = next.min(t.max(self.now_ms + 1));
                }
            }
            if next > target_ms {
                self.now_ms = self.now_ms.max(target_ms);
                self.settle();
                return;
            }
            self.now_ms = next;
        }
    }

    // ---- legitimacy of what the application observes ----------------------------------------

    /// Whether side `s`'s stream `id` may legitimately fail with `StreamReset`/`StreamRefused`.
    fn reset_explained(&self, s: usize, id: u32) -> bool {
        let me = &self.sides[s];
        let peer = &self.sides[1 - s];
        if me.streams.get(&id).is_some_and(|st| st.reset_local) {
            return true;
        }
        match peer.streams.get(&id) {
            Some(p) => p.reset_local && self.dialect.has_reset(),
            // The peer never accepted it: refused (RST on yamux/net-mux).
            None => peer.conn.stats().refused_inbound > 0,
        }
    }

    /// Whether side `s` may see EOF on stream `id`, and how many bytes it must have read then.
    fn eof_expected_len(&self, s: usize, id: u32) -> Option<u64> {
        let peer = &self.sides[1 - s];
        match peer.streams.get(&id) {
            Some(p) if p.write_closed => Some(p.written),
            Some(_) => None,
            // Refused with FIN (smux), before anything was written.
            None if !self.dialect.has_reset() && peer.conn.stats().refused_inbound > 0 => Some(0),
            None => None,
        }
    }

    /// Side `s` got `err`; it must be the session's end reason, and the session must be over.
    fn check_session_error(&self, s: usize, what: &str, err: &Error) {
        let reason = self.sides[s].end_reason();
        assert_eq!(
            reason.as_ref(),
            Some(err),
            "{:?}: {what} failed with {err:?} but the session has not ended with it",
            self.sides[s].role
        );
    }

    // ---- application operations -------------------------------------------------------------

    /// How many bytes a new stream's writer will send: mostly small, `big_pct` percent large
    /// (beyond a window, so credit and budgets come into play).
    fn target_len(&mut self) -> u64 {
        let r = &mut self.rng;
        if r.percent(self.big_pct) {
            return if r.percent(80) {
                r.range(32 * 1024, 300 * 1024)
            } else {
                r.range(300 * 1024, 1200 * 1024)
            };
        }
        match r.below(100) {
            0..=26 => r.range(0, 64),
            27..=69 => r.range(65, 4096),
            _ => r.range(4097, 32 * 1024),
        }
    }

    fn add_stream(&mut self, s: usize, key: StreamKey, local: bool) -> u32 {
        let id = self.sides[s].conn.stream_id(key).0;
        let established = !(local && self.dialect == Dialect::NetMux);
        let target = self.target_len();
        let side = &mut self.sides[s];
        let ours = (id % 2 == 1) == (side.role == Role::Client);
        assert_eq!(
            ours, local,
            "{:?}: stream {id} has the wrong parity",
            side.role
        );
        let fresh = side
            .streams
            .insert(id, SimStream::new(key, local, established, target))
            .is_none();
        assert!(fresh, "{:?}: stream id {id} handed out twice", side.role);
        side.live.push(id);
        self.cov.streams += 1;
        self.progress += 1;
        id
    }

    pub fn op_open(&mut self, s: usize) {
        let side = &mut self.sides[s];
        let waker = side.open_w.waker().clone();
        match side.conn.poll_open(&waker) {
            Poll::Pending => {
                assert!(
                    self.dialect.has_ack(),
                    "open pending on a dialect without ACK"
                );
                if !side.open_w.is_armed() {
                    self.cov.open_pending += 1;
                }
                side.open_w.arm();
            }
            Poll::Ready(r) => {
                assert!(
                    side.open_w.complete(),
                    "{:?}: lost wake-up in poll_open",
                    side.role
                );
                match r {
                    Ok(key) => {
                        side.opens += 1;
                        let id = self.add_stream(s, key, true);
                        let prev = self.sides[s]
                            .streams
                            .range(..id)
                            .filter(|(_, st)| st.local)
                            .count();
                        assert_eq!(
                            prev as u64 + 1,
                            self.sides[s].opens,
                            "outbound ids not increasing"
                        );
                    }
                    Err(Error::GoAway(code)) => {
                        assert!(
                            self.sides[1 - s].goaway,
                            "open failed with GoAway({code}) but the peer sent none"
                        );
                    }
                    Err(Error::SessionClosed) if side.goaway && side.closed_at.is_some() => {}
                    Err(e) => self.check_session_error(s, "open", &e),
                }
            }
        }
    }

    pub fn op_accept(&mut self, s: usize) -> bool {
        let side = &mut self.sides[s];
        let waker = side.accept_w.waker().clone();
        match side.conn.poll_accept(&waker) {
            Poll::Pending => {
                side.accept_w.arm();
                false
            }
            Poll::Ready(r) => {
                assert!(
                    side.accept_w.complete(),
                    "{:?}: lost wake-up in poll_accept",
                    side.role
                );
                match r {
                    Ok(key) => {
                        side.accepted += 1;
                        let id = self.add_stream(s, key, false);
                        assert!(
                            self.sides[1 - s].streams.contains_key(&id),
                            "accepted stream {id}, which the peer never opened"
                        );
                        true
                    }
                    Err(e) => {
                        self.check_session_error(s, "accept", &e);
                        false
                    }
                }
            }
        }
    }

    /// net-mux: waits for the ACK before the stream is used for writing.
    pub fn op_established(&mut self, s: usize, id: u32) {
        let side = &mut self.sides[s];
        let st = side.streams.get_mut(&id).expect("modelled stream");
        let Some(key) = st.key else { return };
        match side.conn.poll_established(key, st.write_w.waker()) {
            Poll::Pending => st.write_w.arm(),
            Poll::Ready(r) => {
                assert!(
                    st.write_w.complete(),
                    "stream {id}: lost wake-up in poll_established"
                );
                match r {
                    Ok(()) => {
                        st.established = true;
                        self.progress += 1;
                    }
                    Err(Error::StreamRefused | Error::StreamReset) => {
                        st.saw_reset = true;
                        assert!(
                            self.reset_explained(s, id),
                            "stream {id}: refused, but the peer accepted it"
                        );
                    }
                    Err(e) => {
                        st.session_gone = true;
                        self.check_session_error(s, "poll_established", &e);
                    }
                }
            }
        }
    }

    /// Writes one chunk of at most `max` bytes of the stream's payload. Returns whether bytes
    /// were written.
    pub fn op_write(&mut self, s: usize, id: u32, max: usize) -> bool {
        let role = self.sides[s].role;
        let st = self.sides[s].streams.get_mut(&id).expect("modelled stream");
        let Some(key) = st.key else { return false };
        let remaining = (st.target - st.written) as usize;
        let misuse = st.write_closed && !st.reset_local;
        if remaining == 0 && !misuse {
            return false;
        }
        let len = if misuse { 1 } else { remaining.min(max).max(1) };
        let salt = payload_salt(role, id);
        let from = st.written;
        // One call takes at most a frame's payload: only that prefix gets real payload, the rest
        // is filler that must never be sent (the reader would see wrong bytes).
        let max_take = self.config.max_frame_payload() as usize;
        self.scratch.clear();
        self.scratch.resize(len, 0);
        let real = len.min(max_take);
        fill_payload(salt, from, &mut self.scratch[..real]);
        let side = &mut self.sides[s];
        let st = side.streams.get_mut(&id).expect("modelled stream");
        let polled = side.conn.poll_write(key, st.write_w.waker(), &self.scratch);
        if self.trace {
            eprintln!(
                "[step {} t={}] {role:?} write stream {id} ({len} at {from}): {polled:?}",
                self.step, self.now_ms
            );
        }
        match polled {
            Poll::Pending => {
                assert!(
                    !misuse,
                    "stream {id}: write after close_write is pending, not an error"
                );
                if !st.write_w.is_armed() {
                    self.cov.write_pending += 1;
                }
                st.write_w.arm();
                false
            }
            Poll::Ready(r) => {
                assert!(
                    st.write_w.complete(),
                    "{role:?} stream {id}: lost wake-up in poll_write"
                );
                match r {
                    Ok(n) => {
                        assert!(!misuse, "stream {id}: write after close_write succeeded");
                        assert!(
                            n >= 1 && n <= real,
                            "stream {id}: wrote {n} of {len} (frame payload limit {max_take})"
                        );
                        st.written += n as u64;
                        side.bytes_written += n as u64;
                        self.cov.bytes += n as u64;
                        self.progress += 1;
                        true
                    }
                    Err(Error::WriteAfterClose) => {
                        assert!(misuse, "stream {id}: WriteAfterClose on an open stream");
                        false
                    }
                    Err(Error::StreamReset) => {
                        st.saw_reset = true;
                        assert!(self.reset_explained(s, id), "{role:?} stream {id}: write failed with StreamReset, but nobody reset it");
                        false
                    }
                    Err(e) => {
                        st.session_gone = true;
                        self.check_session_error(s, "write", &e);
                        false
                    }
                }
            }
        }
    }

    /// Reads once with a buffer of `len` bytes, verifying every byte. Returns whether the read
    /// completed (data, EOF or error).
    pub fn op_read(&mut self, s: usize, id: u32, len: usize) -> bool {
        let peer_role = self.sides[1 - s].role;
        let role = self.sides[s].role;
        let peer_written = self.sides[1 - s].streams.get(&id).map_or(0, |p| p.written);
        let eof_len = self.eof_expected_len(s, id);
        let side = &mut self.sides[s];
        let st = side.streams.get_mut(&id).expect("modelled stream");
        let Some(key) = st.key else { return false };
        if st.eof {
            return false;
        }
        self.scratch.clear();
        self.scratch.resize(len, 0);
        let polled = side
            .conn
            .poll_read(key, st.read_w.waker(), &mut self.scratch);
        if self.trace {
            eprintln!(
                "[step {} t={}] {role:?} read stream {id} ({len} at {}): {polled:?}",
                self.step, self.now_ms, st.read
            );
        }
        match polled {
            Poll::Pending => {
                if !st.read_w.is_armed() {
                    self.cov.read_pending += 1;
                }
                st.read_w.arm();
                false
            }
            Poll::Ready(r) => {
                assert!(
                    st.read_w.complete(),
                    "{role:?} stream {id}: lost wake-up in poll_read"
                );
                match r {
                    Ok(0) => {
                        assert!(
                            !st.reset_local || st.reset_maybe_noop,
                            "stream {id}: EOF after a local reset"
                        );
                        assert_eq!(
                            Some(st.read),
                            eof_len,
                            "{role:?} stream {id}: EOF after {} bytes; the writer wrote {peer_written} (None: it never closed)",
                            st.read
                        );
                        st.eof = true;
                        self.progress += 1;
                    }
                    Ok(n) => {
                        assert!(
                            !st.reset_local || st.reset_maybe_noop,
                            "stream {id}: data after a local reset"
                        );
                        assert!(
                            st.read + n as u64 <= peer_written,
                            "{role:?} stream {id}: read {} bytes but only {peer_written} were written",
                            st.read + n as u64
                        );
                        let salt = payload_salt(peer_role, id);
                        self.expected.resize(n, 0);
                        fill_payload(salt, st.read, &mut self.expected);
                        let bad = (self.scratch[..n] != self.expected[..])
                            .then(|| (0..n).find(|&i| self.scratch[i] != self.expected[i]))
                            .flatten();
                        if let Some(i) = bad {
                            let off = st.read + i as u64;
                            let got = self.scratch[i..n.min(i + 16)].to_vec();
                            let at = st.read;
                            panic!(
                                "{role:?} stream {id}: wrong byte at offset {off} (read of {n} at {at}); the bytes are {}",
                                self.identify(&got)
                            );
                        }
                        st.read += n as u64;
                        self.progress += 1;
                    }
                    Err(Error::StreamReset) => {
                        st.saw_reset = true;
                        assert!(self.reset_explained(s, id), "{role:?} stream {id}: read failed with StreamReset, but nobody reset it");
                    }
                    Err(e) => {
                        st.session_gone = true;
                        self.check_session_error(s, "read", &e);
                    }
                }
                true
            }
        }
    }

    fn op_close_write(&mut self, s: usize, id: u32) {
        trace!(self, "{:?} close_write stream {id}", self.sides[s].role);
        let side = &mut self.sides[s];
        let st = side.streams.get_mut(&id).expect("modelled stream");
        let Some(key) = st.key else { return };
        if st.write_closed || st.reset_local || !st.established {
            return;
        }
        match side.conn.close_write(key) {
            Ok(()) => {
                // A write still pending is abandoned: closing is this application's own doing.
                st.write_w.cancel();
                st.write_closed = true;
                st.abandoned |= st.written < st.target;
                st.target = st.written;
                self.progress += 1;
            }
            Err(Error::StreamReset) => {
                st.saw_reset = true;
                assert!(
                    self.reset_explained(s, id),
                    "stream {id}: close_write failed with StreamReset, but nobody reset it"
                );
            }
            Err(e) => {
                st.session_gone = true;
                self.check_session_error(s, "close_write", &e);
            }
        }
    }

    fn op_reset(&mut self, s: usize, id: u32) {
        trace!(self, "{:?} reset stream {id}", self.sides[s].role);
        let has_reset = self.dialect.has_reset();
        let peer_reset = has_reset
            && self.sides[1 - s]
                .streams
                .get(&id)
                .is_some_and(|p| p.reset_local);
        let side = &mut self.sides[s];
        let st = side.streams.get_mut(&id).expect("modelled stream");
        let Some(key) = st.key else { return };
        if st.reset_local {
            return;
        }
        side.conn.reset(key);
        st.reset_local = true;
        st.reset_maybe_noop = st.write_closed || peer_reset;
        st.abandoned = true;
        if !has_reset {
            // smux has no RST: the engine sends FIN (unless one was sent) and discards input.
            st.write_closed = true;
        }
        self.cov.resets += 1;
        self.progress += 1;
    }

    fn op_release(&mut self, s: usize, id: u32) {
        trace!(self, "{:?} release stream {id}", self.sides[s].role);
        let side = &mut self.sides[s];
        let st = side.streams.get_mut(&id).expect("modelled stream");
        let Some(key) = st.key.take() else { return };
        side.conn.release(key);
        if !st.eof && !st.reset_local && !st.saw_reset && !st.session_gone {
            st.released_early = true;
            self.cov.releases_early += 1;
        }
        if !st.write_closed && !st.reset_local {
            // Release half-closes an unfinished stream.
            st.write_closed = true;
            st.abandoned |= st.written < st.target;
        }
        side.forget(id);
        self.progress += 1;
    }

    /// Starts a ping (at most three outstanding tickets), then polls the outstanding ones.
    fn op_ping(&mut self, s: usize) {
        let now = self.now();
        let side = &mut self.sides[s];
        if side.pings.len() < 3 {
            match side.conn.start_ping(now) {
                Ok(ticket) => {
                    assert!(
                        self.dialect.has_ping(),
                        "ping started on a dialect without Ping"
                    );
                    side.pings.push((ticket, Waiter::new()));
                    self.cov.pings += 1;
                }
                Err(Error::Unsupported(_)) => assert!(!self.dialect.has_ping()),
                Err(e) => self.check_session_error(s, "start_ping", &e),
            }
        }
        self.poll_pings(s);
    }

    fn poll_pings(&mut self, s: usize) {
        let min_rtt = self.wires[0].delay_ms + self.wires[1].delay_ms;
        let side = &mut self.sides[s];
        let mut i = 0;
        while i < side.pings.len() {
            let (ticket, w) = &mut side.pings[i];
            match side.conn.poll_ping(*ticket, w.waker()) {
                Poll::Pending => {
                    w.arm();
                    i += 1;
                }
                Poll::Ready(r) => {
                    assert!(w.complete(), "{:?}: lost wake-up in poll_ping", side.role);
                    match r {
                        Ok(rtt) => assert!(
                            rtt >= Duration::from_millis(min_rtt),
                            "ping rtt {rtt:?} is shorter than the wire's round trip of {min_rtt} ms"
                        ),
                        Err(e) => self.check_session_error(s, "poll_ping", &e),
                    }
                    self.sides[s].pings.swap_remove(i);
                    return;
                }
            }
        }
    }

    fn op_go_away(&mut self, s: usize) {
        let side = &mut self.sides[s];
        match side.conn.go_away() {
            Ok(()) => {
                side.goaway = true;
                self.cov.goaways += 1;
            }
            Err(Error::Unsupported(_)) => assert!(!self.dialect.has_goaway()),
            Err(e) => self.check_session_error(s, "go_away", &e),
        }
    }

    fn op_close(&mut self, s: usize) {
        let now = self.now();
        let side = &mut self.sides[s];
        if side.closed_at.is_none() {
            side.conn.close(now);
            side.goaway = true;
            side.closed_at = Some(self.now_ms);
            self.progress += 1;
        }
    }

    // ---- invariants -------------------------------------------------------------------------

    /// The bounds that must hold after every step.
    pub fn check_invariants(&mut self) {
        for side in &self.sides {
            let pct = side.conn.stats().recv_buffered as u64 * 100
                / self.config.session_recv_budget() as u64;
            self.cov.peak_buffered_pct = self.cov.peak_buffered_pct.max(pct);
        }
        let bound = self.credit_bound();
        for s in 0..2 {
            let side = &self.sides[s];
            let peer = &self.sides[1 - s];
            let stats = side.conn.stats();
            assert!(
                stats.recv_buffered <= self.config.session_recv_budget(),
                "{:?}: {} bytes buffered, over the session budget of {}",
                side.role,
                stats.recv_buffered,
                self.config.session_recv_budget()
            );
            assert!(
                stats.pending_accept <= self.config.accept_backlog(),
                "{:?}: {} streams wait for accept, backlog is {}",
                side.role,
                stats.pending_accept,
                self.config.accept_backlog()
            );
            assert_eq!(
                stats.bytes_sent, side.bytes_written,
                "{:?}: bytes_sent disagrees with the writes",
                side.role
            );
            assert_eq!(
                stats.opened_outbound, side.opens,
                "{:?}: opened_outbound disagrees with the opens",
                side.role
            );
            assert!(
                stats.bytes_received <= peer.bytes_written,
                "{:?}: received {} payload bytes, the peer wrote {}",
                side.role,
                stats.bytes_received,
                peer.bytes_written
            );
            if !self.flow_controlled() {
                continue;
            }
            // Per stream: what the writer has handed to its engine but the reader has not read
            // (in flight + buffered at the reader) never exceeds the credit the reader granted.
            for (id, w) in &side.streams {
                let read = match peer.streams.get(id) {
                    Some(r) if r.reset_local || r.released_early => continue,
                    Some(r) => r.read,
                    None => 0,
                };
                assert!(
                    w.written - read <= bound,
                    "stream {id}: {:?} wrote {} bytes, the reader read {read}: {} outstanding, over the credit bound {bound}",
                    side.role,
                    w.written,
                    w.written - read
                );
            }
        }
    }

    // ---- the random phase -------------------------------------------------------------------

    fn random_live(&mut self, s: usize) -> Option<u32> {
        let live = &self.sides[s].live;
        if live.is_empty() {
            None
        } else {
            let i = self.rng.below(live.len() as u64) as usize;
            Some(live[i])
        }
    }

    /// A live stream of side `s` for which `want` holds, trying a few random picks.
    fn pick_stream(
        &mut self,
        s: usize,
        want: impl Fn(u32, &SimStream, &Side) -> bool,
    ) -> Option<u32> {
        for _ in 0..4 {
            let id = self.random_live(s)?;
            let side = &self.sides[s];
            let peer = &self.sides[1 - s];
            if want(id, &side.streams[&id], peer) {
                return Some(id);
            }
        }
        None
    }

    /// One random step of the application or the driver on a random side.
    pub fn random_step(&mut self, plan: &Plan) {
        self.step += 1;
        let s = self.rng.below(2) as usize;
        let roll = self.rng.below(1000);
        match roll {
            0..=119 => {
                let max = self.rng.size(256 * 1024);
                self.transmit(s, max);
                self.maybe_close_transport(s);
            }
            120..=319 => {
                self.deliver(s, 0);
            }
            320..=379 => {
                let ms = if self.rng.percent(90) {
                    self.rng.range(1, 5)
                } else {
                    self.rng.range(5, 300)
                };
                self.advance(ms);
            }
            380..=439 => {
                if self.sides[s].opens < plan.opens_per_side || self.sides[s].open_w.is_armed() {
                    self.op_open(s);
                }
            }
            440..=489 => {
                for _ in 0..self.rng.range(1, 3) {
                    if !self.op_accept(s) {
                        break;
                    }
                }
            }
            490..=699 => {
                let id = self.pick_stream(s, |_, st, _| {
                    st.key.is_some() && (st.written < st.target || st.write_closed)
                });
                if let Some(id) = id {
                    let established = self.sides[s].streams[&id].established;
                    if !established {
                        self.op_established(s, id);
                    } else if self.sides[s].streams[&id].can_write() || self.rng.percent(2) {
                        let max = self.rng.size(96 * 1024);
                        self.op_write(s, id, max);
                    }
                }
            }
            700..=899 if self.step < self.sides[s].reads_stalled_until => {}
            700..=899 => {
                if self.rng.below(300) == 0 {
                    let until = self.step + self.rng.range(300, 1500);
                    self.sides[s].reads_stalled_until = until;
                }
                // Half the time prefer streams with bytes to read (buffers drain as an
                // application's would), else any stream (readers lag and budgets fill up).
                let id = if self.rng.percent(50) {
                    self.pick_stream(s, |id, st, peer| {
                        !st.eof
                            && peer
                                .streams
                                .get(&id)
                                .is_some_and(|w| w.written > st.read || w.write_closed)
                    })
                } else {
                    None
                };
                let id = id.or_else(|| self.random_live(s));
                if let Some(id) = id {
                    let len = self.rng.size(64 * 1024);
                    self.op_read(s, id, len);
                }
            }
            900..=939 => {
                let early = self.rng.percent(10);
                let id = self.pick_stream(s, |_, st, _| {
                    st.key.is_some()
                        && !st.write_closed
                        && st.established
                        && (early || st.written == st.target)
                });
                if let Some(id) = id {
                    self.op_close_write(s, id);
                }
            }
            940..=947 => {
                if let Some(id) = self.random_live(s) {
                    self.op_reset(s, id);
                }
            }
            948..=974 => {
                let early = self.rng.percent(15);
                let id =
                    self.pick_stream(s, |_, st, _| early || (st.read_done() && st.write_done()));
                if let Some(id) = id {
                    self.op_release(s, id);
                }
            }
            975..=993 => self.op_ping(s),
            _ => self.poll_pings(s),
        }
        if plan.goaway_at == Some(self.step) {
            self.op_go_away(s);
        }
        self.check_invariants();
    }
}

// ---- the drain phase and the final checks ------------------------------------------------------

impl Sim {
    /// Nothing is in flight: every byte either side sent was decoded by the other.
    fn quiet(&self) -> bool {
        (0..2).all(|s| {
            let side = &self.sides[s];
            self.wires[s].is_empty()
                && side.sending.is_none()
                && !side.conn.has_pending_output()
                && side.rx.is_empty()
        })
    }

    fn all_released(&self) -> bool {
        self.sides.iter().all(|side| side.live.is_empty())
    }

    /// The application finishes what it started on side `s`: accepts everything, writes every
    /// stream to its target and half-closes it, reads to EOF, releases what is done.
    fn drain_app(&mut self, s: usize) {
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

    fn finished(&self) -> bool {
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
    fn identify(&self, got: &[u8]) -> String {
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

// ---- configurations and the run -----------------------------------------------------------------

/// The preset for `dialect`, or (`tight`) one with small budgets, windows, frames and backlogs
/// so that every back-pressure path is reached within a short run. Both get a long
/// `close_timeout`: the simulation's pace is arbitrary, and a graceful close must complete, not
/// time out.
pub fn sim_config(dialect: Dialect, tight: bool) -> Config {
    let base = Config::for_dialect(dialect)
        .to_builder()
        .close_timeout(Duration::from_secs(600));
    let b = if tight {
        let b = base
            .accept_backlog(8)
            .max_unacked_outbound(4)
            .keepalive_interval(Some(Duration::from_millis(250)));
        match dialect {
            Dialect::Yamux | Dialect::NetMux => b
                .max_stream_window(1024 * 1024)
                .session_recv_budget(272 * 1024)
                .write_budget(64 * 1024)
                .max_frame_payload(16 * 1024),
            Dialect::SmuxV1 => b
                .stream_window(16 * 1024)
                .max_stream_window(16 * 1024)
                .session_recv_budget(64 * 1024)
                .write_budget(16 * 1024)
                .max_frame_payload(4 * 1024),
            Dialect::SmuxV2 => b
                .stream_window(16 * 1024)
                .max_stream_window(64 * 1024)
                .session_recv_budget(128 * 1024)
                .write_budget(32 * 1024)
                .max_frame_payload(8 * 1024),
        }
    } else {
        base
    };
    b.build().expect("a valid simulation configuration")
}

/// One seeded random run: random steps, then the drain and the graceful close, then the final
/// checks. Returns what it exercised.
pub fn run_random(dialect: Dialect, seed: u64, plan: &Plan) -> Coverage {
    let mut setup = Rng::new(seed);
    let tight = seed % 2 == 1;
    let delays = [setup.range(0, 20), setup.range(0, 20)];
    let mut plan = plan.clone();
    if dialect.has_goaway() && seed % 4 == 3 {
        // A GoAway late in the run: the peer's opens fail, its opens in flight are refused.
        plan.goaway_at = Some(setup.range(plan.steps * 3 / 4, plan.steps));
    }
    let plan = &plan;
    let mut sim = Sim::new(dialect, seed, sim_config(dialect, tight), delays);
    sim.big_pct = if tight { 15 } else { 8 };
    sim.phase = "random";
    for _ in 0..plan.steps {
        sim.random_step(plan);
    }
    sim.drain();
    sim.final_checks();
    sim.cov.steps = sim.step;
    sim.cov.virtual_ms = sim.now_ms;
    sim.cov.refused = sim
        .sides
        .iter()
        .map(|s| s.conn.stats().refused_inbound)
        .sum();
    sim.cov.clone()
}
