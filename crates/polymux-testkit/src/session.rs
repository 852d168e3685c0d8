//! The small traits every multiplexer plays the scenarios through.
//!
//! * [`MuxSession`]: one live multiplexed session (open/accept streams plus the optional
//!   capabilities ping, GoAway and stream reset). Cheap to clone; clones share the session.
//! * [`Peer`]: a factory that builds a [`MuxSession`] over a TCP connection for a role and
//!   declares, with the source location that shows it, which [`Capability`] it lacks.
//!
//! Optional operations default to an [`io::ErrorKind::Unsupported`] error, which the scenarios
//! report as [`crate::Outcome::Unsupported`].

use std::fmt;
use std::io;
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use crate::scenario::Scenario;

/// Which end of the TCP connection a side is: the dialer is the multiplexer client.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    Client,
    Server,
}

impl Role {
    /// The spelling used on the Go peer's command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Client => "client",
            Role::Server => "server",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An optional capability a scenario role may need.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Capability {
    /// Send a ping and report the round-trip time.
    Ping,
    /// Answer the peer's pings (every yamux-shaped implementation does, API or not).
    AnswerPing,
    /// Send GoAway while the session (and its open streams) stays up.
    SendGoAway,
    /// After receiving GoAway keep existing streams running, and fail `open()` with an error
    /// [`MuxSession::is_goaway_error`] recognises.
    RecvGoAway,
    /// Abort a stream with a reset (RST).
    SendReset,
    /// Report a reset received on a stream as an error distinct from a clean EOF.
    RecvReset,
    /// Keep writing after the peer's FIN arrived (i.e. keep taking in window updates) for more
    /// than one window's worth of data: an echo server whose client half-closes early.
    WriteAfterPeerFin,
    /// Still report a stream's data and EOF that arrived before the peer closed the connection
    /// (the Go peer's client closes as soon as its part is done).
    EofAfterPeerClose,
    /// Keep an idle session alive for a peer with a 1 s dead-peer timeout, by sending
    /// keep-alives every 100 ms (`idle`) or answering the peer's pings.
    KeepAlive,
    /// Keep the other streams flowing while one inbound stream is never read (`unread`): its
    /// sender must be held back by that stream's own window (yamux, smux v2 and net-mux have
    /// one, smux v1 has not), and the receiver must not stop reading the connection for it.
    IsolateUnread,
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Capability::Ping => "ping",
            Capability::AnswerPing => "answer a ping",
            Capability::SendGoAway => "send GoAway",
            Capability::RecvGoAway => "survive a received GoAway",
            Capability::SendReset => "send a stream reset",
            Capability::RecvReset => "detect a stream reset",
            Capability::WriteAfterPeerFin => "keep writing after the peer's FIN",
            Capability::EofAfterPeerClose => "read a stream to EOF after the peer closed",
            Capability::KeepAlive => "keep an idle session alive at 100 ms keep-alives",
            Capability::IsolateUnread => {
                "keep other streams flowing while one inbound stream is left unread"
            }
        })
    }
}

/// Keep-alive settings requested by a scenario (`idle`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeepAlive {
    /// How often to send keep-alive frames.
    pub interval: Duration,
    /// Declare the peer dead after this much silence, where configurable.
    pub timeout: Duration,
}

/// Session settings a scenario asks of every side.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SessionParams {
    /// `Some` for scenarios that exercise keep-alive; `None` means "library default".
    pub keep_alive: Option<KeepAlive>,
}

impl SessionParams {
    /// The settings SCENARIOS.md prescribes for `scenario`.
    pub fn for_scenario(scenario: Scenario) -> Self {
        Self {
            keep_alive: (scenario == Scenario::Idle).then_some(KeepAlive {
                interval: Duration::from_millis(100),
                timeout: Duration::from_secs(1),
            }),
        }
    }
}

/// An [`io::ErrorKind::Unsupported`] error naming what is missing.
pub fn unsupported(what: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::Unsupported, what.into())
}

/// One live multiplexed session as the scenarios see it.
pub trait MuxSession: Clone + Send + Sync + 'static {
    type Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static;

    /// Opens an outbound stream. The peer must learn about it without any payload being
    /// written (the `greet` scenario writes nothing first).
    fn open(&self) -> BoxFuture<'_, io::Result<Self::Stream>>;

    /// Waits for the next inbound stream; fails once the session has ended.
    fn accept(&self) -> BoxFuture<'_, io::Result<Self::Stream>>;

    /// Pings the peer and returns the round-trip time.
    fn ping(&self) -> BoxFuture<'_, io::Result<Duration>> {
        Box::pin(async { Err(unsupported("ping")) })
    }

    /// Sends GoAway; the session and its open streams stay up.
    fn go_away(&self) -> BoxFuture<'_, io::Result<()>> {
        Box::pin(async { Err(unsupported("GoAway")) })
    }

    /// Aborts `stream` with a reset.
    fn reset(&self, stream: Self::Stream) -> io::Result<()> {
        drop(stream);
        Err(unsupported("stream reset"))
    }

    /// Whether `err` (from [`MuxSession::open`]) means the peer sent GoAway.
    fn is_goaway_error(&self, err: &io::Error) -> bool {
        let _ = err;
        false
    }

    /// Whether `err` (from a stream read) means the peer reset the stream.
    fn is_reset_error(&self, err: &io::Error) -> bool {
        err.kind() == io::ErrorKind::ConnectionReset
    }

    /// Closes the whole session (best effort, gracefully where the library can).
    fn close(&self) -> BoxFuture<'_, ()>;

    /// Resolves once the session has ended, e.g. because the peer closed the connection.
    /// The default accepts (and drops) streams until `accept` fails.
    fn closed(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move { while self.accept().await.is_ok() {} })
    }
}

/// Builds sessions of one implementation; the unit a test names as `Side::rust(peer)`.
pub trait Peer: Send + Sync + 'static {
    type Session: MuxSession;

    /// Short name used in reports, e.g. `yamux-0.14`.
    fn name(&self) -> String;

    /// `Some(reason)` if this implementation lacks `cap`; the reason should cite the source
    /// location that shows it. The default claims every capability.
    fn missing(&self, cap: Capability) -> Option<String> {
        let _ = cap;
        None
    }

    /// Builds a session over `io` (already connected) for `role`.
    fn connect(
        &self,
        io: TcpStream,
        role: Role,
        params: &SessionParams,
    ) -> BoxFuture<'static, io::Result<Self::Session>>;
}
