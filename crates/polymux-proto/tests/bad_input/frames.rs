//! The peer's frames, byte by byte: header layouts and frame builders for every dialect,
//! pinned to the wire by `helpers_match_the_wire_layouts`.

use super::*;

// yamux / net-mux types and flags.
pub(crate) const DATA: u8 = 0;
pub(crate) const WINDOW_UPDATE: u8 = 1;
pub(crate) const PING: u8 = 2;
pub(crate) const GO_AWAY: u8 = 3;
pub(crate) const SYN: u16 = 1;
pub(crate) const ACK: u16 = 2;
pub(crate) const FIN: u16 = 4;
pub(crate) const RST: u16 = 8;

// smux commands.
pub(crate) const CMD_SYN: u8 = 0;
pub(crate) const CMD_FIN: u8 = 1;
pub(crate) const CMD_PSH: u8 = 2;
pub(crate) const CMD_NOP: u8 = 3;
pub(crate) const CMD_UPD: u8 = 4;

pub(crate) fn is_smux(d: Dialect) -> bool {
    matches!(d, Dialect::SmuxV1 | Dialect::SmuxV2)
}

pub(crate) fn version(d: Dialect) -> u8 {
    match d {
        Dialect::Yamux => 0,
        Dialect::NetMux | Dialect::SmuxV1 => 1,
        Dialect::SmuxV2 => 2,
    }
}

/// yamux-shaped header: `version u8 | type u8 | flags u16 | stream u32 | length u32`, BE.
pub(crate) fn hdr(d: Dialect, kind: u8, flags: u16, stream: u32, len: u32) -> Vec<u8> {
    assert!(!is_smux(d));
    let mut h = vec![version(d), kind];
    h.extend_from_slice(&flags.to_be_bytes());
    h.extend_from_slice(&stream.to_be_bytes());
    h.extend_from_slice(&len.to_be_bytes());
    h
}

/// smux header: `version u8 | cmd u8 | length u16 LE | stream u32 LE`.
pub(crate) fn cmd(d: Dialect, cmd: u8, len: u16, stream: u32) -> Vec<u8> {
    assert!(is_smux(d));
    let mut h = vec![version(d), cmd];
    h.extend_from_slice(&len.to_le_bytes());
    h.extend_from_slice(&stream.to_le_bytes());
    h
}

/// Opens `stream`: yamux WindowUpdate|SYN, net-mux empty Data|SYN, smux SYN.
pub(crate) fn syn(d: Dialect, stream: u32) -> Vec<u8> {
    flagged(d, SYN, CMD_SYN, stream)
}

/// Half-close: yamux WindowUpdate|FIN, net-mux empty Data|FIN, smux FIN.
pub(crate) fn fin(d: Dialect, stream: u32) -> Vec<u8> {
    flagged(d, FIN, CMD_FIN, stream)
}

/// Accept: yamux WindowUpdate|ACK, net-mux empty Data|ACK (no smux equivalent).
pub(crate) fn ack(d: Dialect, stream: u32) -> Vec<u8> {
    flagged(d, ACK, u8::MAX, stream)
}

/// Reset: yamux WindowUpdate|RST, net-mux empty Data|RST (no smux equivalent).
pub(crate) fn rst(d: Dialect, stream: u32) -> Vec<u8> {
    flagged(d, RST, u8::MAX, stream)
}

pub(crate) fn flagged(d: Dialect, flags: u16, smux_cmd: u8, stream: u32) -> Vec<u8> {
    match d {
        Dialect::Yamux => hdr(d, WINDOW_UPDATE, flags, stream, 0),
        Dialect::NetMux => hdr(d, DATA, flags, stream, 0),
        _ => {
            assert_ne!(smux_cmd, u8::MAX, "no smux equivalent");
            cmd(d, smux_cmd, 0, stream)
        }
    }
}

/// How the engine refuses an inbound stream: RST, or FIN on smux.
pub(crate) fn refusal(d: Dialect, stream: u32) -> Vec<u8> {
    if is_smux(d) {
        fin(d, stream)
    } else {
        rst(d, stream)
    }
}

/// Stream payload: one yamux Data frame, or smux PSH frames of at most 65535 bytes.
pub(crate) fn data(d: Dialect, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    if is_smux(d) {
        for chunk in payload.chunks(usize::from(u16::MAX)) {
            out.extend(cmd(d, CMD_PSH, chunk.len() as u16, stream));
            out.extend_from_slice(chunk);
        }
    } else {
        out.extend(hdr(d, DATA, 0, stream, payload.len() as u32));
        out.extend_from_slice(payload);
    }
    out
}

pub(crate) fn window_update(d: Dialect, stream: u32, delta: u32) -> Vec<u8> {
    hdr(d, WINDOW_UPDATE, 0, stream, delta)
}

/// smux v2 `UPD`: header plus `consumed u32 LE | window u32 LE`.
pub(crate) fn upd(d: Dialect, stream: u32, consumed: u32, window: u32) -> Vec<u8> {
    let mut f = cmd(d, CMD_UPD, 8, stream);
    f.extend_from_slice(&consumed.to_le_bytes());
    f.extend_from_slice(&window.to_le_bytes());
    f
}

/// What the first read of `consumed` bytes on `stream` sends: a UPD on smux v2 (as Go's smux
/// does), nothing elsewhere (credit returns after half a window).
pub(crate) fn first_read_update(d: Dialect, stream: u32, consumed: u32) -> Vec<u8> {
    if d == Dialect::SmuxV2 {
        upd(d, stream, consumed, polymux_proto::PROTOCOL_INITIAL_WINDOW)
    } else {
        Vec::new()
    }
}

/// Ping request: yamux flags SYN, net-mux no flags.
pub(crate) fn ping(d: Dialect, opaque: u32) -> Vec<u8> {
    let flags = if d == Dialect::Yamux { SYN } else { 0 };
    hdr(d, PING, flags, 0, opaque)
}

pub(crate) fn pong(d: Dialect, opaque: u32) -> Vec<u8> {
    hdr(d, PING, ACK, 0, opaque)
}

pub(crate) fn go_away(d: Dialect, code: u32) -> Vec<u8> {
    hdr(d, GO_AWAY, 0, 0, code)
}

/// Recognisable payload for stream `tag`.
pub(crate) fn payload(tag: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| tag.wrapping_add((i % 251) as u8))
        .collect()
}

pub(crate) fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

#[test]
pub(crate) fn helpers_match_the_wire_layouts() {
    use Dialect::*;
    assert_eq!(syn(Yamux, 1), [0, 1, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0]);
    assert_eq!(rst(Yamux, 9), [0, 1, 0, 8, 0, 0, 0, 9, 0, 0, 0, 0]);
    assert_eq!(go_away(Yamux, 1), [0, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    assert_eq!(ping(Yamux, 7), [0, 2, 0, 1, 0, 0, 0, 0, 0, 0, 0, 7]);
    assert_eq!(
        data(Yamux, 3, b"hi"),
        [0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 2, b'h', b'i']
    );
    assert_eq!(
        window_update(Yamux, 3, 0x0102_0304),
        [0, 1, 0, 0, 0, 0, 0, 3, 1, 2, 3, 4]
    );
    assert_eq!(syn(NetMux, 1), [1, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0]);
    assert_eq!(ack(NetMux, 1), [1, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 0]);
    assert_eq!(ping(NetMux, 7), [1, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7]);
    assert_eq!(pong(NetMux, 7), [1, 2, 0, 2, 0, 0, 0, 0, 0, 0, 0, 7]);
    assert_eq!(go_away(NetMux, 1), [1, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    assert_eq!(syn(SmuxV1, 3), [1, 0, 0, 0, 3, 0, 0, 0]);
    assert_eq!(fin(SmuxV1, 3), [1, 1, 0, 0, 3, 0, 0, 0]);
    assert_eq!(data(SmuxV2, 3, b"hi"), [2, 2, 2, 0, 3, 0, 0, 0, b'h', b'i']);
    // docs/peer-facts.md: "v2 UPD sid 3, consumed 2, window 65536".
    assert_eq!(
        upd(SmuxV2, 3, 2, 65536),
        [2, 4, 8, 0, 3, 0, 0, 0, 2, 0, 0, 0, 0, 0, 1, 0]
    );
    // And the engine's own codec reads them as intended.
    let decoded = |d: Dialect, b: Vec<u8>| d.decode(&b).unwrap().unwrap().0;
    assert_eq!(
        decoded(NetMux, ping(NetMux, 7)),
        Frame::Ping {
            ack: false,
            opaque: 7
        }
    );
    assert_eq!(
        decoded(SmuxV2, upd(SmuxV2, 3, 2, 65536)),
        Frame::Update {
            stream: StreamId(3),
            consumed: 2,
            window: 65536
        }
    );
    let big = data(SmuxV1, 5, &payload(0, 70_000));
    assert_eq!(big.len(), 70_000 + 2 * 8);
    assert_eq!(&big[..8], [1, 2, 0xff, 0xff, 5, 0, 0, 0]);
}
