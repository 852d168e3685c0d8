//! polymux (yamux) against Go `hashicorp/yamux`, Rust `yamux` 0.14 and `tokio-yamux` 0.3, both
//! directions, every scenario of `interop/SCENARIOS.md`.

mod common;

use polymux::Dialect;
use polymux_testkit::peers::{TokioYamux, Yamux014};
use polymux_testkit::{GoProto, Role, Scenario, Side};

use Role::{Client, Server};
use Scenario::*;

mod go_hashicorp_yamux {
    use super::*;

    /// hashicorp/yamux (Debian 0.0+git20190923) cannot reset a stream: `Stream` has only
    /// `Close`, which sends FIN (stream.go:273-322).
    const UNSUPPORTED: &[(Scenario, Role)] = &[(ResetByClient, Server), (ResetByServer, Client)];

    fn check(scenario: Scenario, role: Role) {
        common::check(
            Side::Go(GoProto::Yamux),
            Dialect::Yamux,
            scenario,
            role,
            UNSUPPORTED,
        );
    }

    matrix_tests!(check);
}

mod rust_yamux_0_14 {
    use super::*;

    /// yamux 0.14 ends the connection on a received GoAway (connection.rs:592) and sends
    /// GoAway only while closing (connection/closing.rs:69-72). It has no ping API
    /// (connection/rtt.rs:46) but answers pings: in `ping` only polymux pings.
    const UNSUPPORTED: &[(Scenario, Role)] = &[
        (GoAwayByClient, Client),
        (GoAwayByClient, Server),
        (GoAwayByServer, Client),
        (GoAwayByServer, Server),
    ];

    fn check(scenario: Scenario, role: Role) {
        common::check(
            Side::rust(Yamux014),
            Dialect::Yamux,
            scenario,
            role,
            UNSUPPORTED,
        );
    }

    matrix_tests!(check);
}

mod tokio_yamux_0_3 {
    use super::*;

    /// tokio-yamux 0.3 stops taking in frames (window updates included) once the peer's FIN is
    /// queued (stream.rs:275-277, 308-310), so polymux's echo clients half-close only after
    /// their echo came back (`Adapt::half_close_after_echo`); it answers a GoAway with its own and ends the session
    /// (session.rs:542-550); it has no ping API (session.rs:238) but answers pings (in `ping`
    /// only polymux pings); it stops reading the
    /// connection while one stream's 8-frame channel is full, so a stream left unread stalls
    /// the others (session.rs:326, 706-714).
    const UNSUPPORTED: &[(Scenario, Role)] = &[
        (Unread, Client),
        (GoAwayByClient, Client),
        (GoAwayByServer, Server),
    ];

    fn check(scenario: Scenario, role: Role) {
        common::check(
            Side::rust(TokioYamux),
            Dialect::Yamux,
            scenario,
            role,
            UNSUPPORTED,
        );
    }

    matrix_tests!(check);
}
