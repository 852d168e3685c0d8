//! Criterion micro-benchmarks of the engine's hot paths, per dialect, through the public API:
//!
//! - `header/encode`, `header/decode`: one `Data` frame header;
//! - `recv/64KiB`: 64 KiB of stream payload arriving in data frames (one frame on yamux and
//!   net-mux; two 32 KiB frames on smux, whose length field stops at 65,535 and whose Go
//!   reference splits at 32 KiB) — decode, queue, and the application's read;
//! - `send/64B`, `send/64KiB`: one application write, taking the batch for the transport, and
//!   the peer's credit for it (a pre-encoded frame fed back, so only this side's work counts).
//!
//! `cargo bench -p polymux-proto --bench hot_paths`.

use std::hint::black_box;
use std::task::{Poll, Waker};
use std::time::Instant;

use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use polymux_proto::{Config, Connection, Dialect, Flags, Frame, Role, StreamId, StreamKey};

const DIALECTS: [Dialect; 4] = [
    Dialect::Yamux,
    Dialect::SmuxV1,
    Dialect::SmuxV2,
    Dialect::NetMux,
];

const RECV_LEN: usize = 64 * 1024;

fn header(c: &mut Criterion) {
    let mut g = c.benchmark_group("header");
    for d in DIALECTS {
        let frame = Frame::Data {
            stream: StreamId(3),
            flags: Flags::NONE,
            len: 4096,
        };
        let mut out = BytesMut::with_capacity(64);
        g.bench_function(BenchmarkId::new("encode", d.name()), |b| {
            b.iter(|| {
                out.clear();
                d.encode(black_box(&frame), &mut out);
                black_box(out.len())
            })
        });
        let mut wire = BytesMut::new();
        d.encode(&frame, &mut wire);
        g.bench_function(BenchmarkId::new("decode", d.name()), |b| {
            b.iter(|| black_box(d.decode(black_box(&wire[..]))))
        });
    }
    g.finish();
}

/// A client and a server session with one established stream, the handshake done.
struct Pair {
    client: Connection,
    server: Connection,
    client_key: StreamKey,
    server_key: StreamKey,
    now: Instant,
}

impl Pair {
    fn new(d: Dialect) -> Pair {
        let now = Instant::now();
        let mut client = Connection::new(Role::Client, Config::for_dialect(d), now);
        let server = Connection::new(Role::Server, Config::for_dialect(d), now);
        let w = Waker::noop();
        let Poll::Ready(Ok(client_key)) = client.poll_open(w, now) else {
            panic!("open")
        };
        let mut pair = Pair {
            client,
            server,
            client_key,
            server_key: client_key,
            now,
        };
        pair.pump();
        let Poll::Ready(Ok(server_key)) = pair.server.poll_accept(w, now) else {
            panic!("accept")
        };
        pair.server_key = server_key;
        pair.pump();
        assert!(matches!(
            pair.client.poll_established(client_key, w),
            Poll::Ready(Ok(()))
        ));
        pair
    }

    /// Moves every pending batch both ways until both sides are quiet (bounded).
    fn pump(&mut self) {
        for _ in 0..16 {
            let a = move_batches(&mut self.client, &mut self.server, self.now);
            let b = move_batches(&mut self.server, &mut self.client, self.now);
            if !a && !b {
                return;
            }
        }
        panic!("the sessions kept talking");
    }
}

/// Hands `from`'s pending output to `to` as input; whether there was any.
fn move_batches(from: &mut Connection, to: &mut Connection, now: Instant) -> bool {
    let mut any = false;
    while let Some(batch) = from.poll_transmit(now) {
        let mut rx = BytesMut::with_capacity(batch.len());
        batch.copy_to(&mut rx);
        from.transmitted(batch);
        to.handle_input(&mut rx, now);
        assert!(rx.is_empty(), "input left over");
        any = true;
    }
    any
}

fn recv(c: &mut Criterion) {
    let mut g = c.benchmark_group("recv");
    g.throughput(Throughput::Bytes(RECV_LEN as u64));
    for d in DIALECTS {
        let mut pair = Pair::new(d);
        let id = pair.client.stream_id(pair.client_key);
        let frame_len = RECV_LEN.min(if matches!(d, Dialect::SmuxV1 | Dialect::SmuxV2) {
            32 * 1024
        } else {
            RECV_LEN
        });
        let mut wire = Vec::new();
        for _ in 0..RECV_LEN / frame_len {
            let mut h = BytesMut::new();
            d.encode(
                &Frame::Data {
                    stream: id,
                    flags: Flags::NONE,
                    len: frame_len as u32,
                },
                &mut h,
            );
            wire.extend_from_slice(&h);
            wire.extend(std::iter::repeat_n(0xA5u8, frame_len));
        }
        let mut rx = BytesMut::with_capacity(4 * wire.len());
        let mut app = vec![0u8; RECV_LEN];
        let (server, key, now) = (&mut pair.server, pair.server_key, pair.now);
        g.bench_function(BenchmarkId::new("64KiB", d.name()), |b| {
            b.iter(|| {
                // What the driver's socket read does: bytes land in the read buffer.
                rx.extend_from_slice(&wire);
                server.handle_input(&mut rx, now);
                let mut got = 0;
                while got < RECV_LEN {
                    match server.poll_read(key, Waker::noop(), &mut app, now) {
                        Poll::Ready(Ok(n)) if n > 0 => got += n,
                        other => panic!("read: {other:?}"),
                    }
                }
                // The credit returned to the sender goes to the transport (discarded here).
                while let Some(batch) = server.poll_transmit(now) {
                    server.transmitted(batch);
                }
                black_box(got)
            })
        });
    }
    g.finish();
}

fn send(c: &mut Criterion) {
    let mut g = c.benchmark_group("send");
    for (name, len) in [("64B", 64usize), ("64KiB", 64 * 1024)] {
        g.throughput(Throughput::Bytes(len as u64));
        for d in DIALECTS {
            let mut pair = Pair::new(d);
            let payload = vec![0x5Au8; len];
            let id = pair.client.stream_id(pair.client_key);
            let (client, key, now) = (&mut pair.client, pair.client_key, pair.now);
            let mut sent_total: u64 = 0;
            g.bench_function(BenchmarkId::new(name, d.name()), |b| {
                b.iter(|| {
                    let mut off = 0;
                    while off < len {
                        match client.poll_write(key, Waker::noop(), &payload[off..], now) {
                            Poll::Ready(Ok(n)) => off += n,
                            other => panic!("write: {other:?}"),
                        }
                    }
                    let mut bytes = 0;
                    while let Some(batch) = client.poll_transmit(now) {
                        bytes += batch.len();
                        client.transmitted(batch);
                    }
                    sent_total += len as u64;
                    // The peer's credit for what was sent, as a reader that keeps up would
                    // return it (smux v1 has no per-stream credit).
                    let mut credit = BytesMut::new();
                    match d {
                        Dialect::Yamux | Dialect::NetMux => d.encode(
                            &Frame::WindowUpdate {
                                stream: id,
                                flags: Flags::NONE,
                                delta: len as u32,
                            },
                            &mut credit,
                        ),
                        Dialect::SmuxV2 => d.encode(
                            &Frame::Update {
                                stream: id,
                                consumed: sent_total as u32,
                                window: polymux_proto::PROTOCOL_INITIAL_WINDOW,
                            },
                            &mut credit,
                        ),
                        Dialect::SmuxV1 => {}
                    }
                    client.handle_input(&mut credit, now);
                    black_box(bytes)
                })
            });
        }
    }
    g.finish();
}

criterion_group!(benches, header, recv, send);
criterion_main!(benches);
