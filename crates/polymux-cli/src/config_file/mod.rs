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
use std::time::Duration;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer};
use toml::Spanned;

use crate::auth::Token;
use crate::error::config_error;
use crate::protocol::Protocol;
use crate::services::{valid_name, ServiceSpec, MAX_NAME_LEN};
use crate::shutdown::parse_duration;

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

mod merge;
#[cfg(test)]
mod tests;

pub use merge::*;
