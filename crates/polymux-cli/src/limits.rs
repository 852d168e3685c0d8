//! Connection and stream limits (`--max-connections`, `--max-streams`): a counting semaphore
//! that refuses instead of queueing, and says so in the log — at most once a second per
//! limit, so a flood does not flood the log too.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// A limit on concurrent things of one kind.
#[derive(Clone, Debug)]
pub struct Limiter {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    semaphore: Arc<Semaphore>,
    limit: usize,
    /// "connections on --expose web", "streams", …
    what: String,
    /// The flag that raises the limit.
    flag: &'static str,
    refused: AtomicU64,
    last_warning: Mutex<Option<Instant>>,
}

/// Held while one thing is in use; dropping it frees the slot.
pub type Permit = OwnedSemaphorePermit;

impl Limiter {
    /// A limit of `limit` concurrent `what`, raised with `flag`.
    pub fn new(limit: usize, what: impl Into<String>, flag: &'static str) -> Limiter {
        let limit = limit.clamp(1, Semaphore::MAX_PERMITS);
        Limiter {
            inner: Arc::new(Inner {
                semaphore: Arc::new(Semaphore::new(limit)),
                limit,
                what: what.into(),
                flag,
                refused: AtomicU64::new(0),
                last_warning: Mutex::new(None),
            }),
        }
    }

    /// A slot, or `None` (logged) when the limit is reached.
    pub fn try_acquire(&self) -> Option<Permit> {
        match self.inner.semaphore.clone().try_acquire_owned() {
            Ok(permit) => Some(permit),
            Err(_) => {
                let refused = self.inner.refused.fetch_add(1, Ordering::Relaxed) + 1;
                let mut last = self
                    .inner
                    .last_warning
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                if last.is_none_or(|at| at.elapsed() >= Duration::from_secs(1)) {
                    *last = Some(Instant::now());
                    tracing::warn!(
                        "limit of {} {} reached: refusing more ({refused} refused so far); raise \
                         {} if this load is expected",
                        self.inner.limit,
                        self.inner.what,
                        self.inner.flag
                    );
                }
                None
            }
        }
    }

    /// The message a refused peer gets.
    pub fn refusal_message(&self) -> String {
        format!(
            "limit of {} {} reached on the other side ({})",
            self.inner.limit, self.inner.what, self.inner.flag
        )
    }

    /// Things in use now.
    #[cfg(test)]
    pub fn in_use(&self) -> usize {
        self.inner.limit - self.inner.semaphore.available_permits()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_beyond_the_limit_and_frees_on_drop() {
        let limiter = Limiter::new(2, "connections", "--max-connections");
        let a = limiter.try_acquire().expect("first");
        let _b = limiter.try_acquire().expect("second");
        assert!(limiter.try_acquire().is_none());
        assert_eq!(limiter.in_use(), 2);
        drop(a);
        assert!(limiter.try_acquire().is_some());
        assert!(limiter.refusal_message().contains("--max-connections"));
    }
}
