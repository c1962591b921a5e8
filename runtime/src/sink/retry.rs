//! Retrying what the sink could not do: with backoff, counted, and logged once per kind of
//! error until the sink works again (a full disk must not write a log line per retry).

use std::io;
use std::sync::Arc;
use std::time::Duration;

use crate::metrics::Metrics;

/// The first wait after a failure; each failure in a row doubles it, up to [`MAX_WAIT`].
const FIRST_WAIT: Duration = Duration::from_millis(50);
const MAX_WAIT: Duration = Duration::from_secs(5);

/// The sink's retry policy and what it has already said.
#[derive(Debug)]
pub struct Retry {
    metrics: Arc<Metrics>,
    /// Kinds of error logged since the sink last worked.
    logged: Vec<io::ErrorKind>,
    /// Retries since the sink last worked.
    retries: u64,
}

impl Retry {
    /// A policy that counts into `metrics`.
    pub fn new(metrics: Arc<Metrics>) -> Retry {
        Retry {
            metrics,
            logged: Vec::new(),
            retries: 0,
        }
    }

    /// Repeats `op` until it succeeds: the sink never drops what it was given. While it
    /// fails, the queue fills and the readers wait (or, when cancelled, hand their lines back).
    pub fn run(&mut self, what: &str, mut op: impl FnMut() -> io::Result<()>) {
        let mut wait = FIRST_WAIT;
        loop {
            match op() {
                Ok(()) => {
                    if self.retries > 0 {
                        self.metrics.sink_works();
                        tracing::info!(retries = self.retries, "the sink works again");
                        self.logged.clear();
                        self.retries = 0;
                    }
                    return;
                }
                Err(e) => {
                    let kind = kind_label(e.kind());
                    self.metrics.sink_error(&kind);
                    if !self.logged.contains(&e.kind()) {
                        self.logged.push(e.kind());
                        tracing::error!(error = %e, kind = %kind, "the sink cannot {what}; retrying with backoff (logged once per kind until it works again)");
                    }
                    self.metrics.sink_retry();
                    self.retries += 1;
                    std::thread::sleep(wait);
                    wait = (wait * 2).min(MAX_WAIT);
                }
            }
        }
    }
}

/// The metrics label of an error kind: `StorageFull` becomes `storage_full`.
pub fn kind_label(kind: io::ErrorKind) -> String {
    let name = format!("{kind:?}");
    let mut out = String::with_capacity(name.len() + 4);
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else if c.is_ascii_alphanumeric() {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_snake_case() {
        assert_eq!(kind_label(io::ErrorKind::StorageFull), "storage_full");
        assert_eq!(kind_label(io::ErrorKind::BrokenPipe), "broken_pipe");
        assert_eq!(kind_label(io::ErrorKind::Other), "other");
    }

    #[test]
    fn retries_until_it_works_counting_each_failure() {
        let metrics = Arc::new(Metrics::default());
        let mut retry = Retry::new(metrics.clone());
        let mut left = 3;
        retry.run("test", || {
            if left == 0 {
                return Ok(());
            }
            left -= 1;
            Err(if left == 1 {
                io::ErrorKind::BrokenPipe.into()
            } else {
                io::ErrorKind::StorageFull.into()
            })
        });
        assert_eq!(metrics.sink_retries(), 3);
        assert_eq!(metrics.sink_errors("storage_full"), 2);
        assert_eq!(metrics.sink_errors("broken_pipe"), 1);
        assert!(retry.logged.is_empty(), "forgotten once the sink works");
    }
}
