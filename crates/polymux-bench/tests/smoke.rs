//! A smoke run of the whole suite with tiny sizes: the orchestrator starts real server and
//! client processes for raw TCP, polymux, a Rust peer and the Go peers, runs every scenario
//! once, and writes a table in which every cell was measured. Figures are not checked (a
//! debug build on a shared machine says nothing); that everything runs end to end is.
//!
//! Needs Go and the Debian Go packages (the Go peers are part of the suite); without them the
//! test fails and says what to install.

mod common;

use std::path::PathBuf;
const INSTALL: &str =
    "apt-get install golang-go golang-github-hashicorp-yamux-dev golang-github-xtaci-smux-dev";

#[test]
fn tiny_run_measures_every_cell() {
    let dir = std::env::temp_dir().join(format!("polymux-bench-smoke-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let out: PathBuf = dir.join("results.md");
    let log = common::run_bench(
        &[
            "--impls",
            "raw-tcp,raw-tcp-large,polymux-yamux,polymux-smux1,tokio-yamux-0.3,go-yamux,go-smux2",
            "--size",
            "2MiB",
            "--streams",
            "8",
            "--open-secs",
            "0.2",
            "--burst",
            "50",
            "--idle",
            "200",
            "--rpc",
            "200",
            "--reps",
            "1",
            "--timeout",
            "60",
        ],
        &out,
    );
    if log.contains("Go peers skipped") {
        panic!("the Go peers could not be built; install Go and the libraries: {INSTALL}\n{log}");
    }
    let table = std::fs::read_to_string(&out).expect("the results file");
    let _ = std::fs::remove_dir_all(&dir);
    let rows: Vec<&str> = table.lines().filter(|l| l.starts_with("| ")).collect();
    for name in [
        "raw-tcp",
        "raw-tcp-large",
        "polymux-yamux",
        "polymux-smux1",
        "tokio-yamux-0.3",
        "go-yamux",
        "go-smux2",
    ] {
        assert!(
            rows.iter().any(|r| r.starts_with(&format!("| {name} |"))),
            "no row for {name}:\n{table}"
        );
    }
    assert!(
        !table.contains("fail[^") && !table.contains("n/a[^"),
        "some figures were not measured:\n{table}\n{log}"
    );
    assert!(table.contains("## Targets"), "no target check:\n{table}");
}
