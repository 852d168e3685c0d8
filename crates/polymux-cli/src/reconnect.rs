//! The client side shared by `tunnel client` and `forward client`: keep one authenticated
//! session to the server, reconnecting with exponential back-off whenever it drops.
//!
//! The back-off rule: the first wait is 100 ms, each failed attempt doubles it up to
//! `--max-backoff` (1 s by default, the cap rathole uses too: a server back from an outage
//! is found within about a second), ±20 % jitter. A session that lasted at least 10 s
//! resets it, so the next drop is retried after 100 ms; one that dropped sooner does not (a
//! server that accepts and drops at once is not hammered).
//!
//! Authentication and configuration errors are permanent: retrying cannot fix a wrong token
//! or a bad certificate, so they end the process (exit 3 or 4) instead of looping.

use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::time::{Duration, Instant};

use polymux::Session;

use crate::args::ReconnectArgs;
use crate::error::is_permanent;
use crate::shutdown::Shutdown;
use crate::transport::{Dialer, DriverHandle};

/// The first wait after a failure.
const INITIAL_BACKOFF: Duration = Duration::from_millis(100);
/// A session that lasted this long resets the back-off.
const STABLE_AFTER: Duration = Duration::from_secs(10);

/// How one session ended.
#[derive(Debug)]
pub enum SessionEnd {
    /// It dropped (reason for the log); reconnect.
    Dropped(String),
    /// Shutdown was requested and handled; `clean` when no stream was cut off.
    Shutdown {
        /// Whether every open stream finished.
        clean: bool,
    },
    /// A reload changed what the handshake presents: connect again at once (the old session
    /// finishes its open streams on its own).
    Renew,
}

/// Exponential back-off with jitter.
#[derive(Debug)]
pub struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    /// Starts at 100 ms, caps at `max`.
    pub fn new(max: Duration) -> Backoff {
        Backoff {
            next: INITIAL_BACKOFF.min(max),
            max,
        }
    }

    /// The wait before the next attempt.
    pub fn next_delay(&mut self) -> Duration {
        let base = self.next;
        self.next = (self.next * 2).min(self.max);
        // ±20 % jitter from the std hasher's random keys (no RNG dependency needed).
        let random = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        let factor = 0.8 + (random % 401) as f64 / 1000.0;
        base.mul_f64(factor)
    }

    /// Back to the initial wait.
    pub fn reset(&mut self) {
        self.next = INITIAL_BACKOFF.min(self.max);
    }
}

/// Keeps a session up until shutdown. `on_session` runs for each session and returns how it
/// ended. Returns `Ok(clean)` after shutdown, or the error that made retrying pointless.
pub async fn maintain<F, Fut>(
    dialer: &Dialer,
    policy: &ReconnectArgs,
    shutdown: &Shutdown,
    mut on_session: F,
) -> anyhow::Result<bool>
where
    F: FnMut(Session, DriverHandle) -> Fut,
    Fut: Future<Output = SessionEnd>,
{
    let mut backoff = Backoff::new(policy.max_backoff);
    let mut failures: u32 = 0;
    loop {
        let connected = tokio::select! {
            _ = shutdown.requested() => return Ok(true),
            connected = dialer.connect() => connected,
        };
        match connected {
            Ok((session, driver)) => {
                failures = 0;
                let started = Instant::now();
                match on_session(session, driver).await {
                    SessionEnd::Shutdown { clean } => return Ok(clean),
                    SessionEnd::Renew => {
                        tracing::info!("reconnecting to {} with the new tokens", dialer.server);
                    }
                    SessionEnd::Dropped(reason) => {
                        if started.elapsed() >= STABLE_AFTER {
                            backoff.reset();
                        }
                        let delay = backoff.next_delay();
                        tracing::warn!(
                            "connection to {} dropped ({reason}); reconnecting in {delay:.1?}",
                            dialer.server
                        );
                        if !sleep_unless_shutdown(delay, shutdown).await {
                            return Ok(true);
                        }
                    }
                }
            }
            Err(e) if is_permanent(&e) => return Err(e),
            Err(e) => {
                failures += 1;
                if policy.max_retries.is_some_and(|max| failures > max) {
                    return Err(e.context(format!(
                        "giving up after {failures} failed attempts (--max-retries)"
                    )));
                }
                let delay = backoff.next_delay();
                tracing::warn!("{e:#}; retrying in {delay:.1?} (attempt {failures})");
                if !sleep_unless_shutdown(delay, shutdown).await {
                    return Ok(true);
                }
            }
        }
    }
}

/// Sleeps; `false` if shutdown came first.
async fn sleep_unless_shutdown(delay: Duration, shutdown: &Shutdown) -> bool {
    tokio::select! {
        _ = shutdown.requested() => false,
        _ = tokio::time::sleep(delay) => true,
    }
}

/// A human-readable reason for a session's end.
pub async fn end_reason(session: &Session, driver: DriverHandle) -> String {
    let reason = session.closed().await;
    match tokio::time::timeout(Duration::from_secs(1), driver).await {
        Ok(Ok(Err(e))) => e.to_string(),
        _ => reason.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_the_cap_and_resets() {
        let mut b = Backoff::new(Duration::from_secs(2));
        let delays: Vec<Duration> = (0..7).map(|_| b.next_delay()).collect();
        assert!(delays[0] >= Duration::from_millis(80) && delays[0] <= Duration::from_millis(120));
        assert!(
            delays[6] <= Duration::from_millis(2400) && delays[6] >= Duration::from_millis(1600)
        );
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(120));
    }
}
