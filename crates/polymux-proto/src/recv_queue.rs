//! A stream's received-but-unread bytes: a queue of zero-copy [`Bytes`] slices.
//!
//! Invariant: `len` is the sum of the queued slices' lengths and no queued slice is empty.
//! A stream that never received data allocates nothing (`VecDeque::new` does not allocate).

use std::collections::VecDeque;

use bytes::{Buf, Bytes};

#[derive(Debug, Default)]
pub(crate) struct RecvQueue {
    chunks: VecDeque<Bytes>,
    len: usize,
}

impl RecvQueue {
    pub(crate) fn push(&mut self, chunk: Bytes) {
        if !chunk.is_empty() {
            self.len += chunk.len();
            self.chunks.push_back(chunk);
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
        let mut copied = 0;
        while copied < out.len() {
            let Some(front) = self.chunks.front_mut() else {
                break;
            };
            let n = front.len().min(out.len() - copied);
            out[copied..copied + n].copy_from_slice(&front[..n]);
            front.advance(n);
            copied += n;
            if front.is_empty() {
                self.chunks.pop_front();
            }
        }
        self.len -= copied;
        copied
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
    fn discard_reports_and_frees() {
        let mut q = RecvQueue::default();
        q.push(Bytes::from_static(b"abc"));
        assert_eq!(q.discard(), 3);
        assert_eq!(q.len(), 0);
    }
}
