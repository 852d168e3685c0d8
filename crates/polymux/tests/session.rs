//! The async layer over real loopback TCP: progress without accepting, errors every stream
//! sees, keep-alive, GoAway, back-pressure.

use std::io::ErrorKind;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;

use polymux::{Config, Error, Session, Violation};

async fn tcp_pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (client, server) = tokio::join!(TcpStream::connect(addr), listener.accept());
    (client.unwrap(), server.unwrap().0)
}

fn inner_error(e: &std::io::Error) -> Option<&Error> {
    e.get_ref().and_then(|inner| inner.downcast_ref::<Error>())
}

async fn echo_server(session: Session) {
    while let Ok(stream) = session.accept().await {
        tokio::spawn(async move {
            let (mut r, mut w) = tokio::io::split(stream);
            let _ = tokio::io::copy(&mut r, &mut w).await;
            let _ = w.shutdown().await;
        });
    }
}

#[tokio::test]
async fn a_side_that_never_accepts_still_makes_progress() {
    let (a, b) = tcp_pair().await;
    let (client, _cd) = polymux::tokio::client(a, Config::yamux());
    // Allow the server more unacknowledged opens than the client's backlog holds.
    let many_opens = Config::yamux()
        .to_builder()
        .max_unacked_outbound(512)
        .build()
        .unwrap();
    let (server, _sd) = polymux::tokio::server(b, many_opens);
    // The server echoes and also opens 300 streams the client never accepts.
    let opener = server.clone();
    let flood = tokio::spawn(async move {
        let mut held = Vec::new();
        for _ in 0..300 {
            held.push(
                opener
                    .open()
                    .await
                    .expect("open toward a non-accepting client"),
            );
        }
        held
    });
    tokio::spawn(echo_server(server.clone()));
    let (mut r, mut w) = tokio::io::split(client.open().await.unwrap());
    // Write concurrently with reading: an echo of more than one window needs both.
    let writer = tokio::spawn(async move {
        w.write_all(&vec![7u8; 1 << 20]).await.unwrap();
        w.shutdown().await.unwrap();
    });
    let mut back = Vec::new();
    timeout(Duration::from_secs(20), r.read_to_end(&mut back))
        .await
        .expect("echo completes although the client never accepts")
        .unwrap();
    assert_eq!(back.len(), 1 << 20);
    writer.await.unwrap();
    let mut held = flood.await.unwrap();
    // The client's backlog is 256: the streams beyond it were refused with RST.
    let mut refused = 0;
    for stream in held.iter_mut().skip(256) {
        let mut buf = [0u8; 1];
        let err = timeout(Duration::from_secs(5), stream.read(&mut buf))
            .await
            .expect("refusal arrives")
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ConnectionReset);
        refused += 1;
    }
    assert_eq!(refused, 44);
    assert_eq!(client.stats().pending_accept, 256);
}

#[tokio::test]
async fn transport_closing_mid_frame_is_seen_by_every_stream() {
    let (a, mut raw) = tcp_pair().await;
    let (client, driver) = polymux::tokio::client(a, Config::yamux());
    let mut streams = Vec::new();
    for _ in 0..3 {
        streams.push(client.open().await.unwrap());
    }
    // Read the three SYNs (12 bytes each), then send 5 bytes of a header and close.
    let mut syns = [0u8; 36];
    raw.read_exact(&mut syns).await.unwrap();
    assert_eq!(&syns[..4], &[0, 1, 0, 1], "a WindowUpdate with SYN");
    raw.write_all(&[0, 0, 0, 0, 0]).await.unwrap();
    raw.shutdown().await.unwrap();
    for s in &mut streams {
        let mut buf = [0u8; 8];
        let err = timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .expect("the error arrives")
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidData);
        assert_eq!(
            inner_error(&err),
            Some(&Error::ProtocolViolation(Violation::TruncatedFrame {
                got: 5,
                needed: 12
            }))
        );
    }
    let end = driver.await.unwrap();
    assert!(matches!(end, Err(Error::ProtocolViolation(_))), "{end:?}");
    // Before closing, the session told the peer why: GoAway(protocol error).
    let mut rest = Vec::new();
    raw.read_to_end(&mut rest).await.unwrap();
    assert_eq!(rest, [0, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
}

#[tokio::test]
async fn a_silent_peer_ends_the_session_with_keepalive_timeout() {
    let (a, _silent) = tcp_pair().await;
    let config = Config::yamux()
        .to_builder()
        .keepalive_interval(Some(Duration::from_millis(50)))
        .keepalive_timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let (client, driver) = polymux::tokio::client(a, config);
    let mut s = client.open().await.unwrap();
    let reason = timeout(Duration::from_secs(5), client.closed())
        .await
        .expect("the session ends");
    assert_eq!(reason, Error::KeepAliveTimeout);
    let err = s.read(&mut [0u8; 4]).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::TimedOut);
    assert_eq!(driver.await.unwrap(), Err(Error::KeepAliveTimeout));
}

#[tokio::test]
async fn goaway_refuses_new_streams_while_existing_ones_finish() {
    let (a, b) = tcp_pair().await;
    let (client, _cd) = polymux::tokio::client(a, Config::yamux());
    let (server, _sd) = polymux::tokio::server(b, Config::yamux());
    let mut s = client.open().await.unwrap();
    s.write_all(b"before").await.unwrap();
    let mut inbound = server.accept().await.unwrap();
    server.go_away().unwrap();
    let refused = loop {
        match client.open().await {
            Err(e) => break e,
            Ok(extra) => {
                drop(extra);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    };
    assert_eq!(refused, Error::GoAway(0));
    s.write_all(b" and after").await.unwrap();
    s.shutdown().await.unwrap();
    let mut got = Vec::new();
    inbound.read_to_end(&mut got).await.unwrap();
    assert_eq!(got, b"before and after");
    inbound.write_all(b"reply").await.unwrap();
    inbound.shutdown().await.unwrap();
    let mut reply = Vec::new();
    s.read_to_end(&mut reply).await.unwrap();
    assert_eq!(reply, b"reply");
}

#[tokio::test]
async fn writes_wait_for_credit_until_the_reader_reads() {
    let (a, b) = tcp_pair().await;
    let (client, _cd) = polymux::tokio::client(a, Config::yamux());
    let (server, _sd) = polymux::tokio::server(b, Config::yamux());
    let mut s = client.open().await.unwrap();
    // 256 KiB of credit: the first 256 KiB are accepted, the next write waits.
    s.write_all(&vec![1u8; 256 * 1024]).await.unwrap();
    let blocked = timeout(Duration::from_millis(300), s.write_all(&[2u8; 1])).await;
    assert!(
        blocked.is_err(),
        "a write beyond the peer's credit must wait"
    );
    let mut inbound = server.accept().await.unwrap();
    let mut buf = vec![0u8; 256 * 1024];
    inbound.read_exact(&mut buf).await.unwrap();
    timeout(Duration::from_secs(5), s.write_all(&[2u8; 1]))
        .await
        .expect("credit returns once the reader reads")
        .unwrap();
    assert!(client.stats().bytes_sent > 256 * 1024);
}

#[tokio::test]
async fn dropping_every_handle_closes_the_session() {
    let (a, b) = tcp_pair().await;
    let (client, client_driver) = polymux::tokio::client(a, Config::yamux());
    let (server, server_driver) = polymux::tokio::server(b, Config::yamux());
    let mut s = client.open().await.unwrap();
    s.write_all(b"last words").await.unwrap();
    drop(s);
    drop(client);
    // The peer gets the stream's data and FIN, then GoAway.
    let mut inbound = server.accept().await.unwrap();
    let mut got = Vec::new();
    inbound.read_to_end(&mut got).await.unwrap();
    assert_eq!(got, b"last words");
    // Once the stream is finished both ways, the graceful close completes.
    inbound.shutdown().await.unwrap();
    timeout(Duration::from_secs(2), client_driver)
        .await
        .expect("the client's driver finishes once every handle is gone")
        .unwrap()
        .unwrap();
    assert_eq!(server.closed().await, Error::GoAway(0));
    drop(inbound);
    drop(server);
    assert_eq!(server_driver.await.unwrap(), Ok(()));
}

/// Opens stream A and fills it without the peer reading it, then moves `bulk` bytes through
/// stream B. Returns whether B finished within `limit`, and the sessions (A still unread).
async fn transfer_beside_an_unread_stream(
    config: Config,
    bulk: usize,
    limit: Duration,
) -> (bool, Session, polymux::Stream) {
    let (a, b) = tcp_pair().await;
    let (client, _cd) = polymux::tokio::client(a, config.clone());
    let (server, _sd) = polymux::tokio::server(b, config);
    let mut unread = client.open().await.unwrap();
    let slow = server.accept().await.unwrap(); // accepted, never read (for now)
    let mut fast = client.open().await.unwrap();
    let mut fast_in = server.accept().await.unwrap();
    let filler = tokio::spawn(async move {
        let _ = unread.write_all(&vec![0xAA; 2 << 20]).await;
        unread
    });
    let reader = tokio::spawn(async move {
        let mut total = 0usize;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = fast_in.read(&mut buf).await.unwrap();
            if n == 0 {
                return total;
            }
            total += n;
        }
    });
    let writer = async move {
        let chunk = vec![0x55u8; 256 * 1024];
        for _ in 0..bulk / chunk.len() {
            fast.write_all(&chunk).await.unwrap();
        }
        fast.shutdown().await.unwrap();
    };
    let done = timeout(limit, async {
        writer.await;
        reader.await.unwrap()
    })
    .await;
    filler.abort();
    (done.is_ok_and(|n| n == bulk), server, slow)
}

#[tokio::test]
async fn smux_v2_one_unread_stream_never_stalls_another() {
    let (done, _server, _slow) =
        transfer_beside_an_unread_stream(Config::smux_v2(), 64 << 20, Duration::from_secs(60))
            .await;
    assert!(
        done,
        "64 MiB on stream B must pass while stream A is never read"
    );
}

#[tokio::test]
async fn smux_v1_unread_stream_stalls_the_session_once_the_budget_is_full() {
    // The documented v1 weakness: without per-stream windows, the session budget (1 MiB here)
    // fills with stream A's unread bytes and the session stops reading the transport.
    let config = Config::smux_v1()
        .to_builder()
        .stream_window(256 * 1024)
        .session_recv_budget(1 << 20)
        .build()
        .unwrap();
    let (done, server, mut slow) =
        transfer_beside_an_unread_stream(config, 8 << 20, Duration::from_millis(1500)).await;
    assert!(!done, "v1 cannot isolate streams once the budget is full");
    assert!(server.stats().recv_buffered <= 1 << 20);
    // Reading the stalled stream releases the budget.
    let mut buf = vec![0u8; 64 * 1024];
    assert!(slow.read(&mut buf).await.unwrap() > 0);
}
