//! The engines over a WAN path in virtual time (`tests/wan/`): the link model itself, and what
//! the sessions achieve across it.

mod wan;

use std::time::Duration;

use bytes::BytesMut;
use polymux_proto::{Config, Dialect};
use wan::{Link, LinkShape, Scenario};

/// 100 Mbit/s, `rtt_ms` of round trip, a queue of one bandwidth-delay product.
fn path(rtt_ms: u64) -> LinkShape {
    let rate = 12_500_000;
    let delay = Duration::from_millis(rtt_ms / 2);
    let mut shape = LinkShape {
        rate,
        delay,
        queue_cap: 0,
        sndbuf: 0,
    };
    shape.queue_cap = shape.bdp();
    shape
}

#[test]
fn the_link_delivers_in_order_at_its_rate_after_its_delay() {
    let shape = path(50);
    let mut link = Link::new(shape);
    let payload: Vec<u8> = (0..shape.queue_cap).map(|i| (i % 251) as u8).collect();
    // The queue takes one BDP and no more: the sender is held back.
    assert_eq!(link.offer(Duration::ZERO, &payload), shape.queue_cap);
    assert_eq!(link.offer(Duration::ZERO, b"x"), 0);

    // Nothing arrives before the first packet's serialisation plus the delay.
    let mut out = BytesMut::new();
    let first = Duration::from_nanos(wan::link::MSS as u64 * 1_000_000_000 / shape.rate);
    assert_eq!(
        link.deliver(shape.delay + first - Duration::from_nanos(1), &mut out),
        0
    );
    assert_eq!(link.deliver(shape.delay + first, &mut out), wan::link::MSS);

    // All of it has arrived one serialisation time of the whole after the delay, in order.
    let all = Duration::from_nanos(
        (shape.queue_cap as u128 * 1_000_000_000 / u128::from(shape.rate)) as u64,
    );
    link.deliver(shape.delay + all + Duration::from_millis(1), &mut out);
    assert_eq!(&out[..], &payload[..]);

    // Half-way through the serialisation, half of the queue has room again.
    let mut link = Link::new(shape);
    link.offer(Duration::ZERO, &payload);
    let room = link.room(all / 2);
    assert!(
        room.abs_diff(shape.queue_cap / 2) <= wan::link::MSS,
        "room {room} of {}",
        shape.queue_cap
    );
}

/// Every dialect carries a bulk transfer across the path intact, at a rate the link allows.
#[test]
fn bulk_crosses_a_50ms_path_in_every_dialect() {
    for dialect in [
        Dialect::Yamux,
        Dialect::SmuxV1,
        Dialect::SmuxV2,
        Dialect::NetMux,
    ] {
        let shape = path(50);
        let out = wan::run(&Scenario {
            config: Config::for_dialect(dialect),
            shape,
            bulk_bytes: 16 << 20,
            rpc: false,
            limit: Duration::from_secs(60),
            seed: 1,
            notsent_lowat: None,
        });
        let finished = out
            .finished
            .unwrap_or_else(|| panic!("{}: 16 MiB did not arrive in 60 s", dialect.name()));
        // The transfer cannot beat the link (plus one round trip to get going).
        let floor = Duration::from_secs_f64((16 << 20) as f64 / shape.rate as f64);
        assert!(
            finished >= floor,
            "{}: {finished:?} beats the link",
            dialect.name()
        );
        eprintln!(
            "{}: 16 MiB in {finished:?} ({:.2} MB/s, {:.2}× link), t90 {:?}, peak unread at the server {} KiB",
            dialect.name(),
            out.goodput() / 1e6,
            out.goodput() / shape.rate as f64,
            out.time_to(0.9, shape.rate),
            out.peak_server_buffered / 1024,
        );
    }
}

/// A 64-byte echo beside a bulk upload on one session: every request is answered.
#[test]
fn rpc_beside_bulk_is_answered_in_every_dialect() {
    for dialect in [
        Dialect::Yamux,
        Dialect::SmuxV1,
        Dialect::SmuxV2,
        Dialect::NetMux,
    ] {
        let mut shape = path(50);
        // What the kernel's send buffer holds unsent on such a path (seen: 1.25–1.6 MB).
        shape.sndbuf = 1_500_000;
        let out = wan::run(&Scenario {
            config: Config::for_dialect(dialect),
            shape,
            bulk_bytes: 48 << 20,
            rpc: true,
            limit: Duration::from_secs(60),
            seed: 7,
            notsent_lowat: std::env::var("LOWAT").ok().map(|v| v.parse().unwrap()),
        });
        assert!(
            out.finished.is_some(),
            "{}: bulk did not finish",
            dialect.name()
        );
        assert!(
            out.rpc_rtts.len() >= 5,
            "{}: {} RPCs",
            dialect.name(),
            out.rpc_rtts.len()
        );
        // No answer can come faster than the path's round trip.
        let min = out.rpc_rtts.iter().min().copied().unwrap_or_default();
        assert!(
            min >= 2 * shape.delay,
            "{}: an RPC in {min:?}",
            dialect.name()
        );
        eprintln!(
            "{}: bulk {:.2}× link; {} RPCs p50 {:?} p90 {:?} max {:?}; client rtt {:?}",
            dialect.name(),
            out.goodput() / shape.rate as f64,
            out.rpc_rtts.len(),
            out.rpc_percentile(50).unwrap_or_default(),
            out.rpc_percentile(90).unwrap_or_default(),
            out.rpc_percentile(100).unwrap_or_default(),
            out.client_rtt,
        );
    }
}
