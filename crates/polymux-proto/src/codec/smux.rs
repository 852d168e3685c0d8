//! smux v1/v2 header: 8 bytes — `version u8 | cmd u8 | length u16 LE | stream id u32 LE`.
//!
//! Commands map onto [`Frame`]: `SYN` 0 → empty `Data` with SYN, `FIN` 1 → empty `Data` with
//! FIN, `PSH` 2 → `Data`, `NOP` 3 → `Nop`, and in v2 only `UPD` 4 → `Update`, whose 8-byte
//! payload (`consumed` u32 LE, `window` u32 LE) is decoded here with the header.
//! SYN, FIN and NOP never carry a payload (Go's receive loop reads no payload for them, so a
//! non-zero length would desynchronise the stream); we reject one as a violation.

use bytes::{BufMut, BytesMut};

use crate::error::Violation;
use crate::frame::{Flags, Frame, StreamId};

pub(super) const HEADER_LEN: usize = 8;
pub(super) const UPDATE_PAYLOAD_LEN: usize = 8;

const CMD_SYN: u8 = 0;
const CMD_FIN: u8 = 1;
const CMD_PSH: u8 = 2;
const CMD_NOP: u8 = 3;
const CMD_UPD: u8 = 4;

pub(super) fn decode(version: u8, buf: &[u8]) -> Result<Option<(Frame, usize)>, Violation> {
    let Some(header) = buf.get(..HEADER_LEN) else {
        return Ok(None);
    };
    if header[0] != version {
        return Err(Violation::UnsupportedVersion {
            got: header[0],
            expected: version,
        });
    }
    let cmd = header[1];
    let len = u16::from_le_bytes([header[2], header[3]]);
    let stream = StreamId(u32::from_le_bytes([
        header[4], header[5], header[6], header[7],
    ]));
    let empty = |frame: &'static str| {
        if len == 0 {
            Ok(())
        } else {
            Err(Violation::InvalidLength {
                frame,
                len: len.into(),
            })
        }
    };
    let on_stream = |frame: &'static str| {
        if stream == StreamId::SESSION {
            Err(Violation::StreamFrameOnSession { frame })
        } else {
            Ok(())
        }
    };
    let frame = match cmd {
        CMD_SYN => {
            empty("SYN")?;
            on_stream("SYN")?;
            Frame::Data {
                stream,
                flags: Flags::SYN,
                len: 0,
            }
        }
        CMD_FIN => {
            empty("FIN")?;
            on_stream("FIN")?;
            Frame::Data {
                stream,
                flags: Flags::FIN,
                len: 0,
            }
        }
        CMD_PSH => {
            on_stream("PSH")?;
            Frame::Data {
                stream,
                flags: Flags::NONE,
                len: len.into(),
            }
        }
        CMD_NOP => {
            empty("NOP")?;
            Frame::Nop
        }
        CMD_UPD if version >= 2 => {
            if usize::from(len) != UPDATE_PAYLOAD_LEN {
                return Err(Violation::InvalidLength {
                    frame: "UPD",
                    len: len.into(),
                });
            }
            on_stream("UPD")?;
            let Some(p) = buf.get(HEADER_LEN..HEADER_LEN + UPDATE_PAYLOAD_LEN) else {
                return Ok(None);
            };
            let frame = Frame::Update {
                stream,
                consumed: u32::from_le_bytes([p[0], p[1], p[2], p[3]]),
                window: u32::from_le_bytes([p[4], p[5], p[6], p[7]]),
            };
            return Ok(Some((frame, HEADER_LEN + UPDATE_PAYLOAD_LEN)));
        }
        other => return Err(Violation::UnknownFrameType { got: other }),
    };
    Ok(Some((frame, HEADER_LEN)))
}

pub(super) fn encode(version: u8, frame: &Frame, out: &mut BytesMut) {
    let (cmd, stream, len) = match *frame {
        Frame::Data { stream, flags, len } if flags == Flags::SYN && len == 0 => {
            (CMD_SYN, stream, 0)
        }
        Frame::Data { stream, flags, len } if flags == Flags::FIN && len == 0 => {
            (CMD_FIN, stream, 0)
        }
        Frame::Data { stream, flags, len } if flags == Flags::NONE && len <= u16::MAX.into() => {
            (CMD_PSH, stream, len as u16)
        }
        Frame::Nop => (CMD_NOP, StreamId::SESSION, 0),
        Frame::Update {
            stream,
            consumed,
            window,
        } if version >= 2 => {
            out.reserve(HEADER_LEN + UPDATE_PAYLOAD_LEN);
            put_header(out, version, CMD_UPD, UPDATE_PAYLOAD_LEN as u16, stream);
            out.put_u32_le(consumed);
            out.put_u32_le(window);
            return;
        }
        _ => {
            debug_assert!(false, "{frame:?} has no smux v{version} encoding");
            tracing::error!(?frame, version, "engine bug: frame has no smux encoding");
            return;
        }
    };
    out.reserve(HEADER_LEN);
    put_header(out, version, cmd, len, stream);
}

fn put_header(out: &mut BytesMut, version: u8, cmd: u8, len: u16, stream: StreamId) {
    out.put_u8(version);
    out.put_u8(cmd);
    out.put_u16_le(len);
    out.put_u32_le(stream.0);
}
