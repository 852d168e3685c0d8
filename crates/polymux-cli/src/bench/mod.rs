//! `polymux bench`: throughput, open rate, memory and latency of every protocol, next to raw
//! TCP measured in the same run.
//!
//! Without `--connect`, each target gets an in-process echo server on 127.0.0.1 (the code of
//! `polymux echo`, or a plain TCP echo server for the baseline, where every "stream" is a TCP
//! connection). With `--connect ADDR` the scenarios run as a client against any echo server
//! — `polymux echo` or another implementation — and only the chosen `--protocol` is measured.
//! Every echoed byte is verified either way. The scenarios are described in [`scenarios`].
//!
//! - [`peer`] — what a scenario talks to; [`pattern`] — the verifiable payload;
//!   [`memory`] — heap/RSS measurement; [`progress`] — the bar or plain lines;
//!   [`report`] — the table and the JSON.

pub(crate) mod memory;
mod pattern;
mod peer;
mod progress;
mod report;
mod scenarios;

use std::time::{Duration, Instant};

use anyhow::anyhow;

use crate::protocol::Protocol;
use crate::shutdown::{parse_duration, Shutdown};
use peer::Target;
use progress::Progress;
use report::{Report, ScenarioResult, TargetReport};
use scenarios::{Metric, Scenario, Sizes};

/// `polymux bench`.
#[derive(clap::Args, Clone, Debug)]
#[command(after_help = concat!(
    "Examples:\n",
    "  polymux bench                          # every protocol and raw TCP, in one process\n",
    "  polymux bench --quick --json > r.json  # a few seconds, machine-readable\n",
    "  polymux echo --listen 127.0.0.1:9000 --protocol smux2 &\n",
    "  polymux bench --connect 127.0.0.1:9000 --protocol smux2\n\n",
    crate::error::exit_codes_help!()
))]
pub struct BenchArgs {
    /// Run the scenarios as a client against the echo server at ADDR (e.g. `polymux echo`,
    /// or another implementation's), with --protocol (default yamux).
    #[arg(long, value_name = "ADDR")]
    pub connect: Option<String>,
    /// Small sizes: a few seconds in all.
    #[arg(long)]
    pub quick: bool,
    /// Bytes of the bulk transfer, and in total over the aggregate streams (e.g. 64MiB)
    /// [default: 256MiB; --quick: 16MiB].
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub size: Option<u64>,
    /// Streams of the aggregate scenario.
    #[arg(long, value_name = "N", default_value_t = 64)]
    pub streams: usize,
    /// Sequential open+echo+close iterations (at most; also capped at 5 seconds)
    /// [default: 2000; --quick: 300].
    #[arg(long, value_name = "N")]
    pub sequential: Option<usize>,
    /// Streams opened at once in the concurrent scenario.
    #[arg(long, value_name = "N", default_value_t = 1000)]
    pub concurrent: usize,
    /// Idle streams held for the memory scenario [default: 10000; --quick: 1000].
    #[arg(long, value_name = "N")]
    pub idle: Option<usize>,
    /// Ping-pong round trips [default: 2000; --quick: 300].
    #[arg(long, value_name = "N")]
    pub pings: Option<usize>,
    /// Only these scenarios (comma-separated).
    #[arg(long, value_enum, value_delimiter = ',', value_name = "LIST")]
    pub only: Vec<Scenario>,
    /// Skip the raw TCP baseline.
    #[arg(long)]
    pub no_tcp: bool,
    /// Print the results as JSON on stdout instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Time limit per scenario.
    #[arg(long, value_name = "DURATION", default_value = "120s", value_parser = parse_duration)]
    pub timeout: Duration,
}

impl BenchArgs {
    fn sizes(&self) -> Sizes {
        let quick = self.quick;
        Sizes {
            bulk_bytes: self
                .size
                .unwrap_or(if quick { 16 << 20 } else { 256 << 20 })
                .max(1),
            aggregate_streams: self.streams.max(1),
            sequential: self.sequential.unwrap_or(if quick { 300 } else { 2000 }),
            sequential_budget: Duration::from_secs(5),
            concurrent: self.concurrent.max(1),
            idle: self.idle.unwrap_or(if quick { 1000 } else { 10_000 }),
            pings: self.pings.unwrap_or(if quick { 300 } else { 2000 }),
        }
    }
}

/// Parses `256MiB`, `16M`, `1G`, `4096`, `64k` (binary units).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let value: u64 = number
        .parse()
        .map_err(|_| format!("{s:?} is not a size; use e.g. 256MiB, 16M, 1G or 4096"))?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        other => return Err(format!("unknown unit {other:?} in {s:?}; use K, M or G")),
    };
    value
        .checked_mul(1 << shift)
        .filter(|v| *v > 0)
        .ok_or_else(|| format!("{s:?} is out of range"))
}

enum Plan {
    Tcp,
    InProcess(Protocol),
    Connect(Protocol, String),
}

impl Plan {
    fn name(&self) -> String {
        match self {
            Plan::Tcp => "tcp".into(),
            Plan::InProcess(p) | Plan::Connect(p, _) => p.name().into(),
        }
    }

    async fn setup(&self) -> anyhow::Result<Target> {
        match self {
            Plan::Tcp => Target::tcp_in_process().await,
            Plan::InProcess(p) => Target::mux_in_process(*p).await,
            Plan::Connect(p, addr) => Target::mux_connect(*p, addr).await,
        }
    }
}

/// Runs the bench and prints the table (or JSON) on stdout.
pub async fn run(
    args: BenchArgs,
    protocol: Option<Protocol>,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    memory::enable();
    let fd_limit = memory::raise_fd_limit();
    let sizes = args.sizes();
    let scenarios: Vec<Scenario> = Scenario::RUN_ORDER
        .into_iter()
        .filter(|s| args.only.is_empty() || args.only.contains(s))
        .collect();
    let plans: Vec<Plan> = match &args.connect {
        Some(addr) => vec![Plan::Connect(
            protocol.unwrap_or(Protocol::Yamux),
            addr.clone(),
        )],
        None => {
            let mut plans = Vec::new();
            if !args.no_tcp {
                plans.push(Plan::Tcp);
            }
            let protocols = protocol.map_or(Protocol::ALL.to_vec(), |p| vec![p]);
            plans.extend(protocols.into_iter().map(Plan::InProcess));
            plans
        }
    };

    let mut progress = Progress::new(plans.len() * scenarios.len());
    let mut targets = Vec::new();
    let mut interrupted = false;
    'plans: for plan in &plans {
        let name = plan.name();
        let target = match plan.setup().await {
            Ok(target) => target,
            Err(e) => {
                for _ in &scenarios {
                    progress.finish(&format!("{name}: could not start"));
                }
                targets.push(TargetReport {
                    name,
                    results: Vec::new(),
                    error: Some(format!("{e:#}")),
                });
                continue;
            }
        };
        let mut report = TargetReport {
            name: name.clone(),
            results: Vec::new(),
            error: None,
        };
        for &scenario in &scenarios {
            if shutdown.is_requested() {
                interrupted = true;
                target.teardown().await;
                targets.push(report);
                break 'plans;
            }
            // Ctrl-C stops the running scenario at once, not after it (up to --timeout).
            let outcome = tokio::select! {
                result = run_scenario(&target, scenario, &sizes, fd_limit, &args, &mut progress) => Some(result),
                _ = shutdown.requested() => None,
            };
            let Some(result) = outcome else {
                interrupted = true;
                target.teardown().await;
                targets.push(report);
                break 'plans;
            };
            report.results.push(result);
        }
        target.teardown().await;
        targets.push(report);
    }
    progress.clear();

    let failures = targets
        .iter()
        .map(|t| t.results.iter().filter(|r| !r.ok).count() + usize::from(t.error.is_some()))
        .sum();
    let report = Report {
        mode: if args.connect.is_some() {
            "connect"
        } else {
            "in-process"
        },
        server: args.connect.clone(),
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        release_build: !cfg!(debug_assertions),
        sizes,
        targets,
        failures,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report::table(&report));
    }
    if interrupted {
        return Err(anyhow!(
            "interrupted by a signal: the results above are partial"
        ));
    }
    if failures > 0 {
        return Err(anyhow!(
            "{failures} scenario(s) failed (see the FAILED lines above); rerun with -v for details"
        ));
    }
    Ok(())
}

async fn run_scenario(
    target: &Target,
    scenario: Scenario,
    sizes: &Sizes,
    fd_limit: Option<u64>,
    args: &BenchArgs,
    progress: &mut Progress,
) -> ScenarioResult {
    let peer = &target.peer;
    let name = &target.name;
    // Raw TCP needs a descriptor per connection (two in one process).
    let fds_per_stream = if target.in_process { 2 } else { 1 };
    let idle = match (peer.session(), fd_limit) {
        (None, Some(limit)) => sizes
            .idle
            .min((limit.saturating_sub(512) / fds_per_stream) as usize)
            .max(1),
        _ => sizes.idle,
    };
    let (label, units, unit) = match scenario {
        Scenario::Bulk => (format!("{name}: bulk, 1 stream"), sizes.bulk_bytes, "bytes"),
        Scenario::Aggregate => (
            format!("{name}: aggregate, {} streams", sizes.aggregate_streams),
            sizes.bulk_bytes,
            "bytes",
        ),
        Scenario::Sequential => (
            format!("{name}: sequential open+echo+close"),
            sizes.sequential as u64,
            "ops",
        ),
        Scenario::Concurrent => (
            format!("{name}: {} concurrent opens", sizes.concurrent),
            sizes.concurrent as u64,
            "streams",
        ),
        Scenario::Idle => (
            format!("{name}: {idle} idle streams"),
            idle as u64,
            "streams",
        ),
        Scenario::Pingpong => (
            format!("{name}: ping-pong"),
            sizes.pings as u64,
            "round trips",
        ),
    };
    let counter = progress.start(&label, units, unit);
    let started = Instant::now();
    let work = async {
        match scenario {
            Scenario::Bulk => scenarios::bulk(peer, sizes.bulk_bytes, counter).await,
            Scenario::Aggregate => {
                scenarios::aggregate(peer, sizes.aggregate_streams, sizes.bulk_bytes, counter).await
            }
            Scenario::Sequential => {
                scenarios::sequential(peer, sizes.sequential, sizes.sequential_budget, counter)
                    .await
            }
            Scenario::Concurrent => scenarios::concurrent(peer, sizes.concurrent, counter).await,
            Scenario::Idle => scenarios::idle(peer, idle, target.in_process, counter).await,
            Scenario::Pingpong => scenarios::pingpong(peer, sizes.pings, counter).await,
        }
    };
    let outcome = tokio::time::timeout(args.timeout, work).await;
    let seconds = started.elapsed().as_secs_f64();
    let (metrics, error) = match outcome {
        Ok(Ok(metrics)) => (metrics, None),
        Ok(Err(e)) => (Vec::new(), Some(e.to_string())),
        Err(_) => (
            Vec::new(),
            Some(format!("timed out after {:?} (--timeout)", args.timeout)),
        ),
    };
    let summary = match &error {
        None => format!("{label}: {}", summarize(&metrics)),
        Some(e) => format!("{label}: FAILED: {e}"),
    };
    progress.finish(&summary);
    if let Some(e) = &error {
        tracing::debug!("{label} failed: {e}");
    }
    ScenarioResult {
        scenario,
        ok: error.is_none(),
        seconds,
        error,
        metrics,
    }
}

fn summarize(metrics: &[Metric]) -> String {
    metrics
        .iter()
        .filter(|m| m.table)
        .map(|m| format!("{:.1} {}", m.value, m.unit))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("256MiB"), Ok(256 << 20));
        assert_eq!(parse_size("16M"), Ok(16 << 20));
        assert_eq!(parse_size("1g"), Ok(1 << 30));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("0").is_err());
        assert!(parse_size("lots").is_err());
        assert!(parse_size("3T").is_err());
    }
}
