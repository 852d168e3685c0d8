//! `polymux-bench client`: the client child process. Runs one scenario against a `serve`
//! process and prints one `RESULT key=value …` line (see [`Scenario`] for what each measures).
//!
//! Per-stream protocol (the Go peer program's `bench` subcommand speaks the same): a sink stream starts with the
//! payload length (8 bytes LE), then the payload; the server answers with the byte count it read
//! (8 bytes LE), and the client closes. Echo streams get their bytes back; the client reads
//! exactly what it sent and closes. Nothing relies on half-close semantics (Go smux has none).
//!
//! CPU is `getrusage(RUSAGE_SELF)` deltas on each side (the server's through the control
//! connection's `STATS`), taken around the timed part only; memory is VmRSS and counted-heap
//! deltas around opening the idle streams.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use futures::future::BoxFuture;
use polymux_testkit::{MuxSession, Peer, Role, SessionParams};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::task::JoinSet;

use crate::args::{ClientArgs, Sizes};
use crate::impls::{with_peer, Scenario, LARGE_CHUNK, TAG_ECHO, TAG_SINK};
use crate::sys;
use polymux_testkit::alloc;

/// The payload written, in pieces of the implementation's write size
/// ([`Impl::transfer_chunk`](crate::impls::Impl::transfer_chunk): 64 KiB, or 1 MiB for
/// raw-tcp-large). Content is not verified here (the interop tests do that); the byte count
/// is, by the sink's acknowledgement.
static PAYLOAD: [u8; LARGE_CHUNK] = [0xA5; LARGE_CHUNK];
/// Upper bound on any single scenario (the parent also enforces its own timeout).
const SCENARIO_LIMIT: Duration = Duration::from_secs(600);
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
/// How long the idle scenario waits for the server to hold every stream.
const IDLE_SETTLE_LIMIT: Duration = Duration::from_secs(20);
/// The idle scenario opens this many streams, then waits until the server holds them all.
/// Below every implementation's accept backlog (polymux: 256; Go yamux as configured: 1024):
/// the scenario measures held streams, not how a flood of opens is absorbed (polymux refuses
/// SYNs beyond its backlog; on smux, whose opens are never acknowledged, nothing slows the
/// opener down, and 10,000 opens at once would mostly be refused).
const IDLE_BATCH: usize = 128;
/// Pause between STATS polls while waiting for the server to catch up.
const IDLE_POLL: Duration = Duration::from_millis(2);
/// Pause before reading RSS, so lazily processed frames have been handled on both sides.
const IDLE_QUIET: Duration = Duration::from_millis(300);

pub fn main(args: ClientArgs) -> anyhow::Result<()> {
    sys::raise_nofile();
    ensure!(!args.imp.is_go(), "{} runs in the Go peer program", args.imp);
    if args.scenario == Scenario::Idle {
        alloc::enable();
        if args.imp.is_raw_tcp() {
            let limit = sys::nofile_limit();
            ensure!(
                limit > args.sizes.idle as u64 + 64,
                "{} idle TCP connections need more than the open-file limit {limit}",
                args.sizes.idle
            );
        }
    }
    let rt = crate::runtime(args.threads)?;
    let result = rt.block_on(async {
        tokio::time::timeout(SCENARIO_LIMIT, run(&args))
            .await
            .unwrap_or_else(|_| bail!("scenario exceeded {SCENARIO_LIMIT:?}"))
    })?;
    let line = result
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ");
    println!("RESULT {line}");
    use std::io::Write as _;
    std::io::stdout().flush()?;
    // Do not wait for graceful teardown: the figure is taken, and the parent stops the server.
    std::process::exit(0)
}

/// Opens streams to the server: a multiplexed session, or one TCP connection per stream.
trait Opener: Clone + Send + Sync + 'static {
    type Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    fn open(&self) -> BoxFuture<'_, io::Result<Self::Stream>>;
}

#[derive(Clone)]
struct Mux<S>(S);

impl<S: MuxSession> Opener for Mux<S> {
    type Stream = S::Stream;
    fn open(&self) -> BoxFuture<'_, io::Result<S::Stream>> {
        self.0.open()
    }
}

#[derive(Clone)]
struct Tcp(SocketAddr);

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

type Figures = Vec<(&'static str, String)>;

async fn run(args: &ClientArgs) -> anyhow::Result<Figures> {
    let control = Control::connect(args.control).await?;
    with_peer!(
        args.imp,
        |peer| {
            let tcp = TcpStream::connect(args.connect)
                .await
                .with_context(|| format!("connect {}", args.connect))?;
            tcp.set_nodelay(true)?;
            let session = peer
                .connect(tcp, Role::Client, &SessionParams::default())
                .await
                .context("session setup")?;
            scenario(Mux(session), control, args).await
        },
        else {
            scenario(Tcp(args.connect), control, args).await
        }
    )
}

async fn scenario<O: Opener>(
    opener: O,
    control: Control,
    args: &ClientArgs,
) -> anyhow::Result<Figures> {
    let s = &args.sizes;
    let chunk = args.imp.transfer_chunk();
    match args.scenario {
        Scenario::Bulk => transfer(opener, control, s.size, 1, chunk).await,
        Scenario::Multi => transfer(opener, control, s.size, s.streams, chunk).await,
        Scenario::OpenRate => open_rate(opener, s).await,
        Scenario::Burst => burst(opener, s.burst).await,
        Scenario::Idle => idle(opener, control, s.idle).await,
        Scenario::Rpc => rpc(opener, s.rpc).await,
        Scenario::WanBulk50 | Scenario::WanBulk200 => {
            transfer(opener, control, s.wan_size, 1, chunk).await
        }
        Scenario::WanRpc => wan_rpc(opener, s, chunk).await,
    }
}

/// bulk (`streams` = 1) and multi: `size` bytes in total to the sink, concurrently over
/// `streams` streams, written `chunk` bytes at a time. MiB/s, and CPU seconds per GiB on each
/// side.
async fn transfer<O: Opener>(
    opener: O,
    mut control: Control,
    size: u64,
    streams: usize,
    chunk: usize,
) -> anyhow::Result<Figures> {
    let per = size / streams as u64;
    let first = size - per * (streams as u64 - 1);
    let server0 = control.stats().await?;
    let cpu0 = sys::cpu();
    let start = Instant::now();
    let mut tasks = JoinSet::new();
    for i in 0..streams {
        let opener = opener.clone();
        let len = if i == 0 { first } else { per };
        tasks.spawn(async move {
            let stream = opener.open().await.context("open")?;
            push(stream, len, chunk).await
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.context("stream task")??;
    }
    let secs = start.elapsed().as_secs_f64();
    let cpu = sys::cpu()
        .total()
        .saturating_sub(cpu0.total())
        .as_secs_f64();
    let server1 = control.stats().await?;
    let server_cpu = server1.cpu_secs() - server0.cpu_secs();
    let gib = size as f64 / f64::from(1u32 << 30);
    Ok(vec![
        (
            "mibps",
            format!("{:.1}", size as f64 / secs / f64::from(1u32 << 20)),
        ),
        ("secs", format!("{secs:.4}")),
        ("client_cpu_per_gib", format!("{:.4}", cpu / gib)),
        ("server_cpu_per_gib", format!("{:.4}", server_cpu / gib)),
    ])
}

/// Sends `len` bytes, `chunk` at a time, with their length in front and waits for the sink's
/// count.
async fn push<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    len: u64,
    chunk: usize,
) -> anyhow::Result<()> {
    s.write_all(&len.to_le_bytes()).await?;
    let chunk = chunk.min(PAYLOAD.len()) as u64;
    let mut left = len;
    while left > 0 {
        let n = left.min(chunk) as usize;
        s.write_all(&PAYLOAD[..n]).await?;
        left -= n as u64;
    }
    s.flush().await?;
    let mut ack = [0u8; 8];
    s.read_exact(&mut ack)
        .await
        .context("read the sink's count")?;
    let got = u64::from_le_bytes(ack);
    ensure!(got == len, "the sink read {got} bytes of {len}");
    let _ = s.shutdown().await;
    Ok(())
}

/// Writes `msg`, reads exactly as many bytes back, and checks them.
async fn echo_once<S: AsyncRead + AsyncWrite + Unpin>(
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

/// Sequential open, 16-byte echo, close, for `open_secs`: streams per second.
async fn open_rate<O: Opener>(opener: O, sizes: &Sizes) -> anyhow::Result<Figures> {
    let msg = [0x5Au8; OPEN_MSG];
    let mut back = [0u8; OPEN_MSG];
    let duration = Duration::from_secs_f64(sizes.open_secs);
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
async fn burst<O: Opener>(opener: O, n: usize) -> anyhow::Result<Figures> {
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
async fn rpc<O: Opener>(opener: O, n: usize) -> anyhow::Result<Figures> {
    let msg = [0x3Cu8; RPC_MSG];
    let mut back = [0u8; RPC_MSG];
    let mut s = opener.open().await.context("open")?;
    for _ in 0..RPC_WARMUP {
        echo_once(&mut s, &msg, &mut back).await?;
    }
    let mut lat = Vec::with_capacity(n);
    for _ in 0..n {
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
async fn wan_rpc<O: Opener>(opener: O, sizes: &Sizes, chunk: usize) -> anyhow::Result<Figures> {
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

/// `n` streams opened and held: resident memory (VmRSS delta) and net heap growth per stream,
/// on each side. Heap figures include the stream handle's own size (held in a vector
/// allocated beforehand).
async fn idle<O: Opener>(opener: O, mut control: Control, n: usize) -> anyhow::Result<Figures> {
    let mut held = Vec::with_capacity(n);
    tokio::time::sleep(IDLE_QUIET).await;
    let server0 = control.stats().await?;
    let rss0 = sys::rss_bytes()?;
    let heap0 = alloc::net_bytes();
    let allocs0 = alloc::calls();
    while held.len() < n {
        for _ in 0..IDLE_BATCH.min(n - held.len()) {
            let s = opener
                .open()
                .await
                .with_context(|| format!("open stream {} of {n}", held.len() + 1))?;
            held.push(s);
        }
        let waited = Instant::now();
        loop {
            let s = control.stats().await?;
            if s.get("held")? as usize >= held.len() {
                break;
            }
            ensure!(
                waited.elapsed() < IDLE_SETTLE_LIMIT,
                "the server holds {} of the {} streams opened after {IDLE_SETTLE_LIMIT:?}",
                s.get("held")?,
                held.len()
            );
            tokio::time::sleep(IDLE_POLL).await;
        }
    }
    tokio::time::sleep(IDLE_QUIET).await;
    let rss1 = sys::rss_bytes()?;
    let heap1 = alloc::net_bytes();
    let allocs1 = alloc::calls();
    let server1 = control.stats().await?;
    let handle = std::mem::size_of::<O::Stream>() as f64;
    let per = |delta: f64| format!("{:.0}", delta / n as f64);
    let figures = vec![
        ("streams", n.to_string()),
        ("handle_b", format!("{handle:.0}")),
        ("client_rss_b", per(rss1 as f64 - rss0 as f64)),
        (
            "server_rss_b",
            per(server1.get("rss_b")? - server0.get("rss_b")?),
        ),
        (
            "client_heap_b",
            per((heap1 - heap0) as f64 + handle * n as f64),
        ),
        (
            "server_heap_b",
            per(server1.get("heap_b")? - server0.get("heap_b")?
                + server1.get("handle_b")? * n as f64),
        ),
        (
            "client_allocs",
            format!("{:.2}", (allocs1 - allocs0) as f64 / n as f64),
        ),
        (
            "server_allocs",
            format!(
                "{:.2}",
                (server1.get("allocs")? - server0.get("allocs")?) / n as f64
            ),
        ),
    ];
    drop(held);
    Ok(figures)
}

/// The control connection to the server.
struct Control {
    lines: tokio::io::Lines<BufReader<OwnedReadHalf>>,
    w: OwnedWriteHalf,
}

/// A parsed `STATS` reply.
struct Stats(HashMap<String, f64>);

impl Stats {
    fn get(&self, key: &str) -> anyhow::Result<f64> {
        self.0
            .get(key)
            .copied()
            .with_context(|| format!("the server's STATS has no {key}"))
    }

    fn cpu_secs(&self) -> f64 {
        (self.0.get("user_us").copied().unwrap_or(0.0)
            + self.0.get("sys_us").copied().unwrap_or(0.0))
            / 1e6
    }
}

impl Control {
    async fn connect(addr: SocketAddr) -> anyhow::Result<Control> {
        let tcp = TcpStream::connect(addr)
            .await
            .with_context(|| format!("connect to the control port {addr}"))?;
        tcp.set_nodelay(true)?;
        let (r, w) = tcp.into_split();
        Ok(Control {
            lines: BufReader::new(r).lines(),
            w,
        })
    }

    async fn stats(&mut self) -> anyhow::Result<Stats> {
        self.w.write_all(b"STATS\n").await?;
        let line = tokio::time::timeout(Duration::from_secs(10), self.lines.next_line())
            .await
            .context("the server's STATS reply timed out")??
            .context("the control connection closed")?;
        parse_stats(&line)
    }
}

/// Parses `STATS k=v k=v …`.
fn parse_stats(line: &str) -> anyhow::Result<Stats> {
    let rest = line
        .strip_prefix("STATS")
        .with_context(|| format!("unexpected control reply {line:?}"))?;
    let mut map = HashMap::new();
    for kv in rest.split_whitespace() {
        let (k, v) = kv
            .split_once('=')
            .with_context(|| format!("bad STATS field {kv:?}"))?;
        let v: f64 = v
            .parse()
            .with_context(|| format!("bad STATS value {kv:?}"))?;
        map.insert(k.to_string(), v);
    }
    Ok(Stats(map))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_lines_parse() {
        let s = parse_stats("STATS user_us=10 sys_us=5 rss_b=4096 heap_b=-12").ok();
        let s = s.as_ref();
        assert_eq!(s.map(Stats::cpu_secs), Some(15e-6));
        assert_eq!(s.and_then(|s| s.get("heap_b").ok()), Some(-12.0));
        assert!(parse_stats("NOPE").is_err());
    }
}
