//! End to end: `polymux forward server` + `polymux forward client` (the real binary) with
//! 100 concurrent connections through one session, in every protocol, bytes verified.

mod common;

use std::time::Duration;

use common::{echo_roundtrip, echo_server, payload, Proc, TOKEN};

async fn forward_pair(protocol: &str, target: &str) -> (Proc, Proc, std::net::SocketAddr) {
    let server = Proc::spawn(
        "forward server",
        &[
            "--protocol",
            protocol,
            "forward",
            "server",
            "--listen",
            "127.0.0.1:0",
            "--target",
            target,
        ],
        &[("POLYMUX_TOKEN", TOKEN)],
    );
    let server_addr = server.addr_after("listening on ").await.to_string();
    let client = Proc::spawn(
        "forward client",
        &[
            "--protocol",
            protocol,
            "forward",
            "client",
            "--listen",
            "127.0.0.1:0",
            "--server",
            &server_addr,
        ],
        &[("POLYMUX_TOKEN", TOKEN)],
    );
    let local = client.addr_after("forwarding ").await;
    client
        .wait_for("connected to forward server", Duration::from_secs(20))
        .await;
    (server, client, local)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_concurrent_connections_in_every_protocol() {
    let target = echo_server().await.to_string();
    for protocol in ["yamux", "smux1", "smux2", "netmux"] {
        let (server, client, local) = forward_pair(protocol, &target).await;
        let connections: Vec<_> = (0..100u64)
            .map(|i| {
                let data = payload(i, 16 * 1024 + (i as usize * 2039) % (240 * 1024));
                tokio::spawn(async move {
                    let echoed = echo_roundtrip(local, data.clone()).await;
                    (i, data, echoed)
                })
            })
            .collect();
        for connection in connections {
            let (i, sent, echoed) = tokio::time::timeout(Duration::from_secs(60), connection)
                .await
                .expect("connections finish within 60 s")
                .expect("task");
            match echoed {
                Ok(echoed) => assert!(
                    echoed == sent,
                    "{protocol}: connection {i}: {} bytes echoed for {} sent, or different bytes",
                    echoed.len(),
                    sent.len()
                ),
                Err(e) => panic!(
                    "{protocol}: connection {i}: {e}\nclient:\n{}\nserver:\n{}",
                    client.logs(),
                    server.logs()
                ),
            }
        }
    }
}

/// Half-close travels end to end: the target sees EOF while its answer still flows back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_close_is_carried_through() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // A target that reads everything first, then answers with the byte count.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let target = listener.local_addr().expect("addr").to_string();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut all = Vec::new();
                if tcp.read_to_end(&mut all).await.is_ok() {
                    let _ = tcp.write_all(format!("got {}", all.len()).as_bytes()).await;
                }
            });
        }
    });
    let (_server, _client, local) = forward_pair("smux2", &target).await;
    let mut tcp = tokio::net::TcpStream::connect(local)
        .await
        .expect("connect");
    tcp.write_all(&payload(1, 300_000)).await.expect("write");
    tcp.shutdown().await.expect("half-close");
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(20), tcp.read_to_string(&mut answer))
        .await
        .expect("answer in time")
        .expect("read");
    assert_eq!(answer, "got 300000");
}

/// Connection and stream limits refuse the excess with messages that name the flag.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_refuse_the_excess_with_clear_messages() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn hold_open(addr: std::net::SocketAddr) -> tokio::net::TcpStream {
        let mut tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
        tcp.write_all(b"x").await.expect("write");
        let mut byte = [0u8; 1];
        tokio::time::timeout(Duration::from_secs(20), tcp.read_exact(&mut byte))
            .await
            .expect("echo in time")
            .expect("echo");
        tcp
    }
    async fn refused(addr: std::net::SocketAddr) {
        let mut tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let _ = tcp.write_all(b"x").await;
        let mut buf = [0u8; 16];
        let read = tokio::time::timeout(Duration::from_secs(20), tcp.read(&mut buf))
            .await
            .expect("closed in time");
        assert!(
            matches!(read, Ok(0) | Err(_)),
            "closed without an echo: {read:?}"
        );
    }

    let target = echo_server().await.to_string();
    // The server carries one stream at a time.
    let server = Proc::spawn(
        "forward server",
        &[
            "forward",
            "server",
            "--listen",
            "127.0.0.1:0",
            "--target",
            &target,
            "--max-streams",
            "1",
        ],
        &[("POLYMUX_TOKEN", TOKEN)],
    );
    let server_addr = server.addr_after("listening on ").await.to_string();
    let client = Proc::spawn(
        "forward client",
        &[
            "forward",
            "client",
            "--listen",
            "127.0.0.1:0",
            "--server",
            &server_addr,
        ],
        &[("POLYMUX_TOKEN", TOKEN)],
    );
    let local = client.addr_after("forwarding ").await;
    let first = hold_open(local).await;
    refused(local).await;
    // The server's engine admits exactly --max-streams and logs the refusal at info.
    server
        .wait_for("the limit is --max-streams 1", Duration::from_secs(10))
        .await;
    client
        .wait_for("stream limit reached", Duration::from_secs(10))
        .await;
    client
        .wait_for("--max-streams", Duration::from_secs(10))
        .await;
    drop(first);

    // The client accepts one local connection at a time.
    let limited = Proc::spawn(
        "forward client",
        &[
            "forward",
            "client",
            "--listen",
            "127.0.0.1:0",
            "--server",
            &server_addr,
            "--max-connections",
            "1",
        ],
        &[("POLYMUX_TOKEN", TOKEN)],
    );
    let local = limited.addr_after("forwarding ").await;
    // The server's single stream slot frees up once `first` is gone.
    let mut held = None;
    for _ in 0..50 {
        let mut tcp = tokio::net::TcpStream::connect(local)
            .await
            .expect("connect");
        tcp.write_all(b"x").await.expect("write");
        let mut byte = [0u8; 1];
        if let Ok(Ok(1)) = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut byte)).await {
            held = Some(tcp);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(held.is_some(), "one connection gets through");
    refused(local).await;
    limited
        .wait_for(
            "limit of 1 local connections reached",
            Duration::from_secs(10),
        )
        .await;
    limited
        .wait_for("--max-connections", Duration::from_secs(10))
        .await;
}
