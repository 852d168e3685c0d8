//! Runs one scenario between two sides over one loopback TCP connection (127.0.0.1 only).
//!
//! ```no_run
//! use polymux_testkit::{assert_both_ok, peers::Yamux014, run, GoProto, Scenario, Side};
//! assert_both_ok(run(Scenario::Echo100, Side::rust(Yamux014), Side::Go(GoProto::Yamux)));
//! ```
//!
//! A Rust side is any [`Peer`]; before anything starts, each Rust side's missing capabilities
//! are checked against the scenario role, so a role it cannot play is reported as
//! [`Outcome::Unsupported`] (the other side as [`Outcome::NotRun`]). A Go side decides for
//! itself (exit code 2).
//!
//! Closing: after its part, a Rust side closes at once if it is the scenario's
//! [`Scenario::last_finisher`], else it waits up to [`GRACE`] for the peer to close first (or,
//! in-process, for the peer to finish): tearing the connection down early can turn what the
//! peer still has to read into an error (hashicorp/yamux forgets a received RST when the
//! session dies; the Rust smux crates lose a received FIN). The Go peer's client instead
//! half-closes TCP right after its part and its server waits up to 5 s for the client to go,
//! so a Rust client that finishes first (greet, halfclose, reset-by-client) against a Go
//! server costs those 5 s.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::timeout;

use crate::go_peer::{go_peer_binary, GoProcess, GoProto};
use crate::scenario::{run_side, Adapt, Outcome, Scenario, DEADLINE};
use crate::session::{Capability, MuxSession, Peer, Role, SessionParams};

/// How long a side that finished first waits for its peer to close the connection.
pub const GRACE: Duration = Duration::from_secs(10);
const SETUP_TIMEOUT: Duration = Duration::from_secs(10);
const ACCEPT_TIMEOUT: Duration = Duration::from_secs(30);
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// One side of a pair: a Rust [`Peer`] in this process, or the Go peer program.
#[derive(Clone)]
pub enum Side {
    Rust(Arc<dyn AnyPeer>),
    Go(GoProto),
}

impl Side {
    /// A Rust peer, e.g. `Side::rust(peers::Yamux014)`.
    pub fn rust<P: Peer>(peer: P) -> Side {
        Side::Rust(Arc::new(peer))
    }

    pub fn name(&self) -> String {
        match self {
            Side::Rust(p) => p.peer_name(),
            Side::Go(proto) => proto.to_string(),
        }
    }

    /// Why this side cannot play `role` of `scenario` (Rust sides only).
    /// Why this side lacks `cap` (`None`: it has it; the Go peer decides for itself).
    fn lacks(&self, cap: Capability) -> Option<String> {
        match self {
            Side::Rust(p) => p.lacks(cap),
            Side::Go(_) => None,
        }
    }

    pub fn missing_for(&self, scenario: Scenario, role: Role) -> Option<String> {
        let Side::Rust(p) = self else { return None };
        scenario.requires(role).iter().find_map(|&cap| {
            p.lacks(cap)
                .map(|why| format!("{} cannot {cap}: {why}", p.peer_name()))
        })
    }
}

impl fmt::Debug for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

/// Counts the sides that have finished their part of the scenario.
#[derive(Clone)]
pub struct Finish(Arc<watch::Sender<usize>>);

impl Finish {
    fn new() -> Self {
        Finish(Arc::new(watch::channel(0).0))
    }

    fn mark(&self) {
        self.0.send_modify(|n| *n += 1);
    }

    async fn both(&self) {
        let _ = self.0.subscribe().wait_for(|n| *n >= 2).await;
    }
}

/// Object-safe form of [`Peer`], implemented for every `Peer`.
pub trait AnyPeer: Send + Sync + 'static {
    fn peer_name(&self) -> String;
    fn lacks(&self, cap: Capability) -> Option<String>;
    /// Builds a session over `io` and plays `role`; closes the session before returning.
    fn play(
        self: Arc<Self>,
        scenario: Scenario,
        role: Role,
        io: TcpStream,
        adapt: Adapt,
        finish: Finish,
    ) -> BoxFuture<'static, Outcome>;
}

impl<P: Peer> AnyPeer for P {
    fn peer_name(&self) -> String {
        self.name()
    }

    fn lacks(&self, cap: Capability) -> Option<String> {
        self.missing(cap)
    }

    fn play(
        self: Arc<Self>,
        scenario: Scenario,
        role: Role,
        io: TcpStream,
        adapt: Adapt,
        finish: Finish,
    ) -> BoxFuture<'static, Outcome> {
        Box::pin(play_rust(self, scenario, role, io, adapt, finish))
    }
}

async fn play_rust<P: Peer>(
    peer: Arc<P>,
    scenario: Scenario,
    role: Role,
    io: TcpStream,
    adapt: Adapt,
    finish: Finish,
) -> Outcome {
    let _ = io.set_nodelay(true);
    let params = SessionParams::for_scenario(scenario);
    let session = match timeout(SETUP_TIMEOUT, peer.connect(io, role, &params)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            finish.mark();
            return Outcome::Failed(format!("session setup: {e}"));
        }
        Err(_) => {
            finish.mark();
            return Outcome::Failed("session setup timed out".into());
        }
    };
    let outcome = run_side(scenario, role, &session, adapt).await;
    finish.mark();
    if outcome.is_ok() && role != scenario.last_finisher() {
        // The peer may still need the connection: wait for it to close (or finish) first.
        let _ = timeout(GRACE, async {
            tokio::select! {
                () = session.closed() => {}
                () = finish.both() => {}
            }
        })
        .await;
    }
    let _ = timeout(CLOSE_TIMEOUT, session.close()).await;
    outcome
}

/// Both sides' outcomes.
#[derive(Clone, Debug)]
pub struct PairOutcome {
    pub scenario: Scenario,
    pub client_name: String,
    pub server_name: String,
    pub client: Outcome,
    pub server: Outcome,
    /// Wall time of the whole run, set-up and teardown included.
    pub elapsed: Duration,
}

impl PairOutcome {
    pub fn both_ok(&self) -> bool {
        self.client.is_ok() && self.server.is_ok()
    }

    /// The unsupported side's reason, if any side is unsupported.
    pub fn unsupported(&self) -> Option<&str> {
        [&self.client, &self.server]
            .into_iter()
            .find_map(|o| match o {
                Outcome::Unsupported(why) => Some(why.as_str()),
                _ => None,
            })
    }
}

impl fmt::Display for PairOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: client {} -> {}; server {} -> {} ({:.1} s)",
            self.scenario,
            self.client_name,
            self.client,
            self.server_name,
            self.server,
            self.elapsed.as_secs_f64()
        )
    }
}

/// Panics unless both sides succeeded.
#[track_caller]
pub fn assert_both_ok(pair: PairOutcome) {
    assert!(pair.both_ok(), "{pair}");
}

/// Panics unless at least one side reported the scenario unsupported; returns the reason.
#[track_caller]
pub fn assert_unsupported(pair: PairOutcome) -> String {
    match pair.unsupported() {
        Some(why) => why.to_string(),
        None => panic!("expected an unsupported side: {pair}"),
    }
}

/// [`run_pair`] on a fresh 2-worker runtime; for plain `#[test]` functions.
pub fn run(scenario: Scenario, client: Side, server: Side) -> PairOutcome {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(run_pair(scenario, client, server))
}

/// Runs `scenario` with `client` dialling `server` over one loopback TCP connection.
pub async fn run_pair(scenario: Scenario, client: Side, server: Side) -> PairOutcome {
    let start = std::time::Instant::now();
    let mut pair = run_pair_inner(scenario, client, server).await;
    pair.elapsed = start.elapsed();
    pair
}

async fn run_pair_inner(scenario: Scenario, client: Side, server: Side) -> PairOutcome {
    let mut pair = PairOutcome {
        scenario,
        client_name: client.name(),
        server_name: server.name(),
        client: Outcome::Ok,
        server: Outcome::Ok,
        elapsed: Duration::ZERO,
    };
    if let Some(why) = client.missing_for(scenario, Role::Client) {
        pair.client = Outcome::Unsupported(why);
        pair.server = Outcome::NotRun("the client cannot play its role".into());
        return pair;
    }
    if let Some(why) = server.missing_for(scenario, Role::Server) {
        pair.server = Outcome::Unsupported(why);
        pair.client = Outcome::NotRun("the server cannot play its role".into());
        return pair;
    }
    if scenario == Scenario::Ping {
        // Sides without a ping API only answer: at least one side must send pings.
        if let (Some(c), Some(s)) = (
            client.lacks(Capability::Ping),
            server.lacks(Capability::Ping),
        ) {
            pair.client = Outcome::Unsupported(format!("neither side sends pings: {c}; {s}"));
            pair.server = Outcome::NotRun("neither side sends pings".into());
            return pair;
        }
    }
    // An echo server that stops taking window updates after the peer's FIN needs a client
    // that half-closes after its echo; a Rust client adapts, the Go client does not.
    let server_stops_at_fin = match scenario {
        Scenario::Echo100 | Scenario::Bulk64 => server.lacks(Capability::WriteAfterPeerFin),
        _ => None,
    };
    if let (Some(why), Side::Go(_)) = (&server_stops_at_fin, &client) {
        pair.server = Outcome::Unsupported(why.clone());
        pair.client = Outcome::NotRun("the server cannot play its role".into());
        return pair;
    }
    let client_adapt = Adapt {
        pings: client.lacks(Capability::Ping).is_none(),
        half_close_after_echo: server_stops_at_fin.is_some(),
    };
    let server_adapt = Adapt {
        pings: server.lacks(Capability::Ping).is_none(),
        half_close_after_echo: false,
    };

    let go_client = matches!(client, Side::Go(_));
    let go_server = matches!(server, Side::Go(_));
    let go_role = if go_server {
        Role::Server
    } else {
        Role::Client
    };
    let bin = if go_client || go_server {
        match tokio::task::spawn_blocking(go_peer_binary).await {
            Ok(Ok(bin)) => Some(bin),
            Ok(Err(why)) => return pair.setup_failed(go_role, why),
            Err(e) => return pair.setup_failed(go_role, e.to_string()),
        }
    } else {
        None
    };
    let finish = Finish::new();

    let (server_task, addr): (JoinHandle<Outcome>, SocketAddr) = match server {
        Side::Rust(peer) => {
            let listener = match TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await {
                Ok(l) => l,
                Err(e) => return pair.setup_failed(Role::Server, format!("bind: {e}")),
            };
            let addr = listener
                .local_addr()
                .expect("bound listener has an address");
            let finish = finish.clone();
            let task = tokio::spawn(async move {
                match timeout(ACCEPT_TIMEOUT, listener.accept()).await {
                    Ok(Ok((io, _))) => {
                        drop(listener);
                        peer.play(scenario, Role::Server, io, server_adapt, finish)
                            .await
                    }
                    Ok(Err(e)) => {
                        finish.mark();
                        Outcome::Failed(format!("TCP accept: {e}"))
                    }
                    Err(_) => {
                        finish.mark();
                        Outcome::Failed("no TCP connection arrived".into())
                    }
                }
            });
            (task, addr)
        }
        Side::Go(proto) => {
            let bin = bin.as_deref().expect("built above");
            match GoProcess::spawn(bin, proto, Role::Server, "127.0.0.1:0", scenario).await {
                Ok(p) => {
                    let addr = p.listening().expect("server reports its address");
                    (spawn_go(p, finish.clone()), addr)
                }
                Err(outcome) => {
                    pair.server = outcome;
                    pair.client = Outcome::NotRun("the server did not start".into());
                    return pair;
                }
            }
        }
    };

    let client_task = match client {
        Side::Rust(peer) => {
            let finish = finish.clone();
            tokio::spawn(async move {
                match timeout(SETUP_TIMEOUT, TcpStream::connect(addr)).await {
                    Ok(Ok(io)) => {
                        peer.play(scenario, Role::Client, io, client_adapt, finish)
                            .await
                    }
                    Ok(Err(e)) => {
                        finish.mark();
                        Outcome::Failed(format!("TCP connect to {addr}: {e}"))
                    }
                    Err(_) => {
                        finish.mark();
                        Outcome::Failed(format!("TCP connect to {addr} timed out"))
                    }
                }
            })
        }
        Side::Go(proto) => {
            let bin = bin.as_deref().expect("built above");
            let addr = addr.to_string();
            match GoProcess::spawn(bin, proto, Role::Client, &addr, scenario).await {
                Ok(p) => spawn_go(p, finish.clone()),
                Err(outcome) => {
                    server_task.abort();
                    pair.client = outcome;
                    pair.server = Outcome::NotRun("the client did not start".into());
                    return pair;
                }
            }
        }
    };

    (pair.client, pair.server) = join_with_grace(client_task, server_task).await;
    pair
}

fn spawn_go(p: GoProcess, finish: Finish) -> JoinHandle<Outcome> {
    tokio::spawn(async move {
        let outcome = p.outcome().await;
        finish.mark();
        outcome
    })
}

impl PairOutcome {
    /// Setup failed before the scenario could start, because of the `blamed` side.
    fn setup_failed(mut self, blamed: Role, why: String) -> PairOutcome {
        let (blamed, other) = if blamed == Role::Client {
            (&mut self.client, &mut self.server)
        } else {
            (&mut self.server, &mut self.client)
        };
        *blamed = Outcome::Failed(why);
        *other = Outcome::NotRun("setup failed".into());
        self
    }
}

/// Waits for both sides; once one has ended, the other gets a bounded grace period.
async fn join_with_grace(
    mut client: JoinHandle<Outcome>,
    mut server: JoinHandle<Outcome>,
) -> (Outcome, Outcome) {
    fn joined(r: Result<Outcome, tokio::task::JoinError>) -> Outcome {
        r.unwrap_or_else(|e| Outcome::Failed(format!("side panicked or was cancelled: {e}")))
    }
    let overall = DEADLINE + SETUP_TIMEOUT + GRACE + CLOSE_TIMEOUT + Duration::from_secs(30);
    let first = timeout(overall, async {
        tokio::select! {
            r = &mut client => (Role::Client, joined(r)),
            r = &mut server => (Role::Server, joined(r)),
        }
    })
    .await;
    let Ok((first_role, first)) = first else {
        client.abort();
        server.abort();
        let why = format!("runner: no side ended within {} s", overall.as_secs());
        return (Outcome::Failed(why.clone()), Outcome::Failed(why));
    };
    let other = match first_role {
        Role::Client => &mut server,
        Role::Server => &mut client,
    };
    let bound = GRACE + CLOSE_TIMEOUT + Duration::from_secs(5);
    let second = if let Outcome::Unsupported(_) = first {
        // A Go side that cannot play its role exits at once; the other side has no peer.
        other.abort();
        Outcome::NotRun(format!("the {first_role} side cannot play its role"))
    } else {
        match timeout(bound, &mut *other).await {
            Ok(r) => joined(r),
            Err(_) => {
                other.abort();
                Outcome::Failed(format!(
                    "did not end within {} s after the {first_role} side ended ({first})",
                    bound.as_secs()
                ))
            }
        }
    };
    match first_role {
        Role::Client => (first, second),
        Role::Server => (second, first),
    }
}
