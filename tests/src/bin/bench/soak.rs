//! Part 4: the seed's failing setup (55 containers writing a line a second) with a rotation
//! every 100 ms, sampled every 10 s: tasks, file descriptors and memory must stay flat.
//! With `--sink nats` (part 7) the capturer publishes to a `nats-server` the soak starts, and
//! every container's lines must be in the stream exactly once at the end.

use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::time::{Duration, Instant};

use bollard::query_parameters::StopContainerOptionsBuilder;
use bollard::Docker;
use capturer_tests::capturer::Capturer;
use capturer_tests::nats::{assert_published_exactly_once, NatsTarget};
use capturer_tests::{daemon_lines, remove, start, wait_exit, Spec};
use futures_util::stream::{self, StreamExt};

use crate::chart;
use crate::procfs;
use crate::sink::{Dest, Sink};
use crate::{median, verdict};

/// One sample of the capturer.
#[derive(Clone, Copy, Debug)]
pub struct Point {
    /// Seconds since the soak began.
    pub t: f64,
    /// tokio tasks alive.
    pub tasks: f64,
    /// Open file descriptors.
    pub fds: f64,
    /// Resident memory, MiB.
    pub rss_mib: f64,
    /// Rotations so far.
    pub rotations: f64,
}

/// Runs the soak into `sink` for `duration`; returns whether every target is met. Draws the
/// series to `png`. With `both_streams`, each writer alternates stdout and stderr (still a line
/// a second), so no stream sits unpositioned at the capture's start and reopens replay almost
/// nothing.
pub async fn run(
    docker: &Docker,
    sink: Sink,
    containers: usize,
    duration: Duration,
    png: &Path,
    both_streams: bool,
) -> bool {
    let label = format!("soak-{}", std::process::id());
    let labels: HashMap<String, String> = [("lc.bench".to_owned(), label.clone())].into();
    let dest = Dest::open(sink, "soak");
    let cap = Capturer::start(
        "soak",
        &format!("lc.bench={label}"),
        &dest.flags(&["--rotate-every", "100ms"]),
    );
    std::thread::sleep(Duration::from_millis(500));
    if let Some(target) = dest.target() {
        // The NATS sink connects at its first line and keeps that connection: one container's
        // line goes through first, so that "before any container" holds it too.
        let primer = Spec {
            script: "echo primer".into(),
            labels: labels.clone(),
            ..Spec::default()
        };
        let id = start(docker, &primer).await.expect("start the primer");
        wait_exit(docker, &id).await;
        let got = target.wait_for(&id, 1, Duration::from_secs(60)).await;
        assert_eq!(got, 1, "the primer's line in the stream");
        remove(docker, &id).await;
        crate::until_no_containers(&cap, Duration::from_secs(60)).await;
        std::thread::sleep(Duration::from_millis(500));
    }
    let before = procfs::sample(cap.pid()).expect("the capturer is alive");
    let tasks_before = cap.metric("log_capturer_tasks_alive").unwrap_or(f64::NAN);
    let writer = Spec {
        script: if both_streams {
            "i=0; while true; do echo \"l $i\"; i=$((i+1)); sleep 1; echo \"l $i\" >&2; i=$((i+1)); sleep 1; done".into()
        } else {
            "i=0; while true; do echo \"l $i\"; i=$((i+1)); sleep 1; done".into()
        },
        labels,
        ..Spec::default()
    };
    let ids: Vec<String> = stream::iter(0..containers)
        .map(|_| async { start(docker, &writer).await.expect("start a writer") })
        .buffer_unordered(8)
        .collect()
        .await;
    let began = Instant::now();
    let mut points = Vec::new();
    // NATS: a column more, the server's CPU.
    let server_column = |text: String| {
        if dest.target().is_some() {
            text
        } else {
            String::new()
        }
    };
    println!(
        "{:>6} {:>7} {:>5} {:>9} {:>10} {:>12} {:>12}{}",
        "t (s)",
        "tasks",
        "fds",
        "RSS MiB",
        "rotations",
        "capturer CPU",
        "dockerd CPU",
        server_column(format!(" {:>12}", "nats CPU")),
    );
    let dockerd = procfs::dockerd_pid();
    let cpu = |pid: Option<i32>| pid.and_then(procfs::sample).map_or(f64::NAN, |s| s.cpu);
    let (mut cap_cpu, mut daemon_cpu) = (cpu(Some(cap.pid())), cpu(dockerd));
    let mut server_cpu = dest.server_cpu();
    while began.elapsed() < duration {
        tokio::time::sleep(Duration::from_secs(10)).await;
        let s = procfs::sample(cap.pid()).expect("the capturer is alive");
        let d = cpu(dockerd);
        let n = dest.server_cpu();
        // CPU over the last 10 s, as a share of one core.
        let (cap_share, daemon_share) = ((s.cpu - cap_cpu) / 10.0, (d - daemon_cpu) / 10.0);
        let server_share = (n - server_cpu) / 10.0;
        (cap_cpu, daemon_cpu, server_cpu) = (s.cpu, d, n);
        let p = Point {
            t: began.elapsed().as_secs_f64(),
            tasks: cap.metric("log_capturer_tasks_alive").unwrap_or(f64::NAN),
            fds: s.fds as f64,
            rss_mib: s.rss as f64 / (1024.0 * 1024.0),
            rotations: cap
                .metric("log_capturer_stream_rotations_total")
                .unwrap_or(f64::NAN),
        };
        println!(
            "{:>6.0} {:>7} {:>5} {:>9.2} {:>10} {:>11.0}% {:>11.0}%{}",
            p.t,
            p.tasks,
            p.fds,
            p.rss_mib,
            p.rotations,
            cap_share * 100.0,
            daemon_share * 100.0,
            server_column(format!(" {:>11.0}%", server_share * 100.0)),
        );
        points.push(p);
    }
    // Stop the writers and check every line arrived exactly once.
    // A saturated daemon may fail a stop request: retry until the container is down, or
    // the comparison below would chase a container that is still writing.
    stream::iter(&ids)
        .for_each_concurrent(8, |id| async move {
            for attempt in 1..=10 {
                let opts = StopContainerOptionsBuilder::default().t(0).build();
                match docker.stop_container(id, Some(opts)).await {
                    Ok(()) => return,
                    Err(e) => {
                        println!("stop {id} (attempt {attempt}): {e}");
                        tokio::time::sleep(Duration::from_secs(2)).await;
                    }
                }
            }
        })
        .await;
    let mut exact = 0;
    let mut lines = 0;
    for id in &ids {
        wait_exit(docker, id).await;
        let captured = match dest.target() {
            None => exact_in_files(docker, &cap, id).await,
            Some(target) => exact_in_stream(docker, &cap, target, id).await,
        };
        if let Some(n) = captured {
            exact += 1;
            lines += n;
        }
    }
    let rotations = cap
        .metric("log_capturer_stream_rotations_total")
        .unwrap_or(0.0);
    println!("{exact} of {containers} containers captured exactly once ({lines} lines); {rotations} rotations");
    if let Some(target) = dest.target() {
        let (errors, retries) = (
            cap.metric_sum("log_capturer_sink_errors_total") + 0.0,
            cap.metric_sum("log_capturer_sink_retries_total") + 0.0,
        );
        let stored = target.info().await.map_or(0, |i| i.state.messages);
        println!("NATS: {stored} messages in the stream (the primer's included); sink errors {errors}, retries {retries}");
    }
    let errors = cap
        .metric("log_capturer_stream_errors_total")
        .unwrap_or(0.0);
    println!("stream errors (reopened from the cursor after a backoff): {errors}");
    stream::iter(&ids)
        .for_each_concurrent(8, |id| async move { remove(docker, id).await })
        .await;
    // Every container gone: what the capturer holds must be what it held before any came.
    crate::until_no_containers(&cap, Duration::from_secs(120)).await;
    // The sink closes a removed container's file just after the registry lets it go: give
    // the count a moment to settle, then take it.
    let settled = Instant::now() + Duration::from_secs(30);
    let (after, tasks_after) = loop {
        let after = procfs::sample(cap.pid()).expect("the capturer is alive");
        let tasks = cap.metric("log_capturer_tasks_alive").unwrap_or(f64::NAN);
        if (after.fds <= before.fds && tasks <= tasks_before) || Instant::now() >= settled {
            break (after, tasks);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    println!(
        "before any container: {tasks_before} tasks, {} fds; after all were removed: {tasks_after} tasks, {} fds",
        before.fds, after.fds
    );

    let minute = |from: f64, to: f64| points.iter().filter(move |p| p.t > from && p.t <= to);
    let end = points.last().map_or(0.0, |p| p.t);
    let max = |it: &mut dyn Iterator<Item = f64>| it.fold(f64::MIN, f64::max);
    let mean = |v: Vec<f64>| v.iter().sum::<f64>() / v.len().max(1) as f64;
    // Per minute, the typical level (the median of its six samples) and the range. With 550
    // reopens a second, all 55 streams rotating in step, one sample may catch every socket
    // being replaced (a dip) or old and new ones both open (a spike); a leak moves the median.
    let first_tasks = median(minute(0.0, 60.0).map(|p| p.tasks));
    let last_tasks = median(minute(end - 60.0, end).map(|p| p.tasks));
    let first_fds = median(minute(0.0, 60.0).map(|p| p.fds));
    let last_fds = median(minute(end - 60.0, end).map(|p| p.fds));
    let min = |it: &mut dyn Iterator<Item = f64>| it.fold(f64::MAX, f64::min);
    let range = |from: f64, to: f64, f: fn(&Point) -> f64| {
        format!(
            "{}..{}",
            min(&mut minute(from, to).map(f)),
            max(&mut minute(from, to).map(f))
        )
    };
    println!(
        "first minute: tasks median {first_tasks} (range {}), fds median {first_fds} (range {}); last minute: tasks median {last_tasks} (range {}), fds median {last_fds} (range {})",
        range(0.0, 60.0, |p| p.tasks),
        range(0.0, 60.0, |p| p.fds),
        range(end - 60.0, end, |p| p.tasks),
        range(end - 60.0, end, |p| p.fds),
    );
    let first_rss = mean(minute(0.0, 60.0).map(|p| p.rss_mib).collect());
    let last_rss = mean(minute(end - 60.0, end).map(|p| p.rss_mib).collect());
    println!("RSS: first minute's mean {first_rss:.2} MiB, last minute's {last_rss:.2} MiB");
    if let Err(e) = chart::draw(png, &points, containers, rotations) {
        println!("could not draw {}: {e}", png.display());
    } else {
        println!("chart: {}", png.display());
    }
    let a = verdict(
        "soak: tasks, last minute's median - first minute's median",
        last_tasks - first_tasks,
        "<=",
        0.0,
    );
    let b = verdict(
        "soak: fds, last minute's median - first minute's median",
        last_fds - first_fds,
        "<=",
        0.0,
    );
    let c = verdict(
        "soak: RSS growth, last minute's mean - first minute's (MiB)",
        last_rss - first_rss,
        "<",
        1.0,
    );
    let d = verdict(
        "soak: containers captured exactly once",
        exact as f64,
        ">=",
        containers as f64,
    );
    let e = verdict(
        "soak: tasks and fds once every container is gone - before any came",
        (tasks_after - tasks_before).max(after.fds as f64 - before.fds as f64),
        "<=",
        0.0,
    );
    a && b && c && d && e
}

/// Per stream, in order, with the daemon's timestamps: the output contract. (Across streams the
/// daemon's own file order is not its timestamp order, and we promise neither.) A killed
/// container's last lines may still be on their way into the daemon's log when it answers, and
/// on a saturated daemon a reader may be waiting out a backoff (capped at 30 s) before it reads
/// them: a difference is looked at again for up to 120 s. The lines captured, if exact.
async fn exact_in_files(docker: &Docker, cap: &Capturer, id: &str) -> Option<usize> {
    let per_stream = |records: Vec<(String, String, String)>| {
        let mut m: HashMap<String, Vec<(String, String)>> = HashMap::new();
        for (stream, ts, message) in records {
            m.entry(stream).or_default().push((ts, message));
        }
        m
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let truth = daemon_lines(docker, id, false).await;
        let got = cap.wait_for_lines(id, truth.len(), Duration::from_secs(30));
        let want = per_stream(
            truth
                .iter()
                .map(|l| (l.stream.clone(), l.ts.clone(), l.message.clone()))
                .collect(),
        );
        let have = per_stream(
            got.iter()
                .map(|r| (r.stream.clone(), r.ts.clone(), r.message.clone()))
                .collect(),
        );
        if want == have {
            return Some(got.len());
        }
        if Instant::now() >= deadline {
            let first = |m: &HashMap<String, Vec<(String, String)>>, s: &str, i: usize| {
                m.get(s).and_then(|v| v.get(i)).cloned()
            };
            for s in ["stdout", "stderr"] {
                let n = want
                    .get(s)
                    .map_or(0, Vec::len)
                    .max(have.get(s).map_or(0, Vec::len));
                if let Some(i) = (0..n).find(|&i| first(&want, s, i) != first(&have, s, i)) {
                    println!(
                        "  not exact: {id} {s} line {i}: daemon {:?}, captured {:?}",
                        first(&want, s, i),
                        first(&have, s, i)
                    );
                }
            }
            return None;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// The stream holds each of the daemon's lines of `id` exactly once, judged by the NATS test
/// bed's oracle (`assert_published_exactly_once`: every message one record on its subject with
/// its `Nats-Msg-Id`, no line twice, none missing). Waits, as for the files, up to 120 s for
/// the stream to hold as many messages as the daemon has lines. Records are judged in position
/// order: around a failed publish the stream may hold a line after later ones of its stream
/// (docs/nats.md), which is reported. The lines in the stream, if exact.
async fn exact_in_stream(
    docker: &Docker,
    cap: &Capturer,
    target: &NatsTarget,
    id: &str,
) -> Option<usize> {
    let deadline = Instant::now() + Duration::from_secs(120);
    let truth = loop {
        let truth = daemon_lines(docker, id, false).await;
        let have = target
            .wait_for(id, truth.len(), Duration::from_secs(30))
            .await;
        if have as usize >= truth.len() || Instant::now() >= deadline {
            break truth;
        }
    };
    let stored = match target.try_read(id).await {
        Ok(stored) => stored,
        Err(e) => {
            println!("  not exact: {id}: the stream could not be read: {e}");
            return None;
        }
    };
    let (sorted, out_of_order) = stored.sorted_by_position();
    if out_of_order > 0 {
        println!("  {id}: {out_of_order} messages stored after a later line of their stream");
    }
    // The oracle panics with the first difference (printed on stderr); here it is a verdict.
    let judged = catch_unwind(AssertUnwindSafe(|| {
        assert_published_exactly_once(&truth, &sorted, cap, &format!("soak {id}"));
    }));
    match judged {
        Ok(()) => Some(sorted.records.len()),
        Err(_) => {
            println!(
                "  not exact: {id}: {} messages, the daemon has {} lines (the difference is on stderr)",
                sorted.messages.len(),
                truth.len()
            );
            None
        }
    }
}
