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
//!
//! This file holds the shared frame constructors and checks; each submodule one concern.

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

mod decoding;
mod golden;
mod inexpressible;
mod properties;
mod violations;
