//! The implementations under test and the scenarios, with their names on the command line.
//!
//! Every Rust multiplexer is driven through the test kit's adapters
//! (`polymux_testkit::peers`, `polymux_testkit::Polymux`), which give them one
//! [`MuxSession`](polymux_testkit::MuxSession) interface over a tokio `TcpStream`; the Go
//! libraries run in the `bench` subcommand of the Go peer program (`crates/polymux-testkit/go`),
//! and raw TCP is the physical baseline (one TCP connection per "stream"), twice: with the
//! multiplexers' 64 KiB application writes (`raw-tcp`), and with 1 MiB writes and reads
//! (`raw-tcp-large`), the physical limit on the same cores, which coalescing multiplexers can
//! approach but not beat.

use std::fmt;
use std::time::Duration;

use anyhow::bail;
use polymux::Dialect;

use crate::link::LinkShape;

/// `raw-tcp-large`'s write and read size.
pub const LARGE_CHUNK: usize = 1 << 20;

/// One implementation under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Impl {
    /// One TCP connection per stream, written 64 KiB at a time like every other row: the
    /// baseline of the targets.
    RawTcp,
    /// One TCP connection per stream, written and read 1 MiB at a time: the physical limit.
    RawTcpLarge,
    /// polymux in a dialect.
    Polymux(Dialect),
    /// libp2p `yamux` 0.14.
    Yamux014,
    /// `tokio-yamux` 0.3.
    TokioYamux,
    /// `net-mux` 1.x.
    NetMux,
    /// `async_smux` 0.4 (smux v1).
    AsyncSmux,
    /// the `smux` 0.2 crate (smux v1).
    SmuxRs,
    /// A Go library, server and client both in Go.
    Go(GoLib),
}

/// The Go reference libraries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GoLib {
    /// hashicorp/yamux.
    Yamux,
    /// xtaci/smux, protocol version 1.
    Smux1,
    /// xtaci/smux, protocol version 2.
    Smux2,
}

/// How an implementation counts in the ratios.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Baseline,
    Polymux,
    Peer,
}

impl Impl {
    /// Every implementation, in table order.
    pub const ALL: [Impl; 14] = [
        Impl::RawTcp,
        Impl::RawTcpLarge,
        Impl::Polymux(Dialect::Yamux),
        Impl::Polymux(Dialect::SmuxV1),
        Impl::Polymux(Dialect::SmuxV2),
        Impl::Polymux(Dialect::NetMux),
        Impl::Yamux014,
        Impl::TokioYamux,
        Impl::NetMux,
        Impl::AsyncSmux,
        Impl::SmuxRs,
        Impl::Go(GoLib::Yamux),
        Impl::Go(GoLib::Smux1),
        Impl::Go(GoLib::Smux2),
    ];

    /// The command-line and table name.
    pub fn name(self) -> &'static str {
        match self {
            Impl::RawTcp => "raw-tcp",
            Impl::RawTcpLarge => "raw-tcp-large",
            Impl::Polymux(Dialect::Yamux) => "polymux-yamux",
            Impl::Polymux(Dialect::SmuxV1) => "polymux-smux1",
            Impl::Polymux(Dialect::SmuxV2) => "polymux-smux2",
            Impl::Polymux(Dialect::NetMux) => "polymux-netmux",
            Impl::Yamux014 => "yamux-0.14",
            Impl::TokioYamux => "tokio-yamux-0.3",
            Impl::NetMux => "net-mux-1",
            Impl::AsyncSmux => "async_smux-0.4",
            Impl::SmuxRs => "smux-0.2",
            Impl::Go(GoLib::Yamux) => "go-yamux",
            Impl::Go(GoLib::Smux1) => "go-smux1",
            Impl::Go(GoLib::Smux2) => "go-smux2",
        }
    }

    /// The wire protocol.
    pub fn protocol(self) -> &'static str {
        match self {
            Impl::RawTcp | Impl::RawTcpLarge => "TCP",
            Impl::Polymux(d) => d.name(),
            Impl::Yamux014 | Impl::TokioYamux | Impl::Go(GoLib::Yamux) => "yamux",
            Impl::NetMux => "net-mux",
            Impl::AsyncSmux | Impl::SmuxRs | Impl::Go(GoLib::Smux1) => "smux v1",
            Impl::Go(GoLib::Smux2) => "smux v2",
        }
    }

    pub fn kind(self) -> Kind {
        match self {
            Impl::RawTcp | Impl::RawTcpLarge => Kind::Baseline,
            Impl::Polymux(_) => Kind::Polymux,
            _ => Kind::Peer,
        }
    }

    pub fn is_go(self) -> bool {
        matches!(self, Impl::Go(_))
    }

    /// Raw TCP, either row: one connection per stream, no multiplexer.
    pub fn is_raw_tcp(self) -> bool {
        matches!(self, Impl::RawTcp | Impl::RawTcpLarge)
    }

    /// The application's write size in bulk and multi (the sink reads with at least this):
    /// 64 KiB, the size, except for the physical-limit row.
    pub fn transfer_chunk(self) -> usize {
        match self {
            Impl::RawTcpLarge => LARGE_CHUNK,
            _ => 64 * 1024,
        }
    }

    /// Parses a name from [`Impl::name`].
    pub fn parse(s: &str) -> anyhow::Result<Impl> {
        match Impl::ALL.into_iter().find(|i| i.name() == s) {
            Some(i) => Ok(i),
            None => bail!(
                "unknown implementation {s:?}; known: {}",
                Impl::ALL.map(Impl::name).join(", ")
            ),
        }
    }

    /// The most streams the implementation can hold open at once as the harness configures it,
    /// with the reason, where that is below what the idle scenario asks for.
    pub fn stream_cap(self) -> Option<(usize, &'static str)> {
        match self {
            Impl::Yamux014 => Some((
                2000,
                "the interop adapter configures yamux 0.14 with at most 2048 streams \
                 (interop/src/peers/yamux014.rs, `set_max_num_streams(2048)`); an inbound SYN \
                 beyond it kills the connection (yamux-0.14.1/src/connection.rs:627)",
            )),
            Impl::NetMux => Some((
                4000,
                "the interop adapter configures net-mux with at most 4096 streams \
                 (interop/src/peers/net_mux.rs, `max_streams(4096)`)",
            )),
            _ => None,
        }
    }
}

impl fmt::Display for Impl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The scenarios. CPU per GiB is measured within `Bulk` and `Multi`. The `Wan*` ones run
/// through the link relay ([`crate::link`]), the others over plain loopback.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scenario {
    /// One stream sends `size` bytes to a sink.
    Bulk,
    /// `streams` streams send `size` bytes in total, concurrently.
    Multi,
    /// Sequential open, 16-byte echo, close, for a fixed time.
    OpenRate,
    /// `burst` streams opened at once, each echoing 1 KiB.
    Burst,
    /// `idle` streams held open: resident memory per stream.
    Idle,
    /// Sequential 64-byte ping-pongs on one stream.
    Rpc,
    /// `wan_size` bytes on one stream over the emulated WAN at 50 ms RTT: MB/s, and t90.
    WanBulk50,
    /// The same at 200 ms RTT.
    WanBulk200,
    /// At 50 ms RTT, 64-byte echoes (random gaps) on a second stream beside a bulk stream of
    /// 2 × `wan_size` bytes on the same session (raw TCP: a second connection through the
    /// same link): latency p50/p99 while the link is saturated.
    WanRpc,
}

impl Scenario {
    /// The loopback scenarios: the default set.
    pub const ALL: [Scenario; 6] = [
        Scenario::Bulk,
        Scenario::Multi,
        Scenario::OpenRate,
        Scenario::Burst,
        Scenario::Idle,
        Scenario::Rpc,
    ];

    /// The WAN scenarios (`--scenarios wan` selects them all).
    pub const WAN: [Scenario; 3] = [Scenario::WanBulk50, Scenario::WanBulk200, Scenario::WanRpc];

    pub fn name(self) -> &'static str {
        match self {
            Scenario::Bulk => "bulk",
            Scenario::Multi => "multi",
            Scenario::OpenRate => "open-rate",
            Scenario::Burst => "burst",
            Scenario::Idle => "idle",
            Scenario::Rpc => "rpc",
            Scenario::WanBulk50 => "wan-bulk50",
            Scenario::WanBulk200 => "wan-bulk200",
            Scenario::WanRpc => "wan-rpc",
        }
    }

    pub fn parse(s: &str) -> anyhow::Result<Scenario> {
        let all = Scenario::ALL.into_iter().chain(Scenario::WAN);
        match all.clone().find(|x| x.name() == s) {
            Some(x) => Ok(x),
            None => bail!(
                "unknown scenario {s:?}; known: {}",
                all.map(Scenario::name).collect::<Vec<_>>().join(", ")
            ),
        }
    }

    /// The emulated path the scenario runs over; `None` for loopback.
    pub fn link(self) -> Option<LinkShape> {
        let rtt = match self {
            Scenario::WanBulk50 | Scenario::WanRpc => 50,
            Scenario::WanBulk200 => 200,
            _ => return None,
        };
        Some(LinkShape::new(WAN_RATE, Duration::from_millis(rtt)))
    }

    /// What the client child runs: the WAN bulks are `bulk` (of `wan_size`) over the relay.
    pub fn client_scenario(self) -> Scenario {
        match self {
            Scenario::WanBulk50 | Scenario::WanBulk200 => Scenario::Bulk,
            other => other,
        }
    }

    /// What the server does with each stream.
    pub fn server_mode(self) -> Mode {
        match self {
            Scenario::Bulk | Scenario::Multi => Mode::Sink,
            Scenario::OpenRate | Scenario::Burst | Scenario::Rpc => Mode::Echo,
            Scenario::Idle => Mode::Hold,
            Scenario::WanBulk50 | Scenario::WanBulk200 => Mode::Sink,
            Scenario::WanRpc => Mode::Mixed,
        }
    }
}

/// The WAN scenarios' bottleneck rate: 100 Mbit/s, the link.
pub const WAN_RATE: u64 = 12_500_000;

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What the server does with each accepted stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Read an 8-byte little-endian length, then that many bytes; reply with the count read
    /// (8 bytes LE); wait for the client's close; close.
    Sink,
    /// Write back whatever arrives until EOF; close.
    Echo,
    /// Keep the stream open and untouched (after an empty write, which makes yamux 0.14 send
    /// its lazy ACK).
    Hold,
    /// The stream's first byte says: [`TAG_SINK`] → `Sink`, [`TAG_ECHO`] → `Echo` (wan-rpc's
    /// bulk and echo streams on one session).
    Mixed,
}

/// A `Mixed`-mode stream that is a sink starts with this byte.
pub const TAG_SINK: u8 = b'S';
/// A `Mixed`-mode stream that echoes starts with this byte (not echoed).
pub const TAG_ECHO: u8 = b'E';

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Sink => "sink",
            Mode::Echo => "echo",
            Mode::Hold => "hold",
            Mode::Mixed => "mixed",
        }
    }

    pub fn parse(s: &str) -> anyhow::Result<Mode> {
        match s {
            "sink" => Ok(Mode::Sink),
            "echo" => Ok(Mode::Echo),
            "hold" => Ok(Mode::Hold),
            "mixed" => Ok(Mode::Mixed),
            _ => bail!("unknown mode {s:?}; known: sink, echo, hold, mixed"),
        }
    }
}

/// Runs `$body` with `$peer` bound to the interop [`Peer`](polymux_testkit::Peer) of a Rust
/// multiplexer `$imp`; `$other` for raw TCP and Go, which have no such adapter.
macro_rules! with_peer {
    ($imp:expr, |$peer:ident| $body:expr, else $other:expr) => {
        match $imp {
            $crate::impls::Impl::Polymux(d) => {
                let $peer = polymux_testkit::Polymux(d);
                $body
            }
            $crate::impls::Impl::Yamux014 => {
                let $peer = polymux_testkit::peers::Yamux014;
                $body
            }
            $crate::impls::Impl::TokioYamux => {
                let $peer = polymux_testkit::peers::TokioYamux;
                $body
            }
            $crate::impls::Impl::NetMux => {
                let $peer = polymux_testkit::peers::NetMux;
                $body
            }
            $crate::impls::Impl::AsyncSmux => {
                let $peer = polymux_testkit::peers::AsyncSmux;
                $body
            }
            $crate::impls::Impl::SmuxRs => {
                let $peer = polymux_testkit::peers::SmuxRs;
                $body
            }
            $crate::impls::Impl::RawTcp
            | $crate::impls::Impl::RawTcpLarge
            | $crate::impls::Impl::Go(_) => $other,
        }
    };
}
pub(crate) use with_peer;
