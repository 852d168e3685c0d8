//! Gives freed heap memory back to the system once a burst of work is over (glibc only).
//!
//! Why: glibc keeps what a program frees in its arenas (one per worker thread, and more under
//! contention) for reuse. After a burst of a thousand visitors or a few bulk transfers
//! (the engine's 128 KiB receive buffers, relay buffers, per-stream state), megabytes that
//! nothing uses stay resident, and its automatic trimming only returns the free space at the
//! top of the main heap. `malloc_trim(0)` returns every free page of every arena.
//!
//! The rule kept here: trim only when work has ended and the process is quiet, at most once
//! per [`TICK`]. Every [`TICK`] two numbers are read: the relays ended so far ([`note_ended`],
//! counted by [`crate::relay`]; a burst can start and end between two ticks) and the live
//! runtime tasks (each session and UDP flow is a task too). A trim is due when something
//! ended since the last trim (relays ended, or live tasks dropped below the highest seen) and
//! neither number changed over the last tick (the burst is over). A steady process never
//! trims; a busy one does not trim in the middle of its work. On other platforms this is a
//! no-op.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// How often the number of live tasks is read; also the shortest interval between trims.
pub const TICK: Duration = Duration::from_millis(500);

/// Relays ended since start.
static ENDED: AtomicU64 = AtomicU64::new(0);

/// Counts one relay's end (its buffers and stream were freed).
pub fn note_ended() {
    ENDED.fetch_add(1, Ordering::Relaxed);
}

/// The decision of one tick, kept apart from the clock and the allocator for testing.
#[derive(Debug, Default)]
struct Quiet {
    /// (relays ended, live tasks) at the previous tick.
    last: (u64, usize),
    /// Relays ended at the last trim.
    trimmed_at: u64,
    /// The most live tasks seen since the last trim.
    peak: usize,
}

impl Quiet {
    /// Whether to trim now, given the relays ended so far and the live tasks at this tick.
    fn tick(&mut self, ended: u64, alive: usize) -> bool {
        let settled = (ended, alive) == self.last;
        self.last = (ended, alive);
        self.peak = self.peak.max(alive);
        if settled && (ended != self.trimmed_at || alive < self.peak) {
            self.trimmed_at = ended;
            self.peak = alive;
            return true;
        }
        false
    }
}

/// Starts the trimming task on the current runtime (tunnel, forward and echo processes).
pub fn spawn() {
    if !SUPPORTED {
        return;
    }
    let handle = tokio::runtime::Handle::current();
    tokio::spawn(async move {
        let mut quiet = Quiet::default();
        let mut ticks = tokio::time::interval(TICK);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let ended = ENDED.load(Ordering::Relaxed);
            if quiet.tick(ended, handle.metrics().num_alive_tasks()) {
                let released = trim();
                tracing::trace!(released, "gave freed heap memory back");
            }
        }
    });
}

const SUPPORTED: bool = cfg!(all(target_os = "linux", target_env = "gnu"));

/// `malloc_trim(0)`: whether glibc gave memory back.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn trim() -> bool {
    // SAFETY: malloc_trim takes no pointers and only works on the allocator's own state,
    // under the allocator's locks; it is safe to call from any thread at any time.
    unsafe { libc::malloc_trim(0) == 1 }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim() -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_once_after_work_ended_and_settled() {
        let mut q = Quiet::default();
        // Start-up and a burst growing: no trim while the count rises or holds at its peak.
        assert!(!q.tick(0, 3));
        assert!(!q.tick(0, 3));
        assert!(!q.tick(0, 900));
        assert!(!q.tick(0, 1003));
        assert!(!q.tick(0, 1003));
        // The burst ends: first the drop, then one quiet tick, then a single trim.
        assert!(!q.tick(1000, 40));
        assert!(q.tick(1000, 40));
        assert!(!q.tick(1000, 40));
        assert!(!q.tick(1000, 40));
        // Still falling: wait until it settles.
        assert!(!q.tick(1030, 10));
        assert!(!q.tick(1037, 3));
        assert!(q.tick(1037, 3));
        assert!(!q.tick(1037, 3));
    }

    #[test]
    fn a_burst_between_two_ticks_is_seen() {
        let mut q = Quiet::default();
        assert!(!q.tick(0, 3));
        assert!(!q.tick(0, 3));
        // 1100 visitors came and went between two ticks: same live tasks, relays ended.
        assert!(!q.tick(1100, 3));
        assert!(q.tick(1100, 3));
        assert!(!q.tick(1100, 3));
    }

    #[test]
    fn a_session_that_ended_is_seen() {
        let mut q = Quiet::default();
        assert!(!q.tick(0, 3));
        assert!(!q.tick(0, 8));
        assert!(!q.tick(0, 3));
        assert!(q.tick(0, 3));
    }

    #[test]
    fn trimming_is_safe_to_call() {
        let _ = trim();
    }
}
