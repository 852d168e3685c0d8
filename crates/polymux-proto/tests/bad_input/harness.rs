//! The session under test: one [`Connection`](polymux_proto::Connection) fed raw bytes,
//! the fixture with an accepted and an opened stream, and the checks every violation must pass.

use super::*;

pub(crate) struct Session {
    pub(crate) conn: Connection,
    pub(crate) d: Dialect,
    pub(crate) rx: BytesMut,
    pub(crate) now: Instant,
}

impl Session {
    pub(crate) fn new(d: Dialect, role: Role) -> Session {
        Session::with_config(Config::for_dialect(d), role)
    }

    pub(crate) fn with_config(config: Config, role: Role) -> Session {
        let now = Instant::now();
        Session {
            d: config.dialect(),
            conn: Connection::new(role, config, now),
            rx: BytesMut::new(),
            now,
        }
    }

    pub(crate) fn ctx(&self) -> &'static str {
        self.d.name()
    }

    /// The peer's bytes arrive (appended to whatever is still unread).
    pub(crate) fn feed(&mut self, bytes: &[u8]) {
        self.rx.extend_from_slice(bytes);
        self.conn.handle_input(&mut self.rx, self.now);
    }

    /// Feeds `bytes` and checks they were all consumed with the session still up.
    pub(crate) fn feed_ok(&mut self, bytes: &[u8]) {
        self.feed(bytes);
        assert_eq!(self.conn.end_reason(), None, "{}", self.ctx());
        assert!(
            self.rx.is_empty(),
            "{}: {} bytes left unread",
            self.ctx(),
            self.rx.len()
        );
    }

    /// Everything the engine transmits now, in wire order (control, then data, per batch).
    pub(crate) fn output(&mut self) -> Vec<u8> {
        let mut wire = Vec::new();
        while let Some(batch) = self.conn.poll_transmit(self.now) {
            batch.copy_to(&mut wire);
            self.conn.transmitted(batch);
        }
        wire
    }

    pub(crate) fn accept(&mut self) -> StreamKey {
        match self.conn.poll_accept(Waker::noop(), self.now) {
            Poll::Ready(Ok(key)) => key,
            other => panic!("{}: accept: {other:?}", self.ctx()),
        }
    }

    pub(crate) fn open(&mut self) -> StreamKey {
        match self.conn.poll_open(Waker::noop(), self.now) {
            Poll::Ready(Ok(key)) => key,
            other => panic!("{}: open: {other:?}", self.ctx()),
        }
    }

    /// Reads until the stream yields no more bytes; returns them and the final poll.
    pub(crate) fn read_all(&mut self, key: StreamKey) -> (Vec<u8>, Poll<Result<usize, Error>>) {
        let mut got = Vec::new();
        let mut buf = vec![0; 1024 * KIB];
        loop {
            match self.conn.poll_read(key, Waker::noop(), &mut buf, self.now) {
                Poll::Ready(Ok(n)) if n > 0 => got.extend_from_slice(&buf[..n]),
                other => return (got, other),
            }
        }
    }

    pub(crate) fn write(&mut self, key: StreamKey, bytes: &[u8]) -> Poll<Result<usize, Error>> {
        self.conn.poll_write(key, Waker::noop(), bytes, self.now)
    }
}

/// A server session with one accepted stream (#3, "hello" unread) and one it opened (#2,
/// "world" unread), all output taken.
pub(crate) struct Fixture {
    pub(crate) s: Session,
    pub(crate) inbound: StreamKey,
    pub(crate) outbound: StreamKey,
    /// What each stream should still return before the error.
    pub(crate) in_unread: Vec<u8>,
    pub(crate) out_unread: Vec<u8>,
}

impl Fixture {
    pub(crate) fn new(d: Dialect) -> Fixture {
        let mut s = Session::new(d, Role::Server);
        s.feed_ok(&cat(&[&syn(d, 3), &data(d, 3, b"hello")]));
        let inbound = s.accept();
        let outbound = s.open();
        assert_eq!(s.conn.stream_id(outbound), StreamId(2));
        // Byte-exact: our ACK of #3 (yamux-shaped), then the open of #2.
        let expected = if is_smux(d) {
            syn(d, 2)
        } else {
            cat(&[&ack(d, 3), &syn(d, 2)])
        };
        assert_eq!(s.output(), expected, "{}", d.name());
        if !is_smux(d) {
            s.feed_ok(&ack(d, 2));
        }
        s.feed_ok(&data(d, 2, b"world"));
        assert_eq!(s.output(), b"", "{}", d.name());
        Fixture {
            s,
            inbound,
            outbound,
            in_unread: b"hello".to_vec(),
            out_unread: b"world".to_vec(),
        }
    }

    /// Feeds `bad` and checks the session ended with `v` (see [`Fixture::check_ended`]).
    pub(crate) fn violate(&mut self, bad: &[u8], v: Violation) {
        assert_eq!(
            self.s.output(),
            b"",
            "{}: drain before the bad input",
            self.s.ctx()
        );
        self.s.feed(bad);
        self.check_ended(v);
    }

    /// The session ended with `v`: GoAway(1) last on the wire (none on smux); both streams
    /// return their unread bytes and then the error; everything else fails; later input is
    /// ignored.
    pub(crate) fn check_ended(&mut self, v: Violation) {
        check_ended_by(&mut self.s, &v);
        let err = Error::ProtocolViolation(v);
        for (key, unread) in [
            (self.inbound, self.in_unread.clone()),
            (self.outbound, self.out_unread.clone()),
        ] {
            let (got, last) = self.s.read_all(key);
            assert!(
                got == unread,
                "{}: {} unread bytes, {} expected",
                self.s.ctx(),
                got.len(),
                unread.len()
            );
            assert_eq!(last, Poll::Ready(Err(err.clone())), "{}", self.s.ctx());
            assert_eq!(
                self.s.write(key, b"x"),
                Poll::Ready(Err(err.clone())),
                "{}",
                self.s.ctx()
            );
            assert_eq!(
                self.s.conn.close_write(key, self.s.now),
                Err(err.clone()),
                "{}",
                self.s.ctx()
            );
        }
    }
}

/// Session-level consequences of a violation `v`, for any session.
pub(crate) fn check_ended_by(s: &mut Session, v: &Violation) {
    let ctx = s.ctx();
    let err = Error::ProtocolViolation(v.clone());
    assert_eq!(s.conn.end_reason(), Some(&err), "{ctx}");
    assert!(s.conn.is_ended() && !s.conn.wants_input(), "{ctx}");
    let wire = s.output();
    if s.d.has_goaway() {
        // net-mux names flow-control (3) and version (5) violations; the rest, and yamux, 1.
        let code = match (s.d, v) {
            (Dialect::NetMux, Violation::DataBeyondCredit { .. })
            | (Dialect::NetMux, Violation::WindowOverflow { .. }) => 3,
            (Dialect::NetMux, Violation::UnsupportedVersion { .. }) => 5,
            _ => 1,
        };
        let goaway = go_away(s.d, code);
        assert!(
            wire.ends_with(&goaway),
            "{ctx}: {wire:?} does not end with GoAway({code})"
        );
    } else {
        assert_eq!(wire, b"", "{ctx}: smux has no GoAway and must send nothing");
    }
    assert_eq!(
        s.conn.poll_open(Waker::noop(), s.now),
        Poll::Ready(Err(err.clone())),
        "{ctx}"
    );
    assert_eq!(
        s.conn.poll_accept(Waker::noop(), s.now),
        Poll::Ready(Err(err.clone())),
        "{ctx}"
    );
    if s.d.has_goaway() {
        assert_eq!(s.conn.start_ping(s.now), Err(err.clone()), "{ctx}");
        assert_eq!(s.conn.go_away(), Err(err.clone()), "{ctx}");
    }
    // Nothing after the end is decoded or answered, and EOF does not replace the reason.
    let unread = s.rx.len();
    let more = if is_smux(s.d) {
        syn(s.d, 101)
    } else {
        ping(s.d, 9)
    };
    s.feed(&more);
    assert_eq!(
        s.rx.len(),
        unread + more.len(),
        "{ctx}: input decoded after the end"
    );
    s.conn.handle_eof(s.rx.len());
    assert_eq!(s.conn.end_reason(), Some(&err), "{ctx}");
    assert_eq!(s.output(), b"", "{ctx}: output after the end");
    assert_eq!(s.conn.poll_timeout(), None, "{ctx}");
}
