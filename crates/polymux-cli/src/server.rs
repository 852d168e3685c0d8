//! The server side shared by `tunnel server` and `forward server`: accept TCP connections,
//! admit them through the [`Gate`] (TLS, token), start a session for each, register it in a
//! [`SessionSet`], and run the mode's per-session work — all within `--max-clients`, until
//! shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use polymux::{Config, Session};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::task::TaskTracker;

use crate::auth::{Refusal, Status};
use crate::limits::Limiter;
use crate::sessions::{Entry, SessionSet};
use crate::shutdown::Shutdown;
use crate::transport::{DriverHandle, Gate};

/// Connections in TLS or preamble at once; beyond it new connections are closed unanswered.
/// Separate from `--max-clients`, which counts authenticated clients only, so that
/// connections that never authenticate cannot lock the real clients out (each handshake is
/// also bounded in time by `HANDSHAKE_TIMEOUT`).
const MAX_HANDSHAKES_IN_FLIGHT: usize = 256;

/// Accepts clients on `listener` until shutdown is requested. For each admitted client a
/// session is registered in `set` and `on_session` runs (in a task tracked by `tasks`) until
/// it returns; the session is then removed and its end logged.
#[allow(clippy::too_many_arguments)]
pub async fn accept_clients<F, Fut>(
    listener: TcpListener,
    gate: Gate,
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
    let handshakes = Arc::new(Semaphore::new(MAX_HANDSHAKES_IN_FLIGHT));
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
        let Ok(handshake) = handshakes.clone().try_acquire_owned() else {
            tracing::warn!(
                "dropping {peer}: {MAX_HANDSHAKES_IN_FLIGHT} handshakes already in progress"
            );
            continue;
        };
        let gate = gate.clone();
        let config = config.clone();
        let clients = clients.clone();
        let set = set.clone();
        let shutdown = shutdown.clone();
        let on_session = on_session.clone();
        tasks.spawn(async move {
            let authenticated = gate.authenticate(tcp).await;
            drop(handshake);
            let (mut io, admission) = match authenticated {
                Ok(pair) => pair,
                Err(e) => {
                    log_refusal(peer, &e);
                    return;
                }
            };
            // The client slot is taken only now: unauthenticated connections cannot hold
            // the slots that the real clients need.
            let Some(_permit) = clients.try_acquire() else {
                gate.refuse(io, Status::Busy, &clients.refusal_message())
                    .await;
                return;
            };
            if shutdown.is_requested() {
                gate.refuse(io, Status::ShuttingDown, "the server is shutting down")
                    .await;
                return;
            }
            if !admission.note.is_empty() {
                tracing::warn!("client {peer}: refused service tokens: {}", admission.note);
            }
            if let Err(e) = gate.welcome(&mut io, &admission.note).await {
                tracing::info!("client {peer} left during the handshake: {e:#}");
                return;
            }
            let (session, driver) = polymux::tokio::server(io, config);
            let grants = Arc::new(admission.grants);
            let id = set.insert(peer, session.clone(), grants.clone());
            tracing::info!(
                "client {peer} connected (session {id}, {})",
                session.dialect().name()
            );
            on_session(Entry {
                id,
                peer,
                session,
                grants,
            })
            .await;
            set.remove(id);
            log_end(peer, id, driver).await;
        });
    }
}

fn log_refusal(peer: SocketAddr, err: &anyhow::Error) {
    match err.downcast_ref::<Refusal>() {
        Some(refusal) if refusal.status == Status::WrongToken => {
            tracing::warn!("refused client {peer}: authentication failed ({refusal})")
        }
        Some(refusal) => tracing::warn!("refused client {peer}: {refusal}"),
        None => tracing::info!("client {peer} failed the handshake: {err:#}"),
    }
}

async fn log_end(peer: SocketAddr, id: u64, driver: DriverHandle) {
    match tokio::time::timeout(Duration::from_secs(10), driver).await {
        Ok(Ok(Ok(()))) => tracing::info!("client {peer} disconnected (session {id})"),
        // TLS without close_notify: the same as a plain TCP close (which is not a warning),
        // e.g. a client killed or one of a release that did not send it.
        Ok(Ok(Err(polymux::Error::Transport(e))))
            if e.kind() == std::io::ErrorKind::UnexpectedEof =>
        {
            tracing::info!("client {peer} disconnected (session {id}; {e})")
        }
        Ok(Ok(Err(e))) => tracing::warn!("client {peer} lost (session {id}): {e}"),
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
