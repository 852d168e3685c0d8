//! Fuzz target: arbitrary bytes through the yamux decode loop (see `polymux_fuzz::codec`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    polymux_fuzz::codec::decode_loop(polymux_proto::Dialect::Yamux, data);
});
