//! Interop harness for polymux.
//!
//! Plays the scenarios of `interop/SCENARIOS.md` between two implementations over one loopback
//! TCP connection and reports both sides' [`Outcome`]s:
//!
//! * [`scenario`]: both sides of every scenario, written once over the [`MuxSession`] trait;
//! * [`peers`]: adapters for third-party Rust multiplexers (yamux 0.14, tokio-yamux 0.3,
//!   net-mux 1, async_smux 0.4, smux 0.2), each documenting its quirks and missing capabilities;
//! * [`go_peer`]: builds and drives the Go peer program in `interop/go`;
//! * [`polymux_peer`]: polymux itself, in every dialect;
//! * [`runner`]: [`run`] / [`run_pair`] put two [`Side`]s together.
//!
//! ```no_run
//! use polymux_interop::{assert_both_ok, peers, run, GoProto, Scenario, Side};
//! assert_both_ok(run(Scenario::Greet, Side::rust(peers::Yamux014), Side::Go(GoProto::Yamux)));
//! ```
//!
//! A new implementation plugs in by implementing [`Peer`] (a session factory) and
//! [`MuxSession`] (open/accept plus optional ping, GoAway, reset).

pub mod go_peer;
pub mod payload;
pub mod peers;
pub mod polymux_peer;
pub mod runner;
pub mod scenario;
pub mod session;

pub use go_peer::GoProto;
pub use polymux_peer::{Polymux, PolymuxSession};
pub use runner::{assert_both_ok, assert_unsupported, run, run_pair, PairOutcome, Side};
pub use scenario::{run_side, Adapt, Outcome, Scenario};
pub use session::{unsupported, Capability, KeepAlive, MuxSession, Peer, Role, SessionParams};
