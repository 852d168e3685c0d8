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
            _ => polymux_testkit::bench::CHUNK,
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
                 (crates/polymux-testkit/src/peers/yamux014.rs, `set_max_num_streams(2048)`); \
                 an inbound SYN beyond it kills the connection \
                 (yamux-0.14.1/src/connection.rs:627)",
            )),
            Impl::NetMux => Some((
                4000,
                "the interop adapter configures net-mux with at most 4096 streams \
                 (crates/polymux-testkit/src/peers/net_mux.rs, `max_streams(4096)`)",
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

pub use polymux_testkit::bench::{Mode, Scenario, LARGE_CHUNK};

/// The emulated path a scenario runs over ([`crate::link`]); `None` for loopback. CPU per
/// GiB is measured within `Bulk` and `Multi`.
pub trait ScenarioLink {
    /// The link shape of the scenario, if it runs through the relay.
    fn link(self) -> Option<LinkShape>;
}

impl ScenarioLink for Scenario {
    fn link(self) -> Option<LinkShape> {
        let rtt = match self {
            Scenario::WanBulk50 | Scenario::WanRpc => 50,
            Scenario::WanBulk200 => 200,
            _ => return None,
        };
        Some(LinkShape::new(WAN_RATE, Duration::from_millis(rtt)))
    }
}

/// The WAN scenarios' bottleneck rate: 100 Mbit/s, the link.
pub const WAN_RATE: u64 = 12_500_000;

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
