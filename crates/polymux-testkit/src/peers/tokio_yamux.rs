//! Adapter for `tokio-yamux` 0.3 (driftluo/tentacle's yamux).
//!
//! `Session` is a `futures::Stream` of inbound streams that must be polled continuously; a driver
//! task polls it, forwards inbound streams, and serves GoAway/close requests that need
//! `&mut Session`. Streams are opened through the library's own `Control` channel.
//! Paths below are relative to `~/.cargo/registry/src/*/tokio-yamux-0.3.20/`.
//!
//! Quirks and gaps:
//! * SYN is eager: a new stream immediately sends a window update carrying SYN
//!   (`src/session.rs:339`, `src/stream.rs:203-208`).
//! * No ping API: `send_ping` is private (`src/session.rs:238`) and only the keep-alive timer uses
//!   it (`src/session.rs:292`); RTTs are not exposed. The dead-peer timeout is a constant 30 s
//!   (`src/session.rs:39`); only the keep-alive interval is configurable (`src/config.rs:25`).
//! * GoAway can be sent with the session staying up (`Session::send_go_away`,
//!   `src/session.rs:252`), but the session then counts itself dead once
//!   `connection_write_timeout` (10 s) passes without the peer's GoAway (`src/session.rs:670-673`).
//! * A received GoAway is answered with our own GoAway (`src/session.rs:542-550`), after which
//!   the session is dead (`src/session.rs:224-226`) and every stream ends: it cannot keep
//!   streams running after a GoAway.
//! * A write blocked on an exhausted send window is only woken by the stream's *read* path:
//!   `poll_write` drains the stream's frame channel with `try_recv`, which registers no waker
//!   (`src/stream.rs:304-335`, `:557-561`), so a task that reads and then writes (an echo loop)
//!   never sees the window update and deadlocks. [`TokioYamuxStream`] works around it without
//!   changing the wire behaviour: when `poll_write` is pending it calls `poll_peek` with an
//!   empty buffer, which processes queued frames and registers for new ones
//!   (`src/stream.rs:390-406`).
//! * After the peer's FIN the stream stops processing frames altogether
//!   (`src/stream.rs:275-277`, `:308-310`), so window updates are lost and writing more than
//!   the remaining send window after a received FIN blocks forever. The FIN is taken in as
//!   soon as it is queued, not when the data before it is read, so an echo server whose client
//!   half-closes early stalls (`echo100`/`bulk64`: a Rust client half-closes after its echo
//!   instead, see `Adapt`; the Go client cannot).
//! * A half-close after the peer's FIN sends our FIN, then a `Closed` event to the session;
//!   if the peer closed the connection on receiving our FIN, that event fails and
//!   `poll_shutdown` reports BrokenPipe (`src/stream.rs:103-108`, `:588-593`), which
//!   [`TokioYamuxStream`] counts as done.
//! * Reset: dropping a stream that is not half-closed sends RST (`src/stream.rs:597-616`); a
//!   received RST reads as `ConnectionReset` (`src/stream.rs:377-379`).
//! * Received DATA frames are limited to `max_stream_window_size` (256 KiB,
//!   `src/session.rs:150`, `src/frame.rs:296`), and it sends frames as large as the write
//!   buffer and window allow (`src/stream.rs:564`).

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::StreamExt;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio_yamux::{Config, Control, Session, StreamHandle};

use crate::session::{Capability, MuxSession, Peer, Role, SessionParams};

/// `tokio-yamux` 0.3 as a [`Peer`].
#[derive(Clone, Copy, Debug, Default)]
pub struct TokioYamux;

enum Cmd {
    GoAway(oneshot::Sender<io::Result<()>>),
    Close(oneshot::Sender<()>),
}

/// A `tokio-yamux` session behind its driver task.
#[derive(Clone)]
pub struct TokioYamuxSession {
    control: Control,
    cmd: mpsc::Sender<Cmd>,
    inbound: Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<StreamHandle>>>,
}

impl Peer for TokioYamux {
    type Session = TokioYamuxSession;

    fn name(&self) -> String {
        "tokio-yamux-0.3".into()
    }

    fn missing(&self, cap: Capability) -> Option<String> {
        let why = match cap {
            Capability::Ping => {
                "tokio-yamux 0.3 has no ping API; send_ping is private \
                 (tokio-yamux-0.3.20/src/session.rs:238)"
            }
            Capability::RecvGoAway => {
                "tokio-yamux 0.3 answers a GoAway with its own and then ends the session \
                 (tokio-yamux-0.3.20/src/session.rs:542-550, 224-226)"
            }
            Capability::WriteAfterPeerFin => {
                "tokio-yamux 0.3 stops taking in frames, window updates included, once the \
                 peer's FIN is processed (tokio-yamux-0.3.20/src/stream.rs:275-277, 308-310)"
            }
            Capability::IsolateUnread => {
                "tokio-yamux 0.3 hands each stream its frames through a channel of 8 \
                 (tokio-yamux-0.3.20/src/session.rs:326); frames for a stream that is not read \
                 wait in read_pending_frames (session.rs:463-484), and while that queue is not \
                 empty the session stops reading the connection (session.rs:706-714), so one \
                 unread stream stalls all the others within its 256 KiB window"
            }
            Capability::AnswerPing
            | Capability::SendGoAway
            | Capability::SendReset
            | Capability::RecvReset
            | Capability::EofAfterPeerClose
            | Capability::KeepAlive => return None,
        };
        Some(why.into())
    }

    fn connect(
        &self,
        io: TcpStream,
        role: Role,
        params: &SessionParams,
    ) -> BoxFuture<'static, io::Result<TokioYamuxSession>> {
        let mut cfg = Config::default();
        if let Some(ka) = params.keep_alive {
            cfg.enable_keepalive = true;
            cfg.keepalive_interval = ka.interval;
        }
        Box::pin(async move {
            let session = match role {
                Role::Client => Session::new_client(io, cfg),
                Role::Server => Session::new_server(io, cfg),
            };
            let control = session.control();
            let (cmd_tx, cmd_rx) = mpsc::channel(8);
            let (in_tx, in_rx) = mpsc::unbounded_channel();
            tokio::spawn(drive(session, cmd_rx, in_tx));
            Ok(TokioYamuxSession {
                control,
                cmd: cmd_tx,
                inbound: Arc::new(tokio::sync::Mutex::new(in_rx)),
            })
        })
    }
}

async fn drive(
    mut session: Session<TcpStream>,
    mut cmds: mpsc::Receiver<Cmd>,
    inbound: mpsc::UnboundedSender<StreamHandle>,
) {
    poll_fn(move |cx| loop {
        match cmds.poll_recv(cx) {
            Poll::Ready(Some(Cmd::GoAway(reply))) => {
                let _ = reply.send(session.send_go_away(cx));
                continue;
            }
            Poll::Ready(Some(Cmd::Close(done))) => {
                // Sends GoAway; one more poll flushes it. Dropping the session closes the socket.
                let _ = session.shutdown(cx);
                let _ = session.poll_next_unpin(cx);
                let _ = done.send(());
                return Poll::Ready(());
            }
            // Every session handle is gone.
            Poll::Ready(None) => return Poll::Ready(()),
            Poll::Pending => {}
        }
        match session.poll_next_unpin(cx) {
            Poll::Ready(Some(Ok(stream))) => {
                let _ = inbound.send(stream);
            }
            Poll::Ready(Some(Err(_)) | None) => return Poll::Ready(()),
            Poll::Pending => return Poll::Pending,
        }
    })
    .await
}

fn map_err(e: tokio_yamux::Error) -> io::Error {
    let kind = match e {
        tokio_yamux::Error::SessionShutdown => io::ErrorKind::NotConnected,
        tokio_yamux::Error::ConnectionReset => io::ErrorKind::ConnectionReset,
        _ => io::ErrorKind::Other,
    };
    io::Error::new(kind, e)
}

impl MuxSession for TokioYamuxSession {
    type Stream = TokioYamuxStream;

    fn open(&self) -> BoxFuture<'_, io::Result<TokioYamuxStream>> {
        let mut control = self.control.clone();
        Box::pin(async move {
            let stream = control.open_stream().await.map_err(map_err)?;
            Ok(TokioYamuxStream::new(stream))
        })
    }

    fn accept(&self) -> BoxFuture<'_, io::Result<TokioYamuxStream>> {
        Box::pin(async move {
            let stream = self.inbound.lock().await.recv().await.ok_or_else(|| {
                io::Error::new(io::ErrorKind::NotConnected, "tokio-yamux session has ended")
            })?;
            Ok(TokioYamuxStream::new(stream))
        })
    }

    fn go_away(&self) -> BoxFuture<'_, io::Result<()>> {
        Box::pin(async move {
            let (tx, rx) = oneshot::channel();
            let ended = || io::Error::new(io::ErrorKind::NotConnected, "session has ended");
            self.cmd.send(Cmd::GoAway(tx)).await.map_err(|_| ended())?;
            rx.await.map_err(|_| ended())?
        })
    }

    fn reset(&self, stream: TokioYamuxStream) -> io::Result<()> {
        // Dropping a stream that is not half-closed sends RST.
        drop(stream);
        Ok(())
    }

    fn is_goaway_error(&self, err: &io::Error) -> bool {
        err.get_ref()
            .and_then(|e| e.downcast_ref::<tokio_yamux::Error>())
            .is_some_and(|e| *e == tokio_yamux::Error::RemoteGoAway)
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let (tx, rx) = oneshot::channel();
            if self.cmd.send(Cmd::Close(tx)).await.is_ok() {
                let _ = tokio::time::timeout(Duration::from_secs(2), rx).await;
            }
        })
    }
}

/// A `tokio-yamux` stream whose blocked writes also watch for window updates, and whose
/// half-close after the peer's FIN survives the peer closing the connection (see module docs).
pub struct TokioYamuxStream {
    inner: StreamHandle,
    /// A read returned EOF: the peer's FIN arrived.
    saw_eof: bool,
}

impl TokioYamuxStream {
    fn new(inner: StreamHandle) -> Self {
        TokioYamuxStream {
            inner,
            saw_eof: false,
        }
    }
}

impl AsyncRead for TokioYamuxStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(())))
            && buf.filled().len() == before
            && buf.remaining() > 0
        {
            self.saw_eof = true;
        }
        polled
    }
}

impl AsyncWrite for TokioYamuxStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if let Poll::Ready(r) = Pin::new(&mut self.inner).poll_write(cx, buf) {
            return Poll::Ready(r);
        }
        // Let the read path take in queued frames (window updates) and register for more.
        let _ = self.inner.poll_peek(cx, &mut ReadBuf::new(&mut []));
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match Pin::new(&mut self.inner).poll_shutdown(cx) {
            // After the peer's FIN, `close` sends ours and then tells the session the stream is
            // closed; that second message fails with BrokenPipe if the peer, having received
            // our FIN, already closed the connection (src/stream.rs:103-108, :588-593).
            // Whether our FIN arrived is checked where it matters: by the peer reading to EOF.
            Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::BrokenPipe && self.saw_eof => {
                Poll::Ready(Ok(()))
            }
            other => other,
        }
    }
}
