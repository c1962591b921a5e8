//! The binary's behaviour at its edges, without a daemon: bad settings exit 2 and name the
//! key; no daemon is one clear line and exit 1, never a panic.

// Test tooling: a set-up step that fails must fail the test.
#![allow(clippy::expect_used)]

use std::process::Command;

use capturer_tests::capturer::{binary, free_addr};

fn run(args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let out = Command::new(binary())
        .args(args)
        .envs(env.iter().copied())
        .env_remove("DOCKER_HOST")
        .output()
        .expect("run log-capturer");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_bad_setting_names_its_key_and_exits_2() {
    let (code, err) = run(&["run", "--rotate-every", "5x"], &[]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("rotate_every") && err.contains("--rotate-every"),
        "{err}"
    );
    let (code, err) = run(&["run"], &[("LOG_CAPTURER_SINK", "kafka")]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("LOG_CAPTURER_SINK"), "{err}");
    let dir = std::env::temp_dir().join(format!("lc-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("bad.toml");
    std::fs::write(&file, "heartbeat_every = \"often\"\n").expect("write config");
    let (code, err) = run(
        &["run", "--config", file.to_str().expect("utf-8 path")],
        &[],
    );
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("heartbeat_every") && err.contains("bad.toml"),
        "{err}"
    );
    let (code, err) = run(&["run", "--no-such-flag", "1"], &[]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--no-such-flag"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn no_daemon_is_one_clear_line_and_exit_1() {
    let dir = std::env::temp_dir().join(format!("lc-cli-nodaemon-{}", std::process::id()));
    let addr = free_addr().to_string();
    let output = dir.to_str().expect("utf-8 path");
    let (code, err) = run(
        &[
            "run",
            "--docker-host",
            "unix:///nonexistent/docker.sock",
            "--output",
            output,
            "--metrics-addr",
            &addr,
        ],
        &[],
    );
    assert_eq!(code, 1, "{err}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "one line: {err}");
    assert!(
        lines[0].contains("no Docker daemon answers at unix:///nonexistent/docker.sock"),
        "{err}"
    );
    assert!(!err.contains("panicked"));
    let _ = std::fs::remove_dir_all(&dir);
}
