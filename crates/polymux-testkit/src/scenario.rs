//! The interop scenarios of SCENARIOS.md, both sides of each, written once over [`MuxSession`].
//!
//! [`run_side`] plays one side of one scenario on an established session and reports an
//! [`Outcome`]. Every side is bounded by [`DEADLINE`]. [`Scenario::requires`] lists the optional
//! capabilities each role needs, so a peer lacking one is reported unsupported up front.
//!
//! Points SCENARIOS.md leaves open, settled as the Go peer (`crates/polymux-testkit/go`) settles them:
//! * Clients that write and then read an echo do both concurrently (a sequential client would
//!   deadlock on flow-control windows), writing in 16 KiB pieces.
//! * GoAway: once the peer's GoAway must have been processed, `open()` has to fail with a
//!   GoAway error; other errors are retried every 20 ms for up to 5 s, and a successful open
//!   fails the scenario. The barrier: in `goaway-by-client` the server waits for data sent
//!   after the GoAway; in `goaway-by-server` the client does a ping round trip (+20 ms).
//! * `ping`: each side that has a ping API pings (at least one must: see the runner); a side
//!   without one only answers. Then the client writes `bye`, half-closes and reads the echo
//!   to EOF.
//!
//! Closing (see [`crate::runner`]): the side whose success implies that the peer is done too
//! ([`Scenario::last_finisher`]) closes at once; the other waits, bounded, for the peer's close.

use std::fmt;
use std::future::Future;
use std::io;
use std::str::FromStr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::task::JoinSet;

use crate::payload::Payload;
use crate::session::{Capability, MuxSession, Role};

mod unread;

/// Bound on one side of one scenario.
pub const DEADLINE: Duration = Duration::from_secs(60);

const KIB: usize = 1024;
const MIB: usize = 1024 * KIB;
/// Write and verify granularity; also keeps every write small enough for any frame limit.
const CHUNK: usize = 16 * KIB;
const GREETING: &[u8] = b"hello from server\n";
/// How long to keep retrying `open()` until it fails with a GoAway error.
const GOAWAY_WAIT: Duration = Duration::from_secs(5);
const GOAWAY_RETRY: Duration = Duration::from_millis(20);

/// One scenario of SCENARIOS.md.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scenario {
    Echo100,
    Bulk64,
    Open1000,
    Greet,
    HalfClose,
    ResetByClient,
    ResetByServer,
    GoAwayByClient,
    GoAwayByServer,
    Ping,
    Idle,
    Unread,
}

impl Scenario {
    pub const ALL: [Scenario; 12] = [
        Scenario::Echo100,
        Scenario::Bulk64,
        Scenario::Open1000,
        Scenario::Greet,
        Scenario::HalfClose,
        Scenario::ResetByClient,
        Scenario::ResetByServer,
        Scenario::GoAwayByClient,
        Scenario::GoAwayByServer,
        Scenario::Ping,
        Scenario::Idle,
        Scenario::Unread,
    ];

    /// The name used in SCENARIOS.md and on the Go peer's command line.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Echo100 => "echo100",
            Scenario::Bulk64 => "bulk64",
            Scenario::Open1000 => "open1000",
            Scenario::Greet => "greet",
            Scenario::HalfClose => "halfclose",
            Scenario::ResetByClient => "reset-by-client",
            Scenario::ResetByServer => "reset-by-server",
            Scenario::GoAwayByClient => "goaway-by-client",
            Scenario::GoAwayByServer => "goaway-by-server",
            Scenario::Ping => "ping",
            Scenario::Idle => "idle",
            Scenario::Unread => "unread",
        }
    }

    /// Capabilities the side playing `role` needs.
    pub fn requires(self, role: Role) -> &'static [Capability] {
        use Role::*;
        use Scenario::*;
        match (self, role) {
            (ResetByClient, Client) | (ResetByServer, Server) => &[Capability::SendReset],
            (ResetByClient, Server) | (ResetByServer, Client) => &[Capability::RecvReset],
            (GoAwayByClient, Client) | (GoAwayByServer, Server) => &[Capability::SendGoAway],
            (GoAwayByClient, Server) => &[Capability::RecvGoAway],
            // A ping round trip is the barrier after which the server's GoAway has arrived.
            (GoAwayByServer, Client) => &[Capability::RecvGoAway, Capability::Ping],
            // Each side pings if it can; the runner makes sure at least one does.
            (Ping, _) => &[Capability::AnswerPing],
            (Idle, _) => &[Capability::KeepAlive],
            // The server leaves A unread; the client's writes on A need no more than the
            // dialect's per-stream window (and a smux v1 client only meets v1 servers).
            (Unread, Server) => &[Capability::IsolateUnread],
            // The server reads to EOF last; a client may close the connection right after.
            (Greet | HalfClose, Server) => &[Capability::EofAfterPeerClose],
            _ => &[],
        }
    }

    /// The side whose success implies the other side has finished its part: it may close the
    /// connection at once, while the other side waits for that close.
    pub fn last_finisher(self) -> Role {
        match self {
            Scenario::Greet | Scenario::HalfClose | Scenario::ResetByClient => Role::Server,
            _ => Role::Client,
        }
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Scenario {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Scenario::ALL
            .into_iter()
            .find(|sc| sc.name() == s)
            .ok_or_else(|| format!("unknown scenario {s:?}"))
    }
}

/// What one side reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    Failed(String),
    Unsupported(String),
    /// Not started because the other side could not be set up or cannot play its role.
    NotRun(String),
}

impl Outcome {
    pub fn is_ok(&self) -> bool {
        matches!(self, Outcome::Ok)
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Ok => f.write_str("ok"),
            Outcome::Failed(why) => write!(f, "FAILED: {why}"),
            Outcome::Unsupported(why) => write!(f, "unsupported: {why}"),
            Outcome::NotRun(why) => write!(f, "not run: {why}"),
        }
    }
}

/// How one side adapts to what it and its peer can do; the runner decides it from both sides'
/// capabilities, so an adaptation never hides a failure (see `runner`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Adapt {
    /// This side has a ping API; without one, `ping` only answers the peer's pings.
    pub pings: bool,
    /// The echo clients of `echo100`/`bulk64` half-close only after their whole echo came
    /// back, for an echo server that stops taking window updates after the peer's FIN
    /// (otherwise they half-close as soon as they have written everything).
    pub half_close_after_echo: bool,
}

/// Plays `role` of `scenario` on `session`, bounded by [`DEADLINE`].
pub async fn run_side<S: MuxSession>(
    scenario: Scenario,
    role: Role,
    session: &S,
    adapt: Adapt,
) -> Outcome {
    match tokio::time::timeout(DEADLINE, play(scenario, role, session, adapt)).await {
        Ok(Ok(())) => Outcome::Ok,
        Ok(Err(Fail::Failed(why))) => Outcome::Failed(why),
        Ok(Err(Fail::Unsupported(why))) => Outcome::Unsupported(why),
        Err(_) => Outcome::Failed(format!("deadline of {} s expired", DEADLINE.as_secs())),
    }
}

async fn play<S: MuxSession>(scenario: Scenario, role: Role, s: &S, adapt: Adapt) -> Res<()> {
    use Role::*;
    use Scenario::*;
    match (scenario, role) {
        (Echo100, Client) => echo_clients(s, 100, MIB, adapt).await,
        (Echo100, Server) => echo_server(s, 100).await,
        (Bulk64, Client) => echo_clients(s, 1, 64 * MIB, adapt).await,
        (Bulk64, Server) => echo_server(s, 1).await,
        (Open1000, Client) => echo_clients(s, 1000, KIB, Adapt::default()).await,
        (Open1000, Server) => echo_server(s, 1000).await,
        (Greet, Client) => greet_client(s).await,
        (Greet, Server) => greet_server(s).await,
        (HalfClose, Client) => halfclose_client(s).await,
        (HalfClose, Server) => halfclose_server(s).await,
        (ResetByClient, Client) => reset_by_client_client(s).await,
        (ResetByClient, Server) => reset_by_client_server(s).await,
        (ResetByServer, Client) => reset_by_server_client(s).await,
        (ResetByServer, Server) => reset_by_server_server(s).await,
        (GoAwayByClient, Client) => goaway_by_client_client(s).await,
        (GoAwayByClient, Server) => goaway_by_client_server(s).await,
        (GoAwayByServer, Client) => goaway_by_server_client(s).await,
        (GoAwayByServer, Server) => goaway_by_server_server(s).await,
        (Ping, Client) => ping_client(s, adapt.pings).await,
        (Ping, Server) => ping_server(s, adapt.pings).await,
        (Idle, Client) => {
            tokio::time::sleep(Duration::from_millis(1500)).await;
            echo_clients(s, 1, KIB, Adapt::default()).await
        }
        (Idle, Server) => echo_server(s, 1).await,
        (Unread, Client) => unread::client(s).await,
        (Unread, Server) => unread::server(s).await,
    }
}

// ---------------------------------------------------------------------------------------------
// Failures

enum Fail {
    Failed(String),
    Unsupported(String),
}

type Res<T> = Result<T, Fail>;

fn fail<T>(why: impl Into<String>) -> Res<T> {
    Err(Fail::Failed(why.into()))
}

/// Adds context to an I/O error; `Unsupported` errors become [`Outcome::Unsupported`].
trait Ctx<T> {
    fn ctx(self, what: impl fmt::Display) -> Res<T>;
}

impl<T> Ctx<T> for io::Result<T> {
    fn ctx(self, what: impl fmt::Display) -> Res<T> {
        self.map_err(|e| match e.kind() {
            io::ErrorKind::Unsupported => Fail::Unsupported(format!("{what}: {e}")),
            _ => Fail::Failed(format!("{what}: {e} ({:?})", e.kind())),
        })
    }
}

impl Fail {
    fn context(self, what: impl fmt::Display) -> Fail {
        match self {
            Fail::Failed(m) => Fail::Failed(format!("{what}: {m}")),
            Fail::Unsupported(m) => Fail::Unsupported(format!("{what}: {m}")),
        }
    }
}

/// Waits for all tasks; the first failure aborts the rest.
async fn join_all(mut set: JoinSet<Res<()>>, what: &str) -> Res<()> {
    while let Some(joined) = set.join_next().await {
        match joined {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e),
            Err(e) => return fail(format!("{what}: task panicked or was cancelled: {e}")),
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Byte helpers

async fn write_payload<W: AsyncWrite + Unpin>(w: &mut W, seed: u64, len: usize) -> Res<()> {
    let mut gen = Payload::new(seed);
    let mut buf = vec![0u8; CHUNK.min(len)];
    let mut sent = 0;
    while sent < len {
        let n = CHUNK.min(len - sent);
        gen.fill(&mut buf[..n]);
        w.write_all(&buf[..n]).await.ctx(format_args!(
            "write after {sent} of {len} bytes (seed {seed})"
        ))?;
        sent += n;
    }
    w.flush().await.ctx("flush")
}

/// Reads exactly `len` bytes and checks them against the payload of `seed`; `until_eof`
/// additionally requires a clean EOF right after.
async fn read_verify<R: AsyncRead + Unpin>(
    r: &mut R,
    seed: u64,
    len: usize,
    until_eof: bool,
) -> Res<()> {
    let mut gen = Payload::new(seed);
    let mut buf = vec![0u8; CHUNK];
    let mut expected = vec![0u8; CHUNK];
    let mut got = 0;
    loop {
        let want = if until_eof {
            CHUNK
        } else {
            CHUNK.min(len - got)
        };
        if want == 0 {
            return Ok(());
        }
        let n = r.read(&mut buf[..want]).await.ctx(format_args!(
            "read after {got} of {len} bytes (seed {seed})"
        ))?;
        if n == 0 {
            return if got == len {
                Ok(())
            } else {
                fail(format!("EOF after {got} of {len} bytes (seed {seed})"))
            };
        }
        if got + n > len {
            return fail(format!(
                "received {} bytes, more than the {len} expected (seed {seed})",
                got + n
            ));
        }
        gen.fill(&mut expected[..n]);
        if let Some(i) = (0..n).find(|&i| buf[i] != expected[i]) {
            return fail(format!(
                "payload mismatch at byte {} (seed {seed})",
                got + i
            ));
        }
        got += n;
    }
}

/// Reads to EOF, failing if more than `limit` bytes arrive.
async fn read_to_end_limited<R: AsyncRead + Unpin>(r: &mut R, limit: usize) -> Res<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = [0u8; 256];
    loop {
        let n = r
            .read(&mut buf)
            .await
            .ctx(format_args!("read after {} bytes", out.len()))?;
        if n == 0 {
            return Ok(out);
        }
        out.extend_from_slice(&buf[..n]);
        if out.len() > limit {
            return fail(format!("more than {limit} bytes before EOF"));
        }
    }
}

fn expect_bytes(got: &[u8], want: &[u8], what: &str) -> Res<()> {
    if got == want {
        Ok(())
    } else {
        fail(format!(
            "{what}: expected {:?}, got {:?}",
            String::from_utf8_lossy(want),
            String::from_utf8_lossy(got)
        ))
    }
}

/// Keeps reading; the stream must end in a reset error, not a clean EOF or more data.
async fn expect_reset<S: MuxSession>(s: &S, st: &mut S::Stream) -> Res<()> {
    let mut buf = [0u8; 256];
    match st.read(&mut buf).await {
        Ok(0) => fail("stream ended with a clean EOF instead of a reset"),
        Ok(n) => fail(format!("received {n} unexpected bytes instead of a reset")),
        Err(e) if s.is_reset_error(&e) => Ok(()),
        Err(e) => fail(format!(
            "read failed with a non-reset error: {e} ({:?})",
            e.kind()
        )),
    }
}

/// Echoes one stream: copies what is read back until EOF, then half-closes.
async fn echo_stream<T: AsyncRead + AsyncWrite + Unpin>(st: &mut T) -> Res<()> {
    let mut buf = vec![0u8; CHUNK];
    let mut total = 0usize;
    loop {
        let n = st
            .read(&mut buf)
            .await
            .ctx(format_args!("echo: read after {total} bytes"))?;
        if n == 0 {
            break;
        }
        st.write_all(&buf[..n])
            .await
            .ctx(format_args!("echo: write after {total} bytes"))?;
        total += n;
    }
    st.flush().await.ctx("echo: flush")?;
    st.shutdown().await.ctx("echo: half-close")
}

/// Once the peer's GoAway must have been processed (the callers establish that with a barrier,
/// since an earlier `open()` would legitimately succeed): `open()` must fail with a GoAway
/// error. Other errors are retried every 20 ms for up to 5 s; a successful open is a failure.
async fn wait_for_goaway<S: MuxSession>(s: &S) -> Res<()> {
    let start = Instant::now();
    loop {
        let left = GOAWAY_WAIT.saturating_sub(start.elapsed());
        let last = match tokio::time::timeout(left, s.open()).await {
            Err(_) => "open() still pending".to_string(),
            Ok(Ok(_stream)) => return fail("open() succeeded after the peer's GoAway"),
            Ok(Err(e)) if s.is_goaway_error(&e) => return Ok(()),
            Ok(Err(e)) if e.kind() == io::ErrorKind::Unsupported => {
                return Err::<(), io::Error>(e).ctx("open")
            }
            Ok(Err(e)) => format!("{e} ({:?})", e.kind()),
        };
        if start.elapsed() >= GOAWAY_WAIT {
            return fail(format!(
                "open() did not fail with a GoAway error within {} s (last: {last})",
                GOAWAY_WAIT.as_secs()
            ));
        }
        tokio::time::sleep(GOAWAY_RETRY).await;
    }
}

// ---------------------------------------------------------------------------------------------
// Scenario sides

/// `n` concurrent streams; each writes `len` bytes (seed = index + 1), half-closes, and
/// verifies the echo to EOF while writing (with `adapt.half_close_after_echo`: verifies the
/// whole echo, then half-closes, then expects EOF).
async fn echo_clients<S: MuxSession>(s: &S, n: usize, len: usize, adapt: Adapt) -> Res<()> {
    let mut set = JoinSet::new();
    for i in 0..n {
        let s = s.clone();
        let seed = i as u64 + 1;
        set.spawn(async move {
            echo_client_one(&s, seed, len, adapt.half_close_after_echo)
                .await
                .map_err(|e| e.context(format_args!("stream {} of {n}", i + 1)))
        });
    }
    join_all(set, "echo client").await
}

async fn echo_client_one<S: MuxSession>(
    s: &S,
    seed: u64,
    len: usize,
    half_close_after_echo: bool,
) -> Res<()> {
    let stream = s.open().await.ctx("open")?;
    let (mut r, mut w) = tokio::io::split(stream);
    if half_close_after_echo {
        tokio::try_join!(
            write_payload(&mut w, seed, len),
            read_verify(&mut r, seed, len, false)
        )?;
        w.shutdown().await.ctx("half-close")?;
        let rest = read_to_end_limited(&mut r, 4 * KIB).await?;
        return expect_bytes(&rest, b"", "after the echo");
    }
    let write = async {
        write_payload(&mut w, seed, len).await?;
        w.shutdown().await.ctx("half-close")
    };
    tokio::try_join!(write, read_verify(&mut r, seed, len, true))?;
    Ok(())
}

/// Accepts `n` streams and echoes each.
async fn echo_server<S: MuxSession>(s: &S, n: usize) -> Res<()> {
    let mut set = JoinSet::new();
    for i in 0..n {
        let accepted = s.accept();
        let mut st = await_or_task_failure(&mut set, accepted)
            .await?
            .ctx(format_args!("accept stream {} of {n}", i + 1))?;
        set.spawn(async move { echo_stream(&mut st).await });
    }
    join_all(set, "echo server").await
}

/// Awaits `fut` but returns early if one of the tasks in `set` fails meanwhile.
async fn await_or_task_failure<T>(
    set: &mut JoinSet<Res<()>>,
    fut: impl Future<Output = T>,
) -> Res<T> {
    tokio::pin!(fut);
    loop {
        tokio::select! {
            v = &mut fut => return Ok(v),
            Some(joined) = set.join_next() => match joined {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(e),
                Err(e) => return fail(format!("task panicked or was cancelled: {e}")),
            },
        }
    }
}

async fn greet_client<S: MuxSession>(s: &S) -> Res<()> {
    let mut st = s.open().await.ctx("open")?;
    let got = read_to_end_limited(&mut st, 4 * KIB).await?;
    expect_bytes(&got, GREETING, "greeting")?;
    st.shutdown().await.ctx("half-close")
}

async fn greet_server<S: MuxSession>(s: &S) -> Res<()> {
    let mut st = s.accept().await.ctx("accept")?;
    st.write_all(GREETING).await.ctx("write greeting")?;
    st.flush().await.ctx("flush")?;
    st.shutdown().await.ctx("half-close")?;
    let rest = read_to_end_limited(&mut st, 4 * KIB).await?;
    expect_bytes(&rest, b"", "after the greeting")
}

async fn halfclose_client<S: MuxSession>(s: &S) -> Res<()> {
    let mut st = s.open().await.ctx("open")?;
    write_payload(&mut st, 1, 64 * KIB).await?;
    let got = read_to_end_limited(&mut st, 4 * KIB).await?;
    expect_bytes(&got, b"ok", "reply")?;
    // Writing after the peer's half-close must still work.
    write_payload(&mut st, 2, 64 * KIB).await?;
    st.shutdown().await.ctx("half-close")
}

async fn halfclose_server<S: MuxSession>(s: &S) -> Res<()> {
    let mut st = s.accept().await.ctx("accept")?;
    read_verify(&mut st, 1, 64 * KIB, false).await?;
    st.write_all(b"ok").await.ctx("write ok")?;
    st.flush().await.ctx("flush")?;
    st.shutdown().await.ctx("half-close")?;
    read_verify(&mut st, 2, 64 * KIB, true).await
}

async fn read_byte<R: AsyncRead + Unpin>(r: &mut R, want: u8) -> Res<()> {
    let mut b = [0u8; 1];
    r.read_exact(&mut b)
        .await
        .ctx(format_args!("read {:?}", want as char))?;
    expect_bytes(&b, &[want], "byte")
}

async fn reset_by_client_client<S: MuxSession>(s: &S) -> Res<()> {
    let mut st = s.open().await.ctx("open")?;
    write_payload(&mut st, 1, KIB).await?;
    read_byte(&mut st, b'r').await?;
    s.reset(st).ctx("reset")
}

async fn reset_by_client_server<S: MuxSession>(s: &S) -> Res<()> {
    let mut st = s.accept().await.ctx("accept")?;
    read_verify(&mut st, 1, KIB, false).await?;
    st.write_all(b"r").await.ctx("write r")?;
    st.flush().await.ctx("flush")?;
    expect_reset(s, &mut st).await
}

async fn reset_by_server_client<S: MuxSession>(s: &S) -> Res<()> {
    let mut st = s.open().await.ctx("open")?;
    st.write_all(b"x").await.ctx("write x")?;
    st.flush().await.ctx("flush")?;
    expect_reset(s, &mut st).await
}

async fn reset_by_server_server<S: MuxSession>(s: &S) -> Res<()> {
    let mut st = s.accept().await.ctx("accept")?;
    read_byte(&mut st, b'x').await?;
    s.reset(st).ctx("reset")
}

/// First round of the GoAway scenarios' stream A: write 1 KiB (seed 1), read its echo.
async fn goaway_first_round<T: AsyncRead + AsyncWrite + Unpin>(st: &mut T) -> Res<()> {
    write_payload(st, 1, KIB).await?;
    read_verify(st, 1, KIB, false).await
}

/// Second round: 1 KiB (seed 2), half-close, verify the echo and EOF.
async fn goaway_second_round<T: AsyncRead + AsyncWrite + Unpin>(st: &mut T) -> Res<()> {
    write_payload(st, 2, KIB).await?;
    st.shutdown().await.ctx("half-close")?;
    read_verify(st, 2, KIB, true).await
}

/// Server side of stream A: echo exactly the first 1 KiB.
async fn echo_first_kib<T: AsyncRead + AsyncWrite + Unpin>(st: &mut T) -> Res<()> {
    let mut buf = vec![0u8; KIB];
    st.read_exact(&mut buf).await.ctx("read first 1 KiB")?;
    st.write_all(&buf).await.ctx("echo first 1 KiB")?;
    st.flush().await.ctx("flush")
}

async fn goaway_by_client_client<S: MuxSession>(s: &S) -> Res<()> {
    let mut st = s.open().await.ctx("open A")?;
    goaway_first_round(&mut st).await?;
    s.go_away().await.ctx("send GoAway")?;
    goaway_second_round(&mut st).await
}

async fn goaway_by_client_server<S: MuxSession>(s: &S) -> Res<()> {
    let mut st = s.accept().await.ctx("accept A")?;
    echo_first_kib(&mut st).await?;
    // Barrier: the client sends GoAway before its second 1 KiB and frames are processed in
    // order, so once a byte past the first 1 KiB has arrived the GoAway has been seen.
    let mut buf = vec![0u8; KIB];
    let n = match tokio::time::timeout(GOAWAY_WAIT, st.read(&mut buf)).await {
        Err(_) => return fail("no data after the first 1 KiB within 5 s"),
        Ok(r) => r.ctx("read the second 1 KiB")?,
    };
    if n == 0 {
        return fail("stream A ended before the second 1 KiB");
    }
    wait_for_goaway(s).await?;
    st.write_all(&buf[..n]).await.ctx("echo")?;
    echo_stream(&mut st).await
}

async fn goaway_by_server_client<S: MuxSession>(s: &S) -> Res<()> {
    let mut st = s.open().await.ctx("open A")?;
    goaway_first_round(&mut st).await?;
    // Barrier: the server sends GoAway right after echoing; a ping round trip (plus 20 ms)
    // started after the echo arrived lets it reach us before the first open() attempt.
    s.ping().await.ctx("ping (barrier before open)")?;
    tokio::time::sleep(GOAWAY_RETRY).await;
    wait_for_goaway(s).await?;
    goaway_second_round(&mut st).await
}

async fn goaway_by_server_server<S: MuxSession>(s: &S) -> Res<()> {
    let mut st = s.accept().await.ctx("accept A")?;
    echo_first_kib(&mut st).await?;
    s.go_away().await.ctx("send GoAway")?;
    echo_stream(&mut st).await
}

/// A round trip to the peer, when this side has a ping API.
async fn maybe_ping<S: MuxSession>(s: &S, pings: bool) -> Res<()> {
    if pings {
        let rtt = s.ping().await.ctx("ping")?;
        if rtt.is_zero() || rtt > DEADLINE {
            return fail(format!("implausible ping round trip {rtt:?}"));
        }
    }
    Ok(())
}

async fn ping_client<S: MuxSession>(s: &S, pings: bool) -> Res<()> {
    maybe_ping(s, pings).await?;
    let mut st = s.open().await.ctx("open")?;
    st.write_all(b"bye").await.ctx("write bye")?;
    st.shutdown().await.ctx("half-close")?;
    let got = read_to_end_limited(&mut st, 4 * KIB).await?;
    expect_bytes(&got, b"bye", "echo")
}

async fn ping_server<S: MuxSession>(s: &S, pings: bool) -> Res<()> {
    maybe_ping(s, pings).await?;
    let mut st = s.accept().await.ctx("accept")?;
    echo_stream(&mut st).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for sc in Scenario::ALL {
            assert_eq!(sc.name().parse::<Scenario>().unwrap(), sc);
        }
    }
}
