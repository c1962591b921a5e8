//! End to end: exactly once through SIGKILL, and a stop that cannot write (issue 13).
//!
//! - SIGKILLs at random moments while containers write fast, with stream and output file
//!   rotations: a restart recovers from its output files, so nothing is lost and nothing is
//!   written twice.
//! - A last line torn by a kill in mid-write (cut here by hand, after a kill with no
//!   checkpoint) is dropped at the next start and read again.
//! - A SIGTERM while the disk is full, or while nobody reads the stdout pipe, ends within
//!   `--stop-timeout` with exit 1 and one message per kind of error, and the next start
//!   delivers what was not durable, once.
//!
//! Every test compares the capture with the daemon's own log ([`assert_exactly_once`]). The
//! kill moments come from a seed printed at the start (`LC_DURABILITY_SEED` replays one).

// Test tooling: a set-up step that fails must fail the test.
#![allow(clippy::expect_used)]

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use capturer_core::Timestamp;
use capturer_tests::capturer::{by_stream, exclusive, Capturer, Lenient};
use capturer_tests::exact::{
    assert_exactly_once, assert_stopped_cleanly, duplicates, label, numbered, pairs, spec, tail,
    unique_at_least, wait_until,
};
use capturer_tests::gated::{kill_at_random, GatedWriters};
use capturer_tests::pipe::wait_until_full;
use capturer_tests::rng::{seed, Rng};
use capturer_tests::{daemon_lines, docker, remove, start, wait_exit, DaemonLine};

/// Writers in the SIGKILL test.
const WRITERS: usize = 3;
/// SIGKILLs of the capturer in the SIGKILL test (each followed by a start).
const KILLS: usize = 24;

#[tokio::test]
async fn sigkills_at_random_moments_during_fast_writers_lose_nothing_and_duplicate_nothing() {
    let Some(docker) = docker().await else { return };
    let _serial = exclusive().await;
    let seed = seed("LC_DURABILITY_SEED");
    eprintln!("durability: seed {seed} (LC_DURABILITY_SEED={seed} replays the kill moments)");
    let mut rng = Rng::new(seed);
    let (sel, labels) = label("d1");
    let began = Instant::now();
    // A stream reopened every 100 ms, an output file rotated every few hundred records: kills
    // fall inside both often.
    let flags = ["--rotate-every", "100ms", "--max-file-size", "48KiB"];
    let mut cap = Capturer::start("d1", &sel, &flags);
    // Every kill comes while they write; the kill moments are as often in a start's recovery
    // as in steady work.
    let writers = GatedWriters::start(&docker, &cap, &labels, WRITERS).await;
    let moments = kill_at_random(&mut cap, &mut rng, KILLS, 1200.0).await;
    writers.stop(&docker).await;
    let ids = writers.ids;
    eprintln!(
        "durability: {KILLS} SIGKILLs (after {moments:?} ms) done, writers stopped at {:?}",
        began.elapsed()
    );
    let mut truths: Vec<Vec<DaemonLine>> = Vec::new();
    for id in &ids {
        truths.push(daemon_lines(&docker, id, false).await);
    }
    let deadline = Instant::now() + Duration::from_secs(40);
    for (id, truth) in ids.iter().zip(&truths) {
        let limit = deadline.saturating_duration_since(Instant::now());
        wait_until(&cap, id, limit, unique_at_least(truth.len()));
    }
    let status = cap.terminate();
    eprintln!("durability: captured and stopped at {:?}", began.elapsed());
    let reads: Vec<Lenient> = ids.iter().map(|id| cap.records_lenient(id)).collect();
    for ((id, truth), read) in ids.iter().zip(&truths).zip(&reads) {
        eprintln!(
            "durability: {}: the daemon has {} lines; captured {} records in {} files, {} duplicates, {} torn lines",
            &id[..12],
            truth.len(),
            read.records.len(),
            cap.files(id).len(),
            duplicates(&read.records).len(),
            read.torn
        );
    }
    for (c, ((id, truth), read)) in ids.iter().zip(&truths).zip(&reads).enumerate() {
        let context = format!("c{c} {} after {KILLS} SIGKILLs (seed {seed})", &id[..12]);
        assert_exactly_once(truth, read, &cap, &context);
        // The daemon's log is what the script wrote: whole bursts on both streams.
        let s = by_stream(&read.records);
        let n = s["stdout"].len();
        assert!(n >= 40, "{context}: only {n} lines per stream were written");
        assert_eq!(s["stdout"], numbered(&format!("c{c} o"), 0..n), "{context}");
        assert_eq!(s["stderr"], numbered(&format!("c{c} e"), 0..n), "{context}");
        // The output files rotated, so a duplicate across files would have been seen.
        assert!(
            cap.files(id).len() > 2,
            "{context}: the output files did not rotate"
        );
    }
    assert_stopped_cleanly(status, &cap);
    for id in &ids {
        remove(&docker, id).await;
    }
}

/// The position (`ts`, ns) persisted for each stream of `id`, `[stdout, stderr]`; zeros if
/// nothing is persisted.
fn persisted(cap: &Capturer, id: &str) -> [u64; 2] {
    let Ok(bytes) = std::fs::read(cap.state_dir().join(format!("{id}.json"))) else {
        return [0, 0];
    };
    let saved: serde_json::Value = serde_json::from_slice(&bytes).expect("cursor JSON");
    [0, 1].map(|i| saved["cursor"]["positions"][i]["ts"].as_u64().unwrap_or(0))
}

#[tokio::test]
async fn a_torn_last_line_is_dropped_and_read_again() {
    let Some(docker) = docker().await else { return };
    let _serial = exclusive().await;
    let (sel, labels) = label("d2");
    // No checkpoint before the kill: the state covers none of the output, so a start must
    // learn from the output file where to resume.
    let mut cap = Capturer::start("d2", &sel, &["--checkpoint-every", "1h"]);
    let id = start(&docker, &spec(&labels, &pairs("t", 2_000)))
        .await
        .expect("start");
    wait_exit(&docker, &id).await;
    wait_until(&cap, &id, Duration::from_secs(30), unique_at_least(4_000));
    cap.kill();
    // Cut the newest output file in the middle of its last line, as a kill in mid-write would.
    let newest = cap.files(&id).pop().expect("an output file");
    let bytes = std::fs::read(&newest).expect("read the output file");
    assert!(
        bytes.ends_with(b"\n"),
        "an idle capturer killed leaves whole lines"
    );
    let body = &bytes[..bytes.len() - 1];
    let last_at = body.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let last: serde_json::Value = serde_json::from_slice(&body[last_at..]).expect("a record");
    let cut = last_at + (bytes.len() - last_at) / 2;
    let stream = last["stream"].as_str().unwrap_or_default().to_owned();
    let last_ns = Timestamp::parse_rfc3339(last["ts"].as_str().unwrap_or_default().as_bytes())
        .expect("ts")
        .0;
    let saved = persisted(&cap, &id)[usize::from(stream == "stderr")];
    assert!(
        saved < last_ns,
        "the state already covers the last line ({stream} persisted at {saved}, the line is at {last_ns}): nothing to recover"
    );
    std::fs::OpenOptions::new()
        .write(true)
        .open(&newest)
        .and_then(|f| f.set_len(cut as u64))
        .expect("cut the last line");
    cap.restart();
    wait_until(&cap, &id, Duration::from_secs(30), unique_at_least(4_000));
    let status = cap.terminate();
    let truth = daemon_lines(&docker, &id, false).await;
    let read = cap.records_lenient(&id);
    let context = format!(
        "after a SIGKILL, {} cut at byte {cut} of {} (inside its last line, {stream} {})",
        newest.display(),
        bytes.len(),
        last["message"]
    );
    assert_exactly_once(&truth, &read, &cap, &context);
    let s = by_stream(&read.records);
    assert_eq!(s["stdout"], numbered("t o", 0..2_000));
    assert_eq!(s["stderr"], numbered("t e", 0..2_000));
    // The file holds whole lines only: the torn line is gone, not glued to the next.
    let now = std::fs::read(&newest).expect("read the output file");
    assert!(now.ends_with(b"\n") && now.len() > cut, "{context}");
    assert_stopped_cleanly(status, &cap);
    remove(&docker, &id).await;
}

/// A tmpfs mounted for a test, unmounted when dropped (also when the test fails).
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(at).expect("create the mount point");
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .status()
            .expect("run mount");
        assert!(
            status.success(),
            "could not mount a {size} tmpfs on {} (the test needs root): {status}",
            at.display()
        );
        Tmpfs(at.to_owned())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazy: the capturer may still hold a file open if the test failed.
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Fills the file system of `path` with a file there, until a write fails for lack of space;
/// returns how many bytes it took.
fn fill(path: &Path) -> u64 {
    let mut f = std::fs::File::create(path).expect("create the filler");
    let mut written = 0u64;
    for chunk in [64 * 1024, 4096, 1] {
        let block = vec![0u8; chunk];
        loop {
            match f.write(&block) {
                Ok(0) => break,
                Ok(n) => written += n as u64,
                Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
                Err(e) => panic!("fill {}: {e}", path.display()),
            }
        }
    }
    written
}

/// A line of the capturer's log that reports the full disk.
fn is_enospc(line: &str) -> bool {
    let l = line.to_ascii_lowercase();
    [
        "no space left on device",
        "os error 28",
        "storagefull",
        "enospc",
    ]
    .iter()
    .any(|s| l.contains(s))
}

/// The `kind` labels of `log_capturer_sink_errors_total` in a `/metrics` text.
fn sink_error_kinds(metrics: &str) -> BTreeSet<String> {
    metrics
        .lines()
        .filter_map(|l| l.strip_prefix("log_capturer_sink_errors_total{"))
        .filter_map(|l| {
            let (_, rest) = l.split_once("kind=\"")?;
            Some(rest.split_once('"')?.0.to_owned())
        })
        .collect()
}

/// The stop deadline the stop tests give (`--stop-timeout`), and what a stop may take more.
const STOP_TIMEOUT: Duration = Duration::from_secs(3);
const STOP_MARGIN: Duration = Duration::from_secs(2);

/// SIGTERMs the capturer while its sink cannot write: it must exit 1 within the stop timeout
/// (plus the margin). Returns what went wrong, in words.
fn stop_that_cannot_write(cap: &mut Capturer, what: &str) -> Vec<String> {
    let mut problems = Vec::new();
    match cap.terminate_within(STOP_TIMEOUT + STOP_MARGIN) {
        None => problems.push(format!(
            "SIGTERM {what}: log-capturer did not exit within {:?} (--stop-timeout {STOP_TIMEOUT:?} + {STOP_MARGIN:?}); SIGKILLed it",
            STOP_TIMEOUT + STOP_MARGIN
        )),
        Some((status, took)) => {
            eprintln!("durability: SIGTERM {what}: {status} after {took:?}");
            if status.code() != Some(1) {
                problems.push(format!("SIGTERM {what}: exit {status}, not exit code 1"));
            }
        }
    }
    problems
}

#[tokio::test]
async fn a_stop_while_the_disk_is_full_ends_in_time_with_one_message_and_loses_nothing() {
    let Some(docker) = docker().await else { return };
    let _serial = exclusive().await;
    let (sel, labels) = label("d3");
    let timeout = format!("{}s", STOP_TIMEOUT.as_secs());
    let mut cap = Capturer::prepare("d3", &sel, &["--stop-timeout", &timeout]);
    // The output directory (and the state under it) on a 4 MiB tmpfs of its own.
    let out = cap.output.join("out");
    let tmpfs = Tmpfs::mount(&out, "4m");
    std::fs::create_dir_all(out.join(".state")).expect("create the state directory");
    cap.restart();
    let filler = out.join("filler");
    let filled = fill(&filler);
    eprintln!("durability: the tmpfs is full ({filled} bytes of filler)");
    let id = start(&docker, &spec(&labels, &pairs("f", 2_000)))
        .await
        .expect("start");
    wait_exit(&docker, &id).await;
    // The sink fails: wait until the log says so, then let it retry a while.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !cap.log_text().lines().any(is_enospc) {
        assert!(
            Instant::now() < deadline,
            "the capturer never reported the full disk:\n{}",
            tail(&cap.log_text(), 40)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(4)).await;
    let metrics = cap.metrics_text();
    let retries = metrics
        .contains("log_capturer_sink_retries_total")
        .then(|| cap.metric_sum("log_capturer_sink_retries_total"));
    let mut problems = stop_that_cannot_write(&mut cap, "with the disk full");
    let log = cap.log_text();
    let kinds = sink_error_kinds(&metrics);
    match retries {
        None => problems.push("no log_capturer_sink_retries_total while the sink failed".into()),
        Some(n) if n <= 0.0 => problems.push(format!(
            "log_capturer_sink_retries_total is {n} while the sink failed"
        )),
        Some(_) => {}
    }
    if kinds.is_empty() {
        problems.push("no log_capturer_sink_errors_total{kind=...} while the sink failed".into());
    }
    // One line per kind of error, and one for the stop that gave up: not one per retry.
    let reported: Vec<&str> = log.lines().filter(|l| is_enospc(l)).collect();
    if reported.len() > kinds.len().max(1) + 1 {
        problems.push(format!(
            "the full disk is reported in {} lines of the log ({} error kinds {kinds:?}, {retries:?} retries): once per kind, not once per retry",
            reported.len(),
            kinds.len()
        ));
    }
    if log.contains("panicked") {
        problems.push("the capturer panicked".into());
    }
    assert!(
        problems.is_empty(),
        "{}\n--- lines reporting the full disk ---\n{}\n--- log (last 20 lines) ---\n{}\n--- sink metrics ---\n{}",
        problems.join("\n"),
        reported.join("\n"),
        tail(&log, 20),
        metrics
            .lines()
            .filter(|l| l.contains("sink"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    // Room again: the next start delivers everything, once.
    std::fs::remove_file(&filler).expect("remove the filler");
    cap.restart();
    wait_until(&cap, &id, Duration::from_secs(30), unique_at_least(4_000));
    let status = cap.terminate();
    let truth = daemon_lines(&docker, &id, false).await;
    let read = cap.records_lenient(&id);
    assert_exactly_once(
        &truth,
        &read,
        &cap,
        "after a stop with the disk full and a start with room",
    );
    let s = by_stream(&read.records);
    assert_eq!(s["stdout"], numbered("f o", 0..2_000));
    assert_eq!(s["stderr"], numbered("f e", 0..2_000));
    assert_stopped_cleanly(status, &cap);
    remove(&docker, &id).await;
    // Unmounted first, so that the capturer's drop removes the whole output directory.
    drop(tmpfs);
    drop(cap);
}

#[tokio::test]
async fn a_stop_while_stdout_is_not_read_ends_in_time_and_loses_nothing() {
    let Some(docker) = docker().await else { return };
    let _serial = exclusive().await;
    let (sel, labels) = label("d4");
    let timeout = format!("{}s", STOP_TIMEOUT.as_secs());
    // Both runs keep their cursors in the same state directory (the default, under --output).
    let flags = ["--sink", "stdout", "--stop-timeout", &timeout];
    let mut cap = Capturer::prepare("d4", &sel, &flags);
    cap.pipe_stdout(true);
    cap.restart();
    let mut pipe = cap.take_stdout().expect("the stdout pipe");
    // 4,000 lines of about 250 bytes of JSON each: the 64 KiB pipe holds a few hundred.
    let id = start(&docker, &spec(&labels, &pairs("p", 2_000)))
        .await
        .expect("start");
    wait_exit(&docker, &id).await;
    // Full: nothing more comes for a second.
    let held = wait_until_full(&cap, &pipe).await;
    assert!(
        held >= 32 * 1024,
        "the pipe holds {held} bytes: the capturer was not blocked on it"
    );
    let mut problems = stop_that_cannot_write(&mut cap, "with stdout not read");
    let log = cap.log_text();
    if log.contains("panicked") {
        problems.push("the capturer panicked".into());
    }
    assert!(
        problems.is_empty(),
        "{}\n--- log (last 20 lines) ---\n{}",
        problems.join("\n"),
        tail(&log, 20)
    );
    // What the pipe held, a torn last fragment dropped; then a second run, read normally.
    let mut first = Vec::new();
    pipe.read_to_end(&mut first).expect("read the stdout pipe");
    let mut read = Lenient::read(&first);
    let fragment = std::mem::take(&mut read.unterminated);
    let in_pipe = read.records.len();
    cap.pipe_stdout(false);
    cap.restart();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let second = std::fs::read(cap.stdout_path()).unwrap_or_default();
        let mut all = read.clone();
        all.add(&second);
        if unique_at_least(4_000)(&all.records) || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let status = cap.terminate();
    read.add(&std::fs::read(cap.stdout_path()).unwrap_or_default());
    let truth = daemon_lines(&docker, &id, false).await;
    let context = format!(
        "the first run's {in_pipe} records in the pipe ({} bytes, a torn last fragment of {fragment} dropped), then a second run's {}",
        first.len(),
        read.records.len() - in_pipe
    );
    eprintln!("durability: {context}");
    assert_exactly_once(&truth, &read, &cap, &context);
    let s = by_stream(&read.records);
    assert_eq!(s["stdout"], numbered("p o", 0..2_000));
    assert_eq!(s["stderr"], numbered("p e", 0..2_000));
    assert_stopped_cleanly(status, &cap);
    remove(&docker, &id).await;
}
