//! Violations: every [`Violation`] path of the decoders, and which one wins when several apply.

use super::*;

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
