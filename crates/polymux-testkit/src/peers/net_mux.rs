//! Adapter for `net-mux` 1.x (tokio-native; background tasks spawned by `Session::client`).
//! Paths below are relative to `~/.cargo/registry/src/*/net-mux-1.0.1/`.
//!
//! Quirks and gaps:
//! * `open()` sends SYN and then waits for the peer's ACK (`src/session/mod.rs:190`), which the
//!   peer only sends when its application calls `accept()` (`src/session/mod.rs:228`); the wait
//!   is bounded by `open_timeout` (10 s).
//! * At most 1024 streams by default (`src/config.rs:40`); raised to 4096 for `open1000`.
//! * No ping API: keep-alive pings are internal (`src/session/keepalive.rs:20-40`).
//! * No GoAway without shutdown: `close()` sends GoAway and shuts the session down
//!   (`src/session/inner.rs:65-77`); a received GoAway shuts the session down as well
//!   (`src/session/reader.rs:108-111`).
//! * Reset: `Stream::reset` sends RST (`src/stream/mod.rs:41`); a received RST reads as
//!   `ConnectionReset` (`src/stream/inner.rs:185`). Dropping a stream sends FIN, not RST.

use std::io;

use futures::future::BoxFuture;
use net_mux::{Config, Session, Stream};
use tokio::net::TcpStream;

use crate::session::{Capability, MuxSession, Peer, Role, SessionParams};

/// `net-mux` 1.x as a [`Peer`].
#[derive(Clone, Copy, Debug, Default)]
pub struct NetMux;

/// A `net-mux` session (already a cheap, cloneable handle).
#[derive(Clone)]
pub struct NetMuxSession(Session<TcpStream>);

impl Peer for NetMux {
    type Session = NetMuxSession;

    fn name(&self) -> String {
        "net-mux-1".into()
    }

    fn missing(&self, cap: Capability) -> Option<String> {
        let why = match cap {
            Capability::Ping => {
                "net-mux 1 has no ping API; keep-alive pings are internal \
                 (net-mux-1.0.1/src/session/keepalive.rs:20-40)"
            }
            Capability::SendGoAway => {
                "net-mux 1 sends GoAway only while shutting the session down \
                 (net-mux-1.0.1/src/session/inner.rs:65-77)"
            }
            Capability::RecvGoAway => {
                "net-mux 1 shuts the session down on a received GoAway \
                 (net-mux-1.0.1/src/session/reader.rs:108-111)"
            }
            Capability::AnswerPing
            | Capability::SendReset
            | Capability::RecvReset
            | Capability::WriteAfterPeerFin
            | Capability::EofAfterPeerClose
            | Capability::KeepAlive
            | Capability::IsolateUnread => return None,
        };
        Some(why.into())
    }

    fn connect(
        &self,
        io: TcpStream,
        role: Role,
        params: &SessionParams,
    ) -> BoxFuture<'static, io::Result<NetMuxSession>> {
        let mut cfg = Config::builder().max_streams(4096);
        if let Some(ka) = params.keep_alive {
            cfg = cfg
                .keepalive_interval(Some(ka.interval))
                .keepalive_timeout(ka.timeout);
        }
        let cfg = cfg.build();
        // `Session::client`/`server` spawn tasks, so build inside the runtime.
        Box::pin(async move {
            Ok(NetMuxSession(match role {
                Role::Client => Session::client(io, cfg),
                Role::Server => Session::server(io, cfg),
            }))
        })
    }
}

impl MuxSession for NetMuxSession {
    type Stream = Stream;

    fn open(&self) -> BoxFuture<'_, io::Result<Stream>> {
        Box::pin(async move { self.0.open().await.map_err(io::Error::from) })
    }

    fn accept(&self) -> BoxFuture<'_, io::Result<Stream>> {
        Box::pin(async move { self.0.accept().await.map_err(io::Error::from) })
    }

    fn reset(&self, stream: Stream) -> io::Result<()> {
        stream.reset();
        Ok(())
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(self.0.close())
    }
}
