//! polymux (smux v1 and v2) against Go `xtaci/smux` v1 and v2, Rust `async_smux` 0.4 (v1) and
//! the Rust `smux` 0.2 crate (v1), both directions, every scenario of `interop/SCENARIOS.md`.

mod common;

use polymux::Dialect;
use polymux_testkit::peers::{AsyncSmux, SmuxRs};
use polymux_testkit::{GoProto, Role, Scenario, Side};

use Role::{Client, Server};
use Scenario::*;

/// smux has no Ping, no GoAway and no RST (cmds SYN/FIN/PSH/NOP/UPD only): those scenarios
/// are reported unsupported whoever the peer is.
const DIALECT: [(Scenario, Role); 10] = [
    (GoAwayByClient, Client),
    (GoAwayByClient, Server),
    (GoAwayByServer, Client),
    (GoAwayByServer, Server),
    (Ping, Client),
    (Ping, Server),
    (ResetByClient, Client),
    (ResetByClient, Server),
    (ResetByServer, Client),
    (ResetByServer, Server),
];

/// smux v1 has no per-stream window: a stream that is never read fills the receiver's session
/// budget, which then stops reading the connection and stalls every stream (Go:
/// session.go:311-316, 349-354; shown by `TestSmuxV1UnreadStallsSession` in crates/polymux-testkit/go).
const V1: [(Scenario, Role); 2] = [(Unread, Client), (Unread, Server)];

fn unsupported(peer_specific: &[(Scenario, Role)]) -> Vec<(Scenario, Role)> {
    DIALECT.iter().chain(peer_specific).copied().collect()
}

fn unsupported_v1(peer_specific: &[(Scenario, Role)]) -> Vec<(Scenario, Role)> {
    V1.iter()
        .chain(peer_specific)
        .copied()
        .chain(DIALECT)
        .collect()
}

mod go_smux_v1 {
    use super::*;

    /// Go smux 1.5.16: `Stream.Close` closes both directions (stream.go:111-116, 162-167), so the
    /// Go echo client plays "read exactly N bytes, then close" (interop/SCENARIOS.md) and the Go
    /// side cannot read after its own FIN (halfclose server); `OpenStream` sends SYN before
    /// registering the stream (session.go:137-152), so a greeting sent at once may be dropped
    /// (greet client).
    const UNSUPPORTED: &[(Scenario, Role)] = &[(Greet, Server), (HalfClose, Client)];

    fn check(scenario: Scenario, role: Role) {
        common::check(
            Side::Go(GoProto::Smux1),
            Dialect::SmuxV1,
            scenario,
            role,
            &unsupported_v1(UNSUPPORTED),
        );
    }

    matrix_tests!(check);
}

mod go_smux_v2 {
    use super::*;

    /// Go smux 1.5.16: `Stream.Close` closes both directions (stream.go:111-116, 162-167), so the
    /// Go echo client plays "read exactly N bytes, then close" (interop/SCENARIOS.md) and the Go
    /// side cannot read after its own FIN (halfclose server); `OpenStream` sends SYN before
    /// registering the stream (session.go:137-152), so a greeting sent at once may be dropped
    /// (greet client).
    const UNSUPPORTED: &[(Scenario, Role)] = &[(Greet, Server), (HalfClose, Client)];

    fn check(scenario: Scenario, role: Role) {
        common::check(
            Side::Go(GoProto::Smux2),
            Dialect::SmuxV2,
            scenario,
            role,
            &unsupported(UNSUPPORTED),
        );
    }

    matrix_tests!(check);
}

mod rust_async_smux_0_4 {
    use super::*;

    /// async_smux 0.4 reports ConnectionClosed instead of EOF once the session is closed
    /// (mux.rs:1152-1156) and takes keep-alive intervals in whole seconds (builder.rs:72-75).
    const UNSUPPORTED: &[(Scenario, Role)] = &[
        (Greet, Client),
        (HalfClose, Client),
        (Idle, Client),
        (Idle, Server),
    ];

    fn check(scenario: Scenario, role: Role) {
        common::check(
            Side::rust(AsyncSmux),
            Dialect::SmuxV1,
            scenario,
            role,
            &unsupported_v1(UNSUPPORTED),
        );
    }

    matrix_tests!(check);
}

mod rust_smux_0_2 {
    use super::*;

    /// smux 0.2 fails reads with BrokenPipe once the session is closed, before queued data or
    /// the FIN (stream.rs:139-148).
    const UNSUPPORTED: &[(Scenario, Role)] = &[(Greet, Client), (HalfClose, Client)];

    fn check(scenario: Scenario, role: Role) {
        common::check(
            Side::rust(SmuxRs),
            Dialect::SmuxV1,
            scenario,
            role,
            &unsupported_v1(UNSUPPORTED),
        );
    }

    matrix_tests!(check);
}
