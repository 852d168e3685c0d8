//! polymux itself as a scenario side, in every dialect.
//!
//! Interop sessions raise the accept backlog to 1024 so `open1000` measures interop rather than
//! the application's accept speed (the reference Go peer is configured the same way); every
//! other setting is the dialect preset, with the keep-alive a scenario asks for.

use std::io;
use std::time::Duration;

use futures::future::BoxFuture;
use polymux::{Config, Dialect, Error};
use tokio::net::TcpStream;

use crate::session::{unsupported, Capability, MuxSession, Peer, Role, SessionParams};

/// polymux speaking `dialect`.
#[derive(Clone, Copy, Debug)]
pub struct Polymux(pub Dialect);

/// A live polymux session.
#[derive(Clone, Debug)]
pub struct PolymuxSession {
    session: polymux::Session,
}

fn typed(err: &io::Error) -> Option<&Error> {
    err.get_ref().and_then(|e| e.downcast_ref::<Error>())
}

impl Peer for Polymux {
    type Session = PolymuxSession;

    fn name(&self) -> String {
        format!("polymux-{}", self.0.name().replace(' ', ""))
    }

    fn missing(&self, cap: Capability) -> Option<String> {
        let smux = matches!(self.0, Dialect::SmuxV1 | Dialect::SmuxV2);
        let why = match cap {
            Capability::Ping
            | Capability::AnswerPing
            | Capability::SendGoAway
            | Capability::RecvGoAway
                if smux =>
            {
                "smux has no Ping or GoAway frame (cmds SYN/FIN/PSH/NOP/UPD only)"
            }
            Capability::SendReset | Capability::RecvReset if smux => {
                "smux has no RST: a reset is a FIN plus local discard, which the peer sees as EOF"
            }
            Capability::IsolateUnread if self.0 == Dialect::SmuxV1 => {
                "smux v1 has no per-stream window: an unread stream's data fills the session \
                 receive budget, and then the session stops reading the transport (documented \
                 on Config::smux_v1, crates/polymux-proto/src/config.rs)"
            }
            _ => return None,
        };
        Some(why.to_string())
    }

    fn connect(
        &self,
        io: TcpStream,
        role: Role,
        params: &SessionParams,
    ) -> BoxFuture<'static, io::Result<PolymuxSession>> {
        let mut builder = Config::for_dialect(self.0)
            .to_builder()
            .accept_backlog(1024);
        if let Some(ka) = params.keep_alive {
            builder = builder
                .keepalive_interval(Some(ka.interval))
                .keepalive_timeout(ka.timeout);
        }
        let config = builder.build();
        Box::pin(async move {
            let config = config.map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
            polymux::tcp::tune(&io)?;
            let role = match role {
                Role::Client => polymux::Role::Client,
                Role::Server => polymux::Role::Server,
            };
            let (session, driver) = polymux::tokio::session(io, config, role);
            tokio::spawn(driver);
            Ok(PolymuxSession { session })
        })
    }
}

impl MuxSession for PolymuxSession {
    type Stream = polymux::Stream;

    fn open(&self) -> BoxFuture<'_, io::Result<polymux::Stream>> {
        Box::pin(async move { Ok(self.session.open().await?) })
    }

    fn accept(&self) -> BoxFuture<'_, io::Result<polymux::Stream>> {
        Box::pin(async move { Ok(self.session.accept().await?) })
    }

    fn ping(&self) -> BoxFuture<'_, io::Result<Duration>> {
        Box::pin(async move { Ok(self.session.ping().await?) })
    }

    fn go_away(&self) -> BoxFuture<'_, io::Result<()>> {
        Box::pin(async move {
            // The scenarios test a GoAway frame reaching the peer; on smux `go_away()` only
            // refuses new streams locally (FIN each), which they cannot observe as a GoAway.
            if matches!(self.session.dialect(), Dialect::SmuxV1 | Dialect::SmuxV2) {
                return Err(unsupported("GoAway (smux has no GoAway frame)"));
            }
            Ok(self.session.go_away()?)
        })
    }

    fn reset(&self, mut stream: polymux::Stream) -> io::Result<()> {
        if matches!(self.session.dialect(), Dialect::SmuxV1 | Dialect::SmuxV2) {
            return Err(unsupported("stream reset (smux has no RST)"));
        }
        stream.reset();
        Ok(())
    }

    fn is_goaway_error(&self, err: &io::Error) -> bool {
        matches!(typed(err), Some(Error::GoAway(_)))
    }

    fn is_reset_error(&self, err: &io::Error) -> bool {
        matches!(typed(err), Some(Error::StreamReset))
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(self.session.close())
    }

    fn closed(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            self.session.closed().await;
        })
    }
}
