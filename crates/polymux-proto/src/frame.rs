//! The dialect-neutral frame: what every codec decodes into and encodes from.
//!
//! yamux's frame model is the lingua franca: a stream id, a kind, and the SYN/ACK/FIN/RST flags.
//! smux commands map onto it (`SYN` = empty [`Frame::Data`] with [`Flags::SYN`], `FIN` = empty
//! `Data` with [`Flags::FIN`], `PSH` = `Data`, `NOP` = [`Frame::Nop`], `UPD` = [`Frame::Update`]),
//! so the engine handles one vocabulary and each codec only translates bytes.
//!
//! A `Data` frame carries only its payload *length*: the engine consumes the payload from the
//! receive buffer itself, piece by piece, so a large frame never needs a contiguous buffer.

use std::fmt;

/// Identifies one stream within a session. `0` is the session itself.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct StreamId(pub u32);

impl StreamId {
    /// The session-level id carried by Ping and GoAway frames.
    pub const SESSION: StreamId = StreamId(0);
}

impl fmt::Debug for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// The four yamux-style stream flags. Their bit values are the yamux/net-mux wire values.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Flags(pub u16);

impl Flags {
    /// No flag.
    pub const NONE: Flags = Flags(0);
    /// Opens a stream (yamux/net-mux), or marks a Ping request (yamux).
    pub const SYN: Flags = Flags(1);
    /// Acknowledges an open, or marks a Ping reply.
    pub const ACK: Flags = Flags(2);
    /// Half-closes the sender's direction.
    pub const FIN: Flags = Flags(4);
    /// Aborts the stream in both directions.
    pub const RST: Flags = Flags(8);

    /// Whether every flag of `other` is set in `self`.
    pub const fn contains(self, other: Flags) -> bool {
        self.0 & other.0 == other.0
    }

    /// `self` with the flags of `other` added.
    #[must_use]
    pub const fn with(self, other: Flags) -> Flags {
        Flags(self.0 | other.0)
    }
}

impl fmt::Debug for Flags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names = [(1, "SYN"), (2, "ACK"), (4, "FIN"), (8, "RST")];
        let mut first = true;
        for (bit, name) in names {
            if self.0 & bit != 0 {
                f.write_str(if first { "" } else { "|" })?;
                f.write_str(name)?;
                first = false;
            }
        }
        let unknown = self.0 & !0xF;
        if unknown != 0 {
            write!(f, "{}{unknown:#x}", if first { "" } else { "|" })?;
        } else if first {
            f.write_str("-")?;
        }
        Ok(())
    }
}

/// One decoded frame header (plus the small fixed payloads of control frames).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Frame {
    /// Stream payload of `len` bytes, which follow the header on the wire. Flags may ride along
    /// (yamux/net-mux); smux SYN and FIN are `Data` frames of length 0 with that flag.
    Data {
        /// Stream the payload belongs to.
        stream: StreamId,
        /// SYN/ACK/FIN/RST.
        flags: Flags,
        /// Payload length in bytes.
        len: u32,
    },
    /// yamux/net-mux credit: the receiver lets the sender send `delta` more bytes.
    WindowUpdate {
        /// Stream the credit is for.
        stream: StreamId,
        /// SYN/ACK/FIN/RST.
        flags: Flags,
        /// Additional bytes the sender may send.
        delta: u32,
    },
    /// smux v2 `UPD`: the receiver has read `consumed` bytes in total (wrapping) and its
    /// receive window is `window` bytes (absolute, not a delta).
    Update {
        /// Stream the update is for.
        stream: StreamId,
        /// Running total of bytes the receiver has read, modulo 2^32.
        consumed: u32,
        /// The receiver's window in bytes.
        window: u32,
    },
    /// A liveness probe (`ack == false`) or its echo (`ack == true`).
    Ping {
        /// `true` for the reply.
        ack: bool,
        /// Opaque value, echoed by the reply.
        opaque: u32,
    },
    /// The sender accepts no new streams; `code` says why (0 = normal).
    GoAway {
        /// Reason code; meaning depends on the dialect.
        code: u32,
    },
    /// smux keep-alive: carries nothing.
    Nop,
}

impl Frame {
    /// A short name for logs and errors.
    pub fn kind_name(&self) -> &'static str {
        match self {
            Frame::Data { .. } => "Data",
            Frame::WindowUpdate { .. } => "WindowUpdate",
            Frame::Update { .. } => "Update",
            Frame::Ping { .. } => "Ping",
            Frame::GoAway { .. } => "GoAway",
            Frame::Nop => "Nop",
        }
    }
}
