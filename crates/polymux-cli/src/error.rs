//! Exit codes, and the classification of errors into them.
//!
//! | code | meaning |
//! |---|---|
//! | 0 | success, including a graceful shutdown after Ctrl-C / SIGTERM in which every open stream finished |
//! | 1 | runtime failure: network, target unreachable, streams cut off at shutdown, a bench check failed |
//! | 2 | usage error: unknown flag, bad value (reported by clap) |
//! | 3 | authentication refused: wrong or missing token |
//! | 4 | TLS or configuration error: unreadable certificate/key/CA, pin mismatch, listening beyond loopback without a token, protocol or mode mismatch with the peer |
//! | 130 | a second Ctrl-C / SIGTERM interrupted the graceful shutdown |
//!
//! Errors travel as `anyhow::Error`; the ones that map to 3 or 4 carry a [`Classified`]
//! somewhere in their chain, which [`exit_code`] looks for.

use std::fmt;

/// Success.
pub const EXIT_OK: u8 = 0;
/// Runtime failure.
pub const EXIT_RUNTIME: u8 = 1;
/// Authentication refused.
pub const EXIT_AUTH: u8 = 3;
/// TLS or configuration error.
pub const EXIT_CONFIG: u8 = 4;
/// Interrupted by a second signal during the graceful shutdown.
pub const EXIT_INTERRUPTED: u8 = 130;

/// The exit-code table shown at the end of every `--help` (a macro so that `concat!` can
/// append it to each subcommand's example).
macro_rules! exit_codes_help {
    () => {
        "Exit codes:
  0    success (also after a graceful Ctrl-C/SIGTERM shutdown in which every stream finished)
  1    runtime failure (network, unreachable target, streams cut off at shutdown,
       a failed or interrupted bench)
  2    usage error (bad flag or value)
  3    authentication refused (wrong or missing token)
  4    TLS or configuration error (certificate, key, CA, pin; no token beyond loopback;
       --protocol or mode mismatch with the peer)
  130  a second Ctrl-C/SIGTERM interrupted the graceful shutdown

Logging: -v (debug), -vv (trace), -q (warnings only); RUST_LOG (e.g. RUST_LOG=debug)
overrides them."
    };
}
pub(crate) use exit_codes_help;

/// Writes one line to stderr, ignoring failure: unlike `eprintln!`, which panics when stderr is
/// a closed pipe, so that a process whose log reader went away still shuts down and exits with
/// its code.
pub fn say(line: fmt::Arguments<'_>) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// What kind of failure an error is, beyond "it failed at run time".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// The peer refused our token, or we refused theirs and want the process to say so.
    Auth,
    /// TLS material, flags or peer settings that cannot work until someone changes them.
    Config,
}

/// An error with a [`Failure`] class; its message is the whole story (what failed and what
/// to do about it).
#[derive(Debug)]
pub struct Classified {
    failure: Failure,
    message: String,
}

impl fmt::Display for Classified {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Classified {}

/// An authentication failure (exit code 3).
pub fn auth_error(message: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(Classified {
        failure: Failure::Auth,
        message: message.into(),
    })
}

/// A TLS or configuration failure (exit code 4).
pub fn config_error(message: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(Classified {
        failure: Failure::Config,
        message: message.into(),
    })
}

/// The failure class of `err`, if any cause in its chain has one.
pub fn failure_of(err: &anyhow::Error) -> Option<Failure> {
    err.chain()
        .find_map(|cause| cause.downcast_ref::<Classified>())
        .map(|c| c.failure)
}

/// Whether retrying cannot help (authentication or configuration problems).
pub fn is_permanent(err: &anyhow::Error) -> bool {
    failure_of(err).is_some()
}

/// The process exit code for `err`.
pub fn exit_code(err: &anyhow::Error) -> u8 {
    match failure_of(err) {
        Some(Failure::Auth) => EXIT_AUTH,
        Some(Failure::Config) => EXIT_CONFIG,
        None => EXIT_RUNTIME,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn classification_survives_context() {
        let err = Err::<(), _>(auth_error("wrong token"))
            .context("connecting to 127.0.0.1:1")
            .unwrap_err();
        assert_eq!(exit_code(&err), EXIT_AUTH);
        assert!(is_permanent(&err));
        let err = Err::<(), _>(config_error("bad pin"))
            .context("tls")
            .unwrap_err();
        assert_eq!(exit_code(&err), EXIT_CONFIG);
        assert_eq!(exit_code(&anyhow::anyhow!("refused")), EXIT_RUNTIME);
    }
}
