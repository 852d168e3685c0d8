//! The bench's scenarios, run in this process with the test kit's engine
//! (`polymux_testkit::bench`, the same code and vocabulary as `polymux-bench`: bulk, multi,
//! open-rate, burst, idle, rpc), and their figures turned into table [`Metric`]s.
//!
//! In process, every (target, scenario) gets a fresh server on 127.0.0.1 running the
//! scenario's server mode (sink, echo or hold) — a polymux session configured like
//! `polymux-bench`'s, or raw TCP where every "stream" is a connection — and a fresh client.
//! With `--connect ADDR` the far end is a plain echo server (`polymux echo` or another
//! implementation's), so bulk and multi read their echo back, verifying every byte, instead of
//! a sink's count.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use polymux_testkit::bench::{
    self, Far, Figures, Held, How, Mode, Mux, Opener, Scenario, Sizes, Tcp, CHUNK, IDLE_POLL,
    IDLE_QUIET, IDLE_SETTLE_LIMIT, SINK_BUF,
};
use polymux_testkit::{MuxSession, Peer, Polymux, PolymuxSession, Role, SessionParams};
use serde::Serialize;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::task::JoinHandle;
use tokio_util::task::TaskTracker;

use super::memory;
use crate::protocol::Protocol;

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

/// What a scenario runs against.
#[derive(Clone, Debug)]
pub enum Plan {
    /// Raw TCP against an in-process server.
    Tcp,
    /// A protocol against an in-process server.
    InProcess(Protocol),
    /// A protocol against the echo server at the address.
    Connect(Protocol, String),
}

impl Plan {
    /// "tcp", "yamux", …
    pub fn name(&self) -> String {
        match self {
            Plan::Tcp => "tcp".into(),
            Plan::InProcess(p) | Plan::Connect(p, _) => p.name().into(),
        }
    }

    /// Checks that the far end is there (for `--connect`), so that a missing server is one
    /// clear error rather than a failure per scenario.
    pub async fn check(&self) -> anyhow::Result<()> {
        if let Plan::Connect(p, addr) = self {
            let opener = connect_session(*p, addr).await?;
            close(&opener).await;
        }
        Ok(())
    }

    /// Whether the server runs in this process (memory figures then cover both ends).
    pub fn in_process(&self) -> bool {
        !matches!(self, Plan::Connect(..))
    }
}

/// Streams of `protocol` opened through the test kit's polymux adapter.
type MuxOpener = Mux<PolymuxSession>;

/// A deep backlog: the baseline opens a thousand connections at once.
async fn listen_loopback() -> anyhow::Result<TcpListener> {
    let socket = TcpSocket::new_v4()?;
    socket.bind("127.0.0.1:0".parse()?)?;
    Ok(socket.listen(4096)?)
}

/// An in-process server in `mode` and what it holds.
struct Server {
    addr: SocketAddr,
    held: Arc<Held>,
    /// The accept loop.
    task: JoinHandle<()>,
    /// Its sessions (raw TCP: connections), so that one scenario's server is gone before the
    /// next scenario starts, as with `polymux-bench`'s fresh processes.
    sessions: TaskTracker,
}

/// How long a server's sessions may take to end once the client has closed.
const SERVER_LINGER: Duration = Duration::from_secs(3);

impl Server {
    /// Stops accepting and waits (bounded) until its sessions have ended.
    async fn stop(self) {
        self.task.abort();
        self.sessions.close();
        let _ = tokio::time::timeout(SERVER_LINGER, self.sessions.wait()).await;
    }
}

fn report(e: std::io::Error) {
    tracing::debug!("bench server stream: {e}");
}

/// The sink reads as `polymux-bench`'s default (`--sink-read chunk`).
const HOW: How = How {
    sink_buf: SINK_BUF,
    chunks: true,
};

async fn start_server(protocol: Option<Protocol>, mode: Mode) -> anyhow::Result<Server> {
    let listener = listen_loopback().await?;
    let addr = listener.local_addr()?;
    let held = Arc::new(Held::new());
    let count = held.clone();
    let sessions = TaskTracker::new();
    let tracker = sessions.clone();
    let task = tokio::spawn(async move {
        let mut kept: Vec<TcpStream> = Vec::new();
        while let Ok((tcp, _)) = listener.accept().await {
            tcp.set_nodelay(true).ok();
            match protocol {
                Some(p) => {
                    let held = count.clone();
                    tracker.spawn(async move {
                        let peer = Polymux(p.dialect());
                        match peer
                            .connect(tcp, Role::Server, &SessionParams::default())
                            .await
                        {
                            Ok(session) => {
                                bench::serve_session(session, mode, HOW, &held, report).await;
                            }
                            Err(e) => tracing::debug!("bench server session: {e}"),
                        }
                    });
                }
                // Raw TCP: the connection is the stream.
                None if mode == Mode::Hold => {
                    kept.push(tcp);
                    count
                        .streams
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                None => {
                    tracker.spawn(async move {
                        if let Err(e) = bench::serve_stream(tcp, mode, HOW).await {
                            if !bench::teardown_noise(&e) {
                                report(e);
                            }
                        }
                    });
                }
            }
        }
    });
    Ok(Server {
        addr,
        held,
        task,
        sessions,
    })
}

async fn connect_session(protocol: Protocol, addr: &str) -> anyhow::Result<MuxOpener> {
    let tcp = tokio::time::timeout(Duration::from_secs(10), TcpStream::connect(addr))
        .await
        .map_err(|_| anyhow::anyhow!("connecting to {addr} timed out"))?
        .with_context(|| {
            format!("cannot connect to the echo server at {addr}; is `polymux echo --listen {addr}` (or another echo peer) running?")
        })?;
    tcp.set_nodelay(true).ok();
    let session = Polymux(protocol.dialect())
        .connect(tcp, Role::Client, &SessionParams::default())
        .await
        .context("session setup")?;
    Ok(Mux(session))
}

/// Runs `scenario` against `plan` and returns its figures.
pub async fn run(
    plan: &Plan,
    scenario: Scenario,
    sizes: &Sizes,
    idle: usize,
) -> anyhow::Result<Figures> {
    match plan {
        Plan::Tcp => {
            let server = start_server(None, scenario.server_mode()).await?;
            let opener = Tcp(server.addr);
            client(
                opener,
                scenario,
                sizes,
                idle,
                Far::Bench,
                Some(&server.held),
            )
            .await
        }
        Plan::InProcess(p) => {
            let server = start_server(Some(*p), scenario.server_mode()).await?;
            let opener = connect_session(*p, &server.addr.to_string()).await?;
            let result = client(
                opener.clone(),
                scenario,
                sizes,
                idle,
                Far::Bench,
                Some(&server.held),
            )
            .await;
            close(&opener).await;
            server.stop().await;
            result
        }
        Plan::Connect(p, addr) => {
            let opener = connect_session(*p, addr).await?;
            let result = client(opener.clone(), scenario, sizes, idle, Far::Echo, None).await;
            close(&opener).await;
            result
        }
    }
}

async fn close(opener: &MuxOpener) {
    let _ = tokio::time::timeout(Duration::from_secs(3), opener.0.close()).await;
}

async fn client<O: Opener>(
    opener: O,
    scenario: Scenario,
    s: &Sizes,
    idle: usize,
    far: Far,
    held: Option<&Held>,
) -> anyhow::Result<Figures> {
    match scenario {
        Scenario::Bulk => transfer(opener, s.size, 1, far).await,
        Scenario::Multi => transfer(opener, s.size, s.streams, far).await,
        Scenario::OpenRate => bench::open_rate(opener, s.open_secs).await,
        Scenario::Burst => bench::burst(opener, s.burst).await,
        Scenario::Idle => idle_rss(opener, idle, far, held).await,
        Scenario::Rpc => bench::rpc(opener, s.rpc).await,
        other => anyhow::bail!("{other} runs over an emulated link: use polymux-bench"),
    }
}

async fn transfer<O: Opener>(
    opener: O,
    size: u64,
    streams: usize,
    far: Far,
) -> anyhow::Result<Figures> {
    let secs = bench::transfer(opener, size, streams, CHUNK, far).await?;
    Ok(bench::transfer_figures(size, secs))
}

/// `n` streams opened and held: RSS growth per stream (both ends in process).
async fn idle_rss<O: Opener>(
    opener: O,
    n: usize,
    far: Far,
    held: Option<&Held>,
) -> anyhow::Result<Figures> {
    let mut streams = Vec::with_capacity(n);
    tokio::time::sleep(IDLE_QUIET).await;
    memory::trim();
    let rss0 = bench::rss_bytes().ok();
    bench::open_idle(&opener, n, far, &mut streams, async |opened| {
        let Some(held) = held else { return Ok(()) };
        let waited = std::time::Instant::now();
        while held.streams.load(std::sync::atomic::Ordering::Relaxed) < opened {
            anyhow::ensure!(
                waited.elapsed() < IDLE_SETTLE_LIMIT,
                "the server holds fewer than the {opened} streams opened after {IDLE_SETTLE_LIMIT:?}"
            );
            tokio::time::sleep(IDLE_POLL).await;
        }
        Ok(())
    })
    .await?;
    tokio::time::sleep(IDLE_QUIET).await;
    let rss1 = bench::rss_bytes().ok();
    let mut figures = vec![("streams", n.to_string())];
    if let (Some(before), Some(after)) = (rss0, rss1) {
        // RSS may shrink (pages returned meanwhile): signed, never an underflow.
        let grown = after as f64 - before as f64;
        figures.push(("rss_b", format!("{:.0}", grown / n as f64)));
    }
    drop(streams);
    Ok(figures)
}

/// The table's metrics from a scenario's figures.
pub fn metrics(
    scenario: Scenario,
    figures: &Figures,
    sizes: &Sizes,
    in_process: bool,
) -> Vec<Metric> {
    let get = |key: &str| {
        figures
            .iter()
            .find(|(k, _)| *k == key)
            .and_then(|(_, v)| v.parse::<f64>().ok())
    };
    let metric = |key: &'static str, label: String, figure: &str, unit, higher_is_better| {
        get(figure).map(|value| Metric {
            key,
            label,
            value,
            unit,
            higher_is_better,
            table: true,
        })
    };
    let sides = if in_process {
        "both ends"
    } else {
        "client side"
    };
    let found = match scenario {
        Scenario::Bulk => vec![metric(
            "mib_per_s",
            "bulk, 1 stream (MiB/s)".into(),
            "mibps",
            "MiB/s",
            true,
        )],
        Scenario::Multi => vec![metric(
            "mib_per_s",
            format!("multi, {} streams (MiB/s)", sizes.streams),
            "mibps",
            "MiB/s",
            true,
        )],
        Scenario::OpenRate => vec![metric(
            "per_sec",
            "open-rate: open+echo+close (streams/s)".into(),
            "per_sec",
            "streams/s",
            true,
        )],
        Scenario::Burst => vec![metric(
            "ms",
            format!("burst: {} streams at once (ms)", sizes.burst),
            "ms",
            "ms",
            false,
        )],
        Scenario::Idle => vec![metric(
            "rss_bytes_per_stream",
            format!("idle RSS/stream, {sides} (B)"),
            "rss_b",
            "B",
            false,
        )],
        Scenario::Rpc => vec![
            metric("p50_us", "rpc p50 (µs)".into(), "p50_us", "µs", false),
            metric("p99_us", "rpc p99 (µs)".into(), "p99_us", "µs", false),
        ],
        _ => Vec::new(),
    };
    let mut metrics: Vec<Metric> = found.into_iter().flatten().collect();
    if scenario == Scenario::Idle {
        if let Some(value) = get("streams") {
            metrics.push(Metric {
                key: "streams",
                label: "idle: streams held".into(),
                value,
                unit: "streams",
                higher_is_better: false,
                table: false,
            });
        }
    }
    metrics
}
