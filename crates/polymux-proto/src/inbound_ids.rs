//! Which stream ids the peer has opened: enough to tell a new open from a reused id, and a
//! stream that is gone from one that never existed.
//!
//! Peers allocate ids in increasing order but do not always *send* opens in that order: Go's
//! `OpenStream` allocates the id atomically and sends the SYN afterwards from the caller's
//! goroutine, and Rust `yamux` sends a stream's SYN lazily with its first frame — possibly
//! long after thousands of later streams came and went. So an open may arrive for any id
//! below the highest seen. The tracker keeps the highest id opened and the skipped ids below
//! it that may still open ("gaps"), as ranges. Gaps are bounded by [`GAP_LIMIT`] in number,
//! not in distance: a peer skipping more keeps only the most recent ones, so a very late open
//! of a forgotten id is treated as a reuse.
//!
//! Cost: an open that jumps ahead adds one range and trims the oldest ranges as a whole, so
//! every open is O(log ranges) whatever the jump; a peer cannot make one 12-byte frame
//! expensive. Ranges ≤ gaps ≤ [`GAP_LIMIT`].

use std::collections::BTreeMap;

use crate::frame::StreamId;

/// Skipped ids remembered at most.
pub(crate) const GAP_LIMIT: usize = 4096;

#[derive(Debug, Default)]
pub(crate) struct InboundIds {
    /// Highest id the peer has opened (0: none).
    max: u32,
    /// Ids of the peer's parity below `max` not opened yet: `start → end`, both inclusive,
    /// stepping by 2; ranges are disjoint and non-empty.
    gaps: BTreeMap<u32, u32>,
    /// Ids in `gaps` (≤ [`GAP_LIMIT`]).
    gap_count: usize,
}

/// The peer opened an id it had already opened.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Reused;

impl InboundIds {
    /// Records an open of `id`, where `first` is the peer's first id (ids step by 2).
    pub(crate) fn open(&mut self, id: StreamId, first: u32) -> Result<(), Reused> {
        let id = id.0;
        if id > self.max {
            let from = if self.max == 0 { first } else { self.max + 2 };
            if from < id {
                self.gaps.insert(from, id - 2);
                self.gap_count += ((id - from) / 2) as usize;
                self.forget_oldest_beyond_limit();
            }
            self.max = id;
            return Ok(());
        }
        let Some((&start, &end)) = self.gaps.range(..=id).next_back() else {
            return Err(Reused);
        };
        if id > end {
            return Err(Reused);
        }
        self.gaps.remove(&start);
        if start < id {
            self.gaps.insert(start, id - 2);
        }
        if id < end {
            self.gaps.insert(id + 2, end);
        }
        self.gap_count -= 1;
        Ok(())
    }

    /// Whether the peer has opened `id` at some point.
    pub(crate) fn was_opened(&self, id: StreamId) -> bool {
        let id = id.0;
        let in_gap = self
            .gaps
            .range(..=id)
            .next_back()
            .is_some_and(|(_, &end)| id <= end);
        id != 0 && id <= self.max && !in_gap
    }

    /// Drops the oldest gaps until at most [`GAP_LIMIT`] remain.
    fn forget_oldest_beyond_limit(&mut self) {
        while self.gap_count > GAP_LIMIT {
            let excess = self.gap_count - GAP_LIMIT;
            let Some((start, end)) = self.gaps.pop_first() else {
                break;
            };
            let len = ((end - start) / 2 + 1) as usize;
            if len > excess {
                self.gaps.insert(start + 2 * excess as u32, end);
                self.gap_count -= excess;
            } else {
                self.gap_count -= len;
            }
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
        assert_eq!(ids.gap_count, GAP_LIMIT);
        assert_eq!(ids.open(StreamId(1_999_999_998), 2), Ok(()));
        assert_eq!(ids.open(StreamId(1000), 2), Err(Reused), "forgotten gap");
    }

    #[test]
    fn only_the_most_recent_gaps_are_kept() {
        let mut ids = InboundIds::default();
        assert_eq!(ids.open(StreamId(3), 3), Ok(()));
        let top = 3 + 2 * (GAP_LIMIT as u32 + 10);
        assert_eq!(ids.open(StreamId(top), 3), Ok(()));
        assert_eq!(ids.gap_count, GAP_LIMIT);
        let oldest_kept = top - 2 * GAP_LIMIT as u32;
        assert!(!ids.was_opened(StreamId(oldest_kept)));
        assert!(
            ids.was_opened(StreamId(oldest_kept - 2)),
            "forgotten counts as opened"
        );
        assert_eq!(ids.open(StreamId(oldest_kept), 3), Ok(()));
        assert_eq!(ids.open(StreamId(oldest_kept), 3), Err(Reused));
        assert_eq!(
            ids.open(StreamId(1), 3),
            Err(Reused),
            "below the peer's first id"
        );
    }

    /// Rust yamux sends a stream's SYN with its first frame: a stream opened early and used
    /// late may announce itself after thousands of later streams. One gap is one gap, however
    /// far back.
    #[test]
    fn a_lazy_open_far_behind_is_still_new() {
        let mut ids = InboundIds::default();
        for id in (3..=20_001u32).step_by(2) {
            assert_eq!(ids.open(StreamId(id), 1), Ok(()));
        }
        assert!(!ids.was_opened(StreamId(1)));
        assert_eq!(ids.open(StreamId(1), 1), Ok(()));
        assert_eq!(ids.open(StreamId(1), 1), Err(Reused));
        assert!(ids.gaps.is_empty() && ids.gap_count == 0);
    }

    #[test]
    fn opens_inside_a_range_split_it() {
        let mut ids = InboundIds::default();
        assert_eq!(ids.open(StreamId(11), 1), Ok(()));
        for id in [5, 1, 9, 3, 7] {
            assert!(!ids.was_opened(StreamId(id)));
            assert_eq!(ids.open(StreamId(id), 1), Ok(()), "{id}");
            assert!(ids.was_opened(StreamId(id)));
            assert_eq!(ids.open(StreamId(id), 1), Err(Reused), "{id}");
        }
        assert!(ids.gaps.is_empty() && ids.gap_count == 0);
        assert!(!ids.was_opened(StreamId(13)));
    }

    #[test]
    fn far_jumps_stay_cheap_and_bounded() {
        // Each open jumps far ahead; with a scan per forgotten gap this took ~16M steps each.
        let mut ids = InboundIds::default();
        for i in 1..=2_000u32 {
            assert_eq!(ids.open(StreamId(i * 20_000), 2), Ok(()));
        }
        assert!(ids.was_opened(StreamId(40_000_000)));
        assert!(!ids.was_opened(StreamId(39_999_998)));
        assert!(ids.gap_count <= GAP_LIMIT && ids.gaps.len() <= GAP_LIMIT);
    }
}
