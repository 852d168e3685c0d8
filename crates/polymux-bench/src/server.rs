//! `polymux-bench serve`: the server child process.
//!
//! Binds a data listener and a control listener on 127.0.0.1 and prints
//! `LISTENING <data-addr> <control-addr>` on stdout. Every TCP connection on the data listener is
//! a session of the implementation (for raw TCP: one stream), and every stream is handled
//! according to `--mode` (see [`Mode`]). The control listener answers `STATS` lines with this
//! process's own figures: `STATS user_us=… sys_us=… rss_b=… heap_b=… allocs=… held=… handle_b=…`
//! (CPU from `getrusage(RUSAGE_SELF)`, RSS from `/proc/self/status`, heap from the counting
//! allocator, which only counts in `hold` mode). The process exits when its stdin closes, so
//! it never outlives the `run` that started it.
//!
//! A polymux sink takes its data with `Stream::read_chunk` (zero-copy) unless
//! `--sink-read copy` asks for `AsyncRead` into a buffer, which is what every other
//! implementation's sink does (their APIs have nothing else).

use std::any::Any;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{ensure, Context};
use polymux_testkit::{MuxSession, Peer, Role, SessionParams};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpSocket, TcpStream};

use crate::args::{ServeArgs, SinkRead};
use crate::impls::{with_peer, Mode, TAG_ECHO, TAG_SINK};
use crate::sys;
use polymux_testkit::alloc;

/// Read buffer of a sink stream (at least the client's write size: 1 MiB for raw-tcp-large).
const SINK_BUF: usize = 128 * 1024;
/// Read buffer of an echo stream (1000 of them at once in `burst`).
const ECHO_BUF: usize = 16 * 1024;
/// Held streams' vectors are allocated this big up front, so their growth is not counted as
/// per-stream memory (the handle's own size is added explicitly instead: `handle_b`).
const HOLD_CAPACITY: usize = 16 * 1024;
/// How long a sink waits for the client's close after acknowledging.
const CLOSE_WAIT: Duration = Duration::from_secs(30);

/// Listen backlog (the kernel caps it at `net.core.somaxconn`).
const LISTEN_BACKLOG: u32 = 4096;

/// Streams currently held (`hold` mode).
static HELD: AtomicUsize = AtomicUsize::new(0);
/// `size_of` the held stream handle.
static HANDLE_SIZE: AtomicUsize = AtomicUsize::new(0);

pub fn main(args: ServeArgs) -> anyhow::Result<()> {
    sys::raise_nofile();
    if args.mode == Mode::Hold {
        alloc::enable();
    }
    ensure!(
        !args.imp.is_go(),
        "{} is served by the Go peer program",
        args.imp
    );
    crate::runtime(args.threads)?.block_on(serve(args))
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let data = listen(args.listen).with_context(|| format!("listen on {}", args.listen))?;
    let control = listen(SocketAddr::new(args.listen.ip(), 0)).context("control listener")?;
    println!("LISTENING {} {}", data.local_addr()?, control.local_addr()?);
    use std::io::Write as _;
    std::io::stdout().flush()?;

    tokio::spawn(control_loop(control));
    std::thread::spawn(|| {
        // Exit when the parent closes our stdin (or dies).
        use std::io::Read as _;
        let mut stdin = std::io::stdin();
        let mut buf = [0u8; 64];
        while matches!(stdin.read(&mut buf), Ok(n) if n > 0) {}
        std::process::exit(0);
    });

    let raw_held: &'static Mutex<Vec<TcpStream>> = Box::leak(Box::new(Mutex::new(
        if args.mode == Mode::Hold && args.imp.is_raw_tcp() {
            HANDLE_SIZE.store(std::mem::size_of::<TcpStream>(), Relaxed);
            Vec::with_capacity(HOLD_CAPACITY)
        } else {
            Vec::new()
        },
    )));
    loop {
        let (tcp, _) = data.accept().await.context("accept")?;
        tcp.set_nodelay(true)?;
        let mode = args.mode;
        let how = How {
            sink_buf: SINK_BUF.max(args.imp.transfer_chunk()),
            chunks: args.sink_read == SinkRead::Chunk,
        };
        with_peer!(
            args.imp,
            |peer| {
                tokio::spawn(async move {
                    if let Err(e) = serve_session(peer, tcp, mode, how).await {
                        eprintln!("serve: session: {e:#}");
                    }
                });
            },
            else {
                // Raw TCP: the connection is the stream.
                match mode {
                    Mode::Hold => {
                        raw_held
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .push(tcp);
                        HELD.fetch_add(1, Relaxed);
                    }
                    _ => {
                        tokio::spawn(handle(tcp, mode, how));
                    }
                }
            }
        );
    }
}

/// A listener with a backlog that holds a whole burst of connects (raw TCP opens 1000 at once;
/// the default of 128 would drop SYNs and cost a 1 s retransmit).
fn listen(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// One multiplexed session: accept streams until the session ends.
async fn serve_session<P: Peer>(
    peer: P,
    tcp: TcpStream,
    mode: Mode,
    how: How,
) -> anyhow::Result<()> {
    let session = peer
        .connect(tcp, Role::Server, &SessionParams::default())
        .await
        .context("session setup")?;
    let mut held = Vec::new();
    if mode == Mode::Hold {
        HANDLE_SIZE.store(
            std::mem::size_of::<<P::Session as MuxSession>::Stream>(),
            Relaxed,
        );
        held.reserve(HOLD_CAPACITY);
    }
    while let Ok(mut stream) = session.accept().await {
        match mode {
            Mode::Hold => {
                // yamux 0.14 acknowledges an inbound stream only with its first frame; an empty
                // write sends it (and is a no-op for the others).
                let _ = stream.write(&[]).await;
                held.push(stream);
                HELD.fetch_add(1, Relaxed);
            }
            _ => {
                tokio::spawn(handle(stream, mode, how));
            }
        }
    }
    HELD.fetch_sub(held.len(), Relaxed);
    Ok(())
}

/// How a sink reads.
#[derive(Clone, Copy, Debug)]
struct How {
    /// Read buffer size (copying reads).
    sink_buf: usize,
    /// Take a polymux stream's data with `read_chunk`.
    chunks: bool,
}

/// Serves one stream in `mode` (sink or echo).
async fn handle<S: AsyncRead + AsyncWrite + Unpin + Any>(stream: S, mode: Mode, how: How) {
    let result = match mode {
        Mode::Sink => sink(stream, how).await,
        Mode::Echo => echo(stream).await,
        Mode::Hold => Ok(()),
        Mode::Mixed => mixed(stream, how).await,
    };
    if let Err(e) = result {
        // Clients close right after their last read; errors at that point are expected noise,
        // and a real failure shows up on the client side.
        if !matches!(
            e.kind(),
            io::ErrorKind::ConnectionReset
                | io::ErrorKind::BrokenPipe
                | io::ErrorKind::UnexpectedEof
                | io::ErrorKind::NotConnected
        ) {
            eprintln!("serve: stream: {e}");
        }
    }
}

async fn sink<S: AsyncRead + AsyncWrite + Unpin + Any>(mut s: S, how: How) -> io::Result<()> {
    let mut len = [0u8; 8];
    s.read_exact(&mut len).await?;
    let len = u64::from_le_bytes(len);
    let polymux = (&mut s as &mut dyn Any).downcast_mut::<polymux::Stream>();
    let got = match polymux {
        Some(stream) if how.chunks => drain_chunks(stream, len).await?,
        _ => drain(&mut s, len, how.sink_buf).await?,
    };
    s.write_all(&got.to_le_bytes()).await?;
    s.flush().await?;
    // Wait for the client's close, then close.
    let _ = tokio::time::timeout(CLOSE_WAIT, s.read(&mut [0u8; 1])).await;
    s.shutdown().await
}

/// Reads up to `len` bytes into a `buf_size` buffer; returns how many arrived before EOF.
async fn drain<S: AsyncRead + Unpin>(s: &mut S, len: u64, buf_size: usize) -> io::Result<u64> {
    let mut buf = vec![0u8; buf_size];
    let mut got = 0u64;
    while got < len {
        let want = (len - got).min(buf.len() as u64) as usize;
        let n = s.read(&mut buf[..want]).await?;
        if n == 0 {
            break;
        }
        got += n as u64;
    }
    Ok(got)
}

/// [`drain`] for a polymux stream, taking the received chunks without copying them.
async fn drain_chunks(s: &mut polymux::Stream, len: u64) -> io::Result<u64> {
    let mut got = 0u64;
    while got < len {
        let want = usize::try_from(len - got).unwrap_or(usize::MAX);
        match s.read_chunk(want).await? {
            Some(chunk) => got += chunk.len() as u64,
            None => break,
        }
    }
    Ok(got)
}

/// A `mixed`-mode stream: its first byte says whether it is a sink or an echo.
async fn mixed<S: AsyncRead + AsyncWrite + Unpin + Any>(mut s: S, how: How) -> io::Result<()> {
    let mut tag = [0u8; 1];
    s.read_exact(&mut tag).await?;
    match tag[0] {
        TAG_SINK => sink(s, how).await,
        TAG_ECHO => echo(s).await,
        other => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("unknown stream tag {other:#04x}"),
        )),
    }
}

async fn echo<S: AsyncRead + AsyncWrite + Unpin>(mut s: S) -> io::Result<()> {
    let mut buf = vec![0u8; ECHO_BUF];
    loop {
        let n = s.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        s.write_all(&buf[..n]).await?;
        s.flush().await?;
    }
    s.shutdown().await
}

/// Answers `STATS` lines on every control connection.
async fn control_loop(listener: TcpListener) {
    while let Ok((tcp, _)) = listener.accept().await {
        tokio::spawn(async move {
            let _ = tcp.set_nodelay(true);
            let (r, mut w) = tcp.into_split();
            let mut lines = BufReader::new(r).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let reply = match line.trim() {
                    "STATS" => stats_line(),
                    other => format!("ERR unknown command {other:?}"),
                };
                if w.write_all(format!("{reply}\n").as_bytes()).await.is_err() {
                    break;
                }
            }
        });
    }
}

/// This process's figures, as the `STATS` reply.
pub fn stats_line() -> String {
    let cpu = sys::cpu();
    let rss = sys::rss_bytes().unwrap_or(0);
    format!(
        "STATS user_us={} sys_us={} rss_b={} heap_b={} allocs={} held={} handle_b={}",
        cpu.user.as_micros(),
        cpu.sys.as_micros(),
        rss,
        alloc::net_bytes(),
        alloc::calls(),
        HELD.load(Relaxed),
        HANDLE_SIZE.load(Relaxed),
    )
}
