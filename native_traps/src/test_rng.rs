//! A small deterministic generator for the tests (xorshift64): the same
//! seed gives the same sequence on every machine, so a failing case can be
//! replayed.

/// The generator's state; any non-zero seed.
pub(crate) struct XorShift(pub(crate) u64);

impl XorShift {
    /// The next 64-bit word.
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// The next number below `n` (not quite uniform; enough for tests).
    pub(crate) fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next_u64() % n as u64).expect("below n")
    }
}
