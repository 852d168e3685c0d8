//! Golden vectors and properties for the codecs.

use bytes::BytesMut;

use super::Dialect;
use crate::frame::{Flags, Frame, StreamId};

fn encode(d: Dialect, f: &Frame) -> Vec<u8> {
    let mut out = BytesMut::new();
    d.encode(f, &mut out);
    out.to_vec()
}

#[test]
fn yamux_window_update_syn() {
    let f = Frame::WindowUpdate {
        stream: StreamId(1),
        flags: Flags::SYN,
        delta: 0,
    };
    let bytes = encode(Dialect::Yamux, &f);
    assert_eq!(bytes, [0, 1, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0]);
    assert_eq!(Dialect::Yamux.decode(&bytes), Ok(Some((f, 12))));
}
