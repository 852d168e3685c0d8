//! Adapter for `yamux` 0.14 (libp2p/rust-yamux, futures-io).
//!
//! A `Connection` only makes progress while `poll_next_inbound` is polled, so a driver task owns
//! it and serves open requests (bounded channel) with `poll_new_outbound` in the same poll loop.
//! Paths below are relative to `~/.cargo/registry/src/*/yamux-0.14.1/`.
//!
//! Quirks and gaps:
//! * SYN is lazy: an outbound stream only tells the peer on its first frame
//!   (`src/connection/stream.rs:210-223`). [`MuxSession::open`] therefore writes zero bytes,
//!   which sends an empty DATA|SYN frame (`src/connection/stream.rs:387-395`), so `greet` works.
//! * At most 512 streams by default (`src/lib.rs:90`); an inbound SYN beyond the limit kills the
//!   connection (`src/connection.rs:627`), so the limit is raised to 2048 for `open1000`.
//!   `poll_new_outbound` also waits while 256 outbound streams are unacknowledged
//!   (`src/lib.rs:52`, `src/connection.rs:499`).
//! * Received frame bodies are limited to 1 MiB (`src/frame/io.rs:28`, `:239`); sent frames are
//!   split at 16 KiB (`src/connection/stream.rs:388`).
//! * No ping API: RTT pings are internal (`src/connection/rtt.rs:46`) and a pong nobody asked
//!   for is a protocol error (`src/connection/rtt.rs:72`).
//! * GoAway: sent only by `poll_close`, which ends the connection
//!   (`src/connection/closing.rs:69-72`); a received GoAway ends the connection
//!   (`src/connection.rs:592`).
//! * Reset: there is no reset call; dropping a stream that is still `Open` sends RST
//!   (`src/connection.rs:525`), which is what [`MuxSession::reset`] does. A received RST reads
//!   as a plain EOF (`src/connection/stream.rs:355`); the adapter reports it as
//!   `ConnectionReset` when the stream is fully `Closed` while we never closed our write half
//!   and the connection is still alive (the driver's poll and the liveness flag share a lock,
//!   so a connection teardown, which also marks streams `Closed`, is never mistaken for a
//!   reset). After our own half-close a reset cannot be told from a FIN.
//! * No keep-alive settings at all (`src/lib.rs:79-84`); `idle` runs without them.

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use futures::{AsyncRead as FRead, AsyncWrite as FWrite};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio_util::compat::{Compat, TokioAsyncReadCompatExt};
use yamux::{Config, Connection, ConnectionError, Mode};

use crate::session::{Capability, MuxSession, Peer, Role, SessionParams};

/// `yamux` 0.14 as a [`Peer`].
#[derive(Clone, Copy, Debug, Default)]
pub struct Yamux014;

type OpenReply = oneshot::Sender<Result<yamux::Stream, ConnectionError>>;

enum Cmd {
    Open(OpenReply),
    Close(oneshot::Sender<()>),
}

/// A `yamux` 0.14 connection behind its driver task.
#[derive(Clone)]
pub struct Yamux014Session {
    cmd: mpsc::Sender<Cmd>,
    inbound: Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<yamux::Stream>>>,
    /// Whether the connection is still up; locked by the driver while it polls.
    alive: Arc<Mutex<bool>>,
}

impl Peer for Yamux014 {
    type Session = Yamux014Session;

    fn name(&self) -> String {
        "yamux-0.14".into()
    }

    fn missing(&self, cap: Capability) -> Option<String> {
        let why = match cap {
            Capability::Ping => {
                "yamux 0.14 has no ping API; RTT pings are internal \
                 (yamux-0.14.1/src/connection/rtt.rs:46)"
            }
            Capability::SendGoAway => {
                "yamux 0.14 sends GoAway only while closing the connection \
                 (yamux-0.14.1/src/connection/closing.rs:69-72)"
            }
            Capability::RecvGoAway => {
                "yamux 0.14 ends the connection on a received GoAway \
                 (yamux-0.14.1/src/connection.rs:592)"
            }
            // No keep-alive of its own, but it answers pings (src/connection.rs:789-797).
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
        _params: &SessionParams,
    ) -> BoxFuture<'static, io::Result<Yamux014Session>> {
        Box::pin(async move {
            let mut cfg = Config::default();
            cfg.set_max_num_streams(2048);
            let mode = match role {
                Role::Client => Mode::Client,
                Role::Server => Mode::Server,
            };
            let conn = Connection::new(io.compat(), cfg, mode);
            let (cmd_tx, cmd_rx) = mpsc::channel(64);
            let (in_tx, in_rx) = mpsc::unbounded_channel();
            let alive = Arc::new(Mutex::new(true));
            tokio::spawn(drive(conn, cmd_rx, in_tx, alive.clone()));
            Ok(Yamux014Session {
                cmd: cmd_tx,
                inbound: Arc::new(tokio::sync::Mutex::new(in_rx)),
                alive,
            })
        })
    }
}

/// Polls the connection: inbound streams, queued open requests and closing.
async fn drive(
    mut conn: Connection<Compat<TcpStream>>,
    mut cmds: mpsc::Receiver<Cmd>,
    inbound: mpsc::UnboundedSender<yamux::Stream>,
    alive: Arc<Mutex<bool>>,
) {
    let mut opening: Option<OpenReply> = None;
    let mut closing: Option<Option<oneshot::Sender<()>>> = None;
    poll_fn(move |cx| {
        let mut alive = alive.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if opening.is_none() && closing.is_none() {
                match cmds.poll_recv(cx) {
                    Poll::Ready(Some(Cmd::Open(reply))) => opening = Some(reply),
                    Poll::Ready(Some(Cmd::Close(done))) => closing = Some(Some(done)),
                    // Every session handle is gone: close.
                    Poll::Ready(None) => closing = Some(None),
                    Poll::Pending => {}
                }
            }
            if let Some(done) = &mut closing {
                if conn.poll_close(cx).is_pending() {
                    return Poll::Pending;
                }
                *alive = false;
                if let Some(done) = done.take() {
                    let _ = done.send(());
                }
                return Poll::Ready(());
            }
            if let Some(reply) = opening.take() {
                match conn.poll_new_outbound(cx) {
                    Poll::Ready(result) => {
                        let _ = reply.send(result);
                        continue;
                    }
                    Poll::Pending => opening = Some(reply),
                }
            }
            match conn.poll_next_inbound(cx) {
                Poll::Ready(Some(Ok(stream))) => {
                    let _ = inbound.send(stream);
                }
                Poll::Ready(Some(Err(_)) | None) => {
                    *alive = false;
                    return Poll::Ready(());
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    })
    .await
}

fn gone() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "yamux 0.14 session has ended")
}

fn conn_err(e: ConnectionError) -> io::Error {
    match e {
        ConnectionError::Io(e) => e,
        ConnectionError::Closed => gone(),
        other => io::Error::other(other),
    }
}

impl MuxSession for Yamux014Session {
    type Stream = Yamux014Stream;

    fn open(&self) -> BoxFuture<'_, io::Result<Yamux014Stream>> {
        Box::pin(async move {
            let (tx, rx) = oneshot::channel();
            self.cmd.send(Cmd::Open(tx)).await.map_err(|_| gone())?;
            let stream = rx.await.map_err(|_| gone())?.map_err(conn_err)?;
            let mut stream = Yamux014Stream {
                inner: stream,
                alive: self.alive.clone(),
                write_closed: false,
            };
            // Send the SYN now (empty DATA|SYN frame) instead of with the first payload.
            futures::AsyncWriteExt::write(&mut stream.inner, &[]).await?;
            Ok(stream)
        })
    }

    fn accept(&self) -> BoxFuture<'_, io::Result<Yamux014Stream>> {
        Box::pin(async move {
            let stream = self.inbound.lock().await.recv().await.ok_or_else(gone)?;
            Ok(Yamux014Stream {
                inner: stream,
                alive: self.alive.clone(),
                write_closed: false,
            })
        })
    }

    fn reset(&self, stream: Yamux014Stream) -> io::Result<()> {
        // Dropping an `Open` stream makes the connection send RST.
        drop(stream);
        Ok(())
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let (tx, rx) = oneshot::channel();
            if self.cmd.send(Cmd::Close(tx)).await.is_ok() {
                let _ = rx.await;
            }
        })
    }
}

/// A `yamux` 0.14 stream with tokio I/O traits and reset detection (see module docs).
pub struct Yamux014Stream {
    inner: yamux::Stream,
    alive: Arc<Mutex<bool>>,
    write_closed: bool,
}

impl Yamux014Stream {
    /// EOF on a stream that is `Closed` although we never half-closed it: a RST, unless the
    /// whole connection went away.
    fn eof_is_reset(&self) -> bool {
        !self.write_closed
            && self.inner.is_closed()
            && *self.alive.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl AsyncRead for Yamux014Stream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let dst = buf.initialize_unfilled();
        if dst.is_empty() {
            return Poll::Ready(Ok(()));
        }
        match Pin::new(&mut self.inner).poll_read(cx, dst) {
            Poll::Ready(Ok(0)) if self.eof_is_reset() => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::ConnectionReset,
                "stream reset by peer (yamux 0.14: stream Closed while the connection is alive)",
            ))),
            Poll::Ready(Ok(n)) => {
                buf.advance(n);
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl AsyncWrite for Yamux014Stream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.write_closed = true;
        Pin::new(&mut self.inner).poll_close(cx)
    }
}
