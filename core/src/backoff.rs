//! Backoff between reopens: exponential, capped, with jitter the caller seeds.
//!
//! Every reopen goes through [`Backoff::delay`]. A generation that delivered something and was
//! retired on purpose (rotation, stall) counts as healthy: the next opens at once. Anything else
//! (an error, a bad frame, a clean end while the container still runs) is a failure, and the
//! `k`-th failure in a row waits `initial * 2^(k-1)`, capped at `max`, jittered down to no less
//! than half of that so that many containers failing together do not reopen together.

use std::time::Duration;

/// Backoff settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Backoff {
    /// Wait after the first failure.
    pub initial: Duration,
    /// Longest wait.
    pub max: Duration,
    /// Seed of the jitter; the runtime draws one per container. Zero jitter when 0.
    pub jitter_seed: u64,
}

impl Default for Backoff {
    fn default() -> Backoff {
        Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(30),
            jitter_seed: 0,
        }
    }
}

impl Backoff {
    /// The wait before reopening after `failures` failures in a row; `salt` varies the jitter
    /// from one reopen to the next (the machine passes the generation).
    pub fn delay(&self, failures: u32, salt: u64) -> Duration {
        if failures == 0 {
            return Duration::ZERO;
        }
        let full = self
            .initial
            .saturating_mul(1u32 << (failures - 1).min(31))
            .min(self.max);
        if self.jitter_seed == 0 {
            return full;
        }
        let half = full / 2;
        let span = (full - half).as_nanos() as u64;
        let r = splitmix64(self.jitter_seed ^ salt.rotate_left(17) ^ u64::from(failures));
        half + Duration::from_nanos(if span == 0 { 0 } else { r % (span + 1) })
    }
}

/// A small, well-mixed hash of a seed (SplitMix64's finalizer).
fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exponential_capped_and_zero_when_healthy() {
        let b = Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(1),
            jitter_seed: 0,
        };
        let ms: Vec<u128> = (0..7).map(|k| b.delay(k, 0).as_millis()).collect();
        assert_eq!(ms, vec![0, 100, 200, 400, 800, 1000, 1000]);
        assert_eq!(b.delay(u32::MAX, 0), Duration::from_secs(1));
    }

    #[test]
    fn jitter_stays_within_half_and_full() {
        let b = Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(30),
            jitter_seed: 42,
        };
        let mut seen = std::collections::BTreeSet::new();
        for salt in 0..200 {
            let d = b.delay(3, salt);
            assert!(
                d >= Duration::from_millis(200) && d <= Duration::from_millis(400),
                "{d:?}"
            );
            seen.insert(d);
        }
        assert!(seen.len() > 100, "jitter varies: {}", seen.len());
    }
}
