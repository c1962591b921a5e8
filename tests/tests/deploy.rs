//! The deployment artifacts under deploy/ agree with the capturer and with each other: the
//! systemd unit passes `systemd-analyze verify` and waits longer than the stop timeout; the
//! Compose file and the Kubernetes DaemonSet mount the socket read-only, run the image the
//! Dockerfile documents, listen where their probes look, and bound their resources.

// Test tooling: a failed set-up step must fail the test loudly.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_norway::Value;

const SOCKET: &str = "/var/run/docker.sock";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo().join(path)).unwrap_or_else(|e| panic!("read {path}: {e}"))
}

fn yaml(path: &str) -> Value {
    serde_norway::from_str(&read(path)).unwrap_or_else(|e| panic!("{path} is not YAML: {e}"))
}

/// The image the Dockerfile's build command tags (`docker build ... -t NAME ...`).
fn image() -> String {
    let dockerfile = read("deploy/Dockerfile");
    let build = dockerfile
        .lines()
        .find(|l| l.contains("docker build"))
        .expect("the Dockerfile documents its build command");
    let mut words = build.split_whitespace();
    words
        .find(|w| *w == "-t")
        .expect("the build command tags the image");
    let tag = words.next().expect("a tag after -t").to_owned();
    assert_eq!(
        tag.rsplit_once(':').map(|(_, v)| v),
        Some(env!("CARGO_PKG_VERSION")),
        "the image is tagged with the crate's version"
    );
    tag
}

/// The port of the capturer's default metrics address, as its `--help` states it.
fn default_metrics_port() -> u16 {
    let out = Command::new(capturer_tests::capturer::binary())
        .args(["run", "--help"])
        .output()
        .expect("run log-capturer run --help");
    let help = String::from_utf8_lossy(&out.stdout);
    // The default may sit on a line of its own below the flag (clap's long help does that).
    let from_flag = help
        .find("--metrics-addr")
        .map(|at| &help[at..])
        .unwrap_or_else(|| panic!("no --metrics-addr in the help:\n{help}"));
    let at = from_flag
        .find("127.0.0.1:")
        .unwrap_or_else(|| panic!("no default address after --metrics-addr:\n{help}"));
    from_flag[at + "127.0.0.1:".len()..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .expect("a port")
}

/// A duration in whole seconds, as the artifacts write it (`10s`).
fn stop_timeout(text: &str) -> Duration {
    let secs: String = text
        .trim()
        .trim_end_matches('s')
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    assert!(text.trim().ends_with('s'), "{text:?} is in seconds");
    Duration::from_secs(secs.parse().expect("seconds"))
}

/// The value after `key` in a unit file's `[Service]` lines, `KEY=VALUE`.
fn unit_key<'a>(unit: &'a str, key: &str) -> Vec<&'a str> {
    unit.lines()
        .filter_map(|l| l.strip_prefix(key)?.strip_prefix('='))
        .collect()
}

#[test]
fn the_systemd_unit_verifies_and_outwaits_the_stop_timeout() {
    let unit = read("deploy/log-capturer.service");
    let exec = unit_key(&unit, "ExecStart");
    assert_eq!(exec.len(), 1, "one ExecStart");
    let words: Vec<&str> = exec[0].split_whitespace().collect();
    assert_eq!(words.get(1), Some(&"run"), "{exec:?}");
    let stop = words
        .iter()
        .position(|w| *w == "--stop-timeout")
        .and_then(|i| words.get(i + 1))
        .map(|t| stop_timeout(t))
        .expect("the unit states its --stop-timeout");
    let timeout = unit_key(&unit, "TimeoutStopSec")
        .first()
        .map(|t| stop_timeout(t))
        .expect("TimeoutStopSec");
    assert!(
        timeout > stop,
        "TimeoutStopSec {timeout:?} must exceed --stop-timeout {stop:?}"
    );
    assert_eq!(unit_key(&unit, "StateDirectory"), ["log-capturer"]);
    for hardening in [
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "NoNewPrivileges=yes",
        "SupplementaryGroups=docker",
    ] {
        assert!(unit.lines().any(|l| l == hardening), "no {hardening}");
    }

    // `verify` checks that ExecStart's binary exists: a copy of the unit runs the one built.
    let analyze = Path::new("/usr/bin/systemd-analyze");
    if !analyze.exists() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI is set and /usr/bin/systemd-analyze is missing (apt-get install systemd)"
        );
        eprintln!("SKIPPED: no systemd-analyze; set CI to fail instead");
        return;
    }
    let dir = std::env::temp_dir().join(format!("lc-unit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let copy = dir.join("log-capturer.service");
    let bin = capturer_tests::capturer::binary();
    std::fs::write(
        &copy,
        unit.replace("/usr/local/bin/log-capturer", &bin.display().to_string()),
    )
    .unwrap();
    let out = Command::new(analyze)
        .arg("verify")
        .arg(&copy)
        .output()
        .expect("run systemd-analyze verify");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(
        out.status.success(),
        "systemd-analyze verify failed:\n{said}"
    );
    // Warnings (an unknown key, a bad value) exit 0 but name the file.
    assert!(
        !said.contains("log-capturer.service"),
        "systemd-analyze verify warned:\n{said}"
    );
}

#[test]
fn the_compose_file_mounts_the_socket_read_only_and_listens_for_its_host() {
    let compose = yaml("deploy/compose.yaml");
    let service = &compose["services"]["log-capturer"];
    assert_eq!(service["image"].as_str(), Some(image().as_str()));
    let volumes: Vec<&str> = service["volumes"]
        .as_sequence()
        .expect("volumes")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        volumes.contains(&format!("{SOCKET}:{SOCKET}:ro").as_str()),
        "{volumes:?}"
    );
    let port = default_metrics_port();
    assert_eq!(
        service["environment"]["LOG_CAPTURER_METRICS_ADDR"].as_str(),
        Some(format!("0.0.0.0:{port}").as_str())
    );
    let ports: Vec<&str> = service["ports"]
        .as_sequence()
        .expect("ports")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        ports.iter().any(|p| p.ends_with(&format!(":{port}"))),
        "{ports:?}"
    );
    let grace = service["stop_grace_period"]
        .as_str()
        .expect("stop_grace_period");
    let stop = service["environment"]["LOG_CAPTURER_STOP_TIMEOUT"]
        .as_str()
        .expect("LOG_CAPTURER_STOP_TIMEOUT");
    assert!(
        stop_timeout(grace) > stop_timeout(stop),
        "{grace} <= {stop}"
    );
}

#[test]
fn the_daemonset_mounts_the_socket_probes_livez_and_readyz_and_bounds_resources() {
    let ds = yaml("deploy/kubernetes/daemonset.yaml");
    assert_eq!(ds["kind"].as_str(), Some("DaemonSet"));
    assert_eq!(ds["apiVersion"].as_str(), Some("apps/v1"));
    let pod = &ds["spec"]["template"]["spec"];
    let containers = pod["containers"].as_sequence().expect("containers");
    assert_eq!(containers.len(), 1);
    let c = &containers[0];
    assert_eq!(c["image"].as_str(), Some(image().as_str()));
    let env = |name: &str| {
        c["env"]
            .as_sequence()
            .expect("env")
            .iter()
            .find(|e| e["name"].as_str() == Some(name))
            .and_then(|e| e["value"].as_str())
            .map(str::to_owned)
            .unwrap_or_else(|| panic!("no env {name}"))
    };
    let port = default_metrics_port();
    assert_eq!(env("LOG_CAPTURER_METRICS_ADDR"), format!("0.0.0.0:{port}"));
    let ports = c["ports"].as_sequence().expect("ports");
    assert!(
        ports
            .iter()
            .any(|p| p["containerPort"].as_u64() == Some(port.into())),
        "{ports:?}"
    );
    for (probe, path) in [("livenessProbe", "/livez"), ("readinessProbe", "/readyz")] {
        let get = &c[probe]["httpGet"];
        assert_eq!(get["path"].as_str(), Some(path), "{probe}");
        assert_eq!(get["port"].as_u64(), Some(port.into()), "{probe}");
    }
    for resource in ["cpu", "memory"] {
        assert!(
            c["resources"]["limits"][resource].as_str().is_some(),
            "no limits.{resource}"
        );
        assert!(
            c["resources"]["requests"][resource].as_str().is_some(),
            "no requests.{resource}"
        );
    }
    let mount = c["volumeMounts"]
        .as_sequence()
        .expect("volumeMounts")
        .iter()
        .find(|m| m["mountPath"].as_str() == Some(SOCKET))
        .expect("the socket is mounted");
    assert_eq!(mount["readOnly"].as_bool(), Some(true));
    let volume = pod["volumes"]
        .as_sequence()
        .expect("volumes")
        .iter()
        .find(|v| v["name"] == mount["name"])
        .expect("the socket's volume");
    assert_eq!(volume["hostPath"]["path"].as_str(), Some(SOCKET));
    assert_eq!(volume["hostPath"]["type"].as_str(), Some("Socket"));
    let grace = pod["terminationGracePeriodSeconds"]
        .as_u64()
        .expect("grace");
    let stop = stop_timeout(&env("LOG_CAPTURER_STOP_TIMEOUT"));
    assert!(Duration::from_secs(grace) > stop, "{grace}s <= {stop:?}");
}
