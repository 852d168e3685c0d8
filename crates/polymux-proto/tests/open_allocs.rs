//! Allocations per stream open, in the steady state of the open-rate pattern (open, a 16-byte
//! request and its echo, both sides close), on both engines, in every dialect.
//!
//! Issue 10 item 4 (open-rate): pins the heap traffic of an open so that it cannot grow
//! unnoticed. The test kit's counting allocator counts this thread's allocation calls (deterministic
//! for the same code); after a warm-up that grows the tables and buffers, a cycle allocates at most
//! [`BOUND`] times per open over both sides. This binary has a single test, so no other test
//! allocates while it counts.
//!
//! Measured 2026-12-05: 8.02 in every dialect, 4 per side: the stream's receive queue (its
//! box and its ring, on the first data), the chunk the 16-byte payload is copied into, and the
//! frame of a write queued for the driver (the async layer writes most small frames directly
//! instead, which allocates nothing). Recycling the queues of finished streams would remove
//! the first three; their memory is charged to the receive budget, so that is left for a
//! change of its own.

use std::task::{Poll, Waker};
use std::time::Instant;

use bytes::BytesMut;
use polymux_proto::{Config, Connection, Dialect, Role};
use polymux_testkit::alloc::{self, Counting};

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocation calls per open, both engines together, in the steady state (8.02 measured).
const BOUND: f64 = 8.1;

fn pump(from: &mut Connection, to: &mut Connection, wire: &mut BytesMut, now: Instant) {
    while let Some(batch) = from.poll_transmit(now) {
        batch.copy_to(wire);
        from.transmitted(batch);
    }
    to.handle_input(wire, now);
    assert!(wire.is_empty(), "all input taken");
}

fn ready<T>(p: Poll<T>) -> T {
    match p {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("pending"),
    }
}

/// One open-rate cycle: open, request, accept, echo, both close and release.
fn cycle(c: &mut Connection, s: &mut Connection, wire: &mut BytesMut, now: Instant) {
    let w = Waker::noop();
    let msg = [0x5Au8; 16];
    let mut buf = [0u8; 64];
    let ck = ready(c.poll_open(w, now)).expect("open");
    assert_eq!(ready(c.poll_write(ck, w, &msg, now)).expect("write"), 16);
    pump(c, s, wire, now);
    let sk = ready(s.poll_accept(w, now)).expect("accept");
    assert_eq!(ready(s.poll_read(sk, w, &mut buf, now)).expect("read"), 16);
    assert_eq!(ready(s.poll_write(sk, w, &msg, now)).expect("echo"), 16);
    pump(s, c, wire, now);
    assert!(ready(c.poll_open_ready(ck, w)).is_ok());
    assert_eq!(
        ready(c.poll_read(ck, w, &mut buf, now)).expect("read echo"),
        16
    );
    c.close_write(ck, now).expect("close");
    c.release(ck, now);
    pump(c, s, wire, now);
    assert_eq!(ready(s.poll_read(sk, w, &mut buf, now)).expect("eof"), 0);
    s.close_write(sk, now).expect("close");
    s.release(sk, now);
    pump(s, c, wire, now);
    pump(c, s, wire, now);
}

#[test]
fn an_open_allocates_at_most_four_times_per_side() {
    let mut report = Vec::new();
    for dialect in [
        Dialect::Yamux,
        Dialect::SmuxV1,
        Dialect::SmuxV2,
        Dialect::NetMux,
    ] {
        let now = Instant::now();
        let config = Config::for_dialect(dialect);
        let mut c = Connection::new(Role::Client, config.clone(), now);
        let mut s = Connection::new(Role::Server, config, now);
        let mut wire = BytesMut::with_capacity(64 * 1024);
        for _ in 0..1000 {
            cycle(&mut c, &mut s, &mut wire, now);
        }
        const OPENS: u64 = 1000;
        let before = alloc::thread_calls();
        for _ in 0..OPENS {
            cycle(&mut c, &mut s, &mut wire, now);
        }
        let per_open = (alloc::thread_calls() - before) as f64 / OPENS as f64;
        assert_eq!(
            c.stats().streams + s.stats().streams,
            0,
            "every stream left"
        );
        report.push((dialect.name(), per_open));
    }
    eprintln!("allocations per open: {report:?}");
    for (name, per_open) in report {
        assert!(per_open <= BOUND, "{name}: {per_open} allocations per open");
    }
}
