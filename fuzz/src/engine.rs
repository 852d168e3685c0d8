//! What both engine targets share: the configurations under test, the application's model of
//! its streams, the API calls as an `Arbitrary` op, and the checks made after every op.
//!
//! The harness is the application and the driver of a [`Connection`], with the driver
//! contract of the `polymux` crate: a batch from `poll_transmit` is written whole or in pieces,
//! then reported with `transmitted` before the next is taken; input is offered only while
//! `wants_input()`, leftover bytes first; `handle_eof(rx.len())` once the transport's EOF is
//! reached. A `StreamKey` is never used after `release` (the slab may reuse it).

use std::collections::HashMap;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use arbitrary::Arbitrary;
use polymux_proto::connection::WriteOutcome;
use polymux_proto::{
    Config, Connection, Dialect, Error, Frame, StreamKey, PROTOCOL_INITIAL_WINDOW,
};

/// The dialect of a run.
#[derive(Arbitrary, Debug, Clone, Copy, PartialEq, Eq)]
pub enum DialectSel {
    /// yamux.
    Yamux,
    /// smux v1.
    SmuxV1,
    /// smux v2.
    SmuxV2,
    /// net-mux.
    NetMux,
}

impl DialectSel {
    /// The dialect.
    pub fn dialect(self) -> Dialect {
        match self {
            DialectSel::Yamux => Dialect::Yamux,
            DialectSel::SmuxV1 => Dialect::SmuxV1,
            DialectSel::SmuxV2 => Dialect::SmuxV2,
            DialectSel::NetMux => Dialect::NetMux,
        }
    }
}

/// Which configuration a run uses.
#[derive(Arbitrary, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// The dialect's preset.
    Preset,
    /// Every limit small, so that a few ops reach it: receive budget, write budget, backlog,
    /// unacknowledged opens, stream count, frame size, keep-alive and close timeouts.
    Tight,
}

/// The configuration for `dialect` under `profile`.
pub fn config(dialect: Dialect, profile: Profile) -> Config {
    let preset = Config::for_dialect(dialect);
    match profile {
        Profile::Preset => preset,
        Profile::Tight => {
            let flow_window = match dialect {
                Dialect::Yamux | Dialect::NetMux => PROTOCOL_INITIAL_WINDOW,
                Dialect::SmuxV1 | Dialect::SmuxV2 => 4096,
            };
            preset
                .to_builder()
                .stream_window(flow_window)
                .max_stream_window(flow_window * 2)
                .session_recv_budget(flow_window as usize + flow_window as usize / 2)
                .write_budget(8 * 1024)
                .max_frame_payload(2 * 1024)
                .accept_backlog(3)
                .max_unacked_outbound(2)
                .max_streams(6)
                .keepalive_interval(Some(Duration::from_secs(1)))
                .keepalive_timeout(Duration::from_secs(3))
                .close_timeout(Duration::from_secs(2))
                .build()
                .expect("the tight profile is a valid configuration")
        }
    }
}

/// A call the application makes. Stream operands pick one of the handles the application
/// holds (modulo their number); with none held, the op does nothing.
#[derive(Arbitrary, Debug, Clone)]
pub enum Api {
    /// `poll_open`.
    Open,
    /// `poll_accept`.
    Accept,
    /// `poll_established`.
    Established(u8),
    /// `poll_write` of `len` bytes.
    Write(u8, u16),
    /// `poll_write_direct` of `len` bytes; the transport then takes `took` bytes of it.
    WriteDirect(u8, u16, u16),
    /// `poll_read` into a buffer of `len` bytes.
    Read(u8, u16),
    /// `close_write`.
    CloseWrite(u8),
    /// `reset`.
    Reset(u8),
    /// `release` (the handle is dropped).
    Release(u8),
    /// `start_ping`.
    Ping,
    /// `poll_ping` of the latest ticket.
    PollPing,
    /// `go_away`.
    GoAway,
    /// `close` (graceful session close).
    Close,
}

/// One stream handle the application holds.
#[derive(Debug)]
pub struct Handle {
    /// The engine's key (valid while held).
    pub key: StreamKey,
    /// The wire id.
    pub id: u32,
    /// Payload bytes accepted by writes.
    pub written: u64,
    /// Payload bytes read.
    pub read: u64,
    /// A read returned `Ok(0)`.
    pub eof: bool,
    /// `close_write` succeeded.
    pub write_closed: bool,
    /// `reset` was called.
    pub reset: bool,
    /// An operation failed with `StreamReset` or `StreamRefused`.
    pub saw_reset: bool,
}

/// What one side's application knows, beyond the handles: per stream id, what it read and
/// whether it stopped reading (released or reset), kept after the handle is gone.
#[derive(Debug, Default)]
pub struct App {
    /// Handles held, in the order obtained.
    pub handles: Vec<Handle>,
    /// Per stream id: bytes read, and whether the reader gave up on it (reset or released).
    pub reads: HashMap<u32, (u64, bool)>,
    /// Ping tickets handed out.
    pub tickets: Vec<u64>,
    /// Total payload bytes accepted by writes.
    pub bytes_written: u64,
    /// Opens that succeeded.
    pub opens: u64,
}

/// The byte at offset `off` of the direction of stream `id` written by the client (`client`)
/// or the server: a cheap keyed function of the offset, so that a lost, duplicated or
/// reordered byte reads back wrong.
pub fn pattern(client: bool, id: u32, off: u64) -> u8 {
    let x = off
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(u64::from(id) << 1 | u64::from(client));
    (x >> 56) as u8 ^ (off as u8)
}

fn fill(client: bool, id: u32, off: u64, out: &mut [u8]) {
    for (i, b) in out.iter_mut().enumerate() {
        *b = pattern(client, id, off + i as u64);
    }
}

fn pick(len: usize, sel: u8) -> Option<usize> {
    (len > 0).then(|| usize::from(sel) % len)
}

/// Largest write or read one op makes (bounded so that one run stays fast).
const MAX_IO: usize = 16 * 1024;

/// Applies `api` to `conn` as the application on the `client` side would, at `now`.
/// `scratch` is a reusable buffer; `check_pattern`: the peer writes [`pattern`] bytes, which
/// reads check. Returns the bytes of a direct write the transport took
/// (the caller puts them on the wire, in order, before anything else).
pub fn apply_api(
    conn: &mut Connection,
    app: &mut App,
    client: bool,
    check_pattern: bool,
    api: &Api,
    now: Instant,
    scratch: &mut Vec<u8>,
) -> Option<Vec<u8>> {
    let waker = Waker::noop();
    match *api {
        Api::Open => {
            if let Poll::Ready(Ok(key)) = conn.poll_open(waker, now) {
                let id = conn.stream_id(key).0;
                app.opens += 1;
                app.reads.insert(id, (0, false));
                app.handles.push(Handle::new(key, id));
            }
        }
        Api::Accept => {
            if let Poll::Ready(Ok(key)) = conn.poll_accept(waker, now) {
                let id = conn.stream_id(key).0;
                app.reads.insert(id, (0, false));
                app.handles.push(Handle::new(key, id));
            }
        }
        Api::Established(s) => {
            let i = pick(app.handles.len(), s)?;
            let h = &mut app.handles[i];
            if let Poll::Ready(Err(Error::StreamRefused)) = conn.poll_established(h.key, waker) {
                h.saw_reset = true;
            }
        }
        Api::Write(s, len) => {
            let i = pick(app.handles.len(), s)?;
            let h = &mut app.handles[i];
            let len = usize::from(len) % (MAX_IO + 1);
            scratch.resize(len, 0);
            fill(client, h.id, h.written, scratch);
            match conn.poll_write(h.key, waker, scratch, now) {
                Poll::Ready(Ok(n)) => {
                    assert!(n <= len, "wrote {n} of {len}");
                    h.written += n as u64;
                    app.bytes_written += n as u64;
                }
                Poll::Ready(Err(e)) => h.note(&e),
                Poll::Pending => {}
            }
        }
        Api::WriteDirect(s, len, took) => {
            let i = pick(app.handles.len(), s)?;
            let h = &mut app.handles[i];
            let len = usize::from(len) % (MAX_IO + 1);
            scratch.resize(len, 0);
            fill(client, h.id, h.written, scratch);
            match conn.poll_write_direct(h.key, waker, scratch, now) {
                Poll::Ready(Ok(WriteOutcome::Queued(n))) => {
                    assert!(n <= len, "wrote {n} of {len}");
                    h.written += n as u64;
                    app.bytes_written += n as u64;
                }
                Poll::Ready(Ok(WriteOutcome::Direct(d))) => {
                    let n = d.payload_len();
                    assert!(n > 0 && n <= len, "direct write of {n} of {len}");
                    h.written += n as u64;
                    app.bytes_written += n as u64;
                    let all: Vec<u8> = d.pieces(scratch).flatten().copied().collect();
                    let took = usize::from(took).min(all.len());
                    conn.direct_done(&d, scratch, took);
                    return Some(all[..took].to_vec());
                }
                Poll::Ready(Err(e)) => h.note(&e),
                Poll::Pending => {}
            }
        }
        Api::Read(s, len) => {
            let i = pick(app.handles.len(), s)?;
            let h = &mut app.handles[i];
            let writer = check_pattern.then_some(!client);
            read_once(
                conn,
                h,
                writer,
                usize::from(len) % (MAX_IO + 1),
                scratch,
                now,
            );
            if let Some(r) = app.reads.get_mut(&h.id) {
                r.0 = h.read;
            }
        }
        Api::CloseWrite(s) => {
            let i = pick(app.handles.len(), s)?;
            let h = &mut app.handles[i];
            match conn.close_write(h.key, now) {
                Ok(()) => h.write_closed = true,
                Err(e) => h.note(&e),
            }
        }
        Api::Reset(s) => {
            let i = pick(app.handles.len(), s)?;
            let h = &mut app.handles[i];
            conn.reset(h.key, now);
            h.reset = true;
            app.reads.entry(h.id).or_default().1 = true;
        }
        Api::Release(s) => {
            let i = pick(app.handles.len(), s)?;
            let h = app.handles.swap_remove(i);
            conn.release(h.key, now);
            app.reads.entry(h.id).or_default().1 = true;
        }
        Api::Ping => {
            if let Ok(ticket) = conn.start_ping(now) {
                app.tickets.push(ticket);
            }
        }
        Api::PollPing => {
            if let Some(&t) = app.tickets.last() {
                let _ = conn.poll_ping(t, waker);
            }
        }
        Api::GoAway => {
            let _ = conn.go_away();
        }
        Api::Close => conn.close(now),
    }
    None
}

impl Handle {
    fn new(key: StreamKey, id: u32) -> Handle {
        Handle {
            key,
            id,
            written: 0,
            read: 0,
            eof: false,
            write_closed: false,
            reset: false,
            saw_reset: false,
        }
    }

    fn note(&mut self, e: &Error) {
        if matches!(e, Error::StreamReset | Error::StreamRefused) {
            self.saw_reset = true;
        }
    }
}

/// What one read did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadResult {
    /// This many bytes (more than zero).
    Bytes(usize),
    /// EOF (`Ok(0)` for a non-empty buffer), or an error: the read direction is over.
    End,
    /// `Ok(0)` for an empty buffer.
    Nothing,
    /// Would wait.
    Pending,
}

/// One `poll_read` of up to `len` bytes on `h`. With `writer_is_client`, checks the bytes
/// against the pattern that side writes (`None`: a hostile peer's bytes, unchecked).
pub fn read_once(
    conn: &mut Connection,
    h: &mut Handle,
    writer_is_client: Option<bool>,
    len: usize,
    scratch: &mut Vec<u8>,
    now: Instant,
) -> ReadResult {
    scratch.resize(len, 0);
    match conn.poll_read(h.key, Waker::noop(), scratch, now) {
        Poll::Ready(Ok(0)) if len == 0 => ReadResult::Nothing,
        Poll::Ready(Ok(0)) => {
            h.eof = true;
            ReadResult::End
        }
        Poll::Ready(Ok(n)) => {
            assert!(n <= len, "read {n} into {len}");
            assert!(!h.eof, "stream {}: {n} bytes read after EOF", h.id);
            if let Some(client) = writer_is_client {
                for (i, &b) in scratch[..n].iter().enumerate() {
                    let off = h.read + i as u64;
                    assert_eq!(
                        b,
                        pattern(client, h.id, off),
                        "stream {}: wrong byte at offset {off}",
                        h.id
                    );
                }
            }
            h.read += n as u64;
            ReadResult::Bytes(n)
        }
        Poll::Ready(Err(e)) => {
            h.note(&e);
            ReadResult::End
        }
        Poll::Pending => ReadResult::Pending,
    }
}

/// Checks that hold after every op, whatever the peer did: buffered received bytes within the
/// session budget, the accept backlog and the stream limit respected.
pub fn check_bounds(conn: &Connection) {
    let stats = conn.stats();
    let config = conn.config();
    assert!(
        stats.recv_buffered <= config.session_recv_budget(),
        "{} bytes buffered, over the session budget of {}",
        stats.recv_buffered,
        config.session_recv_budget()
    );
    assert!(
        stats.pending_accept <= config.accept_backlog(),
        "{} streams wait for accept, backlog {}",
        stats.pending_accept,
        config.accept_backlog()
    );
    assert!(
        stats.streams <= config.max_streams(),
        "{} streams, limit {}",
        stats.streams,
        config.max_streams()
    );
    assert!(stats.bytes_received >= stats.recv_buffered as u64);
}

/// Checks that an ended session answers every call at once (no task waits forever): reads,
/// writes, opens, accepts, pings, and the end itself.
pub fn check_ended_answers(
    conn: &mut Connection,
    app: &mut App,
    scratch: &mut Vec<u8>,
    now: Instant,
) {
    let waker = Waker::noop();
    assert!(conn.is_ended(), "check_ended_answers on a live session");
    assert!(!conn.wants_input(), "an ended session wants input");
    assert_eq!(conn.poll_timeout(), None, "an ended session has a timer");
    assert!(conn.poll_ended(waker).is_ready());
    assert!(matches!(conn.poll_open(waker, now), Poll::Ready(Err(_))));
    assert!(matches!(conn.poll_accept(waker, now), Poll::Ready(Err(_))));
    if let Some(&t) = app.tickets.last() {
        assert!(
            conn.poll_ping(t, waker).is_ready(),
            "ping waits after the end"
        );
    }
    for h in &mut app.handles {
        // Queued bytes are still readable; then the read ends.
        scratch.resize(MAX_IO, 0);
        for reads in 0.. {
            assert!(reads < 100_000, "stream {}: reads never end", h.id);
            match conn.poll_read(h.key, waker, scratch, now) {
                Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => break,
                Poll::Ready(Ok(n)) => h.read += n as u64,
                Poll::Pending => panic!("stream {}: read waits after the session ended", h.id),
            }
        }
        assert!(
            conn.poll_write(h.key, waker, b"x", now).is_ready(),
            "stream {}: write waits after the end",
            h.id
        );
        assert!(
            conn.poll_established(h.key, waker).is_ready(),
            "stream {}: established waits after the end",
            h.id
        );
    }
}

/// Parses the engine's output as the peer would, across batches and direct writes (a direct
/// write's remainder is queued ahead of the next batch, so a batch may start mid-frame).
/// Panics if the engine emits an invalid frame.
#[derive(Debug, Default)]
pub struct OutputParser {
    buf: Vec<u8>,
    /// Payload bytes of the current Data frame still to skip, and its stream.
    payload_left: usize,
    payload_stream: u32,
}

impl OutputParser {
    /// Takes `bytes`; calls `each` with every frame completed, and `data` with every payload
    /// piece (its stream and length).
    pub fn feed(
        &mut self,
        dialect: Dialect,
        mut bytes: &[u8],
        mut each: impl FnMut(&Frame),
        mut data: impl FnMut(u32, usize),
    ) {
        loop {
            if self.payload_left > 0 {
                let n = self.payload_left.min(bytes.len());
                if n > 0 {
                    data(self.payload_stream, n);
                }
                self.payload_left -= n;
                bytes = &bytes[n..];
                if self.payload_left > 0 {
                    return;
                }
            }
            if bytes.is_empty() {
                return;
            }
            // Complete a header from the carried bytes plus as many new ones as needed.
            let take = (16usize.saturating_sub(self.buf.len())).min(bytes.len());
            self.buf.extend_from_slice(&bytes[..take]);
            match dialect.decode(&self.buf) {
                Ok(Some((frame, used))) => {
                    let consumed_new = used - (self.buf.len() - take);
                    bytes = &bytes[consumed_new..];
                    self.buf.clear();
                    if let Frame::Data { stream, len, .. } = frame {
                        self.payload_left = len as usize;
                        self.payload_stream = stream.0;
                    }
                    each(&frame);
                }
                Ok(None) => {
                    // Everything taken is carried over; there is nothing more to take.
                    debug_assert_eq!(take, bytes.len());
                    return;
                }
                Err(v) => panic!("the engine emitted an invalid frame: {v}"),
            }
        }
    }

    /// Whether the output so far ended on a frame boundary.
    pub fn at_boundary(&self) -> bool {
        self.buf.is_empty() && self.payload_left == 0
    }
}
