//! End to end: six ways the capturer lost or duplicated lines (issue cases 1 to 6), each
//! replayed deterministically against the real daemon and the real binary. Every test proves
//! that each line a container wrote is captured exactly once: per stream, in order, with the
//! daemon's own timestamps (compared with the daemon's log) and equal to the numbered lines the
//! script wrote.
//!
//! What makes them deterministic: cases 1, 2, 3 and 5 lose lines through a livelock. Reopening
//! a log stream with `since` makes the daemon decode the container's whole json-file log before
//! it sends the first new line (200,000 to 700,000 lines/s here, the less the busier the
//! machine; `docs/daemon.md`); once that takes longer than `--rotate-every`, every new reader
//! was cancelled by the rotation before it delivered anything and the cursor never moved
//! again. The runs hit that one time in three; these tests make it certain on the old
//! code: logs of 60,000 to 120,000 lines against a rotation of 20 or 50 ms, so one reopen's
//! scan takes several rotation intervals.
//! Case 4 (a container that ran while the capturer was down) and case 6 (the daemon's follow
//! stream re-sending lines after its own file rotation) do not depend on timing.

// Test tooling: a helper that cannot read what the capturer persisted must fail the test.
#![allow(clippy::expect_used)]

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use bollard::query_parameters::RestartContainerOptionsBuilder;
use bollard::Docker;
use capturer_tests::audit::assert_audit_exact;
use capturer_tests::capturer::{by_stream, exclusive, Capturer, Record};
use capturer_tests::exact::{
    assert_exactly_once, assert_same, assert_stopped_cleanly, at_least, label, numbered, spec,
    wait_until,
};
use capturer_tests::{daemon_lines, docker, remove, start, wait_exit};

/// Shell that writes `o $i` to stdout and `e $i` to stderr for `$i` from `from` to `to - 1`,
/// as fast as the shell can (about 75,000 lines/s here). Leaves `$i` at `to`.
fn pairs(from: usize, to: usize) -> String {
    format!(
        "i={from}; while [ $i -lt {to} ]; do echo \"o $i\"; echo \"e $i\" >&2; i=$((i+1)); done"
    )
}

/// Asserts that the capture of `id` holds exactly the daemon's lines: per stream, in order,
/// with the same timestamps.
async fn assert_exact(docker: &Docker, cap: &Capturer, id: &str) -> Vec<Record> {
    let truth = daemon_lines(docker, id, false).await;
    let got = cap.records(id);
    assert_same(&truth, &got, cap);
    got
}

// Issue case 1: a fast writer under a short rotation; capture stopped short for good.
#[tokio::test]
async fn case1_sixty_thousand_lines_through_rotation_every_20ms_are_captured_whole() {
    let Some(docker) = docker().await else { return };
    let _serial = exclusive().await;
    let (sel, labels) = label("x1");
    let mut cap = Capturer::start("x1", &sel, &["--rotate-every", "20ms"]);
    // 60,000 lines in about a second: the log outgrows what the daemon decodes in 20 ms long
    // before the writer ends, and every rotation after that reopens on a larger log.
    let id = start(&docker, &spec(&labels, &pairs(0, 30_000)))
        .await
        .expect("start");
    wait_exit(&docker, &id).await;
    wait_until(&cap, &id, Duration::from_secs(30), at_least(60_000));
    let status = cap.terminate();
    let got = assert_exact(&docker, &cap, &id).await;
    let s = by_stream(&got);
    assert_eq!(s["stdout"], numbered("o", 0..30_000));
    assert_eq!(s["stderr"], numbered("e", 0..30_000));
    assert_stopped_cleanly(status, &cap);
    remove(&docker, &id).await;
}

// Issue case 2: stopped, then started against the exited container; 60 lines, then nothing.
#[tokio::test]
async fn case2_restarted_against_an_exited_container_with_a_large_log_reads_it_all() {
    let Some(docker) = docker().await else { return };
    let _serial = exclusive().await;
    let (sel, labels) = label("x2");
    let mut cap = Capturer::start("x2", &sel, &["--rotate-every", "50ms"]);
    // The container writes 2,000 lines, waits for the test to create /gate/go, then writes
    // 90,000 more and exits: the capturer is stopped at a known point of a small log and
    // started again against a large log of an exited container (the daemon decodes about
    // 40,000 lines in 50 ms here when idle, fewer when busy).
    let gate = cap.output.join("gate");
    std::fs::create_dir_all(&gate).expect("create the gate directory");
    let script = format!(
        "{}; while [ ! -f /gate/go ]; do sleep 0.05; done; {}",
        pairs(0, 1_000),
        pairs(1_000, 46_000)
    );
    let mut s = spec(&labels, &script);
    s.binds = vec![format!("{}:/gate", gate.display())];
    let id = start(&docker, &s).await.expect("start");
    wait_until(&cap, &id, Duration::from_secs(30), at_least(2_000));
    let status = cap.terminate();
    assert_stopped_cleanly(status, &cap);
    assert_eq!(
        cap.records(&id).len(),
        2_000,
        "the first 2,000 lines before the stop"
    );
    std::fs::write(gate.join("go"), b"").expect("open the gate");
    wait_exit(&docker, &id).await;
    cap.restart();
    wait_until(&cap, &id, Duration::from_secs(30), at_least(92_000));
    let status = cap.terminate();
    let got = assert_exact(&docker, &cap, &id).await;
    let s = by_stream(&got);
    assert_eq!(s["stdout"], numbered("o", 0..46_000));
    assert_eq!(s["stderr"], numbered("e", 0..46_000));
    assert_stopped_cleanly(status, &cap);
    // The operator's judge agrees with the test's own.
    assert_audit_exact(&cap, &[&id]);
    remove(&docker, &id).await;
}

// Issue case 3: two `docker restart -t 1` around a capturer restart; half the lines lost.
#[tokio::test]
async fn case3_container_restarted_twice_around_a_capturer_restart_loses_nothing() {
    let Some(docker) = docker().await else { return };
    let _serial = exclusive().await;
    let (sel, labels) = label("x3");
    let began = Instant::now();
    let mut cap = Capturer::start("x3", &sel, &["--rotate-every", "20ms"]);
    // Each run writes 2,000 lines per stream at about 1,000 lines/s, numbered by run (`r1 o
    // 0`, `r1 e 0`, ...). The first run starts with 60,000 lines at full speed (`b o 0`, ...):
    // from then on every reopen, at a rotation, a container restart or the capturer's
    // restart, is on a log the daemon cannot decode within the 20 ms rotation.
    let burst = pairs(0, 30_000)
        .replace("\"o ", "\"b o ")
        .replace("\"e ", "\"b e ");
    // The first run creates /gate/burst when the burst is written: the first restart comes
    // a second after that, however slow the machine.
    let gate = cap.output.join("gate");
    std::fs::create_dir_all(&gate).expect("create the gate directory");
    let script = format!(
        "n=$(cat /tmp/n 2>/dev/null || echo 0); n=$((n+1)); echo $n > /tmp/n; \
         if [ $n -eq 1 ]; then {burst}; touch /gate/burst; fi; \
         i=0; while [ $i -lt 2000 ]; do echo \"r$n o $i\"; echo \"r$n e $i\" >&2; i=$((i+1)); \
         [ $((i % 50)) -eq 0 ] && sleep 0.1; done"
    );
    let mut s = spec(&labels, &script);
    s.binds = vec![format!("{}:/gate", gate.display())];
    let id = start(&docker, &s).await.expect("start");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !gate.join("burst").exists() {
        assert!(Instant::now() < deadline, "the burst was not written");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!("case 3: burst written at {:?}", began.elapsed());
    let restart = RestartContainerOptionsBuilder::default().t(1).build();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    docker
        .restart_container(&id, Some(restart.clone()))
        .await
        .expect("restart");
    eprintln!("case 3: first restart done at {:?}", began.elapsed());
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let status = cap.terminate();
    assert_stopped_cleanly(status, &cap);
    cap.restart();
    eprintln!("case 3: capturer restarted at {:?}", began.elapsed());
    tokio::time::sleep(Duration::from_millis(1000)).await;
    docker
        .restart_container(&id, Some(restart))
        .await
        .expect("restart");
    eprintln!("case 3: second restart done at {:?}", began.elapsed());
    wait_exit(&docker, &id).await;
    eprintln!("case 3: container exited at {:?}", began.elapsed());
    // The third run is never interrupted: its last lines are the log's last.
    wait_until(&cap, &id, Duration::from_secs(30), |records| {
        ["r3 o 1999", "r3 e 1999"]
            .iter()
            .all(|last| records.iter().any(|r| r.message == *last))
    });
    let status = cap.terminate();
    let got = assert_exact(&docker, &cap, &id).await;
    let s = by_stream(&got);
    assert_eq!(s["stdout"][..30_000], numbered("b o", 0..30_000)[..]);
    assert_eq!(s["stderr"][..30_000], numbered("b e", 0..30_000)[..]);
    let runs: std::collections::BTreeSet<&str> = got
        .iter()
        .filter_map(|r| r.message.split(' ').next())
        .filter(|run| run.starts_with('r'))
        .collect();
    assert_eq!(
        runs,
        ["r1", "r2", "r3"].into(),
        "lines from the first run and two restarts"
    );
    let third: Vec<&String> = s["stdout"]
        .iter()
        .filter(|m| m.starts_with("r3 "))
        .collect();
    assert_eq!(third, numbered("r3 o", 0..2_000).iter().collect::<Vec<_>>());
    assert_stopped_cleanly(status, &cap);
    remove(&docker, &id).await;
}

// Issue case 4: a container that ran and exited while the capturer was down; 0 lines captured.
#[tokio::test]
async fn case4_a_container_that_ran_while_the_capturer_was_down_is_captured_on_restart() {
    let Some(docker) = docker().await else { return };
    let _serial = exclusive().await;
    let (sel, labels) = label("x4");
    let writes = |p: &str, n: usize| {
        format!("i=0; while [ $i -lt {n} ]; do echo \"{p} $i\"; i=$((i+1)); done")
    };
    // Exited before the capturer ever ran.
    let before = start(&docker, &spec(&labels, &writes("before", 100)))
        .await
        .expect("start");
    wait_exit(&docker, &before).await;
    // A FIRST start (empty state directory) captures the running containers and those started
    // later, not the containers that had already exited before it: that is intended (nothing
    // says how far back to go). A container it sees run gives it saved state.
    let mut cap = Capturer::start("x4", &sel, &[]);
    let seen = start(&docker, &spec(&labels, &writes("seen", 100)))
        .await
        .expect("start");
    wait_exit(&docker, &seen).await;
    wait_until(&cap, &seen, Duration::from_secs(30), at_least(100));
    assert_exact(&docker, &cap, &seen).await;
    assert!(
        cap.records(&before).is_empty(),
        "a first start does not capture a container that exited before it"
    );
    let status = cap.terminate();
    assert_stopped_cleanly(status, &cap);
    // While it is down: one container runs to completion and exits; another starts and is
    // removed (its lines are gone).
    let missed = start(&docker, &spec(&labels, &writes("missed", 2_000)))
        .await
        .expect("start");
    wait_exit(&docker, &missed).await;
    let gone = start(&docker, &spec(&labels, "echo gone"))
        .await
        .expect("start");
    wait_exit(&docker, &gone).await;
    remove(&docker, &gone).await;
    let log_before_restart = cap.log_text().len();
    cap.restart();
    wait_until(&cap, &missed, Duration::from_secs(20), at_least(2_000));
    let deadline = Instant::now() + Duration::from_secs(10);
    while cap.metric_sum("log_capturer_missed_containers_total") < 1.0 && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let metrics = cap.metrics_text();
    let status = cap.terminate();
    // The container that ran while it was down is captured in full.
    let got = assert_exact(&docker, &cap, &missed).await;
    assert_eq!(by_stream(&got)["stdout"], numbered("missed", 0..2_000));
    // The one removed meanwhile is counted, and reported once.
    let counted: f64 = metrics
        .lines()
        .filter_map(|l| l.strip_prefix("log_capturer_missed_containers_total"))
        .filter_map(|rest| rest.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(
        counted >= 1.0,
        "a container started and removed while the capturer was down is counted in log_capturer_missed_containers_total:\n{metrics}"
    );
    let log = cap.log_text();
    let mentions = log[log_before_restart..]
        .lines()
        .filter(|l| l.contains(&gone[..12]))
        .count();
    assert_eq!(
        mentions, 1,
        "the missed container {gone} is reported in one line of the log:\n{log}"
    );
    assert!(
        cap.records(&before).is_empty(),
        "a container that exited before the first start is never captured"
    );
    assert_stopped_cleanly(status, &cap);
    for id in [&before, &seen, &missed] {
        remove(&docker, id).await;
    }
}

// Issue case 5: three SIGKILLs of the capturer under load; lines lost, and duplicated. Since
// the file sink recovers from its own output (issue 13), a kill duplicates nothing either.
#[tokio::test]
async fn case5_three_sigkills_under_load_lose_nothing_and_duplicate_nothing() {
    let Some(docker) = docker().await else { return };
    let _serial = exclusive().await;
    let (sel, labels) = label("x5");
    let began = Instant::now();
    // The run used --rotate-every 200ms, which lost lines in one of two runs here; at
    // 50 ms a reopen once a log holds more than about 40,000 lines surely outlasts the rotation.
    let mut cap = Capturer::start("x5", &sel, &["--rotate-every", "50ms"]);
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(
            start(&docker, &spec(&labels, &pairs(0, 60_000)))
                .await
                .expect("start"),
        );
    }
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_secs(2)).await;
        cap.kill();
        cap.restart();
    }
    for id in &ids {
        wait_exit(&docker, id).await;
    }
    eprintln!("case 5: the writers exited at {:?}", began.elapsed());
    // Nothing lost: wait until every line arrived (or 45 s passed).
    let deadline = Instant::now() + Duration::from_secs(45);
    for id in &ids {
        let limit = deadline.saturating_duration_since(Instant::now());
        wait_until(&cap, id, limit, |records| {
            let unique: HashSet<(&str, &str)> = records
                .iter()
                .map(|r| (r.stream.as_str(), r.pos.as_str()))
                .collect();
            unique.len() >= 120_000
        });
    }
    eprintln!("case 5: captured at {:?}", began.elapsed());
    let status = cap.terminate();
    for id in &ids {
        let truth = daemon_lines(&docker, id, false).await;
        let read = cap.records_lenient(id);
        assert_exactly_once(&truth, &read, &cap, "case 5, after 3 SIGKILLs");
        let s = by_stream(&read.records);
        assert_eq!(s["stdout"], numbered("o", 0..60_000));
        assert_eq!(s["stderr"], numbered("e", 0..60_000));
        eprintln!("case 5: {id}: {} lines, no duplicate", read.records.len());
    }
    assert_stopped_cleanly(status, &cap);
    for id in &ids {
        remove(&docker, id).await;
    }
}

#[tokio::test]
async fn case6_the_daemons_own_log_rotation_causes_no_duplicate() {
    let Some(docker) = docker().await else { return };
    let _serial = exclusive().await;
    let (sel, labels) = label("x6");
    let mut cap = Capturer::start("x6", &sel, &[]);
    // 20,000 lines at about 2,000 lines/s into a json-file log rotated at 50 kB: the daemon
    // rotates its file about 30 times while the capturer follows it.
    let script = "i=0; while [ $i -lt 20000 ]; do echo \"line $i\"; i=$((i+1)); \
                  [ $((i % 200)) -eq 0 ] && sleep 0.1; done";
    let mut s = spec(&labels, script);
    s.log_driver = Some("json-file".into());
    s.log_opts = HashMap::from([
        ("max-size".to_owned(), "50k".to_owned()),
        ("max-file".to_owned(), "3".to_owned()),
    ]);
    let id = start(&docker, &s).await.expect("start");
    wait_exit(&docker, &id).await;
    wait_until(&cap, &id, Duration::from_secs(30), at_least(20_000));
    let status = cap.terminate();
    let got = cap.records(&id);
    // The daemon keeps only its last files: compare with what the script wrote.
    let messages: Vec<&str> = got.iter().map(|r| r.message.as_str()).collect();
    let want = numbered("line", 0..20_000);
    if let Some(i) = (0..want.len().max(messages.len()))
        .find(|&i| want.get(i).map(String::as_str) != messages.get(i).copied())
    {
        let mut counts: HashMap<&str, usize> = HashMap::new();
        for m in &messages {
            *counts.entry(m).or_default() += 1;
        }
        let twice = counts.values().filter(|&&n| n > 1).count();
        panic!(
            "captured {} lines, the script wrote 20000; {twice} lines captured more than once; first difference at line {i}: captured {:?}, wrote {:?}; around it: {:?}",
            messages.len(),
            got.get(i).map(|r| (&r.ts, &r.message)),
            want.get(i),
            got[i.saturating_sub(2)..(i + 2).min(got.len())]
                .iter()
                .map(|r| (&r.ts, &r.message))
                .collect::<Vec<_>>(),
        );
    }
    assert!(got.iter().all(|r| r.stream == "stdout"));
    // What the daemon still holds (its last files) is the end of the capture, with the same
    // timestamps.
    let truth = daemon_lines(&docker, &id, false).await;
    assert!(
        !truth.is_empty() && truth.len() < got.len(),
        "the daemon holds {} lines",
        truth.len()
    );
    assert_same(&truth, &got[got.len() - truth.len()..], &cap);
    assert_stopped_cleanly(status, &cap);
    remove(&docker, &id).await;
}
