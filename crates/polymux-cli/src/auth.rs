//! The authentication preamble: a shared-secret check before the multiplexer starts.
//!
//! It runs on the raw TCP connection (or inside TLS, when TLS is on), once per connection,
//! before either side speaks the multiplexing protocol. All integers are big-endian.
//!
//! Client → server:
//!
//! ```text
//! magic     4 bytes  "PMUX"
//! version   u8       1, or 2 when the client has per-service tokens
//! mode      u8       1 = tunnel, 2 = forward
//! protocol  u8       1 = yamux, 2 = smux1, 3 = smux2, 4 = netmux
//! token_len u16      0 ..= 1024
//! token     token_len bytes (the connection token: the default one)
//! version 2 only:
//! count     u8       0 ..= 64 per-service tokens follow
//! count ×   name_len u8 (1 ..= 64) | name | token_len u16 (1 ..= 1024) | token
//! ```
//!
//! Server → client:
//!
//! ```text
//! status    u8       0 = ok, 1 = wrong token, 2 = wrong mode, 3 = wrong protocol,
//!                    4 = unsupported version, 5 = busy (connection limit), 6 = shutting down
//! msg_len   u16      0 ..= 1024
//! message   msg_len bytes of UTF-8, for humans
//! ```
//!
//! After status 0 both sides start the multiplexer on the same connection; on any other
//! status the server closes it. With status 0 the message is empty, or (version 2) names the
//! services whose token the server refused; version 1 clients ignore it.
//!
//! **Per-service tokens.** Each service of a server has an effective token: its own, or the
//! server's default one. A session may carry service S only when the client proved S's
//! effective token: the token it listed for S, or else its connection token. The server
//! admits a client that proves the default token or at least one service's token (so a
//! version 1 client with the one shared token works as before) and records what it proved
//! ([`Grants`]); routing checks the grants against the *current* [`TokenTable`], so a token
//! changed by a reload takes effect for new connections at once. A client sends version 1
//! whenever it has no per-service token, so old servers keep working with new clients. The server compares SHA-256 digests of the two tokens with
//! [`subtle`]'s constant-time equality, so neither the token's content nor its length leaks
//! through timing; it answers a wrong token only after a short delay, to slow down guessing.
//! The whole exchange (TLS included) must finish within the server's `--handshake-timeout`
//! (see `crate::guard`) and the client's [`HANDSHAKE_TIMEOUT`].
//!
//! The mode and protocol are in the preamble so that a mismatch (a tunnel client pointed at a
//! forward server, `--protocol smux2` against a yamux server) gets a clear message instead of a
//! protocol violation later.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::{bail, Context};
use subtle::ConstantTimeEq;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::error::{auth_error, config_error};
use crate::protocol::Protocol;

/// The first four bytes a polymux client sends.
pub const MAGIC: [u8; 4] = *b"PMUX";
/// The preamble version without per-service tokens.
pub const VERSION: u8 = 1;
/// The preamble version with per-service tokens.
pub const VERSION_SERVICE_TOKENS: u8 = 2;
/// The most per-service tokens one preamble may carry.
pub const MAX_SERVICE_TOKENS: usize = 64;
/// The longest token accepted.
pub const MAX_TOKEN_LEN: usize = 1024;
/// The longest status message sent or accepted.
pub const MAX_MESSAGE_LEN: usize = 1024;
/// The client's time limit for the TLS handshake plus the preamble (servers use
/// `--handshake-timeout`, 10 s by default).
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the server waits before answering a wrong token.
const FAILURE_DELAY: Duration = Duration::from_millis(300);
/// Tokens shorter than this get a warning at startup.
const WEAK_TOKEN_LEN: usize = 16;
/// The environment variable that may hold the token.
pub const TOKEN_ENV: &str = "POLYMUX_TOKEN";

/// What a connection is for; a client and a server must agree.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// `polymux tunnel`.
    Tunnel,
    /// `polymux forward`.
    Forward,
}

impl Mode {
    fn code(self) -> u8 {
        match self {
            Mode::Tunnel => 1,
            Mode::Forward => 2,
        }
    }

    fn from_code(code: u8) -> Option<Mode> {
        match code {
            1 => Some(Mode::Tunnel),
            2 => Some(Mode::Forward),
            _ => None,
        }
    }

    /// The subcommand name.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Tunnel => "tunnel",
            Mode::Forward => "forward",
        }
    }
}

/// The server's answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Status {
    /// Authenticated; the multiplexer starts.
    Ok = 0,
    /// The token does not match.
    WrongToken = 1,
    /// The client is a tunnel client and the server a forward server, or the reverse.
    WrongMode = 2,
    /// The client and server were started with different `--protocol`.
    WrongProtocol = 3,
    /// The preamble version is not one the server speaks.
    UnsupportedVersion = 4,
    /// The server is at its connection limit.
    Busy = 5,
    /// The server is shutting down.
    ShuttingDown = 6,
}

impl Status {
    fn from_code(code: u8) -> Option<Status> {
        Some(match code {
            0 => Status::Ok,
            1 => Status::WrongToken,
            2 => Status::WrongMode,
            3 => Status::WrongProtocol,
            4 => Status::UnsupportedVersion,
            5 => Status::Busy,
            6 => Status::ShuttingDown,
            _ => return None,
        })
    }
}

/// A shared secret. Its `Debug` output is redacted.
#[derive(Clone)]
pub struct Token(Vec<u8>);

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Token(<{} bytes>)", self.0.len())
    }
}

impl Token {
    /// The token from `--token` (which clap also fills from `POLYMUX_TOKEN`) or `--token-file`.
    pub fn from_args(
        token: Option<&str>,
        token_file: Option<&Path>,
    ) -> anyhow::Result<Option<Token>> {
        let raw = match (token, token_file) {
            (Some(_), Some(_)) => {
                return Err(config_error(
                    "both --token (or POLYMUX_TOKEN) and --token-file are set; keep one",
                ))
            }
            (Some(t), None) => t.to_owned(),
            (None, Some(path)) => std::fs::read_to_string(path)
                .map_err(|e| {
                    config_error(format!(
                        "cannot read --token-file {}: {e}; check the path and its permissions",
                        path.display()
                    ))
                })?
                .trim_end_matches(['\r', '\n'])
                .to_owned(),
            (None, None) => return Ok(None),
        };
        if raw.is_empty() {
            return Err(config_error(
                "the token is empty; pass a non-empty --token / POLYMUX_TOKEN / --token-file",
            ));
        }
        if raw.len() > MAX_TOKEN_LEN {
            return Err(config_error(format!(
                "the token is {} bytes long; the limit is {MAX_TOKEN_LEN}",
                raw.len()
            )));
        }
        if raw.len() < WEAK_TOKEN_LEN {
            tracing::warn!(
                "the token is only {} characters long; use at least {WEAK_TOKEN_LEN} random ones \
                 (e.g. `openssl rand -hex 32`)",
                raw.len()
            );
        }
        Ok(Some(Token(raw.into_bytes())))
    }

    /// A token from a secret read elsewhere (a config file), with the same checks as
    /// [`Token::from_args`]; `what` names its origin in messages.
    pub fn from_secret(raw: &str, what: &str) -> anyhow::Result<Token> {
        if raw.is_empty() {
            return Err(config_error(format!("{what}: the token is empty")));
        }
        if raw.len() > MAX_TOKEN_LEN {
            return Err(config_error(format!(
                "{what}: the token is {} bytes long; the limit is {MAX_TOKEN_LEN}",
                raw.len()
            )));
        }
        if raw.len() < WEAK_TOKEN_LEN {
            tracing::warn!(
                "{what}: the token is only {} characters long; use at least {WEAK_TOKEN_LEN} \
                 random ones (e.g. `openssl rand -hex 32`)",
                raw.len()
            );
        }
        Ok(Token(raw.as_bytes().to_vec()))
    }

    fn digest(bytes: &[u8]) -> ring::digest::Digest {
        ring::digest::digest(&ring::digest::SHA256, bytes)
    }

    /// The SHA-256 digest of the token (what servers keep and compare).
    pub fn sha256(&self) -> Digest {
        digest_of(&self.0)
    }
}

impl PartialEq for Token {
    fn eq(&self, other: &Token) -> bool {
        bool::from(self.0.ct_eq(&other.0))
    }
}

/// A SHA-256 digest of a token.
pub type Digest = [u8; 32];

fn digest_of(bytes: &[u8]) -> Digest {
    let mut out = [0u8; 32];
    out.copy_from_slice(Token::digest(bytes).as_ref());
    out
}

fn digests_equal(a: &Digest, b: &Digest) -> bool {
    bool::from(a.ct_eq(b))
}

/// The tokens a server accepts: a default one and each service's own.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TokenTable {
    /// The default token's digest; `None` when the server has none.
    pub default: Option<Digest>,
    /// The known services, with their own token's digest where they have one.
    pub services: HashMap<String, Option<Digest>>,
    /// `--insecure-no-token`: a service without any token (own or default) is open to
    /// every admitted client, and clients are admitted without a token.
    pub open: bool,
}

impl TokenTable {
    /// A table with only a default token; `None` accepts anything (as `--insecure-no-token`).
    pub fn with_default(token: Option<&Token>) -> TokenTable {
        TokenTable {
            default: token.map(Token::sha256),
            services: HashMap::new(),
            open: token.is_none(),
        }
    }

    /// The digest a client must prove for `service`.
    fn effective(&self, service: &str) -> Option<&Digest> {
        match self.services.get(service) {
            Some(Some(own)) => Some(own),
            _ => self.default.as_ref(),
        }
    }
}

/// What a client proved in its preamble: kept with its session, checked against the current
/// [`TokenTable`] whenever a stream of a service would use the session.
#[derive(Clone, Debug, Default)]
pub struct Grants {
    /// Digest of the connection token (`None`: the client sent none).
    connection: Option<Digest>,
    /// Digests of the per-service tokens it listed.
    services: HashMap<String, Digest>,
}

impl Grants {
    /// Whether this client may carry `service` under `table`.
    pub fn allows(&self, table: &TokenTable, service: &str) -> bool {
        let Some(expected) = table.effective(service) else {
            return table.open;
        };
        self.services
            .get(service)
            .or(self.connection.as_ref())
            .is_some_and(|given| digests_equal(given, expected))
    }

    /// Whether the client may be admitted: it proved the default token or some service's
    /// (or the server has no token at all and runs with `--insecure-no-token`).
    fn admitted(&self, table: &TokenTable) -> bool {
        let default_matches = matches!(
            (&self.connection, &table.default),
            (Some(c), Some(d)) if digests_equal(c, d)
        );
        let tokenless = table.open && table.default.is_none() && table.services.is_empty();
        default_matches
            || tokenless
            || table
                .services
                .keys()
                .chain(self.services.keys())
                .any(|s| self.allows(table, s))
    }
}

/// What a server accepts. Clones share the token table, which a reload may replace.
#[derive(Clone, Debug)]
pub struct Expectation {
    /// The subcommand the server runs.
    pub mode: Mode,
    /// The server's `--protocol`.
    pub protocol: Protocol,
    tokens: Arc<RwLock<Arc<TokenTable>>>,
}

impl Expectation {
    /// A server-side expectation with one token. `token: None` accepts any token.
    #[cfg(test)]
    pub fn new(mode: Mode, protocol: Protocol, token: Option<&Token>) -> Expectation {
        Expectation::with_table(mode, protocol, TokenTable::with_default(token))
    }

    /// A server-side expectation with per-service tokens.
    pub fn with_table(mode: Mode, protocol: Protocol, table: TokenTable) -> Expectation {
        Expectation {
            mode,
            protocol,
            tokens: Arc::new(RwLock::new(Arc::new(table))),
        }
    }

    /// The token table in force.
    pub fn tokens(&self) -> Arc<TokenTable> {
        self.tokens
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Replaces the token table (a reload); sessions already admitted keep their grants,
    /// which are checked against the new table from now on.
    pub fn set_tokens(&self, table: TokenTable) {
        *self
            .tokens
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Arc::new(table);
    }
}

/// Why a server refused a client; the connection is closed afterwards.
#[derive(Debug)]
pub struct Refusal {
    /// What the server answered.
    pub status: Status,
    /// The log line.
    pub reason: String,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reason)
    }
}

impl std::error::Error for Refusal {}

/// An admitted client: what it proved, and a note on the per-service tokens the server
/// refused (empty when none), sent with the welcome.
#[derive(Clone, Debug, Default)]
pub struct Admission {
    /// The tokens it proved.
    pub grants: Grants,
    /// `"api: wrong token; db: not a service of this server"`, or empty.
    pub note: String,
}

/// Reads and checks the client's preamble. `Ok` means the client is authenticated and
/// waits for its status: the caller answers with [`welcome_client`] or [`refuse_client`]
/// (so that a client slot is only ever taken by an authenticated client). A [`Refusal`]
/// means the client was told why and must be disconnected; other errors are I/O failures
/// or garbage. The caller bounds it in time (`--handshake-timeout`).
pub async fn authenticate_client<T>(io: &mut T, expect: &Expectation) -> anyhow::Result<Admission>
where
    T: AsyncRead + AsyncWrite + Unpin,
{
    let mut head = [0u8; 4];
    io.read_exact(&mut head)
        .await
        .context("the client closed the connection before sending the preamble")?;
    if head != MAGIC {
        if head[0] == 0x16 && head[1] == 0x03 {
            // A TLS ClientHello. Read the rest of the record and answer with a fatal
            // handshake_failure alert, so that the client's TLS stack reports a TLS error
            // (permanent: it stops retrying) rather than a connection reset.
            let mut len_lo = [0u8; 1];
            if io.read_exact(&mut len_lo).await.is_ok() {
                let len = usize::from(u16::from_be_bytes([head[3], len_lo[0]]));
                let mut record = vec![0u8; len.min(16 * 1024)];
                if io.read_exact(&mut record).await.is_ok() {
                    let _ = io
                        .write_all(&[0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x28])
                        .await;
                    let _ = io.flush().await;
                }
            }
            bail!("the client started TLS, but this server has no --tls-cert/--tls-key");
        }
        if u16::from_be_bytes([head[0], head[1]]) == crate::noise::NX_HELLO_LEN {
            // A Noise hello (length prefix, then the ephemeral key): say so in a status, so
            // that the client reports a configuration error instead of retrying.
            let mut rest = [0u8; crate::noise::NX_HELLO_LEN as usize - 2];
            if io.read_exact(&mut rest).await.is_ok() {
                let _ = refuse_client(
                    io,
                    Status::WrongMode,
                    "this server does not use Noise (no --noise-key)",
                )
                .await;
            }
            bail!("the client started Noise (--noise-pin), but this server has no --noise-key");
        }
        bail!(
            "the client did not send the polymux preamble (first bytes {head:02x?}); it is not a \
             `polymux {} client`, or it speaks TLS while this server does not",
            expect.mode.name()
        );
    }
    let mut fixed = [0u8; 5];
    io.read_exact(&mut fixed)
        .await
        .context("reading the preamble")?;
    let [version, mode, protocol, len_hi, len_lo] = fixed;
    if version != VERSION && version != VERSION_SERVICE_TOKENS {
        return refuse(
            io,
            Status::UnsupportedVersion,
            format!("preamble version {version} is not supported (this server speaks {VERSION} and {VERSION_SERVICE_TOKENS}); use the same polymux release on both sides"),
        )
        .await;
    }
    let token_len = usize::from(u16::from_be_bytes([len_hi, len_lo]));
    if token_len > MAX_TOKEN_LEN {
        bail!("the client sent a {token_len}-byte token; the limit is {MAX_TOKEN_LEN}");
    }
    let mut token = vec![0u8; token_len];
    io.read_exact(&mut token)
        .await
        .context("reading the token")?;
    let mut grants = Grants {
        connection: (!token.is_empty()).then(|| digest_of(&token)),
        services: HashMap::new(),
    };
    if version == VERSION_SERVICE_TOKENS {
        grants.services = read_service_tokens(io).await?;
    }
    let table = expect.tokens();

    let admitted = grants.admitted(&table);
    if !admitted || grants.services.keys().any(|s| !grants.allows(&table, s)) {
        // Also for a refused per-service token: guessing one costs the same time.
        tokio::time::sleep(FAILURE_DELAY).await;
    }
    if !admitted {
        let message = if token.is_empty() {
            "this server requires a token"
        } else {
            "wrong token"
        };
        return refuse(io, Status::WrongToken, message.to_owned()).await;
    }
    match Mode::from_code(mode) {
        Some(m) if m == expect.mode => {}
        other => {
            let theirs = other.map_or("an unknown mode", Mode::name);
            return refuse(
                io,
                Status::WrongMode,
                format!(
                    "this is a `polymux {} server`, the client is a `{theirs}` client",
                    expect.mode.name()
                ),
            )
            .await;
        }
    }
    if Protocol::from_wire_code(protocol) != Some(expect.protocol) {
        let theirs =
            Protocol::from_wire_code(protocol).map_or("an unknown protocol", Protocol::name);
        return refuse(
            io,
            Status::WrongProtocol,
            format!(
                "this server speaks --protocol {}, the client asked for {theirs}",
                expect.protocol
            ),
        )
        .await;
    }
    let mut refused: Vec<String> = grants
        .services
        .keys()
        .filter(|s| !grants.allows(&table, s))
        .map(|s| {
            if table.services.is_empty() || table.services.contains_key(s) {
                format!("{s}: wrong token")
            } else {
                format!("{s}: not a service of this server")
            }
        })
        .collect();
    refused.sort_unstable();
    Ok(Admission {
        grants,
        note: refused.join("; "),
    })
}

/// Reads the per-service tokens of a version 2 preamble.
async fn read_service_tokens<T>(io: &mut T) -> anyhow::Result<HashMap<String, Digest>>
where
    T: AsyncRead + Unpin,
{
    let count = usize::from(io.read_u8().await.context("reading the service count")?);
    if count > MAX_SERVICE_TOKENS {
        bail!("the client sent {count} service tokens; the limit is {MAX_SERVICE_TOKENS}");
    }
    let mut services = HashMap::with_capacity(count);
    for _ in 0..count {
        let name_len = usize::from(io.read_u8().await.context("reading a service name")?);
        if name_len == 0 || name_len > crate::services::MAX_NAME_LEN {
            bail!("the client sent a service name of {name_len} bytes");
        }
        let mut name = vec![0u8; name_len];
        io.read_exact(&mut name)
            .await
            .context("reading a service name")?;
        let name = String::from_utf8(name).context("a service name is not UTF-8")?;
        let token_len = usize::from(io.read_u16().await.context("reading a service token")?);
        if token_len == 0 || token_len > MAX_TOKEN_LEN {
            bail!("the client sent a {token_len}-byte token for service {name:?}");
        }
        let mut token = vec![0u8; token_len];
        io.read_exact(&mut token)
            .await
            .context("reading a service token")?;
        services.insert(name, digest_of(&token));
    }
    Ok(services)
}

/// Tells an authenticated client that the multiplexer starts now (status 0), with `note`
/// naming the per-service tokens that were refused (empty when none).
pub async fn welcome_client<T>(io: &mut T, note: &str) -> anyhow::Result<()>
where
    T: AsyncWrite + Unpin,
{
    send_status(io, Status::Ok, note).await
}

/// Tells an authenticated client that it cannot be served (`Busy`, `ShuttingDown`) and why,
/// so that it sees the message rather than a reset. Bounded by the caller's timeout.
pub async fn refuse_client<T>(io: &mut T, status: Status, message: &str) -> anyhow::Result<()>
where
    T: AsyncWrite + Unpin,
{
    send_status(io, status, message).await
}

async fn refuse<T, R>(io: &mut T, status: Status, reason: String) -> anyhow::Result<R>
where
    T: AsyncWrite + Unpin,
{
    // Best effort: the client may already be gone; the refusal is what matters.
    let _ = send_status(io, status, &reason).await;
    Err(Refusal { status, reason }.into())
}

async fn send_status<T>(io: &mut T, status: Status, message: &str) -> anyhow::Result<()>
where
    T: AsyncWrite + Unpin,
{
    let message = truncate(message, MAX_MESSAGE_LEN);
    let mut out = Vec::with_capacity(3 + message.len());
    out.push(status as u8);
    out.extend_from_slice(&(message.len() as u16).to_be_bytes());
    out.extend_from_slice(message.as_bytes());
    io.write_all(&out).await?;
    io.flush().await?;
    Ok(())
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Runs the client side of the preamble against `server` (for messages), presenting `token`
/// and the per-service tokens in `services` (version 2 only when there are some). Errors are
/// classified: a refused token is an authentication error (exit 3), a mode/protocol/version
/// mismatch a configuration error (exit 4), anything else a runtime error (retryable).
/// Returns the server's note on refused per-service tokens (empty when none).
pub async fn client_handshake<T>(
    io: &mut T,
    server: &str,
    mode: Mode,
    protocol: Protocol,
    token: Option<&Token>,
    services: &[(String, Token)],
) -> anyhow::Result<String>
where
    T: AsyncRead + AsyncWrite + Unpin,
{
    let token = token.map_or(&[][..], |t| &t.0[..]);
    let version = if services.is_empty() {
        VERSION
    } else {
        VERSION_SERVICE_TOKENS
    };
    if services.len() > MAX_SERVICE_TOKENS {
        return Err(config_error(format!(
            "{} per-service tokens; the limit is {MAX_SERVICE_TOKENS}",
            services.len()
        )));
    }
    let mut out = Vec::with_capacity(9 + token.len());
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&[version, mode.code(), protocol.wire_code()]);
    out.extend_from_slice(&(token.len() as u16).to_be_bytes());
    out.extend_from_slice(token);
    if version == VERSION_SERVICE_TOKENS {
        out.push(services.len() as u8);
        for (name, token) in services {
            // Names are validated where they are configured (1..=64 bytes).
            out.push(name.len().min(255) as u8);
            out.extend_from_slice(&name.as_bytes()[..name.len().min(255)]);
            out.extend_from_slice(&(token.0.len() as u16).to_be_bytes());
            out.extend_from_slice(&token.0);
        }
    }
    io.write_all(&out)
        .await
        .with_context(|| format!("sending the preamble to {server}"))?;
    io.flush().await?;

    let mut head = [0u8; 3];
    if let Err(e) = io.read_exact(&mut head).await {
        return Err(anyhow::Error::new(e).context(format!(
            "{server} closed the connection during the polymux handshake: check that it is a \
             `polymux {} server` (not an echo server) and that both sides agree on TLS \
             (--tls-cert on the server, --tls/--tls-ca/--tls-pin on the client)",
            mode.name()
        )));
    }
    let len = usize::from(u16::from_be_bytes([head[1], head[2]]));
    let Some(status) = Status::from_code(head[0]) else {
        let hint = if head[0] == 0x15 || head[0] == 0x16 {
            " (it looks like TLS: start the client with --tls-ca FILE or --tls-pin SHA256)"
        } else {
            ""
        };
        return Err(config_error(format!(
            "{server} answered the polymux handshake with byte {:#04x}, which is not a polymux \
             status{hint}",
            head[0]
        )));
    };
    if len > MAX_MESSAGE_LEN {
        bail!("{server} sent a {len}-byte handshake message; the limit is {MAX_MESSAGE_LEN}");
    }
    let mut message = vec![0u8; len];
    io.read_exact(&mut message).await?;
    let message = String::from_utf8_lossy(&message);
    match status {
        Status::Ok => Ok(message.into_owned()),
        Status::WrongToken => Err(auth_error(format!(
            "{server} refused the token ({message}): pass the server's token with --token, \
             --token-file or the {TOKEN_ENV} environment variable"
        ))),
        Status::WrongMode | Status::WrongProtocol | Status::UnsupportedVersion => Err(config_error(
            format!("{server} refused the connection: {message}; start both sides with the same subcommand and --protocol"),
        )),
        Status::Busy => bail!("{server} is busy: {message}; will retry"),
        Status::ShuttingDown => bail!("{server} is shutting down: {message}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{exit_code, EXIT_AUTH, EXIT_CONFIG};

    fn token(s: &str) -> Token {
        Token(s.as_bytes().to_vec())
    }

    async fn server_handshake(
        io: &mut tokio::io::DuplexStream,
        expect: &Expectation,
    ) -> anyhow::Result<()> {
        let admission = authenticate_client(io, expect).await?;
        welcome_client(io, &admission.note).await
    }

    async fn run(
        client_mode: Mode,
        client_proto: Protocol,
        client_token: Option<&Token>,
        expect: Expectation,
    ) -> (anyhow::Result<()>, anyhow::Result<()>) {
        let (mut a, mut b) = tokio::io::duplex(4096);
        let server = tokio::spawn(async move { server_handshake(&mut b, &expect).await });
        let client = client_handshake(&mut a, "test", client_mode, client_proto, client_token, &[])
            .await
            .map(drop);
        let server = server.await.expect("server task");
        (client, server)
    }

    #[tokio::test]
    async fn right_token_passes() {
        let t = token("0123456789abcdef");
        let expect = Expectation::new(Mode::Tunnel, Protocol::Yamux, Some(&t));
        let (c, s) = run(Mode::Tunnel, Protocol::Yamux, Some(&t), expect).await;
        c.expect("client accepted");
        s.expect("server accepted");
    }

    #[tokio::test]
    async fn wrong_or_missing_token_is_an_auth_error_on_both_sides() {
        let expect = Expectation::new(Mode::Forward, Protocol::Smux2, Some(&token("right-token")));
        let (c, s) = run(
            Mode::Forward,
            Protocol::Smux2,
            Some(&token("wrong")),
            expect.clone(),
        )
        .await;
        let c = c.expect_err("client refused");
        assert_eq!(exit_code(&c), EXIT_AUTH);
        assert!(c.to_string().contains("wrong token"), "{c}");
        let s = s.expect_err("server refused");
        assert_eq!(
            s.downcast_ref::<Refusal>().map(|r| r.status),
            Some(Status::WrongToken)
        );

        let (c, _) = run(Mode::Forward, Protocol::Smux2, None, expect).await;
        assert!(c
            .expect_err("refused")
            .to_string()
            .contains("requires a token"));
    }

    #[tokio::test]
    async fn mode_and_protocol_mismatches_are_config_errors() {
        let t = token("0123456789abcdef");
        let expect = Expectation::new(Mode::Forward, Protocol::Yamux, Some(&t));
        let (c, _) = run(Mode::Tunnel, Protocol::Yamux, Some(&t), expect.clone()).await;
        let c = c.expect_err("mode mismatch");
        assert_eq!(exit_code(&c), EXIT_CONFIG);
        assert!(c.to_string().contains("forward server"), "{c}");
        let (c, _) = run(Mode::Forward, Protocol::Netmux, Some(&t), expect).await;
        assert!(c
            .expect_err("protocol mismatch")
            .to_string()
            .contains("netmux"));
    }

    #[tokio::test]
    async fn no_token_expected_accepts_anything() {
        let expect = Expectation::new(Mode::Tunnel, Protocol::Smux1, None);
        let (c, s) = run(Mode::Tunnel, Protocol::Smux1, None, expect).await;
        c.expect("accepted");
        s.expect("accepted");
    }

    #[tokio::test]
    async fn garbage_is_rejected_without_a_panic() {
        let (mut a, mut b) = tokio::io::duplex(4096);
        let expect = Expectation::new(Mode::Tunnel, Protocol::Yamux, None);
        a.write_all(b"GET / HTTP/1.1\r\n\r\n").await.expect("write");
        let err = server_handshake(&mut b, &expect)
            .await
            .expect_err("garbage");
        assert!(err.to_string().contains("preamble"), "{err}");
    }

    #[tokio::test]
    async fn per_service_tokens_grant_only_the_services_proved() {
        let web = token("web-token-0123456789");
        let api = token("api-token-0123456789");
        let default = token("default-token-0123456");
        let mut table = TokenTable::with_default(Some(&default));
        table.services.insert("web".into(), Some(web.sha256()));
        table.services.insert("api".into(), Some(api.sha256()));
        table.services.insert("plain".into(), None);
        let expect = Expectation::with_table(Mode::Tunnel, Protocol::Yamux, table);

        // Right web token, wrong api token: admitted, api refused in the note.
        let (mut a, mut b) = tokio::io::duplex(4096);
        let server_expect = expect.clone();
        let server = tokio::spawn(async move {
            let admission = authenticate_client(&mut b, &server_expect).await?;
            welcome_client(&mut b, &admission.note).await?;
            Ok::<_, anyhow::Error>(admission)
        });
        let services = vec![
            ("web".to_owned(), web.clone()),
            ("api".to_owned(), token("not-the-api-token")),
        ];
        let note = client_handshake(&mut a, "t", Mode::Tunnel, Protocol::Yamux, None, &services)
            .await
            .expect("admitted");
        assert_eq!(note, "api: wrong token");
        let admission = server.await.expect("task").expect("admitted");
        let table = expect.tokens();
        assert!(admission.grants.allows(&table, "web"));
        assert!(!admission.grants.allows(&table, "api"));
        assert!(
            !admission.grants.allows(&table, "plain"),
            "needs the default token"
        );

        // A version 1 client with the api token gets api only; with the default token, the
        // services without their own token.
        let (c, _) = run(Mode::Tunnel, Protocol::Yamux, Some(&api), expect.clone()).await;
        c.expect("the api token admits");
        let (c, _) = run(
            Mode::Tunnel,
            Protocol::Yamux,
            Some(&token("nothing-matches")),
            expect.clone(),
        )
        .await;
        assert_eq!(exit_code(&c.expect_err("refused")), EXIT_AUTH);

        // A reload that changes the web token withdraws it from the session at once.
        let mut changed = (*expect.tokens()).clone();
        changed
            .services
            .insert("web".into(), Some(token("new-web-token-012345").sha256()));
        expect.set_tokens(changed);
        assert!(!admission.grants.allows(&expect.tokens(), "web"));
    }
}
