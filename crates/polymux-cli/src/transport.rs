//! The connection under a session: TCP, optionally TLS or Noise, then the authentication
//! preamble.
//!
//! [`Dialer`] is the client side (connect, TLS, preamble, start a session);
//! [`Gate`] is the server side (TLS, preamble; the caller bounds it in time with
//! `--handshake-timeout`). Both hand the multiplexer a [`BoxIo`], so the session code does not
//! care whether TLS is on.
//! Also here: binding listeners with actionable errors, the loopback check that decides
//! whether a server may run without a token, and [`tune_session_socket`].

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use polymux::{Config, Session};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::auth::{self, Expectation, Mode, Token, HANDSHAKE_TIMEOUT};
use crate::error::config_error;
use crate::noise::{ClientNoise, ServerNoise};
use crate::protocol::Protocol;
use crate::tls::{self, ClientTls, ServerTls};

/// Any byte stream a session can run on.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Io for T {}

/// A boxed [`Io`].
pub type BoxIo = Box<dyn Io>;

/// How long a TCP connect may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The driver task of a session.
pub type DriverHandle = JoinHandle<Result<(), polymux::Error>>;

/// Tunes a socket that carries a whole session (not a visitor's or a target's connection):
/// `polymux::tcp::tune` where it exists (no Nagle, and a small unsent backlog in the kernel so
/// that one stream's bulk data does not delay the others' frames), else just no Nagle. Best
/// effort: a socket that refuses an option still works.
pub fn tune_session_socket(tcp: &TcpStream) {
    #[cfg(unix)]
    let tuned = polymux::tcp::tune(tcp);
    #[cfg(not(unix))]
    let tuned = tcp.set_nodelay(true);
    if let Err(e) = tuned {
        tracing::debug!("tuning a session socket failed: {e}");
    }
}

/// Everything a client needs to establish an authenticated session.
#[derive(Clone)]
pub struct Dialer {
    /// `host:port` of the server.
    pub server: String,
    /// TLS, if on.
    pub tls: Option<ClientTls>,
    /// Noise, if on (never together with TLS).
    pub noise: Option<ClientNoise>,
    /// The tokens to present; a reload may change them between connections.
    pub credentials: Credentials,
    /// The subcommand.
    pub mode: Mode,
    /// `--protocol`.
    pub protocol: Protocol,
    /// The session configuration.
    pub config: Config,
}

impl Dialer {
    /// Connects, runs TLS and the preamble, and starts a client session. Errors are classified
    /// (see [`crate::error`]): retry only those that are not permanent.
    pub async fn connect(&self) -> anyhow::Result<(Session, DriverHandle)> {
        let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&self.server))
            .await
            .map_err(|_| {
                anyhow::anyhow!(
                    "connecting to {} timed out after {CONNECT_TIMEOUT:?}; is the server running \
                     and reachable?",
                    self.server
                )
            })?
            .map_err(|e| {
                anyhow::anyhow!(
                    "cannot connect to {}: {e}; is `polymux {} server` running there?",
                    self.server,
                    self.mode.name()
                )
            })?;
        tune_session_socket(&tcp);
        let handshake = async {
            let mut io: BoxIo = Box::new(tcp);
            if let Some(tls) = &self.tls {
                io = match tls.connector.connect(tls.server_name.clone(), io).await {
                    Ok(stream) => Box::new(stream),
                    Err(e) if tls::is_tls_failure(&e) => {
                        return Err(config_error(format!(
                            "TLS handshake with {} failed: {e}; check --tls-ca / --tls-pin / \
                             --tls-server-name, and that the server runs with --tls-cert/--tls-key",
                            self.server
                        )))
                    }
                    Err(e) => {
                        return Err(anyhow::Error::new(e)
                            .context(format!("TLS handshake with {} failed", self.server)))
                    }
                };
            }
            if let Some(noise) = &self.noise {
                io = Box::new(noise.connect(io, &self.server).await?);
            }
            let credentials = self.credentials.get();
            let note = auth::client_handshake(
                &mut io,
                &self.server,
                self.mode,
                self.protocol,
                credentials.token.as_ref(),
                &credentials.services,
            )
            .await?;
            if !note.is_empty() {
                tracing::warn!(
                    "{} refused some service tokens ({note}); those services will not be \
                     carried: fix their token in the config file",
                    self.server
                );
            }
            Ok::<_, anyhow::Error>(io)
        };
        let io = tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake)
            .await
            .map_err(|_| {
                anyhow::anyhow!(
                    "{} did not complete the handshake within {HANDSHAKE_TIMEOUT:?}; check that \
                     it is a polymux {} server and that both sides agree on TLS",
                    self.server,
                    self.mode.name()
                )
            })??;
        Ok(polymux::tokio::client(io, self.config.clone()))
    }
}

/// What a client presents in the preamble.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CredentialSet {
    /// The connection token (the default one).
    pub token: Option<Token>,
    /// Per-service tokens (preamble version 2 when not empty).
    pub services: Vec<(String, Token)>,
}

/// The client's credentials, shared so that a reload can replace them; the next connection
/// presents the new ones.
#[derive(Clone, Debug, Default)]
pub struct Credentials(Arc<RwLock<Arc<CredentialSet>>>);

impl Credentials {
    /// Credentials of one connection token and per-service tokens.
    pub fn new(token: Option<Token>, services: Vec<(String, Token)>) -> Credentials {
        Credentials(Arc::new(RwLock::new(Arc::new(CredentialSet {
            token,
            services,
        }))))
    }

    /// The current set.
    pub fn get(&self) -> Arc<CredentialSet> {
        self.0
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Replaces the set; returns whether it differs from the current one.
    pub fn set(&self, new: CredentialSet) -> bool {
        let mut current = self
            .0
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if **current == new {
            return false;
        }
        *current = Arc::new(new);
        true
    }
}

/// The server side: TLS (if on) and the preamble for each inbound connection.
#[derive(Clone)]
pub struct Gate {
    /// TLS, if on.
    pub tls: Option<ServerTls>,
    /// Noise, if on (never together with TLS).
    pub noise: Option<ServerNoise>,
    /// What clients must present.
    pub expect: Expectation,
}

impl Gate {
    /// Runs TLS (or Noise) and checks the preamble on an accepted connection; the caller
    /// bounds it in time (`--handshake-timeout`, see [`crate::guard`]). The client is
    /// authenticated but not yet answered: follow with [`Gate::welcome`] or [`Gate::refuse`].
    pub async fn authenticate(&self, tcp: TcpStream) -> anyhow::Result<(BoxIo, auth::Admission)> {
        tune_session_socket(&tcp);
        async {
            let mut io: BoxIo = match &self.tls {
                Some(tls) => Box::new(tls.acceptor.accept(tcp).await.map_err(|e| {
                    anyhow::anyhow!(
                        "TLS handshake failed: {e} (a client without --tls/--tls-ca/--tls-pin, \
                         or one that does not trust this certificate)"
                    )
                })?),
                None => match &self.noise {
                    Some(noise) => Box::new(noise.accept(tcp).await?),
                    None => Box::new(tcp),
                },
            };
            let admission = auth::authenticate_client(&mut io, &self.expect).await?;
            Ok::<_, anyhow::Error>((io, admission))
        }
        .await
    }

    /// Tells an authenticated client that its session starts now (`note`: refused
    /// per-service tokens, or empty).
    pub async fn welcome(&self, io: &mut BoxIo, note: &str) -> anyhow::Result<()> {
        tokio::time::timeout(HANDSHAKE_TIMEOUT, auth::welcome_client(io, note))
            .await
            .map_err(|_| anyhow::anyhow!("the client did not take its welcome"))?
    }

    /// Tells an authenticated client that cannot be served why; best effort and bounded.
    pub async fn refuse(&self, mut io: BoxIo, status: auth::Status, message: &str) {
        let _ = tokio::time::timeout(
            Duration::from_secs(2),
            auth::refuse_client(&mut io, status, message),
        )
        .await;
    }
}

/// Binds a listener for `flag` (used in messages) at `addr` with a listen backlog of
/// `backlog` (`--backlog`; the kernel caps it at `net.core.somaxconn`). Tries each address
/// `addr` resolves to, like `TcpListener::bind`.
pub async fn bind_with_backlog(
    addr: &str,
    flag: &str,
    backlog: u32,
) -> anyhow::Result<TcpListener> {
    let listen = |local: SocketAddr| -> std::io::Result<TcpListener> {
        let socket = if local.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        // As `TcpListener::bind` does on Unix: a restarted server can take its port back
        // while connections of the previous one are in TIME_WAIT.
        #[cfg(unix)]
        socket.set_reuseaddr(true)?;
        socket.bind(local)?;
        socket.listen(backlog.max(1))
    };
    let bound = async {
        let mut last = None;
        for local in tokio::net::lookup_host(addr).await? {
            match listen(local) {
                Ok(listener) => return Ok(listener),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "the address resolved to nothing",
            )
        }))
    };
    bound.await.map_err(|e: std::io::Error| {
        let hint = match e.kind() {
            std::io::ErrorKind::AddrInUse => "another process uses that port; pick another one",
            std::io::ErrorKind::PermissionDenied => {
                "ports below 1024 need privileges; pick a port above 1023"
            }
            std::io::ErrorKind::AddrNotAvailable => {
                "that address is not on this machine; use 127.0.0.1, 0.0.0.0 or a local address"
            }
            _ => "check the address (HOST:PORT)",
        };
        anyhow::Error::new(e).context(format!("cannot listen on {addr} ({flag}): {hint}"))
    })
}

/// Whether every address `addr` resolves to is a loopback address.
pub async fn is_loopback(addr: &str) -> anyhow::Result<bool> {
    let resolved: Vec<SocketAddr> = tokio::net::lookup_host(addr)
        .await
        .map_err(|e| config_error(format!("cannot resolve {addr}: {e}; use HOST:PORT")))?
        .collect();
    Ok(!resolved.is_empty() && resolved.iter().all(|a| a.ip().is_loopback()))
}

/// Server-side security policy: a token is required, except on loopback with
/// `--insecure-no-token`. Warns about clear-text tokens beyond loopback.
pub async fn check_server_security(
    listen: &str,
    token: Option<&Token>,
    insecure_no_token: bool,
    tls: bool,
) -> anyhow::Result<()> {
    let loopback = is_loopback(listen).await?;
    match (token.is_some(), loopback, insecure_no_token) {
        (true, _, _) => {}
        (false, true, true) => tracing::warn!(
            "--insecure-no-token: any local process can use this server on {listen}"
        ),
        (false, true, false) => {
            return Err(config_error(format!(
                "no token: set --token, --token-file or {} (e.g. `export {}=$(openssl rand -hex 32)`) \
                 and give the client the same one; on a loopback address like {listen} you may \
                 instead pass --insecure-no-token",
                auth::TOKEN_ENV,
                auth::TOKEN_ENV
            )))
        }
        (false, false, _) => {
            return Err(config_error(format!(
                "refusing to listen on {listen} without a token: anyone who can reach it could \
                 use it. Set --token, --token-file or {} (e.g. `export {}=$(openssl rand -hex 32)`); \
                 --insecure-no-token is accepted on loopback addresses only",
                auth::TOKEN_ENV,
                auth::TOKEN_ENV
            )))
        }
    }
    if !loopback && !tls {
        tracing::warn!(
            "listening on {listen} without TLS: the token and all traffic cross the network in \
             clear text; add --tls-cert/--tls-key"
        );
    }
    Ok(())
}
