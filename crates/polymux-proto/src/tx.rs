//! Bytes waiting to be written to the transport.
//!
//! Two buffers, taken together by the driver as one batch:
//! - **control** (window updates, ACKs, pongs, opens, GoAway): never held back by the write
//!   budget, and written first so credit and liveness are not stuck behind bulk data. Bounded
//!   by [`CONTROL_LIMIT`]: past it the session stops decoding input (each control frame is a
//!   reply to input or to a local call), so a ping flood cannot grow it.
//! - **data** (stream payloads, and FIN/RST which must follow their stream's data): bounded by
//!   the write budget.
//!
//! A batch is written completely before the next is taken, so ordering is simple: within a
//! batch control precedes data, and a stream's SYN is always in the same or an earlier batch
//! than its data. Invariant: `data.len() + in_flight ≤ write budget + FIN/RST frames`.
//!
//! A direct write (see `connection/direct.rs`) bypasses these buffers; it may start only when
//! they are [idle](TxBuffers::is_idle), and while it runs no batch is handed out, so frames
//! never interleave on the wire. Whatever the transport did not take of it goes to the *front*
//! of the control buffer, ahead of anything queued meanwhile.

use bytes::{Bytes, BytesMut};

use crate::codec::Dialect;
use crate::frame::Frame;

/// Control bytes queued beyond which input decoding pauses.
pub(crate) const CONTROL_LIMIT: usize = 64 * 1024;

/// One batch for the driver to write: all of `control`, then all of `data`.
#[derive(Debug, Default)]
pub struct Transmit {
    /// Control frames.
    pub control: Bytes,
    /// Stream data frames.
    pub data: Bytes,
}

impl Transmit {
    /// Total bytes in the batch.
    pub fn len(&self) -> usize {
        self.control.len() + self.data.len()
    }

    /// Whether the batch is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[derive(Debug)]
pub(crate) struct TxBuffers {
    dialect: Dialect,
    control: BytesMut,
    data: BytesMut,
    /// Data bytes handed to the driver and not yet reported written.
    in_flight: usize,
    /// A batch was handed to the driver and not yet reported written.
    batch_outstanding: bool,
    /// A stream is writing to the transport directly.
    direct_writing: bool,
    /// Spare buffer for putting a direct write's remainder ahead of `control` (kept, so that
    /// doing so does not allocate).
    spare: BytesMut,
    budget: usize,
}

impl TxBuffers {
    pub(crate) fn new(dialect: Dialect, budget: usize) -> Self {
        TxBuffers {
            dialect,
            control: BytesMut::new(),
            data: BytesMut::new(),
            in_flight: 0,
            batch_outstanding: false,
            direct_writing: false,
            spare: BytesMut::new(),
            budget,
        }
    }

    pub(crate) fn push_control(&mut self, frame: &Frame) {
        self.dialect.encode(frame, &mut self.control);
    }

    /// Queues a frame that must stay ordered with stream data (FIN, RST).
    pub(crate) fn push_ordered(&mut self, frame: &Frame) {
        self.dialect.encode(frame, &mut self.data);
    }

    /// Queues a data frame: `header` (a `Data` frame of `payload.len()` bytes), then `payload`.
    pub(crate) fn push_data(&mut self, header: &Frame, payload: &[u8]) {
        if self.data.capacity() - self.data.len() < payload.len() + self.dialect.header_len() {
            // Reserve for the whole budget at once so the steady state reuses one allocation.
            self.data.reserve(self.budget.max(payload.len()) + 64);
        }
        self.dialect.encode(header, &mut self.data);
        self.data.extend_from_slice(payload);
    }

    /// Payload bytes a writer may queue now.
    pub(crate) fn data_room(&self) -> usize {
        self.budget.saturating_sub(self.data.len() + self.in_flight)
    }

    pub(crate) fn control_full(&self) -> bool {
        self.control.len() >= CONTROL_LIMIT
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.control.is_empty() && self.data.is_empty()
    }

    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// Nothing queued, nothing being written: a direct write may start.
    pub(crate) fn is_idle(&self) -> bool {
        self.is_empty() && !self.batch_outstanding && !self.direct_writing
    }

    /// Whether anything is queued, handed out, or being written directly.
    pub(crate) fn has_pending(&self) -> bool {
        !self.is_idle()
    }

    pub(crate) fn begin_direct(&mut self) {
        debug_assert!(self.is_idle());
        self.direct_writing = true;
    }

    /// Ends a direct write; `unwritten` (what the transport did not take, in order) is queued
    /// ahead of everything else.
    pub(crate) fn end_direct<'a>(&mut self, unwritten: impl Iterator<Item = &'a [u8]>) {
        self.direct_writing = false;
        self.spare.clear();
        for piece in unwritten {
            self.spare.extend_from_slice(piece);
        }
        if !self.spare.is_empty() {
            self.spare.extend_from_slice(&self.control);
            std::mem::swap(&mut self.spare, &mut self.control);
        }
    }

    /// Everything queued, as one batch.
    pub(crate) fn take(&mut self) -> Option<Transmit> {
        if self.is_empty() || self.direct_writing {
            return None;
        }
        self.batch_outstanding = true;
        let batch = Transmit {
            control: self.control.split().freeze(),
            data: self.data.split().freeze(),
        };
        self.in_flight += batch.data.len();
        Some(batch)
    }

    /// The driver wrote a batch whose data part was `data_len` bytes.
    pub(crate) fn written(&mut self, data_len: usize) {
        self.batch_outstanding = false;
        self.in_flight = self.in_flight.saturating_sub(data_len);
    }
}
