//! Watching the capturer's memory while a sink refuses and a writer floods the daemon.

use std::time::{Duration, Instant};

use tokio::task::JoinHandle;

use crate::capturer::Capturer;

/// The capturer's peak resident memory, sampled every 100 ms, starting from `peak`: until the
/// writer `done` has exited and 2 s more have passed, and at least `min` after `from`.
///
/// # Panics
/// If the capturer exits meanwhile.
pub async fn peak_rss_while_flooded<T>(
    cap: &Capturer,
    mut peak: u64,
    done: &JoinHandle<T>,
    from: Instant,
    min: Duration,
) -> u64 {
    let mut quiet_since = None;
    loop {
        peak = peak.max(cap.rss().expect("the capturer runs"));
        if done.is_finished() {
            let since = *quiet_since.get_or_insert_with(Instant::now);
            if since.elapsed() > Duration::from_secs(2) && from.elapsed() > min {
                return peak;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
