//! End to end: `--max-files` keeps a container's output to N rotated files besides the live
//! one, through SIGKILLs, and deletes nothing a restart needs (issue 17).
//!
//! A container writes 4,000 numbered lines on each stream, paced, while the output rotates every
//! 32 KiB with `--max-files 2`; the capturer is SIGKILLed twice during the writes and started
//! again. Recovery reads back what the output holds beyond the persisted cursor, so if a file
//! holding such lines had been deleted, the restart would write them again (a duplicate) or
//! skip them (a gap). At the end, per stream, what the files hold must be an unbroken suffix of
//! the lines written, ending at the last, with no duplicate; and once checkpoints catch up, at
//! most two rotated files remain.

// Test tooling: a set-up step that fails must fail the test.
#![allow(clippy::expect_used)]

use std::time::{Duration, Instant};

use capturer_tests::capturer::{by_stream, exclusive, Capturer};
use capturer_tests::exact::{label, spec, tail};
use capturer_tests::{docker, remove, start, wait_exit};

const LINES: usize = 4_000;

#[tokio::test]
async fn max_files_keeps_two_rotated_files_and_a_restart_loses_and_repeats_nothing() {
    let Some(docker) = docker().await else { return };
    let _serial = exclusive().await;
    let (sel, labels) = label("retention");
    let flags = ["--max-file-size", "32KiB", "--max-files", "2"];
    let mut cap = Capturer::start("retention", &sel, &flags);
    // 200 pairs, then a pause: about 4 s of writing, a rotation every ~70 pairs.
    let script = format!(
        "i=0; while [ $i -lt {LINES} ]; do echo \"r o $i\"; echo \"r e $i\" >&2; i=$((i+1)); \
         [ $((i % 200)) -eq 0 ] && sleep 0.2; done"
    );
    let id = start(&docker, &spec(&labels, &script))
        .await
        .expect("start");
    for wait in [900, 1300] {
        tokio::time::sleep(Duration::from_millis(wait)).await;
        cap.kill();
        cap.restart();
    }
    wait_exit(&docker, &id).await;
    let last = [format!("r o {}", LINES - 1), format!("r e {}", LINES - 1)];
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let read = cap.records_lenient(&id);
        let done = last
            .iter()
            .all(|l| read.records.iter().any(|r| &r.message == l));
        let rotated = cap.files(&id).len().saturating_sub(1);
        if done && rotated <= 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not done (last lines captured: {done}, {rotated} rotated files):\n{}",
            tail(&cap.log_text(), 20)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let files = cap.files(&id);
    let read = cap.records_lenient(&id);
    assert_eq!(read.torn, 0, "torn records in the output");
    let s = by_stream(&read.records);
    for (stream, tag) in [("stdout", "o"), ("stderr", "e")] {
        let got = &s[stream];
        let first: usize = got
            .first()
            .and_then(|m| m.rsplit(' ').next())
            .and_then(|n| n.parse().ok())
            .expect("a numbered line");
        let want: Vec<String> = (first..LINES).map(|i| format!("r {tag} {i}")).collect();
        assert_eq!(
            got, &want,
            "{stream}: not an unbroken suffix of the lines written, without duplicates"
        );
        assert!(first > 0, "{stream}: nothing was deleted ({files:?})");
    }
    let names: Vec<String> = files
        .iter()
        .filter_map(|p| p.file_name()?.to_str().map(str::to_owned))
        .collect();
    eprintln!("retention: kept {names:?}");
    let status = cap.terminate();
    assert_eq!(status.code(), Some(0), "{}", tail(&cap.log_text(), 20));
    remove(&docker, &id).await;
}
