//! One stream's state in the session's table: lifecycle flags, flow control, unread bytes and
//! the wakers of the tasks waiting on it.
//!
//! Lifecycle (each direction closes independently; RST aborts both):
//!
//! ```text
//!   open ──► local FIN sent ─┐
//!     │                       ├─► both closed ─► (handle released) ─► removed from the table
//!     └───► remote FIN seen ──┘
//!   any ──► reset (sent or received) ─► (handle released) ─► removed
//! ```
//!
//! On smux, which has no RST, a local reset is a FIN plus local discard: the stream lingers,
//! discarding and returning credit, until the peer's FIN (`awaiting_peer_fin`).
//!
//! A stream whose handle was released before it finished is *detached*: the FIN is sent,
//! further inbound data is discarded and its credit returned at once, and it is removed when
//! the peer finishes too.

use std::task::Waker;

use crate::flow::{RecvCredit, SendCredit};
use crate::frame::StreamId;
use crate::recv_queue::RecvQueue;
use crate::tx::Outbox;

/// Which side opened the stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Origin {
    Local,
    Remote,
}

#[derive(Debug)]
pub(crate) struct Stream {
    pub(crate) id: StreamId,
    pub(crate) origin: Origin,
    /// Local: the peer acknowledged the open. Remote: we acknowledged it (accepted).
    pub(crate) acked: bool,
    pub(crate) local_fin: bool,
    pub(crate) remote_fin: bool,
    pub(crate) reset: bool,
    /// Reset locally in a dialect without RST (smux): the peer saw only a FIN and may keep
    /// sending until it closes too, so the stream stays, discarding and returning credit,
    /// until the peer's FIN.
    pub(crate) awaiting_peer_fin: bool,
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
    pub(crate) fn new(id: StreamId, origin: Origin, recv: RecvCredit, send: SendCredit) -> Self {
        Stream {
            id,
            origin,
            acked: false,
            local_fin: false,
            remote_fin: false,
            reset: false,
            awaiting_peer_fin: false,
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

    /// Both directions are over: nothing more will be sent or received.
    pub(crate) fn is_finished(&self) -> bool {
        (self.reset && !self.awaiting_peer_fin) || (self.local_fin && self.remote_fin)
    }

    /// Whether the peer may still send data (and so may still need credit).
    pub(crate) fn peer_may_send(&self) -> bool {
        !self.remote_fin && (!self.reset || self.awaiting_peer_fin)
    }

    /// Inbound data is thrown away (and its credit returned) instead of queued. Also after
    /// the peer's FIN: a read has returned (or will return) EOF, which is final, so payload
    /// the peer sends past its FIN must never be read nor hold receive budget.
    pub(crate) fn discards_input(&self) -> bool {
        self.released || self.reset || self.remote_fin
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
