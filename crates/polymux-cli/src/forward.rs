//! `polymux forward`: local forwarding.
//!
//! The client listens locally; every TCP connection to it becomes a stream over one session
//! to the server, which connects it to `--target`. With several services, name them:
//! `--listen db=127.0.0.1:5432 --listen web=127.0.0.1:8080` on the client and
//! `--target db=10.0.0.5:5432 --target web=10.0.0.6:80` on the server.
//!
//! The client keeps its session up, reconnecting with back-off when it drops; a local
//! connection that arrives meanwhile waits for the session (up to `--wait-for-server`).

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::anyhow;
use polymux::Session;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
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
use crate::{server, target};

/// How long opening a stream may take.
const OPEN_TIMEOUT: Duration = Duration::from_secs(10);

/// `polymux forward server`.
#[derive(clap::Args, Clone, Debug)]
#[command(after_help = concat!(
    "Example (clients reach the database 10.0.0.5:5432 through this host):\n",
    "  export POLYMUX_TOKEN=$(openssl rand -hex 32)\n",
    "  polymux forward server --listen 0.0.0.0:7001 --target 10.0.0.5:5432 \\\n",
    "      --tls-cert cert.pem --tls-key key.pem\n\n",
    crate::error::exit_codes_help!()
))]
pub struct ForwardServerArgs {
    /// Address where forward clients connect (HOST:PORT).
    #[arg(long, value_name = "ADDR")]
    pub listen: String,
    /// Where to connect the client's connections: [NAME=]HOST:PORT, matching the client's
    /// --listen NAME; an unnamed target takes every service. Repeatable.
    #[arg(long, value_name = "[NAME=]ADDR", required = true)]
    pub target: Vec<ServiceSpec>,
    /// Forward clients connected at once.
    #[arg(long, value_name = "N", default_value_t = 64)]
    pub max_clients: usize,
    #[command(flatten)]
    pub auth: ServerAuthArgs,
    #[command(flatten)]
    pub tls: ServerTlsArgs,
    #[command(flatten)]
    pub noise: ServerNoiseArgs,
    #[command(flatten)]
    pub session: SessionArgs,
    #[command(flatten)]
    pub shutdown: ShutdownArgs,
}

/// `polymux forward client`.
#[derive(clap::Args, Clone, Debug)]
#[command(after_help = concat!(
    "Example (local port 5432 reaches the server's target):\n",
    "  export POLYMUX_TOKEN=...   # the server's token\n",
    "  polymux forward client --listen 127.0.0.1:5432 --server gateway.example.com:7001 \\\n",
    "      --tls-pin 3f:a1:...   # the fingerprint the server logs at startup\n\n",
    crate::error::exit_codes_help!()
))]
pub struct ForwardClientArgs {
    /// Local address to accept connections on: [NAME=]HOST:PORT. Repeatable.
    #[arg(long, value_name = "[NAME=]ADDR", required = true)]
    pub listen: Vec<ServiceSpec>,
    /// The forward server (HOST:PORT).
    #[arg(long, value_name = "ADDR")]
    pub server: String,
    /// Local connections open at once.
    #[arg(long, value_name = "N", default_value_t = 1024)]
    pub max_connections: usize,
    /// How long a local connection waits for the session to the server (e.g. while it
    /// reconnects) before it is closed.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub wait_for_server: Duration,
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

/// Runs the forward server until shutdown.
pub async fn run_server(
    args: ForwardServerArgs,
    protocol: Protocol,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    let targets = Targets::new(&args.target, "--target")?;
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
    let listener = transport::bind(&args.listen, "--listen").await?;
    tracing::info!(
        "forward server listening on {} ({protocol}{}); targets: {}",
        listener.local_addr()?,
        crate::noise::security_label(tls.is_some(), noise.is_some()),
        targets.describe()
    );
    if let Some(tls) = &tls {
        tracing::info!(
            "TLS certificate SHA-256 fingerprint {} (clients may pin it with --tls-pin)",
            tls.fingerprint
        );
    }
    if let Some(noise) = &noise {
        crate::noise::log_server_key(noise);
    }
    let gate = Gate {
        tls,
        noise,
        expect: Expectation::new(Mode::Forward, protocol, token.as_ref()),
    };
    let set = SessionSet::default();
    let session_tasks = TaskTracker::new();
    let relays = TaskTracker::new();
    let max_streams = args.session.max_streams;
    let clients = Limiter::new(args.max_clients, "forward clients", "--max-clients");

    let on_session = {
        let relays = relays.clone();
        let shutdown = shutdown.clone();
        move |entry: crate::sessions::Entry| {
            let targets = targets.clone();
            // The stream limit is per session (per client).
            let streams = Limiter::new(max_streams, "streams", "--max-streams");
            let relays = relays.clone();
            let shutdown = shutdown.clone();
            async move {
                target::accept_loop(&entry.session, &targets, &streams, &relays, &shutdown).await;
            }
        }
    };
    let accepting = tokio::spawn(server::accept_clients(
        listener,
        gate,
        config,
        clients,
        set.clone(),
        session_tasks.clone(),
        shutdown.clone(),
        on_session,
    ));

    shutdown.requested().await;
    let _ = accepting.await;
    server::go_away_all(&set);
    let clean = shutdown::drain(&relays, args.shutdown.shutdown_timeout, "streams").await;
    server::close_all(&set, Duration::from_secs(5)).await;
    session_tasks.close();
    let _ = tokio::time::timeout(Duration::from_secs(5), session_tasks.wait()).await;
    if clean {
        tracing::info!("forward server stopped");
        Ok(())
    } else {
        Err(anyhow!(
            "streams were cut off at shutdown after --shutdown-timeout {:?}",
            args.shutdown.shutdown_timeout
        ))
    }
}

/// Runs the forward client until shutdown (or a permanent error).
pub async fn run_client(
    args: ForwardClientArgs,
    protocol: Protocol,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    services::check_unique(&args.listen, "--listen")?;
    if let Some(spec) = args
        .listen
        .iter()
        .find(|s| crate::udp::udp_target(&s.addr).is_some())
    {
        return Err(crate::error::config_error(format!(
            "--listen {}: UDP services are carried by `polymux tunnel` only (--expose and \
             --target NAME=udp://ADDR)",
            spec.addr
        )));
    }
    let dialer = Dialer {
        server: args.server.clone(),
        tls: ClientTls::from_args(&args.tls, &args.server)?,
        noise: ClientNoise::from_args(&args.noise)?,
        token: args.auth.token()?,
        mode: Mode::Forward,
        protocol,
        config: session_config(protocol, &args.session.tuning())?,
    };
    let mut listeners = Vec::new();
    for spec in &args.listen {
        if !transport::is_loopback(&spec.addr).await? {
            tracing::warn!(
                "--listen {} is not a loopback address: anyone who can reach it can use the \
                 forwarded service without a token",
                spec.addr
            );
        }
        let listener = transport::bind(&spec.addr, "--listen").await?;
        listeners.push((spec.wire_name().to_owned(), listener));
    }

    let (current_tx, current_rx) = watch::channel::<Option<Session>>(None);
    let maintainer = {
        let dialer = dialer.clone();
        let policy = args.reconnect.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            reconnect::maintain(&dialer, &policy, &shutdown, |session, driver| {
                let current_tx = current_tx.clone();
                let shutdown = shutdown.clone();
                let server = dialer.server.clone();
                async move {
                    tracing::info!("connected to forward server {server} ({protocol})");
                    current_tx.send_replace(Some(session.clone()));
                    tokio::select! {
                        _ = session.closed() => {
                            current_tx.send_replace(None);
                            SessionEnd::Dropped(reconnect::end_reason(&session, driver).await)
                        }
                        // The session stays up until the open connections are drained and
                        // run_client closes it; then the driver closes the transport (TLS:
                        // close_notify), which the process must wait for.
                        _ = shutdown.requested() => {
                            session.closed().await;
                            let _ = tokio::time::timeout(Duration::from_secs(2), driver).await;
                            SessionEnd::Shutdown { clean: true }
                        }
                    }
                }
            })
            .await
        })
    };

    let relays = TaskTracker::new();
    let connections = Limiter::new(
        args.max_connections,
        "local connections",
        "--max-connections",
    );
    let mut loops = Vec::new();
    for (name, listener) in listeners {
        tracing::info!(
            "forwarding {} (service {name}) to {} ({protocol})",
            listener.local_addr()?,
            args.server
        );
        loops.push(tokio::spawn(local_loop(
            listener,
            name,
            current_rx.clone(),
            relays.clone(),
            connections.clone(),
            args.wait_for_server,
            shutdown.clone(),
        )));
    }

    let mut maintainer = maintainer;
    let ended_early = tokio::select! {
        biased;
        _ = shutdown.requested() => None,
        ended = &mut maintainer => Some(ended),
    };
    let maintainer = match ended_early {
        // Only a permanent error (or exhausted retries) ends it before shutdown.
        Some(ended) if !shutdown.is_requested() => {
            shutdown.token().cancel();
            for handle in loops {
                let _ = handle.await;
            }
            return match ended {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(e)) => Err(e),
                Err(e) => Err(anyhow!("the connection task failed: {e}")),
            };
        }
        Some(_) => None,
        None => Some(maintainer),
    };
    for handle in loops {
        let _ = handle.await;
    }
    let clean = shutdown::drain(&relays, args.shutdown.shutdown_timeout, "connections").await;
    let session = current_rx.borrow().clone();
    if let Some(session) = session {
        let _ = tokio::time::timeout(Duration::from_secs(5), session.close()).await;
    }
    if let Some(maintainer) = maintainer {
        let _ = tokio::time::timeout(Duration::from_secs(5), maintainer).await;
    }
    if clean {
        tracing::info!("forward client stopped");
        Ok(())
    } else {
        Err(anyhow!(
            "connections were cut off at shutdown after --shutdown-timeout {:?}",
            args.shutdown.shutdown_timeout
        ))
    }
}

async fn local_loop(
    listener: TcpListener,
    name: String,
    current: watch::Receiver<Option<Session>>,
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
                tracing::warn!("{name}: accepting a local connection failed: {e}; retrying");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Some(permit) = connections.try_acquire() else {
            continue;
        };
        tcp.set_nodelay(true).ok();
        let name = name.clone();
        let current = current.clone();
        relays.spawn(async move {
            carry(tcp, peer, &name, current, wait).await;
            drop(permit);
        });
    }
}

/// Carries one local connection over the current session.
async fn carry(
    tcp: TcpStream,
    peer: SocketAddr,
    name: &str,
    mut current: watch::Receiver<Option<Session>>,
    wait: Duration,
) {
    for _ in 0..3 {
        let live = |s: &Option<Session>| s.as_ref().is_some_and(|s| s.end_reason().is_none());
        let session = match tokio::time::timeout(wait, current.wait_for(live)).await {
            Ok(Ok(session)) => session.clone(),
            _ => None,
        };
        let Some(session) = session else {
            tracing::warn!(
                "{name}: no session to the forward server within {wait:?} (--wait-for-server); \
                 closing the local connection from {peer}"
            );
            return;
        };
        let stream = match tokio::time::timeout(OPEN_TIMEOUT, session.open()).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(e @ polymux::Error::TooManyStreams { .. })) => {
                tracing::warn!("{name}: {e}; closing {peer}. Raise --max-streams on both sides");
                return;
            }
            Ok(Err(e)) => {
                tracing::debug!("{name}: opening a stream failed ({e}); waiting for a new session");
                if session.end_reason().is_none() {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                continue;
            }
            Err(_) => {
                tracing::warn!("{name}: the server did not take a new stream within {OPEN_TIMEOUT:?}; closing {peer}");
                return;
            }
        };
        let id = stream.id();
        match relay::relay_opened(stream, tcp, name).await {
            Ok(moved) => tracing::debug!(
                "{name}: connection from {peer} done on stream {id} ({} bytes out, {} bytes back)",
                moved.into_stream,
                moved.out_of_stream
            ),
            Err(RelayError::Refused { what, message }) => {
                tracing::warn!(
                    "{name}: the forward server could not serve {peer}: {what}: {message}"
                )
            }
            Err(RelayError::Io(e)) => {
                tracing::debug!("{name}: connection from {peer} on stream {id} ended: {e}")
            }
        }
        return;
    }
    tracing::warn!("{name}: could not open a stream for {peer}; closing it");
}
