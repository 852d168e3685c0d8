//! Flag groups shared by several subcommands (flattened into them with clap).
//!
//! [`ServerGuardArgs`] carries the flags that keep every server (echo, tunnel server, forward
//! server) usable under hostile load: how long an unproven connection may take to speak
//! (`--handshake-timeout`), how long a silent one is kept (`--idle-timeout`), the memory the
//! sessions may hold (`--memory-limit`) and the listen backlog (`--backlog`).

use std::path::PathBuf;
use std::time::Duration;

use crate::auth::{Token, TOKEN_ENV};
use crate::error::config_error;
use crate::protocol::SessionTuning;
use crate::shutdown::{self, parse_duration};

/// `--token` / `POLYMUX_TOKEN` / `--token-file` on a client.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct ClientAuthArgs {
    /// The shared secret the server requires [env: POLYMUX_TOKEN].
    // The environment variable is read in `token()`, not by clap: clap would list an argument
    // taken from the environment in the usage line of any usage error, as if it were required.
    #[arg(long, value_name = "TOKEN")]
    pub token: Option<String>,
    /// Read the shared secret from this file (first line), instead of --token.
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
}

impl ClientAuthArgs {
    /// The token, if any.
    pub fn token(&self) -> anyhow::Result<Option<Token>> {
        Token::from_args(
            token_or_env(&self.token)?.as_deref(),
            self.token_file.as_deref(),
        )
    }
}

/// `--token` / `POLYMUX_TOKEN` / `--token-file` / `--insecure-no-token` on a server.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct ServerAuthArgs {
    /// The shared secret clients must present (checked in constant time before anything is
    /// served). Prefer POLYMUX_TOKEN or --token-file: command lines are visible to other users.
    /// [env: POLYMUX_TOKEN]
    // Read in `token()`, not by clap: see `ClientAuthArgs::token`.
    #[arg(long, value_name = "TOKEN")]
    pub token: Option<String>,
    /// Read the shared secret from this file (first line), instead of --token.
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// Run without a token. Accepted only when --listen is a loopback address.
    #[arg(long)]
    pub insecure_no_token: bool,
}

impl ServerAuthArgs {
    /// The token, if any.
    pub fn token(&self) -> anyhow::Result<Option<Token>> {
        Token::from_args(
            token_or_env(&self.token)?.as_deref(),
            self.token_file.as_deref(),
        )
    }
}

/// `--token`, or else `POLYMUX_TOKEN` (set but empty counts as given, and is refused as empty).
fn token_or_env(flag: &Option<String>) -> anyhow::Result<Option<String>> {
    if flag.is_some() {
        return Ok(flag.clone());
    }
    match std::env::var(TOKEN_ENV) {
        Ok(value) => Ok(Some(value)),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => Err(config_error(format!(
            "{TOKEN_ENV} is not valid UTF-8; use --token-file instead"
        ))),
    }
}

/// Session knobs.
#[derive(clap::Args, Clone, Debug)]
pub struct SessionArgs {
    /// Concurrent streams per session: exactly this many are admitted, the next is refused
    /// (refusals are logged at info, once per second at most).
    #[arg(long, value_name = "N", default_value_t = 4096)]
    pub max_streams: usize,
    /// Keep-alive interval (e.g. 15s); 0 disables it. A peer that stays silent too long
    /// ends the session (and a client reconnects).
    #[arg(long, value_name = "DURATION", default_value = "15s", value_parser = parse_duration)]
    pub keepalive: Duration,
}

impl SessionArgs {
    /// The tuning for [`crate::protocol::session_config`].
    pub fn tuning(&self) -> SessionTuning {
        SessionTuning {
            max_streams: self.max_streams,
            keepalive: (!self.keepalive.is_zero()).then_some(self.keepalive),
            ..SessionTuning::default()
        }
    }
}

/// `--shutdown-timeout`.
#[derive(clap::Args, Clone, Debug)]
pub struct ShutdownArgs {
    /// After Ctrl-C/SIGTERM, how long open connections may take to finish before they are
    /// cut off.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    pub shutdown_timeout: Duration,
}

impl Default for ShutdownArgs {
    fn default() -> Self {
        ShutdownArgs {
            shutdown_timeout: shutdown::DEFAULT_TIMEOUT,
        }
    }
}

/// Reconnection policy of clients.
#[derive(clap::Args, Clone, Debug)]
pub struct ReconnectArgs {
    /// Longest wait between reconnection attempts: the wait starts at 100ms and doubles up to
    /// this (±20% jitter); a session that lasted 10s starts the next wait over at 100ms.
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = parse_duration)]
    pub max_backoff: Duration,
    /// Give up (exit 1) after this many consecutive failed attempts [default: never].
    #[arg(long, value_name = "N")]
    pub max_retries: Option<u32>,
}

/// The default of `--backlog`: a burst of a thousand connects waits in the kernel instead of
/// paying a SYN retransmit (the kernel caps it at `net.core.somaxconn`).
pub const DEFAULT_BACKLOG: u32 = 1024;

/// `--backlog`.
#[derive(clap::Args, Clone, Debug)]
pub struct BacklogArgs {
    /// Listen backlog: connections the kernel queues before they are accepted (capped by
    /// net.core.somaxconn).
    #[arg(long, value_name = "N", default_value_t = DEFAULT_BACKLOG)]
    pub backlog: u32,
}

/// The hardening flags of every server (echo, tunnel server, forward server).
#[derive(clap::Args, Clone, Debug)]
pub struct ServerGuardArgs {
    /// A new connection must complete its handshake (echo: send its first bytes; tunnel and
    /// forward: TLS and the token) within this, or it is closed. Until then it holds no
    /// connection slot; when 1024 connections are in handshake at once, the oldest is dropped.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_positive_duration)]
    pub handshake_timeout: Duration,
    /// A connection from which nothing at all has arrived for this long (not even a keep-alive)
    /// is closed and frees its slot; 0 disables it. Keep it above the clients' keep-alive
    /// interval.
    #[arg(long, value_name = "DURATION", default_value = "2m", value_parser = parse_duration)]
    pub idle_timeout: Duration,
    /// Memory for data received but not yet consumed, over all sessions (e.g. 256MiB, 1GiB);
    /// each session gets an equal share of it for its --max-clients/--max-connections.
    #[arg(long, value_name = "SIZE", default_value = "256MiB", value_parser = parse_size)]
    pub memory_limit: usize,
    #[command(flatten)]
    pub backlog: BacklogArgs,
}

impl ServerGuardArgs {
    /// `--idle-timeout`, `None` when disabled.
    pub fn idle_timeout(&self) -> Option<Duration> {
        (!self.idle_timeout.is_zero()).then_some(self.idle_timeout)
    }
}

fn parse_positive_duration(s: &str) -> Result<Duration, String> {
    match parse_duration(s)? {
        d if d.is_zero() => Err("must be more than 0".into()),
        d => Ok(d),
    }
}

/// Parses a size: `4096`, `64KiB`, `256MiB`, `1GiB` (`K`/`KB`/`M`/`MB`/`G`/`GB` mean the same
/// powers of 1024).
pub fn parse_size(s: &str) -> Result<usize, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let value: usize = number
        .parse()
        .map_err(|_| format!("{s:?} is not a size; use e.g. 256MiB, 1GiB, 65536"))?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        other => {
            return Err(format!(
                "unknown unit {other:?} in {s:?}; use KiB, MiB or GiB"
            ))
        }
    };
    value
        .checked_mul(1 << shift)
        .filter(|&bytes| bytes >= 1 << 20)
        .ok_or_else(|| format!("{s:?} is out of range (at least 1MiB)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("256MiB"), Ok(256 << 20));
        assert_eq!(parse_size("1g"), Ok(1 << 30));
        assert_eq!(parse_size("2097152"), Ok(2 << 20));
        assert!(parse_size("12").is_err());
        assert!(parse_size("lots").is_err());
        assert!(parse_size("5 TiB").is_err());
    }
}
