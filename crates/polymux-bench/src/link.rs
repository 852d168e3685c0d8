//! A WAN link emulator for the benchmarks (issue 13, item 3): a TCP relay on 127.0.0.1 that
//! stands between a client and the real server and forwards each direction through a
//! bottleneck, as the measurements did (netem is not available on these machines).
//!
//! Each direction of the relay has one [`Bottleneck`], shared by every connection through it
//! (so two raw TCP connections compete for one link, like two streams of one session do):
//!
//! - it serialises bytes at `rate` bytes/s: a chunk leaves `len / rate` after the one before it
//!   (a virtual clock, `free_at`, so the average rate is exact whatever the timer granularity);
//! - it holds at most `queue` bytes waiting to be serialised (default: one bandwidth-delay
//!   product), with back-pressure: while the queue is full the relay stops reading the source
//!   socket, so the sender's own buffers fill, as behind a real bottleneck;
//! - a chunk is delivered `delay` (one way) after it leaves the bottleneck, in order.
//!
//! The relay's sockets get small receive buffers ([`RELAY_RCVBUF`]): a large, autotuned one
//! would be a second queue in front of the bottleneck, one per connection, that the sender's
//! `TCP_NOTSENT_LOWAT` cannot see (on loopback everything written is "sent" at once), and
//! that a multiplexed connection's small frames would wait in while a raw TCP connection
//! beside it has its own.
//!
//! Memory per direction and connection is bounded by construction: bytes read but not yet
//! delivered are at most `queue + rate × delay + READ_CHUNK` (the queue cap is checked before
//! every read; after the bottleneck, bytes wait only the fixed delay). A connection's tasks
//! stop when both directions have seen EOF (or an error) and flushed; dropping the [`Relay`]
//! stops everything.
//!
//! The bottleneck also counts the bytes leaving it per [`WINDOW`], for the time to reach 90 %
//! of the link rate ([`LinkStats::t90`]).

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

/// Largest single read from a source socket (a chunk on the link).
pub const READ_CHUNK: usize = 16 * 1024;
/// Receive buffer asked for on the relay's sockets (the kernel doubles it): one read's worth.
pub const RELAY_RCVBUF: usize = READ_CHUNK;
/// The width of the windows the delivered rate is counted in.
pub const WINDOW: Duration = Duration::from_millis(200);
/// Windows counted at most (10 minutes' worth); later bytes are not counted.
const MAX_WINDOWS: usize = 3000;
/// Chunks in flight per direction and connection, a second bound beside the byte bound.
const CHANNEL_CHUNKS: usize = 8192;

/// The shape of the emulated path (the same in both directions).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LinkShape {
    /// Bottleneck rate, bytes per second.
    pub rate: u64,
    /// One-way delay after the bottleneck (RTT = 2 × delay, plus serialisation).
    pub delay: Duration,
    /// Bytes that may wait in front of the bottleneck.
    pub queue: usize,
}

impl LinkShape {
    /// A path of `rate` bytes/s and round-trip time `rtt`, its queue one bandwidth-delay
    /// product.
    pub fn new(rate: u64, rtt: Duration) -> LinkShape {
        let bdp = (u128::from(rate) * rtt.as_nanos() / 1_000_000_000) as usize;
        LinkShape {
            rate,
            delay: rtt / 2,
            queue: bdp.max(READ_CHUNK),
        }
    }

    /// How long the bottleneck takes to serialise `bytes`.
    fn serialise(&self, bytes: usize) -> Duration {
        Duration::from_nanos((bytes as u128 * 1_000_000_000 / u128::from(self.rate.max(1))) as u64)
    }
}

/// One direction's bottleneck, shared by every connection through the relay.
struct Bottleneck {
    shape: LinkShape,
    state: Mutex<State>,
}

/// Invariant: `free_at` is when the bottleneck finishes the last byte admitted so far, so the
/// queue holds `(free_at - now) × rate` bytes; it only moves forward.
struct State {
    free_at: Instant,
    /// When the first byte was admitted: the origin of the windows.
    first: Option<Instant>,
    /// Bytes that left the bottleneck in each [`WINDOW`] since `first`.
    windows: Vec<u64>,
    total: u64,
}

impl Bottleneck {
    fn new(shape: LinkShape) -> Bottleneck {
        Bottleneck {
            shape,
            state: Mutex::new(State {
                free_at: Instant::now(),
                first: None,
                windows: Vec::new(),
                total: 0,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic elsewhere cannot leave `State` inconsistent (every update is one assignment
        // per field), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `None` if the queue has room at `now`, else the instant it will have room again.
    fn full_until(&self, now: Instant) -> Option<Instant> {
        let drain = self.shape.serialise(self.shape.queue);
        let free_at = self.lock().free_at;
        (free_at > now + drain).then(|| free_at - drain)
    }

    /// Queues `len` bytes at `now`; returns when they leave the bottleneck.
    fn admit(&self, now: Instant, len: usize) -> Instant {
        let mut s = self.lock();
        let start = s.free_at.max(now);
        let depart = start + self.shape.serialise(len);
        s.free_at = depart;
        let first = *s.first.get_or_insert(now);
        let window =
            (depart.saturating_duration_since(first).as_nanos() / WINDOW.as_nanos()) as usize;
        if window < MAX_WINDOWS {
            if s.windows.len() <= window {
                s.windows.resize(window + 1, 0);
            }
            s.windows[window] += len as u64;
        }
        s.total += len as u64;
        depart
    }

    fn stats(&self) -> LinkStats {
        let s = self.lock();
        LinkStats {
            rate: self.shape.rate,
            bytes: s.total,
            busy: s.first.map_or(Duration::ZERO, |first| {
                s.free_at.saturating_duration_since(first)
            }),
            windows: s.windows.clone(),
        }
    }
}

/// What went through one direction of the link.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LinkStats {
    /// The link rate, bytes/s.
    pub rate: u64,
    /// Bytes that went through.
    pub bytes: u64,
    /// From the first byte admitted until the last one left the bottleneck.
    pub busy: Duration,
    /// Bytes that left the bottleneck per [`WINDOW`], from the first byte admitted.
    pub windows: Vec<u64>,
}

impl LinkStats {
    /// Time from the first byte until the end of the first [`WINDOW`] that carried at least
    /// `fraction` of the link rate; `None` if none did. At least one window (200 ms) by
    /// definition: a sender that saturates the link from its first byte scores 200 ms.
    pub fn time_to(&self, fraction: f64) -> Option<Duration> {
        let want = fraction * self.rate as f64 * WINDOW.as_secs_f64();
        self.windows
            .iter()
            .position(|&b| b as f64 >= want)
            .map(|i| WINDOW * (i as u32 + 1))
    }

    /// [`time_to`](Self::time_to) 90 % of the link rate: the t90.
    pub fn t90(&self) -> Option<Duration> {
        self.time_to(0.9)
    }

    /// The mean rate in bytes/s over the whole windows from `skip` after the first byte to
    /// the last complete window; `None` if there is no such window.
    pub fn rate_after(&self, skip: Duration) -> Option<f64> {
        let from = (skip.as_nanos() / WINDOW.as_nanos()) as usize;
        // The last window is still filling (or was cut short): leave it out.
        let whole = self
            .windows
            .get(from..self.windows.len().saturating_sub(1))?;
        if whole.is_empty() {
            return None;
        }
        let bytes: u64 = whole.iter().sum();
        Some(bytes as f64 / (WINDOW.as_secs_f64() * whole.len() as f64))
    }
}

/// A running relay: connections to [`addr`](Relay::addr) are forwarded to the upstream
/// address through the link. Dropping it stops every connection.
pub struct Relay {
    addr: SocketAddr,
    up: Arc<Bottleneck>,
    down: Arc<Bottleneck>,
    /// Read by the tests: a relay lets go of closed connections.
    #[cfg_attr(not(test), allow(dead_code))]
    active: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl Relay {
    /// Listens on 127.0.0.1 (an ephemeral port) and relays to `upstream` through `shape`.
    /// Must be called within a tokio runtime with time enabled.
    pub async fn start(shape: LinkShape, upstream: SocketAddr) -> io::Result<Relay> {
        let socket = TcpSocket::new_v4()?;
        socket.set_reuseaddr(true)?;
        // Accepted sockets inherit the listener's receive buffer size.
        socket.set_recv_buffer_size(RELAY_RCVBUF as u32)?;
        socket.bind(SocketAddr::from(([127, 0, 0, 1], 0)))?;
        let listener = socket.listen(1024)?;
        let addr = listener.local_addr()?;
        let up = Arc::new(Bottleneck::new(shape));
        let down = Arc::new(Bottleneck::new(shape));
        let active = Arc::new(AtomicUsize::new(0));
        let task = tokio::spawn(accept_loop(
            listener,
            upstream,
            up.clone(),
            down.clone(),
            active.clone(),
        ));
        Ok(Relay {
            addr,
            up,
            down,
            active,
            task,
        })
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The client-to-server direction's figures.
    pub fn upstream(&self) -> LinkStats {
        self.up.stats()
    }

    /// The server-to-client direction's figures.
    pub fn downstream(&self) -> LinkStats {
        self.down.stats()
    }

    /// Connections still being relayed.
    #[cfg(test)]
    pub fn active(&self) -> usize {
        self.active.load(Relaxed)
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        // Aborting the accept loop drops its JoinSet, which aborts every connection.
        self.task.abort();
    }
}

async fn accept_loop(
    listener: TcpListener,
    upstream: SocketAddr,
    up: Arc<Bottleneck>,
    down: Arc<Bottleneck>,
    active: Arc<AtomicUsize>,
) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((client, _)) = accepted else { continue };
                active.fetch_add(1, Relaxed);
                let (up, down, active) = (up.clone(), down.clone(), active.clone());
                conns.spawn(async move {
                    match relay_one(client, upstream, up, down).await {
                        // A side that goes away abruptly (a client stopped mid-transfer) is
                        // normal; anything else is worth a line (the benchmark reports the
                        // failure from the client's side).
                        Err(e) if !matches!(
                            e.kind(),
                            io::ErrorKind::ConnectionReset
                                | io::ErrorKind::BrokenPipe
                                | io::ErrorKind::UnexpectedEof
                        ) => eprintln!("link relay: {e}"),
                        _ => {}
                    }
                    active.fetch_sub(1, Relaxed);
                });
            }
            // Reap finished connections so the set stays as small as the live ones.
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

/// Relays one connection until both directions are done.
async fn relay_one(
    client: TcpStream,
    upstream: SocketAddr,
    up: Arc<Bottleneck>,
    down: Arc<Bottleneck>,
) -> io::Result<()> {
    client.set_nodelay(true)?;
    let socket = TcpSocket::new_v4()?;
    socket.set_recv_buffer_size(RELAY_RCVBUF as u32)?;
    let server = socket.connect(upstream).await?;
    server.set_nodelay(true)?;
    let (cr, cw) = client.into_split();
    let (sr, sw) = server.into_split();
    let (a, b) = tokio::join!(direction(cr, sw, up), direction(sr, cw, down));
    a.and(b)
}

/// One direction: a reader that admits chunks to the bottleneck (waiting while its queue is
/// full) and a writer that delivers each chunk `delay` after it leaves the bottleneck.
async fn direction(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    link: Arc<Bottleneck>,
) -> io::Result<()> {
    let delay = link.shape.delay;
    let (tx, mut rx) = mpsc::channel::<(Instant, Vec<u8>)>(CHANNEL_CHUNKS);
    let reader = async move {
        let mut buf = vec![0u8; READ_CHUNK];
        loop {
            // Back-pressure: read nothing while the bottleneck's queue is full.
            while let Some(room_at) = link.full_until(Instant::now()) {
                tokio::time::sleep_until(room_at).await;
            }
            let n = match from.read(&mut buf).await {
                Ok(0) => return Ok(()),
                Ok(n) => n,
                Err(e) => return Err(e),
            };
            let depart = link.admit(Instant::now(), n);
            if tx.send((depart + delay, buf[..n].to_vec())).await.is_err() {
                // The writer stopped (the destination failed); it reports why.
                return Ok(());
            }
        }
    };
    let writer = async move {
        while let Some((at, chunk)) = rx.recv().await {
            if at > Instant::now() {
                tokio::time::sleep_until(at).await;
            }
            to.write_all(&chunk).await?;
        }
        // The source reached EOF and everything is delivered: pass the EOF on.
        to.shutdown().await
    };
    let (r, w) = tokio::join!(reader, writer);
    r.and(w)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MB: u64 = 1_000_000;

    #[test]
    fn shape_from_rate_and_rtt() {
        let s = LinkShape::new(12_500_000, Duration::from_millis(50));
        assert_eq!(s.delay, Duration::from_millis(25));
        assert_eq!(s.queue, 625_000);
        assert_eq!(s.serialise(12_500), Duration::from_millis(1));
    }

    #[test]
    fn the_queue_is_capped_at_its_size_and_paced_at_the_rate() {
        // 1 MB/s, queue 100 kB: 0.1 s of backlog at most.
        let shape = LinkShape {
            rate: MB,
            delay: Duration::from_millis(10),
            queue: 100_000,
        };
        let b = Bottleneck::new(shape);
        let t0 = Instant::now();
        let mut depart = t0;
        let mut admitted = 0;
        while b.full_until(t0).is_none() {
            depart = b.admit(t0, 10_000);
            admitted += 10_000;
        }
        // Admission stops once the backlog exceeds the queue (by at most one chunk).
        assert_eq!(admitted, 110_000);
        assert_eq!(depart - t0, Duration::from_millis(110));
        // Room again once the backlog has drained to the queue size.
        assert_eq!(b.full_until(t0), Some(t0 + Duration::from_millis(10)));
        assert_eq!(b.full_until(t0 + Duration::from_millis(10)), None);
        // An idle link starts serialising at once.
        let later = t0 + Duration::from_secs(1);
        assert_eq!(b.admit(later, 1000), later + Duration::from_millis(1));
        // Bytes are counted in the window they leave in.
        let stats = b.stats();
        assert_eq!(stats.bytes, 111_000);
        assert_eq!(stats.busy, Duration::from_millis(1001));
        assert_eq!(stats.windows[0], 110_000);
        assert_eq!(stats.windows[5], 1000);
    }

    #[test]
    fn t90_is_the_end_of_the_first_window_at_90_percent() {
        let per_window = (MB as f64 * WINDOW.as_secs_f64()) as u64;
        let stats = |windows: Vec<u64>| LinkStats {
            rate: MB,
            bytes: windows.iter().sum(),
            busy: WINDOW * windows.len() as u32,
            windows,
        };
        assert_eq!(
            stats(vec![per_window, per_window]).t90(),
            Some(Duration::from_millis(200))
        );
        assert_eq!(
            stats(vec![per_window / 4, per_window / 2, per_window * 9 / 10]).t90(),
            Some(Duration::from_millis(600))
        );
        assert_eq!(stats(vec![per_window / 2; 10]).t90(), None);
        assert_eq!(stats(Vec::new()).t90(), None);
        // The rate over whole windows after a lead, the last (partial) one left out.
        let ramp = stats(vec![1, 2, per_window, per_window / 2, 7]);
        let rate = |w: u64| w as f64 / WINDOW.as_secs_f64();
        assert_eq!(
            ramp.rate_after(Duration::from_millis(400)),
            Some(rate(per_window * 3 / 4))
        );
        assert_eq!(ramp.rate_after(Duration::from_secs(1)), None);
    }

    /// An echo server that also closes when its client does.
    async fn echo_server() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = s.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                    let _ = w.shutdown().await;
                });
            }
        });
        addr
    }

    #[tokio::test]
    async fn the_relay_moves_bytes_intact_at_the_paced_rate_and_stops_when_both_sides_close() {
        let shape = LinkShape {
            rate: 4 * MB,
            delay: Duration::from_millis(10),
            queue: 80_000,
        };
        let relay = Relay::start(shape, echo_server().await)
            .await
            .expect("relay");
        let len = 2_000_000usize;
        let sent: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        let start = Instant::now();
        let mut client = TcpStream::connect(relay.addr()).await.expect("connect");
        let (mut r, mut w) = client.split();
        let data = sent.clone();
        let write = async move {
            w.write_all(&data).await?;
            w.shutdown().await
        };
        let mut back = Vec::with_capacity(len);
        let read = r.read_to_end(&mut back);
        let (wrote, read) =
            tokio::time::timeout(Duration::from_secs(60), async { tokio::join!(write, read) })
                .await
                .expect("the transfer finishes");
        wrote.expect("write");
        assert_eq!(read.expect("read"), len);
        assert!(back == sent, "bytes changed on the way");
        // Pacing: the last byte cannot have come back before the bytes were serialised (both
        // ways overlap) plus one round trip. That bound is exact; the upper one is generous.
        let elapsed = start.elapsed();
        assert!(
            elapsed >= shape.serialise(len) + shape.delay * 2,
            "{elapsed:?} is faster than the link"
        );
        let rate = len as f64 / elapsed.as_secs_f64();
        assert!(
            rate > shape.rate as f64 / 4.0,
            "{rate:.0} B/s is far below the link's {} B/s",
            shape.rate
        );
        assert_eq!(relay.upstream().bytes, len as u64);
        assert_eq!(relay.downstream().bytes, len as u64);
        assert!(relay.upstream().t90().is_some());
        // Both sides closed: the relay's connection ends by itself.
        drop(client);
        tokio::time::timeout(Duration::from_secs(10), async {
            while relay.active() > 0 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
        .await
        .expect("the relay lets go of a closed connection");
    }
}
