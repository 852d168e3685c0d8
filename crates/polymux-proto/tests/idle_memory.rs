//! Heap held per idle stream by the engine, on each side, in every dialect.
//!
//! The bound is 193 bytes of library state per idle stream (what the benchmark measured when
//! issue 10 was filed, which asks for no regression); the async layer adds a 24-byte `Stream`
//! handle, so the engine may hold at most 169. The test kit's counting
//! allocator tracks the net bytes allocated (allocation counts and sizes are deterministic for
//! the same code, unlike timings). Client and server [`Connection`]s open, acknowledge and
//! accept 10,000 streams over an in-memory wire, in batches that respect the accept backlog
//! and the unacknowledged-open limit; the wire buffers are allocated before measuring. This
//! binary has a single test, so no other test allocates while it measures.

use std::task::{Poll, Waker};
use std::time::Instant;

use bytes::BytesMut;
use polymux_proto::{Config, Connection, Dialect, Role};
use polymux_testkit::alloc::{self, Counting};

#[global_allocator]
static GLOBAL: Counting = Counting;

const STREAMS: usize = 10_000;
const BATCH: usize = 128;
/// 193 bytes per idle stream, less the async layer's 24-byte handle.
const ENGINE_BOUND: i64 = 193 - 24;

/// Moves everything `from` has to send into `to`, through `wire` (cleared, never grown).
fn pump(from: &mut Connection, to: &mut Connection, wire: &mut BytesMut, now: Instant) {
    while let Some(batch) = from.poll_transmit(now) {
        batch.copy_to(wire);
        from.transmitted(batch);
    }
    to.handle_input(wire, now);
    assert!(wire.is_empty(), "all input taken");
    wire.clear();
}

/// Net heap bytes per stream on each side after `STREAMS` streams were opened and accepted.
fn idle_bytes_per_stream(dialect: Dialect) -> i64 {
    let now = Instant::now();
    let config = Config::for_dialect(dialect);
    let mut client = Connection::new(Role::Client, config.clone(), now);
    let mut server = Connection::new(Role::Server, config, now);
    let mut wire = BytesMut::with_capacity(1 << 20);
    let waker = Waker::noop();
    let mut keys = Vec::with_capacity(STREAMS);
    let mut accepted = Vec::with_capacity(STREAMS);
    alloc::enable();
    let before = alloc::net_bytes();
    while keys.len() < STREAMS {
        for _ in 0..BATCH.min(STREAMS - keys.len()) {
            let Poll::Ready(Ok(key)) = client.poll_open(waker, now) else {
                panic!("{}: open {}", dialect.name(), keys.len())
            };
            keys.push(key);
        }
        pump(&mut client, &mut server, &mut wire, now);
        while let Poll::Ready(Ok(key)) = server.poll_accept(waker, now) {
            accepted.push(key);
        }
        pump(&mut server, &mut client, &mut wire, now);
    }
    let grown = alloc::net_bytes() - before;
    assert_eq!(accepted.len(), STREAMS, "{}", dialect.name());
    assert_eq!(client.stats().streams, STREAMS);
    assert_eq!(server.stats().streams, STREAMS);
    grown / (2 * STREAMS as i64)
}

#[test]
fn an_idle_stream_costs_the_engine_at_most_169_bytes_on_each_side() {
    let mut report = String::new();
    let mut over = Vec::new();
    for dialect in [
        Dialect::Yamux,
        Dialect::SmuxV1,
        Dialect::SmuxV2,
        Dialect::NetMux,
    ] {
        let per_stream = idle_bytes_per_stream(dialect);
        report.push_str(&format!("{}: {per_stream} B\n", dialect.name()));
        if per_stream > ENGINE_BOUND {
            over.push(dialect.name());
        }
    }
    eprintln!("heap per idle stream and side:\n{report}");
    assert!(
        over.is_empty(),
        "above {ENGINE_BOUND} B per idle stream: {over:?}\n{report}"
    );
}
