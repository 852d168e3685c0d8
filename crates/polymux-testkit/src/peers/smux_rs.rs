//! Adapter for the `smux` 0.2 crate (a Rust port of xtaci/smux), protocol v1.
//! Paths below are relative to `~/.cargo/registry/src/*/smux-0.2.0/`.
//!
//! Quirks and gaps:
//! * smux has only SYN/FIN/PSH/NOP (+UPD in v2, which this crate ignores,
//!   `src/session.rs:736-749`): no ping, no GoAway, no reset (`src/command.rs:4-10`).
//! * The decoder limits header + payload to `max_frame_size`, default 32 KiB
//!   (`src/codec.rs:88`, `src/config.rs:51`), which rejects the 32 KiB and 64 KiB payloads
//!   Go smux and `async_smux` send; it is raised to 65535 + 8 here.
//! * Streams always write version-1 frames (`src/stream.rs:234`, `:266`).
//! * `poll_read` and a full `poll_write` busy-poll by waking themselves
//!   (`src/stream.rs:187-193`, `:239-243`): many idle streams cost CPU.
//! * Once the session is closed, reads fail with `BrokenPipe` even if data or the FIN is
//!   queued (`src/stream.rs:139-148`; the stream's own `is_read_closed` is never set, it is a
//!   different flag from the session's, `src/session.rs:361` vs `src/stream.rs:91`): a peer that
//!   closes right after half-closing loses its last data (`EofAfterPeerClose` unsupported).
//! * The receive loop blocks while 16 inbound streams wait for `accept`
//!   (`src/session.rs:268`, `:656`).
//! * `Session::close` only sets a flag and wakes the background loops' current waiters
//!   (`src/session.rs:466-469`, `:136-140`); a loop busy at that moment misses it and keeps the
//!   socket open until its next event.
//! * Keep-alive: NOP every `keep_alive_interval`; the session closes when nothing arrived
//!   within a `keep_alive_timeout` window (`src/session.rs:752-807`); the timeout must exceed
//!   the interval (`src/config.rs:139`).

use std::io;

use futures::future::BoxFuture;
use smux::{ConfigBuilder, Session, Stream};
use tokio::net::TcpStream;

use crate::session::{Capability, MuxSession, Peer, Role, SessionParams};

/// smux frame header size (ver, cmd, length, stream id).
const HEADER: usize = 8;

/// The `smux` 0.2 crate as a [`Peer`].
#[derive(Clone, Copy, Debug, Default)]
pub struct SmuxRs;

/// An `smux` 0.2 session (already a cheap, cloneable handle).
#[derive(Clone)]
pub struct SmuxRsSession(Session);

impl Peer for SmuxRs {
    type Session = SmuxRsSession;

    fn name(&self) -> String {
        "smux-0.2".into()
    }

    fn missing(&self, cap: Capability) -> Option<String> {
        match cap {
            Capability::KeepAlive | Capability::WriteAfterPeerFin => return None,
            Capability::EofAfterPeerClose => {
                return Some(
                    "smux 0.2 reads fail with BrokenPipe once the session is closed, before \
                     queued data or the FIN is looked at (smux-0.2.0/src/stream.rs:139-148)"
                        .into(),
                )
            }
            _ => {}
        }
        Some(format!(
            "smux v1 (smux 0.2 crate) has no frame to {cap}: its commands are \
             SYN/FIN/PSH/NOP/UPD (smux-0.2.0/src/command.rs:4-10)"
        ))
    }

    fn connect(
        &self,
        io: TcpStream,
        role: Role,
        params: &SessionParams,
    ) -> BoxFuture<'static, io::Result<SmuxRsSession>> {
        let mut cfg = ConfigBuilder::new()
            .version(1)
            .max_frame_size(usize::from(u16::MAX) + HEADER);
        if let Some(ka) = params.keep_alive {
            cfg = cfg
                .enable_keep_alive(true)
                .keep_alive_interval(ka.interval)
                .keep_alive_timeout(ka.timeout);
        }
        Box::pin(async move {
            let cfg = cfg.build().map_err(io::Error::other)?;
            let session = match role {
                Role::Client => Session::client(io, cfg).await,
                Role::Server => Session::server(io, cfg).await,
            };
            Ok(SmuxRsSession(session.map_err(io::Error::other)?))
        })
    }
}

impl MuxSession for SmuxRsSession {
    type Stream = Stream;

    fn open(&self) -> BoxFuture<'_, io::Result<Stream>> {
        Box::pin(async move { self.0.open_stream().await.map_err(io::Error::other) })
    }

    fn accept(&self) -> BoxFuture<'_, io::Result<Stream>> {
        Box::pin(async move { self.0.accept_stream().await.map_err(io::Error::other) })
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let _ = self.0.close().await;
        })
    }
}
