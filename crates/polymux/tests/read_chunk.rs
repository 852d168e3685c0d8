//! `Stream::read_chunk`, `Stream::halves` and `Stream::into_split`: received data taken as
//! `Bytes` without a copy, with credit returned as by a read (a transfer many windows long
//! completes on chunks alone), in every dialect, and a stream's two directions used at once,
//! on `futures::executor`-style runtimes (smol) over a Unix socket pair.

mod common;

use common::{dialects, pair};
use futures::io::{AsyncReadExt, AsyncWriteExt};
use polymux::{Config, Stream};

/// Bytes sent per transfer: eight 256 KiB windows, so credit must come back for it to finish.
const TOTAL: usize = 2 << 20;

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

/// Reads `stream` to EOF with `read_chunk(max)`, checking every chunk's bound.
async fn chunks_to_end(stream: &mut Stream, max: usize) -> Vec<u8> {
    let mut got = Vec::new();
    while let Some(chunk) = stream.read_chunk(max).await.expect("read_chunk") {
        assert!(
            !chunk.is_empty() && chunk.len() <= max,
            "{} bytes",
            chunk.len()
        );
        got.extend_from_slice(&chunk);
    }
    got
}

#[test]
fn chunks_carry_a_transfer_many_windows_long_in_order_in_every_dialect() {
    for config in dialects() {
        let dialect = config.dialect();
        smol::block_on(async move {
            let (client, server) = pair(config);
            let sent = pattern(TOTAL);
            let payload = sent.clone();
            let writer = smol::spawn(async move {
                let mut s = client.open().await.expect("open");
                s.write_all(&payload).await.expect("write");
                s.close().await.expect("close");
                // Keep the session until the reader has everything.
                let mut rest = Vec::new();
                s.read_to_end(&mut rest)
                    .await
                    .expect("wait for the reader's close");
                client
            });
            let mut s = server.accept().await.expect("accept");
            // Large bounds take whole frames, small ones split them; both return credit.
            let first = s.read_chunk(100).await.expect("read_chunk").expect("data");
            assert_eq!(&first[..], &sent[..first.len()], "{dialect:?}");
            let mut got = first.to_vec();
            got.extend(chunks_to_end(&mut s, 1 << 20).await);
            assert!(
                got == sent,
                "{dialect:?}: the chunks differ from what was sent"
            );
            assert_eq!(s.read_chunk(10).await.expect("after EOF"), None);
            assert_eq!(
                s.read_chunk(0).await.expect("empty").as_deref(),
                Some(&[][..])
            );
            s.close().await.expect("close");
            drop(s);
            writer.await.close().await;
        });
    }
}

#[test]
fn chunks_and_copying_reads_interleave_on_one_stream() {
    smol::block_on(async {
        let (client, server) = pair(Config::yamux());
        let sent = pattern(300_000);
        let payload = sent.clone();
        let writer = smol::spawn(async move {
            let mut s = client.open().await.expect("open");
            s.write_all(&payload).await.expect("write");
            s.close().await.expect("close");
            let mut rest = Vec::new();
            s.read_to_end(&mut rest)
                .await
                .expect("wait for the reader's close");
            client
        });
        let mut s = server.accept().await.expect("accept");
        let mut got = Vec::new();
        let mut buf = [0u8; 1000];
        loop {
            let n = s.read(&mut buf).await.expect("read");
            got.extend_from_slice(&buf[..n]);
            match s.read_chunk(3000).await.expect("read_chunk") {
                Some(chunk) => got.extend_from_slice(&chunk),
                None => break,
            }
        }
        assert!(got == sent, "interleaved reads lost or reordered bytes");
        s.close().await.expect("close");
        drop(s);
        writer.await.close().await;
    });
}

#[test]
fn halves_echo_with_chunks_while_the_other_direction_flows() {
    smol::block_on(async {
        let (client, server) = pair(Config::smux_v2());
        let echo = smol::spawn(async move {
            let mut s = server.accept().await.expect("accept");
            let (mut r, mut w) = s.halves();
            while let Some(chunk) = r.read_chunk(16 * 1024).await.expect("read_chunk") {
                w.write_all(&chunk).await.expect("echo");
            }
            w.close().await.expect("half-close");
            drop(s);
            server
        });
        let mut s = client.open().await.expect("open");
        let sent = pattern(TOTAL);
        let (mut r, mut w) = s.halves();
        let write = async {
            w.write_all(&sent).await.expect("write");
            w.close().await.expect("close");
        };
        let read = async {
            let mut got = Vec::new();
            r.read_to_end(&mut got).await.expect("read the echo");
            got
        };
        let ((), got) = futures::join!(write, read);
        assert!(got == sent, "the echo differs from what was sent");
        drop(s);
        echo.await.close().await;
        client.close().await;
    });
}

/// `into_split`: each owned half in a task of its own, in every dialect; dropping the writing
/// half sends FIN (the echo server sees EOF and ends the echo) while the reading half still
/// reads the whole echo back.
#[test]
fn owned_halves_in_two_tasks_echo_and_dropping_the_writer_sends_fin() {
    for config in dialects() {
        let dialect = config.dialect();
        smol::block_on(async move {
            let (client, server) = pair(config);
            let echo = smol::spawn(async move {
                let s = server.accept().await.expect("accept");
                let (mut r, mut w) = s.into_split();
                while let Some(chunk) = r.read_chunk(16 * 1024).await.expect("read_chunk") {
                    w.write_all(&chunk).await.expect("echo");
                }
                drop(w);
                server
            });
            let (mut r, mut w) = client.open().await.expect("open").into_split();
            let sent = pattern(TOTAL);
            let payload = sent.clone();
            let writer = smol::spawn(async move {
                let (head, tail) = payload.split_at(TOTAL / 2);
                w.write_all(head).await.expect("write");
                w.write_chunk(bytes::Bytes::copy_from_slice(tail))
                    .await
                    .expect("write_chunk");
                // No close: the drop is what must end the echo.
            });
            let reader = smol::spawn(async move {
                let mut got = Vec::new();
                r.read_to_end(&mut got).await.expect("read the echo");
                got
            });
            writer.await;
            // Bounded: without the FIN the echo would wait for more input forever.
            let ended = async { Some(echo.await) };
            let limit = async {
                smol::Timer::after(std::time::Duration::from_secs(30)).await;
                None
            };
            let server = smol::future::or(ended, limit)
                .await
                .expect("dropping the writing half ended the echo (FIN) within 30 s");
            let got = reader.await;
            assert!(
                got == sent,
                "{dialect:?}: the echo differs from what was sent"
            );
            server.close().await;
            client.close().await;
        });
    }
}
