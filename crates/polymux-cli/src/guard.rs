//! What keeps a server's connection slots for the clients that use them (issue 9, item 6):
//! the one place where every server (echo, tunnel server, forward server) bounds connections
//! that have not proven themselves, and ends connections that went silent.
//!
//! The rules, in the order a connection meets them:
//!
//! 1. **Handshake.** An accepted connection holds no connection slot until it completes its
//!    handshake (echo: sends its first bytes; tunnel/forward: TLS and the token) within
//!    `--handshake-timeout`. At most [`MAX_PENDING_HANDSHAKES`] are in handshake at once; a
//!    newer one evicts the oldest ([`Handshakes`]), so that a flood of silent sockets cannot
//!    keep a client that speaks at once from being admitted.
//! 2. **Slot.** Only then does it take a `--max-clients` / `--max-connections` slot (see
//!    `crate::server::accept_clients`).
//! 3. **Silence.** While it is served, the bytes that arrive are counted ([`Watched`]); when
//!    nothing at all has arrived for `--idle-timeout`, the session is cut ([`watch_session`])
//!    and the slot freed.
//!
//! [`watch_session`] also reports the streams the engine refused (`Stats::refused_inbound`)
//! at info level, at most once per tick per session, so a burst gives one line.

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use polymux::Session;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::task::AbortHandle;
use tokio_util::sync::CancellationToken;

/// Connections in handshake at once; beyond it the oldest is dropped. Each costs one socket and
/// one small task, so this bounds what an unauthenticated flood can hold.
pub const MAX_PENDING_HANDSHAKES: usize = 1024;

/// The connections that are in their handshake. Clone it freely.
#[derive(Clone, Debug)]
pub struct Handshakes {
    inner: Arc<Mutex<Pending>>,
    cap: usize,
}

#[derive(Debug, Default)]
struct Pending {
    next: u64,
    /// Invariant: at most `cap` entries, oldest first (keys increase).
    live: BTreeMap<u64, CancellationToken>,
    evicted: u64,
    last_warning: Option<Instant>,
}

/// One connection's place among the pending handshakes; dropping it leaves.
#[derive(Debug)]
pub struct HandshakeSlot {
    seq: u64,
    evicted: CancellationToken,
    owner: Arc<Mutex<Pending>>,
}

impl Default for Handshakes {
    fn default() -> Self {
        Handshakes::new(MAX_PENDING_HANDSHAKES)
    }
}

impl Handshakes {
    /// At most `cap` handshakes at once.
    pub fn new(cap: usize) -> Handshakes {
        Handshakes {
            inner: Arc::default(),
            cap: cap.max(1),
        }
    }

    fn lock(inner: &Mutex<Pending>) -> MutexGuard<'_, Pending> {
        inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Registers a new handshake, evicting the oldest one when `cap` are pending.
    pub fn start(&self) -> HandshakeSlot {
        let mut pending = Self::lock(&self.inner);
        if pending.live.len() >= self.cap {
            if let Some((_, oldest)) = pending.live.pop_first() {
                oldest.cancel();
                pending.evicted += 1;
                let now = Instant::now();
                if pending
                    .last_warning
                    .is_none_or(|at| now.duration_since(at) >= Duration::from_secs(1))
                {
                    pending.last_warning = Some(now);
                    tracing::warn!(
                        "{} connections are in their handshake at once: dropping the oldest \
                         ({} dropped so far); a flood of connections that do not speak?",
                        self.cap,
                        pending.evicted
                    );
                }
            }
        }
        let seq = pending.next;
        pending.next += 1;
        let evicted = CancellationToken::new();
        pending.live.insert(seq, evicted.clone());
        HandshakeSlot {
            seq,
            evicted,
            owner: self.inner.clone(),
        }
    }

    /// Handshakes in progress.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        Self::lock(&self.inner).live.len()
    }
}

impl HandshakeSlot {
    /// Runs `handshake` within `timeout`, unless a newer connection evicts this one first.
    pub async fn run<T>(
        &self,
        timeout: Duration,
        handshake: impl std::future::Future<Output = anyhow::Result<T>>,
    ) -> anyhow::Result<T> {
        tokio::select! {
            _ = self.evicted.cancelled() => Err(anyhow::anyhow!(
                "dropped during the handshake: {MAX_PENDING_HANDSHAKES} newer connections were \
                 in their handshake"
            )),
            done = tokio::time::timeout(timeout, handshake) => done.map_err(|_| {
                anyhow::anyhow!("handshake not completed within {timeout:?} (--handshake-timeout)")
            })?,
        }
    }
}

impl Drop for HandshakeSlot {
    fn drop(&mut self) {
        Handshakes::lock(&self.owner).live.remove(&self.seq);
    }
}

/// Waits until the peer has sent its first bytes (without consuming them): the echo server's
/// handshake. Fails if the peer closes first.
pub async fn first_bytes(tcp: &tokio::net::TcpStream) -> anyhow::Result<()> {
    let mut probe = [0u8; 1];
    match tcp.peek(&mut probe).await? {
        0 => anyhow::bail!("the client closed the connection before sending anything"),
        _ => Ok(()),
    }
}

/// Bytes received on a connection, shared between its [`Watched`] transport and its watcher.
#[derive(Clone, Debug, Default)]
pub struct Activity(Arc<AtomicU64>);

impl Activity {
    fn bytes(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A transport that counts the bytes it reads into an [`Activity`]; everything else passes
/// through unchanged (vectored writes included, so the session's batching is kept).
#[derive(Debug)]
pub struct Watched<T> {
    io: T,
    activity: Activity,
}

impl<T> Watched<T> {
    /// Wraps `io`; read counts go to the returned [`Activity`].
    pub fn new(io: T) -> (Watched<T>, Activity) {
        let activity = Activity::default();
        (
            Watched {
                io,
                activity: activity.clone(),
            },
            activity,
        )
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.io).poll_read(cx, buf);
        let read = buf.filled().len() - before;
        if read > 0 {
            self.activity.0.fetch_add(read as u64, Ordering::Relaxed);
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// What [`watch_session`] watches for one session.
#[derive(Debug)]
pub struct Watch {
    /// The session's number in the log.
    pub id: u64,
    /// The client.
    pub peer: SocketAddr,
    /// The bytes that arrive on its transport.
    pub activity: Activity,
    /// `--idle-timeout`; `None` disables it.
    pub idle_timeout: Option<Duration>,
    /// Cuts the session (aborts its driver, which closes the transport and ends the session).
    pub driver: AbortHandle,
    /// `--max-streams`, for the refusal message.
    pub max_streams: usize,
}

/// Runs until `session` ends: cuts it when nothing arrived for the idle timeout, and logs the
/// streams the engine refused (at info, at most once per tick).
pub async fn watch_session(session: &Session, watch: Watch) {
    let tick = watch.idle_timeout.map_or(Duration::from_secs(1), |idle| {
        (idle / 4).clamp(Duration::from_millis(50), Duration::from_secs(1))
    });
    let mut seen_bytes = watch.activity.bytes();
    let mut quiet_since = Instant::now();
    let mut seen_refused = session.stats().refused_inbound;
    loop {
        tokio::select! {
            _ = session.closed() => return,
            _ = tokio::time::sleep(tick) => {}
        }
        // Until the engine logs its own refusals (issue 9 item 4, engine side), say it here.
        let refused = session.stats().refused_inbound;
        if refused > seen_refused {
            tracing::info!(
                "session {} of {}: refused {} new stream(s) ({refused} so far): the limit is \
                 --max-streams {} per session",
                watch.id,
                watch.peer,
                refused - seen_refused,
                watch.max_streams
            );
            seen_refused = refused;
        }
        let bytes = watch.activity.bytes();
        if bytes != seen_bytes {
            seen_bytes = bytes;
            quiet_since = Instant::now();
        } else if let Some(idle) = watch.idle_timeout.filter(|&i| quiet_since.elapsed() >= i) {
            tracing::info!(
                "session {} of {}: nothing received for {idle:?} (--idle-timeout); closing it",
                watch.id,
                watch.peer
            );
            watch.driver.abort();
            session.closed().await;
            return;
        }
    }
}

/// The single place where `--memory-limit` reaches the sessions' configuration.
///
/// `sessions` is how many sessions may be admitted at once. Until the engine has a budget that
/// all sessions share, each session's receive budget is an equal share of the limit, between
/// one stream window and the engine's default; so the received-but-unread data of all admitted
/// sessions together stays within `limit` (unless the shares hit that floor).
// WIRE (H1's shared budget): once `polymux::Config` takes a shared `MemoryBudget`, create one
// here with `limit` and set it on `builder` (all sessions of a server share one Config, hence
// one budget), and keep the per-session budget at the engine's default.
pub fn apply_memory_limit(
    builder: polymux::ConfigBuilder,
    base: &polymux::Config,
    limit: usize,
    sessions: usize,
) -> polymux::ConfigBuilder {
    let share = (limit / sessions.max(1)).clamp(
        base.stream_window() as usize,
        base.session_recv_budget()
            .max(base.stream_window() as usize),
    );
    builder.session_recv_budget(share)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_oldest_handshake_is_evicted_when_full() {
        let handshakes = Handshakes::new(2);
        let first = handshakes.start();
        let _second = handshakes.start();
        let third = handshakes.start();
        assert_eq!(handshakes.len(), 2);
        let evicted = first
            .run(
                Duration::from_secs(60),
                std::future::pending::<anyhow::Result<()>>(),
            )
            .await
            .expect_err("evicted");
        assert!(
            evicted.to_string().contains("newer connections"),
            "{evicted}"
        );
        drop(third);
        assert_eq!(handshakes.len(), 1);
        let timed_out = handshakes
            .start()
            .run(
                Duration::from_millis(1),
                std::future::pending::<anyhow::Result<()>>(),
            )
            .await
            .expect_err("timed out");
        assert!(timed_out.to_string().contains("--handshake-timeout"));
    }

    #[test]
    fn memory_shares_stay_within_the_engine_bounds() {
        let base = polymux::Config::yamux();
        let share = |limit, sessions| {
            apply_memory_limit(base.to_builder(), &base, limit, sessions)
                .build()
                .expect("valid")
                .session_recv_budget()
        };
        assert_eq!(share(256 << 20, 16), 16 << 20);
        assert_eq!(share(256 << 20, 1), base.session_recv_budget());
        assert_eq!(share(1 << 20, 1024), base.stream_window() as usize);
    }
}
