//! The bench's payload: a deterministic pseudo-random byte sequence per stream, so that every
//! echoed byte can be verified without keeping a copy of what was sent.
//!
//! Byte `i` of stream `seed` is `TABLE[(seed * 7919 + i) % PERIOD]`, with a prime `PERIOD`
//! so that misplaced chunks (a lost, duplicated or reordered 64 KiB write) never line up with
//! the expected bytes.

use std::io;
use std::sync::OnceLock;

/// The period of the sequence (prime).
const PERIOD: usize = 65_521;
/// The longest slice [`slice()`] hands out.
pub const MAX_CHUNK: usize = 64 * 1024;

fn table() -> &'static [u8] {
    static TABLE: OnceLock<Vec<u8>> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut bytes = Vec::with_capacity(PERIOD + MAX_CHUNK);
        for _ in 0..PERIOD {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            bytes.push((x >> 24) as u8);
        }
        // Continue the cycle so that a slice starting anywhere in the period can be taken
        // without wrapping.
        for i in 0..MAX_CHUNK {
            bytes.push(bytes[i % PERIOD]);
        }
        bytes
    })
}

fn start(seed: u64, offset: u64) -> usize {
    ((seed.wrapping_mul(7919).wrapping_add(offset)) % PERIOD as u64) as usize
}

/// The `len` (≤ [`MAX_CHUNK`]) bytes of stream `seed` at `offset`.
pub fn slice(seed: u64, offset: u64, len: usize) -> &'static [u8] {
    let at = start(seed, offset);
    &table()[at..at + len.min(MAX_CHUNK)]
}

/// Checks `data` (≤ [`MAX_CHUNK`] bytes) against stream `seed` at `offset`.
pub fn verify(seed: u64, offset: u64, data: &[u8]) -> io::Result<()> {
    let expected = slice(seed, offset, data.len());
    if expected == data {
        return Ok(());
    }
    let at = expected
        .iter()
        .zip(data)
        .position(|(a, b)| a != b)
        .unwrap_or(0);
    Err(io::Error::new(
        io::ErrorKind::InvalidData,
        format!(
            "echoed byte {} of stream {seed} differs from what was sent",
            offset + at as u64
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_verify_and_corruption_is_found() {
        let a = slice(3, 100_000, 1000).to_vec();
        verify(3, 100_000, &a).expect("same bytes");
        assert!(verify(4, 100_000, &a).is_err(), "another stream's bytes");
        assert!(verify(3, 100_001, &a).is_err(), "shifted by one");
        let mut b = a.clone();
        b[999] ^= 1;
        let err = verify(3, 100_000, &b).expect_err("flipped bit");
        assert!(err.to_string().contains("100999"), "{err}");
        assert_eq!(slice(0, 0, MAX_CHUNK).len(), MAX_CHUNK);
    }
}
