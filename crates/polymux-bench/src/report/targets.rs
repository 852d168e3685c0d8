//! The targets, checked for each polymux dialect: the rows of the targets tables under
//! the loopback and the WAN table (which column, which bound, against what reference).

use super::*;

impl Report {
    /// The targets for each polymux dialect.
    pub(super) fn targets(&self) -> String {
        let dialects: Vec<(usize, Impl)> = self
            .impls
            .iter()
            .enumerate()
            .filter(|(_, i)| i.kind() == Kind::Polymux)
            .map(|(i, imp)| (i, *imp))
            .collect();
        if dialects.is_empty() {
            return String::new();
        }
        let find = |scenario: Scenario, key: &str| {
            COLUMNS
                .iter()
                .find(|c| c.scenario == scenario && c.key == key)
        };
        let checks: Vec<Check> = vec![
            (
                "bulk ≥ 0.8× raw TCP and ≥ 1.2× every peer",
                vec![(
                    find(Scenario::Bulk, "mibps").expect("column"),
                    Target::Throughput,
                )],
            ),
            (
                "multi ≥ 0.8× raw TCP and ≥ 1.2× every peer",
                vec![(
                    find(Scenario::Multi, "mibps").expect("column"),
                    Target::Throughput,
                )],
            ),
            (
                "open-rate ≥ 1.2× best peer",
                vec![(
                    find(Scenario::OpenRate, "per_sec").expect("column"),
                    Target::PeerAtLeast(1.2),
                )],
            ),
            (
                "burst ≤ 0.8× best peer",
                vec![(
                    find(Scenario::Burst, "ms").expect("column"),
                    Target::PeerAtMost(0.8),
                )],
            ),
            (
                "idle heap ≤ 193 B/stream (client, server)",
                vec![
                    (
                        find(Scenario::Idle, "client_heap_b").expect("column"),
                        Target::AtMost(193.0),
                    ),
                    (
                        find(Scenario::Idle, "server_heap_b").expect("column"),
                        Target::AtMost(193.0),
                    ),
                ],
            ),
            (
                "rpc p50 ≤ 1.05× raw TCP",
                vec![(
                    find(Scenario::Rpc, "p50_us").expect("column"),
                    Target::RawAtMost(1.05),
                )],
            ),
            (
                "rpc p99 ≤ 1.5× raw TCP",
                vec![(
                    find(Scenario::Rpc, "p99_us").expect("column"),
                    Target::RawAtMost(1.5),
                )],
            ),
            (
                "bulk CPU/GiB below every peer (client, server)",
                vec![
                    (
                        find(Scenario::Bulk, "client_cpu_per_gib").expect("column"),
                        Target::PeerBelow,
                    ),
                    (
                        find(Scenario::Bulk, "server_cpu_per_gib").expect("column"),
                        Target::PeerBelow,
                    ),
                ],
            ),
            (
                "multi CPU/GiB below every peer (client, server)",
                vec![
                    (
                        find(Scenario::Multi, "client_cpu_per_gib").expect("column"),
                        Target::PeerBelow,
                    ),
                    (
                        find(Scenario::Multi, "server_cpu_per_gib").expect("column"),
                        Target::PeerBelow,
                    ),
                ],
            ),
        ];
        self.targets_table(
            "### Targets (issue), per polymux dialect",
            &dialects,
            checks,
            "✅ met, ❌ missed, – not measurable. Ratios are × raw TCP for raw-TCP targets and \
             × best peer for peer targets; absolute figures for the memory target.",
        )
    }

    /// The WAN targets (issue 13) for each polymux dialect.
    pub(super) fn wan_targets(&self) -> String {
        let dialects = self.dialects();
        if dialects.is_empty() {
            return String::new();
        }
        let find = |scenario: Scenario, key: &str| {
            COLUMNS
                .iter()
                .find(|c| c.scenario == scenario && c.key == key)
                .expect("column")
        };
        let link_rate = crate::impls::WAN_RATE as f64 / 1e6;
        let checks: Vec<Check> = vec![
            (
                "bulk ≥ 0.95× raw TCP @ 50 ms",
                vec![(find(Scenario::WanBulk50, "mbps"), Target::RawAtLeast(0.95))],
            ),
            (
                "t90 ≤ 2× raw TCP's @ 50 ms",
                vec![(find(Scenario::WanBulk50, "t90_ms"), Target::RawAtMost(2.0))],
            ),
            (
                "bulk ≥ 0.95× raw TCP @ 200 ms",
                vec![(find(Scenario::WanBulk200, "mbps"), Target::RawAtLeast(0.95))],
            ),
            (
                "t90 ≤ 2× raw TCP's @ 200 ms",
                vec![(find(Scenario::WanBulk200, "t90_ms"), Target::RawAtMost(2.0))],
            ),
            (
                "rpc beside bulk: p50 ≤ 1.2× raw TCP's p50",
                vec![(find(Scenario::WanRpc, "p50_ms"), Target::RawAtMost(1.2))],
            ),
            (
                "rpc beside bulk: p99 ≤ 1.5× raw TCP's p50",
                vec![(
                    find(Scenario::WanRpc, "p99_ms"),
                    Target::RawKeyAtMost("p50_ms", 1.5),
                )],
            ),
            (
                "link beside rpc ≥ 0.95× its rate (bulk saturates it)",
                vec![(
                    find(Scenario::WanRpc, "mbps"),
                    Target::AtLeast(0.95 * link_rate, "MB/s"),
                )],
            ),
        ];
        self.targets_table(
            "### WAN targets (issue 13), per polymux dialect",
            &dialects,
            checks,
            "✅ met, ❌ missed, – not measurable. Ratios are × raw TCP (its median in this run); \
             smux v1 has no per-stream flow control, so its bulk is bounded only by the session \
             budget.",
        )
    }

    /// The polymux rows: (row index, implementation).
    fn dialects(&self) -> Vec<(usize, Impl)> {
        self.impls
            .iter()
            .enumerate()
            .filter(|(_, i)| i.kind() == Kind::Polymux)
            .map(|(i, imp)| (i, *imp))
            .collect()
    }

    /// A targets table: one row per check whose scenarios were run, one column per dialect.
    fn targets_table(
        &self,
        title: &str,
        dialects: &[(usize, Impl)],
        checks: Vec<Check>,
        footer: &str,
    ) -> String {
        let mut out = format!("{title}\n\n| target |");
        for (_, imp) in dialects {
            let _ = write!(out, " {imp} |");
        }
        out.push_str("\n|---|");
        for _ in dialects {
            out.push_str("---|");
        }
        out.push('\n');
        for (title, parts) in checks {
            if !parts
                .iter()
                .all(|(c, _)| self.scenarios.contains(&c.scenario))
            {
                continue;
            }
            let _ = write!(out, "| {title} |");
            for (i, _) in dialects {
                let cells: Vec<String> = parts.iter().map(|(c, t)| self.check(*i, c, *t)).collect();
                let _ = write!(out, " {} |", cells.join(", "));
            }
            out.push('\n');
        }
        let _ = writeln!(out, "\n{footer}");
        out
    }

    pub(super) fn check(&self, i: usize, c: &Column, target: Target) -> String {
        let Some(v) = self.value(i, c) else {
            return "–".into();
        };
        if v.is_nan() {
            // A t90 never reached.
            return "never ❌".into();
        }
        let raw = Self::ratio(v, self.baseline(c));
        let peer = Self::ratio(v, self.best_peer(c).map(|(_, b)| b));
        let mark = |ok: bool| if ok { "✅" } else { "❌" };
        match target {
            Target::Throughput => match (raw, peer) {
                (Some(r), Some(p)) => {
                    format!("{r:.2}× TCP, {p:.2}× peer {}", mark(r >= 0.8 && p >= 1.2))
                }
                (Some(r), None) => format!("{r:.2}× TCP {}", mark(r >= 0.8)),
                _ => "–".into(),
            },
            Target::PeerAtLeast(x) => {
                peer.map_or("–".into(), |p| format!("{p:.2}× {}", mark(p >= x)))
            }
            Target::PeerAtMost(x) => {
                peer.map_or("–".into(), |p| format!("{p:.2}× {}", mark(p <= x)))
            }
            Target::PeerBelow => {
                peer.map_or("–".into(), |p| format!("{p:.2}× {}", mark(p < 1.0)))
            }
            Target::RawAtMost(x) => {
                raw.map_or("–".into(), |r| format!("{r:.2}× {}", mark(r <= x)))
            }
            Target::RawAtLeast(x) => {
                raw.map_or("–".into(), |r| format!("{r:.2}× {}", mark(r >= x)))
            }
            Target::RawKeyAtMost(key, x) => {
                let other = Column { key, ..*c };
                Self::ratio(v, self.baseline(&other))
                    .map_or("–".into(), |r| format!("{r:.2}× {}", mark(r <= x)))
            }
            Target::AtMost(x) => format!("{} B {}", fmt_value(v), mark(v <= x)),
            Target::AtLeast(x, unit) => format!("{} {unit} {}", fmt_value(v), mark(v >= x)),
        }
    }
}

/// A target row: its title, and the columns checked with their targets.
type Check = (&'static str, Vec<(&'static Column, Target)>);

#[derive(Clone, Copy)]
pub(super) enum Target {
    Throughput,
    PeerAtLeast(f64),
    PeerAtMost(f64),
    PeerBelow,
    RawAtMost(f64),
    RawAtLeast(f64),
    /// The value over raw TCP's median of another figure of the same scenario.
    RawKeyAtMost(&'static str, f64),
    AtMost(f64),
    /// An absolute floor, with its unit.
    AtLeast(f64, &'static str),
}
