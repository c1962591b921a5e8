//! The end-to-end tests' oracle: what "exactly once" means when comparing a capture with the
//! daemon's own log, and the labels that keep each test's containers apart.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::capturer::{Capturer, Lenient, Record};
use crate::{DaemonLine, Spec};

/// The label key of end-to-end test containers (`scripts/test.sh` removes leftovers by it).
pub const LABEL_KEY: &str = "lc.e2e";

/// A label unique to this test run and test: the `--include-label` selector, and the labels.
pub fn label(test: &str) -> (String, HashMap<String, String>) {
    let value = format!("{test}-{}", std::process::id());
    (
        format!("{LABEL_KEY}={value}"),
        HashMap::from([(LABEL_KEY.to_owned(), value)]),
    )
}

/// A container running `script` with `labels`, otherwise the defaults.
pub fn spec(labels: &HashMap<String, String>, script: &str) -> Spec {
    Spec {
        script: script.to_owned(),
        labels: labels.clone(),
        ..Spec::default()
    }
}

/// Asserts that `got` holds exactly the daemon's lines `truth`: per stream, in order, with the
/// same timestamps and messages; on failure names the first difference and shows the
/// capturer's log.
pub fn assert_same(truth: &[DaemonLine], got: &[Record], cap: &Capturer) {
    let want = streams(
        truth
            .iter()
            .map(|l| (l.stream.as_str(), l.ts.as_str(), l.message.as_str())),
    );
    let have = streams(
        got.iter()
            .map(|r| (r.stream.as_str(), r.ts.as_str(), r.message.as_str())),
    );
    for (stream, w) in &want {
        let h = have.get(stream).cloned().unwrap_or_default();
        if let Some(i) = (0..w.len().max(h.len())).find(|&i| w.get(i) != h.get(i)) {
            panic!(
                "{stream}: captured {} lines, the daemon has {}; first difference at line {i}: captured {:?}, daemon {:?}\n--- capturer log ---\n{}",
                h.len(),
                w.len(),
                h.get(i),
                w.get(i),
                cap.log_text()
            );
        }
    }
    assert_eq!(
        have.len(),
        want.len(),
        "streams captured: {:?}",
        have.keys().collect::<Vec<_>>()
    );
}

/// `(timestamp, message)` per stream, in order.
type Lines = HashMap<String, Vec<(String, String)>>;

fn streams<'a>(lines: impl Iterator<Item = (&'a str, &'a str, &'a str)>) -> Lines {
    let mut out: Lines = HashMap::new();
    for (s, ts, m) in lines {
        out.entry(s.to_owned())
            .or_default()
            .push((ts.to_owned(), m.to_owned()));
    }
    out
}

/// `prefix 0`, `prefix 1`, ...: what a numbered writer wrote, for the indices in `range`.
pub fn numbered(prefix: &str, range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("{prefix} {i}")).collect()
}

/// Waits until `done` holds for what the capture of `id` holds so far (read leniently: the
/// capturer may be writing, or a SIGKILL cut a record short), or `limit` passes; then one
/// second more, so that a line written twice after the last one is seen too.
pub fn wait_until(cap: &Capturer, id: &str, limit: Duration, done: impl Fn(&[Record]) -> bool) {
    let deadline = Instant::now() + limit;
    while !done(&cap.records_lenient(id).records) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(1));
}

/// Shell that writes `<p> o $i` to stdout and `<p> e $i` to stderr for `$i` in `0..n`, as fast
/// as the shell can.
pub fn pairs(p: &str, n: usize) -> String {
    format!(
        "i=0; while [ $i -lt {n} ]; do echo \"{p} o $i\"; echo \"{p} e $i\" >&2; i=$((i+1)); done"
    )
}

/// Whether `records` hold at least `n` different lines (stream and position).
pub fn unique_at_least(n: usize) -> impl Fn(&[Record]) -> bool {
    move |records| {
        let unique: std::collections::HashSet<(&str, &str)> = records
            .iter()
            .map(|r| (r.stream.as_str(), r.pos.as_str()))
            .collect();
        unique.len() >= n
    }
}

/// Whether `records` hold at least `n` lines.
pub fn at_least(n: usize) -> impl Fn(&[Record]) -> bool {
    move |records| records.len() >= n
}

/// A graceful stop exits 0. Tests stop the capturer before they read the daemon's log, so that
/// what it captured is final and a capturer stuck reopening no longer loads the daemon; they
/// check the status after the comparison, so that a loss is reported as a loss.
pub fn assert_stopped_cleanly(status: std::process::ExitStatus, cap: &Capturer) {
    assert!(
        status.success(),
        "graceful stop exits 0, got {status}:\n{}",
        cap.log_text()
    );
}

/// Where `records` break the `pos` contract: per stream, one position for each line (a line
/// read again after a SIGKILL carries the position it had), a different one for every other
/// line, in increasing order of first appearance, and its timestamp part equal to `ts`.
pub fn position_faults(records: &[Record]) -> Vec<String> {
    let mut faults = Vec::new();
    let mut at: HashMap<(&str, &str), (&str, &str)> = HashMap::new();
    let mut last: HashMap<&str, (u64, u64)> = HashMap::new();
    for r in records {
        let parsed = r
            .pos
            .split_once('.')
            .and_then(|(t, n)| Some((t.parse::<u64>().ok()?, n.parse::<u64>().ok()?)));
        let Some((t, n)) = parsed else {
            faults.push(format!(
                "{} {}: pos {:?} is not <ns>.<n>",
                r.stream, r.ts, r.pos
            ));
            continue;
        };
        let ts = capturer_core::Timestamp::parse_rfc3339(r.ts.as_bytes())
            .map(|t| t.0)
            .ok();
        if ts != Some(t) || n == 0 {
            faults.push(format!(
                "{} {}: pos {} does not match its ts",
                r.stream, r.ts, r.pos
            ));
        }
        match at.insert((&r.stream, &r.pos), (&r.ts, &r.message)) {
            Some(before) if before != (r.ts.as_str(), r.message.as_str()) => {
                faults.push(format!("{} pos {}: two different lines", r.stream, r.pos));
            }
            Some(_) => {}
            None => {
                let prev = last.insert(&r.stream, (t, n));
                if prev.is_some_and(|p| p >= (t, n)) {
                    faults.push(format!("{} pos {}: not after {prev:?}", r.stream, r.pos));
                }
            }
        }
    }
    faults
}

/// Every copy after the first of a line: a record whose stream and position came before.
pub fn duplicates(records: &[Record]) -> Vec<&Record> {
    let mut seen = std::collections::HashSet::new();
    records
        .iter()
        .filter(|r| !seen.insert((r.stream.as_str(), r.pos.as_str())))
        .collect()
}

/// Asserts that `read` holds each of the daemon's lines `truth` exactly once: no torn line and
/// nothing after the last newline, no line twice (same stream and position, across every
/// output file), positions consistent ([`position_faults`]), and then [`assert_same`].
/// `context` says what the capture went through (e.g. `after 21 SIGKILLs`); the failure names
/// the figures, e.g. `after 21 SIGKILLs: 5400 duplicates, 19 torn lines`.
pub fn assert_exactly_once(truth: &[DaemonLine], read: &Lenient, cap: &Capturer, context: &str) {
    let twice = duplicates(&read.records);
    let faults = position_faults(&read.records);
    if !twice.is_empty() || read.torn > 0 || read.unterminated > 0 || !faults.is_empty() {
        panic!(
            "{context}: {} duplicates among {} records (the daemon has {} lines), {} torn lines, {} bytes after the last newline, {} position faults; first duplicate: {:?}; first position fault: {:?}\n--- capturer log (last 40 lines) ---\n{}",
            twice.len(),
            read.records.len(),
            truth.len(),
            read.torn,
            read.unterminated,
            faults.len(),
            twice.first().map(|r| (&r.stream, &r.pos, &r.message)),
            faults.first(),
            tail(&cap.log_text(), 40),
        );
    }
    assert_same(truth, &read.records, cap);
}

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
