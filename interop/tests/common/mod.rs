//! The interop matrix: polymux against one peer, in both directions, for every scenario.
//!
//! Each peer's test module lists the (scenario, polymux's role) pairs that cannot be played —
//! because the peer lacks a capability, or the dialect itself does (smux has no ping, GoAway or
//! RST) — with the reason in a comment; every other pair must succeed on both sides.

use polymux::Dialect;
use polymux_testkit::{assert_both_ok, run, Outcome, Polymux, Role, Scenario, Side};

/// Runs `scenario` with polymux (speaking `dialect`) as `role` against `peer`.
#[track_caller]
pub fn check(
    peer: Side,
    dialect: Dialect,
    scenario: Scenario,
    role: Role,
    unsupported: &[(Scenario, Role)],
) {
    let me = Side::rust(Polymux(dialect));
    let pair = match role {
        Role::Client => run(scenario, me, peer),
        Role::Server => run(scenario, peer, me),
    };
    println!("{pair}");
    if !unsupported.contains(&(scenario, role)) {
        assert_both_ok(pair);
        return;
    }
    // Unsupported by the peer, or by the dialect itself (smux has no ping, GoAway or RST):
    // either way it is reported as such, with a reason, and neither side fails.
    assert!(
        pair.unsupported().is_some(),
        "expected this pair to be reported unsupported: {pair}"
    );
    assert!(
        ![&pair.client, &pair.server]
            .iter()
            .any(|o| matches!(o, Outcome::Failed(_))),
        "a side failed where the pair is unsupported: {pair}"
    );
}

/// One test per scenario and direction: `$check(scenario, polymux_role)`.
#[macro_export]
macro_rules! matrix_tests {
    ($check:ident) => {
        $crate::matrix_tests!(@tests $check;
            echo100 = Echo100, bulk64 = Bulk64, open1000 = Open1000, greet = Greet,
            halfclose = HalfClose, reset_by_client = ResetByClient,
            reset_by_server = ResetByServer, goaway_by_client = GoAwayByClient,
            goaway_by_server = GoAwayByServer, ping = Ping, idle = Idle, unread = Unread);
    };
    (@tests $check:ident; $($name:ident = $scenario:ident),*) => {
        $(
            mod $name {
                use polymux_testkit::{Role, Scenario};

                #[test]
                fn polymux_as_client() {
                    super::$check(Scenario::$scenario, Role::Client);
                }

                #[test]
                fn polymux_as_server() {
                    super::$check(Scenario::$scenario, Role::Server);
                }
            }
        )*
    };
}
