//! `polymux-bench run`: the orchestrator.
//!
//! For every repetition, scenario and implementation (in that nesting, so background load
//! drifts over all implementations alike) it starts a fresh server child (`serve`, or the Go
//! peer's), reads its `LISTENING` line, runs a fresh client child (`client`) against it, and
//! parses the client's `RESULT` line. Each child is bounded by `--timeout` and killed (by its
//! own pid, through its handle) when it overruns; a server exits by itself when its stdin closes.
//! The orchestrator itself does no measuring work, so it perturbs neither side, except in the
//! WAN scenarios: there it also runs the link relay ([`crate::link`]) between the two children,
//! and adds the link's figures (t90) to the client's.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::args::RunArgs;
use crate::client::WAN_RPC_LEAD;
use crate::impls::{Impl, Scenario, ScenarioLink};
use crate::link::Relay;
use crate::report::{Report, RunInfo};
use crate::sys;
use polymux_testkit::go_peer::go_peer_binary;

/// How long a server may take to print its addresses.
const LISTEN_LIMIT: Duration = Duration::from_secs(30);
/// How long a server may take to exit after its stdin closes.
const EXIT_LIMIT: Duration = Duration::from_secs(5);
/// A WAN measurement stops after this long: a bulk slower than 64 MiB in 15 s (0.36× the
/// link) is reported with the link's mean rate until then, which keeps the WAN section of a
/// run with every implementation to a few minutes.
pub const WAN_LIMIT: Duration = Duration::from_secs(15);
/// Bytes of a child's stderr kept for error messages.
const STDERR_TAIL: usize = 2048;

/// The figures of one measurement (a client's `RESULT` line).
pub type Figures = HashMap<String, f64>;

pub fn main(args: RunArgs) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(run(args))
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("locate the polymux-bench binary")?;
    if cfg!(debug_assertions) {
        eprintln!(
            "polymux-bench: WARNING: this is a debug build; figures are meaningless \
             (use `cargo run --release -p polymux-bench`)"
        );
    }
    let wants_go = args.impls.iter().any(|i| i.is_go());
    let go_bin: Result<PathBuf, String> = if !wants_go {
        Err("not selected (--impls)".into())
    } else if !args.go {
        Err("skipped (--no-go)".into())
    } else {
        eprintln!("polymux-bench: building the Go peer program …");
        go_peer_binary()
    };
    if let Err(why) = &go_bin {
        if wants_go {
            eprintln!("polymux-bench: Go peers skipped: {why}");
        }
    }

    let mut info = RunInfo {
        command: format!(
            "cargo run --release -p polymux-bench --{}{}",
            if args.command.is_empty() { "" } else { " " },
            args.command
        ),
        kind: sys::machine_kind(),
        cpu: sys::cpu_model(),
        machine: sys::machine(),
        commit: sys::commit(),
        rustc: sys::command_line("rustc", &["-V"]),
        go: match &go_bin {
            Ok(_) => sys::command_line("go", &["version"]),
            Err(why) => format!("not used: {why}"),
        },
        date: sys::command_line("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
        load_start: sys::loadavg(),
        load_end: String::new(),
        sizes: args.sizes.clone(),
        reps: args.reps,
        threads: args.threads,
        elapsed: Duration::ZERO,
    };
    let mut report = Report::new(args.impls.clone(), args.scenarios.clone());
    if let Err(why) = &go_bin {
        for imp in args.impls.iter().filter(|i| i.is_go()) {
            report.unavailable(*imp, format!("Go peer not run: {why}"));
        }
    }

    let start = Instant::now();
    let total = args.reps * args.scenarios.len() * args.impls.len();
    let mut done = 0;
    for rep in 0..args.reps {
        for &scenario in &args.scenarios {
            for &imp in &args.impls {
                done += 1;
                // The Go peer program plays the bench children as its `bench` subcommand.
                let (bin, lead): (&Path, &[&str]) = match (imp.is_go(), &go_bin) {
                    (false, _) => (&exe, &[]),
                    (true, Ok(go)) => (go, &["bench"]),
                    (true, Err(_)) => continue,
                };
                let n = scenario_count(&args, imp, scenario);
                let result = measure(bin, lead, imp, scenario, &args, n).await;
                match &result {
                    Ok(f) => eprintln!(
                        "[{done}/{total}] rep {} {scenario:<9} {imp:<16} {}",
                        rep + 1,
                        summary(scenario, f)
                    ),
                    Err(e) => eprintln!(
                        "[{done}/{total}] rep {} {scenario:<9} {imp:<16} FAILED: {e:#}",
                        rep + 1
                    ),
                }
                report.record(imp, scenario, result.map_err(|e| format!("{e:#}")));
            }
        }
    }
    info.load_end = sys::loadavg();
    info.elapsed = start.elapsed();

    // The loopback and the WAN table go to sections of their own.
    for wan in [false, true] {
        if !report.has_table(wan) {
            continue;
        }
        let kind = Report::section_kind(&info, wan);
        let section = report.render(&info, wan);
        println!("{section}");
        let existing = std::fs::read_to_string(&args.out).ok();
        let markdown = crate::report::merge(existing.as_deref(), &kind, &section);
        write(&args.out, &markdown)?;
        eprintln!(
            "polymux-bench: wrote the {kind} section of {} ({:.0} s)",
            args.out.display(),
            info.elapsed.as_secs_f64()
        );
    }
    write(&args.raw, &report.raw_tsv())?;
    eprintln!("polymux-bench: wrote {}", args.raw.display());
    Ok(())
}

/// Writes `text` to `path`, creating its directory.
fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        if !dir.as_os_str().is_empty() {
            std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
        }
    }
    std::fs::write(path, text).with_context(|| format!("write {}", path.display()))
}

/// The idle scenario's stream count, lowered to what the implementation can hold.
fn scenario_count(args: &RunArgs, imp: Impl, scenario: Scenario) -> usize {
    match (scenario, imp.stream_cap()) {
        (Scenario::Idle, Some((cap, _))) => args.sizes.idle.min(cap),
        (Scenario::Idle, None) => args.sizes.idle,
        _ => 0,
    }
}

fn summary(scenario: Scenario, f: &Figures) -> String {
    let g = |k: &str| f.get(k).copied().unwrap_or(f64::NAN);
    match scenario {
        Scenario::Bulk | Scenario::Multi => format!(
            "{:.0} MiB/s, CPU s/GiB client {:.2} server {:.2}",
            g("mibps"),
            g("client_cpu_per_gib"),
            g("server_cpu_per_gib")
        ),
        Scenario::OpenRate => format!("{:.0} streams/s", g("per_sec")),
        Scenario::Burst => format!("{:.1} ms", g("ms")),
        Scenario::Idle => format!(
            "{} streams: RSS B/stream client {:.0} server {:.0}, heap client {:.0} server {:.0}",
            g("streams"),
            g("client_rss_b"),
            g("server_rss_b"),
            g("client_heap_b"),
            g("server_heap_b")
        ),
        Scenario::Rpc => format!("p50 {:.1} µs, p99 {:.1} µs", g("p50_us"), g("p99_us")),
        Scenario::WanBulk50 | Scenario::WanBulk200 => {
            format!("{:.2} MB/s, t90 {:.0} ms", g("mbps"), g("t90_ms"))
        }
        Scenario::WanRpc => format!(
            "rpc p50 {:.1} ms, p99 {:.1} ms ({} samples; idle {:.1} ms), link {:.2} MB/s",
            g("p50_ms"),
            g("p99_ms"),
            g("samples"),
            g("idle_ms"),
            g("mbps")
        ),
    }
}

/// One measurement: a fresh server, a fresh client, the client's figures.
async fn measure(
    bin: &Path,
    lead: &[&str],
    imp: Impl,
    scenario: Scenario,
    args: &RunArgs,
    idle_streams: usize,
) -> anyhow::Result<Figures> {
    let threads = args.threads.to_string();
    let mut server = Command::new(bin)
        .args(lead)
        .args(["serve", "--impl", imp.name(), "--mode"])
        .arg(scenario.server_mode().name())
        .args(["--listen", "127.0.0.1:0", "--threads", &threads])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("start the {imp} server"))?;
    let server_err = tail(server.stderr.take());
    let result = async {
        let (mut data, control) = listening(&mut server).await?;
        let mut sizes = args.sizes.clone();
        if scenario == Scenario::Idle {
            sizes.idle = idle_streams;
        }
        // WAN: the client connects to the relay, which dials the server.
        let relay = match scenario.link() {
            Some(shape) => {
                let upstream = data.parse().context("the server's data address")?;
                let relay = Relay::start(shape, upstream)
                    .await
                    .context("start the link relay")?;
                data = relay.addr().to_string();
                Some(relay)
            }
            None => None,
        };
        let client_scenario = scenario.client_scenario();
        if client_scenario != scenario {
            // A WAN bulk is a plain bulk of the WAN size through the relay.
            sizes.size = sizes.wan_size;
        }
        let mut client = Command::new(bin)
            .args(lead)
            .args([
                "client",
                "--impl",
                imp.name(),
                "--scenario",
                client_scenario.name(),
            ])
            .args([
                "--connect",
                &data,
                "--control",
                &control,
                "--threads",
                &threads,
            ])
            .args(sizes.to_args())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("start the {imp} client"))?;
        let client_err = tail(client.stderr.take());
        let mut out = String::new();
        let stdout = client.stdout.take();
        let limit = if relay.is_some() {
            WAN_LIMIT.min(args.timeout)
        } else {
            args.timeout
        };
        let waited = tokio::time::timeout(limit, async {
            if let Some(mut s) = stdout {
                let _ = s.read_to_string(&mut out).await;
            }
            client.wait().await
        })
        .await;
        let status = match waited {
            Ok(status) => status?,
            Err(_) if relay.is_some() && client_scenario == Scenario::Bulk => {
                // A WAN bulk too slow to finish in time: the link's own figures.
                let _ = client.kill().await;
                let mut figures = Figures::new();
                figures.insert("capped".into(), limit.as_secs_f64());
                if let Some(relay) = &relay {
                    add_link_figures(&mut figures, relay, scenario, sizes.size);
                }
                return Ok(figures);
            }
            Err(_) => {
                let _ = client.kill().await;
                bail!(
                    "the client did not finish within {limit:?}; stderr: {}",
                    client_err.await.unwrap_or_default()
                );
            }
        };
        let Some(line) = out.lines().find_map(|l| l.strip_prefix("RESULT ")) else {
            bail!(
                "the client failed ({status}): {}",
                client_err.await.unwrap_or_default().trim()
            );
        };
        let mut figures = parse_result(line)?;
        if let Some(relay) = relay {
            add_link_figures(&mut figures, &relay, scenario, sizes.size);
        }
        Ok(figures)
    }
    .await;
    // Closing stdin tells the server to exit.
    drop(server.stdin.take());
    if tokio::time::timeout(EXIT_LIMIT, server.wait())
        .await
        .is_err()
    {
        let _ = server.kill().await;
    }
    let server_err = tokio::time::timeout(Duration::from_secs(1), server_err)
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default();
    result.map_err(|e| {
        let err = server_err.trim();
        if err.is_empty() {
            e
        } else {
            e.context(format!("server stderr: {err}"))
        }
    })
}

/// A WAN measurement's link figures: `t90_ms` (NaN if the upload never reached 90 % of the
/// link rate in any window) and `mbps` (decimal MB/s, as the link is quoted): for a WAN bulk,
/// the size over the client's time, or, when it was stopped at [`WAN_LIMIT`], the link's mean
/// rate until then; for wan-rpc, the link's mean rate while the round trips ran (from
/// [`WAN_RPC_LEAD`] after the first byte).
fn add_link_figures(figures: &mut Figures, relay: &Relay, scenario: Scenario, size: u64) {
    let up = relay.upstream();
    let t90 = up.t90().map_or(f64::NAN, |d| d.as_secs_f64() * 1e3);
    figures.insert("t90_ms".into(), t90);
    figures.insert("link_up_bytes".into(), up.bytes as f64);
    figures.insert("link_down_bytes".into(), relay.downstream().bytes as f64);
    let mbps = if scenario.client_scenario() == Scenario::Bulk {
        match figures.get("secs").copied() {
            Some(secs) => Some(size as f64 / secs),
            None => Some(up.bytes as f64 / up.busy.as_secs_f64().max(1e-3)),
        }
    } else {
        up.rate_after(WAN_RPC_LEAD)
    };
    if let Some(bps) = mbps {
        figures.insert("mbps".into(), bps / 1e6);
    }
}

/// Reads the server's `LISTENING <data> <control>` line.
async fn listening(server: &mut Child) -> anyhow::Result<(String, String)> {
    let stdout = server.stdout.take().context("server stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let line = tokio::time::timeout(LISTEN_LIMIT, lines.next_line())
        .await
        .context("the server did not print LISTENING in time")??
        .context("the server exited before listening")?;
    let mut parts = line.split_whitespace();
    match (parts.next(), parts.next(), parts.next()) {
        (Some("LISTENING"), Some(data), Some(control)) => {
            // Keep draining stdout so the server never blocks on it.
            tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
            Ok((data.to_string(), control.to_string()))
        }
        _ => bail!("unexpected server line {line:?}"),
    }
}

/// Parses `k=v k=v …`.
fn parse_result(line: &str) -> anyhow::Result<Figures> {
    let mut figures = HashMap::new();
    for kv in line.split_whitespace() {
        let (k, v) = kv
            .split_once('=')
            .with_context(|| format!("bad field {kv:?}"))?;
        let v: f64 = v.parse().with_context(|| format!("bad value {kv:?}"))?;
        figures.insert(k.to_string(), v);
    }
    Ok(figures)
}

/// Keeps the last [`STDERR_TAIL`] bytes of a child's stderr; the handle resolves at EOF.
fn tail<R: AsyncRead + Unpin + Send + 'static>(
    stream: Option<R>,
) -> tokio::task::JoinHandle<String> {
    tokio::spawn(async move {
        let Some(mut s) = stream else {
            return String::new();
        };
        let mut all = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = s.read(&mut buf).await {
            if n == 0 {
                break;
            }
            all.extend_from_slice(&buf[..n]);
            if all.len() > 4 * STDERR_TAIL {
                all.drain(..all.len() - STDERR_TAIL);
            }
        }
        let start = all.len().saturating_sub(STDERR_TAIL);
        String::from_utf8_lossy(&all[start..]).into_owned()
    })
}
