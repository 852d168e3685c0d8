//! What the process knows about itself: CPU time (`getrusage(RUSAGE_SELF)`, all threads),
//! resident memory (`VmRSS` in `/proc/self/status`), the open-file limit, and a few facts
//! about the machine for the report (CPU model and vendor from `/proc/cpuinfo`, the commit).

use std::time::Duration;

/// CPU time used by this process so far, user and system, over all its threads.
#[derive(Clone, Copy, Debug, Default)]
pub struct Cpu {
    pub user: Duration,
    pub sys: Duration,
}

impl Cpu {
    /// user + sys.
    pub fn total(self) -> Duration {
        self.user + self.sys
    }
}

/// `getrusage(RUSAGE_SELF)`.
pub fn cpu() -> Cpu {
    // SAFETY: `rusage` is plain old data; getrusage only writes into the struct we pass.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: a valid pointer to a properly sized, writable `rusage`.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    if rc != 0 {
        return Cpu::default();
    }
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec.max(0) as u64) + Duration::from_micros(t.tv_usec.max(0) as u64)
    };
    Cpu {
        user: tv(usage.ru_utime),
        sys: tv(usage.ru_stime),
    }
}

pub use polymux_testkit::bench::rss_bytes;

/// Raises the soft open-file limit to the hard limit (10,000 idle raw-TCP "streams" need
/// 10,000 sockets per process). Best effort.
pub fn raise_nofile() {
    // SAFETY: plain old data, filled in by getrlimit.
    let mut lim: libc::rlimit = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer to a writable `rlimit`.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0 && lim.rlim_cur < lim.rlim_max
    {
        lim.rlim_cur = lim.rlim_max;
        // SAFETY: valid pointer to an initialised `rlimit`.
        unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) };
    }
}

/// The soft open-file limit.
pub fn nofile_limit() -> u64 {
    // SAFETY: plain old data, filled in by getrlimit.
    let mut lim: libc::rlimit = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer to a writable `rlimit`.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0 {
        lim.rlim_cur
    } else {
        0
    }
}

/// The first line of a file, trimmed, or "?".
fn first_line(path: &str) -> String {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| s.lines().next().map(|l| l.trim().to_string()))
        .unwrap_or_else(|| "?".into())
}

/// `/proc/loadavg`'s three load averages.
pub fn loadavg() -> String {
    first_line("/proc/loadavg")
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Output of a short command, first line, or "?" (used for `rustc -V`, `go version`, `date`).
pub fn command_line(program: &str, args: &[&str]) -> String {
    std::process::Command::new(program)
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .map(|l| l.trim().to_string())
        })
        .unwrap_or_else(|| "?".into())
}

/// The first value of `field` in `/proc/cpuinfo` (`model name`, `vendor_id`).
fn cpuinfo_field(field: &str) -> Option<String> {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    cpuinfo.lines().find_map(|l| {
        let (key, value) = l.split_once(':')?;
        (key.trim() == field).then(|| value.trim().to_string())
    })
}

/// The CPU model, e.g. `AMD EPYC 7B13` or `Intel(R) Xeon(R) Processor`.
pub fn cpu_model() -> String {
    cpuinfo_field("model name").unwrap_or_else(|| "unknown CPU".into())
}

/// The machine kind the results file keeps a section for: the CPU vendor.
pub fn machine_kind() -> String {
    match cpuinfo_field("vendor_id").as_deref() {
        Some("AuthenticAMD") => "AMD".into(),
        Some("GenuineIntel") => "Intel".into(),
        Some(other) if !other.is_empty() => other.into(),
        _ => "Other".into(),
    }
}

/// The commit being measured, `+ uncommitted changes` when the tracked files differ from it.
pub fn commit() -> String {
    let head = command_line("git", &["rev-parse", "--short=12", "HEAD"]);
    let dirty = std::process::Command::new("git")
        .args(["status", "--porcelain", "--untracked-files=no"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .is_some_and(|o| !o.stdout.is_empty());
    if dirty {
        format!("{head} + uncommitted changes")
    } else {
        head
    }
}

/// CPU model, logical CPUs, memory and kernel, for the report.
pub fn machine() -> String {
    let model = cpu_model();
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_gib = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|l| l.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or_else(|| "?".into(), |kib| format!("{:.0}", kib / 1024.0 / 1024.0));
    let kernel = first_line("/proc/sys/kernel/osrelease");
    format!("{model}, {cpus} logical CPUs, {mem_gib} GiB RAM, Linux {kernel}")
}
