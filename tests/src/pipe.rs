//! A capturer blocked on a stdout pipe nobody reads: how the tests make its sink unable to
//! write.

use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use crate::capturer::Capturer;
use crate::exact::tail;

/// Bytes waiting in a pipe (`FIONREAD`).
///
/// # Panics
/// If the ioctl fails.
pub fn pending(pipe: &impl AsRawFd) -> usize {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int through the pointer, which points at `n`.
    let rc = unsafe { libc::ioctl(pipe.as_raw_fd(), libc::FIONREAD, &mut n) };
    assert_eq!(rc, 0, "FIONREAD on the stdout pipe");
    usize::try_from(n).unwrap_or(0)
}

/// Waits until the capturer's stdout `pipe` holds bytes and has not grown for a second (full:
/// the sink is blocked on it); returns the bytes it holds.
///
/// # Panics
/// If that does not happen within 20 s.
pub async fn wait_until_full(cap: &Capturer, pipe: &impl AsRawFd) -> usize {
    let deadline = Instant::now() + Duration::from_secs(20);
    let (mut held, mut since) = (0, Instant::now());
    while since.elapsed() < Duration::from_secs(1) || held == 0 {
        assert!(
            Instant::now() < deadline,
            "the stdout pipe never filled ({held} bytes):\n{}",
            tail(&cap.log_text(), 40)
        );
        let now = pending(pipe);
        if now != held {
            (held, since) = (now, Instant::now());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    held
}
