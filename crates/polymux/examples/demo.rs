//! A server and a client in one process over loopback TCP: the client opens 16 streams, each
//! echoes 8 MiB through the server, and the demo prints throughput, the ping RTT and the
//! session's counters. Run: `cargo run --release -p polymux --features tokio --example demo`.
//! Pass `smux1`, `smux2` or `netmux` as the first argument to pick another dialect.

use std::time::Instant;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use polymux::{Config, Dialect};

const STREAMS: usize = 16;
const BYTES_PER_STREAM: usize = 8 * 1024 * 1024;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dialect = match std::env::args().nth(1).as_deref() {
        None | Some("yamux") => Dialect::Yamux,
        Some("smux1") => Dialect::SmuxV1,
        Some("smux2") => Dialect::SmuxV2,
        Some("netmux") => Dialect::NetMux,
        Some(other) => {
            return Err(
                format!("unknown dialect {other:?}: use yamux, smux1, smux2 or netmux").into(),
            )
        }
    };
    let config = Config::for_dialect(dialect);

    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let server_config = config.clone();
    tokio::spawn(async move {
        let Ok((tcp, _)) = listener.accept().await else {
            return;
        };
        let (session, _driver) = polymux::tokio::server(tcp, server_config);
        while let Ok(stream) = session.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = tokio::io::split(stream);
                let _ = tokio::io::copy(&mut r, &mut w).await;
                let _ = w.shutdown().await;
            });
        }
    });

    let (session, driver) = polymux::tokio::client(TcpStream::connect(addr).await?, config);
    println!("{} session to {addr}", dialect.name());
    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..STREAMS {
        let session = session.clone();
        tasks.push(tokio::spawn(async move {
            let stream = session.open().await?;
            let id = stream.id();
            let (mut r, mut w) = tokio::io::split(stream);
            let payload: Vec<u8> = (0..BYTES_PER_STREAM).map(|b| (b * 31 + i) as u8).collect();
            let expected = payload.clone();
            let writer = tokio::spawn(async move {
                w.write_all(&payload).await?;
                w.shutdown().await
            });
            let mut echoed = Vec::with_capacity(BYTES_PER_STREAM);
            r.read_to_end(&mut echoed).await?;
            writer.await??;
            if echoed != expected {
                return Err(std::io::Error::other(format!("stream {id}: echo differs")));
            }
            Ok::<_, std::io::Error>(id)
        }));
    }
    for task in tasks {
        let id = task.await??;
        println!(
            "  stream {id:>3}: {} MiB echoed and verified",
            BYTES_PER_STREAM >> 20
        );
    }
    let elapsed = started.elapsed();
    let moved = (2 * STREAMS * BYTES_PER_STREAM) as f64 / (1024.0 * 1024.0);
    println!(
        "{STREAMS} streams, {moved:.0} MiB through the mux in {:.2?} ({:.0} MiB/s)",
        elapsed,
        moved / elapsed.as_secs_f64()
    );
    match session.ping().await {
        Ok(rtt) => println!("ping RTT: {rtt:?}"),
        Err(e) => println!("ping: {e}"),
    }
    println!("stats: {:?}", session.stats());
    session.close().await;
    driver.await??;
    Ok(())
}
