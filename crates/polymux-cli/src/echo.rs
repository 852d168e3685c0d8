//! `polymux echo`: a multiplexing echo server, usable as a test peer for other
//! implementations and as the far end of `polymux bench --connect`.
//!
//! It speaks the bare protocol on plain TCP — no preamble, no token, no TLS — so that any
//! yamux/smux/net-mux client can talk to it. Every inbound stream is echoed as it arrives until
//! the client half-closes; then the server half-closes its side. The server never opens
//! streams.
//!
//! Connections are admitted like every server's (`crate::server::accept_clients`, rules in
//! `crate::guard`): the first bytes must arrive within `--handshake-timeout` before a
//! `--max-connections` slot is taken, and a connection silent for `--idle-timeout` is cut.
//!
//! # Echo memory (issue 9, item 6)
//!
//! An idle stream holds one small task with a [`SMALL_BUFFER`]-byte buffer, whatever it moved
//! before. A stream whose read fills that buffer (data is flowing) borrows a [`LARGE_BUFFER`]
//! from the server's [`EchoBuffers`] and gives it back as soon as a read would wait: the large
//! buffers in use at once are bounded by the pool ([`EchoBuffers::for_memory_limit`]), and
//! a stream that finds the pool empty echoes through its small buffer (slower, never stuck).
use std::io;
use std::sync::Arc;
use std::time::Duration;

use anyhow::anyhow;
use bytes::BytesMut;
use futures::FutureExt;
use polymux::{Config, Session};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::Semaphore;
use tokio_util::task::TaskTracker;

use crate::args::{ServerGuardArgs, ShutdownArgs};
use crate::limits::Limiter;
use crate::protocol::{session_config, MemoryLimit, Protocol, SessionTuning};
use crate::server::{self, Admission, Guard};
use crate::services::parse_listen_addr;
use crate::sessions::SessionSet;
use crate::shutdown::Shutdown;
use crate::transport;

/// The buffer every stream keeps (in its task).
pub const SMALL_BUFFER: usize = 256;
/// The buffer a stream borrows while data flows.
pub const LARGE_BUFFER: usize = 64 * 1024;

/// `polymux echo`.
#[derive(clap::Args, Clone, Debug)]
#[command(after_help = concat!(
    "Examples:\n",
    "  polymux echo --listen 127.0.0.1:9000 --protocol smux2\n",
    "  polymux bench --connect 127.0.0.1:9000 --protocol smux2\n\n",
    "The echo server speaks the bare protocol (no token, no TLS): keep it on loopback or a\n",
    "trusted network.\n\n",
    crate::error::exit_codes_help!()
))]
pub struct EchoArgs {
    /// Address to listen on (HOST:PORT).
    #[arg(long, value_name = "ADDR", value_parser = parse_listen_addr)]
    pub listen: String,
    /// Client connections (sessions) served at once; only connections that sent their first
    /// bytes count.
    #[arg(long, value_name = "N", default_value_t = 256)]
    pub max_connections: usize,
    /// Streams per session: exactly this many are admitted, the next is refused.
    #[arg(long, value_name = "N", default_value_t = 65_536)]
    pub max_streams: usize,
    #[command(flatten)]
    pub guard: ServerGuardArgs,
    #[command(flatten)]
    pub shutdown: ShutdownArgs,
}

/// The large echo buffers a server lends to streams that move data. Clone it freely.
#[derive(Clone, Debug)]
pub struct EchoBuffers {
    permits: Arc<Semaphore>,
}

impl EchoBuffers {
    /// At most `count` large buffers in use at once.
    pub fn new(count: usize) -> EchoBuffers {
        EchoBuffers {
            permits: Arc::new(Semaphore::new(count.clamp(1, Semaphore::MAX_PERMITS))),
        }
    }

    /// A sixteenth of `--memory-limit` in large buffers (256 of them for 256 MiB).
    pub fn for_memory_limit(limit: usize) -> EchoBuffers {
        EchoBuffers::new(limit / 16 / LARGE_BUFFER)
    }
}

/// The echo server's session configuration: a deep accept backlog (a benchmark opens
/// streams in bursts of a thousand, bounded by `max_streams`), no keep-alive of its own
/// (clients probe), and exactly `max_streams` live streams per session (the engine refuses
/// the rest, counted in `Stats`).
pub fn echo_config(
    protocol: Protocol,
    max_streams: usize,
    close_timeout: Duration,
    memory: Option<MemoryLimit>,
) -> anyhow::Result<Config> {
    session_config(
        protocol,
        &SessionTuning {
            max_streams,
            keepalive: None,
            close_timeout,
            accept_backlog: 4096,
            memory,
        },
    )
}

/// Runs the echo server until shutdown.
pub async fn run(args: EchoArgs, protocol: Protocol, shutdown: Shutdown) -> anyhow::Result<()> {
    let timeout = args.shutdown.shutdown_timeout;
    let memory = MemoryLimit {
        limit: args.guard.memory_limit,
        sessions: args.max_connections,
    };
    let config = echo_config(protocol, args.max_streams, timeout, Some(memory))?;
    if !transport::is_loopback(&args.listen).await? {
        tracing::warn!(
            "the echo server has no authentication; anyone who can reach {} can use it",
            args.listen
        );
    }
    let listener =
        transport::bind_with_backlog(&args.listen, "--listen", args.guard.backlog.backlog).await?;
    tracing::info!(
        "echo server listening on {} ({protocol})",
        listener.local_addr()?
    );
    let set = SessionSet::default();
    let tasks = TaskTracker::new();
    let streams = TaskTracker::new();
    let limiter = Limiter::new(args.max_connections, "connections", "--max-connections");
    let buffers = EchoBuffers::for_memory_limit(args.guard.memory_limit);
    let guard = Guard::from_args(&args.guard, args.max_streams);
    let on_session = {
        let streams = streams.clone();
        let shutdown = shutdown.clone();
        move |entry: crate::sessions::Entry| {
            let streams = streams.clone();
            let buffers = buffers.clone();
            let shutdown = shutdown.clone();
            async move { serve_session(&entry.session, &streams, &buffers, Some(&shutdown)).await }
        }
    };
    server::accept_clients(
        listener,
        Admission::FirstBytes,
        guard,
        config,
        limiter,
        set.clone(),
        tasks.clone(),
        shutdown,
        on_session,
    )
    .await;
    tracing::info!(
        "closing {} session(s); open streams may finish for up to {timeout:?}",
        set.len()
    );
    // No new streams: GoAway where the protocol has it; on smux, streams opened from now on
    // are refused by `serve_session`. The open ones finish, up to the limit.
    server::go_away_all(&set);
    let clean = crate::shutdown::drain(&streams, timeout, "streams").await;
    server::close_all(&set, Duration::from_secs(2)).await;
    tasks.close();
    let _ = tokio::time::timeout(Duration::from_secs(2), tasks.wait()).await;
    if clean {
        tracing::info!("echo server stopped");
        Ok(())
    } else {
        Err(anyhow!(
            "streams were cut off at shutdown after --shutdown-timeout {timeout:?}"
        ))
    }
}

/// Echoes every inbound stream of `session`, each in a task tracked by `streams`, until the
/// session ends. Once `shutdown` is requested, on a dialect without GoAway (smux) a new
/// stream is refused (reset) instead of served: nothing tells the peer to stop opening, so
/// serving them could keep the drain from ever ending. With GoAway, what still arrives was
/// opened before the peer saw it, and is served.
pub async fn serve_session(
    session: &Session,
    streams: &TaskTracker,
    buffers: &EchoBuffers,
    shutdown: Option<&Shutdown>,
) {
    let goaway = session.dialect().has_goaway();
    while let Ok(mut stream) = session.accept().await {
        if !goaway && shutdown.is_some_and(Shutdown::is_requested) {
            tracing::debug!("stream {}: refused, shutting down", stream.id());
            stream.reset();
            continue;
        }
        let buffers = buffers.clone();
        streams.spawn(async move {
            let id = stream.id();
            if let Err(e) = echo_stream(stream, &buffers).await {
                tracing::debug!("stream {id}: {e}");
            }
        });
    }
}

/// Echoes `io` until EOF, then half-closes it. Returns the bytes echoed. Memory: see the
/// module docs.
pub async fn echo_stream<S: AsyncRead + AsyncWrite + Unpin>(
    mut io: S,
    buffers: &EchoBuffers,
) -> io::Result<u64> {
    let mut small = [0u8; SMALL_BUFFER];
    let mut total = 0u64;
    loop {
        let n = io.read(&mut small).await?;
        if n == 0 {
            io.shutdown().await?;
            return Ok(total);
        }
        let Some(_permit) = (n == SMALL_BUFFER)
            .then(|| buffers.permits.clone().try_acquire_owned().ok())
            .flatten()
        else {
            io.write_all(&small[..n]).await?;
            total += n as u64;
            continue;
        };
        // Data is flowing: echo through a large buffer while reads complete at once, and give
        // it back (freed, not kept) as soon as a read would wait. `BytesMut` reads into its
        // spare capacity, so the buffer is not zeroed first.
        let mut large = BytesMut::with_capacity(LARGE_BUFFER);
        large.extend_from_slice(&small[..n]);
        loop {
            // Top up with what has already arrived, without waiting. At most SMALL_BUFFER
            // bytes are in `large` here, so the read always has room (no false EOF).
            let more = match io.read_buf(&mut large).now_or_never() {
                Some(Ok(0)) => {
                    io.write_all(&large).await?;
                    io.shutdown().await?;
                    return Ok(total + large.len() as u64);
                }
                Some(Ok(_)) => true,
                Some(Err(e)) => return Err(e),
                None => false,
            };
            io.write_all(&large).await?;
            total += large.len() as u64;
            large.clear();
            if !more {
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `--max-streams N` admits N: the engine, echo's only stream limit, gets N itself.
    #[test]
    fn max_streams_means_what_it_says() {
        for protocol in Protocol::ALL {
            let config = echo_config(protocol, 100, Duration::from_secs(1), None).unwrap();
            assert_eq!(config.max_streams(), 100, "{protocol}");
        }
    }
}
