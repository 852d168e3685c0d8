//! What each dialect *is*, independent of how its frames are encoded: its capabilities (Ping,
//! GoAway, ACK, RST, per-stream credit) and the named GoAway codes.
//!
//! This module sits below `codec` and `error` and imports neither: the codec adds the wire
//! facts (header length, frame payload limit, encode/decode) to [`Dialect`] in `codec/`, and
//! `error` picks the GoAway code that ends a session for a given [`Error`](crate::Error). The
//! engine asks these capabilities instead of matching on dialects, so a dialect rule is stated
//! once, here.

/// The wire protocol a session speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Dialect {
    /// yamux (hashicorp spec): 12-byte big-endian header, version 0.
    Yamux,
    /// smux version 1 (xtaci/smux): 8-byte little-endian header, no per-stream flow control.
    SmuxV1,
    /// smux version 2: v1 plus `UPD` frames for per-stream flow control.
    SmuxV2,
    /// net-mux 1.x: yamux-shaped 12-byte big-endian header, version 1.
    NetMux,
}

impl Dialect {
    /// Whether the dialect has RST (a stream abort the peer sees as such).
    pub const fn has_reset(self) -> bool {
        matches!(self, Dialect::Yamux | Dialect::NetMux)
    }

    /// Whether the dialect has GoAway.
    pub const fn has_goaway(self) -> bool {
        matches!(self, Dialect::Yamux | Dialect::NetMux)
    }

    /// Whether the dialect has Ping (and therefore a measurable RTT).
    pub const fn has_ping(self) -> bool {
        matches!(self, Dialect::Yamux | Dialect::NetMux)
    }

    /// Whether opens are acknowledged (ACK) when the peer's application accepts.
    pub const fn has_ack(self) -> bool {
        matches!(self, Dialect::Yamux | Dialect::NetMux)
    }

    /// Whether the opener waits for the peer's ACK before using a new stream. No dialect
    /// needs it: yamux sends data right after the SYN; net-mux's own client waits, but its
    /// receiver registers the stream on the SYN and queues data that follows it (or rides on
    /// it) before its application accepts, so waiting would only cost a round trip per open;
    /// smux has no ACK. A refused open shows as a reset on the stream's first read or write.
    pub const fn open_waits_for_ack(self) -> bool {
        false
    }

    /// Whether the dialect has per-stream flow control.
    pub const fn has_stream_credit(self) -> bool {
        !matches!(self, Dialect::SmuxV1)
    }

    /// The GoAway code for "normal termination".
    pub const fn goaway_normal(self) -> u32 {
        goaway::NORMAL
    }

    /// A human-readable name ("yamux", "smux v1", ...).
    pub const fn name(self) -> &'static str {
        match self {
            Dialect::Yamux => "yamux",
            Dialect::SmuxV1 => "smux v1",
            Dialect::SmuxV2 => "smux v2",
            Dialect::NetMux => "net-mux",
        }
    }
}

/// GoAway codes: 0–2 are yamux's (and net-mux's), 3–6 net-mux's own. smux has no GoAway.
///
/// [`Error::GoAway`](crate::Error::GoAway) carries the code as received, which may be any
/// `u32`; [`name`](goaway::name) says what the known ones mean.
pub mod goaway {
    /// Normal termination.
    pub const NORMAL: u32 = 0;
    /// The peer broke a protocol rule.
    pub const PROTOCOL_ERROR: u32 = 1;
    /// An internal error of the sender.
    pub const INTERNAL_ERROR: u32 = 2;
    /// net-mux: a flow-control rule was broken (data beyond credit, window overflow).
    pub const FLOW_CONTROL_ERROR: u32 = 3;
    /// net-mux: the stream limit was reached.
    pub const STREAM_LIMIT: u32 = 4;
    /// net-mux: a frame carried the wrong version.
    pub const INVALID_VERSION: u32 = 5;
    /// net-mux: the keep-alive timed out.
    pub const TIMEOUT: u32 = 6;

    /// The meaning of a GoAway code, `None` for a code no dialect defines.
    ///
    /// ```
    /// use polymux_proto::dialect::goaway;
    /// assert_eq!(goaway::name(goaway::TIMEOUT), Some("timeout"));
    /// assert_eq!(goaway::name(7), None);
    /// ```
    pub const fn name(code: u32) -> Option<&'static str> {
        match code {
            NORMAL => Some("normal"),
            PROTOCOL_ERROR => Some("protocol error"),
            INTERNAL_ERROR => Some("internal error"),
            FLOW_CONTROL_ERROR => Some("flow control error"),
            STREAM_LIMIT => Some("stream limit"),
            INVALID_VERSION => Some("invalid version"),
            TIMEOUT => Some("timeout"),
            _ => None,
        }
    }
}

/// The meaning of a GoAway code (see [`goaway::name`]); kept under this name for callers of
/// `polymux_proto::codec::goaway_code_name`.
///
/// ```
/// assert_eq!(polymux_proto::codec::goaway_code_name(6), Some("timeout"));
/// assert_eq!(polymux_proto::codec::goaway_code_name(7), None);
/// ```
pub const fn goaway_code_name(code: u32) -> Option<&'static str> {
    goaway::name(code)
}
