//! What the smoke runs share: running the `polymux-bench` binary to completion, bounded in
//! time, with its results file and raw figures in a scratch directory.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The longest a smoke run may take before it is killed and the test fails.
const LIMIT: Duration = Duration::from_secs(180);

/// Runs `polymux-bench` with `args`, writing `out` and `raw.tsv` beside it; fails the test if
/// it does not finish within [`LIMIT`] or exits unsuccessfully. Returns its log (stderr).
pub fn run_bench(args: &[&str], out: &Path) -> String {
    let raw = out.with_file_name("raw.tsv");
    let mut child = Command::new(env!("CARGO_BIN_EXE_polymux-bench"))
        .args(args)
        .arg("--out")
        .arg(out)
        .arg("--raw")
        .arg(raw)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start polymux-bench");
    let stderr = child.stderr.take().expect("stderr");
    let log = std::thread::spawn(move || std::io::read_to_string(stderr).unwrap_or_default());
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if start.elapsed() > LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("polymux-bench did not finish within {LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let log = log.join().unwrap_or_default();
    assert!(status.success(), "polymux-bench failed ({status}):\n{log}");
    log
}
