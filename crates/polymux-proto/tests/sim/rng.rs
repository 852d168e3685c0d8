//! Randomness and payloads: the seeded [`Rng`] and the keyed payload bytes that let a reader
//! detect a lost, duplicated or reordered byte.

use super::*;

pub(crate) fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// xorshift64*, seeded through splitmix64 so that neighbouring seeds are unrelated.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        // xorshift's state must never be zero.
        Rng(splitmix(seed) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n` (`n > 0`; the modulo bias is irrelevant here).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }

    pub fn percent(&mut self, p: u64) -> bool {
        self.below(100) < p
    }

    /// A size in `1..=max` skewed towards the edges: single bytes, tiny, small, and anything.
    pub fn size(&mut self, max: usize) -> usize {
        if max <= 1 {
            return max;
        }
        let cap = match self.below(10) {
            0 => 1,
            1 | 2 => 16,
            3..=5 => 1024,
            6 | 7 => 16 * 1024,
            _ => max,
        };
        self.range(1, cap.min(max) as u64) as usize
    }
}

/// The deterministic payload of the direction of stream `id` written by `writer`: byte `off`
/// is a keyed hash of the offset, so a lost, duplicated or reordered byte shows up as a wrong
/// value at the reader.
pub fn payload_salt(writer: Role, id: u32) -> u64 {
    splitmix(u64::from(id) << 1 | u64::from(writer == Role::Client))
}

/// Fills `out` with the payload bytes at offsets `off..off + out.len()`.
pub fn fill_payload(salt: u64, off: u64, out: &mut [u8]) {
    let mut i = 0;
    while i < out.len() {
        let at = off + i as u64;
        let block = splitmix(salt ^ (at >> 3)).to_le_bytes();
        let skip = (at & 7) as usize;
        let n = (8 - skip).min(out.len() - i);
        out[i..i + n].copy_from_slice(&block[skip..skip + n]);
        i += n;
    }
}

pub fn payload_byte(salt: u64, off: u64) -> u8 {
    // A hash per 8-byte block (not a linear function of the offset, whose streams would all be
    // shifted copies of one sequence).
    (splitmix(salt ^ (off >> 3)) >> ((off & 7) * 8)) as u8
}
