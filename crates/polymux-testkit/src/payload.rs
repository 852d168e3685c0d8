//! The scenario payload generator: `xorshift64*` seeded per stream (SCENARIOS.md).
//!
//! Each `next()` yields 8 bytes, little-endian; a stream takes them in order, so a verifier
//! regenerates the expected bytes instead of storing them.

/// Streaming generator of a scenario payload.
#[derive(Clone, Debug)]
pub struct Payload {
    state: u64,
    buf: [u8; 8],
    /// Bytes of `buf` already handed out (8 = empty).
    used: usize,
}

impl Payload {
    /// A generator for `seed` (1 + the stream's index in the scenario's own numbering).
    pub fn new(seed: u64) -> Self {
        assert_ne!(seed, 0, "xorshift64* needs a non-zero seed");
        Self {
            state: seed,
            buf: [0; 8],
            used: 8,
        }
    }

    /// The first `len` bytes for `seed`.
    pub fn bytes(seed: u64, len: usize) -> Vec<u8> {
        let mut out = vec![0; len];
        Self::new(seed).fill(&mut out);
        out
    }

    fn next_u64(&mut self) -> u64 {
        let mut x = self.state;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.state = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Fills `out` with the next `out.len()` payload bytes.
    pub fn fill(&mut self, mut out: &mut [u8]) {
        // Drain a partially used word first.
        while self.used < 8 && !out.is_empty() {
            out[0] = self.buf[self.used];
            self.used += 1;
            out = &mut out[1..];
        }
        let mut words = out.chunks_exact_mut(8);
        for word in &mut words {
            word.copy_from_slice(&self.next_u64().to_le_bytes());
        }
        let tail = words.into_remainder();
        if !tail.is_empty() {
            self.buf = self.next_u64().to_le_bytes();
            let n = tail.len();
            tail.copy_from_slice(&self.buf[..n]);
            self.used = n;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values_for_seed_1() {
        // Computed independently (Python) from the definition in SCENARIOS.md.
        let mut g = Payload::new(1);
        assert_eq!(g.next_u64(), 0x47e4_ce4b_896c_dd1d);
        assert_eq!(g.next_u64(), 0xabcf_a6a8_e079_651d);
        assert_eq!(g.next_u64(), 0xb9d1_0d8f_eb73_1f57);
        assert_eq!(
            Payload::bytes(1, 16),
            [
                0x1d, 0xdd, 0x6c, 0x89, 0x4b, 0xce, 0xe4, 0x47, 0x1d, 0x65, 0x79, 0xe0, 0xa8, 0xa6,
                0xcf, 0xab
            ]
        );
    }

    #[test]
    fn chunking_does_not_matter() {
        let whole = Payload::bytes(7, 1000);
        let mut g = Payload::new(7);
        let mut pieced = Vec::new();
        for n in [1, 3, 8, 13, 0, 64, 5, 906] {
            let mut b = vec![0; n];
            g.fill(&mut b);
            pieced.extend_from_slice(&b);
        }
        assert_eq!(pieced, whole);
    }
}
