//! What the fuzz tests share: a small deterministic generator (xorshift), so a failing case
//! can be replayed from its seed without a fuzzing dependency, and the seed and case count,
//! taken from `GATEHOUSE_FUZZ_SEED` and `GATEHOUSE_FUZZ_CASES` to replay or widen a run.

/// A xorshift64 generator.
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next_u64() % n as u64).unwrap_or(0)
    }

    /// One of `from` (not empty).
    pub fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from[self.below(from.len())]
    }
}

/// The seed and number of cases of a run: the environment's, else the test's defaults (a
/// seed of 0, which xorshift never leaves, is taken as 1).
#[must_use]
pub fn settings(default_seed: u64, default_cases: usize) -> (u64, usize) {
    let read = |name: &str| std::env::var(name).ok();
    (
        read("GATEHOUSE_FUZZ_SEED")
            .and_then(|s| s.parse().ok())
            .unwrap_or(default_seed)
            // xorshift stays at zero from zero: every case would be the same empty input.
            .max(1),
        read("GATEHOUSE_FUZZ_CASES")
            .and_then(|s| s.parse().ok())
            .unwrap_or(default_cases),
    )
}
