//! The sans-I/O core of polymux: every supported multiplexing protocol as pure state machines.
//!
//! No sockets, no clock, no runtime: bytes and time go in, bytes, deadlines and wake-ups come
//! out. The `polymux` crate drives a [`Connection`] over a real transport; tests drive two of
//! them against each other deterministically.
//!
//! # Layout
//!
//! - [`frame`] — the dialect-neutral [`Frame`] (yamux's model: id, kind, SYN/ACK/FIN/RST).
//! - [`dialect`] — the [`Dialect`]s (yamux, smux v1, smux v2, net-mux), their capabilities and
//!   named GoAway codes; below `codec` and `error`.
//! - [`codec`] — bytes ⇄ frames per [`Dialect`], header lengths and payload limits.
//! - `policy` — which frames express open, accept, half-close, reset and credit per dialect.
//! - `flow` — per-stream credit in both directions, window auto-tuning.
//! - `inbound_ids` — which ids the peer opened (reuse vs. reordered opens).
//! - `recv_queue` — a stream's unread bytes: zero-copy slices and merged small chunks.
//! - `memory` — receive memory charged against the session budget and a shared
//!   [`MemoryBudget`].
//! - `stream` — one stream's lifecycle and wakers.
//! - `keepalive` — Ping/NOP probes, dead-peer detection, RTT.
//! - `tx` — the bounded output buffers (control first, then data).
//! - `waiters` — the bounded set of tasks waiting for a session-wide condition.
//! - [`connection`] — the engine: the stream table, inputs, commands and outputs.
//! - [`config`] — the validated [`Config`] with every bound documented.
//! - [`error`] — [`Error`] and the [`Violation`] that names the rule a peer broke.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod codec;
pub mod config;
pub mod connection;
pub mod dialect;
pub mod error;
mod flow;
pub mod frame;
mod inbound_ids;
mod keepalive;
mod memory;
mod policy;
mod recv_queue;
mod stream;
mod tx;
mod waiters;

pub use config::{Config, ConfigBuilder, ConfigError, PROTOCOL_INITIAL_WINDOW};
pub use connection::{Connection, Role, Stats, StreamKey, PAUSED_READ_AHEAD};
pub use dialect::Dialect;
pub use error::{Error, TransportError, Violation};
pub use frame::{Flags, Frame, StreamId};
pub use memory::{MemoryBudget, DEFAULT_MIN_SHARE};
pub use tx::Transmit;
