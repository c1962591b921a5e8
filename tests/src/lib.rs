//! Shared helpers of the end-to-end tests: the test bed's daemon and image.
//!
//! Every test that needs Docker calls [`docker`] first: without a daemon it skips with a
//! message, unless the environment variable `CI` is set, in which case it fails. The test bed
//! (`scripts/testbed.sh`, run by `scripts/test.sh`) starts the daemon and builds the image.

// Test tooling: a failed set-up step must fail the test loudly, so panicking is the point.
#![allow(clippy::expect_used, clippy::unwrap_used)]

pub mod audit;
pub mod capturer;
pub mod exact;
pub mod gated;
pub mod loki;
pub mod memory;
pub mod nats;
pub mod nats_auth;
pub mod pipe;
pub mod rng;
pub mod tls;

use std::collections::HashMap;

use bollard::container::LogOutput;
use bollard::models::{
    ContainerCreateBody, HostConfig, HostConfigLogConfig, RestartPolicy, RestartPolicyNameEnum,
};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, LogsOptionsBuilder, RemoveContainerOptionsBuilder,
    WaitContainerOptionsBuilder,
};
use bollard::Docker;
use futures_util::StreamExt;

/// The local test image: a static busybox, built by `scripts/testbed.sh` (nothing is pulled).
pub const IMAGE: &str = "log-capturer-testbed/busybox:latest";

/// The daemon to test against, or `None` (test skipped) when there is none and `CI` is unset.
///
/// # Panics
/// When no daemon answers and `CI` is set: in CI a missing daemon is a failure, never a skip.
pub async fn docker() -> Option<Docker> {
    let host =
        std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///var/run/docker.sock".into());
    let found = match host.strip_prefix("unix://") {
        Some(path) => Docker::connect_with_unix(path, 60, bollard::API_DEFAULT_VERSION),
        None => Docker::connect_with_http(&host, 60, bollard::API_DEFAULT_VERSION),
    };
    let answer = match found {
        Ok(d) => d.negotiate_version().await.map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    match answer {
        Ok(d) => Some(d),
        Err(e) if std::env::var_os("CI").is_some() => {
            panic!("CI is set and no Docker daemon answers at {host}: {e} (run scripts/testbed.sh)")
        }
        Err(e) => {
            eprintln!("SKIPPED: no Docker daemon at {host} ({e}); run scripts/testbed.sh, or set CI to fail instead");
            None
        }
    }
}

/// How to start a test container.
#[derive(Clone, Debug, Default)]
pub struct Spec {
    /// The shell script the container runs (`sh -c`).
    pub script: String,
    /// Labels, to select the container in the capturer.
    pub labels: HashMap<String, String>,
    /// Allocate a TTY.
    pub tty: bool,
    /// A name, if it matters.
    pub name: Option<String>,
    /// A logging driver other than the daemon's default.
    pub log_driver: Option<String>,
    /// Restart policy `always` (the daemon restarts it, also after the daemon itself restarts).
    pub restart_always: bool,
    /// Keep stdin open (never written): the shell's `read -t 0.1` then waits 100 ms without
    /// forking a `sleep`, which matters at hundreds of containers on two cores.
    pub open_stdin: bool,
    /// Bind mounts, `host:container[:ro]`.
    pub binds: Vec<String>,
    /// Options of the logging driver (`max-size`, `max-file`, ...); empty: the driver's defaults.
    pub log_opts: HashMap<String, String>,
    /// Remove the container once it exits (`docker run --rm`): its log vanishes with it.
    pub auto_remove: bool,
    /// Seconds a stop (also the daemon's own shutdown) waits before SIGKILL; `None`: 10.
    pub stop_timeout: Option<i64>,
}

/// Creates and starts a container from the test image, with no network; returns its id.
pub async fn start(docker: &Docker, spec: &Spec) -> Result<String, bollard::errors::Error> {
    let id = create(docker, spec).await?;
    docker.start_container(&id, None).await?;
    Ok(id)
}

/// Creates (without starting) a container from the test image, with no network.
pub async fn create(docker: &Docker, spec: &Spec) -> Result<String, bollard::errors::Error> {
    let body = ContainerCreateBody {
        image: Some(IMAGE.to_owned()),
        cmd: Some(vec!["sh".into(), "-c".into(), spec.script.clone()]),
        labels: Some(spec.labels.clone()),
        tty: Some(spec.tty),
        open_stdin: Some(spec.open_stdin),
        stop_timeout: spec.stop_timeout,
        host_config: Some(HostConfig {
            network_mode: Some("none".into()),
            binds: (!spec.binds.is_empty()).then(|| spec.binds.clone()),
            auto_remove: spec.auto_remove.then_some(true),
            log_config: (spec.log_driver.is_some() || !spec.log_opts.is_empty()).then(|| {
                HostConfigLogConfig {
                    typ: spec.log_driver.clone(),
                    config: (!spec.log_opts.is_empty()).then(|| spec.log_opts.clone()),
                }
            }),
            restart_policy: spec.restart_always.then_some(RestartPolicy {
                name: Some(RestartPolicyNameEnum::ALWAYS),
                maximum_retry_count: None,
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let mut options = CreateContainerOptionsBuilder::default();
    if let Some(name) = &spec.name {
        options = options.name(name);
    }
    Ok(docker
        .create_container(Some(options.build()), body)
        .await?
        .id)
}

/// Waits until the container is no longer running.
pub async fn wait_exit(docker: &Docker, id: &str) {
    let options = WaitContainerOptionsBuilder::default()
        .condition("not-running")
        .build();
    let mut wait = docker.wait_container(id, Some(options));
    while wait.next().await.is_some() {}
}

/// Removes the container, running or not; errors are ignored (it may be gone already).
pub async fn remove(docker: &Docker, id: &str) {
    let options = RemoveContainerOptionsBuilder::default().force(true).build();
    if let Err(e) = docker.remove_container(id, Some(options)).await {
        eprintln!("could not remove container {id}: {e}");
    }
}

/// One line as the daemon holds it: the test oracle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DaemonLine {
    /// `stdout`, `stderr` or `console`.
    pub stream: String,
    /// The RFC 3339 timestamp.
    pub ts: String,
    /// The line without its newline; parts of a split line (same stream, same timestamp, the
    /// earlier without newline) joined.
    pub message: String,
}

/// Everything the daemon has for a container, read once (no follow), lines re-joined by a
/// deliberately simple rule that shares no code with the capturer.
pub async fn daemon_lines(docker: &Docker, id: &str, tty: bool) -> Vec<DaemonLine> {
    try_daemon_lines(docker, id, tty, 0)
        .await
        .expect("read the daemon's logs")
}

/// Like [`daemon_lines`], only the lines stamped at or after `since` (whole seconds since the
/// epoch; 0: all), and an error instead of a panic (the daemon may be restarting).
pub async fn try_daemon_lines(
    docker: &Docker,
    id: &str,
    tty: bool,
    since: i32,
) -> Result<Vec<DaemonLine>, bollard::errors::Error> {
    let options = LogsOptionsBuilder::default()
        .stdout(true)
        .stderr(true)
        .timestamps(true)
        .since(since)
        .build();
    let mut raw = Vec::new();
    let mut logs = docker.logs(id, Some(options));
    while let Some(item) = logs.next().await {
        let (stream, bytes) = match item? {
            LogOutput::StdOut { message } => ("stdout", message),
            LogOutput::StdErr { message } => ("stderr", message),
            LogOutput::Console { message } => ("console", message),
            LogOutput::StdIn { .. } => continue,
        };
        raw.push((stream, bytes.to_vec()));
    }
    if tty {
        // One raw stream, which bollard cuts at newlines: a log entry without newline (a part
        // of a long line, a last line cut short) arrives glued to the next entry. Cut it again
        // before each of the daemon's fixed-width timestamps (messages here hold none).
        let all: Vec<u8> = raw.into_iter().flat_map(|(_, b)| b).collect();
        let starts: Vec<usize> = (0..all.len())
            .filter(|&i| is_timestamp(&all[i..]))
            .chain([all.len()])
            .collect();
        raw = starts
            .windows(2)
            .map(|w| ("console", all[w[0]..w[1]].to_vec()))
            .collect();
    }
    let mut out: Vec<DaemonLine> = Vec::new();
    let mut open: HashMap<&str, usize> = HashMap::new();
    for (stream, bytes) in raw {
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let (ts, rest) = text.split_once(' ').unwrap_or((&text, ""));
        let complete = rest.ends_with('\n');
        let mut body = rest.strip_suffix('\n').unwrap_or(rest).to_owned();
        if tty {
            body = body.strip_suffix('\r').unwrap_or(&body).to_owned();
        }
        let at = match open.get(stream).copied() {
            Some(i) if out[i].ts == ts => {
                out[i].message.push_str(&body);
                i
            }
            _ => {
                out.push(DaemonLine {
                    stream: stream.to_owned(),
                    ts: ts.to_owned(),
                    message: body,
                });
                out.len() - 1
            }
        };
        // The line stays open at its own index: the other stream's lines may come between
        // its parts (the daemon copies stdout and stderr concurrently).
        if complete {
            open.remove(stream);
        } else {
            open.insert(stream, at);
        }
    }
    Ok(out)
}

/// Whether `bytes` begin with a timestamp as the daemon writes them before a log entry,
/// `2006-01-02T15:04:05.000000000Z ` (always nine fraction digits).
fn is_timestamp(bytes: &[u8]) -> bool {
    const SHAPE: &[u8; 31] = b"dddd-dd-ddTdd:dd:dd.dddddddddZ ";
    bytes.len() >= SHAPE.len()
        && SHAPE.iter().zip(bytes).all(|(&s, &b)| {
            if s == b'd' {
                b.is_ascii_digit()
            } else {
                s == b
            }
        })
}

/// Restarts the test bed's own dockerd (SIGTERM, wait, `scripts/testbed.sh`). Returns false
/// if this daemon was not started by the test bed (no pid file), so it cannot be restarted.
pub fn restart_testbed_daemon() -> bool {
    let pid_file = "/tmp/log-capturer-testbed/dockerd.pid";
    let Some(pid) = std::fs::read_to_string(pid_file)
        .ok()
        .and_then(|t| t.trim().parse::<i32>().ok())
    else {
        return false;
    };
    // SAFETY: kill(2) with signal 0 only checks that the process exists.
    if unsafe { libc::kill(pid, 0) } != 0 {
        return false;
    }
    // SAFETY: SIGTERM to the daemon the test bed started (its pid file says so).
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    // SAFETY: as above, an existence check.
    while unsafe { libc::kill(pid, 0) } == 0 {
        assert!(std::time::Instant::now() < deadline, "dockerd did not stop");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/testbed.sh");
    let status = std::process::Command::new(script)
        .status()
        .expect("run the test bed");
    assert!(
        status.success(),
        "the test bed could not start dockerd again"
    );
    true
}
