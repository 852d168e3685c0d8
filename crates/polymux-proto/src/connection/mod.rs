//! The engine: one multiplexed session's state, for every dialect, without I/O.
//!
//! Methods fall into three groups (after quinn-proto):
//! - **inputs** — [`handle_input`](Connection::handle_input) (received bytes),
//!   [`handle_timeout`](Connection::handle_timeout), [`handle_eof`](Connection::handle_eof),
//!   [`handle_transport_error`](Connection::handle_transport_error);
//! - **commands** from the application — open, accept, read, write, close, reset, ping, GoAway
//!   (in `commands.rs`);
//! - **outputs** — [`poll_transmit`](Connection::poll_transmit) (bytes to write),
//!   [`poll_timeout`](Connection::poll_timeout) (when to call `handle_timeout`), and wakers:
//!   commands that cannot complete register a [`Waker`], and the engine wakes it when they can.
//!
//! The engine never blocks, reads a clock, or touches a socket, so a test can drive two of them
//! against each other byte by byte on a virtual clock.
//!
//! # Time
//!
//! The engine has no clock of its own and keeps none cached: every method whose work depends
//! on the time takes it as `now` from the caller (as in quinn-proto) — inputs, timers,
//! [`poll_transmit`](Connection::poll_transmit), and the commands that grant credit, queue
//! output or close (open, accept, read, write, half-close, reset, release, ping, close). A
//! method without `now` reads no time. Callers pass a clock that does not run backwards; a
//! test passes its virtual one.
//!
//! # Liveness (DESIGN §3: silent sockets and never-reading peers end, with a typed error)
//!
//! A peer is judged dead in two ways, both on the caller's clock:
//! - **it stopped sending**: the keep-alive rule (see `keepalive.rs`). Silence counts against
//!   the peer only while we are reading: while the control queue is full, or while input is
//!   paused on the receive budget and the driver does not (or no longer can) read ahead, the
//!   silence is ours. A driver that reads ahead during a budget pause
//!   ([`handle_paused_input`](Connection::handle_paused_input)) lets a dead peer be detected
//!   even then: anything that arrives proves it alive, and nothing arriving for the timeout
//!   while we could read means it is gone.
//! - **it stopped reading**: output waits and the transport accepts none of it for
//!   [`Config::write_timeout`]; the session ends with [`Error::WriteTimeout`]. The driver
//!   reports a blocked write and write progress ([`handle_write_blocked`](Connection::handle_write_blocked),
//!   [`handle_write_progress`](Connection::handle_write_progress)).

mod commands;
mod direct;
mod input;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::task::Waker;
use std::time::{Duration, Instant};

use slab::Slab;

use crate::codec::Dialect;
use crate::config::{Config, PROTOCOL_INITIAL_WINDOW};
use crate::error::Error;
use crate::flow::{Ramp, RecvCredit, SendCredit};
use crate::frame::{Frame, StreamId};
use crate::inbound_ids::InboundIds;
use crate::keepalive::KeepAlive;
use crate::memory::RecvMemory;
use crate::stream::{Opening, Stream};
use crate::tx::{Transmit, TxBuffers};
use crate::waiters::Waiters;

pub use direct::{DirectWrite, WriteOutcome, DIRECT_MAX_FRAMES, DIRECT_MAX_PIECES};
pub use input::COPY_BELOW;

/// Entries the stream table grows by at least (it grows by an eighth of its size).
const MIN_TABLE_GROWTH: usize = 16;

/// Undecoded bytes a driver may hold while input is paused on the receive budget and it reads
/// ahead to watch the peer's liveness (see [`Connection::handle_paused_input`]). Once this many
/// wait, the driver stops reading and the peer's silence stops counting against it.
pub const PAUSED_READ_AHEAD: usize = 32 * 1024;

/// Inbound refusals within this long of the first one form one burst: the first is logged at
/// info, the rest are counted and summarised once the burst is over.
const REFUSAL_BURST: Duration = Duration::from_secs(1);

/// How often streams whose first window arrived are sized (`flow.rs`'s `Ramp`): paced credit
/// goes out this often, fine enough that the sender's credit arrives as a steady stream.
const PACE_TICK: Duration = Duration::from_millis(5);

/// Paced credit goes out once this much is due (or pacing ends), so a slow path is not sent a
/// frame per tick.
const PACE_MIN_GRANT: u64 = 16 * 1024;

/// Which end of the transport this session is. The client allocates odd stream ids.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// The side that dialled.
    Client,
    /// The side that accepted.
    Server,
}

/// A handle to one stream in the engine's table. Valid until the stream is
/// [released](Connection::release).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct StreamKey(usize);

/// Counters and gauges describing a session.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Streams in the table (open, closing, or awaiting accept).
    pub streams: usize,
    /// Streams this side opened.
    pub opened_outbound: u64,
    /// Streams the peer opened (including refused ones).
    pub opened_inbound: u64,
    /// Inbound streams refused, for any reason (the sum of the three below).
    pub refused_inbound: u64,
    /// Inbound streams refused because [`Config::accept_backlog`] streams awaited `accept()`.
    pub refused_backlog: u64,
    /// Inbound streams refused because [`Config::max_streams`] streams were live.
    pub refused_limit: u64,
    /// Inbound streams refused after this side's `go_away()` or `close()`.
    pub refused_closing: u64,
    /// Stream payload bytes queued for sending.
    pub bytes_sent: u64,
    /// Stream payload bytes received.
    pub bytes_received: u64,
    /// Received bytes not yet read by applications.
    pub recv_buffered: usize,
    /// Heap held for those bytes, as charged against the receive budget (and the shared
    /// [`MemoryBudget`](crate::MemoryBudget), if any): owned chunks, slot rings and the
    /// input buffers that zero-copy slices keep alive. See `Config`'s memory bounds.
    pub recv_memory: usize,
    /// The shared memory budget's use over all its sessions, if the session has one.
    pub shared_memory_in_use: Option<usize>,
    /// Inbound streams waiting for `accept()`.
    pub pending_accept: usize,
    /// The path's round trip: the smallest sample (Ping, and on dialects with flow control the
    /// round trip of a credit grant) of the last one to two minutes, so that answers waiting
    /// behind bulk data in queues below us do not inflate it. `None` until a sample arrived.
    /// (An explicit ping, [`start_ping`](Connection::start_ping) then
    /// [`poll_ping`](Connection::poll_ping), returns its own round trip.)
    pub rtt: Option<Duration>,
    /// Receive windows of all streams, summed: the credit this side may have outstanding.
    pub recv_windows: u64,
}

/// Why an inbound open was refused (counted per reason in [`Stats`]).
#[derive(Clone, Copy, Debug)]
enum Refusal {
    /// After `go_away()` or `close()`.
    Closing,
    /// [`Config::accept_backlog`] streams await `accept()`.
    Backlog,
    /// [`Config::max_streams`] streams are live.
    Limit,
}

#[derive(Debug)]
enum State {
    Open,
    /// `close()` was called: GoAway sent, waiting for streams to finish until `deadline`.
    Closing {
        deadline: Instant,
    },
    Ended(Error),
}

/// Where the decoder is within the inbound byte stream.
#[derive(Debug, Clone, Copy)]
enum RxFrame {
    /// Expecting a frame header.
    Header,
    /// Inside the payload of a Data frame for `key` (`None`: discard it).
    Payload {
        key: Option<StreamKey>,
        flags: crate::Flags,
        len: u32,
        remaining: u32,
    },
}

/// The sans-I/O state of one multiplexed session. See the module docs.
///
/// ```
/// use std::time::Instant;
/// use bytes::BytesMut;
/// use polymux_proto::{Config, Connection, Role};
///
/// let now = Instant::now();
/// let mut client = Connection::new(Role::Client, Config::yamux(), now);
/// let mut server = Connection::new(Role::Server, Config::yamux(), now);
/// let waker = std::task::Waker::noop();
///
/// let key = client.poll_open(waker, now).map(|r| r.unwrap());
/// let key = match key { std::task::Poll::Ready(k) => k, _ => unreachable!() };
/// let _ = client.poll_write(key, waker, b"hello", now);
///
/// // Move the client's bytes to the server.
/// let mut wire = BytesMut::new();
/// while let Some(batch) = client.poll_transmit(now) {
///     batch.copy_to(&mut wire);
///     client.transmitted(batch);
/// }
/// server.handle_input(&mut wire, now);
///
/// let std::task::Poll::Ready(Ok(inbound)) = server.poll_accept(waker, now) else { panic!() };
/// let mut buf = [0u8; 16];
/// let std::task::Poll::Ready(Ok(n)) = server.poll_read(inbound, waker, &mut buf, now) else { panic!() };
/// assert_eq!(&buf[..n], b"hello");
/// ```
#[derive(Debug)]
pub struct Connection {
    role: Role,
    config: Config,
    dialect: Dialect,
    streams: Slab<Stream>,
    /// Each live stream's table key by its id, as `u32` (four bytes less per idle stream,
    /// `tests/idle_memory.rs`): every entry has an id of its own, a `u32`, so the table never
    /// holds 2^32 streams and every key fits.
    ids: HashMap<StreamId, u32>,
    next_outbound_id: u32,
    /// Which ids the peer has opened.
    inbound_ids: InboundIds,
    accept_queue: VecDeque<StreamKey>,
    unacked_outbound: usize,
    tx: TxBuffers,
    rx_frame: RxFrame,
    /// Received payload bytes queued in streams, over all streams.
    recv_buffered: usize,
    /// The memory those bytes hold, charged against the budgets (`crate::memory`).
    memory: RecvMemory,
    /// Of that, what drained streams' queues keep for reuse (`RecvQueue::retained`), given
    /// back before input would pause.
    retained: usize,
    /// Sum of all streams' receive windows, which auto-tuning keeps within half the budget.
    window_sum: u64,
    /// Streams whose first window arrived and whose window is being sized from it, by stream
    /// key: an entry lasts until the reader has the window and a round trip is known, at most
    /// `flow::PACE_LIMIT` (a tick drops it), and goes with its stream. A map, not a list: a
    /// peer can make many streams ramp at once, and every read looks its stream up; ordered, so
    /// that ticks send their credit in the same order every run.
    ramps: BTreeMap<usize, Ramp>,
    /// When the ramps are next stepped (`None`: no ramps).
    next_pace: Option<Instant>,
    /// When the session began: the time base of `RecvCredit::note_arrival`.
    epoch: Instant,
    /// Decoding stopped because the receive budget was full; an application read resumes it.
    paused_on_budget: bool,
    /// Decoding stopped because the shared memory budget refused `n` more bytes; memory
    /// freed anywhere in the pool wakes the driver, and input resumes once they would fit.
    paused_on_pool: Option<usize>,
    keepalive: KeepAlive,
    state: State,
    local_goaway: bool,
    remote_goaway: Option<u32>,
    /// Tasks waiting in `poll_accept`, `poll_open`, `poll_ping` and `poll_ended`.
    accept_waiters: Waiters,
    open_waiters: Waiters,
    ping_waiters: Waiters,
    close_waiters: Waiters,
    driver_waker: Option<Waker>,
    /// While [`handle_input_deferring`](Connection::handle_input_deferring) runs: the wakers
    /// of the tasks its input made ready, woken by the driver once it released the engine.
    deferred_wakes: Option<Vec<Waker>>,
    /// See [`defer_driver_wakes`](Connection::defer_driver_wakes).
    defer_driver_wakes: bool,
    /// The driver's waker, due to be woken by whoever releases the engine.
    driver_wake_due: Option<Waker>,
    /// Streams waiting for write-budget room; each key appears at most once.
    budget_waiters: VecDeque<StreamKey>,
    /// Since when the transport has accepted none of our output (the driver reports it);
    /// `None` while writes progress or nothing waits.
    write_blocked_since: Option<Instant>,
    /// Bytes the driver holds undecoded, as of the last `handle_input` / `handle_paused_input`.
    undecoded: usize,
    /// During a budget pause: the driver reads ahead and still has room, so the peer's
    /// silence is the peer's (see the module docs). Reset by every `handle_input`.
    reading_ahead: bool,
    /// Rate limit of the refusal log: when the current burst began, and refusals not logged.
    refusal_burst: Option<(Instant, u64)>,
    stats: Stats,
}

impl Connection {
    /// A new session in `role`, at time `now`.
    pub fn new(role: Role, config: Config, now: Instant) -> Connection {
        let dialect = config.dialect();
        let keepalive = KeepAlive::new(
            dialect.has_ping(),
            config.keepalive_interval(),
            config.keepalive_timeout(),
            now,
        );
        Connection {
            role,
            dialect,
            streams: Slab::new(),
            ids: HashMap::new(),
            next_outbound_id: crate::policy::first_stream_id(dialect, role == Role::Client),
            inbound_ids: InboundIds::default(),
            accept_queue: VecDeque::new(),
            unacked_outbound: 0,
            tx: TxBuffers::new(dialect, config.write_budget()),
            rx_frame: RxFrame::Header,
            recv_buffered: 0,
            memory: RecvMemory::new(config.session_recv_budget(), config.memory_budget()),
            retained: 0,
            window_sum: 0,
            ramps: BTreeMap::new(),
            next_pace: None,
            epoch: now,
            paused_on_budget: false,
            paused_on_pool: None,
            keepalive,
            state: State::Open,
            local_goaway: false,
            remote_goaway: None,
            accept_waiters: Waiters::default(),
            open_waiters: Waiters::default(),
            ping_waiters: Waiters::default(),
            close_waiters: Waiters::default(),
            driver_waker: None,
            deferred_wakes: None,
            defer_driver_wakes: false,
            driver_wake_due: None,
            budget_waiters: VecDeque::new(),
            write_blocked_since: None,
            undecoded: 0,
            reading_ahead: false,
            refusal_burst: None,
            stats: Stats::default(),
            config,
        }
    }

    /// This side's role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Current counters.
    pub fn stats(&self) -> Stats {
        Stats {
            streams: self.streams.len(),
            recv_buffered: self.recv_buffered,
            recv_memory: self.memory.held(),
            shared_memory_in_use: self.memory.shared_in_use(),
            pending_accept: self.accept_queue.len(),
            rtt: self.keepalive.rtt(),
            recv_windows: self.window_sum,
            ..self.stats.clone()
        }
    }

    /// Why the session ended, once it has.
    pub fn end_reason(&self) -> Option<&Error> {
        match &self.state {
            State::Ended(e) => Some(e),
            _ => None,
        }
    }

    /// Whether the session has ended; the driver then writes what is queued and closes.
    pub fn is_ended(&self) -> bool {
        matches!(self.state, State::Ended(_))
    }

    // ---- outputs -------------------------------------------------------------------------

    /// The next batch of bytes to write, if any. Write all of `control`, then every piece of
    /// `data` (a vectored write), then report it with [`transmitted`](Self::transmitted)
    /// before taking the next batch.
    ///
    /// Control frames come first; stream data follows round-robin, one frame per ready stream
    /// per turn, up to about 128 KiB per batch (see `tx.rs`), so a small frame never waits
    /// behind a long run of another stream's data.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Transmit> {
        self.poll_transmit_within(crate::tx::BATCH_TARGET, now)
    }

    /// Like [`poll_transmit`](Self::poll_transmit), with up to about `limit` data bytes. A
    /// driver whose transport took whole batches at once may ask for more per batch (fewer
    /// writes): a batch only delays the frames queued after it while the transport makes it
    /// wait, which is when it should ask for the default again.
    pub fn poll_transmit_within(&mut self, limit: usize, now: Instant) -> Option<Transmit> {
        let control = self.tx.take_control()?;
        let frame_payload = self.config.max_frame_payload() as usize;
        let mut data = self.tx.piece_list();
        let mut data_len = 0;
        while data_len < limit.max(1) {
            let Some(key) = self.tx.next_ready() else {
                break;
            };
            let Some(s) = self.streams.get_mut(key.0) else {
                continue;
            };
            data_len += self
                .tx
                .serve(key, s.id, &mut s.outbox, frame_payload, &mut data, now);
            if s.waiting_for_budget && self.tx.room(&s.outbox, frame_payload) > 0 {
                // Its outbox shrank: a writer held back by the per-stream cap may go on. (Not
                // one held back by the session's budget: serving moves bytes from queued to in
                // flight, which frees none of it; `transmitted` wakes those.)
                s.wake_writer();
            }
            if s.outbox.is_empty() {
                // A released stream waits for its last bytes to go before it leaves the table.
                self.maybe_remove(key);
            }
        }
        if control.is_empty() && data.is_empty() {
            // Nothing to send: the (empty) piece list is kept for the next batch, not dropped
            // with its capacity (an idle driver asks every turn).
            self.tx.keep_piece_list(data);
            return None;
        }
        self.tx.handed_out(data_len);
        Some(Transmit { control, data })
    }

    /// A batch from [`poll_transmit`](Self::poll_transmit) was written completely; hand it
    /// back (its piece list is reused for the next batch).
    pub fn transmitted(&mut self, batch: Transmit) {
        self.tx.written(batch);
        while let Some(key) = self.budget_waiters.pop_front() {
            if let Some(s) = self.streams.get_mut(key.0) {
                s.waiting_for_budget = false;
                s.wake_writer();
            }
        }
    }

    #[cfg(test)]
    pub(crate) fn tx_buffers(&self) -> &TxBuffers {
        &self.tx
    }

    /// Whether anything is queued for writing or handed out and not yet reported written.
    pub fn has_pending_output(&self) -> bool {
        self.tx.has_pending()
    }

    /// When [`handle_timeout`](Self::handle_timeout) must next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let close = match self.state {
            State::Ended(_) => return None,
            State::Closing { deadline } => Some(deadline),
            State::Open => None,
        };
        let summary = match self.refusal_burst {
            Some((start, untold)) if untold > 0 => Some(start + REFUSAL_BURST),
            _ => None,
        };
        [
            self.keepalive.deadline(),
            close,
            self.write_deadline(),
            summary,
            self.tx.spares_deadline(),
            self.next_pace,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Whether the driver should read more input now. `false` while the receive budget, the
    /// shared memory budget or the control-frame queue is full (reading resumes when
    /// applications read / memory is freed / output drains), and after the session ended.
    pub fn wants_input(&self) -> bool {
        !self.is_ended()
            && !self.paused_on_budget
            && self
                .paused_on_pool
                .is_none_or(|need| self.memory.shared_would_admit(need))
            && !self.tx.control_full()
    }

    /// Whether input is paused on the receive budget alone: the driver may then read ahead (up
    /// to [`PAUSED_READ_AHEAD`] undecoded bytes, reporting them with
    /// [`handle_paused_input`](Self::handle_paused_input)) so that a dead peer is still
    /// detected while applications do not read.
    pub fn wants_read_ahead(&self) -> bool {
        !self.is_ended() && self.paused_on_budget && !self.tx.control_full()
    }

    /// While input is paused on the receive budget, the driver holds `undecoded` bytes it read
    /// (ahead) and the engine could not decode yet. More than last time: the peer is alive.
    /// Fewer than [`PAUSED_READ_AHEAD`]: the driver goes on reading, so the peer's silence
    /// counts against it; at the limit the driver stops and the silence is ours. So it is
    /// after `eof` (the transport ended during the read-ahead; report it with
    /// [`handle_eof`](Self::handle_eof) once input resumes): nothing more can arrive, and the
    /// bytes that did wait for the application, as they would have without a read-ahead.
    pub fn handle_paused_input(&mut self, undecoded: usize, eof: bool, now: Instant) {
        if !self.wants_read_ahead() {
            return;
        }
        if undecoded > self.undecoded {
            self.keepalive.on_receive(now);
        }
        self.undecoded = undecoded;
        self.reading_ahead = !eof && undecoded < PAUSED_READ_AHEAD;
    }

    /// The transport accepted none of the pending output: a write or flush returned `Pending`.
    /// Starts the [`write_timeout`](Config::write_timeout) clock unless it runs already.
    pub fn handle_write_blocked(&mut self, now: Instant) {
        if self.write_blocked_since.is_none() {
            self.write_blocked_since = Some(now);
        }
    }

    /// The transport accepted output (a write took bytes, or a flush completed): the peer
    /// reads, so the write-timeout clock stops.
    pub fn handle_write_progress(&mut self) {
        self.write_blocked_since = None;
    }

    fn write_deadline(&self) -> Option<Instant> {
        let since = self.write_blocked_since?;
        Some(since + self.config.write_timeout()?)
    }

    /// Registers the driver's waker: woken when there is output, input may resume, a timer
    /// changed, or the session ended. While input is paused on the shared memory budget, the
    /// waker is parked there too (before the driver checks [`wants_input`](Self::wants_input)
    /// again, so memory freed in between is not missed).
    pub fn register_driver(&mut self, waker: &Waker) {
        if self.paused_on_pool.is_some() {
            self.memory.wait_shared(waker);
        }
        crate::stream::register(&mut self.driver_waker, waker);
    }

    /// The driver's registered waker while it waits for work (`None` once it has been woken).
    /// An async layer whose tasks may read the transport on the driver's behalf registers
    /// this one with the transport, so that the transport's readiness wakes the driver.
    pub fn driver_waker(&self) -> Option<&Waker> {
        self.driver_waker.as_ref()
    }

    /// Wakes the driver's registered task. The engine does so itself whenever it has work for
    /// the driver; the async layer calls it for work it left outside the engine (a direct
    /// write's bytes that the transport sends only on a flush). With
    /// [`defer_driver_wakes`](Connection::defer_driver_wakes) the wake is left for whoever
    /// releases the engine.
    pub fn wake_driver(&mut self) {
        if self.deferred_wakes.is_some() {
            // The driver itself is handing over input and runs another turn before it waits
            // (see `handle_input_deferring`): waking it would only reschedule it.
            return;
        }
        if let Some(w) = self.driver_waker.take() {
            if self.defer_driver_wakes {
                self.driver_wake_due = Some(w);
            } else {
                w.wake();
            }
        }
    }

    /// With `true`, the engine does not wake the driver itself: a command that gives the
    /// driver work leaves its waker for [`take_driver_wake`](Self::take_driver_wake), which
    /// the caller wakes once it has released the engine. An engine shared behind a lock
    /// wants this: a driver woken while the lock is still held wakes up, on another thread,
    /// only to sleep on that lock.
    pub fn defer_driver_wakes(&mut self, defer: bool) {
        self.defer_driver_wakes = defer;
    }

    /// The driver's waker, if a command since the last call gave the driver work (see
    /// [`defer_driver_wakes`](Self::defer_driver_wakes)): wake it after releasing the engine.
    pub fn take_driver_wake(&mut self) -> Option<Waker> {
        self.driver_wake_due.take()
    }

    /// Wakes `waker`'s task now, or, while input is handed over by
    /// [`handle_input_deferring`](Self::handle_input_deferring), once the driver has
    /// released the engine (so the task does not wake up only to wait for the engine's lock).
    fn wake(&mut self, waker: Option<Waker>) {
        let Some(waker) = waker else { return };
        match &mut self.deferred_wakes {
            Some(list) => list.push(waker),
            None => waker.wake(),
        }
    }

    /// Wakes the reader of `key`, if one waits (see [`wake`](Self::wake)).
    fn wake_reader_of(&mut self, key: StreamKey) {
        let waker = self
            .streams
            .get_mut(key.0)
            .and_then(|s| s.read_waker.take());
        self.wake(waker);
    }

    /// Wakes the writer of `key`, if one waits (see [`wake`](Self::wake)).
    fn wake_writer_of(&mut self, key: StreamKey) {
        let waker = self
            .streams
            .get_mut(key.0)
            .and_then(|s| s.write_waker.take());
        self.wake(waker);
    }

    // ---- timers and transport events -------------------------------------------------------

    /// Advances timers to `now`: sends keep-alives, detects a dead peer, ends a graceful close
    /// whose deadline passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.is_ended() {
            return;
        }
        self.tx.trim_spares(now);
        if self.write_deadline().is_some_and(|at| now >= at) {
            tracing::debug!(
                dialect = self.dialect.name(),
                "peer accepted none of our output within the write timeout"
            );
            self.end(Error::WriteTimeout);
            return;
        }
        if self.tx.control_full() || (self.paused_on_budget && !self.reading_ahead) {
            // We stopped reading: silence is ours, not the peer's (a peer that does not read
            // our output is caught by the write timeout instead).
            self.keepalive.on_receive(now);
        }
        self.summarise_refusals(Some(now));
        if self.next_pace.is_some_and(|at| now >= at) {
            self.pace_credit(now);
        }
        match self.keepalive.poll(now) {
            Err(()) => {
                tracing::debug!(dialect = self.dialect.name(), "keep-alive timed out");
                self.end(Error::KeepAliveTimeout);
                return;
            }
            Ok(Some(probe)) => {
                self.push_control(&probe);
            }
            Ok(None) => {}
        }
        if let State::Closing { deadline } = self.state {
            if now >= deadline {
                tracing::debug!("graceful close timed out with streams still open");
                self.end(Error::SessionClosed);
            }
        }
    }

    /// The transport reached EOF; `unread` bytes were left undecoded in the receive buffer.
    pub fn handle_eof(&mut self, unread: usize) {
        if self.is_ended() {
            return;
        }
        let truncated = match self.rx_frame {
            RxFrame::Payload { len, remaining, .. } => Some(crate::Violation::TruncatedFrame {
                got: (len - remaining) as usize + unread,
                needed: len as usize,
            }),
            RxFrame::Header if unread > 0 => Some(crate::Violation::TruncatedFrame {
                got: unread,
                needed: self.dialect.fixed_len_needed(unread),
            }),
            RxFrame::Header => None,
        };
        let reason = match (truncated, &self.state) {
            (Some(v), _) => Error::ProtocolViolation(v),
            (None, State::Closing { .. }) => Error::SessionClosed,
            (None, _) => match self.remote_goaway {
                Some(code) => Error::GoAway(code),
                None => Error::TransportClosed,
            },
        };
        self.end(reason);
    }

    /// The transport failed.
    pub fn handle_transport_error(&mut self, error: &std::io::Error) {
        self.end(Error::Transport(error.into()));
    }

    /// Ends the session: every waiting task wakes and sees `reason`. A protocol violation (and,
    /// on net-mux, a keep-alive timeout) is announced with the dialect's GoAway code for it.
    fn end(&mut self, reason: Error) {
        if self.is_ended() {
            return;
        }
        match &reason {
            Error::ProtocolViolation(v) => {
                tracing::warn!(dialect = self.dialect.name(), violation = %v, "peer violated the protocol; ending the session");
            }
            other => tracing::debug!(reason = %other, "session ended"),
        }
        if let Some(code) = self.dialect.goaway_code_for(&reason) {
            self.push_control(&Frame::GoAway { code });
        }
        self.state = State::Ended(reason);
        self.summarise_refusals(None);
        self.accept_queue.clear();
        for (_, s) in self.streams.iter_mut() {
            s.wake_reader();
            s.wake_writer();
        }
        self.accept_waiters.wake_all();
        self.open_waiters.wake_all();
        self.ping_waiters.wake_all();
        self.close_waiters.wake_all();
        self.wake_driver();
    }

    // ---- shared helpers --------------------------------------------------------------------

    /// Counts an inbound open refused for `why` and logs it: the first of a burst at info, the
    /// rest at debug, summarised at info when the burst is over (a SYN flood must not flood
    /// the log, nor go unnoticed).
    fn note_refusal(&mut self, id: StreamId, why: Refusal, now: Instant) {
        self.stats.refused_inbound += 1;
        let (counter, reason) = match why {
            Refusal::Closing => (&mut self.stats.refused_closing, "GoAway sent or closing"),
            Refusal::Backlog => (&mut self.stats.refused_backlog, "accept backlog full"),
            Refusal::Limit => (&mut self.stats.refused_limit, "stream limit reached"),
        };
        *counter += 1;
        self.summarise_refusals(Some(now));
        match &mut self.refusal_burst {
            Some((_, untold)) => {
                *untold += 1;
                tracing::debug!(stream = %id, reason, "refusing inbound stream");
            }
            None => {
                tracing::info!(
                    stream = %id,
                    reason,
                    "refusing inbound stream (further refusals within {REFUSAL_BURST:?} are summarised)"
                );
                self.refusal_burst = Some((now, 0));
            }
        }
    }

    /// Ends the current refusal burst once it is over at `now` (or at once, with `None`: the
    /// session ends), logging how many refusals it did not log one by one.
    fn summarise_refusals(&mut self, now: Option<Instant>) {
        let Some((start, untold)) = self.refusal_burst else {
            return;
        };
        if now.is_some_and(|now| now < start + REFUSAL_BURST) {
            return;
        }
        if untold > 0 {
            let s = &self.stats;
            tracing::info!(
                untold,
                refused_total = s.refused_inbound,
                backlog = s.refused_backlog,
                limit = s.refused_limit,
                closing = s.refused_closing,
                "refused {untold} more inbound streams"
            );
        }
        self.refusal_burst = None;
    }

    fn push_control(&mut self, frame: &Frame) {
        self.tx.push_control(frame);
        self.wake_driver();
    }

    /// Queues `frame` (FIN or RST) for `key` behind the data it already queued.
    fn push_after_data(&mut self, key: StreamKey, frame: Frame, now: Instant) {
        if let Some(s) = self.streams.get_mut(key.0) {
            self.tx.push_after_data(key, &mut s.outbox, frame, now);
            self.wake_driver();
        }
    }

    /// Inserts a new stream with the protocol's initial credit in both directions.
    fn insert_stream(&mut self, id: StreamId, opening: Opening) -> StreamKey {
        let window = self.config.stream_window();
        let (recv, send) = match self.dialect {
            Dialect::SmuxV1 => (RecvCredit::unlimited(), SendCredit::new(None)),
            _ => (
                RecvCredit::new(PROTOCOL_INITIAL_WINDOW, window),
                SendCredit::new(Some(PROTOCOL_INITIAL_WINDOW)),
            ),
        };
        self.window_sum += u64::from(recv.window());
        if self.streams.len() == self.streams.capacity() {
            // Grow the table by an eighth, not by doubling: with ~130-byte entries, doubling
            // leaves up to half the table unused (≈ 100 bytes per live stream at 10,000).
            self.streams
                .reserve_exact((self.streams.len() / 8).max(MIN_TABLE_GROWTH));
        }
        let key = StreamKey(self.streams.insert(Stream::new(id, opening, recv, send)));
        self.ids.insert(id, key.0 as u32);
        key
    }

    /// Removes `key` once the application released it and both directions are over.
    fn maybe_remove(&mut self, key: StreamKey) {
        let Some(s) = self.streams.get(key.0) else {
            return;
        };
        if !(s.released && s.is_finished() && s.outbox.is_empty()) {
            return;
        }
        let s = self.streams.remove(key.0);
        let unacked = s.is_unacked();
        if let RxFrame::Payload { key: frame_key, .. } = &mut self.rx_frame {
            if *frame_key == Some(key) {
                // The rest of a frame being received for it is discarded: the slab slot may be
                // reused by a new stream, which must not get these bytes (or the frame's FIN/RST).
                *frame_key = None;
            }
        }
        let mut queue = s.queue;
        let charge = queue.charge();
        self.retained -= queue.retained();
        let n = queue.discard(&mut self.memory);
        self.unbuffer(n, charge);
        self.window_sum -= u64::from(s.recv.window());
        // A ramp must not carry over to a new stream in the reused slot (few entries).
        self.ramps.remove(&key.0);
        self.ids.remove(&s.id);
        if unacked {
            self.unacked_outbound -= 1;
            self.wake_open_waiters();
        }
        if self.streams.len() + 1 == self.config.max_streams() {
            self.wake_open_waiters();
        }
        self.progress_close();
    }

    fn wake_open_waiters(&mut self) {
        match &mut self.deferred_wakes {
            Some(list) => list.extend(self.open_waiters.take_all()),
            None => self.open_waiters.wake_all(),
        }
    }

    /// `n` received bytes left the session's receive memory (read, discarded, or freed with
    /// their stream), and their queue's charge went down by `uncharged` (pinned buffers are
    /// released by the queue itself). Input paused on the budget resumes: whichever way the
    /// memory was freed, the session must not stay paused with room to spare. Also with
    /// `n == 0`: a reset or released stream may be the one whose frame was waiting for room,
    /// and its rest is now discarded without needing any (if there is still no room, decoding
    /// pauses again).
    fn unbuffer(&mut self, n: usize, uncharged: usize) {
        self.recv_buffered -= n;
        self.memory.release(uncharged);
        if self.paused_on_budget {
            self.paused_on_budget = false;
            self.wake_driver();
        }
        if self.paused_on_pool.is_some() {
            // Freed memory of our own counts towards our fair share of the pool; the pool
            // itself wakes us only when its total drops below the limit.
            self.paused_on_pool = None;
            self.wake_driver();
        }
    }

    /// Gives back the rings that drained queues keep beyond their uncharged part; returns
    /// whether there were any (then input may fit again). O(streams), and only when input
    /// would otherwise pause with such memory outstanding.
    fn trim_retained(&mut self) -> bool {
        if self.retained == 0 {
            return false;
        }
        for (_, s) in self.streams.iter_mut() {
            let before = s.queue.charge();
            if s.queue.retained() > 0 {
                s.queue.trim();
                self.memory.release(before - s.queue.charge());
            }
        }
        self.retained = self.streams.iter().map(|(_, s)| s.queue.retained()).sum();
        true
    }

    /// During a graceful close, ends the session once every stream has finished.
    fn progress_close(&mut self) {
        if matches!(self.state, State::Closing { .. })
            && self.streams.iter().all(|(_, s)| s.is_finished())
        {
            self.end(Error::SessionClosed);
        }
    }

    /// The first window of `key` arrived whole at `rate` bytes/s: size its window from it
    /// (now if the reader already has it all, else as it reads or at the next tick).
    fn start_ramp(&mut self, key: StreamKey, rate: u64, now: Instant) {
        self.ramps
            .entry(key.0)
            .or_insert_with(|| Ramp::new(now, rate));
        self.next_pace.get_or_insert(now + PACE_TICK);
    }

    /// The application read from `key`: if its window is being sized from its first window,
    /// that may proceed now (the reader has it all).
    fn ramp_on_read(&mut self, key: StreamKey, now: Instant) {
        let Some(mut ramp) = self.ramps.get(&key.0).copied() else {
            return;
        };
        if self.step_ramp(key, &mut ramp, now) {
            self.ramps.insert(key.0, ramp);
        } else {
            self.ramps.remove(&key.0);
        }
    }

    /// A ramp tick: every ramping stream is sized (`Ramp::step`) and paced credit goes out;
    /// streams done drop out.
    fn pace_credit(&mut self, now: Instant) {
        let mut ramps = std::mem::take(&mut self.ramps);
        ramps.retain(|&key, ramp| self.step_ramp(StreamKey(key), ramp, now));
        self.ramps = ramps;
        self.next_pace = (!self.ramps.is_empty()).then(|| now + PACE_TICK);
    }

    /// Steps `key`'s ramp and sends the credit due (paced credit once [`PACE_MIN_GRANT`] is
    /// due); returns whether the ramp goes on.
    fn step_ramp(&mut self, key: StreamKey, ramp: &mut Ramp, now: Instant) -> bool {
        let rtt = self.keepalive.min_rtt();
        let max_window = self.config.max_stream_window();
        let budget_left = (self.memory.window_budget() as u64).saturating_sub(self.window_sum);
        let Some(s) = self.streams.get_mut(key.0) else {
            return false;
        };
        if !s.peer_may_send() {
            return false;
        }
        let before = s.recv.window();
        let more = ramp.step(&mut s.recv, now, rtt, max_window, budget_left);
        self.window_sum = self.window_sum - u64::from(before) + u64::from(s.recv.window());
        if more && s.recv.grantable() < PACE_MIN_GRANT {
            return true;
        }
        let delta = s.recv.grant(now);
        if delta > 0 {
            let frame = crate::policy::credit(
                self.dialect,
                s.id,
                delta,
                s.recv.consumed(),
                s.recv.window(),
            );
            if let Some(frame) = frame {
                self.push_control(&frame);
            }
        }
        more
    }

    /// Returns credit for `key` if enough was consumed, growing its window when the window is
    /// what limits throughput (and the session budget allows).
    fn maybe_return_credit(&mut self, key: StreamKey, now: Instant) {
        self.return_credit(key, false, now);
    }

    /// Returns credit for `key` (or, with `first_read` on smux v2, reports it anyway: like Go,
    /// the first read announces the window and what was consumed, so the peer learns our
    /// window early instead of after half of it — unless our window is below the 256 KiB the
    /// peer assumed, where an early announcement would shrink the credit it already used).
    fn return_credit(&mut self, key: StreamKey, first_read: bool, now: Instant) {
        let max_window = self.config.max_stream_window();
        let rtt = self.keepalive.min_rtt();
        let floor = self.config.stream_window();
        let dialect = self.dialect;
        let Some(s) = self.streams.get_mut(key.0) else {
            return;
        };
        let announce =
            first_read && dialect == Dialect::SmuxV2 && s.recv.announcement_keeps_credit();
        if !s.peer_may_send() || !dialect.has_stream_credit() {
            return;
        }
        let due = s.recv.wants_update();
        if !due && !announce {
            self.ramp_on_read(key, now);
            return;
        }
        // Windows grow within half the budget (and of the shared pool's minimum share): the
        // memory charged for a window's worth of payload includes slots, chunk slack and the
        // buffers slices pin (`crate::memory`), and a reader that keeps up must not find its
        // session paused by that overhead.
        let budget_left = (self.memory.window_budget() as u64).saturating_sub(self.window_sum);
        let Some(s) = self.streams.get_mut(key.0) else {
            return;
        };
        // Only credit that fell due says anything about the pace; an announcement does not.
        let before = s.recv.window();
        if due {
            s.recv.retune(now, rtt, floor, max_window, budget_left);
        }
        let after = s.recv.window();
        let delta = if due {
            s.recv.grant(now)
        } else {
            s.recv.grant_unprobed(now)
        };
        let frame = crate::policy::credit(dialect, s.id, delta, s.recv.consumed(), s.recv.window());
        self.window_sum = self.window_sum - u64::from(before) + u64::from(after);
        if let Some(frame) = frame {
            self.push_control(&frame);
        }
        if rtt.is_none() && dialect.has_ping() {
            // Auto-tuning needs the round trip: measure it the first time credit matters
            // (a ping already outstanding will do).
            let (probe, _) = self.keepalive.ping(now);
            if let Some(probe) = probe {
                self.push_control(&probe);
            }
        }
        self.ramp_on_read(key, now);
    }
}
