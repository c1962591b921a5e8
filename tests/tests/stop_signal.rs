//! End to end: a second SIGTERM or SIGINT cuts a slow graceful stop short (issue 17).
//!
//! The stop is made slow the way `durability.rs` makes it fail: `--sink stdout` into a pipe
//! nobody reads, so the sink cannot write its last lines, with a stop timeout of a minute. The
//! first SIGTERM must leave it stopping (still running a few seconds later); the second must end
//! it at once with exit 130 and a message saying so. The lines it held are not lost: a second
//! run, read normally, delivers every line (at least once: a forced exit, like a kill, has no
//! last checkpoint, and the stdout sink cannot read back what reached the pipe).

// Test tooling: a set-up step that fails must fail the test.
#![allow(clippy::expect_used)]

use std::io::Read;
use std::time::{Duration, Instant};

use capturer_tests::capturer::{exclusive, Capturer, Lenient};
use capturer_tests::exact::{label, pairs, spec, tail};
use capturer_tests::pipe::wait_until_full;
use capturer_tests::{docker, remove, start, wait_exit};

/// `extra`: more flags (`--log-format json`: then every line of its log is a JSON object).
async fn second_signal_exits_at_once(signal: libc::c_int, name: &str, extra: &[&str]) {
    let Some(docker) = docker().await else { return };
    let _serial = exclusive().await;
    let (sel, labels) = label(name);
    let mut flags = vec!["--sink", "stdout", "--stop-timeout", "60s"];
    flags.extend_from_slice(extra);
    let mut cap = Capturer::prepare(name, &sel, &flags);
    cap.pipe_stdout(true);
    cap.restart();
    let mut pipe = cap.take_stdout().expect("the stdout pipe");
    let id = start(&docker, &spec(&labels, &pairs("s", 2_000)))
        .await
        .expect("start");
    wait_exit(&docker, &id).await;
    // The pipe is full: nothing more comes for a second.
    wait_until_full(&cap, &pipe).await;
    let pid = cap.pid();
    // SAFETY: kill(2) on the pid of our own child process.
    unsafe { libc::kill(pid, signal) };
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        cap.rss().is_some(),
        "the first {name} must begin a graceful stop, which waits for the sink:\n{}",
        tail(&cap.log_text(), 20)
    );
    let began = Instant::now();
    // SAFETY: as above; the second signal.
    unsafe { libc::kill(pid, signal) };
    // Gone (a zombie has no resident set) within 5 s; then reaped for its status (the
    // SIGTERM that `terminate_within` sends to the zombie does nothing).
    while cap.rss().is_some() {
        assert!(
            began.elapsed() < Duration::from_secs(5),
            "a second {name} did not end it within 5 s:\n{}",
            tail(&cap.log_text(), 20)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let log = cap.log_text();
    let (status, _) = cap
        .terminate_within(Duration::from_secs(5))
        .expect("reap the exited capturer");
    eprintln!(
        "stop_signal: second {name}: {status} after {:?}",
        began.elapsed()
    );
    assert_eq!(status.code(), Some(130), "{}", tail(&log, 20));
    assert!(
        log.contains("a second stop signal"),
        "a message says why it exited:\n{}",
        tail(&log, 20)
    );
    assert!(!log.contains("panicked"), "{}", tail(&log, 20));
    if extra.contains(&"json") {
        for line in log.lines() {
            let v: serde_json::Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
            assert!(
                v["level"].is_string() && v["fields"]["message"].is_string(),
                "{line}"
            );
        }
    }
    // Nothing is lost: what the pipe held, then a second run, hold every line.
    let mut first = Vec::new();
    pipe.read_to_end(&mut first).expect("read the stdout pipe");
    let mut read = Lenient::read(&first);
    read.unterminated = 0;
    cap.pipe_stdout(false);
    cap.restart();
    let want: std::collections::BTreeSet<String> = (0..2_000)
        .flat_map(|i| [format!("s o {i}"), format!("s e {i}")])
        .collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut all = read.clone();
        all.add(&std::fs::read(cap.stdout_path()).unwrap_or_default());
        let got: std::collections::BTreeSet<String> =
            all.records.iter().map(|r| r.message.clone()).collect();
        let missing = want.difference(&got).count();
        if missing == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{missing} lines never delivered after the forced exit:\n{}",
            tail(&cap.log_text(), 20)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let status = cap.terminate();
    assert_eq!(status.code(), Some(0), "{}", tail(&cap.log_text(), 20));
    remove(&docker, &id).await;
}

#[tokio::test]
async fn a_second_sigterm_during_a_slow_stop_exits_at_once_with_130() {
    second_signal_exits_at_once(libc::SIGTERM, "sig-term", &[]).await;
}

#[tokio::test]
async fn a_second_sigint_during_a_slow_stop_exits_at_once_with_130_its_logs_json() {
    second_signal_exits_at_once(libc::SIGINT, "sig-int", &["--log-format", "json"]).await;
}
