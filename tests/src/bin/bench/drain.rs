//! Parts 1 and 2: drain one container's 1,000,000 lines, against a raw read of the same logs,
//! for wall time and for CPU. With `--sink nats` (part 7), each round's capturer publishes to a
//! `nats-server` of the round's own and is timed until the stream holds every line: durable in
//! the stream is what counts there, not read. With `--sink loki`, the same against the Loki
//! receiver (timed until it has accepted every line; "server CPU" is the bench process's,
//! which is the receiver while the capturer runs).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bollard::query_parameters::LogsOptionsBuilder;
use bollard::Docker;
use capturer_tests::capturer::Capturer;
use capturer_tests::{remove, start, wait_exit, Spec};
use futures_util::StreamExt;

use crate::procfs::{self, Run};
use crate::sink::{Dest, Sink};
use crate::{median, verdict};

struct Round {
    raw: Run,
    raw_daemon_cpu: f64,
    cap_wall: Duration,
    cap: procfs::Sample,
    cap_daemon_cpu: f64,
    client: Run,
    /// NATS: the server's CPU seconds during the capturer's run (NaN for the file sink).
    server_cpu: f64,
    /// NATS: the container's messages in the stream once the capturer stopped.
    stored: Option<u64>,
}

/// How far a round's capturer has got. File sink: its `log_capturer_lines_total`. NATS: the
/// messages its stream holds (acknowledged: durable), asked over one connection kept for the
/// round; the server is the round's own, so every message in it is the container's.
struct Progress {
    js: Option<async_nats::jetstream::Context>,
    stream: Option<async_nats::jetstream::stream::Stream>,
}

impl Progress {
    async fn new(dest: &Dest) -> Progress {
        let js = match dest.target() {
            Some(t) => Some(
                t.context()
                    .await
                    .expect("connect to the round's nats-server"),
            ),
            None => None,
        };
        Progress { js, stream: None }
    }

    /// Lines delivered so far.
    async fn delivered(&mut self, dest: &Dest, cap: &Capturer) -> f64 {
        if let Some(rx) = dest.loki() {
            // Accepted by the receiver: answered 2xx, durable as Loki means it.
            return rx.stats().accepted as f64;
        }
        let (Some(js), Some(target)) = (&self.js, dest.target()) else {
            return cap.metric_sum("log_capturer_lines_total");
        };
        if self.stream.is_none() {
            // The capturer creates the stream before its first publish.
            self.stream = js.get_stream(&target.stream).await.ok();
        }
        match &mut self.stream {
            Some(s) => s.info().await.map_or(0.0, |i| i.state.messages as f64),
            None => 0.0,
        }
    }
}

/// Runs the drain benchmark into `sink`; returns whether every target is met.
pub async fn run(docker: &Docker, sink: Sink, lines: u64, rounds: usize) -> bool {
    let label = format!("drain-{}", std::process::id());
    let spec = Spec {
        // About 40 bytes a line. The writer exits: a follow request then ends at the end of
        // the log, for curl as for the capturer, which reads it because it holds a cursor for
        // it (so both go through the daemon's same follow path).
        script: format!("seq {lines} | sed 's/^/0123456789abcdefghijklmnopqrstuv-/'"),
        labels: [("lc.bench".to_owned(), label.clone())].into(),
        ..Spec::default()
    };
    let id = start(docker, &spec).await.expect("start the writer");
    let began = Instant::now();
    wait_exit(docker, &id).await;
    wait_written(docker, &id, lines).await;
    println!(
        "writer: {lines} lines in the daemon's log after {:.1?}",
        began.elapsed()
    );
    // The capturer's request: follow=1 on a stopped container ends at the end of the log.
    let url =
        format!("http://docker/v1.41/containers/{id}/logs?follow=1&stdout=1&stderr=1&timestamps=1");
    let seed = format!(
        r#"{{"version":1,"container_id":"{id}","cursor":{{"start":0,"streams":3,"positions":[{{"ts":0,"n":0}},{{"ts":0,"n":0}},{{"ts":0,"n":0}}]}}}}"#
    );
    let curl = || {
        let mut c = Command::new("curl");
        c.args([
            "-s",
            "--unix-socket",
            "/var/run/docker.sock",
            "-o",
            "/dev/null",
            &url,
        ]);
        c
    };
    // Warm the page cache and the daemon once, unmeasured.
    procfs::run(&mut curl());
    let dockerd = procfs::dockerd_pid();
    let daemon_cpu = || dockerd.and_then(procfs::sample).map_or(f64::NAN, |s| s.cpu);
    let mut results = Vec::new();
    for round in 1..=rounds {
        let d0 = daemon_cpu();
        let raw = procfs::run(&mut curl());
        let raw_daemon_cpu = daemon_cpu() - d0;
        assert_eq!(raw.status, 0, "curl failed");

        let dest = Dest::open(sink, &format!("drain-{round}"));
        let mut progress = Progress::new(&dest).await;
        let s0 = dest.server_cpu();
        let d0 = daemon_cpu();
        let t0 = Instant::now();
        let mut cap = Capturer::start_with_state(
            &format!("drain-{round}"),
            &format!("lc.bench={label}"),
            &dest.flags(&[]),
            &[(id.clone(), seed.clone())],
        );
        let mut last = procfs::Sample::default();
        // NATS: when the capturer had read every line (its lines_total), for comparison.
        let mut read_all = None;
        loop {
            if (dest.target().is_some() || dest.loki().is_some())
                && read_all.is_none()
                && cap.metric_sum("log_capturer_lines_total") >= lines as f64
            {
                read_all = Some(t0.elapsed());
            }
            let n = progress.delivered(&dest, &cap).await;
            if n >= lines as f64 {
                last = procfs::sample(cap.pid()).unwrap_or(last);
                break;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(300),
                "the capturer stalled at {n} lines"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        let cap_wall = t0.elapsed();
        let cap_daemon_cpu = daemon_cpu() - d0;
        let server_cpu = dest.server_cpu() - s0;
        assert!(cap.terminate().success());
        let _ = std::fs::remove_dir_all(&cap.output);
        let stored = match (dest.target(), dest.loki()) {
            (Some(t), _) => Some(t.count(&id).await.expect("count the stream's messages")),
            (None, Some(rx)) => Some(rx.count(&id) as u64),
            (None, None) => None,
        };
        let duplicates = dest.loki().map_or(0, |rx| rx.stats().duplicates);
        drop(progress);
        drop(dest);

        let mut docker_logs = Command::new("docker");
        docker_logs
            .args(["logs", "-t", &id])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let client = procfs::run(&mut docker_logs);

        // The file sink's line as it always was; NATS adds the server's CPU, when the capturer
        // had read everything, and what the stream holds.
        let (server, nats) = match (stored, sink) {
            (Some(n), Sink::Loki) => (
                format!(", receiver {server_cpu:.2}s"),
                format!(
                    "; all read after {:.2}s, {n} entries accepted, {duplicates} duplicates dropped",
                    read_all.map_or(f64::NAN, |d| d.as_secs_f64())
                ),
            ),
            (Some(n), _) => (
                format!(", nats-server {server_cpu:.2}s"),
                format!(
                    "; all read after {:.2}s, {n} messages in the stream",
                    read_all.map_or(f64::NAN, |d| d.as_secs_f64())
                ),
            ),
            (None, _) => (String::new(), String::new()),
        };
        println!(
            "round {round}: raw read {:.2}s (cpu {:.2}s, dockerd {:.2}s) | capturer {:.2}s (cpu {:.2}s = {:.2} user + {:.2} sys, dockerd {:.2}s{server}, {} context switches{nats}) | docker logs {:.2}s (cpu {:.2}s)",
            raw.wall.as_secs_f64(),
            raw.user + raw.sys,
            raw_daemon_cpu,
            cap_wall.as_secs_f64(),
            last.cpu,
            last.user,
            last.sys,
            cap_daemon_cpu,
            last.switches,
            client.wall.as_secs_f64(),
            client.user + client.sys,
        );
        results.push(Round {
            raw,
            raw_daemon_cpu,
            cap_wall,
            cap: last,
            cap_daemon_cpu,
            client,
            server_cpu,
            stored,
        });
    }
    remove(docker, &id).await;

    let per_million = 1e6 / lines as f64;
    let raw_wall = median(results.iter().map(|r| r.raw.wall.as_secs_f64()));
    let cap_wall = median(results.iter().map(|r| r.cap_wall.as_secs_f64()));
    let raw_cpu = median(results.iter().map(|r| r.raw.user + r.raw.sys)) * per_million;
    let cap_cpu = median(results.iter().map(|r| r.cap.cpu)) * per_million;
    let client_cpu = median(results.iter().map(|r| r.client.user + r.client.sys)) * per_million;
    let daemon_raw = median(results.iter().map(|r| r.raw_daemon_cpu)) * per_million;
    let daemon_cap = median(results.iter().map(|r| r.cap_daemon_cpu)) * per_million;
    // Each pair's own ratio, then their median: drift of the machine between pairs cancels.
    let speed = median(
        results
            .iter()
            .map(|r| r.raw.wall.as_secs_f64() / r.cap_wall.as_secs_f64()),
    );
    let cpu = median(results.iter().map(|r| r.cap.cpu / (r.raw.user + r.raw.sys)));
    println!("\nmedians over {rounds} rounds, per million lines:");
    println!("  raw read (curl):  {raw_wall:.2}s wall, {raw_cpu:.2} CPU s; dockerd {daemon_raw:.2} CPU s");
    println!("  capturer:         {cap_wall:.2}s wall, {cap_cpu:.2} CPU s; dockerd {daemon_cap:.2} CPU s");
    println!("  docker logs:      {client_cpu:.2} CPU s");
    if sink == Sink::Loki {
        let server = median(results.iter().map(|r| r.server_cpu)) * per_million;
        println!("  receiver (bench): {server:.2} CPU s during the capturer's runs");
        println!("capturer CPU / raw read CPU (median of the pairs): {cpu:.3}");
        let exact = results.iter().filter(|r| r.stored == Some(lines)).count();
        let a = verdict(
            "loki-drain: capturer speed / raw speed (median of the pairs)",
            speed,
            ">=",
            0.5,
        );
        let b = verdict(
            &format!("loki-drain: rounds whose receiver holds exactly {lines} entries"),
            exact as f64,
            ">=",
            rounds as f64,
        );
        return a && b;
    }
    if sink == Sink::Nats {
        let server = median(results.iter().map(|r| r.server_cpu)) * per_million;
        println!("  nats-server:      {server:.2} CPU s during the capturer's runs");
        println!("capturer CPU / raw read CPU (median of the pairs): {cpu:.3}");
        let exact = results.iter().filter(|r| r.stored == Some(lines)).count();
        let a = verdict(
            "nats-drain: capturer speed / raw speed (median of the pairs)",
            speed,
            ">=",
            0.5,
        );
        let b = verdict(
            &format!("nats-drain: rounds whose stream holds exactly {lines} messages"),
            exact as f64,
            ">=",
            rounds as f64,
        );
        return a && b;
    }
    // Issue 18: a backlog at the daemon's full speed, for no more CPU than the bare read.
    let a = verdict(
        "drain: capturer speed / raw speed (median of the pairs)",
        speed,
        ">=",
        0.95,
    );
    let b = verdict(
        "cpu: capturer CPU / raw read CPU (median of the pairs)",
        cpu,
        "<=",
        1.0,
    );
    a && b
}

/// Waits until the writer's last line is in the daemon's log (a cheap `tail=1` read).
async fn wait_written(docker: &Docker, id: &str, lines: u64) {
    let want = format!("-{lines}\n");
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let options = LogsOptionsBuilder::default().stdout(true).tail("1").build();
        let mut last = String::new();
        let mut logs = docker.logs(id, Some(options));
        while let Some(Ok(item)) = logs.next().await {
            last = item.to_string();
        }
        if last.ends_with(&want) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the writer did not finish: last line {last:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
