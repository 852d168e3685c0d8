//! Bench results: the JSON document (`--json`) and the side-by-side table, each protocol's
//! number followed by its ratio to raw TCP measured in the same run.

use serde::Serialize;

use polymux_testkit::bench::{Scenario, Sizes};

use super::scenarios::Metric;

/// The whole run.
#[derive(Debug, Serialize)]
pub struct Report {
    /// "in-process" or "connect".
    pub mode: &'static str,
    /// The echo server, with --connect.
    pub server: Option<String>,
    /// CPUs available to this process.
    pub cpus: usize,
    /// Whether this is an optimized build (debug builds are much slower).
    pub release_build: bool,
    /// The sizes used.
    pub sizes: Sizes,
    /// Per target ("tcp", "yamux", …).
    pub targets: Vec<TargetReport>,
    /// Scenarios that failed.
    pub failures: usize,
}

/// Results of one target.
#[derive(Debug, Serialize)]
pub struct TargetReport {
    /// "tcp", "yamux", "smux1", "smux2", "netmux".
    pub name: String,
    /// Per scenario, in run order.
    pub results: Vec<ScenarioResult>,
    /// Why the target could not be set up, if it could not.
    pub error: Option<String>,
}

/// Result of one scenario on one target.
#[derive(Debug, Serialize)]
pub struct ScenarioResult {
    /// Which.
    #[serde(serialize_with = "scenario_name")]
    pub scenario: Scenario,
    /// Whether it completed and every byte verified.
    pub ok: bool,
    /// Wall time.
    pub seconds: f64,
    /// Why it failed.
    pub error: Option<String>,
    /// The numbers.
    pub metrics: Vec<Metric>,
}

fn scenario_name<S: serde::Serializer>(scenario: &Scenario, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(scenario.name())
}

impl TargetReport {
    fn metric(&self, scenario: Scenario, key: &str) -> Option<&Metric> {
        self.results
            .iter()
            .find(|r| r.scenario == scenario)
            .and_then(|r| r.metrics.iter().find(|m| m.key == key))
    }

    fn failed(&self, scenario: Scenario) -> bool {
        self.error.is_some() || self.results.iter().any(|r| r.scenario == scenario && !r.ok)
    }
}

fn format_value(v: f64) -> String {
    if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// Renders the table.
pub fn table(report: &Report) -> String {
    // Rows: (scenario, key, label) in display order, from whichever target has them.
    let mut rows: Vec<(Scenario, &'static str, String)> = Vec::new();
    for scenario in Scenario::ALL {
        for target in &report.targets {
            for result in target.results.iter().filter(|r| r.scenario == scenario) {
                for m in result.metrics.iter().filter(|m| m.table) {
                    if !rows.iter().any(|(s, k, _)| *s == scenario && *k == m.key) {
                        rows.push((scenario, m.key, m.label.clone()));
                    }
                }
            }
        }
        let known = rows.iter().any(|(s, _, _)| *s == scenario);
        let attempted = report
            .targets
            .iter()
            .any(|t| t.results.iter().any(|r| r.scenario == scenario));
        if !known && attempted {
            rows.push((scenario, "", format!("{} (failed)", scenario.name())));
        }
    }
    let baseline = report.targets.iter().find(|t| t.name == "tcp");

    let mut header = vec!["".to_owned()];
    header.extend(report.targets.iter().map(|t| t.name.clone()));
    let mut lines = vec![header];
    for (scenario, key, label) in &rows {
        let mut line = vec![label.clone()];
        for target in &report.targets {
            let cell = match target.metric(*scenario, key) {
                Some(m) => {
                    let ratio = baseline
                        .filter(|b| b.name != target.name)
                        .and_then(|b| b.metric(*scenario, key))
                        .filter(|b| b.value.abs() > f64::EPSILON && m.unit != "B");
                    match ratio {
                        Some(b) => format!("{} ({:.2}×)", format_value(m.value), m.value / b.value),
                        None => format_value(m.value),
                    }
                }
                None if target.failed(*scenario) => "FAILED".to_owned(),
                None => "-".to_owned(),
            };
            line.push(cell);
        }
        lines.push(line);
    }
    let columns = lines.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            lines
                .iter()
                .filter_map(|l| l.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    out.push_str(&title(report));
    out.push('\n');
    for line in &lines {
        let mut text = String::new();
        for (c, cell) in line.iter().enumerate() {
            let pad = widths[c].saturating_sub(cell.chars().count());
            if c == 0 {
                text.push_str(cell);
                text.push_str(&" ".repeat(pad));
            } else {
                text.push_str("  ");
                text.push_str(&" ".repeat(pad));
                text.push_str(cell);
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    }
    out.push('\n');
    if baseline.is_some() {
        out.push_str("(n.nn×) = protocol ÷ tcp from this run: above 1 is better for MiB/s and streams/s, below 1 for ms and µs.\n");
        out.push_str("Memory: RSS = resident-set growth per idle stream (includes allocator caching). tcp figures are\n");
        out.push_str("user space only: kernel socket memory is not included. In-process runs count both ends (client,\n");
        out.push_str("server and its tasks).\n");
    }
    if !report.release_build {
        out.push_str("Note: this is a debug build; build with --release for meaningful numbers.\n");
    }
    for target in &report.targets {
        if let Some(e) = &target.error {
            out.push_str(&format!("{}: could not start: {e}\n", target.name));
        }
        for r in target.results.iter().filter(|r| !r.ok) {
            out.push_str(&format!(
                "{} {}: FAILED: {}\n",
                target.name,
                r.scenario.name(),
                r.error.as_deref().unwrap_or("unknown error")
            ));
        }
    }
    out
}

fn title(report: &Report) -> String {
    let s = &report.sizes;
    let place = match &report.server {
        Some(server) => format!("against the echo server at {server}"),
        None => "in one process over 127.0.0.1".to_owned(),
    };
    format!(
        "polymux bench {place}, {} CPU(s): bulk {} MiB, multi {} streams × {:.1} MiB, \
         open-rate {} s, burst {}, idle {}, rpc {}\n",
        report.cpus,
        s.size >> 20,
        s.streams,
        s.size as f64 / s.streams.max(1) as f64 / 1048576.0,
        s.open_secs,
        s.burst,
        s.idle,
        s.rpc
    )
}
