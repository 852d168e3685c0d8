//! What the bench scenarios run against: a [`Peer`] opens "streams" — multiplexed streams
//! of a session, or (for the baseline) one TCP connection each — to an echo server. A
//! [`Target`] sets one up: in-process (an echo server on 127.0.0.1 in this process, the
//! same code as `polymux echo`) or against `--connect ADDR`.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use polymux::{Config, Session};
use tokio::net::{TcpSocket, TcpStream};
use tokio::task::JoinHandle;

use crate::echo;
use crate::protocol::{session_config, Protocol, SessionTuning};
use crate::transport::{BoxIo, DriverHandle};

/// Opens streams to an echo server.
#[derive(Clone, Debug)]
pub enum Peer {
    /// One TCP connection per stream.
    Tcp(SocketAddr),
    /// Streams of one multiplexed session.
    Mux(Session),
}

impl Peer {
    /// Opens one stream.
    pub async fn open(&self) -> io::Result<BoxIo> {
        match self {
            Peer::Tcp(addr) => {
                let tcp = TcpStream::connect(addr).await?;
                tcp.set_nodelay(true)?;
                Ok(Box::new(tcp))
            }
            Peer::Mux(session) => Ok(Box::new(session.open().await.map_err(io::Error::from)?)),
        }
    }

    /// The session, for a multiplexed peer.
    pub fn session(&self) -> Option<&Session> {
        match self {
            Peer::Tcp(_) => None,
            Peer::Mux(session) => Some(session),
        }
    }
}

/// A peer plus whatever runs behind it.
pub struct Target {
    /// "tcp", "yamux", …
    pub name: String,
    /// The peer.
    pub peer: Peer,
    /// Whether the echo server runs in this process (memory figures then cover both ends).
    pub in_process: bool,
    server: Option<JoinHandle<()>>,
    driver: Option<DriverHandle>,
}

/// Large echo buffers of the in-process echo servers: more than the streams that move data at
/// once in any scenario, so that none falls back to the small buffer.
const BENCH_ECHO_BUFFERS: usize = 1024;

/// The bench client's session configuration: no keep-alive (no background traffic in the
/// numbers) and room for tens of thousands of streams.
fn client_config(protocol: Protocol) -> anyhow::Result<Config> {
    session_config(
        protocol,
        &SessionTuning {
            max_streams: 1 << 18,
            keepalive: None,
            close_timeout: Duration::from_secs(2),
            accept_backlog: 256,
            memory: None,
        },
    )
}

async fn listen_loopback() -> anyhow::Result<tokio::net::TcpListener> {
    let socket = TcpSocket::new_v4()?;
    socket.bind("127.0.0.1:0".parse()?)?;
    // A deep backlog: the baseline opens a thousand connections at once.
    Ok(socket.listen(4096)?)
}

impl Target {
    /// Raw TCP against an in-process TCP echo server.
    pub async fn tcp_in_process() -> anyhow::Result<Target> {
        let listener = listen_loopback().await?;
        let addr = listener.local_addr()?;
        let buffers = echo::EchoBuffers::new(BENCH_ECHO_BUFFERS);
        let server = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                tcp.set_nodelay(true).ok();
                let buffers = buffers.clone();
                tokio::spawn(async move {
                    let _ = echo::echo_stream(tcp, &buffers).await;
                });
            }
        });
        Ok(Target {
            name: "tcp".into(),
            peer: Peer::Tcp(addr),
            in_process: true,
            server: Some(server),
            driver: None,
        })
    }

    /// `protocol` against an in-process `polymux echo` server.
    pub async fn mux_in_process(protocol: Protocol) -> anyhow::Result<Target> {
        let listener = listen_loopback().await?;
        let addr = listener.local_addr()?;
        let server_config = echo::echo_config(protocol, 1 << 18, Duration::from_secs(1), None)?;
        let server = tokio::spawn(async move {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            tcp.set_nodelay(true).ok();
            let (session, _driver) = polymux::tokio::server(tcp, server_config);
            let buffers = echo::EchoBuffers::new(BENCH_ECHO_BUFFERS);
            let streams = tokio_util::task::TaskTracker::new();
            echo::serve_session(&session, &streams, &buffers, None).await;
        });
        let mut target = Target::mux_connect(protocol, &addr.to_string()).await?;
        target.server = Some(server);
        target.in_process = true;
        Ok(target)
    }

    /// `protocol` against the echo server at `addr`.
    pub async fn mux_connect(protocol: Protocol, addr: &str) -> anyhow::Result<Target> {
        let tcp = tokio::time::timeout(Duration::from_secs(10), TcpStream::connect(addr))
            .await
            .map_err(|_| anyhow::anyhow!("connecting to {addr} timed out"))?
            .with_context(|| {
                format!("cannot connect to the echo server at {addr}; is `polymux echo --listen {addr}` (or another echo peer) running?")
            })?;
        // Plain TCP_NODELAY, not `transport::tune_session_socket`: with TCP_NOTSENT_LOWAT the
        // smux v2 bulk runs against the Go echo peer fail now and then ("transport closed by
        // the peer") since the driver's larger batches; left for the engine to explain.
        tcp.set_nodelay(true).ok();
        let (session, driver) = polymux::tokio::client(tcp, client_config(protocol)?);
        Ok(Target {
            name: protocol.name().into(),
            peer: Peer::Mux(session),
            in_process: false,
            server: None,
            driver: Some(driver),
        })
    }

    /// Closes the session and stops the in-process server.
    pub async fn teardown(self) {
        if let Peer::Mux(session) = &self.peer {
            let _ = tokio::time::timeout(Duration::from_secs(3), session.close()).await;
        }
        if let Some(driver) = self.driver {
            let _ = tokio::time::timeout(Duration::from_secs(3), driver).await;
        }
        if let Some(server) = self.server {
            server.abort();
        }
    }
}
