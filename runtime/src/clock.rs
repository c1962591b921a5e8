//! The machine's clock: nanoseconds since the capturer started, and wall-clock timestamps.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use capturer_core::{Instant, Timestamp};

/// Maps tokio's monotonic clock onto the core's `Instant`.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    origin: tokio::time::Instant,
}

impl Clock {
    /// A clock whose zero is now.
    pub fn start() -> Clock {
        Clock {
            origin: tokio::time::Instant::now(),
        }
    }

    /// Now, for the machine.
    pub fn now(&self) -> Instant {
        Instant(self.origin.elapsed().as_nanos().min(u128::from(u64::MAX)) as u64)
    }

    /// The tokio instant of a machine deadline, for sleeping until it.
    pub fn deadline(&self, at: Instant) -> tokio::time::Instant {
        self.origin + Duration::from_nanos(at.0)
    }
}

/// The wall clock as a daemon timestamp (for `--from now` and the events' `since`).
pub fn wall_now() -> Timestamp {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    Timestamp(d.as_nanos().min(u128::from(u64::MAX)) as u64)
}
