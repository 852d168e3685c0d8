//! Adapters that let third-party Rust multiplexers play the scenarios.
//!
//! Each module documents, with file:line in the crate's registry sources, the quirks found and
//! any capability the implementation lacks; [`crate::Peer::missing`] reports the latter so a
//! scenario role it cannot play is reported as unsupported instead of failing.

mod async_smux;
mod net_mux;
mod smux_rs;
mod tokio_yamux;
mod yamux014;

pub use self::async_smux::{AsyncSmux, AsyncSmuxSession};
pub use self::net_mux::{NetMux, NetMuxSession};
pub use self::smux_rs::{SmuxRs, SmuxRsSession};
pub use self::tokio_yamux::{TokioYamux, TokioYamuxSession, TokioYamuxStream};
pub use self::yamux014::{Yamux014, Yamux014Session, Yamux014Stream};
