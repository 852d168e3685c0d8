//! The decoder targets: arbitrary bytes through a dialect's decode loop, the way the engine
//! walks its receive buffer (header, then skip the Data payload, then the next header).
//!
//! Properties checked (each one true of the codecs by construction, see `codec/*.rs`):
//! - decoding never panics and never claims more bytes than it was given;
//! - `Ok(None)` ("need more bytes") only for fewer bytes than a header (smux v2: than a `UPD`
//!   header plus its 8-byte body), and any prefix shorter than a header is `Ok(None)`;
//! - a decoded frame re-encodes to the bytes it came from, except for the bits a dialect
//!   ignores on decode: the flags of a yamux/net-mux GoAway and the stream id of a smux NOP
//!   (re-encoded as zero), and decoding the re-encoding gives the same frame back.

use bytes::BytesMut;
use polymux_proto::{Dialect, Frame};

/// Runs the decode loop of `dialect` over `data`, asserting the properties in the module docs.
pub fn decode_loop(dialect: Dialect, data: &[u8]) {
    let header = dialect.header_len();
    let mut buf = data;
    let mut out = BytesMut::with_capacity(32);
    while !buf.is_empty() {
        // A partial header is never an answer, whatever its bytes.
        let short = &buf[..buf.len().min(header - 1)];
        assert_eq!(dialect.decode(short), Ok(None), "partial header decoded");
        let (frame, used) = match dialect.decode(buf) {
            Ok(Some(x)) => x,
            Ok(None) => {
                let needed = if dialect == Dialect::SmuxV2 {
                    header + 8
                } else {
                    header
                };
                assert!(buf.len() < needed, "Ok(None) with {} bytes", buf.len());
                return;
            }
            // A violation ends the session: the engine decodes nothing after it.
            Err(_) => return,
        };
        assert!(
            used >= header && used <= buf.len(),
            "used {used} of {}",
            buf.len()
        );
        out.clear();
        dialect.encode(&frame, &mut out);
        let mut expected = buf[..used].to_vec();
        match (dialect, frame) {
            (Dialect::Yamux | Dialect::NetMux, Frame::GoAway { .. }) => expected[2..4].fill(0),
            (Dialect::SmuxV1 | Dialect::SmuxV2, Frame::Nop) => expected[4..8].fill(0),
            _ => {}
        }
        assert_eq!(
            &out[..],
            &expected[..],
            "{frame:?} does not re-encode canonically"
        );
        assert_eq!(
            dialect.decode(&out),
            Ok(Some((frame, used))),
            "re-decode differs"
        );
        buf = &buf[used..];
        if let Frame::Data { len, .. } = frame {
            let skip = (len as usize).min(buf.len());
            buf = &buf[skip..];
        }
    }
}
