//! Header-level violations: version, frame type, session frames on streams and back, flags,
//! smux control frames with a length.

use super::*;

#[test]
fn bad_version_byte() {
    for d in ALL {
        let (got, expected) = match d {
            Dialect::Yamux => (1, 0),
            Dialect::NetMux => (0, 1),
            Dialect::SmuxV1 => (2, 1),
            Dialect::SmuxV2 => (1, 2),
        };
        let mut bad = if is_smux(d) {
            cmd(d, CMD_NOP, 0, 0)
        } else {
            ping(d, 1)
        };
        bad[0] = got;
        Fixture::new(d).violate(&bad, Violation::UnsupportedVersion { got, expected });
    }
}

#[test]
fn unknown_frame_type() {
    for d in YAMUX_SHAPED {
        for kind in [4, 0xff] {
            let bad = hdr(d, kind, 0, 3, 0);
            Fixture::new(d).violate(&bad, Violation::UnknownFrameType { got: kind });
        }
    }
    for d in SMUX {
        let bad = cmd(d, 5, 0, 3);
        Fixture::new(d).violate(&bad, Violation::UnknownFrameType { got: 5 });
    }
    // UPD only exists in v2: in a v1 session it is an unknown command.
    let d = Dialect::SmuxV1;
    let bad = cat(&[&cmd(d, CMD_UPD, 8, 3), &[0; 8]]);
    Fixture::new(d).violate(&bad, Violation::UnknownFrameType { got: CMD_UPD });
}

#[test]
fn session_frames_on_a_stream() {
    for d in YAMUX_SHAPED {
        let ping_flags = if d == Dialect::Yamux { SYN } else { 0 };
        let bad = hdr(d, PING, ping_flags, 3, 1);
        let frame = "Ping";
        Fixture::new(d).violate(
            &bad,
            Violation::SessionFrameOnStream {
                frame,
                stream: StreamId(3),
            },
        );
        let bad = hdr(d, GO_AWAY, 0, 1, 0);
        let frame = "GoAway";
        Fixture::new(d).violate(
            &bad,
            Violation::SessionFrameOnStream {
                frame,
                stream: StreamId(1),
            },
        );
    }
}

#[test]
fn stream_frames_on_session() {
    for d in YAMUX_SHAPED {
        for (bad, frame) in [
            (data(d, 0, b"x"), "Data"),
            (hdr(d, DATA, SYN, 0, 0), "Data"),
            (window_update(d, 0, 1), "WindowUpdate"),
            (hdr(d, WINDOW_UPDATE, SYN, 0, 0), "WindowUpdate"),
        ] {
            Fixture::new(d).violate(&bad, Violation::StreamFrameOnSession { frame });
        }
    }
    for d in SMUX {
        let mut cases = vec![
            (syn(d, 0), "SYN"),
            (fin(d, 0), "FIN"),
            (data(d, 0, b"x"), "PSH"),
        ];
        if d == Dialect::SmuxV2 {
            cases.push((upd(d, 0, 0, 1), "UPD"));
        }
        for (bad, frame) in cases {
            Fixture::new(d).violate(&bad, Violation::StreamFrameOnSession { frame });
        }
    }
}

#[test]
fn ping_with_invalid_flags() {
    // yamux: a request is SYN, a reply ACK. net-mux: a request has no flags.
    for (d, flags) in [
        (Dialect::Yamux, 0),
        (Dialect::Yamux, SYN | ACK),
        (Dialect::Yamux, FIN),
        (Dialect::Yamux, RST),
        (Dialect::NetMux, SYN),
        (Dialect::NetMux, SYN | ACK),
        (Dialect::NetMux, 0x10),
    ] {
        let bad = hdr(d, PING, flags, 0, 1);
        Fixture::new(d).violate(
            &bad,
            Violation::InvalidFlags {
                frame: "Ping",
                flags,
            },
        );
    }
}

#[test]
fn smux_control_frames_with_a_length() {
    for d in SMUX {
        // A SYN/FIN/NOP with a length would desynchronise Go's reader.
        for (c, frame) in [(CMD_SYN, "SYN"), (CMD_FIN, "FIN"), (CMD_NOP, "NOP")] {
            let bad = cat(&[&cmd(d, c, 5, 5), b"abcde"]);
            Fixture::new(d).violate(&bad, Violation::InvalidLength { frame, len: 5 });
        }
    }
    // UPD must carry exactly 8 bytes.
    let d = Dialect::SmuxV2;
    for len in [0u16, 4, 9, 0xffff] {
        let bad = cmd(d, CMD_UPD, len, 3);
        Fixture::new(d).violate(
            &bad,
            Violation::InvalidLength {
                frame: "UPD",
                len: len.into(),
            },
        );
    }
}
