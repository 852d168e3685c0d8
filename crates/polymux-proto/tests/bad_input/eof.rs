//! Truncation at EOF: a partial header or payload is a violation, a clean EOF is not.

use super::*;

#[test]
fn truncated_header_at_eof() {
    for d in ALL {
        let header_len = d.header_len();
        for got in [1, header_len - 1] {
            let mut fx = Fixture::new(d);
            let frame = data(d, 3, b"xyz");
            fx.s.feed(&frame[..got]);
            assert_eq!(fx.s.rx.len(), got, "{}", d.name());
            assert_eq!(fx.s.conn.end_reason(), None);
            fx.s.conn.handle_eof(fx.s.rx.len());
            fx.check_ended(Violation::TruncatedFrame {
                got,
                needed: header_len,
            });
        }
    }
    // A smux v2 UPD is a 16-byte unit: header plus body.
    let d = Dialect::SmuxV2;
    let mut fx = Fixture::new(d);
    fx.s.feed(&upd(d, 3, 0, 1 << 20)[..11]);
    assert_eq!(fx.s.rx.len(), 11);
    fx.s.conn.handle_eof(fx.s.rx.len());
    fx.check_ended(Violation::TruncatedFrame {
        got: 11,
        needed: 16,
    });
}

#[test]
fn truncated_payload_at_eof() {
    for d in ALL {
        // A large piece is delivered to the stream as it arrives; the rest never comes.
        let mut fx = Fixture::new(d);
        let body = payload(9, 30_000);
        let frame = data(d, 3, &body);
        let arrived = 20_000;
        fx.s.feed(&frame[..d.header_len() + arrived]);
        assert!(fx.s.rx.is_empty(), "{}", d.name());
        fx.in_unread.extend_from_slice(&body[..arrived]);
        fx.s.conn.handle_eof(0);
        fx.check_ended(Violation::TruncatedFrame {
            got: arrived,
            needed: 30_000,
        });

        // A small piece waits in the read buffer for the rest of its frame.
        let mut fx = Fixture::new(d);
        let frame = data(d, 3, &payload(9, 100));
        fx.s.feed(&frame[..d.header_len() + 40]);
        assert_eq!(fx.s.rx.len(), 40, "{}", d.name());
        fx.s.conn.handle_eof(fx.s.rx.len());
        fx.check_ended(Violation::TruncatedFrame {
            got: 40,
            needed: 100,
        });
    }
}

#[test]
fn clean_eof_is_not_a_violation() {
    for d in ALL {
        let mut fx = Fixture::new(d);
        fx.s.conn.handle_eof(0);
        assert_eq!(
            fx.s.conn.end_reason(),
            Some(&Error::TransportClosed),
            "{}",
            d.name()
        );
        assert_eq!(fx.s.output(), b"", "{}", d.name());
        let (got, last) = fx.s.read_all(fx.inbound);
        assert_eq!(got, b"hello");
        assert_eq!(last, Poll::Ready(Err(Error::TransportClosed)));
    }
}
