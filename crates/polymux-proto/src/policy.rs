//! How each dialect expresses the stream lifecycle on the wire: the frames for open, accept
//! (ACK), half-close, reset and returned credit. The engine decides *when*; this file decides
//! *which frame*.
//!
//! | event | yamux | net-mux | smux v1 | smux v2 |
//! |---|---|---|---|---|
//! | open | WindowUpdate SYN (delta = window beyond 256 KiB) | empty Data SYN (+ WindowUpdate) | SYN | SYN (+ UPD) |
//! | accept | WindowUpdate ACK (delta as above) | empty Data ACK (+ WindowUpdate) | — | — |
//! | half-close | WindowUpdate FIN | empty Data FIN | FIN | FIN |
//! | reset | WindowUpdate RST | empty Data RST | FIN + local discard | FIN + local discard |
//! | credit | WindowUpdate delta | WindowUpdate delta | — | UPD consumed/window |
//!
//! yamux flags ride on WindowUpdate frames as Go's `sendWindowUpdate`/`sendClose` do; net-mux
//! uses empty Data frames for SYN/ACK/FIN/RST (net-mux 1.0.1 `protocol/frame.rs`, `Frame::syn`
//! … `Frame::rst`). Where the open or ACK cannot carry extra window, it follows as a credit
//! frame.

use crate::codec::Dialect;
use crate::frame::{Flags, Frame, StreamId};

/// The frame that opens `stream`, announcing `extra_window` bytes of credit beyond the
/// protocol's initial window (with the open itself on yamux, as a separate `Frame::WindowUpdate`
/// or `Frame::Update` — the second element — elsewhere).
pub(crate) fn open(
    dialect: Dialect,
    stream: StreamId,
    extra_window: u32,
) -> (Frame, Option<Frame>) {
    flagged_with_credit(dialect, stream, Flags::SYN, extra_window)
}

/// The frame(s) that acknowledge `stream` when the application accepts it; `None` where opens
/// are not acknowledged (smux), unless extra window must still be announced.
pub(crate) fn accept(
    dialect: Dialect,
    stream: StreamId,
    extra_window: u32,
) -> (Option<Frame>, Option<Frame>) {
    if dialect.has_ack() {
        let (ack, credit) = flagged_with_credit(dialect, stream, Flags::ACK, extra_window);
        (Some(ack), credit)
    } else {
        (None, extra_credit(dialect, stream, extra_window))
    }
}

fn flagged_with_credit(
    dialect: Dialect,
    stream: StreamId,
    flags: Flags,
    extra_window: u32,
) -> (Frame, Option<Frame>) {
    match dialect {
        Dialect::Yamux => (
            Frame::WindowUpdate {
                stream,
                flags,
                delta: extra_window,
            },
            None,
        ),
        _ => (
            Frame::Data {
                stream,
                flags,
                len: 0,
            },
            extra_credit(dialect, stream, extra_window),
        ),
    }
}

/// Announces `extra_window` beyond the initial 256 KiB on a fresh stream, if non-zero.
fn extra_credit(dialect: Dialect, stream: StreamId, extra_window: u32) -> Option<Frame> {
    if extra_window == 0 {
        return None;
    }
    let window = crate::config::PROTOCOL_INITIAL_WINDOW.saturating_add(extra_window);
    credit(dialect, stream, extra_window, 0, window)
}

/// The frame that half-closes our direction of `stream`.
pub(crate) fn fin(dialect: Dialect, stream: StreamId) -> Frame {
    flag_frame(dialect, stream, Flags::FIN)
}

/// The frame that resets `stream`: RST where the dialect has it, else FIN (the peer sees an
/// orderly close; we discard what it sends).
pub(crate) fn reset(dialect: Dialect, stream: StreamId) -> Frame {
    let flag = if dialect.has_reset() {
        Flags::RST
    } else {
        Flags::FIN
    };
    flag_frame(dialect, stream, flag)
}

fn flag_frame(dialect: Dialect, stream: StreamId, flags: Flags) -> Frame {
    match dialect {
        Dialect::Yamux => Frame::WindowUpdate {
            stream,
            flags,
            delta: 0,
        },
        Dialect::NetMux | Dialect::SmuxV1 | Dialect::SmuxV2 => Frame::Data {
            stream,
            flags,
            len: 0,
        },
    }
}

/// The frame that returns credit: `delta` more bytes (yamux, net-mux), or the running
/// `consumed` total with the absolute `window` (smux v2). `None` without flow control.
pub(crate) fn credit(
    dialect: Dialect,
    stream: StreamId,
    delta: u32,
    consumed: u64,
    window: u32,
) -> Option<Frame> {
    match dialect {
        Dialect::Yamux | Dialect::NetMux => Some(Frame::WindowUpdate {
            stream,
            flags: Flags::NONE,
            delta,
        }),
        Dialect::SmuxV2 => Some(Frame::Update {
            stream,
            // The wire counter wraps at 2^32 by design.
            consumed: consumed as u32,
            window,
        }),
        Dialect::SmuxV1 => None,
    }
}

/// The first id this side allocates, given whether it is the client.
///
/// yamux and net-mux: client 1, 3, …; server 2, 4, …. smux (Go's counter starts at 1/0 and adds
/// 2 before use): client 3, 5, …; server 2, 4, ….
pub(crate) fn first_stream_id(dialect: Dialect, client: bool) -> u32 {
    match (dialect, client) {
        (Dialect::Yamux | Dialect::NetMux, true) => 1,
        (Dialect::SmuxV1 | Dialect::SmuxV2, true) => 3,
        (_, false) => 2,
    }
}
