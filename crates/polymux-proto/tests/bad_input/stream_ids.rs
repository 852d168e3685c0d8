//! Stream ids: parity, reuse, frames for streams never opened, frames for closed ones.

use super::*;

#[test]
fn syn_with_our_parity() {
    for d in ALL {
        // A client allocates odd ids, so an odd SYN from the server is ours to use.
        let mut s = Session::new(d, Role::Client);
        let mine = s.open();
        let mine_id = s.conn.stream_id(mine).0;
        assert_eq!(mine_id % 2, 1, "{}", d.name());
        if !is_smux(d) {
            s.feed_ok(&ack(d, mine_id));
        }
        s.feed_ok(&data(d, mine_id, b"early"));
        s.output();
        s.feed(&syn(d, mine_id + 2));
        let v = Violation::WrongStreamParity {
            stream: StreamId(mine_id + 2),
        };
        check_ended_by(&mut s, &v);
        let (got, last) = s.read_all(mine);
        assert_eq!(got, b"early", "{}", d.name());
        assert_eq!(
            last,
            Poll::Ready(Err(Error::ProtocolViolation(v))),
            "{}",
            d.name()
        );

        // And a server allocates even ids.
        let mut fx = Fixture::new(d);
        fx.violate(
            &syn(d, 4),
            Violation::WrongStreamParity {
                stream: StreamId(4),
            },
        );
        // Even one it already allocated.
        let mut fx = Fixture::new(d);
        fx.violate(
            &syn(d, 2),
            Violation::WrongStreamParity {
                stream: StreamId(2),
            },
        );
    }
}

#[test]
fn reused_stream_id() {
    for d in ALL {
        // #3 is open: SYN again.
        Fixture::new(d).violate(
            &syn(d, 3),
            Violation::StreamIdReused {
                stream: StreamId(3),
            },
        );
        // #1 was skipped when the peer opened #3: its open may arrive late (Go sends SYNs from
        // concurrent goroutines, Rust yamux sends SYN with the first write), but only once.
        let mut fx = Fixture::new(d);
        fx.s.feed_ok(&syn(d, 1));
        assert_eq!(fx.s.conn.stats().pending_accept, 1, "{}", d.name());
        fx.violate(
            &syn(d, 1),
            Violation::StreamIdReused {
                stream: StreamId(1),
            },
        );
        // #3 finished and was removed: still taken.
        let mut fx = Fixture::new(d);
        let (got, _) = fx.s.read_all(fx.inbound);
        assert_eq!(got, b"hello");
        fx.in_unread.clear();
        fx.s.feed_ok(&fin(d, 3));
        fx.s.conn.close_write(fx.inbound, fx.s.now).unwrap();
        fx.s.conn.release(fx.inbound, fx.s.now);
        assert_eq!(
            fx.s.output(),
            cat(&[&first_read_update(d, 3, 5), &fin(d, 3)]),
            "{}",
            d.name()
        );
        assert_eq!(fx.s.conn.stats().streams, 1, "{}", d.name());
        fx.s.feed(&syn(d, 3));
        let v = Violation::StreamIdReused {
            stream: StreamId(3),
        };
        check_ended_by(&mut fx.s, &v);
        let (got, last) = fx.s.read_all(fx.outbound);
        assert_eq!(got, b"world", "{}", d.name());
        assert_eq!(
            last,
            Poll::Ready(Err(Error::ProtocolViolation(v))),
            "{}",
            d.name()
        );
    }
}

#[test]
fn frame_for_a_stream_never_opened() {
    for d in ALL {
        // Peer parity, above the highest id the peer opened.
        // The frame type that carries yamux-shaped flags: WindowUpdate on yamux, Data elsewhere.
        let flag_frame = if d == Dialect::Yamux {
            "WindowUpdate"
        } else {
            "Data"
        };
        let mut cases = vec![(data(d, 7, b"??"), 7, "Data"), (fin(d, 7), 7, flag_frame)];
        // Our parity, never allocated (we only opened #2).
        cases.push((data(d, 4, b"??"), 4, "Data"));
        if is_smux(d) {
            if d == Dialect::SmuxV2 {
                cases.push((upd(d, 7, 0, 1), 7, "UPD"));
            }
        } else {
            cases.push((window_update(d, 7, 1), 7, "WindowUpdate"));
            cases.push((window_update(d, 4, 1), 4, "WindowUpdate"));
            cases.push((rst(d, 7), 7, flag_frame));
            cases.push((ack(d, 4), 4, flag_frame));
        }
        for (bad, stream, frame) in cases {
            if is_smux(d) {
                let v = Violation::UnknownStream {
                    frame,
                    stream: StreamId(stream),
                };
                Fixture::new(d).violate(&bad, v);
            } else {
                // yamux-shaped peers send such frames legitimately (Rust yamux: a FIN without
                // SYN for a stream closed before its first write): dropped, unanswered.
                let mut fx = Fixture::new(d);
                fx.s.feed_ok(&bad);
                assert_eq!(fx.s.output(), b"", "{}: {frame} on #{stream}", d.name());
                assert!(!fx.s.conn.is_ended(), "{}", d.name());
            }
        }
    }
}

#[test]
fn frame_for_a_closed_or_reset_stream_is_dropped() {
    for d in ALL {
        let ctx = d.name();
        let mut fx = Fixture::new(d);
        let s = &mut fx.s;
        // #3 (the peer's) closes in order: both FINs, the handle is released, it is gone.
        assert_eq!(s.read_all(fx.inbound).0, b"hello");
        s.feed_ok(&fin(d, 3));
        s.conn.close_write(fx.inbound, s.now).unwrap();
        s.conn.release(fx.inbound, s.now);
        // #2 (ours) is reset by us and released.
        s.conn.reset(fx.outbound, s.now);
        s.conn.release(fx.outbound, s.now);
        let expected = if is_smux(d) {
            cat(&[&first_read_update(d, 3, 5), &fin(d, 3), &fin(d, 2)])
        } else {
            cat(&[&fin(d, 3), &rst(d, 2)])
        };
        assert_eq!(s.output(), expected, "{ctx}");
        // smux has no RST: the peer saw a FIN, so #2 lingers (discarding, returning credit)
        // until the peer's own FIN.
        let lingering = usize::from(is_smux(d));
        assert_eq!(s.conn.stats().streams, lingering, "{ctx}");

        // Late frames for either are dropped: no error, no reply.
        let mut late = cat(&[
            &data(d, 3, &payload(3, 10_000)),
            &fin(d, 3),
            &data(d, 2, b"in flight"),
            &fin(d, 2),
        ]);
        if is_smux(d) {
            if d == Dialect::SmuxV2 {
                late.extend(upd(d, 3, 5, 1 << 20));
                late.extend(upd(d, 2, 0, 1 << 20));
            }
        } else {
            late.extend(window_update(d, 3, 1 << 20));
            late.extend(ack(d, 2));
            late.extend(rst(d, 2));
            late.extend(rst(d, 3));
            // Beyond any credit the stream ever had: there is no stream to account it to.
            late.extend(data(d, 2, &payload(2, INITIAL_WINDOW + 1)));
        }
        s.feed_ok(&late);
        assert_eq!(
            s.output(),
            b"",
            "{ctx}: a dropped frame must not be answered"
        );
        assert!(s.conn.wants_input(), "{ctx}");
        assert_eq!(s.conn.stats().streams, 0, "{ctx}");

        // The session is alive: a new stream works.
        s.feed_ok(&cat(&[&syn(d, 5), &data(d, 5, b"still here")]));
        let k = s.accept();
        assert_eq!(
            s.read_all(k),
            (b"still here".to_vec(), Poll::Pending),
            "{ctx}"
        );
    }

    // yamux-shaped: the peer resets a stream; its in-flight data afterwards is dropped.
    for d in YAMUX_SHAPED {
        let ctx = d.name();
        let mut fx = Fixture::new(d);
        let s = &mut fx.s;
        s.feed_ok(&rst(d, 3));
        // Bytes that arrived before the RST are still readable, then the reset.
        assert_eq!(
            s.read_all(fx.inbound),
            (b"hello".to_vec(), Poll::Ready(Err(Error::StreamReset))),
            "{ctx}"
        );
        s.conn.release(fx.inbound, s.now);
        assert_eq!(s.output(), b"", "{ctx}: no reply to a RST");
        s.feed_ok(&cat(&[&data(d, 3, b"late"), &window_update(d, 3, 10)]));
        assert_eq!(s.output(), b"", "{ctx}");
        assert_eq!(s.conn.stats().streams, 1, "{ctx}");
        assert_eq!(
            s.read_all(fx.outbound),
            (b"world".to_vec(), Poll::Pending),
            "{ctx}"
        );
    }
}
