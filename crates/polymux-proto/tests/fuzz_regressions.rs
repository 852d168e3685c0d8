//! Regression tests for what the fuzz targets in `fuzz/` found (see `fuzz/README.md`): each
//! test replays the essence of a crashing input through the public API, in every dialect the
//! input's rule applies to, and asserts the rule that the fuzzer saw broken.

use std::task::{Poll, Waker};
use std::time::Instant;

use bytes::BytesMut;
use polymux_proto::{Config, Connection, Dialect, Flags, Frame, Role, StreamId};

const DIALECTS: [Dialect; 4] = [
    Dialect::Yamux,
    Dialect::SmuxV1,
    Dialect::SmuxV2,
    Dialect::NetMux,
];

/// A peer's bytes: frames encoded with the dialect's codec, Data followed by its payload.
struct Wire {
    dialect: Dialect,
    bytes: BytesMut,
}

impl Wire {
    fn new(dialect: Dialect) -> Wire {
        Wire {
            dialect,
            bytes: BytesMut::new(),
        }
    }

    fn data(&mut self, id: u32, flags: Flags, payload: &[u8]) -> &mut Self {
        let frame = Frame::Data {
            stream: StreamId(id),
            flags,
            len: payload.len() as u32,
        };
        self.dialect.encode(&frame, &mut self.bytes);
        self.bytes.extend_from_slice(payload);
        self
    }

    /// Opens stream `id` (yamux-shaped: SYN on an empty Data frame; smux: SYN).
    fn open(&mut self, id: u32) -> &mut Self {
        self.data(id, Flags::SYN, b"")
    }

    /// Half-closes stream `id` (FIN on an empty Data frame; smux: FIN).
    fn fin(&mut self, id: u32) -> &mut Self {
        self.data(id, Flags::FIN, b"")
    }

    fn deliver(&mut self, conn: &mut Connection, now: Instant) {
        conn.handle_input(&mut self.bytes, now);
        assert!(self.bytes.is_empty(), "input left undecoded");
    }
}

fn read(
    conn: &mut Connection,
    key: polymux_proto::StreamKey,
    now: Instant,
) -> Poll<Result<Vec<u8>, String>> {
    let mut buf = [0u8; 64];
    conn.poll_read(key, Waker::noop(), &mut buf, now)
        .map(|r| r.map(|n| buf[..n].to_vec()).map_err(|e| e.to_string()))
}

/// engine_hostile, smux v1 (then every dialect): the peer sent Data on a stream after its FIN,
/// and a read that had returned EOF (`Ok(0)`) returned those bytes afterwards. EOF is final:
/// payload after the peer's FIN is discarded (and holds no receive budget).
#[test]
fn data_after_the_peers_fin_is_not_read_after_eof() {
    for dialect in DIALECTS {
        let ctx = dialect.name();
        let now = Instant::now();
        let mut server = Connection::new(Role::Server, Config::for_dialect(dialect), now);
        let mut wire = Wire::new(dialect);
        wire.open(1)
            .data(1, Flags::NONE, b"abc")
            .fin(1)
            .deliver(&mut server, now);
        let Poll::Ready(Ok(key)) = server.poll_accept(Waker::noop(), now) else {
            panic!("{ctx}: the stream was not accepted")
        };
        assert_eq!(
            read(&mut server, key, now),
            Poll::Ready(Ok(b"abc".to_vec())),
            "{ctx}"
        );
        assert_eq!(
            read(&mut server, key, now),
            Poll::Ready(Ok(Vec::new())),
            "{ctx}: EOF"
        );

        // The peer sends more on the stream it finished: both before and after our FIN.
        wire.data(1, Flags::NONE, b"late").deliver(&mut server, now);
        assert_eq!(
            read(&mut server, key, now),
            Poll::Ready(Ok(Vec::new())),
            "{ctx}: EOF again"
        );
        server.close_write(key, now).expect("half-close");
        wire.data(1, Flags::NONE, b"later")
            .deliver(&mut server, now);
        assert_eq!(
            read(&mut server, key, now),
            Poll::Ready(Ok(Vec::new())),
            "{ctx}: EOF still"
        );
        assert_eq!(
            server.stats().recv_buffered,
            0,
            "{ctx}: discarded bytes held"
        );
        assert!(!server.is_ended(), "{ctx}: the session goes on");
    }
}
