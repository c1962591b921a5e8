//! Counters, and the HTTP endpoint that serves them: `/metrics` (Prometheus text),
//! `/healthz`, `/debug/tasks` (JSON).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use capturer_core::{Phase, Stream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use crate::container::Registry;

/// The process-wide counters.
#[derive(Debug, Default)]
pub struct Metrics {
    lines: [AtomicU64; 3],
    bytes: AtomicU64,
    duplicates: AtomicU64,
    stream_errors: AtomicU64,
    rotations: AtomicU64,
    queue_depth: AtomicUsize,
    docker_up: AtomicBool,
    missed_containers: AtomicU64,
    sink_retries: AtomicU64,
    /// Sink errors per kind (`storage_full`, `broken_pipe`, ...): few kinds, rarely touched.
    sink_errors: std::sync::Mutex<std::collections::BTreeMap<String, u64>>,
    /// Lines a server refused for good, per reason (`line_too_long`, ...): rarely touched.
    sink_rejected: std::sync::Mutex<std::collections::BTreeMap<String, u64>>,
}

impl Metrics {
    /// Lines delivered to the sink, per stream.
    pub fn add_lines(&self, stream: Stream, n: u64) {
        self.lines[stream.index()].fetch_add(n, Relaxed);
    }
    /// Bytes written by the sink.
    pub fn add_bytes(&self, n: u64) {
        self.bytes.fetch_add(n, Relaxed);
    }
    /// Replayed messages the cursor dropped.
    pub fn add_duplicates(&self, n: u64) {
        self.duplicates.fetch_add(n, Relaxed);
    }
    /// A stream failed or a frame was bad.
    pub fn stream_error(&self) {
        self.stream_errors.fetch_add(1, Relaxed);
    }
    /// A stream was rotated (on schedule or as stalled).
    pub fn rotation(&self) {
        self.rotations.fetch_add(1, Relaxed);
    }
    /// Batches waiting for the sink.
    pub fn set_queue_depth(&self, n: usize) {
        self.queue_depth.store(n, Relaxed);
    }
    /// A container started and was removed while the capturer was down: its lines are gone.
    pub fn missed_container(&self) {
        self.missed_containers.fetch_add(1, Relaxed);
    }
    /// Whether the daemon answered last time we asked.
    pub fn set_docker_up(&self, up: bool) {
        self.docker_up.store(up, Relaxed);
    }
    /// The sink retried an operation that failed.
    pub fn sink_retry(&self) {
        self.sink_retries.fetch_add(1, Relaxed);
    }
    /// The sink failed with an error of `kind`.
    pub fn sink_error(&self, kind: &str) {
        let mut errors = self.sink_errors.lock().unwrap_or_else(|e| e.into_inner());
        *errors.entry(kind.to_owned()).or_default() += 1;
    }
    /// A server refused `n` lines for good (a 4xx other than 429 from Loki), for `reason`:
    /// they are skipped, not retried.
    pub fn sink_rejected(&self, reason: &str, n: u64) {
        let mut rejected = self.sink_rejected.lock().unwrap_or_else(|e| e.into_inner());
        *rejected.entry(reason.to_owned()).or_default() += n;
    }
    /// Retries so far.
    pub fn sink_retries(&self) -> u64 {
        self.sink_retries.load(Relaxed)
    }
    /// Errors of `kind` so far.
    #[cfg(test)]
    pub fn sink_errors(&self, kind: &str) -> u64 {
        let errors = self.sink_errors.lock().unwrap_or_else(|e| e.into_inner());
        errors.get(kind).copied().unwrap_or(0)
    }
    /// Total lines delivered.
    pub fn lines_total(&self) -> u64 {
        self.lines.iter().map(|l| l.load(Relaxed)).sum()
    }
}

/// Serves the endpoints on `listener` until `stop` is cancelled. One request at a time, each
/// bounded in time, so a slow client cannot hold a task.
pub async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    registry: Arc<Registry>,
    stop: CancellationToken,
) {
    loop {
        let conn = tokio::select! {
            _ = stop.cancelled() => return,
            c = listener.accept() => c,
        };
        let Ok((stream, _)) = conn else { continue };
        let answer = respond(stream, &metrics, &registry);
        if tokio::time::timeout(Duration::from_secs(5), answer)
            .await
            .is_err()
        {
            tracing::debug!("metrics client too slow; dropped");
        }
    }
}

async fn respond(
    mut stream: TcpStream,
    metrics: &Metrics,
    registry: &Registry,
) -> std::io::Result<()> {
    let mut buf = vec![0u8; 4096];
    let mut n = 0;
    while n < buf.len() && !buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
        let r = stream.read(&mut buf[n..]).await?;
        if r == 0 {
            break;
        }
        n += r;
    }
    let head = String::from_utf8_lossy(&buf[..n]);
    let path = head.split_whitespace().nth(1).unwrap_or("/");
    let (status, kind, body) = match path {
        "/metrics" => (
            "200 OK",
            "text/plain; version=0.0.4",
            prometheus(metrics, registry),
        ),
        "/healthz" if metrics.docker_up.load(Relaxed) => {
            ("200 OK", "text/plain", "ok\n".to_owned())
        }
        "/healthz" => (
            "503 Service Unavailable",
            "text/plain",
            "docker daemon unreachable\n".to_owned(),
        ),
        "/debug/tasks" => ("200 OK", "application/json", debug_tasks(registry)),
        _ => ("404 Not Found", "text/plain", "not found\n".to_owned()),
    };
    let reply = format!(
        "HTTP/1.1 {status}\r\ncontent-type: {kind}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(reply.as_bytes()).await?;
    stream.shutdown().await
}

fn prometheus(m: &Metrics, registry: &Registry) -> String {
    let mut phases = [0u64; 4];
    let (mut readers, mut heartbeats) = (0usize, 0usize);
    for shared in registry.lock().unwrap_or_else(|e| e.into_inner()).values() {
        phases[shared.machine().phase() as usize] += 1;
        readers += shared.live_readers();
        heartbeats += shared.live_heartbeats();
    }
    let alive = tokio::runtime::Handle::try_current().map_or(0, |h| h.metrics().num_alive_tasks());
    let mut s = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, samples: &[(&str, u64)]| {
        let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (labels, v) in samples {
            let _ = writeln!(s, "{name}{labels} {v}");
        }
    };
    metric(
        "log_capturer_tasks_alive",
        "gauge",
        "Tokio tasks alive.",
        &[("", alive as u64)],
    );
    metric(
        "log_capturer_lifecycle_tasks",
        "gauge",
        "Tasks alive per lifecycle scope.",
        &[
            ("{lifecycle=\"reader\"}", readers as u64),
            ("{lifecycle=\"heartbeat\"}", heartbeats as u64),
        ],
    );
    let states: Vec<(String, u64)> = Phase::ALL
        .iter()
        .map(|p| (format!("{{state=\"{p}\"}}"), phases[*p as usize]))
        .collect();
    let states: Vec<(&str, u64)> = states.iter().map(|(l, v)| (l.as_str(), *v)).collect();
    metric(
        "log_capturer_containers",
        "gauge",
        "Captured containers per state.",
        &states,
    );
    metric(
        "log_capturer_stream_rotations_total",
        "counter",
        "Log streams rotated.",
        &[("", m.rotations.load(Relaxed))],
    );
    let lines: Vec<(String, u64)> = Stream::ALL
        .iter()
        .map(|s| {
            (
                format!("{{stream=\"{s}\"}}"),
                m.lines[s.index()].load(Relaxed),
            )
        })
        .collect();
    let lines: Vec<(&str, u64)> = lines.iter().map(|(l, v)| (l.as_str(), *v)).collect();
    metric(
        "log_capturer_lines_total",
        "counter",
        "Lines delivered to the sink.",
        &lines,
    );
    metric(
        "log_capturer_bytes_total",
        "counter",
        "Bytes written by the sink.",
        &[("", m.bytes.load(Relaxed))],
    );
    metric(
        "log_capturer_duplicates_dropped_total",
        "counter",
        "Replayed messages dropped by the cursor.",
        &[("", m.duplicates.load(Relaxed))],
    );
    metric(
        "log_capturer_stream_errors_total",
        "counter",
        "Log stream failures and bad frames.",
        &[("", m.stream_errors.load(Relaxed))],
    );
    metric(
        "log_capturer_missed_containers_total",
        "counter",
        "Containers removed while the capturer was down before all their lines were read.",
        &[("", m.missed_containers.load(Relaxed))],
    );
    metric(
        "log_capturer_sink_queue_depth",
        "gauge",
        "Batches waiting for the sink.",
        &[("", m.queue_depth.load(Relaxed) as u64)],
    );
    metric(
        "log_capturer_sink_retries_total",
        "counter",
        "Sink operations retried after a failure (with backoff).",
        &[("", m.sink_retries())],
    );
    let errors: Vec<(String, u64)> = m
        .sink_errors
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .map(|(kind, n)| (format!("{{kind=\"{kind}\"}}"), *n))
        .collect();
    let errors: Vec<(&str, u64)> = errors.iter().map(|(l, v)| (l.as_str(), *v)).collect();
    metric(
        "log_capturer_sink_errors_total",
        "counter",
        "Sink failures per kind of error (storage_full, broken_pipe, ...).",
        &errors,
    );
    let rejected: Vec<(String, u64)> = m
        .sink_rejected
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .map(|(reason, n)| (format!("{{reason=\"{reason}\"}}"), *n))
        .collect();
    let rejected: Vec<(&str, u64)> = rejected.iter().map(|(l, v)| (l.as_str(), *v)).collect();
    metric(
        "log_capturer_sink_rejected_lines_total",
        "counter",
        "Lines the server refused for good (Loki: a 4xx other than 429), skipped, per reason.",
        &rejected,
    );
    s
}

fn debug_tasks(registry: &Registry) -> String {
    let containers: Vec<serde_json::Value> = registry
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .values()
        .map(|shared| {
            let m = shared.machine();
            let tasks = m.live_tasks();
            serde_json::json!({
                "id": &*shared.id,
                "name": shared.meta.name,
                "state": m.phase().as_str(),
                "generation": m.generation().0,
                "tasks": {
                    "reader": shared.live_readers(),
                    "heartbeat": shared.live_heartbeats(),
                },
                "machine_tasks": { "reader": tasks.readers, "heartbeat": tasks.heartbeats },
                "invariants": match m.check_invariants() {
                    Ok(()) => "ok".to_owned(),
                    Err(v) => v.to_string(),
                },
            })
        })
        .collect();
    serde_json::json!({ "containers": containers }).to_string()
}
