//! Typed errors: which rule a peer broke ([`Violation`]) and why a session or stream ended
//! ([`Error`]).
//!
//! Every variant names the rule precisely enough to debug an interop problem from the message
//! alone. They convert to `std::io::Error` only at the async crate's `AsyncRead`/`AsyncWrite`
//! edge.
//!
//! The GoAway code that announces a session's end for an [`Error`] is chosen here
//! ([`Dialect::goaway_code_for`]), above `dialect`, which only names the codes.

use std::fmt;

use crate::dialect::{goaway, Dialect};
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
    /// The transport failed: the I/O error's kind, OS code and message.
    Transport(TransportError),
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
            Error::GoAway(code) => match goaway::name(*code) {
                Some(name) => write!(f, "peer sent GoAway (code {code}: {name})"),
                None => write!(f, "peer sent GoAway (code {code})"),
            },
            Error::StreamReset => f.write_str("stream was reset"),
            Error::StreamRefused => f.write_str("peer refused the stream (backlog or limit full)"),
            Error::SessionClosed => f.write_str("session is closed"),
            Error::TransportClosed => f.write_str("transport closed by the peer"),
            Error::Transport(e) => e.fmt(f),
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

/// How the transport under a session failed, kept as values (not the `io::Error` itself) so
/// that [`Error`] stays `Clone + Eq` and every handle and stream can report the same failure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransportError {
    kind: std::io::ErrorKind,
    raw_os_error: Option<i32>,
    message: String,
}

impl TransportError {
    /// The I/O error's kind (also the kind of the `io::Error` a stream returns for it).
    pub fn kind(&self) -> std::io::ErrorKind {
        self.kind
    }

    /// The operating system's error code, when the error came from the OS.
    pub fn raw_os_error(&self) -> Option<i32> {
        self.raw_os_error
    }

    /// The I/O error's message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl From<&std::io::Error> for TransportError {
    fn from(e: &std::io::Error) -> Self {
        TransportError {
            kind: e.kind(),
            raw_os_error: e.raw_os_error(),
            message: e.to_string(),
        }
    }
}

impl From<std::io::Error> for TransportError {
    fn from(e: std::io::Error) -> Self {
        TransportError::from(&e)
    }
}

impl fmt::Display for TransportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "transport failed ({:?}): {}", self.kind, self.message)
    }
}

impl std::error::Error for TransportError {}

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
            Error::Transport(e) => e.kind(),
            Error::TooManyStreams { .. } => ErrorKind::Other,
            Error::WriteAfterClose => ErrorKind::BrokenPipe,
            Error::Unsupported(_) => ErrorKind::Unsupported,
        };
        std::io::Error::new(kind, e)
    }
}

impl Dialect {
    /// The GoAway code that announces the end of a session for `reason`, where the dialect
    /// has GoAway and a code for it: yamux has [`PROTOCOL_ERROR`](goaway::PROTOCOL_ERROR) for
    /// every violation; net-mux names the rule more precisely (flow control, invalid version,
    /// protocol error for any other violation) and has [`TIMEOUT`](goaway::TIMEOUT) for a
    /// keep-alive timeout.
    pub fn goaway_code_for(self, reason: &Error) -> Option<u32> {
        match (self, reason) {
            (Dialect::SmuxV1 | Dialect::SmuxV2, _) => None,
            (
                Dialect::NetMux,
                Error::ProtocolViolation(
                    Violation::DataBeyondCredit { .. } | Violation::WindowOverflow { .. },
                ),
            ) => Some(goaway::FLOW_CONTROL_ERROR),
            (Dialect::NetMux, Error::ProtocolViolation(Violation::UnsupportedVersion { .. })) => {
                Some(goaway::INVALID_VERSION)
            }
            (_, Error::ProtocolViolation(_)) => Some(goaway::PROTOCOL_ERROR),
            (Dialect::NetMux, Error::KeepAliveTimeout) => Some(goaway::TIMEOUT),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::time::Instant;

    use super::*;
    use crate::{Config, Connection, Role};

    #[test]
    fn a_transport_failure_keeps_kind_code_and_message() {
        let mut conn = Connection::new(Role::Client, Config::yamux(), Instant::now());
        conn.handle_transport_error(&io::Error::from_raw_os_error(104));
        let Some(Error::Transport(e)) = conn.end_reason() else {
            panic!("expected a transport error, got {:?}", conn.end_reason());
        };
        assert_eq!(e.raw_os_error(), Some(104));
        assert_eq!(e.kind(), io::Error::from_raw_os_error(104).kind());
        assert!(!e.message().is_empty());

        let custom =
            Error::Transport(io::Error::new(io::ErrorKind::BrokenPipe, "pipe gone").into());
        assert_eq!(
            custom.to_string(),
            "transport failed (BrokenPipe): pipe gone"
        );
        assert_eq!(io::Error::from(custom).kind(), io::ErrorKind::BrokenPipe);
    }
}
