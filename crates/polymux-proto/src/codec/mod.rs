//! Wire codecs: bytes ⇄ [`Frame`] for each dialect, and the wire facts that follow from the
//! encoding (header length, largest frame payload). The dialect itself and its capabilities
//! live in [`crate::dialect`]; [`Dialect`] is re-exported here for existing paths.
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

pub use crate::dialect::{goaway_code_name, Dialect};

/// The longest frame header of any dialect (room for one header whatever the dialect).
pub(crate) const MAX_HEADER_LEN: usize = max(yamux_shaped::HEADER_LEN, smux::HEADER_LEN);

const fn max(a: usize, b: usize) -> usize {
    if a > b {
        a
    } else {
        b
    }
}

impl Dialect {
    /// Length of the fixed frame header in bytes.
    pub const fn header_len(self) -> usize {
        match self {
            Dialect::Yamux | Dialect::NetMux => yamux_shaped::HEADER_LEN,
            Dialect::SmuxV1 | Dialect::SmuxV2 => smux::HEADER_LEN,
        }
    }

    /// How many bytes the fixed part of a frame needs when `got` bytes of it arrived and did
    /// not decode: the header, or on smux v2 a whole header plus the `UPD` body it announces.
    pub(crate) const fn fixed_len_needed(self, got: usize) -> usize {
        match self {
            Dialect::SmuxV2 if got >= smux::HEADER_LEN => {
                smux::HEADER_LEN + smux::UPDATE_PAYLOAD_LEN
            }
            _ => self.header_len(),
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
}

#[cfg(test)]
mod tests;
