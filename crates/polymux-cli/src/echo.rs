//! `polymux echo`: a multiplexing echo server, usable as a test peer for other
//! implementations and as the far end of `polymux bench --connect`.
//!
//! It speaks the bare protocol on plain TCP — no preamble, no token, no TLS — so that any
//! yamux/smux/net-mux client can talk to it. Every inbound stream is echoed as it arrives until
//! the client half-closes; then the server half-closes its side. The server never opens
//! streams. An idle stream costs it one small task and a 256-byte buffer (grown to 64 KiB
//! only for streams that move data), so it can hold many thousands of idle streams.

use std::io;
use std::time::Duration;

use anyhow::anyhow;
use polymux::{Config, Session};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_util::task::TaskTracker;

use crate::args::ShutdownArgs;
use crate::limits::Limiter;
use crate::protocol::{session_config, Protocol, SessionTuning};
use crate::server;
use crate::sessions::SessionSet;
use crate::shutdown::Shutdown;
use crate::transport;

const SMALL_BUFFER: usize = 256;
const LARGE_BUFFER: usize = 64 * 1024;

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
    #[arg(long, value_name = "ADDR")]
    pub listen: String,
    /// Client connections (sessions) open at once.
    #[arg(long, value_name = "N", default_value_t = 256)]
    pub max_connections: usize,
    /// Streams per session.
    #[arg(long, value_name = "N", default_value_t = 65_536)]
    pub max_streams: usize,
    #[command(flatten)]
    pub shutdown: ShutdownArgs,
}

/// The echo server's session configuration: a deep accept backlog (a benchmark opens
/// streams in bursts of a thousand), no keep-alive of its own (clients probe), and exactly
/// `max_streams` live streams per session (the engine refuses the rest, counted in `Stats`).
pub fn echo_config(
    protocol: Protocol,
    max_streams: usize,
    close_timeout: Duration,
) -> anyhow::Result<Config> {
    let config = session_config(
        protocol,
        &SessionTuning {
            max_streams,
            keepalive: None,
            close_timeout,
            accept_backlog: 4096,
        },
    )?;
    // `session_config` leaves the engine headroom for a CLI stream limiter; echo has none, so
    // the engine's limit is the one and `--max-streams N` must admit exactly N (issue 9).
    Ok(config
        .to_builder()
        .max_streams(max_streams.max(1))
        .build()?)
}

/// Runs the echo server until shutdown.
pub async fn run(args: EchoArgs, protocol: Protocol, shutdown: Shutdown) -> anyhow::Result<()> {
    let timeout = args.shutdown.shutdown_timeout;
    let config = echo_config(protocol, args.max_streams, timeout)?;
    if !transport::is_loopback(&args.listen).await? {
        tracing::warn!(
            "the echo server has no authentication; anyone who can reach {} can use it",
            args.listen
        );
    }
    let listener = transport::bind(&args.listen, "--listen").await?;
    tracing::info!(
        "echo server listening on {} ({protocol})",
        listener.local_addr()?
    );
    let set = SessionSet::default();
    let tasks = TaskTracker::new();
    let streams = TaskTracker::new();
    let limiter = Limiter::new(args.max_connections, "connections", "--max-connections");
    accept_loop(
        listener,
        config,
        set.clone(),
        tasks.clone(),
        streams.clone(),
        limiter,
        shutdown,
    )
    .await;
    tracing::info!(
        "closing {} session(s); open streams may finish for up to {timeout:?}",
        set.len()
    );
    // No new streams (GoAway where the protocol has it); the open ones finish, up to the limit.
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

async fn accept_loop(
    listener: TcpListener,
    config: Config,
    set: SessionSet,
    tasks: TaskTracker,
    streams: TaskTracker,
    limiter: Limiter,
    shutdown: Shutdown,
) {
    loop {
        let accepted = tokio::select! {
            _ = shutdown.requested() => return,
            accepted = listener.accept() => accepted,
        };
        let (tcp, peer) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                tracing::warn!("accepting a connection failed: {e}; retrying");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Some(permit) = limiter.try_acquire() else {
            continue;
        };
        tcp.set_nodelay(true).ok();
        let (session, driver) = polymux::tokio::server(tcp, config.clone());
        let id = set.insert(peer, session.clone(), Default::default());
        let set = set.clone();
        let streams = streams.clone();
        tracing::debug!("session {id} from {peer}");
        tasks.spawn(async move {
            serve_session(&session, &streams).await;
            set.remove(id);
            match driver.await {
                Ok(Ok(())) => tracing::debug!("session {id} from {peer} ended"),
                Ok(Err(e)) => tracing::info!("session {id} from {peer} ended: {e}"),
                Err(e) => tracing::warn!("session {id} driver failed: {e}"),
            }
            drop(permit);
        });
    }
}

/// Echoes every inbound stream of `session`, each in a task tracked by `streams`, until the
/// session ends.
pub async fn serve_session(session: &Session, streams: &TaskTracker) {
    while let Ok(stream) = session.accept().await {
        streams.spawn(async move {
            let id = stream.id();
            if let Err(e) = echo_stream(stream).await {
                tracing::debug!("stream {id}: {e}");
            }
        });
    }
}

/// Echoes `io` until EOF, then half-closes it. Returns the bytes echoed.
pub async fn echo_stream<S: AsyncRead + AsyncWrite + Unpin>(mut io: S) -> io::Result<u64> {
    let mut buf = vec![0u8; SMALL_BUFFER];
    let mut total = 0u64;
    loop {
        let n = io.read(&mut buf).await?;
        if n == 0 {
            io.shutdown().await?;
            return Ok(total);
        }
        io.write_all(&buf[..n]).await?;
        total += n as u64;
        if n == buf.len() && buf.len() < LARGE_BUFFER {
            buf.resize(LARGE_BUFFER, 0);
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
            let config = echo_config(protocol, 100, Duration::from_secs(1)).unwrap();
            assert_eq!(config.max_streams(), 100, "{protocol}");
        }
    }
}
