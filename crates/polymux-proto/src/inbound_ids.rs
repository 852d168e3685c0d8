//! Which stream ids the peer has opened: enough to tell a new open from a reused id, and a
//! stream that is gone from one that never existed.
//!
//! Peers allocate ids in increasing order but do not always *send* opens in that order: Go's
//! `OpenStream` allocates the id atomically and sends the SYN afterwards from the caller's
//! goroutine, and Rust `yamux` sends a stream's SYN lazily with its first frame. So an open
//! may arrive for an id below the highest seen. The tracker keeps the highest id opened and
//! the skipped ids below it that may still open ("gaps"). Gaps are bounded by [`GAP_LIMIT`]:
//! a peer skipping more keeps only the most recent ones, so a very late open of a forgotten id
//! is treated as a reuse — legitimate reordering spans only the opens in flight at once.

use std::collections::HashSet;

use crate::frame::StreamId;

/// Skipped ids remembered at most.
pub(crate) const GAP_LIMIT: usize = 4096;

#[derive(Debug, Default)]
pub(crate) struct InboundIds {
    /// Highest id the peer has opened (0: none).
    max: u32,
    /// Ids of the peer's parity below `max` not opened yet.
    gaps: HashSet<u32>,
}

/// The peer opened an id it had already opened.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Reused;

impl InboundIds {
    /// Records an open of `id`, where `first` is the peer's first id (ids step by 2).
    pub(crate) fn open(&mut self, id: StreamId, first: u32) -> Result<(), Reused> {
        let id = id.0;
        if id > self.max {
            let mut skipped = if self.max == 0 { first } else { self.max + 2 };
            // Only the most recent skipped ids fit; older ones are forgotten (see module doc).
            let span = id.saturating_sub(skipped) / 2;
            if span as usize > GAP_LIMIT {
                skipped = id - 2 * GAP_LIMIT as u32;
            }
            while skipped < id {
                if self.gaps.len() >= GAP_LIMIT {
                    self.forget_oldest_gap();
                }
                self.gaps.insert(skipped);
                skipped += 2;
            }
            self.max = id;
            Ok(())
        } else if self.gaps.remove(&id) {
            Ok(())
        } else {
            Err(Reused)
        }
    }

    /// Whether the peer has opened `id` at some point.
    pub(crate) fn was_opened(&self, id: StreamId) -> bool {
        id.0 != 0 && id.0 <= self.max && !self.gaps.contains(&id.0)
    }

    fn forget_oldest_gap(&mut self) {
        if let Some(&oldest) = self.gaps.iter().min() {
            self.gaps.remove(&oldest);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_order_and_out_of_order_opens_are_new_and_repeats_are_reuse() {
        let mut ids = InboundIds::default();
        assert_eq!(ids.open(StreamId(1), 1), Ok(()));
        assert_eq!(ids.open(StreamId(7), 1), Ok(()));
        assert!(!ids.was_opened(StreamId(3)));
        assert_eq!(ids.open(StreamId(3), 1), Ok(()));
        assert!(ids.was_opened(StreamId(3)));
        assert_eq!(ids.open(StreamId(3), 1), Err(Reused));
        assert_eq!(ids.open(StreamId(7), 1), Err(Reused));
        assert_eq!(ids.open(StreamId(5), 1), Ok(()));
        assert!(!ids.was_opened(StreamId(9)));
    }

    #[test]
    fn gaps_stay_bounded_after_a_huge_jump() {
        let mut ids = InboundIds::default();
        assert_eq!(ids.open(StreamId(2), 2), Ok(()));
        assert_eq!(ids.open(StreamId(2_000_000_000), 2), Ok(()));
        assert!(ids.gaps.len() <= GAP_LIMIT);
        assert_eq!(ids.open(StreamId(1_999_999_998), 2), Ok(()));
        assert_eq!(ids.open(StreamId(1000), 2), Err(Reused), "forgotten gap");
    }
}
