//! Adapter for `async_smux` 0.4 (smux protocol v1).
//! Paths below are relative to `~/.cargo/registry/src/*/async_smux-0.4.0/`.
//!
//! Quirks and gaps:
//! * smux v1 has only SYN/FIN/PSH/NOP (`src/frame.rs:13-18`): no ping, no GoAway, no reset.
//! * SYN is eager (`MuxConnector::connect`, `src/mux.rs:118-135`).
//! * Keep-alive interval and timeout are whole seconds (`src/builder.rs:72-83`). smux
//!   liveness is silence-based and NOPs are not answered, so a 1 s NOP interval races a peer's
//!   1 s dead-peer timeout: `idle` (100 ms keep-alives) is reported unsupported. The adapter
//!   still maps keep-alive requests to whole seconds (dead-peer check every 500 ms,
//!   `src/mux.rs:67-68`, `:350-360`).
//! * No per-stream flow control in v1; back-pressure is a session-wide count of queued inbound
//!   frames and unaccepted streams (`max_rx_queue`, default 1024, `src/mux.rs:1063-1078`),
//!   raised to 4096 here for `open1000`.
//! * PSH payloads are at most 65535 bytes (`src/frame.rs:10`).
//! * Once the session is closed, a stream whose FIN had arrived reads `ConnectionClosed`
//!   instead of EOF (`src/mux.rs:1152-1156`): `EofAfterPeerClose` unsupported.
//! * `poll_shutdown` writes the FIN, then is polled once more to see it flushed, and that poll
//!   checks for a closed session first (`src/mux.rs:701-719`, `:1240`): when the peer closes
//!   the connection right after receiving the FIN (as the last finisher of `greet` does), a
//!   half-close that worked reports `ConnectionClosed`. [`AsyncSmuxStream`] counts that as
//!   done; whether the FIN really arrived is checked where it matters, by the peer reading
//!   to EOF.

use std::io;
use std::num::{NonZeroU64, NonZeroUsize};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use async_smux::error::MuxError;
use async_smux::{MuxAcceptor, MuxBuilder, MuxConnector, MuxStream};
use futures::future::BoxFuture;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::session::{Capability, MuxSession, Peer, Role, SessionParams};

/// `async_smux` 0.4 as a [`Peer`].
#[derive(Clone, Copy, Debug, Default)]
pub struct AsyncSmux;

/// An `async_smux` session; its worker runs on a spawned task.
#[derive(Clone)]
pub struct AsyncSmuxSession {
    connector: MuxConnector<TcpStream>,
    acceptor: Arc<tokio::sync::Mutex<MuxAcceptor<TcpStream>>>,
}

/// Whole seconds, rounded up, at least 1.
fn secs(d: Duration) -> NonZeroU64 {
    NonZeroU64::new(d.as_secs() + u64::from(d.subsec_nanos() > 0)).unwrap_or(NonZeroU64::MIN)
}

impl Peer for AsyncSmux {
    type Session = AsyncSmuxSession;

    fn name(&self) -> String {
        "async_smux-0.4".into()
    }

    fn missing(&self, cap: Capability) -> Option<String> {
        if cap == Capability::WriteAfterPeerFin {
            return None;
        }
        if cap == Capability::EofAfterPeerClose {
            return Some(
                "async_smux 0.4 reports ConnectionClosed instead of EOF once the session is \
                 closed, even for a stream whose FIN arrived (async_smux-0.4.0/src/mux.rs:1152-1156)"
                    .into(),
            );
        }
        if cap == Capability::KeepAlive {
            return Some(
                "async_smux 0.4 takes keep-alive intervals in whole seconds \
                 (async_smux-0.4.0/src/builder.rs:72-75): NOPs every 1 s race a peer's 1 s \
                 silence timeout, and smux NOPs are not answered"
                    .into(),
            );
        }
        Some(format!(
            "smux v1 (async_smux 0.4) has no frame to {cap}: its commands are SYN/FIN/PSH/NOP \
             (async_smux-0.4.0/src/frame.rs:13-18)"
        ))
    }

    fn connect(
        &self,
        io: TcpStream,
        role: Role,
        params: &SessionParams,
    ) -> BoxFuture<'static, io::Result<AsyncSmuxSession>> {
        let params = params.clone();
        Box::pin(async move {
            let mut builder = match role {
                Role::Client => MuxBuilder::client(),
                Role::Server => MuxBuilder::server(),
            };
            builder.with_max_rx_queue(NonZeroUsize::new(4096).expect("non-zero"));
            if let Some(ka) = params.keep_alive {
                builder
                    .with_keep_alive_interval(secs(ka.interval))
                    .with_keep_alive_timeout(secs(ka.timeout));
            }
            let (connector, acceptor, worker) = builder.with_connection(io).build();
            tokio::spawn(worker);
            Ok(AsyncSmuxSession {
                connector,
                acceptor: Arc::new(tokio::sync::Mutex::new(acceptor)),
            })
        })
    }
}

fn closed() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "async_smux session has ended")
}

/// An `async_smux` stream whose half-close survives the peer closing the connection right
/// after receiving the FIN (see the module docs); everything else passes through.
pub struct AsyncSmuxStream(MuxStream<TcpStream>);

impl AsyncRead for AsyncSmuxStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for AsyncSmuxStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match ready!(Pin::new(&mut self.0).poll_shutdown(cx)) {
            Err(e) if is_connection_closed(&e) => Poll::Ready(Ok(())),
            other => Poll::Ready(other),
        }
    }
}

fn is_connection_closed(e: &io::Error) -> bool {
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<MuxError>())
        .is_some_and(|m| matches!(m, MuxError::ConnectionClosed))
}

impl MuxSession for AsyncSmuxSession {
    type Stream = AsyncSmuxStream;

    fn open(&self) -> BoxFuture<'_, io::Result<AsyncSmuxStream>> {
        Box::pin(async move {
            self.connector
                .connect()
                .map(AsyncSmuxStream)
                .map_err(io::Error::other)
        })
    }

    fn accept(&self) -> BoxFuture<'_, io::Result<AsyncSmuxStream>> {
        Box::pin(async move {
            let stream = self
                .acceptor
                .lock()
                .await
                .accept()
                .await
                .ok_or_else(closed)?;
            Ok(AsyncSmuxStream(stream))
        })
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        let mut connector = self.connector.clone();
        Box::pin(async move {
            let _ = connector.close().await;
        })
    }
}
