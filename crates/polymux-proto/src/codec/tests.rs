//! Codec tests: golden byte vectors, decoding edge cases, every [`Violation`] path, and
//! round-trip / robustness properties, for each [`Dialect`].
//!
//! Golden vectors are written out byte by byte (never produced by the encoder under test) and
//! are cross-checked against the reference implementations:
//! - yamux: hashicorp/yamux, `/usr/share/gocode/src/github.com/hashicorp/yamux/`
//!   (`const.go:151-157` `header.encode` writes ver, type, flags BE, id BE, length BE);
//! - smux: xtaci/smux, `/usr/share/gocode/src/github.com/xtaci/smux/`
//!   (`frame.go:8-18` commands, `frame.go:61-67` length/sid little-endian,
//!   `session.go:456-459` the writer: ver, cmd, len(data) LE u16, sid LE u32);
//! - net-mux: the `net-mux` 1.0.1 crate, `src/protocol/` (`header.rs:8` version 1,
//!   `header.rs:63-69` the same big-endian layout as yamux).
//!
//! Vectors are tables of `(frame, bytes)`; each row is checked for encoding, decoding, every
//! strict prefix, and trailing bytes (a `Data` payload follows its header and is not consumed).

use bytes::BytesMut;
use proptest::prelude::*;

use super::Dialect;
use crate::error::Violation;
use crate::frame::{Flags, Frame, StreamId};

const ALL: [Dialect; 4] = [
    Dialect::Yamux,
    Dialect::SmuxV1,
    Dialect::SmuxV2,
    Dialect::NetMux,
];

const NONE: Flags = Flags::NONE;
const SYN: Flags = Flags::SYN;
const ACK: Flags = Flags::ACK;
const FIN: Flags = Flags::FIN;
const RST: Flags = Flags::RST;

const fn data(stream: u32, flags: Flags, len: u32) -> Frame {
    Frame::Data {
        stream: StreamId(stream),
        flags,
        len,
    }
}

const fn wu(stream: u32, flags: Flags, delta: u32) -> Frame {
    Frame::WindowUpdate {
        stream: StreamId(stream),
        flags,
        delta,
    }
}

const fn upd(stream: u32, consumed: u32, window: u32) -> Frame {
    Frame::Update {
        stream: StreamId(stream),
        consumed,
        window,
    }
}

const fn ping(ack: bool, opaque: u32) -> Frame {
    Frame::Ping { ack, opaque }
}

const fn goaway(code: u32) -> Frame {
    Frame::GoAway { code }
}

/// One golden vector: a frame and its exact wire bytes (header, plus the smux `UPD` payload).
type Golden = (Frame, &'static [u8]);

fn encode(d: Dialect, f: &Frame) -> Vec<u8> {
    let mut out = BytesMut::new();
    d.encode(f, &mut out);
    out.to_vec()
}

/// Checks one dialect's table: exact encoding, exact decoding with the whole vector consumed,
/// `Ok(None)` for every strict prefix, and the same result with bytes following the frame.
fn check_golden(d: Dialect, table: &[Golden]) {
    for (frame, bytes) in table {
        assert_eq!(encode(d, frame), *bytes, "{d:?}: encoding of {frame:?}");
        assert_eq!(
            d.decode(bytes),
            Ok(Some((*frame, bytes.len()))),
            "{d:?}: decoding of {bytes:02x?}"
        );
        for cut in 0..bytes.len() {
            assert_eq!(
                d.decode(&bytes[..cut]),
                Ok(None),
                "{d:?}: {cut}-byte prefix of {bytes:02x?}"
            );
        }
        let mut longer = bytes.to_vec();
        longer.extend_from_slice(&[0xA5; 20]);
        assert_eq!(
            d.decode(&longer),
            Ok(Some((*frame, bytes.len()))),
            "{d:?}: {bytes:02x?} followed by more bytes"
        );
    }
}

/// Asserts that `bytes` (a whole header, and any longer input) is rejected with `expected`.
fn check_violation(d: Dialect, bytes: &[u8], expected: Violation) {
    assert_eq!(
        d.decode(bytes),
        Err(expected.clone()),
        "{d:?}: decoding {bytes:02x?}"
    );
    let mut longer = bytes.to_vec();
    longer.extend_from_slice(&[0; 16]);
    assert_eq!(
        d.decode(&longer),
        Err(expected),
        "{d:?}: decoding {bytes:02x?} + 16 zero bytes"
    );
}

// ---------------------------------------------------------------------------------------------
// Golden vectors
// ---------------------------------------------------------------------------------------------

// Layout of every yamux row: ver | type | flags (BE u16) | stream id (BE u32) | length (BE u32),
// as written by hashicorp/yamux const.go:151-157 (protoVersion 0: const.go:58; types
// const.go:64-78; flags const.go:84-95).
#[rustfmt::skip]
const YAMUX_GOLDEN: &[Golden] = &[
    // --- Data (type 0). stream.go:193 `sendHdr.encode(typeData, flags, s.id, max)`.
    // Established stream, no flags (sendFlags() == 0): stream.go:186,193.
    (data(1, NONE, 5),
     &[0x00, 0x00,  0x00, 0x00,  0x00, 0x00, 0x00, 0x01,  0x00, 0x00, 0x00, 0x05]),
    // SYN alone (sendFlags() in streamInit: stream.go:228).
    (data(1, SYN, 0),
     &[0x00, 0x00,  0x00, 0x01,  0x00, 0x00, 0x00, 0x01,  0x00, 0x00, 0x00, 0x00]),
    (data(3, SYN, 11),
     &[0x00, 0x00,  0x00, 0x01,  0x00, 0x00, 0x00, 0x03,  0x00, 0x00, 0x00, 0x0B]),
    // ACK alone (sendFlags() in streamSYNReceived: stream.go:231).
    (data(2, ACK, 0x100),
     &[0x00, 0x00,  0x00, 0x02,  0x00, 0x00, 0x00, 0x02,  0x00, 0x00, 0x01, 0x00]),
    (data(5, FIN, 0),
     &[0x00, 0x00,  0x00, 0x04,  0x00, 0x00, 0x00, 0x05,  0x00, 0x00, 0x00, 0x00]),
    (data(7, RST, 0),
     &[0x00, 0x00,  0x00, 0x08,  0x00, 0x00, 0x00, 0x07,  0x00, 0x00, 0x00, 0x00]),
    (data(9, SYN.with(FIN), 3),
     &[0x00, 0x00,  0x00, 0x05,  0x00, 0x00, 0x00, 0x09,  0x00, 0x00, 0x00, 0x03]),
    (data(13, SYN.with(ACK), 0),
     &[0x00, 0x00,  0x00, 0x03,  0x00, 0x00, 0x00, 0x0D,  0x00, 0x00, 0x00, 0x00]),
    (data(4, ACK.with(FIN), 0),
     &[0x00, 0x00,  0x00, 0x06,  0x00, 0x00, 0x00, 0x04,  0x00, 0x00, 0x00, 0x00]),
    (data(11, FIN.with(RST), 0),
     &[0x00, 0x00,  0x00, 0x0C,  0x00, 0x00, 0x00, 0x0B,  0x00, 0x00, 0x00, 0x00]),
    // All four flags; distinct bytes in every field pin the big-endian byte order.
    (data(0x0102_0304, SYN.with(ACK).with(FIN).with(RST), 0x0A0B_0C0D),
     &[0x00, 0x00,  0x00, 0x0F,  0x01, 0x02, 0x03, 0x04,  0x0A, 0x0B, 0x0C, 0x0D]),
    (data(u32::MAX, NONE, u32::MAX),
     &[0x00, 0x00,  0x00, 0x00,  0xFF, 0xFF, 0xFF, 0xFF,  0xFF, 0xFF, 0xFF, 0xFF]),

    // --- WindowUpdate (type 1). stream.go:266 `controlHdr.encode(typeWindowUpdate, flags, s.id, delta)`.
    // Open: OpenStream -> sendWindowUpdate with SYN (stream.go:228); delta 0 with the default
    // 256 KiB window (const.go:100), so the first client stream (id 1: session.go:109) opens so.
    (wu(1, SYN, 0),
     &[0x00, 0x01,  0x00, 0x01,  0x00, 0x00, 0x00, 0x01,  0x00, 0x00, 0x00, 0x00]),
    (wu(1, SYN, 0x0004_0000),
     &[0x00, 0x01,  0x00, 0x01,  0x00, 0x00, 0x00, 0x01,  0x00, 0x04, 0x00, 0x00]),
    // Accept: sendWindowUpdate with ACK (stream.go:231).
    (wu(2, ACK, 0),
     &[0x00, 0x01,  0x00, 0x02,  0x00, 0x00, 0x00, 0x02,  0x00, 0x00, 0x00, 0x00]),
    // Plain credit (stream.go:266 with flags == 0).
    (wu(5, NONE, 0x0003_0000),
     &[0x00, 0x01,  0x00, 0x00,  0x00, 0x00, 0x00, 0x05,  0x00, 0x03, 0x00, 0x00]),
    // Close: sendClose, `flags |= flagFIN`, delta 0 (stream.go:279-280).
    (wu(1, FIN, 0),
     &[0x00, 0x01,  0x00, 0x04,  0x00, 0x00, 0x00, 0x01,  0x00, 0x00, 0x00, 0x00]),
    // Close before the open was sent / acknowledged: sendFlags() | FIN (stream.go:278-280).
    (wu(3, SYN.with(FIN), 0),
     &[0x00, 0x01,  0x00, 0x05,  0x00, 0x00, 0x00, 0x03,  0x00, 0x00, 0x00, 0x00]),
    (wu(2, ACK.with(FIN), 0),
     &[0x00, 0x01,  0x00, 0x06,  0x00, 0x00, 0x00, 0x02,  0x00, 0x00, 0x00, 0x00]),
    // Reset: `hdr.encode(typeWindowUpdate, flagRST, id, 0)` (session.go:587, session.go:617).
    (wu(3, RST, 0),
     &[0x00, 0x01,  0x00, 0x08,  0x00, 0x00, 0x00, 0x03,  0x00, 0x00, 0x00, 0x00]),
    (wu(7, FIN.with(RST), 0),
     &[0x00, 0x01,  0x00, 0x0C,  0x00, 0x00, 0x00, 0x07,  0x00, 0x00, 0x00, 0x00]),

    // --- Ping (type 2), stream 0, length = opaque id.
    // Request: `hdr.encode(typePing, flagSYN, 0, id)` (session.go:287); first id is 0.
    (ping(false, 0),
     &[0x00, 0x02,  0x00, 0x01,  0x00, 0x00, 0x00, 0x00,  0x00, 0x00, 0x00, 0x00]),
    (ping(false, 0xDEAD_BEEF),
     &[0x00, 0x02,  0x00, 0x01,  0x00, 0x00, 0x00, 0x00,  0xDE, 0xAD, 0xBE, 0xEF]),
    // Reply: `hdr.encode(typePing, flagACK, 0, pingID)` (session.go:544).
    (ping(true, 0xDEAD_BEEF),
     &[0x00, 0x02,  0x00, 0x02,  0x00, 0x00, 0x00, 0x00,  0xDE, 0xAD, 0xBE, 0xEF]),
    (ping(true, 0),
     &[0x00, 0x02,  0x00, 0x02,  0x00, 0x00, 0x00, 0x00,  0x00, 0x00, 0x00, 0x00]),

    // --- GoAway (type 3): `hdr.encode(typeGoAway, 0, 0, reason)` (session.go:269).
    // goAwayNormal (const.go:105).
    (goaway(0),
     &[0x00, 0x03,  0x00, 0x00,  0x00, 0x00, 0x00, 0x00,  0x00, 0x00, 0x00, 0x00]),
    // goAwayProtoErr (const.go:108).
    (goaway(1),
     &[0x00, 0x03,  0x00, 0x00,  0x00, 0x00, 0x00, 0x00,  0x00, 0x00, 0x00, 0x01]),
    // goAwayInternalErr (const.go:111).
    (goaway(2),
     &[0x00, 0x03,  0x00, 0x00,  0x00, 0x00, 0x00, 0x00,  0x00, 0x00, 0x00, 0x02]),
];

// net-mux 1.0.1: header.rs:63-69 writes the yamux layout (ver, type, flags BE, id BE, length BE)
// with PROTOCOL_VERSION = 1 (header.rs:8); types header.rs:17-20; flags frame.rs:16-22.
#[rustfmt::skip]
const NET_MUX_GOLDEN: &[Golden] = &[
    // --- Data (type 0). Payload: `Frame::data(id, Flags::empty(), payload)` (stream/inner.rs:255).
    (data(1, NONE, 5),
     &[0x01, 0x00,  0x00, 0x00,  0x00, 0x00, 0x00, 0x01,  0x00, 0x00, 0x00, 0x05]),
    // Open / accept / close / reset are empty Data frames: frame.rs:56 syn, :64 ack, :72 fin, :80 rst.
    (data(1, SYN, 0),
     &[0x01, 0x00,  0x00, 0x01,  0x00, 0x00, 0x00, 0x01,  0x00, 0x00, 0x00, 0x00]),
    (data(2, ACK, 0),
     &[0x01, 0x00,  0x00, 0x02,  0x00, 0x00, 0x00, 0x02,  0x00, 0x00, 0x00, 0x00]),
    (data(5, FIN, 0),
     &[0x01, 0x00,  0x00, 0x04,  0x00, 0x00, 0x00, 0x05,  0x00, 0x00, 0x00, 0x00]),
    (data(7, RST, 0),
     &[0x01, 0x00,  0x00, 0x08,  0x00, 0x00, 0x00, 0x07,  0x00, 0x00, 0x00, 0x00]),
    // Flag combinations (net-mux frame.rs:11-12 documents SYN | ACK on one frame).
    (data(3, SYN.with(ACK), 0x10),
     &[0x01, 0x00,  0x00, 0x03,  0x00, 0x00, 0x00, 0x03,  0x00, 0x00, 0x00, 0x10]),
    (data(9, SYN.with(FIN), 3),
     &[0x01, 0x00,  0x00, 0x05,  0x00, 0x00, 0x00, 0x09,  0x00, 0x00, 0x00, 0x03]),
    (data(11, FIN.with(RST), 0),
     &[0x01, 0x00,  0x00, 0x0C,  0x00, 0x00, 0x00, 0x0B,  0x00, 0x00, 0x00, 0x00]),
    (data(0x0102_0304, SYN.with(ACK).with(FIN).with(RST), 0x0A0B_0C0D),
     &[0x01, 0x00,  0x00, 0x0F,  0x01, 0x02, 0x03, 0x04,  0x0A, 0x0B, 0x0C, 0x0D]),

    // --- WindowUpdate (type 1): `window_update(id, delta)` has no flags (frame.rs:88-93).
    (wu(1, NONE, 0x0004_0000),
     &[0x01, 0x01,  0x00, 0x00,  0x00, 0x00, 0x00, 0x01,  0x00, 0x04, 0x00, 0x00]),
    // Flags on a WindowUpdate are carried verbatim (codec.rs:119-123).
    (wu(1, SYN, 0),
     &[0x01, 0x01,  0x00, 0x01,  0x00, 0x00, 0x00, 0x01,  0x00, 0x00, 0x00, 0x00]),
    (wu(2, ACK, 0),
     &[0x01, 0x01,  0x00, 0x02,  0x00, 0x00, 0x00, 0x02,  0x00, 0x00, 0x00, 0x00]),
    (wu(1, FIN, 0),
     &[0x01, 0x01,  0x00, 0x04,  0x00, 0x00, 0x00, 0x01,  0x00, 0x00, 0x00, 0x00]),
    (wu(3, RST, 0),
     &[0x01, 0x01,  0x00, 0x08,  0x00, 0x00, 0x00, 0x03,  0x00, 0x00, 0x00, 0x00]),

    // --- Ping (type 2) on stream 0 (codec.rs:124).
    // Request: `Frame::ping` has NO flags (frame.rs:96-101) — unlike yamux's SYN.
    (ping(false, 0),
     &[0x01, 0x02,  0x00, 0x00,  0x00, 0x00, 0x00, 0x00,  0x00, 0x00, 0x00, 0x00]),
    (ping(false, 0xCAFE_BABE),
     &[0x01, 0x02,  0x00, 0x00,  0x00, 0x00, 0x00, 0x00,  0xCA, 0xFE, 0xBA, 0xBE]),
    // Reply: `Frame::pong` carries ACK (frame.rs:103-108).
    (ping(true, 0xCAFE_BABE),
     &[0x01, 0x02,  0x00, 0x02,  0x00, 0x00, 0x00, 0x00,  0xCA, 0xFE, 0xBA, 0xBE]),

    // --- GoAway (type 3): flags empty, stream 0 (codec.rs:125-131); codes error.rs:88-94.
    // Normal = 0.
    (goaway(0),
     &[0x01, 0x03,  0x00, 0x00,  0x00, 0x00, 0x00, 0x00,  0x00, 0x00, 0x00, 0x00]),
    // ProtocolError = 1.
    (goaway(1),
     &[0x01, 0x03,  0x00, 0x00,  0x00, 0x00, 0x00, 0x00,  0x00, 0x00, 0x00, 0x01]),
    // InternalError = 2.
    (goaway(2),
     &[0x01, 0x03,  0x00, 0x00,  0x00, 0x00, 0x00, 0x00,  0x00, 0x00, 0x00, 0x02]),
    // Timeout = 6 (error.rs:94).
    (goaway(6),
     &[0x01, 0x03,  0x00, 0x00,  0x00, 0x00, 0x00, 0x00,  0x00, 0x00, 0x00, 0x06]),
];

// smux rows: ver | cmd | length (LE u16) | stream id (LE u32), written by xtaci/smux
// session.go:456-459 (`buf[0] = ver; buf[1] = cmd; PutUint16(buf[2:], len(data));
// PutUint32(buf[4:], sid)`, both LittleEndian); cmds frame.go:10-17.
#[rustfmt::skip]
const SMUX_V1_GOLDEN: &[Golden] = &[
    // SYN: `newFrame(ver, cmdSYN, sid)` with no data (session.go:137); first client sid is 3
    // (session.go:99, 126-127).
    (data(3, SYN, 0),
     &[0x01, 0x00,  0x00, 0x00,  0x03, 0x00, 0x00, 0x00]),
    // FIN: `newFrame(ver, cmdFIN, s.id)` with no data (stream.go:437).
    (data(3, FIN, 0),
     &[0x01, 0x01,  0x00, 0x00,  0x03, 0x00, 0x00, 0x00]),
    // PSH: `newFrame(ver, cmdPSH, s.id)` + data (stream.go:319, 326).
    (data(3, NONE, 5),
     &[0x01, 0x02,  0x05, 0x00,  0x03, 0x00, 0x00, 0x00]),
    // Distinct bytes pin the little-endian order of length and sid (frame.go:61-67).
    (data(0x0102_0304, NONE, 0x1234),
     &[0x01, 0x02,  0x34, 0x12,  0x04, 0x03, 0x02, 0x01]),
    (data(u32::MAX, NONE, 0xFFFF),
     &[0x01, 0x02,  0xFF, 0xFF,  0xFF, 0xFF, 0xFF, 0xFF]),
    // Empty PSH: the receive loop reads no payload for it (session.go:347-348).
    (data(2, NONE, 0),
     &[0x01, 0x02,  0x00, 0x00,  0x02, 0x00, 0x00, 0x00]),
    (data(0x0A0B_0C0D, SYN, 0),
     &[0x01, 0x00,  0x00, 0x00,  0x0D, 0x0C, 0x0B, 0x0A]),
    (data(0x0A0B_0C0D, FIN, 0),
     &[0x01, 0x01,  0x00, 0x00,  0x0D, 0x0C, 0x0B, 0x0A]),
    // NOP: `newFrame(ver, cmdNOP, 0)` — keep-alive on sid 0 (session.go:393).
    (Frame::Nop,
     &[0x01, 0x03,  0x00, 0x00,  0x00, 0x00, 0x00, 0x00]),
];

// smux v2: the same rows with version byte 2, plus UPD (cmd 4, frame.go:17).
#[rustfmt::skip]
const SMUX_V2_GOLDEN: &[Golden] = &[
    (data(3, SYN, 0),                    // session.go:137
     &[0x02, 0x00,  0x00, 0x00,  0x03, 0x00, 0x00, 0x00]),
    (data(3, FIN, 0),                    // stream.go:437
     &[0x02, 0x01,  0x00, 0x00,  0x03, 0x00, 0x00, 0x00]),
    (data(3, NONE, 5),                   // stream.go:362, 394 (writeV2)
     &[0x02, 0x02,  0x05, 0x00,  0x03, 0x00, 0x00, 0x00]),
    (data(0x0102_0304, NONE, 0x1234),    // frame.go:61-67
     &[0x02, 0x02,  0x34, 0x12,  0x04, 0x03, 0x02, 0x01]),
    (data(u32::MAX, NONE, 0xFFFF),
     &[0x02, 0x02,  0xFF, 0xFF,  0xFF, 0xFF, 0xFF, 0xFF]),
    (data(2, NONE, 0),                   // session.go:347-348
     &[0x02, 0x02,  0x00, 0x00,  0x02, 0x00, 0x00, 0x00]),
    (data(0x0A0B_0C0D, SYN, 0),
     &[0x02, 0x00,  0x00, 0x00,  0x0D, 0x0C, 0x0B, 0x0A]),
    (data(0x0A0B_0C0D, FIN, 0),
     &[0x02, 0x01,  0x00, 0x00,  0x0D, 0x0C, 0x0B, 0x0A]),
    (Frame::Nop,                         // session.go:393: sid 0
     &[0x02, 0x03,  0x00, 0x00,  0x00, 0x00, 0x00, 0x00]),
    // UPD: header with length szCmdUPD = 8 (frame.go:23), then consumed LE u32 and window LE u32
    // (stream.go:253-257; window = MaxStreamBuffer, 65536 by default: mux.go:50).
    (upd(3, 0x0000_1000, 0x0001_0000),
     &[0x02, 0x04,  0x08, 0x00,  0x03, 0x00, 0x00, 0x00,
       0x00, 0x10, 0x00, 0x00,  0x00, 0x00, 0x01, 0x00]),
    (upd(0x0102_0304, 0xA1B2_C3D4, u32::MAX),
     &[0x02, 0x04,  0x08, 0x00,  0x04, 0x03, 0x02, 0x01,
       0xD4, 0xC3, 0xB2, 0xA1,  0xFF, 0xFF, 0xFF, 0xFF]),
    (upd(5, 0, 0),
     &[0x02, 0x04,  0x08, 0x00,  0x05, 0x00, 0x00, 0x00,
       0x00, 0x00, 0x00, 0x00,  0x00, 0x00, 0x00, 0x00]),
];

#[test]
fn yamux_golden() {
    check_golden(Dialect::Yamux, YAMUX_GOLDEN);
}

#[test]
fn net_mux_golden() {
    check_golden(Dialect::NetMux, NET_MUX_GOLDEN);
}

#[test]
fn smux_v1_golden() {
    check_golden(Dialect::SmuxV1, SMUX_V1_GOLDEN);
}

#[test]
fn smux_v2_golden() {
    check_golden(Dialect::SmuxV2, SMUX_V2_GOLDEN);
}

/// The tables cover every frame kind each dialect can express.
#[test]
fn golden_tables_cover_every_kind() {
    fn kinds(table: &[Golden]) -> Vec<&'static str> {
        let mut k: Vec<_> = table.iter().map(|(f, _)| f.kind_name()).collect();
        k.sort_unstable();
        k.dedup();
        k
    }
    let yamux_shaped = ["Data", "GoAway", "Ping", "WindowUpdate"];
    assert_eq!(kinds(YAMUX_GOLDEN), yamux_shaped);
    assert_eq!(kinds(NET_MUX_GOLDEN), yamux_shaped);
    assert_eq!(kinds(SMUX_V1_GOLDEN), ["Data", "Nop"]);
    assert_eq!(kinds(SMUX_V2_GOLDEN), ["Data", "Nop", "Update"]);
    // Each single flag, and the combinations peers send, appear on a yamux stream frame.
    let mut seen = [false; 16];
    for (f, _) in YAMUX_GOLDEN {
        if let Frame::Data { flags, .. } | Frame::WindowUpdate { flags, .. } = f {
            seen[usize::from(flags.0)] = true;
        }
    }
    for bits in [0u16, 1, 2, 3, 4, 5, 6, 8, 12, 15] {
        assert!(
            seen[usize::from(bits)],
            "no yamux vector with flags {bits:#x}"
        );
    }
}

/// A smux v1 vector differs from its v2 twin only in the version byte.
#[test]
fn smux_v1_and_v2_vectors_differ_only_in_version() {
    let updates = SMUX_V2_GOLDEN
        .iter()
        .filter(|(f, _)| matches!(f, Frame::Update { .. }))
        .count();
    assert_eq!(SMUX_V1_GOLDEN.len() + updates, SMUX_V2_GOLDEN.len());
    for ((f1, b1), (f2, b2)) in SMUX_V1_GOLDEN.iter().zip(SMUX_V2_GOLDEN) {
        assert_eq!(f1, f2);
        assert_eq!((b1[0], b2[0]), (1, 2));
        assert_eq!(b1[1..], b2[1..]);
    }
}

/// yamux and net-mux differ in the version byte and in the Ping request's flags only.
#[test]
fn yamux_and_net_mux_differ_in_version_and_ping_request() {
    for f in [data(1, SYN, 7), wu(9, RST, 3), ping(true, 42), goaway(1)] {
        let (y, n) = (encode(Dialect::Yamux, &f), encode(Dialect::NetMux, &f));
        assert_eq!((y[0], n[0]), (0, 1), "{f:?}");
        assert_eq!(y[1..], n[1..], "{f:?}");
    }
    let (y, n) = (
        encode(Dialect::Yamux, &ping(false, 42)),
        encode(Dialect::NetMux, &ping(false, 42)),
    );
    assert_eq!(y[2..4], [0x00, 0x01]);
    assert_eq!(n[2..4], [0x00, 0x00]);
}

#[test]
fn header_lengths_and_payload_limits() {
    assert_eq!(Dialect::Yamux.header_len(), 12);
    assert_eq!(Dialect::NetMux.header_len(), 12);
    assert_eq!(Dialect::SmuxV1.header_len(), 8);
    assert_eq!(Dialect::SmuxV2.header_len(), 8);
    assert_eq!(Dialect::Yamux.max_frame_payload(), u32::MAX);
    assert_eq!(Dialect::NetMux.max_frame_payload(), u32::MAX);
    assert_eq!(Dialect::SmuxV1.max_frame_payload(), 65_535);
    assert_eq!(Dialect::SmuxV2.max_frame_payload(), 65_535);
}

/// Encoding appends: it never clears or rewrites what is already in the buffer.
#[test]
fn encode_appends_to_the_buffer() {
    let mut out = BytesMut::from(&b"xyz"[..]);
    Dialect::SmuxV2.encode(&data(3, SYN, 0), &mut out);
    Dialect::SmuxV2.encode(&upd(3, 1, 2), &mut out);
    assert_eq!(
        out[..],
        [
            b'x', b'y', b'z', //
            0x02, 0x00, 0x00, 0x00, 0x03, 0x00, 0x00, 0x00, //
            0x02, 0x04, 0x08, 0x00, 0x03, 0x00, 0x00, 0x00, //
            0x01, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00,
        ]
    );
}

// ---------------------------------------------------------------------------------------------
// Decoding details
// ---------------------------------------------------------------------------------------------

/// Empty input, and any input shorter than a header, is "need more bytes" — even when the
/// bytes already present are invalid (the version byte is judged only with a whole header).
#[test]
fn short_input_needs_more_bytes_even_if_garbage() {
    for d in ALL {
        assert_eq!(d.decode(&[]), Ok(None), "{d:?}");
        for len in 1..d.header_len() {
            assert_eq!(d.decode(&vec![0xFF; len]), Ok(None), "{d:?}: {len} bytes");
        }
    }
}

/// A `Data` frame consumes only its header; the payload stays for the engine.
#[test]
fn data_payload_is_not_consumed() {
    let mut buf = vec![
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x03,
    ];
    buf.extend_from_slice(b"abc");
    assert_eq!(
        Dialect::Yamux.decode(&buf),
        Ok(Some((data(1, NONE, 3), 12)))
    );
    // A huge declared length needs no buffered payload to decode the header.
    let huge = [
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0xFF, 0xFF, 0xFF, 0xFF,
    ];
    assert_eq!(
        Dialect::Yamux.decode(&huge),
        Ok(Some((data(1, NONE, u32::MAX), 12)))
    );
    let mut buf = vec![0x01, 0x02, 0x03, 0x00, 0x03, 0x00, 0x00, 0x00];
    buf.extend_from_slice(b"abc");
    assert_eq!(
        Dialect::SmuxV1.decode(&buf),
        Ok(Some((data(3, NONE, 3), 8)))
    );
}

/// smux `UPD` is decoded with its 8-byte payload: header alone, or header plus up to 7
/// payload bytes, is "need more bytes"; the payload is consumed.
#[test]
fn smux_update_needs_its_payload() {
    let full = [
        0x02, 0x04, 0x08, 0x00, 0x07, 0x00, 0x00, 0x00, //
        0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08,
    ];
    for cut in 8..16 {
        assert_eq!(
            Dialect::SmuxV2.decode(&full[..cut]),
            Ok(None),
            "{cut} bytes"
        );
    }
    assert_eq!(
        Dialect::SmuxV2.decode(&full),
        Ok(Some((upd(7, 0x0403_0201, 0x0807_0605), 16)))
    );
}

/// Flags the codec does not interpret ride along verbatim on Data/WindowUpdate (hashicorp
/// yamux ignores unknown bits too); GoAway's flags are ignored.
#[test]
fn yamux_unknown_flag_bits_are_carried() {
    let bytes = [
        0x00, 0x00, 0x80, 0x11, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00,
    ];
    assert_eq!(
        Dialect::Yamux.decode(&bytes),
        Ok(Some((data(1, Flags(0x8011), 0), 12)))
    );
    let bytes = [
        0x01, 0x01, 0x00, 0x30, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x09,
    ];
    assert_eq!(
        Dialect::NetMux.decode(&bytes),
        Ok(Some((wu(2, Flags(0x30), 9), 12)))
    );
    let bytes = [
        0x00, 0x03, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    ];
    assert_eq!(Dialect::Yamux.decode(&bytes), Ok(Some((goaway(0), 12))));
}

/// smux `NOP` is accepted whatever its sid: xtaci/smux's receive loop ignores the sid of a
/// NOP (session.go:328), and we always send sid 0 (session.go:393).
#[test]
fn smux_nop_on_any_stream_id_is_accepted() {
    for d in [Dialect::SmuxV1, Dialect::SmuxV2] {
        let v = if d == Dialect::SmuxV1 { 1 } else { 2 };
        let bytes = [v, 0x03, 0x00, 0x00, 0x05, 0x00, 0x00, 0x00];
        assert_eq!(d.decode(&bytes), Ok(Some((Frame::Nop, 8))), "{d:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// Violations
// ---------------------------------------------------------------------------------------------

#[test]
fn yamux_shaped_wrong_version() {
    let header = |v: u8| {
        [
            v, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00,
        ]
    };
    for (got, expected, d) in [
        (1, 0, Dialect::Yamux),
        (2, 0, Dialect::Yamux),
        (0xFF, 0, Dialect::Yamux),
        (0, 1, Dialect::NetMux),
        (2, 1, Dialect::NetMux),
        (0xFF, 1, Dialect::NetMux),
    ] {
        check_violation(
            d,
            &header(got),
            Violation::UnsupportedVersion { got, expected },
        );
    }
}

#[test]
fn smux_wrong_version() {
    let header = |v: u8| [v, 0x02, 0x00, 0x00, 0x03, 0x00, 0x00, 0x00];
    for (got, expected, d) in [
        (0, 1, Dialect::SmuxV1),
        (2, 1, Dialect::SmuxV1),
        (0xFF, 1, Dialect::SmuxV1),
        (0, 2, Dialect::SmuxV2),
        (1, 2, Dialect::SmuxV2),
        (3, 2, Dialect::SmuxV2),
    ] {
        check_violation(
            d,
            &header(got),
            Violation::UnsupportedVersion { got, expected },
        );
    }
}

#[test]
fn yamux_shaped_unknown_type() {
    for (d, v) in [(Dialect::Yamux, 0), (Dialect::NetMux, 1)] {
        for got in [4, 5, 0x7F, 0xFF] {
            let bytes = [
                v, got, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00,
            ];
            check_violation(d, &bytes, Violation::UnknownFrameType { got });
        }
    }
}

#[test]
fn smux_unknown_cmd() {
    for (d, v) in [(Dialect::SmuxV1, 1), (Dialect::SmuxV2, 2)] {
        for got in [5, 6, 0x80, 0xFF] {
            let bytes = [v, got, 0x00, 0x00, 0x03, 0x00, 0x00, 0x00];
            check_violation(d, &bytes, Violation::UnknownFrameType { got });
        }
    }
}

/// `UPD` exists only in v2: in v1 it is an unknown command, whatever its length.
#[test]
fn smux_v1_rejects_update() {
    for len in [0x00, 0x08] {
        let bytes = [0x01, 0x04, len, 0x00, 0x03, 0x00, 0x00, 0x00];
        check_violation(
            Dialect::SmuxV1,
            &bytes,
            Violation::UnknownFrameType { got: 4 },
        );
    }
}

/// A v2 `UPD` must declare exactly 8 payload bytes; the error comes from the header alone.
#[test]
fn smux_v2_update_with_wrong_length() {
    for len in [0u16, 1, 7, 9, 16, 0xFFFF] {
        let [lo, hi] = len.to_le_bytes();
        let bytes = [0x02, 0x04, lo, hi, 0x03, 0x00, 0x00, 0x00];
        check_violation(
            Dialect::SmuxV2,
            &bytes,
            Violation::InvalidLength {
                frame: "UPD",
                len: len.into(),
            },
        );
    }
}

/// SYN, FIN and NOP carry no payload in smux; a length would desynchronise the stream.
#[test]
fn smux_empty_commands_with_length() {
    for (d, v) in [(Dialect::SmuxV1, 1), (Dialect::SmuxV2, 2)] {
        for (cmd, frame) in [(0, "SYN"), (1, "FIN"), (3, "NOP")] {
            for (bytes_len, len) in [
                ([0x01, 0x00], 1),
                ([0x00, 0x01], 256),
                ([0xFF, 0xFF], 65_535),
            ] {
                let bytes = [v, cmd, bytes_len[0], bytes_len[1], 0x03, 0x00, 0x00, 0x00];
                check_violation(d, &bytes, Violation::InvalidLength { frame, len });
            }
        }
    }
}

#[test]
fn yamux_ping_flags() {
    // No flags: neither a request (SYN) nor a reply (ACK).
    for flags in [0x0000u16, 0x0003, 0x0004, 0x0008, 0x0005, 0x0006, 0x0010] {
        let [hi, lo] = flags.to_be_bytes();
        let bytes = [
            0x00, 0x02, hi, lo, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x07,
        ];
        check_violation(
            Dialect::Yamux,
            &bytes,
            Violation::InvalidFlags {
                frame: "Ping",
                flags,
            },
        );
    }
}

#[test]
fn net_mux_ping_flags() {
    // The request has no flags, so SYN (yamux's request) is invalid here, as is SYN|ACK.
    for flags in [0x0001u16, 0x0003, 0x0004, 0x0006, 0x0008, 0x0010] {
        let [hi, lo] = flags.to_be_bytes();
        let bytes = [
            0x01, 0x02, hi, lo, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x07,
        ];
        check_violation(
            Dialect::NetMux,
            &bytes,
            Violation::InvalidFlags {
                frame: "Ping",
                flags,
            },
        );
    }
}

#[test]
fn yamux_shaped_session_frame_on_stream() {
    for (d, v, ping_req) in [(Dialect::Yamux, 0, 0x01), (Dialect::NetMux, 1, 0x00)] {
        for (sid, stream) in [
            ([0x00, 0x00, 0x00, 0x01], 1),
            ([0x80, 0x00, 0x00, 0x00], 1 << 31),
        ] {
            let stream = StreamId(stream);
            for (ty, flags) in [(2, ping_req), (2, 0x02)] {
                let bytes = [
                    v, ty, 0x00, flags, sid[0], sid[1], sid[2], sid[3], 0, 0, 0, 9,
                ];
                check_violation(
                    d,
                    &bytes,
                    Violation::SessionFrameOnStream {
                        frame: "Ping",
                        stream,
                    },
                );
            }
            let bytes = [
                v, 0x03, 0x00, 0x00, sid[0], sid[1], sid[2], sid[3], 0, 0, 0, 1,
            ];
            check_violation(
                d,
                &bytes,
                Violation::SessionFrameOnStream {
                    frame: "GoAway",
                    stream,
                },
            );
        }
    }
}

#[test]
fn yamux_shaped_stream_frame_on_session() {
    for (d, v) in [(Dialect::Yamux, 0), (Dialect::NetMux, 1)] {
        for flags in [0x00, 0x01, 0x02, 0x04, 0x08] {
            for (ty, frame) in [(0, "Data"), (1, "WindowUpdate")] {
                let bytes = [v, ty, 0x00, flags, 0, 0, 0, 0, 0x00, 0x00, 0x01, 0x00];
                check_violation(d, &bytes, Violation::StreamFrameOnSession { frame });
            }
        }
    }
}

#[test]
fn smux_stream_frame_on_session() {
    for (d, v) in [(Dialect::SmuxV1, 1), (Dialect::SmuxV2, 2)] {
        for (cmd, len, frame) in [(0, 0, "SYN"), (1, 0, "FIN"), (2, 0, "PSH"), (2, 5, "PSH")] {
            let bytes = [v, cmd, len, 0x00, 0x00, 0x00, 0x00, 0x00];
            check_violation(d, &bytes, Violation::StreamFrameOnSession { frame });
        }
    }
    // UPD on sid 0 is rejected from the header alone, before its payload arrives.
    let bytes = [0x02, 0x04, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00];
    check_violation(
        Dialect::SmuxV2,
        &bytes,
        Violation::StreamFrameOnSession { frame: "UPD" },
    );
}

/// When a header breaks several rules, the first check wins: version, then type, then
/// flags/length, then the stream id.
#[test]
fn violation_precedence() {
    // yamux: bad version and bad type.
    let b = [
        0x07, 0x09, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    ];
    check_violation(
        Dialect::Yamux,
        &b,
        Violation::UnsupportedVersion {
            got: 7,
            expected: 0,
        },
    );
    // yamux: Ping with bad flags on a stream.
    let b = [
        0x00, 0x02, 0x00, 0x03, 0x00, 0x00, 0x00, 0x05, 0x00, 0x00, 0x00, 0x00,
    ];
    check_violation(
        Dialect::Yamux,
        &b,
        Violation::InvalidFlags {
            frame: "Ping",
            flags: 3,
        },
    );
    // smux: SYN with a length on sid 0.
    let b = [0x01, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00];
    check_violation(
        Dialect::SmuxV1,
        &b,
        Violation::InvalidLength {
            frame: "SYN",
            len: 1,
        },
    );
    // smux v2: UPD with a wrong length on sid 0.
    let b = [0x02, 0x04, 0x04, 0x00, 0x00, 0x00, 0x00, 0x00];
    check_violation(
        Dialect::SmuxV2,
        &b,
        Violation::InvalidLength {
            frame: "UPD",
            len: 4,
        },
    );
}

// ---------------------------------------------------------------------------------------------
// Frames a dialect cannot express
// ---------------------------------------------------------------------------------------------

/// Encoding a frame the dialect cannot express is an engine bug: a debug assertion fires, and
/// in release builds nothing is written (the frame is logged and skipped).
fn assert_not_encodable(d: Dialect, f: Frame) {
    let result = std::panic::catch_unwind(|| encode(d, &f));
    if cfg!(debug_assertions) {
        assert!(
            result.is_err(),
            "{d:?}: {f:?} should trip the debug assertion"
        );
    } else {
        assert_eq!(
            result.ok(),
            Some(Vec::new()),
            "{d:?}: {f:?} should write nothing"
        );
    }
}

#[test]
fn inexpressible_frames_are_not_encoded() {
    for d in [Dialect::Yamux, Dialect::NetMux] {
        assert_not_encodable(d, Frame::Nop);
        assert_not_encodable(d, upd(1, 2, 3));
    }
    for d in [Dialect::SmuxV1, Dialect::SmuxV2] {
        assert_not_encodable(d, data(1, ACK, 0));
        assert_not_encodable(d, data(1, RST, 0));
        assert_not_encodable(d, data(1, SYN.with(FIN), 0));
        assert_not_encodable(d, data(1, SYN, 1));
        assert_not_encodable(d, data(1, FIN, 1));
        assert_not_encodable(d, data(1, NONE, 65_536));
        assert_not_encodable(d, wu(1, NONE, 1));
        assert_not_encodable(d, ping(false, 1));
        assert_not_encodable(d, goaway(0));
    }
    assert_not_encodable(Dialect::SmuxV1, upd(1, 2, 3));
}

// ---------------------------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------------------------

fn stream_id() -> impl Strategy<Value = u32> {
    prop_oneof![1..=16u32, 1..=u32::MAX]
}

/// Frames yamux and net-mux can express: stream frames on a non-zero id with any combination
/// of the four flags, session frames on id 0.
fn yamux_shaped_frame() -> impl Strategy<Value = Frame> {
    prop_oneof![
        (stream_id(), 0..16u16, any::<u32>()).prop_map(|(s, f, l)| data(s, Flags(f), l)),
        (stream_id(), 0..16u16, any::<u32>()).prop_map(|(s, f, d)| wu(s, Flags(f), d)),
        (any::<bool>(), any::<u32>()).prop_map(|(a, o)| ping(a, o)),
        any::<u32>().prop_map(goaway),
    ]
}

/// Frames smux can express: SYN/FIN as empty flagged Data, PSH as unflagged Data of at most
/// 65535 bytes, NOP, and (v2 only) UPD.
fn smux_frame(v2: bool) -> BoxedStrategy<Frame> {
    let v1 = prop_oneof![
        stream_id().prop_map(|s| data(s, SYN, 0)),
        stream_id().prop_map(|s| data(s, FIN, 0)),
        (stream_id(), 0..=65_535u32).prop_map(|(s, l)| data(s, NONE, l)),
        Just(Frame::Nop),
    ];
    if v2 {
        prop_oneof![
            4 => v1,
            1 => (stream_id(), any::<u32>(), any::<u32>()).prop_map(|(s, c, w)| upd(s, c, w)),
        ]
        .boxed()
    } else {
        v1.boxed()
    }
}

fn dialect_and_frame() -> impl Strategy<Value = (Dialect, Frame)> {
    prop_oneof![
        yamux_shaped_frame().prop_map(|f| (Dialect::Yamux, f)),
        yamux_shaped_frame().prop_map(|f| (Dialect::NetMux, f)),
        smux_frame(false).prop_map(|f| (Dialect::SmuxV1, f)),
        smux_frame(true).prop_map(|f| (Dialect::SmuxV2, f)),
    ]
}

fn dialect() -> impl Strategy<Value = Dialect> {
    prop::sample::select(ALL.to_vec())
}

/// Bytes that get past the version check about half the time, to reach the deeper paths.
fn plausible_bytes() -> impl Strategy<Value = (Dialect, Vec<u8>)> {
    (
        dialect(),
        prop::collection::vec(any::<u8>(), 0..64),
        any::<bool>(),
        0..8u8,
        any::<bool>(),
    )
        .prop_map(|(d, mut bytes, fix_version, kind, zero_sid)| {
            let version = match d {
                Dialect::Yamux => 0,
                Dialect::NetMux | Dialect::SmuxV1 => 1,
                Dialect::SmuxV2 => 2,
            };
            if fix_version && bytes.len() >= 2 {
                bytes[0] = version;
                bytes[1] = kind;
            }
            // Both layouts keep the stream id in bytes 4..8.
            if zero_sid && bytes.len() >= 8 {
                bytes[4..8].fill(0);
            }
            (d, bytes)
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Every expressible frame round-trips, consuming exactly what was encoded.
    #[test]
    fn prop_round_trip((d, frame) in dialect_and_frame()) {
        let bytes = encode(d, &frame);
        let expected_len = d.header_len() + if matches!(frame, Frame::Update { .. }) { 8 } else { 0 };
        prop_assert_eq!(bytes.len(), expected_len);
        prop_assert_eq!(d.decode(&bytes), Ok(Some((frame, bytes.len()))));
        // A truncated encoding is never mistaken for a frame.
        let cut = bytes.len() - 1;
        prop_assert_eq!(d.decode(&bytes[..cut]), Ok(None));
    }

    /// A sequence of frames (Data followed by its payload) decodes back in order.
    #[test]
    fn prop_sequence_round_trip(
        d in dialect(),
        seed in prop::collection::vec((any::<u32>(), 0..64u32), 0..8),
    ) {
        // Build frames the dialect can express from the seed.
        let frames: Vec<Frame> = seed
            .iter()
            .enumerate()
            .map(|(i, &(x, len))| {
                let stream = x | 1;
                match (d, i % 4) {
                    (Dialect::Yamux | Dialect::NetMux, 0) => data(stream, Flags(((x >> 8) & 0xF) as u16), len),
                    (Dialect::Yamux | Dialect::NetMux, 1) => wu(stream, SYN, x),
                    (Dialect::Yamux | Dialect::NetMux, 2) => ping(x % 2 == 0, x),
                    (Dialect::Yamux | Dialect::NetMux, _) => goaway(x),
                    (_, 0) => data(stream, NONE, len),
                    (_, 1) => data(stream, SYN, 0),
                    (Dialect::SmuxV2, 2) => upd(stream, x, len),
                    (_, 2) => data(stream, FIN, 0),
                    (_, _) => Frame::Nop,
                }
            })
            .collect();
        let mut wire = BytesMut::new();
        for f in &frames {
            d.encode(f, &mut wire);
            if let Frame::Data { len, .. } = f {
                wire.resize(wire.len() + *len as usize, 0xEE);
            }
        }
        let mut rest = &wire[..];
        let mut decoded = Vec::new();
        while let Some((f, n)) = d.decode(rest).expect("valid wire") {
            let payload = if let Frame::Data { len, .. } = f { len as usize } else { 0 };
            rest = &rest[n + payload..];
            decoded.push(f);
        }
        prop_assert!(rest.is_empty());
        prop_assert_eq!(decoded, frames);
    }

    /// Arbitrary bytes never panic; a decoded frame never claims more than the input and is
    /// itself expressible (it re-encodes and decodes to the same frame).
    #[test]
    fn prop_decode_arbitrary_bytes(
        d in dialect(),
        bytes in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        check_arbitrary(d, &bytes)?;
    }

    /// Same, with inputs biased toward valid version/type bytes and stream id 0.
    #[test]
    fn prop_decode_plausible_bytes((d, bytes) in plausible_bytes()) {
        check_arbitrary(d, &bytes)?;
    }
}

fn check_arbitrary(d: Dialect, bytes: &[u8]) -> Result<(), TestCaseError> {
    match d.decode(bytes) {
        Ok(None) => {
            // Only a short header, or a smux v2 UPD header without its whole payload.
            let short_header = bytes.len() < d.header_len();
            prop_assert!(
                short_header || (d == Dialect::SmuxV2 && bytes[1] == 4 && bytes.len() < 16)
            );
        }
        Ok(Some((frame, n))) => {
            prop_assert!(n <= bytes.len());
            let is_update = matches!(frame, Frame::Update { .. });
            prop_assert_eq!(n, d.header_len() + if is_update { 8 } else { 0 });
            let again = encode(d, &frame);
            prop_assert_eq!(d.decode(&again), Ok(Some((frame, again.len()))));
        }
        Err(_) => prop_assert!(bytes.len() >= d.header_len()),
    }
    Ok(())
}
