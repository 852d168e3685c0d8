//! Resource bounds a hostile peer probes: accept backlog, unacknowledged opens, GoAway, Ping
//! and SYN floods against the control queue, the session receive budget.

use super::*;

#[test]
fn accept_backlog_refuses_the_fifth_stream() {
    for d in ALL {
        let ctx = d.name();
        let config = Config::for_dialect(d)
            .to_builder()
            .accept_backlog(4)
            .build()
            .unwrap();
        let mut s = Session::with_config(config, Role::Server);
        s.feed_ok(&cat(&[&syn(d, 1), &syn(d, 3), &syn(d, 5), &syn(d, 7)]));
        assert_eq!(s.output(), b"", "{ctx}: nothing is sent before accept");
        s.feed_ok(&syn(d, 9));
        // Byte-exact: yamux WindowUpdate|RST #9, net-mux Data|RST #9, smux FIN #9.
        assert_eq!(s.output(), refusal(d, 9), "{ctx}");
        let stats = s.conn.stats();
        assert_eq!(
            (
                stats.pending_accept,
                stats.opened_inbound,
                stats.refused_inbound
            ),
            (4, 5, 1),
            "{ctx}"
        );
        // What the peer had already sent on #9 is dropped; the session stays up.
        s.feed_ok(&cat(&[&data(d, 9, b"refused"), &fin(d, 9)]));
        assert_eq!(s.output(), b"", "{ctx}");
        assert!(s.conn.wants_input(), "{ctx}");
        // Accepting one makes room for the next.
        let first = s.accept();
        assert_eq!(s.conn.stream_id(first), StreamId(1));
        let ack1 = if is_smux(d) { vec![] } else { ack(d, 1) };
        assert_eq!(s.output(), ack1, "{ctx}");
        s.feed_ok(&syn(d, 11));
        assert_eq!(s.output(), b"", "{ctx}");
        assert_eq!(s.conn.stats().pending_accept, 4, "{ctx}");
        // #9 is still known as used.
        s.feed(&syn(d, 9));
        check_ended_by(
            &mut s,
            &Violation::StreamIdReused {
                stream: StreamId(9),
            },
        );
    }
}

#[test]
fn refusal_flood_is_bounded() {
    // Every SYN beyond the backlog costs us a reply; unread replies must stop the decoding.
    const SYNS: u32 = 50_000;
    for d in ALL {
        let ctx = d.name();
        let config = Config::for_dialect(d)
            .to_builder()
            .accept_backlog(1)
            .build()
            .unwrap();
        let mut s = Session::with_config(config, Role::Server);
        let flood: Vec<u8> = (0..SYNS).flat_map(|i| syn(d, 2 * i + 1)).collect();
        s.feed(&flood);
        assert!(
            !s.conn.wants_input() && !s.rx.is_empty(),
            "{ctx}: refusals must be bounded"
        );
        let mut refused = 0;
        let mut next = 3;
        while refused < SYNS - 1 {
            let batch = s.conn.poll_transmit(s.now).expect("refusals queued");
            assert!(batch.control.len() <= 64 * KIB + 12, "{ctx}");
            for frame in batch.control.chunks(d.header_len()) {
                assert_eq!(frame, refusal(d, next), "{ctx}");
                next += 2;
                refused += 1;
            }
            s.conn.transmitted(batch);
            s.feed(&[]);
        }
        assert!(s.rx.is_empty(), "{ctx}");
        let stats = s.conn.stats();
        assert_eq!(
            (stats.pending_accept, stats.refused_inbound),
            (1, u64::from(SYNS) - 1),
            "{ctx}"
        );
        assert_eq!(s.conn.end_reason(), None, "{ctx}");
    }
}

#[test]
fn syn_after_our_goaway_is_refused() {
    for d in YAMUX_SHAPED {
        let ctx = d.name();
        let mut fx = Fixture::new(d);
        fx.s.conn.go_away().unwrap();
        assert_eq!(fx.s.output(), go_away(d, 0), "{ctx}");
        fx.s.feed_ok(&cat(&[&syn(d, 5), &data(d, 5, b"too late")]));
        assert_eq!(fx.s.output(), rst(d, 5), "{ctx}");
        // Existing streams go on.
        fx.s.feed_ok(&data(d, 3, b" again"));
        assert_eq!(
            fx.s.read_all(fx.inbound),
            (b"hello again".to_vec(), Poll::Pending),
            "{ctx}"
        );
        assert_eq!(fx.s.conn.stats().refused_inbound, 1, "{ctx}");
    }
}

/// A new stream is usable at once in every dialect: yamux and net-mux openers write right
/// after the SYN (net-mux's receiver queues such data until its application accepts), smux has
/// no ACK. Where opens are acknowledged, `poll_established` tells when the ACK came, and a
/// refusal (RST before the ACK) ends the stream instead of leaving it waiting.
#[test]
fn opens_are_usable_before_the_ack_and_a_refusal_ends_them() {
    for d in ALL {
        let ctx = d.name();
        let mut s = Session::new(d, Role::Client);
        let a = s.open();
        let flag = Arc::new(Flag(AtomicBool::new(false)));
        let waker = Waker::from(flag.clone());
        assert_eq!(
            s.conn.poll_open_ready(a, &waker),
            Poll::Ready(Ok(())),
            "{ctx}: usable at once"
        );
        if !d.has_ack() {
            assert!(
                s.conn.poll_established(a, &waker).is_ready(),
                "{ctx}: no ACK to wait for"
            );
            continue;
        }
        assert_eq!(s.conn.poll_established(a, &waker), Poll::Pending, "{ctx}");
        s.feed_ok(&ack(d, 1));
        assert!(
            flag.0.load(Ordering::SeqCst),
            "{ctx}: the ACK wakes whoever waits for it"
        );
        assert_eq!(
            s.conn.poll_established(a, &waker),
            Poll::Ready(Ok(())),
            "{ctx}"
        );
        let b = s.open();
        s.feed_ok(&rst(d, 3));
        assert_eq!(
            s.conn.poll_established(b, &waker),
            Poll::Ready(Err(Error::StreamRefused)),
            "{ctx}: refused"
        );
    }
}

#[test]
fn max_unacked_outbound_holds_the_third_open() {
    for d in YAMUX_SHAPED {
        let ctx = d.name();
        let config = Config::for_dialect(d)
            .to_builder()
            .max_unacked_outbound(2)
            .build()
            .unwrap();
        let mut s = Session::with_config(config, Role::Client);
        let a = s.open();
        let b = s.open();
        assert_eq!(s.output(), cat(&[&syn(d, 1), &syn(d, 3)]), "{ctx}");
        let flag = Arc::new(Flag(AtomicBool::new(false)));
        let waker = Waker::from(flag.clone());
        assert_eq!(s.conn.poll_open(&waker, s.now), Poll::Pending, "{ctx}");
        assert_eq!(s.output(), b"", "{ctx}: nothing sent for a waiting open");
        // Data and credit for an unacknowledged stream do not count as its ACK.
        s.feed_ok(&cat(&[&window_update(d, 1, 10), &data(d, 1, b"data")]));
        assert!(!flag.0.load(Ordering::SeqCst), "{ctx}");
        assert_eq!(s.conn.poll_open(&waker, s.now), Poll::Pending, "{ctx}");
        s.feed_ok(&ack(d, 1));
        assert!(
            flag.0.load(Ordering::SeqCst),
            "{ctx}: the ACK wakes the waiting open"
        );
        let c = s.open();
        assert_eq!(s.conn.stream_id(c), StreamId(5), "{ctx}");
        assert_eq!(s.output(), syn(d, 5), "{ctx}");
        assert_eq!(
            s.conn.poll_open(Waker::noop(), s.now),
            Poll::Pending,
            "{ctx}"
        );
        // A refusal (RST before ACK) frees a slot too.
        s.feed_ok(&rst(d, 3));
        assert_eq!(
            s.conn.poll_established(b, Waker::noop()),
            Poll::Ready(Err(Error::StreamRefused)),
            "{ctx}"
        );
        let e = s.open();
        assert_eq!(s.conn.stream_id(e), StreamId(7), "{ctx}");
        assert_eq!(s.read_all(a), (b"data".to_vec(), Poll::Pending), "{ctx}");
        // A waiting open learns of the peer's GoAway.
        let flag = Arc::new(Flag(AtomicBool::new(false)));
        let waker = Waker::from(flag.clone());
        assert_eq!(s.conn.poll_open(&waker, s.now), Poll::Pending, "{ctx}");
        s.feed_ok(&go_away(d, 0));
        assert!(
            flag.0.load(Ordering::SeqCst),
            "{ctx}: GoAway wakes the waiting open"
        );
        assert_eq!(
            s.conn.poll_open(&waker, s.now),
            Poll::Ready(Err(Error::GoAway(0))),
            "{ctx}"
        );
    }
    // smux has no ACK: opens are never held.
    for d in SMUX {
        let config = Config::for_dialect(d)
            .to_builder()
            .max_unacked_outbound(2)
            .build()
            .unwrap();
        let mut s = Session::with_config(config, Role::Client);
        for id in [3, 5, 7] {
            let k = s.open();
            assert_eq!(s.conn.stream_id(k), StreamId(id), "{}", d.name());
        }
    }
}

#[test]
fn goaway_received_stops_opens_not_streams() {
    for d in YAMUX_SHAPED {
        let ctx = d.name();
        let mut s = Session::new(d, Role::Client);
        let k = s.open();
        assert_eq!(s.output(), syn(d, 1), "{ctx}");
        s.feed_ok(&cat(&[&ack(d, 1), &go_away(d, 0)]));
        assert_eq!(s.conn.end_reason(), None, "{ctx}");
        assert_eq!(
            s.conn.poll_open(Waker::noop(), s.now),
            Poll::Ready(Err(Error::GoAway(0))),
            "{ctx}"
        );
        assert_eq!(s.output(), b"", "{ctx}: GoAway is not answered");
        // The existing stream carries data both ways.
        assert_eq!(s.write(k, b"ping"), Poll::Ready(Ok(4)), "{ctx}");
        assert_eq!(s.output(), data(d, 1, b"ping"), "{ctx}");
        s.feed_ok(&data(d, 1, b"pong"));
        assert_eq!(s.read_all(k), (b"pong".to_vec(), Poll::Pending), "{ctx}");
        // A second GoAway does not change the code.
        s.feed_ok(&go_away(d, 2));
        assert_eq!(
            s.conn.poll_open(Waker::noop(), s.now),
            Poll::Ready(Err(Error::GoAway(0))),
            "{ctx}"
        );
        s.feed_ok(&data(d, 1, b"last"));
        // EOF after GoAway: the session ends for that reason, with no GoAway of ours.
        s.conn.handle_eof(0);
        assert_eq!(s.conn.end_reason(), Some(&Error::GoAway(0)), "{ctx}");
        assert_eq!(s.output(), b"", "{ctx}");
        assert_eq!(
            s.read_all(k),
            (b"last".to_vec(), Poll::Ready(Err(Error::GoAway(0)))),
            "{ctx}"
        );
        assert_eq!(
            s.write(k, b"x"),
            Poll::Ready(Err(Error::GoAway(0))),
            "{ctx}"
        );
    }
}

#[test]
fn ping_flood_is_bounded() {
    const PINGS: u32 = 100_000;
    for d in YAMUX_SHAPED {
        let ctx = d.name();
        let mut s = Session::new(d, Role::Server);
        let mut flood = Vec::with_capacity(PINGS as usize * 12);
        for i in 0..PINGS {
            flood.extend(ping(d, i));
        }
        s.feed(&flood);
        // The control queue filled up: decoding stopped with input left over.
        assert!(!s.conn.wants_input(), "{ctx}");
        assert!(!s.rx.is_empty(), "{ctx}");
        assert_eq!(s.conn.end_reason(), None, "{ctx}");
        let mut expected = 0u32;
        let mut rounds = 0;
        loop {
            let batch = s.conn.poll_transmit(s.now).expect("pongs queued");
            assert!(
                batch.control.len() <= 64 * KIB + 12,
                "{ctx}: {} control bytes queued",
                batch.control.len()
            );
            assert!(batch.data.is_empty(), "{ctx}");
            for frame in batch.control.chunks(12) {
                assert_eq!(frame, pong(d, expected), "{ctx}");
                expected += 1;
            }
            s.conn.transmitted(batch);
            rounds += 1;
            if s.rx.is_empty() {
                break;
            }
            // Drained: decoding resumes where it stopped.
            assert!(s.conn.wants_input(), "{ctx}");
            let before = s.rx.len();
            s.feed(&[]);
            assert!(s.rx.len() < before, "{ctx}: no progress after draining");
        }
        assert_eq!(s.output().len(), 0, "{ctx}");
        assert_eq!(expected, PINGS, "{ctx}: every ping answered once, in order");
        assert!(
            rounds > 10,
            "{ctx}: only {rounds} rounds, so the queue was not bounded"
        );
        assert!(
            s.conn.wants_input() && s.conn.end_reason().is_none(),
            "{ctx}"
        );
    }
}

#[test]
fn receive_budget_pauses_decoding() {
    const BUDGET: usize = 512 * KIB;
    for d in ALL {
        let ctx = d.name();
        let config = Config::for_dialect(d)
            .to_builder()
            .session_recv_budget(BUDGET)
            .build()
            .unwrap();
        let mut s = Session::with_config(config, Role::Server);
        let ids = [1u32, 3, 5, 7];
        let mut wire = Vec::new();
        for id in ids {
            wire.extend(syn(d, id));
            wire.extend(data(d, id, &payload(id as u8, INITIAL_WINDOW)));
        }
        s.feed(&wire);
        assert!(
            !s.conn.wants_input(),
            "{ctx}: decoding must pause at the budget"
        );
        assert!(!s.rx.is_empty(), "{ctx}");
        assert!(
            s.conn.stats().recv_buffered <= BUDGET,
            "{ctx}: {:?}",
            s.conn.stats()
        );
        assert_eq!(s.conn.end_reason(), None, "{ctx}");
        // Feeding again while paused changes nothing.
        let left = s.rx.len();
        s.feed(&[]);
        assert_eq!(s.rx.len(), left, "{ctx}");

        let mut keys = Vec::new();
        let mut done = Vec::new();
        while done.len() < ids.len() {
            while let Poll::Ready(Ok(k)) = s.conn.poll_accept(Waker::noop(), s.now) {
                keys.push(k);
            }
            let Some(&k) = keys.iter().find(|k| !done.contains(*k)) else {
                panic!(
                    "{ctx}: no stream to read while paused: {:?}",
                    s.conn.stats()
                );
            };
            let id = s.conn.stream_id(k).0;
            let mut got = Vec::new();
            while got.len() < INITIAL_WINDOW {
                let (more, last) = s.read_all(k);
                got.extend(more);
                assert_eq!(last, Poll::Pending, "{ctx}");
                if got.len() < INITIAL_WINDOW {
                    // The rest of this stream's bytes wait behind the budget.
                    assert!(s.conn.wants_input(), "{ctx}: reading must resume decoding");
                    let before = s.rx.len();
                    s.feed(&[]);
                    assert!(s.rx.len() < before, "{ctx}: no progress");
                }
            }
            assert!(
                got == payload(id as u8, INITIAL_WINDOW),
                "{ctx}: stream {id} corrupted"
            );
            done.push(k);
            assert!(s.conn.stats().recv_buffered <= BUDGET, "{ctx}");
            s.feed(&[]);
            assert!(s.conn.stats().recv_buffered <= BUDGET, "{ctx}");
        }
        assert!(s.rx.is_empty(), "{ctx}");
        assert!(s.conn.wants_input(), "{ctx}");
        assert_eq!(s.conn.stats().recv_buffered, 0, "{ctx}");
        assert_eq!(s.conn.end_reason(), None, "{ctx}");
    }
}
