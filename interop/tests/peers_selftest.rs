//! Self-checks of the interop harness, before polymux exists: the scenarios played between
//! third-party Rust peers (yamux 0.14 vs tokio-yamux 0.3 both ways, async_smux vs smux 0.2
//! both ways, net-mux vs net-mux), Rust yamux vs the Go peer program, and two negative
//! controls proving that a corrupted payload and a missing reset are caught.
//!
//! Roles a peer cannot play are asserted to be reported as unsupported, with the reason.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use polymux_testkit::peers::{AsyncSmux, NetMux, NetMuxSession, SmuxRs, TokioYamux, Yamux014};
use polymux_testkit::{
    assert_both_ok, assert_unsupported, run, GoProto, MuxSession, Outcome, Peer, Role, Scenario,
    SessionParams, Side,
};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// One test per listed scenario: `ok` ones must pass on both sides, `unsupported` ones must be
/// reported unsupported (with a reason naming the source location).
macro_rules! pair_tests {
    ($module:ident: $client:expr => $server:expr;
     ok: [$($ok:ident = $ok_sc:ident),* $(,)?];
     unsupported: [$($un:ident = $un_sc:ident),* $(,)?] $(;)?) => {
        mod $module {
            use super::*;
            $(
                #[test]
                fn $ok() {
                    assert_both_ok(run(Scenario::$ok_sc, Side::rust($client), Side::rust($server)));
                }
            )*
            $(
                #[test]
                fn $un() {
                    let why = assert_unsupported(run(
                        Scenario::$un_sc,
                        Side::rust($client),
                        Side::rust($server),
                    ));
                    assert!(why.contains(".rs:"), "reason should cite the source: {why}");
                }
            )*
        }
    };
}

pair_tests! {
    yamux014_to_tokio_yamux: Yamux014 => TokioYamux;
    ok: [
        echo100 = Echo100, bulk64 = Bulk64, open1000 = Open1000, greet = Greet,
        halfclose = HalfClose, reset_by_client = ResetByClient,
        reset_by_server = ResetByServer, idle = Idle,
    ];
    unsupported: [
        unread = Unread,
        goaway_by_client = GoAwayByClient, goaway_by_server = GoAwayByServer, ping = Ping,
    ];
}

pair_tests! {
    tokio_yamux_to_yamux014: TokioYamux => Yamux014;
    ok: [
        echo100 = Echo100, bulk64 = Bulk64, open1000 = Open1000, greet = Greet,
        halfclose = HalfClose, reset_by_client = ResetByClient,
        reset_by_server = ResetByServer, idle = Idle, unread = Unread,
    ];
    unsupported: [goaway_by_client = GoAwayByClient, goaway_by_server = GoAwayByServer, ping = Ping];
}

pair_tests! {
    async_smux_to_smux_rs: AsyncSmux => SmuxRs;
    ok: [echo100 = Echo100, bulk64 = Bulk64, open1000 = Open1000];
    unsupported: [
        greet = Greet, halfclose = HalfClose,
        reset_by_client = ResetByClient, reset_by_server = ResetByServer,
        goaway_by_client = GoAwayByClient, goaway_by_server = GoAwayByServer, ping = Ping,
        idle = Idle, unread = Unread,
    ];
}

pair_tests! {
    smux_rs_to_async_smux: SmuxRs => AsyncSmux;
    ok: [echo100 = Echo100, bulk64 = Bulk64, open1000 = Open1000];
    unsupported: [
        greet = Greet, halfclose = HalfClose,
        reset_by_client = ResetByClient, reset_by_server = ResetByServer,
        goaway_by_client = GoAwayByClient, goaway_by_server = GoAwayByServer, ping = Ping,
        idle = Idle, unread = Unread,
    ];
}

pair_tests! {
    net_mux_to_net_mux: NetMux => NetMux;
    ok: [
        echo100 = Echo100, bulk64 = Bulk64, open1000 = Open1000, greet = Greet,
        halfclose = HalfClose, reset_by_client = ResetByClient,
        reset_by_server = ResetByServer, idle = Idle, unread = Unread,
    ];
    unsupported: [goaway_by_client = GoAwayByClient, goaway_by_server = GoAwayByServer, ping = Ping];
}

/// smux 0.2 keep-alive (100 ms NOPs, 1 s silence timeout) against itself; the async_smux
/// pairs cannot play `idle` (see `async_smux`'s missing capabilities).
#[test]
fn smux_rs_idle_with_itself() {
    assert_both_ok(run(Scenario::Idle, Side::rust(SmuxRs), Side::rust(SmuxRs)));
}

// ---------------------------------------------------------------------------------------------
// Rust yamux vs the Go peer (hashicorp/yamux).

/// Every scenario with `client` dialling `server`. A pair passes if both sides succeed or a side
/// reports the scenario unsupported for its role (printed, so the gaps stay visible).
fn all_scenarios(client: Side, server: Side) {
    let mut bad = Vec::new();
    for sc in Scenario::ALL {
        let pair = run(sc, client.clone(), server.clone());
        println!("{pair}");
        if !pair.both_ok() && pair.unsupported().is_none() {
            bad.push(pair.to_string());
        }
    }
    assert!(bad.is_empty(), "failing pairs:\n{}", bad.join("\n"));
}

#[test]
fn yamux014_client_vs_go_yamux_server() {
    all_scenarios(Side::rust(Yamux014), Side::Go(GoProto::Yamux));
}

#[test]
fn go_yamux_client_vs_yamux014_server() {
    all_scenarios(Side::Go(GoProto::Yamux), Side::rust(Yamux014));
}

// ---------------------------------------------------------------------------------------------
// Negative controls: the harness must notice broken behaviour.

/// net-mux whose `reset` drops the stream, which sends FIN instead of RST.
struct FinInsteadOfReset;

#[derive(Clone)]
struct FinSession(NetMuxSession);

impl Peer for FinInsteadOfReset {
    type Session = FinSession;

    fn name(&self) -> String {
        "net-mux-without-reset".into()
    }

    fn connect(
        &self,
        io: TcpStream,
        role: Role,
        params: &SessionParams,
    ) -> BoxFuture<'static, io::Result<FinSession>> {
        let inner = NetMux.connect(io, role, params);
        Box::pin(async move { Ok(FinSession(inner.await?)) })
    }
}

impl MuxSession for FinSession {
    type Stream = <NetMuxSession as MuxSession>::Stream;

    fn open(&self) -> BoxFuture<'_, io::Result<Self::Stream>> {
        self.0.open()
    }

    fn accept(&self) -> BoxFuture<'_, io::Result<Self::Stream>> {
        self.0.accept()
    }

    fn reset(&self, stream: Self::Stream) -> io::Result<()> {
        drop(stream);
        Ok(())
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        self.0.close()
    }
}

#[test]
fn a_fin_is_not_a_reset() {
    let pair = run(
        Scenario::ResetByClient,
        Side::rust(FinInsteadOfReset),
        Side::rust(NetMux),
    );
    assert_eq!(pair.client, Outcome::Ok, "{pair}");
    assert!(
        matches!(&pair.server, Outcome::Failed(why) if why.contains("clean EOF")),
        "{pair}"
    );
}

/// net-mux whose streams flip the first byte they write.
struct Corrupting;

#[derive(Clone)]
struct CorruptSession(NetMuxSession);

struct CorruptStream {
    inner: <NetMuxSession as MuxSession>::Stream,
    done: bool,
}

impl Peer for Corrupting {
    type Session = CorruptSession;

    fn name(&self) -> String {
        "net-mux-corrupting".into()
    }

    fn connect(
        &self,
        io: TcpStream,
        role: Role,
        params: &SessionParams,
    ) -> BoxFuture<'static, io::Result<CorruptSession>> {
        let inner = NetMux.connect(io, role, params);
        Box::pin(async move { Ok(CorruptSession(inner.await?)) })
    }
}

impl MuxSession for CorruptSession {
    type Stream = CorruptStream;

    fn open(&self) -> BoxFuture<'_, io::Result<CorruptStream>> {
        Box::pin(async move {
            let inner = self.0.open().await?;
            Ok(CorruptStream { inner, done: false })
        })
    }

    fn accept(&self) -> BoxFuture<'_, io::Result<CorruptStream>> {
        Box::pin(async move {
            let inner = self.0.accept().await?;
            Ok(CorruptStream { inner, done: false })
        })
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        self.0.close()
    }
}

impl AsyncRead for CorruptStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for CorruptStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.done || buf.is_empty() {
            return Pin::new(&mut self.inner).poll_write(cx, buf);
        }
        let flipped = [buf[0] ^ 1];
        let r = Pin::new(&mut self.inner).poll_write(cx, &flipped);
        if matches!(r, Poll::Ready(Ok(1))) {
            self.done = true;
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[test]
fn corrupted_payload_is_caught() {
    let pair = run(
        Scenario::HalfClose,
        Side::rust(Corrupting),
        Side::rust(NetMux),
    );
    assert!(
        matches!(&pair.server, Outcome::Failed(why) if why.contains("payload mismatch at byte 0")),
        "{pair}"
    );
}

// ---------------------------------------------------------------------------------------------
// Rust smux v1 vs the Go peer (xtaci/smux, protocol v1). A Go smux client cannot read after
// its own half-close and the Rust smux servers lose the EOF when the client closes right after
// (see `Capability::EofAfterPeerClose`), so only this direction has anything to run.

#[test]
fn async_smux_client_vs_go_smux1_server() {
    all_scenarios(Side::rust(AsyncSmux), Side::Go(GoProto::Smux1));
}
