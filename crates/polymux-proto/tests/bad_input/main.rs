//! Scripted, byte-exact conversations with a misbehaving peer.
//!
//! Each test plays the peer: it writes raw frame bytes (header layouts spelled out in the
//! helpers below and pinned by `helpers_match_the_wire_layouts`), feeds them to a
//! [`Connection`] and checks what the engine does about it:
//!
//! - the session ends with exactly the expected [`Violation`];
//! - what it transmits then ends with GoAway(protocol error) where the dialect has GoAway
//!   (yamux, net-mux), and is empty on smux (which has none);
//! - streams opened or accepted before still return the bytes that arrived, then the error;
//!   writes, opens and accepts fail with it; later input and EOF change nothing;
//! - nothing panics.
//!
//! Plus the resource bounds a hostile peer probes: accept backlog, unacknowledged opens, GoAway,
//! Ping and SYN floods against the control queue, and the session receive budget.
//!
//! One module per concern (in `bad_input/`); the frame builders and the session harness are
//! shared by all of them through this root's imports.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Poll, Waker};
use std::time::Instant;

use bytes::BytesMut;
use polymux_proto::{
    Config, Connection, Dialect, Error, Frame, Role, StreamId, StreamKey, Violation,
};

const KIB: usize = 1024;
/// The window every yamux / net-mux / smux v2 stream starts with.
const INITIAL_WINDOW: usize = 256 * KIB;

const YAMUX_SHAPED: [Dialect; 2] = [Dialect::Yamux, Dialect::NetMux];
const SMUX: [Dialect; 2] = [Dialect::SmuxV1, Dialect::SmuxV2];
const ALL: [Dialect; 4] = [
    Dialect::Yamux,
    Dialect::NetMux,
    Dialect::SmuxV1,
    Dialect::SmuxV2,
];

#[path = "../common/mod.rs"]
mod common;

mod bounds;
mod eof;
mod flow;
mod frames;
mod harness;
mod headers;
mod robustness;
mod stream_ids;

use common::Flag;
use frames::*;
use harness::*;
