//! `unread`: stream A is written far past the receiver's per-stream window and left unread
//! while stream B carries 64 MiB; B must complete first, then A is read out, nothing lost.
//!
//! B's completion is the server's `ok`, sent once it has verified all of B without touching
//! A. At that moment the client's writer on A must still be blocked: otherwise nothing held A
//! back and the run proves nothing. Only per-stream windows can do that (yamux, smux v2,
//! net-mux); in smux v1 A's data fills the receiver's session budget and stalls B, and a
//! receiver that stops reading the connection for A stalls B too
//! ([`Capability::IsolateUnread`](crate::Capability::IsolateUnread), server role).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::{
    expect_bytes, fail, read_to_end_limited, read_verify, Ctx, Fail, Payload, Res, CHUNK, KIB, MIB,
};
use crate::session::MuxSession;

/// Written on A and left unread: far beyond every per-stream window involved (256 KiB at the
/// start for yamux, net-mux and polymux, 64 KiB for Go smux v2) plus any send buffering.
pub const A_LEN: usize = 4 * MIB;
/// Carried by B while A is unread.
pub const B_LEN: usize = 64 * MIB;

/// Writes `len` payload bytes of `seed`, counting what each write accepted into `accepted`.
async fn write_counted<W: AsyncWrite + Unpin>(
    w: &mut W,
    seed: u64,
    len: usize,
    accepted: &AtomicUsize,
) -> Res<()> {
    let mut gen = Payload::new(seed);
    let mut buf = vec![0u8; CHUNK];
    let mut sent = 0;
    while sent < len {
        let n = CHUNK.min(len - sent);
        gen.fill(&mut buf[..n]);
        w.write_all(&buf[..n])
            .await
            .ctx(format_args!("A: write after {sent} of {len} bytes"))?;
        sent += n;
        accepted.store(sent, Ordering::Relaxed);
    }
    w.flush().await.ctx("A: flush")
}

/// Client: A (seed 1) from a background writer, then half-close; B (seed 2), read exactly
/// `ok`, half-close, read B to EOF; then A's writer must finish and A must end in EOF.
pub(super) async fn client<S: MuxSession>(s: &S) -> Res<()> {
    let a = s.open().await.ctx("open A")?;
    let (mut a_read, mut a_write) = tokio::io::split(a);
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    let a_writer = tokio::spawn(async move {
        write_counted(&mut a_write, 1, A_LEN, &counter).await?;
        a_write.shutdown().await.ctx("A: half-close")
    });

    let mut b = s.open().await.ctx("open B")?;
    super::write_payload(&mut b, 2, B_LEN)
        .await
        .map_err(|e| e.context("B"))?;
    let mut ok = [0u8; 2];
    b.read_exact(&mut ok).await.ctx("B: read the server's ok")?;
    expect_bytes(&ok, b"ok", "B: server's reply")?;
    if a_writer.is_finished() {
        // Surface a write error first; else the whole of A went out unread.
        a_writer
            .await
            .map_err(|e| Fail::Failed(format!("A's writer: {e}")))??;
        return fail(format!(
            "A: all {A_LEN} bytes were accepted before the server read any of A: no \
             per-stream window held A back, so the scenario proves nothing"
        ));
    }
    let held_back = accepted.load(Ordering::Relaxed);
    b.shutdown().await.ctx("B: half-close")?;
    let rest = read_to_end_limited(&mut b, 4 * KIB).await?;
    expect_bytes(&rest, b"", "B: after the ok")?;

    // The server reads A only now.
    a_writer
        .await
        .map_err(|e| Fail::Failed(format!("A's writer: {e}")))?
        .map_err(|e| {
            e.context(format_args!(
                "after B completed with {held_back} of A's {A_LEN} bytes accepted"
            ))
        })?;
    let rest = read_to_end_limited(&mut a_read, 4 * KIB).await?;
    expect_bytes(&rest, b"", "A: the server's side")
}

/// Server: accept A and leave it unread; accept B, verify exactly B_LEN bytes (seed 2), write
/// `ok`, read B to EOF, half-close it; only then read A to EOF (seed 1) and half-close it.
pub(super) async fn server<S: MuxSession>(s: &S) -> Res<()> {
    let mut a = s.accept().await.ctx("accept A")?;
    let mut b = s.accept().await.ctx("accept B")?;
    read_verify(&mut b, 2, B_LEN, false)
        .await
        .map_err(|e| e.context("B, while A is unread"))?;
    b.write_all(b"ok").await.ctx("B: write ok")?;
    b.flush().await.ctx("B: flush")?;
    let rest = read_to_end_limited(&mut b, 4 * KIB).await?;
    expect_bytes(&rest, b"", "B: after the ok")?;
    b.shutdown().await.ctx("B: half-close")?;
    read_verify(&mut a, 1, A_LEN, true)
        .await
        .map_err(|e| e.context("A, read last"))?;
    a.shutdown().await.ctx("A: half-close")
}
