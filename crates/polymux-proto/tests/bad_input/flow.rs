//! Flow control: data beyond the credit granted, credit use, window overflow.

use super::*;

#[test]
fn data_beyond_credit_on_a_fresh_stream() {
    // yamux-shaped: one frame of 256 KiB + 1 right after the SYN; the header alone is enough.
    for d in YAMUX_SHAPED {
        let len = INITIAL_WINDOW as u32 + 1;
        let bad = cat(&[&syn(d, 5), &hdr(d, DATA, 0, 5, len)]);
        let v = Violation::DataBeyondCredit {
            stream: StreamId(5),
            len,
            credit: INITIAL_WINDOW as u64,
        };
        Fixture::new(d).violate(&bad, v);
        // The same with the SYN riding on the Data frame itself.
        let bad = hdr(d, DATA, SYN, 5, len);
        let v = Violation::DataBeyondCredit {
            stream: StreamId(5),
            len,
            credit: INITIAL_WINDOW as u64,
        };
        Fixture::new(d).violate(&bad, v);
    }
    // smux v2: the peer may assume 256 KiB before any UPD. 256 KiB = 4 × 65535 + 4.
    let d = Dialect::SmuxV2;
    let bad = cat(&[
        &syn(d, 5),
        &data(d, 5, &payload(5, 4 * 65535)),
        &cmd(d, CMD_PSH, 5, 5),
        b"12345",
    ]);
    let v = Violation::DataBeyondCredit {
        stream: StreamId(5),
        len: 5,
        credit: 4,
    };
    Fixture::new(d).violate(&bad, v);
}

#[test]
fn data_beyond_credit_after_partial_use() {
    // #3 already holds "hello"; 200 000 more leave 62 139 bytes of credit; send one more.
    for d in [Dialect::Yamux, Dialect::NetMux, Dialect::SmuxV2] {
        let mut fx = Fixture::new(d);
        let more = payload(3, 200_000);
        fx.s.feed_ok(&data(d, 3, &more));
        fx.in_unread.extend_from_slice(&more);
        let credit = INITIAL_WINDOW - 200_005;
        let len = credit as u32 + 1;
        let bad = if is_smux(d) {
            cmd(d, CMD_PSH, len as u16, 3)
        } else {
            hdr(d, DATA, 0, 3, len)
        };
        let v = Violation::DataBeyondCredit {
            stream: StreamId(3),
            len,
            credit: credit as u64,
        };
        fx.violate(&bad, v);
    }
    // smux v1 has no per-stream credit: the same bytes are fine.
    let d = Dialect::SmuxV1;
    let mut fx = Fixture::new(d);
    fx.s.feed_ok(&data(d, 3, &payload(3, INITIAL_WINDOW + 1)));
}

#[test]
fn credit_returned_is_credit_usable() {
    // Not a violation: after the application reads, the returned credit may be used in full.
    for d in [Dialect::Yamux, Dialect::NetMux, Dialect::SmuxV2] {
        let mut fx = Fixture::new(d);
        let first = payload(1, INITIAL_WINDOW - 5);
        fx.s.feed_ok(&data(d, 3, &first));
        let (got, _) = fx.s.read_all(fx.inbound);
        assert_eq!(got.len(), INITIAL_WINDOW, "{}", d.name());
        // The reader drained its queue when credit was due and no round trip is known yet:
        // auto-tuning doubles the window.
        let window = 2 * INITIAL_WINDOW;
        let granted = window;
        let out = fx.s.output();
        if is_smux(d) {
            assert_eq!(
                out,
                upd(d, 3, INITIAL_WINDOW as u32, window as u32),
                "{}",
                d.name()
            );
        } else {
            // The first returned credit also starts an RTT probe, for window auto-tuning (its
            // opaque is unpredictable, `keepalive.rs`).
            let update = window_update(d, 3, window as u32);
            assert_eq!(out[..update.len()], update[..], "{}", d.name());
            let probe = &out[update.len()..];
            assert!(
                matches!(
                    d.decode(probe),
                    Ok(Some((Frame::Ping { ack: false, .. }, n))) if n == probe.len()
                ),
                "{}: no probe after the update",
                d.name()
            );
        }
        fx.s.feed_ok(&data(d, 3, &payload(2, granted)));
        let bad = if is_smux(d) {
            cmd(d, CMD_PSH, 1, 3)
        } else {
            hdr(d, DATA, 0, 3, 1)
        };
        fx.in_unread = payload(2, granted);
        let v = Violation::DataBeyondCredit {
            stream: StreamId(3),
            len: 1,
            credit: 0,
        };
        fx.violate(&cat(&[&bad, b"!"]), v);
    }
}

#[test]
fn window_update_overflowing_u32() {
    for d in YAMUX_SHAPED {
        let mut fx = Fixture::new(d);
        // #3's send window is 256 KiB; growing it to exactly 2^32 - 1 is allowed.
        fx.s.feed_ok(&window_update(d, 3, u32::MAX - INITIAL_WINDOW as u32));
        assert_eq!(fx.s.output(), b"", "{}", d.name());
        fx.violate(
            &window_update(d, 3, 1),
            Violation::WindowOverflow {
                stream: StreamId(3),
            },
        );

        // In one step, on the stream we opened.
        let mut fx = Fixture::new(d);
        let bad = window_update(d, 2, u32::MAX - INITIAL_WINDOW as u32 + 1);
        fx.violate(
            &bad,
            Violation::WindowOverflow {
                stream: StreamId(2),
            },
        );

        // On the open itself (yamux WindowUpdate|SYN carries a delta beyond 256 KiB).
        if d == Dialect::Yamux {
            let max = u32::MAX - INITIAL_WINDOW as u32;
            let mut fx = Fixture::new(d);
            fx.s.feed_ok(&hdr(d, WINDOW_UPDATE, SYN, 5, max));
            fx.violate(
                &hdr(d, WINDOW_UPDATE, SYN, 7, max + 1),
                Violation::WindowOverflow {
                    stream: StreamId(7),
                },
            );
        }

        // After spending some of it, the window is what is left, not what was granted.
        let mut fx = Fixture::new(d);
        assert_eq!(
            fx.s.write(fx.inbound, &[7; 1000]),
            Poll::Ready(Ok(1000)),
            "{}",
            d.name()
        );
        let sent = fx.s.output();
        assert_eq!(sent, data(d, 3, &[7; 1000]), "{}", d.name());
        fx.s.feed_ok(&window_update(
            d,
            3,
            u32::MAX - INITIAL_WINDOW as u32 + 1000,
        ));
        fx.violate(
            &window_update(d, 3, 1),
            Violation::WindowOverflow {
                stream: StreamId(3),
            },
        );
    }
}
