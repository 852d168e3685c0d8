//! The benchmark scenario engine: the one definition of the bench scenarios (bulk, multi,
//! open-rate, burst, idle, rpc and the WAN ones), their sizes, what the server does with each
//! stream ([`Mode`]) and both sides' per-stream code. `polymux-bench` runs it in child
//! processes (one per side, figures gathered over a control connection); `polymux bench` (the
//! CLI) runs it in one process. The Go peer program's `bench` subcommand speaks the same
//! per-stream protocol.
//!
//! Per-stream protocol: a sink stream starts with the payload length (8 bytes LE), then the
//! payload; the server answers with the byte count it read (8 bytes LE), and the client
//! closes. Echo streams get their bytes back; the client reads exactly what it sent and
//! closes. Nothing relies on half-close semantics (Go smux has none). Against a plain echo
//! server ([`Far::Echo`], e.g. `polymux echo`), bulk and multi read the echo back instead of
//! the sink's count, and check every byte of it against the [`Payload`] they sent.
//!
//! Client functions return [`Figures`]: `key=value` pairs whose keys are the same everywhere
//! (`mibps`, `per_sec`, `ms`, `p50_us`, …).

use std::any::Any;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use bytes::Bytes;
use futures::future::BoxFuture;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;

use crate::payload::Payload;
use crate::session::MuxSession;

/// The scenarios. The `Wan*` ones run through an emulated link (polymux-bench's relay), the
/// others over plain loopback.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scenario {
    /// One stream sends `size` bytes to a sink.
    Bulk,
    /// `streams` streams send `size` bytes in total, concurrently.
    Multi,
    /// Sequential open, 16-byte echo, close, for a fixed time.
    OpenRate,
    /// `burst` streams opened at once, each echoing 1 KiB.
    Burst,
    /// `idle` streams held open: resident memory per stream.
    Idle,
    /// Sequential 64-byte ping-pongs on one stream.
    Rpc,
    /// `wan_size` bytes on one stream over the emulated WAN at 50 ms RTT: MB/s, and t90.
    WanBulk50,
    /// The same at 200 ms RTT.
    WanBulk200,
    /// At 50 ms RTT, 64-byte echoes (random gaps) on a second stream beside a bulk stream of
    /// 2 × `wan_size` bytes on the same session (raw TCP: a second connection through the
    /// same link): latency p50/p99 while the link is saturated.
    WanRpc,
}

impl Scenario {
    /// The loopback scenarios: the default set.
    pub const ALL: [Scenario; 6] = [
        Scenario::Bulk,
        Scenario::Multi,
        Scenario::OpenRate,
        Scenario::Burst,
        Scenario::Idle,
        Scenario::Rpc,
    ];

    /// The WAN scenarios (`--scenarios wan` selects them all).
    pub const WAN: [Scenario; 3] = [Scenario::WanBulk50, Scenario::WanBulk200, Scenario::WanRpc];

    /// The command-line, table and JSON name.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Bulk => "bulk",
            Scenario::Multi => "multi",
            Scenario::OpenRate => "open-rate",
            Scenario::Burst => "burst",
            Scenario::Idle => "idle",
            Scenario::Rpc => "rpc",
            Scenario::WanBulk50 => "wan-bulk50",
            Scenario::WanBulk200 => "wan-bulk200",
            Scenario::WanRpc => "wan-rpc",
        }
    }

    /// Parses a name from [`Scenario::name`].
    pub fn parse(s: &str) -> Result<Scenario, String> {
        let all = Scenario::ALL.into_iter().chain(Scenario::WAN);
        match all.clone().find(|x| x.name() == s) {
            Some(x) => Ok(x),
            None => Err(format!(
                "unknown scenario {s:?}; known: {}",
                all.map(Scenario::name).collect::<Vec<_>>().join(", ")
            )),
        }
    }

    /// What the client runs: the WAN bulks are `bulk` (of `wan_size`) over the relay.
    pub fn client_scenario(self) -> Scenario {
        match self {
            Scenario::WanBulk50 | Scenario::WanBulk200 => Scenario::Bulk,
            other => other,
        }
    }

    /// What the server does with each stream.
    pub fn server_mode(self) -> Mode {
        match self {
            Scenario::Bulk | Scenario::Multi => Mode::Sink,
            Scenario::OpenRate | Scenario::Burst | Scenario::Rpc => Mode::Echo,
            Scenario::Idle => Mode::Hold,
            Scenario::WanBulk50 | Scenario::WanBulk200 => Mode::Sink,
            Scenario::WanRpc => Mode::Mixed,
        }
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Scenario sizes.
#[derive(Clone, Debug)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Sizes {
    /// bulk bytes; multi bytes in total.
    pub size: u64,
    /// multi streams.
    pub streams: usize,
    /// open-rate seconds.
    pub open_secs: f64,
    /// burst streams.
    pub burst: usize,
    /// idle streams.
    pub idle: usize,
    /// rpc round trips.
    pub rpc: usize,
    /// wan-bulk bytes; wan-rpc's bulk sends twice as much.
    pub wan_size: u64,
    /// wan-rpc round trips at most.
    pub wan_rpc: usize,
}

impl Sizes {
    /// The full run's sizes.
    pub fn full() -> Sizes {
        Sizes {
            size: 1 << 30,
            streams: 64,
            open_secs: 1.0,
            burst: 1000,
            idle: 10_000,
            rpc: 10_000,
            wan_size: 64 << 20,
            wan_rpc: 500,
        }
    }

    /// `--quick`: a smoke run of a few seconds.
    pub fn quick() -> Sizes {
        Sizes {
            size: 16 << 20,
            streams: 64,
            open_secs: 0.3,
            burst: 200,
            idle: 1000,
            rpc: 1000,
            wan_size: 16 << 20,
            wan_rpc: 500,
        }
    }

    /// The flags that reproduce these sizes on a `client` command line.
    pub fn to_args(&self) -> Vec<String> {
        vec![
            "--size".into(),
            self.size.to_string(),
            "--streams".into(),
            self.streams.to_string(),
            "--open-secs".into(),
            self.open_secs.to_string(),
            "--burst".into(),
            self.burst.to_string(),
            "--idle".into(),
            self.idle.to_string(),
            "--rpc".into(),
            self.rpc.to_string(),
            "--wan-size".into(),
            self.wan_size.to_string(),
            "--wan-rpc".into(),
            self.wan_rpc.to_string(),
        ]
    }
}

/// What the server does with each accepted stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Read an 8-byte little-endian length, then that many bytes; reply with the count read
    /// (8 bytes LE); wait for the client's close; close.
    Sink,
    /// Write back whatever arrives until EOF; close.
    Echo,
    /// Keep the stream open and untouched (after an empty write, which makes yamux 0.14 send
    /// its lazy ACK).
    Hold,
    /// The stream's first byte says: [`TAG_SINK`] → `Sink`, [`TAG_ECHO`] → `Echo` (wan-rpc's
    /// bulk and echo streams on one session).
    Mixed,
}

/// A `Mixed`-mode stream that is a sink starts with this byte.
pub const TAG_SINK: u8 = b'S';
/// A `Mixed`-mode stream that echoes starts with this byte (not echoed).
pub const TAG_ECHO: u8 = b'E';

impl Mode {
    /// The `--mode` name.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Sink => "sink",
            Mode::Echo => "echo",
            Mode::Hold => "hold",
            Mode::Mixed => "mixed",
        }
    }

    /// Parses a name from [`Mode::name`].
    pub fn parse(s: &str) -> Result<Mode, String> {
        match s {
            "sink" => Ok(Mode::Sink),
            "echo" => Ok(Mode::Echo),
            "hold" => Ok(Mode::Hold),
            "mixed" => Ok(Mode::Mixed),
            _ => Err(format!(
                "unknown mode {s:?}; known: sink, echo, hold, mixed"
            )),
        }
    }
}

/// What the client talks to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Far {
    /// A bench server running the scenario's [`Scenario::server_mode`].
    Bench,
    /// A plain echo server (`polymux echo`, the Go peer's echo-server mode): bulk and multi
    /// read their echo back, idle streams are confirmed by a one-byte echo.
    Echo,
}

/// `raw-tcp-large`'s write and read size, and the largest write of any scenario.
pub const LARGE_CHUNK: usize = 1 << 20;
/// The multiplexers' application write size in bulk and multi.
pub const CHUNK: usize = 64 * 1024;

/// The payload a sink gets, in pieces of the write size. Its content is not verified (the
/// interop tests do that), its byte count is, by the sink's acknowledgement; an echo server's
/// streams carry the verified [`Payload`] instead.
static PAYLOAD: [u8; LARGE_CHUNK] = [0xA5; LARGE_CHUNK];
/// Open-rate never runs more iterations than this, whatever the duration.
const MAX_OPENS: u64 = 10_000_000;
/// Round trips before the timed rpc ones.
const RPC_WARMUP: usize = 200;
const OPEN_MSG: usize = 16;
const BURST_MSG: usize = 1024;
const RPC_MSG: usize = 64;
/// wan-rpc's round trips start this long after the bulk, once it fills the link.
pub const WAN_RPC_LEAD: Duration = Duration::from_secs(1);
/// How long wan-rpc's round trips go on (at most) once started.
pub const WAN_RPC_SECS: Duration = Duration::from_secs(6);
/// wan-rpc's gaps between round trips are uniform in 0 up to this, in µs.
const WAN_RPC_MAX_GAP_US: u64 = 50_000;
/// The idle scenario opens this many streams, then waits until the server holds them all.
/// Below every implementation's accept backlog (polymux: 256; Go yamux as configured: 1024):
/// the scenario measures held streams, not how a flood of opens is absorbed (polymux refuses
/// SYNs beyond its backlog; on smux, whose opens are never acknowledged, nothing slows the
/// opener down, and 10,000 opens at once would mostly be refused).
pub const IDLE_BATCH: usize = 128;
/// How long the idle scenario waits for the server to hold every stream.
pub const IDLE_SETTLE_LIMIT: Duration = Duration::from_secs(20);
/// Pause between polls while waiting for the server to catch up.
pub const IDLE_POLL: Duration = Duration::from_millis(2);
/// Pause before reading RSS, so lazily processed frames have been handled on both sides.
pub const IDLE_QUIET: Duration = Duration::from_millis(300);

/// A scenario's figures: `key=value` pairs.
pub type Figures = Vec<(&'static str, String)>;

/// Opens streams to the server: a multiplexed session, or one TCP connection per stream.
pub trait Opener: Clone + Send + Sync + 'static {
    /// The stream type.
    type Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    /// Opens one stream.
    fn open(&self) -> BoxFuture<'_, io::Result<Self::Stream>>;
}

/// Streams of one multiplexed session.
#[derive(Clone)]
pub struct Mux<S>(pub S);

impl<S: MuxSession> Opener for Mux<S> {
    type Stream = S::Stream;
    fn open(&self) -> BoxFuture<'_, io::Result<S::Stream>> {
        self.0.open()
    }
}

/// One TCP connection (`TCP_NODELAY`) per stream.
#[derive(Clone)]
pub struct Tcp(pub SocketAddr);

impl Opener for Tcp {
    type Stream = TcpStream;
    fn open(&self) -> BoxFuture<'_, io::Result<TcpStream>> {
        Box::pin(async move {
            let s = TcpStream::connect(self.0).await?;
            s.set_nodelay(true)?;
            Ok(s)
        })
    }
}

// ---- the client side ----------------------------------------------------------------------------

/// bulk (`streams` = 1) and multi: `size` bytes in total, concurrently over `streams` streams,
/// written `chunk` bytes at a time. Returns the seconds taken (the caller adds CPU figures).
pub async fn transfer<O: Opener>(
    opener: O,
    size: u64,
    streams: usize,
    chunk: usize,
    far: Far,
) -> anyhow::Result<f64> {
    let streams = streams.max(1);
    let per = size / streams as u64;
    let first = size - per * (streams as u64 - 1);
    let start = Instant::now();
    let mut tasks = JoinSet::new();
    for i in 0..streams {
        let opener = opener.clone();
        let len = if i == 0 { first } else { per };
        tasks.spawn(async move {
            let stream = opener.open().await.context("open")?;
            match far {
                Far::Bench => push(stream, len, chunk).await,
                Far::Echo => push_echoed(stream, len, chunk, i as u64 + 1).await,
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.context("stream task")??;
    }
    Ok(start.elapsed().as_secs_f64())
}

/// [`transfer`]'s figures: MiB/s over `secs`.
pub fn transfer_figures(size: u64, secs: f64) -> Figures {
    vec![
        (
            "mibps",
            format!("{:.1}", size as f64 / secs / f64::from(1u32 << 20)),
        ),
        ("secs", format!("{secs:.4}")),
    ]
}

/// Writes `len` bytes, `chunk` at a time. A polymux stream writes them with
/// `Stream::write_chunk` (the payload as `Bytes`, not copied into its write buffer), the
/// write-side counterpart of the sinks' `read_chunk`; every other stream with `write_all`.
async fn write_payload<W: AsyncWrite + Unpin + Any>(
    w: &mut W,
    len: u64,
    chunk: usize,
) -> io::Result<()> {
    let chunk = chunk.min(PAYLOAD.len()) as u64;
    let mut left = len;
    if let Some(stream) = (w as &mut dyn Any).downcast_mut::<polymux::Stream>() {
        let payload = Bytes::from_static(&PAYLOAD);
        while left > 0 {
            let n = left.min(chunk) as usize;
            stream.write_chunk(payload.slice(..n)).await?;
            left -= n as u64;
        }
        return Ok(());
    }
    while left > 0 {
        let n = left.min(chunk) as usize;
        w.write_all(&PAYLOAD[..n]).await?;
        left -= n as u64;
    }
    w.flush().await
}

/// Sends `len` bytes, `chunk` at a time, with their length in front and waits for the sink's
/// count.
pub async fn push<S: AsyncRead + AsyncWrite + Unpin + Any>(
    mut s: S,
    len: u64,
    chunk: usize,
) -> anyhow::Result<()> {
    s.write_all(&len.to_le_bytes()).await?;
    write_payload(&mut s, len, chunk).await?;
    let mut ack = [0u8; 8];
    s.read_exact(&mut ack)
        .await
        .context("read the sink's count")?;
    let got = u64::from_le_bytes(ack);
    ensure!(got == len, "the sink read {got} bytes of {len}");
    let _ = s.shutdown().await;
    Ok(())
}

/// [`push`] to an echo server: writes `len` bytes of the [`Payload`] for `seed` while reading
/// the echo back, and checks every echoed byte against it.
async fn push_echoed<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
    s: S,
    len: u64,
    chunk: usize,
    seed: u64,
) -> anyhow::Result<()> {
    let chunk = chunk.clamp(1, CHUNK);
    let (mut r, mut w) = tokio::io::split(s);
    let writer = tokio::spawn(async move {
        let mut payload = Payload::new(seed);
        let mut buf = vec![0u8; chunk];
        let mut left = len;
        while left > 0 {
            let n = left.min(chunk as u64) as usize;
            payload.fill(&mut buf[..n]);
            w.write_all(&buf[..n]).await?;
            left -= n as u64;
        }
        w.flush().await?;
        Ok::<_, io::Error>(w)
    });
    let mut expected = Payload::new(seed);
    let (mut buf, mut want) = (vec![0u8; chunk], vec![0u8; chunk]);
    let mut got = 0u64;
    while got < len {
        let room = (len - got).min(chunk as u64) as usize;
        let n = r.read(&mut buf[..room]).await.context("read the echo")?;
        ensure!(n > 0, "the echo ended after {got} of {len} bytes");
        expected.fill(&mut want[..n]);
        ensure!(
            buf[..n] == want[..n],
            "echoed bytes {got}..{} of stream {seed} differ from what was sent",
            got + n as u64
        );
        got += n as u64;
    }
    let mut w = writer.await.context("writer task")??;
    let _ = w.shutdown().await;
    Ok(())
}

/// Writes `msg`, reads exactly as many bytes back, and checks them.
pub async fn echo_once<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    msg: &[u8],
    back: &mut [u8],
) -> anyhow::Result<()> {
    s.write_all(msg).await?;
    s.flush().await?;
    s.read_exact(back).await.context("read the echo")?;
    ensure!(msg == back, "echo mismatch");
    Ok(())
}

/// Sequential open, 16-byte echo, close, for `secs`: streams per second.
pub async fn open_rate<O: Opener>(opener: O, secs: f64) -> anyhow::Result<Figures> {
    let msg = [0x5Au8; OPEN_MSG];
    let mut back = [0u8; OPEN_MSG];
    let duration = Duration::from_secs_f64(secs);
    let start = Instant::now();
    let mut count = 0u64;
    while start.elapsed() < duration && count < MAX_OPENS {
        let mut s = opener.open().await.context("open")?;
        echo_once(&mut s, &msg, &mut back).await?;
        let _ = s.shutdown().await;
        count += 1;
    }
    let secs = start.elapsed().as_secs_f64();
    Ok(vec![
        ("per_sec", format!("{:.1}", count as f64 / secs)),
        ("count", count.to_string()),
    ])
}

/// `n` streams opened at once, each echoing 1 KiB: total milliseconds.
pub async fn burst<O: Opener>(opener: O, n: usize) -> anyhow::Result<Figures> {
    let start = Instant::now();
    let mut tasks = JoinSet::new();
    for i in 0..n {
        let opener = opener.clone();
        tasks.spawn(async move {
            let msg = [(i % 251) as u8; BURST_MSG];
            let mut back = [0u8; BURST_MSG];
            let mut s = opener.open().await.context("open")?;
            echo_once(&mut s, &msg, &mut back).await?;
            let _ = s.shutdown().await;
            anyhow::Ok(())
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.context("stream task")??;
    }
    let ms = start.elapsed().as_secs_f64() * 1e3;
    Ok(vec![("ms", format!("{ms:.2}"))])
}

/// `n` sequential 64-byte ping-pongs on one stream: p50 and p99 in microseconds.
pub async fn rpc<O: Opener>(opener: O, n: usize) -> anyhow::Result<Figures> {
    let msg = [0x3Cu8; RPC_MSG];
    let mut back = [0u8; RPC_MSG];
    let mut s = opener.open().await.context("open")?;
    for _ in 0..RPC_WARMUP {
        echo_once(&mut s, &msg, &mut back).await?;
    }
    let mut lat = Vec::with_capacity(n);
    for _ in 0..n.max(1) {
        let t = Instant::now();
        echo_once(&mut s, &msg, &mut back).await?;
        lat.push(t.elapsed().as_nanos() as f64 / 1e3);
    }
    let _ = s.shutdown().await;
    lat.sort_by(f64::total_cmp);
    let pick = |q: f64| lat[((lat.len() as f64 * q) as usize).min(lat.len() - 1)];
    let mean = lat.iter().sum::<f64>() / lat.len() as f64;
    Ok(vec![
        ("p50_us", format!("{:.2}", pick(0.50))),
        ("p99_us", format!("{:.2}", pick(0.99))),
        ("mean_us", format!("{mean:.2}")),
    ])
}

/// wan-rpc: a bulk stream of 2 × `wan_size` bytes and, on a second stream of the same
/// session (raw TCP: a second connection), 64-byte echoes with random gaps of 0–50 ms, from
/// [`WAN_RPC_LEAD`] after the bulk starts, for [`WAN_RPC_SECS`] or until the bulk ends or
/// `wan_rpc` round trips are done. The bulk is not waited for: the orchestrator takes the
/// link's rate over the same time from the relay. Streams start with a
/// [`TAG_SINK`]/[`TAG_ECHO`] byte (the server runs in `mixed` mode). Figures: round-trip
/// p50/p99/max in ms, their count, and the idle round trip before the bulk.
pub async fn wan_rpc<O: Opener>(opener: O, sizes: &Sizes, chunk: usize) -> anyhow::Result<Figures> {
    let msg = [0x3Cu8; RPC_MSG];
    let mut back = [0u8; RPC_MSG];
    let mut rpc = opener.open().await.context("open the rpc stream")?;
    rpc.write_all(&[TAG_ECHO]).await?;
    // The first echo also carries the open; the second is the idle round trip.
    echo_once(&mut rpc, &msg, &mut back).await?;
    let t = Instant::now();
    echo_once(&mut rpc, &msg, &mut back).await?;
    let idle_ms = t.elapsed().as_secs_f64() * 1e3;

    let size = 2 * sizes.wan_size;
    let start = Instant::now();
    let bulk = tokio::spawn({
        let opener = opener.clone();
        async move {
            let mut s = opener.open().await.context("open the bulk stream")?;
            s.write_all(&[TAG_SINK]).await?;
            push(s, size, chunk).await
        }
    });
    tokio::time::sleep(WAN_RPC_LEAD).await;
    let mut lat = Vec::with_capacity(sizes.wan_rpc);
    // xorshift64: reproducible gaps without a dependency.
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    while !bulk.is_finished()
        && lat.len() < sizes.wan_rpc
        && start.elapsed() < WAN_RPC_LEAD + WAN_RPC_SECS
    {
        let t = Instant::now();
        echo_once(&mut rpc, &msg, &mut back).await?;
        lat.push(t.elapsed().as_secs_f64() * 1e3);
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        tokio::time::sleep(Duration::from_micros(seed % WAN_RPC_MAX_GAP_US)).await;
    }
    if bulk.is_finished() {
        // Surface a failed bulk rather than latencies measured beside nothing.
        bulk.await.context("bulk task")??;
    }
    ensure!(
        !lat.is_empty(),
        "the bulk ended before any round trip beside it"
    );
    lat.sort_by(f64::total_cmp);
    let pick = |q: f64| lat[((lat.len() as f64 * q) as usize).min(lat.len() - 1)];
    Ok(vec![
        ("p50_ms", format!("{:.2}", pick(0.50))),
        ("p99_ms", format!("{:.2}", pick(0.99))),
        ("max_ms", format!("{:.2}", lat[lat.len() - 1])),
        ("samples", lat.len().to_string()),
        ("idle_ms", format!("{idle_ms:.2}")),
    ])
}

/// The idle scenario's opening: `n` streams, opened [`IDLE_BATCH`] at a time; after each batch
/// `settle(total)` waits until the far end holds `total` streams (a bench server's count), and
/// against a plain echo server each new stream is first confirmed by a one-byte echo. Returns
/// the streams, to be held while the caller measures. `held` should have room for `n` streams
/// already, so that its growth is not counted as per-stream memory.
pub async fn open_idle<O, F>(
    opener: &O,
    n: usize,
    far: Far,
    held: &mut Vec<O::Stream>,
    mut settle: F,
) -> anyhow::Result<()>
where
    O: Opener,
    F: AsyncFnMut(usize) -> anyhow::Result<()>,
{
    while held.len() < n {
        for _ in 0..IDLE_BATCH.min(n - held.len()) {
            let mut s = opener
                .open()
                .await
                .with_context(|| format!("open stream {} of {n}", held.len() + 1))?;
            if far == Far::Echo {
                echo_once(&mut s, b"i", &mut [0u8; 1]).await?;
            }
            held.push(s);
        }
        settle(held.len()).await?;
    }
    Ok(())
}

/// Resident set size of this process in bytes (`VmRSS` in `/proc/self/status`).
pub fn rss_bytes() -> anyhow::Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status").context("read /proc/self/status")?;
    for line in status.lines() {
        if let Some(rest) = line.strip_prefix("VmRSS:") {
            let kib: u64 = rest
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse()
                .with_context(|| format!("parse VmRSS line {line:?}"))?;
            return Ok(kib * 1024);
        }
    }
    anyhow::bail!("no VmRSS line in /proc/self/status")
}

// ---- the server side ----------------------------------------------------------------------------

/// Read buffer of a sink stream (at least the client's write size: 1 MiB for raw-tcp-large).
pub const SINK_BUF: usize = 128 * 1024;
/// Read buffer of an echo stream (1000 of them at once in `burst`).
const ECHO_BUF: usize = 16 * 1024;
/// How long a sink waits for the client's close after acknowledging.
const CLOSE_WAIT: Duration = Duration::from_secs(30);
/// Held streams' vectors are allocated this big up front, so their growth is not counted as
/// per-stream memory (the handle's own size is added explicitly instead: [`Held::handle`]).
pub const HOLD_CAPACITY: usize = 16 * 1024;

/// How a sink reads.
#[derive(Clone, Copy, Debug)]
pub struct How {
    /// Read buffer size (copying reads).
    pub sink_buf: usize,
    /// Take a polymux stream's data with `read_chunk` (zero-copy).
    pub chunks: bool,
}

/// The server's count of streams held in [`Mode::Hold`] (what the idle scenario waits for).
#[derive(Debug, Default)]
pub struct Held {
    /// Streams held now.
    pub streams: AtomicUsize,
    /// `size_of` the held stream handle.
    pub handle: AtomicUsize,
}

impl Held {
    /// No streams held.
    pub const fn new() -> Held {
        Held {
            streams: AtomicUsize::new(0),
            handle: AtomicUsize::new(0),
        }
    }
}

/// Serves one multiplexed session's streams in `mode` until the session ends; `report` gets
/// every stream's error that is not [`teardown_noise`].
pub async fn serve_session<S: MuxSession>(
    session: S,
    mode: Mode,
    how: How,
    held: &Held,
    report: fn(io::Error),
) where
    S::Stream: Any,
{
    let mut kept = Vec::new();
    if mode == Mode::Hold {
        held.handle.store(std::mem::size_of::<S::Stream>(), Relaxed);
        kept.reserve(HOLD_CAPACITY);
    }
    while let Ok(mut stream) = session.accept().await {
        match mode {
            Mode::Hold => {
                // yamux 0.14 acknowledges an inbound stream only with its first frame; an empty
                // write sends it (and is a no-op for the others).
                let _ = stream.write(&[]).await;
                kept.push(stream);
                held.streams.fetch_add(1, Relaxed);
            }
            _ => {
                tokio::spawn(async move {
                    if let Err(e) = serve_stream(stream, mode, how).await {
                        if !teardown_noise(&e) {
                            report(e);
                        }
                    }
                });
            }
        }
    }
    held.streams.fetch_sub(kept.len(), Relaxed);
}

/// Serves one stream in `mode` (sink, echo or mixed; a held stream is kept by the caller).
pub async fn serve_stream<S: AsyncRead + AsyncWrite + Unpin + Any>(
    stream: S,
    mode: Mode,
    how: How,
) -> io::Result<()> {
    match mode {
        Mode::Sink => sink(stream, how).await,
        Mode::Echo => echo(stream).await,
        Mode::Hold => Ok(()),
        Mode::Mixed => mixed(stream, how).await,
    }
}

/// Whether a server stream's error is the expected noise of teardown: clients close right
/// after their last read, and a real failure shows up on the client side.
pub fn teardown_noise(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::UnexpectedEof
            | io::ErrorKind::NotConnected
    )
}

async fn sink<S: AsyncRead + AsyncWrite + Unpin + Any>(mut s: S, how: How) -> io::Result<()> {
    let mut len = [0u8; 8];
    s.read_exact(&mut len).await?;
    let len = u64::from_le_bytes(len);
    let polymux = (&mut s as &mut dyn Any).downcast_mut::<polymux::Stream>();
    let got = match polymux {
        Some(stream) if how.chunks => drain_chunks(stream, len).await?,
        _ => drain(&mut s, len, how.sink_buf).await?,
    };
    s.write_all(&got.to_le_bytes()).await?;
    s.flush().await?;
    // Wait for the client's close, then close.
    let _ = tokio::time::timeout(CLOSE_WAIT, s.read(&mut [0u8; 1])).await;
    s.shutdown().await
}

/// Reads up to `len` bytes into a `buf_size` buffer; returns how many arrived before EOF.
async fn drain<S: AsyncRead + Unpin>(s: &mut S, len: u64, buf_size: usize) -> io::Result<u64> {
    let mut buf = vec![0u8; buf_size];
    let mut got = 0u64;
    while got < len {
        let want = (len - got).min(buf.len() as u64) as usize;
        let n = s.read(&mut buf[..want]).await?;
        if n == 0 {
            break;
        }
        got += n as u64;
    }
    Ok(got)
}

/// [`drain`] for a polymux stream, taking the received chunks without copying them.
async fn drain_chunks(s: &mut polymux::Stream, len: u64) -> io::Result<u64> {
    let mut got = 0u64;
    while got < len {
        let want = usize::try_from(len - got).unwrap_or(usize::MAX);
        match s.read_chunk(want).await? {
            Some(chunk) => got += chunk.len() as u64,
            None => break,
        }
    }
    Ok(got)
}

/// A `mixed`-mode stream: its first byte says whether it is a sink or an echo.
async fn mixed<S: AsyncRead + AsyncWrite + Unpin + Any>(mut s: S, how: How) -> io::Result<()> {
    let mut tag = [0u8; 1];
    s.read_exact(&mut tag).await?;
    match tag[0] {
        TAG_SINK => sink(s, how).await,
        TAG_ECHO => echo(s).await,
        other => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("unknown stream tag {other:#04x}"),
        )),
    }
}

async fn echo<S: AsyncRead + AsyncWrite + Unpin>(mut s: S) -> io::Result<()> {
    let mut buf = vec![0u8; ECHO_BUF];
    loop {
        let n = s.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        s.write_all(&buf[..n]).await?;
        s.flush().await?;
    }
    s.shutdown().await
}
