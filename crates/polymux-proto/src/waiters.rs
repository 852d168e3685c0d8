//! The tasks waiting for one session-wide condition: an inbound stream to accept, a free open
//! slot, a Ping's answer, the session's end.
//!
//! Several tasks may wait at once (the session handle is `Clone`), so one waker slot is not
//! enough: a second task would silently replace the first, which would then never wake.
//!
//! Invariants: a task appears at most once (keyed by its waker's identity, the data pointer and
//! vtable that [`Waker::will_wake`] compares), so a task that polls in a loop costs one entry
//! and registering is O(1) however many wait; and the set never holds more than `limit`
//! entries.
//! Wakers of tasks that gave up waiting cannot be told apart from live ones, so when the list
//! is full every entry is woken (a spurious wake-up is always allowed; live waiters register
//! again) and the limit doubles, which keeps the flushes rare while many tasks really wait.

use std::collections::HashMap;
use std::task::Waker;

/// Entries kept before the first flush.
const INITIAL_LIMIT: usize = 64;

/// A deduplicated, bounded set of wakers. See the module docs.
#[derive(Debug)]
pub(crate) struct Waiters {
    wakers: HashMap<(usize, usize), Waker>,
    limit: usize,
}

impl Default for Waiters {
    fn default() -> Self {
        Waiters {
            wakers: HashMap::new(),
            limit: INITIAL_LIMIT,
        }
    }
}

/// What [`Waker::will_wake`] compares: two wakers with the same key wake the same task.
fn identity(waker: &Waker) -> (usize, usize) {
    (
        waker.data() as usize,
        std::ptr::from_ref(waker.vtable()) as usize,
    )
}

impl Waiters {
    /// Adds the task of `waker` unless it is already waiting.
    pub(crate) fn register(&mut self, waker: &Waker) {
        let key = identity(waker);
        if self.wakers.contains_key(&key) {
            return;
        }
        if self.wakers.len() >= self.limit {
            self.limit *= 2;
            self.wake_all();
        }
        self.wakers.insert(key, waker.clone());
    }

    /// Wakes every waiting task; each polls again and registers anew if it still waits.
    pub(crate) fn wake_all(&mut self) {
        for (_, w) in self.wakers.drain() {
            w.wake();
        }
    }

    /// Removes every waiting task's waker, for the caller to wake.
    pub(crate) fn take_all(&mut self) -> impl Iterator<Item = Waker> + '_ {
        self.wakers.drain().map(|(_, w)| w)
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.wakers.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::Wake;

    struct Counter(AtomicUsize);
    impl Wake for Counter {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn counter() -> (Arc<Counter>, Waker) {
        let c = Arc::new(Counter(AtomicUsize::new(0)));
        (c.clone(), Waker::from(c))
    }

    #[test]
    fn every_waiting_task_is_woken_once() {
        let (a, wa) = counter();
        let (b, wb) = counter();
        let mut waiters = Waiters::default();
        for _ in 0..10 {
            waiters.register(&wa);
            waiters.register(&wb);
        }
        assert_eq!(waiters.len(), 2, "a task polling in a loop is one entry");
        waiters.wake_all();
        assert_eq!(a.0.load(Ordering::SeqCst), 1);
        assert_eq!(b.0.load(Ordering::SeqCst), 1);
        assert_eq!(waiters.len(), 0);
    }

    #[test]
    fn abandoned_wakers_are_flushed_not_hoarded() {
        let mut waiters = Waiters::default();
        let mut counters = Vec::new();
        for _ in 0..10 * INITIAL_LIMIT {
            let (c, w) = counter();
            waiters.register(&w);
            counters.push(c);
            assert!(waiters.len() <= waiters.limit);
        }
        // Each flush woke what it held; the limit grew instead of flushing on every entry.
        let woken: usize = counters.iter().map(|c| c.0.load(Ordering::SeqCst)).sum();
        assert_eq!(woken + waiters.len(), 10 * INITIAL_LIMIT);
        assert!(waiters.limit <= 16 * INITIAL_LIMIT);
    }
}
