//! A smoke run of the WAN scenarios (issue 13): the orchestrator puts its link relay between
//! real server and client processes for raw TCP and polymux, runs wan-bulk50, wan-bulk200 and
//! wan-rpc once with small sizes, and writes the WAN table into its own section, next to (not
//! over) an existing loopback section of the same file. Figures are not checked (a debug
//! build on a shared machine says nothing); that everything runs end to end and every cell
//! was measured is. The relay itself is tested in `src/link.rs`.

mod common;

use std::path::PathBuf;

#[test]
fn tiny_wan_run_measures_every_cell_in_its_own_section() {
    let dir = std::env::temp_dir().join(format!("polymux-bench-wan-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let out: PathBuf = dir.join("results.md");
    // A loopback section the WAN run must leave alone.
    let loopback = "<!-- polymux-bench section: Other -->\nloopback table\n\
                    <!-- polymux-bench end: Other -->\n";
    std::fs::write(&out, format!("# Benchmarks\n\n{loopback}")).expect("seed the results");
    let log = common::run_bench(
        &[
            "--impls",
            "raw-tcp,polymux-yamux",
            "--scenarios",
            "wan",
            // Big enough that wan-rpc's bulk (twice this) outlasts its 1 s lead at the link rate.
            "--wan-size",
            "16MiB",
            "--wan-rpc",
            "20",
            "--reps",
            "1",
            "--timeout",
            "60",
        ],
        &out,
    );
    let table = std::fs::read_to_string(&out).expect("the results file");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        table.contains(loopback),
        "the other section changed:\n{table}"
    );
    assert!(
        table.contains(" WAN -->") && table.contains("### WAN targets"),
        "no WAN section:\n{table}"
    );
    let rows: Vec<&str> = table.lines().filter(|l| l.starts_with("| ")).collect();
    for name in ["raw-tcp", "polymux-yamux"] {
        assert!(
            rows.iter().any(|r| r.starts_with(&format!("| {name} |"))),
            "no row for {name}:\n{table}"
        );
    }
    for column in [
        "bulk MB/s @ 50 ms",
        "t90 ms @ 200 ms",
        "rpc p99 ms beside bulk",
    ] {
        assert!(table.contains(column), "no {column} column:\n{table}");
    }
    assert!(
        !table.contains("fail[^") && !table.contains("n/a[^"),
        "some figures were not measured:\n{table}\n{log}"
    );
}
