//! `Stream::write_chunk` (and `WriteHalf::write_chunk`): a caller's `Bytes` sent without a
//! copy into the write buffer arrives intact and in order, mixed with plain writes, on several
//! streams at once (so the output is busy and chunks are queued as well as written directly),
//! in every dialect; its errors are `write`'s. smol over a Unix socket pair.

mod common;

use bytes::Bytes;
use common::{dialects, pair};
use futures::io::{AsyncReadExt, AsyncWriteExt};
use polymux::Config;

/// Concurrent streams per session: enough to keep the output busy.
const STREAMS: usize = 6;

/// Stream `i`'s bytes: a pattern offset by `i`, about 1.3 MiB (five 256 KiB windows), so
/// credit must come back while chunks are queued.
fn payload(i: usize) -> Bytes {
    (0..1_300_000 + i * 777)
        .map(|j| ((j + i * 31) % 251) as u8)
        .collect::<Vec<u8>>()
        .into()
}

#[test]
fn chunks_and_plain_writes_arrive_intact_and_in_order_in_every_dialect() {
    for config in dialects() {
        let dialect = config.dialect();
        smol::block_on(async move {
            let (client, server) = pair(config);
            let mut writers = Vec::new();
            for i in 0..STREAMS {
                let client = client.clone();
                writers.push(smol::spawn(async move {
                    let data = payload(i);
                    let mut s = client.open().await.expect("open");
                    // Sizes that line up with nothing: chunks above and below the copy
                    // threshold and the frame size, slices of one buffer, plain writes between.
                    let cuts = [100_000, 100, 300_000, 5_000, 65_536, 70_001];
                    let mut at = 0;
                    for (k, &len) in cuts.iter().cycle().enumerate() {
                        let end = (at + len).min(data.len());
                        if k % 3 == 2 {
                            s.write_all(&data[at..end]).await.expect("write_all");
                        } else if k % 3 == 1 {
                            let (_, mut w) = s.halves();
                            w.write_chunk(data.slice(at..end)).await.expect("half");
                        } else {
                            s.write_chunk(data.slice(at..end))
                                .await
                                .expect("write_chunk");
                        }
                        at = end;
                        if at == data.len() {
                            break;
                        }
                    }
                    s.write_chunk(Bytes::new()).await.expect("empty chunk");
                    s.close().await.expect("close");
                    let mut rest = Vec::new();
                    s.read_to_end(&mut rest).await.expect("the reader's close");
                }));
            }
            let mut readers = Vec::new();
            for _ in 0..STREAMS {
                let mut s = server.accept().await.expect("accept");
                readers.push(smol::spawn(async move {
                    let mut got = Vec::new();
                    s.read_to_end(&mut got).await.expect("read");
                    s.close().await.expect("close");
                    got
                }));
            }
            let mut received = Vec::new();
            for r in readers {
                received.push(r.await);
            }
            for w in writers {
                w.await;
            }
            // Streams are accepted in the order their first frames arrive; match by content.
            for i in 0..STREAMS {
                let want = payload(i);
                let found = received.iter().position(|got| got[..] == want[..]);
                assert!(found.is_some(), "{dialect:?}: stream {i}'s bytes differ");
            }
            client.close().await;
        });
    }
}

#[test]
fn chunk_writes_fail_as_writes_do() {
    smol::block_on(async {
        let (client, _server) = pair(Config::yamux());
        let mut s = client.open().await.expect("open");
        s.close().await.expect("close");
        let err = s
            .write_chunk(Bytes::from_static(b"late"))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::BrokenPipe);
        let mut s = client.open().await.expect("open");
        s.reset();
        let err = s
            .write_chunk(Bytes::from(vec![1u8; 100_000]))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset);
    });
}
