//! The two-peer simulation harness used by `tests/simulation.rs`.
//!
//! One [`Sim`] holds a client and a server [`Connection`], a [`Wire`] in each direction with a
//! fixed one-way delay, a virtual clock (`base + now_ms`), a seeded [`Rng`] and, per side, a
//! model of every stream the application handled ([`SimStream`]). The model is what the
//! checks compare the engine against: which bytes were written, read, closed, reset, released.
//!
//! The harness acts as the application *and* the driver, with the driver contract of the
//! `polymux` crate: take a batch with `poll_transmit`, write it (here: in random pieces onto the
//! wire), report it with `transmitted`, only then take the next; feed input only while
//! `wants_input()`, re-offering leftover bytes first; call `handle_eof(rx.len())` when the
//! peer's transport is closed and everything before the EOF was consumed; close the transport
//! once the session ended and its output is flushed.
//!
//! Wake-ups are checked too: every command that returns `Pending` arms a [`Waiter`], and when a
//! later poll of the same operation completes, the engine must have woken that waiter in
//! between (the condition changed, so a real task would otherwise sleep forever).
//!
//! Any panic prints the dialect, seed, step and virtual time (see `Drop for Sim`), and the run
//! can be replayed with `SIM_DIALECT=<name> SIM_SEED=<seed>`.
//!
//! This file holds [`Sim`] itself, the configurations and the run; the submodules hold one
//! concern each (randomness, waiters, the wire, the model, the driver and application roles,
//! the random phase, the drain and final checks).

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use crate::common::Flag;
use bytes::{Buf, Bytes, BytesMut};
use polymux_proto::{
    Config, Connection, Dialect, Error, Flags, Frame, Role, StreamKey, Transmit,
    PROTOCOL_INITIAL_WINDOW,
};

// ---- the simulation ---------------------------------------------------------------------------

/// Tunables of a random run.
#[derive(Clone, Debug)]
pub struct Plan {
    /// Random steps before the drain phase.
    pub steps: u64,
    /// Streams each side opens at most.
    pub opens_per_side: u64,
    /// The step at which a random side sends GoAway, if any.
    pub goaway_at: Option<u64>,
}

pub struct Sim {
    pub dialect: Dialect,
    pub seed: u64,
    pub rng: Rng,
    pub config: Config,
    base: Instant,
    pub now_ms: u64,
    pub step: u64,
    pub phase: &'static str,
    /// `sides[0]` is the client, `sides[1]` the server.
    pub sides: [Side; 2],
    /// `wires[i]` carries what `sides[i]` sends.
    pub wires: [Wire; 2],
    pub cov: Coverage,
    /// Percentage of streams with a large payload.
    pub big_pct: u64,
    /// App-level progress (bytes read/written, opens, closes...), for stall detection.
    progress: u64,
    scratch: Vec<u8>,
    expected: Vec<u8>,
    /// `SIM_TRACE`: print every application operation and batch (for replaying a failure).
    trace: bool,
}

macro_rules! trace {
    ($sim:expr, $($arg:tt)*) => {
        if $sim.trace {
            eprintln!("[step {} t={}] {}", $sim.step, $sim.now_ms, format_args!($($arg)*));
        }
    };
}

impl Drop for Sim {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "\n*** simulation failed: dialect {} seed {} at step {} ({} phase, virtual t = {} ms)\n    \
                 replay: SIM_DIALECT=\"{}\" SIM_SEED={} cargo test -p polymux-proto --test simulation\n",
                self.dialect.name(),
                self.seed,
                self.step,
                self.phase,
                self.now_ms,
                self.dialect.name(),
                self.seed,
            );
        }
    }
}

impl Sim {
    /// A pair of sessions with `config` on both sides; `delays[i]` is the one-way delay of
    /// what `sides[i]` sends.
    pub fn new(dialect: Dialect, seed: u64, config: Config, delays: [u64; 2]) -> Sim {
        assert_eq!(config.dialect(), dialect);
        let base = Instant::now();
        Sim {
            dialect,
            seed,
            rng: Rng::new(seed ^ 0x5eed_0000 ^ (dialect as u64) << 40),
            sides: [
                Side::new(Role::Client, config.clone(), base),
                Side::new(Role::Server, config.clone(), base),
            ],
            wires: [Wire::new(delays[0]), Wire::new(delays[1])],
            config,
            base,
            now_ms: 0,
            step: 0,
            phase: "setup",
            cov: Coverage::default(),
            big_pct: 8,
            progress: 0,
            scratch: Vec::new(),
            expected: Vec::new(),
            trace: std::env::var_os("SIM_TRACE").is_some(),
        }
    }

    pub fn now(&self) -> Instant {
        self.base + Duration::from_millis(self.now_ms)
    }

    fn flow_controlled(&self) -> bool {
        self.dialect.has_stream_credit()
    }

    /// The most a writer can be ahead of its reader on one stream: the largest credit the
    /// reader can have granted. Every stream starts with the protocol's 256 KiB whatever the
    /// configured window (smux v2 included, like Go's `initialPeerWindow`).
    fn credit_bound(&self) -> u64 {
        u64::from(self.config.max_stream_window().max(PROTOCOL_INITIAL_WINDOW))
    }
}

mod app;
mod drain;
mod driver;
mod model;
mod random;
mod rng;
mod waiter;
mod wire;

pub(crate) use model::*;
pub(crate) use rng::*;
pub(crate) use waiter::*;
pub(crate) use wire::*;

// ---- configurations and the run -----------------------------------------------------------------

/// The preset for `dialect`, or (`tight`) one with small budgets, windows, frames and backlogs
/// so that every back-pressure path is reached within a short run. Both get a long
/// `close_timeout`: the simulation's pace is arbitrary, and a graceful close must complete, not
/// time out.
pub fn sim_config(dialect: Dialect, tight: bool) -> Config {
    let base = Config::for_dialect(dialect)
        .to_builder()
        .close_timeout(Duration::from_secs(600));
    let b = if tight {
        let b = base
            .accept_backlog(8)
            .max_unacked_outbound(4)
            .keepalive_interval(Some(Duration::from_millis(250)));
        match dialect {
            Dialect::Yamux | Dialect::NetMux => b
                .max_stream_window(1024 * 1024)
                .session_recv_budget(272 * 1024)
                .write_budget(64 * 1024)
                .max_frame_payload(16 * 1024),
            Dialect::SmuxV1 => b
                .stream_window(16 * 1024)
                .max_stream_window(16 * 1024)
                .session_recv_budget(64 * 1024)
                .write_budget(16 * 1024)
                .max_frame_payload(4 * 1024),
            Dialect::SmuxV2 => b
                .stream_window(16 * 1024)
                .max_stream_window(64 * 1024)
                .session_recv_budget(128 * 1024)
                .write_budget(32 * 1024)
                .max_frame_payload(8 * 1024),
        }
    } else {
        base
    };
    b.build().expect("a valid simulation configuration")
}

/// One seeded random run: random steps, then the drain and the graceful close, then the final
/// checks. Returns what it exercised.
pub fn run_random(dialect: Dialect, seed: u64, plan: &Plan) -> Coverage {
    let mut setup = Rng::new(seed);
    let tight = seed % 2 == 1;
    let delays = [setup.range(0, 20), setup.range(0, 20)];
    let mut plan = plan.clone();
    if dialect.has_goaway() && seed % 4 == 3 {
        // A GoAway late in the run: the peer's opens fail, its opens in flight are refused.
        plan.goaway_at = Some(setup.range(plan.steps * 3 / 4, plan.steps));
    }
    let plan = &plan;
    let mut sim = Sim::new(dialect, seed, sim_config(dialect, tight), delays);
    sim.big_pct = if tight { 15 } else { 8 };
    sim.phase = "random";
    for _ in 0..plan.steps {
        sim.random_step(plan);
    }
    sim.drain();
    sim.final_checks();
    sim.cov.steps = sim.step;
    sim.cov.virtual_ms = sim.now_ms;
    sim.cov.refused = sim
        .sides
        .iter()
        .map(|s| s.conn.stats().refused_inbound)
        .sum();
    sim.cov.clone()
}
