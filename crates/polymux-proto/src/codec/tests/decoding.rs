//! Decoding details: short input, unconsumed Data payloads, smux UPD payloads, unknown yamux
//! flag bits, smux NOP ids.

use super::*;

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
