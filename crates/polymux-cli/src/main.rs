//! `polymux`: reverse tunnels, local forwarding, an echo peer and benchmarks over one
//! multiplexed connection, in every dialect of the polymux library (`--protocol yamux|smux1|
//! smux2|netmux`, yamux by default).
//!
//! ```text
//! polymux tunnel server --listen ADDR --expose [NAME=]ADDR...    # the public side
//! polymux tunnel client --server ADDR --target [NAME=]ADDR...    # the private side, dials out
//! polymux forward server --listen ADDR --target [NAME=]ADDR...   # dials the targets
//! polymux forward client --listen [NAME=]ADDR... --server ADDR   # local entry points
//! polymux echo --listen ADDR                                     # a test peer
//! polymux bench [--connect ADDR] [--quick] [--json]              # numbers
//! polymux keygen --out FILE                                      # Noise key pair
//! polymux cert [--name NAME...]                                  # self-signed TLS cert
//! ```
//!
//! # Layout
//!
//! - `main.rs` — the command line (clap), logging, the runtime, exit codes.
//! - [`error`] — exit codes (0 ok, 1 runtime, 2 usage, 3 auth refused, 4 TLS/config, 130
//!   second signal) and the error classification behind them.
//! - [`auth`] — the token preamble before the multiplexer starts; [`tls`] — rustls setup;
//!   [`transport`] — TCP + TLS + preamble on both sides, listening, the loopback policy;
//!   [`noise`] — Noise instead of TLS; [`keygen`] — `keygen` and `cert`.
//! - [`relay`] — the per-stream header/status and the byte relay; [`target`] — the side that
//!   dials targets; [`services`] — `NAME=ADDR` specs; [`udp`] — `udp://` services.
//! - [`server`] / [`reconnect`] — the server's accept loop and the client's reconnect loop
//!   shared by [`tunnel`] and [`forward`]; [`sessions`] — live sessions of a server;
//!   [`limits`] — connection and stream limits; [`guard`] — handshake and idle timeouts,
//!   and `--memory-limit`, for every server.
//! - [`echo`] — the echo server; [`bench`](mod@bench) — the benchmark.
//! - [`shutdown`] — Ctrl-C / SIGTERM handling and draining; [`trim`] — freed heap given back
//!   to the system once a burst of work is over.
//! - [`config_file`] — `--config FILE` (TOML); [`reload`] — reloading it on change and on
//!   SIGHUP; [`metrics`] — `--metrics ADDR` (Prometheus text).

#![deny(unsafe_code)]

mod args;
mod auth;
mod bench;
mod config_file;
mod echo;
mod error;
mod forward;
mod guard;
mod keygen;
mod limits;
mod metrics;
mod noise;
mod protocol;
mod reconnect;
mod relay;
mod reload;
mod server;
mod services;
mod sessions;
mod shutdown;
mod target;
mod tls;
mod transport;
mod trim;
mod tunnel;
mod udp;

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use crate::error::exit_code;
use crate::protocol::Protocol;
use crate::shutdown::Shutdown;

/// Many TCP connections over one: reverse tunnels, local forwarding, an echo peer and
/// benchmarks, speaking yamux, smux v1/v2 or net-mux.
#[derive(Parser, Debug)]
#[command(
    name = "polymux",
    version,
    propagate_version = true,
    after_help = concat!(
        "Example: a reverse tunnel in two terminals\n",
        "  export POLYMUX_TOKEN=$(openssl rand -hex 32)     # same value in both terminals\n",
        "  polymux tunnel server --listen 0.0.0.0:7000 --expose 0.0.0.0:8080\n",
        "  polymux tunnel client --server HOST:7000 --target 127.0.0.1:80\n\n",
        crate::error::exit_codes_help!()
    ),
)]
struct Cli {
    /// Wire protocol [default: yamux; `bench` without --connect: all four].
    #[arg(
        long,
        short = 'p',
        global = true,
        value_enum,
        value_name = "PROTOCOL",
        display_order = 900
    )]
    protocol: Option<Protocol>,
    /// More logging (-v debug, -vv trace).
    #[arg(short, long, action = clap::ArgAction::Count, global = true, display_order = 901)]
    verbose: u8,
    /// Log warnings and errors only.
    #[arg(
        short,
        long,
        global = true,
        conflicts_with = "verbose",
        display_order = 902
    )]
    quiet: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Reverse tunnel: expose services of a private network through a public server.
    #[command(subcommand, after_help = concat!(
        "Example:\n",
        "  polymux tunnel server --listen 0.0.0.0:7000 --expose web=0.0.0.0:8080 --token $T\n",
        "  polymux tunnel client --server HOST:7000 --target web=127.0.0.1:80 --token $T\n\n",
        crate::error::exit_codes_help!()
    ))]
    Tunnel(TunnelSide),
    /// Local forwarding: local connections reach a target through a server.
    #[command(subcommand, after_help = concat!(
        "Example:\n",
        "  polymux forward server --listen 0.0.0.0:7001 --target 10.0.0.5:5432 --token $T\n",
        "  polymux forward client --listen 127.0.0.1:5432 --server HOST:7001 --token $T\n\n",
        crate::error::exit_codes_help!()
    ))]
    Forward(ForwardSide),
    /// Echo server: echoes every inbound stream until EOF, then half-closes.
    Echo(echo::EchoArgs),
    /// Benchmark: in-process over loopback for every protocol next to raw TCP, or against an
    /// echo server with --connect.
    Bench(bench::BenchArgs),
    /// Make a Noise key pair (server: --noise-key; clients: --noise-pin); prints the pin.
    Keygen(keygen::KeygenArgs),
    /// Make a self-signed TLS server certificate and key; prints its SHA-256 pin.
    Cert(keygen::CertArgs),
}

#[derive(Subcommand, Debug)]
enum TunnelSide {
    /// The public side: accepts tunnel clients, exposes their services.
    Server(tunnel::TunnelServerArgs),
    /// The private side: dials the server, connects streams to local targets.
    Client(tunnel::TunnelClientArgs),
}

#[derive(Subcommand, Debug)]
enum ForwardSide {
    /// Accepts forward clients and connects their streams to targets.
    Server(forward::ForwardServerArgs),
    /// Accepts local connections and carries each as a stream to the server.
    Client(forward::ForwardClientArgs),
}

fn main() -> ExitCode {
    let matches = Cli::command().get_matches_from(std::env::args_os());
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    // Flags given explicitly override the --config file; defaults do not.
    config_file::remember_matches(matches);
    init_logging(&cli);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            error::say(format_args!(
                "polymux: error: cannot start the async runtime: {e}"
            ));
            return ExitCode::from(error::EXIT_RUNTIME);
        }
    };
    let result = runtime.block_on(run(cli));
    runtime.shutdown_timeout(Duration::from_secs(1));
    match result {
        Ok(()) => ExitCode::from(error::EXIT_OK),
        Err(e) => {
            error::say(format_args!("polymux: error: {e:#}"));
            ExitCode::from(exit_code(&e))
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let shutdown = Shutdown::install();
    // Every subcommand holds a socket or two per connection it carries: a soft limit of 1024
    // open files would refuse a normal burst of a thousand visitors.
    bench::memory::raise_fd_limit();
    let protocol = cli.protocol.unwrap_or(Protocol::Yamux);
    if matches!(
        cli.command,
        Command::Tunnel(_) | Command::Forward(_) | Command::Echo(_)
    ) {
        trim::spawn();
    }
    match cli.command {
        Command::Tunnel(TunnelSide::Server(args)) => {
            tunnel::run_server(args, protocol, shutdown).await
        }
        Command::Tunnel(TunnelSide::Client(args)) => {
            tunnel::run_client(args, protocol, shutdown).await
        }
        Command::Forward(ForwardSide::Server(args)) => {
            forward::run_server(args, protocol, shutdown).await
        }
        Command::Forward(ForwardSide::Client(args)) => {
            forward::run_client(args, protocol, shutdown).await
        }
        Command::Echo(args) => echo::run(args, protocol, shutdown).await,
        Command::Bench(args) => bench::run(args, cli.protocol, shutdown).await,
        Command::Keygen(args) => keygen::run_keygen(&args),
        Command::Cert(args) => keygen::run_cert(&args),
    }
}

/// Logs go to stderr (and are dropped, never fatal, when it is gone). `RUST_LOG`, when set, wins; otherwise -q / -v / -vv pick the level
/// (the bench logs warnings only by default, to keep its output clean).
fn init_logging(cli: &Cli) {
    let default = match (cli.quiet, cli.verbose, &cli.command) {
        (true, _, _) => "warn",
        (false, 0, Command::Bench(_)) => "warn",
        (false, 0, _) => "info",
        (false, 1, _) => "debug",
        (false, _, _) => "trace",
    };
    let filter = match std::env::var("RUST_LOG") {
        Ok(spec) if !spec.is_empty() => EnvFilter::try_new(&spec).unwrap_or_else(|e| {
            error::say(format_args!(
                "polymux: ignoring RUST_LOG={spec:?} ({e}); using {default}"
            ));
            EnvFilter::new(default)
        }),
        _ => EnvFilter::new(default),
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // A log line that cannot be written (stderr is a closed pipe, e.g. `2>&1 | head -1`) is
        // dropped; the default reports it with `eprintln!`, which panics on that same pipe.
        .log_internal_errors(false)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .init();
}
