//! Flag groups shared by several subcommands (flattened into them with clap).

use std::path::PathBuf;
use std::time::Duration;

use crate::auth::Token;
use crate::protocol::SessionTuning;
use crate::shutdown::{self, parse_duration};

/// `--token` / `POLYMUX_TOKEN` / `--token-file` on a client.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct ClientAuthArgs {
    /// The shared secret the server requires.
    #[arg(
        long,
        env = "POLYMUX_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub token: Option<String>,
    /// Read the shared secret from this file (first line), instead of --token.
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
}

impl ClientAuthArgs {
    /// The token, if any.
    pub fn token(&self) -> anyhow::Result<Option<Token>> {
        Token::from_args(self.token.as_deref(), self.token_file.as_deref())
    }
}

/// `--token` / `POLYMUX_TOKEN` / `--token-file` / `--insecure-no-token` on a server.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct ServerAuthArgs {
    /// The shared secret clients must present (checked in constant time before anything is
    /// served). Prefer POLYMUX_TOKEN or --token-file: command lines are visible to other users.
    #[arg(
        long,
        env = "POLYMUX_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
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
        Token::from_args(self.token.as_deref(), self.token_file.as_deref())
    }
}

/// Session knobs.
#[derive(clap::Args, Clone, Debug)]
pub struct SessionArgs {
    /// Concurrent streams per session; beyond it new streams are refused with a message.
    #[arg(long, value_name = "N", default_value_t = 1024)]
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
    /// Longest wait between reconnection attempts (the wait doubles from 500ms up to this).
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    pub max_backoff: Duration,
    /// Give up (exit 1) after this many consecutive failed attempts [default: never].
    #[arg(long, value_name = "N")]
    pub max_retries: Option<u32>,
}
