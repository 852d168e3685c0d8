//! The application's model of each side ([`Side`], [`SimStream`]) that the checks compare the
//! engine against, the [`Coverage`] counters, and the batch decoder that validates output.

use super::*;

/// What the application of one side did with one stream.
pub struct SimStream {
    /// `None` once released.
    pub key: Option<StreamKey>,
    /// This side opened it.
    pub local: bool,
    /// net-mux: the open was acknowledged (`poll_established` returned `Ok`).
    pub established: bool,
    /// Bytes this side means to write.
    pub target: u64,
    pub written: u64,
    /// This side sent FIN (close_write, release, or a smux reset, which is a FIN on the wire).
    pub write_closed: bool,
    /// Stopped writing before `target` (closed early, or released).
    pub abandoned: bool,
    pub read: u64,
    /// Read returned `Ok(0)`.
    pub eof: bool,
    pub reset_local: bool,
    /// `reset()` was called after this side's FIN or the peer's RST: if the stream was already
    /// finished (peer's FIN arrived too, or its RST did), the reset is a no-op and bytes that
    /// arrived stay readable.
    pub reset_maybe_noop: bool,
    /// An operation failed with `StreamReset`/`StreamRefused`.
    pub saw_reset: bool,
    /// An operation failed with the session's end reason.
    pub session_gone: bool,
    /// Released before reading to EOF (inbound bytes are then discarded by design).
    pub released_early: bool,
    pub read_w: Waiter,
    pub write_w: Waiter,
}

impl SimStream {
    pub(crate) fn new(key: StreamKey, local: bool, established: bool, target: u64) -> SimStream {
        SimStream {
            key: Some(key),
            local,
            established,
            target,
            written: 0,
            write_closed: false,
            abandoned: false,
            read: 0,
            eof: false,
            reset_local: false,
            reset_maybe_noop: false,
            saw_reset: false,
            session_gone: false,
            released_early: false,
            read_w: Waiter::new(),
            write_w: Waiter::new(),
        }
    }

    pub(crate) fn can_write(&self) -> bool {
        self.key.is_some()
            && self.established
            && !self.write_closed
            && !self.reset_local
            && !self.saw_reset
            && !self.session_gone
    }

    pub(crate) fn read_done(&self) -> bool {
        self.eof || self.reset_local || self.saw_reset || self.session_gone
    }

    pub(crate) fn write_done(&self) -> bool {
        self.write_closed || self.reset_local || self.saw_reset || self.session_gone
    }
}

/// Counters that show what a run exercised (printed per dialect, and checked to be non-zero
/// where the configuration makes the situation reachable).
#[derive(Clone, Debug, Default)]
pub struct Coverage {
    pub streams: u64,
    pub bytes: u64,
    pub resets: u64,
    pub releases_early: u64,
    pub refused: u64,
    pub write_pending: u64,
    pub read_pending: u64,
    pub open_pending: u64,
    pub input_paused: u64,
    /// Peak of `stats().recv_buffered` on either side, over the session budget (percent).
    pub peak_buffered_pct: u64,
    pub one_byte_pieces: u64,
    pub pings: u64,
    pub goaways: u64,
    pub steps: u64,
    pub virtual_ms: u64,
}

impl Coverage {
    pub fn add(&mut self, o: &Coverage) {
        self.streams += o.streams;
        self.bytes += o.bytes;
        self.resets += o.resets;
        self.releases_early += o.releases_early;
        self.refused += o.refused;
        self.write_pending += o.write_pending;
        self.read_pending += o.read_pending;
        self.open_pending += o.open_pending;
        self.input_paused += o.input_paused;
        self.peak_buffered_pct = self.peak_buffered_pct.max(o.peak_buffered_pct);
        self.one_byte_pieces += o.one_byte_pieces;
        self.pings += o.pings;
        self.goaways += o.goaways;
        self.steps += o.steps;
        self.virtual_ms += o.virtual_ms;
    }
}

/// One peer: the engine, the driver's buffers, and the application's model.
pub struct Side {
    pub role: Role,
    pub conn: Connection,
    pub(crate) rx: BytesMut,
    /// The batch being written to the wire, and how many of its bytes were written.
    pub(crate) sending: Option<(Transmit, usize)>,
    pub streams: BTreeMap<u32, SimStream>,
    /// Ids of streams the application still holds, for random picks.
    pub(crate) live: Vec<u32>,
    pub opens: u64,
    pub accepted: u64,
    pub bytes_written: u64,
    pub(crate) open_w: Waiter,
    pub(crate) accept_w: Waiter,
    pub(crate) driver_w: Waiter,
    /// Output was taken since the driver last paused input (a control-queue pause clears so).
    pub(crate) took_output: bool,
    pub(crate) pings: Vec<(u64, Waiter)>,
    /// handle_eof was called.
    pub eof_seen: bool,
    /// go_away() or close() was called.
    pub goaway: bool,
    /// The application reads nothing before this step (a busy application; buffers fill up).
    pub(crate) reads_stalled_until: u64,
    pub closed_at: Option<u64>,
    pub ended_at: Option<u64>,
}

impl Side {
    pub(crate) fn new(role: Role, config: Config, now: Instant) -> Side {
        Side {
            role,
            conn: Connection::new(role, config, now),
            rx: BytesMut::new(),
            sending: None,
            streams: BTreeMap::new(),
            live: Vec::new(),
            opens: 0,
            accepted: 0,
            bytes_written: 0,
            open_w: Waiter::new(),
            accept_w: Waiter::new(),
            driver_w: Waiter::new(),
            took_output: false,
            pings: Vec::new(),
            eof_seen: false,
            goaway: false,
            reads_stalled_until: 0,
            closed_at: None,
            ended_at: None,
        }
    }

    pub(crate) fn end_reason(&self) -> Option<Error> {
        self.conn.end_reason().cloned()
    }

    pub(crate) fn forget(&mut self, id: u32) {
        if let Some(i) = self.live.iter().position(|&x| x == id) {
            self.live.swap_remove(i);
        }
    }
}

pub(crate) fn is_flag_frame(frame: &Frame) -> bool {
    let close = |f: Flags| f.contains(Flags::FIN) || f.contains(Flags::RST);
    match *frame {
        Frame::Data { flags, len: 0, .. } | Frame::WindowUpdate { flags, .. } => close(flags),
        _ => false,
    }
}

/// Decodes a batch part completely: (frames, payload bytes, FIN/RST-only frames). Panics if
/// the part is not a whole number of valid frames.
pub(crate) fn walk(dialect: Dialect, mut buf: &[u8], what: &str) -> (usize, usize, usize) {
    let (mut frames, mut payload, mut flag_frames) = (0, 0, 0);
    while !buf.is_empty() {
        let (frame, used) = match dialect.decode(buf) {
            Ok(Some(x)) => x,
            Ok(None) => panic!("{what}: a batch part ends in the middle of a frame header"),
            Err(v) => panic!("{what}: the engine emitted an invalid frame: {v}"),
        };
        buf = &buf[used..];
        frames += 1;
        if is_flag_frame(&frame) {
            flag_frames += 1;
        }
        if let Frame::Data { len, .. } = frame {
            let len = len as usize;
            assert!(
                buf.len() >= len,
                "{what}: a batch part ends in the middle of a payload"
            );
            buf = &buf[len..];
            payload += len;
        }
    }
    (frames, payload, flag_frames)
}
