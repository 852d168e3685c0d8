//! End to end on the real binary: UDP services through a tunnel (datagram boundaries, several
//! flows, idle flows reaped), Noise (`keygen`, right and wrong pins, a client without Noise),
//! and `polymux cert` (its output works with both `--tls-ca` and `--tls-pin`; a client that
//! stops gracefully leaves no close_notify warning on the server).

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{echo_roundtrip, echo_server, payload, Proc, TOKEN};
use tokio::net::UdpSocket;

const SECS: fn(u64) -> Duration = Duration::from_secs;

/// A fresh, empty directory for this test's files.
fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("polymux-e2e-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// Runs `polymux ARGS` to completion: (exit code, stdout, stderr).
fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_polymux"))
        .args(args)
        .env_remove("POLYMUX_TOKEN")
        .env_remove("RUST_LOG")
        .output()
        .expect("run polymux");
    (
        out.status.code().expect("exit code"),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn is_hex64(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

/// A UDP echo server on 127.0.0.1: every datagram goes back to its sender as is.
async fn udp_echo_server() -> SocketAddr {
    let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let addr = socket.local_addr().expect("addr");
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65536];
        while let Ok((n, from)) = socket.recv_from(&mut buf).await {
            let _ = socket.send_to(&buf[..n], from).await;
        }
    });
    addr
}

/// Sends `datagram` to `to` and waits for the same datagram back, resending (UDP may drop)
/// up to 5 times, 2 s each.
async fn udp_roundtrip(socket: &UdpSocket, to: SocketAddr, datagram: &[u8]) -> Result<(), String> {
    let mut buf = vec![0u8; 65536];
    for _ in 0..5 {
        socket
            .send_to(datagram, to)
            .await
            .map_err(|e| e.to_string())?;
        if let Ok(received) = tokio::time::timeout(SECS(2), socket.recv(&mut buf)).await {
            let n = received.map_err(|e| e.to_string())?;
            // One datagram in, one out: the boundaries survived the stream.
            return if buf[..n] == *datagram {
                Ok(())
            } else {
                Err(format!(
                    "got {n} bytes back for a {}-byte datagram",
                    datagram.len()
                ))
            };
        }
    }
    Err(format!("no answer to a {}-byte datagram", datagram.len()))
}

/// Several UDP flows through a tunnel, each datagram coming back whole and alone; idle flows
/// are closed, and the next datagram of the same source opens a new flow that works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_echo_through_the_tunnel() {
    let echo = udp_echo_server().await;
    let server = Proc::spawn(
        "tunnel server",
        &[
            "-v",
            "tunnel",
            "server",
            "--listen",
            "127.0.0.1:0",
            "--expose",
            "dns=udp://127.0.0.1:0",
            "--udp-idle-timeout",
            "1s",
        ],
        &[("POLYMUX_TOKEN", TOKEN)],
    );
    let control = server.addr_after("listening on ").await.to_string();
    let exposed = server.addr_after("exposing UDP service dns on ").await;
    let target = format!("dns=udp://{echo}");
    let client = Proc::spawn(
        "tunnel client",
        &[
            "tunnel", "client", "--server", &control, "--target", &target,
        ],
        &[("POLYMUX_TOKEN", TOKEN)],
    );
    client.wait_for("tunnel up", SECS(20)).await;

    const FLOWS: usize = 4;
    let mut sockets = Vec::new();
    for _ in 0..FLOWS {
        sockets.push(UdpSocket::bind("127.0.0.1:0").await.expect("bind"));
    }
    let flows = sockets.iter().enumerate().map(|(f, socket)| async move {
        // Sizes from empty to 60 000 bytes, so that frames span many reads.
        for (i, len) in [0usize, 1, 100, 1400, 9000, 60_000].into_iter().enumerate() {
            let datagram = payload((f * 100 + i) as u64, len);
            udp_roundtrip(socket, exposed, &datagram).await?;
        }
        Ok::<_, String>(())
    });
    for result in futures::future::join_all(flows).await {
        if let Err(e) = result {
            panic!(
                "{e}\nserver:\n{}\nclient:\n{}",
                server.logs(),
                client.logs()
            );
        }
    }
    assert_eq!(
        server.count("new UDP flow from"),
        FLOWS,
        "one flow per source"
    );

    // Idle for 1 s: every flow is closed, then a datagram from a known source starts anew.
    let deadline = Instant::now() + SECS(20);
    while server.count("closed (idle)") < FLOWS {
        assert!(
            Instant::now() < deadline,
            "idle flows were not reaped; server:\n{}",
            server.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    udp_roundtrip(&sockets[0], exposed, b"again")
        .await
        .expect("a new flow after the idle one closed");
    assert_eq!(server.count("new UDP flow from"), FLOWS + 1);
}

/// `polymux keygen` writes the key pair and prints the pin; a Noise tunnel works with the
/// right pin, and a wrong pin or a client without Noise fails at once with exit code 4 and a
/// message that says what to fix.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn noise_tunnel_with_right_and_wrong_pins() {
    let dir = temp_dir("noise");
    let key = dir.join("server.key");
    let key_s = key.to_str().expect("utf-8 path");
    let (code, stdout, stderr) = run(&["keygen", "--out", key_s]);
    assert_eq!(code, 0, "keygen: {stderr}");
    let pin = stdout.trim().to_owned();
    assert!(
        is_hex64(&pin),
        "keygen prints the 64-hex public key only: {stdout:?}"
    );
    assert_eq!(stdout, format!("{pin}\n"));
    let public = std::fs::read_to_string(dir.join("server.key.pub")).expect("FILE.pub");
    assert_eq!(public.trim(), pin);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key).expect("key").permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the private key is for its owner only");
    }
    let (code, _, stderr) = run(&["keygen", "--out", key_s]);
    assert_eq!(code, 4, "no overwrite without --force: {stderr}");
    assert!(stderr.contains("--force"), "{stderr}");

    let echo = echo_server().await;
    let server = Proc::spawn(
        "tunnel server",
        &[
            "tunnel",
            "server",
            "--listen",
            "127.0.0.1:0",
            "--expose",
            "web=127.0.0.1:0",
            "--noise-key",
            key_s,
        ],
        &[("POLYMUX_TOKEN", TOKEN)],
    );
    let control = server.addr_after("listening on ").await.to_string();
    let exposed = server.addr_after("exposing service web on ").await;
    let logged = server.wait_for("Noise public key ", SECS(10)).await;
    assert!(logged.contains(&pin), "the server logs the pin: {logged}");
    let target = format!("web={echo}");
    let client_args = |pin: Option<&str>| {
        let mut args = vec![
            "tunnel".to_owned(),
            "client".to_owned(),
            "--server".to_owned(),
            control.clone(),
            "--target".to_owned(),
            target.clone(),
        ];
        if let Some(pin) = pin {
            args.extend(["--noise-pin".to_owned(), pin.to_owned()]);
        }
        args
    };
    let args = client_args(Some(&pin));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let client = Proc::spawn("tunnel client", &args, &[("POLYMUX_TOKEN", TOKEN)]);
    client.wait_for("tunnel up", SECS(20)).await;
    let data = payload(7, 3 << 20);
    let echoed = echo_roundtrip(exposed, data.clone()).await.expect("echo");
    assert!(
        echoed == data,
        "3 MiB came back byte for byte through Noise"
    );
    drop(client);

    // A wrong pin: exit 4, naming the server's real key.
    let wrong: String = pin
        .chars()
        .map(|c| if c == '0' { '1' } else { '0' })
        .collect();
    let args = client_args(Some(&wrong));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut client = Proc::spawn("wrong-pin client", &args, &[("POLYMUX_TOKEN", TOKEN)]);
    assert_eq!(client.exit_code(SECS(20)).await, 4, "{}", client.logs());
    let logs = client.logs();
    assert!(
        logs.contains(&format!(
            "Noise public key is {pin}, not the pinned {wrong}"
        )),
        "{logs}"
    );

    // No pin against a Noise server: exit 4, told to add --noise-pin.
    let args = client_args(None);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut client = Proc::spawn("plain client", &args, &[("POLYMUX_TOKEN", TOKEN)]);
    assert_eq!(client.exit_code(SECS(20)).await, 4, "{}", client.logs());
    assert!(client.logs().contains("--noise-pin"), "{}", client.logs());
    let _ = std::fs::remove_dir_all(&dir);
}

/// `polymux cert` makes a certificate that works with `--tls-ca` (by IP and by name) and with
/// `--tls-pin` (the printed pin is the one the server logs); a client that stops gracefully
/// leaves no close_notify warning on the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cert_output_works_with_tls_ca_and_tls_pin() {
    let dir = temp_dir("cert");
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let (cert_s, key_s) = (cert.to_str().expect("utf-8"), key.to_str().expect("utf-8"));
    let (code, stdout, stderr) = run(&["cert", "--cert", cert_s, "--key", key_s]);
    assert_eq!(code, 0, "cert: {stderr}");
    let pin = stdout.trim().to_owned();
    assert!(
        is_hex64(&pin),
        "cert prints the SHA-256 pin only: {stdout:?}"
    );
    assert!(
        stderr.contains("--tls-ca") && stderr.contains("--tls-pin"),
        "{stderr}"
    );

    let echo = echo_server().await;
    let server = Proc::spawn(
        "tunnel server",
        &[
            "tunnel",
            "server",
            "--listen",
            "127.0.0.1:0",
            "--expose",
            "web=127.0.0.1:0",
            "--tls-cert",
            cert_s,
            "--tls-key",
            key_s,
        ],
        &[("POLYMUX_TOKEN", TOKEN)],
    );
    let control = server.addr_after("listening on ").await;
    let exposed = server.addr_after("exposing service web on ").await;
    let logged = common::logged_fingerprint(&server).await;
    assert_eq!(logged, pin, "the printed pin is the one the server logs");
    let target = format!("web={echo}");
    let by_ip = control.to_string();
    let by_name = format!("localhost:{}", control.port());
    let cases: [(&str, &str, &str); 3] = [
        (by_ip.as_str(), "--tls-ca", cert_s),
        (by_name.as_str(), "--tls-ca", cert_s),
        (by_ip.as_str(), "--tls-pin", pin.as_str()),
    ];
    for (n, (server_addr, flag, value)) in cases.into_iter().enumerate() {
        let mut client = Proc::spawn(
            "tunnel client",
            &[
                "tunnel",
                "client",
                "--server",
                server_addr,
                "--target",
                &target,
                flag,
                value,
            ],
            &[("POLYMUX_TOKEN", TOKEN)],
        );
        client.wait_for("tunnel up", SECS(20)).await;
        let data = payload(n as u64, 100_000);
        let echoed = echo_roundtrip(exposed, data.clone()).await.expect("echo");
        assert!(echoed == data, "{flag} {server_addr}: echo differs");
        client.sigint();
        assert_eq!(client.exit_code(SECS(20)).await, 0, "{}", client.logs());
        // The server sees this client go before the next one connects.
        let deadline = Instant::now() + SECS(20);
        while server.count("disconnected (session") + server.count("lost (session") <= n {
            assert!(Instant::now() < deadline, "{}", server.logs());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let logs = server.logs();
    assert!(
        !logs.contains("close_notify") && !logs.contains("WARN"),
        "graceful clients leave no warning: {logs}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Mistakes with the new flags stop at once with the usual exit codes and say what to fix.
#[test]
fn noise_and_udp_mistakes_are_reported() {
    let pin = "ab".repeat(32);
    let (code, _, stderr) = run(&[
        "tunnel",
        "client",
        "--server",
        "127.0.0.1:1",
        "--target",
        "127.0.0.1:2",
        "--tls",
        "--noise-pin",
        &pin,
    ]);
    assert_eq!(
        code, 2,
        "TLS and Noise together are a usage error: {stderr}"
    );
    let (code, _, stderr) = run(&[
        "tunnel",
        "client",
        "--server",
        "127.0.0.1:1",
        "--target",
        "127.0.0.1:2",
        "--noise-pin",
        "abc",
    ]);
    assert_eq!(code, 4, "{stderr}");
    assert!(stderr.contains("not a Noise public key"), "{stderr}");
    let (code, _, stderr) = run(&[
        "tunnel",
        "server",
        "--listen",
        "127.0.0.1:0",
        "--expose",
        "127.0.0.1:0",
        "--insecure-no-token",
        "--noise-key",
        "/nonexistent/polymux.key",
    ]);
    assert_eq!(code, 4, "{stderr}");
    assert!(stderr.contains("polymux keygen --out"), "{stderr}");
    let (code, _, stderr) = run(&[
        "forward",
        "client",
        "--listen",
        "udp://127.0.0.1:0",
        "--server",
        "127.0.0.1:1",
    ]);
    assert_eq!(code, 4, "{stderr}");
    assert!(stderr.contains("polymux tunnel` only"), "{stderr}");
}

/// A TLS client against a Noise server, and a Noise client against a TLS server, stop at once
/// with exit code 4 (no retrying, no waiting out the handshake timeout).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_and_noise_mismatches_are_configuration_errors() {
    let dir = temp_dir("mismatch");
    let key = dir.join("server.key");
    let (cert, tls_key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let (key_s, cert_s, tls_key_s) = (
        key.to_str().expect("utf-8"),
        cert.to_str().expect("utf-8"),
        tls_key.to_str().expect("utf-8"),
    );
    let (code, noise_pin, _) = run(&["keygen", "--out", key_s]);
    assert_eq!(code, 0);
    let (code, tls_pin, _) = run(&["cert", "--cert", cert_s, "--key", tls_key_s]);
    assert_eq!(code, 0);
    let serve = |extra: &[&str]| {
        let mut args = vec![
            "tunnel",
            "server",
            "--listen",
            "127.0.0.1:0",
            "--expose",
            "127.0.0.1:0",
            // Far beyond the client's 20 s below: an exit within it is the server saying no
            // at once, not the handshake timing out.
            "--handshake-timeout",
            "300s",
        ];
        args.extend(extra);
        Proc::spawn("tunnel server", &args, &[("POLYMUX_TOKEN", TOKEN)])
    };
    let noise_server = serve(&["--noise-key", key_s]);
    let tls_server = serve(&["--tls-cert", cert_s, "--tls-key", tls_key_s]);
    let noise_addr = noise_server.addr_after("listening on ").await.to_string();
    let tls_addr = tls_server.addr_after("listening on ").await.to_string();
    let cases = [
        (
            noise_addr.as_str(),
            "--tls-pin",
            tls_pin.trim(),
            "TLS handshake",
        ),
        (
            tls_addr.as_str(),
            "--noise-pin",
            noise_pin.trim(),
            "--noise-key",
        ),
    ];
    for (server, flag, pin, needle) in cases {
        let mut client = Proc::spawn(
            "tunnel client",
            &[
                "tunnel",
                "client",
                "--server",
                server,
                "--target",
                "127.0.0.1:1",
                flag,
                pin,
            ],
            &[("POLYMUX_TOKEN", TOKEN)],
        );
        assert_eq!(client.exit_code(SECS(20)).await, 4, "{}", client.logs());
        assert!(client.logs().contains(needle), "{}", client.logs());
    }
    let _ = std::fs::remove_dir_all(&dir);
}
