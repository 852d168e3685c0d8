//! End to end, on the real binary: `--config` files with several services, hot reload
//! (added, removed and untouched services; a rejected file; SIGHUP), per-service tokens,
//! and the `--metrics` endpoint. Everything on 127.0.0.1; every wait bounded.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{echo_roundtrip, echo_server, http_like_request, http_like_server, payload, Proc};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const SECS: fn(u64) -> Duration = Duration::from_secs;
const DEFAULT_TOKEN: &str = "config-default-token-0123456789";
const WEB_TOKEN: &str = "config-web-token-0123456789abcd";
const API_TOKEN: &str = "config-api-token-0123456789abcd";

/// A fresh directory for one test's files.
fn dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("polymux-config-{name}-{}", std::process::id()));
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

fn spawn(name: &str, args: &[&str]) -> Proc {
    Proc::spawn(name, args, &[])
}

/// Starts a tunnel server from `config`; returns it, its control address and the exposed
/// address of each of `services`.
async fn server_from(
    config: &Path,
    services: &[&str],
    extra: &[&str],
) -> (Proc, SocketAddr, Vec<SocketAddr>) {
    let path = config.to_str().expect("utf-8 path");
    let mut args = vec!["tunnel", "server", "--config", path];
    args.extend(extra);
    let server = spawn("tunnel server", &args);
    let control = server.addr_after("listening on ").await;
    let mut exposed = Vec::new();
    for s in services {
        exposed.push(
            server
                .addr_after(&format!("exposing service {s} on "))
                .await,
        );
    }
    (server, control, exposed)
}

/// Waits until `proc` has logged `needle` at least `count` times.
async fn wait_count(proc: &Proc, needle: &str, count: usize) {
    let deadline = Instant::now() + SECS(20);
    while proc.count(needle) < count {
        assert!(
            Instant::now() < deadline,
            "fewer than {count} lines with {needle:?}; logs:\n{}",
            proc.logs()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One file, two services (web and api, each with its own token) on each side: both carry
/// byte-exact request/response traffic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_two_service_config_file_works() {
    let web = http_like_server("web").await;
    let api = http_like_server("api").await;
    let dir = dir("two");
    let server_toml = dir.join("server.toml");
    write(
        &server_toml,
        &format!(
            r#"listen = "127.0.0.1:0"
token = "{DEFAULT_TOKEN}"

[services.web]
bind = "127.0.0.1:0"
token = "{WEB_TOKEN}"

[services.api]
bind = "127.0.0.1:0"
"#
        ),
    );
    let (server, control, exposed) = server_from(&server_toml, &["api", "web"], &[]).await;
    let client_toml = dir.join("client.toml");
    write(
        &client_toml,
        &format!(
            r#"server = "{control}"
token = "{DEFAULT_TOKEN}"

[services.web]
target = "{web}"
token = "{WEB_TOKEN}"

[services.api]
target = "{api}"
"#
        ),
    );
    let client = spawn(
        "tunnel client",
        &[
            "tunnel",
            "client",
            "--config",
            client_toml.to_str().expect("path"),
        ],
    );
    client.wait_for("tunnel up", SECS(20)).await;
    let requests: Vec<_> = (0..40u64)
        .map(|id| {
            let (addr, tag) = if id % 2 == 0 {
                (exposed[1], "web")
            } else {
                (exposed[0], "api")
            };
            tokio::spawn(http_like_request(addr, id, tag))
        })
        .collect();
    for request in requests {
        if let Err(e) = request.await.expect("task") {
            panic!(
                "{e}\nclient:\n{}\nserver:\n{}",
                client.logs(),
                server.logs()
            );
        }
    }
    assert_eq!(
        server.count("refused service tokens"),
        0,
        "{}",
        server.logs()
    );
}

/// A connection whose echo is read in the background while the test writes in two halves.
struct Transfer {
    writer: tokio::net::tcp::OwnedWriteHalf,
    reader: tokio::task::JoinHandle<std::io::Result<Vec<u8>>>,
    data: Vec<u8>,
}

impl Transfer {
    async fn start(addr: SocketAddr, seed: u64, len: usize) -> Transfer {
        let tcp = TcpStream::connect(addr).await.expect("connect");
        let (mut r, mut w) = tcp.into_split();
        let reader = tokio::spawn(async move {
            let mut echoed = Vec::new();
            r.read_to_end(&mut echoed).await?;
            Ok(echoed)
        });
        let data = payload(seed, len);
        w.write_all(&data[..len / 2]).await.expect("first half");
        Transfer {
            writer: w,
            reader,
            data,
        }
    }

    async fn finish(mut self) -> bool {
        let half = self.data.len() / 2;
        self.writer
            .write_all(&self.data[half..])
            .await
            .expect("second half");
        self.writer.shutdown().await.expect("half-close");
        let echoed = tokio::time::timeout(SECS(30), self.reader)
            .await
            .expect("echo within 30 s")
            .expect("task")
            .expect("read");
        echoed == self.data
    }
}

/// Reload on both sides adds a service and removes another. A transfer on the untouched
/// service, and one on the removed service, both started before the reload, continue byte
/// for byte; the added service works; the removed one's port is closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_adds_and_removes_services_without_disturbing_the_others() {
    let (keep_target, old_target, new_target) = (
        echo_server().await,
        echo_server().await,
        echo_server().await,
    );
    let dir = dir("reload");
    let server_toml = dir.join("server.toml");
    let server_text = |services: &[&str]| {
        let mut text = format!("listen = \"127.0.0.1:0\"\ntoken = \"{DEFAULT_TOKEN}\"\n");
        for s in services {
            text.push_str(&format!("\n[services.{s}]\nbind = \"127.0.0.1:0\"\n"));
        }
        text
    };
    write(&server_toml, &server_text(&["keep", "old"]));
    let (server, control, exposed) = server_from(&server_toml, &["keep", "old"], &[]).await;
    let (keep, old) = (exposed[0], exposed[1]);
    let client_toml = dir.join("client.toml");
    let client_text = |services: &[(&str, SocketAddr)]| {
        let mut text = format!("server = \"{control}\"\ntoken = \"{DEFAULT_TOKEN}\"\n");
        for (s, target) in services {
            text.push_str(&format!("\n[services.{s}]\ntarget = \"{target}\"\n"));
        }
        text
    };
    write(
        &client_toml,
        &client_text(&[("keep", keep_target), ("old", old_target)]),
    );
    let client = spawn(
        "tunnel client",
        &[
            "tunnel",
            "client",
            "--config",
            client_toml.to_str().expect("path"),
        ],
    );
    client.wait_for("tunnel up", SECS(20)).await;

    let on_keep = Transfer::start(keep, 1, 4 << 20).await;
    let on_old = Transfer::start(old, 2, 1 << 20).await;

    write(&server_toml, &server_text(&["keep", "new"]));
    write(
        &client_toml,
        &client_text(&[("keep", keep_target), ("new", new_target)]),
    );
    server.wait_for("configuration reloaded", SECS(20)).await;
    client.wait_for("configuration reloaded", SECS(20)).await;
    let reloaded = server.wait_for("configuration reloaded", SECS(1)).await;
    assert!(
        reloaded.contains("added: new; removed: old; changed: none"),
        "{reloaded}"
    );
    let new = server.addr_after("exposing service new on ").await;

    // The added service works, the removed one's listener is gone.
    let echoed = echo_roundtrip(new, payload(3, 100_000))
        .await
        .expect("new service");
    assert!(echoed == payload(3, 100_000), "new service echoes");
    assert!(
        common::wait_refused(old, SECS(10)).await,
        "old's port closes"
    );

    // Both transfers that were open across the reload complete exactly.
    assert!(
        on_keep.finish().await,
        "the untouched service's transfer is exact"
    );
    assert!(
        on_old.finish().await,
        "the removed service's open connection drained"
    );
    // The tunnel itself was never renewed: one session throughout.
    assert_eq!(client.count("tunnel up"), 1, "{}", client.logs());
    assert_eq!(
        server.count("exposing service keep on "),
        1,
        "keep was not restarted"
    );
}

/// A file with an error is rejected at startup (exit 4, file:line: key) and on reload (an
/// error log; the running services keep serving). SIGHUP reloads the file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_file_is_rejected_and_the_running_config_stays() {
    let target = echo_server().await;
    let dir = dir("invalid");
    let bad = dir.join("bad.toml");
    write(&bad, "listen = \"127.0.0.1:0\"\nserver = \"127.0.0.1:1\"\n");
    let mut refused = spawn(
        "bad server",
        &[
            "tunnel",
            "server",
            "--config",
            bad.to_str().expect("path"),
            "--insecure-no-token",
        ],
    );
    assert_eq!(refused.exit_code(SECS(20)).await, 4);
    assert!(
        refused
            .logs()
            .contains("bad.toml:2: server: is for clients"),
        "{}",
        refused.logs()
    );

    let server_toml = dir.join("server.toml");
    let good = format!(
        "listen = \"127.0.0.1:0\"\ntoken = \"{DEFAULT_TOKEN}\"\n\n[services.echo]\nbind = \"127.0.0.1:0\"\n"
    );
    write(&server_toml, &good);
    let (server, control, exposed) = server_from(&server_toml, &["echo"], &[]).await;
    let client = spawn(
        "tunnel client",
        &[
            "tunnel",
            "client",
            "--server",
            &control.to_string(),
            "--target",
            &format!("echo={target}"),
            "--token",
            DEFAULT_TOKEN,
        ],
    );
    client.wait_for("tunnel up", SECS(20)).await;

    // A bad value on line 5 (and a missing service on the way): rejected, nothing changes.
    write(
        &server_toml,
        &format!("{good}\n[services.more]\nbind = \"nope\"\n"),
    );
    let rejected = server.wait_for("reload rejected", SECS(20)).await;
    let logs = server.logs();
    assert!(
        rejected.contains("server.toml") && logs.contains("line 8") && logs.contains("bind"),
        "the error names the file, line and key:\n{logs}"
    );
    let data = payload(7, 300_000);
    assert!(
        echo_roundtrip(exposed[0], data.clone())
            .await
            .expect("still serving")
            == data
    );
    assert_eq!(server.count("configuration reloaded"), 0);

    // Fixed and signalled: applied (the file changed, so the poll may get there first).
    write(
        &server_toml,
        &format!("{good}\n[services.more]\nbind = \"127.0.0.1:0\"\n"),
    );
    server.sighup();
    server.wait_for("configuration reloaded", SECS(20)).await;
    let more = server.addr_after("exposing service more on ").await;
    // The client has no target named "more": the stream is refused, the connection closed.
    let echoed = echo_roundtrip(more, b"x".to_vec())
        .await
        .unwrap_or_default();
    assert!(echoed.is_empty());
    assert!(
        echo_roundtrip(exposed[0], data.clone())
            .await
            .expect("echo")
            == data
    );

    // SIGHUP with an unchanged file reloads it too (nothing changes).
    let before = server.count("configuration reloaded");
    server.sighup();
    wait_count(&server, "configuration reloaded", before + 1).await;
    let line = last_line(&server, "configuration reloaded");
    assert!(
        line.contains("added: none; removed: none; changed: none"),
        "{line}"
    );
    assert!(server.logs().contains("(SIGHUP)"), "{}", server.logs());
}

fn last_line(proc: &Proc, needle: &str) -> String {
    proc.logs()
        .lines()
        .rev()
        .find(|l| l.contains(needle))
        .unwrap_or_default()
        .to_owned()
}

/// Per-service tokens: a client with the right web token and a wrong api token gets web
/// only (the server and the client both say which token was refused); a client with no
/// right token at all is refused (exit 3). A reload that changes the web token on the client
/// renews its session and keeps web working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_service_tokens_refuse_only_the_wrong_service() {
    let web = http_like_server("web").await;
    let api = http_like_server("api").await;
    let dir = dir("tokens");
    let server_toml = dir.join("server.toml");
    write(
        &server_toml,
        &format!(
            r#"listen = "127.0.0.1:0"
wait_for_client = "1s"

[services.web]
bind = "127.0.0.1:0"
token = "{WEB_TOKEN}"

[services.api]
bind = "127.0.0.1:0"
token = "{API_TOKEN}"
"#
        ),
    );
    let (server, control, exposed) = server_from(&server_toml, &["api", "web"], &[]).await;
    let (api_addr, web_addr) = (exposed[0], exposed[1]);
    let client_text = |web_token: &str| {
        format!(
            r#"server = "{control}"

[services.web]
target = "{web}"
token = "{web_token}"

[services.api]
target = "{api}"
token = "not-the-api-token-0123456789"
"#
        )
    };
    let client_toml = dir.join("client.toml");
    write(&client_toml, &client_text(WEB_TOKEN));
    let client = spawn(
        "tunnel client",
        &[
            "tunnel",
            "client",
            "--config",
            client_toml.to_str().expect("path"),
        ],
    );
    client.wait_for("tunnel up", SECS(20)).await;
    client
        .wait_for("refused some service tokens (api: wrong token)", SECS(5))
        .await;
    server
        .wait_for("refused service tokens: api: wrong token", SECS(5))
        .await;

    for id in 0..10 {
        if let Err(e) = http_like_request(web_addr, id, "web").await {
            panic!(
                "web: {e}\nclient:\n{}\nserver:\n{}",
                client.logs(),
                server.logs()
            );
        }
    }
    // api: no authorised client within wait_for_client; the connection is closed unanswered.
    let err = http_like_request(api_addr, 1, "api")
        .await
        .expect_err("api is refused");
    // Closed with the request unread: an empty answer or a reset, never a response.
    assert!(
        err.contains("response of 0 bytes") || err.contains("reset"),
        "closed without a response: {err}"
    );
    server
        .wait_for("api: no tunnel client for this service", SECS(5))
        .await;

    // Nothing right at all: refused like a wrong token (exit 3).
    let wrong_toml = dir.join("wrong.toml");
    write(
        &wrong_toml,
        &format!(
            "server = \"{control}\"\n[services.web]\ntarget = \"{web}\"\ntoken = \"wrong-web-token-0123456789\"\n"
        ),
    );
    let mut wrong = spawn(
        "wrong client",
        &[
            "tunnel",
            "client",
            "--config",
            wrong_toml.to_str().expect("path"),
        ],
    );
    assert_eq!(wrong.exit_code(SECS(20)).await, 3, "{}", wrong.logs());

    // The server changes the web token, the client follows: a new session, web works again.
    const NEW_WEB: &str = "config-new-web-token-0123456789";
    let server_text = std::fs::read_to_string(&server_toml).expect("read");
    write(&server_toml, &server_text.replace(WEB_TOKEN, NEW_WEB));
    let reloaded = server.wait_for("configuration reloaded", SECS(20)).await;
    assert!(reloaded.contains("changed: web"), "{reloaded}");
    write(&client_toml, &client_text(NEW_WEB));
    client
        .wait_for("tokens changed, renewing the session", SECS(20))
        .await;
    wait_count(&client, "tunnel up", 2).await;
    let deadline = Instant::now() + SECS(20);
    let mut id = 100;
    loop {
        // Until the new session is registered, the old one (with the old token) is refused.
        match http_like_request(web_addr, id, "web").await {
            Ok(()) => break,
            Err(e) => assert!(
                Instant::now() < deadline,
                "web with the new token: {e}\nclient:\n{}\nserver:\n{}",
                client.logs(),
                server.logs()
            ),
        }
        id += 1;
    }
}

/// Scrapes `GET /metrics` from `addr`.
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
    assert!(
        response.contains("application/openmetrics-text"),
        "{response}"
    );
    response
}

/// The value of the series `name` (with labels, exactly as printed).
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

/// `--metrics` on both sides: sessions, streams, per-service connections and bytes, RTT,
/// reconnects and the receive budget, with values that match the traffic sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_scrape_reports_sessions_streams_bytes_and_rtt() {
    let target = echo_server().await;
    let dir = dir("metrics");
    let server_toml = dir.join("server.toml");
    write(
        &server_toml,
        &format!(
            "listen = \"127.0.0.1:0\"\ntoken = \"{DEFAULT_TOKEN}\"\nkeepalive = \"1s\"\nmetrics = \"127.0.0.1:0\"\n\n[services.echo]\nbind = \"127.0.0.1:0\"\n"
        ),
    );
    let (server, control, exposed) = server_from(&server_toml, &["echo"], &[]).await;
    let server_metrics = metrics_addr(&server).await;
    let client = spawn(
        "tunnel client",
        &[
            "tunnel",
            "client",
            "--server",
            &control.to_string(),
            "--target",
            &format!("echo={target}"),
            "--token",
            DEFAULT_TOKEN,
            "--keepalive",
            "1s",
            "--metrics",
            "127.0.0.1:0",
        ],
    );
    let client_metrics = metrics_addr(&client).await;
    client.wait_for("tunnel up", SECS(20)).await;

    const CONNECTIONS: u64 = 5;
    const LEN: usize = 200_000;
    for seed in 0..CONNECTIONS {
        let data = payload(seed, LEN);
        assert!(
            echo_roundtrip(exposed[0], data.clone())
                .await
                .expect("echo")
                == data
        );
    }
    let total = (CONNECTIONS as usize * LEN) as f64;

    // The server counts a connection's end a moment after the visitor sees it: wait for the
    // numbers to settle (bounded), then check every series.
    let deadline = Instant::now() + SECS(20);
    let text = loop {
        let text = scrape(server_metrics).await;
        let done = value(
            &text,
            "polymux_service_bytes_total{service=\"echo\",direction=\"from_target\"}",
        ) == Some(total)
            && value(&text, "polymux_rtt_seconds{session=\"1\"}").is_some();
        if done {
            break text;
        }
        assert!(
            Instant::now() < deadline,
            "server metrics never settled:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let v = |name: &str| value(&text, name).unwrap_or_else(|| panic!("{name} missing:\n{text}"));
    assert_eq!(v("polymux_sessions"), 1.0);
    assert_eq!(
        v("polymux_service_connections_total{service=\"echo\"}"),
        CONNECTIONS as f64
    );
    assert_eq!(v("polymux_service_connections_open{service=\"echo\"}"), 0.0);
    assert_eq!(v("polymux_service_refused_total{service=\"echo\"}"), 0.0);
    assert_eq!(
        v("polymux_service_bytes_total{service=\"echo\",direction=\"to_target\"}"),
        total
    );
    assert_eq!(
        v("polymux_streams_opened_total{direction=\"outbound\"}"),
        CONNECTIONS as f64
    );
    assert!(v("polymux_session_bytes_total{direction=\"sent\"}") >= total);
    assert!(v("polymux_session_bytes_total{direction=\"received\"}") >= total);
    let rtt = v("polymux_rtt_seconds{session=\"1\"}");
    assert!(rtt > 0.0 && rtt < 5.0, "loopback RTT {rtt}");
    assert!(v("polymux_recv_budget_bytes") > 0.0);
    assert!(v("polymux_recv_buffered_bytes") >= 0.0);
    assert_eq!(v("polymux_reconnects_total"), 0.0);
    assert!(text.contains("# TYPE polymux_streams gauge"), "{text}");

    // Bytes of a connection still open are counted as they flow.
    let open = Transfer::start(exposed[0], 99, 2 << 20).await;
    let deadline = Instant::now() + SECS(20);
    loop {
        let text = scrape(server_metrics).await;
        let to = "polymux_service_bytes_total{service=\"echo\",direction=\"to_target\"}";
        let live = value(&text, to).is_some_and(|b| b >= total + (1 << 20) as f64)
            && value(&text, "polymux_service_connections_open{service=\"echo\"}") == Some(1.0);
        if live {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "live bytes never showed:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(open.finish().await);

    let text = scrape(client_metrics).await;
    let v = |name: &str| value(&text, name).unwrap_or_else(|| panic!("{name} missing:\n{text}"));
    assert_eq!(v("polymux_sessions"), 1.0);
    assert_eq!(
        v("polymux_streams_opened_total{direction=\"inbound\"}"),
        CONNECTIONS as f64 + 1.0
    );
    assert_eq!(
        v("polymux_service_connections_total{service=\"echo\"}"),
        CONNECTIONS as f64 + 1.0
    );
    assert_eq!(v("polymux_reconnects_total"), 0.0);
}

/// `forward` reads config files too: per-service tokens are checked per stream (a wrong one
/// is refused with "not authorised"), and a reload of the client that fixes the token
/// renews its session and makes the service work, while the other service kept working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forward_config_files_with_per_service_tokens_and_reload() {
    let (db_target, web_target) = (echo_server().await, echo_server().await);
    let dir = dir("forward");
    let server_toml = dir.join("server.toml");
    write(
        &server_toml,
        &format!(
            "listen = \"127.0.0.1:0\"\n\n[services.db]\ntarget = \"{db_target}\"\ntoken = \"{API_TOKEN}\"\n\n[services.web]\ntarget = \"{web_target}\"\ntoken = \"{WEB_TOKEN}\"\n"
        ),
    );
    let server = spawn(
        "forward server",
        &[
            "forward",
            "server",
            "--config",
            server_toml.to_str().expect("path"),
        ],
    );
    let control = server.addr_after("listening on ").await;
    let client_text = |web_token: &str| {
        format!(
            "server = \"{control}\"\n\n[services.db]\nbind = \"127.0.0.1:0\"\ntoken = \"{API_TOKEN}\"\n\n[services.web]\nbind = \"127.0.0.1:0\"\ntoken = \"{web_token}\"\n"
        )
    };
    let client_toml = dir.join("client.toml");
    write(&client_toml, &client_text("wrong-web-token-0123456789ab"));
    let client = spawn(
        "forward client",
        &[
            "forward",
            "client",
            "--config",
            client_toml.to_str().expect("path"),
        ],
    );
    let db = client.addr_after("forwarding ").await;
    let web = {
        let line = client.wait_for("(service web)", SECS(20)).await;
        let rest = &line[line.find("forwarding ").expect("needle") + 11..];
        rest.split_whitespace()
            .next()
            .and_then(|a| a.parse::<SocketAddr>().ok())
            .expect("addr")
    };
    assert_ne!(db, web);
    client
        .wait_for("connected to forward server", SECS(20))
        .await;

    let data = payload(11, 500_000);
    assert!(echo_roundtrip(db, data.clone()).await.expect("db") == data);
    let refused = echo_roundtrip(web, data.clone()).await.unwrap_or_default();
    assert!(refused.is_empty(), "web is not served with a wrong token");
    server.wait_for("refused service \"web\"", SECS(10)).await;
    client
        .wait_for("not authorised for this service", SECS(10))
        .await;

    // An open db transfer across the client's token reload (and session renewal) finishes.
    let on_db = Transfer::start(db, 12, 2 << 20).await;
    write(&client_toml, &client_text(WEB_TOKEN));
    client
        .wait_for("tokens changed, renewing the session", SECS(20))
        .await;
    wait_count(&client, "connected to forward server", 2).await;
    assert!(echo_roundtrip(web, data.clone()).await.expect("web") == data);
    assert!(
        on_db.finish().await,
        "the db transfer on the old session is exact"
    );
}

/// Flags override the file: `--listen` replaces `listen`, `--expose NAME=…` replaces the
/// file's service of that name and adds new ones; `--protocol` wins over `protocol`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flags_override_the_file() {
    let dir = dir("override");
    let server_toml = dir.join("server.toml");
    // Port 1 in the file: the flags' port 0 must win (checked on the logged addresses).
    write(
        &server_toml,
        &format!(
            "listen = \"127.0.0.1:1\"\nprotocol = \"smux2\"\ntoken = \"{DEFAULT_TOKEN}\"\n\n[services.web]\nbind = \"127.0.0.1:1\"\n\n[services.api]\nbind = \"127.0.0.1:0\"\n"
        ),
    );
    let server = spawn(
        "tunnel server",
        &[
            "--protocol",
            "netmux",
            "tunnel",
            "server",
            "--config",
            server_toml.to_str().expect("path"),
            "--listen",
            "127.0.0.1:0",
            "--expose",
            "web=127.0.0.1:0",
            "--expose",
            "extra=127.0.0.1:0",
        ],
    );
    let line = server.wait_for("listening on ", SECS(20)).await;
    assert!(line.contains("(netmux)"), "{line}");
    assert_ne!(server.addr_after("listening on ").await.port(), 1);
    for service in ["api", "extra", "web"] {
        let addr = server
            .addr_after(&format!("exposing service {service} on "))
            .await;
        assert_ne!(addr.port(), 1);
    }
}
