//! Time as the machine sees it: a monotonic instant passed in by the caller.
//!
//! The core never reads a clock. The runtime passes the nanoseconds elapsed since it started;
//! tests, the model and the fuzzer pass whatever they like, so every run repeats exactly.

use std::time::Duration;

/// A point on the caller's monotonic clock, in nanoseconds from an arbitrary origin.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct Instant(pub u64);

impl Instant {
    /// The instant `d` later (saturating: time does not wrap).
    pub fn after(self, d: Duration) -> Instant {
        Instant(
            self.0
                .saturating_add(d.as_nanos().min(u128::from(u64::MAX)) as u64),
        )
    }

    /// The time from `earlier` to `self` (zero if `earlier` is later).
    pub fn since(self, earlier: Instant) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }
}
