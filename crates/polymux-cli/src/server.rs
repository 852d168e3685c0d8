//! The server side shared by every server (`tunnel server`, `forward server`, `echo`): accept
//! TCP connections, admit them (the [`Admission`]: TLS and token, or the echo's first bytes)
//! under the rules of [`crate::guard`], start a session for each, register it in a
//! [`SessionSet`], and run the mode's per-session work — all within the connection limit
//! (`--max-clients`, the echo's `--max-connections`), until shutdown.
//!
//! Invariant (issue 9, item 6): a connection takes a slot of the limit only after its
//! handshake completed; until then it is bounded in number and time by [`Handshakes`] and
//! `--handshake-timeout`, and once served, by `--idle-timeout`.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use polymux::{Config, Session};
use tokio::net::TcpListener;
use tokio_util::task::TaskTracker;

use crate::args::{ServerGuardArgs, SessionArgs};
use crate::auth::{self, Expectation, Mode, Refusal, Status, Token};
use crate::config_file::{self, ServiceConfig};
use crate::guard::{self, Handshakes, Watch, Watched};
use crate::limits::Limiter;
use crate::metrics::{self, Metrics};
use crate::noise::{ServerNoise, ServerNoiseArgs};
use crate::protocol::{session_config, MemoryLimit, Protocol};
use crate::sessions::{Entry, SessionSet};
use crate::shutdown::Shutdown;
use crate::tls::{ServerTls, ServerTlsArgs};
use crate::transport::{self, BoxIo, DriverHandle, Gate};

/// The resolved settings `tunnel server` and `forward server` both start from.
pub struct Common<'a> {
    /// `--listen`.
    pub listen: &'a str,
    /// The protocol.
    pub protocol: Protocol,
    /// The default token.
    pub token: Option<&'a Token>,
    /// The services (with their own tokens).
    pub services: &'a [ServiceConfig],
    /// `--insecure-no-token`.
    pub insecure_no_token: bool,
    /// TLS settings.
    pub tls: &'a ServerTlsArgs,
    /// Noise settings.
    pub noise: &'a ServerNoiseArgs,
    /// Per-session settings.
    pub session: &'a SessionArgs,
    /// `--max-clients` (the memory pool is shared among this many sessions).
    pub max_clients: usize,
    /// `--memory-limit`.
    pub memory_limit: usize,
    /// `--metrics`.
    pub metrics: Option<&'a str>,
}

/// What a tunnel or forward server sets up before it listens: its TLS or Noise identity, the
/// token table, the session configuration with one memory pool for all sessions, and the
/// metrics (served when `--metrics` asks).
pub struct Setup {
    /// The admission gate (TLS or Noise, and the tokens).
    pub gate: Gate,
    /// The token expectation (shared with the gate; reloads replace its table).
    pub expect: Expectation,
    /// The session configuration.
    pub config: Config,
    /// The process's metrics.
    pub metrics: Metrics,
}

impl Setup {
    /// Checks the security policy, loads keys, builds the token table and the session
    /// configuration, and starts the metrics endpoint.
    pub async fn new(mode: Mode, c: Common<'_>, shutdown: &Shutdown) -> anyhow::Result<Setup> {
        let tls = ServerTls::from_args(c.tls)?;
        let noise = ServerNoise::from_args(c.noise)?;
        transport::check_server_security(
            c.listen,
            config_file::any_token(c.token, c.services),
            c.insecure_no_token,
            tls.is_some() || noise.is_some(),
        )
        .await?;
        let table = config_file::token_table(c.token, c.services, c.insecure_no_token)?;
        // One memory pool for all the server's sessions (the guard flags hold with a config
        // file too; `max_clients` may come from the file).
        let mut tuning = c.session.tuning();
        tuning.memory = Some(MemoryLimit {
            limit: c.memory_limit,
            sessions: c.max_clients,
        });
        let config = session_config(c.protocol, &tuning)?;
        let metrics = Metrics::new(&config);
        if let Some(addr) = c.metrics {
            metrics::serve(addr, metrics.clone(), shutdown.clone()).await?;
        }
        let expect = Expectation::with_table(mode, c.protocol, table);
        Ok(Setup {
            gate: Gate {
                tls,
                noise,
                expect: expect.clone(),
            },
            expect,
            config,
            metrics,
        })
    }

    /// ", TLS" / ", Noise" / "", for the listening line.
    pub fn security_label(&self) -> &'static str {
        crate::noise::security_label(self.gate.tls.is_some(), self.gate.noise.is_some())
    }

    /// Logs what clients pin: the certificate's fingerprint, or the Noise public key.
    pub fn log_identity(&self) {
        if let Some(tls) = &self.gate.tls {
            tracing::info!(
                "TLS certificate SHA-256 fingerprint {} (clients may pin it with --tls-pin)",
                tls.fingerprint
            );
        }
        if let Some(noise) = &self.gate.noise {
            crate::noise::log_server_key(noise);
        }
    }
}

/// How a server admits a connection before it takes a slot.
#[derive(Clone)]
pub enum Admission {
    /// TLS (if on) and the token preamble; the client is told why when refused.
    Preamble(Gate),
    /// The bare protocol (echo): the client must send its first bytes; a refused client is
    /// just disconnected (it speaks no preamble to be told in).
    FirstBytes,
}

impl Admission {
    /// The connection, with the tokens it proved (echo: none, and none are needed).
    async fn admit(&self, tcp: tokio::net::TcpStream) -> anyhow::Result<(BoxIo, auth::Admission)> {
        match self {
            Admission::Preamble(gate) => gate.authenticate(tcp).await,
            Admission::FirstBytes => {
                crate::transport::tune_session_socket(&tcp);
                guard::first_bytes(&tcp).await?;
                Ok((Box::new(tcp), auth::Admission::default()))
            }
        }
    }

    async fn refuse(&self, io: BoxIo, status: Status, message: &str) {
        if let Admission::Preamble(gate) = self {
            gate.refuse(io, status, message).await;
        }
    }

    async fn welcome(&self, io: &mut BoxIo, note: &str) -> anyhow::Result<()> {
        match self {
            Admission::Preamble(gate) => gate.welcome(io, note).await,
            Admission::FirstBytes => Ok(()),
        }
    }
}

/// The time limits of a server's connections and what the watcher reports.
#[derive(Clone, Debug)]
pub struct Guard {
    /// `--handshake-timeout`.
    pub handshake_timeout: Duration,
    /// `--idle-timeout`; `None` when disabled.
    pub idle_timeout: Option<Duration>,
    /// `--max-streams`, for the refusal log.
    pub max_streams: usize,
}

impl Guard {
    /// From the server's flags.
    pub fn from_args(args: &ServerGuardArgs, max_streams: usize) -> Guard {
        Guard {
            handshake_timeout: args.handshake_timeout,
            idle_timeout: args.idle_timeout(),
            max_streams,
        }
    }
}

/// Accepts clients on `listener` until shutdown is requested. For each admitted client a
/// session is registered in `set` and `on_session` runs (in a task tracked by `tasks`) until
/// it returns; the session is then removed and its end logged.
#[allow(clippy::too_many_arguments)]
pub async fn accept_clients<F, Fut>(
    listener: TcpListener,
    admission: Admission,
    guard: Guard,
    config: Config,
    clients: Limiter,
    set: SessionSet,
    tasks: TaskTracker,
    shutdown: Shutdown,
    on_session: F,
) where
    F: Fn(Entry) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let handshakes = Handshakes::default();
    // The echo server's clients come and go by the thousand (benchmarks): log them at debug.
    let chatty = matches!(admission, Admission::Preamble(_));
    loop {
        let accepted = tokio::select! {
            _ = shutdown.requested() => break,
            accepted = listener.accept() => accepted,
        };
        let (tcp, peer) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                tracing::warn!("accepting a client failed: {e}; retrying");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let handshake = handshakes.start();
        let admission = admission.clone();
        let guard = guard.clone();
        let config = config.clone();
        let clients = clients.clone();
        let set = set.clone();
        let shutdown = shutdown.clone();
        let on_session = on_session.clone();
        tasks.spawn(async move {
            let admitted = handshake
                .run(guard.handshake_timeout, admission.admit(tcp))
                .await;
            drop(handshake);
            let (mut io, proved) = match admitted {
                Ok(pair) => pair,
                Err(e) => {
                    log_refusal(peer, &e, chatty);
                    return;
                }
            };
            // The client slot is taken only now: connections that never complete their
            // handshake cannot hold the slots that the real clients need.
            let Some(_permit) = clients.try_acquire() else {
                admission
                    .refuse(io, Status::Busy, &clients.refusal_message())
                    .await;
                return;
            };
            if shutdown.is_requested() {
                admission
                    .refuse(io, Status::ShuttingDown, "the server is shutting down")
                    .await;
                return;
            }
            if !proved.note.is_empty() {
                tracing::warn!("client {peer}: refused service tokens: {}", proved.note);
            }
            if let Err(e) = admission.welcome(&mut io, &proved.note).await {
                tracing::info!("client {peer} left during the handshake: {e:#}");
                return;
            }
            let (io, activity) = Watched::new(io);
            let (session, driver) = polymux::tokio::server(io, config);
            let grants = Arc::new(proved.grants);
            let id = set.insert(peer, session.clone(), grants.clone());
            if chatty {
                tracing::info!(
                    "client {peer} connected (session {id}, {})",
                    session.dialect().name()
                );
            } else {
                tracing::debug!("session {id} from {peer}");
            }
            let watch = Watch {
                id,
                peer,
                activity,
                idle_timeout: guard.idle_timeout,
                driver: driver.abort_handle(),
                max_streams: guard.max_streams,
            };
            let serve = on_session(Entry {
                id,
                peer,
                session: session.clone(),
                grants,
            });
            tokio::join!(serve, guard::watch_session(&session, watch));
            set.remove(id);
            log_end(peer, id, driver, chatty).await;
        });
    }
}

fn log_refusal(peer: SocketAddr, err: &anyhow::Error, chatty: bool) {
    match err.downcast_ref::<Refusal>() {
        Some(refusal) if refusal.status == Status::WrongToken => {
            tracing::warn!("refused client {peer}: authentication failed ({refusal})")
        }
        Some(refusal) => tracing::warn!("refused client {peer}: {refusal}"),
        None if chatty => tracing::info!("client {peer} failed the handshake: {err:#}"),
        None => tracing::debug!("client {peer} failed the handshake: {err:#}"),
    }
}

async fn log_end(peer: SocketAddr, id: u64, driver: DriverHandle, chatty: bool) {
    match tokio::time::timeout(Duration::from_secs(10), driver).await {
        Ok(Ok(Ok(()))) if chatty => tracing::info!("client {peer} disconnected (session {id})"),
        Ok(Ok(Ok(()))) => tracing::debug!("session {id} from {peer} ended"),
        // TLS without close_notify: the same as a plain TCP close (which is not a warning),
        // e.g. a client killed or one of a release that did not send it.
        Ok(Ok(Err(polymux::Error::Transport(e))))
            if chatty && e.kind() == std::io::ErrorKind::UnexpectedEof =>
        {
            tracing::info!("client {peer} disconnected (session {id}; {e})")
        }
        Ok(Ok(Err(e))) if chatty => tracing::warn!("client {peer} lost (session {id}): {e}"),
        Ok(Ok(Err(e))) => tracing::info!("session {id} from {peer} ended: {e}"),
        Ok(Err(e)) if e.is_cancelled() => {
            tracing::debug!("session {id} of {peer}: cut (--idle-timeout)")
        }
        Ok(Err(e)) => tracing::warn!("session {id} of {peer}: driver task failed: {e}"),
        Err(_) => tracing::debug!("session {id} of {peer}: driver still closing"),
    }
}

/// Closes every session in `set` (GoAway, then the transport), waiting up to `patience`.
pub async fn close_all(set: &SessionSet, patience: Duration) {
    let sessions: Vec<Session> = set.all().into_iter().map(|e| e.session).collect();
    let closing = futures::future::join_all(sessions.iter().map(|s| s.close()));
    if tokio::time::timeout(patience, closing).await.is_err() {
        tracing::warn!("some sessions did not close within {patience:?}");
    }
}

/// Sends GoAway on every session whose protocol has it: peers stop opening streams.
pub fn go_away_all(set: &SessionSet) {
    for entry in set.all() {
        if let Err(e) = entry.session.go_away() {
            tracing::debug!("session {}: no GoAway ({e})", entry.id);
        }
    }
}
