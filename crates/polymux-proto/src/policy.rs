//! How each dialect expresses the stream lifecycle on the wire: the frames for open, accept
//! (ACK), half-close, reset and returned credit. The engine decides *when*; this file decides
//! *which frame*.
//!
//! | event | yamux | net-mux | smux v1 | smux v2 |
//! |---|---|---|---|---|
//! | open | WindowUpdate SYN (delta = window beyond 256 KiB) | Data SYN, empty | SYN | SYN |
//! | accept | WindowUpdate ACK (delta as above) | WindowUpdate ACK | — | — |
//! | half-close | WindowUpdate FIN | WindowUpdate FIN | FIN | FIN |
//! | reset | WindowUpdate RST | WindowUpdate RST | FIN + local discard | FIN + local discard |
//! | credit | WindowUpdate delta | WindowUpdate delta | — | UPD consumed/window |

use crate::codec::Dialect;
use crate::frame::{Flags, Frame, StreamId};

/// The frame that opens `stream`, announcing `extra_window` bytes of credit beyond the
/// protocol's initial window.
pub(crate) fn open(dialect: Dialect, stream: StreamId, extra_window: u32) -> Frame {
    match dialect {
        Dialect::Yamux => Frame::WindowUpdate {
            stream,
            flags: Flags::SYN,
            delta: extra_window,
        },
        Dialect::NetMux | Dialect::SmuxV1 | Dialect::SmuxV2 => Frame::Data {
            stream,
            flags: Flags::SYN,
            len: 0,
        },
    }
}

/// The frame that acknowledges `stream` when the application accepts it; `None` where opens
/// are not acknowledged.
pub(crate) fn accept(dialect: Dialect, stream: StreamId, extra_window: u32) -> Option<Frame> {
    dialect.has_ack().then_some(Frame::WindowUpdate {
        stream,
        flags: Flags::ACK,
        delta: extra_window,
    })
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
        Dialect::Yamux | Dialect::NetMux => Frame::WindowUpdate {
            stream,
            flags,
            delta: 0,
        },
        Dialect::SmuxV1 | Dialect::SmuxV2 => Frame::Data {
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
