//! `polymux bench --connect` against the Go reference peers: the Go peer program's echo-server
//! mode (hashicorp/yamux, xtaci/smux v1 and v2; crates/polymux-testkit/go/README.md), built
//! and spawned with the test kit's helpers. Every scenario must succeed — the bench checks
//! every echo — with sane figures, and the Go side must report no failed stream.
//!
//! Needs Go and the Debian Go packages; without them the tests fail and say what to install.

mod common;

use std::time::Duration;

use common::Proc;
use polymux_testkit::go_peer::{go_peer_binary, GoProcess};
use polymux_testkit::GoProto;

/// The Go echo server exits by itself after this (and is killed when the test ends).
const GO_LIFETIME: Duration = Duration::from_secs(240);
const BENCH_TIMEOUT: Duration = Duration::from_secs(180);

/// What `--quick` sets (crates/polymux-cli/src/bench/mod.rs), checked against the report.
const QUICK_BULK_BYTES: u64 = 16 << 20;
const QUICK_IDLE: f64 = 1000.0;

async fn bench_against_go(proto: GoProto, protocol: &str) {
    let bin = tokio::task::spawn_blocking(go_peer_binary)
        .await
        .expect("build task")
        .unwrap_or_else(|why| panic!("cannot build the Go peer program: {why}"));
    let go = GoProcess::echo_server(&bin, proto, GO_LIFETIME)
        .await
        .unwrap_or_else(|outcome| panic!("{proto} echo-server did not start: {outcome}"));
    let addr = go.listening().expect("LISTENING address").to_string();

    let args = [
        "--protocol",
        protocol,
        "bench",
        "--connect",
        &addr,
        "--quick",
        "--json",
    ];
    let mut bench = Proc::spawn("bench", &args, &[]);
    let code = bench.exit_code(BENCH_TIMEOUT).await;
    let (go_out, go_err) = go.kill().await;
    let context = format!(
        "polymux {}\nbench stderr:\n{}\nbench stdout:\n{}\n{proto} stdout:\n{}\n{proto} stderr:\n{}",
        args.join(" "),
        bench.logs(),
        bench.output(),
        go_out.join("\n"),
        go_err.join("\n"),
    );
    assert_eq!(code, 0, "{context}");
    let report: serde_json::Value = serde_json::from_str(&bench.output())
        .unwrap_or_else(|e| panic!("bench JSON: {e}\n{context}"));
    check_report(&report, protocol, &context);
    // The Go side logs every stream whose echo failed while its session was up.
    let failed: Vec<&String> = go_err
        .iter()
        .filter(|l| l.starts_with("echo-server:"))
        .collect();
    assert!(
        failed.is_empty(),
        "Go side reported failures: {failed:?}\n{context}"
    );
}

/// Every scenario ran, succeeded, and has plausible numbers.
fn check_report(report: &serde_json::Value, protocol: &str, context: &str) {
    assert_eq!(report["mode"], "connect", "{context}");
    assert_eq!(report["failures"], 0, "{context}");
    assert_eq!(report["sizes"]["size"], QUICK_BULK_BYTES, "{context}");
    let targets = report["targets"].as_array().expect("targets");
    assert_eq!(targets.len(), 1, "{context}");
    let target = &targets[0];
    assert_eq!(target["name"], protocol, "{context}");
    assert!(target["error"].is_null(), "{context}");
    let results = target["results"].as_array().expect("results");
    let mut seen: Vec<&str> = results
        .iter()
        .filter_map(|r| r["scenario"].as_str())
        .collect();
    seen.sort_unstable();
    assert_eq!(
        seen,
        ["bulk", "burst", "idle", "multi", "open-rate", "rpc"],
        "{context}"
    );
    for r in results {
        let scenario = r["scenario"].as_str().unwrap_or("?");
        assert_eq!(r["ok"], true, "{scenario}: {r:#}\n{context}");
        let metric = |key: &str| {
            r["metrics"]
                .as_array()
                .expect("metrics")
                .iter()
                .find(|m| m["key"] == key)
                .and_then(|m| m["value"].as_f64())
                .unwrap_or_else(|| panic!("{scenario}: no metric {key}: {r:#}"))
        };
        let positive = |key: &str| {
            let v = metric(key);
            assert!(
                v.is_finite() && v > 0.0,
                "{scenario}: {key} = {v}\n{context}"
            );
            v
        };
        match scenario {
            "bulk" | "multi" => {
                positive("mib_per_s");
            }
            "open-rate" => {
                positive("per_sec");
            }
            "burst" => {
                positive("ms");
            }
            "idle" => assert_eq!(metric("streams"), QUICK_IDLE, "{context}"),
            "rpc" => {
                let (p50, p99) = (positive("p50_us"), positive("p99_us"));
                assert!(p50 <= p99, "p50 {p50} > p99 {p99}\n{context}");
            }
            other => panic!("unexpected scenario {other}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_against_go_hashicorp_yamux() {
    bench_against_go(GoProto::Yamux, "yamux").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_against_go_smux_v1() {
    bench_against_go(GoProto::Smux1, "smux1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_against_go_smux_v2() {
    bench_against_go(GoProto::Smux2, "smux2").await;
}
