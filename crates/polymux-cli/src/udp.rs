//! UDP services carried over the multiplexed session: `--expose NAME=udp://ADDR` on the
//! tunnel server, `--target NAME=udp://ADDR` on the tunnel client.
//!
//! # Flows
//!
//! The server receives datagrams on one UDP socket per service. Each source address is a
//! *flow*; its first datagram opens a stream to the client (header version
//! [`relay::DATAGRAM_VERSION`] instead of the byte-stream one, so that a TCP target never gets
//! datagrams and an older peer refuses clearly), and every later datagram of that source goes
//! down the same stream. The client connects a UDP socket of its own to the target for that
//! stream, so the target's answers come back on it and leave the server's socket addressed to
//! the flow's source.
//!
//! # Framing
//!
//! After the usual status, each direction carries `len u16 (big-endian) | datagram`, one frame
//! per datagram: datagram boundaries survive the byte stream.
//!
//! # Bounds
//!
//! - A flow that carries nothing either way for `--udp-idle-timeout` ends (its stream is
//!   closed; the next datagram from that source opens a new one). The client side ends when
//!   the server closes the stream, or after [`ACCEPTOR_IDLE`] as a safety net.
//! - Datagrams waiting for a stream that cannot take them yet (before it is open, or while its
//!   window is full) queue up to `--udp-queue` per flow; beyond that they are dropped, as a
//!   congested network would, and counted (logged when the flow ends). Datagrams are never
//!   buffered without bound.
//! - Each flow takes a `--max-connections` slot (and one of its service's `max_connections`
//!   in a config file); a datagram that would start a flow beyond it is dropped and counted.
//!
//! # Metrics
//!
//! A flow counts as one connection of its service (`--metrics`); the bytes of its datagrams
//! (payload, without the 2-byte frame) are added to the service's byte counters as they pass,
//! on both sides, a flow refused (no slot, no tunnel client) counts as refused, and a
//! datagram dropped from a full queue counts in `polymux_service_datagrams_dropped_total`.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use polymux::Stream;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::limits::Limiter;
use crate::metrics::ServiceCounters;
use crate::relay::{self, Meter, OpenStatus, HEADER_TIMEOUT};
use crate::sessions::{Entry, SessionSet};
use crate::shutdown::{parse_duration, Shutdown};

/// The scheme that marks a UDP service address.
pub const SCHEME: &str = "udp://";
/// How long the client side keeps a flow that carries nothing (the server's
/// `--udp-idle-timeout` normally ends it first).
pub const ACCEPTOR_IDLE: Duration = Duration::from_secs(600);
/// Datagrams queued per flow on the client side (target → server).
const ACCEPTOR_QUEUE: usize = 256;
/// The largest UDP payload (IPv6 jumbograms aside), and so the largest frame.
const MAX_DATAGRAM: usize = 65535;
/// How long opening a stream may take before another session is tried.
const OPEN_TIMEOUT: Duration = Duration::from_secs(10);

/// UDP settings of the tunnel server.
#[derive(clap::Args, Clone, Debug)]
pub struct UdpArgs {
    /// A UDP flow (one source address of a udp:// service) that carries nothing either way
    /// for this long is closed.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_duration)]
    pub udp_idle_timeout: Duration,
    /// Datagrams a UDP flow may queue while its stream cannot take them; beyond it they are
    /// dropped (and counted).
    #[arg(long, value_name = "N", default_value_t = 256)]
    pub udp_queue: usize,
}

impl Default for UdpArgs {
    fn default() -> Self {
        UdpArgs {
            udp_idle_timeout: Duration::from_secs(60),
            udp_queue: 256,
        }
    }
}

/// The `HOST:PORT` of a `udp://HOST:PORT` service address; `None` for a TCP one.
pub fn udp_target(addr: &str) -> Option<&str> {
    addr.strip_prefix(SCHEME)
}

/// Binds the UDP socket of an exposed service.
pub async fn bind(addr: &str, flag: &str) -> anyhow::Result<UdpSocket> {
    UdpSocket::bind(addr).await.map_err(|e| {
        anyhow::Error::new(e).context(format!(
            "cannot listen on udp://{addr} ({flag}): check the address and that no other \
             process uses that UDP port"
        ))
    })
}

/// Reads one frame into `buf`; `false` at the end of the stream.
async fn read_frame<R: AsyncRead + Unpin>(r: &mut R, buf: &mut Vec<u8>) -> io::Result<bool> {
    let mut len = [0u8; 2];
    match r.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(false),
        Err(e) => return Err(e),
    }
    buf.resize(usize::from(u16::from_be_bytes(len)), 0);
    r.read_exact(buf).await?;
    Ok(true)
}

/// Writes one datagram as a frame (a single write, so frames of a stream never interleave).
async fn write_frame<W: AsyncWrite + Unpin>(w: &mut W, datagram: &[u8]) -> io::Result<()> {
    let len = u16::try_from(datagram.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "datagram over 65535 bytes"))?;
    let mut frame = Vec::with_capacity(2 + datagram.len());
    frame.extend_from_slice(&len.to_be_bytes());
    frame.extend_from_slice(datagram);
    w.write_all(&frame).await
}

/// Counters of one flow.
#[derive(Debug, Default)]
struct FlowStats {
    sent: AtomicU64,
    received: AtomicU64,
    dropped: AtomicU64,
    /// Milliseconds since the flow started, at its last datagram either way.
    last_active: AtomicU64,
}

impl FlowStats {
    fn touch(&self, start: Instant) {
        let ms = u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_active.store(ms, Ordering::Relaxed);
    }

    /// Resolves once nothing moved for `idle`.
    async fn idle(&self, start: Instant, idle: Duration) {
        loop {
            let last = Duration::from_millis(self.last_active.load(Ordering::Relaxed));
            let deadline = start + last + idle;
            if Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep_until(deadline).await;
        }
    }
}

struct Flow {
    queue: mpsc::Sender<Vec<u8>>,
    stats: Arc<FlowStats>,
}

/// Hands `datagram` to the flow of `peer`: queued, or dropped (and counted, in the flow and
/// in the service's `counters`) when the queue is full. Returns it when it must start a new
/// flow (none yet, or the old one ended).
fn dispatch(
    flows: &mut HashMap<SocketAddr, Flow>,
    peer: SocketAddr,
    datagram: Vec<u8>,
    counters: &ServiceCounters,
) -> Option<Vec<u8>> {
    let Some(flow) = flows.get(&peer) else {
        return Some(datagram);
    };
    match flow.queue.try_send(datagram) {
        Ok(()) => None,
        Err(mpsc::error::TrySendError::Full(_)) => {
            flow.stats.dropped.fetch_add(1, Ordering::Relaxed);
            counters.dropped();
            None
        }
        Err(mpsc::error::TrySendError::Closed(back)) => {
            flows.remove(&peer);
            Some(back)
        }
    }
}

/// Which sessions may carry a service's flows (e.g. those whose client proved its token).
pub type Usable = Arc<dyn Fn(&Entry) -> bool + Send + Sync>;

/// What the server side of one exposed UDP service works with.
pub struct Exposed {
    /// The service name (the stream header carries it).
    pub name: String,
    /// The tunnel clients' sessions.
    pub set: SessionSet,
    /// Which of them may carry this service.
    pub usable: Usable,
    /// Where flow tasks run (drained at shutdown).
    pub relays: TaskTracker,
    /// `--max-connections`: all services together.
    pub connections: Limiter,
    /// The service's own limit, if any.
    pub limit: Option<Limiter>,
    /// `--wait-for-client`.
    pub wait: Duration,
    /// `--udp-idle-timeout`, `--udp-queue`.
    pub settings: UdpArgs,
    /// The service's metrics.
    pub counters: Arc<ServiceCounters>,
    /// Process shutdown.
    pub shutdown: Shutdown,
}

/// The server side of one exposed UDP service: demultiplexes datagrams by source into flows
/// until `stop` (a reload) or shutdown; returns the socket so that a restart can reuse it.
/// Flows already open keep answering through the socket until they end.
pub async fn expose_loop(
    socket: Arc<UdpSocket>,
    exposed: Exposed,
    stop: CancellationToken,
) -> Arc<UdpSocket> {
    let Exposed {
        name,
        set,
        usable,
        relays,
        connections,
        limit,
        wait,
        settings,
        counters,
        shutdown,
    } = exposed;
    let mut flows: HashMap<SocketAddr, Flow> = HashMap::new();
    let mut buf = vec![0u8; MAX_DATAGRAM];
    // Ended flows are found lazily (their queue is closed); sweep them out now and then so
    // that the map holds live flows only.
    let mut sweep = tokio::time::interval(
        settings
            .udp_idle_timeout
            .clamp(Duration::from_millis(100), Duration::from_secs(10)),
    );
    loop {
        let (n, peer) = tokio::select! {
            _ = shutdown.requested() => break,
            _ = stop.cancelled() => break,
            _ = sweep.tick() => {
                flows.retain(|_, flow| !flow.queue.is_closed());
                continue;
            }
            received = socket.recv_from(&mut buf) => match received {
                Ok(pair) => pair,
                Err(e) => {
                    // E.g. an ICMP error reported for an earlier send; the socket still works.
                    tracing::debug!("{name}: UDP receive failed: {e}");
                    pause_after(&e).await;
                    continue;
                }
            },
        };
        let Some(datagram) = dispatch(&mut flows, peer, buf[..n].to_vec(), &counters) else {
            continue;
        };
        let own = match &limit {
            Some(limit) => match limit.try_acquire() {
                Some(permit) => Some(permit),
                None => {
                    counters.refused();
                    continue;
                }
            },
            None => None,
        };
        let Some(permit) = connections.try_acquire() else {
            // The limiter counts and logs it; the datagram is dropped.
            counters.refused();
            tracing::debug!("{name}: no slot for a new UDP flow from {peer}; datagram dropped");
            continue;
        };
        let (queue, rx) = mpsc::channel(settings.udp_queue.max(1));
        // A fresh channel has room for its first datagram.
        let _ = queue.try_send(datagram);
        let stats = Arc::new(FlowStats::default());
        tracing::debug!("{name}: new UDP flow from {peer}");
        let task = FlowTask {
            socket: socket.clone(),
            peer,
            name: name.clone(),
            stats: stats.clone(),
            idle: settings.udp_idle_timeout,
        };
        let set = set.clone();
        let usable = usable.clone();
        let counters = counters.clone();
        relays.spawn(async move {
            let _open = counters.opened();
            if !task.run(rx, &set, &*usable, wait, counters.meter()).await {
                counters.refused();
            }
            drop((permit, own));
        });
        flows.insert(peer, Flow { queue, stats });
    }
    // Dropping the queues ends every flow.
    socket
}

struct FlowTask {
    socket: Arc<UdpSocket>,
    peer: SocketAddr,
    name: String,
    stats: Arc<FlowStats>,
    idle: Duration,
}

impl FlowTask {
    /// Carries the flow; `false` when no session took it.
    async fn run(
        self,
        rx: mpsc::Receiver<Vec<u8>>,
        set: &SessionSet,
        usable: &(dyn Fn(&Entry) -> bool + Sync),
        wait: Duration,
        meter: &Meter,
    ) -> bool {
        let (name, peer) = (&self.name, self.peer);
        let Some(mut stream) = open_on_newest(set, usable, name, wait).await else {
            tracing::warn!(
                "{name}: no tunnel client took the UDP flow from {peer} within {wait:?} \
                 (--wait-for-client); its datagrams are dropped. Is `polymux tunnel client` \
                 running, with this service's token?"
            );
            return false;
        };
        let id = stream.id();
        if let Err(e) =
            relay::write_header_version(&mut stream, relay::DATAGRAM_VERSION, name).await
        {
            tracing::debug!("{name}: UDP flow from {peer}: writing the header failed: {e}");
            stream.reset();
            return true;
        }
        let start = Instant::now();
        let ended = self.relay(&mut stream, rx, start, meter).await;
        let stats = &self.stats;
        let summary = format!(
            "{} datagrams in, {} out, {} dropped (queue full)",
            stats.sent.load(Ordering::Relaxed),
            stats.received.load(Ordering::Relaxed),
            stats.dropped.load(Ordering::Relaxed)
        );
        match ended {
            Ok(why) => {
                // Flows come and go by the thousand (DNS): info only when datagrams were lost.
                if stats.dropped.load(Ordering::Relaxed) > 0 {
                    tracing::info!(
                        "{name}: UDP flow from {peer} closed ({why}) on stream {id}: {summary}"
                    );
                } else {
                    tracing::debug!(
                        "{name}: UDP flow from {peer} closed ({why}) on stream {id}: {summary}"
                    );
                }
                // A FIN, so the client closes its side too.
                let _ = tokio::time::timeout(Duration::from_secs(1), stream.shutdown()).await;
            }
            Err(e) => {
                tracing::info!("{name}: UDP flow from {peer} ended on stream {id}: {e}; {summary}");
                stream.reset();
            }
        }
        true
    }

    /// Relays until the flow ends; `Ok(reason)` when it ended cleanly.
    async fn relay(
        &self,
        stream: &mut Stream,
        mut rx: mpsc::Receiver<Vec<u8>>,
        start: Instant,
        meter: &Meter,
    ) -> Result<&'static str, relay::RelayError> {
        let (mut r, mut w) = tokio::io::split(&mut *stream);
        let stats = &self.stats;
        let uplink = async {
            while let Some(datagram) = rx.recv().await {
                write_frame(&mut w, &datagram).await?;
                stats.sent.fetch_add(1, Ordering::Relaxed);
                meter
                    .to_target
                    .fetch_add(datagram.len() as u64, Ordering::Relaxed);
                stats.touch(start);
            }
            Ok::<_, relay::RelayError>("shutdown")
        };
        let downlink = async {
            tokio::time::timeout(HEADER_TIMEOUT, relay::read_status(&mut r))
                .await
                .map_err(|_| {
                    relay::RelayError::Io(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "no answer from the tunnel client",
                    ))
                })??;
            let mut datagram = Vec::new();
            while read_frame(&mut r, &mut datagram).await? {
                stats.received.fetch_add(1, Ordering::Relaxed);
                meter
                    .from_target
                    .fetch_add(datagram.len() as u64, Ordering::Relaxed);
                stats.touch(start);
                if let Err(e) = self.socket.send_to(&datagram, self.peer).await {
                    tracing::debug!("{}: sending to {}: {e}", self.name, self.peer);
                }
            }
            Ok("closed by the tunnel client")
        };
        tokio::select! {
            ended = uplink => ended,
            ended = downlink => ended,
            _ = stats.idle(start, self.idle) => Ok("idle"),
        }
    }
}

/// Opens a stream on the newest live session that may carry the service, waiting up to
/// `wait` for one.
async fn open_on_newest(
    set: &SessionSet,
    usable: &(dyn Fn(&Entry) -> bool + Sync),
    name: &str,
    wait: Duration,
) -> Option<Stream> {
    let mut tried = Vec::new();
    for _ in 0..3 {
        let entry = set.wait_newest(&tried, usable, wait).await?;
        match tokio::time::timeout(OPEN_TIMEOUT, entry.session.open()).await {
            Ok(Ok(stream)) => return Some(stream),
            Ok(Err(e)) => {
                tracing::debug!(
                    "{name}: opening a stream on session {} failed: {e}",
                    entry.id
                )
            }
            Err(_) => tracing::debug!("{name}: session {} did not take a stream", entry.id),
        }
        tried.push(entry.id);
    }
    None
}

/// The client side of one flow: connects a UDP socket to `target` and relays until the
/// server closes the stream (or [`ACCEPTOR_IDLE`]); counted in the service's `counters`.
pub async fn serve_flow(
    mut stream: Stream,
    service: &str,
    target: &str,
    counters: &Arc<ServiceCounters>,
) {
    let id = stream.id();
    let socket = match connect(target).await {
        Ok(socket) => socket,
        Err(e) => {
            counters.refused();
            tracing::warn!("{service}: cannot reach UDP target {target}: {e}");
            if relay::write_status(&mut stream, OpenStatus::TargetUnreachable, &e.to_string())
                .await
                .is_err()
            {
                stream.reset();
            }
            return;
        }
    };
    if relay::write_status(&mut stream, OpenStatus::Ok, "")
        .await
        .is_err()
    {
        stream.reset();
        return;
    }
    let _open = counters.opened();
    let meter = counters.meter();
    let stats = FlowStats::default();
    let start = Instant::now();
    let (mut r, mut w) = tokio::io::split(&mut stream);
    let (queue, mut rx) = mpsc::channel::<Vec<u8>>(ACCEPTOR_QUEUE);
    let downlink = async {
        let mut datagram = Vec::new();
        while read_frame(&mut r, &mut datagram).await? {
            stats.touch(start);
            stats.sent.fetch_add(1, Ordering::Relaxed);
            meter
                .to_target
                .fetch_add(datagram.len() as u64, Ordering::Relaxed);
            if let Err(e) = socket.send(&datagram).await {
                // E.g. "connection refused" after an ICMP port unreachable: the target is
                // down for now; later datagrams may still get through.
                tracing::debug!("{service}: sending to {target}: {e}");
            }
        }
        Ok::<_, io::Error>(())
    };
    let receive = async {
        let mut buf = vec![0u8; MAX_DATAGRAM];
        loop {
            match socket.recv(&mut buf).await {
                Ok(n) => {
                    stats.touch(start);
                    if queue.try_send(buf[..n].to_vec()).is_err() {
                        stats.dropped.fetch_add(1, Ordering::Relaxed);
                        counters.dropped();
                    }
                }
                Err(e) => {
                    tracing::debug!("{service}: receiving from {target}: {e}");
                    pause_after(&e).await;
                }
            }
        }
    };
    let uplink = async {
        while let Some(datagram) = rx.recv().await {
            write_frame(&mut w, &datagram).await?;
            stats.received.fetch_add(1, Ordering::Relaxed);
            meter
                .from_target
                .fetch_add(datagram.len() as u64, Ordering::Relaxed);
        }
        Ok::<_, io::Error>(())
    };
    let ended = tokio::select! {
        ended = downlink => ended,
        ended = uplink => ended,
        _ = receive => Ok(()),
        _ = stats.idle(start, ACCEPTOR_IDLE) => Ok(()),
    };
    tracing::debug!(
        "{service}: UDP stream {id} to {target} done ({} datagrams to it, {} back, {} dropped)",
        stats.sent.load(Ordering::Relaxed),
        stats.received.load(Ordering::Relaxed),
        stats.dropped.load(Ordering::Relaxed)
    );
    match ended {
        Ok(()) => {
            let _ = tokio::time::timeout(Duration::from_secs(1), stream.shutdown()).await;
        }
        Err(e) => {
            tracing::debug!("{service}: UDP stream {id}: {e}");
            stream.reset();
        }
    }
}

/// After a receive error: none for an ICMP "port unreachable" report (the socket is fine, the
/// next datagram may be answered); a short pause for anything else, so that an error that
/// repeats cannot spin the loop.
async fn pause_after(e: &io::Error) {
    if e.kind() != io::ErrorKind::ConnectionRefused {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A UDP socket connected to `target` (resolved; bound to the matching unspecified address).
async fn connect(target: &str) -> io::Result<UdpSocket> {
    let addr = tokio::net::lookup_host(target)
        .await?
        .next()
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no address"))?;
    let local: SocketAddr = if addr.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        ([0u16; 8], 0).into()
    };
    let socket = UdpSocket::bind(local).await?;
    socket.connect(addr).await?;
    Ok(socket)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_queues_drop_and_count_and_ended_flows_restart() {
        let peer: SocketAddr = ([127, 0, 0, 1], 5353).into();
        let other: SocketAddr = ([127, 0, 0, 1], 5354).into();
        let mut flows = HashMap::new();
        let counters = ServiceCounters::default();
        assert_eq!(
            dispatch(&mut flows, peer, vec![1], &counters),
            Some(vec![1]),
            "no flow yet"
        );
        let (queue, mut rx) = mpsc::channel(2);
        let stats = Arc::new(FlowStats::default());
        flows.insert(
            peer,
            Flow {
                queue,
                stats: stats.clone(),
            },
        );
        for i in 0..5u8 {
            assert_eq!(dispatch(&mut flows, peer, vec![i], &counters), None);
        }
        assert_eq!(
            stats.dropped.load(Ordering::Relaxed),
            3,
            "2 queued, 3 dropped"
        );
        assert_eq!(counters.dropped_count(), 3, "and counted for the service");
        assert_eq!(rx.try_recv().ok(), Some(vec![0]));
        assert_eq!(rx.try_recv().ok(), Some(vec![1]));
        assert_eq!(
            dispatch(&mut flows, other, vec![9], &counters),
            Some(vec![9]),
            "per source"
        );
        drop(rx);
        assert_eq!(
            dispatch(&mut flows, peer, vec![7], &counters),
            Some(vec![7]),
            "flow ended"
        );
        assert!(flows.is_empty());
    }

    #[tokio::test]
    async fn frames_keep_datagram_boundaries() {
        let (mut a, mut b) = tokio::io::duplex(1 << 20);
        let datagrams: Vec<Vec<u8>> = [0usize, 1, 512, 65535]
            .iter()
            .map(|&n| (0..n).map(|i| (i % 253) as u8).collect())
            .collect();
        for d in &datagrams {
            write_frame(&mut a, d).await.expect("write");
        }
        drop(a);
        let mut got = Vec::new();
        let mut buf = Vec::new();
        while read_frame(&mut b, &mut buf).await.expect("read") {
            got.push(buf.clone());
        }
        assert!(got == datagrams, "datagrams differ");
        assert!(write_frame(&mut tokio::io::sink(), &vec![0; 65536])
            .await
            .is_err());
        assert_eq!(udp_target("udp://127.0.0.1:53"), Some("127.0.0.1:53"));
        assert_eq!(udp_target("127.0.0.1:53"), None);
    }
}
