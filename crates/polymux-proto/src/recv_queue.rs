//! A stream's received-but-unread bytes, and what they cost in memory.
//!
//! Two kinds of pieces, in arrival order: zero-copy slices of the session's input buffers
//! (large payloads; the buffer they pin is charged by `memory::Pins`), and *chunks* this queue
//! owns, into which small payloads are copied back to back (the *tail* chunk takes appends
//! until it is full). So a flood of 1-byte frames costs one slot per chunk of up to
//! [`SMALL_CHUNK`] bytes, not one allocation and one slot per frame.
//!
//! Invariants:
//! - `len` is the sum of the queued bytes, no queued piece is empty, and the tail (when
//!   allocated) is the newest piece;
//! - [`charge`](RecvQueue::charge) is the heap this queue holds for its data besides pinned
//!   buffers: every owned chunk's whole allocation plus the slot ring's whole capacity, and 0
//!   when empty. Growth is explicit (`reserve_exact`), so the callers' upper bounds
//!   ([`append_bound`](RecvQueue::append_bound), [`slice_bound`](RecvQueue::slice_bound)) hold;
//! - when the queue drains, the chunks are freed; the ring is kept for the next burst (shrinking
//!   and regrowing it would allocate on every burst of bulk traffic). Up to [`RETAIN_SLOTS`] it
//!   is not charged: that box (≤ 80 + 16 × 48 bytes) is the uncharged overhead of a stream that
//!   has received data. Beyond that its whole capacity stays charged ([`retained`](RecvQueue::retained))
//!   until [`trim`](RecvQueue::trim)med, which the session does before it would pause.
//!
//! Size matters here too: every stream in the table has one, idle or not. A stream that never
//! received data holds 16 bytes and allocates nothing.

use std::collections::VecDeque;

use bytes::{Buf, Bytes, BytesMut};

use crate::memory::{PinKey, RecvMemory};

/// The largest chunk small payloads are merged into.
pub(crate) const SMALL_CHUNK: usize = 4096;
/// The smallest one (a stream that receives one small message holds little).
const MIN_CHUNK: usize = 64;
/// Slots a drained queue keeps, so a stream in steady traffic does not reallocate its ring.
pub(crate) const RETAIN_SLOTS: usize = 16;
/// The ring's smallest capacity once allocated.
const MIN_SLOTS: usize = 4;
/// Heap per slot of the ring.
pub(crate) const SLOT: usize = std::mem::size_of::<Piece>();

#[derive(Debug)]
pub(crate) struct Piece {
    data: BytesMut,
    hold: Hold,
}

/// What a piece keeps alive.
#[derive(Debug, Clone, Copy)]
enum Hold {
    /// An allocation of this many bytes owned by the queue.
    Chunk(usize),
    /// A slice of a pinned input buffer.
    Pinned(PinKey),
}

#[derive(Debug)]
struct Inner {
    pieces: VecDeque<Piece>,
    /// Where small payloads are appended; `tail_alloc` is its allocation (0: none).
    tail: BytesMut,
    tail_alloc: usize,
    /// Allocations of the `Chunk` pieces in `pieces`.
    chunks: usize,
}

#[derive(Debug, Default)]
pub(crate) struct RecvQueue {
    // Boxed on purpose: 8 bytes in every stream's table entry instead of ~80 (module docs).
    inner: Option<Box<Inner>>,
    len: usize,
}

impl RecvQueue {
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Heap held for the queued data, pinned buffers aside (module docs).
    pub(crate) fn charge(&self) -> usize {
        match &self.inner {
            Some(i) => self.ring_charge() * SLOT + i.chunks + i.tail_alloc,
            None => 0,
        }
    }

    /// Charged slots of the ring: all of them, unless the queue is empty and keeps no more
    /// than [`RETAIN_SLOTS`].
    fn ring_charge(&self) -> usize {
        let cap = self.inner.as_ref().map_or(0, |i| i.pieces.capacity());
        if self.len > 0 || cap > RETAIN_SLOTS {
            cap
        } else {
            0
        }
    }

    /// The charge of an empty queue's ring kept beyond [`RETAIN_SLOTS`] (0 if not empty).
    pub(crate) fn retained(&self) -> usize {
        if self.len == 0 {
            self.charge()
        } else {
            0
        }
    }

    /// Gives back an empty queue's ring beyond [`RETAIN_SLOTS`] (see [`retained`](Self::retained)).
    pub(crate) fn trim(&mut self) {
        if let Some(inner) = self.inner.as_mut().filter(|_| self.len == 0) {
            inner.pieces.shrink_to(RETAIN_SLOTS);
        }
    }

    /// The ring's capacity after `pushes` more pieces, as [`grow`](Self::grow) makes it.
    fn slots_after(&self, pushes: usize) -> usize {
        let (len, cap) = self
            .inner
            .as_ref()
            .map_or((0, 0), |i| (i.pieces.len(), i.pieces.capacity()));
        if len + pushes > cap {
            (len + pushes).max(cap * 2).max(MIN_SLOTS)
        } else {
            cap
        }
    }

    /// Upper bound of the charge added by pushing `pushes` pieces and allocating `alloc` bytes.
    fn bound(&self, pushes: usize, alloc: usize) -> usize {
        (self.slots_after(pushes) - self.ring_charge()) * SLOT + alloc
    }

    /// Whether `n` more bytes fit in the tail chunk without allocating.
    fn tail_fits(&self, n: usize) -> bool {
        self.inner
            .as_ref()
            .is_some_and(|i| i.tail_alloc > 0 && i.tail.capacity() - i.tail.len() >= n)
    }

    /// The size of a new tail chunk for an `n`-byte piece: grows with the queue (a stream
    /// flooded with tiny frames soon uses full chunks; one small message costs about itself).
    pub(crate) fn chunk_size(&self, n: usize) -> usize {
        (2 * self.len).clamp(MIN_CHUNK, SMALL_CHUNK).max(n)
    }

    /// Upper bound of the charge added by [`append`](Self::append)`(bytes, chunk)` with
    /// `bytes.len() == n` (with `n == usize::MAX` and `chunk == 0`: of the ring's growth alone).
    pub(crate) fn append_bound(&self, n: usize, chunk: usize) -> usize {
        if self.tail_fits(n) {
            return 0;
        }
        // The full tail (if any) becomes a piece; a new tail is allocated.
        self.bound(1, chunk)
    }

    /// Upper bound of the charge added by [`push_slice`](Self::push_slice).
    pub(crate) fn slice_bound(&self) -> usize {
        // The tail (if any) becomes a piece, then the slice.
        self.bound(2, 0)
    }

    /// Copies `bytes` to the end of the queue: into the tail chunk if they fit, else into a new
    /// tail chunk of `chunk` bytes (≥ `bytes.len()`).
    pub(crate) fn append(&mut self, bytes: &[u8], chunk: usize) {
        if bytes.is_empty() {
            return;
        }
        if !self.tail_fits(bytes.len()) {
            self.seal_tail();
            let alloc = chunk.max(bytes.len());
            let inner = self.inner_mut();
            inner.tail = BytesMut::with_capacity(alloc);
            inner.tail_alloc = alloc;
        }
        self.inner_mut().tail.extend_from_slice(bytes);
        self.len += bytes.len();
    }

    /// Queues a zero-copy slice of the pinned input buffer `key`.
    pub(crate) fn push_slice(&mut self, data: BytesMut, key: PinKey) {
        if data.is_empty() {
            return;
        }
        self.seal_tail();
        self.len += data.len();
        self.push(Piece {
            data,
            hold: Hold::Pinned(key),
        });
    }

    /// Moves a non-empty tail into the ring as a chunk piece.
    fn seal_tail(&mut self) {
        let Some(inner) = self.inner.as_mut() else {
            return;
        };
        if inner.tail_alloc == 0 {
            return;
        }
        let data = std::mem::take(&mut inner.tail);
        let alloc = std::mem::take(&mut inner.tail_alloc);
        inner.chunks += alloc;
        self.push(Piece {
            data,
            hold: Hold::Chunk(alloc),
        });
    }

    fn push(&mut self, piece: Piece) {
        let cap = self.slots_after(1);
        let pieces = &mut self.inner_mut().pieces;
        if cap > pieces.capacity() {
            pieces.reserve_exact(cap - pieces.len());
        }
        pieces.push_back(piece);
    }

    fn inner_mut(&mut self) -> &mut Inner {
        self.inner.get_or_insert_with(|| {
            Box::new(Inner {
                pieces: VecDeque::new(),
                tail: BytesMut::new(),
                tail_alloc: 0,
                chunks: 0,
            })
        })
    }

    /// Copies up to `out.len()` bytes into `out`, in order; returns how many. Pieces read to
    /// the end are dropped (their pinned buffers released in `memory`).
    pub(crate) fn read_into(&mut self, out: &mut [u8], memory: &mut RecvMemory) -> usize {
        let Some(inner) = self.inner.as_mut() else {
            return 0;
        };
        let mut copied = 0;
        while copied < out.len() {
            let (front, pinned) = match inner.pieces.front_mut() {
                Some(p) => (&mut p.data, matches!(p.hold, Hold::Pinned(_))),
                None if !inner.tail.is_empty() => (&mut inner.tail, false),
                None => break,
            };
            let n = front.len().min(out.len() - copied);
            out[copied..copied + n].copy_from_slice(&front[..n]);
            front.advance(n);
            copied += n;
            if pinned {
                memory.pinned_consumed(n);
            }
            if front.is_empty() {
                match inner.pieces.pop_front() {
                    Some(p) => release(inner, p.hold, memory),
                    None => break, // the tail: freed below with the drained queue
                }
            }
        }
        self.len -= copied;
        if self.len == 0 {
            self.drained();
        }
        copied
    }

    /// Takes the next queued bytes without copying: the front piece whole, or its first `max`
    /// bytes (a cheap split of the same allocation). A piece taken whole is released as by
    /// [`read_into`](Self::read_into); the caller owns what it took, uncharged, like bytes
    /// read into its own buffer. `None` when nothing is queued or `max` is 0.
    pub(crate) fn pop_chunk(&mut self, max: usize, memory: &mut RecvMemory) -> Option<Bytes> {
        if max == 0 || self.len == 0 {
            return None;
        }
        let inner = self.inner.as_mut()?;
        let chunk = match inner.pieces.front_mut() {
            Some(front) if front.data.len() > max => {
                if matches!(front.hold, Hold::Pinned(_)) {
                    memory.pinned_consumed(max);
                }
                front.data.split_to(max).freeze()
            }
            Some(_) => {
                let piece = inner.pieces.pop_front()?;
                if matches!(piece.hold, Hold::Pinned(_)) {
                    memory.pinned_consumed(piece.data.len());
                }
                release(inner, piece.hold, memory);
                piece.data.freeze()
            }
            // The tail: split off its front; the rest of its allocation stays charged until
            // the queue drains.
            None => {
                let n = inner.tail.len().min(max);
                inner.tail.split_to(n).freeze()
            }
        };
        self.len -= chunk.len();
        if self.len == 0 {
            self.drained();
        }
        Some(chunk)
    }

    /// The queue is empty: frees the chunks and keeps the ring (module docs).
    fn drained(&mut self) {
        if let Some(inner) = self.inner.as_mut() {
            inner.tail = BytesMut::new();
            inner.tail_alloc = 0;
            inner.chunks = 0;
        }
    }

    /// The queued slices that pin input buffers: each as (buffer, piece index, bytes).
    pub(crate) fn pinned(&self) -> impl Iterator<Item = (PinKey, usize, usize)> + '_ {
        let pieces = self.inner.as_ref().map(|i| i.pieces.iter());
        pieces
            .into_iter()
            .flatten()
            .enumerate()
            .filter_map(|(i, p)| match p.hold {
                Hold::Pinned(key) => Some((key, i, p.data.len())),
                Hold::Chunk(_) => None,
            })
    }

    /// Replaces piece `index`, a slice pinning an input buffer, by an exact copy the queue
    /// owns; returns the copy's allocation, now part of [`charge`](Self::charge). The buffer's
    /// pin is the caller's to settle (`RecvMemory::unpin_copied`): its slice count is not
    /// touched here.
    pub(crate) fn copy_out(&mut self, index: usize) -> usize {
        let Some(inner) = self.inner.as_mut() else {
            return 0;
        };
        let Some(piece) = inner.pieces.get_mut(index) else {
            return 0;
        };
        if !matches!(piece.hold, Hold::Pinned(_)) {
            return 0;
        }
        let copy = BytesMut::from(&piece.data[..]);
        let alloc = copy.capacity();
        *piece = Piece {
            data: copy,
            hold: Hold::Chunk(alloc),
        };
        inner.chunks += alloc;
        alloc
    }

    /// Drops everything queued (and the queue's own allocation); returns how many bytes.
    pub(crate) fn discard(&mut self, memory: &mut RecvMemory) -> usize {
        let n = self.len;
        if let Some(mut inner) = self.inner.take() {
            while let Some(p) = inner.pieces.pop_front() {
                if matches!(p.hold, Hold::Pinned(_)) {
                    memory.pinned_consumed(p.data.len());
                }
                release(&mut inner, p.hold, memory);
            }
        }
        self.len = 0;
        n
    }
}

fn release(inner: &mut Inner, hold: Hold, memory: &mut RecvMemory) {
    match hold {
        Hold::Chunk(alloc) => inner.chunks -= alloc,
        Hold::Pinned(key) => memory.unpin(key),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn memory() -> RecvMemory {
        RecvMemory::new(1 << 20, None)
    }

    #[test]
    fn reads_across_pieces_in_order() {
        let mut m = memory();
        let mut q = RecvQueue::default();
        q.append(b"hel", 64);
        q.append(b"", 64);
        m.pin(7, 0, 4);
        q.push_slice(BytesMut::from(&b"lo w"[..]), 7);
        q.append(b"orld", 64);
        assert_eq!(q.len, 11);
        let mut buf = [0u8; 4];
        assert_eq!(q.read_into(&mut buf, &mut m), 4);
        assert_eq!(&buf, b"hell");
        let mut rest = [0u8; 20];
        assert_eq!(q.read_into(&mut rest, &mut m), 7);
        assert_eq!(&rest[..7], b"o world");
        assert!(q.is_empty());
        assert_eq!(q.charge(), 0);
        assert_eq!(q.read_into(&mut rest, &mut m), 0);
    }

    #[test]
    fn small_pieces_share_chunks_and_the_bounds_hold() {
        let mut m = memory();
        let mut q = RecvQueue::default();
        for i in 0..10_000u32 {
            let before = q.charge();
            let chunk = q.chunk_size(1);
            let bound = q.append_bound(1, chunk);
            q.append(&[i as u8], chunk);
            assert!(q.charge() - before <= bound, "piece {i}");
        }
        // 10,000 bytes in a handful of chunks, not 10,000 allocations.
        assert!(q.charge() < 10_000 + 5 * SMALL_CHUNK, "{}", q.charge());
        let mut out = vec![0u8; 10_000];
        assert_eq!(q.read_into(&mut out, &mut m), 10_000);
        assert!(out.iter().enumerate().all(|(i, &b)| b == i as u8));
        assert_eq!(q.charge(), 0);
    }

    #[test]
    fn chunks_come_out_whole_or_split_in_order_without_copying() {
        let mut m = memory();
        let mut q = RecvQueue::default();
        assert_eq!(q.pop_chunk(8, &mut m), None);
        let big = BytesMut::from(&[7u8; 10][..]);
        let origin = big.as_ptr();
        m.pin(7, 0, big.len());
        q.push_slice(big, 7);
        q.append(b"tail", 64);
        assert_eq!(q.pop_chunk(0, &mut m), None);
        let first = q.pop_chunk(4, &mut m).expect("queued");
        assert_eq!((first.len(), first.as_ptr()), (4, origin));
        assert_eq!(q.len, 10);
        let rest = q.pop_chunk(100, &mut m).expect("queued");
        assert_eq!(&rest[..], &[7u8; 6]);
        assert_eq!(rest.as_ptr(), origin.wrapping_add(4));
        assert_eq!(q.pop_chunk(100, &mut m).as_deref(), Some(&b"tail"[..]));
        assert!(q.is_empty());
        assert_eq!(q.charge(), 0);
        assert_eq!(q.pop_chunk(100, &mut m), None);
    }

    #[test]
    fn discard_reports_and_frees() {
        let mut m = memory();
        let mut q = RecvQueue::default();
        q.append(b"abc", 64);
        assert_eq!(q.discard(&mut m), 3);
        assert_eq!(q.len, 0);
        assert!(q.inner.is_none());
    }

    #[test]
    fn an_idle_queue_is_small_and_unallocated() {
        let q = RecvQueue::default();
        assert!(q.inner.is_none());
        assert_eq!(std::mem::size_of::<RecvQueue>(), 16);
    }
}
