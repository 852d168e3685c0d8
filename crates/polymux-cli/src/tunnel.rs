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
//! clients are connected, the newest one *that proved the service's token* gets new
//! connections (older ones serve what they have and stay as fallbacks).
//!
//! With `--config` both sides read their services from a TOML file ([`crate::config_file`])
//! and reload it ([`crate::reload`]): the server through a [`ListenerSet`] (untouched
//! services keep their listener and connections) and a new token table; the client by
//! swapping its targets, and by renewing its session when its tokens changed.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::anyhow;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::args::{
    ClientAuthArgs, ReconnectArgs, ServerAuthArgs, ServerGuardArgs, SessionArgs, ShutdownArgs,
};
use crate::auth::{Expectation, Mode, Token};
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
use crate::sessions::{Entry, SessionSet};
use crate::shutdown::{self, parse_duration, Shutdown};
use crate::tls::{ClientTls, ClientTlsArgs, ServerTlsArgs};
use crate::transport::{self, CredentialSet, Credentials, Dialer};
use crate::udp::UdpArgs;
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
    #[arg(long, value_name = "ADDR", required_unless_present = "config", value_parser = services::parse_listen_addr)]
    pub listen: Option<String>,
    /// A service to expose: [NAME=]HOST:PORT; every connection to it is carried to the client
    /// and connected to the client's --target of the same NAME; udp://HOST:PORT exposes a UDP
    /// service. Repeatable.
    #[arg(long, value_name = "[NAME=]ADDR", required_unless_present = "config", value_parser = services::parse_listen_spec)]
    pub expose: Vec<ServiceSpec>,
    /// How long a connection to an exposed service waits for a tunnel client (e.g. while it
    /// reconnects) before it is closed.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub wait_for_client: Duration,
    /// Tunnel clients connected at once.
    #[arg(long, value_name = "N", default_value_t = 16)]
    pub max_clients: usize,
    /// Connections to exposed services open at once.
    #[arg(long, value_name = "N", default_value_t = 4096)]
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
    pub guard: ServerGuardArgs,
    #[command(flatten)]
    pub udp: crate::udp::UdpArgs,
    #[command(flatten)]
    pub shutdown: ShutdownArgs,
    #[command(flatten)]
    pub file: FileArgs,
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
    #[arg(long, value_name = "ADDR", required_unless_present = "config")]
    pub server: Option<String>,
    /// Where to connect streams of a service: [NAME=]HOST:PORT (udp://HOST:PORT for a UDP
    /// service). Repeatable.
    #[arg(long, value_name = "[NAME=]ADDR", required_unless_present = "config")]
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
    #[command(flatten)]
    pub file: FileArgs,
}

/// The tunnel server's settings: flags over the config file over the flags' defaults.
#[derive(Clone, Debug)]
struct ServerSettings {
    listen: String,
    protocol: Protocol,
    token: Option<Token>,
    insecure_no_token: bool,
    tls: ServerTlsArgs,
    noise: ServerNoiseArgs,
    udp: UdpArgs,
    max_clients: usize,
    max_connections: usize,
    wait_for_client: Duration,
    session: SessionArgs,
    shutdown_timeout: Duration,
    metrics: Option<String>,
    services: Vec<ServiceConfig>,
}

impl ServerSettings {
    fn resolve(
        args: &TunnelServerArgs,
        protocol: Protocol,
        file: Option<&FileConfig>,
    ) -> anyhow::Result<ServerSettings> {
        let f = file.cloned().unwrap_or_default();
        let listen = config_file::required(&args.listen, &f.listen, "--listen", "listen")?;
        let services = config_file::effective_services(file, &args.expose, true);
        if services.is_empty() {
            return Err(config_file::missing("--expose", "[services.NAME] bind"));
        }
        let names: Vec<ServiceSpec> = services
            .iter()
            .map(|s| ServiceSpec {
                name: Some(s.name.clone()),
                addr: s.addr.clone(),
            })
            .collect();
        services::check_unique(&names, "--expose")?;
        let (tls, noise) = config_file::server_security(&args.tls, &args.noise, &f);
        Ok(ServerSettings {
            listen,
            protocol: config_file::pick("protocol", protocol, f.protocol),
            token: args.auth.token()?.or(f.token.clone()),
            insecure_no_token: args.auth.insecure_no_token || f.insecure_no_token == Some(true),
            tls,
            noise,
            udp: UdpArgs {
                udp_idle_timeout: config_file::pick(
                    "udp_idle_timeout",
                    args.udp.udp_idle_timeout,
                    f.udp_idle_timeout,
                ),
                udp_queue: config_file::pick("udp_queue", args.udp.udp_queue, f.udp_queue),
            },
            max_clients: config_file::pick("max_clients", args.max_clients, f.max_clients),
            max_connections: config_file::pick(
                "max_connections",
                args.max_connections,
                f.max_connections,
            ),
            wait_for_client: config_file::pick("wait_for_client", args.wait_for_client, f.wait),
            session: config_file::session(&args.session, &f),
            shutdown_timeout: config_file::shutdown_timeout(&args.shutdown, &f),
            metrics: args.file.metrics.clone().or(f.metrics),
            services,
        })
    }

    /// The settings a reload cannot change (they shape the running listener and sessions),
    /// as (name, differs).
    fn fixed_changes(&self, next: &ServerSettings) -> Vec<&'static str> {
        let mut changed = Vec::new();
        let mut check = |name, differs| {
            if differs {
                changed.push(name)
            }
        };
        check("listen", self.listen != next.listen);
        check("protocol", self.protocol != next.protocol);
        check(
            "tls",
            self.tls.tls_cert != next.tls.tls_cert || self.tls.tls_key != next.tls.tls_key,
        );
        check("noise_key", self.noise.noise_key != next.noise.noise_key);
        check(
            "udp_idle_timeout",
            self.udp.udp_idle_timeout != next.udp.udp_idle_timeout,
        );
        check("udp_queue", self.udp.udp_queue != next.udp.udp_queue);
        check("max_clients", self.max_clients != next.max_clients);
        check(
            "max_connections",
            self.max_connections != next.max_connections,
        );
        check(
            "wait_for_client",
            self.wait_for_client != next.wait_for_client,
        );
        check(
            "max_streams",
            self.session.max_streams != next.session.max_streams,
        );
        check(
            "keepalive",
            self.session.keepalive != next.session.keepalive,
        );
        check(
            "shutdown_timeout",
            self.shutdown_timeout != next.shutdown_timeout,
        );
        check("metrics", self.metrics != next.metrics);
        check(
            "insecure_no_token",
            self.insecure_no_token != next.insecure_no_token,
        );
        changed
    }
}

/// What every exposed service's accept loop shares.
#[derive(Clone)]
struct ExposeContext {
    serving: reload::Serving,
    set: SessionSet,
    wait: Duration,
    expect: Expectation,
    udp: UdpArgs,
}

/// Runs the tunnel server until shutdown.
pub async fn run_server(
    args: TunnelServerArgs,
    protocol: Protocol,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    let (file, file_bytes) =
        config_file::load_initial(args.file.config.as_deref(), Side::TunnelServer)?;
    let mut settings = ServerSettings::resolve(&args, protocol, file.as_ref())?;
    let protocol = settings.protocol;
    let setup = server::Setup::new(
        Mode::Tunnel,
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

    let backlog = args.guard.backlog.backlog;
    let control = transport::bind_with_backlog(&settings.listen, "--listen", backlog).await?;
    let control_addr = control.local_addr()?;
    tracing::info!(
        "tunnel server listening on {control_addr} for tunnel clients ({protocol}{})",
        setup.security_label()
    );
    setup.log_identity();
    let server::Setup {
        gate,
        expect,
        config,
        ..
    } = setup;
    let set = SessionSet::default();
    let client_tasks = TaskTracker::new();
    let relays = TaskTracker::new();
    let context = ExposeContext {
        serving: reload::Serving {
            relays: relays.clone(),
            connections: Limiter::new(
                settings.max_connections,
                "connections to exposed services",
                "--max-connections",
            ),
            metrics: metrics.clone(),
            shutdown: shutdown.clone(),
        },
        set: set.clone(),
        wait: settings.wait_for_client,
        expect: expect.clone(),
        udp: settings.udp.clone(),
    };
    let mut listeners = ListenerSet::new(
        "--expose",
        backlog,
        Box::new(move |service, bound, stop| {
            if let Ok(local) = bound.local_addr() {
                let own = if service.token.is_some() {
                    " (own token)"
                } else {
                    ""
                };
                let kind = match bound {
                    Bound::Tcp(_) => "",
                    Bound::Udp(_) => "UDP ",
                };
                tracing::info!("exposing {kind}service {} on {local}{own}", service.name);
            }
            let limit = service.max_connections.map(|n| {
                Limiter::new(
                    n,
                    format!("connections to service {}", service.name),
                    "max_connections of the service in the config file",
                )
            });
            match bound {
                Bound::Tcp(listener) => {
                    let looping =
                        expose_loop(listener, service.name.clone(), context.clone(), limit, stop);
                    tokio::spawn(async move { Bound::Tcp(looping.await) })
                }
                Bound::Udp(socket) => {
                    let usable: udp::Usable = {
                        let expect = context.expect.clone();
                        let name = service.name.clone();
                        Arc::new(move |entry: &Entry| entry.grants.allows(&expect.tokens(), &name))
                    };
                    let exposed = udp::Exposed {
                        name: service.name.clone(),
                        set: context.set.clone(),
                        usable,
                        relays: context.serving.relays.clone(),
                        connections: context.serving.connections.clone(),
                        limit,
                        wait: context.wait,
                        settings: context.udp.clone(),
                        counters: context.serving.metrics.service(&service.name),
                        shutdown: context.serving.shutdown.clone(),
                    };
                    let looping = udp::expose_loop(socket, exposed, stop);
                    tokio::spawn(async move { Bound::Udp(looping.await) })
                }
            }
        }),
    );
    listeners.apply(&settings.services).await?;

    let clients = Limiter::new(settings.max_clients, "tunnel clients", "--max-clients");
    let accepting = tokio::spawn(server::accept_clients(
        control,
        Admission::Preamble(gate),
        Guard::from_args(&args.guard, settings.session.max_streams),
        config,
        clients,
        set.clone(),
        client_tasks.clone(),
        shutdown.clone(),
        {
            let metrics = metrics.clone();
            move |entry| {
                metrics.track(&entry.session);
                async move {
                    entry.session.closed().await;
                }
            }
        },
    ));

    let mut reloads = args
        .file
        .config
        .clone()
        .map(|path| reload::watch(path, Side::TunnelServer, file_bytes, shutdown.clone()));
    loop {
        let next = tokio::select! {
            _ = shutdown.requested() => break,
            Some(file) = reload::next(&mut reloads) => file,
        };
        let path = next.path.display().to_string();
        let next = match ServerSettings::resolve(&args, protocol, Some(&next)) {
            Ok(next) => next,
            Err(e) => {
                tracing::error!("reload rejected, the running configuration stays: {e:#}");
                continue;
            }
        };
        let table = match config_file::token_table(
            next.token.as_ref(),
            &next.services,
            settings.insecure_no_token,
        ) {
            Ok(table) => table,
            Err(e) => {
                tracing::error!("reload rejected, the running configuration stays: {e:#}");
                continue;
            }
        };
        let fixed = settings.fixed_changes(&next);
        if !fixed.is_empty() {
            tracing::warn!(
                "reload: {} changed in {path}; restart the server to apply (services are reloaded)",
                fixed.join(", ")
            );
        }
        // Tokens first, so that an added service is never routed without its own token;
        // a removed service keeps its own token until its listener is closed.
        let previous = expect.tokens();
        let mut transition = table.clone();
        for (name, own) in &previous.services {
            transition.services.entry(name.clone()).or_insert(*own);
        }
        expect.set_tokens(transition);
        match listeners.apply(&next.services).await {
            Ok(changes) => {
                expect.set_tokens(table);
                tracing::info!("configuration reloaded from {path}: {}", changes.describe());
                settings.services = next.services;
                settings.token = next.token;
            }
            Err(e) => {
                expect.set_tokens((*previous).clone());
                tracing::error!("reload rejected, the running configuration stays: {e:#}");
            }
        }
    }

    listeners.stop_all().await;
    let _ = accepting.await;
    let clean = shutdown::drain(&relays, settings.shutdown_timeout, "connections").await;
    server::close_all(&set, Duration::from_secs(5)).await;
    client_tasks.close();
    let _ = tokio::time::timeout(Duration::from_secs(5), client_tasks.wait()).await;
    if clean {
        tracing::info!("tunnel server stopped");
        Ok(())
    } else {
        Err(anyhow!(
            "connections were cut off at shutdown after --shutdown-timeout {:?}",
            settings.shutdown_timeout
        ))
    }
}

/// Accepts connections to one exposed service until `stop` (a reload) or shutdown; returns
/// the listener so that a restart can reuse it.
async fn expose_loop(
    listener: TcpListener,
    name: String,
    context: ExposeContext,
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
            let context = context.clone();
            async move { carry(tcp, peer, &name, &context, counters.meter()).await }
        },
    )
    .await
}

/// Carries one exposed connection over the newest live session whose client proved this
/// service's token. `false` when no session served it.
async fn carry(
    tcp: TcpStream,
    peer: SocketAddr,
    name: &str,
    context: &ExposeContext,
    meter: &relay::Meter,
) -> bool {
    let wait = context.wait;
    let usable = |entry: &Entry| entry.grants.allows(&context.expect.tokens(), name);
    let mut tried = Vec::new();
    for _ in 0..3 {
        let Some(entry) = context.set.wait_newest(&tried, &usable, wait).await else {
            tracing::warn!(
                "{name}: no tunnel client for this service connected within {wait:?} \
                 (--wait-for-client); closing the connection from {peer}. Is `polymux tunnel \
                 client` running, with this service's token?"
            );
            return false;
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
        return match relay::relay_opened(stream, tcp, name, meter).await {
            Ok(moved) => {
                tracing::debug!(
                    "{name}: connection from {peer} done on stream {id} ({} bytes in, {} bytes out)",
                    moved.into_stream,
                    moved.out_of_stream
                );
                true
            }
            Err(RelayError::Refused { what, message }) => {
                tracing::warn!("{name}: tunnel client could not serve {peer}: {what}: {message}");
                false
            }
            Err(RelayError::Io(e)) => {
                tracing::debug!("{name}: connection from {peer} on stream {id} ended: {e}");
                true
            }
        };
    }
    tracing::warn!("{name}: no tunnel client accepted the connection from {peer}; closing it");
    false
}

/// The tunnel client's settings: flags over the config file over the flags' defaults.
#[derive(Clone, Debug)]
struct ClientSettings {
    server: String,
    protocol: Protocol,
    credentials: CredentialSet,
    tls: ClientTlsArgs,
    noise: ClientNoiseArgs,
    targets: Vec<ServiceSpec>,
    session: SessionArgs,
    reconnect: ReconnectArgs,
    shutdown_timeout: Duration,
    metrics: Option<String>,
}

impl ClientSettings {
    fn resolve(
        args: &TunnelClientArgs,
        protocol: Protocol,
        file: Option<&FileConfig>,
    ) -> anyhow::Result<ClientSettings> {
        let f = file.cloned().unwrap_or_default();
        let server = config_file::required(&args.server, &f.server, "--server", "server")?;
        let targets = config_file::merge_services(&f.services, &args.target);
        if targets.is_empty() {
            return Err(config_file::missing("--target", "[services.NAME] target"));
        }
        // A flag `--target NAME=…` replaces the file's service, token included.
        let services = f
            .services
            .iter()
            .filter(|s| {
                !args
                    .target
                    .iter()
                    .any(|t| t.name.as_deref() == Some(&s.name))
            })
            .filter_map(|s| Some((s.name.clone(), s.token.clone()?)))
            .collect();
        let (tls, noise) = config_file::client_security(&args.tls, &args.noise, &f);
        Ok(ClientSettings {
            server,
            protocol: config_file::pick("protocol", protocol, f.protocol),
            credentials: CredentialSet {
                token: args.auth.token()?.or(f.token.clone()),
                services,
            },
            tls,
            noise,
            targets,
            session: config_file::session(&args.session, &f),
            reconnect: config_file::reconnect(&args.reconnect, &f),
            shutdown_timeout: config_file::shutdown_timeout(&args.shutdown, &f),
            metrics: args.file.metrics.clone().or(f.metrics),
        })
    }

    /// Settings a reload cannot change.
    fn fixed_changes(&self, next: &ClientSettings) -> Vec<&'static str> {
        let mut changed = Vec::new();
        let mut check = |name, differs| {
            if differs {
                changed.push(name)
            }
        };
        check("server", self.server != next.server);
        check("protocol", self.protocol != next.protocol);
        check(
            "tls",
            self.tls.tls != next.tls.tls
                || self.tls.tls_ca != next.tls.tls_ca
                || self.tls.tls_pin != next.tls.tls_pin
                || self.tls.tls_server_name != next.tls.tls_server_name,
        );
        check("noise_pin", self.noise.noise_pin != next.noise.noise_pin);
        check(
            "max_streams",
            self.session.max_streams != next.session.max_streams,
        );
        check(
            "keepalive",
            self.session.keepalive != next.session.keepalive,
        );
        check(
            "max_backoff/max_retries",
            self.reconnect.max_backoff != next.reconnect.max_backoff
                || self.reconnect.max_retries != next.reconnect.max_retries,
        );
        check(
            "shutdown_timeout",
            self.shutdown_timeout != next.shutdown_timeout,
        );
        check("metrics", self.metrics != next.metrics);
        changed
    }
}

/// Runs the tunnel client until shutdown (or a permanent error).
pub async fn run_client(
    args: TunnelClientArgs,
    protocol: Protocol,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    let (file, file_bytes) =
        config_file::load_initial(args.file.config.as_deref(), Side::TunnelClient)?;
    let settings = ClientSettings::resolve(&args, protocol, file.as_ref())?;
    let protocol = settings.protocol;
    let config = session_config(protocol, &settings.session.tuning())?;
    let metrics = Metrics::new(&config);
    let targets = Targets::new(&settings.targets, "--target")?.with_metrics(metrics.clone());
    let credentials = Credentials::new(
        settings.credentials.token.clone(),
        settings.credentials.services.clone(),
    );
    let dialer = Dialer {
        server: settings.server.clone(),
        tls: ClientTls::from_args(&settings.tls, &settings.server)?,
        noise: ClientNoise::from_args(&settings.noise)?,
        credentials: credentials.clone(),
        mode: Mode::Tunnel,
        protocol,
        config,
    };
    if let Some(addr) = &settings.metrics {
        metrics::serve(addr, metrics.clone(), shutdown.clone()).await?;
    }
    // Bumped when a reload changes the tokens: the session is renewed.
    let (renew_tx, renew_rx) = watch::channel(0u64);
    if let Some(path) = args.file.config.clone() {
        let reloads = reload::watch(path, Side::TunnelClient, file_bytes, shutdown.clone());
        tokio::spawn(reload_client(
            reloads,
            args.clone(),
            settings.clone(),
            targets.clone(),
            credentials,
            renew_tx,
        ));
    }
    let streams = Limiter::new(settings.session.max_streams, "streams", "--max-streams");
    let relays = TaskTracker::new();
    let timeout = settings.shutdown_timeout;
    let mut sessions = 0u64;
    let clean = reconnect::maintain(
        &dialer,
        &settings.reconnect,
        &shutdown,
        |session, driver| {
            sessions += 1;
            if sessions > 1 {
                metrics.reconnected();
            }
            metrics.track(&session);
            let targets = targets.clone();
            let streams = streams.clone();
            let relays = relays.clone();
            let shutdown = shutdown.clone();
            let server = settings.server.clone();
            let mut renew = renew_rx.clone();
            renew.borrow_and_update();
            async move {
                tracing::info!(
                    "tunnel up: connected to {server} ({protocol}); services: {}",
                    targets.describe()
                );
                let accepting =
                    target::accept_loop(&session, &targets, &streams, &relays, &shutdown);
                tokio::pin!(accepting);
                tokio::select! {
                    _ = &mut accepting => {
                        SessionEnd::Dropped(reconnect::end_reason(&session, driver).await)
                    }
                    _ = renew.changed() => {
                        tracing::info!(
                            "tokens changed: opening a new session; the current one finishes its \
                             open streams"
                        );
                        tokio::spawn(retire(
                            session.clone(),
                            driver,
                            targets.clone(),
                            streams.clone(),
                            relays.clone(),
                            shutdown.clone(),
                        ));
                        SessionEnd::Renew
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
                        // The driver closes the transport (TLS: close_notify) after the
                        // session ends; wait for it, or the process exits first.
                        let _ = tokio::time::timeout(Duration::from_secs(2), driver).await;
                        SessionEnd::Shutdown { clean }
                    }
                }
            }
        },
    )
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

/// Lets a session replaced after a token change finish: GoAway (where the protocol has it),
/// keep serving what the server opened before it saw the new session, close once no stream
/// is left (checked four times a second) or at shutdown.
async fn retire(
    session: polymux::Session,
    driver: transport::DriverHandle,
    targets: Targets,
    streams: Limiter,
    relays: TaskTracker,
    shutdown: Shutdown,
) {
    let _ = session.go_away();
    let idle = async {
        // The server routes new connections to the newest session once it is registered;
        // give it a moment, then wait for the old streams to end.
        tokio::time::sleep(Duration::from_secs(1)).await;
        while session.stats().streams > 0 {
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    };
    tokio::select! {
        _ = target::accept_loop(&session, &targets, &streams, &relays, &shutdown) => {}
        _ = idle => {}
        _ = shutdown.requested() => {}
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), session.close()).await;
    let _ = tokio::time::timeout(Duration::from_secs(1), driver).await;
    tracing::debug!("the replaced session is closed");
}

/// Applies reloads of the client's config file: targets at once (new streams use them),
/// tokens by renewing the session.
async fn reload_client(
    mut reloads: tokio::sync::mpsc::Receiver<FileConfig>,
    args: TunnelClientArgs,
    mut settings: ClientSettings,
    targets: Targets,
    credentials: Credentials,
    renew: watch::Sender<u64>,
) {
    while let Some(file) = reloads.recv().await {
        let path = file.path.display().to_string();
        let next = ClientSettings::resolve(&args, settings.protocol, Some(&file))
            .and_then(|next| Ok((Targets::new(&next.targets, "--target")?, next)));
        let (new_targets, next) = match next {
            Ok(pair) => pair,
            Err(e) => {
                tracing::error!("reload rejected, the running configuration stays: {e:#}");
                continue;
            }
        };
        let fixed = settings.fixed_changes(&next);
        if !fixed.is_empty() {
            tracing::warn!(
                "reload: {} changed in {path}; restart the client to apply (services and \
                 tokens are reloaded)",
                fixed.join(", ")
            );
        }
        targets.replace(&new_targets);
        let renewed = credentials.set(next.credentials.clone());
        if renewed {
            renew.send_modify(|n| *n += 1);
        }
        tracing::info!(
            "configuration reloaded from {path}: services: {}{}",
            targets.describe(),
            if renewed {
                "; tokens changed, renewing the session"
            } else {
                ""
            }
        );
        settings.targets = next.targets;
        settings.credentials = next.credentials;
    }
}
