//! The rule that merges the config file with the command line: a flag given on the command
//! line (or through its environment variable) wins over the file; a key in the file wins over
//! the flag's default. Also the settings every tunnel and forward side resolves that way.

use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

use clap::parser::ValueSource;
use clap::ArgMatches;

use crate::args::{ReconnectArgs, SessionArgs, ShutdownArgs};
use crate::auth::{Token, TokenTable};
use crate::error::config_error;
use crate::noise::{ClientNoiseArgs, ServerNoiseArgs};
use crate::services::ServiceSpec;
use crate::tls::{ClientTlsArgs, ServerTlsArgs};

use super::*;

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
