//! `--config FILE`: the TOML configuration file of `tunnel server|client` and
//! `forward server|client` — any number of services, each with its own token and limits.
//!
//! It owns the file's schema, its validation, and the rule that merges it with flags:
//! **a flag given on the command line (or through its environment variable) wins over the
//! file; a key in the file wins over the flag's default.** `--expose` / `--target` /
//! `--listen NAME=ADDR` add a service or replace the file's service of that name.
//!
//! Every error names the file, the line and the key (`server.toml:7: services.web.bind: …`):
//! syntax and type errors come from `toml` with their span, the checks made here after
//! parsing use the spans kept with [`Spanned`]. Relative paths in the file (`token_file`,
//! TLS files) are relative to the file's directory.
//!
//! ```toml
//! listen = "0.0.0.0:7000"          # servers; clients have `server = "HOST:PORT"`
//! token_file = "default.token"     # or token = "…": for services without their own
//! [tls]                            # servers: cert, key; clients: ca | pin | system, server_name
//! cert = "cert.pem"
//! key = "key.pem"
//! [services.web]
//! bind = "0.0.0.0:8080"            # listening sides (tunnel server, forward client)
//! token = "…"                      # this service's own token
//! max_connections = 100
//! [services.ssh]
//! bind = "0.0.0.0:2222"            # dialling sides have `target = "HOST:PORT"` instead
//! [services.dns]
//! bind = "udp://0.0.0.0:5353"      # a UDP service (tunnel only)
//! ```
//!
//! Noise instead of TLS: `noise_key = "server.key"` on servers, `noise_pin = "HEX"` on
//! clients (never together with `[tls]`). The tunnel server's UDP flows: `udp_idle_timeout`,
//! `udp_queue`. As with flags, a transport-security flag on the command line (TLS or Noise)
//! replaces the file's `[tls]` / `noise_*` keys as a whole.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use clap::parser::ValueSource;
use clap::ArgMatches;
use serde::de::Error as _;
use serde::{Deserialize, Deserializer};
use toml::Spanned;

use crate::args::{ReconnectArgs, SessionArgs, ShutdownArgs};
use crate::auth::{Token, TokenTable};
use crate::error::config_error;
use crate::noise::{ClientNoiseArgs, ServerNoiseArgs};
use crate::protocol::Protocol;
use crate::services::{valid_name, ServiceSpec, MAX_NAME_LEN};
use crate::shutdown::parse_duration;
use crate::tls::{ClientTlsArgs, ServerTlsArgs};

/// `--config` and `--metrics`, flattened into the four tunnel/forward subcommands.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct FileArgs {
    /// Read settings and services from this TOML file (flags given as well override it).
    /// It is reloaded when it changes and on SIGHUP: added services start, removed ones
    /// stop (their open connections finish), changed ones restart; a file with an error is
    /// rejected and the running configuration stays.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Serve Prometheus metrics (text format) on this address, e.g. 127.0.0.1:9100.
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<String>,
}

/// Which subcommand reads the file: it decides which keys are allowed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// `tunnel server`: `listen`, services with `bind`.
    TunnelServer,
    /// `tunnel client`: `server`, services with `target`.
    TunnelClient,
    /// `forward server`: `listen`, services with `target`.
    ForwardServer,
    /// `forward client`: `server`, services with `bind`.
    ForwardClient,
}

impl Side {
    fn is_server(self) -> bool {
        matches!(self, Side::TunnelServer | Side::ForwardServer)
    }

    /// Whether this side's services listen (`bind`) rather than dial (`target`).
    pub fn services_listen(self) -> bool {
        matches!(self, Side::TunnelServer | Side::ForwardClient)
    }

    fn name(self) -> &'static str {
        match self {
            Side::TunnelServer => "tunnel server",
            Side::TunnelClient => "tunnel client",
            Side::ForwardServer => "forward server",
            Side::ForwardClient => "forward client",
        }
    }
}

/// One service after validation: its name, the address it binds or dials, its own token
/// and its limit. Equality (tokens compared in constant time) decides "changed" on reload.
#[derive(Clone, Debug, PartialEq)]
pub struct ServiceConfig {
    /// The service name (the stream header carries it).
    pub name: String,
    /// `bind` on listening sides, `target` on dialling sides.
    pub addr: String,
    /// The service's own token; `None`: the default token.
    pub token: Option<Token>,
    /// Connections to this service open at once (listening sides).
    pub max_connections: Option<usize>,
}

/// Client-side TLS keys.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientTlsFile {
    /// `ca`: a PEM file of trusted certificates.
    pub ca: Option<PathBuf>,
    /// `pin`: the server certificate's SHA-256.
    pub pin: Option<String>,
    /// `system = true`: trust the system's roots.
    pub system: bool,
    /// `server_name`.
    pub server_name: Option<String>,
}

/// A validated file. Everything is optional except what the side requires of services.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FileConfig {
    /// The file, for messages.
    pub path: PathBuf,
    /// `listen` (servers).
    pub listen: Option<String>,
    /// `server` (clients).
    pub server: Option<String>,
    /// `protocol`.
    pub protocol: Option<Protocol>,
    /// `token` / `token_file`: the default token.
    pub token: Option<Token>,
    /// `insecure_no_token` (servers).
    pub insecure_no_token: Option<bool>,
    /// `max_clients` (servers).
    pub max_clients: Option<usize>,
    /// `max_connections` (tunnel server, forward client): all services together.
    pub max_connections: Option<usize>,
    /// `wait_for_client` (tunnel server) / `wait_for_server` (forward client).
    pub wait: Option<Duration>,
    /// `keepalive`.
    pub keepalive: Option<Duration>,
    /// `max_streams`.
    pub max_streams: Option<usize>,
    /// `shutdown_timeout`.
    pub shutdown_timeout: Option<Duration>,
    /// `max_backoff` (clients).
    pub max_backoff: Option<Duration>,
    /// `max_retries` (clients).
    pub max_retries: Option<u32>,
    /// `metrics`: where to serve Prometheus metrics.
    pub metrics: Option<String>,
    /// `[tls] cert` and `key` (servers).
    pub tls_cert: Option<(PathBuf, PathBuf)>,
    /// `[tls]` of clients.
    pub client_tls: ClientTlsFile,
    /// `noise_key` (servers): the Noise static private key file.
    pub noise_key: Option<PathBuf>,
    /// `noise_pin` (clients): the server's Noise public key.
    pub noise_pin: Option<String>,
    /// `udp_idle_timeout` (tunnel server).
    pub udp_idle_timeout: Option<Duration>,
    /// `udp_queue` (tunnel server).
    pub udp_queue: Option<usize>,
    /// `[services.NAME]`, sorted by name.
    pub services: Vec<ServiceConfig>,
}

// ---- the raw schema -------------------------------------------------------------------

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawFile {
    listen: Option<Spanned<HostPort>>,
    server: Option<Spanned<HostPort>>,
    protocol: Option<Protocol>,
    token: Option<Spanned<String>>,
    token_file: Option<Spanned<PathBuf>>,
    insecure_no_token: Option<Spanned<bool>>,
    max_clients: Option<Spanned<usize>>,
    max_connections: Option<Spanned<usize>>,
    wait_for_client: Option<Spanned<Dur>>,
    wait_for_server: Option<Spanned<Dur>>,
    keepalive: Option<Dur>,
    max_streams: Option<Spanned<usize>>,
    shutdown_timeout: Option<Dur>,
    max_backoff: Option<Spanned<Dur>>,
    max_retries: Option<Spanned<u32>>,
    metrics: Option<HostPort>,
    tls: Option<Spanned<RawTls>>,
    noise_key: Option<Spanned<PathBuf>>,
    noise_pin: Option<Spanned<String>>,
    udp_idle_timeout: Option<Spanned<Dur>>,
    udp_queue: Option<Spanned<usize>>,
    #[serde(default)]
    services: BTreeMap<Spanned<ServiceName>, Spanned<RawService>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawTls {
    cert: Option<Spanned<PathBuf>>,
    key: Option<Spanned<PathBuf>>,
    ca: Option<Spanned<PathBuf>>,
    pin: Option<Spanned<String>>,
    system: Option<Spanned<bool>>,
    server_name: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawService {
    bind: Option<Spanned<HostPort>>,
    target: Option<Spanned<HostPort>>,
    token: Option<Spanned<String>>,
    token_file: Option<Spanned<PathBuf>>,
    max_connections: Option<Spanned<usize>>,
}

/// `HOST:PORT`, checked while parsing (so the error carries the value's span).
#[derive(Clone, Debug)]
struct HostPort(String);

impl<'de> Deserialize<'de> for HostPort {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        // The spec parser knows HOST:PORT; a bare address parses as an unnamed spec.
        match s.parse::<ServiceSpec>() {
            Ok(spec) if spec.name.is_none() => Ok(HostPort(s)),
            _ => Err(D::Error::custom(format!(
                "{s:?} is not HOST:PORT (e.g. 127.0.0.1:8080)"
            ))),
        }
    }
}

/// A duration like `30s` or `500ms`.
#[derive(Clone, Copy, Debug)]
struct Dur(Duration);

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        parse_duration(&s).map(Dur).map_err(D::Error::custom)
    }
}

/// A service name as a table key.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct ServiceName(String);

impl<'de> Deserialize<'de> for ServiceName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if valid_name(&s) {
            Ok(ServiceName(s))
        } else {
            Err(D::Error::custom(format!(
                "service name {s:?} must be 1-{MAX_NAME_LEN} letters, digits, '.', '_' or '-'"
            )))
        }
    }
}

// ---- loading --------------------------------------------------------------------------

/// Validates the text of a config file (`path` for messages and relative paths).
pub fn parse(text: &str, path: &Path, side: Side) -> anyhow::Result<FileConfig> {
    let raw: RawFile = toml::from_str(text).map_err(|e| {
        // toml's message names the line, the column and (for unknown or mistyped keys) the
        // key, and quotes the offending line.
        config_error(format!("config file {}: {e}", path.display()).trim_end())
    })?;
    let at = Locator { text, path };
    let dir = path.parent().unwrap_or(Path::new("."));
    let resolve = |p: &Path| {
        if p.is_relative() {
            dir.join(p)
        } else {
            p.to_path_buf()
        }
    };

    let servers_only = [
        ("listen", raw.listen.as_ref().map(Spanned::span)),
        (
            "insecure_no_token",
            raw.insecure_no_token.as_ref().map(Spanned::span),
        ),
        ("max_clients", raw.max_clients.as_ref().map(Spanned::span)),
        ("noise_key", raw.noise_key.as_ref().map(Spanned::span)),
    ];
    let clients_only = [
        ("server", raw.server.as_ref().map(Spanned::span)),
        ("noise_pin", raw.noise_pin.as_ref().map(Spanned::span)),
        ("max_backoff", raw.max_backoff.as_ref().map(Spanned::span)),
        ("max_retries", raw.max_retries.as_ref().map(Spanned::span)),
    ];
    let (wrong, hint) = if side.is_server() {
        (&clients_only, "is for clients")
    } else {
        (&servers_only, "is for servers")
    };
    for (key, span) in wrong {
        if let Some(span) = span {
            return Err(at.error(
                span.clone(),
                key,
                &format!("{hint}; this is a {}", side.name()),
            ));
        }
    }
    let only_for = |key: &str, span: Option<Range<usize>>, allowed: bool, who: &str| match span {
        Some(span) if !allowed => Err(at.error(span, key, &format!("is for the {who} only"))),
        _ => Ok(()),
    };
    only_for(
        "wait_for_client",
        raw.wait_for_client.as_ref().map(Spanned::span),
        side == Side::TunnelServer,
        "tunnel server",
    )?;
    only_for(
        "wait_for_server",
        raw.wait_for_server.as_ref().map(Spanned::span),
        side == Side::ForwardClient,
        "forward client",
    )?;
    for (key, span) in [
        (
            "udp_idle_timeout",
            raw.udp_idle_timeout.as_ref().map(Spanned::span),
        ),
        ("udp_queue", raw.udp_queue.as_ref().map(Spanned::span)),
    ] {
        only_for(key, span, side == Side::TunnelServer, "tunnel server")?;
    }
    if let (Some(_), Some(noise)) = (&raw.tls, &raw.noise_key) {
        return Err(at.error(
            noise.span(),
            "noise_key",
            "give either [tls] or noise_key, not both",
        ));
    }
    if let (Some(_), Some(noise)) = (&raw.tls, &raw.noise_pin) {
        return Err(at.error(
            noise.span(),
            "noise_pin",
            "give either [tls] or noise_pin, not both",
        ));
    }
    if let Some(pin) = &raw.noise_pin {
        if crate::noise::parse_key(pin.get_ref()).is_none() {
            return Err(at.error(
                pin.span(),
                "noise_pin",
                "is not a Noise public key: expected 64 hex digits, as printed by \
                 `polymux keygen`",
            ));
        }
    }
    only_for(
        "max_connections",
        raw.max_connections.as_ref().map(Spanned::span),
        side.services_listen(),
        "tunnel server and forward client",
    )?;

    let token = read_token(
        &at,
        "",
        raw.token.as_ref(),
        raw.token_file.as_ref(),
        &resolve,
    )?;
    let mut file = FileConfig {
        path: path.to_path_buf(),
        listen: raw.listen.map(|s| s.into_inner().0),
        server: raw.server.map(|s| s.into_inner().0),
        protocol: raw.protocol,
        token,
        insecure_no_token: raw.insecure_no_token.map(Spanned::into_inner),
        max_clients: positive(&at, "max_clients", raw.max_clients)?,
        max_connections: positive(&at, "max_connections", raw.max_connections)?,
        wait: raw
            .wait_for_client
            .or(raw.wait_for_server)
            .map(|d| d.into_inner().0),
        keepalive: raw.keepalive.map(|d| d.0),
        max_streams: positive(&at, "max_streams", raw.max_streams)?,
        shutdown_timeout: raw.shutdown_timeout.map(|d| d.0),
        max_backoff: raw.max_backoff.map(|d| d.into_inner().0),
        max_retries: raw.max_retries.map(Spanned::into_inner),
        metrics: raw.metrics.map(|m| m.0),
        noise_key: raw.noise_key.map(|p| resolve(p.get_ref())),
        noise_pin: raw.noise_pin.map(Spanned::into_inner),
        udp_idle_timeout: raw.udp_idle_timeout.map(|d| d.into_inner().0),
        udp_queue: positive(&at, "udp_queue", raw.udp_queue)?,
        ..FileConfig::default()
    };

    if let Some(tls) = raw.tls {
        let span = tls.span();
        let tls = tls.into_inner();
        if side.is_server() {
            for (key, value) in [
                ("tls.ca", tls.ca.as_ref().map(Spanned::span)),
                ("tls.pin", tls.pin.as_ref().map(Spanned::span)),
                ("tls.system", tls.system.as_ref().map(Spanned::span)),
                (
                    "tls.server_name",
                    tls.server_name.as_ref().map(Spanned::span),
                ),
            ] {
                if let Some(span) = value {
                    return Err(at.error(span, key, "is for clients; a server has cert and key"));
                }
            }
            match (tls.cert, tls.key) {
                (Some(cert), Some(key)) => {
                    file.tls_cert = Some((resolve(cert.get_ref()), resolve(key.get_ref())))
                }
                (None, None) => {}
                _ => return Err(at.error(span, "tls", "needs both cert and key")),
            }
        } else {
            for (key, value) in [
                ("tls.cert", tls.cert.as_ref().map(Spanned::span)),
                ("tls.key", tls.key.as_ref().map(Spanned::span)),
            ] {
                if let Some(span) = value {
                    return Err(at.error(
                        span,
                        key,
                        "is for servers; a client has ca, pin or system",
                    ));
                }
            }
            if let (Some(_), Some(pin)) = (&tls.ca, &tls.pin) {
                return Err(at.error(pin.span(), "tls.pin", "give either ca or pin, not both"));
            }
            file.client_tls = ClientTlsFile {
                ca: tls.ca.map(|p| resolve(p.get_ref())),
                pin: tls.pin.map(Spanned::into_inner),
                system: tls.system.is_some_and(Spanned::into_inner),
                server_name: tls.server_name.map(Spanned::into_inner),
            };
        }
    }

    let (addr_key, other_key) = if side.services_listen() {
        ("bind", "target")
    } else {
        ("target", "bind")
    };
    let mut seen_binds: BTreeMap<String, String> = BTreeMap::new();
    for (name, service) in raw.services {
        let name = name.into_inner().0;
        let span = service.span();
        let service = service.into_inner();
        let key = |k: &str| format!("services.{name}.{k}");
        let (addr, other) = if side.services_listen() {
            (service.bind, service.target)
        } else {
            (service.target, service.bind)
        };
        if let Some(other) = other {
            return Err(at.error(
                other.span(),
                &key(other_key),
                &format!(
                    "a {} service has `{addr_key}`, not `{other_key}`",
                    side.name()
                ),
            ));
        }
        let Some(addr) = addr else {
            return Err(at.error(
                span,
                &format!("services.{name}"),
                &format!("needs `{addr_key} = \"HOST:PORT\"`"),
            ));
        };
        if crate::udp::udp_target(&addr.get_ref().0).is_some()
            && matches!(side, Side::ForwardServer | Side::ForwardClient)
        {
            return Err(at.error(
                addr.span(),
                &key(addr_key),
                "UDP services are carried by `polymux tunnel` only",
            ));
        }
        if let Some(limit) = &service.max_connections {
            if !side.services_listen() {
                return Err(at.error(
                    limit.span(),
                    &key("max_connections"),
                    "is for listening services (tunnel server, forward client)",
                ));
            }
        }
        if side.services_listen() && !addr.get_ref().0.ends_with(":0") {
            if let Some(previous) = seen_binds.insert(addr.get_ref().0.clone(), name.clone()) {
                return Err(at.error(
                    addr.span(),
                    &key("bind"),
                    &format!(
                        "{} is already the bind address of service {previous}",
                        addr.get_ref().0
                    ),
                ));
            }
        }
        let token = read_token(
            &at,
            &format!("services.{name}."),
            service.token.as_ref(),
            service.token_file.as_ref(),
            &resolve,
        )?;
        file.services.push(ServiceConfig {
            max_connections: positive(&at, &key("max_connections"), service.max_connections)?,
            name,
            addr: addr.into_inner().0,
            token,
        });
    }
    Ok(file)
}

fn positive<T: Copy + Default + PartialEq>(
    at: &Locator<'_>,
    key: &str,
    value: Option<Spanned<T>>,
) -> anyhow::Result<Option<T>> {
    match value {
        Some(v) if *v.get_ref() == T::default() => {
            Err(at.error(v.span(), key, "must be at least 1"))
        }
        other => Ok(other.map(Spanned::into_inner)),
    }
}

fn read_token(
    at: &Locator<'_>,
    prefix: &str,
    token: Option<&Spanned<String>>,
    token_file: Option<&Spanned<PathBuf>>,
    resolve: &dyn Fn(&Path) -> PathBuf,
) -> anyhow::Result<Option<Token>> {
    match (token, token_file) {
        (Some(_), Some(file)) => Err(at.error(
            file.span(),
            &format!("{prefix}token_file"),
            "give either token or token_file, not both",
        )),
        (Some(t), None) => {
            let key = format!("{prefix}token");
            Token::from_secret(t.get_ref(), &at.place(t.span(), &key))
                .map(Some)
                .map_err(|e| at.error(t.span(), &key, &format!("{e:#}")))
        }
        (None, Some(file)) => {
            let key = format!("{prefix}token_file");
            let full = resolve(file.get_ref());
            let text = std::fs::read_to_string(&full).map_err(|e| {
                at.error(
                    file.span(),
                    &key,
                    &format!("cannot read {}: {e}", full.display()),
                )
            })?;
            let secret = text.trim_end_matches(['\r', '\n']);
            Token::from_secret(secret, &at.place(file.span(), &key))
                .map(Some)
                .map_err(|e| at.error(file.span(), &key, &format!("{e:#}")))
        }
        (None, None) => Ok(None),
    }
}

/// Turns byte spans into `file:line: key: message`.
struct Locator<'a> {
    text: &'a str,
    path: &'a Path,
}

impl Locator<'_> {
    fn line(&self, span: &Range<usize>) -> usize {
        let end = span.start.min(self.text.len());
        self.text.as_bytes()[..end]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1
    }

    fn place(&self, span: Range<usize>, key: &str) -> String {
        format!("{}:{}: {key}", self.path.display(), self.line(&span))
    }

    fn error(&self, span: Range<usize>, key: &str, message: &str) -> anyhow::Error {
        let place = self.place(span, key);
        // Messages from Token already start with the place.
        let message = message
            .strip_prefix(&format!("{place}: "))
            .unwrap_or(message);
        config_error(format!("config file {place}: {message}"))
    }
}

// ---- flags versus file ----------------------------------------------------------------

static MATCHES: OnceLock<ArgMatches> = OnceLock::new();

/// Keeps the parsed command line, so that [`explicit`] can tell a flag given by the user
/// from its default (only the former overrides the file).
pub fn remember_matches(matches: ArgMatches) {
    let _ = MATCHES.set(matches);
}

/// Whether the argument `id` (clap's id: the field name) of the innermost subcommand was
/// given on the command line or through its environment variable.
pub fn explicit(id: &str) -> bool {
    let Some(mut matches) = MATCHES.get() else {
        return false;
    };
    while let Some((_, sub)) = matches.subcommand() {
        matches = sub;
    }
    matches!(
        matches
            .try_get_raw(id)
            .ok()
            .flatten()
            .and(matches.value_source(id)),
        Some(ValueSource::CommandLine | ValueSource::EnvVariable)
    )
}

/// The server's TLS and Noise settings. A security flag on the command line (`--tls-cert`
/// or `--noise-key`) replaces the file's `[tls]` and `noise_key` as a whole, so that a flag
/// never combines with the file into TLS and Noise at once.
pub fn server_security(
    tls: &ServerTlsArgs,
    noise: &ServerNoiseArgs,
    f: &FileConfig,
) -> (ServerTlsArgs, ServerNoiseArgs) {
    if tls.tls_cert.is_some() || tls.tls_key.is_some() || noise.noise_key.is_some() {
        return (tls.clone(), noise.clone());
    }
    let (tls_cert, tls_key) = f
        .tls_cert
        .clone()
        .map_or((None, None), |(c, k)| (Some(c), Some(k)));
    (
        ServerTlsArgs { tls_cert, tls_key },
        ServerNoiseArgs {
            noise_key: f.noise_key.clone(),
        },
    )
}

/// The client's TLS and Noise settings, by the rule of [`server_security`]: `--tls`,
/// `--tls-ca`, `--tls-pin` or `--noise-pin` replace the file's `[tls]` and `noise_pin`
/// (`--tls-server-name` alone does not; it names the server of the file's `[tls]`).
pub fn client_security(
    tls: &ClientTlsArgs,
    noise: &ClientNoiseArgs,
    f: &FileConfig,
) -> (ClientTlsArgs, ClientNoiseArgs) {
    if tls.tls || tls.tls_ca.is_some() || tls.tls_pin.is_some() || noise.noise_pin.is_some() {
        return (tls.clone(), noise.clone());
    }
    (
        ClientTlsArgs {
            tls: f.client_tls.system,
            tls_ca: f.client_tls.ca.clone(),
            tls_pin: f.client_tls.pin.clone(),
            tls_server_name: tls
                .tls_server_name
                .clone()
                .or(f.client_tls.server_name.clone()),
        },
        ClientNoiseArgs {
            noise_pin: f.noise_pin.clone(),
        },
    )
}

/// `flag` when given explicitly, else the file's value, else `flag` (its default).
pub fn pick<T>(id: &str, flag: T, file: Option<T>) -> T {
    if explicit(id) {
        flag
    } else {
        file.unwrap_or(flag)
    }
}

/// The file's services with the flags' `NAME=ADDR` specs on top (a flag replaces the
/// file's service of the same name; an unnamed flag spec is the `default` service on
/// listening sides, the catch-all on dialling sides).
pub fn merge_services(file: &[ServiceConfig], flags: &[ServiceSpec]) -> Vec<ServiceSpec> {
    let mut merged: Vec<ServiceSpec> = file
        .iter()
        .filter(|s| !flags.iter().any(|f| f.name.as_deref() == Some(&s.name)))
        .map(|s| ServiceSpec {
            name: Some(s.name.clone()),
            addr: s.addr.clone(),
        })
        .collect();
    merged.extend(flags.iter().cloned());
    merged
}

/// The services a side runs: the file's, with flag specs replacing or adding (flag specs
/// have no own token: they use the default token).
pub fn effective_services(
    file: Option<&FileConfig>,
    flags: &[ServiceSpec],
    listening: bool,
) -> Vec<ServiceConfig> {
    let mut out: Vec<ServiceConfig> = file
        .map(|f| f.services.clone())
        .unwrap_or_default()
        .into_iter()
        .filter(|s| !flags.iter().any(|f| f.name.as_deref() == Some(&s.name)))
        .collect();
    for spec in flags {
        if spec.name.is_none() && !listening {
            continue; // the catch-all target is not a named service
        }
        out.push(ServiceConfig {
            name: spec.wire_name().to_owned(),
            addr: spec.addr.clone(),
            token: None,
            max_connections: None,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// Loads `--config` at startup: the validated file and its bytes (for the reload watcher).
pub fn load_initial(
    path: Option<&Path>,
    side: Side,
) -> anyhow::Result<(Option<FileConfig>, Vec<u8>)> {
    let Some(path) = path else {
        return Ok((None, Vec::new()));
    };
    let bytes = std::fs::read(path).map_err(|e| {
        config_error(format!(
            "cannot read the config file {}: {e}",
            path.display()
        ))
    })?;
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| config_error(format!("config file {}: not UTF-8", path.display())))?;
    let file = parse(text, path, side)?;
    tracing::info!(
        "loaded {} ({} services)",
        path.display(),
        file.services.len()
    );
    Ok((Some(file), bytes))
}

/// The server's token table: the default token and each service's own. Every service must
/// have a token (its own or the default) unless `insecure` (`--insecure-no-token`).
pub fn token_table(
    default: Option<&Token>,
    services: &[ServiceConfig],
    insecure: bool,
) -> anyhow::Result<TokenTable> {
    let mut table = TokenTable::with_default(default);
    // Only the flag opens anything: a reload that drops every token is rejected, not open.
    table.open = insecure;
    for service in services {
        if default.is_none() && service.token.is_none() && !insecure {
            return Err(config_error(format!(
                "service {} has no token and there is no default one: give it `token` or \
                 `token_file` in the config file, or set --token / POLYMUX_TOKEN / `token`",
                service.name
            )));
        }
        table.services.insert(
            service.name.clone(),
            service.token.as_ref().map(Token::sha256),
        );
    }
    Ok(table)
}

/// Some token of the server, if it has any (for the "no token beyond loopback" policy).
pub fn any_token<'a>(
    default: Option<&'a Token>,
    services: &'a [ServiceConfig],
) -> Option<&'a Token> {
    default.or_else(|| services.iter().find_map(|s| s.token.as_ref()))
}

/// A required address (`--listen`, `--server`): the flag, else the file's `key`.
pub fn required(
    flag: &Option<String>,
    file: &Option<String>,
    name: &str,
    key: &str,
) -> anyhow::Result<String> {
    match (flag, file) {
        (Some(flag), _) => Ok(flag.clone()),
        (None, Some(file)) => Ok(file.clone()),
        (None, None) => Err(missing(name, key)),
    }
}

/// `--max-streams` and `--keepalive` over the file's `max_streams` and `keepalive`.
pub fn session(args: &SessionArgs, f: &FileConfig) -> SessionArgs {
    SessionArgs {
        max_streams: pick("max_streams", args.max_streams, f.max_streams),
        keepalive: pick("keepalive", args.keepalive, f.keepalive),
    }
}

/// `--max-backoff` and `--max-retries` over the file's `max_backoff` and `max_retries`.
pub fn reconnect(args: &ReconnectArgs, f: &FileConfig) -> ReconnectArgs {
    ReconnectArgs {
        max_backoff: pick("max_backoff", args.max_backoff, f.max_backoff),
        max_retries: args.max_retries.or(f.max_retries),
    }
}

/// `--shutdown-timeout` over the file's `shutdown_timeout`.
pub fn shutdown_timeout(args: &ShutdownArgs, f: &FileConfig) -> Duration {
    pick(
        "shutdown_timeout",
        args.shutdown_timeout,
        f.shutdown_timeout,
    )
}

/// The error when neither a flag nor the file gives a required value.
pub fn missing(flag: &str, key: &str) -> anyhow::Error {
    config_error(format!(
        "{flag} is required (or `{key} = …` in the --config file)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{exit_code, EXIT_CONFIG};

    fn err(text: &str, side: Side) -> String {
        let e = parse(text, Path::new("/etc/polymux/s.toml"), side).expect_err("invalid");
        assert_eq!(exit_code(&e), EXIT_CONFIG);
        format!("{e:#}")
    }

    #[test]
    fn a_two_service_server_file_parses() {
        let text = r#"
listen = "127.0.0.1:7000"
token = "default-token-0123456789"
max_clients = 4
wait_for_client = "2s"

[services.web]
bind = "127.0.0.1:8080"
token = "web-token-0123456789abc"
max_connections = 10

[services.api]
bind = "127.0.0.1:8081"
"#;
        let f = parse(text, Path::new("s.toml"), Side::TunnelServer).expect("valid");
        assert_eq!(f.listen.as_deref(), Some("127.0.0.1:7000"));
        assert_eq!(f.max_clients, Some(4));
        assert_eq!(f.wait, Some(Duration::from_secs(2)));
        let names: Vec<&str> = f.services.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["api", "web"]);
        assert!(f.services[0].token.is_none());
        assert_eq!(f.services[1].max_connections, Some(10));
        assert!(f.services[1].token.is_some());
    }

    #[test]
    fn errors_name_the_file_line_and_key() {
        let e = err(
            "listen = \"127.0.0.1:7000\"\n[services.web]\nbind = \"nope\"\n",
            Side::TunnelServer,
        );
        assert!(
            e.contains("/etc/polymux/s.toml") && e.contains("line 3"),
            "{e}"
        );
        assert!(e.contains("bind") && e.contains("HOST:PORT"), "{e}");

        let e = err(
            "listen = \"127.0.0.1:7000\"\n\n[services.web]\ntarget = \"127.0.0.1:1\"\n",
            Side::TunnelServer,
        );
        assert!(e.contains("s.toml:4: services.web.target"), "{e}");

        let e = err("server = \"127.0.0.1:7000\"\n", Side::TunnelServer);
        assert!(e.contains("s.toml:1: server: is for clients"), "{e}");

        let e = err(
            "[services.web]\nbind = \"127.0.0.1:1\"\nmax_connections = 0\n",
            Side::TunnelServer,
        );
        assert!(
            e.contains("s.toml:3: services.web.max_connections: must be at least 1"),
            "{e}"
        );

        let e = err(
            "[services.web]\nbind = \"127.0.0.1:1\"\ntokn = \"x\"\n",
            Side::TunnelServer,
        );
        assert!(e.contains("line 3") && e.contains("tokn"), "{e}");

        let e = err(
            "[services.\"bad name\"]\ntarget = \"127.0.0.1:1\"\n",
            Side::TunnelClient,
        );
        assert!(e.contains("line 1") && e.contains("bad name"), "{e}");

        let e = err(
            "[services.web]\ntarget = \"127.0.0.1:1\"\ntoken = \"\"\n",
            Side::TunnelClient,
        );
        assert!(
            e.contains("s.toml:3: services.web.token") && e.contains("empty"),
            "{e}"
        );

        let e = err(
            "[services.a]\nbind = \"127.0.0.1:5\"\n[services.b]\nbind = \"127.0.0.1:5\"\n",
            Side::ForwardClient,
        );
        assert!(
            e.contains("s.toml:4: services.b.bind") && e.contains("service a"),
            "{e}"
        );

        let e = err("[services.web]\n", Side::ForwardServer);
        assert!(e.contains("s.toml:1: services.web: needs `target"), "{e}");
    }

    #[test]
    fn flags_replace_file_services_by_name() {
        let file = parse(
            "[services.web]\nbind = \"127.0.0.1:1\"\ntoken = \"web-token-0123456789\"\n[services.api]\nbind = \"127.0.0.1:2\"\n",
            Path::new("s.toml"),
            Side::TunnelServer,
        )
        .expect("valid");
        let flags: Vec<ServiceSpec> = vec!["web=127.0.0.1:9".parse().expect("spec")];
        let merged = effective_services(Some(&file), &flags, true);
        assert_eq!(merged.len(), 2);
        assert_eq!(merged[1].addr, "127.0.0.1:9");
        assert!(
            merged[1].token.is_none(),
            "a flag service uses the default token"
        );
    }

    #[test]
    fn every_service_needs_a_token_unless_insecure() {
        let service = ServiceConfig {
            name: "web".into(),
            addr: "127.0.0.1:1".into(),
            token: None,
            max_connections: None,
        };
        let e = token_table(None, std::slice::from_ref(&service), false).expect_err("no token");
        assert!(
            format!("{e:#}").contains("service web has no token"),
            "{e:#}"
        );
        let table = token_table(None, std::slice::from_ref(&service), true).expect("insecure");
        assert!(table.open);
        let default = Token::from_secret("default-token-0123456789", "t").expect("token");
        let table = token_table(Some(&default), &[service], true).expect("valid");
        assert_eq!(
            table.services.get("web"),
            Some(&None),
            "uses the default token"
        );
    }

    #[test]
    fn noise_and_udp_keys_parse_on_their_sides() {
        let pin = "9c".repeat(32);
        let f = parse(
            "noise_key = \"k/server.key\"\nudp_idle_timeout = \"5s\"\nudp_queue = 8\n\
             [services.dns]\nbind = \"udp://127.0.0.1:5353\"\n",
            Path::new("/etc/polymux/s.toml"),
            Side::TunnelServer,
        )
        .expect("valid");
        assert_eq!(
            f.noise_key.as_deref(),
            Some(Path::new("/etc/polymux/k/server.key")),
            "relative to the file"
        );
        assert_eq!(f.udp_idle_timeout, Some(Duration::from_secs(5)));
        assert_eq!(f.udp_queue, Some(8));
        assert_eq!(f.services[0].addr, "udp://127.0.0.1:5353");
        let f = parse(
            &format!("noise_pin = \"{pin}\"\n[services.dns]\ntarget = \"udp://127.0.0.1:53\"\n"),
            Path::new("c.toml"),
            Side::TunnelClient,
        )
        .expect("valid");
        assert_eq!(f.noise_pin, Some(pin.clone()));

        let e = err(&format!("noise_pin = \"{pin}\"\n"), Side::TunnelServer);
        assert!(e.contains("s.toml:1: noise_pin: is for clients"), "{e}");
        let e = err("noise_key = \"k\"\n", Side::ForwardClient);
        assert!(e.contains("s.toml:1: noise_key: is for servers"), "{e}");
        let e = err("noise_pin = \"abc\"\n", Side::TunnelClient);
        assert!(
            e.contains("s.toml:1: noise_pin") && e.contains("64 hex"),
            "{e}"
        );
        let e = err(
            "noise_key = \"k\"\n[tls]\ncert = \"c\"\nkey = \"k\"\n",
            Side::ForwardServer,
        );
        assert!(e.contains("s.toml:1: noise_key: give either [tls]"), "{e}");
        let e = err("udp_queue = 4\n", Side::ForwardClient);
        assert!(
            e.contains("s.toml:1: udp_queue: is for the tunnel server only"),
            "{e}"
        );
        let e = err("udp_queue = 0\n", Side::TunnelServer);
        assert!(e.contains("udp_queue: must be at least 1"), "{e}");
        let e = err(
            "[services.dns]\nbind = \"udp://127.0.0.1:53\"\n",
            Side::ForwardClient,
        );
        assert!(
            e.contains(
                "s.toml:2: services.dns.bind: UDP services are carried by `polymux tunnel` only"
            ),
            "{e}"
        );
    }

    #[test]
    fn a_security_flag_replaces_the_files_tls_and_noise() {
        let file = FileConfig {
            tls_cert: Some(("c.pem".into(), "k.pem".into())),
            noise_pin: Some("ab".repeat(32)),
            ..FileConfig::default()
        };
        let (tls, noise) = server_security(
            &ServerTlsArgs::default(),
            &ServerNoiseArgs::default(),
            &file,
        );
        assert_eq!(tls.tls_cert.as_deref(), Some(Path::new("c.pem")));
        assert!(noise.noise_key.is_none());
        let flag = ServerNoiseArgs {
            noise_key: Some("n.key".into()),
        };
        let (tls, noise) = server_security(&ServerTlsArgs::default(), &flag, &file);
        assert!(
            tls.tls_cert.is_none(),
            "the flag's Noise replaces the file's TLS"
        );
        assert_eq!(noise.noise_key.as_deref(), Some(Path::new("n.key")));

        let (tls, noise) = client_security(
            &ClientTlsArgs::default(),
            &ClientNoiseArgs::default(),
            &file,
        );
        assert!(!tls.tls && tls.tls_pin.is_none());
        assert_eq!(noise.noise_pin, file.noise_pin);
        let flag = ClientTlsArgs {
            tls: true,
            ..ClientTlsArgs::default()
        };
        let (tls, noise) = client_security(&flag, &ClientNoiseArgs::default(), &file);
        assert!(
            tls.tls && noise.noise_pin.is_none(),
            "the flag's TLS replaces the file's Noise"
        );
    }
}
