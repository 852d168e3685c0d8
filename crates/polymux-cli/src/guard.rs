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
//! The engine logs the streams it refuses itself (info, once per burst, with the reason); what
//! it cannot know is which client that is and which flag sets the limit, so [`watch_session`]
//! says that once per session, the first time the stream limit (or the accept backlog, capped
//! at it) refuses a stream.

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

/// Runs until `session` ends: cuts it when nothing arrived for the idle timeout, and names the
/// client and the flag the first time the engine refuses a stream beyond `--max-streams`
/// (once per session; the engine itself logs every burst).
pub async fn watch_session(session: &Session, watch: Watch) {
    let tick = watch.idle_timeout.map_or(Duration::from_secs(1), |idle| {
        (idle / 4).clamp(Duration::from_millis(50), Duration::from_secs(1))
    });
    let mut seen_bytes = watch.activity.bytes();
    let mut quiet_since = Instant::now();
    let mut told_limit = false;
    loop {
        tokio::select! {
            _ = session.closed() => return,
            _ = tokio::time::sleep(tick) => {}
        }
        // The accept backlog is capped at `--max-streams` too (`session_config`), so a burst
        // of opens may meet it first: both refusals point at the same flag.
        let stats = session.stats();
        if !told_limit && stats.refused_limit + stats.refused_backlog > 0 {
            told_limit = true;
            tracing::info!(
                "session {} of {}: refusing new streams: the limit is --max-streams {} per \
                 session (the engine logs each burst of refusals)",
                watch.id,
                watch.peer,
                watch.max_streams
            );
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

/// The largest minimum share [`apply_memory_limit`] gives a session: windows grow to half of
/// it (8 MiB), which fills a 1 Gbit/s path with a 60 ms round trip.
pub const MAX_MIN_SHARE: usize = 16 << 20;

/// The single place where `--memory-limit` reaches the sessions' configuration: ONE shared
/// [`polymux::MemoryBudget`] of `limit` bytes, set on the builder whose `Config` every session
/// of the server uses (a `Config` clones the handle, so they all charge the same pool). Call it
/// once per server, never per session.
///
/// `sessions` is how many sessions the server admits at once (`--max-clients`, echo
/// `--max-connections`). The pool's minimum share (what each session may hold even when the
/// pool is full) is `limit / sessions`, kept between the engine's default (512 KiB, the
/// liveness floor: one window and the buffers it pins) and [`MAX_MIN_SHARE`]. Why that value:
/// - with a pool, a stream's window grows to at most half the minimum share, so a larger
///   share lets a single bulk session on a long path go faster (tunnel server: 256 MiB / 16
///   clients = 16 MiB, windows up to 8 MiB; echo: 256 MiB / 256 = 1 MiB, windows 512 KiB);
/// - the pool's use is bounded by `limit + sessions × share`; with the share at most
///   `limit / sessions` that is at most twice the limit (only when `limit / sessions` is below
///   the 512 KiB floor does the floor set the bound).
///
/// Each session also keeps the engine's own `session_recv_budget` (32 MiB), so one
/// connection never holds more than that, however empty the pool is.
pub fn apply_memory_limit(
    builder: polymux::ConfigBuilder,
    limit: usize,
    sessions: usize,
) -> polymux::ConfigBuilder {
    let limit = limit.max(1);
    // The engine's default minimum share, capped at the limit (a tiny limit stays a limit).
    let floor = polymux::MemoryBudget::new(limit).min_share();
    let min_share = (limit / sessions.max(1)).clamp(floor, MAX_MIN_SHARE.max(floor));
    builder.memory_budget(Some(polymux::MemoryBudget::with_min_share(
        limit, min_share,
    )))
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
    fn one_pool_per_server_with_a_deliberate_min_share() {
        let pool = |limit, sessions| {
            let config = apply_memory_limit(polymux::Config::yamux().to_builder(), limit, sessions)
                .build()
                .expect("valid");
            assert_eq!(
                config.session_recv_budget(),
                polymux::Config::yamux().session_recv_budget(),
                "the per-session budget stays the engine's"
            );
            let budget = config.memory_budget().expect("a pool").clone();
            // Every session of the server clones this Config, hence shares the pool.
            assert_eq!(config.clone().memory_budget(), Some(&budget));
            assert_eq!(budget.limit(), limit);
            budget.min_share()
        };
        assert_eq!(
            pool(256 << 20, 16),
            16 << 20,
            "tunnel server: limit / clients"
        );
        assert_eq!(pool(256 << 20, 256), 1 << 20, "echo: limit / connections");
        assert_eq!(pool(256 << 20, 1), MAX_MIN_SHARE, "capped");
        assert_eq!(
            pool(64 << 20, 4096),
            512 << 10,
            "floor: the engine's default"
        );
        assert_eq!(pool(100 << 10, 16), 100 << 10, "never above the limit");
    }
}
