//! The driver: the future that runs the transport. It moves bytes between the transport
//! and the engine, fires timers, and closes the transport when the session ends.
//!
//! Each turn of its loop: (1) write the engine's next output batch (vectored: control, then
//! the data frames' pieces) and flush once the engine has nothing more; (2) read into the receive buffer and hand
//! it to the engine, then wake the tasks it made ready once the engine's lock is released (a
//! task woken under the lock would, on another thread, only wake to sleep on it); (3) fire the keep-alive / close timer. Socket reads and writes happen
//! *outside* the engine's lock, so streams keep working while the driver waits on the kernel.
//! The transport itself lives in [`Shared`], where a stream may also write its data frames
//! directly while the output is idle (`direct.rs`); the driver writes everything else, and
//! does the flush either kind of write may leave it (`Io::needs_flush`). Likewise a reader
//! about to wait may make one read for the driver (`inline_read.rs`), which is why the
//! receive buffers live there too. A turn whose input emptied the transport, leaving nothing
//! to write, ends the poll, so that the tasks it woke run at once.
//!
//! **Settling** (one write per input batch's replies): when input woke tasks of the driver's
//! own executor (their wakers share its vtable), the next write waits one executor turn: the
//! driver wakes itself and returns, those tasks run, and what they queue meanwhile (an echo
//! server's FIN for one stream and its reply on the next, a reader's credit) leaves in the
//! same write as what was already queued (a direct write meanwhile carries the queued control
//! bytes itself, `connection/direct.rs`, so nothing is overtaken either way). Bounded: one
//! yield per such input, never a timer; tasks of other executors (a thread blocked on the
//! application's future) run elsewhere anyway, so their wake-ups never delay output. "Same
//! vtable" is a heuristic, and it fails safe: tokio gives every task one vtable (a task of
//! another tokio runtime matches too and costs one needless yield); an executor with a vtable
//! per future type never matches, and output is then never held.
//!
//! The loop yields after a fixed number of turns so one busy session cannot starve an executor.
//!
//! Liveness (the engine decides, on the times the driver reports): a write or flush that
//! returns `Pending` and later progress are reported, so a peer that stops reading ends the
//! session after `Config::write_timeout`; while input is paused on the receive budget the
//! driver reads ahead up to `PAUSED_READ_AHEAD` undecoded bytes and reports them, so a peer
//! that dies meanwhile is still detected by keep-alive. EOF seen during a read-ahead is
//! reported only once everything before it was decoded.

use std::future::Future;
use std::io::{self, IoSlice};
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, RawWakerVTable, Waker};
use std::time::Instant;

use futures_timer::Delay;
use polymux_proto::dialect::goaway;
use polymux_proto::{Connection, Error, Transmit, PAUSED_READ_AHEAD};

use crate::rx_buffers::{self, RxBuffers};
use crate::session::Shared;
use crate::transport::Transport;

/// Bytes requested from the transport per read between frames; inside a large payload the
/// read ends after the next frame's header instead (see `Connection::read_hint`), up to
/// [`MAX_READ`].
const READ_CHUNK: usize = 64 * 1024;
/// The largest read: a 64 KiB payload and the next header fit, so default-sized yamux frames
/// arrive whole.
const MAX_READ: usize = READ_CHUNK + 64;
/// The receive buffer never holds more than this undecoded (reading pauses instead); with one
/// more read it still fits one receive buffer.
const RX_LIMIT: usize = rx_buffers::BUFFER - MAX_READ;
// Reading ahead during a budget pause must stay within what the receive buffer may hold.
const _: () = assert!(PAUSED_READ_AHEAD <= RX_LIMIT);
/// Pieces of a batch passed to one vectored write (the rest goes in the next).
const MAX_SLICES: usize = 128;
/// Data bytes asked for per batch while the transport makes writes wait (the engine's own
/// default, which bounds how long a new frame waits behind the batch being written).
const MIN_BATCH: usize = 128 * 1024;
/// Data bytes asked for per batch at most, while the transport takes whole batches at once.
const MAX_BATCH: usize = 1024 * 1024;
/// Loop turns before yielding to the executor.
const TURNS_PER_POLL: usize = 64;
/// After the session ends, how long the driver tries to write what is queued (a final GoAway,
/// data of finished streams) before it closes the transport regardless.
const LINGER: std::time::Duration = std::time::Duration::from_secs(5);

/// Drives a session's I/O. Spawn it on any executor (or `.await` it); it completes when the
/// session has ended and the transport is closed, with `Ok(())` for an orderly end (local
/// close, the peer's normal GoAway, or EOF) and the reason otherwise.
#[must_use = "the driver performs all of the session's I/O: spawn it or poll it"]
pub struct Driver<T> {
    shared: Arc<Shared>,
    /// The transport's type, kept for the API; the transport itself is in `shared`.
    transport: PhantomData<fn() -> T>,
    batch: Option<Transmit>,
    /// Tasks the last input made ready, woken once the engine's lock is released (kept for
    /// its capacity).
    woken: Vec<Waker>,
    /// The last input woke a task of this executor, and no write has waited for it yet (see
    /// "Settling" above).
    settle: bool,
    /// Data bytes to ask for in the next batch: [`MIN_BATCH`], doubling up to [`MAX_BATCH`]
    /// while batches go out whole in one write.
    batch_limit: usize,
    /// Bytes of `batch` already written.
    written: usize,
    /// The engine was told the transport accepts no output; progress must be reported.
    write_blocked: bool,
    eof: bool,
    /// `eof` was reported to the engine (deferred while a read-ahead left bytes undecoded).
    eof_reported: bool,
    /// Writing failed: queued output can never be written.
    write_failed: bool,
    timer: Option<(Instant, Delay)>,
    /// Armed when the session ends with output still queued; see [`LINGER`].
    linger: Option<Delay>,
    done: bool,
}

impl<T> std::fmt::Debug for Driver<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Driver")
            .field("eof", &self.eof)
            .finish_non_exhaustive()
    }
}

enum Step {
    Progress,
    Idle,
    /// Input was decoded, and the transport, polled again, had nothing more: this task is
    /// registered for its next bytes, so input needs no further turn.
    Drained,
}

/// The transport is gone (the driver finished): nothing can be read or written any more.
fn closed() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "the transport is closed")
}

impl<T: Transport> Driver<T> {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        let recv_budget = shared.lock().config().session_recv_budget();
        shared.lock_io().rx = Some(RxBuffers::new(recv_budget));
        Driver {
            shared,
            transport: PhantomData,
            batch: None,
            woken: Vec::new(),
            settle: false,
            batch_limit: MIN_BATCH,
            written: 0,
            write_blocked: false,
            eof: false,
            eof_reported: false,
            write_failed: false,
            timer: None,
            linger: None,
            done: false,
        }
    }

    /// Writes as much of the current batch as the transport takes.
    fn poll_output(&mut self, cx: &mut Context<'_>, now: Instant) -> Step {
        let mut progress = false;
        loop {
            if self.batch.is_none() {
                let mut conn = self.shared.lock();
                self.batch = conn.poll_transmit_within(self.batch_limit, now);
                self.written = 0;
            }
            let Some(batch) = &self.batch else { break };
            let mut slices = [IoSlice::new(&[]); MAX_SLICES];
            let count = unwritten_slices(batch, self.written, &mut slices);
            let written = {
                let mut io = self.shared.lock_io();
                let written = match io.transport.as_mut() {
                    Some(transport) => transport.poll_write_slices(cx, &slices[..count]),
                    None => Poll::Ready(Err(closed())),
                };
                if matches!(written, Poll::Ready(Ok(1..))) {
                    io.needs_flush = true;
                }
                written
            };
            match written {
                Poll::Ready(Ok(0)) => {
                    let err =
                        io::Error::new(io::ErrorKind::WriteZero, "transport accepted no bytes");
                    self.fail(&err);
                    return Step::Progress;
                }
                Poll::Ready(Ok(n)) => {
                    progress = true;
                    // Inline `report_write_progress`: `batch` borrows `self.batch`.
                    if std::mem::take(&mut self.write_blocked) {
                        self.shared.lock().handle_write_progress();
                    }
                    let whole = self.written == 0 && n >= batch.len();
                    self.written += n;
                    // A batch the transport took in one write delayed nothing: the next may be
                    // larger (fewer writes for bulk). One it took in parts made later frames
                    // wait: back to the default, which bounds that wait.
                    self.batch_limit = if whole {
                        (self.batch_limit * 2).min(MAX_BATCH)
                    } else {
                        MIN_BATCH
                    };
                    if self.written >= batch.len() {
                        if let Some(batch) = self.batch.take() {
                            self.shared.lock().transmitted(batch);
                        }
                    }
                }
                Poll::Ready(Err(e)) => {
                    self.fail(&e);
                    return Step::Progress;
                }
                Poll::Pending => {
                    self.report_write_blocked(now);
                    break;
                }
            }
        }
        // Flush once every batch is out (the transport's lock is only taken then).
        let flushed = self.batch.is_none().then(|| {
            let mut io = self.shared.lock_io();
            if !io.needs_flush {
                return None;
            }
            let flushed = match io.transport.as_mut() {
                Some(transport) => transport.poll_flush_out(cx),
                None => Poll::Ready(Ok(())),
            };
            if flushed.is_ready() {
                io.needs_flush = false;
            }
            Some(flushed)
        });
        if let Some(Some(flushed)) = flushed {
            match flushed {
                Poll::Ready(Ok(())) => self.report_write_progress(),
                Poll::Ready(Err(e)) => {
                    self.fail(&e);
                    return Step::Progress;
                }
                Poll::Pending => self.report_write_blocked(now),
            }
        }
        if progress {
            Step::Progress
        } else {
            Step::Idle
        }
    }

    /// The transport accepts none of the output: the engine's write-timeout clock runs.
    fn report_write_blocked(&mut self, now: Instant) {
        self.write_blocked = true;
        self.shared.lock().handle_write_blocked(now);
    }

    fn report_write_progress(&mut self) {
        if std::mem::take(&mut self.write_blocked) {
            self.shared.lock().handle_write_progress();
        }
    }

    /// Reads from the transport and feeds the engine, while the engine wants input (or, paused
    /// on the receive budget, reads ahead a bounded amount so the peer's liveness stays known).
    /// The receive buffers live with the transport, where a reader about to wait may use them
    /// too (`inline_read.rs`); the driver holds them while it works, and first takes over the
    /// end of input or the error such a read met.
    fn poll_input(&mut self, cx: &mut Context<'_>, now: Instant) -> Step {
        let (rx, ended) = {
            let mut io = self.shared.lock_io();
            (io.rx.take(), io.read_end.take())
        };
        // Only a reader's read takes them, and it gives them back before it unlocks.
        let Some(mut rx) = rx else { return Step::Idle };
        let step = match ended {
            Some(Err(e)) => {
                self.fail(&e);
                Step::Progress
            }
            ended => {
                if ended.is_some() {
                    // Reported below, once everything before it is decoded.
                    self.eof = true;
                    self.eof_reported = false;
                }
                match self.input_step(cx, now, &mut rx) {
                    // A short read emptied the transport (tokio then clears its readiness):
                    // polling it once more registers this task for the next bytes, without a
                    // system call there, so the turn can end here and the woken tasks run.
                    (Step::Progress, Some(arrived)) => {
                        match self.input_step(cx, arrived, &mut rx) {
                            (Step::Idle, _) => Step::Drained,
                            (step, _) => step,
                        }
                    }
                    (step, _) => step,
                }
            }
        };
        rx.trim_if_quiet(now);
        self.shared.lock_io().rx = Some(rx);
        step
    }

    /// One read and its decoding. With `Some(arrival)`: data was decoded after a read shorter
    /// than asked for.
    fn input_step(
        &mut self,
        cx: &mut Context<'_>,
        now: Instant,
        buffers: &mut RxBuffers,
    ) -> (Step, Option<Instant>) {
        let mut conn = self.shared.lock();
        let decoding = conn.wants_input();
        if !decoding && !conn.wants_read_ahead() {
            return (Step::Idle, None);
        }
        let rx = &mut buffers.current;
        if decoding && !rx.is_empty() {
            // Bytes left over from a pause: offer them again first.
            let before = rx.len();
            conn.handle_input_deferring(rx, now, &mut self.woken);
            let progress = rx.len() != before;
            let own = driver_vtable(&conn);
            drop(conn);
            self.wake_ready(own);
            if progress {
                return (Step::Progress, None);
            }
            conn = self.shared.lock();
        }
        if self.eof {
            if decoding && !self.eof_reported {
                // EOF arrived during a read-ahead: everything before it is decoded now.
                self.eof_reported = true;
                conn.handle_eof(rx.len());
                return (Step::Progress, None);
            }
            if !decoding {
                // Paused again after a read-ahead saw EOF: nothing more can arrive.
                conn.handle_paused_input(rx.len(), true, now);
            }
            return (Step::Idle, None);
        }
        let limit = if decoding {
            RX_LIMIT
        } else {
            PAUSED_READ_AHEAD
        };
        if !decoding {
            // Tells the engine whether we still read (the peer's silence counts) or not.
            conn.handle_paused_input(rx.len(), false, now);
        }
        if rx.len() >= limit {
            return (Step::Idle, None);
        }
        let want = read_size(&conn, rx.len(), decoding, limit);
        drop(conn);
        buffers.reserve(want);
        let rx = &mut buffers.current;
        let polled = match self.shared.lock_io().transport.as_mut() {
            Some(io) => io.poll_read_into(cx, rx, want),
            None => Poll::Ready(Err(closed())),
        };
        match polled {
            Poll::Ready(Ok(n)) => {
                let mut conn = self.shared.lock();
                if n == 0 {
                    self.eof = true;
                    if decoding {
                        self.eof_reported = true;
                        conn.handle_eof(rx.len());
                    } else {
                        conn.handle_paused_input(rx.len(), true, now);
                    }
                } else if decoding {
                    // The arrival time: RTT samples are taken from it.
                    let arrived = Instant::now();
                    buffers.last_read = arrived;
                    conn.handle_input_deferring(rx, arrived, &mut self.woken);
                    let own = driver_vtable(&conn);
                    drop(conn);
                    self.wake_ready(own);
                    return (Step::Progress, (n < want).then_some(arrived));
                } else {
                    buffers.last_read = now;
                    conn.handle_paused_input(rx.len(), false, now);
                }
                (Step::Progress, None)
            }
            Poll::Ready(Err(e)) => {
                self.fail(&e);
                (Step::Progress, None)
            }
            Poll::Pending => (Step::Idle, None),
        }
    }

    /// Fires the engine's timer when due and arms a `Delay` for the next deadline (`conn`:
    /// the engine, locked by the caller).
    fn poll_timer(&mut self, conn: &mut Connection, cx: &mut Context<'_>, now: Instant) -> Step {
        let Some(deadline) = conn.poll_timeout() else {
            self.timer = None;
            return Step::Idle;
        };
        if deadline <= now {
            conn.handle_timeout(now);
            return Step::Progress;
        }
        match &mut self.timer {
            // A timer armed for an earlier instant is kept: deadlines move later all the time
            // (each received frame postpones the keep-alive, each write the spare-buffer trim),
            // and arming a new `Delay` wakes the timer thread, a futex call and a context switch
            // each. Firing early costs one more turn, which arms the timer for the new deadline.
            Some((at, delay)) if *at <= deadline => {
                if Pin::new(delay).poll(cx).is_ready() {
                    self.timer = None;
                    return Step::Progress;
                }
            }
            _ => {
                let mut delay = Delay::new(deadline - now);
                if Pin::new(&mut delay).poll(cx).is_ready() {
                    return Step::Progress;
                }
                self.timer = Some((deadline, delay));
            }
        }
        Step::Idle
    }

    /// Wakes the tasks the last input made ready (the engine's lock is released by now), and
    /// notes whether one of them runs on this executor (its waker has `own`, the driver's
    /// vtable): then the next write settles first.
    fn wake_ready(&mut self, own: Option<&'static RawWakerVTable>) {
        self.settle |= own.is_some_and(|own| self.woken.iter().any(|w| w.vtable() == own));
        for waker in self.woken.drain(..) {
            waker.wake();
        }
    }

    fn fail(&mut self, error: &io::Error) {
        self.batch = None;
        self.eof = true;
        self.eof_reported = true;
        self.write_failed = true;
        self.shared.lock().handle_transport_error(error);
    }
}

/// Bytes to ask the transport for: while decoding, up to the end of the payload being received
/// plus the next header (see `Connection::read_hint`), else a chunk; while paused, what the
/// read-ahead allows.
pub(crate) fn read_size(conn: &Connection, buffered: usize, decoding: bool, limit: usize) -> usize {
    match conn.read_hint(buffered) {
        _ if !decoding => limit - buffered,
        Some(hint) => hint.clamp(1, MAX_READ),
        None => READ_CHUNK,
    }
}

/// The vtable of the driver's registered waker: a stored clone, compared with the stored
/// clones of the tasks' wakers (not every waker keeps its vtable through clones: those of
/// `std::task::Wake` do not).
fn driver_vtable(conn: &Connection) -> Option<&'static RawWakerVTable> {
    conn.driver_waker().map(Waker::vtable)
}

/// Fills `slices` with the pieces of `batch` after its first `written` bytes (as many as fit);
/// returns how many it filled.
fn unwritten_slices<'a>(batch: &'a Transmit, written: usize, slices: &mut [IoSlice<'a>]) -> usize {
    let mut skip = written;
    let mut count = 0;
    for piece in batch.pieces() {
        if count == slices.len() {
            break;
        }
        if skip >= piece.len() {
            skip -= piece.len();
            continue;
        }
        slices[count] = IoSlice::new(&piece[skip..]);
        skip = 0;
        count += 1;
    }
    count
}

impl<T> Drop for Driver<T> {
    fn drop(&mut self) {
        // A driver dropped before it finished takes the transport with it, and the session
        // ends, so streams fail instead of waiting for I/O that will never happen.
        let transport = self.shared.lock_io().transport.take();
        if !self.done {
            self.shared.lock().handle_transport_error(&closed());
        }
        drop(transport);
    }
}

impl<T: Transport> Future for Driver<T> {
    type Output = Result<(), Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(Ok(()));
        }
        // Registered before every turn's steps, so a wake-up during them is not lost: here for
        // the first turn, and at the end of each turn (under the lock taken for the timer and
        // the end check anyway: one engine lock fewer per turn) for the next.
        this.shared.lock().register_driver(cx.waker());
        for _ in 0..TURNS_PER_POLL {
            // One clock reading per turn (a read takes its own, for the arrival time).
            let now = Instant::now();
            // (Not while a batch is half written: it goes first whatever the tasks queue.)
            if this.settle && this.batch.is_none() && this.shared.lock().has_pending_output() {
                // Settling: the tasks the last input woke run before this output is written.
                this.settle = false;
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            let wrote = this.poll_output(cx, now);
            let read = this.poll_input(cx, now);
            let (timed, ended, reason, pending_output) = {
                let shared = Arc::clone(&this.shared);
                let mut conn = shared.lock();
                let timed = this.poll_timer(&mut conn, cx, now);
                conn.register_driver(cx.waker());
                (
                    timed,
                    conn.is_ended(),
                    conn.end_reason().cloned(),
                    conn.has_pending_output(),
                )
            };
            // After a write timeout the peer reads nothing: lingering, or waiting for a
            // shutdown that must write (TLS close_notify), would only hold the memory longer.
            let stalled = matches!(reason, Some(Error::WriteTimeout));
            let lingered_enough = ended && pending_output && !stalled && {
                let linger = this.linger.get_or_insert_with(|| Delay::new(LINGER));
                Pin::new(linger).poll(cx).is_ready()
            };
            if ended && (!pending_output || this.write_failed || stalled || lingered_enough) {
                // Everything queued (GoAway included) is written, or cannot be: close.
                let mut io = this.shared.lock_io();
                if let Some(transport) = io.transport.as_mut().filter(|_| !stalled) {
                    if transport.poll_shutdown_out(cx).is_pending() {
                        return Poll::Pending;
                    }
                }
                // Drop the transport now, as owning it would: the peer must not wait on a
                // half-open connection until every handle is gone.
                io.transport = None;
                drop(io);
                this.done = true;
                return Poll::Ready(match reason {
                    None | Some(Error::SessionClosed) | Some(Error::TransportClosed) => Ok(()),
                    Some(Error::GoAway(goaway::NORMAL)) => Ok(()),
                    Some(other) => Err(other),
                });
            }
            match (wrote, read, timed) {
                (Step::Idle, Step::Idle, Step::Idle) => return Poll::Pending,
                // Input left nothing to write and waits for the transport: the tasks it woke
                // run sooner if the driver stops here.
                (Step::Idle, Step::Drained, Step::Idle) if !pending_output => return Poll::Pending,
                _ => {}
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}
