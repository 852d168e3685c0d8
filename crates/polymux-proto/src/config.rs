//! Session configuration: the dialect and every knob, validated once when built.
//!
//! # Memory bounds
//!
//! For one session, with the defaults of [`Config::yamux`]:
//!
//! | what | bound | default |
//! |---|---|---|
//! | receive memory of one stream | the credit granted to the peer: ≤ [`max_stream_window`](Config::max_stream_window) | 256 KiB, auto-tuned up to 16 MiB |
//! | receive memory of all streams | [`session_recv_budget`](Config::session_recv_budget), charged for the memory held (below): when the next piece does not fit, the session stops reading the transport until applications read | 32 MiB |
//! | receive memory of all sessions sharing a [`MemoryBudget`] | [`memory_budget`](Config::memory_budget): a session may hold its share, `max(limit / sessions, min_share)`; beyond that only while the pool is below its limit, else it stops reading until memory is freed in the pool. The pool's use stays within `limit + sessions × share` (sessions under their share may still take it when the pool is full) | none (min_share 512 KiB) |
//! | uncharged receive overhead | per session: the pin table (≤ 80 B per pinned buffer) and the input buffer being decoded; per stream that has received data: its slot ring box, ≤ 832 B once drained | fixed |
//! | send memory (all streams) | [`write_budget`](Config::write_budget): writes return `Pending` when it is full | 1 MiB |
//! | receive buffers of the async driver (`polymux`) | 128 KiB buffers: those that streams' unread slices pin (within the 16 × bound below), and at most `session_recv_budget / 128 KiB + 33` tracked for reuse while data flows; the free ones dropped after a quiet second | budget + 4 MiB tracked |
//! | control frames waiting to be written | 64 KiB: beyond it the session stops reading the transport | fixed |
//! | inbound streams not yet accepted | [`accept_backlog`](Config::accept_backlog): beyond it new streams are refused (RST, or FIN on smux) | 256 |
//! | outbound streams not yet acknowledged | [`max_unacked_outbound`](Config::max_unacked_outbound): `open()` waits beyond it (yamux) | 256 |
//! | live streams | [`max_streams`](Config::max_streams) | 65 536 |
//!
//! What the receive budget charges is the heap held, not payload: small payloads (under 8 KiB)
//! are copied into per-stream chunks of up to 4 KiB, appended back to back, and charged each
//! chunk's whole allocation; queued pieces are charged their slots (48 B each, the ring's whole
//! capacity); payloads of at least 8 KiB are zero-copy slices of the receive buffer, and the
//! first slice of a buffer charges the *whole* buffer (128 KiB in the async driver) until its
//! last slice is read — or, if that does not fit, the payload is copied out instead. So the
//! invariant "heap held for received data ≤ `session_recv_budget`, plus the uncharged overhead
//! above" holds for any frame sizes and interleavings: a flood of 1-byte frames or small
//! slices pinning big buffers hits the budget at the same heap as one large frame. An idle
//! stream holds no buffer.

use std::fmt;
use std::time::Duration;

use crate::codec::Dialect;
use crate::memory::MemoryBudget;

/// The window every yamux and net-mux stream starts with, fixed by the protocol.
pub const PROTOCOL_INITIAL_WINDOW: u32 = 256 * 1024;

/// The largest Data payload net-mux 1.x accepts (its default `max_frame_size`).
const NET_MUX_MAX_FRAME: u32 = 64 * 1024;

/// Validated session configuration. Build one with a preset ([`Config::yamux`], …) and adjust
/// it with [`Config::builder`]-style setters on [`ConfigBuilder`].
///
/// ```
/// use std::time::Duration;
/// use polymux_proto::Config;
///
/// let config = Config::yamux()
///     .to_builder()
///     .keepalive_interval(Some(Duration::from_secs(10)))
///     .accept_backlog(1024)
///     .build()
///     .expect("a valid configuration");
/// assert_eq!(config.accept_backlog(), 1024);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    dialect: Dialect,
    stream_window: u32,
    max_stream_window: u32,
    session_recv_budget: usize,
    write_budget: usize,
    max_frame_payload: u32,
    accept_backlog: usize,
    max_unacked_outbound: usize,
    max_streams: usize,
    keepalive_interval: Option<Duration>,
    keepalive_timeout: Duration,
    close_timeout: Duration,
    memory_budget: Option<MemoryBudget>,
}

impl Config {
    /// yamux with the defaults described on each getter.
    pub fn yamux() -> Config {
        Config {
            dialect: Dialect::Yamux,
            stream_window: PROTOCOL_INITIAL_WINDOW,
            max_stream_window: 16 * 1024 * 1024,
            session_recv_budget: 32 * 1024 * 1024,
            write_budget: 1024 * 1024,
            max_frame_payload: 64 * 1024,
            accept_backlog: 256,
            max_unacked_outbound: 256,
            max_streams: 65_536,
            keepalive_interval: Some(Duration::from_secs(30)),
            keepalive_timeout: Duration::from_secs(15),
            close_timeout: Duration::from_secs(5),
            memory_budget: None,
        }
    }

    /// smux version 1: no per-stream flow control (memory is bounded by the session budget
    /// alone, so one unread stream can stall the others once the budget is full), NOP
    /// keep-alive every 10 s, frames split at 32 KiB like Go's default.
    pub fn smux_v1() -> Config {
        Config {
            dialect: Dialect::SmuxV1,
            max_frame_payload: 32 * 1024,
            keepalive_interval: Some(Duration::from_secs(10)),
            keepalive_timeout: Duration::from_secs(30),
            ..Config::yamux()
        }
    }

    /// smux version 2: v1 plus per-stream windows (UPD frames), so a slow reader only stalls
    /// its own stream.
    pub fn smux_v2() -> Config {
        Config {
            dialect: Dialect::SmuxV2,
            ..Config::smux_v1()
        }
    }

    /// net-mux 1.x.
    pub fn net_mux() -> Config {
        Config {
            dialect: Dialect::NetMux,
            ..Config::yamux()
        }
    }

    /// The preset for `dialect`.
    pub fn for_dialect(dialect: Dialect) -> Config {
        match dialect {
            Dialect::Yamux => Config::yamux(),
            Dialect::SmuxV1 => Config::smux_v1(),
            Dialect::SmuxV2 => Config::smux_v2(),
            Dialect::NetMux => Config::net_mux(),
        }
    }

    /// A builder starting from this configuration.
    pub fn to_builder(&self) -> ConfigBuilder {
        ConfigBuilder {
            config: self.clone(),
        }
    }

    /// The wire protocol.
    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// Receive window each stream starts with, in bytes. yamux and net-mux streams always start
    /// at 256 KiB on the wire; a larger value is announced with the open/accept. Default 256 KiB.
    ///
    /// smux v2: a peer may send the protocol's initial 256 KiB before our first UPD reaches it,
    /// so a stream's receive memory is bounded by the larger of this and 256 KiB. smux v1 has
    /// no flow control: this, [`max_stream_window`](Self::max_stream_window) and
    /// [`max_unacked_outbound`](Self::max_unacked_outbound) do not apply; the session receive
    /// budget alone bounds memory.
    pub fn stream_window(&self) -> u32 {
        self.stream_window
    }

    /// Upper bound for auto-tuning a stream's receive window. Default 16 MiB. Auto-tuning
    /// also keeps the sum of grown windows within half the
    /// [`session_recv_budget`](Self::session_recv_budget) (and, with a
    /// [`memory_budget`](Self::memory_budget), half its
    /// [`min_share`](MemoryBudget::min_share): raise that for faster single streams), leaving
    /// the other half for the memory overhead of received pieces.
    pub fn max_stream_window(&self) -> u32 {
        self.max_stream_window
    }

    /// Heap that received-but-unread data may hold, over all streams. Default 32 MiB.
    ///
    /// What is charged is memory, not payload: the whole allocations of the chunks small
    /// payloads are merged into, each stream's slot ring, and the whole receive buffer a
    /// zero-copy slice keeps alive (once per buffer). When the next piece does not fit, the
    /// session stops reading its transport until applications read (back-pressure, never
    /// loss), whatever the frame sizes. See the memory bounds in the module docs.
    pub fn session_recv_budget(&self) -> usize {
        self.session_recv_budget
    }

    /// A memory limit shared with other sessions, if any. Default none.
    ///
    /// Each session charges its receive memory (as for
    /// [`session_recv_budget`](Self::session_recv_budget)) to the pool as well. A session may
    /// always hold its share of the pool (`limit / sessions`, at least the pool's minimum
    /// share); beyond that, only while the pool is below its limit. When the pool is full the sessions holding more than their
    /// share stop reading their transports, the others go on, and paused ones resume when
    /// memory is freed anywhere in the pool. See [`MemoryBudget`].
    pub fn memory_budget(&self) -> Option<&MemoryBudget> {
        self.memory_budget.as_ref()
    }

    /// Bytes accepted from writers but not yet written to the transport. Default 1 MiB.
    pub fn write_budget(&self) -> usize {
        self.write_budget
    }

    /// Largest payload of one outbound data frame. Default 64 KiB (yamux, net-mux), 32 KiB (smux).
    pub fn max_frame_payload(&self) -> u32 {
        self.max_frame_payload
    }

    /// Inbound streams waiting for `accept()`; more are refused. Default 256.
    ///
    /// Data that arrives on a stream before it is accepted counts against the
    /// [`session_recv_budget`](Self::session_recv_budget) like any unread data, so an
    /// application that never accepts, while its peer opens streams and writes to them, sees
    /// input pause once the budget is full (back-pressure, not loss). Such an application
    /// should accept and drop what it does not want, or keep `accept_backlog` × 256 KiB below
    /// the budget.
    pub fn accept_backlog(&self) -> usize {
        self.accept_backlog
    }

    /// Outbound streams the peer has not acknowledged yet; `open()` waits beyond. Default 256.
    pub fn max_unacked_outbound(&self) -> usize {
        self.max_unacked_outbound
    }

    /// Live streams (both directions). Default 65 536.
    pub fn max_streams(&self) -> usize {
        self.max_streams
    }

    /// How often to send a keep-alive (Ping, or NOP on smux); `None` disables it.
    /// Default 30 s (yamux, net-mux), 10 s (smux).
    ///
    /// On smux, `None` also disables dead-peer detection (it works by silence, and without our
    /// NOPs a quiet session is indistinguishable from a dead one), and Go peers close a session
    /// that sent them nothing for 30 s: keep it on unless the application keeps traffic flowing.
    pub fn keepalive_interval(&self) -> Option<Duration> {
        self.keepalive_interval
    }

    /// How long a silent peer may stay silent while a keep-alive is unanswered (smux: how long
    /// the peer may send nothing at all) before the session ends with
    /// [`Error::KeepAliveTimeout`](crate::Error::KeepAliveTimeout). Default 15 s (yamux), 30 s (smux).
    pub fn keepalive_timeout(&self) -> Duration {
        self.keepalive_timeout
    }

    /// How long a graceful `close()` waits for open streams to finish. Default 5 s.
    pub fn close_timeout(&self) -> Duration {
        self.close_timeout
    }
}

/// Adjusts a [`Config`]; [`ConfigBuilder::build`] rejects nonsensical combinations.
#[derive(Clone, Debug)]
pub struct ConfigBuilder {
    config: Config,
}

macro_rules! setter {
    ($(#[$doc:meta])* $name:ident: $ty:ty) => {
        $(#[$doc])*
        pub fn $name(mut self, value: $ty) -> Self {
            self.config.$name = value;
            self
        }
    };
}

impl ConfigBuilder {
    setter!(
        /// See [`Config::stream_window`].
        stream_window: u32
    );
    setter!(
        /// See [`Config::max_stream_window`].
        max_stream_window: u32
    );
    setter!(
        /// See [`Config::session_recv_budget`].
        session_recv_budget: usize
    );
    setter!(
        /// See [`Config::write_budget`].
        write_budget: usize
    );
    setter!(
        /// See [`Config::max_frame_payload`].
        max_frame_payload: u32
    );
    setter!(
        /// See [`Config::accept_backlog`].
        accept_backlog: usize
    );
    setter!(
        /// See [`Config::max_unacked_outbound`].
        max_unacked_outbound: usize
    );
    setter!(
        /// See [`Config::max_streams`].
        max_streams: usize
    );
    setter!(
        /// See [`Config::keepalive_interval`].
        keepalive_interval: Option<Duration>
    );
    setter!(
        /// See [`Config::keepalive_timeout`].
        keepalive_timeout: Duration
    );
    setter!(
        /// See [`Config::close_timeout`].
        close_timeout: Duration
    );
    setter!(
        /// See [`Config::memory_budget`].
        memory_budget: Option<MemoryBudget>
    );

    /// Checks the combination and returns the configuration.
    pub fn build(self) -> Result<Config, ConfigError> {
        let c = self.config;
        let fail = |reason: String| Err(ConfigError { reason });
        let protocol_min = match c.dialect {
            Dialect::Yamux | Dialect::NetMux => PROTOCOL_INITIAL_WINDOW,
            Dialect::SmuxV1 | Dialect::SmuxV2 => 1,
        };
        if c.stream_window < protocol_min {
            return fail(format!(
                "stream_window {} is below the {} bytes every {} stream starts with",
                c.stream_window,
                protocol_min,
                c.dialect.name()
            ));
        }
        if c.max_stream_window < c.stream_window {
            return fail(format!(
                "max_stream_window {} is below stream_window {}",
                c.max_stream_window, c.stream_window
            ));
        }
        if c.session_recv_budget < c.stream_window as usize {
            return fail(format!(
                "session_recv_budget {} cannot hold even one stream window of {}",
                c.session_recv_budget, c.stream_window
            ));
        }
        if c.max_frame_payload == 0 || c.max_frame_payload > c.dialect.max_frame_payload() {
            return fail(format!(
                "max_frame_payload {} must be between 1 and {} for {}",
                c.max_frame_payload,
                c.dialect.max_frame_payload(),
                c.dialect.name()
            ));
        }
        if c.dialect == Dialect::NetMux && c.max_frame_payload > NET_MUX_MAX_FRAME {
            return fail(format!(
                "max_frame_payload {} exceeds {NET_MUX_MAX_FRAME}, the largest Data frame net-mux \
                 peers accept (they end the session on a larger one)",
                c.max_frame_payload
            ));
        }
        if c.max_frame_payload > 1024 * 1024 {
            return fail(format!(
                "max_frame_payload {} exceeds 1 MiB, which common yamux peers refuse",
                c.max_frame_payload
            ));
        }
        if c.write_budget < c.max_frame_payload as usize {
            return fail(format!(
                "write_budget {} is smaller than one frame of max_frame_payload {}",
                c.write_budget, c.max_frame_payload
            ));
        }
        if c.accept_backlog == 0 || c.max_unacked_outbound == 0 || c.max_streams == 0 {
            return fail(
                "accept_backlog, max_unacked_outbound and max_streams must be at least 1".into(),
            );
        }
        if c.keepalive_timeout.is_zero() {
            return fail("keepalive_timeout must be positive".into());
        }
        if c.keepalive_interval.is_some_and(|i| i.is_zero()) {
            return fail("keepalive_interval must be positive (use None to disable)".into());
        }
        let silence_based = matches!(c.dialect, Dialect::SmuxV1 | Dialect::SmuxV2);
        if let Some(interval) = c.keepalive_interval.filter(|_| silence_based) {
            if c.keepalive_timeout < interval {
                return fail(format!(
                    "keepalive_timeout {:?} is shorter than keepalive_interval {interval:?}: smux \
                     detects a dead peer by silence, and a peer sending NOPs at the same interval \
                     would be declared dead between two of them",
                    c.keepalive_timeout
                ));
            }
        }
        Ok(c)
    }
}

/// A configuration that makes no sense, with the reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    reason: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid polymux configuration: {}", self.reason)
    }
}

impl std::error::Error for ConfigError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_are_valid() {
        for d in [
            Dialect::Yamux,
            Dialect::SmuxV1,
            Dialect::SmuxV2,
            Dialect::NetMux,
        ] {
            let c = Config::for_dialect(d);
            assert_eq!(c.to_builder().build(), Ok(c.clone()));
            assert_eq!(c.dialect(), d);
        }
    }

    #[test]
    fn nonsense_is_rejected_with_a_reason() {
        let small_window = Config::yamux().to_builder().stream_window(1024).build();
        assert!(small_window.unwrap_err().to_string().contains("262144"));
        let big_smux_frame = Config::smux_v1()
            .to_builder()
            .max_frame_payload(70_000)
            .build();
        assert!(big_smux_frame.unwrap_err().to_string().contains("65535"));
        let tiny_budget = Config::yamux().to_builder().session_recv_budget(10).build();
        assert!(tiny_budget.is_err());
        let zero_backlog = Config::yamux().to_builder().accept_backlog(0).build();
        assert!(zero_backlog.is_err());
        let big_net_mux_frame = Config::net_mux()
            .to_builder()
            .max_frame_payload(64 * 1024 + 1)
            .build();
        assert!(big_net_mux_frame
            .unwrap_err()
            .to_string()
            .contains("net-mux"));
        assert!(Config::yamux()
            .to_builder()
            .max_frame_payload(64 * 1024 + 1)
            .build()
            .is_ok());
        let hasty_smux_timeout = Config::smux_v2()
            .to_builder()
            .keepalive_interval(Some(Duration::from_secs(10)))
            .keepalive_timeout(Duration::from_secs(5))
            .build();
        assert!(hasty_smux_timeout
            .unwrap_err()
            .to_string()
            .contains("by silence"));
        // yamux waits for a Ping's answer, so a timeout below the interval is fine there.
        assert!(Config::yamux()
            .to_builder()
            .keepalive_interval(Some(Duration::from_secs(10)))
            .keepalive_timeout(Duration::from_secs(5))
            .build()
            .is_ok());
    }
}
