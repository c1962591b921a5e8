//! End to end: `--sink loki` (issue 15) against the real dockerd and a receiver that decodes
//! and judges pushes as Loki does ([`LokiReceiver`]).
//!
//! Every line must be held by the receiver exactly once: one entry per line, its line the file
//! sink's JSON record, its timestamp the record's `pos`, the container id in structured
//! metadata and never a label. Each test compares what the receiver holds for each container
//! with the daemon's own log ([`assert_received_exactly_once`]).
//!
//! - a, b: the file sink's scenarios (interleaved streams of three containers; protobuf and
//!   JSON bodies, auth and tenant headers, label templates).
//! - c, d, e: rotation every 100 ms, a container restarted, a SIGTERM and a start.
//! - f: SIGKILLs of the capturer at random moments (seed printed; `LC_LOKI_SEED` replays it):
//!   a replay is the same entry, which the receiver drops as Loki does.
//! - g: the receiver answers 500 for 10 s, then recovers; h: a 429 storm.
//! - i: lines over Loki's `max_line_size`: refused with 400, counted, skipped; the rest kept.
//! - j: the same lines with `--loki-max-line-size`: cut to fit, marked truncated, all kept.
//! - k: no Loki at the start; it comes up 3 s later.
//! - l: HTTPS: a CA that did not sign the server is refused; `--loki-ca` with the right one.
//! - m: Loki answers 503 while a writer floods: the capturer's memory stays bounded.

// Test tooling: a set-up step that fails must fail the test.
#![allow(clippy::expect_used)]

use std::time::{Duration, Instant};

use bollard::query_parameters::{RestartContainerOptionsBuilder, StopContainerOptionsBuilder};
use bollard::Docker;
use capturer_tests::capturer::{by_stream, exclusive, free_addr, Capturer};
use capturer_tests::exact::{
    assert_stopped_cleanly, duplicates, label, numbered, pairs, spec, tail, LABEL_KEY,
};
use capturer_tests::gated::{kill_at_random, GatedWriters};
use capturer_tests::loki::{assert_received_exactly_once, Limits, LokiReceiver, Stored};
use capturer_tests::memory::peak_rss_while_flooded;
use capturer_tests::rng::{seed, Rng};
use capturer_tests::tls::make_ca;
use capturer_tests::{daemon_lines, docker, remove, start, wait_exit, DaemonLine};

/// How long a test waits for the receiver to hold every line of its containers.
const DELIVERY_LIMIT: Duration = Duration::from_secs(60);

/// Waits until the receiver holds as many entries of each of `ids` as the daemon has lines
/// (one deadline for all), and returns the daemon's lines of each: call it once the writers
/// are done.
async fn await_delivery(
    docker: &Docker,
    rx: &LokiReceiver,
    ids: &[String],
    limit: Duration,
) -> Vec<Vec<DaemonLine>> {
    let deadline = Instant::now() + limit;
    let mut truths = Vec::new();
    for id in ids {
        let truth = daemon_lines(docker, id, false).await;
        let left = deadline.saturating_duration_since(Instant::now());
        let have = rx.wait_for(id, truth.len(), left).await;
        eprintln!(
            "loki: {}: the daemon has {} lines, the receiver {have} entries",
            &id[..12],
            truth.len()
        );
        truths.push(truth);
    }
    truths
}

/// The lines of `stored` per stream, checked against what a `pairs(p, n)` writer wrote.
fn assert_pairs(stored: &Stored, p: &str, n: usize, context: &str) {
    let s = by_stream(&stored.records);
    assert_eq!(s["stdout"], numbered(&format!("{p} o"), 0..n), "{context}");
    assert_eq!(s["stderr"], numbered(&format!("{p} e"), 0..n), "{context}");
}

/// The sink's lines of `/metrics`, for a report.
fn sink_metrics(cap: &Capturer) -> String {
    cap.metrics_text()
        .lines()
        .filter(|l| l.starts_with("log_capturer_sink"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Asserts the receiver found nothing malformed and refused nothing.
fn assert_clean(rx: &LokiReceiver, context: &str) {
    let stats = rx.stats();
    assert!(
        stats.malformed.is_empty(),
        "{context}: malformed pushes: {:?}",
        stats.malformed
    );
    assert!(
        stats.rejected.is_empty(),
        "{context}: refused entries: {:?}",
        stats.rejected
    );
}

#[tokio::test]
async fn a_interleaved_streams_of_three_containers_protobuf_each_line_once() {
    let Some(docker) = docker().await else { return };
    let _serial = exclusive().await;
    let rx = LokiReceiver::start();
    let url = rx.url();
    let (sel, labels) = label("la");
    let flags = rx.flags(
        &url,
        &["--loki-tenant", "team-a", "--loki-bearer-token", "s3cret"],
    );
    let mut cap = Capturer::start("la", &sel, &flags);
    let mut ids = Vec::new();
    for c in 0..3 {
        let script = pairs(&format!("c{c}"), 2_000);
        ids.push(
            start(&docker, &spec(&labels, &script))
                .await
                .expect("start"),
        );
    }
    for id in &ids {
        wait_exit(&docker, id).await;
    }
    let truths = await_delivery(&docker, &rx, &ids, DELIVERY_LIMIT).await;
    let status = cap.terminate();
    for (c, (id, truth)) in ids.iter().zip(&truths).enumerate() {
        let context = format!("c{c} {}", &id[..12]);
        let stored = rx.stored(id);
        assert_received_exactly_once(truth, &stored, &cap, &context);
        assert_pairs(&stored, &format!("c{c}"), 2_000, &context);
        assert!(
            stored
                .entries
                .iter()
                .all(|e| e.metadata.get("container_id") == Some(id)),
            "{context}: the container id is each entry's structured metadata"
        );
        assert!(cap.files(id).is_empty(), "{context}: no output file");
    }
    // The default labels: container_name, stream, host (no compose label here); one Loki
    // stream per container and stream.
    let sets = rx.label_sets();
    assert_eq!(sets.len(), 6, "{sets:?}");
    for set in &sets {
        let names: Vec<&str> = set.keys().map(String::as_str).collect();
        assert_eq!(names, ["container_name", "host", "stream"], "{set:?}");
    }
    let stats = rx.stats();
    assert_clean(&rx, "protobuf");
    assert!(stats.protobuf > 0 && stats.json == 0, "{stats:?}");
    assert_eq!(stats.accepted, 12_000);
    assert_eq!(stats.tenant.as_deref(), Some("team-a"));
    assert_eq!(stats.authorization.as_deref(), Some("Bearer s3cret"));
    assert_stopped_cleanly(status, &cap);
    for id in &ids {
        remove(&docker, id).await;
    }
}

#[tokio::test]
async fn b_json_bodies_basic_auth_and_label_templates() {
    let Some(docker) = docker().await else { return };
    let _serial = exclusive().await;
    let rx = LokiReceiver::start();
    let url = rx.url();
    let (sel, labels) = label("lb");
    let app = format!("app={{label:{LABEL_KEY}}}");
    let flags = rx.flags(
        &url,
        &[
            "--loki-encoding",
            "json",
            "--loki-username",
            "u",
            "--loki-password",
            "p",
            "--loki-label",
            "job=docker/{image}",
            "--loki-label",
            &app,
            "--loki-label",
            "stream={stream}",
        ],
    );
    let mut cap = Capturer::start("lb", &sel, &flags);
    let mut ids = Vec::new();
    for c in 0..2 {
        let script = pairs(&format!("c{c}"), 1_500);
        ids.push(
            start(&docker, &spec(&labels, &script))
                .await
                .expect("start"),
        );
    }
    for id in &ids {
        wait_exit(&docker, id).await;
    }
    let truths = await_delivery(&docker, &rx, &ids, DELIVERY_LIMIT).await;
    let status = cap.terminate();
    for (c, (id, truth)) in ids.iter().zip(&truths).enumerate() {
        let context = format!("json c{c} {}", &id[..12]);
        let stored = rx.stored(id);
        assert_received_exactly_once(truth, &stored, &cap, &context);
        assert_pairs(&stored, &format!("c{c}"), 1_500, &context);
    }
    // Both containers share the label sets: one per stream, the lines of both in it.
    let sets = rx.label_sets();
    assert_eq!(sets.len(), 2, "{sets:?}");
    for set in &sets {
        assert_eq!(set["job"], format!("docker/{}", capturer_tests::IMAGE));
        assert_eq!(set["app"], labels[LABEL_KEY]);
        assert_eq!(set.len(), 3, "{set:?}");
    }
    let stats = rx.stats();
    assert_clean(&rx, "json");
    assert!(stats.json > 0 && stats.protobuf == 0, "{stats:?}");
    // base64("u:p")
    assert_eq!(stats.authorization.as_deref(), Some("Basic dTpw"));
    assert_stopped_cleanly(status, &cap);
    for id in &ids {
        remove(&docker, id).await;
    }
}

#[tokio::test]
async fn c_continuous_writing_through_rotation_every_100ms() {
    let Some(docker) = docker().await else { return };
    let _serial = exclusive().await;
    let rx = LokiReceiver::start();
    let url = rx.url();
    let (sel, labels) = label("lc");
    let mut cap = Capturer::start(
        "lc",
        &sel,
        &rx.flags(
            &url,
            &["--rotate-every", "100ms", "--rotate-when-quiet", "0"],
        ),
    );
    let script = "j=0; while [ $j -lt 60 ]; do k=0; while [ $k -lt 10 ]; do \
                  echo \"o $j.$k\"; echo \"e $j.$k\" >&2; k=$((k+1)); done; sleep 0.1; j=$((j+1)); done";
    let id = start(&docker, &spec(&labels, script)).await.expect("start");
    wait_exit(&docker, &id).await;
    let truths = await_delivery(&docker, &rx, std::slice::from_ref(&id), DELIVERY_LIMIT).await;
    let rotations = cap
        .metric("log_capturer_stream_rotations_total")
        .unwrap_or(0.0);
    let status = cap.terminate();
    let stored = rx.stored(&id);
    assert_received_exactly_once(&truths[0], &stored, &cap, "rotation every 100 ms");
    assert_eq!(by_stream(&stored.records)["stdout"].len(), 600);
    assert!(rotations >= 20.0, "saw {rotations} rotations in 6 s");
    assert_clean(&rx, "rotation");
    assert_stopped_cleanly(status, &cap);
    remove(&docker, &id).await;
}

#[tokio::test]
async fn d_a_container_restarted_three_times_while_writing() {
    let Some(docker) = docker().await else { return };
    let _serial = exclusive().await;
    let rx = LokiReceiver::start();
    let url = rx.url();
    let (sel, labels) = label("ld");
    let mut cap = Capturer::start("ld", &sel, &rx.flags(&url, &[]));
    let script = "n=$(cat /tmp/n 2>/dev/null || echo 0); n=$((n+1)); echo $n > /tmp/n; i=0; \
                  while [ $i -lt 100000 ]; do echo \"r$n o $i\"; echo \"r$n e $i\" >&2; i=$((i+1)); \
                  [ $((i % 50)) -eq 0 ] && sleep 0.05; done";
    let id = start(&docker, &spec(&labels, script)).await.expect("start");
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(700)).await;
        let opts = RestartContainerOptionsBuilder::default().t(0).build();
        docker
            .restart_container(&id, Some(opts))
            .await
            .expect("restart");
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    let opts = StopContainerOptionsBuilder::default().t(0).build();
    docker.stop_container(&id, Some(opts)).await.expect("stop");
    let truths = await_delivery(&docker, &rx, std::slice::from_ref(&id), DELIVERY_LIMIT).await;
    let status = cap.terminate();
    let stored = rx.stored(&id);
    assert_received_exactly_once(&truths[0], &stored, &cap, "three restarts");
    let runs: std::collections::BTreeSet<&str> = stored
        .records
        .iter()
        .filter_map(|r| r.message.split(' ').next())
        .collect();
    assert_eq!(runs.len(), 4, "the first run and three restarts: {runs:?}");
    assert_clean(&rx, "restarts");
    assert_stopped_cleanly(status, &cap);
    remove(&docker, &id).await;
}

/// A writer that runs about 5 s: 50 bursts of 20 lines per stream, 100 ms apart.
const STEADY: &str = "j=0; while [ $j -lt 50 ]; do k=0; while [ $k -lt 20 ]; do \
                      echo \"o $j.$k\"; echo \"e $j.$k\" >&2; k=$((k+1)); done; sleep 0.1; j=$((j+1)); done";

#[tokio::test]
async fn e_sigterm_mid_stream_then_a_start_resumes_exactly() {
    let Some(docker) = docker().await else { return };
    let _serial = exclusive().await;
    let rx = LokiReceiver::start();
    let url = rx.url();
    let (sel, labels) = label("le");
    let mut cap = Capturer::start("le", &sel, &rx.flags(&url, &[]));
    let id = start(&docker, &spec(&labels, STEADY)).await.expect("start");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let first = cap.terminate();
    let before = rx.count(&id);
    assert!(before > 0, "something was pushed before the stop");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    cap.restart();
    wait_exit(&docker, &id).await;
    let truths = await_delivery(&docker, &rx, std::slice::from_ref(&id), DELIVERY_LIMIT).await;
    let status = cap.terminate();
    let context = format!("a SIGTERM after {before} entries, then a start");
    let stored = rx.stored(&id);
    assert_received_exactly_once(&truths[0], &stored, &cap, &context);
    assert_eq!(by_stream(&stored.records)["stdout"].len(), 1_000);
    assert_eq!(
        rx.stats().duplicates,
        0,
        "{context}: a graceful stop persists what Loki holds; nothing is sent twice"
    );
    assert_clean(&rx, &context);
    assert_stopped_cleanly(first, &cap);
    assert_stopped_cleanly(status, &cap);
    remove(&docker, &id).await;
}

/// Writers in the SIGKILL test.
const WRITERS: usize = 2;
/// SIGKILLs of the capturer in the SIGKILL test (each followed by a start).
const KILLS: usize = 12;

#[tokio::test]
async fn f_sigkills_of_the_capturer_at_random_moments_lose_nothing_and_loki_drops_the_replays() {
    let Some(docker) = docker().await else { return };
    let _serial = exclusive().await;
    let rx = LokiReceiver::start();
    let url = rx.url();
    let seed = seed("LC_LOKI_SEED");
    eprintln!("loki: seed {seed} (LC_LOKI_SEED={seed} replays the kill moments)");
    let mut rng = Rng::new(seed);
    let (sel, labels) = label("lf");
    // Small batches closed often: more requests in flight when a kill comes.
    let flags = rx.flags(
        &url,
        &[
            "--rotate-every",
            "100ms",
            "--loki-batch-wait",
            "50ms",
            "--loki-batch-size",
            "16KiB",
        ],
    );
    let mut cap = Capturer::start("lf", &sel, &flags);
    let writers = GatedWriters::start(&docker, &cap, &labels, WRITERS).await;
    let moments = kill_at_random(&mut cap, &mut rng, KILLS, 1000.0).await;
    writers.stop(&docker).await;
    let ids = writers.ids;
    eprintln!("loki: {KILLS} SIGKILLs (after {moments:?} ms) done, writers stopped");
    let truths = await_delivery(&docker, &rx, &ids, DELIVERY_LIMIT).await;
    let status = cap.terminate();
    let stats = rx.stats();
    for (c, (id, truth)) in ids.iter().zip(&truths).enumerate() {
        let context = format!("c{c} {} after {KILLS} SIGKILLs (seed {seed})", &id[..12]);
        let stored = rx.stored(id);
        eprintln!(
            "loki: {context}: {} entries, {} duplicate records, the daemon has {} lines",
            stored.entries.len(),
            duplicates(&stored.records).len(),
            truth.len()
        );
        assert_received_exactly_once(truth, &stored, &cap, &context);
        let n = by_stream(&stored.records)["stdout"].len();
        assert!(n >= 40, "{context}: only {n} lines per stream were written");
        assert_pairs(&stored, &format!("c{c}"), n, &context);
    }
    eprintln!(
        "loki: the receiver dropped {} identical replays; {} requests",
        stats.duplicates,
        stats.status.values().sum::<u64>()
    );
    assert_clean(&rx, "SIGKILLs");
    assert_stopped_cleanly(status, &cap);
    for id in &ids {
        remove(&docker, id).await;
    }
}

#[tokio::test]
async fn g_500_for_ten_seconds_then_recovers_nothing_lost() {
    let Some(docker) = docker().await else { return };
    let _serial = exclusive().await;
    let rx = LokiReceiver::start();
    let url = rx.url();
    let (sel, labels) = label("lg");
    let mut cap = Capturer::start("lg", &sel, &rx.flags(&url, &[]));
    let outage = Duration::from_secs(10);
    rx.fail_for(500, outage);
    let began = Instant::now();
    let id = start(&docker, &spec(&labels, STEADY)).await.expect("start");
    tokio::time::sleep(Duration::from_secs(8)).await;
    assert_eq!(rx.count(&id), 0, "nothing is accepted during the outage");
    assert!(
        cap.metric("log_capturer_tasks_alive").is_some(),
        "the capturer runs on through 500s:\n{}",
        tail(&cap.log_text(), 20)
    );
    wait_exit(&docker, &id).await;
    let truths = await_delivery(&docker, &rx, std::slice::from_ref(&id), DELIVERY_LIMIT).await;
    let recovered = began.elapsed();
    let stats = rx.stats();
    let metrics = sink_metrics(&cap);
    eprintln!(
        "loki: 500 for 10 s: {} requests answered 500, all delivered {recovered:?} after the outage began; sink metrics:\n{metrics}",
        stats.answered(500)
    );
    let errors = cap.metric_sum("log_capturer_sink_errors_total");
    let retries = cap.metric_sum("log_capturer_sink_retries_total");
    let status = cap.terminate();
    let stored = rx.stored(&id);
    assert_received_exactly_once(&truths[0], &stored, &cap, "500 for 10 s");
    assert_eq!(by_stream(&stored.records)["stdout"].len(), 1_000);
    assert!(
        stats.answered(500) >= 4,
        "retried with backoff through 10 s: {:?}",
        stats.status
    );
    assert!(
        stats.answered(500) < 200,
        "backoff, not a busy loop: {:?}",
        stats.status
    );
    assert!(errors > 0.0 && retries > 0.0, "{metrics}");
    assert!(
        recovered < outage + Duration::from_secs(25),
        "delivered {recovered:?} after a 10 s outage began"
    );
    let log = cap.log_text();
    assert_eq!(
        log.matches("no healthy ingesters").count(),
        1,
        "Loki's text logged once while it keeps failing:\n{}",
        tail(&log, 20)
    );
    assert_clean(&rx, "500s");
    assert_stopped_cleanly(status, &cap);
    remove(&docker, &id).await;
}

/// Writers of the 429 storm: 60 bursts of 25 lines per stream, 100 ms apart (about 7 s).
const BURSTS: &str = "j=0; while [ $j -lt 60 ]; do k=0; while [ $k -lt 25 ]; do \
                      echo \"o $j.$k\"; echo \"e $j.$k\" >&2; k=$((k+1)); done; sleep 0.1; j=$((j+1)); done";

#[tokio::test]
async fn h_a_429_storm_slows_the_sink_and_loses_nothing() {
    let Some(docker) = docker().await else { return };
    let _serial = exclusive().await;
    let rx = LokiReceiver::start();
    let url = rx.url();
    let (sel, labels) = label("lh");
    // Small batches: many requests, three in four refused while the storm lasts.
    let flags = rx.flags(
        &url,
        &["--loki-batch-size", "8KiB", "--loki-batch-wait", "100ms"],
    );
    let mut cap = Capturer::start("lh", &sel, &flags);
    let storm = Duration::from_secs(10);
    rx.storm(429, 4, storm);
    let began = Instant::now();
    let mut ids = Vec::new();
    for _ in 0..2 {
        ids.push(start(&docker, &spec(&labels, BURSTS)).await.expect("start"));
    }
    for id in &ids {
        wait_exit(&docker, id).await;
    }
    let truths = await_delivery(&docker, &rx, &ids, DELIVERY_LIMIT).await;
    let stats = rx.stats();
    let metrics = sink_metrics(&cap);
    eprintln!(
        "loki: 429 storm of {storm:?}: {:?} answers, all delivered after {:?}; sink metrics:\n{metrics}",
        stats.status,
        began.elapsed()
    );
    let status = cap.terminate();
    let want: Vec<String> = (0..60)
        .flat_map(|j| (0..25).map(move |k| format!("{j}.{k}")))
        .collect();
    for (c, (id, truth)) in ids.iter().zip(&truths).enumerate() {
        let context = format!("c{c} through a 429 storm");
        let stored = rx.stored(id);
        assert_received_exactly_once(truth, &stored, &cap, &context);
        let s = by_stream(&stored.records);
        let o: Vec<String> = want.iter().map(|x| format!("o {x}")).collect();
        assert_eq!(s["stdout"], o, "{context}");
    }
    // Three in four refused; each refusal in a row doubles the lane's wait (0.25, 0.5, 1 s,
    // with jitter), so about five gusts of three refusals in 10 s.
    assert!(stats.answered(429) >= 6, "{:?}", stats.status);
    assert!(
        metrics.contains("log_capturer_sink_errors_total{kind=\"quota_exceeded\"}"),
        "{metrics}"
    );
    // Logged once per kind until the sink works again: once per gust, not once per 429.
    let logged = cap
        .log_text()
        .matches("Ingestion rate limit exceeded")
        .count();
    assert!(
        logged >= 1 && (logged as u64) < stats.answered(429),
        "Loki's 429 text logged {logged} times for {} refusals",
        stats.answered(429)
    );
    assert_clean(&rx, "429 storm");
    assert_stopped_cleanly(status, &cap);
    for id in &ids {
        remove(&docker, id).await;
    }
}

/// Lines longer than the receiver's `max_line_size` in the rejection test, and their length.
const LONG_LINES: usize = 3;
const MAX_LINE: usize = 1_000;

#[tokio::test]
async fn i_lines_over_max_line_size_are_refused_counted_and_skipped_the_rest_kept() {
    let Some(docker) = docker().await else { return };
    let _serial = exclusive().await;
    let rx = LokiReceiver::with_limits(Limits {
        max_line_size: MAX_LINE,
        ..Limits::default()
    });
    let url = rx.url();
    let (sel, labels) = label("li");
    let mut cap = Capturer::start("li", &sel, &rx.flags(&url, &[]));
    // 600 short lines, with a 1,500-byte line after every 200th.
    let script = "long=$(printf '%1500s' | tr ' ' x); i=0; while [ $i -lt 600 ]; do \
                  echo \"s $i\"; i=$((i+1)); [ $((i % 200)) -eq 0 ] && echo \"L $long\"; done; true";
    let id = start(&docker, &spec(&labels, script)).await.expect("start");
    wait_exit(&docker, &id).await;
    let truth = daemon_lines(&docker, &id, false).await;
    assert_eq!(truth.len(), 600 + LONG_LINES);
    let kept: Vec<DaemonLine> = truth
        .iter()
        .filter(|l| !l.message.starts_with("L "))
        .cloned()
        .collect();
    rx.wait_for(&id, kept.len(), DELIVERY_LIMIT).await;
    // The refusals are counted by the time the short lines after them are held.
    let deadline = Instant::now() + Duration::from_secs(10);
    let rejected = loop {
        let n = cap
            .metric("log_capturer_sink_rejected_lines_total{reason=\"line_too_long\"}")
            .unwrap_or(0.0);
        if n >= LONG_LINES as f64 || Instant::now() >= deadline {
            break n;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let status = cap.terminate();
    let stored = rx.stored(&id);
    assert_received_exactly_once(&kept, &stored, &cap, "long lines refused by Loki");
    assert_eq!(
        rejected,
        LONG_LINES as f64,
        "exactly the refused lines are counted:\n{}",
        sink_metrics(&cap)
    );
    // The receiver refused each long line once per request that held it: the sink halves a
    // refused batch until the long line is alone, and counts only then.
    let stats = rx.stats();
    assert!(
        stats.rejected["line_too_long"] >= LONG_LINES as u64,
        "{stats:?}"
    );
    let log = cap.log_text();
    assert!(
        log.contains("Max entry size '1000' bytes exceeded"),
        "Loki's text is logged:\n{}",
        tail(&log, 20)
    );
    assert!(stats.malformed.is_empty(), "{:?}", stats.malformed);
    assert_stopped_cleanly(status, &cap);
    remove(&docker, &id).await;
}

#[tokio::test]
async fn j_loki_max_line_size_cuts_long_records_instead_of_losing_them() {
    let Some(docker) = docker().await else { return };
    let _serial = exclusive().await;
    let rx = LokiReceiver::with_limits(Limits {
        max_line_size: MAX_LINE,
        ..Limits::default()
    });
    let url = rx.url();
    let (sel, labels) = label("lj");
    let max = MAX_LINE.to_string();
    let flags = rx.flags(&url, &["--loki-max-line-size", &max]);
    let mut cap = Capturer::start("lj", &sel, &flags);
    let script = "long=$(printf '%1500s' | tr ' ' y); i=0; while [ $i -lt 600 ]; do \
                  echo \"s $i\"; i=$((i+1)); [ $((i % 200)) -eq 0 ] && echo \"L $long\"; done; true";
    let id = start(&docker, &spec(&labels, script)).await.expect("start");
    wait_exit(&docker, &id).await;
    let truth = daemon_lines(&docker, &id, false).await;
    assert_eq!(truth.len(), 600 + LONG_LINES);
    rx.wait_for(&id, truth.len(), DELIVERY_LIMIT).await;
    let status = cap.terminate();
    let stored = rx.stored(&id);
    assert!(stored.faults.is_empty(), "{:?}", &stored.faults[..1]);
    assert_eq!(
        stored.records.len(),
        truth.len(),
        "every line, the long ones cut:\n{}",
        tail(&cap.log_text(), 20)
    );
    let mut cut = 0;
    for (r, t) in stored.records.iter().zip(&truth) {
        assert_eq!((&r.ts, &r.stream), (&t.ts, &t.stream));
        if t.message.starts_with("L ") {
            assert!(r.truncated, "{r:?}");
            assert!(t.message.starts_with(&r.message));
            assert!(r.message.len() > 500, "cut to fit, not emptied: {r:?}");
            cut += 1;
        } else {
            assert_eq!(r.message, t.message);
            assert!(!r.truncated);
        }
    }
    assert_eq!(cut, LONG_LINES);
    assert!(
        stored.entries.iter().all(|e| e.line.len() <= MAX_LINE),
        "every line within the limit"
    );
    assert_clean(&rx, "--loki-max-line-size");
    assert_stopped_cleanly(status, &cap);
    remove(&docker, &id).await;
}

#[tokio::test]
async fn k_loki_absent_at_start_and_up_three_seconds_later() {
    let Some(docker) = docker().await else { return };
    let _serial = exclusive().await;
    let addr = free_addr();
    let url = format!("http://{addr}/loki/api/v1/push");
    let (sel, labels) = label("lk");
    // Comes up (its metrics answer) although nothing listens at the URL.
    let mut cap = Capturer::start("lk", &sel, &["--sink", "loki", "--loki-url", &url]);
    let id = start(&docker, &spec(&labels, STEADY)).await.expect("start");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let metrics = sink_metrics(&cap);
    assert!(
        metrics.contains("log_capturer_sink_errors_total{kind=\"connection_refused\"}"),
        "3 s without Loki while lines wait:\n{metrics}"
    );
    let rx = LokiReceiver::on(addr);
    wait_exit(&docker, &id).await;
    let truths = await_delivery(&docker, &rx, std::slice::from_ref(&id), DELIVERY_LIMIT).await;
    let status = cap.terminate();
    let stored = rx.stored(&id);
    assert_received_exactly_once(&truths[0], &stored, &cap, "Loki up 3 s after the capturer");
    assert_eq!(by_stream(&stored.records)["stdout"].len(), 1_000);
    assert_clean(&rx, "Loki late");
    assert_stopped_cleanly(status, &cap);
    remove(&docker, &id).await;
}

#[tokio::test]
async fn l_https_with_a_ca_file_and_a_wrong_ca_is_refused() {
    let Some(docker) = docker().await else { return };
    let _serial = exclusive().await;
    let dir = std::env::temp_dir().join(format!("lc-e2e-ll-tls-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let (rx, ca) = LokiReceiver::https(&dir);
    let wrong = make_ca(&dir, "wrong");
    let url = rx.url();
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");
    let (sel, labels) = label("ll");
    let wrong_ca = wrong.display().to_string();
    let right_ca = ca.display().to_string();
    let mut cap = Capturer::start("ll", &sel, &rx.flags(&url, &["--loki-ca", &wrong_ca]));
    let id = start(&docker, &spec(&labels, STEADY)).await.expect("start");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let metrics = sink_metrics(&cap);
    assert_eq!(
        rx.count(&id),
        0,
        "a server the CA did not sign gets nothing"
    );
    assert!(
        metrics.contains("log_capturer_sink_errors_total{kind=\"invalid_data\"}"),
        "the refused handshakes are counted as TLS failures:\n{metrics}"
    );
    // The same capture, with the right CA: the lines wait in the daemon's log meanwhile.
    cap.kill();
    cap.replace_arg(&wrong_ca, &right_ca);
    cap.restart();
    wait_exit(&docker, &id).await;
    let truths = await_delivery(&docker, &rx, std::slice::from_ref(&id), DELIVERY_LIMIT).await;
    let status = cap.terminate();
    let stored = rx.stored(&id);
    assert_received_exactly_once(&truths[0], &stored, &cap, "HTTPS with --loki-ca");
    assert_eq!(by_stream(&stored.records)["stdout"].len(), 1_000);
    assert_clean(&rx, "HTTPS");
    assert_stopped_cleanly(status, &cap);
    remove(&docker, &id).await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// Lines per stream of the memory test's writer, and the padding of each: much more than the
/// memory limit in few lines.
const FLOOD_LINES: usize = 16_000;
const FLOOD_PAD: usize = 1_900;
/// How much the capturer's memory may grow while Loki fails: far less than what the writer
/// writes meanwhile (about 70 MB of records).
const MEMORY_GROWTH_LIMIT: u64 = 32 << 20;

#[tokio::test]
async fn m_memory_stays_bounded_while_loki_fails_then_every_line_once() {
    let Some(docker) = docker().await else { return };
    let _serial = exclusive().await;
    let rx = LokiReceiver::start();
    let url = rx.url();
    let (sel, labels) = label("lm");
    let mut cap = Capturer::start("lm", &sel, &rx.flags(&url, &[]));
    rx.fail_for(503, Duration::from_secs(600));
    let pad = "x".repeat(FLOOD_PAD);
    let flood = |p: &str| {
        format!("awk -v pad={pad} 'BEGIN {{ for (i = 0; i < {FLOOD_LINES}; i++) printf \"m {p} %d %s\\n\", i, pad }}'")
    };
    let script = format!("{} & {} >&2; wait", flood("o"), flood("e"));
    let id = start(&docker, &spec(&labels, &script))
        .await
        .expect("start");
    let deadline = Instant::now() + Duration::from_secs(30);
    while cap.metric_sum("log_capturer_sink_errors_total") == 0.0 {
        assert!(
            Instant::now() < deadline,
            "no sink error counted while Loki answers 503:\n{}",
            tail(&cap.log_text(), 20)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let first_error = Instant::now();
    let errors = cap.metric_sum("log_capturer_sink_errors_total");
    let rss_at_error = cap.rss().expect("the capturer runs");
    let done = {
        let (docker, id) = (docker.clone(), id.clone());
        tokio::spawn(async move { wait_exit(&docker, &id).await })
    };
    let peak = peak_rss_while_flooded(
        &cap,
        rss_at_error,
        &done,
        first_error,
        Duration::from_secs(8),
    )
    .await;
    let errors_later = cap.metric_sum("log_capturer_sink_errors_total");
    eprintln!(
        "loki: 503s: RSS {} MiB at the first error, peak {} MiB; errors {errors} -> {errors_later}; {} entries accepted",
        rss_at_error >> 20,
        peak >> 20,
        rx.count(&id)
    );
    assert_eq!(rx.count(&id), 0, "nothing accepted while Loki fails");
    assert!(errors_later > errors, "the failures go on being counted");
    assert!(
        peak.saturating_sub(rss_at_error) <= MEMORY_GROWTH_LIMIT,
        "the capturer's memory grew by {} MiB while Loki failed (limit {} MiB): it buffers instead of waiting",
        (peak - rss_at_error) >> 20,
        MEMORY_GROWTH_LIMIT >> 20
    );
    rx.recover();
    let truths = await_delivery(
        &docker,
        &rx,
        std::slice::from_ref(&id),
        Duration::from_secs(120),
    )
    .await;
    let status = cap.terminate();
    let stored = rx.stored(&id);
    assert_received_exactly_once(&truths[0], &stored, &cap, "503s, then Loki recovers");
    let s = by_stream(&stored.records);
    for (stream, p) in [("stdout", "o"), ("stderr", "e")] {
        let want: Vec<String> = (0..FLOOD_LINES)
            .map(|i| format!("m {p} {i} {pad}"))
            .collect();
        assert!(s[stream] == want, "{stream}: the writer's lines, in order");
    }
    assert_clean(&rx, "503s");
    assert_stopped_cleanly(status, &cap);
    remove(&docker, &id).await;
}
