//! polymux against itself over loopback TCP, on tokio.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use polymux::{Config, Dialect};

async fn echo_roundtrip(config: Config) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server_config = config.clone();
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let (session, driver) = polymux::tokio::server(tcp, server_config);
        while let Ok(mut stream) = session.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                loop {
                    let n = stream.read(&mut buf).await.unwrap();
                    if n == 0 {
                        break;
                    }
                    stream.write_all(&buf[..n]).await.unwrap();
                }
                stream.shutdown().await.unwrap();
            });
        }
        driver.await.unwrap()
    });
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (session, driver) = polymux::tokio::client(tcp, config);
    let mut tasks = Vec::new();
    for i in 0..20u8 {
        let session = session.clone();
        tasks.push(tokio::spawn(async move {
            let s = session.open().await.unwrap();
            let payload: Vec<u8> = (0..300_000u32).map(|x| (x as u8) ^ i).collect();
            let (mut r, mut w) = tokio::io::split(s);
            let p2 = payload.clone();
            let writer = tokio::spawn(async move {
                w.write_all(&p2).await.unwrap();
                w.shutdown().await.unwrap();
            });
            let mut got = Vec::new();
            r.read_to_end(&mut got).await.unwrap();
            writer.await.unwrap();
            assert_eq!(got.len(), payload.len());
            assert!(got == payload);
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    session.close().await;
    driver.await.unwrap().unwrap();
    let _ = server.await;
}

#[tokio::test]
async fn yamux_echo() {
    echo_roundtrip(Config::yamux()).await;
}

#[tokio::test]
async fn smux_v1_echo() {
    echo_roundtrip(Config::for_dialect(Dialect::SmuxV1)).await;
}

#[tokio::test]
async fn smux_v2_echo() {
    echo_roundtrip(Config::smux_v2()).await;
}

#[tokio::test]
async fn net_mux_echo() {
    echo_roundtrip(Config::net_mux()).await;
}
