//! Wire codecs: bytes ⇄ [`Frame`] for each dialect.
//!
//! Decoding never panics and never reads past the slice it is given: every length is checked
//! before it is used, and an incomplete header is `Ok(None)` ("need more bytes"). A `Data`
//! frame's payload is *not* part of the decoded frame: the engine consumes it separately, so
//! decoding is allocation-free and independent of the payload size.

mod smux;
mod yamux_shaped;

use bytes::BytesMut;

use crate::error::Violation;
use crate::frame::Frame;

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
    /// Length of the fixed frame header in bytes.
    pub const fn header_len(self) -> usize {
        match self {
            Dialect::Yamux | Dialect::NetMux => yamux_shaped::HEADER_LEN,
            Dialect::SmuxV1 | Dialect::SmuxV2 => smux::HEADER_LEN,
        }
    }

    /// The largest payload one frame can carry on the wire, by the length field's width.
    pub const fn max_frame_payload(self) -> u32 {
        match self {
            Dialect::Yamux | Dialect::NetMux => u32::MAX,
            Dialect::SmuxV1 | Dialect::SmuxV2 => u16::MAX as u32,
        }
    }

    /// Decodes one frame header from the front of `buf`.
    ///
    /// Returns the frame and the number of bytes it took (the header, plus the fixed payload of
    /// a smux `UPD`), `Ok(None)` if `buf` holds less than a whole header, or the rule the bytes
    /// break. A `Data` frame's payload follows and is not consumed.
    pub fn decode(self, buf: &[u8]) -> Result<Option<(Frame, usize)>, Violation> {
        match self {
            Dialect::Yamux => yamux_shaped::decode(&yamux_shaped::YAMUX, buf),
            Dialect::NetMux => yamux_shaped::decode(&yamux_shaped::NET_MUX, buf),
            Dialect::SmuxV1 => smux::decode(1, buf),
            Dialect::SmuxV2 => smux::decode(2, buf),
        }
    }

    /// Appends the encoding of `frame` to `out`. For `Data` only the header is written; the
    /// caller appends the `len` payload bytes right after it.
    ///
    /// The engine only asks a dialect for frames it can express (see [`Dialect::has_goaway`]
    /// and friends); anything else is a bug, logged and skipped rather than mis-encoded.
    pub fn encode(self, frame: &Frame, out: &mut BytesMut) {
        match self {
            Dialect::Yamux => yamux_shaped::encode(&yamux_shaped::YAMUX, frame, out),
            Dialect::NetMux => yamux_shaped::encode(&yamux_shaped::NET_MUX, frame, out),
            Dialect::SmuxV1 => smux::encode(1, frame, out),
            Dialect::SmuxV2 => smux::encode(2, frame, out),
        }
    }

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

    /// Whether the dialect has per-stream flow control.
    pub const fn has_stream_credit(self) -> bool {
        !matches!(self, Dialect::SmuxV1)
    }

    /// The GoAway code that announces the end of a session for `reason`, where the dialect
    /// has GoAway and a code for it: yamux has 1 (protocol error) for every violation; net-mux
    /// names the rule more precisely (3 flow control, 5 invalid version, 1 any other
    /// violation) and has 6 for a keep-alive timeout. See [`goaway_code_name`].
    pub fn goaway_code_for(self, reason: &crate::Error) -> Option<u32> {
        use crate::{Error, Violation};
        match (self, reason) {
            (Dialect::SmuxV1 | Dialect::SmuxV2, _) => None,
            (
                Dialect::NetMux,
                Error::ProtocolViolation(
                    Violation::DataBeyondCredit { .. } | Violation::WindowOverflow { .. },
                ),
            ) => Some(3),
            (Dialect::NetMux, Error::ProtocolViolation(Violation::UnsupportedVersion { .. })) => {
                Some(5)
            }
            (_, Error::ProtocolViolation(_)) => Some(1),
            (Dialect::NetMux, Error::KeepAliveTimeout) => Some(6),
            _ => None,
        }
    }

    /// The GoAway code for "normal termination".
    pub const fn goaway_normal(self) -> u32 {
        0
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

/// The meaning of a GoAway code: 0–2 are yamux's (and net-mux's), 3–6 net-mux's own.
///
/// ```
/// assert_eq!(polymux_proto::codec::goaway_code_name(6), Some("timeout"));
/// assert_eq!(polymux_proto::codec::goaway_code_name(7), None);
/// ```
pub const fn goaway_code_name(code: u32) -> Option<&'static str> {
    match code {
        0 => Some("normal"),
        1 => Some("protocol error"),
        2 => Some("internal error"),
        3 => Some("flow control error"),
        4 => Some("stream limit"),
        5 => Some("invalid version"),
        6 => Some("timeout"),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
