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
    budget: usize,
}

impl TxBuffers {
    pub(crate) fn new(dialect: Dialect, budget: usize) -> Self {
        TxBuffers {
            dialect,
            control: BytesMut::new(),
            data: BytesMut::new(),
            in_flight: 0,
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

    /// Everything queued, as one batch.
    pub(crate) fn take(&mut self) -> Option<Transmit> {
        if self.is_empty() {
            return None;
        }
        let batch = Transmit {
            control: self.control.split().freeze(),
            data: self.data.split().freeze(),
        };
        self.in_flight += batch.data.len();
        Some(batch)
    }

    /// The driver wrote a batch whose data part was `data_len` bytes.
    pub(crate) fn written(&mut self, data_len: usize) {
        self.in_flight = self.in_flight.saturating_sub(data_len);
    }
}
