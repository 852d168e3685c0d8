//! Graceful shutdown on Ctrl-C (SIGINT) or SIGTERM.
//!
//! The first signal cancels [`Shutdown::token`]: servers and clients stop accepting new
//! connections and streams, let the open ones finish for up to `--shutdown-timeout`, then close
//! their sessions (GoAway first where the protocol has it) and exit 0 — or 1 if streams had to
//! be cut off. A second signal exits at once with code 130.

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::error::{say, EXIT_INTERRUPTED};

/// The default of `--shutdown-timeout`.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// The process-wide shutdown signal.
#[derive(Clone, Debug)]
pub struct Shutdown {
    token: CancellationToken,
}

impl Shutdown {
    /// Installs the signal handlers (once, at startup, inside the runtime). They are
    /// registered before this returns, so a signal that arrives as soon as the process says
    /// it is listening is handled, not fatal.
    pub fn install() -> Shutdown {
        let token = CancellationToken::new();
        let trigger = token.clone();
        let mut signals = Signals::register();
        tokio::spawn(async move {
            let first = signals.next().await;
            // Cancel first: nothing that logging may do (stderr gone) can delay the shutdown.
            trigger.cancel();
            tracing::info!(
                "{first} received: shutting down gracefully (no new connections; open streams \
                 may finish). Press Ctrl-C again to exit at once"
            );
            let second = signals.next().await;
            say(format_args!(
                "polymux: {second} received again: exiting at once"
            ));
            std::process::exit(i32::from(EXIT_INTERRUPTED));
        });
        Shutdown { token }
    }

    /// The cancellation token.
    pub fn token(&self) -> &CancellationToken {
        &self.token
    }

    /// Completes once shutdown has begun.
    pub async fn requested(&self) {
        self.token.cancelled().await;
    }

    /// Whether shutdown has begun.
    pub fn is_requested(&self) -> bool {
        self.token.is_cancelled()
    }
}

/// SIGINT and SIGTERM, registered with the OS when created.
struct Signals {
    #[cfg(unix)]
    registered: Option<(tokio::signal::unix::Signal, tokio::signal::unix::Signal)>,
}

impl Signals {
    fn register() -> Signals {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let registered = signal(SignalKind::interrupt())
                .and_then(|int| Ok((int, signal(SignalKind::terminate())?)))
                .map_err(|e| tracing::warn!("cannot handle SIGINT/SIGTERM: {e}"))
                .ok();
            Signals { registered }
        }
        #[cfg(not(unix))]
        Signals {}
    }

    async fn next(&mut self) -> &'static str {
        #[cfg(unix)]
        {
            match &mut self.registered {
                Some((int, term)) => tokio::select! {
                    _ = int.recv() => "SIGINT",
                    _ = term.recv() => "SIGTERM",
                },
                None => std::future::pending().await,
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            "Ctrl-C"
        }
    }
}

/// Waits for the tasks in `tracker` (closing it to new ones) for up to `timeout`. Returns
/// whether all finished; logs what is left otherwise.
pub async fn drain(tracker: &TaskTracker, timeout: Duration, what: &str) -> bool {
    tracker.close();
    if tracker.is_empty() {
        return true;
    }
    tracing::info!(
        "waiting up to {timeout:?} for {} open {what} to finish",
        tracker.len()
    );
    if tokio::time::timeout(timeout, tracker.wait()).await.is_ok() {
        tracing::info!("all {what} finished");
        true
    } else {
        tracing::warn!(
            "{} {what} still open after {timeout:?} (--shutdown-timeout): closing them",
            tracker.len()
        );
        false
    }
}

/// Parses a duration like `30s`, `500ms`, `2m` or a plain number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{s:?} is not a duration; use e.g. 30s, 500ms, 2m"))?;
    let seconds = match unit.trim() {
        "" | "s" => value,
        "ms" => value / 1000.0,
        "m" | "min" => value * 60.0,
        "h" => value * 3600.0,
        other => {
            return Err(format!(
                "unknown unit {other:?} in {s:?}; use ms, s, m or h"
            ))
        }
    };
    if !seconds.is_finite() || !(0.0..=1e9).contains(&seconds) {
        return Err(format!("{s:?} is out of range"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("5"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("fast").is_err());
        assert!(parse_duration("3 weeks").is_err());
    }

    #[tokio::test]
    async fn drain_reports_stragglers() {
        let tracker = TaskTracker::new();
        tracker.spawn(async {});
        tracker.spawn(tokio::time::sleep(Duration::from_secs(60)));
        assert!(!drain(&tracker, Duration::from_millis(50), "streams").await);
        let done = TaskTracker::new();
        done.spawn(async {});
        assert!(drain(&done, Duration::from_secs(5), "streams").await);
    }
}
