//! Bytes waiting to be written to the transport, and the order in which they go.
//!
//! - **control** (window updates, ACKs, pings and pongs, opens, GoAway, and a FIN or RST whose
//!   stream has nothing else queued while it fits a direct write): never held back by
//!   the write budget, and first in every batch, so credit and liveness never wait behind bulk
//!   data. Bounded by [`CONTROL_LIMIT`]: past it the session stops decoding input (each control
//!   frame is a reply to input or to a local call), so a ping flood cannot grow it.
//! - **stream data**: each stream keeps its unsent payload in its own [`Outbox`], framed only
//!   when a batch is built. An outbox appends and never moves what it holds: payload goes
//!   into the spare room of its last segment, and a full last segment is followed by a new one
//!   (a frame may span two segments: one more piece in the vectored write). A zero-copy write
//!   ([`push_chunk`](TxBuffers::push_chunk)) appends the caller's `Bytes` as a segment of its
//!   own, which frames take slices of, never copying it. Full-size segments
//!   come from a pool and return to it once the batches that carried their bytes are written,
//!   so a busy session neither allocates nor touches fresh pages per write. Streams with something to send wait in the `ready` ring and are
//!   served round-robin, one frame (at most `max_frame_payload`) each per turn, into batches
//!   of about [`BATCH_TARGET`] bytes: a small frame waits behind at most one frame of every
//!   other busy stream, never behind megabytes of one of them. A stream's FIN or RST follows its data
//!   through the same outbox, so it is never overtaken; with no data of the stream queued, it
//!   goes with the control frames while they fit [`DIRECT_CONTROL`] (so a direct write can
//!   carry it, as it carries an open; app-made FINs never push control towards
//!   [`CONTROL_LIMIT`], where input would pause).
//!
//! A batch is written completely before the next is taken. Budget invariant: the payload in
//! all outboxes plus the data in flight is at most the write budget (a direct write's
//! remainder may exceed it once, see `connection/direct.rs`), and one stream's outbox holds at
//! most [`stream_cap`](TxBuffers::stream_cap), so one writer cannot take the whole budget.
//!
//! What is on its way to the transport has one owner here, [`Writing`]: nothing, handed-out
//! batches, or a direct write (the path and its invariant are `connection/direct.rs`'s; this
//! module only refuses batches while one runs and puts its remainder first).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};

use crate::codec::Dialect;
use crate::connection::StreamKey;
use crate::frame::Frame;

/// Queued control bytes a direct write may carry ahead of its frames (a few opens, ACKs,
/// window updates, pongs or FINs); beyond, the driver writes them and the data waits its turn.
pub(crate) const DIRECT_CONTROL: usize = 64;
/// Control bytes queued beyond which input decoding pauses.
pub(crate) const CONTROL_LIMIT: usize = 64 * 1024;
/// Data bytes a batch is filled up to (it may exceed it by one frame). Small enough that a
/// frame queued while a batch is being written waits only briefly; large enough that a batch
/// costs one vectored write for many frames.
pub(crate) const BATCH_TARGET: usize = 128 * 1024;
/// Outboxes kept for reuse, at most: enough for every busy stream of a session with many
/// writers (their buffers together are also kept within the write budget, below).
const SPARE_OUTBOXES: usize = 256;
/// Spare outboxes unused for this long are dropped: a quiet session keeps no send memory.
const SPARES_KEPT_FOR: Duration = Duration::from_secs(1);
/// The largest outbox segment, and the size that is pooled. Smaller segments (for small
/// writes: a new segment is as large as the write or the outbox's content, whichever is
/// larger) are allocated and freed as needed; from half this size up, a pooled one is used.
const SEGMENT: usize = 64 * 1024;
/// Zero-copy writes smaller than this are copied into the outbox (see
/// [`push_chunk`](TxBuffers::push_chunk)); the receive side copies small payloads alike.
const COPY_BELOW: usize = 8 * 1024;

/// One batch for the driver to write: all of `control`, then every piece of `data`, in order.
#[derive(Debug, Default)]
pub struct Transmit {
    /// Control frames.
    pub control: Bytes,
    /// Stream frames as header and payload pieces, in wire order.
    pub data: Vec<Bytes>,
}

impl Transmit {
    /// Total bytes in the batch.
    pub fn len(&self) -> usize {
        self.control.len() + self.data_len()
    }

    /// Bytes in the data pieces.
    pub fn data_len(&self) -> usize {
        self.data.iter().map(Bytes::len).sum()
    }

    /// Whether the batch is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The batch's pieces in wire order: `control`, then `data`.
    pub fn pieces(&self) -> impl Iterator<Item = &[u8]> {
        std::iter::once(&self.control[..]).chain(self.data.iter().map(|b| &b[..]))
    }

    /// Appends the whole batch, in wire order, to `out`.
    pub fn copy_to(&self, out: &mut impl BufMut) {
        for piece in self.pieces() {
            out.put_slice(piece);
        }
    }
}

/// A stream's unsent bytes: payload not yet framed, then the FIN or RST that must follow it.
///
/// Size matters: every stream in the table has one. An idle outbox holds 8 bytes and
/// allocates nothing; it is boxed on the first write and dropped again once written out.
#[derive(Debug, Default)]
pub(crate) struct Outbox {
    // Boxed on purpose: 8 bytes in every stream's table entry (module docs).
    inner: Option<Box<OutboxInner>>,
}

#[derive(Debug, Default)]
struct OutboxInner {
    /// Unsent payload, oldest first. Only the last segment has spare room; the others are
    /// full, and leave (to be [retired](TxBuffers::retire)) once served.
    segments: VecDeque<Segment>,
    /// Payload bytes in `segments`.
    len: usize,
    /// A frame to send once the payload is out (FIN or RST).
    then: Option<Frame>,
    /// Listed in the ready ring.
    ready: bool,
}

impl OutboxInner {
    /// Buffer capacity held (spare room included).
    fn capacity(&self) -> usize {
        self.segments.iter().map(Segment::capacity).sum()
    }
}

/// A run of an outbox's payload.
#[derive(Debug)]
enum Segment {
    /// Payload copied into the outbox's own buffer.
    Owned {
        buf: BytesMut,
        /// Allocated at [`SEGMENT`] bytes: returns to the pool once its bytes are written.
        pooled: bool,
    },
    /// A caller's buffer, queued as it is (zero-copy write): full, never appended to.
    Shared(Bytes),
}

impl Segment {
    fn len(&self) -> usize {
        match self {
            Segment::Owned { buf, .. } => buf.len(),
            Segment::Shared(b) => b.len(),
        }
    }

    /// Buffer capacity this outbox may reuse (a caller's buffer is not the outbox's).
    fn capacity(&self) -> usize {
        match self {
            Segment::Owned { buf, .. } => buf.capacity(),
            Segment::Shared(_) => 0,
        }
    }

    /// Room left for appending.
    fn room(&self) -> usize {
        match self {
            Segment::Owned { buf, .. } => buf.capacity() - buf.len(),
            Segment::Shared(_) => 0,
        }
    }

    /// Takes the first `n` (at most `len()`) bytes, as a piece for a batch.
    fn split_to(&mut self, n: usize) -> Bytes {
        match self {
            Segment::Owned { buf, .. } => buf.split_to(n).freeze(),
            Segment::Shared(b) => b.split_to(n),
        }
    }
}

impl Outbox {
    /// Unsent payload bytes.
    pub(crate) fn len(&self) -> usize {
        self.inner.as_ref().map_or(0, |i| i.len)
    }

    /// Nothing to send, not even a FIN or RST.
    pub(crate) fn is_empty(&self) -> bool {
        self.inner
            .as_ref()
            .is_none_or(|i| i.len == 0 && i.then.is_none())
    }
}

/// What has left the buffers for the transport and was not reported written yet. Batches and a
/// direct write exclude each other: a direct write starts only from `Nothing`, and no batch is
/// handed out while it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Writing {
    Nothing,
    /// `batches` handed out (a driver takes one at a time; tests may take several), carrying
    /// `data` bytes of stream data, which count against the write budget until written.
    Batches {
        batches: usize,
        data: usize,
    },
    /// A stream writes its frames to the transport itself (`connection/direct.rs`).
    Direct,
}

#[derive(Debug)]
pub(crate) struct TxBuffers {
    dialect: Dialect,
    control: BytesMut,
    /// Streams whose outbox has something to send, in round-robin order; each at most once.
    ready: VecDeque<StreamKey>,
    /// Payload bytes in all outboxes.
    queued: usize,
    /// What is on its way to the transport.
    writing: Writing,
    /// Data-frame headers of the batch being built, and scratch for a direct write's (kept, so
    /// encoding them rarely allocates).
    headers: BytesMut,
    /// Spare buffer for putting a direct write's remainder ahead of `control` (kept, so that
    /// doing so does not allocate).
    spare: BytesMut,
    /// Outboxes of streams that wrote everything, kept for the next writer so a busy stream
    /// does not allocate per batch; at most [`SPARE_OUTBOXES`] holding at most the write budget,
    /// dropped after a quiet second.
    // Boxed on purpose: a spare moves into a stream's 8-byte `Outbox` slot as it is.
    #[allow(clippy::vec_box)]
    spare_outboxes: Vec<Box<OutboxInner>>,
    /// The spares' buffer capacity, summed: kept within the write budget.
    spare_bytes: usize,
    /// When an outbox last went to or came from the spares.
    spares_used_at: Option<Instant>,
    /// The piece list of the last batch written, kept for the next.
    pieces: Vec<Bytes>,
    /// Full-size segments ready for reuse (empty, capacity [`SEGMENT`]); with `retired`, at
    /// most [`pool_limit`](Self::pool_limit) of them, dropped with the spare outboxes.
    free_segments: Vec<BytesMut>,
    /// Served full-size segments whose bytes may still be in a batch being written; they
    /// become free when `written` finds them reclaimable.
    retired: Vec<BytesMut>,
    budget: usize,
}

impl TxBuffers {
    pub(crate) fn new(dialect: Dialect, budget: usize) -> Self {
        TxBuffers {
            dialect,
            control: BytesMut::new(),
            ready: VecDeque::new(),
            queued: 0,
            writing: Writing::Nothing,
            headers: BytesMut::new(),
            spare: BytesMut::new(),
            spare_outboxes: Vec::new(),
            spare_bytes: 0,
            spares_used_at: None,
            pieces: Vec::new(),
            free_segments: Vec::new(),
            retired: Vec::new(),
            budget,
        }
    }

    pub(crate) fn push_control(&mut self, frame: &Frame) {
        self.dialect.encode(frame, &mut self.control);
    }

    /// The most one stream's outbox may hold: a quarter of the budget, so other streams always
    /// find room, but at least one whole frame of `frame_payload`.
    pub(crate) fn stream_cap(&self, frame_payload: usize) -> usize {
        (self.budget / 4).max(frame_payload)
    }

    /// Payload bytes the stream with `outbox` may queue now.
    pub(crate) fn room(&self, outbox: &Outbox, frame_payload: usize) -> usize {
        let session = self.budget.saturating_sub(self.queued + self.in_flight());
        let stream = self.stream_cap(frame_payload).saturating_sub(outbox.len());
        session.min(stream)
    }

    /// Queues `payload` for the stream `key` (the caller checked [`room`](Self::room)).
    pub(crate) fn push_data(
        &mut self,
        key: StreamKey,
        outbox: &mut Outbox,
        payload: &[u8],
        now: Instant,
    ) {
        let inner = self.open_outbox(outbox, now);
        let mut rest = payload;
        while !rest.is_empty() {
            let room = inner.segments.back().map_or(0, Segment::room);
            if room == 0 {
                let size = rest.len().max(inner.len).min(SEGMENT);
                let segment = self.new_segment(size, now);
                inner.segments.push_back(segment);
                continue;
            }
            if let Some(Segment::Owned { buf, .. }) = inner.segments.back_mut() {
                let n = room.min(rest.len());
                buf.extend_from_slice(&rest[..n]);
                rest = &rest[n..];
            }
        }
        inner.len += payload.len();
        self.queued += payload.len();
        self.mark_ready(key, outbox);
    }

    /// Queues `payload` for the stream `key` without copying it, as a segment of its own (the
    /// caller checked [`room`](Self::room) and charges `payload.len()`, as for
    /// [`push_data`](Self::push_data)). Small payloads, below [`COPY_BELOW`], are copied
    /// instead: a tiny slice would otherwise cost a piece of its own per frame and could keep a
    /// large allocation alive behind a small charge.
    pub(crate) fn push_chunk(
        &mut self,
        key: StreamKey,
        outbox: &mut Outbox,
        payload: Bytes,
        now: Instant,
    ) {
        if payload.len() < COPY_BELOW {
            self.push_data(key, outbox, &payload, now);
            return;
        }
        let inner = self.open_outbox(outbox, now);
        inner.len += payload.len();
        self.queued += payload.len();
        inner.segments.push_back(Segment::Shared(payload));
        self.mark_ready(key, outbox);
    }

    /// A segment with room for `size` bytes: a pooled full-size one from half of [`SEGMENT`]
    /// up (at most twice the room asked for, and the next write of a busy stream fills it).
    fn new_segment(&mut self, size: usize, now: Instant) -> Segment {
        if size < SEGMENT / 2 {
            return Segment::Owned {
                buf: BytesMut::with_capacity(size),
                pooled: false,
            };
        }
        let buf = match self.free_segments.pop() {
            Some(buf) => {
                self.spares_used_at = Some(now);
                buf
            }
            None => BytesMut::with_capacity(SEGMENT),
        };
        Segment::Owned { buf, pooled: true }
    }

    /// Pooled segments kept (free and retired together): the write budget's worth.
    fn pool_limit(&self) -> usize {
        (self.budget / SEGMENT).max(1)
    }

    /// A served segment leaves its outbox; a pooled one waits in `retired` for its bytes to be
    /// written (if there is room; otherwise it is freed with the last batch holding it).
    fn retire(&mut self, segment: Segment) {
        if let Segment::Owned { buf, pooled: true } = segment {
            if self.free_segments.len() + self.retired.len() < self.pool_limit() {
                self.retired.push(buf);
            }
        }
    }

    /// Queues `frame` (FIN or RST) to follow everything the stream `key` queued before it:
    /// behind its payload in its outbox, or with the control frames when nothing of the stream
    /// waits there and they stay within [`DIRECT_CONTROL`] (what the stream queued before is
    /// then in a batch, or a direct write's remainder, that goes first).
    pub(crate) fn push_after_data(
        &mut self,
        key: StreamKey,
        outbox: &mut Outbox,
        frame: Frame,
        now: Instant,
    ) {
        if outbox.is_empty() && self.control.len() + self.dialect.header_len() <= DIRECT_CONTROL {
            self.push_control(&frame);
            return;
        }
        self.open_outbox(outbox, now).then = Some(frame);
        self.mark_ready(key, outbox);
    }

    fn open_outbox<'a>(&mut self, outbox: &'a mut Outbox, now: Instant) -> &'a mut OutboxInner {
        if outbox.inner.is_none() {
            outbox.inner = Some(match self.spare_outboxes.pop() {
                Some(spare) => {
                    self.spares_used_at = Some(now);
                    self.spare_bytes -= spare.capacity();
                    spare
                }
                None => Box::default(),
            });
        }
        outbox.inner.get_or_insert_default()
    }

    fn mark_ready(&mut self, key: StreamKey, outbox: &mut Outbox) {
        if let Some(inner) = outbox.inner.as_mut() {
            if !inner.ready {
                inner.ready = true;
                self.ready.push_back(key);
            }
        }
    }

    /// When the spare outboxes are to be dropped (a quiet second after their last use).
    pub(crate) fn spares_deadline(&self) -> Option<Instant> {
        if self.spare_outboxes.is_empty() && self.free_segments.is_empty() {
            return None;
        }
        self.spares_used_at.map(|t| t + SPARES_KEPT_FOR)
    }

    /// Drops the spare outboxes if they were not used for a second.
    pub(crate) fn trim_spares(&mut self, now: Instant) {
        if self.spares_deadline().is_some_and(|t| t <= now) {
            self.spare_outboxes = Vec::new();
            self.free_segments = Vec::new();
            self.retired = Vec::new();
            self.spare_bytes = 0;
            self.spares_used_at = None;
        }
    }

    /// The next stream whose turn it is, taken off the ring; the caller serves it with
    /// [`serve`](Self::serve).
    pub(crate) fn next_ready(&mut self) -> Option<StreamKey> {
        if self.writing == Writing::Direct {
            return None;
        }
        self.ready.pop_front()
    }

    /// Moves one frame (at most `frame_payload` bytes) of `key`'s outbox into `batch` as a
    /// frame of stream `id`, then its FIN or RST once the payload is out. The stream goes back
    /// on the ring if anything is left. Returns the bytes added.
    pub(crate) fn serve(
        &mut self,
        key: StreamKey,
        id: crate::frame::StreamId,
        outbox: &mut Outbox,
        frame_payload: usize,
        batch: &mut Vec<Bytes>,
        now: Instant,
    ) -> usize {
        let Some(inner) = outbox.inner.as_mut() else {
            return 0;
        };
        let mut added = 0;
        let n = inner.len.min(frame_payload);
        if n > 0 {
            self.encode_data_header(id, n);
            batch.push(self.headers.split().freeze());
            let mut left = n;
            while left > 0 {
                let Some(front) = inner.segments.front_mut() else {
                    break;
                };
                let take = left.min(front.len());
                if take > 0 {
                    batch.push(front.split_to(take));
                }
                left -= take;
                // A served segment with no room left is done; the last one keeps its room, but
                // not once a caller's buffer follows it (nothing is appended to it any more).
                let followed = inner.segments.len() > 1;
                let front = &inner.segments[0];
                if front.len() == 0 && (front.room() == 0 || followed) {
                    if let Some(done) = inner.segments.pop_front() {
                        self.retire(done);
                    }
                } else if take == 0 {
                    // Nothing left to take (`len` says otherwise): never spin on it.
                    break;
                }
            }
            added += self.dialect.header_len() + n;
            inner.len -= n;
            self.queued -= n;
        }
        if inner.len == 0 {
            if let Some(frame) = inner.then.take() {
                self.dialect.encode(&frame, &mut self.headers);
                let bytes = self.headers.split().freeze();
                added += bytes.len();
                batch.push(bytes);
            }
        }
        if inner.len == 0 && inner.then.is_none() {
            // Written out: the stream holds no memory while it sends nothing. The box and its
            // buffer go to the spares (the batch holds what it still needs of the buffer; once
            // the batch is dropped, the next writer reuses the whole allocation).
            if let Some(mut spare) = outbox.inner.take() {
                let capacity = spare.capacity();
                if self.spare_outboxes.len() < SPARE_OUTBOXES
                    && self.spare_bytes + capacity <= self.budget
                {
                    spare.ready = false;
                    self.spare_bytes += capacity;
                    self.spare_outboxes.push(spare);
                    self.spares_used_at = Some(now);
                }
            }
        } else {
            self.ready.push_back(key);
        }
        if self.headers.capacity() - self.headers.len() < 64 {
            self.headers.reserve(4096);
        }
        added
    }

    /// Encodes the header of a data frame of stream `id` carrying `len` bytes at the end of
    /// the header scratch.
    fn encode_data_header(&mut self, id: crate::frame::StreamId, len: usize) {
        let header = Frame::Data {
            stream: id,
            flags: crate::frame::Flags::NONE,
            len: len as u32,
        };
        self.dialect.encode(&header, &mut self.headers);
    }

    /// Encodes the header of a data frame of stream `id` carrying `len` bytes into the front of
    /// `out`; returns its length. Uses the header scratch's spare room and gives it back, so
    /// it does not allocate.
    pub(crate) fn data_header_into(
        &mut self,
        id: crate::frame::StreamId,
        len: usize,
        out: &mut [u8],
    ) -> usize {
        let start = self.headers.len();
        self.encode_data_header(id, len);
        let n = self.headers.len() - start;
        out[..n].copy_from_slice(&self.headers[start..]);
        self.headers.truncate(start);
        n
    }

    /// Takes the control bytes for a new batch (`None` while a direct write runs).
    pub(crate) fn take_control(&mut self) -> Option<Bytes> {
        (self.writing != Writing::Direct).then(|| self.control.split().freeze())
    }

    /// A batch with `data_len` data bytes was handed out.
    pub(crate) fn handed_out(&mut self, data_len: usize) {
        self.writing = match self.writing {
            Writing::Batches { batches, data } => Writing::Batches {
                batches: batches + 1,
                data: data + data_len,
            },
            _ => Writing::Batches {
                batches: 1,
                data: data_len,
            },
        };
    }

    pub(crate) fn control_full(&self) -> bool {
        self.control.len() >= CONTROL_LIMIT
    }

    /// Nothing queued anywhere: no control bytes and no stream ready.
    pub(crate) fn is_empty(&self) -> bool {
        self.control.is_empty() && self.ready.is_empty()
    }

    /// Data bytes handed out in batches and not yet reported written.
    pub(crate) fn in_flight(&self) -> usize {
        match self.writing {
            Writing::Batches { data, .. } => data,
            _ => 0,
        }
    }

    /// Nothing queued, nothing being written: a direct write may start.
    pub(crate) fn is_idle(&self) -> bool {
        self.is_empty() && self.writing == Writing::Nothing
    }

    /// Whether anything is queued, handed out, or being written directly.
    pub(crate) fn has_pending(&self) -> bool {
        !self.is_idle()
    }

    /// Whether a direct write may start: nothing is being written, no stream's data is queued,
    /// and the queued control bytes (if any) are few enough for the direct write to carry
    /// ahead of its frames.
    pub(crate) fn direct_may_start(&self) -> bool {
        self.writing == Writing::Nothing
            && self.ready.is_empty()
            && self.control.len() <= DIRECT_CONTROL
    }

    /// A direct write starts (see `connection/direct.rs`): it takes the queued control bytes
    /// into `out`, to write them first; returns how many.
    pub(crate) fn begin_direct(&mut self, out: &mut [u8; DIRECT_CONTROL]) -> usize {
        debug_assert!(self.direct_may_start());
        let n = self.control.len();
        out[..n].copy_from_slice(&self.control);
        self.control.clear();
        self.writing = Writing::Direct;
        n
    }

    /// The direct write ended; `unwritten` (what the transport did not take, in order) is
    /// queued ahead of everything else.
    pub(crate) fn end_direct<'a>(&mut self, unwritten: impl Iterator<Item = &'a [u8]>) {
        debug_assert_eq!(self.writing, Writing::Direct);
        self.writing = Writing::Nothing;
        self.spare.clear();
        for piece in unwritten {
            self.spare.extend_from_slice(piece);
        }
        if !self.spare.is_empty() {
            self.spare.extend_from_slice(&self.control);
            std::mem::swap(&mut self.spare, &mut self.control);
        }
    }

    /// The driver wrote `batch`.
    pub(crate) fn written(&mut self, batch: Transmit) {
        if let Writing::Batches { batches, data } = self.writing {
            let data = data.saturating_sub(batch.data_len());
            self.writing = match batches {
                0 | 1 => Writing::Nothing,
                n => Writing::Batches {
                    batches: n - 1,
                    data,
                },
            };
        }
        let mut pieces = batch.data;
        pieces.clear();
        self.pieces = pieces;
        // The batch's pieces are dropped: segments that only they still shared are free.
        let mut i = 0;
        while i < self.retired.len() {
            if self.retired[i].try_reclaim(SEGMENT) {
                let segment = self.retired.swap_remove(i);
                self.free_segments.push(segment);
            } else {
                i += 1;
            }
        }
    }

    /// An empty list for the next batch's data pieces (the last batch's, reused).
    pub(crate) fn piece_list(&mut self) -> Vec<Bytes> {
        std::mem::take(&mut self.pieces)
    }

    /// Takes back an empty piece list that carried no batch.
    pub(crate) fn keep_piece_list(&mut self, pieces: Vec<Bytes>) {
        debug_assert!(pieces.is_empty());
        if pieces.capacity() > self.pieces.capacity() {
            self.pieces = pieces;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::task::{Poll, Waker};
    use std::time::Instant;

    use super::SEGMENT;
    use crate::{Config, Connection, Dialect, Role, StreamKey};

    const DIALECTS: [Dialect; 4] = [
        Dialect::Yamux,
        Dialect::SmuxV1,
        Dialect::SmuxV2,
        Dialect::NetMux,
    ];

    /// Takes every batch `c` has to send, reports each written, and returns their bytes.
    fn transmit_all(c: &mut Connection, now: Instant) -> Vec<u8> {
        let mut wire = Vec::new();
        while let Some(batch) = c.poll_transmit(now) {
            batch.copy_to(&mut wire);
            c.transmitted(batch);
        }
        wire
    }

    fn open(dialect: Dialect, now: Instant) -> (Connection, StreamKey) {
        let mut c = Connection::new(Role::Client, Config::for_dialect(dialect), now);
        let Poll::Ready(Ok(key)) = c.poll_open(Waker::noop(), now) else {
            panic!("open")
        };
        while let Some(batch) = c.poll_transmit(now) {
            c.transmitted(batch);
        }
        (c, key)
    }

    /// Writes all of `bytes` (one frame's worth per call, as `poll_write` takes them).
    fn write(c: &mut Connection, key: StreamKey, bytes: &[u8], now: Instant) {
        let mut off = 0;
        while off < bytes.len() {
            let Poll::Ready(Ok(n)) = c.poll_write(key, Waker::noop(), &bytes[off..], now) else {
                panic!("no room for the write")
            };
            off += n;
        }
    }

    /// Writes of sizes that do not line up with segments or frames come out whole and in
    /// order, and no frame carries more than the frame payload.
    #[test]
    fn frames_spanning_segments_carry_the_bytes_in_order() {
        for dialect in [Dialect::Yamux, Dialect::SmuxV2] {
            let now = Instant::now();
            let (mut c, key) = open(dialect, now);
            let sent: Vec<u8> = (0..150_000u32).map(|i| (i % 251) as u8).collect();
            let mut off = 0;
            for len in [40_000, 40_000, 10, 3, 69_987] {
                write(&mut c, key, &sent[off..off + len], now);
                off += len;
            }
            let wire = transmit_all(&mut c, now);
            let got = data_payload(dialect, &wire);
            assert_eq!(got, sent, "{}", dialect.name());
        }
    }

    /// Every frame in `wire`, payloads skipped.
    fn frames(dialect: Dialect, wire: &[u8]) -> Vec<crate::Frame> {
        let mut frames = Vec::new();
        let mut at = 0;
        while at < wire.len() {
            let Ok(Some((frame, used))) = dialect.decode(&wire[at..]) else {
                panic!("{}: undecodable output", dialect.name())
            };
            at += used;
            if let crate::Frame::Data { len, .. } = frame {
                at += len as usize;
            }
            frames.push(frame);
        }
        frames
    }

    /// A FIN follows its stream's data: behind the payload still queued; once nothing of the
    /// stream is queued, with the control frames, so that another stream's direct write
    /// carries it ahead of its own frames (as it carries an open).
    #[test]
    fn a_fin_follows_its_data_and_rides_a_direct_write_once_the_data_is_out() {
        use crate::connection::WriteOutcome;
        for dialect in DIALECTS {
            let now = Instant::now();
            let (mut c, key) = open(dialect, now);
            let fin = crate::policy::fin(dialect, c.stream_id(key));
            write(&mut c, key, &[7u8; 100_000], now);
            c.close_write(key, now).expect("close");
            let wire = transmit_all(&mut c, now);
            assert_eq!(
                data_payload(dialect, &wire).len(),
                100_000,
                "{}",
                dialect.name()
            );
            let sent = frames(dialect, &wire);
            assert_eq!(
                sent.last(),
                Some(&fin),
                "{}: the FIN is last",
                dialect.name()
            );
            assert_eq!(sent.iter().filter(|f| **f == fin).count(), 1);

            // Both streams' data is out: the FIN of one waits with the control frames.
            let (mut c, first) = open(dialect, now);
            let Poll::Ready(Ok(second)) = c.poll_open(Waker::noop(), now) else {
                panic!("open")
            };
            write(&mut c, first, b"request", now);
            while let Some(batch) = c.poll_transmit(now) {
                c.transmitted(batch);
            }
            c.close_write(first, now).expect("close");
            let fin = crate::policy::fin(dialect, c.stream_id(first));
            let Poll::Ready(Ok(WriteOutcome::Direct(direct))) =
                c.poll_write_direct(second, Waker::noop(), b"hello", now)
            else {
                panic!("{}: the output holds only control frames", dialect.name())
            };
            let bytes: Vec<u8> = direct.pieces(b"hello").flatten().copied().collect();
            c.direct_done(&direct, b"hello", bytes.len());
            let carried = frames(dialect, &bytes);
            assert_eq!(carried.first(), Some(&fin), "{}: FIN first", dialect.name());
            assert_eq!(data_payload(dialect, &bytes), b"hello");
            assert!(
                c.poll_transmit(now).is_none(),
                "{}: all written",
                dialect.name()
            );
        }
    }

    /// A FIN queued while its stream's data is on its way (in a batch handed out, or in a
    /// direct write of which the transport took only part) still follows that data.
    #[test]
    fn a_fin_queued_while_its_data_is_on_its_way_follows_it() {
        use crate::connection::WriteOutcome;
        for dialect in DIALECTS {
            let now = Instant::now();
            // In a batch handed out, not yet reported written.
            let (mut c, key) = open(dialect, now);
            let fin = crate::policy::fin(dialect, c.stream_id(key));
            write(&mut c, key, &[3u8; 5_000], now);
            let first = c.poll_transmit(now).expect("a batch");
            c.close_write(key, now).expect("close");
            let mut wire = Vec::new();
            first.copy_to(&mut wire);
            c.transmitted(first);
            wire.extend(transmit_all(&mut c, now));
            assert_eq!(
                data_payload(dialect, &wire).len(),
                5_000,
                "{}",
                dialect.name()
            );
            assert_eq!(
                frames(dialect, &wire).last(),
                Some(&fin),
                "{}",
                dialect.name()
            );

            // In a direct write the transport took 5 bytes of.
            let (mut c, key) = open(dialect, now);
            let fin = crate::policy::fin(dialect, c.stream_id(key));
            let buf = [9u8; 300];
            let Poll::Ready(Ok(WriteOutcome::Direct(direct))) =
                c.poll_write_direct(key, Waker::noop(), &buf, now)
            else {
                panic!("{}: the output is idle", dialect.name())
            };
            c.close_write(key, now).expect("close");
            let bytes: Vec<u8> = direct.pieces(&buf).flatten().copied().collect();
            c.direct_done(&direct, &buf, 5);
            let mut wire = bytes[..5].to_vec();
            wire.extend(transmit_all(&mut c, now));
            assert_eq!(data_payload(dialect, &wire), buf, "{}", dialect.name());
            assert_eq!(
                frames(dialect, &wire).last(),
                Some(&fin),
                "{}",
                dialect.name()
            );
        }
    }

    /// Closes of many idle streams keep the control queue within what a direct write carries
    /// (the rest wait in their outboxes), so local FINs never bring input near its pause; every
    /// FIN still goes out once.
    #[test]
    fn fins_go_with_the_control_frames_only_while_a_direct_write_could_carry_them() {
        let now = Instant::now();
        let (mut c, first) = open(Dialect::Yamux, now);
        let mut keys = vec![first];
        for _ in 0..19 {
            let Poll::Ready(Ok(key)) = c.poll_open(Waker::noop(), now) else {
                panic!("open")
            };
            keys.push(key);
        }
        while let Some(batch) = c.poll_transmit(now) {
            c.transmitted(batch);
        }
        for &key in &keys {
            c.close_write(key, now).expect("close");
            assert!(c.tx_buffers().control.len() <= super::DIRECT_CONTROL);
        }
        let wire = transmit_all(&mut c, now);
        let sent = frames(Dialect::Yamux, &wire);
        for key in keys {
            let fin = crate::policy::fin(Dialect::Yamux, c.stream_id(key));
            assert_eq!(sent.iter().filter(|f| **f == fin).count(), 1, "{fin:?}");
        }
    }

    /// The payload of every Data frame in `wire`, in order; checks each frame is within the
    /// dialect's frame size.
    fn data_payload(dialect: Dialect, wire: &[u8]) -> Vec<u8> {
        let mut got = Vec::new();
        let mut at = 0;
        let max = Config::for_dialect(dialect).max_frame_payload();
        while at < wire.len() {
            let Ok(Some((frame, used))) = dialect.decode(&wire[at..]) else {
                panic!("{}: undecodable output", dialect.name())
            };
            at += used;
            if let crate::Frame::Data { len, .. } = frame {
                assert!(len <= max, "{}: frame of {len}", dialect.name());
                got.extend_from_slice(&wire[at..at + len as usize]);
                at += len as usize;
            }
        }
        got
    }

    /// Zero-copy writes mixed with copied ones: every byte arrives once and in order, no
    /// frame is over size, and the payload of a large chunk goes out as slices of the caller's
    /// buffer (no copy), while a small one is copied.
    #[test]
    fn chunks_are_queued_without_copying_and_mix_with_copied_writes() {
        for dialect in DIALECTS {
            let now = Instant::now();
            let (mut c, key) = open(dialect, now);
            // Within the initial credit of every dialect (256 KiB).
            let sent: Vec<u8> = (0..210_000u32).map(|i| (i % 253) as u8).collect();
            let big = bytes::Bytes::copy_from_slice(&sent[10..200_010]);
            let small = bytes::Bytes::copy_from_slice(&sent[200_010..200_110]);
            let big_range = big.as_ptr() as usize..big.as_ptr() as usize + big.len();
            let small_range = small.as_ptr() as usize..small.as_ptr() as usize + small.len();
            let mut wire = Vec::new();
            let mut payload_ptrs = Vec::new();
            let mut drain = |c: &mut Connection, wire: &mut Vec<u8>| {
                while let Some(batch) = c.poll_transmit(now) {
                    payload_ptrs.extend(batch.data.iter().map(|p| p.as_ptr() as usize));
                    batch.copy_to(wire);
                    c.transmitted(batch);
                }
            };
            // A copied write first leaves its segment with room, which the chunk follows.
            write(&mut c, key, &sent[..10], now);
            for mut chunk in [big, small] {
                // Written out only when the outbox is full: chunks pile up behind each other.
                let mut drained = false;
                while !chunk.is_empty() {
                    match c.poll_write_chunk(key, Waker::noop(), &chunk, now) {
                        Poll::Ready(Ok(n)) => {
                            let _ = chunk.split_to(n);
                            drained = false;
                        }
                        Poll::Pending if !drained => {
                            drain(&mut c, &mut wire);
                            drained = true;
                        }
                        other => panic!("{}: {other:?}", dialect.name()),
                    }
                }
            }
            write(&mut c, key, &sent[200_110..], now);
            drain(&mut c, &mut wire);
            assert!(
                payload_ptrs.iter().any(|p| big_range.contains(p)),
                "{}: the large chunk is sent from the caller's buffer",
                dialect.name()
            );
            assert!(
                !payload_ptrs.iter().any(|p| small_range.contains(p)),
                "{}: a small chunk is copied",
                dialect.name()
            );
            let got = data_payload(dialect, &wire);
            assert_eq!(got, sent, "{}", dialect.name());
            assert!(c.tx_buffers().is_idle(), "{}", dialect.name());
        }
    }

    /// A full-size segment whose bytes were written goes back to the pool and carries a later
    /// write, also while another batch is being written: a busy stream does not allocate (or
    /// touch fresh pages) per write.
    #[test]
    fn written_segments_are_reused() {
        let now = Instant::now();
        let (mut c, key) = open(Dialect::Yamux, now);
        let chunk = vec![7u8; SEGMENT];
        let payload_at = |batch: &crate::Transmit| {
            let payload = batch.data.iter().find(|p| p.len() == SEGMENT);
            payload.expect("a whole segment").as_ptr() as usize
        };
        write(&mut c, key, &chunk, now);
        let a = c.poll_transmit(now).expect("batch a");
        // Written and taken while `a` is in flight: another segment.
        write(&mut c, key, &chunk, now);
        let b = c.poll_transmit(now).expect("batch b");
        let (first, second) = (payload_at(&a), payload_at(&b));
        assert_ne!(first, second, "a segment in flight is not reused");
        // `a` is written: its segment carries the next write while `b` is in flight.
        c.transmitted(a);
        write(&mut c, key, &chunk, now);
        let third = c.poll_transmit(now).expect("batch c");
        assert_eq!(payload_at(&third), first, "the written segment is reused");
        c.transmitted(b);
        c.transmitted(third);
        write(&mut c, key, &chunk, now);
        let d = c.poll_transmit(now).expect("batch d");
        assert!(
            [first, second].contains(&payload_at(&d)),
            "a pooled segment"
        );
        c.transmitted(d);
    }

    /// Segments still in flight are not reused; the pool never holds more than the budget.
    #[test]
    fn the_pool_is_bounded_by_the_budget() {
        let now = Instant::now();
        let (mut c, _) = open(Dialect::Yamux, now);
        let chunk = vec![1u8; SEGMENT];
        let mut keys = Vec::new();
        for _ in 0..40 {
            let Poll::Ready(Ok(key)) = c.poll_open(Waker::noop(), now) else {
                panic!("open")
            };
            keys.push(key);
        }
        let mut in_flight = Vec::new();
        for round in 0..3 {
            for &key in &keys {
                // Budget permitting; the rest waits for room.
                let _ = c.poll_write(key, Waker::noop(), &chunk, now);
            }
            while let Some(batch) = c.poll_transmit(now) {
                in_flight.push(batch);
            }
            if round > 0 {
                // Pieces still held by an unwritten batch are never handed out again.
                let held: Vec<usize> = in_flight
                    .iter()
                    .flat_map(|b| b.data.iter().map(|p| p.as_ptr() as usize))
                    .collect();
                let unique: std::collections::HashSet<_> = held.iter().collect();
                assert_eq!(unique.len(), held.len(), "a buffer handed out twice");
            }
            for batch in in_flight.drain(..) {
                c.transmitted(batch);
            }
            let tx = c.tx_buffers();
            assert!(
                (tx.free_segments.len() + tx.retired.len()) * SEGMENT
                    <= c.config().write_budget().max(SEGMENT),
                "pool within the budget"
            );
        }
    }
}
