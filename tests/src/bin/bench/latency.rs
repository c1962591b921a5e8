//! Part 2's question: does the busy reader's pause (`--read-pause`) add latency? For each
//! setting, a slow writer (a line every 50 ms: the pause must never engage) and a burst
//! (`seq`, as fast as the shell writes: it always engages), each line's delay measured from the
//! daemon's timestamp to the moment the line is in the capturer's output file.

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bollard::Docker;
use capturer_core::Timestamp;
use capturer_tests::capturer::Capturer;
use capturer_tests::{remove, start, Spec};

use crate::verdict;

/// Delay percentiles of one run, in milliseconds.
#[derive(Clone, Copy, Debug)]
struct Delays {
    p50: f64,
    p99: f64,
    max: f64,
}

/// Follows `path` (polling every millisecond) until `lines` lines are in it; each line's delay
/// is the time it was first seen minus its `ts`. The poll adds up to 1 ms to every figure.
fn follow(path: &Path, lines: usize, limit: Duration) -> Vec<f64> {
    let deadline = Instant::now() + limit;
    let mut delays = Vec::with_capacity(lines);
    let mut offset = 0u64;
    let mut pending = Vec::new();
    let mut chunk = vec![0u8; 1 << 20];
    while delays.len() < lines && Instant::now() < deadline {
        let Ok(mut f) = std::fs::File::open(path) else {
            std::thread::sleep(Duration::from_millis(1));
            continue;
        };
        f.seek(SeekFrom::Start(offset)).unwrap();
        loop {
            let n = f.read(&mut chunk).unwrap();
            if n == 0 {
                break;
            }
            offset += n as u64;
            let seen = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
            pending.extend_from_slice(&chunk[..n]);
            while let Some(end) = pending.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = pending.drain(..=end).collect();
                let v: serde_json::Value = serde_json::from_slice(&line).unwrap();
                let ts = Timestamp::parse_rfc3339(v["ts"].as_str().unwrap().as_bytes()).unwrap();
                let delay = seen.as_nanos() as f64 - ts.0 as f64;
                delays.push(delay / 1e6);
            }
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    delays
}

fn percentiles(mut v: Vec<f64>) -> Delays {
    v.sort_by(f64::total_cmp);
    let at = |q: f64| {
        v.get(((v.len() as f64 - 1.0) * q).round() as usize)
            .copied()
    };
    Delays {
        p50: at(0.5).unwrap_or(f64::NAN),
        p99: at(0.99).unwrap_or(f64::NAN),
        max: v.last().copied().unwrap_or(f64::NAN),
    }
}

/// One writer under one setting: its delays.
async fn measure(docker: &Docker, pause: &str, script: &str, lines: usize) -> Delays {
    let label = format!("latency-{}", std::process::id());
    let cap = Capturer::start(
        &format!("latency-{}", pause.replace('.', "_")),
        &format!("lc.bench={label}"),
        &["--read-pause", pause],
    );
    std::thread::sleep(Duration::from_millis(300));
    let spec = Spec {
        script: script.to_owned(),
        labels: [("lc.bench".to_owned(), label)].into(),
        ..Spec::default()
    };
    let id = start(docker, &spec).await.expect("start the writer");
    let path = cap.output.join("out").join(format!("{id}.jsonl"));
    let delays =
        tokio::task::spawn_blocking(move || follow(&path, lines, Duration::from_secs(120)))
            .await
            .unwrap();
    assert_eq!(delays.len(), lines, "every line arrived");
    remove(docker, &id).await;
    let output = cap.output.clone();
    drop(cap);
    let _ = std::fs::remove_dir_all(output);
    percentiles(delays)
}

/// Runs the latency comparison; returns whether the slow writer's delay is unchanged.
pub async fn run(docker: &Docker) -> bool {
    let slow_lines = 200;
    let slow = format!(
        "i=0; while [ $i -lt {slow_lines} ]; do echo \"slow $i\"; i=$((i+1)); sleep 0.05; done"
    );
    let burst_lines = 200_000;
    let burst = format!("seq {burst_lines}");
    let mut table = Vec::new();
    // Alternate the settings, twice each, so drift of the machine hits both alike.
    for pause in ["0", "1ms", "0", "1ms"] {
        let s = measure(docker, pause, &slow, slow_lines).await;
        let b = measure(docker, pause, &burst, burst_lines).await;
        println!(
            "--read-pause {pause:>3}: slow writer p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms | burst p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            s.p50, s.p99, s.max, b.p50, b.p99, b.max
        );
        table.push((pause, s, b));
    }
    let worst = |p: &str, f: fn(&(&str, Delays, Delays)) -> f64| {
        table
            .iter()
            .filter(|r| r.0 == p)
            .map(f)
            .fold(f64::MIN, f64::max)
    };
    let slow_on = worst("1ms", |r| r.1.p50);
    let slow_off = worst("0", |r| r.1.p50);
    let burst_on = worst("1ms", |r| r.2.p99);
    let burst_off = worst("0", |r| r.2.p99);
    println!(
        "slow writer p50: {slow_off:.2} ms without the pause, {slow_on:.2} ms with it; burst p99: {burst_off:.2} ms without, {burst_on:.2} ms with"
    );
    verdict(
        "latency: slow writer's p50 delay, with the pause - without (ms)",
        slow_on - slow_off,
        "<=",
        1.0,
    )
}
