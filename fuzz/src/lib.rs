//! Harnesses of the polymux fuzz targets (the targets in `fuzz_targets/` are one-line
//! wrappers, so that the seed generator and regression replays share this code).
//!
//! - [`codec`]: arbitrary bytes through each dialect's decode loop (no panic, canonical
//!   re-encoding where the dialect is canonical).
//! - [`pair`]: two engines back to back under an arbitrary interleaving of API calls,
//!   partial I/O, time and transport failure.
//! - [`hostile`]: one engine against a peer that sends arbitrary frames and bytes.
//!
//! See each module for the invariants it checks, and `README.md` for how to run them.

pub mod codec;
pub mod engine;
pub mod hostile;
pub mod pair;
