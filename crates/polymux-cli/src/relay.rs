//! Per-stream protocol of `tunnel` and `forward`, and the byte relay between a stream and a
//! TCP connection.
//!
//! The side that opens a stream (the tunnel server, the forward client) starts it with a
//! header naming the service; the side that accepts it (the tunnel client, the forward
//! server) connects to that service's target and answers with a status:
//!
//! ```text
//! opener → acceptor:  version u8 (1) | name_len u8 | name (UTF-8)
//! acceptor → opener:  status u8 | msg_len u16 (big-endian) | message (UTF-8)
//!                     status: 0 ok, 1 unknown service, 2 target unreachable,
//!                             3 shutting down, 4 stream limit reached,
//!                             5 not authorised (the client's token does not cover it)
//! ```
//!
//! A UDP flow's stream starts with version 2 instead ([`DATAGRAM_VERSION`]) and, after status
//! 0, carries length-prefixed datagrams (see [`crate::udp`]).
//!
//! After status 0 the stream carries the raw bytes of the TCP connection in both directions.
//! The opener does not wait for the status before sending: it relays the client's first
//! bytes at once (saving a round trip) and reads the status before relaying the answer.
//!
//! Half-close is preserved end to end: EOF from one TCP peer becomes a FIN on the stream and a
//! write shutdown on the other TCP connection, while the other direction keeps flowing. An
//! error on either side resets the stream, so the far end tears its connection down too.
//!
//! Stream → TCP hands the stream's received chunks (`read_chunk`) straight to the TCP write:
//! no copy into a relay buffer. TCP → stream reads into a buffer that exists only while the
//! connection has data (see `pump_tcp`): an idle connection holds no relay buffer in either
//! direction.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use polymux::{ReadHalf, Stream};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::tcp::ReadHalf as TcpReadHalf;
use tokio::net::TcpStream;

/// Header version.
pub const STREAM_VERSION: u8 = 1;
/// Header version of a stream that carries a UDP flow's datagrams.
pub const DATAGRAM_VERSION: u8 = 2;
/// How long the acceptor waits for a header, and the opener for a status.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(30);
/// Relay buffer of the TCP → stream direction, held only while data flows; also the largest
/// chunk taken from the stream at once.
const BUFFER: usize = 32 * 1024;
const MAX_MESSAGE: usize = 1024;

/// The acceptor's answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum OpenStatus {
    /// Connected to the target; relaying.
    Ok = 0,
    /// No target for the service name.
    UnknownService = 1,
    /// The target refused or timed out.
    TargetUnreachable = 2,
    /// The acceptor is shutting down.
    ShuttingDown = 3,
    /// The acceptor's stream limit is reached.
    Busy = 4,
    /// The opener did not prove this service's token (per-service tokens).
    Unauthorised = 5,
}

impl OpenStatus {
    fn describe(code: u8) -> &'static str {
        match code {
            1 => "unknown service",
            2 => "target unreachable",
            3 => "shutting down",
            4 => "stream limit reached",
            5 => "not authorised for this service",
            _ => "unknown status",
        }
    }
}

/// Bytes moved by one relay.
#[derive(Clone, Copy, Debug, Default)]
pub struct Moved {
    /// From the TCP connection into the stream.
    pub into_stream: u64,
    /// From the stream into the TCP connection.
    pub out_of_stream: u64,
}

/// Why a relay did not complete.
#[derive(Debug)]
pub enum RelayError {
    /// The acceptor answered with a non-ok status.
    Refused {
        /// What the status means.
        what: &'static str,
        /// The acceptor's message.
        message: String,
    },
    /// I/O failed on the stream or the TCP connection.
    Io(io::Error),
}

impl std::fmt::Display for RelayError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RelayError::Refused { what, message } => write!(f, "{what}: {message}"),
            RelayError::Io(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for RelayError {}

impl From<io::Error> for RelayError {
    fn from(e: io::Error) -> Self {
        RelayError::Io(e)
    }
}

/// Live byte counters of a service's relays (for `--metrics`): bytes are added as they are
/// read, so long-lived connections show up while they run.
#[derive(Clone, Debug, Default)]
pub struct Meter {
    /// Bytes towards the service's target.
    pub to_target: Arc<AtomicU64>,
    /// Bytes from the target back.
    pub from_target: Arc<AtomicU64>,
}

/// Writes the header naming `service` (at most 255 bytes).
pub async fn write_header<W: AsyncWrite + Unpin>(w: &mut W, service: &str) -> io::Result<()> {
    write_header_version(w, STREAM_VERSION, service).await
}

/// Writes a header of `version` ([`STREAM_VERSION`] or [`DATAGRAM_VERSION`]).
pub async fn write_header_version<W: AsyncWrite + Unpin>(
    w: &mut W,
    version: u8,
    service: &str,
) -> io::Result<()> {
    let name = service.as_bytes();
    let len = u8::try_from(name.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "service name over 255 bytes"))?;
    let mut out = Vec::with_capacity(2 + name.len());
    out.extend_from_slice(&[version, len]);
    out.extend_from_slice(name);
    w.write_all(&out).await
}

/// Reads a header of either version: (whether it is a datagram stream, the service name).
pub async fn read_any_header<R: AsyncRead + Unpin>(r: &mut R) -> io::Result<(bool, String)> {
    let mut head = [0u8; 2];
    r.read_exact(&mut head).await?;
    if head[0] != STREAM_VERSION && head[0] != DATAGRAM_VERSION {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "stream header version {} (expected {STREAM_VERSION}); use the same polymux \
                 release on both sides",
                head[0]
            ),
        ));
    }
    let mut name = vec![0u8; usize::from(head[1])];
    r.read_exact(&mut name).await?;
    let name = String::from_utf8(name)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "service name is not UTF-8"))?;
    Ok((head[0] == DATAGRAM_VERSION, name))
}

/// Writes the acceptor's status.
pub async fn write_status<W: AsyncWrite + Unpin>(
    w: &mut W,
    status: OpenStatus,
    message: &str,
) -> io::Result<()> {
    let message = &message.as_bytes()[..message.len().min(MAX_MESSAGE)];
    let mut out = Vec::with_capacity(3 + message.len());
    out.push(status as u8);
    out.extend_from_slice(&(message.len() as u16).to_be_bytes());
    out.extend_from_slice(message);
    w.write_all(&out).await
}

/// Reads the acceptor's status; `Err(Refused)` for anything but ok.
pub async fn read_status<R: AsyncRead + Unpin>(r: &mut R) -> Result<(), RelayError> {
    let mut head = [0u8; 3];
    r.read_exact(&mut head).await?;
    let len = usize::from(u16::from_be_bytes([head[1], head[2]])).min(MAX_MESSAGE);
    let mut message = vec![0u8; len];
    r.read_exact(&mut message).await?;
    if head[0] == OpenStatus::Ok as u8 {
        return Ok(());
    }
    Err(RelayError::Refused {
        what: OpenStatus::describe(head[0]),
        message: String::from_utf8_lossy(&message).into_owned(),
    })
}

/// Copies what the TCP connection sends to `w` until EOF, then shuts `w` down (half-close).
/// Each read is added to `count` (the service's meter) as it happens.
///
/// Invariant: the relay buffer exists only while the connection has data for it. It is taken
/// when the socket is readable and given back as soon as a read would block, so an idle
/// connection holds no buffer at all (a thousand idle visitors used to hold 32 KiB each,
/// per side, for their whole lives). Under load the socket rarely runs dry between reads, so
/// the buffer is reused across reads and the allocator's fast path covers the rest.
async fn pump_tcp<W: AsyncWrite + Unpin>(
    r: &TcpReadHalf<'_>,
    w: &mut W,
    count: &AtomicU64,
) -> io::Result<u64> {
    let mut n = 0;
    let mut buf: Vec<u8> = Vec::new();
    loop {
        if buf.capacity() == 0 {
            r.readable().await?;
            buf.reserve_exact(BUFFER);
        }
        match r.try_read_buf(&mut buf) {
            Ok(0) => break,
            Ok(read) => {
                count.fetch_add(read as u64, Ordering::Relaxed);
                w.write_all(&buf).await?;
                n += read as u64;
                buf.clear();
            }
            // Idle (or a spurious wake-up): give the buffer back before waiting again.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => buf = Vec::new(),
            Err(e) => return Err(e),
        }
    }
    w.shutdown().await?;
    Ok(n)
}

/// Copies the stream's data to `w` as it arrived, chunk by chunk (no relay buffer), until EOF,
/// then shuts `w` down (half-close). Each chunk is added to `count` (the service's meter) as
/// it is read.
async fn pump_chunks<W: AsyncWrite + Unpin>(
    r: &mut ReadHalf<'_>,
    w: &mut W,
    count: &AtomicU64,
) -> io::Result<u64> {
    let mut n = 0;
    while let Some(chunk) = r.read_chunk(BUFFER).await? {
        count.fetch_add(chunk.len() as u64, Ordering::Relaxed);
        w.write_all(&chunk).await?;
        n += chunk.len() as u64;
    }
    w.shutdown().await?;
    Ok(n)
}

/// The opener's relay: header, then both directions, the answer only after an ok status.
/// On failure the stream is reset.
pub async fn relay_opened(
    mut stream: Stream,
    mut tcp: TcpStream,
    service: &str,
    meter: &Meter,
) -> Result<Moved, RelayError> {
    if let Err(e) = write_header(&mut stream, service).await {
        stream.reset();
        crate::trim::note_ended();
        return Err(e.into());
    }
    let (mut sr, mut sw) = stream.halves();
    let (tr, mut tw) = tcp.split();
    let upload = async {
        pump_tcp(&tr, &mut sw, &meter.to_target)
            .await
            .map_err(RelayError::from)
    };
    let download = async {
        tokio::time::timeout(HEADER_TIMEOUT, read_status(&mut sr))
            .await
            .map_err(|_| {
                RelayError::Io(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("no answer from the other side within {HEADER_TIMEOUT:?}"),
                ))
            })?
            .map_err(refused_by_the_engine)?;
        pump_chunks(&mut sr, &mut tw, &meter.from_target)
            .await
            .map_err(RelayError::from)
    };
    let result = tokio::try_join!(upload, download);
    finish(stream, result)
}

/// A stream reset (or, on smux, closed) before any status came was refused by the other
/// side's engine: its `--max-streams` or accept backlog was full, or it was shutting down.
fn refused_by_the_engine(e: RelayError) -> RelayError {
    match e {
        RelayError::Io(io)
            if matches!(
                io.kind(),
                io::ErrorKind::ConnectionReset | io::ErrorKind::UnexpectedEof
            ) =>
        {
            RelayError::Refused {
                what: "stream refused",
                message: "the other side refused the new stream: its stream limit reached \
                          (--max-streams), or it is shutting down"
                    .to_owned(),
            }
        }
        other => other,
    }
}

/// The acceptor's relay, after it wrote an ok status. On failure the stream is reset.
/// (Here the TCP connection is the target's.)
pub async fn relay_accepted(
    mut stream: Stream,
    mut tcp: TcpStream,
    meter: &Meter,
) -> Result<Moved, RelayError> {
    let (mut sr, mut sw) = stream.halves();
    let (tr, mut tw) = tcp.split();
    let upload = async {
        pump_tcp(&tr, &mut sw, &meter.from_target)
            .await
            .map_err(RelayError::from)
    };
    let download = async {
        pump_chunks(&mut sr, &mut tw, &meter.to_target)
            .await
            .map_err(RelayError::from)
    };
    let result = tokio::try_join!(upload, download);
    finish(stream, result)
}

fn finish(mut stream: Stream, result: Result<(u64, u64), RelayError>) -> Result<Moved, RelayError> {
    crate::trim::note_ended();
    match result {
        Ok((into_stream, out_of_stream)) => Ok(Moved {
            into_stream,
            out_of_stream,
        }),
        Err(e) => {
            stream.reset();
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn header_and_status_round_trip() {
        let (mut a, mut b) = tokio::io::duplex(1024);
        write_header(&mut a, "web").await.expect("write");
        assert_eq!(
            read_any_header(&mut b).await.expect("read"),
            (false, "web".to_owned())
        );
        write_header_version(&mut a, DATAGRAM_VERSION, "dns")
            .await
            .expect("write");
        assert_eq!(
            read_any_header(&mut b).await.expect("read"),
            (true, "dns".to_owned())
        );
        write_status(&mut b, OpenStatus::Ok, "")
            .await
            .expect("write");
        read_status(&mut a).await.expect("ok");
        write_status(&mut b, OpenStatus::UnknownService, "no target for db")
            .await
            .expect("write");
        let err = read_status(&mut a).await.expect_err("refused");
        assert_eq!(err.to_string(), "unknown service: no target for db");
    }
}
