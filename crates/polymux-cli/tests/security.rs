//! End to end: tokens (wrong, missing, required to start) and TLS (CA, pinned certificate,
//! mismatches), with the exit codes scripts rely on (3 = authentication, 4 = TLS/config).

mod common;

use std::time::Duration;

use common::{
    echo_roundtrip, echo_server, logged_fingerprint, payload, self_signed_cert, Proc, TOKEN,
};

const SECS: fn(u64) -> Duration = Duration::from_secs;

async fn forward_server(target: &str, extra: &[&str]) -> (Proc, String) {
    let mut args = vec![
        "forward",
        "server",
        "--listen",
        "127.0.0.1:0",
        "--target",
        target,
    ];
    args.extend(extra);
    let server = Proc::spawn("forward server", &args, &[("POLYMUX_TOKEN", TOKEN)]);
    let addr = server.addr_after("listening on ").await.to_string();
    (server, addr)
}

/// `polymux forward client` on a free local port against the forward server at `server`.
fn forward_client(server: &str, envs: &[(&str, &str)]) -> Proc {
    Proc::spawn(
        "forward client",
        &[
            "forward",
            "client",
            "--listen",
            "127.0.0.1:0",
            "--server",
            server,
        ],
        envs,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_or_missing_token_is_refused_on_both_sides() {
    let target = echo_server().await.to_string();
    let (server, addr) = forward_server(&target, &[]).await;

    let mut wrong = forward_client(&addr, &[("POLYMUX_TOKEN", "not-the-right-token-at-all")]);
    assert_eq!(
        wrong.exit_code(SECS(20)).await,
        3,
        "exit 3; logs:\n{}",
        wrong.logs()
    );
    assert!(
        wrong.logs().contains("refused the token (wrong token)"),
        "{}",
        wrong.logs()
    );
    server
        .wait_for("authentication failed (wrong token)", SECS(10))
        .await;

    let mut missing = forward_client(&addr, &[]);
    assert_eq!(missing.exit_code(SECS(20)).await, 3);
    assert!(
        missing.logs().contains("requires a token"),
        "{}",
        missing.logs()
    );

    // A tunnel client with a wrong token does not retry forever either.
    let tunnel = Proc::spawn(
        "tunnel server",
        &[
            "tunnel",
            "server",
            "--listen",
            "127.0.0.1:0",
            "--expose",
            "127.0.0.1:0",
        ],
        &[("POLYMUX_TOKEN", TOKEN)],
    );
    let tunnel_addr = tunnel.addr_after("listening on ").await.to_string();
    let mut wrong = Proc::spawn(
        "tunnel client",
        &[
            "tunnel",
            "client",
            "--server",
            &tunnel_addr,
            "--target",
            "127.0.0.1:9",
        ],
        &[("POLYMUX_TOKEN", "not-the-right-token-at-all")],
    );
    assert_eq!(
        wrong.exit_code(SECS(20)).await,
        3,
        "logs:\n{}",
        wrong.logs()
    );
    tunnel.wait_for("authentication failed", SECS(10)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_refuse_to_start_without_a_token() {
    // Beyond loopback: refused even with --insecure-no-token (nothing is bound).
    for extra in [&[][..], &["--insecure-no-token"][..]] {
        let mut args = vec![
            "forward",
            "server",
            "--listen",
            "0.0.0.0:0",
            "--target",
            "127.0.0.1:9",
        ];
        args.extend(extra);
        let mut server = Proc::spawn("forward server", &args, &[]);
        assert_eq!(server.exit_code(SECS(10)).await, 4);
        assert!(
            server.logs().contains("without a token"),
            "{}",
            server.logs()
        );
    }
    // On loopback a token is still needed, unless --insecure-no-token.
    let mut server = Proc::spawn(
        "tunnel server",
        &[
            "tunnel",
            "server",
            "--listen",
            "127.0.0.1:0",
            "--expose",
            "127.0.0.1:0",
        ],
        &[],
    );
    assert_eq!(server.exit_code(SECS(10)).await, 4);
    assert!(
        server.logs().contains("--insecure-no-token"),
        "{}",
        server.logs()
    );

    let mut server = Proc::spawn(
        "tunnel server",
        &[
            "tunnel",
            "server",
            "--listen",
            "127.0.0.1:0",
            "--expose",
            "127.0.0.1:0",
            "--insecure-no-token",
        ],
        &[],
    );
    server.addr_after("listening on ").await;
    server.sigint();
    assert_eq!(server.exit_code(SECS(20)).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_a_ca_file_or_a_pinned_certificate() {
    let (cert, key) = self_signed_cert("tls");
    let (cert, key) = (
        cert.to_string_lossy().into_owned(),
        key.to_string_lossy().into_owned(),
    );
    let target = echo_server().await.to_string();
    let (server, addr) = forward_server(&target, &["--tls-cert", &cert, "--tls-key", &key]).await;
    let fingerprint = logged_fingerprint(&server).await;

    for (how, flags) in [
        ("CA file", vec!["--tls-ca", cert.as_str()]),
        ("pin", vec!["--tls-pin", fingerprint.as_str()]),
        (
            "CA file + localhost",
            vec!["--tls-ca", cert.as_str(), "--tls-server-name", "localhost"],
        ),
    ] {
        let mut args = vec![
            "forward",
            "client",
            "--listen",
            "127.0.0.1:0",
            "--server",
            &addr,
        ];
        args.extend(flags);
        let client = Proc::spawn("forward client", &args, &[("POLYMUX_TOKEN", TOKEN)]);
        let local = client.addr_after("forwarding ").await;
        client
            .wait_for("connected to forward server", SECS(20))
            .await;
        let data = payload(9, 1 << 20);
        let echoed = echo_roundtrip(local, data.clone())
            .await
            .expect("echo through TLS");
        assert!(echoed == data, "{how}: the echo through TLS differs");
    }

    // A wrong pin, an untrusted certificate, a wrong name: TLS errors, exit 4.
    let wrong_pin = "00".repeat(32);
    for (how, flags) in [
        ("wrong pin", vec!["--tls-pin", wrong_pin.as_str()]),
        ("system roots", vec!["--tls"]),
        (
            "wrong name",
            vec![
                "--tls-ca",
                cert.as_str(),
                "--tls-server-name",
                "example.com",
            ],
        ),
    ] {
        let mut args = vec![
            "forward",
            "client",
            "--listen",
            "127.0.0.1:0",
            "--server",
            &addr,
        ];
        args.extend(flags);
        let mut client = Proc::spawn("forward client", &args, &[("POLYMUX_TOKEN", TOKEN)]);
        assert_eq!(
            client.exit_code(SECS(20)).await,
            4,
            "{how}: logs:\n{}",
            client.logs()
        );
        assert!(client.logs().contains("TLS"), "{how}: {}", client.logs());
    }

    // A client without TLS against the TLS server gets a clear message.
    let mut plain = Proc::spawn(
        "forward client",
        &[
            "forward",
            "client",
            "--listen",
            "127.0.0.1:0",
            "--server",
            &addr,
            "--max-retries",
            "1",
        ],
        &[("POLYMUX_TOKEN", TOKEN)],
    );
    let code = plain.exit_code(SECS(20)).await;
    assert!(
        code == 4 || code == 1,
        "exit {code}; logs:\n{}",
        plain.logs()
    );
    assert!(plain.logs().contains("TLS"), "{}", plain.logs());
}

/// A reverse tunnel over TLS with a pinned certificate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tunnel_over_tls() {
    let (cert, key) = self_signed_cert("tunnel-tls");
    let (cert, key) = (
        cert.to_string_lossy().into_owned(),
        key.to_string_lossy().into_owned(),
    );
    let target = echo_server().await.to_string();
    let server = Proc::spawn(
        "tunnel server",
        &[
            "--protocol",
            "smux2",
            "tunnel",
            "server",
            "--listen",
            "127.0.0.1:0",
            "--expose",
            "echo=127.0.0.1:0",
            "--tls-cert",
            &cert,
            "--tls-key",
            &key,
        ],
        &[("POLYMUX_TOKEN", TOKEN)],
    );
    let control = server.addr_after("listening on ").await.to_string();
    let exposed = server.addr_after("exposing service echo on ").await;
    let fingerprint = logged_fingerprint(&server).await;
    let target_spec = format!("echo={target}");
    let client = Proc::spawn(
        "tunnel client",
        &[
            "--protocol",
            "smux2",
            "tunnel",
            "client",
            "--server",
            &control,
            "--target",
            &target_spec,
            "--tls-pin",
            &fingerprint,
        ],
        &[("POLYMUX_TOKEN", TOKEN)],
    );
    client.wait_for("tunnel up", SECS(20)).await;
    let data = payload(3, 2 << 20);
    let echoed = echo_roundtrip(exposed, data.clone()).await.expect("echo");
    assert!(echoed == data, "echo through the TLS tunnel differs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connections_cannot_take_the_client_slots() {
    let target = echo_server().await.to_string();
    let (server, addr) = forward_server(&target, &["--max-clients", "1"]).await;
    // Connections that never send a preamble: before authentication they hold no client slot.
    let mut silent = Vec::new();
    for _ in 0..8 {
        silent.push(
            tokio::net::TcpStream::connect(&addr)
                .await
                .expect("connect"),
        );
    }
    let first = forward_client(&addr, &[("POLYMUX_TOKEN", TOKEN)]);
    let local = first.addr_after("forwarding ").await;
    first.wait_for("connected to forward server", SECS(8)).await;
    let data = payload(7, 100_000);
    assert_eq!(
        echo_roundtrip(local, data.clone()).await.expect("echo"),
        data
    );

    // The one slot is taken by an authenticated client: the next one is told the server is busy.
    let second = forward_client(&addr, &[("POLYMUX_TOKEN", TOKEN)]);
    second.wait_for("is busy", SECS(20)).await;
    assert!(
        second.logs().contains("--max-clients"),
        "the refusal names the limit:\n{}",
        second.logs()
    );
    server
        .wait_for("limit of 1 forward clients reached", SECS(5))
        .await;
    drop(silent);
}
