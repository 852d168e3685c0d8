//! Allocations per MiB moved in steady-state bulk transfer, per polymux dialect.
//!
//! The test kit's counting allocator counts the allocation calls (alloc, alloc_zeroed, realloc)
//! made on this test's thread. Both sessions, their drivers and the two
//! application tasks run on one current-thread tokio runtime on that thread, over loopback TCP,
//! so every allocation of the transfer is seen and nothing of the test harness is. After a
//! warm-up (buffers sized, windows auto-tuned), one stream moves `MEASURED` bytes; every
//! allocation in that window is recorded with an (unresolved) backtrace, and the report groups
//! them by call site — the innermost polymux function and the library call that allocated — so
//! a regression names its source.

use std::backtrace::Backtrace;
use std::sync::Mutex;

use polymux::{Config, Dialect};
use polymux_testkit::alloc::{self, Counting};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const WRITE: usize = 64 * 1024;
const WARMUP: u64 = 32 << 20;
const MEASURED: u64 = 64 << 20;
/// Measurements per dialect before a count above the bound fails the test.
const ATTEMPTS: usize = 3;
/// Backtraces kept per measurement (the rest are counted only).
const TRACES: usize = 8192;

static TRACED: Mutex<Vec<(usize, Backtrace)>> = Mutex::new(Vec::new());

/// The allocator's hook while measuring: keeps the first [`TRACES`] call sites.
fn trace(size: usize) {
    let mut traced = TRACED.lock().unwrap_or_else(|p| p.into_inner());
    if traced.len() < TRACES {
        // Captured unresolved (cheap); symbols are resolved after the measurement.
        traced.push((size, Backtrace::force_capture()));
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocation calls on this thread while moving `MEASURED` bytes after the warm-up, and their
/// backtraces (up to [`TRACES`]) with the sizes asked for.
fn measure(dialect: Dialect) -> (u64, Vec<(usize, Backtrace)>) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let connect = tokio::net::TcpStream::connect(addr);
        let (client_tcp, server_tcp) = tokio::join!(connect, listener.accept());
        let (client_tcp, server_tcp) =
            (client_tcp.expect("connect"), server_tcp.expect("accept").0);
        let config = Config::for_dialect(dialect);
        let (client, _cd) = polymux::tokio::client(client_tcp, config.clone());
        let (server, _sd) = polymux::tokio::server(server_tcp, config);

        let sink = tokio::spawn(async move {
            let mut s = server.accept().await.expect("accept stream");
            let mut buf = vec![0u8; 128 * 1024];
            let mut got = 0u64;
            loop {
                let n = s.read(&mut buf).await.expect("read");
                if n == 0 {
                    break;
                }
                got += n as u64;
            }
            got
        });

        let mut s = client.open().await.expect("open");
        let chunk = vec![0xA5u8; WRITE];
        for _ in 0..WARMUP / WRITE as u64 {
            s.write_all(&chunk).await.expect("write");
        }
        TRACED.lock().unwrap_or_else(|p| p.into_inner()).clear();
        let calls_before = alloc::thread_calls();
        alloc::set_thread_hook(Some(trace));
        for _ in 0..MEASURED / WRITE as u64 {
            s.write_all(&chunk).await.expect("write");
        }
        alloc::set_thread_hook(None);
        let calls = alloc::thread_calls() - calls_before;
        s.shutdown().await.expect("shutdown");
        let got = tokio::time::timeout(std::time::Duration::from_secs(60), sink)
            .await
            .expect("the sink finished in time")
            .expect("sink task");
        assert_eq!(got, WARMUP + MEASURED, "{dialect:?}: bytes received");
        let traces = std::mem::take(&mut *TRACED.lock().unwrap_or_else(|p| p.into_inner()));
        (calls, traces)
    })
}

#[test]
fn steady_state_bulk_allocations_per_mib() {
    let mib = (MEASURED >> 20) as f64;
    let mut report = String::new();
    let mut over = Vec::new();
    for dialect in [
        Dialect::Yamux,
        Dialect::SmuxV1,
        Dialect::SmuxV2,
        Dialect::NetMux,
    ] {
        // Up to ATTEMPTS measurements, the first within the bound counts. On a loaded machine
        // the reader can fall further behind during the measurement than during the warm-up,
        // and the receive-buffer pool grows (`RxBuffers::reserve`): warm-up, not steady state
        // (seen about once in 15 runs under a parallel build). A per-frame allocation fails
        // every attempt.
        for attempt in 1..=ATTEMPTS {
            let (calls, traces) = measure(dialect);
            let per_mib = calls as f64 / mib;
            report.push_str(&format!(
                "{} (attempt {attempt}): {calls} allocations in {mib} MiB = {per_mib:.2} per MiB\n",
                dialect.name()
            ));
            for (site, (n, bytes)) in by_site(&traces) {
                report.push_str(&format!("  {n:>6} × (avg {} B)  {site}\n", bytes / n));
            }
            if per_mib <= max_per_mib(dialect) {
                break;
            }
            if attempt == ATTEMPTS {
                over.push(dialect.name());
            }
        }
    }
    eprintln!("{report}");
    assert!(
        over.is_empty(),
        "allocations per MiB above the bound for {over:?}:\n{report}"
    );
}

/// The bound asserted. The receive path reads into recycled buffers (`polymux::rx_buffers`)
/// sized to end at frame boundaries, and the send path writes directly or into reused outbox
/// segments, so a warmed-up transfer allocates only when the kernel returns a short read that
/// cuts a payload: the piece under 8 KiB is copied into a chunk of its stream
/// (`RecvQueue::append`) rather than left pinning a buffer. How often a read ends mid-frame
/// depends on scheduling, not on the code: measured 2026-12-05 (Intel Xeon, under load)
/// 0.1–2.0 per MiB, all from that copy. One allocation per frame (64 KiB frames: 16 per MiB,
/// more with smaller ones) or per write call (16 per MiB at 64 KiB writes) is the regression
/// this catches, so the bound sits at a quarter of that, clear of the scheduling-dependent
/// count.
///
/// smux v1 has no per-stream window, so the reader may fall behind by the whole session budget
/// and the buffer pool may still be growing towards that depth: the same bound covers it.
fn max_per_mib(_dialect: Dialect) -> f64 {
    4.0
}

/// Groups allocations by call site: the innermost `polymux` frame, and the outermost frame
/// below it (the library function, e.g. `bytes::BytesMut::split_to`, that allocated). Sorted
/// by count, most first; values are (count, total bytes).
fn by_site(traces: &[(usize, Backtrace)]) -> Vec<(String, (usize, usize))> {
    let mut sites: std::collections::HashMap<String, (usize, usize)> = Default::default();
    for (size, trace) in traces {
        let text = trace.to_string();
        // Frame lines look like "  12: path::to::function"; "at file:line" lines are skipped, and
        // so are the capture's own frames (the backtrace, the hook, the test kit's allocator).
        let frames: Vec<&str> = text
            .lines()
            .filter_map(|l| l.trim_start().split_once(": ").map(|(_, f)| f.trim()))
            .filter(|f| {
                !f.starts_with("at ")
                    && !f.contains("Counting")
                    && !f.contains("__rust")
                    && !f.contains("backtrace")
                    && !f.contains("polymux_testkit::alloc")
                    && !f.starts_with("alloc::trace")
            })
            .collect();
        let inner = frames.iter().position(|f| f.contains("polymux"));
        let site = match inner {
            Some(i) => {
                let callee = frames[..i]
                    .iter()
                    .rev()
                    .find(|f| !f.starts_with('<') || f.contains("bytes::"))
                    .or(frames[..i].last())
                    .copied()
                    .unwrap_or("?");
                format!("{} → {callee}", frames[i])
            }
            None => frames.first().copied().unwrap_or("?").to_string(),
        };
        let e = sites.entry(site).or_default();
        e.0 += 1;
        e.1 += size;
    }
    let mut v: Vec<_> = sites.into_iter().collect();
    v.sort_by_key(|(_, (n, _))| std::cmp::Reverse(*n));
    v
}
