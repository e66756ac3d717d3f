//! Deterministic pseudo-random bytes that do not compress: the same seed gives the same
//! bytes on every machine, so sizes and golden vectors built from them are stable.

/// `len` bytes of the xorshift64 stream from `state` (which must not be 0), eight
/// little-endian bytes a step. Golden vectors pin this exact stream: do not change it.
pub fn xorshift_bytes(state: u64, len: usize) -> Vec<u8> {
    assert_ne!(state, 0, "xorshift64 stays at 0 forever");
    let mut x = state;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// `len` incompressible bytes from any `seed` (0 included); different seeds give
/// different bytes.
pub fn noise(seed: u64, len: usize) -> Vec<u8> {
    xorshift_bytes(seed.wrapping_mul(2).wrapping_add(1), len)
}

#[cfg(test)]
mod tests {
    use super::{noise, xorshift_bytes};

    #[test]
    fn the_stream_is_pinned() {
        // The first step from 1: 1 ^ 1<<13 = 0x2001; ^ >>7 = 0x2041; ^ <<17 = 0x40822041.
        assert_eq!(xorshift_bytes(1, 4), 0x4082_2041u32.to_le_bytes());
        assert_eq!(noise(0, 13), xorshift_bytes(1, 13));
        assert_eq!(noise(7, 100).len(), 100);
        assert_ne!(noise(1, 64), noise(2, 64));
    }
}
