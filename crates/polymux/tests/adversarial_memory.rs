//! Adversarial peers against the async layer's receive memory (issue 9, items 1, 2 and their
//! part of item 7), through the real driver and its recycled 128 KiB receive buffers
//! (`rx_buffers`), over in-memory duplex pipes. The hostile peers are raw frame bytes (the
//! codec's encoder plus payload); the test kit's counting allocator checks the heap:
//!
//! - an 8 KiB payload for a stalled stream, then ~120 KiB for a closed stream, repeated: each
//!   small slice pins a whole receive buffer, which the budget must be charged for (and the
//!   slices copied out when those buffers fill it);
//! - two hostile sessions flooding 1-byte frames and a well-behaved echo session sharing one
//!   [`MemoryBudget`]: the hostile ones pause, the echo goes on, and a session paused on the
//!   pool is woken (its driver re-polled, its input resumed) when memory is freed elsewhere.
//!
//! Everything runs on one current-thread runtime on the test's thread, and the allocator counts
//! per thread, so only these sessions' allocations are seen. Waiting is on conditions: a
//! session has *settled* when its received-byte counter stayed unchanged for many scheduler
//! rounds in which every other task could run (no timers are armed: keep-alive is off).

use bytes::BytesMut;
use polymux::{Config, Dialect, MemoryBudget, Session, TokioIo};
use polymux_proto::{Flags, Frame, StreamId};
use polymux_testkit::alloc::{self, Counting};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

#[global_allocator]
static GLOBAL: Counting = Counting;

// ---- helpers ------------------------------------------------------------------------------------

const DIALECTS: [Dialect; 4] = [
    Dialect::Yamux,
    Dialect::SmuxV1,
    Dialect::SmuxV2,
    Dialect::NetMux,
];
const KIB: usize = 1024;
/// The in-memory pipe's buffer per direction.
const PIPE: usize = 256 * KIB;
/// The driver's receive buffer size (`rx_buffers::BUFFER`).
const RX_BUFFER: usize = 128 * KIB;

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

fn config(d: Dialect, budget: usize, pool: Option<&MemoryBudget>) -> Config {
    Config::for_dialect(d)
        .to_builder()
        .session_recv_budget(budget)
        .keepalive_interval(None)
        .write_budget(64 * KIB)
        .memory_budget(pool.cloned())
        .build()
        .expect("config")
}

/// A server session over a pipe whose other end the test writes raw frames to.
fn hostile_pair(d: Dialect, budget: usize, pool: Option<&MemoryBudget>) -> (Session, DuplexStream) {
    let (peer, ours) = tokio::io::duplex(PIPE);
    let (session, driver) = Session::server(TokioIo(ours), config(d, budget, pool));
    tokio::spawn(driver);
    (session, peer)
}

/// Yields until `progress` stays the same for many scheduler rounds (nothing can move any
/// more), at most a bounded number of rounds.
async fn settle(progress: impl Fn() -> u64) {
    let mut last = progress();
    let mut still = 0;
    for _ in 0..5_000_000 {
        tokio::task::yield_now().await;
        let now = progress();
        if now == last {
            still += 1;
            if still == 2_000 {
                return;
            }
        } else {
            (last, still) = (now, 0);
        }
    }
    panic!("never settled");
}

/// Opens `n` streams from the raw peer and accepts them (their application never reads).
async fn open_stalled(
    d: Dialect,
    session: &Session,
    peer: &mut DuplexStream,
    n: u32,
) -> Vec<polymux::Stream> {
    let mut wire = BytesMut::new();
    for i in 0..n {
        open(d, id(i), &mut wire);
    }
    peer.write_all(&wire).await.expect("open");
    let mut streams = Vec::new();
    for _ in 0..n {
        streams.push(session.accept().await.expect("accept"));
    }
    streams
}

/// Writes batches of 1-byte Data frames round-robin over streams `0..streams` from a task;
/// it blocks (and is dropped with the runtime) once the server stops reading.
fn flood_tiny_frames(d: Dialect, mut peer: DuplexStream, streams: u32) {
    let mut batch = BytesMut::new();
    for i in 0..4096u32 {
        data(d, id(i % streams), &[i as u8], &mut batch);
    }
    tokio::spawn(async move {
        // Bounded: 4 MiB of payload in all, far beyond any budget here (and within credit:
        // 256 KiB per stream with at least 16 streams).
        for _ in 0..1024 {
            if peer.write_all(&batch).await.is_err() {
                return;
            }
        }
        // Keep the pipe open.
        std::future::pending::<()>().await;
    });
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime")
}

// ---- the attacks --------------------------------------------------------------------------------

/// Repeatedly: an 8 KiB payload for a stalled stream, then ~120 KiB for a stream the
/// application closed. Through the driver each small slice sits in its own 128 KiB receive
/// buffer; the budget is charged those buffers, so the heap stays within the budget (32
/// pinned buffers would be 4 MiB for a 1 MiB budget), and once they fill it the slices are
/// copied out and the buffers freed: the peer, within its credit, is never held back.
#[test]
fn small_slices_pinning_receive_buffers_stay_within_the_budget_and_are_copied_out() {
    const BUDGET: usize = 1024 * KIB;
    for d in DIALECTS {
        let rt = runtime();
        rt.block_on(async {
            let ctx = d.name();
            let (session, mut peer) = hostile_pair(d, BUDGET, None);
            let mut streams = open_stalled(d, &session, &mut peer, 2).await;
            drop(streams.pop()); // closed: its data is discarded from now on
            let mut round = BytesMut::new();
            data(d, id(0), &[7; 8 * KIB], &mut round);
            while round.len() < RX_BUFFER - 64 {
                let n = (RX_BUFFER - 64 - round.len()).min(60 * KIB);
                data(d, id(1), &vec![9; n], &mut round);
            }
            let baseline = alloc::thread_net();
            let writer = tokio::spawn(async move {
                // Within credit: 8 KiB per round on a 256 KiB window allows 32 rounds.
                for _ in 0..32 {
                    peer.write_all(&round).await.expect("write");
                }
                peer
            });
            let probe = session.clone();
            settle(move || probe.stats().bytes_received).await;
            assert!(writer.is_finished(), "{ctx}: the writer is held back");
            let mut peer = writer.await.expect("writer");
            let stats = session.stats();
            assert!(stats.recv_memory <= BUDGET, "{ctx}: {stats:?}");
            assert_eq!(stats.recv_buffered, 32 * 8 * KIB, "{ctx}: {stats:?}");
            // Budget, plus: the pipe's buffer, the driver's current and next receive buffers,
            // the session's fixed overhead (tasks, pin table, control queue).
            let bound = BUDGET + PIPE + 2 * RX_BUFFER + 64 * KIB;
            let grew = alloc::thread_net() - baseline;
            assert!(
                grew <= bound as i64,
                "{ctx}: heap grew {grew} B, bound {bound} B, {stats:?}"
            );
            // Nothing lost: the stalled stream reads it all.
            let mut got = 0;
            let mut buf = vec![0u8; 64 * KIB];
            while got < 32 * 8 * KIB {
                let n = streams[0].read(&mut buf).await.expect("read");
                assert!(n > 0 && buf[..n].iter().all(|&b| b == 7), "{ctx}");
                got += n;
            }
            peer.flush().await.expect("the pipe is open");
        });
    }
}

/// Two hostile sessions flood stalled streams with 1-byte frames and a well-behaved session
/// echoes, all sharing a 1 MiB pool. The first hostile session fills the pool, the second
/// stops at its guaranteed share (the default minimum, 512 KiB: enough to hold a stream
/// window of data, which the echo needs, as it writes before it reads on), the echo session
/// moves 1 MiB through its share; when the first
/// one's streams are dropped, the second one's driver is woken and reads on.
#[test]
fn a_shared_budget_pauses_hostile_sessions_and_wakes_them_when_memory_is_freed() {
    const POOL: usize = 1024 * KIB;
    const STREAMS: u32 = 16;
    for d in DIALECTS {
        let rt = runtime();
        rt.block_on(async {
            let ctx = d.name();
            let pool = MemoryBudget::new(POOL);
            let (h1, mut p1) = hostile_pair(d, 4 * POOL, Some(&pool));
            let (h2, mut p2) = hostile_pair(d, 4 * POOL, Some(&pool));
            let (client_io, server_io) = tokio::io::duplex(PIPE);
            let (good, driver) =
                Session::server(TokioIo(server_io), config(d, 4 * POOL, Some(&pool)));
            tokio::spawn(driver);
            let (client, driver) = Session::client(TokioIo(client_io), config(d, 4 * POOL, None));
            tokio::spawn(driver);
            assert_eq!(pool.sessions(), 3, "{ctx}");

            let stalled1 = open_stalled(d, &h1, &mut p1, STREAMS).await;
            let _stalled2 = open_stalled(d, &h2, &mut p2, STREAMS).await;
            flood_tiny_frames(d, p1, STREAMS);
            let probe = h1.clone();
            settle(move || probe.stats().bytes_received).await;
            flood_tiny_frames(d, p2, STREAMS);
            let probe = h2.clone();
            settle(move || probe.stats().bytes_received).await;
            let (first, second) = (h1.stats().recv_memory, h2.stats().recv_memory);
            assert!(
                first <= POOL && first > POOL * 9 / 10,
                "{ctx}: first holds {first}"
            );
            assert!(
                second <= pool.fair_share(),
                "{ctx}: second holds {second}, {pool:?}"
            );
            assert!(
                pool.in_use() <= POOL + 2 * pool.fair_share(),
                "{ctx}: {pool:?}"
            );

            // The well-behaved session echoes 1 MiB in 16 KiB messages.
            let good2 = good.clone();
            let echo = tokio::spawn(async move {
                let good = good2;
                let stream = good.accept().await.expect("accept");
                let (mut r, mut w) = tokio::io::split(stream);
                tokio::io::copy(&mut r, &mut w).await.expect("echo");
                w.shutdown().await.expect("shutdown");
            });
            let (mut r, mut w) = tokio::io::split(client.open().await.expect("open"));
            let writer = tokio::spawn(async move {
                for round in 0..64u8 {
                    w.write_all(&[round; 16 * KIB]).await.expect("write");
                }
                w.shutdown().await.expect("close");
            });
            let mut back = Vec::new();
            r.read_to_end(&mut back).await.expect("read the echo");
            assert_eq!(back.len(), 1024 * KIB, "{ctx}");
            assert!(
                back.chunks(16 * KIB)
                    .enumerate()
                    .all(|(i, c)| c.iter().all(|&b| b == i as u8)),
                "{ctx}: echo intact"
            );
            writer.await.expect("writer");
            echo.await.expect("echo");
            assert!(
                h2.stats().recv_memory <= pool.fair_share(),
                "{ctx}: still paused"
            );

            // Freeing the first session's memory wakes the second, which reads on.
            let before = h2.stats().bytes_received;
            drop(stalled1);
            let probe = h2.clone();
            settle(move || probe.stats().bytes_received).await;
            assert!(
                h2.stats().bytes_received > before,
                "{ctx}: the paused session was woken and resumed reading"
            );
            assert!(
                pool.in_use() <= POOL + 2 * pool.fair_share(),
                "{ctx}: {pool:?}"
            );
        });
        drop(rt);
    }
}
