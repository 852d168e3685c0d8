//! One stream sending N MiB to a sink over loopback, next to raw TCP doing the same, in one run;
//! with the process's CPU time (user + system, both ends) per GiB where `/proc` tells it.
//! `cargo run --release -p polymux --features tokio --example bulk -- [MiB] [yamux|smux1|smux2|netmux]`

use std::time::Instant;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use polymux::{Config, Dialect};

async fn sink(mut r: impl tokio::io::AsyncRead + Unpin) -> u64 {
    let mut buf = vec![0u8; 256 * 1024];
    let mut total = 0u64;
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => return total,
            Ok(n) => total += n as u64,
        }
    }
}

async fn send(mut w: impl tokio::io::AsyncWrite + Unpin, bytes: u64) {
    let chunk = vec![0xa5u8; 256 * 1024];
    let mut left = bytes;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        w.write_all(&chunk[..n]).await.expect("write");
        left -= n as u64;
    }
    w.shutdown().await.expect("shutdown");
}

async fn raw_tcp(bytes: u64) -> f64 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { sink(listener.accept().await.unwrap().0).await });
    let start = Instant::now();
    send(TcpStream::connect(addr).await.unwrap(), bytes).await;
    assert_eq!(server.await.unwrap(), bytes);
    bytes as f64 / start.elapsed().as_secs_f64() / (1 << 20) as f64
}

async fn mux(bytes: u64, config: Config) -> f64 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server_config = config.clone();
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        tcp.set_nodelay(true).unwrap();
        let (session, _driver) = polymux::tokio::server(tcp, server_config);
        sink(session.accept().await.unwrap()).await
    });
    let tcp = TcpStream::connect(addr).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    let (session, _driver) = polymux::tokio::client(tcp, config);
    let start = Instant::now();
    send(session.open().await.unwrap(), bytes).await;
    assert_eq!(server.await.unwrap(), bytes);
    bytes as f64 / start.elapsed().as_secs_f64() / (1 << 20) as f64
}

/// User + system CPU seconds of this process so far (Linux), in clock ticks of 10 ms.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')')?.1;
    let mut fields = rest.split_whitespace().skip(11);
    let utime: f64 = fields.next()?.parse().ok()?;
    let stime: f64 = fields.next()?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

/// Runs `f`, returning its result and the CPU seconds per GiB of `bytes` it took.
async fn measured<F: std::future::Future<Output = f64>>(bytes: u64, f: F) -> (f64, String) {
    let before = cpu_seconds();
    let rate = f.await;
    let per_gib = match (before, cpu_seconds()) {
        (Some(a), Some(b)) => format!(
            "{:.2} CPU s/GiB",
            (b - a) / (bytes as f64 / (1u64 << 30) as f64)
        ),
        _ => "CPU time unknown".to_string(),
    };
    (rate, per_gib)
}

#[tokio::main]
async fn main() {
    let mib: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1024);
    let dialect = match std::env::args().nth(2).as_deref() {
        Some("smux1") => Dialect::SmuxV1,
        Some("smux2") => Dialect::SmuxV2,
        Some("netmux") => Dialect::NetMux,
        _ => Dialect::Yamux,
    };
    let bytes = mib << 20;
    let (tcp, tcp_cpu) = measured(bytes, raw_tcp(bytes)).await;
    let (m, m_cpu) = measured(bytes, mux(bytes, Config::for_dialect(dialect))).await;
    println!("raw TCP: {tcp:.0} MiB/s, {tcp_cpu}");
    println!(
        "polymux {}: {m:.0} MiB/s ({:.2}x raw TCP), {m_cpu}",
        dialect.name(),
        m / tcp
    );
}
