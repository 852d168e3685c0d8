//! A stream's received-but-unread bytes: a queue of zero-copy [`Bytes`] slices.
//!
//! Invariant: `len` is the sum of the queued slices' lengths and no queued slice is empty.
//!
//! Size matters here: every stream in the table has one, idle or not. A stream that never
//! received data holds 16 bytes and allocates nothing; the slice queue is boxed on the first
//! arrival and kept while the stream lives (freeing it whenever the queue drains would cost an
//! allocation per burst of data, on the hot path).

use std::collections::VecDeque;

use bytes::{Buf, Bytes};

#[derive(Debug, Default)]
pub(crate) struct RecvQueue {
    // Boxed on purpose: 8 bytes in every stream's table entry instead of 32 (module docs).
    #[allow(clippy::box_collection)]
    chunks: Option<Box<VecDeque<Bytes>>>,
    len: usize,
}

impl RecvQueue {
    pub(crate) fn push(&mut self, chunk: Bytes) {
        if !chunk.is_empty() {
            self.len += chunk.len();
            self.chunks.get_or_insert_default().push_back(chunk);
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Copies up to `out.len()` bytes into `out`, in order; returns how many.
    pub(crate) fn read_into(&mut self, out: &mut [u8]) -> usize {
        let Some(chunks) = self.chunks.as_mut() else {
            return 0;
        };
        let mut copied = 0;
        while copied < out.len() {
            let Some(front) = chunks.front_mut() else {
                break;
            };
            let n = front.len().min(out.len() - copied);
            out[copied..copied + n].copy_from_slice(&front[..n]);
            front.advance(n);
            copied += n;
            if front.is_empty() {
                chunks.pop_front();
            }
        }
        self.len -= copied;
        copied
    }

    /// Takes the next queued bytes without copying: the front slice whole, or its first `max`
    /// bytes (a cheap split of the same allocation). `None` when nothing is queued or `max`
    /// is 0.
    pub(crate) fn pop_chunk(&mut self, max: usize) -> Option<Bytes> {
        let chunks = self.chunks.as_mut()?;
        let front = chunks.front_mut().filter(|_| max > 0)?;
        let chunk = if front.len() <= max {
            chunks.pop_front()?
        } else {
            front.split_to(max)
        };
        self.len -= chunk.len();
        Some(chunk)
    }

    /// Drops everything queued (and the queue's own allocation); returns how many bytes.
    pub(crate) fn discard(&mut self) -> usize {
        let n = self.len;
        *self = RecvQueue::default();
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_across_chunks_in_order() {
        let mut q = RecvQueue::default();
        q.push(Bytes::from_static(b"hel"));
        q.push(Bytes::new());
        q.push(Bytes::from_static(b"lo world"));
        assert_eq!(q.len(), 11);
        let mut buf = [0u8; 4];
        assert_eq!(q.read_into(&mut buf), 4);
        assert_eq!(&buf, b"hell");
        let mut rest = [0u8; 20];
        assert_eq!(q.read_into(&mut rest), 7);
        assert_eq!(&rest[..7], b"o world");
        assert!(q.is_empty());
        assert_eq!(q.read_into(&mut rest), 0);
    }

    #[test]
    fn chunks_come_out_whole_or_split_in_order_without_copying() {
        let mut q = RecvQueue::default();
        assert_eq!(q.pop_chunk(8), None);
        let big = Bytes::from(vec![7u8; 10]);
        let origin = big.as_ptr();
        q.push(big);
        q.push(Bytes::from_static(b"tail"));
        assert_eq!(q.pop_chunk(0), None);
        let first = q.pop_chunk(4).expect("queued");
        assert_eq!((first.len(), first.as_ptr()), (4, origin));
        assert_eq!(q.len(), 10);
        let rest = q.pop_chunk(100).expect("queued");
        assert_eq!(&rest[..], &[7u8; 6]);
        assert_eq!(rest.as_ptr(), origin.wrapping_add(4));
        assert_eq!(q.pop_chunk(100).as_deref(), Some(&b"tail"[..]));
        assert!(q.is_empty());
        assert_eq!(q.pop_chunk(100), None);
    }

    #[test]
    fn discard_reports_and_frees() {
        let mut q = RecvQueue::default();
        q.push(Bytes::from_static(b"abc"));
        assert_eq!(q.discard(), 3);
        assert_eq!(q.len(), 0);
        assert!(q.chunks.is_none());
    }

    #[test]
    fn an_idle_queue_is_small_and_unallocated() {
        let q = RecvQueue::default();
        assert!(q.chunks.is_none());
        assert_eq!(std::mem::size_of::<RecvQueue>(), 16);
    }
}
