//! Deterministic two-peer simulation: the engine's core correctness test.
//!
//! A client and a server [`Connection`](polymux_proto::Connection) talk through an in-memory
//! wire in each direction (fixed one-way delays, bytes written in random pieces, ingested in
//! random pieces down to single bytes, `wants_input` honoured) on a virtual clock. A seeded
//! xorshift drives hundreds of streams from both sides through random opens, accepts, writes of
//! a per-stream deterministic payload, reads with random buffer sizes, half-closes, resets,
//! releases, pings and GoAways; then every stream is finished and the pair closes gracefully.
//! See `sim/mod.rs` for the harness.
//!
//! Checked after every step: the session receive budget (`stats().recv_buffered`), the accept
//! backlog, per-stream credit (bytes a writer handed its engine minus bytes its reader read —
//! in flight plus buffered — never exceed the largest window the reader may grant; this bounds
//! each stream's buffered bytes), the write budget of every batch taken (decoded frame by
//! frame: whole frames only, payload within the budget, framing slack only for the last header
//! and FIN/RST frames), the send/receive counters, and that every pending operation that later
//! completes was woken in between (no lost wake-ups, including the driver's).
//! Checked on every read: each byte is the expected byte at its offset, never beyond what was
//! written; EOF comes exactly after everything the writer wrote before closing.
//! Checked at the end: every stream that was written and half-closed and not reset was read
//! completely and then saw EOF; every open was accepted or refused; both sessions ended for the
//! right reason, the graceful close completing rather than timing out.
//!
//! Keep-alive runs on the same virtual clock: a peer that goes silent is declared dead at the
//! exact virtual time the rules give, a responsive idle pair survives ten intervals, and ping
//! measures exactly the simulated round trip.
//!
//! Two smux facts shape the checks. A smux v2 stream may receive the protocol's initial
//! 256 KiB whatever the configured window (the engine does not announce a smaller window up
//! front), so the per-stream bound is `max(max_stream_window, 256 KiB)`. And smux has no RST:
//! after the peer resets (or refuses) a stream — a FIN on the wire, what follows discarded, no
//! credit returned — a writer out of credit stays pending for good (Go's smux returns EOF to
//! it instead), so the simulated application gives up and half-closes.
//!
//! Further scenarios: back-pressure on the receive budget (input pauses exactly at the budget
//! and resumes without loss once the application reads), and regressions for engine bugs the
//! simulation found.
//!
//! A failure prints the dialect, seed and step. Replay one run with
//! `SIM_DIALECT="smux v2" SIM_SEED=7 cargo test -p polymux-proto --test simulation`, adding
//! `SIM_TRACE=1` for every operation and batch; `SIM_SEEDS=400` runs more seeds, `SIM_STEPS`
//! longer runs, `SIM_VERBOSE=1` prints each run's coverage.

mod common;
mod sim;

use std::sync::Arc;
use std::task::{Poll, Wake, Waker};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use polymux_proto::{Config, Connection, Dialect, Error, Role};
use sim::{run_random, sim_config, Coverage, Plan, Sim};

const ALL: [Dialect; 4] = [
    Dialect::Yamux,
    Dialect::SmuxV1,
    Dialect::SmuxV2,
    Dialect::NetMux,
];

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

/// Runs the random simulation for `dialect` over the seeds (`SIM_SEED` for one, `SIM_SEEDS`
/// for how many) and checks that the runs exercised what the configurations make reachable.
fn simulate(dialect: Dialect) {
    if let Ok(only) = std::env::var("SIM_DIALECT") {
        if only != dialect.name() {
            return;
        }
    }
    let plan = Plan {
        steps: env_u64("SIM_STEPS").unwrap_or(3_000),
        opens_per_side: 120,
        goaway_at: None,
    };
    let seeds: Vec<u64> = match env_u64("SIM_SEED") {
        Some(seed) => vec![seed],
        None => (0..env_u64("SIM_SEEDS").unwrap_or(20)).collect(),
    };
    let started = Instant::now();
    let mut total = Coverage::default();
    for &seed in &seeds {
        let cov = run_random(dialect, seed, &plan);
        if std::env::var("SIM_VERBOSE").is_ok() {
            eprintln!("{} seed {seed}: {cov:?}", dialect.name());
        }
        total.add(&cov);
    }
    eprintln!(
        "{}: {} seeds in {:.1?}: {total:?}",
        dialect.name(),
        seeds.len(),
        started.elapsed()
    );
    if seeds.len() >= 10 {
        // The runs must not be vacuous: these situations are reachable with the seeds' configs.
        assert!(
            total.streams >= 100 * seeds.len() as u64,
            "too few streams: {total:?}"
        );
        assert!(
            total.resets > 0 && total.releases_early > 0,
            "no resets/early releases: {total:?}"
        );
        assert!(
            total.read_pending > 0 && total.write_pending > 0,
            "no back-pressure: {total:?}"
        );
        assert!(total.refused > 0, "no stream was ever refused: {total:?}");
        assert!(
            total.one_byte_pieces > 0,
            "no single-byte input pieces: {total:?}"
        );
        if dialect.has_ack() {
            assert!(
                total.open_pending > 0,
                "open never waited for ACKs: {total:?}"
            );
        }
        if dialect.has_ping() {
            assert!(
                total.pings > 0 && total.goaways > 0,
                "no pings/GoAways: {total:?}"
            );
        }
    }
}

#[test]
fn simulate_yamux() {
    simulate(Dialect::Yamux);
}

#[test]
fn simulate_smux_v1() {
    simulate(Dialect::SmuxV1);
}

#[test]
fn simulate_smux_v2() {
    simulate(Dialect::SmuxV2);
}

#[test]
fn simulate_net_mux() {
    simulate(Dialect::NetMux);
}

// ---- keep-alive on virtual time ----------------------------------------------------------------

const INTERVAL_MS: u64 = 100;
const TIMEOUT_MS: u64 = 300;

fn keepalive_config(dialect: Dialect) -> Config {
    Config::for_dialect(dialect)
        .to_builder()
        .keepalive_interval(Some(Duration::from_millis(INTERVAL_MS)))
        .keepalive_timeout(Duration::from_millis(TIMEOUT_MS))
        .build()
        .expect("valid keep-alive configuration")
}

/// The server stops answering at t = 1000 ms (everything it sends from then on is lost). The
/// client must end with `KeepAliveTimeout` at exactly the time the rules give, and not before.
#[test]
fn silent_peer_times_out_on_virtual_time() {
    const SILENT_FROM: u64 = 1_000;
    let (c2s, s2c) = (3, 5);
    for dialect in ALL {
        let mut sim = Sim::new(dialect, 0, keepalive_config(dialect), [c2s, s2c]);
        sim.phase = "keep-alive";
        sim.run_until(SILENT_FROM - 1);
        assert!(!sim.sides[0].conn.is_ended() && !sim.sides[1].conn.is_ended());
        sim.wires[1].blocked_from = Some(SILENT_FROM);
        // Probes go out exactly every interval (the clock stops at each deadline).
        let expected = if dialect.has_ping() {
            // The ping sent at 1000 ms is never answered and nothing else arrives after it:
            // dead once it has been outstanding for the timeout.
            SILENT_FROM + TIMEOUT_MS
        } else {
            // smux: dead after a timeout without receiving anything; the last thing received
            // is the server's NOP of 900 ms, which arrived after the one-way delay.
            SILENT_FROM - INTERVAL_MS + s2c + TIMEOUT_MS
        };
        sim.run_until(expected - 1);
        assert_eq!(
            sim.sides[0].conn.end_reason(),
            None,
            "{}: the client gave up before {expected} ms",
            dialect.name()
        );
        sim.run_until(expected);
        assert_eq!(
            sim.sides[0].conn.end_reason(),
            Some(&Error::KeepAliveTimeout),
            "{}: the client should time out at {expected} ms",
            dialect.name()
        );
        assert_eq!(sim.sides[0].ended_at, Some(expected));
        // The silent server still hears the client, so it is not declared dead; it learns of
        // the end when the client closes its transport (after GoAway(6, timeout) on net-mux).
        sim.run_until(expected + 1_000);
        let seen = if dialect == Dialect::NetMux {
            Error::GoAway(6)
        } else {
            Error::TransportClosed
        };
        assert_eq!(
            sim.sides[1].conn.end_reason(),
            Some(&seen),
            "{}: the server should see the transport close",
            dialect.name()
        );
        assert_eq!(sim.sides[1].ended_at, Some(expected + c2s));
    }
}

/// A keep-alive timeout is announced the way each dialect can: net-mux has a GoAway code for
/// it (6, "timeout", as net-mux itself sends); yamux has none and smux no GoAway at all, so
/// they send nothing.
#[test]
fn keepalive_timeout_is_announced_where_the_dialect_has_a_code() {
    for dialect in ALL {
        let t0 = Instant::now();
        let mut conn = Connection::new(Role::Client, keepalive_config(dialect), t0);
        let mut wire = BytesMut::new();
        let mut steps = 0;
        while let Some(at) = conn.poll_timeout() {
            wire.clear();
            conn.handle_timeout(at);
            pump(&mut conn, &mut wire, at);
            steps += 1;
            assert!(steps < 100, "{}: never timed out", dialect.name());
        }
        assert_eq!(conn.end_reason(), Some(&Error::KeepAliveTimeout));
        let goaway_timeout = [1u8, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 6];
        if dialect == Dialect::NetMux {
            assert!(wire.ends_with(&goaway_timeout), "net-mux: {:?}", &wire[..]);
        } else {
            assert!(
                wire.is_empty(),
                "{}: sent {:?} when timing out",
                dialect.name(),
                &wire[..]
            );
        }
    }
}

/// An idle pair whose peers answer stays up for ten keep-alive intervals, and ping measures
/// exactly the simulated round trip, for several delay pairs.
#[test]
fn idle_pair_survives_and_ping_measures_the_round_trip() {
    for dialect in ALL {
        for (c2s, s2c) in [(0, 0), (3, 5), (40, 1), (120, 130)] {
            let rtt = Duration::from_millis(c2s + s2c);
            let mut sim = Sim::new(dialect, 0, keepalive_config(dialect), [c2s, s2c]);
            sim.phase = "idle";
            let end = 10 * INTERVAL_MS + 50;
            sim.run_until(end);
            for side in &sim.sides {
                assert_eq!(
                    side.conn.end_reason(),
                    None,
                    "{} with delays {c2s}/{s2c} ms: an idle, responsive pair must stay up",
                    dialect.name()
                );
            }
            if !dialect.has_ping() {
                let now = sim.now();
                assert!(matches!(
                    sim.sides[0].conn.start_ping(now),
                    Err(Error::Unsupported(_))
                ));
                continue;
            }
            // Keep-alive pings already measured the round trip on both sides.
            for side in &sim.sides {
                assert_eq!(
                    side.conn.stats().rtt,
                    Some(rtt),
                    "{} keep-alive rtt",
                    dialect.name()
                );
            }
            // An explicit ping, started when no probe is outstanding (or joining one).
            let now = sim.now();
            let ticket = sim.sides[0].conn.start_ping(now).expect("ping starts");
            sim.settle();
            let waker = Waker::noop();
            let mut answered_at = None;
            for _ in 0..1_000 {
                if let Poll::Ready(r) = sim.sides[0].conn.poll_ping(ticket, waker) {
                    assert_eq!(
                        r,
                        Ok(rtt),
                        "{} ping with delays {c2s}/{s2c} ms",
                        dialect.name()
                    );
                    answered_at = Some(sim.now_ms);
                    break;
                }
                let next = sim.now_ms + 1;
                sim.run_until(next);
            }
            let answered_at = answered_at.expect("the ping was answered");
            if c2s + s2c < end % INTERVAL_MS {
                // The last probe (at 1000 ms) was answered before the ping started, so the
                // ping went out at once and its answer took exactly one round trip.
                assert_eq!(
                    answered_at,
                    end + c2s + s2c,
                    "{}: ping answer time",
                    dialect.name()
                );
            } else {
                // The ping joined the outstanding probe, answered within one round trip.
                assert!(
                    answered_at <= end + c2s + s2c,
                    "{}: ping answered at {answered_at} ms",
                    dialect.name()
                );
            }
        }
    }
}

// ---- back-pressure ------------------------------------------------------------------------------

/// The server's application reads nothing while the client writes four 300 KiB streams: the
/// server must stop decoding when its receive budget (memory held) is full (input paused, bounds held at every
/// step), and once the application reads, input resumes and every byte arrives.
#[test]
fn budget_pause_resumes_without_loss() {
    for dialect in ALL {
        let mut sim = Sim::new(dialect, 1, sim_config(dialect, true), [2, 3]);
        sim.phase = "budget";
        let budget = sim.config.session_recv_budget();
        for _ in 0..4 {
            sim.op_open(0);
        }
        let ids: Vec<u32> = sim.sides[0].streams.keys().copied().collect();
        assert_eq!(ids.len(), 4);
        for id in &ids {
            sim.sides[0].streams.get_mut(id).expect("opened").target = 300 * 1024;
        }
        let mut paused = false;
        for _ in 0..5_000 {
            for &id in &ids {
                if sim.sides[0].streams[&id].established {
                    sim.op_write(0, id, 64 * 1024);
                } else {
                    sim.op_established(0, id);
                }
            }
            for s in 0..2 {
                sim.transmit(s, usize::MAX);
                sim.deliver(s, 0);
            }
            while sim.op_accept(1) {}
            sim.advance(1);
            sim.check_invariants();
            if !sim.sides[1].conn.wants_input() {
                paused = true;
                break;
            }
        }
        assert!(
            paused,
            "{}: the server never paused on its budget",
            dialect.name()
        );
        // The budget charges memory, not payload; a pause leaves less room than the smallest
        // piece it would copy (a 4 KiB chunk) plus a slot ring's growth.
        let stats = sim.sides[1].conn.stats();
        assert!(
            stats.recv_memory <= budget && budget - stats.recv_memory < 8 * 1024,
            "{}: input pauses only when the budget is full ({} of {budget} charged)",
            dialect.name(),
            stats.recv_memory
        );
        assert!(
            stats.recv_buffered <= stats.recv_memory,
            "{}",
            dialect.name()
        );
        // Paused means paused: more arriving bytes are left alone.
        for _ in 0..20 {
            sim.transmit(0, usize::MAX);
            sim.advance(5);
            assert_eq!(
                sim.deliver(1, usize::MAX),
                0,
                "{}: input while paused",
                dialect.name()
            );
        }
        // The application reads: input resumes, everything is delivered, the pair closes.
        sim.drain();
        sim.final_checks();
        for id in &ids {
            assert_eq!(
                sim.sides[1].streams[id].read,
                300 * 1024,
                "{}: stream {id}",
                dialect.name()
            );
        }
    }
}

// ---- regressions for engine bugs the simulation found ------------------------------------------

/// Moves everything `from` has queued into `wire`.
fn pump(from: &mut Connection, wire: &mut BytesMut, now: Instant) {
    while let Some(batch) = from.poll_transmit(now) {
        batch.copy_to(wire);
        from.transmitted(batch);
    }
}

/// An open stream from the client, accepted (and, where opens are acknowledged, ACKed) by the
/// server. Returns (client, server, client's key, server's key).
fn connected_stream(
    dialect: Dialect,
    now: Instant,
) -> (
    Connection,
    Connection,
    polymux_proto::StreamKey,
    polymux_proto::StreamKey,
) {
    let config = Config::for_dialect(dialect);
    let mut client = Connection::new(Role::Client, config.clone(), now);
    let mut server = Connection::new(Role::Server, config, now);
    let w = Waker::noop();
    let Poll::Ready(Ok(ck)) = client.poll_open(w, now) else {
        panic!("open")
    };
    let mut wire = BytesMut::new();
    pump(&mut client, &mut wire, now);
    server.handle_input(&mut wire, now);
    let Poll::Ready(Ok(sk)) = server.poll_accept(w, now) else {
        panic!("accept")
    };
    pump(&mut server, &mut wire, now);
    client.handle_input(&mut wire, now);
    assert!(client.poll_established(ck, w).is_ready());
    (client, server, ck, sk)
}

/// The decoder remembered the stream of a Data frame whose payload was still arriving by its
/// table slot; when the application reset and released that stream mid-frame, a stream opened
/// next reused the slot and received the rest of the old stream's payload (seen as corrupted
/// bytes on smux v2, seed 0). The rest of such a frame is now discarded.
#[test]
fn frame_payload_never_reaches_a_stream_reusing_the_slot() {
    let now = Instant::now();
    let w = Waker::noop();
    // On smux a locally reset stream lingers until the peer's FIN (there is no RST), which
    // follows the frame in flight, so there the slot cannot be reused mid-frame.
    for dialect in [Dialect::Yamux, Dialect::NetMux] {
        let (mut client, mut server, ck, sk) = connected_stream(dialect, now);
        assert_eq!(
            client.poll_write(ck, w, &[7u8; 20_000], now),
            Poll::Ready(Ok(20_000))
        );
        let mut wire = BytesMut::new();
        pump(&mut client, &mut wire, now);
        assert_eq!(wire.len(), dialect.header_len() + 20_000);
        // Half the frame, more than the engine copies (smaller pieces wait for the rest).
        const { assert!(10_000 >= polymux_proto::connection::COPY_BELOW) };
        let mut first = wire.split_to(dialect.header_len() + 10_000);
        server.handle_input(&mut first, now);
        assert!(first.is_empty());
        server.reset(sk, now);
        server.release(sk, now);
        // The RST goes out; with nothing left to send, the stream leaves the table.
        pump(&mut server, &mut BytesMut::new(), now);
        let Poll::Ready(Ok(reused)) = server.poll_open(w, now) else {
            panic!("open")
        };
        assert_eq!(
            reused, sk,
            "the slot must be reused, or this test proves nothing"
        );
        server.handle_input(&mut wire, now);
        assert!(wire.is_empty() && !server.is_ended());
        let mut buf = [0u8; 64];
        assert_eq!(
            server.poll_read(reused, w, &mut buf, now),
            Poll::Pending,
            "{}: the new stream received the released stream's bytes",
            dialect.name()
        );
    }
}

/// With the peer's data and FIN received but unread, a local `reset()` discards the data; a
/// read then returned `Ok(0)`, a clean EOF that hid the loss. It must fail with `StreamReset`.
#[test]
fn read_after_local_reset_fails_even_after_fin() {
    let now = Instant::now();
    let w = Waker::noop();
    for dialect in ALL {
        let (mut client, mut server, ck, sk) = connected_stream(dialect, now);
        assert_eq!(
            client.poll_write(ck, w, &[1u8; 100], now),
            Poll::Ready(Ok(100))
        );
        client.close_write(ck, now).expect("half-close");
        let mut wire = BytesMut::new();
        pump(&mut client, &mut wire, now);
        server.handle_input(&mut wire, now);
        server.reset(sk, now);
        let mut buf = [0u8; 200];
        assert_eq!(
            server.poll_read(sk, w, &mut buf, now),
            Poll::Ready(Err(Error::StreamReset)),
            "{}",
            dialect.name()
        );
    }
}

/// Counts its wake-ups.
#[derive(Default)]
struct CountingWake(std::sync::atomic::AtomicUsize);

impl Wake for CountingWake {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}

impl CountingWake {
    fn waker() -> (Arc<CountingWake>, Waker) {
        let counter = Arc::new(CountingWake::default());
        (counter.clone(), Waker::from(counter))
    }

    fn count(&self) -> usize {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// The session handle is `Clone`, so two tasks may wait in `accept()` at once. The engine kept
/// one waker: the second task replaced the first, which then never woke, not even when the
/// session ended. Every waiting task must be woken (and the losers wait again).
#[test]
fn every_task_waiting_to_accept_is_woken() {
    let now = Instant::now();
    for dialect in ALL {
        let config = Config::for_dialect(dialect);
        let mut client = Connection::new(Role::Client, config.clone(), now);
        let mut server = Connection::new(Role::Server, config, now);
        let (a, wa) = CountingWake::waker();
        let (b, wb) = CountingWake::waker();
        assert!(server.poll_accept(&wa, now).is_pending());
        assert!(server.poll_accept(&wb, now).is_pending());
        assert!(server.poll_accept(&wa, now).is_pending(), "polling again");
        let Poll::Ready(Ok(_)) = client.poll_open(Waker::noop(), now) else {
            panic!("open")
        };
        let mut wire = BytesMut::new();
        pump(&mut client, &mut wire, now);
        server.handle_input(&mut wire, now);
        assert_eq!(
            (a.count(), b.count()),
            (1, 1),
            "{}: each waiting task woken once",
            dialect.name()
        );
        // The winner takes the stream; the loser waits again and still sees the session end.
        assert!(server.poll_accept(&wb, now).is_ready());
        assert!(server.poll_accept(&wa, now).is_pending());
        server.handle_eof(0);
        assert_eq!(a.count(), 2, "{}: woken by the end", dialect.name());
        assert!(server.poll_accept(&wa, now).is_ready());
    }
}

/// Input paused on a full receive budget resumed only when an application *read*; freeing the
/// memory by resetting or dropping the stream that filled it left the session paused for good
/// (and its keep-alive, which does not count a pause as peer silence, never ended it).
#[test]
fn budget_pause_resumes_when_the_buffered_stream_is_reset_or_dropped() {
    let now = Instant::now();
    for dialect in ALL {
        for drop_it in [false, true] {
            let ctx = format!(
                "{} ({})",
                dialect.name(),
                if drop_it { "dropped" } else { "reset" }
            );
            // One window and the memory overhead of its pieces (slots, a chunk): the budget
            // charges memory, so a budget of exactly one window would not hold a whole one.
            let config = Config::for_dialect(dialect)
                .to_builder()
                .session_recv_budget(PROTOCOL_WINDOW + 16 * 1024)
                .build()
                .expect("config");
            let mut client = Connection::new(Role::Client, config.clone(), now);
            let mut server = Connection::new(Role::Server, config, now);
            let w = Waker::noop();
            let mut wire = BytesMut::new();
            let mut keys = Vec::new();
            for _ in 0..2 {
                let Poll::Ready(Ok(k)) = client.poll_open(w, now) else {
                    panic!("open")
                };
                keys.push(k);
            }
            pump(&mut client, &mut wire, now);
            server.handle_input(&mut wire, now);
            let mut accepted = Vec::new();
            while let Poll::Ready(Ok(k)) = server.poll_accept(w, now) {
                accepted.push(k);
            }
            assert_eq!(accepted.len(), 2, "{ctx}");
            pump(&mut server, &mut wire, now);
            client.handle_input(&mut wire, now);
            // A whole window on each stream: the first fills the server's budget.
            for &k in &keys {
                let mut sent = 0;
                while sent < PROTOCOL_WINDOW {
                    match client.poll_write(k, w, &vec![9u8; PROTOCOL_WINDOW - sent], now) {
                        Poll::Ready(Ok(n)) => sent += n,
                        other => panic!("{ctx}: write {other:?}"),
                    }
                    pump(&mut client, &mut wire, now);
                }
            }
            server.handle_input(&mut wire, now);
            assert!(!server.wants_input(), "{ctx}: paused on the full budget");
            let (driver, dw) = CountingWake::waker();
            server.register_driver(&dw);
            let first = accepted[0];
            if drop_it {
                server.release(first, now);
            } else {
                server.reset(first, now);
            }
            assert!(server.wants_input(), "{ctx}: input resumes");
            assert!(driver.count() > 0, "{ctx}: the driver is told");
            server.handle_input(&mut wire, now);
            assert!(wire.is_empty(), "{ctx}: the rest is taken in");
            let mut buf = vec![0u8; PROTOCOL_WINDOW];
            let mut got = 0;
            while let Poll::Ready(Ok(n)) = server.poll_read(accepted[1], w, &mut buf, now) {
                if n == 0 {
                    break;
                }
                got += n;
            }
            assert_eq!(got, PROTOCOL_WINDOW, "{ctx}: the second stream's bytes");
        }
    }
}

const PROTOCOL_WINDOW: usize = polymux_proto::PROTOCOL_INITIAL_WINDOW as usize;

/// smux v2, like Go's smux: the first read reports `consumed` and the window at once (later
/// reads only every half window), so the peer learns the receiver's window early.
#[test]
fn smux_v2_first_read_sends_an_update() {
    let now = Instant::now();
    let w = Waker::noop();
    let (mut client, mut server, ck, sk) = connected_stream(Dialect::SmuxV2, now);
    assert_eq!(
        client.poll_write(ck, w, &[5u8; 1000], now),
        Poll::Ready(Ok(1000))
    );
    let mut wire = BytesMut::new();
    pump(&mut client, &mut wire, now);
    server.handle_input(&mut wire, now);
    // A zero-length read is not the first read: it reports nothing.
    assert_eq!(server.poll_read(sk, w, &mut [], now), Poll::Ready(Ok(0)));
    pump(&mut server, &mut wire, now);
    assert!(wire.is_empty(), "no update for an empty read");
    let mut buf = [0u8; 10];
    assert_eq!(server.poll_read(sk, w, &mut buf, now), Poll::Ready(Ok(10)));
    pump(&mut server, &mut wire, now);
    let window = Config::smux_v2().stream_window();
    let mut upd = vec![2u8, 4, 8, 0];
    upd.extend_from_slice(&3u32.to_le_bytes());
    upd.extend_from_slice(&10u32.to_le_bytes());
    upd.extend_from_slice(&window.to_le_bytes());
    assert_eq!(&wire[..], &upd[..], "UPD(consumed 10, window)");
    // The second read is not the first: nothing until half a window is read.
    assert_eq!(server.poll_read(sk, w, &mut buf, now), Poll::Ready(Ok(10)));
    wire.clear();
    pump(&mut server, &mut wire, now);
    assert!(wire.is_empty(), "no update for a small second read");
}
