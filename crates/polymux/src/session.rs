//! The session handle: a cheap `Clone + Send + Sync` reference to one multiplexed session.
//!
//! All handles and streams share one [`Connection`] behind one mutex (no lock or channel per
//! stream). Each operation locks it briefly, runs one sans-I/O command, and — when the command
//! cannot complete — leaves its waker in the engine, which wakes it when it can.
//!
//! The transport sits behind a second mutex, so that a stream's writer can put its frames on
//! it directly when the output is idle (see `direct.rs`). Lock order: transport, then
//! engine — never the engine while waiting for the transport (writers only `try_lock` it).

use std::future::poll_fn;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use polymux_proto::{Config, Connection, Dialect, Error, Role, Stats};

use crate::driver::Driver;
use crate::rx_buffers::RxBuffers;
use crate::stream::Stream;
use crate::transport::Transport;

/// State shared by the session handles, the streams and the driver.
pub(crate) struct Shared {
    conn: Mutex<Connection>,
    /// The transport and its flush state.
    io: Mutex<Io>,
    /// Live `Session`, `Incoming` and `Stream` handles. When the last one goes, nobody can use
    /// the session any more, so it closes gracefully (instead of idling on keep-alives forever).
    handles: AtomicUsize,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("conn", &self.conn)
            .field("handles", &self.handles)
            .finish_non_exhaustive()
    }
}

impl Shared {
    pub(crate) fn acquire(&self) {
        self.handles.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn release(&self) {
        if self.handles.fetch_sub(1, Ordering::AcqRel) == 1 {
            tracing::debug!("last handle dropped; closing the session");
            self.lock().close(Instant::now());
        }
    }

    /// Locks the engine. A panic while holding the lock cannot leave the engine in a state
    /// that is unsafe to keep using (every command is a small state update), so poisoning is
    /// ignored rather than propagated as a second panic.
    pub(crate) fn lock(&self) -> Engine<'_> {
        let guard = self
            .conn
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        Engine { guard: Some(guard) }
    }

    /// Locks the transport (the driver). Same poisoning rule as [`lock`](Self::lock).
    pub(crate) fn lock_io(&self) -> MutexGuard<'_, Io> {
        self.io
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Whether some thread holds the engine's lock (the wake-up tests check that tasks are
    /// woken only once it is released).
    #[cfg(test)]
    pub(crate) fn engine_locked(&self) -> bool {
        matches!(
            self.conn.try_lock(),
            Err(std::sync::TryLockError::WouldBlock)
        )
    }

    /// The transport, if nobody else is using it (a stream's direct write).
    pub(crate) fn try_lock_io(&self) -> Option<MutexGuard<'_, Io>> {
        match self.io.try_lock() {
            Ok(guard) => Some(guard),
            Err(std::sync::TryLockError::Poisoned(poisoned)) => Some(poisoned.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) => None,
        }
    }
}

/// The locked engine. Rule kept here: the driver is woken only after the lock is released
/// (the engine defers its wakes, `Connection::defer_driver_wakes`), so that a driver on
/// another worker thread does not wake up only to sleep on the lock still held.
pub(crate) struct Engine<'a> {
    /// `Some` until dropped.
    guard: Option<MutexGuard<'a, Connection>>,
}

impl std::ops::Deref for Engine<'_> {
    type Target = Connection;

    fn deref(&self) -> &Connection {
        self.guard
            .as_deref()
            .unwrap_or_else(|| unreachable!("taken only on drop"))
    }
}

impl std::ops::DerefMut for Engine<'_> {
    fn deref_mut(&mut self) -> &mut Connection {
        self.guard
            .as_deref_mut()
            .unwrap_or_else(|| unreachable!("taken only on drop"))
    }
}

impl Drop for Engine<'_> {
    fn drop(&mut self) {
        let wake = self.guard.as_mut().and_then(|conn| conn.take_driver_wake());
        drop(self.guard.take());
        if let Some(waker) = wake {
            waker.wake();
        }
    }
}

/// The transport, type-erased so streams (which are not generic) can write to it.
pub(crate) type BoxedTransport = Box<dyn Transport + Send>;

/// What the transport's lock guards: the transport, and the one chore both of its writers (the
/// driver, a direct write) share, which is no business of the engine's.
pub(crate) struct Io {
    /// `None` once the driver has finished (or was dropped) and closed it.
    pub(crate) transport: Option<BoxedTransport>,
    /// Bytes were written that the transport may hold until a flush; the driver flushes once
    /// it has no batch left to write, and clears this only when the flush completes.
    pub(crate) needs_flush: bool,
    /// The driver's receive buffers, here so that a reader about to wait can read on the
    /// driver's behalf (`inline_read.rs`). `None` while the driver uses them (and before it
    /// starts).
    pub(crate) rx: Option<RxBuffers>,
    /// What such a read met that only the driver handles: the end of input (`Ok`) or an
    /// error.
    pub(crate) read_end: Option<std::io::Result<()>>,
    /// The wakers that such a read's input made ready (kept for its capacity).
    pub(crate) woken: Vec<std::task::Waker>,
    /// What such a read registers with the transport when it finds nothing: wakes the reader
    /// and the driver.
    pub(crate) input_waker: crate::inline_read::InputWaker,
}

/// A multiplexed session. Clone it freely; every clone refers to the same session.
///
/// Created together with its [`Driver`], which must be spawned (or polled) for anything to
/// happen. When every `Session` clone, every [`Stream`] and every [`Incoming`] is dropped, the
/// session closes gracefully as if [`close`](Session::close) had been called.
#[derive(Debug)]
pub struct Session {
    shared: Arc<Shared>,
    dialect: Dialect,
}

impl Clone for Session {
    fn clone(&self) -> Self {
        self.shared.acquire();
        Session {
            shared: self.shared.clone(),
            dialect: self.dialect,
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.shared.release();
    }
}

impl Session {
    /// A session on `io` as the dialling side (odd stream ids).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use futures::{AsyncReadExt, AsyncWriteExt};
    /// use polymux::{Config, Session};
    /// use tokio_util::compat::TokioAsyncReadCompatExt;
    ///
    /// // Any futures-io byte stream; here one end of an in-memory pipe.
    /// let (a, b) = tokio::io::duplex(64 * 1024);
    /// let (client, driver) = Session::client(a.compat(), Config::yamux());
    /// tokio::spawn(driver); // the driver does the I/O: spawn it on any executor
    /// # let (server, driver) = Session::server(b.compat(), Config::yamux());
    /// # tokio::spawn(driver);
    ///
    /// let mut stream = client.open().await?;
    /// stream.write_all(b"hello").await?;
    /// # let mut inbound = server.accept().await?;
    /// # let mut buf = [0; 5];
    /// # inbound.read_exact(&mut buf).await?;
    /// # assert_eq!(&buf, b"hello");
    /// # Ok(()) }
    /// ```
    pub fn client<T>(io: T, config: Config) -> (Session, Driver<T>)
    where
        T: Transport + Send + 'static,
    {
        Session::new(io, config, Role::Client)
    }

    /// A session on `io` as the accepting side (even stream ids).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use polymux::{Config, Session};
    /// use tokio_util::compat::TokioAsyncReadCompatExt;
    ///
    /// let (a, b) = tokio::io::duplex(64 * 1024);
    /// let (server, driver) = Session::server(b.compat(), Config::smux_v2());
    /// tokio::spawn(driver);
    /// # let (client, driver) = Session::client(a.compat(), Config::smux_v2());
    /// # tokio::spawn(driver);
    /// # let _opened = client.open().await?;
    ///
    /// let stream = server.accept().await?;
    /// assert_eq!(stream.id().0 % 2, 1, "the client opened it: an odd id");
    /// # Ok(()) }
    /// ```
    pub fn server<T>(io: T, config: Config) -> (Session, Driver<T>)
    where
        T: Transport + Send + 'static,
    {
        Session::new(io, config, Role::Server)
    }

    /// A session on `io` in `role`.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use polymux::{Config, Role, Session};
    /// use tokio_util::compat::TokioAsyncReadCompatExt;
    ///
    /// let (a, _b) = tokio::io::duplex(64 * 1024);
    /// let (session, driver) = Session::new(a.compat(), Config::net_mux(), Role::Client);
    /// tokio::spawn(driver);
    /// assert_eq!(session.dialect(), polymux::Dialect::NetMux);
    /// # Ok(()) }
    /// ```
    pub fn new<T>(io: T, config: Config, role: Role) -> (Session, Driver<T>)
    where
        T: Transport + Send + 'static,
    {
        let dialect = config.dialect();
        let shared = Arc::new(Shared {
            conn: Mutex::new({
                let mut conn = Connection::new(role, config, Instant::now());
                conn.defer_driver_wakes(true);
                conn
            }),
            io: Mutex::new(Io {
                transport: Some(Box::new(io)),
                needs_flush: false,
                rx: None,
                read_end: None,
                woken: Vec::new(),
                input_waker: crate::inline_read::InputWaker::default(),
            }),
            handles: AtomicUsize::new(1),
        });
        let driver = Driver::new(shared.clone());
        (Session { shared, dialect }, driver)
    }

    /// The state this handle shares with its driver and streams (for the wake-up tests).
    #[cfg(test)]
    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// The wire protocol of this session.
    ///
    /// ```
    /// # use tokio_util::compat::TokioAsyncReadCompatExt;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use polymux::{Config, Session};
    /// # let (a, b) = tokio::io::duplex(64 * 1024);
    /// # let (client, driver) = Session::client(a.compat(), Config::yamux());
    /// # tokio::spawn(driver);
    /// # let (server, driver) = Session::server(b.compat(), Config::yamux());
    /// # tokio::spawn(driver);
    /// assert_eq!(client.dialect(), polymux::Dialect::Yamux);
    /// # Ok(()) }
    /// ```
    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// Opens a new stream. The open is sent at once, so the peer sees the stream even before
    /// this side writes anything. Waits while too many opens are unacknowledged (yamux,
    /// net-mux); data may be written before the peer's ACK in every dialect, and a refused
    /// open shows as a reset on the stream's first read or write.
    ///
    /// Fails with [`Error::GoAway`] after the peer's GoAway, [`Error::SessionClosed`] after
    /// [`close`](Self::close), [`Error::TooManyStreams`] at the stream limit, or the session's
    /// end reason.
    ///
    /// ```
    /// # use tokio_util::compat::TokioAsyncReadCompatExt;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use polymux::{Config, Session};
    /// # let (a, b) = tokio::io::duplex(64 * 1024);
    /// # let (client, driver) = Session::client(a.compat(), Config::yamux());
    /// # tokio::spawn(driver);
    /// # let (server, driver) = Session::server(b.compat(), Config::yamux());
    /// # tokio::spawn(driver);
    /// use futures::{AsyncReadExt, AsyncWriteExt};
    ///
    /// # tokio::spawn(async move {
    /// #     let mut s = server.accept().await.expect("accept");
    /// #     let mut buf = Vec::new();
    /// #     s.read_to_end(&mut buf).await.expect("read");
    /// #     s.write_all(&buf).await.expect("echo");
    /// #     s.close().await.expect("close");
    /// # });
    /// // The peer echoes what it reads.
    /// let mut stream = client.open().await?;
    /// stream.write_all(b"ping").await?;
    /// stream.close().await?; // half-close: the peer reads EOF, we can still read
    /// let mut reply = Vec::new();
    /// stream.read_to_end(&mut reply).await?;
    /// assert_eq!(reply, b"ping");
    /// # Ok(()) }
    /// ```
    pub async fn open(&self) -> Result<Stream, Error> {
        let key = poll_fn(|cx| self.shared.lock().poll_open(cx.waker(), Instant::now())).await?;
        // Made before waiting, so that dropping this future releases the stream.
        let stream = Stream::new(self.shared.clone(), key);
        // Whether the opener waits for the peer's ACK is the engine's decision (no dialect does).
        poll_fn(|cx| self.shared.lock().poll_open_ready(key, cx.waker())).await?;
        Ok(stream)
    }

    /// Waits for the next inbound stream and acknowledges it to the peer. Fails with the
    /// session's end reason once it has ended.
    ///
    /// ```
    /// # use tokio_util::compat::TokioAsyncReadCompatExt;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use polymux::{Config, Session};
    /// # let (a, b) = tokio::io::duplex(64 * 1024);
    /// # let (client, driver) = Session::client(a.compat(), Config::yamux());
    /// # tokio::spawn(driver);
    /// # let (server, driver) = Session::server(b.compat(), Config::yamux());
    /// # tokio::spawn(driver);
    /// use futures::AsyncReadExt;
    ///
    /// # let opened = client.open().await?;
    /// // The peer opened a stream.
    /// let mut stream = server.accept().await?;
    /// assert_eq!(stream.id(), opened.id());
    /// # drop(opened); // half-closes: the read below sees EOF
    /// let mut rest = Vec::new();
    /// stream.read_to_end(&mut rest).await?;
    /// # Ok(()) }
    /// ```
    pub async fn accept(&self) -> Result<Stream, Error> {
        let key = poll_fn(|cx| self.shared.lock().poll_accept(cx.waker(), Instant::now())).await?;
        Ok(Stream::new(self.shared.clone(), key))
    }

    /// Inbound streams as a [`futures::Stream`]; it ends when the session ends.
    ///
    /// ```
    /// # use tokio_util::compat::TokioAsyncReadCompatExt;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use polymux::{Config, Session};
    /// # let (a, b) = tokio::io::duplex(64 * 1024);
    /// # let (client, driver) = Session::client(a.compat(), Config::yamux());
    /// # tokio::spawn(driver);
    /// # let (server, driver) = Session::server(b.compat(), Config::yamux());
    /// # tokio::spawn(driver);
    /// use futures::StreamExt;
    ///
    /// # let _a = client.open().await?;
    /// # let _b = client.open().await?;
    /// // The peer opened two streams.
    /// let mut incoming = server.incoming();
    /// let first = incoming.next().await.expect("a stream");
    /// let second = incoming.next().await.expect("another stream");
    /// assert!(first.id() < second.id());
    /// # Ok(()) }
    /// ```
    pub fn incoming(&self) -> Incoming {
        self.shared.acquire();
        Incoming {
            shared: self.shared.clone(),
        }
    }

    /// Measures the round trip to the peer with a Ping. [`Error::Unsupported`] on smux.
    ///
    /// ```
    /// # use tokio_util::compat::TokioAsyncReadCompatExt;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use polymux::{Config, Session};
    /// # let (a, b) = tokio::io::duplex(64 * 1024);
    /// # let (client, driver) = Session::client(a.compat(), Config::yamux());
    /// # tokio::spawn(driver);
    /// # let (server, driver) = Session::server(b.compat(), Config::yamux());
    /// # tokio::spawn(driver);
    /// let rtt = client.ping().await?;
    /// assert_eq!(client.stats().rtt, Some(rtt));
    /// # Ok(()) }
    /// ```
    pub async fn ping(&self) -> Result<Duration, Error> {
        let ticket = self.shared.lock().start_ping(Instant::now())?;
        poll_fn(|cx| self.shared.lock().poll_ping(ticket, cx.waker())).await
    }

    /// Stops accepting streams: the peer may open no more (each further open is refused);
    /// existing streams continue, and this side may still open streams. Sent as GoAway where
    /// the dialect has it; smux has none, so there nothing is sent and each further open is
    /// refused with FIN.
    ///
    /// ```
    /// # use tokio_util::compat::TokioAsyncReadCompatExt;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use polymux::{Config, Session};
    /// # let (a, b) = tokio::io::duplex(64 * 1024);
    /// # let (client, driver) = Session::client(a.compat(), Config::yamux());
    /// # tokio::spawn(driver);
    /// # let (server, driver) = Session::server(b.compat(), Config::yamux());
    /// # tokio::spawn(driver);
    /// server.go_away()?;
    /// // The server may still open streams; the client's opens fail once the GoAway arrives.
    /// let _stream = server.open().await?;
    /// # Ok(()) }
    /// ```
    pub fn go_away(&self) -> Result<(), Error> {
        self.shared.lock().go_away()
    }

    /// Closes gracefully: GoAway (where the dialect has it), no new streams (refused, with FIN
    /// on smux), open streams run to completion (up to [`Config::close_timeout`]), then the
    /// transport is closed. Returns when the session has ended.
    ///
    /// ```
    /// # use tokio_util::compat::TokioAsyncReadCompatExt;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use polymux::{Config, Session};
    /// # let (a, b) = tokio::io::duplex(64 * 1024);
    /// # let (client, driver) = Session::client(a.compat(), Config::yamux());
    /// # tokio::spawn(driver);
    /// # let (server, driver) = Session::server(b.compat(), Config::yamux());
    /// # tokio::spawn(driver);
    /// use polymux::Error;
    ///
    /// client.close().await;
    /// assert_eq!(client.end_reason(), Some(Error::SessionClosed));
    /// assert!(matches!(client.open().await, Err(Error::SessionClosed)));
    /// # Ok(()) }
    /// ```
    pub async fn close(&self) {
        self.shared.lock().close(Instant::now());
        poll_fn(|cx| self.shared.lock().poll_ended(cx.waker()).map(drop)).await;
    }

    /// Waits until the session ends, and returns why.
    ///
    /// ```
    /// # use tokio_util::compat::TokioAsyncReadCompatExt;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use polymux::{Config, Session};
    /// # let (a, b) = tokio::io::duplex(64 * 1024);
    /// # let (client, driver) = Session::client(a.compat(), Config::yamux());
    /// # tokio::spawn(driver);
    /// # let (server, driver) = Session::server(b.compat(), Config::yamux());
    /// # tokio::spawn(driver);
    /// use polymux::Error;
    ///
    /// client.close().await;
    /// // The server sees the client's GoAway(normal).
    /// assert_eq!(server.closed().await, Error::GoAway(0));
    /// # Ok(()) }
    /// ```
    pub async fn closed(&self) -> Error {
        poll_fn(|cx| self.shared.lock().poll_ended(cx.waker())).await
    }

    /// Why the session ended, if it has.
    ///
    /// ```
    /// # use tokio_util::compat::TokioAsyncReadCompatExt;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use polymux::{Config, Session};
    /// # let (a, b) = tokio::io::duplex(64 * 1024);
    /// # let (client, driver) = Session::client(a.compat(), Config::yamux());
    /// # tokio::spawn(driver);
    /// # let (server, driver) = Session::server(b.compat(), Config::yamux());
    /// # tokio::spawn(driver);
    /// assert_eq!(client.end_reason(), None);
    /// client.close().await;
    /// assert_eq!(client.end_reason(), Some(polymux::Error::SessionClosed));
    /// # Ok(()) }
    /// ```
    pub fn end_reason(&self) -> Option<Error> {
        self.shared.lock().end_reason().cloned()
    }

    /// Counters: streams, bytes, the latest RTT, buffered bytes.
    ///
    /// ```
    /// # use tokio_util::compat::TokioAsyncReadCompatExt;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use polymux::{Config, Session};
    /// # let (a, b) = tokio::io::duplex(64 * 1024);
    /// # let (client, driver) = Session::client(a.compat(), Config::yamux());
    /// # tokio::spawn(driver);
    /// # let (server, driver) = Session::server(b.compat(), Config::yamux());
    /// # tokio::spawn(driver);
    /// use futures::AsyncWriteExt;
    ///
    /// let mut stream = client.open().await?;
    /// stream.write_all(b"12345").await?;
    /// let stats = client.stats();
    /// assert_eq!(stats.opened_outbound, 1);
    /// assert_eq!(stats.bytes_sent, 5);
    /// # Ok(()) }
    /// ```
    pub fn stats(&self) -> Stats {
        self.shared.lock().stats()
    }
}

/// Inbound streams of a [`Session`] as a [`futures::Stream`]. Ends when the session ends.
#[derive(Debug)]
pub struct Incoming {
    shared: Arc<Shared>,
}

impl Drop for Incoming {
    fn drop(&mut self) {
        self.shared.release();
    }
}

impl futures::Stream for Incoming {
    type Item = Stream;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Stream>> {
        let polled = self.shared.lock().poll_accept(cx.waker(), Instant::now());
        match polled {
            Poll::Ready(Ok(key)) => Poll::Ready(Some(Stream::new(self.shared.clone(), key))),
            Poll::Ready(Err(_)) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}
