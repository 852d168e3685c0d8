//! Helpers for the end-to-end tests: run the real `polymux` binary, read the addresses it
//! logs, signal it, and small local servers (echo, HTTP-like, a cuttable proxy).
//!
//! Everything listens on and connects to 127.0.0.1 only; every wait is bounded.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// A token long enough not to trigger the weak-token warning.
pub const TOKEN: &str = "e2e-test-token-0123456789abcdef";

/// A running `polymux` process; killed on drop.
pub struct Proc {
    name: String,
    child: Child,
    stderr: Arc<Mutex<Vec<String>>>,
    stdout: Arc<Mutex<Vec<String>>>,
}

fn collect(reader: impl std::io::Read + Send + 'static) -> Arc<Mutex<Vec<String>>> {
    use std::io::BufRead;
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = lines.clone();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(reader).lines() {
            let Ok(line) = line else { break };
            sink.lock().expect("lock").push(line);
        }
    });
    lines
}

impl Proc {
    /// Starts `polymux ARGS` with `envs` (and without an inherited POLYMUX_TOKEN / RUST_LOG).
    pub fn spawn(name: &str, args: &[&str], envs: &[(&str, &str)]) -> Proc {
        let mut command = Command::new(env!("CARGO_BIN_EXE_polymux"));
        command
            .args(args)
            .env_remove("POLYMUX_TOKEN")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in envs {
            command.env(k, v);
        }
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start polymux {args:?}: {e}"));
        let stderr = collect(child.stderr.take().expect("stderr"));
        let stdout = collect(child.stdout.take().expect("stdout"));
        Proc {
            name: name.to_owned(),
            child,
            stderr,
            stdout,
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything the process wrote to stderr so far.
    pub fn logs(&self) -> String {
        self.stderr.lock().expect("lock").join("\n")
    }

    /// Everything the process wrote to stdout so far.
    pub fn output(&self) -> String {
        self.stdout.lock().expect("lock").join("\n")
    }

    /// Waits for a stderr line containing `needle`.
    pub async fn wait_for(&self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(line) = self
                .stderr
                .lock()
                .expect("lock")
                .iter()
                .find(|l| l.contains(needle))
            {
                return line.clone();
            }
            assert!(
                Instant::now() < deadline,
                "{}: no log line with {needle:?} within {timeout:?}; logs:\n{}",
                self.name,
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Counts stderr lines containing `needle`.
    pub fn count(&self, needle: &str) -> usize {
        self.stderr
            .lock()
            .expect("lock")
            .iter()
            .filter(|l| l.contains(needle))
            .count()
    }

    /// The socket address logged right after `needle` (e.g. "listening on ").
    pub async fn addr_after(&self, needle: &str) -> SocketAddr {
        let line = self.wait_for(needle, Duration::from_secs(20)).await;
        let rest = &line[line.find(needle).expect("needle") + needle.len()..];
        let token = rest.split_whitespace().next().unwrap_or("");
        token.parse().unwrap_or_else(|e| {
            panic!(
                "{}: {token:?} in {line:?} is not an address: {e}",
                self.name
            )
        })
    }

    /// Sends SIGINT (as Ctrl-C would).
    pub fn sigint(&self) {
        let status = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -INT failed");
    }

    /// Sends SIGHUP (reload the config file).
    pub fn sighup(&self) {
        let status = Command::new("kill")
            .args(["-HUP", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -HUP failed");
    }

    /// Waits for the process to exit.
    pub async fn exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                // Let the reader threads catch the last lines.
                tokio::time::sleep(Duration::from_millis(50)).await;
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not exit within {timeout:?}; logs:\n{}",
                self.name,
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits for the exit and returns its code.
    pub async fn exit_code(&mut self, timeout: Duration) -> i32 {
        let status = self.exit(timeout).await;
        status
            .code()
            .unwrap_or_else(|| panic!("{} was killed by a signal: {status:?}", self.name))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        // POLYMUX_E2E_LOGS=1 shows every process's logs (run with --nocapture).
        if std::env::var_os("POLYMUX_E2E_LOGS").is_some() {
            eprintln!("----- {} -----\n{}", self.name, self.logs());
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A TCP echo server on 127.0.0.1 (echoes until EOF, then closes its write side).
pub async fn echo_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = tcp.into_split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
                let _ = w.shutdown().await;
            });
        }
    });
    addr
}

/// Deterministic bytes for (`seed`, `len`).
pub fn payload(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 32) as u8
        })
        .collect()
}

/// Sends `data` over a new connection to `addr` while reading the echo; returns the echo.
pub async fn echo_roundtrip(addr: SocketAddr, data: Vec<u8>) -> std::io::Result<Vec<u8>> {
    let tcp = TcpStream::connect(addr).await?;
    let (mut r, mut w) = tcp.into_split();
    let writer = tokio::spawn(async move {
        w.write_all(&data).await?;
        w.shutdown().await
    });
    let mut echoed = Vec::new();
    r.read_to_end(&mut echoed).await?;
    writer.await.map_err(std::io::Error::other)??;
    Ok(echoed)
}

/// An HTTP-like server: reads `POST /<id> HTTP/1.1` with `Content-Length: n` and a body that
/// must equal `payload(id, n)`, then answers `200` with a body `payload(id + 1_000_000, m)`
/// where `m = 1000 + id * 37 % 50_000` and closes (after 150 ms when `id % 4 == 0`). A body
/// that differs gets a `400`.
pub async fn http_like_server(tag: &'static str) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let _ = serve_http_like(tcp, tag).await;
            });
        }
    });
    addr
}

/// The response body length for request `id`.
pub fn response_len(id: u64) -> usize {
    1000 + (id as usize * 37) % 50_000
}

async fn serve_http_like(mut tcp: TcpStream, tag: &str) -> std::io::Result<()> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if tcp.read(&mut byte).await? == 0 || head.len() > 4096 {
            return Ok(());
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let id: u64 = head
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.trim_start_matches('/').parse().ok())
        .unwrap_or(u64::MAX);
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    tcp.read_exact(&mut body).await?;
    if id == u64::MAX || body != payload(id, len) {
        tcp.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
            .await?;
        return tcp.shutdown().await;
    }
    if id.is_multiple_of(4) {
        // Every fourth request is slow, so that some are always in flight.
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    let response = payload(id + 1_000_000, response_len(id));
    let header = format!(
        "HTTP/1.1 200 OK\r\nX-Service: {tag}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        response.len()
    );
    tcp.write_all(header.as_bytes()).await?;
    tcp.write_all(&response).await?;
    tcp.shutdown().await
}

/// One request to an [`http_like_server`] (possibly through a tunnel); checks every byte of
/// the response, including which service answered.
pub async fn http_like_request(addr: SocketAddr, id: u64, tag: &str) -> Result<(), String> {
    let mut tcp = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let body = payload(id, 200 + (id as usize * 131) % 20_000);
    let head = format!(
        "POST /{id} HTTP/1.1\r\nHost: test\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    tcp.write_all(head.as_bytes())
        .await
        .map_err(|e| format!("write: {e}"))?;
    tcp.write_all(&body)
        .await
        .map_err(|e| format!("write: {e}"))?;
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), tcp.read_to_end(&mut response))
        .await
        .map_err(|_| "response timed out".to_owned())?
        .map_err(|e| format!("read: {e}"))?;
    let expected_body = payload(id + 1_000_000, response_len(id));
    let expected_head = format!(
        "HTTP/1.1 200 OK\r\nX-Service: {tag}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        expected_body.len()
    );
    let mut expected = expected_head.into_bytes();
    expected.extend_from_slice(&expected_body);
    if response != expected {
        return Err(format!(
            "request {id}: response of {} bytes differs from the expected {} bytes (starts {:?})",
            response.len(),
            expected.len(),
            String::from_utf8_lossy(&response[..response.len().min(40)])
        ));
    }
    Ok(())
}

/// A TCP proxy on 127.0.0.1 to `upstream` whose connections can all be cut at once.
pub struct Proxy {
    /// Where to connect.
    pub addr: SocketAddr,
    cut: watch::Sender<u64>,
}

impl Proxy {
    /// Starts the proxy.
    pub async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (cut, cut_rx) = watch::channel(0u64);
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let mut cut_rx = cut_rx.clone();
                cut_rx.borrow_and_update();
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = cut_rx.changed() => {}
                    }
                    // Dropping both sides closes them: each end sees the connection die.
                });
            }
        });
        Proxy { addr, cut }
    }

    /// Closes every connection open through the proxy now (new ones still work).
    pub fn cut(&self) {
        self.cut.send_modify(|n| *n += 1);
    }
}

/// A self-signed certificate for `localhost` and 127.0.0.1, written as PEM files into a
/// fresh directory. Returns (cert path, key path).
pub fn self_signed_cert(dir_name: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("polymux-e2e-{dir_name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let cert =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .expect("generate a certificate");
    let cert_path = dir.join("cert.pem");
    let key_path = dir.join("key.pem");
    std::fs::write(&cert_path, cert.cert.pem()).expect("write cert");
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).expect("write key");
    (cert_path, key_path)
}

/// The fingerprint a TLS server logged at startup.
pub async fn logged_fingerprint(server: &Proc) -> String {
    let line = server
        .wait_for("SHA-256 fingerprint ", Duration::from_secs(20))
        .await;
    let rest = &line[line.find("SHA-256 fingerprint ").expect("needle") + 20..];
    rest.split_whitespace()
        .next()
        .expect("fingerprint")
        .to_owned()
}

/// Waits until a TCP connection to `addr` is refused (the listener is gone).
pub async fn wait_refused(addr: SocketAddr, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        match TcpStream::connect(addr).await {
            Err(_) => return true,
            Ok(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    false
}
