//! A small seeded generator (SplitMix64) for the loop's choices: kill moments, edits, pauses.
//! Not for anything secret; it keeps the crate free of a random-number dependency.

use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`0` when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next_u64() % n }
    }

    /// An index into a slice of `len` elements.
    pub fn index(&mut self, len: usize) -> usize {
        usize::try_from(self.below(len as u64)).unwrap_or(0)
    }

    /// True with probability `percent`/100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    /// A duration in `[lo, hi]`, to the millisecond.
    pub fn between(&mut self, lo: Duration, hi: Duration) -> Duration {
        let (lo_ms, hi_ms) = (millis(lo), millis(hi).max(millis(lo)));
        Duration::from_millis(lo_ms + self.below(hi_ms - lo_ms + 1))
    }

    /// An independent stream for another task, so tasks do not share one generator.
    pub fn fork(&mut self) -> Rng {
        Rng(self.next_u64())
    }

    /// `count` distinct numbers of `0..n`, sorted (all of them if `count >= n`).
    pub fn pick(&mut self, count: usize, n: usize) -> Vec<usize> {
        let mut all: Vec<usize> = (0..n).collect();
        for i in (1..all.len()).rev() {
            let j = self.index(i + 1);
            all.swap(i, j);
        }
        all.truncate(count);
        all.sort_unstable();
        all
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_makes_the_same_choices() {
        let (mut a, mut b) = (Rng::new(7), Rng::new(7));
        let xs: Vec<u64> = (0..20).map(|_| a.below(1000)).collect();
        let ys: Vec<u64> = (0..20).map(|_| b.below(1000)).collect();
        assert_eq!(xs, ys);
        assert_ne!(Rng::new(8).next_u64(), Rng::new(7).next_u64());
    }

    #[test]
    fn pick_gives_distinct_sorted_indexes() {
        let mut r = Rng::new(1);
        let picked = r.pick(5, 100);
        assert_eq!(picked.len(), 5);
        assert!(picked.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(r.pick(10, 3), vec![0, 1, 2]);
    }

    #[test]
    fn between_stays_in_range() {
        let mut r = Rng::new(3);
        for _ in 0..1000 {
            let d = r.between(Duration::from_millis(50), Duration::from_millis(60));
            assert!((50..=60).contains(&d.as_millis()));
        }
    }
}
