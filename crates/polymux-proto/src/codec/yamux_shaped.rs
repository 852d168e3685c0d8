//! yamux and net-mux share one header layout: 12 bytes, big-endian —
//! `version u8 | type u8 | flags u16 | stream id u32 | length u32`.
//!
//! Types: Data 0 (length = payload bytes), WindowUpdate 1 (length = credit delta), Ping 2
//! (length = opaque value), GoAway 3 (length = reason code). The dialects differ in the version
//! byte (yamux 0, net-mux 1) and in how a Ping request is flagged (yamux: SYN; net-mux: none).
//! A Ping reply carries ACK in both.

use bytes::{BufMut, BytesMut};

use crate::error::Violation;
use crate::frame::{Flags, Frame, StreamId};

pub(super) const HEADER_LEN: usize = 12;

const TYPE_DATA: u8 = 0;
const TYPE_WINDOW_UPDATE: u8 = 1;
const TYPE_PING: u8 = 2;
const TYPE_GO_AWAY: u8 = 3;

/// What distinguishes the yamux-shaped dialects on the wire.
pub(super) struct Shape {
    version: u8,
    ping_request_flags: Flags,
}

pub(super) const YAMUX: Shape = Shape {
    version: 0,
    ping_request_flags: Flags::SYN,
};

pub(super) const NET_MUX: Shape = Shape {
    version: 1,
    ping_request_flags: Flags::NONE,
};

pub(super) fn decode(shape: &Shape, buf: &[u8]) -> Result<Option<(Frame, usize)>, Violation> {
    let Some(header) = buf.get(..HEADER_LEN) else {
        return Ok(None);
    };
    let version = header[0];
    if version != shape.version {
        return Err(Violation::UnsupportedVersion {
            got: version,
            expected: shape.version,
        });
    }
    let flags = Flags(u16::from_be_bytes([header[2], header[3]]));
    let stream = StreamId(u32::from_be_bytes([
        header[4], header[5], header[6], header[7],
    ]));
    let length = u32::from_be_bytes([header[8], header[9], header[10], header[11]]);
    let frame = match header[1] {
        TYPE_DATA => Frame::Data {
            stream,
            flags,
            len: length,
        },
        TYPE_WINDOW_UPDATE => Frame::WindowUpdate {
            stream,
            flags,
            delta: length,
        },
        TYPE_PING => {
            let ack = if flags == Flags::ACK {
                true
            } else if flags == shape.ping_request_flags {
                false
            } else {
                return Err(Violation::InvalidFlags {
                    frame: "Ping",
                    flags: flags.0,
                });
            };
            Frame::Ping {
                ack,
                opaque: length,
            }
        }
        TYPE_GO_AWAY => Frame::GoAway { code: length },
        other => return Err(Violation::UnknownFrameType { got: other }),
    };
    match frame {
        Frame::Data { .. } | Frame::WindowUpdate { .. } if stream == StreamId::SESSION => {
            return Err(Violation::StreamFrameOnSession {
                frame: frame.kind_name(),
            })
        }
        Frame::Ping { .. } | Frame::GoAway { .. } if stream != StreamId::SESSION => {
            return Err(Violation::SessionFrameOnStream {
                frame: frame.kind_name(),
                stream,
            })
        }
        _ => {}
    }
    Ok(Some((frame, HEADER_LEN)))
}

pub(super) fn encode(shape: &Shape, frame: &Frame, out: &mut BytesMut) {
    let (kind, flags, stream, length) = match *frame {
        Frame::Data { stream, flags, len } => (TYPE_DATA, flags, stream, len),
        Frame::WindowUpdate {
            stream,
            flags,
            delta,
        } => (TYPE_WINDOW_UPDATE, flags, stream, delta),
        Frame::Ping { ack, opaque } => {
            let flags = if ack {
                Flags::ACK
            } else {
                shape.ping_request_flags
            };
            (TYPE_PING, flags, StreamId::SESSION, opaque)
        }
        Frame::GoAway { code } => (TYPE_GO_AWAY, Flags::NONE, StreamId::SESSION, code),
        Frame::Update { .. } | Frame::Nop => {
            debug_assert!(false, "{frame:?} has no yamux-shaped encoding");
            tracing::error!(?frame, "engine bug: frame has no yamux-shaped encoding");
            return;
        }
    };
    out.reserve(HEADER_LEN);
    out.put_u8(shape.version);
    out.put_u8(kind);
    out.put_u16(flags.0);
    out.put_u32(stream.0);
    out.put_u32(length);
}
