//! The polymux test kit: everything the workspace's tests and benchmarks share, written once.
//!
//! Not published; used by the interop matrix (`interop/`), `polymux-bench`, the tests of
//! `polymux`, `polymux-proto` and `polymux-cli`, and by `polymux bench` (the CLI), which takes
//! only the parts without the `peers` feature.
//!
//! * [`scenario`]: both sides of every interop scenario (`interop/SCENARIOS.md`), written once
//!   over the [`MuxSession`] trait ([`session`]); [`polymux_peer`]: polymux itself, in every
//!   dialect;
//! * [`bench`](mod@bench): the benchmark scenario engine (scenarios, sizes, both sides' per-stream code)
//!   that `polymux-bench` runs in child processes and `polymux bench` in one process;
//! * [`payload`]: the verifiable payload generator;
//! * [`alloc`]: the counting allocator test and bench binaries install;
//! * [`pipe`](mod@pipe): an in-memory pipe for sessions polled by hand (no sockets);
//! * with the `peers` feature: [`peers`], adapters for third-party Rust multiplexers
//!   (yamux 0.14, tokio-yamux 0.3, net-mux 1, async_smux 0.4, smux 0.2), each documenting its
//!   quirks and missing capabilities; [`go_peer`], which builds and drives the one Go peer
//!   program (`go/`, every Go role: interop sides, echo server, bench server and client);
//!   [`runner`], whose [`run`] / [`run_pair`] put two [`Side`]s together.
//!
//! ```no_run
//! # #[cfg(feature = "peers")] {
//! use polymux_testkit::{assert_both_ok, peers, run, GoProto, Scenario, Side};
//! assert_both_ok(run(Scenario::Greet, Side::rust(peers::Yamux014), Side::Go(GoProto::Yamux)));
//! # }
//! ```
//!
//! A new implementation plugs in by implementing [`Peer`] (a session factory) and
//! [`MuxSession`] (open/accept plus optional ping, GoAway, reset).

pub mod alloc;
pub mod bench;
#[cfg(feature = "peers")]
pub mod go_peer;
pub mod payload;
#[cfg(feature = "peers")]
pub mod peers;
pub mod pipe;
pub mod polymux_peer;
#[cfg(feature = "peers")]
pub mod runner;
pub mod scenario;
pub mod session;

#[cfg(feature = "peers")]
pub use go_peer::GoProto;
pub use polymux_peer::{Polymux, PolymuxSession};
#[cfg(feature = "peers")]
pub use runner::{assert_both_ok, assert_unsupported, run, run_pair, PairOutcome, Side};
pub use scenario::{run_side, Adapt, Outcome, Scenario};
pub use session::{unsupported, Capability, KeepAlive, MuxSession, Peer, Role, SessionParams};
