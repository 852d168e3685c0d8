//! polymux-bench: polymux in every dialect, the Rust peers (yamux 0.14, tokio-yamux 0.3,
//! net-mux 1, async_smux 0.4, smux 0.2), the Go references (hashicorp/yamux, xtaci/smux v1/v2)
//! and raw TCP, measured in one run on one machine over loopback, with server and client in
//! separate processes.
//!
//! `cargo run --release -p polymux-bench -- --help` lists the options; `BENCHMARKS.md` at the
//! repository root holds the latest table and the command that produced it.
//!
//! - `args` — the command line; `impls` — implementations, scenarios, server modes;
//! - `run` — the orchestrator: child processes, repetitions, medians;
//! - `server` / `client` — the two child processes (`serve`, `client` subcommands);
//! - `report` — the markdown table, ratios, footnotes, target checks;
//! - `sys` — rusage, RSS, limits, machine facts;
//! - `link` — the WAN link relay the `wan-*` scenarios run through.
//!
//! From `polymux-testkit`: the peer adapters, the Go peer program (whose `bench` subcommand
//! plays these children for the Go libraries) and the counting allocator.

mod args;
mod client;
mod impls;
mod link;
mod report;
mod run;
mod server;
mod sys;

use std::process::ExitCode;

#[global_allocator]
static GLOBAL: polymux_testkit::alloc::Counting = polymux_testkit::alloc::Counting;

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let result = match args::parse(&argv) {
        Ok(args::Command::Help) => {
            print!("{}", args::USAGE);
            Ok(())
        }
        Ok(args::Command::Run(a)) => run::main(a),
        Ok(args::Command::Serve(a)) => server::main(a),
        Ok(args::Command::Client(a)) => client::main(a),
        Err(e) => Err(e.context("see `polymux-bench --help`")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("polymux-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// A tokio runtime with `threads` workers, or a current-thread runtime for 0.
fn runtime(threads: usize) -> anyhow::Result<tokio::runtime::Runtime> {
    let mut builder = if threads == 0 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(threads);
        b
    };
    Ok(builder.enable_all().build()?)
}
