//! polymux (net-mux) against the Rust `net-mux` 1.x crate, both directions, every scenario of
//! `interop/SCENARIOS.md`.

mod common;

use polymux::Dialect;
use polymux_testkit::peers::NetMux;
use polymux_testkit::{Role, Scenario, Side};

use Role::{Client, Server};
use Scenario::*;

mod rust_net_mux_1 {
    use super::*;

    /// net-mux treats any GoAway, sent or received, as the start of its shutdown
    /// (session/inner.rs:65-77, session/reader.rs:108-111). It has no ping API
    /// (session/keepalive.rs:20-40) but answers pings: in `ping` only polymux pings.
    const UNSUPPORTED: &[(Scenario, Role)] = &[
        (GoAwayByClient, Client),
        (GoAwayByClient, Server),
        (GoAwayByServer, Client),
        (GoAwayByServer, Server),
    ];

    fn check(scenario: Scenario, role: Role) {
        common::check(
            Side::rust(NetMux),
            Dialect::NetMux,
            scenario,
            role,
            UNSUPPORTED,
        );
    }

    matrix_tests!(check);
}
