//! `--protocol`: the four dialects as command-line values, their code in the authentication
//! preamble, and the session configuration every subcommand derives from them.

use std::time::Duration;

use polymux::{Config, Dialect};
use serde::{Deserialize, Serialize};

use crate::error::config_error;

/// A wire protocol, as spelled on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// yamux (hashicorp/yamux spec).
    Yamux,
    /// smux version 1 (xtaci/smux): no per-stream flow control.
    Smux1,
    /// smux version 2 (xtaci/smux): per-stream windows.
    Smux2,
    /// net-mux 1.x.
    Netmux,
}

impl Protocol {
    /// Every protocol, in the order the bench reports them.
    pub const ALL: [Protocol; 4] = [
        Protocol::Yamux,
        Protocol::Smux1,
        Protocol::Smux2,
        Protocol::Netmux,
    ];

    /// The library dialect.
    pub fn dialect(self) -> Dialect {
        match self {
            Protocol::Yamux => Dialect::Yamux,
            Protocol::Smux1 => Dialect::SmuxV1,
            Protocol::Smux2 => Dialect::SmuxV2,
            Protocol::Netmux => Dialect::NetMux,
        }
    }

    /// The command-line spelling.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Yamux => "yamux",
            Protocol::Smux1 => "smux1",
            Protocol::Smux2 => "smux2",
            Protocol::Netmux => "netmux",
        }
    }

    /// The byte that names this protocol in the authentication preamble.
    pub fn wire_code(self) -> u8 {
        match self {
            Protocol::Yamux => 1,
            Protocol::Smux1 => 2,
            Protocol::Smux2 => 3,
            Protocol::Netmux => 4,
        }
    }

    /// The protocol a preamble byte names.
    pub fn from_wire_code(code: u8) -> Option<Protocol> {
        Protocol::ALL.into_iter().find(|p| p.wire_code() == code)
    }
}

impl std::fmt::Display for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The knobs the subcommands expose on top of a dialect's preset.
#[derive(Clone, Debug)]
pub struct SessionTuning {
    /// Streams one session may carry at once: the engine admits exactly this many (inbound
    /// and outbound together; each CLI session uses one direction only).
    pub max_streams: usize,
    /// Keep-alive interval; `None` disables it.
    pub keepalive: Option<Duration>,
    /// How long `close()` lets open streams finish.
    pub close_timeout: Duration,
    /// Inbound streams that may wait for accept (never more than `max_streams`).
    pub accept_backlog: usize,
    /// `--memory-limit` of a server, shared by its sessions; `None` on clients.
    pub memory: Option<MemoryLimit>,
}

/// A server's `--memory-limit` and how many sessions it admits at once.
#[derive(Clone, Copy, Debug)]
pub struct MemoryLimit {
    /// Bytes.
    pub limit: usize,
    /// Sessions admitted at once (`--max-clients` / `--max-connections`).
    pub sessions: usize,
}

impl Default for SessionTuning {
    fn default() -> Self {
        SessionTuning {
            max_streams: 1024,
            keepalive: Some(Duration::from_secs(15)),
            close_timeout: Duration::from_secs(2),
            accept_backlog: 1024,
            memory: None,
        }
    }
}

/// The session configuration for `protocol` with `tuning` applied.
pub fn session_config(protocol: Protocol, tuning: &SessionTuning) -> anyhow::Result<Config> {
    // Exactly the limit: `--max-streams N` admits N streams, and the engine refuses (and
    // counts) the next. No headroom, so that the limit means what it says.
    let max_streams = tuning.max_streams.clamp(1, 1 << 20);
    // Twice the interval: on smux the timeout is how long the peer may stay silent, and a
    // peer probing at the same interval must not trip it.
    let keepalive_timeout = tuning
        .keepalive
        .map(|i| (i * 2).max(Duration::from_secs(10)))
        .unwrap_or(Duration::from_secs(30));
    let base = Config::for_dialect(protocol.dialect());
    let mut builder = base.to_builder();
    if let Some(memory) = tuning.memory {
        builder = crate::guard::apply_memory_limit(builder, memory.limit, memory.sessions);
    }
    builder
        .max_streams(max_streams)
        .accept_backlog(tuning.accept_backlog.clamp(1, max_streams))
        .keepalive_interval(tuning.keepalive)
        .keepalive_timeout(keepalive_timeout)
        .close_timeout(tuning.close_timeout)
        .build()
        .map_err(|e| {
            config_error(format!(
                "{e}; adjust --max-streams / --keepalive (protocol {protocol})"
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_codes_round_trip_and_configs_build() {
        for p in Protocol::ALL {
            assert_eq!(Protocol::from_wire_code(p.wire_code()), Some(p));
            let config = session_config(p, &SessionTuning::default()).expect("valid");
            assert_eq!(config.dialect(), p.dialect());
        }
        let tuning = SessionTuning {
            max_streams: 100,
            ..SessionTuning::default()
        };
        let config = session_config(Protocol::Smux2, &tuning).expect("valid");
        assert_eq!(config.max_streams(), 100, "N means N");
        assert_eq!(config.accept_backlog(), 100);
        assert_eq!(Protocol::from_wire_code(0), None);
    }
}
