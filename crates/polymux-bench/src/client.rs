//! `polymux-bench client`: the client child process. Runs one scenario against a `serve`
//! process and prints one `RESULT key=value …` line (see [`Scenario`] for what each measures).
//!
//! The scenarios and their per-stream protocol are the test kit's engine
//! (`polymux_testkit::bench`); this process adds the control connection and the CPU, RSS and
//! heap figures.
//!
//! CPU is `getrusage(RUSAGE_SELF)` deltas on each side (the server's through the control
//! connection's `STATS`), taken around the timed part only; memory is VmRSS and counted-heap
//! deltas around opening the idle streams.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use polymux_testkit::bench::{
    self, Far, Figures, Mux, Opener, Tcp, IDLE_POLL, IDLE_QUIET, IDLE_SETTLE_LIMIT,
};
use polymux_testkit::{Peer, Role, SessionParams};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

use crate::args::ClientArgs;
use crate::impls::{with_peer, Scenario};
use crate::sys;
use polymux_testkit::alloc;

pub use polymux_testkit::bench::{WAN_RPC_LEAD, WAN_RPC_SECS};

/// Upper bound on any single scenario (the parent also enforces its own timeout).
const SCENARIO_LIMIT: Duration = Duration::from_secs(600);

pub fn main(args: ClientArgs) -> anyhow::Result<()> {
    sys::raise_nofile();
    ensure!(
        !args.imp.is_go(),
        "{} runs in the Go peer program",
        args.imp
    );
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
        Scenario::OpenRate => bench::open_rate(opener, s.open_secs).await,
        Scenario::Burst => bench::burst(opener, s.burst).await,
        Scenario::Idle => idle(opener, control, s.idle).await,
        Scenario::Rpc => bench::rpc(opener, s.rpc).await,
        Scenario::WanBulk50 | Scenario::WanBulk200 => {
            transfer(opener, control, s.wan_size, 1, chunk).await
        }
        Scenario::WanRpc => bench::wan_rpc(opener, s, chunk).await,
    }
}

/// bulk (`streams` = 1) and multi ([`bench::transfer`]): MiB/s, and CPU seconds per GiB on
/// each side.
async fn transfer<O: Opener>(
    opener: O,
    mut control: Control,
    size: u64,
    streams: usize,
    chunk: usize,
) -> anyhow::Result<Figures> {
    let server0 = control.stats().await?;
    let cpu0 = sys::cpu();
    let secs = bench::transfer(opener, size, streams, chunk, Far::Bench).await?;
    let cpu = sys::cpu()
        .total()
        .saturating_sub(cpu0.total())
        .as_secs_f64();
    let server1 = control.stats().await?;
    let server_cpu = server1.cpu_secs() - server0.cpu_secs();
    let gib = size as f64 / f64::from(1u32 << 30);
    let mut figures = bench::transfer_figures(size, secs);
    figures.push(("client_cpu_per_gib", format!("{:.4}", cpu / gib)));
    figures.push(("server_cpu_per_gib", format!("{:.4}", server_cpu / gib)));
    Ok(figures)
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
    bench::open_idle(&opener, n, Far::Bench, &mut held, async |opened| {
        let waited = Instant::now();
        loop {
            let s = control.stats().await?;
            if s.get("held")? as usize >= opened {
                return Ok(());
            }
            ensure!(
                waited.elapsed() < IDLE_SETTLE_LIMIT,
                "the server holds {} of the {opened} streams opened after {IDLE_SETTLE_LIMIT:?}",
                s.get("held")?,
            );
            tokio::time::sleep(IDLE_POLL).await;
        }
    })
    .await?;
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
