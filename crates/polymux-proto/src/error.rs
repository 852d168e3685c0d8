//! Typed errors: which rule a peer broke ([`Violation`]) and why a session or stream ended
//! ([`Error`]).
//!
//! Every variant names the rule precisely enough to debug an interop problem from the message
//! alone. They convert to `std::io::Error` only at the async crate's `AsyncRead`/`AsyncWrite`
//! edge.

use std::fmt;

use crate::frame::StreamId;

/// A rule of the wire protocol that the peer broke. Detecting one ends the session (with a
/// GoAway(protocol error) first, where the dialect has GoAway).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Violation {
    /// The version byte is not the dialect's.
    UnsupportedVersion {
        /// Version byte received.
        got: u8,
        /// Version byte the dialect uses.
        expected: u8,
    },
    /// The frame type / command byte is unknown to the dialect (e.g. smux `UPD` in v1).
    UnknownFrameType {
        /// Type byte received.
        got: u8,
    },
    /// Flags that make no sense on this frame type (e.g. SYN and ACK on one Ping).
    InvalidFlags {
        /// Frame type.
        frame: &'static str,
        /// Raw flags received.
        flags: u16,
    },
    /// A frame whose length field is impossible for its type (e.g. a smux `UPD` that is not
    /// 8 bytes, a smux `SYN` with a payload).
    InvalidLength {
        /// Frame type.
        frame: &'static str,
        /// Length received.
        len: u32,
    },
    /// A session-level frame (Ping, GoAway) on a stream id other than 0.
    SessionFrameOnStream {
        /// Frame type.
        frame: &'static str,
        /// Stream id it carried.
        stream: StreamId,
    },
    /// A stream-level frame on stream id 0.
    StreamFrameOnSession {
        /// Frame type.
        frame: &'static str,
    },
    /// The peer sent more stream data than the credit we granted.
    DataBeyondCredit {
        /// Stream.
        stream: StreamId,
        /// Payload bytes in the frame.
        len: u32,
        /// Bytes of credit the peer had left.
        credit: u64,
    },
    /// A window update would grow the send window past 2^32 - 1.
    WindowOverflow {
        /// Stream.
        stream: StreamId,
    },
    /// An open (SYN) with the parity of the ids we allocate.
    WrongStreamParity {
        /// Stream id received.
        stream: StreamId,
    },
    /// An open (SYN) for an id that is or was already in use.
    StreamIdReused {
        /// Stream id received.
        stream: StreamId,
    },
    /// A frame for a stream that was never opened.
    UnknownStream {
        /// Frame type.
        frame: &'static str,
        /// Stream id received.
        stream: StreamId,
    },
    /// The transport ended in the middle of a frame.
    TruncatedFrame {
        /// Bytes of the frame that arrived.
        got: usize,
        /// Bytes the frame needed.
        needed: usize,
    },
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Violation::UnsupportedVersion { got, expected } => {
                write!(f, "unsupported version byte {got} (expected {expected})")
            }
            Violation::UnknownFrameType { got } => write!(f, "unknown frame type {got}"),
            Violation::InvalidFlags { frame, flags } => {
                write!(f, "invalid flags {flags:#x} on a {frame} frame")
            }
            Violation::InvalidLength { frame, len } => {
                write!(f, "invalid length {len} for a {frame} frame")
            }
            Violation::SessionFrameOnStream { frame, stream } => {
                write!(f, "{frame} frame on stream {stream}; it must use stream 0")
            }
            Violation::StreamFrameOnSession { frame } => {
                write!(
                    f,
                    "{frame} frame on stream 0, which is reserved for the session"
                )
            }
            Violation::DataBeyondCredit {
                stream,
                len,
                credit,
            } => write!(
                f,
                "stream {stream}: {len} bytes of data exceed the {credit} bytes of credit granted"
            ),
            Violation::WindowOverflow { stream } => {
                write!(
                    f,
                    "stream {stream}: window update overflows the send window"
                )
            }
            Violation::WrongStreamParity { stream } => {
                write!(
                    f,
                    "stream {stream} opened with the parity reserved for our ids"
                )
            }
            Violation::StreamIdReused { stream } => {
                write!(f, "stream {stream} opened again; ids must not be reused")
            }
            Violation::UnknownStream { frame, stream } => {
                write!(
                    f,
                    "{frame} frame for stream {stream}, which was never opened"
                )
            }
            Violation::TruncatedFrame { got, needed } => write!(
                f,
                "transport closed mid-frame ({got} of {needed} bytes received)"
            ),
        }
    }
}

/// Why a session, a stream or an operation on them failed.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The peer broke a protocol rule; the session is over.
    ProtocolViolation(Violation),
    /// The peer did not answer keep-alives (or, for smux, sent nothing) within the timeout.
    KeepAliveTimeout,
    /// The peer stopped reading: output was waiting and the transport accepted none of it for
    /// [`Config::write_timeout`](crate::Config::write_timeout).
    WriteTimeout,
    /// The peer sent GoAway with this code: no new streams can be opened. For the session's
    /// end this is the reason; for `open()` it is why the open was refused.
    GoAway(u32),
    /// The stream was reset (by the peer, or locally with `reset()`).
    StreamReset,
    /// The peer refused the stream: its accept backlog or stream limit was full (RST in reply
    /// to our SYN before any ACK).
    StreamRefused,
    /// This side closed the session (or sent GoAway, for new streams).
    SessionClosed,
    /// The transport reached EOF without a protocol-level goodbye.
    TransportClosed,
    /// The transport failed with this I/O error kind and message.
    Transport(std::io::ErrorKind, String),
    /// Opening would exceed [`Config::max_streams`](crate::Config::max_streams).
    TooManyStreams {
        /// The configured limit.
        limit: usize,
    },
    /// Writing after this side half-closed the stream.
    WriteAfterClose,
    /// The operation needs a feature this dialect does not have on the wire (e.g. ping on smux).
    Unsupported(&'static str),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::ProtocolViolation(v) => write!(f, "peer violated the protocol: {v}"),
            Error::KeepAliveTimeout => f.write_str("peer did not answer keep-alive in time"),
            Error::WriteTimeout => {
                f.write_str("peer stopped reading: no write progress within the write timeout")
            }
            Error::GoAway(code) => match crate::codec::goaway_code_name(*code) {
                Some(name) => write!(f, "peer sent GoAway (code {code}: {name})"),
                None => write!(f, "peer sent GoAway (code {code})"),
            },
            Error::StreamReset => f.write_str("stream was reset"),
            Error::StreamRefused => f.write_str("peer refused the stream (backlog or limit full)"),
            Error::SessionClosed => f.write_str("session is closed"),
            Error::TransportClosed => f.write_str("transport closed by the peer"),
            Error::Transport(kind, msg) => write!(f, "transport failed ({kind:?}): {msg}"),
            Error::TooManyStreams { limit } => {
                write!(
                    f,
                    "stream limit of {limit} reached; close streams or raise max_streams"
                )
            }
            Error::WriteAfterClose => f.write_str("write after the stream was half-closed"),
            Error::Unsupported(what) => write!(f, "not supported by this dialect: {what}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<Violation> for Error {
    fn from(v: Violation) -> Self {
        Error::ProtocolViolation(v)
    }
}

impl From<Error> for std::io::Error {
    fn from(e: Error) -> Self {
        use std::io::ErrorKind;
        let kind = match &e {
            Error::ProtocolViolation(_) => ErrorKind::InvalidData,
            Error::KeepAliveTimeout | Error::WriteTimeout => ErrorKind::TimedOut,
            Error::GoAway(_) | Error::StreamRefused => ErrorKind::ConnectionRefused,
            Error::StreamReset => ErrorKind::ConnectionReset,
            Error::SessionClosed | Error::TransportClosed => ErrorKind::ConnectionAborted,
            Error::Transport(kind, _) => *kind,
            Error::TooManyStreams { .. } => ErrorKind::Other,
            Error::WriteAfterClose => ErrorKind::BrokenPipe,
            Error::Unsupported(_) => ErrorKind::Unsupported,
        };
        std::io::Error::new(kind, e)
    }
}
