//! Command-line parsing (three subcommands, `--flag value` pairs; no parser dependency).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, ensure, Context};

use crate::impls::{Impl, Mode, Scenario};
pub use polymux_testkit::bench::Sizes;

pub const USAGE: &str = "\
polymux-bench: polymux (every dialect) against the Rust and Go peers and raw TCP, over loopback,
server and client in separate processes, in one run. Release builds only:

  cargo run --release -p polymux-bench -- [run] [OPTIONS]

run (the default) measures every implementation × scenario --reps times (fresh server and client
processes each time, repetitions interleaved across implementations), prints one markdown table
of medians with ratios to raw TCP, to raw-tcp-large and to the best peer, and writes it to --out:
into the section of --out for this machine's CPU vendor (AMD, Intel, ...), keeping the others.

  --impls A,B,..       implementations (default: all): raw-tcp, raw-tcp-large, polymux-yamux,
                       polymux-smux1, polymux-smux2, polymux-netmux, yamux-0.14, tokio-yamux-0.3,
                       net-mux-1, async_smux-0.4, smux-0.2, go-yamux, go-smux1, go-smux2
                       (raw-tcp-large: raw TCP with 1 MiB writes and reads, the physical limit)
  --scenarios A,B,..   bulk, multi, open-rate, burst, idle, rpc (default: all of these), and
                       the WAN ones, through an emulated link (a relay in this process:
                       100 Mbit/s, queue of one bandwidth-delay product): wan-bulk50,
                       wan-bulk200 (--wan-size bytes on one stream at 50/200 ms RTT: MB/s and
                       t90, the time to 90 % of the link rate in 200 ms windows) and wan-rpc
                       (64-byte echoes beside a bulk of 2 × --wan-size on one session at 50 ms);
                       `wan` = all three. A WAN measurement stops after 15 s (a slower
                       bulk is reported with the link's rate until then). WAN results go to
                       their own section of --out (`<kind> WAN`).
  --size BYTES         bulk bytes, and multi bytes in total (default 1GiB, the issue's size;
                       --quick 16MiB). Suffixes KiB, MiB, GiB.
  --streams N          multi streams (64)
  --open-secs S        open-rate duration per figure (1; --quick 0.3)
  --burst N            burst streams (1000; --quick 200)
  --idle N             idle streams (10000; --quick 1000)
  --rpc N              rpc round trips (10000; --quick 1000)
  --wan-size BYTES     WAN bulk bytes (64MiB; --quick 16MiB)
  --wan-rpc N          wan-rpc round trips at most (500; they stop when the bulk ends)
  --reps N             repetitions, median reported (5; --quick 1)
  --threads N          tokio worker threads per process, 0 = current-thread runtime (2)
  --timeout S          per-measurement limit in seconds (120)
  --quick              small sizes and one repetition: a smoke run
  --out FILE           where to write the markdown (target/polymux-bench/results.md)
  --raw FILE           every repetition's figures, tab-separated (target/polymux-bench/raw.tsv)
  --no-go              skip the Go peers even if Go is installed

serve / client are the child processes `run` starts (see src/server.rs, src/client.rs):

  serve  --impl NAME --mode sink|echo|hold --listen 127.0.0.1:0 [--threads N]
         [--sink-read copy|chunk]   (polymux sinks: read into a buffer, or take the received
                                     chunks without copying (default); for measuring the saving)
  client --impl NAME --scenario NAME --connect ADDR --control ADDR [sizes] [--threads N]
";

/// Applies a size flag to `sizes`; `Ok(false)` if `flag` is not one.
fn apply(sizes: &mut Sizes, flag: &str, value: &str) -> anyhow::Result<bool> {
    match flag {
        "--size" => sizes.size = parse_size(value)?,
        "--streams" => sizes.streams = parse_count(flag, value)?,
        "--open-secs" => {
            sizes.open_secs = value.parse().with_context(|| format!("{flag} {value}"))?;
            ensure!(
                sizes.open_secs > 0.0 && sizes.open_secs <= 60.0,
                "{flag} must be in (0, 60]"
            );
        }
        "--burst" => sizes.burst = parse_count(flag, value)?,
        "--idle" => sizes.idle = parse_count(flag, value)?,
        "--rpc" => sizes.rpc = parse_count(flag, value)?,
        "--wan-size" => sizes.wan_size = parse_size(value)?,
        "--wan-rpc" => sizes.wan_rpc = parse_count(flag, value)?,
        _ => return Ok(false),
    }
    Ok(true)
}
#[derive(Clone, Debug)]
pub struct RunArgs {
    pub impls: Vec<Impl>,
    pub scenarios: Vec<Scenario>,
    pub sizes: Sizes,
    pub reps: usize,
    pub threads: usize,
    pub timeout: Duration,
    pub out: PathBuf,
    pub raw: PathBuf,
    pub go: bool,
    /// The arguments as given, for the report's reproduce line.
    pub command: String,
}

#[derive(Clone, Debug)]
pub struct ServeArgs {
    pub imp: Impl,
    pub mode: Mode,
    pub listen: SocketAddr,
    pub threads: usize,
    pub sink_read: SinkRead,
}

/// How a polymux sink takes its data (`serve --sink-read`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SinkRead {
    /// `AsyncRead` into the sink's buffer: one more copy.
    Copy,
    /// `Stream::read_chunk`: the received `Bytes`, not copied (the default).
    Chunk,
}

#[derive(Clone, Debug)]
pub struct ClientArgs {
    pub imp: Impl,
    pub scenario: Scenario,
    pub connect: SocketAddr,
    pub control: SocketAddr,
    pub sizes: Sizes,
    pub threads: usize,
}

pub enum Command {
    Run(RunArgs),
    Serve(ServeArgs),
    Client(ClientArgs),
    Help,
}

/// Parses `args` (without the program name).
pub fn parse(args: &[String]) -> anyhow::Result<Command> {
    let (sub, rest) = match args.first().map(String::as_str) {
        Some("run") => ("run", &args[1..]),
        Some("serve") => ("serve", &args[1..]),
        Some("client") => ("client", &args[1..]),
        Some("help" | "-h" | "--help") => return Ok(Command::Help),
        _ => ("run", args),
    };
    let pairs = flag_pairs(rest)?;
    match sub {
        "run" => parse_run(&pairs, rest),
        "serve" => parse_serve(&pairs),
        _ => parse_client(&pairs),
    }
}

/// Splits `--flag value` pairs; the boolean flags get an empty value.
fn flag_pairs(args: &[String]) -> anyhow::Result<Vec<(String, String)>> {
    const BOOLEAN: [&str; 3] = ["--quick", "--no-go", "--help"];
    let mut pairs = Vec::new();
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        ensure!(flag.starts_with("--"), "unexpected argument {flag:?}");
        if BOOLEAN.contains(&flag.as_str()) {
            pairs.push((flag.clone(), String::new()));
        } else if let Some((f, v)) = flag.split_once('=') {
            pairs.push((f.to_string(), v.to_string()));
        } else {
            let value = it.next().with_context(|| format!("{flag} needs a value"))?;
            pairs.push((flag.clone(), value.clone()));
        }
    }
    Ok(pairs)
}

fn parse_run(pairs: &[(String, String)], raw: &[String]) -> anyhow::Result<Command> {
    let quick = pairs.iter().any(|(f, _)| f == "--quick");
    let mut run = RunArgs {
        impls: Impl::ALL.to_vec(),
        scenarios: Scenario::ALL.to_vec(),
        sizes: if quick { Sizes::quick() } else { Sizes::full() },
        reps: if quick { 1 } else { 5 },
        threads: 2,
        timeout: Duration::from_secs(120),
        out: PathBuf::from("target/polymux-bench/results.md"),
        raw: PathBuf::from("target/polymux-bench/raw.tsv"),
        go: true,
        command: raw.join(" "),
    };
    for (flag, value) in pairs {
        if apply(&mut run.sizes, flag, value)? {
            continue;
        }
        match flag.as_str() {
            "--quick" => {}
            "--help" => return Ok(Command::Help),
            "--no-go" => run.go = false,
            "--impls" => {
                run.impls = value
                    .split(',')
                    .map(Impl::parse)
                    .collect::<anyhow::Result<_>>()?
            }
            "--scenarios" => {
                run.scenarios = Vec::new();
                for name in value.split(',') {
                    if name == "wan" {
                        run.scenarios.extend(Scenario::WAN);
                    } else {
                        run.scenarios
                            .push(Scenario::parse(name).map_err(anyhow::Error::msg)?);
                    }
                }
            }
            "--reps" => run.reps = parse_count(flag, value)?,
            "--threads" => run.threads = parse_threads(value)?,
            "--timeout" => {
                let secs: u64 = value.parse().with_context(|| format!("{flag} {value}"))?;
                ensure!(
                    (1..=3600).contains(&secs),
                    "{flag} must be 1..=3600 seconds"
                );
                run.timeout = Duration::from_secs(secs);
            }
            "--out" => run.out = PathBuf::from(value),
            "--raw" => run.raw = PathBuf::from(value),
            _ => bail!("unknown flag {flag} for run (see --help)"),
        }
    }
    ensure!(run.reps <= 100, "--reps must be at most 100");
    Ok(Command::Run(run))
}

fn parse_serve(pairs: &[(String, String)]) -> anyhow::Result<Command> {
    let mut imp = None;
    let mut mode = None;
    let mut listen = None;
    let mut threads = 2;
    let mut sink_read = SinkRead::Chunk;
    for (flag, value) in pairs {
        match flag.as_str() {
            "--impl" => imp = Some(Impl::parse(value)?),
            "--mode" => mode = Some(Mode::parse(value).map_err(anyhow::Error::msg)?),
            "--listen" => listen = Some(parse_loopback(value)?),
            "--threads" => threads = parse_threads(value)?,
            "--sink-read" => {
                sink_read = match value.as_str() {
                    "copy" => SinkRead::Copy,
                    "chunk" => SinkRead::Chunk,
                    _ => bail!("--sink-read is copy or chunk, got {value:?}"),
                }
            }
            _ => bail!("unknown flag {flag} for serve"),
        }
    }
    Ok(Command::Serve(ServeArgs {
        imp: imp.context("serve needs --impl")?,
        mode: mode.context("serve needs --mode")?,
        listen: listen.unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0))),
        threads,
        sink_read,
    }))
}

fn parse_client(pairs: &[(String, String)]) -> anyhow::Result<Command> {
    let mut imp = None;
    let mut scenario = None;
    let mut connect = None;
    let mut control = None;
    let mut sizes = Sizes::full();
    let mut threads = 2;
    for (flag, value) in pairs {
        if apply(&mut sizes, flag, value)? {
            continue;
        }
        match flag.as_str() {
            "--impl" => imp = Some(Impl::parse(value)?),
            "--scenario" => scenario = Some(Scenario::parse(value).map_err(anyhow::Error::msg)?),
            "--connect" => connect = Some(parse_loopback(value)?),
            "--control" => control = Some(parse_loopback(value)?),
            "--threads" => threads = parse_threads(value)?,
            _ => bail!("unknown flag {flag} for client"),
        }
    }
    Ok(Command::Client(ClientArgs {
        imp: imp.context("client needs --impl")?,
        scenario: scenario.context("client needs --scenario")?,
        connect: connect.context("client needs --connect")?,
        control: control.context("client needs --control")?,
        sizes,
        threads,
    }))
}

/// A socket address on 127.0.0.1 (the suite never talks to anything else).
fn parse_loopback(s: &str) -> anyhow::Result<SocketAddr> {
    let addr: SocketAddr = s.parse().with_context(|| format!("address {s:?}"))?;
    ensure!(
        addr.ip() == std::net::Ipv4Addr::LOCALHOST,
        "only 127.0.0.1 is allowed, got {addr}"
    );
    Ok(addr)
}

fn parse_count(flag: &str, value: &str) -> anyhow::Result<usize> {
    let n: usize = value.parse().with_context(|| format!("{flag} {value}"))?;
    ensure!(
        (1..=1_000_000).contains(&n),
        "{flag} must be 1..=1000000, got {n}"
    );
    Ok(n)
}

fn parse_threads(value: &str) -> anyhow::Result<usize> {
    let n: usize = value
        .parse()
        .with_context(|| format!("--threads {value}"))?;
    ensure!(n <= 64, "--threads must be at most 64");
    Ok(n)
}

/// `1GiB`, `256MiB`, `64M`, `4096`, ...
pub fn parse_size(s: &str) -> anyhow::Result<u64> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().with_context(|| format!("size {s:?}"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" | "kb" => 1 << 10,
        "m" | "mib" | "mb" => 1 << 20,
        "g" | "gib" | "gb" => 1 << 30,
        other => bail!("unknown size unit {other:?} in {s:?}"),
    };
    let bytes = n.checked_mul(mult).context("size overflows")?;
    ensure!(
        (1 << 10..=64 << 30).contains(&bytes),
        "size must be between 1 KiB and 64 GiB"
    );
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("1GiB").ok(), Some(1 << 30));
        assert_eq!(parse_size("256MiB").ok(), Some(256 << 20));
        assert_eq!(parse_size("64M").ok(), Some(64 << 20));
        assert_eq!(parse_size("4096").ok(), Some(4096));
        assert!(parse_size("12 parsecs").is_err());
    }

    #[test]
    fn only_loopback() {
        assert!(parse_loopback("127.0.0.1:0").is_ok());
        assert!(parse_loopback("0.0.0.0:80").is_err());
        assert!(parse_loopback("10.0.0.1:80").is_err());
    }

    #[test]
    fn run_defaults_and_flags() {
        let args: Vec<String> = ["--quick", "--impls", "raw-tcp,polymux-yamux", "--reps", "2"]
            .map(String::from)
            .to_vec();
        let Ok(Command::Run(run)) = parse(&args) else {
            panic!("run args should parse")
        };
        assert_eq!(run.impls.len(), 2);
        assert_eq!(run.reps, 2);
        assert_eq!(run.sizes.size, 16 << 20);
    }
}
