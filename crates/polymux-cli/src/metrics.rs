//! `--metrics ADDR`: Prometheus metrics of a tunnel or forward process, in the OpenMetrics
//! text format (`prometheus-client`), served by a minimal HTTP responder on `GET /metrics`.
//!
//! Engine numbers come from [`polymux::Session::stats`], read at scrape time from every
//! session the process has had: live sessions are read directly, and a session that ended
//! is read once more and folded into running totals, so counters never go backwards.
//! Per-service numbers are counted by the relays ([`Metrics::service`]); bytes are counted
//! as they are relayed.
//!
//! | series | type | meaning |
//! |---|---|---|
//! | `polymux_sessions` | gauge | live sessions (clients on a server; 0 or 1 on a client) |
//! | `polymux_reconnects_total` | counter | sessions a client established after its first |
//! | `polymux_streams` | gauge | streams open in the engines |
//! | `polymux_streams_opened_total{direction}` | counter | `outbound` (this side opened) / `inbound` |
//! | `polymux_streams_refused_total` | counter | inbound streams the engines refused |
//! | `polymux_session_bytes_total{direction}` | counter | stream payload `sent` / `received` |
//! | `polymux_rtt_seconds{session}` | gauge | the path's round trip per live session (`Stats::rtt`: smallest recent sample) |
//! | `polymux_recv_buffered_bytes` | gauge | received bytes not yet read (memory budget in use) |
//! | `polymux_recv_budget_bytes` | gauge | the receive memory budget of the live sessions |
//! | `polymux_service_connections_total{service}` | counter | connections carried per service |
//! | `polymux_service_connections_open{service}` | gauge | … open now |
//! | `polymux_service_refused_total{service}` | counter | connections/streams refused (limits, tokens, targets) |
//! | `polymux_service_bytes_total{service,direction}` | counter | `to_target` / `from_target` |
//!
//! The responder reads one request head (at most 8 KiB, within 5 s) per connection and
//! serves at most 16 connections at once; bind it to loopback unless the network is trusted
//! (the numbers name services and peers' session ids, nothing secret).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use polymux::Session;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use crate::relay::Meter;
use crate::shutdown::Shutdown;

/// Counters of one service.
#[derive(Debug, Default)]
pub struct ServiceCounters {
    connections: AtomicU64,
    open: AtomicI64,
    refused: AtomicU64,
    /// UDP datagrams dropped because their flow's queue was full.
    dropped: AtomicU64,
    meter: Meter,
}

impl ServiceCounters {
    /// A connection (or stream) refused.
    pub fn refused(&self) {
        self.refused.fetch_add(1, Ordering::Relaxed);
    }

    /// A connection starts; the guard counts it open until dropped.
    pub fn opened(self: &Arc<Self>) -> OpenGuard {
        self.connections.fetch_add(1, Ordering::Relaxed);
        self.open.fetch_add(1, Ordering::Relaxed);
        OpenGuard(self.clone())
    }

    /// A UDP datagram of this service dropped (its flow's queue was full).
    pub fn dropped(&self) {
        self.dropped.fetch_add(1, Ordering::Relaxed);
    }

    /// Datagrams dropped so far.
    #[cfg(test)]
    pub fn dropped_count(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// The live byte counters the relays of this service add to.
    pub fn meter(&self) -> &Meter {
        &self.meter
    }
}

/// Counts a connection open while it lives.
#[derive(Debug)]
pub struct OpenGuard(Arc<ServiceCounters>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Engine counters summed over sessions.
#[derive(Clone, Copy, Debug, Default)]
struct Totals {
    opened_outbound: u64,
    opened_inbound: u64,
    refused_inbound: u64,
    bytes_sent: u64,
    bytes_received: u64,
}

impl Totals {
    fn add(&mut self, s: &polymux::Stats) {
        self.opened_outbound += s.opened_outbound;
        self.opened_inbound += s.opened_inbound;
        self.refused_inbound += s.refused_inbound;
        self.bytes_sent += s.bytes_sent;
        self.bytes_received += s.bytes_received;
    }
}

#[derive(Debug, Default)]
struct Inner {
    /// Sessions not yet folded into `retired` (id, session).
    sessions: Mutex<(u64, Vec<(u64, Session)>)>,
    retired: Mutex<Totals>,
    reconnects: AtomicU64,
    services: Mutex<BTreeMap<String, Arc<ServiceCounters>>>,
    /// The receive budget of one session.
    budget: AtomicU64,
}

/// The process's metrics. Clones share them; `Metrics::default()` is a sink when
/// `--metrics` is not given (counting is a few atomics).
#[derive(Clone, Debug, Default)]
pub struct Metrics {
    inner: Arc<Inner>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Metrics {
    /// Metrics whose sessions have `config`'s receive budget.
    pub fn new(config: &polymux::Config) -> Metrics {
        let metrics = Metrics::default();
        metrics
            .inner
            .budget
            .store(config.session_recv_budget() as u64, Ordering::Relaxed);
        metrics
    }

    /// Starts counting a session (its stats are read at each scrape until it has ended).
    pub fn track(&self, session: &Session) {
        let mut sessions = lock(&self.inner.sessions);
        sessions.0 += 1;
        let id = sessions.0;
        sessions.1.push((id, session.clone()));
    }

    /// A client re-established its session.
    pub fn reconnected(&self) {
        self.inner.reconnects.fetch_add(1, Ordering::Relaxed);
    }

    /// The counters of `service` (created on first use).
    pub fn service(&self, service: &str) -> Arc<ServiceCounters> {
        lock(&self.inner.services)
            .entry(service.to_owned())
            .or_default()
            .clone()
    }

    /// The OpenMetrics text of every series.
    pub fn render(&self) -> String {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(self.clone()));
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &registry).is_err() {
            tracing::warn!("encoding the metrics failed");
        }
        out
    }
}

impl Collector for Metrics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        // Fold ended sessions into the totals, read the live ones.
        let mut totals;
        let mut live = Vec::new();
        {
            let mut sessions = lock(&self.inner.sessions);
            let mut retired = lock(&self.inner.retired);
            sessions.1.retain(|(id, session)| {
                let stats = session.stats();
                if session.end_reason().is_some() {
                    retired.add(&stats);
                    false
                } else {
                    live.push((*id, stats));
                    true
                }
            });
            totals = *retired;
        }
        for (_, stats) in &live {
            totals.add(stats);
        }
        let sum = |f: fn(&polymux::Stats) -> usize| live.iter().map(|(_, s)| f(s) as i64).sum();

        gauge(
            &mut encoder,
            "polymux_sessions",
            "Live sessions",
            live.len() as i64,
        )?;
        counter(
            &mut encoder,
            "polymux_reconnects",
            "Sessions a client established after its first",
            self.inner.reconnects.load(Ordering::Relaxed),
        )?;
        gauge(
            &mut encoder,
            "polymux_streams",
            "Streams open in the engines",
            sum(|s| s.streams),
        )?;
        {
            let c = ConstCounter::new(0u64);
            let mut family = encoder.encode_descriptor(
                "polymux_streams_opened",
                "Streams opened, by the side that opened them",
                None,
                c.metric_type(),
            )?;
            for (direction, value) in [
                ("outbound", totals.opened_outbound),
                ("inbound", totals.opened_inbound),
            ] {
                ConstCounter::new(value)
                    .encode(family.encode_family(&[("direction", direction)])?)?;
            }
        }
        counter(
            &mut encoder,
            "polymux_streams_refused",
            "Inbound streams the engines refused",
            totals.refused_inbound,
        )?;
        {
            let c = ConstCounter::new(0u64);
            let mut family = encoder.encode_descriptor(
                "polymux_session_bytes",
                "Stream payload bytes sent and received",
                None,
                c.metric_type(),
            )?;
            for (direction, value) in [
                ("sent", totals.bytes_sent),
                ("received", totals.bytes_received),
            ] {
                ConstCounter::new(value)
                    .encode(family.encode_family(&[("direction", direction)])?)?;
            }
        }
        {
            let g = ConstGauge::new(0.0f64);
            let mut family = encoder.encode_descriptor(
                "polymux_rtt_seconds",
                "Round trip of each live session's path (smallest sample of the last 1-2 minutes)",
                None,
                g.metric_type(),
            )?;
            for (id, stats) in &live {
                if let Some(rtt) = stats.rtt {
                    let id = id.to_string();
                    ConstGauge::new(rtt.as_secs_f64())
                        .encode(family.encode_family(&[("session", id.as_str())])?)?;
                }
            }
        }
        gauge(
            &mut encoder,
            "polymux_recv_buffered_bytes",
            "Received bytes not yet read by the relays (receive memory budget in use)",
            sum(|s| s.recv_buffered),
        )?;
        gauge(
            &mut encoder,
            "polymux_recv_budget_bytes",
            "Receive memory budget of the live sessions",
            (self.inner.budget.load(Ordering::Relaxed) as i64).saturating_mul(live.len() as i64),
        )?;

        let services: Vec<(String, Arc<ServiceCounters>)> = lock(&self.inner.services)
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let per_service = |encoder: &mut DescriptorEncoder,
                           name: &str,
                           help: &str,
                           read: fn(&ServiceCounters) -> u64|
         -> Result<(), std::fmt::Error> {
            let c = ConstCounter::new(0u64);
            let mut family = encoder.encode_descriptor(name, help, None, c.metric_type())?;
            for (service, counters) in &services {
                ConstCounter::new(read(counters))
                    .encode(family.encode_family(&[("service", service.as_str())])?)?;
            }
            Ok(())
        };
        per_service(
            &mut encoder,
            "polymux_service_connections",
            "Connections carried, per service",
            |c| c.connections.load(Ordering::Relaxed),
        )?;
        per_service(
            &mut encoder,
            "polymux_service_refused",
            "Connections or streams refused, per service",
            |c| c.refused.load(Ordering::Relaxed),
        )?;
        per_service(
            &mut encoder,
            "polymux_service_datagrams_dropped",
            "UDP datagrams dropped because their flow's queue was full, per service",
            |c| c.dropped.load(Ordering::Relaxed),
        )?;
        {
            let g = ConstGauge::new(0i64);
            let mut family = encoder.encode_descriptor(
                "polymux_service_connections_open",
                "Connections open now, per service",
                None,
                g.metric_type(),
            )?;
            for (service, counters) in &services {
                ConstGauge::new(counters.open.load(Ordering::Relaxed))
                    .encode(family.encode_family(&[("service", service.as_str())])?)?;
            }
        }
        {
            let c = ConstCounter::new(0u64);
            let mut family = encoder.encode_descriptor(
                "polymux_service_bytes",
                "Bytes relayed per service, towards and from the target",
                None,
                c.metric_type(),
            )?;
            for (service, counters) in &services {
                for (direction, value) in [
                    (
                        "to_target",
                        counters.meter.to_target.load(Ordering::Relaxed),
                    ),
                    (
                        "from_target",
                        counters.meter.from_target.load(Ordering::Relaxed),
                    ),
                ] {
                    let labels = [("service", service.as_str()), ("direction", direction)];
                    ConstCounter::new(value).encode(family.encode_family(&labels)?)?;
                }
            }
        }
        Ok(())
    }
}

fn gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: i64,
) -> Result<(), std::fmt::Error> {
    let g = ConstGauge::new(value);
    let m = encoder.encode_descriptor(name, help, None, g.metric_type())?;
    g.encode(m)
}

fn counter(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: u64,
) -> Result<(), std::fmt::Error> {
    let c = ConstCounter::new(value);
    let m = encoder.encode_descriptor(name, help, None, c.metric_type())?;
    c.encode(m)
}

/// Scrapes served at once.
const MAX_SCRAPES: usize = 16;
/// Longest request head read.
const MAX_HEAD: usize = 8 * 1024;
/// Time a scraper has to send its request head and read the answer.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(5);

/// Binds `addr` and serves `metrics` there until shutdown (in a task).
pub async fn serve(addr: &str, metrics: Metrics, shutdown: Shutdown) -> anyhow::Result<()> {
    if !crate::transport::is_loopback(addr).await? {
        tracing::warn!(
            "--metrics {addr} is not a loopback address: anyone who can reach it can read the \
             metrics (service names, traffic volumes)"
        );
    }
    let listener =
        crate::transport::bind_with_backlog(addr, "--metrics", crate::args::DEFAULT_BACKLOG)
            .await?;
    tracing::info!(
        "serving metrics on http://{}/metrics",
        listener.local_addr()?
    );
    tokio::spawn(accept(listener, metrics, shutdown));
    Ok(())
}

async fn accept(listener: TcpListener, metrics: Metrics, shutdown: Shutdown) {
    let slots = Arc::new(Semaphore::new(MAX_SCRAPES));
    loop {
        let accepted = tokio::select! {
            _ = shutdown.requested() => return,
            accepted = listener.accept() => accepted,
        };
        let Ok((tcp, _)) = accepted else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            continue; // dropping the connection: too many scrapes at once
        };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let _ = tokio::time::timeout(SCRAPE_TIMEOUT, answer(tcp, &metrics)).await;
            drop(slot);
        });
    }
}

async fn answer(mut tcp: TcpStream, metrics: &Metrics) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tcp.read(&mut buf).await?;
        if n == 0 || head.len() + n > MAX_HEAD {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = head.split(|&b| b == b'\r').next().unwrap_or_default();
    let mut parts = line.split(|&b| b == b' ');
    let (method, path) = (parts.next(), parts.next());
    let (status, content_type, body) = match (method, path) {
        (Some(b"GET"), Some(b"/metrics" | b"/")) => (
            "200 OK",
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            metrics.render(),
        ),
        _ => (
            "404 Not Found",
            "text/plain; charset=utf-8",
            "GET /metrics\n".to_owned(),
        ),
    };
    let mut response = String::with_capacity(body.len() + 128);
    let _ = write!(
        response,
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    response.push_str(&body);
    tcp.write_all(response.as_bytes()).await?;
    tcp.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_series_with_service_labels() {
        let metrics = Metrics::default();
        let web = metrics.service("web");
        {
            let _open = web.opened();
            web.meter().to_target.fetch_add(10, Ordering::Relaxed);
            web.meter().from_target.fetch_add(20, Ordering::Relaxed);
        }
        metrics.service("api").refused();
        metrics.reconnected();
        let text = metrics.render();
        for needle in [
            "polymux_sessions 0",
            "polymux_reconnects_total 1",
            "polymux_streams_opened_total{direction=\"outbound\"} 0",
            "polymux_service_connections_total{service=\"web\"} 1",
            "polymux_service_connections_open{service=\"web\"} 0",
            "polymux_service_refused_total{service=\"api\"} 1",
            "polymux_service_bytes_total{service=\"web\",direction=\"to_target\"} 10",
            "polymux_service_bytes_total{service=\"web\",direction=\"from_target\"} 20",
            "# EOF",
        ] {
            assert!(text.contains(needle), "{needle:?} missing in:\n{text}");
        }
    }
}
