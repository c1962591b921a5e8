//! The container image of deploy/Dockerfile, built here from a static capturer, run in the test
//! bed with the daemon's socket mounted read-only: it captures its neighbours exactly once,
//! never itself, and stops cleanly on `docker stop`.

// Test tooling: a failed set-up step must fail the test loudly.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use capturer_tests::capturer::{exclusive, Capturer};
use capturer_tests::exact::{assert_same, label, numbered, spec};
use capturer_tests::{daemon_lines, docker, remove, start, wait_exit};

const TARGET: &str = "x86_64-unknown-linux-gnu";

/// The capturer linked statically (glibc's `crt-static`, the one target installed), built into
/// this test run's target directory under `TARGET/`, in the test's profile (without debug
/// info in the dev profile).
fn static_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    // target/<profile>/deps/<test>
    let profile_dir = exe.parent().and_then(Path::parent).unwrap();
    let profile = profile_dir
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    let target = profile_dir.parent().unwrap();
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.args(["build", "-q", "--locked", "-p", "capturer-runtime"])
        .args(["--bin", "log-capturer", "--target", TARGET])
        .env("CARGO_TARGET_DIR", target)
        .env("RUSTFLAGS", "-C target-feature=+crt-static")
        .env_remove("CARGO_ENCODED_RUSTFLAGS");
    if profile == "release" {
        cmd.arg("--release");
    } else {
        // A second build of every crate (other flags): without debug info it costs less, and
        // the image test needs none.
        cmd.args(["--config", "profile.dev.debug=0"]);
    }
    let status = cmd.status().expect("run cargo build");
    assert!(status.success(), "building the static log-capturer failed");
    target.join(TARGET).join(&profile).join("log-capturer")
}

/// Runs `docker ARGS`, returning its standard output; panics with its error output on failure.
fn docker_cli(args: &[&str]) -> String {
    let out = Command::new("docker")
        .args(args)
        .env("DOCKER_BUILDKIT", "0")
        .output()
        .expect("run the docker CLI");
    assert!(
        out.status.success(),
        "docker {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// What the test made in the daemon, removed even when it fails.
struct Made {
    image: String,
    containers: Vec<String>,
    context: PathBuf,
}

impl Drop for Made {
    fn drop(&mut self) {
        for id in &self.containers {
            let _ = Command::new("docker").args(["rm", "-f", id]).output();
        }
        let _ = Command::new("docker").args(["rmi", &self.image]).output();
        let _ = std::fs::remove_dir_all(&self.context);
    }
}

#[tokio::test]
async fn the_image_captures_its_neighbours_exactly_once_and_not_itself() {
    let Some(docker) = docker().await else { return };
    let _serial = exclusive().await;
    let host =
        std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///var/run/docker.sock".into());
    let socket = host
        .strip_prefix("unix://")
        .expect("a unix socket DOCKER_HOST")
        .to_owned();

    // The build context holds the binary alone, as deploy/Dockerfile says.
    let binary = static_binary();
    let context = std::env::temp_dir().join(format!("lc-image-{}", std::process::id()));
    std::fs::create_dir_all(&context).unwrap();
    std::fs::copy(&binary, context.join("log-capturer")).expect("copy the binary");
    let mut made = Made {
        image: format!("log-capturer-test:{}", std::process::id()),
        containers: Vec::new(),
        context: context.clone(),
    };
    let dockerfile = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/Dockerfile");
    docker_cli(&[
        "build",
        "-q",
        "-f",
        dockerfile.to_str().unwrap(),
        "-t",
        &made.image,
        context.to_str().unwrap(),
    ]);

    // The capturer's own container carries the label it selects: only knowing itself keeps
    // it out.
    let (sel, labels) = label("image");
    let cap = Capturer::prepare("image", &sel, &[]);
    let out = cap.output.join("out");
    let own = docker_cli(&[
        "run",
        "-d",
        "--network",
        "none",
        "--label",
        &sel,
        "-e",
        "LOG_CAPTURER_LOG=info",
        "-v",
        &format!("{socket}:/var/run/docker.sock:ro"),
        "-v",
        &format!("{}:/var/log/log-capturer", out.display()),
        "-v",
        &format!("{}:/var/lib/log-capturer", cap.state_dir().display()),
        &made.image,
        "run",
        "--include-label",
        &sel,
    ]);
    made.containers.push(own.clone());

    let script = |p: &str| {
        format!(
            "i=0; while [ $i -lt 500 ]; do echo \"{p} o $i\"; echo \"{p} e $i\" >&2; i=$((i+1)); done"
        )
    };
    let mut ids = Vec::new();
    for p in ["a", "b", "c"] {
        let id = start(&docker, &spec(&labels, &script(p)))
            .await
            .expect("start a neighbour");
        ids.push((p, id));
    }
    for (_, id) in &ids {
        wait_exit(&docker, id).await;
    }
    let log = || {
        let out = Command::new("docker")
            .args(["logs", &own])
            .output()
            .expect("docker logs");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    for (_, id) in &ids {
        let truth = daemon_lines(&docker, id, false).await;
        assert_eq!(truth.len(), 1000);
        let got = cap.wait_for_lines(id, truth.len(), Duration::from_secs(60));
        assert_eq!(got.len(), truth.len(), "{}", log());
    }

    // A graceful stop: SIGTERM, within the capturer's own stop timeout.
    docker_cli(&["stop", "-t", "30", &own]);
    let code = docker_cli(&["inspect", "-f", "{{.State.ExitCode}}", &own]);
    let capturer_log = log();
    std::fs::write(cap.output.join("capturer.log"), &capturer_log).unwrap();
    assert_eq!(code, "0", "exit status after docker stop\n{capturer_log}");
    assert!(
        capturer_log.contains("log-capturer running"),
        "{capturer_log}"
    );

    for (p, id) in &ids {
        let truth = daemon_lines(&docker, id, false).await;
        let got = cap.records(id);
        assert_same(&truth, &got, &cap);
        let by = capturer_tests::capturer::by_stream(&got);
        assert_eq!(by["stdout"], numbered(&format!("{p} o"), 0..500));
        assert_eq!(by["stderr"], numbered(&format!("{p} e"), 0..500));
    }
    assert!(
        cap.files(&own).is_empty(),
        "the capturer captured its own container"
    );
    let captured: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".jsonl"))
        .collect();
    assert_eq!(captured.len(), ids.len(), "files: {captured:?}");
    assert!(
        captured
            .iter()
            .all(|f| ids.iter().any(|(_, id)| f.starts_with(id.as_str()))),
        "only the neighbours: {captured:?}"
    );
    for (_, id) in &ids {
        remove(&docker, id).await;
    }
    drop(made);
}
