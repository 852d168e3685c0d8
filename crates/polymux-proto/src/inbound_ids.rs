//! Which stream ids the peer has opened: enough to tell a new open from a reused id, and a
//! stream that is gone from one that never existed.
//!
//! Peers allocate ids in increasing order but do not always *send* opens in that order: Go's
//! `OpenStream` allocates the id atomically and sends the SYN afterwards from the caller's
//! goroutine, and Rust `yamux` sends a stream's SYN lazily with its first frame. So an open
//! may arrive for an id below the highest seen. The tracker keeps the highest id opened and,
//! for the [`GAP_LIMIT`] ids of the peer's parity at and below it, whether each was opened
//! (a bitmap indexed by `id / 2` modulo the limit, 512 bytes). Older ids count as opened: a
//! very late open of one is treated as a reuse — legitimate reordering spans only the opens in
//! flight at once.
//!
//! Cost: an open that jumps ahead marks at most [`GAP_LIMIT`] skipped ids, whatever the jump,
//! so a peer cannot make one 12-byte frame expensive.

use crate::frame::StreamId;

/// Ids (of the peer's parity, up to the highest opened) whose state is remembered.
pub(crate) const GAP_LIMIT: usize = 4096;

const WORDS: usize = GAP_LIMIT / 64;

#[derive(Debug)]
pub(crate) struct InboundIds {
    /// Highest id the peer has opened (0: none).
    max: u32,
    /// Lowest id the peer may open (its first id).
    first: u32,
    /// Bit `(id / 2) % GAP_LIMIT` is set when `id`, within the window, was opened.
    opened: Box<[u64; WORDS]>,
}

impl Default for InboundIds {
    fn default() -> Self {
        InboundIds {
            max: 0,
            first: 0,
            opened: Box::new([0; WORDS]),
        }
    }
}

/// The peer opened an id it had already opened.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Reused;

impl InboundIds {
    /// Records an open of `id`, where `first` is the peer's first id (ids step by 2).
    pub(crate) fn open(&mut self, id: StreamId, first: u32) -> Result<(), Reused> {
        let id = id.0;
        if id > self.max {
            let from = if self.max == 0 {
                self.first = first;
                first
            } else {
                self.max + 2
            };
            // Only the last GAP_LIMIT ids are remembered, so only those are marked.
            let from = from.max(id.saturating_sub(2 * (GAP_LIMIT as u32 - 1)));
            let mut skipped = from;
            while skipped < id {
                self.set(skipped, false);
                skipped += 2;
            }
            self.set(id, true);
            self.max = id;
            Ok(())
        } else if self.in_window(id) && !self.get(id) {
            self.set(id, true);
            Ok(())
        } else {
            Err(Reused)
        }
    }

    /// Whether the peer has opened `id` at some point.
    pub(crate) fn was_opened(&self, id: StreamId) -> bool {
        let id = id.0;
        id != 0 && id <= self.max && (!self.in_window(id) || self.get(id))
    }

    /// Whether `id` (≤ `max`) is one whose state is remembered (and one the peer may open).
    fn in_window(&self, id: u32) -> bool {
        id >= self.first && self.max - id < 2 * GAP_LIMIT as u32
    }

    fn slot(id: u32) -> (usize, u64) {
        let bit = (id / 2) as usize % GAP_LIMIT;
        (bit / 64, 1 << (bit % 64))
    }

    fn get(&self, id: u32) -> bool {
        let (word, mask) = Self::slot(id);
        self.opened[word] & mask != 0
    }

    fn set(&mut self, id: u32, opened: bool) {
        let (word, mask) = Self::slot(id);
        if opened {
            self.opened[word] |= mask;
        } else {
            self.opened[word] &= !mask;
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
        assert_eq!(ids.open(StreamId(1_999_999_998), 2), Ok(()));
        assert_eq!(ids.open(StreamId(1000), 2), Err(Reused), "forgotten gap");
    }

    #[test]
    fn a_reordered_open_within_the_window_is_new_once() {
        let mut ids = InboundIds::default();
        assert_eq!(ids.open(StreamId(3), 3), Ok(()));
        let top = 3 + 2 * (GAP_LIMIT as u32 + 10);
        assert_eq!(ids.open(StreamId(top), 3), Ok(()));
        let oldest_kept = top - 2 * (GAP_LIMIT as u32 - 1);
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

    #[test]
    fn jumps_cost_at_most_the_window() {
        // Each open jumps far ahead; with a scan per forgotten gap this took ~16M steps each.
        let mut ids = InboundIds::default();
        for i in 1..=2_000u32 {
            assert_eq!(ids.open(StreamId(i * 20_000), 2), Ok(()));
        }
        assert!(ids.was_opened(StreamId(40_000_000)));
        assert!(!ids.was_opened(StreamId(39_999_998)));
    }
}
