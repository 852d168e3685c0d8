//! Robustness: random plausible frames never panic the engine.

use super::*;

#[test]
fn garbage_never_panics() {
    // Plausible-looking random frames (right version byte, small types and ids), in random
    // pieces, with the application accepting, reading and writing in between. The engine may
    // end the session, but must not panic, and a violation must still be announced last.
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut rand = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut violations = 0;
    for round in 0..2_000 {
        let d = ALL[round % 4];
        let role = if round % 8 < 4 {
            Role::Server
        } else {
            Role::Client
        };
        let mut s = Session::new(d, role);
        let mut wire = Vec::new();
        for _ in 0..(rand() % 24) {
            let r = rand();
            let id = (r >> 8) as u32 % 8;
            let len = match (r >> 16) % 4 {
                0 => 0,
                1 => (r >> 24) as u32 % 64,
                2 => 8,
                _ => (r >> 24) as u32,
            };
            let mut frame = if is_smux(d) {
                cmd(d, (r % 6) as u8, len as u16, id)
            } else {
                hdr(d, (r % 5) as u8, ((r >> 4) % 16) as u16, id, len)
            };
            if (r >> 40) % 50 == 0 {
                frame[0] ^= 1;
            }
            wire.extend(frame);
            let body = (len as usize).min(64);
            wire.extend(std::iter::repeat_n(0xa5, body));
        }
        let mut sent = Vec::new();
        let mut rest = &wire[..];
        while !rest.is_empty() {
            let n = (rand() as usize % 40 + 1).min(rest.len());
            s.feed(&rest[..n]);
            rest = &rest[n..];
            if rand() % 3 == 0 {
                if let Poll::Ready(Ok(k)) = s.conn.poll_accept(Waker::noop(), s.now) {
                    let _ = s.read_all(k);
                    let _ = s.write(k, b"reply");
                }
            }
            sent.extend(s.output());
        }
        s.conn.handle_eof(s.rx.len());
        sent.extend(s.output());
        assert!(s.conn.is_ended(), "round {round}");
        if let Some(reason @ Error::ProtocolViolation(_)) = s.conn.end_reason() {
            violations += 1;
            if let Some(code) = d.goaway_code_for(reason) {
                assert!(
                    sent.ends_with(&go_away(d, code)),
                    "round {round}: no GoAway({code}) last"
                );
            }
        }
    }
    // Both outcomes are exercised (about 95 % violations with this seed).
    assert!(
        (1_000..2_000).contains(&violations),
        "{violations} violations"
    );
}
