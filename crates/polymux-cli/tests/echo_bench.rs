//! End to end: `polymux echo` as a peer and `polymux bench` (in-process, and `--connect`
//! against the echo server) with JSON output; every echo and sink count is checked by the bench.

mod common;

use std::time::Duration;

use common::Proc;

const SECS: fn(u64) -> Duration = Duration::from_secs;

/// Small sizes so that a debug build finishes quickly.
const SMALL: [&str; 14] = [
    "--quick",
    "--size",
    "2MiB",
    "--streams",
    "8",
    "--open-secs",
    "0.1",
    "--burst",
    "200",
    "--idle",
    "300",
    "--rpc",
    "100",
    "--json",
];

fn parse(bench: &Proc) -> serde_json::Value {
    serde_json::from_str(&bench.output()).unwrap_or_else(|e| {
        panic!(
            "bench JSON: {e}\nstdout:\n{}\nstderr:\n{}",
            bench.output(),
            bench.logs()
        )
    })
}

fn check_all_ok(report: &serde_json::Value, targets: &[&str]) {
    assert_eq!(report["failures"], 0, "{report:#}");
    let names: Vec<&str> = report["targets"]
        .as_array()
        .expect("targets")
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert_eq!(names, targets);
    for target in report["targets"].as_array().expect("targets") {
        let results = target["results"].as_array().expect("results");
        assert_eq!(results.len(), 6, "six scenarios for {}", target["name"]);
        for r in results {
            assert_eq!(r["ok"], true, "{r:#}");
            for m in r["metrics"].as_array().expect("metrics") {
                assert!(m["value"].as_f64().is_some_and(f64::is_finite), "{m:#}");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_connects_to_polymux_echo_in_every_protocol() {
    for protocol in ["yamux", "smux1", "smux2", "netmux"] {
        let echo = Proc::spawn(
            "echo",
            &["--protocol", protocol, "echo", "--listen", "127.0.0.1:0"],
            &[],
        );
        let addr = echo.addr_after("listening on ").await.to_string();
        let mut args = vec!["--protocol", protocol, "bench", "--connect", &addr];
        args.extend(SMALL);
        let mut bench = Proc::spawn("bench", &args, &[]);
        let code = bench.exit_code(SECS(120)).await;
        assert_eq!(
            code,
            0,
            "{protocol}: stderr:\n{}\necho:\n{}",
            bench.logs(),
            echo.logs()
        );
        let report = parse(&bench);
        assert_eq!(report["mode"], "connect");
        check_all_ok(&report, &[protocol]);
        // Plain progress lines on a non-terminal stderr.
        assert!(bench.logs().contains("bench: [1/6]"), "{}", bench.logs());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_in_process_runs_every_protocol_next_to_tcp() {
    let mut bench = Proc::spawn("bench", &[&["bench"][..], &SMALL[..]].concat(), &[]);
    assert_eq!(
        bench.exit_code(SECS(240)).await,
        0,
        "stderr:\n{}",
        bench.logs()
    );
    let report = parse(&bench);
    assert_eq!(report["mode"], "in-process");
    check_all_ok(&report, &["tcp", "yamux", "smux1", "smux2", "netmux"]);

    // The table form.
    let mut bench = Proc::spawn(
        "bench",
        &[
            "--protocol",
            "smux2",
            "bench",
            "--quick",
            "--size",
            "1MiB",
            "--only",
            "bulk,rpc",
        ],
        &[],
    );
    assert_eq!(
        bench.exit_code(SECS(120)).await,
        0,
        "stderr:\n{}",
        bench.logs()
    );
    let table = bench.output();
    assert!(table.contains("bulk, 1 stream (MiB/s)"), "{table}");
    assert!(table.contains("rpc p99"), "{table}");
    assert!(table.contains("×)"), "ratios to tcp: {table}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_without_a_server_fails_clearly() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    drop(listener);
    let mut bench = Proc::spawn("bench", &["bench", "--connect", &addr, "--quick"], &[]);
    assert_eq!(bench.exit_code(SECS(60)).await, 1);
    assert!(
        bench.output().contains("could not start"),
        "{}",
        bench.output()
    );
}
