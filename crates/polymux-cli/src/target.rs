//! The accepting side of a relayed stream (tunnel client, forward server): read the header,
//! find the service's target, connect to it, answer with a status, relay.

use polymux::{Session, Stream};
use tokio::net::TcpStream;
use tokio_util::task::TaskTracker;

use crate::limits::Limiter;
use crate::relay::{self, OpenStatus, HEADER_TIMEOUT};
use crate::services::Targets;
use crate::shutdown::Shutdown;
use crate::transport::CONNECT_TIMEOUT;

/// Serves one accepted stream to completion. After shutdown began, streams are still served
/// on dialects with GoAway (the peer stops opening once it has seen ours, so what arrives was
/// opened before); on smux, which has no GoAway, they are answered "shutting down".
pub async fn serve(
    mut stream: Stream,
    goaway: bool,
    targets: &Targets,
    streams: &Limiter,
    shutdown: &Shutdown,
) {
    let id = stream.id();
    let header = tokio::time::timeout(HEADER_TIMEOUT, relay::read_any_header(&mut stream)).await;
    let (datagram, service) = match header {
        Ok(Ok(header)) => header,
        Ok(Err(e)) => {
            tracing::warn!(
                "stream {id}: bad stream header ({e}); is the peer a polymux of the same release?"
            );
            stream.reset();
            return;
        }
        Err(_) => {
            tracing::warn!("stream {id}: no stream header within {HEADER_TIMEOUT:?}");
            stream.reset();
            return;
        }
    };
    if shutdown.is_requested() && !goaway {
        answer(&mut stream, OpenStatus::ShuttingDown, "shutting down").await;
        return;
    }
    let counters = targets.metrics().service(&service);
    if !targets.authorised(&service) {
        tracing::warn!(
            "stream {id}: refused service {service:?}: the client did not present its token"
        );
        counters.refused();
        let message = format!("the token presented does not cover service {service:?}");
        answer(&mut stream, OpenStatus::Unauthorised, &message).await;
        return;
    }
    let Some(_permit) = streams.try_acquire() else {
        counters.refused();
        answer(&mut stream, OpenStatus::Busy, &streams.refusal_message()).await;
        return;
    };
    let Some(addr) = targets.lookup(&service) else {
        counters.refused();
        tracing::warn!(
            "stream {id}: no target for service {service:?} (configured: {}); add --target {service}=HOST:PORT",
            targets.describe()
        );
        let message = format!("no --target for service {service:?} on the other side");
        answer(&mut stream, OpenStatus::UnknownService, &message).await;
        return;
    };
    match (datagram, crate::udp::udp_target(&addr)) {
        (true, Some(udp)) => return crate::udp::serve_flow(stream, &service, udp, &counters).await,
        (false, None) => {}
        (true, None) | (false, Some(_)) => {
            let (there, here) = if datagram {
                ("UDP", "TCP")
            } else {
                ("TCP", "UDP")
            };
            tracing::warn!(
                "stream {id}: service {service:?} is {there} on the other side but {here} here \
                 ({addr}); use udp:// on both sides or on neither"
            );
            let message = format!("service {service:?} is {here} on the other side ({addr})");
            answer(&mut stream, OpenStatus::UnknownService, &message).await;
            return;
        }
    }
    let tcp = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&addr)).await {
        Ok(Ok(tcp)) => tcp,
        Ok(Err(e)) => {
            counters.refused();
            tracing::warn!(
                "{service}: cannot connect to target {addr}: {e}; is that service running?"
            );
            answer(
                &mut stream,
                OpenStatus::TargetUnreachable,
                &format!("{addr}: {e}"),
            )
            .await;
            return;
        }
        Err(_) => {
            counters.refused();
            tracing::warn!(
                "{service}: connecting to target {addr} timed out after {CONNECT_TIMEOUT:?}"
            );
            answer(
                &mut stream,
                OpenStatus::TargetUnreachable,
                &format!("{addr}: timed out"),
            )
            .await;
            return;
        }
    };
    tcp.set_nodelay(true).ok();
    if let Err(e) = relay::write_status(&mut stream, OpenStatus::Ok, "").await {
        tracing::debug!("stream {id}: writing the status failed: {e}");
        stream.reset();
        return;
    }
    let _open = counters.opened();
    match relay::relay_accepted(stream, tcp, counters.meter()).await {
        Ok(moved) => {
            tracing::debug!(
                "{service}: stream {id} done ({} bytes to {addr}, {} bytes back)",
                moved.out_of_stream,
                moved.into_stream
            )
        }
        Err(e) => tracing::debug!("{service}: stream {id} to {addr} ended: {e}"),
    }
}

async fn answer(stream: &mut Stream, status: OpenStatus, message: &str) {
    if relay::write_status(stream, status, message).await.is_err() {
        stream.reset();
    }
    // Dropping the stream half-closes it: the opener reads the status, then EOF.
}

/// Accepts streams on `session` until it ends, serving each in a task tracked by `relays`.
/// Returns the session's end reason.
pub async fn accept_loop(
    session: &Session,
    targets: &Targets,
    streams: &Limiter,
    relays: &TaskTracker,
    shutdown: &Shutdown,
) -> polymux::Error {
    let goaway = session.dialect().has_goaway();
    loop {
        match session.accept().await {
            Ok(stream) => {
                let targets = targets.clone();
                let streams = streams.clone();
                let shutdown = shutdown.clone();
                if relays.is_closed() && !goaway {
                    // Draining without GoAway: no new relays, but say why.
                    tokio::spawn(async move {
                        let mut stream = stream;
                        answer(&mut stream, OpenStatus::ShuttingDown, "shutting down").await;
                    });
                    continue;
                }
                relays.spawn(
                    async move { serve(stream, goaway, &targets, &streams, &shutdown).await },
                );
            }
            Err(e) => return e,
        }
    }
}
