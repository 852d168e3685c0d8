//! The library on executors other than tokio: smol with its own reactor over real loopback TCP,
//! and `futures::executor` over an in-memory transport.

use futures::io::{AsyncReadExt, AsyncWriteExt};
use futures::StreamExt;
use polymux::{Config, Session};

async fn echo_all(session: Session) {
    let mut incoming = session.incoming();
    while let Some(stream) = incoming.next().await {
        smol::spawn(async move {
            let (mut r, mut w) = stream.split();
            futures::io::copy(&mut r, &mut w).await.expect("echo copy");
            w.close().await.expect("half-close");
        })
        .detach();
    }
}

async fn roundtrip(session: &Session, len: usize, seed: u8) {
    let stream = session.open().await.expect("open");
    let payload: Vec<u8> = (0..len).map(|i| (i as u8).wrapping_mul(seed)).collect();
    let (mut r, mut w) = stream.split();
    let sent = payload.clone();
    let writer = smol::spawn(async move {
        w.write_all(&sent).await.expect("write");
        w.close().await.expect("close");
    });
    let mut got = Vec::new();
    r.read_to_end(&mut got).await.expect("read");
    writer.await;
    assert!(got == payload, "echo of {len} bytes differs");
}

#[test]
fn smol_over_loopback_tcp() {
    smol::block_on(async {
        let listener = smol::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = smol::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let (session, driver) = Session::server(tcp, Config::yamux());
            let driver = smol::spawn(driver);
            echo_all(session).await;
            driver.await
        });
        let tcp = smol::net::TcpStream::connect(addr).await.unwrap();
        let (session, driver) = Session::client(tcp, Config::yamux());
        let driver = smol::spawn(driver);
        let jobs: Vec<_> = (1..=8u8)
            .map(|i| {
                let session = session.clone();
                smol::spawn(async move { roundtrip(&session, 200_000, i).await })
            })
            .collect();
        for job in jobs {
            job.await;
        }
        assert!(session.ping().await.is_ok());
        session.close().await;
        assert_eq!(driver.await, Ok(()));
        assert!(server.await.is_ok());
    });
}

#[test]
fn futures_executor_over_a_unix_socket_pair() {
    let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
    let pool = futures::executor::ThreadPool::builder()
        .pool_size(2)
        .create()
        .unwrap();
    let a = smol::Async::new(a).unwrap();
    let b = smol::Async::new(b).unwrap();
    let (client, client_driver) = Session::client(a, Config::smux_v2());
    let (server, server_driver) = Session::server(b, Config::smux_v2());
    pool.spawn_ok(async move {
        let _ = client_driver.await;
    });
    pool.spawn_ok(async move {
        let _ = server_driver.await;
    });
    futures::executor::block_on(async move {
        let accept = async {
            let mut s = server.accept().await.expect("accept");
            let mut buf = Vec::new();
            s.read_to_end(&mut buf).await.expect("read");
            s.write_all(&buf).await.expect("write back");
            s.close().await.expect("close");
        };
        let open = async {
            let mut s = client.open().await.expect("open");
            s.write_all(b"over a socket pair").await.expect("write");
            s.close().await.expect("close");
            let mut back = Vec::new();
            s.read_to_end(&mut back).await.expect("read");
            assert_eq!(back, b"over a socket pair");
        };
        futures::join!(accept, open);
        client.close().await;
    });
}
