//! End to end: SIGINT (Ctrl-C) shuts down gracefully — listeners close, transfers already
//! accepted run to completion byte for byte, the process exits 0; streams still open after
//! `--shutdown-timeout` make it exit 1.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use common::{echo_server, payload, wait_refused, Proc, TOKEN};

const SECS: fn(u64) -> Duration = Duration::from_secs;

/// Sends `data` in paced chunks while reading the echo; `on_progress` is told the echoed
/// byte count as it grows. Returns the echo.
async fn paced_echo(
    addr: SocketAddr,
    data: Vec<u8>,
    echoed_tx: tokio::sync::watch::Sender<usize>,
) -> std::io::Result<Vec<u8>> {
    let tcp = TcpStream::connect(addr).await?;
    let (mut r, mut w) = tcp.into_split();
    let writer = tokio::spawn(async move {
        for chunk in data.chunks(64 * 1024) {
            w.write_all(chunk).await?;
            tokio::time::sleep(Duration::from_millis(15)).await;
        }
        w.shutdown().await
    });
    let mut echoed = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = r.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        echoed.extend_from_slice(&buf[..n]);
        echoed_tx.send_replace(echoed.len());
    }
    writer.await.map_err(std::io::Error::other)??;
    Ok(echoed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_lets_an_accepted_transfer_finish_without_losing_a_byte() {
    let target = echo_server().await.to_string();
    let mut server = Proc::spawn(
        "forward server",
        &[
            "forward",
            "server",
            "--listen",
            "127.0.0.1:0",
            "--target",
            &target,
        ],
        &[("POLYMUX_TOKEN", TOKEN)],
    );
    let server_addr = server.addr_after("listening on ").await.to_string();
    let mut client = Proc::spawn(
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
    client
        .wait_for("connected to forward server", SECS(20))
        .await;

    // 8 MiB in 128 paced chunks: about two seconds of transfer.
    let data = payload(77, 8 << 20);
    let (echoed_tx, mut echoed_rx) = tokio::sync::watch::channel(0usize);
    let transfer = tokio::spawn(paced_echo(local, data.clone(), echoed_tx));
    tokio::time::timeout(SECS(30), echoed_rx.wait_for(|n| *n >= 1 << 20))
        .await
        .expect("the transfer gets going")
        .expect("progress");

    // Ctrl-C both ends mid-transfer.
    client.sigint();
    server.sigint();
    client.wait_for("shutting down gracefully", SECS(10)).await;
    server.wait_for("shutting down gracefully", SECS(10)).await;
    // New connections are no longer accepted ...
    assert!(
        wait_refused(local, SECS(10)).await,
        "the local listener closed"
    );

    // ... but the accepted transfer completes, byte for byte.
    let echoed = tokio::time::timeout(SECS(60), transfer)
        .await
        .expect("the transfer finishes")
        .expect("task")
        .expect("the transfer succeeds");
    assert_eq!(echoed.len(), data.len(), "every byte came back");
    assert!(echoed == data, "the bytes are the ones sent");

    assert_eq!(
        client.exit_code(SECS(30)).await,
        0,
        "client logs:\n{}",
        client.logs()
    );
    assert_eq!(
        server.exit_code(SECS(30)).await,
        0,
        "server logs:\n{}",
        server.logs()
    );
}

/// Starts a paced 6 MiB echo through `addr` and waits until 512 KiB of it came back.
/// Returns the bytes sent and the transfer.
async fn transfer_under_way(
    addr: SocketAddr,
    seed: u64,
) -> (Vec<u8>, tokio::task::JoinHandle<std::io::Result<Vec<u8>>>) {
    let data = payload(seed, 6 << 20);
    let (echoed_tx, mut echoed_rx) = tokio::sync::watch::channel(0usize);
    let transfer = tokio::spawn(paced_echo(addr, data.clone(), echoed_tx));
    tokio::time::timeout(SECS(30), echoed_rx.wait_for(|n| *n >= 512 << 10))
        .await
        .expect("the transfer gets going")
        .expect("progress");
    (data, transfer)
}

/// The echo a transfer got back, once it finished.
async fn finished(transfer: tokio::task::JoinHandle<std::io::Result<Vec<u8>>>) -> Vec<u8> {
    tokio::time::timeout(SECS(60), transfer)
        .await
        .expect("the transfer finishes")
        .expect("task")
        .expect("the transfer succeeds")
}

/// A tunnel server exposing one port and a connected tunnel client whose target is an echo
/// server: (server, client, exposed address).
async fn tunnel_to_echo(protocol: &str) -> (Proc, Proc, SocketAddr) {
    let target = echo_server().await.to_string();
    let server = Proc::spawn(
        "tunnel server",
        &[
            "--protocol",
            protocol,
            "tunnel",
            "server",
            "--listen",
            "127.0.0.1:0",
            "--expose",
            "127.0.0.1:0",
        ],
        &[("POLYMUX_TOKEN", TOKEN)],
    );
    let control = server.addr_after("listening on ").await.to_string();
    let exposed = server.addr_after("exposing service default on ").await;
    let client = Proc::spawn(
        "tunnel client",
        &[
            "--protocol",
            protocol,
            "tunnel",
            "client",
            "--server",
            &control,
            "--target",
            &target,
        ],
        &[("POLYMUX_TOKEN", TOKEN)],
    );
    client.wait_for("tunnel up", SECS(20)).await;
    (server, client, exposed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_on_a_tunnel_client_drains_then_exits() {
    let (mut server, mut client, exposed) = tunnel_to_echo("netmux").await;

    let (data, transfer) = transfer_under_way(exposed, 5).await;
    client.sigint();
    let echoed = finished(transfer).await;
    assert!(echoed == data, "every byte came back");
    assert_eq!(
        client.exit_code(SECS(30)).await,
        0,
        "client logs:\n{}",
        client.logs()
    );
    server.sigint();
    assert_eq!(
        server.exit_code(SECS(30)).await,
        0,
        "server logs:\n{}",
        server.logs()
    );
}

/// Ctrl-C on the tunnel *server* mid-transfer: its exposed port stops accepting, the
/// connection already carried through the tunnel finishes byte for byte, and it exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_on_a_tunnel_server_lets_the_carried_transfer_finish() {
    let (mut server, mut client, exposed) = tunnel_to_echo("yamux").await;

    let (data, transfer) = transfer_under_way(exposed, 9).await;
    server.sigint();
    server.wait_for("shutting down gracefully", SECS(10)).await;
    assert!(
        wait_refused(exposed, SECS(10)).await,
        "the exposed port closed"
    );
    let echoed = finished(transfer).await;
    assert!(echoed == data, "every byte came back");
    assert_eq!(
        server.exit_code(SECS(30)).await,
        0,
        "server logs:\n{}",
        server.logs()
    );
    client.sigint();
    assert_eq!(
        client.exit_code(SECS(30)).await,
        0,
        "client logs:\n{}",
        client.logs()
    );
}

/// A connection that outlives --shutdown-timeout is cut off, and the exit code says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_cut_off_at_the_shutdown_timeout_exit_1() {
    let target = echo_server().await.to_string();
    let server = Proc::spawn(
        "forward server",
        &[
            "forward",
            "server",
            "--listen",
            "127.0.0.1:0",
            "--target",
            &target,
        ],
        &[("POLYMUX_TOKEN", TOKEN)],
    );
    let server_addr = server.addr_after("listening on ").await.to_string();
    let mut client = Proc::spawn(
        "forward client",
        &[
            "forward",
            "client",
            "--listen",
            "127.0.0.1:0",
            "--server",
            &server_addr,
            "--shutdown-timeout",
            "1s",
        ],
        &[("POLYMUX_TOKEN", TOKEN)],
    );
    let local = client.addr_after("forwarding ").await;
    client
        .wait_for("connected to forward server", SECS(20))
        .await;
    // An idle connection that never finishes.
    let mut idle = TcpStream::connect(local).await.expect("connect");
    idle.write_all(b"x").await.expect("write");
    let mut byte = [0u8; 1];
    idle.read_exact(&mut byte).await.expect("echo");
    client.sigint();
    assert_eq!(
        client.exit_code(SECS(20)).await,
        1,
        "logs:\n{}",
        client.logs()
    );
    assert!(client.logs().contains("cut off"), "{}", client.logs());
}

/// `polymux echo` at Ctrl-C: streams still open get `--shutdown-timeout` to finish; one that
/// finishes in time means exit 0, one that has to be cut off exit 1 with a message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_lets_open_streams_finish_and_says_when_it_cut_them_off() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    for finish_in_time in [true, false] {
        let mut echo = Proc::spawn(
            "echo",
            &[
                "echo",
                "--listen",
                "127.0.0.1:0",
                "--shutdown-timeout",
                "2s",
            ],
            &[],
        );
        let addr = echo.addr_after("listening on ").await;
        let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let (session, _driver) = polymux::tokio::client(tcp, polymux::Config::yamux());
        let mut stream = session.open().await.expect("open");
        stream.write_all(b"ping").await.expect("write");
        let mut got = [0u8; 4];
        stream.read_exact(&mut got).await.expect("echo");
        assert_eq!(&got, b"ping");

        echo.sigint();
        echo.wait_for("streams to finish", Duration::from_secs(5))
            .await;
        if finish_in_time {
            // The stream still works during the drain, then ends cleanly.
            stream
                .write_all(b"late")
                .await
                .expect("write while draining");
            stream.shutdown().await.expect("half-close");
            let mut rest = Vec::new();
            stream.read_to_end(&mut rest).await.expect("read to EOF");
            assert_eq!(rest, b"late");
            assert_eq!(
                echo.exit_code(Duration::from_secs(10)).await,
                0,
                "{}",
                echo.logs()
            );
        } else {
            assert_eq!(
                echo.exit_code(Duration::from_secs(10)).await,
                1,
                "{}",
                echo.logs()
            );
            assert!(echo.logs().contains("cut off"), "{}", echo.logs());
        }
    }
}

/// Ctrl-C during `polymux bench` stops the running scenario at once (not after it, which
/// could take up to --timeout), prints what was measured, and exits 1 saying so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_interrupts_a_running_bench() {
    // 64 GiB on one stream: far longer than this test waits.
    let mut bench = Proc::spawn(
        "bench",
        &[
            "bench",
            "--protocol",
            "yamux",
            "--no-tcp",
            "--only",
            "bulk",
            "--size",
            "64GiB",
        ],
        &[],
    );
    bench.wait_for("bulk ...", SECS(30)).await;
    bench.sigint();
    assert_eq!(bench.exit_code(SECS(15)).await, 1, "{}", bench.logs());
    assert!(bench.logs().contains("interrupted"), "{}", bench.logs());
}
