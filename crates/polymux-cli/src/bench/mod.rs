//! `polymux bench`: throughput, open rate, burst latency, memory and round-trip time of every
//! protocol, next to raw TCP measured in the same run.
//!
//! The scenarios are `polymux-bench`'s (bulk, multi, open-rate, burst, idle, rpc), run by the
//! same engine (`polymux_testkit::bench`) in this one process. Without `--connect`, each
//! scenario of each target gets a fresh server on 127.0.0.1 in this process; with
//! `--connect ADDR` the scenarios run as a client against any echo server — `polymux echo` or
//! another implementation — and only the chosen `--protocol` is measured. See [`scenarios`].
//!
//! - [`scenarios`] — targets, the engine's runs, the table's metrics; [`memory`] — RSS and the
//!   open-file limit; [`progress`] — the bar or plain lines; [`report`] — the table and the
//!   JSON.

pub(crate) mod memory;
mod progress;
mod report;
mod scenarios;

use std::time::{Duration, Instant};

use anyhow::anyhow;
use polymux_testkit::bench::{Scenario, Sizes};

use crate::protocol::Protocol;
use crate::shutdown::{parse_duration, Shutdown};
use progress::Progress;
use report::{Report, ScenarioResult, TargetReport};
use scenarios::{Metric, Plan};

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
    /// Small sizes: a few seconds in all (`polymux-bench --quick`'s).
    #[arg(long)]
    pub quick: bool,
    /// Bytes of the bulk transfer, and in total over the multi streams (e.g. 64MiB)
    /// [default: 1GiB; --quick: 16MiB].
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub size: Option<u64>,
    /// Streams of the multi scenario [default: 64].
    #[arg(long, value_name = "N")]
    pub streams: Option<usize>,
    /// Seconds of sequential open+echo+close in open-rate [default: 1; --quick: 0.3].
    #[arg(long, value_name = "SECONDS")]
    pub open_secs: Option<f64>,
    /// Streams opened at once in burst [default: 1000; --quick: 200].
    #[arg(long, value_name = "N")]
    pub burst: Option<usize>,
    /// Idle streams held for the memory scenario [default: 10000; --quick: 1000].
    #[arg(long, value_name = "N")]
    pub idle: Option<usize>,
    /// Round trips of rpc [default: 10000; --quick: 1000].
    #[arg(long, value_name = "N")]
    pub rpc: Option<usize>,
    /// Only these scenarios (comma-separated): bulk, multi, open-rate, burst, idle, rpc.
    #[arg(long, value_delimiter = ',', value_name = "LIST", value_parser = parse_scenario)]
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
        let mut sizes = if self.quick {
            Sizes::quick()
        } else {
            Sizes::full()
        };
        sizes.size = self.size.unwrap_or(sizes.size).max(1);
        sizes.streams = self.streams.unwrap_or(sizes.streams).max(1);
        sizes.open_secs = self.open_secs.unwrap_or(sizes.open_secs).clamp(0.001, 60.0);
        sizes.burst = self.burst.unwrap_or(sizes.burst).max(1);
        sizes.idle = self.idle.unwrap_or(sizes.idle).max(1);
        sizes.rpc = self.rpc.unwrap_or(sizes.rpc).max(1);
        sizes
    }
}

/// Parses a loopback scenario name (`polymux-bench`'s vocabulary).
fn parse_scenario(s: &str) -> Result<Scenario, String> {
    let scenario = Scenario::parse(s)?;
    if !Scenario::ALL.contains(&scenario) {
        return Err(format!(
            "{s} runs over an emulated WAN link: use polymux-bench; here: {}",
            Scenario::ALL.map(Scenario::name).join(", ")
        ));
    }
    Ok(scenario)
}

/// Run order: latency and memory first, while the process is quiet and its heap small.
const RUN_ORDER: [Scenario; 6] = [
    Scenario::Rpc,
    Scenario::OpenRate,
    Scenario::Burst,
    Scenario::Idle,
    Scenario::Bulk,
    Scenario::Multi,
];

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

/// Runs the bench and prints the table (or JSON) on stdout.
pub async fn run(
    args: BenchArgs,
    protocol: Option<Protocol>,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    let fd_limit = memory::raise_fd_limit();
    let sizes = args.sizes();
    let scenarios: Vec<Scenario> = RUN_ORDER
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
        let mut report = TargetReport {
            name: plan.name(),
            results: Vec::new(),
            error: None,
        };
        if let Err(e) = plan.check().await {
            for _ in &scenarios {
                progress.finish(&format!("{}: could not start", report.name));
            }
            report.error = Some(format!("{e:#}"));
            targets.push(report);
            continue;
        }
        for &scenario in &scenarios {
            if shutdown.is_requested() {
                interrupted = true;
                targets.push(report);
                break 'plans;
            }
            // Ctrl-C stops the running scenario at once, not after it (up to --timeout).
            let outcome = tokio::select! {
                result = run_scenario(plan, scenario, &sizes, fd_limit, &args, &mut progress) => Some(result),
                _ = shutdown.requested() => None,
            };
            let Some(result) = outcome else {
                interrupted = true;
                targets.push(report);
                break 'plans;
            };
            report.results.push(result);
        }
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
    plan: &Plan,
    scenario: Scenario,
    sizes: &Sizes,
    fd_limit: Option<u64>,
    args: &BenchArgs,
    progress: &mut Progress,
) -> ScenarioResult {
    let name = plan.name();
    // Raw TCP needs a descriptor per connection (two in one process).
    let idle = match (plan, fd_limit) {
        (Plan::Tcp, Some(limit)) => sizes
            .idle
            .min((limit.saturating_sub(512) / 2) as usize)
            .max(1),
        _ => sizes.idle,
    };
    let label = match scenario {
        Scenario::Multi => format!("{name}: multi, {} streams", sizes.streams),
        Scenario::Burst => format!("{name}: burst, {} streams", sizes.burst),
        Scenario::Idle => format!("{name}: idle, {idle} streams"),
        other => format!("{name}: {other}"),
    };
    progress.start(&label);
    let started = Instant::now();
    let work = scenarios::run(plan, scenario, sizes, idle);
    let outcome = tokio::time::timeout(args.timeout, work).await;
    let seconds = started.elapsed().as_secs_f64();
    let (metrics, error) = match outcome {
        Ok(Ok(figures)) => (
            scenarios::metrics(scenario, &figures, sizes, plan.in_process()),
            None,
        ),
        Ok(Err(e)) => (Vec::new(), Some(format!("{e:#}"))),
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
