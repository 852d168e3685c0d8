//! `polymux forward`: local forwarding.
//!
//! The client listens locally; every TCP connection to it becomes a stream over one session
//! to the server, which connects it to `--target`. With several services, name them:
//! `--listen db=127.0.0.1:5432 --listen web=127.0.0.1:8080` on the client and
//! `--target db=10.0.0.5:5432 --target web=10.0.0.6:80` on the server.
//!
//! The client keeps its session up, reconnecting with back-off when it drops; a local
//! connection that arrives meanwhile waits for the session (up to `--wait-for-server`).
//!
//! With `--config` both sides read their services from a TOML file and reload it: the
//! client's listeners through a [`ListenerSet`], the server's targets and token table in
//! place. The server checks per-service tokens on every stream (status 5 when the client's
//! tokens do not cover the service).

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::anyhow;
use polymux::Session;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::args::{
    BacklogArgs, ClientAuthArgs, ReconnectArgs, ServerAuthArgs, ServerGuardArgs, SessionArgs,
    ShutdownArgs,
};
use crate::auth::{Mode, Token};
use crate::config_file::{self, FileArgs, FileConfig, ServiceConfig, Side};
use crate::limits::Limiter;
use crate::metrics::{self, Metrics};
use crate::noise::{ClientNoise, ClientNoiseArgs, ServerNoiseArgs};
use crate::protocol::{session_config, Protocol};
use crate::reconnect::{self, SessionEnd};
use crate::relay::{self, RelayError};
use crate::reload::{self, Bound, ListenerSet};
use crate::server::{Admission, Guard};
use crate::services::{self, ServiceSpec, Targets};
use crate::sessions::SessionSet;
use crate::shutdown::{self, parse_duration, Shutdown};
use crate::tls::{ClientTls, ClientTlsArgs, ServerTlsArgs};
use crate::transport::{self, CredentialSet, Credentials, Dialer};
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
    #[arg(long, value_name = "ADDR", required_unless_present = "config", value_parser = services::parse_listen_addr)]
    pub listen: Option<String>,
    /// Where to connect the client's connections: [NAME=]HOST:PORT, matching the client's
    /// --listen NAME; an unnamed target takes every service. Repeatable.
    #[arg(long, value_name = "[NAME=]ADDR", required_unless_present = "config")]
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
    pub guard: ServerGuardArgs,
    #[command(flatten)]
    pub shutdown: ShutdownArgs,
    #[command(flatten)]
    pub file: FileArgs,
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
    #[arg(long, value_name = "[NAME=]ADDR", required_unless_present = "config", value_parser = services::parse_listen_spec)]
    pub listen: Vec<ServiceSpec>,
    /// The forward server (HOST:PORT).
    #[arg(long, value_name = "ADDR", required_unless_present = "config")]
    pub server: Option<String>,
    /// Local connections open at once.
    #[arg(long, value_name = "N", default_value_t = 4096)]
    pub max_connections: usize,
    #[command(flatten)]
    pub backlog: BacklogArgs,
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
    #[command(flatten)]
    pub file: FileArgs,
}

/// The forward server's settings: flags over the config file over the flags' defaults.
#[derive(Clone, Debug)]
struct ServerSettings {
    listen: String,
    protocol: Protocol,
    token: Option<Token>,
    insecure_no_token: bool,
    tls: ServerTlsArgs,
    noise: ServerNoiseArgs,
    max_clients: usize,
    session: SessionArgs,
    shutdown_timeout: Duration,
    metrics: Option<String>,
    /// The targets as specs (named and catch-all) and as services (named, with tokens).
    targets: Vec<ServiceSpec>,
    services: Vec<ServiceConfig>,
}

impl ServerSettings {
    fn resolve(
        args: &ForwardServerArgs,
        protocol: Protocol,
        file: Option<&FileConfig>,
    ) -> anyhow::Result<ServerSettings> {
        let f = file.cloned().unwrap_or_default();
        let listen = config_file::required(&args.listen, &f.listen, "--listen", "listen")?;
        let targets = config_file::merge_services(&f.services, &args.target);
        if targets.is_empty() {
            return Err(config_file::missing("--target", "[services.NAME] target"));
        }
        let (tls, noise) = config_file::server_security(&args.tls, &args.noise, &f);
        Ok(ServerSettings {
            listen,
            protocol: config_file::pick("protocol", protocol, f.protocol),
            token: args.auth.token()?.or(f.token.clone()),
            insecure_no_token: args.auth.insecure_no_token || f.insecure_no_token == Some(true),
            tls,
            noise,
            max_clients: config_file::pick("max_clients", args.max_clients, f.max_clients),
            session: config_file::session(&args.session, &f),
            shutdown_timeout: config_file::shutdown_timeout(&args.shutdown, &f),
            metrics: args.file.metrics.clone().or(f.metrics.clone()),
            services: config_file::effective_services(file, &args.target, false),
            targets,
        })
    }
}

/// Runs the forward server until shutdown.
pub async fn run_server(
    args: ForwardServerArgs,
    protocol: Protocol,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    let (file, file_bytes) =
        config_file::load_initial(args.file.config.as_deref(), Side::ForwardServer)?;
    let settings = ServerSettings::resolve(&args, protocol, file.as_ref())?;
    let protocol = settings.protocol;
    let setup = server::Setup::new(
        Mode::Forward,
        server::Common {
            listen: &settings.listen,
            protocol,
            token: settings.token.as_ref(),
            services: &settings.services,
            insecure_no_token: settings.insecure_no_token,
            tls: &settings.tls,
            noise: &settings.noise,
            session: &settings.session,
            max_clients: settings.max_clients,
            memory_limit: args.guard.memory_limit,
            metrics: settings.metrics.as_deref(),
        },
        &shutdown,
    )
    .await?;
    let metrics = setup.metrics.clone();
    let targets = Targets::new(&settings.targets, "--target")?.with_metrics(metrics.clone());
    let listener =
        transport::bind_with_backlog(&settings.listen, "--listen", args.guard.backlog.backlog)
            .await?;
    tracing::info!(
        "forward server listening on {} ({protocol}{}); targets: {}",
        listener.local_addr()?,
        setup.security_label(),
        targets.describe()
    );
    setup.log_identity();
    let server::Setup {
        gate,
        expect,
        config,
        ..
    } = setup;
    let set = SessionSet::default();
    let session_tasks = TaskTracker::new();
    let relays = TaskTracker::new();
    let max_streams = settings.session.max_streams;
    let clients = Limiter::new(settings.max_clients, "forward clients", "--max-clients");

    let on_session = {
        let relays = relays.clone();
        let shutdown = shutdown.clone();
        let targets = targets.clone();
        let expect = expect.clone();
        let metrics = metrics.clone();
        move |entry: crate::sessions::Entry| {
            metrics.track(&entry.session);
            // Streams may use only the services whose token this client proved.
            let targets = targets.for_session(entry.grants.clone(), expect.clone());
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
        Admission::Preamble(gate),
        Guard::from_args(&args.guard, max_streams),
        config,
        clients,
        set.clone(),
        session_tasks.clone(),
        shutdown.clone(),
        on_session,
    ));

    let mut reloads = args
        .file
        .config
        .clone()
        .map(|path| reload::watch(path, Side::ForwardServer, file_bytes, shutdown.clone()));
    loop {
        let file = tokio::select! {
            _ = shutdown.requested() => break,
            Some(file) = reload::next(&mut reloads) => file,
        };
        let path = file.path.display().to_string();
        let applied = ServerSettings::resolve(&args, protocol, Some(&file)).and_then(|next| {
            let table = config_file::token_table(
                next.token.as_ref(),
                &next.services,
                settings.insecure_no_token,
            )?;
            Ok((Targets::new(&next.targets, "--target")?, table, next))
        });
        match applied {
            Ok((new_targets, table, next)) => {
                if next.listen != settings.listen
                    || next.protocol != settings.protocol
                    || next.tls.tls_cert != settings.tls.tls_cert
                    || next.noise.noise_key != settings.noise.noise_key
                {
                    tracing::warn!(
                        "reload: listen, protocol, tls or noise_key changed in {path}; restart \
                         the server to apply (targets and tokens are reloaded)"
                    );
                }
                expect.set_tokens(table);
                targets.replace(&new_targets);
                tracing::info!(
                    "configuration reloaded from {path}: targets: {}",
                    targets.describe()
                );
            }
            Err(e) => tracing::error!("reload rejected, the running configuration stays: {e:#}"),
        }
    }

    let _ = accepting.await;
    server::go_away_all(&set);
    let clean = shutdown::drain(&relays, settings.shutdown_timeout, "streams").await;
    server::close_all(&set, Duration::from_secs(5)).await;
    session_tasks.close();
    let _ = tokio::time::timeout(Duration::from_secs(5), session_tasks.wait()).await;
    if clean {
        tracing::info!("forward server stopped");
        Ok(())
    } else {
        Err(anyhow!(
            "streams were cut off at shutdown after --shutdown-timeout {:?}",
            settings.shutdown_timeout
        ))
    }
}

/// The forward client's settings: flags over the config file over the flags' defaults.
#[derive(Clone, Debug)]
struct ClientSettings {
    server: String,
    protocol: Protocol,
    credentials: CredentialSet,
    tls: ClientTlsArgs,
    noise: ClientNoiseArgs,
    services: Vec<ServiceConfig>,
    max_connections: usize,
    wait_for_server: Duration,
    session: SessionArgs,
    reconnect: ReconnectArgs,
    shutdown_timeout: Duration,
    metrics: Option<String>,
}

impl ClientSettings {
    fn resolve(
        args: &ForwardClientArgs,
        protocol: Protocol,
        file: Option<&FileConfig>,
    ) -> anyhow::Result<ClientSettings> {
        services::check_unique(&args.listen, "--listen")?;
        let f = file.cloned().unwrap_or_default();
        let server = config_file::required(&args.server, &f.server, "--server", "server")?;
        let services = config_file::effective_services(file, &args.listen, true);
        if services.is_empty() {
            return Err(config_file::missing("--listen", "[services.NAME] bind"));
        }
        if let Some(service) = services
            .iter()
            .find(|s| crate::udp::udp_target(&s.addr).is_some())
        {
            return Err(crate::error::config_error(format!(
                "--listen {}: UDP services are carried by `polymux tunnel` only (--expose and \
                 --target NAME=udp://ADDR)",
                service.addr
            )));
        }
        let service_tokens = services
            .iter()
            .filter_map(|s| Some((s.name.clone(), s.token.clone()?)))
            .collect();
        let (tls, noise) = config_file::client_security(&args.tls, &args.noise, &f);
        Ok(ClientSettings {
            server,
            protocol: config_file::pick("protocol", protocol, f.protocol),
            credentials: CredentialSet {
                token: args.auth.token()?.or(f.token.clone()),
                services: service_tokens,
            },
            tls,
            noise,
            services,
            max_connections: config_file::pick(
                "max_connections",
                args.max_connections,
                f.max_connections,
            ),
            wait_for_server: config_file::pick("wait_for_server", args.wait_for_server, f.wait),
            session: config_file::session(&args.session, &f),
            reconnect: config_file::reconnect(&args.reconnect, &f),
            shutdown_timeout: config_file::shutdown_timeout(&args.shutdown, &f),
            metrics: args.file.metrics.clone().or(f.metrics.clone()),
        })
    }
}

/// Runs the forward client until shutdown (or a permanent error).
pub async fn run_client(
    args: ForwardClientArgs,
    protocol: Protocol,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    let (file, file_bytes) =
        config_file::load_initial(args.file.config.as_deref(), Side::ForwardClient)?;
    let settings = ClientSettings::resolve(&args, protocol, file.as_ref())?;
    let protocol = settings.protocol;
    let config = session_config(protocol, &settings.session.tuning())?;
    let metrics = Metrics::new(&config);
    let credentials = Credentials::new(
        settings.credentials.token.clone(),
        settings.credentials.services.clone(),
    );
    let dialer = Dialer {
        server: settings.server.clone(),
        tls: ClientTls::from_args(&settings.tls, &settings.server)?,
        noise: ClientNoise::from_args(&settings.noise)?,
        credentials: credentials.clone(),
        mode: Mode::Forward,
        protocol,
        config,
    };
    if let Some(addr) = &settings.metrics {
        metrics::serve(addr, metrics.clone(), shutdown.clone()).await?;
    }
    for service in &settings.services {
        if !transport::is_loopback(&service.addr).await? {
            tracing::warn!(
                "--listen {} is not a loopback address: anyone who can reach it can use the \
                 forwarded service without a token",
                service.addr
            );
        }
    }

    // Bumped when a reload changes the tokens: the session is renewed.
    let (renew_tx, renew_rx) = watch::channel(0u64);
    let (current_tx, current_rx) = watch::channel::<Option<Session>>(None);
    let maintainer = {
        let dialer = dialer.clone();
        let policy = settings.reconnect.clone();
        let shutdown = shutdown.clone();
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let mut sessions = 0u64;
            reconnect::maintain(&dialer, &policy, &shutdown, |session, driver| {
                sessions += 1;
                if sessions > 1 {
                    metrics.reconnected();
                }
                metrics.track(&session);
                let current_tx = current_tx.clone();
                let shutdown = shutdown.clone();
                let server = dialer.server.clone();
                let mut renew = renew_rx.clone();
                renew.borrow_and_update();
                async move {
                    current_tx.send_replace(Some(session.clone()));
                    tracing::info!("connected to forward server {server} ({protocol})");
                    tokio::select! {
                        _ = session.closed() => {
                            current_tx.send_replace(None);
                            SessionEnd::Dropped(reconnect::end_reason(&session, driver).await)
                        }
                        _ = renew.changed() => {
                            tracing::info!(
                                "tokens changed: opening a new session; the current one \
                                 finishes its open streams"
                            );
                            tokio::spawn(retire(session, driver, shutdown));
                            SessionEnd::Renew
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
    let context = LocalContext {
        serving: reload::Serving {
            relays: relays.clone(),
            connections: Limiter::new(
                settings.max_connections,
                "local connections",
                "--max-connections",
            ),
            metrics: metrics.clone(),
            shutdown: shutdown.clone(),
        },
        current: current_rx.clone(),
        wait: settings.wait_for_server,
    };
    let server_addr = settings.server.clone();
    let mut listeners = ListenerSet::new(
        "--listen",
        args.backlog.backlog,
        Box::new(move |service, bound, stop| {
            let listener = match bound {
                Bound::Tcp(listener) => listener,
                // Never here: udp:// is refused when the configuration is read (tunnel only).
                udp @ Bound::Udp(_) => return tokio::spawn(async move { udp }),
            };
            if let Ok(local) = listener.local_addr() {
                tracing::info!(
                    "forwarding {local} (service {}) to {server_addr} ({protocol})",
                    service.name
                );
            }
            let limit = service.max_connections.map(|n| {
                Limiter::new(
                    n,
                    format!("connections to service {}", service.name),
                    "max_connections of the service in the config file",
                )
            });
            let looping = local_loop(listener, service.name.clone(), context.clone(), limit, stop);
            tokio::spawn(async move { Bound::Tcp(looping.await) })
        }),
    );
    listeners.apply(&settings.services).await?;

    let mut reloads = args
        .file
        .config
        .clone()
        .map(|path| reload::watch(path, Side::ForwardClient, file_bytes, shutdown.clone()));
    let mut maintainer = maintainer;
    let ended_early = loop {
        let file = tokio::select! {
            biased;
            _ = shutdown.requested() => break None,
            ended = &mut maintainer => break Some(ended),
            Some(file) = reload::next(&mut reloads) => file,
        };
        let path = file.path.display().to_string();
        let next = match ClientSettings::resolve(&args, protocol, Some(&file)) {
            Ok(next) => next,
            Err(e) => {
                tracing::error!("reload rejected, the running configuration stays: {e:#}");
                continue;
            }
        };
        if next.server != settings.server
            || next.protocol != settings.protocol
            || next.noise.noise_pin != settings.noise.noise_pin
        {
            tracing::warn!(
                "reload: server, protocol or noise_pin changed in {path}; restart the client \
                 to apply (services and tokens are reloaded)"
            );
        }
        match listeners.apply(&next.services).await {
            Ok(changes) => {
                let renewed = credentials.set(next.credentials.clone());
                if renewed {
                    renew_tx.send_modify(|n| *n += 1);
                }
                tracing::info!(
                    "configuration reloaded from {path}: {}{}",
                    changes.describe(),
                    if renewed {
                        "; tokens changed, renewing the session"
                    } else {
                        ""
                    }
                );
            }
            Err(e) => {
                tracing::error!("reload rejected, the running configuration stays: {e:#}")
            }
        }
    };
    let maintainer = match ended_early {
        // Only a permanent error (or exhausted retries) ends it before shutdown.
        Some(ended) if !shutdown.is_requested() => {
            shutdown.token().cancel();
            listeners.stop_all().await;
            return match ended {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(e)) => Err(e),
                Err(e) => Err(anyhow!("the connection task failed: {e}")),
            };
        }
        Some(_) => None,
        None => Some(maintainer),
    };
    listeners.stop_all().await;
    let clean = shutdown::drain(&relays, settings.shutdown_timeout, "connections").await;
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
            settings.shutdown_timeout
        ))
    }
}

/// Closes a session replaced after a token change once its streams are done (checked four
/// times a second, after a second for the new session to take over) or at shutdown.
async fn retire(session: Session, driver: transport::DriverHandle, shutdown: Shutdown) {
    let idle = async {
        tokio::time::sleep(Duration::from_secs(1)).await;
        while session.stats().streams > 0 {
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    };
    tokio::select! {
        _ = idle => {}
        _ = shutdown.requested() => {}
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), session.close()).await;
    let _ = tokio::time::timeout(Duration::from_secs(1), driver).await;
}

/// What every local service's accept loop shares.
#[derive(Clone)]
struct LocalContext {
    serving: reload::Serving,
    current: watch::Receiver<Option<Session>>,
    wait: Duration,
}

/// Accepts local connections of one service until `stop` (a reload) or shutdown; returns
/// the listener so that a restart can reuse it.
async fn local_loop(
    listener: TcpListener,
    name: String,
    context: LocalContext,
    limit: Option<Limiter>,
    stop: CancellationToken,
) -> TcpListener {
    let serving = context.serving.clone();
    reload::accept_loop(
        listener,
        name,
        serving,
        limit,
        stop,
        move |tcp, peer, name, counters| {
            let current = context.current.clone();
            let wait = context.wait;
            async move { carry(tcp, peer, &name, current, wait, counters.meter()).await }
        },
    )
    .await
}

/// Carries one local connection over the current session; `false` when it was not served.
async fn carry(
    tcp: TcpStream,
    peer: SocketAddr,
    name: &str,
    mut current: watch::Receiver<Option<Session>>,
    wait: Duration,
    meter: &relay::Meter,
) -> bool {
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
            return false;
        };
        let stream = match tokio::time::timeout(OPEN_TIMEOUT, session.open()).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(e @ polymux::Error::TooManyStreams { .. })) => {
                tracing::warn!("{name}: {e}; closing {peer}. Raise --max-streams on both sides");
                return false;
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
                return false;
            }
        };
        let id = stream.id();
        return match relay::relay_opened(stream, tcp, name, meter).await {
            Ok(moved) => {
                tracing::debug!(
                    "{name}: connection from {peer} done on stream {id} ({} bytes out, {} bytes back)",
                    moved.into_stream,
                    moved.out_of_stream
                );
                true
            }
            Err(RelayError::Refused { what, message }) => {
                tracing::warn!(
                    "{name}: the forward server could not serve {peer}: {what}: {message}"
                );
                false
            }
            Err(RelayError::Io(e)) => {
                tracing::debug!("{name}: connection from {peer} on stream {id} ended: {e}");
                true
            }
        };
    }
    tracing::warn!("{name}: could not open a stream for {peer}; closing it");
    false
}
