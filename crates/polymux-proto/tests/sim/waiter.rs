//! [`Waiter`]: one waiting "task" whose wake-up the simulation checks (a pending poll must be
//! woken before it completes).

use super::*;

/// One waiting "task": a waker that records being woken, and whether a wake-up is owed.
pub struct Waiter {
    pub(crate) flag: Arc<Flag>,
    pub(crate) waker: Waker,
    pub(crate) armed: bool,
}

impl Waiter {
    pub fn new() -> Waiter {
        let flag = Arc::new(Flag(AtomicBool::new(false)));
        Waiter {
            waker: Waker::from(flag.clone()),
            flag,
            armed: false,
        }
    }

    pub fn waker(&self) -> &Waker {
        &self.waker
    }

    /// The poll returned `Pending`: the engine now owes this waiter a wake-up.
    pub fn arm(&mut self) {
        self.flag.0.store(false, Ordering::SeqCst);
        self.armed = true;
    }

    /// The application gave up waiting (its own action made the operation moot).
    pub fn cancel(&mut self) {
        self.armed = false;
    }

    pub fn is_armed(&self) -> bool {
        self.armed
    }

    pub fn woken(&self) -> bool {
        self.flag.0.load(Ordering::SeqCst)
    }

    /// The operation completed. Returns `false` if it had been pending and nobody woke it: a
    /// lost wake-up (the task would have slept forever).
    pub fn complete(&mut self) -> bool {
        let ok = !self.armed || self.woken();
        self.armed = false;
        ok
    }
}

impl Default for Waiter {
    fn default() -> Self {
        Waiter::new()
    }
}
