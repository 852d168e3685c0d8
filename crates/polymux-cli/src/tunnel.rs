//! `polymux tunnel`: a reverse tunnel.
//!
//! The client (inside a private network) dials out to the server; the server listens on one
//! or more exposed addresses, and every TCP connection arriving there becomes a new stream
//! to the client, which connects it to the matching `--target`. Several services share one
//! tunnel: `--expose web=0.0.0.0:8080 --expose ssh=0.0.0.0:2222` on the server,
//! `--target web=127.0.0.1:80 --target ssh=127.0.0.1:22` on the client. A `udp://` address
//! makes a UDP service, carried one stream per flow (see [`crate::udp`]).
//!
//! The client reconnects with back-off whenever the tunnel drops; meanwhile the server holds
//! new connections for up to `--wait-for-client` rather than refusing them. When several
//! clients are connected, the newest one gets new connections (older ones serve what they
//! have and stay as fallbacks).

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::anyhow;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::task::TaskTracker;

use crate::args::{ClientAuthArgs, ReconnectArgs, ServerAuthArgs, SessionArgs, ShutdownArgs};
use crate::auth::{Expectation, Mode};
use crate::limits::Limiter;
use crate::noise::{ClientNoise, ClientNoiseArgs, ServerNoise, ServerNoiseArgs};
use crate::protocol::{session_config, Protocol};
use crate::reconnect::{self, SessionEnd};
use crate::relay::{self, RelayError};
use crate::services::{self, ServiceSpec, Targets};
use crate::sessions::SessionSet;
use crate::shutdown::{self, parse_duration, Shutdown};
use crate::tls::{ClientTls, ClientTlsArgs, ServerTls, ServerTlsArgs};
use crate::transport::{self, Dialer, Gate};
use crate::{server, target, udp};

/// How long opening a stream on a session may take before another session is tried.
const OPEN_TIMEOUT: Duration = Duration::from_secs(10);

/// `polymux tunnel server`.
#[derive(clap::Args, Clone, Debug)]
#[command(after_help = concat!(
    "Example (tunnel clients connect to :7000; the public gets web on :8080, ssh on :2222):\n",
    "  export POLYMUX_TOKEN=$(openssl rand -hex 32)\n",
    "  polymux tunnel server --listen 0.0.0.0:7000 \\\n",
    "      --expose web=0.0.0.0:8080 --expose ssh=0.0.0.0:2222 \\\n",
    "      --tls-cert cert.pem --tls-key key.pem\n\n",
    crate::error::exit_codes_help!()
))]
pub struct TunnelServerArgs {
    /// Address where tunnel clients connect (HOST:PORT).
    #[arg(long, value_name = "ADDR")]
    pub listen: String,
    /// A service to expose: [NAME=]HOST:PORT; every connection to it is carried to the client
    /// and connected to the client's --target of the same NAME; udp://HOST:PORT exposes a UDP
    /// service. Repeatable.
    #[arg(long, value_name = "[NAME=]ADDR", required = true)]
    pub expose: Vec<ServiceSpec>,
    /// How long a connection to an exposed service waits for a tunnel client (e.g. while it
    /// reconnects) before it is closed.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub wait_for_client: Duration,
    /// Tunnel clients connected at once.
    #[arg(long, value_name = "N", default_value_t = 16)]
    pub max_clients: usize,
    /// Connections to exposed services open at once.
    #[arg(long, value_name = "N", default_value_t = 1024)]
    pub max_connections: usize,
    #[command(flatten)]
    pub auth: ServerAuthArgs,
    #[command(flatten)]
    pub tls: ServerTlsArgs,
    #[command(flatten)]
    pub noise: ServerNoiseArgs,
    #[command(flatten)]
    pub session: SessionArgs,
    #[command(flatten)]
    pub udp: crate::udp::UdpArgs,
    #[command(flatten)]
    pub shutdown: ShutdownArgs,
}

/// `polymux tunnel client`.
#[derive(clap::Args, Clone, Debug)]
#[command(after_help = concat!(
    "Example (carry the server's web and ssh services to local targets):\n",
    "  export POLYMUX_TOKEN=...   # the server's token\n",
    "  polymux tunnel client --server tunnel.example.com:7000 --tls-ca cert.pem \\\n",
    "      --target web=127.0.0.1:80 --target ssh=127.0.0.1:22\n\n",
    "An unnamed --target ADDR receives every service without a target of its own.\n",
    crate::error::exit_codes_help!()
))]
pub struct TunnelClientArgs {
    /// The tunnel server (HOST:PORT).
    #[arg(long, value_name = "ADDR")]
    pub server: String,
    /// Where to connect streams of a service: [NAME=]HOST:PORT (udp://HOST:PORT for a UDP
    /// service). Repeatable.
    #[arg(long, value_name = "[NAME=]ADDR", required = true)]
    pub target: Vec<ServiceSpec>,
    #[command(flatten)]
    pub auth: ClientAuthArgs,
    #[command(flatten)]
    pub tls: ClientTlsArgs,
    #[command(flatten)]
    pub noise: ClientNoiseArgs,
    #[command(flatten)]
    pub session: SessionArgs,
    #[command(flatten)]
    pub reconnect: ReconnectArgs,
    #[command(flatten)]
    pub shutdown: ShutdownArgs,
}

/// Runs the tunnel server until shutdown.
pub async fn run_server(
    args: TunnelServerArgs,
    protocol: Protocol,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    services::check_unique(&args.expose, "--expose")?;
    let token = args.auth.token()?;
    let tls = ServerTls::from_args(&args.tls)?;
    let noise = ServerNoise::from_args(&args.noise)?;
    transport::check_server_security(
        &args.listen,
        token.as_ref(),
        args.auth.insecure_no_token,
        tls.is_some() || noise.is_some(),
    )
    .await?;
    let config = session_config(protocol, &args.session.tuning())?;

    let control = transport::bind(&args.listen, "--listen").await?;
    let control_addr = control.local_addr()?;
    let mut exposed = Vec::new();
    let mut exposed_udp = Vec::new();
    for spec in &args.expose {
        if let Some(addr) = udp::udp_target(&spec.addr) {
            let socket = udp::bind(addr, "--expose").await?;
            exposed_udp.push((spec.wire_name().to_owned(), socket));
            continue;
        }
        let listener = transport::bind(&spec.addr, "--expose").await?;
        exposed.push((spec.wire_name().to_owned(), listener));
    }
    tracing::info!(
        "tunnel server listening on {control_addr} for tunnel clients ({protocol}{})",
        crate::noise::security_label(tls.is_some(), noise.is_some())
    );
    if let Some(tls) = &tls {
        tracing::info!(
            "TLS certificate SHA-256 fingerprint {} (clients may pin it with --tls-pin)",
            tls.fingerprint
        );
    }
    for (name, listener) in &exposed {
        tracing::info!("exposing service {name} on {}", listener.local_addr()?);
    }
    for (name, socket) in &exposed_udp {
        tracing::info!("exposing UDP service {name} on {}", socket.local_addr()?);
    }

    if let Some(noise) = &noise {
        crate::noise::log_server_key(noise);
    }
    let gate = Gate {
        tls,
        noise,
        expect: Expectation::new(Mode::Tunnel, protocol, token.as_ref()),
    };
    let set = SessionSet::default();
    let client_tasks = TaskTracker::new();
    let relays = TaskTracker::new();
    let connections = Limiter::new(
        args.max_connections,
        "connections to exposed services",
        "--max-connections",
    );
    let clients = Limiter::new(args.max_clients, "tunnel clients", "--max-clients");

    let mut loops = Vec::new();
    loops.push(tokio::spawn(server::accept_clients(
        control,
        gate,
        config,
        clients,
        set.clone(),
        client_tasks.clone(),
        shutdown.clone(),
        |entry| async move {
            entry.session.closed().await;
        },
    )));
    for (name, listener) in exposed {
        loops.push(tokio::spawn(expose_loop(
            listener,
            name,
            set.clone(),
            relays.clone(),
            connections.clone(),
            args.wait_for_client,
            shutdown.clone(),
        )));
    }

    for (name, socket) in exposed_udp {
        loops.push(tokio::spawn(udp::expose_loop(
            socket,
            name,
            set.clone(),
            relays.clone(),
            connections.clone(),
            args.wait_for_client,
            args.udp.clone(),
            shutdown.clone(),
        )));
    }

    shutdown.requested().await;
    for handle in loops {
        let _ = handle.await;
    }
    let clean = shutdown::drain(&relays, args.shutdown.shutdown_timeout, "connections").await;
    server::close_all(&set, Duration::from_secs(5)).await;
    client_tasks.close();
    let _ = tokio::time::timeout(Duration::from_secs(5), client_tasks.wait()).await;
    if clean {
        tracing::info!("tunnel server stopped");
        Ok(())
    } else {
        Err(anyhow!(
            "connections were cut off at shutdown after --shutdown-timeout {:?}",
            args.shutdown.shutdown_timeout
        ))
    }
}

async fn expose_loop(
    listener: TcpListener,
    name: String,
    set: SessionSet,
    relays: TaskTracker,
    connections: Limiter,
    wait: Duration,
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
                tracing::warn!("{name}: accepting a connection failed: {e}; retrying");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Some(permit) = connections.try_acquire() else {
            continue;
        };
        tcp.set_nodelay(true).ok();
        let name = name.clone();
        let set = set.clone();
        relays.spawn(async move {
            carry(tcp, peer, &name, &set, wait).await;
            drop(permit);
        });
    }
}

/// Carries one exposed connection over the newest live session.
async fn carry(tcp: TcpStream, peer: SocketAddr, name: &str, set: &SessionSet, wait: Duration) {
    let mut tried = Vec::new();
    for _ in 0..3 {
        let Some(entry) = set.wait_newest(&tried, wait).await else {
            tracing::warn!(
                "{name}: no tunnel client connected within {wait:?} (--wait-for-client); closing \
                 the connection from {peer}. Is `polymux tunnel client` running?"
            );
            return;
        };
        let stream = match tokio::time::timeout(OPEN_TIMEOUT, entry.session.open()).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => {
                tracing::debug!(
                    "{name}: opening a stream on session {} failed: {e}",
                    entry.id
                );
                if matches!(e, polymux::Error::TooManyStreams { .. }) {
                    tracing::warn!("{name}: {e}; raise --max-streams on both sides");
                }
                tried.push(entry.id);
                continue;
            }
            Err(_) => {
                tracing::warn!(
                    "{name}: tunnel client {} did not take a new stream within {OPEN_TIMEOUT:?}",
                    entry.peer
                );
                tried.push(entry.id);
                continue;
            }
        };
        let id = stream.id();
        match relay::relay_opened(stream, tcp, name).await {
            Ok(moved) => tracing::debug!(
                "{name}: connection from {peer} done on stream {id} ({} bytes in, {} bytes out)",
                moved.into_stream,
                moved.out_of_stream
            ),
            Err(RelayError::Refused { what, message }) => {
                tracing::warn!("{name}: tunnel client could not serve {peer}: {what}: {message}")
            }
            Err(RelayError::Io(e)) => {
                tracing::debug!("{name}: connection from {peer} on stream {id} ended: {e}")
            }
        }
        return;
    }
    tracing::warn!("{name}: no tunnel client accepted the connection from {peer}; closing it");
}

/// Runs the tunnel client until shutdown (or a permanent error).
pub async fn run_client(
    args: TunnelClientArgs,
    protocol: Protocol,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    let targets = Targets::new(&args.target, "--target")?;
    let dialer = Dialer {
        server: args.server.clone(),
        tls: ClientTls::from_args(&args.tls, &args.server)?,
        noise: ClientNoise::from_args(&args.noise)?,
        token: args.auth.token()?,
        mode: Mode::Tunnel,
        protocol,
        config: session_config(protocol, &args.session.tuning())?,
    };
    let streams = Limiter::new(args.session.max_streams, "streams", "--max-streams");
    let relays = TaskTracker::new();
    let timeout = args.shutdown.shutdown_timeout;
    let clean = reconnect::maintain(&dialer, &args.reconnect, &shutdown, |session, driver| {
        let targets = targets.clone();
        let streams = streams.clone();
        let relays = relays.clone();
        let shutdown = shutdown.clone();
        let server = args.server.clone();
        async move {
            tracing::info!(
                "tunnel up: connected to {server} ({protocol}); services: {}",
                targets.describe()
            );
            let accepting = target::accept_loop(&session, &targets, &streams, &relays, &shutdown);
            tokio::pin!(accepting);
            tokio::select! {
                _ = &mut accepting => {
                    SessionEnd::Dropped(reconnect::end_reason(&session, driver).await)
                }
                _ = shutdown.requested() => {
                    // GoAway: the server stops opening streams here; streams it opened before
                    // seeing it are still accepted and served while the open ones finish.
                    let _ = session.go_away();
                    let draining = shutdown::drain(&relays, timeout, "streams");
                    let clean = tokio::select! {
                        clean = draining => clean,
                        _ = &mut accepting => false,
                    };
                    let _ = tokio::time::timeout(Duration::from_secs(5), session.close()).await;
                    // The driver closes the transport (TLS: close_notify) after the session
                    // ends; wait for it, or the process exits first.
                    let _ = tokio::time::timeout(Duration::from_secs(2), driver).await;
                    SessionEnd::Shutdown { clean }
                }
            }
        }
    })
    .await?;
    if clean {
        tracing::info!("tunnel client stopped");
        Ok(())
    } else {
        Err(anyhow!(
            "streams were cut off at shutdown (--shutdown-timeout {timeout:?}, or the tunnel dropped meanwhile)"
        ))
    }
}
