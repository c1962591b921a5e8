//! The capturer's metrics, kept in a prometheus-client registry and encoded by it (OpenMetrics
//! text), and what the health endpoints judge. [`server`] serves them over HTTP.

mod process;
pub mod server;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use capturer_core::{Cursor, Phase, Stream, Timestamp};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry as Prometheus;

use crate::container::Registry;

/// One label: its name and value.
type Label = [(&'static str, String); 1];

/// The sink counts as refusing lines once its operations have failed without a break for this
/// long: `/readyz` then answers 503. Shorter failures are retried away (the backoff's longest
/// wait is 5 s).
pub const SINK_FAILING_BOUND: Duration = Duration::from_secs(30);

/// The upper bounds of the capture lag histogram's buckets, in seconds.
const LAG_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];

/// The process-wide metrics. Counters on hot paths are prometheus-client handles created once
/// (an atomic add each); the gauges that describe the registry of containers are set at each
/// scrape.
#[derive(Debug)]
pub struct Metrics {
    prometheus: Prometheus,
    lines: [Counter; 3],
    lines_total: AtomicU64,
    bytes: Counter,
    duplicates: Counter,
    stream_errors: Counter,
    rotations: Counter,
    queue_depth: Gauge,
    docker_up: Gauge,
    missed_containers: Counter,
    sink_retries: Counter,
    sink_errors: Family<Label, Counter>,
    sink_rejected: Family<Label, Counter>,
    tasks_alive: Gauge,
    lifecycle_tasks: Family<Label, Gauge>,
    containers: Family<Label, Gauge>,
    checkpoint_age: Gauge<f64, AtomicU64>,
    capture_lag: Histogram,
    /// Since when the daemon has not answered (`None`: it answers).
    docker_down_since: Mutex<Option<Instant>>,
    /// Since when the sink's operations have failed without a success in between.
    sink_failing_since: Mutex<Option<Instant>>,
    /// Per container the sink holds: when its cursor was last persisted, or found already
    /// persisted, at a checkpoint (or when its first batch came, before its first checkpoint).
    checkpointed: Mutex<HashMap<Arc<str>, Instant>>,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

impl Metrics {
    /// Every family registered, with the samples that are always present created at zero.
    pub fn new() -> Metrics {
        // Help texts have no final period: the encoder adds one.
        let mut p = Prometheus::default();
        let lines_family = Family::<Label, Counter>::default();
        let lines = Stream::ALL.map(|s| {
            lines_family
                .get_or_create(&[("stream", s.to_string())])
                .clone()
        });
        let m = Metrics {
            lines,
            lines_total: AtomicU64::new(0),
            bytes: Counter::default(),
            duplicates: Counter::default(),
            stream_errors: Counter::default(),
            rotations: Counter::default(),
            queue_depth: Gauge::default(),
            docker_up: Gauge::default(),
            missed_containers: Counter::default(),
            sink_retries: Counter::default(),
            sink_errors: Family::default(),
            sink_rejected: Family::default(),
            tasks_alive: Gauge::default(),
            lifecycle_tasks: Family::default(),
            containers: Family::default(),
            checkpoint_age: Gauge::default(),
            capture_lag: Histogram::new(LAG_BUCKETS),
            docker_down_since: Mutex::new(Some(Instant::now())),
            sink_failing_since: Mutex::new(None),
            checkpointed: Mutex::new(HashMap::new()),
            prometheus: Prometheus::default(),
        };
        p.register(
            "log_capturer_build",
            "The capturer's version and git commit",
            Info::new(vec![
                ("version", env!("CARGO_PKG_VERSION")),
                // Exported by the build script; absent when built without git.
                (
                    "commit",
                    option_env!("LOG_CAPTURER_COMMIT").unwrap_or("unknown"),
                ),
            ]),
        );
        p.register(
            "log_capturer_tasks_alive",
            "Tokio tasks alive",
            m.tasks_alive.clone(),
        );
        p.register(
            "log_capturer_lifecycle_tasks",
            "Tasks alive per lifecycle scope",
            m.lifecycle_tasks.clone(),
        );
        for l in ["reader", "heartbeat"] {
            let _ = m
                .lifecycle_tasks
                .get_or_create(&[("lifecycle", l.to_owned())]);
        }
        p.register(
            "log_capturer_containers",
            "Captured containers per state",
            m.containers.clone(),
        );
        for phase in Phase::ALL {
            let _ = m
                .containers
                .get_or_create(&[("state", phase.as_str().to_owned())]);
        }
        p.register(
            "log_capturer_stream_rotations",
            "Log streams rotated",
            m.rotations.clone(),
        );
        p.register(
            "log_capturer_lines",
            "Lines delivered to the sink",
            lines_family,
        );
        p.register(
            "log_capturer_bytes",
            "Bytes written by the sink",
            m.bytes.clone(),
        );
        p.register(
            "log_capturer_duplicates_dropped",
            "Replayed messages dropped by the cursor",
            m.duplicates.clone(),
        );
        p.register(
            "log_capturer_stream_errors",
            "Log stream failures and bad frames",
            m.stream_errors.clone(),
        );
        p.register(
            "log_capturer_missed_containers",
            "Containers removed while the capturer was down before all their lines were read",
            m.missed_containers.clone(),
        );
        p.register(
            "log_capturer_sink_queue_depth",
            "Batches waiting for the sink",
            m.queue_depth.clone(),
        );
        p.register(
            "log_capturer_sink_retries",
            "Sink operations retried after a failure (with backoff)",
            m.sink_retries.clone(),
        );
        p.register(
            "log_capturer_sink_errors",
            "Sink failures per kind of error (storage_full, broken_pipe, ...)",
            m.sink_errors.clone(),
        );
        p.register(
            "log_capturer_sink_rejected_lines",
            "Lines the server refused for good (Loki: a 4xx other than 429), skipped, per reason",
            m.sink_rejected.clone(),
        );
        p.register(
            "log_capturer_docker_up",
            "1 while the Docker daemon answers (its events stream is open), else 0",
            m.docker_up.clone(),
        );
        p.register(
            "log_capturer_checkpoint_age_seconds",
            "Seconds since the cursor of the container checkpointed longest ago was persisted (or found current) by the sink",
            m.checkpoint_age.clone(),
        );
        p.register(
            "log_capturer_capture_lag_seconds",
            "Time from a line's daemon timestamp to its batch's delivery to the sink (the last line of each batch)",
            m.capture_lag.clone(),
        );
        p.register_collector(Box::new(process::Process));
        Metrics { prometheus: p, ..m }
    }

    /// Lines delivered to the sink, per stream.
    pub fn add_lines(&self, stream: Stream, n: u64) {
        self.lines[stream.index()].inc_by(n);
        self.lines_total.fetch_add(n, Relaxed);
    }
    /// Bytes written by the sink.
    pub fn add_bytes(&self, n: u64) {
        self.bytes.inc_by(n);
    }
    /// Replayed messages the cursor dropped.
    pub fn add_duplicates(&self, n: u64) {
        self.duplicates.inc_by(n);
    }
    /// A stream failed or a frame was bad.
    pub fn stream_error(&self) {
        self.stream_errors.inc();
    }
    /// A stream was rotated (on schedule or as stalled).
    pub fn rotation(&self) {
        self.rotations.inc();
    }
    /// Batches waiting for the sink.
    pub fn set_queue_depth(&self, n: usize) {
        self.queue_depth.set(i64::try_from(n).unwrap_or(i64::MAX));
    }
    /// A container started and was removed while the capturer was down: its lines are gone.
    pub fn missed_container(&self) {
        self.missed_containers.inc();
    }
    /// Whether the daemon answered last time we asked.
    pub fn set_docker_up(&self, up: bool) {
        self.docker_up.set(i64::from(up));
        let mut since = lock(&self.docker_down_since);
        match (up, *since) {
            (true, _) => *since = None,
            (false, None) => *since = Some(Instant::now()),
            (false, Some(_)) => {}
        }
    }
    /// The sink retried an operation that failed.
    pub fn sink_retry(&self) {
        self.sink_retries.inc();
    }
    /// The sink failed with an error of `kind`; it counts as failing until [`Metrics::sink_works`].
    pub fn sink_error(&self, kind: &str) {
        self.sink_errors
            .get_or_create(&[("kind", kind.to_owned())])
            .inc();
        lock(&self.sink_failing_since).get_or_insert_with(Instant::now);
    }
    /// An operation of the sink succeeded after failures.
    pub fn sink_works(&self) {
        *lock(&self.sink_failing_since) = None;
    }
    /// A server refused `n` lines for good (a 4xx other than 429 from Loki), for `reason`:
    /// they are skipped, not retried.
    pub fn sink_rejected(&self, reason: &str, n: u64) {
        self.sink_rejected
            .get_or_create(&[("reason", reason.to_owned())])
            .inc_by(n);
    }
    /// Retries so far.
    #[cfg(test)]
    pub fn sink_retries(&self) -> u64 {
        self.sink_retries.get()
    }
    /// Errors of `kind` so far.
    #[cfg(test)]
    pub fn sink_errors(&self, kind: &str) -> u64 {
        self.sink_errors
            .get(&[("kind", kind.to_owned())])
            .map_or(0, |c| c.get())
    }
    /// Total lines delivered.
    pub fn lines_total(&self) -> u64 {
        self.lines_total.load(Relaxed)
    }

    /// The sink took a batch of container `id` whose last line is covered by `cursor`: its
    /// lag, and the start of its checkpoint age if it is the container's first.
    pub fn delivered(&self, id: &Arc<str>, cursor: &Cursor, now: Timestamp) {
        let last = Stream::ALL
            .iter()
            .map(|s| cursor.position(*s).ts)
            .max()
            .unwrap_or(now);
        self.capture_lag
            .observe(now.0.saturating_sub(last.0) as f64 / 1e9);
        lock(&self.checkpointed)
            .entry(id.clone())
            .or_insert_with(Instant::now);
    }
    /// A checkpoint persisted (or found persisted) the cursor of every container in `ids`.
    pub fn checkpointed<'a>(&self, ids: impl Iterator<Item = &'a Arc<str>>) {
        let now = Instant::now();
        let mut at = lock(&self.checkpointed);
        for id in ids {
            at.insert(id.clone(), now);
        }
    }
    /// The sink forgot container `id` (it is gone): it has no checkpoint age any more.
    pub fn forgotten(&self, id: &str) {
        lock(&self.checkpointed).remove(id);
    }

    /// The OpenMetrics text of every family, with the gauges of `registry` (containers per
    /// state, tasks) and the checkpoint age as of now.
    pub fn encode(&self, registry: &Registry) -> String {
        let mut phases = [0i64; 4];
        let (mut readers, mut heartbeats) = (0usize, 0usize);
        for shared in lock(registry).values() {
            phases[shared.machine().phase() as usize] += 1;
            readers += shared.live_readers();
            heartbeats += shared.live_heartbeats();
        }
        for phase in Phase::ALL {
            self.containers
                .get_or_create(&[("state", phase.as_str().to_owned())])
                .set(phases[phase as usize]);
        }
        for (l, n) in [("reader", readers), ("heartbeat", heartbeats)] {
            self.lifecycle_tasks
                .get_or_create(&[("lifecycle", l.to_owned())])
                .set(n as i64);
        }
        let alive =
            tokio::runtime::Handle::try_current().map_or(0, |h| h.metrics().num_alive_tasks());
        self.tasks_alive.set(alive as i64);
        let oldest = lock(&self.checkpointed).values().min().copied();
        self.checkpoint_age
            .set(oldest.map_or(0.0, |t| t.elapsed().as_secs_f64()));
        let mut text = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut text, &self.prometheus) {
            tracing::error!(error = %e, "cannot encode the metrics");
        }
        text
    }

    /// Why the capturer is not ready, if it is not: the daemon does not answer, or the sink
    /// has failed without a break for longer than [`SINK_FAILING_BOUND`].
    pub fn not_ready(&self) -> Option<String> {
        if let Some(t) = *lock(&self.docker_down_since) {
            return Some(format!(
                "the Docker daemon has not answered for {:.1}s",
                t.elapsed().as_secs_f64()
            ));
        }
        match *lock(&self.sink_failing_since) {
            Some(t) if t.elapsed() > SINK_FAILING_BOUND => Some(format!(
                "the sink has failed for {:.1}s (longer than {}s)",
                t.elapsed().as_secs_f64(),
                SINK_FAILING_BOUND.as_secs()
            )),
            _ => None,
        }
    }
}

/// `m` locked; a panic while holding it leaves plain data, used on.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_family_is_served_under_its_contract_name() {
        let m = Metrics::new();
        m.add_lines(Stream::Stderr, 3);
        m.sink_error("storage_full");
        m.sink_rejected("line_too_long", 2);
        let text = m.encode(&Registry::default());
        for sample in [
            "log_capturer_build_info{version=\"",
            "log_capturer_tasks_alive ",
            "log_capturer_lifecycle_tasks{lifecycle=\"reader\"} 0",
            "log_capturer_containers{state=\"streaming\"} 0",
            "log_capturer_stream_rotations_total 0",
            "log_capturer_lines_total{stream=\"stderr\"} 3",
            "log_capturer_lines_total{stream=\"stdout\"} 0",
            "log_capturer_bytes_total 0",
            "log_capturer_duplicates_dropped_total 0",
            "log_capturer_stream_errors_total 0",
            "log_capturer_missed_containers_total 0",
            "log_capturer_sink_queue_depth 0",
            "log_capturer_sink_retries_total 0",
            "log_capturer_sink_errors_total{kind=\"storage_full\"} 1",
            "log_capturer_sink_rejected_lines_total{reason=\"line_too_long\"} 2",
            "log_capturer_docker_up 0",
            "log_capturer_checkpoint_age_seconds 0",
            "log_capturer_capture_lag_seconds_count 0",
            "process_open_fds ",
            "process_resident_memory_bytes ",
            "process_cpu_seconds_total ",
        ] {
            assert!(text.contains(sample), "no {sample:?} in:\n{text}");
        }
        assert_eq!(m.lines_total(), 3);
    }

    #[test]
    fn ready_only_while_the_daemon_answers_and_the_sink_has_not_failed_for_long() {
        let m = Metrics::new();
        assert!(m.not_ready().is_some(), "not before the daemon answered");
        m.set_docker_up(true);
        assert_eq!(m.not_ready(), None);
        m.sink_error("broken_pipe");
        assert_eq!(m.not_ready(), None, "a short failure is retried away");
        *lock(&m.sink_failing_since) = Instant::now().checked_sub(SINK_FAILING_BOUND * 2);
        let why = m.not_ready().unwrap_or_default();
        assert!(why.contains("sink"), "{why}");
        m.sink_works();
        assert_eq!(m.not_ready(), None);
        m.set_docker_up(false);
        let why = m.not_ready().unwrap_or_default();
        assert!(why.contains("Docker"), "{why}");
    }

    #[test]
    fn the_checkpoint_age_is_the_oldest_containers_and_leaves_with_it() {
        let m = Metrics::new();
        let (a, b): (Arc<str>, Arc<str>) = (Arc::from("a"), Arc::from("b"));
        let mut cursor = Cursor::new(Timestamp(0), capturer_core::StreamSet::MULTIPLEXED);
        cursor.accept(Stream::Stdout, Timestamp(1_000_000_000));
        m.delivered(&a, &cursor, Timestamp(3_000_000_000));
        m.delivered(&b, &cursor, Timestamp(4_000_000_000));
        let text = m.encode(&Registry::default());
        assert!(
            text.contains("log_capturer_capture_lag_seconds_count 2")
                && text.contains("log_capturer_capture_lag_seconds_bucket{le=\"2.5\"} 1")
                && text.contains("log_capturer_capture_lag_seconds_bucket{le=\"5.0\"} 2"),
            "lags of 2 s and 3 s:\n{text}"
        );
        let long_ago = Instant::now().checked_sub(Duration::from_secs(100));
        if let Some(t) = long_ago {
            lock(&m.checkpointed).insert(a.clone(), t);
        }
        m.checkpointed([&b].into_iter());
        let age = |m: &Metrics| {
            m.encode(&Registry::default())
                .lines()
                .find_map(|l| l.strip_prefix("log_capturer_checkpoint_age_seconds "))
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(f64::NAN)
        };
        assert!(age(&m) >= 100.0, "a's: {}", age(&m));
        m.forgotten("a");
        assert!(age(&m) < 100.0, "b's: {}", age(&m));
        m.checkpointed([&a, &b].into_iter());
        assert!(age(&m) < 1.0);
    }
}
