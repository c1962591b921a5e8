//! The HTTP endpoints of a running capturer: `/metrics` (every family, the build, the process,
//! the daemon, the checkpoint age, the capture lag), `/livez` and its old name `/healthz`,
//! `/readyz` (also while the daemon cannot be reached, through a socket the test cuts), and
//! `/debug/tasks` (tasks and the core's invariant check per container).

// Test tooling: a failed set-up step must fail the test loudly.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use capturer_tests::capturer::{exclusive, Capturer};
use capturer_tests::exact::{label, spec, wait_until};
use capturer_tests::{docker, remove, start};

/// One GET: the status code, the content type and the body.
fn get(addr: SocketAddr, path: &str) -> (u16, String, String) {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).expect("read the answer");
    let (head, body) = text.split_once("\r\n\r\n").expect("a head and a body");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status code");
    let kind = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-type")
                .then(|| v.trim().to_owned())
        })
        .unwrap_or_default();
    (status, kind, body.to_owned())
}

/// The value of the sample `name` (with its labels) in a metrics text.
fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

#[tokio::test]
async fn every_endpoint_answers_what_it_promises() {
    let Some(docker) = docker().await else { return };
    let _serial = exclusive().await;
    let (sel, labels) = label("endpoints");
    let cap = Capturer::start("endpoints", &sel, &["--checkpoint-every", "200ms"]);
    let script = "i=0; while [ $i -lt 100 ]; do echo \"o $i\"; i=$((i+1)); done; sleep 600";
    let id = start(&docker, &spec(&labels, script)).await.expect("start");
    wait_until(&cap, &id, Duration::from_secs(60), |r| r.len() >= 100);
    // A checkpoint or two after the lines were written.
    std::thread::sleep(Duration::from_secs(1));

    for path in ["/livez", "/healthz"] {
        let (status, _, body) = get(cap.metrics, path);
        assert_eq!((status, body.as_str()), (200, "ok\n"), "{path}");
    }
    let (status, _, body) = get(cap.metrics, "/readyz");
    assert_eq!(status, 200, "/readyz: {body}\n{}", cap.log_text());
    assert_eq!(get(cap.metrics, "/nope").0, 404);

    let (status, kind, m) = get(cap.metrics, "/metrics");
    assert_eq!(status, 200);
    assert!(kind.starts_with("application/openmetrics-text"), "{kind}");
    assert!(
        m.ends_with("# EOF\n"),
        "an OpenMetrics text ends with # EOF:\n{m}"
    );
    let commit = m
        .lines()
        .find_map(|l| l.strip_prefix("log_capturer_build_info{"))
        .unwrap_or_else(|| panic!("no log_capturer_build_info:\n{m}"));
    assert!(
        commit.contains(&format!("version=\"{}\"", env!("CARGO_PKG_VERSION")))
            && commit.contains("commit=\"")
            && commit.ends_with("} 1"),
        "{commit}"
    );
    let at_least = |name: &str, low: f64| {
        let v = sample(&m, name).unwrap_or_else(|| panic!("no {name}:\n{m}"));
        assert!(v >= low, "{name} = {v}, expected at least {low}");
        v
    };
    at_least("log_capturer_lines_total{stream=\"stdout\"}", 100.0);
    at_least("log_capturer_bytes_total", 100.0);
    at_least("log_capturer_tasks_alive", 1.0);
    at_least("log_capturer_containers{state=\"streaming\"}", 1.0);
    at_least("log_capturer_lifecycle_tasks{lifecycle=\"reader\"}", 1.0);
    assert_eq!(sample(&m, "log_capturer_docker_up"), Some(1.0), "{m}");
    at_least("process_open_fds", 3.0);
    at_least("process_resident_memory_bytes", (1 << 20) as f64);
    at_least("process_cpu_seconds_total", 0.0);
    // The container's cursor was persisted within the last checkpoints (every 200 ms).
    let age = at_least("log_capturer_checkpoint_age_seconds", 0.0);
    assert!(
        age < 5.0,
        "checkpoint age {age} s with checkpoints every 200 ms"
    );
    // (log_capturer_sink_errors_total and log_capturer_sink_rejected_lines_total have no
    // sample until a first error: tests/tests/durability.rs and loki.rs see them.)
    // Each batch's lag was observed; the lines were read as they were written.
    at_least("log_capturer_capture_lag_seconds_count", 1.0);
    at_least("log_capturer_capture_lag_seconds_bucket{le=\"+Inf\"}", 1.0);
    at_least("log_capturer_capture_lag_seconds_bucket{le=\"60.0\"}", 1.0);
    for family in [
        "log_capturer_stream_rotations_total ",
        "log_capturer_duplicates_dropped_total ",
        "log_capturer_stream_errors_total ",
        "log_capturer_missed_containers_total ",
        "log_capturer_sink_queue_depth ",
        "log_capturer_sink_retries_total ",
    ] {
        assert!(m.contains(family), "no {family:?}:\n{m}");
    }

    let (status, kind, body) = get(cap.metrics, "/debug/tasks");
    assert_eq!(status, 200, "{body}");
    assert_eq!(kind, "application/json");
    let tasks: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(tasks["violations"], serde_json::json!([]), "{body}");
    let ours = tasks["containers"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["id"] == id.as_str()))
        .unwrap_or_else(|| panic!("our container is not in /debug/tasks: {body}"));
    assert_eq!(ours["invariants"], "ok", "{body}");
    assert_eq!(ours["state"], "streaming", "{body}");
    assert_eq!(ours["tasks"]["reader"], 1, "{body}");

    // Once the container is gone, so is its checkpoint age: the gauge stays small.
    remove(&docker, &id).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while cap.debug_tasks()["containers"]
        .as_array()
        .is_some_and(|c| !c.is_empty())
    {
        assert!(Instant::now() < deadline, "the removed container stays");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(2));
    let m = get(cap.metrics, "/metrics").2;
    let age = sample(&m, "log_capturer_checkpoint_age_seconds").unwrap_or(f64::NAN);
    assert!(age < 1.0, "checkpoint age {age} s with no container");
}

/// A stand-in for the daemon's socket that forwards to it, until [`Cut::cut`]: then every
/// connection is closed and new ones are refused, as when the daemon is gone.
struct Cut {
    open: Arc<AtomicBool>,
    live: Arc<Mutex<Vec<UnixStream>>>,
    path: PathBuf,
}

impl Cut {
    fn new(path: &Path, daemon: PathBuf) -> Cut {
        let _ = std::fs::remove_file(path);
        let listener = UnixListener::bind(path).expect("bind the socket");
        let open = Arc::new(AtomicBool::new(true));
        let live: Arc<Mutex<Vec<UnixStream>>> = Arc::default();
        let (o, l) = (open.clone(), live.clone());
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                if !o.load(Ordering::SeqCst) {
                    continue;
                }
                let Ok(server) = UnixStream::connect(&daemon) else {
                    continue;
                };
                let mut held = l.lock().unwrap();
                held.push(client.try_clone().unwrap());
                held.push(server.try_clone().unwrap());
                let (mut c2, mut s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                let (mut c1, mut s1) = (client, server);
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut c1, &mut s1);
                    let _ = s1.shutdown(std::net::Shutdown::Both);
                });
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut s2, &mut c2);
                    let _ = c2.shutdown(std::net::Shutdown::Both);
                });
            }
        });
        Cut {
            open,
            live,
            path: path.to_owned(),
        }
    }

    fn cut(&self, cut: bool) {
        self.open.store(!cut, Ordering::SeqCst);
        if cut {
            for s in self.live.lock().unwrap().drain(..) {
                let _ = s.shutdown(std::net::Shutdown::Both);
            }
        }
    }
}

/// Polls `/readyz` until its status is `want`, or panics after `limit`; returns the body.
fn await_ready(cap: &Capturer, want: u16, limit: Duration) -> String {
    let deadline = Instant::now() + limit;
    loop {
        let (status, _, body) = get(cap.metrics, "/readyz");
        if status == want {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "/readyz stays {status} ({body}), not {want}\n{}",
            cap.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test]
async fn readyz_says_503_and_why_while_the_daemon_is_unreachable_and_livez_stays_200() {
    let Some(_docker) = docker().await else {
        return;
    };
    let _serial = exclusive().await;
    let host =
        std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///var/run/docker.sock".into());
    let daemon = PathBuf::from(
        host.strip_prefix("unix://")
            .expect("a unix socket DOCKER_HOST"),
    );
    let socket = std::env::temp_dir().join(format!("lc-e2e-cut-{}.sock", std::process::id()));
    let cut = Cut::new(&socket, daemon);
    let (sel, _) = label("readyz");
    let cap = Capturer::start(
        "readyz",
        &sel,
        &["--docker-host", &format!("unix://{}", cut.path.display())],
    );
    await_ready(&cap, 200, Duration::from_secs(30));
    cut.cut(true);
    let why = await_ready(&cap, 503, Duration::from_secs(30));
    assert!(why.contains("Docker daemon"), "{why}");
    assert_eq!(get(cap.metrics, "/livez").0, 200, "the process still works");
    let m = get(cap.metrics, "/metrics").2;
    assert_eq!(sample(&m, "log_capturer_docker_up"), Some(0.0), "{m}");
    cut.cut(false);
    // The capturer asks again with a backoff of at most 10 s.
    await_ready(&cap, 200, Duration::from_secs(30));
    let _ = std::fs::remove_file(&socket);
}
