//! A sleep with the kernel's precision, for the reader's pauses.
//!
//! tokio's timer counts whole milliseconds: it rounds a deadline up to the next tick and the
//! poller's timeout up to the next millisecond, so `sleep(1ms)` lasts about 2 ms and any
//! shorter sleep about 1 ms (measured: 10 µs → 1.07 ms, 300 µs → 1.08 ms, 1 ms → 2.08 ms, at
//! the median). In a backlog the daemon fills a socket in about a millisecond, so the reader's
//! pauses (`crate::pace`) must be shorter than that, and precise: a `timerfd` on the poller
//! sleeps 300 µs in 318 µs.

use std::time::Duration;

/// Pauses a timer takes with tokio's timer before it makes a `timerfd`. A reopen's replay or a
/// short burst pauses a few times; a sustained stream hundreds of times a second. So only
/// readers in a sustained stream hold a descriptor for it: with one made at the first pause,
/// 55 readers rotated every 100 ms held 28 to 50 timerfds between them, a count that followed
/// the replays' length and read as fd growth in the soak.
const PRECISE_AFTER: u32 = 64;

/// One reader's timer: a `timerfd`, made once the reader has paused [`PRECISE_AFTER`] times
/// (idle and short-lived readers never hold one), or tokio's timer until then and where there
/// is none.
#[derive(Default)]
pub struct Timer {
    #[cfg(target_os = "linux")]
    fd: Option<tokio::io::unix::AsyncFd<std::os::fd::OwnedFd>>,
    #[cfg(target_os = "linux")]
    failed: bool,
    /// Sleeps taken so far, up to [`PRECISE_AFTER`].
    pauses: u32,
}

impl Timer {
    /// Sleeps `d`. Cancel-safe: a later sleep re-arms the timer, which clears what it held.
    pub async fn sleep(&mut self, d: Duration) {
        if self.pauses < PRECISE_AFTER {
            self.pauses += 1;
            tokio::time::sleep(d).await;
            return;
        }
        #[cfg(target_os = "linux")]
        if let Some(fd) = self.timerfd() {
            match precise(fd, d).await {
                Ok(()) => return,
                Err(e) => {
                    tracing::debug!(error = %e, "timerfd failed; tokio's timer from now on");
                    self.fd = None;
                    self.failed = true;
                }
            }
        }
        tokio::time::sleep(d).await;
    }

    #[cfg(target_os = "linux")]
    fn timerfd(&mut self) -> Option<&tokio::io::unix::AsyncFd<std::os::fd::OwnedFd>> {
        use rustix::time::{timerfd_create, TimerfdClockId, TimerfdFlags};
        if self.fd.is_none() && !self.failed {
            let flags = TimerfdFlags::NONBLOCK | TimerfdFlags::CLOEXEC;
            let made = timerfd_create(TimerfdClockId::Monotonic, flags)
                .map_err(std::io::Error::from)
                .and_then(|fd| {
                    let readable = tokio::io::Interest::READABLE;
                    // SAFETY: an `OwnedFd` owns its descriptor, which stays open and the same
                    // until the `AsyncFd` (which owns the `OwnedFd`) is dropped.
                    let registered =
                        unsafe { tokio::io::unix::AsyncFd::register_with_interest(fd, readable) };
                    registered.map_err(std::io::Error::from)
                });
            match made {
                Ok(fd) => self.fd = Some(fd),
                Err(e) => {
                    tracing::debug!(error = %e, "no timerfd; tokio's timer instead");
                    self.failed = true;
                }
            }
        }
        self.fd.as_ref()
    }
}

#[cfg(target_os = "linux")]
async fn precise(
    fd: &tokio::io::unix::AsyncFd<std::os::fd::OwnedFd>,
    d: Duration,
) -> std::io::Result<()> {
    use rustix::time::{timerfd_settime, Itimerspec, TimerfdTimerFlags, Timespec};
    // A zero it_value disarms the timer: at least a nanosecond.
    let d = d.max(Duration::from_nanos(1));
    let spec = Itimerspec {
        it_interval: Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        },
        it_value: Timespec {
            tv_sec: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
            tv_nsec: i64::from(d.subsec_nanos()),
        },
    };
    // Setting the time also clears an expiry a cancelled sleep left unread.
    timerfd_settime(fd.get_ref(), TimerfdTimerFlags::empty(), &spec)?;
    loop {
        let mut ready = fd.readable().await?;
        let mut expiries = [0u8; 8];
        match rustix::io::read(fd.get_ref(), &mut expiries) {
            Ok(_) => return Ok(()),
            Err(rustix::io::Errno::AGAIN) => ready.clear_ready(),
            Err(e) => return Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    /// A timer past its first pauses, so that its sleeps go to the timerfd.
    fn precise() -> Timer {
        Timer {
            pauses: PRECISE_AFTER,
            ..Timer::default()
        }
    }

    /// A sleep never ends early, however short. How precise it is, is a speed property:
    /// `bench drain` judges it (a backlog at the raw read's speed needs sub-millisecond pauses).
    #[tokio::test]
    async fn sleeps_at_least_as_long_as_asked() {
        let mut timer = precise();
        for micros in [1, 50, 200, 900] {
            let t = Instant::now();
            timer.sleep(Duration::from_micros(micros)).await;
            assert!(
                t.elapsed() >= Duration::from_micros(micros),
                "{micros} µs: {:?}",
                t.elapsed()
            );
        }
    }

    #[tokio::test]
    async fn a_cancelled_sleep_does_not_cut_the_next_short() {
        let mut timer = precise();
        // Armed for 1 ms, abandoned after 100 µs... and left to expire unread.
        let _ = tokio::time::timeout(Duration::from_micros(100), timer.sleep(MS)).await;
        std::thread::sleep(Duration::from_millis(3));
        let t = Instant::now();
        timer.sleep(Duration::from_millis(2)).await;
        assert!(t.elapsed() >= Duration::from_millis(2), "{:?}", t.elapsed());
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn a_descriptor_only_for_a_sustained_stream() {
        let mut timer = Timer::default();
        for _ in 0..PRECISE_AFTER {
            timer.sleep(Duration::from_micros(10)).await;
        }
        assert!(timer.fd.is_none(), "a few pauses made a timerfd");
        timer.sleep(Duration::from_micros(10)).await;
        assert!(
            timer.fd.is_some() || timer.failed,
            "no timerfd after {PRECISE_AFTER} pauses"
        );
    }

    const MS: Duration = Duration::from_millis(1);
}
