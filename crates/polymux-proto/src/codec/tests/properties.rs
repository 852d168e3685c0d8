//! Properties: round trips of arbitrary frames, and arbitrary or plausible bytes never panic
//! the decoder.

use super::*;

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
