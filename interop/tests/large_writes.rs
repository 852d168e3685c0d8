//! Single application writes larger than one frame (100 KiB, beyond smux's 32 KiB split and
//! the 40 KB where some implementations misbehave) in both directions, against every Rust
//! peer: each side writes the whole buffer with one `write_all`, the other reads it exactly
//! and sends it back the same way.

use std::time::Duration;

use polymux::Dialect;
use polymux_testkit::payload::Payload;
use polymux_testkit::peers::{AsyncSmux, NetMux, SmuxRs, TokioYamux, Yamux014};
use polymux_testkit::{MuxSession, Peer, Polymux, Role, SessionParams};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const LEN: usize = 100 * 1024;

async fn bounce<S: MuxSession>(session: S, opener: bool) -> Result<(), String> {
    let mut stream = if opener {
        session.open().await
    } else {
        session.accept().await
    }
    .map_err(|e| format!("open/accept: {e}"))?;
    let sent = Payload::bytes(7, LEN);
    let mut got = vec![0u8; LEN];
    if opener {
        stream
            .write_all(&sent)
            .await
            .map_err(|e| format!("write: {e}"))?;
        stream
            .read_exact(&mut got)
            .await
            .map_err(|e| format!("read: {e}"))?;
        if got != sent {
            return Err("the echoed 100 KiB differ".into());
        }
    } else {
        stream
            .read_exact(&mut got)
            .await
            .map_err(|e| format!("read: {e}"))?;
        if got != sent {
            return Err("the received 100 KiB differ".into());
        }
        stream
            .write_all(&got)
            .await
            .map_err(|e| format!("write: {e}"))?;
        // Keep the stream until the opener has read everything.
        let _ = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut [0u8; 1])).await;
    }
    Ok(())
}

fn check<P: Peer>(peer: P, dialect: Dialect) {
    for polymux_opens in [true, false] {
        for polymux_is_client in [true, false] {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            let result = rt.block_on(async {
                let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
                let addr = listener.local_addr().unwrap();
                let (dialled, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
                let (dialled, accepted) = (dialled.unwrap(), accepted.unwrap().0);
                let params = SessionParams::default();
                let (mine_io, mine_role, theirs_io, theirs_role) = if polymux_is_client {
                    (dialled, Role::Client, accepted, Role::Server)
                } else {
                    (accepted, Role::Server, dialled, Role::Client)
                };
                let mine = Polymux(dialect)
                    .connect(mine_io, mine_role, &params)
                    .await
                    .unwrap();
                let theirs = peer.connect(theirs_io, theirs_role, &params).await.unwrap();
                let run = async {
                    tokio::try_join!(bounce(mine, polymux_opens), bounce(theirs, !polymux_opens))
                };
                tokio::time::timeout(Duration::from_secs(30), run)
                    .await
                    .map_err(|_| "timed out".to_string())
                    .and_then(|r| r)
            });
            assert_eq!(
                result,
                Ok(((), ())),
                "{} (polymux {} and {}): {result:?}",
                peer.name(),
                if polymux_is_client {
                    "client"
                } else {
                    "server"
                },
                if polymux_opens { "opens" } else { "accepts" },
            );
        }
    }
}

#[test]
fn async_smux() {
    check(AsyncSmux, Dialect::SmuxV1);
}

#[test]
fn smux_0_2() {
    check(SmuxRs, Dialect::SmuxV1);
}

#[test]
fn net_mux() {
    check(NetMux, Dialect::NetMux);
}

#[test]
fn yamux_0_14() {
    check(Yamux014, Dialect::Yamux);
}

#[test]
fn tokio_yamux() {
    check(TokioYamux, Dialect::Yamux);
}
