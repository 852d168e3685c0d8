//! The bench scenarios. Each runs against a [`Peer`] (an echo server behind streams), checks
//! every echoed byte against [`pattern`], and returns its [`Metric`]s.
//!
//! | scenario | what it does | headline |
//! |---|---|---|
//! | bulk | one stream: write N bytes while reading the echo | MiB/s each way |
//! | aggregate | the same over 64 concurrent streams (N in total) | MiB/s each way |
//! | sequential | open, write 64 B, half-close, read the echo, close — one after another | ops/s |
//! | concurrent | 1000 tasks each open a stream and echo 16 B, all at once | ms until all echoed |
//! | idle | hold 10 000 open streams (each echoed 1 B once) | heap and RSS bytes per stream |
//! | pingpong | one stream, 32 B round trips one at a time | p50 / p99 µs |

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use super::memory;
use super::pattern::{self, MAX_CHUNK};
use super::peer::Peer;

/// One scenario.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scenario {
    /// Bulk throughput on one stream.
    Bulk,
    /// Aggregate throughput over many streams.
    Aggregate,
    /// Sequential open + echo + close.
    Sequential,
    /// Many concurrent opens.
    Concurrent,
    /// Memory per idle stream.
    Idle,
    /// Round-trip latency.
    Pingpong,
}

impl Scenario {
    /// Display order (the order of the table's rows).
    pub const ALL: [Scenario; 6] = [
        Scenario::Bulk,
        Scenario::Aggregate,
        Scenario::Sequential,
        Scenario::Concurrent,
        Scenario::Idle,
        Scenario::Pingpong,
    ];

    /// Run order: latency and memory first, while the process is quiet and its heap small.
    pub const RUN_ORDER: [Scenario; 6] = [
        Scenario::Pingpong,
        Scenario::Sequential,
        Scenario::Concurrent,
        Scenario::Idle,
        Scenario::Bulk,
        Scenario::Aggregate,
    ];

    /// The name used in JSON and `--only`.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Bulk => "bulk",
            Scenario::Aggregate => "aggregate",
            Scenario::Sequential => "sequential",
            Scenario::Concurrent => "concurrent",
            Scenario::Idle => "idle",
            Scenario::Pingpong => "pingpong",
        }
    }
}

/// One measured number.
#[derive(Clone, Debug, Serialize)]
pub struct Metric {
    /// Stable key ("mib_per_s", "p99_us", …).
    pub key: &'static str,
    /// The table row label.
    pub label: String,
    /// The value.
    pub value: f64,
    /// Its unit.
    pub unit: &'static str,
    /// Whether more is better (throughput) or less (time, memory).
    pub higher_is_better: bool,
    /// Whether the table shows it (the others are details, in the JSON only).
    #[serde(skip)]
    pub table: bool,
}

/// Sizes for one run.
#[derive(Clone, Debug, Serialize)]
pub struct Sizes {
    /// Bytes of the bulk transfer, and the total of the aggregate one.
    pub bulk_bytes: u64,
    /// Streams in the aggregate scenario.
    pub aggregate_streams: usize,
    /// Open+echo+close iterations (at most; also bounded by `sequential_budget`).
    pub sequential: usize,
    /// Time budget of the sequential scenario.
    #[serde(skip)]
    pub sequential_budget: Duration,
    /// Concurrent opens.
    pub concurrent: usize,
    /// Idle streams.
    pub idle: usize,
    /// Ping-pong round trips.
    pub pings: usize,
}

fn mib_per_s(bytes: u64, elapsed: Duration) -> f64 {
    bytes as f64 / (1024.0 * 1024.0) / elapsed.as_secs_f64().max(1e-9)
}

fn short_echo(got: u64, want: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        format!("the echo ended after {got} of {want} bytes"),
    )
}

/// Writes `size` bytes of stream `seed` while reading and verifying the echo. Returns the
/// bytes verified. `progress` counts verified bytes.
async fn echo_transfer(
    peer: &Peer,
    seed: u64,
    size: u64,
    progress: Arc<AtomicU64>,
) -> io::Result<u64> {
    let stream = peer.open().await?;
    let (mut r, mut w) = tokio::io::split(stream);
    let writer = tokio::spawn(async move {
        let mut offset = 0u64;
        while offset < size {
            let len = (size - offset).min(MAX_CHUNK as u64) as usize;
            w.write_all(pattern::slice(seed, offset, len)).await?;
            offset += len as u64;
        }
        w.shutdown().await?;
        Ok::<_, io::Error>(w)
    });
    let mut buf = vec![0u8; MAX_CHUNK];
    let mut offset = 0u64;
    let read = async {
        loop {
            let n = r.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            pattern::verify(seed, offset, &buf[..n])?;
            offset += n as u64;
            progress.fetch_add(n as u64, Ordering::Relaxed);
        }
        Ok::<_, io::Error>(())
    };
    let read_result = read.await;
    let write_result = writer
        .await
        .map_err(|e| io::Error::other(format!("writer task failed: {e}")))?;
    read_result?;
    write_result?;
    if offset != size {
        return Err(short_echo(offset, size));
    }
    Ok(offset)
}

/// Bulk throughput on one stream.
pub async fn bulk(peer: &Peer, size: u64, progress: Arc<AtomicU64>) -> io::Result<Vec<Metric>> {
    let started = Instant::now();
    let moved = echo_transfer(peer, 1, size, progress).await?;
    let elapsed = started.elapsed();
    Ok(vec![Metric {
        key: "mib_per_s",
        label: "bulk, 1 stream (MiB/s)".into(),
        value: mib_per_s(moved, elapsed),
        unit: "MiB/s",
        higher_is_better: true,
        table: true,
    }])
}

/// Aggregate throughput over `streams` concurrent streams moving `total` bytes together.
pub async fn aggregate(
    peer: &Peer,
    streams: usize,
    total: u64,
    progress: Arc<AtomicU64>,
) -> io::Result<Vec<Metric>> {
    let streams = streams.max(1);
    let each = (total / streams as u64).max(1);
    let started = Instant::now();
    let tasks: Vec<_> = (0..streams)
        .map(|i| {
            let peer = peer.clone();
            let progress = progress.clone();
            tokio::spawn(async move { echo_transfer(&peer, 100 + i as u64, each, progress).await })
        })
        .collect();
    let mut moved = 0;
    for task in tasks {
        moved += task
            .await
            .map_err(|e| io::Error::other(format!("stream task failed: {e}")))??;
    }
    let elapsed = started.elapsed();
    Ok(vec![Metric {
        key: "mib_per_s",
        label: format!("aggregate, {streams} streams (MiB/s)"),
        value: mib_per_s(moved, elapsed),
        unit: "MiB/s",
        higher_is_better: true,
        table: true,
    }])
}

/// One short exchange: write `len` bytes of stream `seed`, half-close, read the echo to EOF.
async fn exchange(peer: &Peer, seed: u64, len: usize) -> io::Result<()> {
    let mut stream = peer.open().await?;
    stream.write_all(pattern::slice(seed, 0, len)).await?;
    stream.shutdown().await?;
    let mut echoed = Vec::with_capacity(len);
    stream.read_to_end(&mut echoed).await?;
    if echoed.len() != len {
        return Err(short_echo(echoed.len() as u64, len as u64));
    }
    pattern::verify(seed, 0, &echoed)
}

/// Sequential open + echo + close, up to `count` times within `budget`.
pub async fn sequential(
    peer: &Peer,
    count: usize,
    budget: Duration,
    progress: Arc<AtomicU64>,
) -> io::Result<Vec<Metric>> {
    let started = Instant::now();
    let mut done = 0usize;
    while done < count.max(1) {
        if done >= 10 && started.elapsed() > budget {
            break;
        }
        exchange(peer, done as u64, 64).await?;
        done += 1;
        progress.fetch_add(1, Ordering::Relaxed);
    }
    let elapsed = started.elapsed();
    Ok(vec![Metric {
        key: "ops_per_s",
        label: "open+echo+close, sequential (ops/s)".into(),
        value: done as f64 / elapsed.as_secs_f64().max(1e-9),
        unit: "ops/s",
        higher_is_better: true,
        table: true,
    }])
}

/// `n` streams opened at once, each echoing 16 bytes; all stay open until every one has
/// echoed, so `n` are really open together.
pub async fn concurrent(
    peer: &Peer,
    n: usize,
    progress: Arc<AtomicU64>,
) -> io::Result<Vec<Metric>> {
    let n = n.max(1);
    let release = CancellationToken::new();
    let (done_tx, mut done_rx) = tokio::sync::mpsc::channel::<io::Result<Duration>>(n);
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(n);
    for i in 0..n {
        let peer = peer.clone();
        let release = release.clone();
        let done_tx = done_tx.clone();
        tasks.push(tokio::spawn(async move {
            let seed = 10_000 + i as u64;
            let attempt = async {
                let mut stream = peer.open().await?;
                stream.write_all(pattern::slice(seed, 0, 16)).await?;
                let mut echoed = [0u8; 16];
                stream.read_exact(&mut echoed).await?;
                pattern::verify(seed, 0, &echoed)?;
                Ok::<_, io::Error>((stream, started.elapsed()))
            };
            match attempt.await {
                Ok((mut stream, at)) => {
                    let _ = done_tx.send(Ok(at)).await;
                    release.cancelled().await;
                    let _ = stream.shutdown().await;
                    let mut rest = Vec::new();
                    let _ = stream.read_to_end(&mut rest).await;
                }
                Err(e) => {
                    let _ = done_tx.send(Err(e)).await;
                }
            }
        }));
    }
    drop(done_tx);
    let mut slowest = Duration::ZERO;
    let mut result = Ok(());
    for _ in 0..n {
        match done_rx.recv().await {
            Some(Ok(at)) => {
                slowest = slowest.max(at);
                progress.fetch_add(1, Ordering::Relaxed);
            }
            Some(Err(e)) => {
                result = Err(e);
                break;
            }
            None => {
                result = Err(io::Error::other("a stream task ended without a result"));
                break;
            }
        }
    }
    release.cancel();
    for task in tasks {
        if result.is_err() {
            task.abort();
        } else {
            let _ = task.await;
        }
    }
    result?;
    Ok(vec![Metric {
        key: "ms",
        label: format!("{n} concurrent opens+echo (ms)"),
        value: slowest.as_secs_f64() * 1000.0,
        unit: "ms",
        higher_is_better: false,
        table: true,
    }])
}

/// Memory per idle stream: open `n` streams (each echoes one byte, so the far end has
/// accepted it), hold them, and compare the heap and RSS before and after.
pub async fn idle(
    peer: &Peer,
    n: usize,
    both_ends: bool,
    progress: Arc<AtomicU64>,
) -> io::Result<Vec<Metric>> {
    let n = n.max(1);
    let mut held = Vec::with_capacity(n);
    let settle = Duration::from_millis(300);
    tokio::time::sleep(settle).await;
    memory::trim();
    let heap_before = memory::heap_live();
    let rss_before = memory::rss();
    const BATCH: usize = 256;
    let mut opened = 0;
    while opened < n {
        let batch = BATCH.min(n - opened);
        let tasks: Vec<_> = (0..batch)
            .map(|_| {
                let peer = peer.clone();
                tokio::spawn(async move {
                    let mut stream = peer.open().await?;
                    stream.write_all(b"i").await?;
                    let mut byte = [0u8; 1];
                    stream.read_exact(&mut byte).await?;
                    if &byte != b"i" {
                        return Err(io::Error::new(io::ErrorKind::InvalidData, "wrong echo"));
                    }
                    Ok::<_, io::Error>(stream)
                })
            })
            .collect();
        for task in tasks {
            let stream = task
                .await
                .map_err(|e| io::Error::other(format!("open task failed: {e}")))??;
            held.push(stream);
        }
        opened += batch;
        progress.fetch_add(batch as u64, Ordering::Relaxed);
    }
    tokio::time::sleep(settle).await;
    let heap_after = memory::heap_live();
    let rss_after = memory::rss();
    let sides = if both_ends {
        "both ends"
    } else {
        "client side"
    };
    let mut metrics = vec![Metric {
        key: "heap_bytes_per_stream",
        label: format!("idle heap/stream, {sides} (B)"),
        value: (heap_after - heap_before) as f64 / n as f64,
        unit: "B",
        higher_is_better: false,
        table: true,
    }];
    if let (Some(before), Some(after)) = (rss_before, rss_after) {
        metrics.push(Metric {
            key: "rss_bytes_per_stream",
            label: format!("idle RSS/stream, {sides} (B)"),
            value: (after - before) as f64 / n as f64,
            unit: "B",
            higher_is_better: false,
            table: true,
        });
    }
    if let Some(session) = peer.session() {
        let stats = session.stats();
        metrics.push(Metric {
            key: "session_streams",
            label: "idle: streams in the session".into(),
            value: stats.streams as f64,
            unit: "streams",
            higher_is_better: false,
            table: false,
        });
        metrics.push(Metric {
            key: "recv_buffered",
            label: "idle: bytes buffered by the session".into(),
            value: stats.recv_buffered as f64,
            unit: "B",
            higher_is_better: false,
            table: false,
        });
    }
    metrics.push(Metric {
        key: "streams",
        label: "idle: streams held".into(),
        value: n as f64,
        unit: "streams",
        higher_is_better: false,
        table: false,
    });
    drop(held);
    tokio::time::sleep(settle).await;
    Ok(metrics)
}

/// Round-trip latency: `rounds` 32-byte ping-pongs on one stream, after a warm-up.
pub async fn pingpong(
    peer: &Peer,
    rounds: usize,
    progress: Arc<AtomicU64>,
) -> io::Result<Vec<Metric>> {
    const MESSAGE: usize = 32;
    const WARMUP: usize = 50;
    let rounds = rounds.max(1);
    let mut stream = peer.open().await?;
    let mut echoed = [0u8; MESSAGE];
    let mut samples = Vec::with_capacity(rounds);
    let mut offset = 0u64;
    for i in 0..WARMUP + rounds {
        let message = pattern::slice(7, offset, MESSAGE);
        let started = Instant::now();
        stream.write_all(message).await?;
        stream.read_exact(&mut echoed).await?;
        let rtt = started.elapsed();
        pattern::verify(7, offset, &echoed)?;
        offset += MESSAGE as u64;
        if i >= WARMUP {
            samples.push(rtt);
            progress.fetch_add(1, Ordering::Relaxed);
        }
    }
    stream.shutdown().await?;
    let mut rest = Vec::new();
    stream.read_to_end(&mut rest).await?;
    if !rest.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "extra bytes after the last ping",
        ));
    }
    samples.sort_unstable();
    let percentile = |p: f64| {
        let index = ((samples.len() as f64 * p).ceil() as usize).clamp(1, samples.len()) - 1;
        samples[index].as_secs_f64() * 1e6
    };
    Ok(vec![
        Metric {
            key: "p50_us",
            label: "ping-pong p50 (µs)".into(),
            value: percentile(0.50),
            unit: "µs",
            higher_is_better: false,
            table: true,
        },
        Metric {
            key: "p99_us",
            label: "ping-pong p99 (µs)".into(),
            value: percentile(0.99),
            unit: "µs",
            higher_is_better: false,
            table: true,
        },
    ])
}
