//! Two engines across a WAN path in virtual time: the harness behind `tests/wan.rs`.
//!
//! The client and server [`Connection`]s talk over two [`Link`]s (one per direction). The
//! harness is their driver, with the `polymux` driver's contract (write a batch completely and
//! report it before taking the next; feed input only while `wants_input()`), and their
//! applications:
//! - a **bulk** stream, client to server, written as fast as the engine takes it and read by
//!   the server as fast as it arrives;
//! - optionally an **RPC** stream beside it: the client sends 64 bytes after a pseudo-random
//!   gap of 0–200 ms and waits for the server's echo; every round trip is recorded;
//! - optionally a reader that slows down, and an explicit ping from the server mid-transfer.
//!
//! Time only moves to the next event (a packet leaving the bottleneck or arriving, an engine
//! timer, an RPC due), so a run of tens of virtual seconds takes well under a second and is
//! repeatable to the nanosecond. Model limit: bytes that arrived while a receiver paused its
//! input wait at the link's end without holding the sender back (a real TCP window would); the
//! scenarios here keep their receivers reading.

pub mod link;

use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use polymux_proto::{Config, Connection, Role, StreamKey, Transmit};

pub use link::{Link, LinkShape};

/// Size of one RPC request and its echo.
pub const RPC_BYTES: usize = 64;

/// One run: what to carry over which path.
#[derive(Clone, Debug)]
pub struct Scenario {
    pub config: Config,
    pub shape: LinkShape,
    /// Bulk bytes to carry (the run ends when they arrived, or at `limit`).
    pub bulk_bytes: u64,
    /// Send RPCs beside the bulk stream.
    pub rpc: bool,
    /// Virtual time after which the run stops, whatever is left.
    pub limit: Duration,
    /// Seed of the RPC gaps.
    pub seed: u64,
    /// The driver writes only while the socket holds fewer unsent bytes than this
    /// (`TCP_NOTSENT_LOWAT`); `None`: whenever the socket buffer has room.
    pub notsent_lowat: Option<usize>,
    /// From this time on, the server application reads the bulk stream at no more than this
    /// many bytes/s (in steps of [`SAMPLE`]).
    pub slow_reader: Option<(Duration, u64)>,
    /// At this time the server starts an explicit ping ([`Outcome::ping_rtt`]).
    pub ping_at: Option<Duration>,
    /// The client writes bulk data from this time on (the stream is opened at the start).
    pub bulk_at: Duration,
}

/// What a run measured.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Bulk bytes the server application read, sampled every [`SAMPLE`]: `(time, total)`.
    pub progress: Vec<(Duration, u64)>,
    /// When the last bulk byte was read (`None`: the run hit its limit first).
    pub finished: Option<Duration>,
    /// RPC round trips, in order.
    pub rpc_rtts: Vec<Duration>,
    /// Peak of the server's received-but-unread bytes.
    pub peak_server_buffered: usize,
    /// The server's receive windows (`Stats::recv_windows`) at the end of the transfer.
    pub final_window: u64,
    /// The server's (the receiver's) round-trip estimate at the end (`Stats::rtt`).
    pub server_rtt: Option<Duration>,
    /// The client's (the sender's) round-trip estimate at the end (`Stats::rtt`).
    pub client_rtt: Option<Duration>,
    /// The round trip of the explicit ping of [`Scenario::ping_at`], once answered.
    pub ping_rtt: Option<Duration>,
    /// The server's receive windows (`Stats::recv_windows`), sampled with `progress`.
    pub windows: Vec<(Duration, u64)>,
}

/// Interval of the bulk progress samples.
pub const SAMPLE: Duration = Duration::from_millis(10);

impl Outcome {
    /// Average bulk goodput from the start to the end of the transfer (or the limit), bytes/s.
    pub fn goodput(&self) -> f64 {
        let Some(&(t, bytes)) = self.progress.last() else {
            return 0.0;
        };
        let end = self.finished.unwrap_or(t);
        bytes as f64 / end.as_secs_f64()
    }

    /// The server's receive windows at the last sample at or before `at`.
    pub fn window_at(&self, at: Duration) -> u64 {
        self.windows
            .iter()
            .take_while(|&&(t, _)| t <= at)
            .last()
            .map_or(0, |&(_, w)| w)
    }

    /// The first time the goodput over a 200 ms window reached `fraction` of `rate`.
    pub fn time_to(&self, fraction: f64, rate: u64) -> Option<Duration> {
        let window = (Duration::from_millis(200).as_nanos() / SAMPLE.as_nanos()) as usize;
        self.progress.windows(window + 1).find_map(|w| {
            let (t0, b0) = w[0];
            let (t1, b1) = w[window];
            let rate_seen = (b1 - b0) as f64 / (t1 - t0).as_secs_f64();
            (rate_seen >= fraction * rate as f64).then_some(t1)
        })
    }

    /// The `p`-th percentile (0–100) of the RPC round trips.
    pub fn rpc_percentile(&self, p: usize) -> Option<Duration> {
        let mut v = self.rpc_rtts.clone();
        v.sort();
        (!v.is_empty()).then(|| v[((v.len() - 1) * p / 100).min(v.len() - 1)])
    }
}

/// One peer: the engine and its driver state.
struct Side {
    conn: Connection,
    rx: BytesMut,
    /// The batch being put on the link, and how many of its bytes went.
    sending: Option<(Transmit, usize)>,
}

impl Side {
    fn new(role: Role, config: Config, base: Instant) -> Side {
        Side {
            conn: Connection::new(role, config, base),
            rx: BytesMut::new(),
            sending: None,
        }
    }

    /// Runs the engine's timers, input and output at `now`; returns whether anything moved.
    fn drive(
        &mut self,
        base: Instant,
        now: Duration,
        lowat: Option<usize>,
        inbound: &mut Link,
        outbound: &mut Link,
    ) -> bool {
        let at = base + now;
        let mut moved = false;
        if self.conn.poll_timeout().is_some_and(|t| t <= at) {
            self.conn.handle_timeout(at);
            moved = true;
        }
        if self.conn.wants_input() {
            moved |= inbound.deliver(now, &mut self.rx) > 0;
            if !self.rx.is_empty() {
                let before = self.rx.len();
                self.conn.handle_input(&mut self.rx, at);
                moved |= self.rx.len() != before;
            }
        }
        let writable = |link: &mut Link| lowat.is_none_or(|l| link.unsent(now) < l);
        while writable(outbound) {
            if self.sending.is_none() {
                match self.conn.poll_transmit(at) {
                    Some(batch) => self.sending = Some((batch, 0)),
                    None => break,
                }
            }
            let Some((batch, off)) = self.sending.as_mut() else {
                break;
            };
            let mut skip = *off;
            for piece in batch.pieces() {
                if skip >= piece.len() {
                    skip -= piece.len();
                    continue;
                }
                let n = outbound.offer(now, &piece[skip..]);
                skip = 0;
                *off += n;
                moved |= n > 0;
                if *off < batch.len() && outbound.room(now) == 0 {
                    break;
                }
            }
            if *off < batch.len() {
                break;
            }
            let (batch, _) = self.sending.take().expect("checked above");
            self.conn.transmitted(batch);
        }
        moved
    }
}

/// The client's RPC stream.
struct Rpc {
    key: StreamKey,
    /// When the next request goes out (`None`: one is outstanding).
    next_at: Option<Duration>,
    sent_at: Duration,
    echoed: usize,
    rng: u64,
}

impl Rpc {
    fn gap(&mut self) -> Duration {
        // xorshift64: a deterministic 0–200 ms gap.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        Duration::from_micros(self.rng % 200_000)
    }
}

/// Runs `scenario` and returns what it measured.
pub fn run(scenario: &Scenario) -> Outcome {
    let base = Instant::now();
    let waker = Waker::noop();
    let mut client = Side::new(Role::Client, scenario.config.clone(), base);
    let mut server = Side::new(Role::Server, scenario.config.clone(), base);
    let mut up = Link::new(scenario.shape);
    let mut down = Link::new(scenario.shape);
    let mut out = Outcome::default();

    let chunk = vec![0x5au8; 64 * 1024];
    let mut scratch = vec![0u8; 64 * 1024];
    let Poll::Ready(Ok(bulk)) = client.conn.poll_open(waker, base) else {
        panic!("open the bulk stream")
    };
    let bulk_id = client.conn.stream_id(bulk);
    let mut rpc = scenario.rpc.then(|| {
        let Poll::Ready(Ok(key)) = client.conn.poll_open(waker, base) else {
            panic!("open the RPC stream")
        };
        Rpc {
            key,
            next_at: Some(Duration::ZERO),
            sent_at: Duration::ZERO,
            echoed: 0,
            rng: scenario.seed | 1,
        }
    });
    let mut bulk_written = 0u64;
    let mut bulk_read = 0u64;
    let mut server_bulk: Option<StreamKey> = None;
    let mut server_rpc: Option<StreamKey> = None;
    let mut echo_pending = 0usize;
    let mut next_sample = SAMPLE;
    let mut now = Duration::ZERO;
    // The bulk bytes read when the reader slowed down (`Scenario::slow_reader`).
    let mut read_when_slowed: Option<u64> = None;
    let mut ping: Option<u64> = None;

    while now < scenario.limit {
        // Settle everything that can happen at `now`.
        for _ in 0..10_000 {
            let lowat = scenario.notsent_lowat;
            let mut moved = client.drive(base, now, lowat, &mut down, &mut up);
            moved |= server.drive(base, now, lowat, &mut up, &mut down);

            // Client application.
            // The RPC task runs first when both can write: a 64-byte request waits for room
            // in the engine's buffers like any task woken in turn, not behind the bulk writer.
            if let Some(r) = rpc.as_mut() {
                let ready = client.conn.poll_open_ready(r.key, waker).is_ready();
                if ready && r.next_at.is_some_and(|t| t <= now) {
                    match client
                        .conn
                        .poll_write(r.key, waker, &[7u8; RPC_BYTES], base + now)
                    {
                        Poll::Ready(Ok(RPC_BYTES)) => {
                            r.next_at = None;
                            r.sent_at = now;
                            r.echoed = 0;
                            moved = true;
                        }
                        Poll::Ready(Ok(n)) => panic!("a {n}-byte partial RPC write"),
                        Poll::Ready(Err(e)) => panic!("RPC write failed: {e}"),
                        Poll::Pending => {}
                    }
                }
                while let Poll::Ready(Ok(n @ 1..)) =
                    client
                        .conn
                        .poll_read(r.key, waker, &mut scratch, base + now)
                {
                    r.echoed += n;
                    moved = true;
                }
                if r.next_at.is_none() && r.echoed >= RPC_BYTES {
                    out.rpc_rtts.push(now - r.sent_at);
                    let gap = r.gap();
                    r.next_at = Some(now + gap);
                }
            }

            let established =
                now >= scenario.bulk_at && client.conn.poll_open_ready(bulk, waker).is_ready();
            while established && bulk_written < scenario.bulk_bytes {
                let want = (scenario.bulk_bytes - bulk_written).min(chunk.len() as u64) as usize;
                match client
                    .conn
                    .poll_write(bulk, waker, &chunk[..want], base + now)
                {
                    Poll::Ready(Ok(n)) => {
                        bulk_written += n as u64;
                        moved = true;
                    }
                    Poll::Ready(Err(e)) => panic!("bulk write failed: {e}"),
                    Poll::Pending => break,
                }
            }
            // Server application.
            while let Poll::Ready(Ok(key)) = server.conn.poll_accept(waker, base + now) {
                if server.conn.stream_id(key) == bulk_id {
                    server_bulk = Some(key);
                } else {
                    server_rpc = Some(key);
                }
                moved = true;
            }
            out.peak_server_buffered = out
                .peak_server_buffered
                .max(server.conn.stats().recv_buffered);
            if let Some(key) = server_bulk {
                let allowed = match scenario.slow_reader {
                    Some((from, rate)) if now >= from => {
                        let base = *read_when_slowed.get_or_insert(bulk_read);
                        let quota = rate as u128 * (now - from).as_nanos() / 1_000_000_000;
                        (base + quota as u64).saturating_sub(bulk_read) as usize
                    }
                    _ => usize::MAX,
                };
                let want = allowed.min(scratch.len());
                while let Poll::Ready(Ok(n @ 1..)) =
                    server
                        .conn
                        .poll_read(key, waker, &mut scratch[..want], base + now)
                {
                    bulk_read += n as u64;
                    moved = true;
                    if allowed != usize::MAX {
                        // One read per settling pass: the quota is recomputed each time.
                        break;
                    }
                }
            }
            if scenario.ping_at.is_some_and(|at| at <= now) {
                match ping {
                    None => {
                        ping = Some(server.conn.start_ping(base + now).expect("ping"));
                        moved = true;
                    }
                    Some(ticket) if out.ping_rtt.is_none() => {
                        if let Poll::Ready(rtt) = server.conn.poll_ping(ticket, waker) {
                            out.ping_rtt = Some(rtt.expect("ping answered"));
                        }
                    }
                    Some(_) => {}
                }
            }
            if let Some(key) = server_rpc {
                while let Poll::Ready(Ok(n @ 1..)) =
                    server.conn.poll_read(key, waker, &mut scratch, base + now)
                {
                    echo_pending += n;
                    moved = true;
                }
                while echo_pending > 0 {
                    let n = echo_pending.min(scratch.len());
                    match server
                        .conn
                        .poll_write(key, waker, &scratch[..n], base + now)
                    {
                        Poll::Ready(Ok(n)) => {
                            echo_pending -= n;
                            moved = true;
                        }
                        _ => break,
                    }
                }
            }
            if !moved {
                break;
            }
        }
        if bulk_read >= scenario.bulk_bytes && out.finished.is_none() {
            out.finished = Some(now);
            out.progress.push((now, bulk_read));
            break;
        }
        while next_sample <= now {
            out.progress.push((next_sample, bulk_read));
            out.windows
                .push((next_sample, server.conn.stats().recv_windows));
            next_sample += SAMPLE;
        }
        if let Some(e) = client.conn.end_reason().or(server.conn.end_reason()) {
            panic!("the session ended at {now:?}: {e}");
        }

        // Jump to the next event.
        let timer = |side: &Side| {
            side.conn
                .poll_timeout()
                .map(|t| t.saturating_duration_since(base))
        };
        let next = [
            up.next_event(),
            down.next_event(),
            timer(&client),
            timer(&server),
            rpc.as_ref().and_then(|r| r.next_at),
            scenario.ping_at,
            Some(scenario.bulk_at),
            Some(next_sample),
        ]
        .into_iter()
        .flatten()
        .filter(|&t| t > now)
        .min();
        now = next.unwrap_or(scenario.limit).min(scenario.limit);
    }
    out.server_rtt = server.conn.stats().rtt;
    out.client_rtt = client.conn.stats().rtt;
    out.final_window = server.conn.stats().recv_windows;
    out
}
