//! Test support shared by the integration tests: the waker that records being woken (used by
//! `bad_input` and the simulation's `Waiter`). A waker that does nothing is `Waker::noop()`
//! from std (stable since 1.85, the workspace's MSRV), so it needs no helper here.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::Wake;

/// A waker that records being woken: the flag is set by every wake-up and cleared by the test.
pub struct Flag(pub AtomicBool);

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.0.store(true, Ordering::SeqCst);
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.store(true, Ordering::SeqCst);
    }
}
