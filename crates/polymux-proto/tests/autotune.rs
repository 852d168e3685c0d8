//! Receive-window auto-tuning: a stream whose reader keeps up grows its window beyond the
//! protocol's 256 KiB (so one fast stream can fill a long pipe), never beyond
//! `max_stream_window`, and never beyond what the session receive budget allows.

use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use polymux_proto::{Config, Connection, Dialect, Role, StreamKey};

const KIB: usize = 1024;

fn pump(from: &mut Connection, to: &mut Connection, now: Instant) {
    let mut wire = BytesMut::new();
    while let Some(batch) = from.poll_transmit(now) {
        batch.copy_to(&mut wire);
        from.transmitted(batch);
    }
    to.handle_input(&mut wire, now);
    assert!(wire.is_empty(), "the receiver took everything");
}

/// Writes as much as credit allows; returns the bytes written.
fn write_max(c: &mut Connection, key: StreamKey, now: Instant) -> usize {
    let chunk = vec![0x5a; 64 * KIB];
    let mut total = 0;
    while let Poll::Ready(Ok(n)) = c.poll_write(key, Waker::noop(), &chunk, now) {
        total += n;
    }
    total
}

fn read_all(c: &mut Connection, key: StreamKey, now: Instant) -> usize {
    let mut buf = vec![0u8; 256 * KIB];
    let mut total = 0;
    while let Poll::Ready(Ok(n)) = c.poll_read(key, Waker::noop(), &mut buf, now) {
        if n == 0 {
            break;
        }
        total += n;
    }
    total
}

/// Runs a bulk transfer where the reader keeps up (1 ms per hop), then stops reading and
/// returns how many bytes the writer could still put in flight: the grown window.
fn window_after_warmup(dialect: Dialect, max_window: u32, budget: usize) -> usize {
    let config = Config::for_dialect(dialect)
        .to_builder()
        .max_stream_window(max_window)
        .session_recv_budget(budget)
        .write_budget(4 * 1024 * KIB)
        .build()
        .unwrap();
    let mut now = Instant::now();
    let mut client = Connection::new(Role::Client, config.clone(), now);
    let mut server = Connection::new(Role::Server, config, now);
    let Poll::Ready(Ok(tx)) = client.poll_open(Waker::noop(), now) else {
        panic!("open")
    };
    pump(&mut client, &mut server, now);
    let Poll::Ready(Ok(rx)) = server.poll_accept(Waker::noop(), now) else {
        panic!("accept")
    };
    for _ in 0..200 {
        write_max(&mut client, tx, now);
        now += Duration::from_millis(1);
        pump(&mut client, &mut server, now);
        read_all(&mut server, rx, now);
        now += Duration::from_millis(1);
        pump(&mut server, &mut client, now);
    }
    if dialect.has_ping() {
        assert!(server.stats().rtt.is_some(), "an RTT probe was answered");
    }
    // Drain what is in flight, then measure the credit with the reader stopped.
    read_all(&mut server, rx, now);
    pump(&mut server, &mut client, now);
    // Credit, not the writer's buffer, is what is measured: keep writing and delivering
    // (the server's credit updates are not delivered) until the writer is stuck.
    let mut in_flight = 0;
    loop {
        let n = write_max(&mut client, tx, now);
        pump(&mut client, &mut server, now);
        if n == 0 {
            break;
        }
        in_flight += n;
    }
    assert!(server.stats().recv_buffered <= budget);
    in_flight
}

#[test]
fn a_fast_reader_grows_the_window_up_to_the_configured_maximum() {
    // smux v2 has no ping: there the signal is a reader that drained its queue.
    for dialect in [Dialect::Yamux, Dialect::NetMux, Dialect::SmuxV2] {
        let window = window_after_warmup(dialect, 4 * 1024 * 1024, 64 * 1024 * 1024);
        assert!(
            window > 1024 * KIB,
            "{}: window grew to {window}",
            dialect.name()
        );
        assert!(window <= 4 * 1024 * KIB, "{}: {window}", dialect.name());
    }
}

#[test]
fn growth_stays_within_the_session_budget() {
    let window = window_after_warmup(Dialect::Yamux, 16 * 1024 * 1024, 1024 * 1024);
    assert!(
        window <= 1024 * KIB,
        "window {window} exceeds the 1 MiB budget"
    );
    assert!(window > 256 * KIB, "window {window} did not grow at all");
}

#[test]
fn a_maximum_equal_to_the_initial_window_disables_growth() {
    let window = window_after_warmup(Dialect::Yamux, 256 * KIB as u32, 64 * 1024 * 1024);
    assert_eq!(window, 256 * KIB);
}
