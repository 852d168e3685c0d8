//! Adversarial peers against the engine's receive memory (issue 9, items 1, 2 and their part of
//! item 7): a hostile client written as raw frame bytes (the codec's encoder plus payload)
//! drives a real server [`Connection`], and the test kit's counting allocator checks that the heap
//! the server holds stays within its receive budget plus the documented uncharged overhead
//! (`polymux_proto::config`, "Memory bounds"), in every dialect:
//!
//! - 1-byte Data frames, within credit, on streams whose application never reads;
//! - an 8 KiB payload for a stalled stream, then ~120 KiB for a closed (or never-opened)
//!   stream, in the same 128 KiB input buffer, repeated: each small slice pins its buffer;
//! - large amounts of data on closed and never-opened streams;
//! - two hostile sessions and a well-behaved one sharing a [`MemoryBudget`]: the hostile ones
//!   pause, the well-behaved one keeps echoing, a paused session is woken when memory is freed.
//!
//! The allocator counts per thread (each test drives its engines on its own thread), so tests
//! running in parallel do not see each other's allocations. Assertions are on bytes, never on
//! time; every attack loop is bounded in rounds.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Poll, Wake, Waker};
use std::time::Instant;

use bytes::BytesMut;
use polymux_proto::{
    Config, Connection, Dialect, Error, Flags, Frame, MemoryBudget, Role, StreamId, StreamKey,
    Violation,
};
use polymux_testkit::alloc::{self, Counting};

#[global_allocator]
static GLOBAL: Counting = Counting;

// ---- the hostile peer ---------------------------------------------------------------------------

const DIALECTS: [Dialect; 4] = [
    Dialect::Yamux,
    Dialect::SmuxV1,
    Dialect::SmuxV2,
    Dialect::NetMux,
];
const KIB: usize = 1024;
/// The server's receive budget in these tests.
const BUDGET: usize = 1024 * KIB;
/// Uncharged overhead per stream that has received data (its queue's box; `recv_queue`).
const PER_STREAM: i64 = 128;
/// Uncharged overhead per session besides that: pin table, control queue, scratch space.
const PER_SESSION: i64 = 32 * 1024;
/// The driver's receive buffer size, which the pinning attack imitates.
const RX_BUFFER: usize = 128 * KIB;

/// The hostile client's id for its `n`th stream (client ids are odd in every dialect).
fn id(n: u32) -> StreamId {
    StreamId(2 * n + 1)
}

fn open(d: Dialect, stream: StreamId, out: &mut BytesMut) {
    let frame = match d {
        Dialect::Yamux => Frame::WindowUpdate {
            stream,
            flags: Flags::SYN,
            delta: 0,
        },
        _ => Frame::Data {
            stream,
            flags: Flags::SYN,
            len: 0,
        },
    };
    d.encode(&frame, out);
}

fn data(d: Dialect, stream: StreamId, payload: &[u8], out: &mut BytesMut) {
    let header = Frame::Data {
        stream,
        flags: Flags::NONE,
        len: payload.len() as u32,
    };
    d.encode(&header, out);
    out.extend_from_slice(payload);
}

/// A server session with `budget` and optionally a shared pool; no keep-alive (no timers), and
/// a 64 KiB write budget (send memory is bounded by it, not by what these tests measure).
fn server(d: Dialect, budget: usize, pool: Option<&MemoryBudget>) -> Connection {
    let config = Config::for_dialect(d)
        .to_builder()
        .session_recv_budget(budget)
        .keepalive_interval(None)
        .write_budget(64 * KIB)
        .memory_budget(pool.cloned())
        .build()
        .expect("config");
    Connection::new(Role::Server, config, Instant::now())
}

/// Throws away what the server wants to send (the hostile peer never reads), so its control
/// queue never fills and input is paused only by memory.
fn discard_output(c: &mut Connection) {
    while let Some(batch) = c.poll_transmit(Instant::now()) {
        c.transmitted(batch);
    }
}

/// Opens `n` streams on `server` and accepts them there (their application never reads).
fn open_stalled(d: Dialect, server: &mut Connection, n: u32) -> Vec<StreamKey> {
    let mut wire = BytesMut::new();
    for i in 0..n {
        open(d, id(i), &mut wire);
    }
    server.handle_input(&mut wire, Instant::now());
    assert!(wire.is_empty());
    let mut keys = Vec::new();
    while let Poll::Ready(Ok(k)) = server.poll_accept(Waker::noop(), Instant::now()) {
        keys.push(k);
    }
    assert_eq!(keys.len(), n as usize, "{}", d.name());
    discard_output(server);
    keys
}

/// Feeds 1-byte Data frames round-robin over streams `0..streams`, in input batches of 64 KiB,
/// until the server stops taking input; returns the undecoded rest. At most `max_frames`.
fn flood_tiny_frames(
    d: Dialect,
    server: &mut Connection,
    streams: u32,
    max_frames: usize,
) -> BytesMut {
    let mut sent = 0;
    while sent < max_frames {
        let mut batch = BytesMut::with_capacity(64 * KIB);
        while batch.len() + 16 < 64 * KIB && sent < max_frames {
            data(d, id(sent as u32 % streams), &[sent as u8], &mut batch);
            sent += 1;
        }
        server.handle_input(&mut batch, Instant::now());
        discard_output(server);
        assert!(
            server.end_reason().is_none(),
            "{}: {:?}",
            d.name(),
            server.end_reason()
        );
        if !batch.is_empty() {
            return batch;
        }
    }
    BytesMut::new()
}

/// Asserts the heap growth since `baseline` is within the budget plus overhead and `slack`.
fn assert_within(ctx: &str, baseline: i64, budget: usize, streams: i64, slack: usize) {
    let bound = budget as i64 + streams * PER_STREAM + PER_SESSION + slack as i64;
    let held = alloc::thread_net() - baseline;
    let top = alloc::thread_peak() - baseline;
    assert!(held <= bound, "{ctx}: heap grew {held} B, bound {bound} B");
    assert!(
        top <= bound,
        "{ctx}: heap peaked {top} B above the baseline, bound {bound} B"
    );
}

// ---- the attacks --------------------------------------------------------------------------------

/// 1-byte Data frames on 32 streams whose application never reads, each frame within credit:
/// the server pauses when the memory held reaches the budget, and most of that memory is
/// payload (merged into chunks), not per-frame allocations and queue slots.
#[test]
fn tiny_frames_on_stalled_streams_stay_within_the_budget() {
    const STREAMS: u32 = 32;
    for d in DIALECTS {
        let ctx = d.name();
        let mut s = server(d, BUDGET, None);
        let _stalled = open_stalled(d, &mut s, STREAMS);
        let baseline = alloc::thread_net();
        alloc::reset_thread_peak();
        // Within credit: 32 streams × 256 KiB of window is 8 MiB, the budget 1 MiB.
        let rest = flood_tiny_frames(d, &mut s, STREAMS, 4 * BUDGET);
        assert!(!rest.is_empty(), "{ctx}: the server never paused");
        assert!(!s.wants_input(), "{ctx}: input paused");
        let stats = s.stats();
        assert!(stats.recv_memory <= BUDGET, "{ctx}: {stats:?}");
        assert!(
            stats.recv_buffered >= BUDGET * 9 / 10,
            "{ctx}: only {} payload bytes in {} of memory",
            stats.recv_buffered,
            stats.recv_memory
        );
        // The last undecoded input batch is the test's, at most 64 KiB.
        assert_within(ctx, baseline, BUDGET, STREAMS.into(), 64 * KIB);
        // Back-pressure, never loss: more input is left alone while paused.
        let mut more = rest;
        let before = more.len();
        s.handle_input(&mut more, Instant::now());
        assert_eq!(more.len(), before, "{ctx}: input while paused");
    }
}

/// Repeatedly: one 128 KiB input buffer holding an 8 KiB payload for a stalled stream and
/// ~120 KiB for a closed stream (and, where the dialect drops them quietly, a never-opened
/// one). Each 8 KiB slice pins its whole buffer and is charged the whole buffer, so the heap
/// never exceeds the budget; when the pinned buffers fill it, their slices are copied out and
/// the buffers freed, so the peer, which stays within its credit (32 rounds of 8 KiB on a
/// 256 KiB window), is never paused while its payload fits.
#[test]
fn small_slices_pinning_input_buffers_are_charged_the_buffer_then_copied_out() {
    for d in DIALECTS {
        for unknown in [false, true] {
            if unknown && !d.has_ack() {
                continue; // smux ends the session on a never-opened stream (tested below)
            }
            let ctx = format!(
                "{} ({})",
                d.name(),
                if unknown { "never opened" } else { "closed" }
            );
            let mut s = server(d, BUDGET, None);
            let keys = open_stalled(d, &mut s, 2);
            // Stream 1 is closed by its application: later data for it is discarded.
            s.reset(keys[1], Instant::now());
            s.release(keys[1], Instant::now());
            discard_output(&mut s);
            let sink = if unknown { id(1000) } else { id(1) };
            let (small, large) = (vec![7; 8 * KIB], vec![9; 60 * KIB]);
            let baseline = alloc::thread_net();
            alloc::reset_thread_peak();
            let mut most_held = 0;
            for round in 0..32 {
                let mut buf = BytesMut::with_capacity(RX_BUFFER);
                data(d, id(0), &small, &mut buf);
                while RX_BUFFER - buf.len() > 64 {
                    let n = (RX_BUFFER - buf.len() - 16).min(large.len());
                    data(d, sink, &large[..n], &mut buf);
                }
                assert!(
                    buf.capacity() == RX_BUFFER,
                    "{ctx}: the test's buffer did not grow"
                );
                s.handle_input(&mut buf, Instant::now());
                discard_output(&mut s);
                assert!(s.end_reason().is_none(), "{ctx}: {:?}", s.end_reason());
                assert!(buf.is_empty(), "{ctx}: paused in round {round}");
                let held = s.stats().recv_memory;
                assert!(held <= BUDGET, "{ctx}: round {round}: {:?}", s.stats());
                most_held = most_held.max(held);
            }
            let stats = s.stats();
            assert_eq!(stats.recv_buffered, 32 * 8 * KIB, "{ctx}: {stats:?}");
            // The buffers were charged whole (32 of them would be 4 MiB): the budget filled
            // with a quarter of it payload before the slices were copied out.
            assert!(
                most_held > BUDGET - RX_BUFFER,
                "{ctx}: most held {most_held}"
            );
            assert_within(&ctx, baseline, BUDGET, 1, RX_BUFFER);
        }
    }
}

/// The shape of an echo server under many streams: every 128 KiB input buffer carries one
/// 32 KiB frame for one of three streams whose application does not read yet (it waits to
/// write its echo) and three for a stream that is read at once. Each buffer stays pinned,
/// charged whole, by a quarter of its bytes. The three unread streams are sent their full
/// windows (768 KiB within a 1 MiB budget): the session must take it all without pausing,
/// since a paused session would not see the window update the application waits for. The
/// heap stays within the budget throughout.
#[test]
fn streams_sharing_input_buffers_are_not_paused_below_the_budget() {
    const FRAME: usize = 32 * KIB - 32;
    for d in DIALECTS {
        let ctx = d.name();
        let mut s = server(d, BUDGET, None);
        let keys = open_stalled(d, &mut s, 4);
        let reader = keys[3];
        let payload = vec![5u8; FRAME];
        let mut scratch = vec![0u8; 4 * FRAME];
        let baseline = alloc::thread_net();
        alloc::reset_thread_peak();
        // 8 frames per unread stream: 8 × (32 KiB - 32) fits its 256 KiB window.
        for round in 0..24u32 {
            let mut buf = BytesMut::with_capacity(RX_BUFFER);
            data(d, id(round % 3), &payload, &mut buf);
            for _ in 0..3 {
                data(d, id(3), &payload, &mut buf);
            }
            assert!(
                buf.capacity() == RX_BUFFER,
                "{ctx}: the buffer did not grow"
            );
            s.handle_input(&mut buf, Instant::now());
            assert!(s.end_reason().is_none(), "{ctx}: {:?}", s.end_reason());
            assert!(
                buf.is_empty(),
                "{ctx}: paused in round {round}: {:?}",
                s.stats()
            );
            let mut read = 0;
            while let Poll::Ready(Ok(n)) =
                s.poll_read(reader, Waker::noop(), &mut scratch, Instant::now())
            {
                if n == 0 {
                    break;
                }
                read += n;
            }
            assert_eq!(read, 3 * FRAME, "{ctx}: round {round}");
            discard_output(&mut s);
            assert!(s.stats().recv_memory <= BUDGET, "{ctx}: {:?}", s.stats());
        }
        assert_eq!(s.stats().recv_buffered, 24 * FRAME, "{ctx}");
        // The slack: the input buffer being decoded, and the copies of one buffer's slices
        // made before that buffer is freed.
        assert_within(ctx, baseline, BUDGET, 4, 2 * RX_BUFFER);
    }
}

/// 8 MiB of data on a closed stream (and, for yamux-shaped dialects, on never-opened ones):
/// discarded as it arrives, the heap stays flat and the session keeps reading. smux peers
/// always open first, so data on a never-opened stream ends a smux session as a violation.
#[test]
fn data_on_unknown_and_closed_streams_is_discarded_in_constant_memory() {
    for d in DIALECTS {
        for unknown in [false, true] {
            let ctx = format!(
                "{} ({})",
                d.name(),
                if unknown { "never opened" } else { "closed" }
            );
            let mut s = server(d, BUDGET, None);
            let keys = open_stalled(d, &mut s, 1);
            s.reset(keys[0], Instant::now());
            s.release(keys[0], Instant::now());
            discard_output(&mut s);
            let sink = if unknown { id(1000) } else { id(0) };
            let payload = vec![3u8; 32 * KIB];
            let baseline = alloc::thread_net();
            alloc::reset_thread_peak();
            for _ in 0..(8 * 1024 / 32) {
                let mut buf = BytesMut::with_capacity(64 * KIB);
                data(d, sink, &payload, &mut buf);
                s.handle_input(&mut buf, Instant::now());
                discard_output(&mut s);
                if s.is_ended() {
                    break;
                }
                assert!(buf.is_empty(), "{ctx}: input taken");
            }
            if unknown && !d.has_ack() {
                assert!(
                    matches!(
                        s.end_reason(),
                        Some(Error::ProtocolViolation(Violation::UnknownStream { .. }))
                    ),
                    "{ctx}: {:?}",
                    s.end_reason()
                );
            } else {
                assert!(s.end_reason().is_none(), "{ctx}: {:?}", s.end_reason());
                assert!(s.wants_input(), "{ctx}");
            }
            assert_eq!(s.stats().recv_memory, 0, "{ctx}");
            // Nothing is held; the slack is one input batch and the session's fixed overhead.
            assert_within(&ctx, baseline, 0, 0, 64 * KIB);
        }
    }
}

// ---- the shared budget --------------------------------------------------------------------------

/// Counts wake-ups.
struct CountingWake(AtomicUsize);

impl Wake for CountingWake {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// Moves everything `from` has to send into `to`.
fn pump(from: &mut Connection, to: &mut Connection) {
    let mut wire = BytesMut::new();
    while let Some(batch) = from.poll_transmit(Instant::now()) {
        batch.copy_to(&mut wire);
        from.transmitted(batch);
    }
    to.handle_input(&mut wire, Instant::now());
    assert!(wire.is_empty(), "the receiver took everything");
}

/// Two hostile sessions flood stalled streams with 1-byte frames and a well-behaved one echoes,
/// all three sharing a 1 MiB pool. The first hostile session fills the pool and pauses; the
/// second pauses at its guaranteed share (the pool's 512 KiB minimum); the well-behaved one echoes 1 MiB through its share. When
/// the first one's memory is freed, the paused second one is woken. Afterwards the pool is
/// empty again.
#[test]
fn a_shared_budget_pauses_the_hostile_sessions_and_the_others_go_on() {
    const POOL: usize = 1024 * KIB;
    const STREAMS: u32 = 16;
    for d in DIALECTS {
        let ctx = d.name();
        let pool = MemoryBudget::new(POOL);
        let baseline = alloc::thread_net();
        alloc::reset_thread_peak();
        let mut hostile: Vec<Connection> =
            (0..2).map(|_| server(d, 4 * POOL, Some(&pool))).collect();
        let mut good_server = server(d, 4 * POOL, Some(&pool));
        let config = good_server
            .config()
            .to_builder()
            .memory_budget(None)
            .build()
            .expect("config");
        let mut good_client = Connection::new(Role::Client, config, Instant::now());
        assert_eq!(pool.sessions(), 3, "{ctx}");

        let mut stalled = Vec::new();
        for h in &mut hostile {
            stalled.push(open_stalled(d, h, STREAMS));
            let rest = flood_tiny_frames(d, h, STREAMS, 8 * POOL);
            assert!(
                !rest.is_empty() && !h.wants_input(),
                "{ctx}: a hostile session paused"
            );
        }
        let (first, second) = (
            hostile[0].stats().recv_memory,
            hostile[1].stats().recv_memory,
        );
        assert!(first <= POOL, "{ctx}: the first holds {first}");
        assert!(
            first > POOL * 9 / 10,
            "{ctx}: the first fills the pool: {first}"
        );
        assert!(
            second <= pool.fair_share(),
            "{ctx}: the second holds {second}, share {}",
            pool.fair_share()
        );
        assert!(
            pool.in_use() <= POOL + 2 * pool.fair_share(),
            "{ctx}: pool {:?}",
            pool
        );

        // The well-behaved session echoes 1 MiB in 16 KiB messages through the full pool.
        let Poll::Ready(Ok(c)) = good_client.poll_open(Waker::noop(), Instant::now()) else {
            panic!("{ctx}: open")
        };
        pump(&mut good_client, &mut good_server);
        let Poll::Ready(Ok(srv)) = good_server.poll_accept(Waker::noop(), Instant::now()) else {
            panic!("{ctx}: accept")
        };
        let mut echoed = 0;
        let mut buf = vec![0u8; 16 * KIB];
        for round in 0..64u8 {
            let msg = vec![round; 16 * KIB];
            let Poll::Ready(Ok(n)) = good_client.poll_write(c, Waker::noop(), &msg, Instant::now())
            else {
                panic!("{ctx}: write")
            };
            assert_eq!(n, msg.len(), "{ctx}");
            pump(&mut good_client, &mut good_server);
            assert!(
                good_server.wants_input(),
                "{ctx}: the good session reads on"
            );
            let mut got = 0;
            while got < n {
                let Poll::Ready(Ok(k)) =
                    good_server.poll_read(srv, Waker::noop(), &mut buf[got..], Instant::now())
                else {
                    panic!("{ctx}: server read")
                };
                got += k;
            }
            let Poll::Ready(Ok(_)) =
                good_server.poll_write(srv, Waker::noop(), &buf[..got], Instant::now())
            else {
                panic!("{ctx}: echo")
            };
            pump(&mut good_server, &mut good_client);
            let mut back = vec![0u8; n];
            let mut read = 0;
            while read < n {
                let Poll::Ready(Ok(k)) =
                    good_client.poll_read(c, Waker::noop(), &mut back[read..], Instant::now())
                else {
                    panic!("{ctx}: client read")
                };
                read += k;
            }
            assert!(back.iter().all(|&b| b == round), "{ctx}: echo {round}");
            pump(&mut good_client, &mut good_server); // credit
            echoed += n;
        }
        assert_eq!(echoed, POOL, "{ctx}");
        // All three servers and the client: budget-bound memory plus overheads (the client has
        // no pool, but holds nothing at the end).
        assert_within(
            ctx,
            baseline,
            2 * POOL,
            2 * STREAMS as i64,
            3 * 64 * KIB + 3 * PER_SESSION as usize,
        );

        // The second hostile session waits on the pool; freeing the first one's memory wakes it.
        let counter = Arc::new(CountingWake(AtomicUsize::new(0)));
        hostile[1].register_driver(&Waker::from(counter.clone()));
        assert!(!hostile[1].wants_input(), "{ctx}: still paused");
        for &k in &stalled[0] {
            hostile[0].reset(k, Instant::now());
        }
        assert!(
            counter.0.load(Ordering::SeqCst) > 0,
            "{ctx}: the paused session was woken"
        );
        assert!(hostile[1].wants_input(), "{ctx}: and may read again");

        drop(hostile);
        drop(good_server);
        assert_eq!(
            (pool.in_use(), pool.sessions()),
            (0, 0),
            "{ctx}: the pool is empty again"
        );
    }
}
