//! Generates the committed seed corpus in `fuzz/seeds/<target>/` (deterministic: the same
//! files on every run). Run from `fuzz/`: `cargo +nightly run --example gen_seeds`.
//!
//! - decoder targets: the bytes each direction of a scripted conversation between two engines
//!   carried (opens, data both ways, ping, half-close, reset, GoAway, graceful close), under the
//!   preset and the tight configuration, so each decoder starts from real traffic;
//! - engine targets: the same scripted conversation as op lists, written in the byte layout
//!   `arbitrary` 1.x reads (an enum variant is a little-endian u32 scaled onto the variant
//!   count, a collection is a "continue" byte before each element); every seed is decoded back
//!   and compared with the script, so a layout change fails here instead of producing junk.
//!   For the hostile target also the best few of a seeded random search (streams opened by the
//!   peer and data received without a violation).

use std::fs;
use std::path::Path;

use arbitrary::{Arbitrary, Unstructured};
use polymux_fuzz::engine::{Api, DialectSel, Profile};
use polymux_fuzz::hostile::{self, HostileInput, HostileOp, Kind, PeerFrame, StreamSel};
use polymux_fuzz::pair::{self, Pair, PairInput, PairOp};

fn conversation() -> Vec<PairOp> {
    use Api::*;
    use PairOp::{Advance, Recv, Send};
    let c = |api| PairOp::Api(true, api);
    let s = |api| PairOp::Api(false, api);
    vec![
        c(Open),
        c(Open),
        c(Write(0, 300)),
        c(Write(1, 5000)),
        c(Ping),
        Send(true, 0),
        Recv(false, 0),
        s(Accept),
        s(Accept),
        s(Read(0, 1000)),
        s(Read(1, 4000)),
        s(Write(0, 100)),
        s(CloseWrite(0)),
        s(Reset(1)),
        Send(false, 0),
        Recv(true, 0),
        c(Read(0, 1000)),
        c(Read(0, 1000)),
        c(CloseWrite(0)),
        c(PollPing),
        c(GoAway),
        Send(true, 0),
        Recv(false, 0),
        Advance(500),
        s(Release(0)),
        c(Release(0)),
        c(Release(0)),
        s(Release(0)),
        Send(false, 0),
        Recv(true, 0),
    ]
}

/// Writes values in the layout `arbitrary` 1.x reads them in.
#[derive(Default)]
struct Enc(Vec<u8>);

impl Enc {
    fn variant(&mut self, i: u64, n: u64) -> &mut Self {
        // The smallest u32 x with (x * n) >> 32 == i.
        let x = (i << 32).div_ceil(n);
        self.0.extend_from_slice(&(x as u32).to_le_bytes());
        self
    }
    fn u8(&mut self, v: u8) -> &mut Self {
        self.0.push(v);
        self
    }
    fn bool(&mut self, v: bool) -> &mut Self {
        self.u8(u8::from(v))
    }
    fn u16(&mut self, v: u16) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn u32(&mut self, v: u32) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }

    fn api(&mut self, api: &Api) -> &mut Self {
        const N: u64 = 13;
        match *api {
            Api::Open => self.variant(0, N),
            Api::Accept => self.variant(1, N),
            Api::Established(s) => self.variant(2, N).u8(s),
            Api::Write(s, l) => self.variant(3, N).u8(s).u16(l),
            Api::WriteDirect(s, l, t) => self.variant(4, N).u8(s).u16(l).u16(t),
            Api::Read(s, l) => self.variant(5, N).u8(s).u16(l),
            Api::CloseWrite(s) => self.variant(6, N).u8(s),
            Api::Reset(s) => self.variant(7, N).u8(s),
            Api::Release(s) => self.variant(8, N).u8(s),
            Api::Ping => self.variant(9, N),
            Api::PollPing => self.variant(10, N),
            Api::GoAway => self.variant(11, N),
            Api::Close => self.variant(12, N),
        }
    }

    fn pair_op(&mut self, op: &PairOp) -> &mut Self {
        const N: u64 = 5;
        match *op {
            PairOp::Api(c, ref api) => self.variant(0, N).bool(c).api(api),
            PairOp::Send(c, n) => self.variant(1, N).bool(c).u16(n),
            PairOp::Recv(c, n) => self.variant(2, N).bool(c).u16(n),
            PairOp::Advance(ms) => self.variant(3, N).u16(ms),
            PairOp::Kill(c) => self.variant(4, N).bool(c),
        }
    }

    fn hostile_op(&mut self, op: &HostileOp) -> &mut Self {
        const N: u64 = 7;
        match op {
            HostileOp::Api(api) => self.variant(0, N).api(api),
            HostileOp::Frame(f) => {
                self.variant(1, N);
                let kind = match f.kind {
                    Kind::Data => 0,
                    Kind::DataLie => 1,
                    Kind::Credit => 2,
                    Kind::Ping => 3,
                    Kind::GoAway => 4,
                };
                self.variant(kind, 5);
                match f.stream {
                    StreamSel::Ours(i) => self.variant(0, 3).u8(i),
                    StreamSel::Small(i) => self.variant(1, 3).u8(i),
                    StreamSel::Any(id) => self.variant(2, 3).u32(id),
                };
                self.u16(f.flags).u32(f.value).u32(f.value2).u16(f.payload)
            }
            HostileOp::Raw(bytes) => {
                self.variant(2, N);
                for &b in bytes {
                    self.bool(true).u8(b);
                }
                self.bool(false)
            }
            HostileOp::Feed(n) => self.variant(3, N).u16(*n),
            HostileOp::Drain(n) => self.variant(4, N).u8(*n),
            HostileOp::Advance(ms) => self.variant(5, N).u16(*ms),
            HostileOp::Eof => self.variant(6, N),
        }
    }
}

fn dialect_index(d: DialectSel) -> u64 {
    match d {
        DialectSel::Yamux => 0,
        DialectSel::SmuxV1 => 1,
        DialectSel::SmuxV2 => 2,
        DialectSel::NetMux => 3,
    }
}

fn encode_pair(input: &PairInput) -> Vec<u8> {
    let mut e = Enc::default();
    e.variant(dialect_index(input.dialect), 4);
    e.variant(input.profile as u64, 2);
    for op in &input.ops {
        e.bool(true).pair_op(op);
    }
    e.bool(false);
    let bytes = e.0;
    let back = PairInput::arbitrary_take_rest(Unstructured::new(&bytes)).expect("decodes");
    assert_eq!(
        format!("{back:?}"),
        format!("{input:?}"),
        "arbitrary layout changed"
    );
    bytes
}

fn encode_hostile(input: &HostileInput) -> Vec<u8> {
    let mut e = Enc::default();
    e.variant(dialect_index(input.dialect), 4);
    e.variant(input.profile as u64, 2);
    e.bool(input.server);
    for op in &input.ops {
        e.bool(true).hostile_op(op);
    }
    e.bool(false);
    let bytes = e.0;
    let back = HostileInput::arbitrary_take_rest(Unstructured::new(&bytes)).expect("decodes");
    assert_eq!(
        format!("{back:?}"),
        format!("{input:?}"),
        "arbitrary layout changed"
    );
    bytes
}

/// A peer's side of a conversation with our engine (`server`: we are the server, the peer
/// opens odd ids).
fn hostile_script(server: bool) -> Vec<HostileOp> {
    use HostileOp::*;
    let id = if server { 1 } else { 2 };
    // Our stream's index among the ids our application knows (sorted): the peer's `id` and
    // the one we open (server: 2; client: 1).
    let ours = StreamSel::Ours(if server { 1 } else { 0 });
    let frame = |kind, stream, flags: u16, value, payload| {
        Frame(PeerFrame::new(kind, stream, flags, value, 0, payload))
    };
    vec![
        frame(Kind::Data, StreamSel::Small(id), 1, 0, 0),
        frame(Kind::Data, StreamSel::Small(id), 0, 0, 200),
        Feed(0),
        Api(self::Api::Accept),
        Api(self::Api::Read(0, 1000)),
        Api(self::Api::Write(0, 3000)),
        Api(self::Api::Open),
        Drain(0),
        frame(Kind::Credit, ours, 2, 65536, 0),
        frame(Kind::Data, ours, 0, 0, 500),
        frame(Kind::Ping, StreamSel::Small(0), 0, 7, 0),
        frame(Kind::Data, StreamSel::Small(id), 0, 0, 10),
        frame(Kind::Data, StreamSel::Small(id), 4, 0, 0),
        Feed(0),
        Api(self::Api::Read(0, 1000)),
        Api(self::Api::Read(0, 1000)),
        Api(self::Api::Read(1, 1000)),
        Api(self::Api::CloseWrite(0)),
        Api(self::Api::Ping),
        Advance(100),
        Drain(0),
        frame(Kind::Ping, StreamSel::Small(0), 2, 1, 0),
        frame(Kind::Credit, ours, 8, 0, 0),
        frame(Kind::GoAway, StreamSel::Small(0), 0, 0, 0),
        Feed(0),
        Api(self::Api::Release(0)),
        Api(self::Api::Release(0)),
        Drain(0),
        Eof,
        Feed(0),
    ]
}

fn splitmix(z: &mut u64) -> u64 {
    *z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut x = *z;
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

fn random_bytes(state: &mut u64, len: usize) -> Vec<u8> {
    (0..len).map(|_| splitmix(state) as u8).collect()
}

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    fs::create_dir_all(dir).expect("create the seed directory");
    fs::write(dir.join(name), bytes).expect("write a seed");
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds");
    let dialects = [
        (DialectSel::Yamux, "yamux"),
        (DialectSel::SmuxV1, "smux_v1"),
        (DialectSel::SmuxV2, "smux_v2"),
        (DialectSel::NetMux, "net_mux"),
    ];
    for (sel, name) in dialects {
        for (profile, pname) in [(Profile::Preset, "preset"), (Profile::Tight, "tight")] {
            let mut pair = Pair::new(sel.dialect(), profile);
            pair.record = Some([Vec::new(), Vec::new()]);
            for op in conversation() {
                pair.step(&op);
            }
            pair.finish();
            let [c2s, s2c] = pair.record.take().expect("recorded");
            let dir = root.join(format!("decode_{name}"));
            write(&dir, &format!("{pname}-client-to-server"), &c2s);
            write(&dir, &format!("{pname}-server-to-client"), &s2c);
        }

        // Engine seeds: the scripted conversations.
        for (profile, pname) in [(Profile::Preset, "preset"), (Profile::Tight, "tight")] {
            let input = PairInput {
                dialect: sel,
                profile,
                ops: conversation(),
            };
            let sum = pair::run(&input);
            assert!(
                sum.received.iter().all(|&r| r > 0),
                "{name}: a one-sided conversation"
            );
            write(
                &root.join("engine_pair"),
                &format!("{name}-{pname}"),
                &encode_pair(&input),
            );
            for server in [true, false] {
                let input = HostileInput {
                    dialect: sel,
                    profile,
                    server,
                    ops: hostile_script(server),
                };
                let sum = hostile::run(&input);
                assert!(!sum.violation && sum.received > 0, "{name}: {sum:?}");
                let role = if server { "server" } else { "client" };
                let file = format!("{name}-{pname}-{role}");
                write(&root.join("engine_hostile"), &file, &encode_hostile(&input));
            }
        }

        // Hostile seeds: also the best two of a seeded random search.
        let mut state = 0x5eed ^ dialect_index(sel) << 8;
        let mut best: Vec<(u64, Vec<u8>)> = Vec::new();
        for _ in 0..5_000 {
            let len = 64 + (splitmix(&mut state) % 960) as usize;
            let mut bytes = random_bytes(&mut state, len);
            // The first 4 bytes pick the dialect.
            bytes[..4].copy_from_slice(&Enc::default().variant(dialect_index(sel), 4).0);
            let Ok(input) = HostileInput::arbitrary_take_rest(Unstructured::new(&bytes)) else {
                continue;
            };
            let sum = hostile::run(&input);
            if !sum.violation && sum.received > 0 {
                best.push((sum.received + 10_000 * sum.opened_inbound, bytes));
            }
        }
        best.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        println!("engine_hostile {name}: {} search candidates", best.len());
        for (i, (_, bytes)) in best.iter().take(2).enumerate() {
            write(
                &root.join("engine_hostile"),
                &format!("{name}-search-{i}"),
                bytes,
            );
        }
    }
}
