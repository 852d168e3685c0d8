//! Fuzz target: two engines back to back (see `polymux_fuzz::pair`).
#![no_main]

libfuzzer_sys::fuzz_target!(|input: polymux_fuzz::pair::PairInput| {
    let _ = polymux_fuzz::pair::run(&input);
});
