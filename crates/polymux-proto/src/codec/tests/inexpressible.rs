//! Frames a dialect cannot express are refused by the encoder, not silently changed.

use super::*;

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
