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
//! | send memory (all streams) | [`write_budget`](Config::write_budget): writes return `Pending` when it is full; one stream's unsent data at most a quarter of it (the others always find room); drained stream outboxes and written 64 KiB outbox segments kept for reuse (each set ≤ the budget), dropped after a quiet second | 1 MiB |
//! | receive buffers of the async driver (`polymux`) | 128 KiB buffers: those that streams' unread slices pin (charged to the receive budget, below), and at most `session_recv_budget / 128 KiB + 33` tracked for reuse while data flows; the free ones dropped after a quiet second | budget + 4 MiB tracked |
//! | control frames waiting to be written | 64 KiB: beyond it the session stops reading the transport | fixed |
//! | inbound streams not yet accepted | [`accept_backlog`](Config::accept_backlog): beyond it new streams are refused (RST, or FIN on smux) | 256 |
//! | outbound streams not yet acknowledged | [`max_unacked_outbound`](Config::max_unacked_outbound): `open()` waits beyond it (yamux) | 256 |
//! | live streams | [`max_streams`](Config::max_streams) | 65 536 |
//! | time output may wait on a peer that does not read | [`write_timeout`](Config::write_timeout): then the session ends with `WriteTimeout`, freeing all of the above | 30 s |
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
//!
//! Before input pauses, buffers charged well beyond their unread slices (their other slices
//! read already) have those slices copied out and are freed, so a session pauses when unread
//! *payload* fills the budget, not the buffers around it; while that copy runs, the heap may
//! exceed the charge by one receive buffer's unread bytes. A peer that stays within its credit
//! then never pauses the session as long as the credit of all streams fits in the budget
//! (about 120 streams at the 256 KiB initial window in the default 32 MiB). Beyond that, an application that
//! waits for its writes before it reads (an echo) can stall with input paused: the window
//! update its write waits for is behind data the session no longer reads. Raise the budget
//! for such applications with many busy streams.

use std::fmt;
use std::time::Duration;

use crate::codec::Dialect;
use crate::memory::MemoryBudget;

/// The window every yamux and net-mux stream starts with, fixed by the protocol.
pub const PROTOCOL_INITIAL_WINDOW: u32 = 256 * 1024;

/// The largest Data payload net-mux 1.x accepts (its default `max_frame_size`).
const NET_MUX_MAX_FRAME: u32 = 64 * 1024;
/// Validated session configuration. Build one with a preset ([`Config::yamux`], …) and adjust
/// it with the setters of [`ConfigBuilder`] ([`Config::to_builder`], then
/// [`ConfigBuilder::build`]).
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
    write_timeout: Option<Duration>,
    memory_budget: Option<MemoryBudget>,
}

impl Config {
    /// yamux with the defaults described on each getter.
    ///
    /// ```
    /// use polymux_proto::{Config, Dialect};
    ///
    /// let config = Config::yamux();
    /// assert_eq!(config.dialect(), Dialect::Yamux);
    /// assert_eq!(config.stream_window(), 256 * 1024);
    /// ```
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
            write_timeout: Some(Duration::from_secs(30)),
            memory_budget: None,
        }
    }

    /// smux version 1: no per-stream flow control (memory is bounded by the session budget
    /// alone, so one unread stream can stall the others once the budget is full), NOP
    /// keep-alive every 10 s, frames split at 32 KiB like Go's default.
    ///
    /// ```
    /// use polymux_proto::Config;
    ///
    /// let config = Config::smux_v1();
    /// assert_eq!(config.max_frame_payload(), 32 * 1024);
    /// assert_eq!(config.keepalive_interval(), Some(std::time::Duration::from_secs(10)));
    /// ```
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
    ///
    /// ```
    /// use polymux_proto::{Config, Dialect};
    ///
    /// assert_eq!(Config::smux_v2().dialect(), Dialect::SmuxV2);
    /// ```
    pub fn smux_v2() -> Config {
        Config {
            dialect: Dialect::SmuxV2,
            ..Config::smux_v1()
        }
    }

    /// net-mux 1.x.
    ///
    /// ```
    /// use polymux_proto::{Config, Dialect};
    ///
    /// assert_eq!(Config::net_mux().dialect(), Dialect::NetMux);
    /// ```
    pub fn net_mux() -> Config {
        Config {
            dialect: Dialect::NetMux,
            ..Config::yamux()
        }
    }

    /// The preset for `dialect`.
    ///
    /// ```
    /// use polymux_proto::{Config, Dialect};
    ///
    /// assert_eq!(Config::for_dialect(Dialect::SmuxV2), Config::smux_v2());
    /// ```
    pub fn for_dialect(dialect: Dialect) -> Config {
        match dialect {
            Dialect::Yamux => Config::yamux(),
            Dialect::SmuxV1 => Config::smux_v1(),
            Dialect::SmuxV2 => Config::smux_v2(),
            Dialect::NetMux => Config::net_mux(),
        }
    }

    /// A builder starting from this configuration.
    ///
    /// ```
    /// use polymux_proto::Config;
    ///
    /// let base = Config::yamux();
    /// let bigger = base.to_builder().accept_backlog(1024).build()?;
    /// assert_eq!(bigger.accept_backlog(), 1024);
    /// assert_eq!(bigger.max_streams(), base.max_streams()); // the rest is unchanged
    /// # Ok::<(), polymux_proto::ConfigError>(())
    /// ```
    pub fn to_builder(&self) -> ConfigBuilder {
        ConfigBuilder {
            config: self.clone(),
        }
    }

    /// The wire protocol.
    ///
    /// ```
    /// use polymux_proto::{Config, Dialect};
    ///
    /// assert_eq!(Config::smux_v1().dialect(), Dialect::SmuxV1);
    /// ```
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
    ///
    /// ```
    /// use polymux_proto::Config;
    ///
    /// let config = Config::yamux().to_builder().stream_window(1 << 20).build()?;
    /// assert_eq!(config.stream_window(), 1 << 20);
    /// // Below the 256 KiB every yamux stream starts with: rejected.
    /// assert!(Config::yamux().to_builder().stream_window(1024).build().is_err());
    /// # Ok::<(), polymux_proto::ConfigError>(())
    /// ```
    pub fn stream_window(&self) -> u32 {
        self.stream_window
    }

    /// Upper bound for auto-tuning a stream's receive window. Default 16 MiB. Auto-tuning
    /// also keeps the sum of grown windows within half the
    /// [`session_recv_budget`](Self::session_recv_budget) (and, with a
    /// [`memory_budget`](Self::memory_budget), half its
    /// [`min_share`](MemoryBudget::min_share): raise that for faster single streams), leaving
    /// the other half for the memory overhead of received pieces.
    ///
    /// ```
    /// use polymux_proto::Config;
    ///
    /// let config = Config::yamux().to_builder().max_stream_window(4 << 20).build()?;
    /// assert_eq!(config.max_stream_window(), 4 << 20);
    /// # Ok::<(), polymux_proto::ConfigError>(())
    /// ```
    pub fn max_stream_window(&self) -> u32 {
        self.max_stream_window
    }

    /// Heap that received-but-unread data may hold, over all streams. Default 32 MiB.
    ///
    /// What is charged is memory, not payload: the whole allocations of the chunks small
    /// payloads are merged into, each stream's slot ring, and the whole receive buffer a
    /// zero-copy slice keeps alive (once per buffer). When the next piece does not fit, even
    /// after the unread slices of such buffers are copied out, the session stops reading its
    /// transport until applications read (back-pressure, never loss), whatever the frame
    /// sizes. See the memory bounds in the module docs, and what a budget smaller than the
    /// streams' credit means for applications that write before they read.
    ///
    /// ```
    /// use polymux_proto::Config;
    ///
    /// let config = Config::yamux().to_builder().session_recv_budget(8 << 20).build()?;
    /// assert_eq!(config.session_recv_budget(), 8 << 20);
    /// # Ok::<(), polymux_proto::ConfigError>(())
    /// ```
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
    ///
    /// ```
    /// use polymux_proto::Config;
    ///
    /// let config = Config::yamux().to_builder().write_budget(4 << 20).build()?;
    /// assert_eq!(config.write_budget(), 4 << 20);
    /// # Ok::<(), polymux_proto::ConfigError>(())
    /// ```
    pub fn write_budget(&self) -> usize {
        self.write_budget
    }

    /// Largest payload of one outbound data frame. Default 64 KiB (yamux, net-mux), 32 KiB (smux).
    ///
    /// ```
    /// use polymux_proto::Config;
    ///
    /// let config = Config::yamux().to_builder().max_frame_payload(16 * 1024).build()?;
    /// assert_eq!(config.max_frame_payload(), 16 * 1024);
    /// // smux's length field has 16 bits.
    /// assert!(Config::smux_v2().to_builder().max_frame_payload(70_000).build().is_err());
    /// # Ok::<(), polymux_proto::ConfigError>(())
    /// ```
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
    ///
    /// ```
    /// use polymux_proto::Config;
    ///
    /// let config = Config::yamux().to_builder().accept_backlog(16).build()?;
    /// assert_eq!(config.accept_backlog(), 16);
    /// # Ok::<(), polymux_proto::ConfigError>(())
    /// ```
    pub fn accept_backlog(&self) -> usize {
        self.accept_backlog
    }

    /// Outbound streams the peer has not acknowledged yet; `open()` waits beyond. Default 256.
    ///
    /// ```
    /// use polymux_proto::Config;
    ///
    /// let config = Config::yamux().to_builder().max_unacked_outbound(64).build()?;
    /// assert_eq!(config.max_unacked_outbound(), 64);
    /// # Ok::<(), polymux_proto::ConfigError>(())
    /// ```
    pub fn max_unacked_outbound(&self) -> usize {
        self.max_unacked_outbound
    }

    /// Live streams (both directions). Default 65 536.
    ///
    /// ```
    /// use polymux_proto::Config;
    ///
    /// let config = Config::yamux().to_builder().max_streams(1000).build()?;
    /// assert_eq!(config.max_streams(), 1000);
    /// # Ok::<(), polymux_proto::ConfigError>(())
    /// ```
    pub fn max_streams(&self) -> usize {
        self.max_streams
    }

    /// How often to send a keep-alive (Ping, or NOP on smux); `None` disables it.
    /// Default 30 s (yamux, net-mux), 10 s (smux).
    ///
    /// On smux, `None` also disables dead-peer detection (it works by silence, and without our
    /// NOPs a quiet session is indistinguishable from a dead one), and Go peers close a session
    /// that sent them nothing for 30 s: keep it on unless the application keeps traffic flowing.
    ///
    /// ```
    /// use std::time::Duration;
    /// use polymux_proto::Config;
    ///
    /// let quiet = Config::yamux().to_builder().keepalive_interval(None).build()?;
    /// assert_eq!(quiet.keepalive_interval(), None);
    /// let chatty = Config::yamux()
    ///     .to_builder()
    ///     .keepalive_interval(Some(Duration::from_secs(5)))
    ///     .build()?;
    /// assert_eq!(chatty.keepalive_interval(), Some(Duration::from_secs(5)));
    /// # Ok::<(), polymux_proto::ConfigError>(())
    /// ```
    pub fn keepalive_interval(&self) -> Option<Duration> {
        self.keepalive_interval
    }

    /// How long a silent peer may stay silent while a keep-alive is unanswered (smux: how long
    /// the peer may send nothing at all) before the session ends with
    /// [`Error::KeepAliveTimeout`](crate::Error::KeepAliveTimeout). Default 15 s (yamux), 30 s (smux).
    ///
    /// Silence counts only while this side reads: while input is paused (receive budget or
    /// control queue full) it is ours, unless the driver reads ahead during a budget pause
    /// (the `polymux` driver does, up to [`PAUSED_READ_AHEAD`](crate::PAUSED_READ_AHEAD)
    /// bytes), in which case anything arriving proves the peer alive and nothing arriving
    /// still times it out. A peer that stops *reading* is caught by
    /// [`write_timeout`](Self::write_timeout).
    ///
    /// ```
    /// use std::time::Duration;
    /// use polymux_proto::Config;
    ///
    /// let config = Config::yamux()
    ///     .to_builder()
    ///     .keepalive_timeout(Duration::from_secs(5))
    ///     .build()?;
    /// assert_eq!(config.keepalive_timeout(), Duration::from_secs(5));
    /// # Ok::<(), polymux_proto::ConfigError>(())
    /// ```
    pub fn keepalive_timeout(&self) -> Duration {
        self.keepalive_timeout
    }

    /// How long a graceful `close()` waits for open streams to finish. Default 5 s.
    ///
    /// ```
    /// use std::time::Duration;
    /// use polymux_proto::Config;
    ///
    /// let config = Config::yamux()
    ///     .to_builder()
    ///     .close_timeout(Duration::from_secs(1))
    ///     .build()?;
    /// assert_eq!(config.close_timeout(), Duration::from_secs(1));
    /// # Ok::<(), polymux_proto::ConfigError>(())
    /// ```
    pub fn close_timeout(&self) -> Duration {
        self.close_timeout
    }

    /// How long output may wait while the transport accepts none of it before the session
    /// ends with [`Error::WriteTimeout`](crate::Error::WriteTimeout); `None` waits forever.
    /// Default 30 s, every dialect.
    ///
    /// This is how a peer that stopped reading is detected: its keep-alive answers may still
    /// arrive (or, while our input is paused, cannot), so only the write side can tell. Any
    /// byte the transport accepts restarts the clock, so a slow reader is never cut off. The
    /// driver reports when a write or flush makes no progress and when it does
    /// ([`Connection::handle_write_blocked`](crate::Connection::handle_write_blocked),
    /// [`Connection::handle_write_progress`](crate::Connection::handle_write_progress)).
    pub fn write_timeout(&self) -> Option<Duration> {
        self.write_timeout
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
        /// See [`Config::write_timeout`].
        write_timeout: Option<Duration>
    );
    setter!(
        /// See [`Config::memory_budget`].
        memory_budget: Option<MemoryBudget>
    );

    /// Checks the combination and returns the configuration, or the first rule it breaks.
    ///
    /// ```
    /// use polymux_proto::{Config, ConfigError};
    ///
    /// let err = Config::yamux().to_builder().max_streams(0).build().unwrap_err();
    /// assert_eq!(err, ConfigError::ZeroLimit { setting: "max_streams" });
    /// assert_eq!(
    ///     err.to_string(),
    ///     "invalid polymux configuration: max_streams must be at least 1"
    /// );
    /// ```
    pub fn build(self) -> Result<Config, ConfigError> {
        /// The largest frame payload on any dialect: the Rust `yamux` crate refuses inbound
        /// frames over 1 MiB.
        const PEER_MAX_FRAME: u32 = 1024 * 1024;
        let c = self.config;
        let dialect = c.dialect;
        let protocol_min = match dialect {
            Dialect::Yamux | Dialect::NetMux => PROTOCOL_INITIAL_WINDOW,
            Dialect::SmuxV1 | Dialect::SmuxV2 => 1,
        };
        if c.stream_window < protocol_min {
            return Err(ConfigError::StreamWindowBelowProtocol {
                stream_window: c.stream_window,
                minimum: protocol_min,
                dialect,
            });
        }
        if c.max_stream_window < c.stream_window {
            return Err(ConfigError::MaxStreamWindowBelowStreamWindow {
                max_stream_window: c.max_stream_window,
                stream_window: c.stream_window,
            });
        }
        if c.session_recv_budget < c.stream_window as usize {
            return Err(ConfigError::RecvBudgetBelowStreamWindow {
                session_recv_budget: c.session_recv_budget,
                stream_window: c.stream_window,
            });
        }
        if c.max_frame_payload == 0 || c.max_frame_payload > dialect.max_frame_payload() {
            return Err(ConfigError::FramePayloadOutOfRange {
                max_frame_payload: c.max_frame_payload,
                maximum: dialect.max_frame_payload(),
                dialect,
            });
        }
        if dialect == Dialect::NetMux && c.max_frame_payload > NET_MUX_MAX_FRAME {
            return Err(ConfigError::FramePayloadAboveNetMuxLimit {
                max_frame_payload: c.max_frame_payload,
                maximum: NET_MUX_MAX_FRAME,
            });
        }
        if c.max_frame_payload > PEER_MAX_FRAME {
            return Err(ConfigError::FramePayloadAbovePeerLimit {
                max_frame_payload: c.max_frame_payload,
                maximum: PEER_MAX_FRAME,
            });
        }
        if c.write_budget < c.max_frame_payload as usize {
            return Err(ConfigError::WriteBudgetBelowFrame {
                write_budget: c.write_budget,
                max_frame_payload: c.max_frame_payload,
            });
        }
        for (setting, value) in [
            ("accept_backlog", c.accept_backlog),
            ("max_unacked_outbound", c.max_unacked_outbound),
            ("max_streams", c.max_streams),
        ] {
            if value == 0 {
                return Err(ConfigError::ZeroLimit { setting });
            }
        }
        if c.keepalive_timeout.is_zero() {
            return Err(ConfigError::ZeroKeepaliveTimeout);
        }
        if c.write_timeout.is_some_and(|t| t.is_zero()) {
            return Err(ConfigError::ZeroWriteTimeout);
        }
        if c.keepalive_interval.is_some_and(|i| i.is_zero()) {
            return Err(ConfigError::ZeroKeepaliveInterval);
        }
        let silence_based = matches!(dialect, Dialect::SmuxV1 | Dialect::SmuxV2);
        if let Some(interval) = c.keepalive_interval.filter(|_| silence_based) {
            if c.keepalive_timeout < interval {
                return Err(ConfigError::KeepaliveTimeoutBelowInterval {
                    keepalive_timeout: c.keepalive_timeout,
                    keepalive_interval: interval,
                });
            }
        }
        Ok(c)
    }
}

/// A configuration that makes no sense: the rule [`ConfigBuilder::build`] found broken, with
/// the values that broke it. `Display` explains it in a sentence.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// [`stream_window`](Config::stream_window) is below the window every stream of the
    /// dialect starts with (256 KiB on yamux and net-mux, 1 byte on smux).
    StreamWindowBelowProtocol {
        /// The configured window.
        stream_window: u32,
        /// The dialect's initial window.
        minimum: u32,
        /// The configured dialect.
        dialect: Dialect,
    },
    /// [`max_stream_window`](Config::max_stream_window) is below
    /// [`stream_window`](Config::stream_window).
    MaxStreamWindowBelowStreamWindow {
        /// The configured auto-tuning ceiling.
        max_stream_window: u32,
        /// The configured initial window.
        stream_window: u32,
    },
    /// [`session_recv_budget`](Config::session_recv_budget) cannot hold one stream window.
    RecvBudgetBelowStreamWindow {
        /// The configured budget.
        session_recv_budget: usize,
        /// The configured window.
        stream_window: u32,
    },
    /// [`max_frame_payload`](Config::max_frame_payload) is 0 or more than the dialect's
    /// length field can express.
    FramePayloadOutOfRange {
        /// The configured frame payload.
        max_frame_payload: u32,
        /// The dialect's largest payload.
        maximum: u32,
        /// The configured dialect.
        dialect: Dialect,
    },
    /// [`max_frame_payload`](Config::max_frame_payload) exceeds 64 KiB on net-mux, whose
    /// peers end the session on a larger Data frame.
    FramePayloadAboveNetMuxLimit {
        /// The configured frame payload.
        max_frame_payload: u32,
        /// The largest Data payload net-mux peers accept.
        maximum: u32,
    },
    /// [`max_frame_payload`](Config::max_frame_payload) exceeds 1 MiB, which common yamux
    /// peers refuse.
    FramePayloadAbovePeerLimit {
        /// The configured frame payload.
        max_frame_payload: u32,
        /// The largest payload common peers accept.
        maximum: u32,
    },
    /// [`write_budget`](Config::write_budget) cannot hold one frame of
    /// [`max_frame_payload`](Config::max_frame_payload).
    WriteBudgetBelowFrame {
        /// The configured budget.
        write_budget: usize,
        /// The configured frame payload.
        max_frame_payload: u32,
    },
    /// A count limit ([`accept_backlog`](Config::accept_backlog),
    /// [`max_unacked_outbound`](Config::max_unacked_outbound) or
    /// [`max_streams`](Config::max_streams)) is 0.
    ZeroLimit {
        /// The name of the setting.
        setting: &'static str,
    },
    /// [`keepalive_timeout`](Config::keepalive_timeout) is zero.
    ZeroKeepaliveTimeout,
    /// [`keepalive_interval`](Config::keepalive_interval) is `Some(0)` (`None` disables it).
    ZeroKeepaliveInterval,
    /// [`write_timeout`](Config::write_timeout) is `Some(0)` (`None` disables it).
    ZeroWriteTimeout,
    /// On smux, which detects a dead peer by silence, the keep-alive timeout is shorter than
    /// the interval: a peer sending NOPs at the same interval would be declared dead between
    /// two of them.
    KeepaliveTimeoutBelowInterval {
        /// The configured timeout.
        keepalive_timeout: Duration,
        /// The configured interval.
        keepalive_interval: Duration,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("invalid polymux configuration: ")?;
        match self {
            ConfigError::StreamWindowBelowProtocol {
                stream_window,
                minimum,
                dialect,
            } => write!(
                f,
                "stream_window {stream_window} is below the {minimum} bytes every {} stream \
                 starts with",
                dialect.name()
            ),
            ConfigError::MaxStreamWindowBelowStreamWindow {
                max_stream_window,
                stream_window,
            } => write!(
                f,
                "max_stream_window {max_stream_window} is below stream_window {stream_window}"
            ),
            ConfigError::RecvBudgetBelowStreamWindow {
                session_recv_budget,
                stream_window,
            } => write!(
                f,
                "session_recv_budget {session_recv_budget} cannot hold even one stream window \
                 of {stream_window}"
            ),
            ConfigError::FramePayloadOutOfRange {
                max_frame_payload,
                maximum,
                dialect,
            } => write!(
                f,
                "max_frame_payload {max_frame_payload} must be between 1 and {maximum} for {}",
                dialect.name()
            ),
            ConfigError::FramePayloadAboveNetMuxLimit {
                max_frame_payload,
                maximum,
            } => write!(
                f,
                "max_frame_payload {max_frame_payload} exceeds {maximum}, the largest Data frame \
                 net-mux peers accept (they end the session on a larger one)"
            ),
            ConfigError::FramePayloadAbovePeerLimit {
                max_frame_payload, ..
            } => write!(
                f,
                "max_frame_payload {max_frame_payload} exceeds 1 MiB, which common yamux peers \
                 refuse"
            ),
            ConfigError::WriteBudgetBelowFrame {
                write_budget,
                max_frame_payload,
            } => write!(
                f,
                "write_budget {write_budget} is smaller than one frame of max_frame_payload \
                 {max_frame_payload}"
            ),
            ConfigError::ZeroLimit { setting } => write!(f, "{setting} must be at least 1"),
            ConfigError::ZeroKeepaliveTimeout => f.write_str("keepalive_timeout must be positive"),
            ConfigError::ZeroWriteTimeout => {
                f.write_str("write_timeout must be positive (use None to disable)")
            }
            ConfigError::ZeroKeepaliveInterval => {
                f.write_str("keepalive_interval must be positive (use None to disable)")
            }
            ConfigError::KeepaliveTimeoutBelowInterval {
                keepalive_timeout,
                keepalive_interval,
            } => write!(
                f,
                "keepalive_timeout {keepalive_timeout:?} is shorter than keepalive_interval \
                 {keepalive_interval:?}: smux detects a dead peer by silence, and a peer sending \
                 NOPs at the same interval would be declared dead between two of them"
            ),
        }
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

    #[test]
    fn each_rule_has_its_own_error() {
        let err = |b: ConfigBuilder| b.build().unwrap_err();
        assert_eq!(
            err(Config::yamux().to_builder().stream_window(1024)),
            ConfigError::StreamWindowBelowProtocol {
                stream_window: 1024,
                minimum: PROTOCOL_INITIAL_WINDOW,
                dialect: Dialect::Yamux,
            }
        );
        assert_eq!(
            err(Config::smux_v2().to_builder().max_stream_window(0)),
            ConfigError::MaxStreamWindowBelowStreamWindow {
                max_stream_window: 0,
                stream_window: Config::smux_v2().stream_window(),
            }
        );
        assert!(matches!(
            err(Config::yamux().to_builder().session_recv_budget(10)),
            ConfigError::RecvBudgetBelowStreamWindow {
                session_recv_budget: 10,
                ..
            }
        ));
        assert_eq!(
            err(Config::smux_v1().to_builder().max_frame_payload(0)),
            ConfigError::FramePayloadOutOfRange {
                max_frame_payload: 0,
                maximum: 65_535,
                dialect: Dialect::SmuxV1,
            }
        );
        assert_eq!(
            err(Config::net_mux().to_builder().max_frame_payload(65_537)),
            ConfigError::FramePayloadAboveNetMuxLimit {
                max_frame_payload: 65_537,
                maximum: 65_536,
            }
        );
        assert!(matches!(
            err(Config::yamux()
                .to_builder()
                .write_budget(1 << 30)
                .max_frame_payload((1 << 20) + 1)),
            ConfigError::FramePayloadAbovePeerLimit { .. }
        ));
        assert!(matches!(
            err(Config::yamux().to_builder().write_budget(1)),
            ConfigError::WriteBudgetBelowFrame {
                write_budget: 1,
                ..
            }
        ));
        for (builder, setting) in [
            (
                Config::yamux().to_builder().accept_backlog(0),
                "accept_backlog",
            ),
            (
                Config::yamux().to_builder().max_unacked_outbound(0),
                "max_unacked_outbound",
            ),
            (Config::yamux().to_builder().max_streams(0), "max_streams"),
        ] {
            let e = err(builder);
            assert_eq!(e, ConfigError::ZeroLimit { setting });
            assert!(e.to_string().contains(setting));
        }
        assert_eq!(
            err(Config::yamux()
                .to_builder()
                .keepalive_timeout(Duration::ZERO)),
            ConfigError::ZeroKeepaliveTimeout
        );
        assert_eq!(
            err(Config::yamux()
                .to_builder()
                .keepalive_interval(Some(Duration::ZERO))),
            ConfigError::ZeroKeepaliveInterval
        );
        assert_eq!(
            err(Config::yamux()
                .to_builder()
                .write_timeout(Some(Duration::ZERO))),
            ConfigError::ZeroWriteTimeout
        );
        assert_eq!(
            err(Config::smux_v1()
                .to_builder()
                .keepalive_interval(Some(Duration::from_secs(10)))
                .keepalive_timeout(Duration::from_secs(5))),
            ConfigError::KeepaliveTimeoutBelowInterval {
                keepalive_timeout: Duration::from_secs(5),
                keepalive_interval: Duration::from_secs(10),
            }
        );
    }
}
