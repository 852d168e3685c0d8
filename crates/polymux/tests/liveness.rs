//! The driver's half of the liveness rules (issue 9 item 3), over real loopback TCP with a
//! hand-written hostile peer: a peer that stops reading ends the session with `WriteTimeout`
//! even while it keeps sending keep-alives, and a peer that dies while our input is paused on
//! the receive budget is still detected (the driver reads ahead and sees nothing arrive), and
//! an EOF seen during such a read-ahead waits until the bytes before it are decoded.
//!
//! Real time runs here, but nothing waits on it as synchronisation: each test awaits the
//! session's end, bounded by a generous limit that only a regression reaches.

use std::time::Duration;

use tokio::io::AsyncWriteExt;
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

/// A yamux frame header: version 0, type, flags, stream, length (big-endian).
fn yamux_header(kind: u8, flags: u16, stream: u32, len: u32) -> Vec<u8> {
    let mut h = vec![0, kind];
    h.extend_from_slice(&flags.to_be_bytes());
    h.extend_from_slice(&stream.to_be_bytes());
    h.extend_from_slice(&len.to_be_bytes());
    h
}

/// The peer sends smux NOPs (so it looks alive) and never reads a byte of ours: the session
/// ends with `WriteTimeout` once the socket stops taking our output.
#[tokio::test]
async fn a_peer_that_stops_reading_ends_with_write_timeout() {
    let (ours, mut peer) = tcp_pair().await;
    let config = Config::smux_v1()
        .to_builder()
        .keepalive_interval(Some(Duration::from_millis(100)))
        .keepalive_timeout(Duration::from_secs(30))
        .write_timeout(Some(Duration::from_millis(300)))
        .build()
        .unwrap();
    let (session, driver) = Session::client(ours.compat(), config);
    let driver = tokio::spawn(driver);
    // The peer's keep-alives: smux v1 NOP (version 1, cmd 3, length 0, stream 0).
    let nops = tokio::spawn(async move {
        for _ in 0..2_000 {
            if peer.write_all(&[1, 3, 0, 0, 0, 0, 0, 0]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        peer
    });
    let mut stream = session.open().await.unwrap();
    // smux v1 has no flow control: writes go on until the socket's buffers are full. Bounded
    // by count; a regression shows as the session not ending.
    let writer = tokio::spawn(async move {
        let chunk = vec![5u8; 256 * 1024];
        for _ in 0..1024 {
            // Named in full: with the `tokio` feature, `Stream` has both traits' `write_all`.
            if futures::AsyncWriteExt::write_all(&mut stream, &chunk)
                .await
                .is_err()
            {
                return true;
            }
        }
        false
    });
    let reason = timeout(Duration::from_secs(30), session.closed())
        .await
        .expect("the session ends although the peer keeps sending");
    assert_eq!(reason, Error::WriteTimeout);
    assert!(writer.await.unwrap(), "the blocked writer fails");
    assert_eq!(driver.await.unwrap(), Err(Error::WriteTimeout));
    nops.abort();
}

/// The peer fills our receive budget (256 KiB on stream 1, then the rest waits),
/// our application reads nothing, and the peer then goes silent without closing. Pausing input
/// used to make the silence ours forever; the read-ahead lets keep-alive see the peer is gone.
#[tokio::test]
async fn a_dead_peer_is_detected_while_input_is_paused_on_the_budget() {
    let (ours, mut peer) = tcp_pair().await;
    let config = Config::yamux()
        .to_builder()
        .session_recv_budget(256 * 1024)
        .keepalive_interval(Some(Duration::from_millis(100)))
        .keepalive_timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let (session, driver) = Session::server(ours.compat(), config);
    let driver = tokio::spawn(driver);
    const SYN: u16 = 1;
    let mut wire = Vec::new();
    wire.extend(yamux_header(1, SYN, 1, 0));
    wire.extend(yamux_header(1, SYN, 3, 0));
    // Small frames: copied into the stream's chunks, charged at about their size (plus the
    // slot ring), so input pauses within a few KiB of the end, inside the driver's read-ahead.
    for _ in 0..64 {
        wire.extend(yamux_header(0, 0, 1, 4 * 1024));
        wire.extend(vec![1u8; 4 * 1024]);
    }
    wire.extend(yamux_header(0, 0, 3, 5));
    wire.extend(b"stuck");
    peer.write_all(&wire).await.unwrap();
    // Accepted, never read: the budget stays full.
    let _one = session.accept().await.unwrap();
    let _three = session.accept().await.unwrap();
    let reason = timeout(Duration::from_secs(30), session.closed())
        .await
        .expect("a dead peer is detected while input is paused");
    assert_eq!(reason, Error::KeepAliveTimeout);
    assert_eq!(driver.await.unwrap(), Err(Error::KeepAliveTimeout));
    drop(peer);
}

/// A transport whose peer sent `input` and then closed its side; what we write is kept.
struct Scripted {
    input: futures::io::Cursor<Vec<u8>>,
    output: Vec<u8>,
}

impl futures::AsyncRead for Scripted {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut [u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.input).poll_read(cx, buf)
    }
}

impl futures::AsyncWrite for Scripted {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.output.extend_from_slice(buf);
        std::task::Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_close(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

/// The peer's EOF arrives while input is paused on the budget (the driver reads ahead and
/// sees it): it is reported only after the application read and every byte before it was
/// decoded, so nothing is lost and no frame is taken for truncated.
#[tokio::test]
async fn eof_during_a_read_ahead_waits_for_the_bytes_before_it() {
    const SYN: u16 = 1;
    const FIN: u16 = 4;
    let mut wire = Vec::new();
    wire.extend(yamux_header(1, SYN, 1, 0));
    wire.extend(yamux_header(1, SYN, 3, 0));
    // Small frames: copied into the stream's chunks, charged at about their size (plus the
    // slot ring), so input pauses within a few KiB of the end, inside the driver's read-ahead.
    for _ in 0..64 {
        wire.extend(yamux_header(0, 0, 1, 4 * 1024));
        wire.extend(vec![1u8; 4 * 1024]);
    }
    wire.extend(yamux_header(0, FIN, 3, 4));
    wire.extend(b"tail");
    let transport = Scripted {
        input: futures::io::Cursor::new(wire),
        output: Vec::new(),
    };
    let config = Config::yamux()
        .to_builder()
        .session_recv_budget(256 * 1024)
        .build()
        .unwrap();
    let (session, driver) = Session::server(transport, config);
    let driver = tokio::spawn(driver);
    let mut one = session.accept().await.unwrap();
    let mut three = session.accept().await.unwrap();
    // Everything has arrived, EOF included; the budget is full of stream 1's bytes, unread.
    let buffered = session.stats().recv_buffered;
    assert!((240 * 1024..256 * 1024).contains(&buffered), "{buffered}");
    assert_eq!(session.end_reason(), None);
    let mut first = vec![0u8; 256 * 1024];
    futures::AsyncReadExt::read_exact(&mut one, &mut first)
        .await
        .unwrap();
    let mut tail = Vec::new();
    futures::AsyncReadExt::read_to_end(&mut three, &mut tail)
        .await
        .unwrap();
    assert_eq!(tail, b"tail");
    let reason = timeout(Duration::from_secs(30), session.closed())
        .await
        .expect("the session ends at the EOF");
    assert_eq!(reason, Error::TransportClosed);
    assert_eq!(driver.await.unwrap(), Ok(()));
}
