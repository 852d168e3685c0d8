//! polymux: many independent bidirectional streams over one reliable byte stream, speaking
//! yamux, smux v1, smux v2 and net-mux, with memory bounded per stream and per session.
//!
//! ```no_run
//! # async fn demo(tcp: impl futures::io::AsyncRead + futures::io::AsyncWrite + Unpin + Send + 'static) -> Result<(), Box<dyn std::error::Error>> {
//! use futures::{AsyncReadExt, AsyncWriteExt};
//! use polymux::{Config, Session};
//!
//! let (session, driver) = Session::client(tcp, Config::yamux());
//! std::thread::spawn(move || futures::executor::block_on(driver)); // or tokio::spawn, smol::spawn
//!
//! let mut stream = session.open().await?;
//! stream.write_all(b"hello").await?;
//! stream.close().await?; // half-close: the peer reads EOF, we can still read
//! let mut reply = Vec::new();
//! stream.read_to_end(&mut reply).await?;
//! session.close().await;
//! # Ok(()) }
//! ```
//!
//! # Layout
//!
//! - `session` — [`Session`], the cheap cloneable handle: open, accept, ping, GoAway, close, stats.
//! - `driver` — [`Driver`], the future that reads the transport, writes queued output, and runs
//!   timers.
//! - `direct` — the I/O half of the direct-write path: a stream writes its own data frames to
//!   the transport while the output is idle (the rule is the engine's, in `polymux_proto`).
//! - `inline_read` — the read path's counterpart: a reader about to wait reads the transport
//!   itself, for the driver, when the bytes it waits for are already there.
//! - `rx_buffers` — the driver's receive buffers (kept with the transport, so that such a
//!   read can use them), recycled once streams have read them.
//! - `stream` — [`Stream`], `futures::io::AsyncRead + AsyncWrite` (and tokio's, by feature),
//!   plus [`Stream::read_chunk`] / [`Stream::write_chunk`], data as zero-copy `Bytes`.
//! - `split` — [`ReadHalf`] / [`WriteHalf`] (borrowed) and [`OwnedReadHalf`] /
//!   [`OwnedWriteHalf`]: a stream's two directions used at once.
//! - `transport` — [`Transport`]: what the driver needs from the underlying byte stream.
//! - [`tcp`] — socket settings for a session's TCP connection (`TCP_NOTSENT_LOWAT`, no Nagle).
//! - `tokio` (feature `tokio`) — adapters for tokio I/O and a spawn-it-for-me constructor.
//!
//! The protocol logic lives in the sans-I/O crate [`polymux_proto`]; this crate only moves
//! bytes, wakes tasks and keeps time. The driver makes progress on its own: a user who only
//! opens streams and never accepts does not stall the session.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod direct;
mod driver;
mod inline_read;
mod rx_buffers;
mod session;
mod split;
mod stream;
#[cfg(unix)]
pub mod tcp;
#[cfg(feature = "tokio")]
pub mod tokio;
mod transport;
#[cfg(test)]
mod wake_tests;

pub use driver::Driver;
pub use polymux_proto::{
    Config, ConfigBuilder, ConfigError, Dialect, Error, MemoryBudget, Role, Stats, StreamId,
    TransportError, Violation,
};
pub use session::{Incoming, Session};

/// The README's examples, compiled as doc tests so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;
pub use split::{OwnedReadHalf, OwnedWriteHalf, ReadHalf, WriteHalf};

/// The crate's own README (the crates.io page), compiled likewise.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct CrateReadmeDoctests;
pub use stream::Stream;
#[cfg(feature = "tokio")]
pub use transport::TokioIo;
pub use transport::Transport;
