//! Shutdown on smux, which has no GoAway (issue 9 item 5), through the async API over loopback
//! TCP: after `go_away()` the server refuses new streams with FIN (counted in `Stats`), the
//! open stream carries on, and `close()` drains it and ends the session — as yamux does with
//! its GoAway frame.

use std::time::Duration;

use futures::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;
use tokio_util::compat::TokioAsyncReadCompatExt;

use polymux::{Config, Error, Session};

async fn tcp_pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (client, server) = tokio::join!(TcpStream::connect(addr), listener.accept());
    (client.unwrap(), server.unwrap().0)
}

#[tokio::test]
async fn smux_go_away_and_close_refuse_new_streams_and_drain_open_ones() {
    for config in [Config::smux_v1(), Config::smux_v2()] {
        let (a, b) = tcp_pair().await;
        let (client, cd) = Session::client(a.compat(), config.clone());
        let (server, sd) = Session::server(b.compat(), config);
        let (cd, sd) = (tokio::spawn(cd), tokio::spawn(sd));
        let mut open = client.open().await.unwrap();
        open.write_all(b"before").await.unwrap();
        let mut inbound = server.accept().await.unwrap();
        let mut buf = [0u8; 6];
        inbound.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"before");

        server.go_away().expect("smux supports a local GoAway");
        // A new stream opens on the client (smux cannot tell it earlier) and is refused: FIN.
        let mut late = client.open().await.unwrap();
        let mut got = Vec::new();
        timeout(Duration::from_secs(10), late.read_to_end(&mut got))
            .await
            .expect("the refusal arrives")
            .unwrap();
        assert!(got.is_empty());
        assert_eq!(server.stats().refused_closing, 1);
        assert_eq!(server.stats().pending_accept, 0);

        // The open stream carries on while the server closes.
        let closing = {
            let server = server.clone();
            tokio::spawn(async move { server.close().await })
        };
        open.write_all(b" and after").await.unwrap();
        open.close().await.unwrap();
        let mut rest = Vec::new();
        inbound.read_to_end(&mut rest).await.unwrap();
        assert_eq!(rest, b" and after");
        inbound.write_all(b"reply").await.unwrap();
        inbound.close().await.unwrap();
        let mut reply = Vec::new();
        open.read_to_end(&mut reply).await.unwrap();
        assert_eq!(reply, b"reply");
        drop((inbound, open, late));
        timeout(Duration::from_secs(10), closing)
            .await
            .expect("close completes once the open stream is done")
            .unwrap();
        assert_eq!(server.end_reason(), Some(Error::SessionClosed));
        assert_eq!(sd.await.unwrap(), Ok(()));
        drop(client);
        let _ = timeout(Duration::from_secs(10), cd).await;
    }
}
