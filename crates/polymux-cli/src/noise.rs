//! Noise as an alternative to TLS: `--noise-key FILE` on a server, `--noise-pin HEX` on a
//! client, and [`NoiseStream`], the encrypted byte stream a session runs on.
//!
//! # Pattern: `Noise_NX_25519_ChaChaPoly_BLAKE2s`
//!
//! ```text
//! -> e
//! <- e, ee, s, es
//! ```
//!
//! One round trip. The client is anonymous at the Noise level because it authenticates with
//! the token preamble, which runs inside the encrypted channel right after the handshake (as it
//! does inside TLS), so client static keys would add key management for nothing. The server
//! sends its static public key (encrypted under the ephemeral-ephemeral key) and proves it
//! holds the private half (`es`); the client then compares it with `--noise-pin` in constant
//! time *before* it sends its token. NX rather than NK (where the client must know the key
//! up front and a wrong key only shows as the server dropping an undecryptable message):
//! with NX a wrong pin fails with a precise message naming both keys, like `--tls-pin`.
//! `ee` gives forward secrecy; the prologue binds the handshake to polymux (version 1).
//!
//! # Framing
//!
//! Every Noise message, handshake and transport alike, travels as `len u16 (big-endian) |
//! message` with `16 <= len <= 65535` (a message is at most 65535 bytes including its
//! 16-byte tag, so one carries at most [`MAX_PLAINTEXT`] bytes of payload).
//!
//! # Keys
//!
//! `polymux keygen --out FILE` writes the private key (64 hex digits; `#` lines are comments)
//! to FILE (mode 0600) and the public key to FILE.pub, and prints the public key: the value
//! clients pass to `--noise-pin`. See [`crate::keygen`].

use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use subtle::ConstantTimeEq;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

use crate::auth;
use crate::error::config_error;

/// The Noise protocol name.
pub const PATTERN: &str = "Noise_NX_25519_ChaChaPoly_BLAKE2s";
/// Mixed into the handshake hash: a peer speaking another protocol over Noise fails.
const PROLOGUE: &[u8] = b"polymux noise v1";
/// The server's handshake message: e (32) + encrypted s (32 + 16) + empty payload's tag (16).
const NX_REPLY_LEN: u16 = 96;
/// The client's handshake message: e (32), no payload.
pub const NX_HELLO_LEN: u16 = 32;
/// The largest Noise message.
const MAX_MESSAGE: usize = 65535;
/// The authentication tag on every transport message.
const TAG: usize = 16;
/// The largest payload of one transport message.
pub const MAX_PLAINTEXT: usize = MAX_MESSAGE - TAG;
/// Ciphertext waiting to be written beyond which writers wait (a bit over one message).
const WRITE_HIGH_WATER: usize = 64 * 1024;
/// Read buffer: room for two whole frames, so one full frame always fits after compaction.
const READ_BUFFER: usize = 2 * (2 + MAX_MESSAGE);

/// `--noise-key` on a server.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct ServerNoiseArgs {
    /// Encrypt with Noise instead of TLS, with this static private key (made by
    /// `polymux keygen`); clients pass its public key to --noise-pin.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["tls_cert", "tls_key"])]
    pub noise_key: Option<PathBuf>,
}

/// `--noise-pin` on a client.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct ClientNoiseArgs {
    /// Encrypt with Noise instead of TLS, trusting only the server whose static public key
    /// is this (64 hex digits, as printed by `polymux keygen` and logged by the server).
    #[arg(long, value_name = "HEX", conflicts_with_all = ["tls", "tls_ca", "tls_pin", "tls_server_name"])]
    pub noise_pin: Option<String>,
}

/// The suffix of a server's "listening" log line: `", TLS"`, `", Noise"` or nothing.
pub fn security_label(tls: bool, noise: bool) -> &'static str {
    match (tls, noise) {
        (true, _) => ", TLS",
        (false, true) => ", Noise",
        (false, false) => "",
    }
}

/// Logs the public key clients pin.
pub fn log_server_key(noise: &ServerNoise) {
    tracing::info!(
        "Noise public key {} (clients pin it with --noise-pin)",
        noise.public
    );
}

/// A 32-byte X25519 key as lowercase hex.
pub fn hex(key: &[u8]) -> String {
    key.iter().map(|b| format!("{b:02x}")).collect()
}

/// Parses 64 hex digits (colons and spaces allowed) into a key.
pub fn parse_key(text: &str) -> Option<[u8; 32]> {
    let digits: String = text
        .chars()
        .filter(|c| !matches!(c, ':' | ' ' | '-'))
        .collect();
    if digits.len() != 64 || !digits.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&digits[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

/// The X25519 public key of `private` (clamped, as X25519 does).
pub fn public_of(private: &[u8; 32]) -> [u8; 32] {
    curve25519_dalek::MontgomeryPoint::mul_base_clamped(*private).to_bytes()
}

/// A fresh key pair: (private, public).
pub fn generate() -> anyhow::Result<([u8; 32], [u8; 32])> {
    let params = params()?;
    let pair = snow::Builder::new(params)
        .generate_keypair()
        .map_err(|e| anyhow::anyhow!("cannot generate a Noise key pair: {e}"))?;
    let private: [u8; 32] = pair
        .private
        .as_slice()
        .try_into()
        .map_err(|_| anyhow::anyhow!("snow returned a private key that is not 32 bytes"))?;
    Ok((private, public_of(&private)))
}

fn params() -> anyhow::Result<snow::params::NoiseParams> {
    PATTERN
        .parse()
        .map_err(|e| anyhow::anyhow!("Noise pattern {PATTERN}: {e}"))
}

/// Reads a private key file written by `polymux keygen`.
pub fn load_private_key(path: &Path) -> anyhow::Result<[u8; 32]> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        config_error(format!(
            "cannot read the Noise private key {} (--noise-key): {e}; make one with \
             `polymux keygen --out {}`",
            path.display(),
            path.display()
        ))
    })?;
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .unwrap_or("");
    parse_key(line).ok_or_else(|| {
        config_error(format!(
            "{} (--noise-key) does not hold a Noise private key (64 hex digits, as written by \
             `polymux keygen`)",
            path.display()
        ))
    })
}

/// A server's Noise identity.
#[derive(Clone)]
pub struct ServerNoise {
    private: Arc<[u8; 32]>,
    /// The public key, hex: what clients pin.
    pub public: String,
}

impl std::fmt::Debug for ServerNoise {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerNoise")
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

impl ServerNoise {
    /// Loads `--noise-key`; `None` when Noise is off.
    pub fn from_args(args: &ServerNoiseArgs) -> anyhow::Result<Option<ServerNoise>> {
        let Some(path) = &args.noise_key else {
            return Ok(None);
        };
        let private = load_private_key(path)?;
        warn_if_readable_by_others(path);
        Ok(Some(ServerNoise {
            public: hex(&public_of(&private)),
            private: Arc::new(private),
        }))
    }

    /// The responder's side of the handshake on a fresh connection.
    ///
    /// A client that sent the plain polymux preamble instead (it was started without
    /// `--noise-pin`) is told so in a preamble status, and gets a clear error.
    pub async fn accept<T>(&self, mut io: T) -> anyhow::Result<NoiseStream<T>>
    where
        T: AsyncRead + AsyncWrite + Unpin,
    {
        let mut len = [0u8; 2];
        io.read_exact(&mut len)
            .await
            .map_err(|e| anyhow::anyhow!("the client closed before the Noise handshake: {e}"))?;
        if len == auth::MAGIC[..2] {
            let mut rest = [0u8; 2];
            if io.read_exact(&mut rest).await.is_ok() && rest == auth::MAGIC[2..] {
                let _ = tokio::time::timeout(
                    std::time::Duration::from_secs(2),
                    auth::refuse_client(
                        &mut io,
                        auth::Status::WrongMode,
                        "this server requires Noise: start the client with --noise-pin \
                         (the server's public key, logged at its startup)",
                    ),
                )
                .await;
                anyhow::bail!("the client did not start Noise (no --noise-pin?)");
            }
            anyhow::bail!("the client sent neither a Noise handshake nor the polymux preamble");
        }
        if len[0] == 0x16 && len[1] == 0x03 {
            // A TLS ClientHello: answer with a fatal handshake_failure alert, so that the
            // client's TLS stack reports a TLS error (permanent) instead of waiting out the
            // handshake timeout for a 5 KiB "Noise message".
            let _ = io
                .write_all(&[0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x28])
                .await;
            let _ = io.flush().await;
            anyhow::bail!("the client started TLS, but this server uses Noise (--noise-key)");
        }
        if u16::from_be_bytes(len) != NX_HELLO_LEN {
            anyhow::bail!(
                "the client's first Noise message is {} bytes, not {NX_HELLO_LEN}; is it polymux?",
                u16::from_be_bytes(len)
            );
        }
        let mut hello = vec![0u8; usize::from(u16::from_be_bytes(len))];
        io.read_exact(&mut hello)
            .await
            .map_err(|e| anyhow::anyhow!("the client closed during the Noise handshake: {e}"))?;
        let mut state = snow::Builder::new(params()?)
            .local_private_key(&self.private[..])
            .and_then(|b| b.prologue(PROLOGUE))
            .and_then(|b| b.build_responder())
            .map_err(|e| anyhow::anyhow!("Noise setup failed: {e}"))?;
        let mut scratch = vec![0u8; MAX_MESSAGE];
        state.read_message(&hello, &mut scratch).map_err(|e| {
            anyhow::anyhow!("bad Noise handshake message from the client ({e}); is it polymux?")
        })?;
        let n = state
            .write_message(&[], &mut scratch)
            .map_err(|e| anyhow::anyhow!("Noise handshake failed: {e}"))?;
        write_frame(&mut io, &scratch[..n]).await?;
        let state = state
            .into_transport_mode()
            .map_err(|e| anyhow::anyhow!("Noise handshake failed: {e}"))?;
        Ok(NoiseStream::new(io, state))
    }
}

/// A client's Noise settings: the server key it trusts.
#[derive(Clone, Debug)]
pub struct ClientNoise {
    pin: [u8; 32],
}

impl ClientNoise {
    /// Parses `--noise-pin`; `None` when Noise is off.
    pub fn from_args(args: &ClientNoiseArgs) -> anyhow::Result<Option<ClientNoise>> {
        let Some(pin) = &args.noise_pin else {
            return Ok(None);
        };
        let pin = parse_key(pin).ok_or_else(|| {
            config_error(format!(
                "--noise-pin {pin:?} is not a Noise public key: expected 64 hex digits, as \
                 printed by `polymux keygen` and logged by the server at startup"
            ))
        })?;
        Ok(Some(ClientNoise { pin }))
    }

    /// The initiator's side of the handshake; checks the server's key against the pin.
    /// A wrong key or a server that does not speak Noise is a configuration error.
    pub async fn connect<T>(&self, mut io: T, server: &str) -> anyhow::Result<NoiseStream<T>>
    where
        T: AsyncRead + AsyncWrite + Unpin,
    {
        let mut state = snow::Builder::new(params()?)
            .prologue(PROLOGUE)
            .and_then(|b| b.build_initiator())
            .map_err(|e| anyhow::anyhow!("Noise setup failed: {e}"))?;
        let mut scratch = vec![0u8; MAX_MESSAGE];
        let n = state
            .write_message(&[], &mut scratch)
            .map_err(|e| anyhow::anyhow!("Noise handshake failed: {e}"))?;
        write_frame(&mut io, &scratch[..n])
            .await
            .map_err(|e| anyhow::anyhow!("sending the Noise handshake to {server}: {e}"))?;
        let mut len = [0u8; 2];
        io.read_exact(&mut len).await.map_err(|e| {
            anyhow::anyhow!(
                "{server} closed the connection during the Noise handshake ({e}); check that \
                 it runs with --noise-key"
            )
        })?;
        let not_noise = || {
            config_error(format!(
                "{server} did not answer the Noise handshake with a Noise message: it does not \
                 run with --noise-key (drop --noise-pin, or use the server's TLS options)"
            ))
        };
        if u16::from_be_bytes(len) != NX_REPLY_LEN {
            // A TLS alert, a polymux status (a server without --noise-key answers our hello
            // with one), or anything else: not the one reply NX has.
            return Err(not_noise());
        }
        let mut reply = vec![0u8; usize::from(u16::from_be_bytes(len))];
        io.read_exact(&mut reply).await.map_err(|e| {
            anyhow::anyhow!("{server} closed the connection during the Noise handshake ({e})")
        })?;
        state
            .read_message(&reply, &mut scratch)
            .map_err(|_| not_noise())?;
        let remote = state.get_remote_static().unwrap_or(&[]);
        if !bool::from(remote.ct_eq(&self.pin)) {
            return Err(config_error(format!(
                "{server}'s Noise public key is {}, not the pinned {} (--noise-pin): check the \
                 pin against the key the server logs at startup",
                hex(remote),
                hex(&self.pin)
            )));
        }
        let state = state
            .into_transport_mode()
            .map_err(|e| anyhow::anyhow!("Noise handshake failed: {e}"))?;
        Ok(NoiseStream::new(io, state))
    }
}

async fn write_frame<T: AsyncWrite + Unpin>(io: &mut T, message: &[u8]) -> io::Result<()> {
    let len = u16::try_from(message.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "Noise message too long"))?;
    let mut out = Vec::with_capacity(2 + message.len());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(message);
    io.write_all(&out).await?;
    io.flush().await
}

#[cfg(unix)]
fn warn_if_readable_by_others(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path) {
        if meta.permissions().mode() & 0o077 != 0 {
            tracing::warn!(
                "the Noise private key {} is readable by other users; chmod 600 it",
                path.display()
            );
        }
    }
}

#[cfg(not(unix))]
fn warn_if_readable_by_others(_path: &Path) {}

/// A byte stream encrypted with Noise transport messages over `T`.
///
/// Invariants: `rbuf[rstart..rend]` holds received ciphertext not yet decrypted (a prefix of
/// the next frames); `plain[ppos..pend]` holds decrypted bytes not yet read; `wbuf[wpos..]`
/// holds whole encrypted frames not yet written. Writes are accepted (encrypted into `wbuf`)
/// while it holds less than [`WRITE_HIGH_WATER`]; `poll_flush` and `poll_shutdown` write it out
/// first. There is no close message: the multiplexer above has its own framing, so a
/// truncated stream shows as a protocol error there.
pub struct NoiseStream<T> {
    io: T,
    state: Box<snow::TransportState>,
    rbuf: Box<[u8]>,
    rstart: usize,
    rend: usize,
    eof: bool,
    plain: Box<[u8]>,
    ppos: usize,
    pend: usize,
    wbuf: Vec<u8>,
    wpos: usize,
    /// A write error met while writing out accepted data, reported on the next call.
    write_error: Option<io::Error>,
    gather: Vec<u8>,
}

impl<T> NoiseStream<T> {
    fn new(io: T, state: snow::TransportState) -> NoiseStream<T> {
        NoiseStream {
            io,
            state: Box::new(state),
            rbuf: vec![0u8; READ_BUFFER].into_boxed_slice(),
            rstart: 0,
            rend: 0,
            eof: false,
            plain: vec![0u8; MAX_PLAINTEXT].into_boxed_slice(),
            ppos: 0,
            pend: 0,
            wbuf: Vec::new(),
            wpos: 0,
            write_error: None,
            gather: Vec::new(),
        }
    }

    /// The next whole frame in `rbuf`, as (start of message, end), if one is there.
    fn next_frame(&self) -> io::Result<Option<(usize, usize)>> {
        let have = self.rend - self.rstart;
        if have < 2 {
            return Ok(None);
        }
        let len = usize::from(u16::from_be_bytes([
            self.rbuf[self.rstart],
            self.rbuf[self.rstart + 1],
        ]));
        if len < TAG {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("Noise message of {len} bytes (shorter than its tag)"),
            ));
        }
        if have < 2 + len {
            return Ok(None);
        }
        Ok(Some((self.rstart + 2, self.rstart + 2 + len)))
    }
}

impl<T: AsyncWrite + Unpin> NoiseStream<T> {
    /// Writes out `wbuf`; `Ready(Ok)` once it is empty.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Some(e) = self.write_error.take() {
            return Poll::Ready(Err(e));
        }
        while self.wpos < self.wbuf.len() {
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, &self.wbuf[self.wpos..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.wpos += n;
        }
        self.wbuf.clear();
        self.wpos = 0;
        Poll::Ready(Ok(()))
    }

    /// Encrypts `payload` (at most [`MAX_PLAINTEXT`] bytes) as one frame at the end of `wbuf`.
    fn seal(&mut self, payload: &[u8]) -> io::Result<()> {
        let at = self.wbuf.len();
        self.wbuf.resize(at + 2 + payload.len() + TAG, 0);
        let n = self
            .state
            .write_message(payload, &mut self.wbuf[at + 2..])
            .map_err(|e| io::Error::other(format!("Noise encryption failed: {e}")))?;
        let len = u16::try_from(n).map_err(|_| io::Error::other("Noise message too long"))?;
        self.wbuf[at..at + 2].copy_from_slice(&len.to_be_bytes());
        self.wbuf.truncate(at + 2 + n);
        Ok(())
    }

    /// Waits for room, then encrypts what `fill` puts in the gather buffer (or `direct`).
    fn poll_accept(
        &mut self,
        cx: &mut Context<'_>,
        direct: Option<&[u8]>,
    ) -> Poll<io::Result<usize>> {
        if self.wbuf.len() - self.wpos >= WRITE_HIGH_WATER {
            ready!(self.poll_drain(cx))?;
        } else if let Some(e) = self.write_error.take() {
            return Poll::Ready(Err(e));
        }
        let n = match direct {
            Some(buf) => {
                let n = buf.len().min(MAX_PLAINTEXT);
                self.seal(&buf[..n])?;
                n
            }
            None => {
                let gather = std::mem::take(&mut self.gather);
                let sealed = self.seal(&gather);
                let n = gather.len();
                self.gather = gather;
                self.gather.clear();
                sealed?;
                n
            }
        };
        // Start writing now; what does not go out yet is written by later calls or flush.
        if let Poll::Ready(Err(e)) = self.poll_drain(cx) {
            self.write_error = Some(e);
        }
        Poll::Ready(Ok(n))
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for NoiseStream<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.ppos < this.pend {
                let n = (this.pend - this.ppos).min(buf.remaining());
                buf.put_slice(&this.plain[this.ppos..this.ppos + n]);
                this.ppos += n;
                return Poll::Ready(Ok(()));
            }
            if let Some((start, end)) = this.next_frame()? {
                let n = this
                    .state
                    .read_message(&this.rbuf[start..end], &mut this.plain)
                    .map_err(|e| {
                        io::Error::new(
                            io::ErrorKind::InvalidData,
                            format!("a Noise message failed to decrypt ({e}): corrupted or forged"),
                        )
                    })?;
                this.rstart = end;
                if this.rstart == this.rend {
                    this.rstart = 0;
                    this.rend = 0;
                }
                this.ppos = 0;
                this.pend = n;
                continue;
            }
            if this.eof {
                if this.rend > this.rstart {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the connection closed in the middle of a Noise message",
                    )));
                }
                return Poll::Ready(Ok(()));
            }
            // Make room for a whole frame after the partial one, then read what is there.
            if this.rbuf.len() - this.rend < 2 + MAX_MESSAGE {
                this.rbuf.copy_within(this.rstart..this.rend, 0);
                this.rend -= this.rstart;
                this.rstart = 0;
            }
            let mut space = ReadBuf::new(&mut this.rbuf[this.rend..]);
            ready!(Pin::new(&mut this.io).poll_read(cx, &mut space))?;
            let n = space.filled().len();
            if n == 0 {
                this.eof = true;
            }
            this.rend += n;
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for NoiseStream<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        self.get_mut().poll_accept(cx, Some(buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        // One Noise message for as many slices as fit: the multiplexer writes a frame header
        // and its payload as separate slices, and a message per slice would double the
        // per-message cost. The gather buffer is only filled once room is certain.
        if this.wbuf.len() - this.wpos >= WRITE_HIGH_WATER {
            ready!(this.poll_drain(cx))?;
        }
        this.gather.clear();
        for slice in bufs {
            let room = MAX_PLAINTEXT - this.gather.len();
            if room == 0 {
                break;
            }
            this.gather
                .extend_from_slice(&slice[..slice.len().min(room)]);
        }
        if this.gather.is_empty() {
            return Poll::Ready(Ok(0));
        }
        this.poll_accept(cx, None)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server() -> (ServerNoise, [u8; 32]) {
        let (private, public) = generate().expect("keys");
        (
            ServerNoise {
                private: Arc::new(private),
                public: hex(&public),
            },
            public,
        )
    }

    #[test]
    fn keys_parse_and_derive() {
        let (private, public) = generate().expect("keys");
        assert_eq!(public_of(&private), public);
        assert_eq!(parse_key(&hex(&public)), Some(public));
        assert_eq!(parse_key("abc"), None);
        assert_eq!(parse_key(&"zz".repeat(32)), None);
    }

    #[tokio::test]
    async fn round_trip_with_large_and_vectored_writes() {
        let (server, public) = server();
        let client = ClientNoise { pin: public };
        let (a, b) = tokio::io::duplex(8 * 1024);
        let accept = tokio::spawn(async move {
            let mut s = server.accept(b).await.expect("accept");
            let mut got = Vec::new();
            s.read_to_end(&mut got).await.expect("read");
            s.write_all(&got).await.expect("echo");
            s.shutdown().await.expect("shutdown");
            got.len()
        });
        let mut c = client.connect(a, "test").await.expect("connect");
        let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let (head, tail) = data.split_at(5);
        let slices = [io::IoSlice::new(head), io::IoSlice::new(&tail[..10])];
        let n = c.write_vectored(&slices).await.expect("vectored");
        assert_eq!(n, 15);
        c.write_all(&data[15..]).await.expect("write");
        c.shutdown().await.expect("shutdown");
        let mut back = Vec::new();
        c.read_to_end(&mut back).await.expect("read back");
        assert_eq!(accept.await.expect("task"), data.len());
        assert!(back == data, "echoed bytes differ");
    }

    #[tokio::test]
    async fn a_wrong_pin_is_a_config_error_naming_both_keys() {
        let (server, public) = server();
        let (_, other) = generate().expect("keys");
        let (a, b) = tokio::io::duplex(8 * 1024);
        tokio::spawn(async move {
            let _ = server.accept(b).await;
        });
        let err = ClientNoise { pin: other }
            .connect(a, "srv")
            .await
            .err()
            .expect("refused");
        assert_eq!(crate::error::exit_code(&err), crate::error::EXIT_CONFIG);
        let message = err.to_string();
        assert!(message.contains(&hex(&public)) && message.contains(&hex(&other)));
    }
}
