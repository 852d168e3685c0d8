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

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Mutex;

use anyhow::{ensure, Context};
use polymux_testkit::bench::{self, serve_stream, Held, How, HOLD_CAPACITY, SINK_BUF};
use polymux_testkit::{Peer, Role, SessionParams};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpSocket, TcpStream};

use crate::args::{ServeArgs, SinkRead};
use crate::impls::{with_peer, Mode};
use crate::sys;
use polymux_testkit::alloc;

/// Listen backlog (the kernel caps it at `net.core.somaxconn`).
const LISTEN_BACKLOG: u32 = 4096;

/// Streams currently held (`hold` mode).
static HELD: Held = Held::new();

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
            HELD.handle.store(std::mem::size_of::<TcpStream>(), Relaxed);
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
                        HELD.streams.fetch_add(1, Relaxed);
                    }
                    _ => {
                        tokio::spawn(async move {
                            if let Err(e) = serve_stream(tcp, mode, how).await {
                                report(e);
                            }
                        });
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
    bench::serve_session(session, mode, how, &HELD, report).await;
    Ok(())
}

/// Prints a stream's error, unless it is the noise of teardown.
fn report(e: io::Error) {
    if !bench::teardown_noise(&e) {
        eprintln!("serve: stream: {e}");
    }
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
        HELD.streams.load(Relaxed),
        HELD.handle.load(Relaxed),
    )
}
