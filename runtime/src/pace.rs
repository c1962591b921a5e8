//! How long a reader leaves its socket off the poller before its next read: the adaptive read
//! policy (a pure function; `reader.rs` applies it, `timer.rs` sleeps it).
//!
//! The daemon writes every log frame with its own `write`, and a socket on the poller wakes
//! the reader once per write. A pause lets frames pile up in the socket so one wake-up takes
//! many. But a pause is only cheap while the socket has room: in a backlog the daemon fills
//! the socket (about 230 small frames, some 20 KiB) in about a millisecond, and a reader that
//! pauses longer holds the daemon back. So the pause follows what the reader found when it
//! last woke up:
//!
//! - it had waited for data ([`BUSY_WAIT`] or longer): an idle stream, a lone line is not
//!   delayed: no pause;
//! - it took [`FULL`] bytes or more: a backlog, the socket filled during the last pause or
//!   while the reader worked; pausing would make the daemon wait: no pause;
//! - it took less: a trickle, pause in proportion to how far from full it was, `--read-pause`
//!   for a single frame, nothing at [`FULL`].
//!
//! In a backlog this settles where a pause collects well under a socket's worth (at 20 KiB
//! per ms, about 14 KiB in a 0.6 ms pause), and the faster the daemon, the shorter the pause:
//! when the reader's own work lets [`FULL`] pile up, it never pauses.

use std::time::Duration;

/// A read that waited at least this long found the stream idle: the next one does not pause.
pub const BUSY_WAIT: Duration = Duration::from_micros(500);

/// What one wake-up takes in a backlog: this much or more and the next read does not pause.
/// Above a socket's worth of small frames (about 20 KiB) it would let the pause fill the
/// socket; at 32 KiB a stream at 20 KiB per ms settles at pauses of about 0.6 ms.
pub const FULL: usize = 32 * 1024;

/// The pause before the next read. `max` is `--read-pause` (zero: never pause); `waited` is
/// how long the reader last waited for data on the poller; `took` is how many bytes it has
/// read since then.
pub fn pause(max: Duration, waited: Duration, took: usize) -> Duration {
    if max.is_zero() || waited >= BUSY_WAIT || took >= FULL {
        return Duration::ZERO;
    }
    // max * (FULL - took) / FULL, in nanoseconds; `took < FULL`, so it is at most `max`.
    let nanos = max.as_nanos() * (FULL - took) as u128 / FULL as u128;
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);
    const BUSY: Duration = Duration::from_micros(20);

    #[test]
    fn zero_never_pauses() {
        assert_eq!(pause(Duration::ZERO, BUSY, 0), Duration::ZERO);
        assert_eq!(pause(Duration::ZERO, BUSY, 90), Duration::ZERO);
    }

    #[test]
    fn an_idle_stream_never_pauses() {
        // A lone line after a wait: however small the read, it is not delayed.
        assert_eq!(pause(MS, BUSY_WAIT, 90), Duration::ZERO);
        assert_eq!(pause(MS, Duration::from_millis(50), 90), Duration::ZERO);
        assert_eq!(pause(MS, Duration::MAX, 0), Duration::ZERO);
        // Just under the threshold it is busy.
        assert!(pause(MS, BUSY_WAIT - Duration::from_nanos(1), 90) > Duration::ZERO);
    }

    #[test]
    fn a_full_wake_up_never_pauses() {
        assert_eq!(pause(MS, BUSY, FULL), Duration::ZERO);
        assert_eq!(pause(MS, BUSY, 10 * FULL), Duration::ZERO);
        assert_eq!(pause(MS, Duration::ZERO, FULL), Duration::ZERO);
    }

    #[test]
    fn a_trickle_pauses_in_proportion_to_how_empty() {
        assert_eq!(pause(MS, BUSY, 0), MS);
        assert_eq!(pause(MS, BUSY, FULL / 2), MS / 2);
        assert_eq!(pause(MS, BUSY, FULL / 4), MS * 3 / 4);
        assert_eq!(pause(MS, BUSY, FULL - 1), Duration::from_nanos(30));
        // One small frame: nearly the whole maximum.
        let one = pause(MS, BUSY, 90);
        assert!(one > Duration::from_micros(997) && one < MS, "{one:?}");
        // Scales with the maximum.
        assert_eq!(pause(MS * 4, BUSY, FULL / 2), MS * 2);
    }

    #[test]
    fn never_above_the_maximum_and_shorter_as_the_take_grows() {
        let mut last = Duration::MAX;
        for took in (0..=FULL + 1024).step_by(512) {
            let p = pause(MS, BUSY, took);
            assert!(p <= MS, "{took}: {p:?}");
            assert!(p < last || p.is_zero(), "{took}: {p:?} after {last:?}");
            last = p;
        }
        // A huge maximum does not overflow.
        assert_eq!(
            pause(Duration::MAX, BUSY, 0),
            Duration::from_nanos(u64::MAX)
        );
    }

    /// The loop the reader runs in a backlog: the daemon writes `rate` bytes per µs while
    /// the reader pauses and while it works (`work` µs per wake-up); the socket holds `room`
    /// bytes and the daemon waits while it is full. The policy must settle below a full
    /// socket, so the daemon never waits, and still take many frames per wake-up.
    #[test]
    fn a_backlog_settles_below_a_full_socket() {
        let room = 20 * 1024;
        for rate in [12.0, 16.0, 20.0, 25.0] {
            let work = 150.0;
            let mut took = 0usize;
            let mut waited = Duration::MAX;
            let mut takes = Vec::new();
            for _ in 0..50 {
                let p = pause(MS, waited, took).as_secs_f64() * 1e6;
                let piled = (rate * (p + work)) as usize;
                takes.push(piled);
                took = piled.min(room);
                waited = Duration::ZERO;
            }
            let settled = &takes[30..];
            let (lo, hi) = (settled.iter().min(), settled.iter().max());
            let (lo, hi) = (*lo.unwrap(), *hi.unwrap());
            assert!(hi < room, "rate {rate}: the socket filled ({hi} bytes)");
            assert!(lo > 4 * 1024, "rate {rate}: only {lo} bytes per wake-up");
        }
    }
}
