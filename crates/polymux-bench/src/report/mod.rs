//! The report: one markdown table of medians, each with its ratio to raw TCP (64 KiB writes),
//! to raw-tcp-large (1 MiB writes and reads: the physical limit) and to the best peer of the
//! same run, footnotes for every "n/a" and caveat, and the targets checked for each
//! polymux dialect.
//!
//! The results file keeps one section per machine kind (CPU vendor: AMD, Intel, ...), between
//! `<!-- polymux-bench section: KIND -->` and `<!-- polymux-bench end: KIND -->` lines; a run
//! replaces only its own kind's section ([`merge`]) and leaves the rest of the file as it was.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use crate::args::Sizes;
use crate::impls::{Impl, Kind, Scenario, ScenarioLink};
use crate::run::Figures;

/// Facts about the run for the report's header.
pub struct RunInfo {
    pub command: String,
    /// The machine kind that names the section: `AMD`, `Intel`, ...
    pub kind: String,
    /// The CPU model (`/proc/cpuinfo`).
    pub cpu: String,
    pub machine: String,
    /// The commit measured (and whether the tree had uncommitted changes).
    pub commit: String,
    pub rustc: String,
    pub go: String,
    pub date: String,
    pub load_start: String,
    pub load_end: String,
    pub sizes: Sizes,
    pub reps: usize,
    pub threads: usize,
    pub elapsed: Duration,
}

/// One column of the table: a figure of a scenario.
struct Column {
    scenario: Scenario,
    key: &'static str,
    title: &'static str,
    higher_is_better: bool,
}

const COLUMNS: [Column; 22] = [
    col(Scenario::Bulk, "mibps", "bulk MiB/s", true),
    col(Scenario::Multi, "mibps", "multi MiB/s", true),
    col(Scenario::OpenRate, "per_sec", "open-rate streams/s", true),
    col(Scenario::Burst, "ms", "burst ms", false),
    col(Scenario::Rpc, "p50_us", "rpc p50 µs", false),
    col(Scenario::Rpc, "p99_us", "rpc p99 µs", false),
    col(
        Scenario::Idle,
        "client_rss_b",
        "idle RSS B/stream client",
        false,
    ),
    col(
        Scenario::Idle,
        "server_rss_b",
        "idle RSS B/stream server",
        false,
    ),
    col(
        Scenario::Idle,
        "client_heap_b",
        "idle heap B/stream client",
        false,
    ),
    col(
        Scenario::Idle,
        "server_heap_b",
        "idle heap B/stream server",
        false,
    ),
    col(
        Scenario::Bulk,
        "client_cpu_per_gib",
        "bulk CPU s/GiB client",
        false,
    ),
    col(
        Scenario::Bulk,
        "server_cpu_per_gib",
        "bulk CPU s/GiB server",
        false,
    ),
    col(
        Scenario::Multi,
        "client_cpu_per_gib",
        "multi CPU s/GiB client",
        false,
    ),
    col(
        Scenario::Multi,
        "server_cpu_per_gib",
        "multi CPU s/GiB server",
        false,
    ),
    // The WAN table.
    col(Scenario::WanBulk50, "mbps", "bulk MB/s @ 50 ms", true),
    col(Scenario::WanBulk50, "t90_ms", "t90 ms @ 50 ms", false),
    col(Scenario::WanBulk200, "mbps", "bulk MB/s @ 200 ms", true),
    col(Scenario::WanBulk200, "t90_ms", "t90 ms @ 200 ms", false),
    col(Scenario::WanRpc, "p50_ms", "rpc p50 ms beside bulk", false),
    col(Scenario::WanRpc, "p99_ms", "rpc p99 ms beside bulk", false),
    col(Scenario::WanRpc, "max_ms", "rpc max ms beside bulk", false),
    col(Scenario::WanRpc, "mbps", "link MB/s beside rpc", true),
];

const fn col(
    scenario: Scenario,
    key: &'static str,
    title: &'static str,
    higher_is_better: bool,
) -> Column {
    Column {
        scenario,
        key,
        title,
        higher_is_better,
    }
}

/// Everything measured in one run.
pub struct Report {
    impls: Vec<Impl>,
    scenarios: Vec<Scenario>,
    /// Successful repetitions per (implementation, scenario).
    results: BTreeMap<(usize, usize), Vec<Figures>>,
    /// Failures per (implementation, scenario).
    failures: BTreeMap<(usize, usize), Vec<String>>,
    /// Implementations that were not run at all, with the reason.
    unavailable: BTreeMap<usize, String>,
}

/// Footnotes, numbered in order of first use. Labels carry the section's name, because
/// markdown footnotes are global to the file and every section has its own.
#[derive(Default)]
struct Notes {
    prefix: String,
    texts: Vec<String>,
}

impl Notes {
    fn new(section: &str) -> Notes {
        let prefix = section
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .collect::<String>()
            .to_ascii_lowercase();
        Notes {
            prefix: if prefix.is_empty() {
                String::new()
            } else {
                format!("{prefix}-")
            },
            texts: Vec::new(),
        }
    }

    fn label(&self, i: usize) -> String {
        format!("[^{}{}]", self.prefix, i + 1)
    }

    fn mark(&mut self, text: &str) -> String {
        let i = match self.texts.iter().position(|t| t == text) {
            Some(i) => i,
            None => {
                self.texts.push(text.to_string());
                self.texts.len() - 1
            }
        };
        self.label(i)
    }
}

/// The line that opens a machine kind's section.
fn begin_marker(kind: &str) -> String {
    format!("<!-- polymux-bench section: {kind} -->")
}

/// The line that closes it.
fn end_marker(kind: &str) -> String {
    format!("<!-- polymux-bench end: {kind} -->")
}

/// The document's opening, written when the file has no sections yet.
const PREAMBLE: &str = "# Benchmarks\n\n\
polymux in every dialect against the Rust and Go peers and raw TCP, measured in one run on one \
machine over loopback, server and client in separate processes (`crates/polymux-bench`). The \
machines' cores are shared with other work, so absolute figures are noisy: compare the ratios \
within one run, and see the load averages. One section per machine kind, the latest full run \
on it; `cargo run --release -p polymux-bench -- --out BENCHMARKS.md` replaces only the section \
of the machine it runs on. Hot-path micro-benchmarks: `cargo bench -p polymux-proto --bench \
hot_paths`; allocations per MiB of bulk transfer: `cargo test -p polymux-bench --test alloc -- \
--nocapture`; where the time goes: `crates/polymux-bench/PROFILES.md`.\n";

/// `existing` (the results file as it was, if any) with `kind`'s section replaced by
/// `section` (which includes its markers), or the section appended after the others. A file
/// without any section (absent, or from before sections) is started afresh.
pub fn merge(existing: Option<&str>, kind: &str, section: &str) -> String {
    let begin = begin_marker(kind);
    let end = end_marker(kind);
    let Some(text) = existing.filter(|t| t.contains("<!-- polymux-bench section: ")) else {
        return format!("{PREAMBLE}\n{section}");
    };
    if let Some(start) = text.find(&begin) {
        if let Some(stop) = text[start..].find(&end).map(|i| start + i + end.len()) {
            let rest = text[stop..].strip_prefix('\n').unwrap_or(&text[stop..]);
            return format!("{}{section}{rest}", &text[..start]);
        }
    }
    format!("{}\n\n{section}", text.trim_end())
}

fn median(values: &mut [f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    Some(if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    })
}

/// Three significant digits, no exponent; NaN (a t90 never reached) is "never".
fn fmt_value(v: f64) -> String {
    let a = v.abs();
    if v.is_nan() {
        "never".into()
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

fn fmt_ratio(r: Option<f64>) -> String {
    match r {
        Some(r) if r.is_finite() => format!("{r:.2}"),
        _ => "–".into(),
    }
}

impl Report {
    pub fn new(impls: Vec<Impl>, scenarios: Vec<Scenario>) -> Report {
        Report {
            impls,
            scenarios,
            results: BTreeMap::new(),
            failures: BTreeMap::new(),
            unavailable: BTreeMap::new(),
        }
    }

    fn index(&self, imp: Impl) -> Option<usize> {
        self.impls.iter().position(|i| *i == imp)
    }

    fn scenario_index(&self, s: Scenario) -> Option<usize> {
        self.scenarios.iter().position(|x| *x == s)
    }

    pub fn unavailable(&mut self, imp: Impl, why: String) {
        if let Some(i) = self.index(imp) {
            self.unavailable.insert(i, why);
        }
    }

    pub fn record(&mut self, imp: Impl, scenario: Scenario, result: Result<Figures, String>) {
        let (Some(i), Some(s)) = (self.index(imp), self.scenario_index(scenario)) else {
            return;
        };
        match result {
            Ok(f) => self.results.entry((i, s)).or_default().push(f),
            Err(e) => self.failures.entry((i, s)).or_default().push(e),
        }
    }

    /// The median of a figure over the successful repetitions.
    fn value(&self, imp: usize, column: &Column) -> Option<f64> {
        let s = self.scenario_index(column.scenario)?;
        let mut values: Vec<f64> = self
            .results
            .get(&(imp, s))?
            .iter()
            .filter_map(|f| f.get(column.key).copied())
            .collect();
        median(&mut values)
    }

    /// The median of a baseline row (raw-tcp or raw-tcp-large) for a column.
    fn baseline_of(&self, imp: Impl, column: &Column) -> Option<f64> {
        let i = self.index(imp)?;
        self.value(i, column)
    }

    fn baseline(&self, column: &Column) -> Option<f64> {
        self.baseline_of(Impl::RawTcp, column)
    }

    /// The best peer's median for a column (highest or lowest, by the column's direction).
    fn best_peer(&self, column: &Column) -> Option<(Impl, f64)> {
        self.impls
            .iter()
            .enumerate()
            .filter(|(_, imp)| imp.kind() == Kind::Peer)
            .filter_map(|(i, imp)| self.value(i, column).map(|v| (*imp, v)))
            .filter(|(_, v)| v.is_finite())
            .reduce(|a, b| {
                let better = if column.higher_is_better {
                    b.1 > a.1
                } else {
                    b.1 < a.1
                };
                if better {
                    b
                } else {
                    a
                }
            })
    }

    fn ratio(v: f64, reference: Option<f64>) -> Option<f64> {
        reference.filter(|r| *r != 0.0).map(|r| v / r)
    }

    fn reps_done(&self, imp: usize, scenario: Scenario) -> usize {
        self.scenario_index(scenario)
            .and_then(|s| self.results.get(&(imp, s)))
            .map_or(0, Vec::len)
    }

    /// The results-file section a table goes to: the machine kind, with " WAN" for the WAN
    /// table, so a WAN run leaves the loopback table of the same machine alone.
    pub fn section_kind(info: &RunInfo, wan: bool) -> String {
        if wan {
            format!("{} WAN", info.kind)
        } else {
            info.kind.clone()
        }
    }

    /// Whether this run measured any loopback (`wan` = false) or WAN (true) scenario.
    pub fn has_table(&self, wan: bool) -> bool {
        self.scenarios.iter().any(|s| s.link().is_some() == wan)
    }

    /// This run's section of the results file for the loopback or the WAN table, markers
    /// included (see [`merge`]; the section is named by [`Report::section_kind`]).
    pub fn render(&self, info: &RunInfo, wan: bool) -> String {
        let kind = Self::section_kind(info, wan);
        let mut notes = Notes::new(&kind);
        let columns: Vec<&Column> = COLUMNS
            .iter()
            .filter(|c| self.scenarios.contains(&c.scenario))
            .filter(|c| c.scenario.link().is_some() == wan)
            .collect();
        let mut out = String::new();
        let _ = writeln!(out, "{}", begin_marker(&kind));
        let _ = writeln!(out, "## {kind}: {}\n", info.cpu);
        let _ = writeln!(out, "Command: `{}`\n", info.command);
        let _ = writeln!(
            out,
            "Machine: {}. Commit {}. {}; {}. Run {}, took {:.0} s; load average (1/5/15 min) {} \
             at the start, {} at the end.\n",
            info.machine,
            info.commit,
            info.rustc,
            info.go,
            info.date,
            info.elapsed.as_secs_f64(),
            info.load_start,
            info.load_end
        );
        if wan {
            out.push_str(&self.wan_header(info));
        } else {
            self.loopback_header(&mut out, info);
        }
        self.table(&mut out, &columns, &mut notes);
        if !wan {
            out.push_str(&self.general_notes(&mut notes));
        }
        for (n, text) in notes.texts.iter().enumerate() {
            let _ = writeln!(out, "{}: {}", notes.label(n), text.replace('\n', " "));
        }
        out.push('\n');
        out.push_str(&if wan {
            self.wan_targets()
        } else {
            self.targets()
        });
        let _ = writeln!(out, "{}", end_marker(&kind));
        out
    }

    /// The WAN table's description of the link and the sizes.
    fn wan_header(&self, info: &RunInfo) -> String {
        let s = &info.sizes;
        format!(
            "WAN scenarios through the link relay of `crates/polymux-bench/src/link.rs`, run by \
             the orchestrator between the server and client processes: each direction paced at \
             {rate:.1} MB/s (100 Mbit/s), a fixed one-way delay of half the RTT, and a queue of \
             one bandwidth-delay product in front of the bottleneck with back-pressure (the \
             relay stops reading while it is full; its sockets have 16 KiB receive buffers). \
             wan-bulk50/200: {bulk} MiB on one stream at 50/200 ms RTT; MB/s is decimal, from \
             the first open to the sink's acknowledgement; t90 is the time from the first byte \
             through the link until the end of the first 200 ms window in which at least 90 % \
             of the link rate left the bottleneck (200 ms at best; \"never\" if no window \
             reached it). A bulk slower than {bulk} MiB in {limit} s is stopped then, and its \
             MB/s is the link's mean rate until then (footnoted). wan-rpc (50 ms RTT): a bulk \
             of up to {rpc_bulk} MiB on one stream and 64-byte echoes on a second stream of \
             the same session (raw TCP: a second connection through the same bottleneck), \
             with random gaps of 0–50 ms, from 1 s after the bulk starts for {rpc_secs} s (at \
             most {rpc_n} round trips); \"link MB/s\" is the link's mean rate over the same \
             time (whole 200 ms windows from 1 s after the first byte); the round trips are \
             only \"beside a saturating bulk\" where that column is near the link rate. \
             Median of {reps} \
             repetition(s); tokio runtimes with {threads} worker thread(s) per process. The \
             machine's cores are shared with other work (see the load averages): the ratios \
             within this run are what counts.\n\n\
             Each cell: median (× raw TCP / × raw-tcp-large / × best peer); higher is better \
             for MB/s, lower for the rest.\n\n",
            rate = crate::impls::WAN_RATE as f64 / 1e6,
            bulk = s.wan_size >> 20,
            rpc_bulk = (2 * s.wan_size) >> 20,
            rpc_n = s.wan_rpc,
            limit = crate::run::WAN_LIMIT.as_secs(),
            rpc_secs = crate::client::WAN_RPC_SECS.as_secs(),
            reps = info.reps,
            threads = info.threads,
        )
    }

    fn loopback_header(&self, out: &mut String, info: &RunInfo) {
        let s = &info.sizes;
        let _ = writeln!(
            out,
            "Sizes: bulk {} MiB on one stream; multi {} MiB over {} streams; open-rate {} s; \
             burst {} streams × 1 KiB echo; idle {} streams; rpc {} round trips of 64 B. \
             Median of {} repetition(s), each with a fresh server and client process; tokio \
             runtimes with {} worker thread(s) per process (Go: GOMAXPROCS {}).\n",
            s.size >> 20,
            s.size >> 20,
            s.streams,
            s.open_secs,
            s.burst,
            s.idle,
            s.rpc,
            info.reps,
            if info.threads == 0 {
                "current-thread (1)".to_string()
            } else {
                info.threads.to_string()
            },
            info.threads.max(1),
        );
        let _ = writeln!(
            out,
            "Each cell: median (× raw TCP / × raw-tcp-large / × best peer). Higher is better \
             for MiB/s and streams/s, lower for everything else; raw TCP writes 64 KiB at a time \
             like every other row, raw-tcp-large writes and reads 1 MiB at a time (the physical \
             limit on these cores); \"best peer\" is the best non-polymux multiplexer in the \
             column (Rust and Go).\n"
        );
    }

    /// The table of `columns`, one row per implementation, and the best-peer line.
    fn table(&self, out: &mut String, columns: &[&Column], notes: &mut Notes) {
        // Header.
        out.push_str("| implementation | protocol |");
        for c in columns {
            let _ = write!(out, " {} |", c.title);
        }
        out.push_str("\n|---|---|");
        for _ in columns {
            out.push_str("---:|");
        }
        out.push('\n');

        for (i, imp) in self.impls.iter().enumerate() {
            let _ = write!(out, "| {} | {} |", imp.name(), imp.protocol());
            for c in columns {
                let cell = self.cell(i, *imp, c, notes);
                let _ = write!(out, " {cell} |");
            }
            out.push('\n');
        }
        out.push('\n');
        out.push_str(&self.best_peer_line(columns));
    }

    fn cell(&self, i: usize, imp: Impl, c: &Column, notes: &mut Notes) -> String {
        if let Some(why) = self.unavailable.get(&i) {
            return format!("n/a{}", notes.mark(why));
        }
        let Some(v) = self.value(i, c) else {
            let s = self.scenario_index(c.scenario);
            let why = s
                .and_then(|s| self.failures.get(&(i, s)))
                .and_then(|f| f.first())
                .map(|e| format!("{imp} {}: {e}", c.scenario))
                .unwrap_or_else(|| format!("{imp} {}: not measured", c.scenario));
            return format!("fail{}", notes.mark(&why));
        };
        let mut cell = fmt_value(v);
        let raw = if imp == Impl::RawTcp {
            Some(1.0)
        } else {
            Self::ratio(v, self.baseline(c))
        };
        let large = if imp == Impl::RawTcpLarge {
            Some(1.0)
        } else {
            Self::ratio(v, self.baseline_of(Impl::RawTcpLarge, c))
        };
        let peer = Self::ratio(v, self.best_peer(c).map(|(_, b)| b));
        let _ = write!(
            cell,
            " ({} / {} / {})",
            fmt_ratio(raw),
            fmt_ratio(large),
            fmt_ratio(peer)
        );
        if c.scenario == Scenario::Idle {
            if let Some((cap, why)) = imp.stream_cap() {
                let _ = write!(
                    cell,
                    "{}",
                    notes.mark(&format!(
                        "{imp} idle: measured with at most {cap} streams, because {why}."
                    ))
                );
            }
        }
        let s = self.scenario_index(c.scenario);
        let capped = s
            .and_then(|s| self.results.get(&(i, s)))
            .and_then(|reps| reps.iter().find_map(|f| f.get("capped")));
        if let (Some(limit), "mbps") = (capped, c.key) {
            let _ = write!(
                cell,
                "{}",
                notes.mark(&format!(
                    "{imp} {}: did not finish within {limit} s (in at least one repetition); \
                     MB/s is the link's mean rate until it was stopped.",
                    c.scenario
                ))
            );
        }
        if let Some(fails) = s.and_then(|s| self.failures.get(&(i, s))) {
            let _ = write!(
                cell,
                "{}",
                notes.mark(&format!(
                    "{imp} {}: {} of {} repetitions failed (median of the rest): {}",
                    c.scenario,
                    fails.len(),
                    fails.len() + self.reps_done(i, c.scenario),
                    fails[0]
                ))
            );
        }
        cell
    }

    fn best_peer_line(&self, columns: &[&Column]) -> String {
        let mut line = String::from("Best peer per column: ");
        let parts: Vec<String> = columns
            .iter()
            .map(|c| match self.best_peer(c) {
                Some((imp, v)) => format!("{} {} ({})", c.title, imp, fmt_value(v)),
                None => format!("{} –", c.title),
            })
            .collect();
        line.push_str(&parts.join("; "));
        line.push_str(".\n\n");
        line
    }

    fn general_notes(&self, notes: &mut Notes) -> String {
        let mut out = String::new();
        let has = |s: Scenario| self.scenarios.contains(&s);
        if has(Scenario::Idle) {
            let _ = writeln!(
                out,
                "Idle memory{}: RSS is the VmRSS growth of each process while the streams are \
                 opened, per stream (page-granular and allocator-dependent: it can be 0 when \
                 freed memory is reused); heap is the net growth counted by a counting global \
                 allocator (Rust) or `runtime.MemStats.HeapAlloc` after a GC (Go), plus the \
                 stream handle kept by the application. For raw TCP the socket buffers live in \
                 the kernel and appear in neither.\n",
                notes.mark(
                    "Idle streams are held by the benchmark (no task per stream) on both sides; \
                     the server writes zero bytes to each, which makes yamux 0.14 send its lazy \
                     ACK and is a no-op elsewhere."
                )
            );
        }
        if has(Scenario::Bulk) || has(Scenario::Multi) {
            let _ = writeln!(
                out,
                "CPU: user + sys seconds (`getrusage(RUSAGE_SELF)`, all threads) of each process \
                 over the timed transfer, per GiB moved. Throughput counts payload bytes from \
                 the first open to the sink's acknowledgement of the last byte; the client \
                 writes 64 KiB at a time (raw-tcp-large: 1 MiB, and its sink reads 1 MiB at a \
                 time). polymux sinks take their data with `Stream::read_chunk` (no copy into \
                 a read buffer), and polymux clients write theirs with `Stream::write_chunk` \
                 (no copy into the write buffer); every other sink reads into a buffer, and \
                 every other client writes from one.\n"
            );
        }
        out
    }

    /// Every repetition's figures, tab-separated, for anyone who wants more than medians.
    pub fn raw_tsv(&self) -> String {
        let mut out = String::from("implementation\tscenario\trep\tfigure\tvalue\n");
        for ((i, s), reps) in &self.results {
            for (rep, figures) in reps.iter().enumerate() {
                let mut keys: Vec<_> = figures.keys().collect();
                keys.sort();
                for k in keys {
                    let _ = writeln!(
                        out,
                        "{}\t{}\t{}\t{}\t{}",
                        self.impls[*i],
                        self.scenarios[*s],
                        rep + 1,
                        k,
                        figures[k]
                    );
                }
            }
        }
        for ((i, s), fails) in &self.failures {
            for e in fails {
                let _ = writeln!(
                    out,
                    "{}\t{}\t-\tFAILED\t{}",
                    self.impls[*i],
                    self.scenarios[*s],
                    e.replace(['\t', '\n'], " ")
                );
            }
        }
        out
    }
}

mod targets;
#[cfg(test)]
mod tests;
