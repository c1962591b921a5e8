//! The binary's behaviour at its edges, without a daemon: bad settings exit 2 and name the
//! key and its source; `check-config` checks and prints the settings with their sources;
//! `--version`, `--help` and `completions`; no daemon is one clear line and exit 1, never a
//! panic.

// Test tooling: a set-up step that fails must fail the test.
#![allow(clippy::expect_used)]

use std::process::Command;

use capturer_tests::capturer::{binary, free_addr};

fn run(args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let (code, _, err) = run_full(args, env);
    (code, err)
}

/// Exit code, stdout and stderr; the environment holds no `LOG_CAPTURER_*`, `DOCKER_HOST` or
/// `STATE_DIRECTORY` but those in `env`.
fn run_full(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut cmd = Command::new(binary());
    for (var, _) in std::env::vars() {
        if var.starts_with("LOG_CAPTURER_") || var == "DOCKER_HOST" || var == "STATE_DIRECTORY" {
            cmd.env_remove(var);
        }
    }
    let out = cmd
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("run log-capturer");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A fresh directory for one test.
fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("lc-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
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

#[test]
fn the_acceptance_cases_exit_2_naming_the_key() {
    let dir = temp_dir("accept");
    let file = dir.join("typo.toml");
    std::fs::write(&file, "rotate_evry = \"1s\"\n").expect("write config");
    let path = file.to_str().expect("utf-8 path");
    let (code, err) = run(&["check-config", "--config", path], &[]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("rotate_evry") && err.contains("typo.toml"),
        "names the key and the file: {err}"
    );
    let (code, err) = run(&["run", "--config", path], &[]);
    assert_eq!(code, 2, "run refuses it too: {err}");
    assert!(err.contains("rotate_evry"), "{err}");
    let (code, err) = run(&["run", "--rotate-every", "banana"], &[]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("rotate-every") && err.contains("banana"),
        "{err}"
    );
    let (code, err) = run(&["check-config", "--rotate-every", "banana"], &[]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("rotate-every"), "{err}");
    let (code, err) = run(
        &["check-config"],
        &[("LOG_CAPTURER_ROTATE_EVERY", "banana")],
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("LOG_CAPTURER_ROTATE_EVERY"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn check_config_prints_each_setting_with_its_source() {
    let dir = temp_dir("print");
    let file = dir.join("c.toml");
    let output = dir.join("out");
    std::fs::write(
        &file,
        format!(
            "output = {:?}\nrotate_every = \"1m\"\nheartbeat_every = \"7s\"\nstop_timeout = \"1h 30m\"\ninclude_label = [\"a\", \"b=c\"]\n",
            output.to_str().expect("utf-8 path")
        ),
    )
    .expect("write config");
    let path = file.to_str().expect("utf-8 path");
    let (code, out, err) = run_full(
        &[
            "check-config",
            "--config",
            path,
            "--rotate-every",
            "50ms",
            "--print",
        ],
        &[
            ("LOG_CAPTURER_ROTATE_EVERY", "2m"),
            ("LOG_CAPTURER_HEARTBEAT_EVERY", "9s"),
            ("LOG_CAPTURER_EXCLUDE_NAME", "x-*, y"),
        ],
    );
    assert_eq!(code, 0, "{err}");
    let line = |key: &str| {
        out.lines()
            .find(|l| l.starts_with(&format!("{key} =")))
            .unwrap_or_else(|| panic!("no {key} in:\n{out}"))
            .to_owned()
    };
    assert_eq!(
        line("rotate_every"),
        "rotate_every = \"50ms\"  # flag --rotate-every"
    );
    assert_eq!(
        line("heartbeat_every"),
        "heartbeat_every = \"9s\"  # env LOG_CAPTURER_HEARTBEAT_EVERY"
    );
    assert_eq!(
        line("stop_timeout"),
        format!("stop_timeout = \"1h 30m\"  # file {path}")
    );
    assert_eq!(
        line("exclude_name"),
        "exclude_name = [\"x-*\", \"y\"]  # env LOG_CAPTURER_EXCLUDE_NAME"
    );
    assert_eq!(
        line("include_label"),
        format!("include_label = [\"a\", \"b=c\"]  # file {path}")
    );
    assert_eq!(line("sink"), "sink = \"file\"  # default");
    assert!(line("state_dir").contains("out/.state"), "{out}");
    // What it printed is a file `run` takes.
    let printed = dir.join("printed.toml");
    let kept: String = out
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| format!("{}\n", l.split("  # ").next().unwrap_or(l)))
        .collect();
    std::fs::write(&printed, kept).expect("write the printed settings");
    let (code, again, err) = run_full(
        &[
            "check-config",
            "--print",
            "--config",
            printed.to_str().expect("utf-8 path"),
        ],
        &[],
    );
    assert_eq!(code, 0, "{err}");
    assert!(again.contains("rotate_every = \"50ms\"  # file"), "{again}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn check_config_finds_unusable_paths_without_creating_anything() {
    let dir = temp_dir("paths");
    let not_dir = dir.join("a-file");
    std::fs::write(&not_dir, "x").expect("write a file");
    let under_file = not_dir.join("out");
    let (code, err) = run(
        &[
            "check-config",
            "--output",
            under_file.to_str().expect("utf-8 path"),
        ],
        &[],
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("state_dir") || err.contains("output"), "{err}");
    let (code, err) = run(
        &[
            "check-config",
            "--state-dir",
            not_dir.to_str().expect("utf-8 path"),
        ],
        &[],
    );
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("state_dir") && err.contains("--state-dir"),
        "{err}"
    );
    let (code, err) = run(
        &["check-config", "--nats-creds", "/nonexistent/x.creds"],
        &[],
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("nats_creds"), "{err}");
    let (code, err) = run(&["check-config", "--include-name", "[a"], &[]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("include_name"), "{err}");
    let (code, err) = run(&["check-config", "--metrics-addr", "nowhere"], &[]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("metrics_addr"), "{err}");
    let fresh = dir.join("new").join("deeper");
    let (code, err) = run(
        &[
            "check-config",
            "--output",
            fresh.to_str().expect("utf-8 path"),
        ],
        &[],
    );
    assert_eq!(code, 0, "a directory that can be created: {err}");
    assert!(!dir.join("new").exists(), "check-config created nothing");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn state_directory_is_the_default_for_a_system_install() {
    let dir = temp_dir("statedir");
    let state = dir.join("lib");
    let value = format!("{}:/var/lib/other", state.display());
    let (code, out, err) = run_full(&["check-config", "--print"], &[("STATE_DIRECTORY", &value)]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains(&format!(
            "state_dir = \"{}\"  # default, from $STATE_DIRECTORY",
            state.display()
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!("output = \"{}/capture\"", state.display())),
        "{out}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn version_help_and_completions() {
    let (code, out, err) = run_full(&["--version"], &[]);
    assert_eq!(code, 0, "{err}");
    let version = out.trim();
    assert!(version.starts_with("log-capturer 0."), "{version}");
    let commit = version
        .split("(commit ")
        .nth(1)
        .and_then(|r| r.strip_suffix(')'))
        .unwrap_or_else(|| panic!("no commit in {version:?}"));
    assert!(
        commit == "unknown"
            || (commit.len() == 12 && commit.chars().all(|c| c.is_ascii_hexdigit())),
        "{commit}"
    );
    let (code, short, _) = run_full(&["-V"], &[]);
    assert_eq!((code, short.trim()), (0, version));
    // Every setting and its variable, and LOG_CAPTURER_LOG.
    let (code, help, err) = run_full(&["run", "--help"], &[]);
    assert_eq!(code, 0, "{err}");
    for flag in [
        "--rotate-every",
        "--max-files",
        "--log-format",
        "--log-level",
        "--state-dir",
        "--loki-max-line-size",
        "--nats-replicas",
        "--config",
    ] {
        assert!(help.contains(flag), "{flag} in:\n{help}");
    }
    for var in [
        "LOG_CAPTURER_ROTATE_EVERY",
        "LOG_CAPTURER_LOG]",
        "LOG_CAPTURER_MAX_FILES",
        "LOG_CAPTURER_CONFIG",
        "STATE_DIRECTORY",
    ] {
        assert!(help.contains(var), "{var} in:\n{help}");
    }
    let (code, help, _) = run_full(&["--help"], &[]);
    assert_eq!(code, 0);
    assert!(
        help.contains("run --help") && help.contains("LOG_CAPTURER_LOG") && help.contains("130"),
        "{help}"
    );
    // Which wins: the flag over LOG_CAPTURER_LOG, which is the level's variable.
    let (code, out, err) = run_full(
        &["check-config", "--print"],
        &[("LOG_CAPTURER_LOG", "warn,log_capturer::sink=debug")],
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("log_level = \"warn,log_capturer::sink=debug\"  # env LOG_CAPTURER_LOG"),
        "{out}"
    );
    let (code, out, err) = run_full(
        &["check-config", "--print", "--log-level", "debug"],
        &[("LOG_CAPTURER_LOG", "warn")],
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("log_level = \"debug\"  # flag --log-level"),
        "{out}"
    );
    let (code, help, _) = run_full(&["check-config", "--help"], &[]);
    assert_eq!(code, 0);
    assert!(
        help.contains("--print") && help.contains("--rotate-every"),
        "{help}"
    );
    let (code, _, err) = run_full(&[], &[]);
    assert_eq!(code, 2, "no command: help on stderr, exit 2");
    assert!(
        err.contains("check-config") && err.contains("completions"),
        "{err}"
    );
    for shell in ["bash", "zsh", "fish"] {
        let (code, script, err) = run_full(&["completions", shell], &[]);
        assert_eq!(code, 0, "{err}");
        assert!(
            script.contains("check-config") && script.contains("rotate-every"),
            "{shell}"
        );
    }
    let (code, _, err) = run_full(&["completions", "tcsh"], &[]);
    assert_eq!(code, 2, "{err}");
}
