//! One stream's state in the session's table: its lifecycle ([`Opening`], [`State`]), flow
//! control, unread bytes and the wakers of the tasks waiting on it.
//!
//! The lifecycle is two small enums whose transitions are the methods below; the engine calls
//! them where the event happens (a command, an inbound flag) and never sets a state directly.
//!
//! ```text
//!                 local FIN                     remote FIN
//!   Open ─────────────────► HalfClosedLocal ─────────────────► Closed
//!     │        remote FIN                        local FIN        ▲
//!     └───────────────────► HalfClosedRemote ─────────────────────┘
//!
//!   any but Closed/Reset ── RST (sent or received) ──► Reset
//!   (smux local reset, peer not finished) ────────────► ResetAwaitingPeerFin ── remote FIN ──► Reset
//! ```
//!
//! On smux, which has no RST, a local reset is a FIN plus local discard: the stream lingers in
//! `ResetAwaitingPeerFin`, discarding and returning credit, until the peer's FIN.
//!
//! Whether the application still holds a handle (`released`) is independent of the wire state:
//! a stream whose handle was released before it finished is *detached*: the FIN is sent,
//! further inbound data is discarded and its credit returned at once, and it is removed when
//! it is finished too (invariant: a stream leaves the table only when released, finished and
//! with an empty outbox).

use std::task::Waker;

use crate::flow::{RecvCredit, SendCredit};
use crate::frame::StreamId;
use crate::recv_queue::RecvQueue;
use crate::tx::Outbox;

/// Which side opened the stream and, for ours, whether the peer acknowledged the open.
///
/// Invariant: the session's `unacked_outbound` counts exactly the streams in
/// [`Opening::LocalUnacked`]; every transition out of it ([`Stream::acknowledged`]) or removal
/// of such a stream decrements the count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Opening {
    /// We opened it and the peer has not acknowledged it yet (yamux, net-mux).
    LocalUnacked,
    /// We opened it and it is established: acknowledged, or the dialect has no ACK (smux).
    LocalAcked,
    /// The peer opened it (acknowledged, where the dialect acknowledges, when accepted).
    Remote,
}

/// The two directions of a stream: each closes independently (FIN), a reset ends both.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum State {
    /// Both directions carry data.
    Open,
    /// Our FIN is queued or sent; the peer may still send.
    HalfClosedLocal,
    /// The peer's FIN arrived; we may still send.
    HalfClosedRemote,
    /// Both FINs: nothing more either way.
    Closed,
    /// Reset locally on a dialect without RST: the peer saw only our FIN and may send until
    /// its own FIN, which we discard (returning credit) meanwhile.
    ResetAwaitingPeerFin,
    /// Aborted (RST sent or received, or a smux reset whose peer finished).
    Reset,
}

#[derive(Debug)]
pub(crate) struct Stream {
    pub(crate) id: StreamId,
    pub(crate) opening: Opening,
    pub(crate) state: State,
    /// The application dropped its handle.
    pub(crate) released: bool,
    pub(crate) recv: RecvCredit,
    pub(crate) send: SendCredit,
    pub(crate) queue: RecvQueue,
    /// Written but not yet handed to the transport (then its FIN or RST).
    pub(crate) outbox: Outbox,
    pub(crate) read_waker: Option<Waker>,
    pub(crate) write_waker: Option<Waker>,
    /// Waiting for write-budget room (and listed in the session's budget-waiters queue).
    pub(crate) waiting_for_budget: bool,
}

impl Stream {
    pub(crate) fn new(id: StreamId, opening: Opening, recv: RecvCredit, send: SendCredit) -> Self {
        Stream {
            id,
            opening,
            state: State::Open,
            released: false,
            recv,
            send,
            queue: RecvQueue::default(),
            outbox: Outbox::default(),
            read_waker: None,
            write_waker: None,
            waiting_for_budget: false,
        }
    }

    /// The peer acknowledged our open (or refused it with RST). Returns whether it was
    /// unacknowledged until now, so the caller updates the session's count.
    pub(crate) fn acknowledged(&mut self) -> bool {
        let was_unacked = self.opening == Opening::LocalUnacked;
        if was_unacked {
            self.opening = Opening::LocalAcked;
        }
        was_unacked
    }

    /// Whether this is our open still waiting for the peer's ACK.
    pub(crate) fn is_unacked(&self) -> bool {
        self.opening == Opening::LocalUnacked
    }

    /// Our FIN is queued. The caller checked [`Stream::can_send`].
    pub(crate) fn close_local(&mut self) {
        self.state = match self.state {
            State::Open => State::HalfClosedLocal,
            State::HalfClosedRemote => State::Closed,
            other => other,
        };
    }

    /// The peer's FIN arrived. Returns whether the state changed (a reader may be waiting).
    pub(crate) fn close_remote(&mut self) -> bool {
        let next = match self.state {
            State::Open => State::HalfClosedRemote,
            State::HalfClosedLocal => State::Closed,
            State::ResetAwaitingPeerFin => State::Reset,
            other => other,
        };
        let changed = next != self.state;
        self.state = next;
        changed
    }

    /// The peer reset the stream. Returns whether it was not reset already.
    pub(crate) fn reset_by_peer(&mut self) -> bool {
        if self.is_reset() {
            return false;
        }
        self.state = State::Reset;
        true
    }

    /// We reset the stream, on a dialect with RST (`has_rst`) or without, possibly after the
    /// session ended (`ended`: nothing more goes on the wire). Returns whether a frame must be
    /// sent: RST, or on smux the FIN unless ours already went. The caller checked that the
    /// stream is not [finished](Stream::is_finished).
    pub(crate) fn reset_locally(&mut self, has_rst: bool, ended: bool) -> bool {
        let local_closed = !self.can_send();
        let remote_closed = matches!(self.state, State::HalfClosedRemote | State::Closed);
        self.state = if !has_rst && !remote_closed && !ended {
            State::ResetAwaitingPeerFin
        } else {
            State::Reset
        };
        !ended && (has_rst || !local_closed)
    }

    /// Reset, locally or by the peer: reads fail after what is queued, writes fail at once.
    pub(crate) fn is_reset(&self) -> bool {
        matches!(self.state, State::Reset | State::ResetAwaitingPeerFin)
    }

    /// Our direction is open: neither FIN nor reset yet.
    pub(crate) fn can_send(&self) -> bool {
        matches!(self.state, State::Open | State::HalfClosedRemote)
    }

    /// Our FIN is queued or sent (and the stream was not reset).
    pub(crate) fn is_local_closed(&self) -> bool {
        matches!(self.state, State::HalfClosedLocal | State::Closed)
    }

    /// The peer's FIN arrived (and the stream was not reset): reads end cleanly.
    pub(crate) fn is_remote_closed(&self) -> bool {
        matches!(self.state, State::HalfClosedRemote | State::Closed)
    }

    /// Both directions are over: nothing more will be sent or received.
    pub(crate) fn is_finished(&self) -> bool {
        matches!(self.state, State::Closed | State::Reset)
    }

    /// Whether the peer may still send data (and so may still need credit).
    pub(crate) fn peer_may_send(&self) -> bool {
        matches!(
            self.state,
            State::Open | State::HalfClosedLocal | State::ResetAwaitingPeerFin
        )
    }

    /// Inbound data is thrown away (and its credit returned) instead of queued. Also after
    /// the peer's FIN: a read has returned (or will return) EOF, which is final, so payload
    /// the peer sends past its FIN must never be read nor hold receive budget.
    pub(crate) fn discards_input(&self) -> bool {
        self.released || self.is_reset() || self.is_remote_closed()
    }

    pub(crate) fn wake_reader(&mut self) {
        if let Some(w) = self.read_waker.take() {
            w.wake();
        }
    }

    pub(crate) fn wake_writer(&mut self) {
        if let Some(w) = self.write_waker.take() {
            w.wake();
        }
    }
}

/// Stores `waker` in `slot` unless an equivalent one is already there.
pub(crate) fn register(slot: &mut Option<Waker>, waker: &Waker) {
    match slot {
        Some(w) if w.will_wake(waker) => {}
        _ => *slot = Some(waker.clone()),
    }
}
