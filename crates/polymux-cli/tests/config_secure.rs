//! End to end, on the real binary: config files that use the transports and services of
//! both feature sets together — Noise keys (`noise_key`, `noise_pin`) and TLS (`[tls]` from
//! `polymux cert`) in the file, `udp://` services with their own tokens and the file's UDP
//! settings, UDP flows in the per-service metrics, and a reload that adds and removes a UDP
//! service. Everything on 127.0.0.1; every wait bounded.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{echo_roundtrip, echo_server, payload, Proc};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

const SECS: fn(u64) -> Duration = Duration::from_secs;
const WEB_TOKEN: &str = "secure-web-token-0123456789abcdef";
const DNS_TOKEN: &str = "secure-dns-token-0123456789abcdef";

/// A fresh directory for one test's files.
fn dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("polymux-secure-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// Writes `text` to `path` atomically (a reload never sees half a file).
fn write(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).expect("write");
    std::fs::rename(&tmp, path).expect("rename");
}

/// Runs `polymux ARGS` in `cwd` to completion: its stdout (the command must succeed).
fn run_in(cwd: &Path, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_polymux"))
        .args(args)
        .current_dir(cwd)
        .env_remove("POLYMUX_TOKEN")
        .env_remove("RUST_LOG")
        .output()
        .expect("run polymux");
    assert!(
        out.status.success(),
        "polymux {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// A UDP echo server on 127.0.0.1.
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

/// Sends `datagram` and waits for it back whole, resending (UDP may drop) up to 5 times.
async fn udp_roundtrip(socket: &UdpSocket, to: SocketAddr, datagram: &[u8]) -> Result<(), String> {
    let mut buf = vec![0u8; 65536];
    for _ in 0..5 {
        socket
            .send_to(datagram, to)
            .await
            .map_err(|e| e.to_string())?;
        if let Ok(received) = tokio::time::timeout(SECS(2), socket.recv(&mut buf)).await {
            let n = received.map_err(|e| e.to_string())?;
            return if buf[..n] == *datagram {
                Ok(())
            } else {
                Err(format!(
                    "got {n} bytes for a {}-byte datagram",
                    datagram.len()
                ))
            };
        }
    }
    Err(format!("no answer to a {}-byte datagram", datagram.len()))
}

/// Scrapes `GET /metrics`.
async fn scrape(addr: SocketAddr) -> String {
    let mut tcp = TcpStream::connect(addr).await.expect("connect to metrics");
    tcp.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("request");
    let mut response = String::new();
    tokio::time::timeout(SECS(10), tcp.read_to_string(&mut response))
        .await
        .expect("scrape within 10 s")
        .expect("read");
    assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");
    response
}

/// The value of the series `name` (labels exactly as printed).
fn value(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

async fn metrics_addr(proc: &Proc) -> SocketAddr {
    let line = proc.wait_for("serving metrics on http://", SECS(20)).await;
    let rest = &line[line.find("http://").expect("url") + 7..];
    rest.trim_end_matches("/metrics")
        .split('/')
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no address in {line:?}"))
}

/// Polls `addr`'s metrics until `done` holds (bounded); returns the last scrape.
async fn metrics_until(addr: SocketAddr, what: &str, done: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + SECS(20);
    loop {
        let text = scrape(addr).await;
        if done(&text) {
            return text;
        }
        assert!(Instant::now() < deadline, "{what} never showed:\n{text}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A Noise tunnel entirely from config files: the server's `noise_key`, the client's
/// `noise_pin`, a TCP and a `udp://` service with their own tokens, and `udp_idle_timeout`
/// from the file. Both services work; the UDP flow shows in the per-service metrics on both
/// sides (one connection, its datagram bytes both ways) and is closed by the file's idle
/// timeout; a client presenting a wrong token for the UDP service gets no flow while its TCP
/// service works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn noise_and_udp_services_from_config_files_are_metered() {
    let (web_target, dns_target) = (echo_server().await, udp_echo_server().await);
    let dir = dir("noise-udp");
    let pin = run_in(&dir, &["keygen", "--out", "server.key"]);
    let server_toml = dir.join("server.toml");
    write(
        &server_toml,
        &format!(
            "listen = \"127.0.0.1:0\"\nnoise_key = \"server.key\"\nmetrics = \"127.0.0.1:0\"\n\
             udp_idle_timeout = \"300ms\"\nwait_for_client = \"1s\"\n\n\
             [services.web]\nbind = \"127.0.0.1:0\"\ntoken = \"{WEB_TOKEN}\"\n\n\
             [services.dns]\nbind = \"udp://127.0.0.1:0\"\ntoken = \"{DNS_TOKEN}\"\n"
        ),
    );
    let server = Proc::spawn(
        "tunnel server",
        &["-v", "tunnel", "server", "--config", path_str(&server_toml)],
        &[],
    );
    let control = server.addr_after("listening on ").await;
    let web = server.addr_after("exposing service web on ").await;
    let dns = server.addr_after("exposing UDP service dns on ").await;
    let server_metrics = metrics_addr(&server).await;
    assert!(
        server.logs().contains(&format!("Noise public key {pin}")),
        "{}",
        server.logs()
    );
    assert!(server.logs().contains(", Noise)"), "{}", server.logs());

    let client_toml = |name: &str, dns_token: &str| {
        let path = dir.join(name);
        write(
            &path,
            &format!(
                "server = \"{control}\"\nnoise_pin = \"{pin}\"\nmetrics = \"127.0.0.1:0\"\n\n\
                 [services.web]\ntarget = \"{web_target}\"\ntoken = \"{WEB_TOKEN}\"\n\n\
                 [services.dns]\ntarget = \"udp://{dns_target}\"\ntoken = \"{dns_token}\"\n"
            ),
        );
        path
    };
    let good = client_toml("client.toml", DNS_TOKEN);
    let client = Proc::spawn(
        "tunnel client",
        &["tunnel", "client", "--config", path_str(&good)],
        &[],
    );
    let client_metrics = metrics_addr(&client).await;
    client.wait_for("tunnel up", SECS(20)).await;

    let data = payload(7, 100_000);
    assert!(echo_roundtrip(web, data.clone()).await.expect("web") == data);
    let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let sizes = [1usize, 100, 1400, 9000];
    for (i, len) in sizes.into_iter().enumerate() {
        if let Err(e) = udp_roundtrip(&socket, dns, &payload(i as u64, len)).await {
            panic!(
                "{e}\nserver:\n{}\nclient:\n{}",
                server.logs(),
                client.logs()
            );
        }
    }
    let udp_bytes: usize = sizes.iter().sum();

    // The flow ends by the file's 300 ms idle timeout (the default is 60 s).
    let dns_series =
        |side: &str| format!("polymux_service_bytes_total{{service=\"dns\",direction=\"{side}\"}}");
    let text = metrics_until(server_metrics, "the closed UDP flow", |t| {
        value(t, "polymux_service_connections_open{service=\"dns\"}") == Some(0.0)
            && value(t, "polymux_service_connections_total{service=\"dns\"}") == Some(1.0)
    })
    .await;
    for side in ["to_target", "from_target"] {
        let bytes = value(&text, &dns_series(side)).expect("dns bytes");
        // At least every datagram once (a datagram lost on loopback would be resent).
        assert!(bytes >= udp_bytes as f64, "{side}: {bytes}\n{text}");
    }
    assert_eq!(
        value(
            &text,
            "polymux_service_datagrams_dropped_total{service=\"dns\"}"
        ),
        Some(0.0),
        "one datagram at a time never fills a queue\n{text}"
    );
    assert!(server.logs().contains("UDP flow from"), "{}", server.logs());
    let text = metrics_until(client_metrics, "the client's UDP flow", |t| {
        value(t, "polymux_service_connections_total{service=\"dns\"}") == Some(1.0)
            && value(t, &dns_series("from_target")).is_some_and(|b| b >= udp_bytes as f64)
    })
    .await;
    assert!(value(&text, &dns_series("to_target")).is_some_and(|b| b >= udp_bytes as f64));

    // A client whose dns token is wrong: the server refuses that token (logged on both
    // sides) and never routes the UDP service to it; its TCP service still works.
    let mut client = client;
    client.sigint();
    assert_eq!(client.exit_code(SECS(20)).await, 0, "{}", client.logs());
    let refused_before = value(
        &scrape(server_metrics).await,
        "polymux_service_refused_total{service=\"dns\"}",
    )
    .unwrap_or(0.0);
    let bad = client_toml("bad.toml", "secure-dns-token-wrong-0123456789");
    let client = Proc::spawn(
        "tunnel client",
        &["tunnel", "client", "--config", path_str(&bad)],
        &[],
    );
    client
        .wait_for("refused some service tokens", SECS(20))
        .await;
    client.wait_for("tunnel up", SECS(20)).await;
    assert!(echo_roundtrip(web, data.clone()).await.expect("web") == data);
    // The server waits wait_for_client (1 s) for a client with the dns token, then
    // counts the flow refused; no datagram comes back meanwhile.
    socket.send_to(b"nobody", dns).await.expect("send");
    metrics_until(server_metrics, "the refused UDP flow", |t| {
        value(t, "polymux_service_refused_total{service=\"dns\"}")
            .is_some_and(|n| n > refused_before)
    })
    .await;
    let mut buf = [0u8; 64];
    assert!(
        tokio::time::timeout(Duration::from_millis(200), socket.recv(&mut buf))
            .await
            .is_err(),
        "a datagram came back through a client without the dns token"
    );
    drop(client);
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

/// TLS from config files (`polymux cert` output: `[tls] cert/key` on the server, `ca` on the
/// client), and a reload of the server that adds a `udp://` service, which then carries
/// datagrams, and removes it again while the TCP service keeps working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_config_reload_adds_and_removes_a_udp_service() {
    let (web_target, dns_target) = (echo_server().await, udp_echo_server().await);
    let dir = dir("tls-udp-reload");
    let tls_pin = run_in(&dir, &["cert", "--cert", "cert.pem", "--key", "key.pem"]);
    assert_eq!(tls_pin.len(), 64, "{tls_pin}");
    let server_toml = dir.join("server.toml");
    let base = format!(
        "listen = \"127.0.0.1:0\"\ntoken = \"{WEB_TOKEN}\"\n\n[tls]\ncert = \"cert.pem\"\n\
         key = \"key.pem\"\n\n[services.web]\nbind = \"127.0.0.1:0\"\n"
    );
    write(&server_toml, &base);
    let server = Proc::spawn(
        "tunnel server",
        &["tunnel", "server", "--config", path_str(&server_toml)],
        &[],
    );
    let control = server.addr_after("listening on ").await;
    let web = server.addr_after("exposing service web on ").await;
    assert!(server.logs().contains(", TLS)"), "{}", server.logs());

    let client_toml = dir.join("client.toml");
    write(
        &client_toml,
        &format!(
            "server = \"{control}\"\ntoken = \"{WEB_TOKEN}\"\n\n[tls]\nca = \"cert.pem\"\n\
             server_name = \"localhost\"\n\n[services.web]\ntarget = \"{web_target}\"\n\n\
             [services.dns]\ntarget = \"udp://{dns_target}\"\n"
        ),
    );
    let client = Proc::spawn(
        "tunnel client",
        &["tunnel", "client", "--config", path_str(&client_toml)],
        &[],
    );
    client.wait_for("tunnel up", SECS(20)).await;
    let data = payload(3, 50_000);
    assert!(echo_roundtrip(web, data.clone()).await.expect("web") == data);

    write(
        &server_toml,
        &format!("{base}\n[services.dns]\nbind = \"udp://127.0.0.1:0\"\n"),
    );
    let dns = server.addr_after("exposing UDP service dns on ").await;
    let reloaded = server.wait_for("configuration reloaded", SECS(20)).await;
    assert!(reloaded.contains("added: dns"), "{reloaded}");
    let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    for (i, len) in [10usize, 1000, 20_000].into_iter().enumerate() {
        if let Err(e) = udp_roundtrip(&socket, dns, &payload(i as u64, len)).await {
            panic!(
                "{e}\nserver:\n{}\nclient:\n{}",
                server.logs(),
                client.logs()
            );
        }
    }

    write(&server_toml, &base);
    let deadline = Instant::now() + SECS(20);
    while server.count("configuration reloaded") < 2 {
        assert!(Instant::now() < deadline, "{}", server.logs());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(server.logs().contains("removed: dns"), "{}", server.logs());
    assert!(echo_roundtrip(web, data.clone()).await.expect("web") == data);
    assert_eq!(
        server.count("exposing service web on "),
        1,
        "the untouched TCP service kept its listener"
    );
    drop(client);
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}
