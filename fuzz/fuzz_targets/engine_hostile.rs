//! Fuzz target: one engine against a hostile peer (see `polymux_fuzz::hostile`).
#![no_main]

libfuzzer_sys::fuzz_target!(|input: polymux_fuzz::hostile::HostileInput| {
    let _ = polymux_fuzz::hostile::run(&input);
});
