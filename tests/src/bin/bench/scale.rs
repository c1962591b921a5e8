//! Part 3: 500 idle containers, then 500 containers writing 10 lines a second for 60 s.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bollard::Docker;
use capturer_tests::capturer::{by_stream, Capturer};
use capturer_tests::{remove, start, wait_exit, Spec};
use futures_util::stream::{self, StreamExt};

use crate::procfs;
use crate::verdict;

const MIB: f64 = 1024.0 * 1024.0;

/// Peaks seen while sampling.
#[derive(Default, Debug)]
struct Peak {
    rss: u64,
    tasks: f64,
    fds: u64,
}

impl Peak {
    fn take(&mut self, cap: &Capturer) {
        if let Some(s) = procfs::sample(cap.pid()) {
            self.rss = self.rss.max(s.rss);
            self.fds = self.fds.max(s.fds);
        }
        self.tasks = self
            .tasks
            .max(cap.metric("log_capturer_tasks_alive").unwrap_or(0.0));
    }
}

async fn start_many(docker: &Docker, n: usize, spec: &Spec) -> Vec<String> {
    stream::iter(0..n)
        .map(|_| async { start(docker, spec).await.expect("start a container") })
        .buffer_unordered(8)
        .collect()
        .await
}

async fn remove_all(docker: &Docker, ids: &[String]) {
    stream::iter(ids)
        .for_each_concurrent(8, |id| async move { remove(docker, id).await })
        .await;
}

fn streaming(cap: &Capturer) -> usize {
    let tasks = cap.debug_tasks();
    tasks["containers"].as_array().map_or(0, |c| {
        c.iter().filter(|e| e["state"] == "streaming").count()
    })
}

/// Waits until the capturer holds no container any more; its tasks alive then.
async fn settle(cap: &Capturer) -> f64 {
    crate::until_no_containers(cap, Duration::from_secs(300)).await;
    cap.metric("log_capturer_tasks_alive").unwrap_or(f64::NAN)
}

/// Runs the scale benchmark; returns whether every target is met.
pub async fn run(docker: &Docker, n: usize, seconds: u64) -> bool {
    let label = format!("scale-{}", std::process::id());
    let labels: HashMap<String, String> = [("lc.bench".to_owned(), label.clone())].into();
    let cap = Capturer::start("scale", &format!("lc.bench={label}"), &[]);
    std::thread::sleep(Duration::from_millis(500));
    let baseline = cap.metric("log_capturer_tasks_alive").unwrap_or(0.0);

    // Phase 1: idle containers.
    let began = Instant::now();
    let idle = Spec {
        script: "sleep 100000".into(),
        labels: labels.clone(),
        ..Spec::default()
    };
    let ids = start_many(docker, n, &idle).await;
    println!(
        "phase 1: started {n} idle containers in {:.1?}",
        began.elapsed()
    );
    let deadline = Instant::now() + Duration::from_secs(300);
    while streaming(&cap) < n && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let mut idle_peak = Peak::default();
    for _ in 0..10 {
        idle_peak.take(&cap);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    println!(
        "phase 1: {} of {n} streaming; capturer RSS {:.1} MiB, tasks alive {}, fds {}",
        streaming(&cap),
        idle_peak.rss as f64 / MIB,
        idle_peak.tasks,
        idle_peak.fds
    );
    remove_all(docker, &ids).await;
    let after_idle = settle(&cap).await;
    println!("phase 1: all removed; tasks alive {after_idle} (baseline {baseline})");

    // Phase 2: writers, 10 lines a second each, all at once. Each waits (without forking)
    // until a go file appears in a directory bound into it, so the 60 s of writing start
    // together after the slow part, starting 500 containers, is over; `read -t 0.1` on the
    // open, silent stdin paces the lines without a `sleep` process per line.
    let lines = seconds * 10;
    let go = std::env::temp_dir().join(format!("lc-bench-go-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&go);
    std::fs::create_dir_all(&go).expect("create the go directory");
    let writer = Spec {
        script: format!(
            "while [ ! -e /go/go ]; do read -t 0.2 x; done; \
             i=0; while [ $i -lt {lines} ]; do echo \"l $i\"; i=$((i+1)); read -t 0.1 x; done"
        ),
        labels,
        open_stdin: true,
        binds: vec![format!("{}:/go:ro", go.display())],
        ..Spec::default()
    };
    let began = Instant::now();
    let ids = start_many(docker, n, &writer).await;
    println!("phase 2: started {n} writers in {:.1?}", began.elapsed());
    let deadline = Instant::now() + Duration::from_secs(300);
    while streaming(&cap) < n && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    std::fs::write(go.join("go"), b"").expect("write the go file");
    let began = Instant::now();
    println!("phase 2: {} of {n} streaming; go", streaming(&cap));
    let mut write_peak = Peak::default();
    let sampler = async {
        loop {
            write_peak.take(&cap);
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    };
    let waiter = async {
        for id in &ids {
            wait_exit(docker, id).await;
        }
    };
    tokio::select! {
        _ = sampler => {}
        _ = waiter => {}
    }
    write_peak.take(&cap);
    println!("phase 2: writers done after {:.1?}", began.elapsed());
    let want: Vec<String> = (0..lines).map(|i| format!("l {i}")).collect();
    let mut exact = 0;
    let mut bad = Vec::new();
    for id in &ids {
        let got = cap.wait_for_lines(id, lines as usize, Duration::from_secs(60));
        let s = by_stream(&got);
        if got.len() == lines as usize && s.get("stdout") == Some(&want) {
            exact += 1;
        } else {
            bad.push((id.clone(), got.len()));
        }
    }
    println!(
        "phase 2: capturer RSS {:.1} MiB, tasks alive {}, fds {}; {exact} of {n} containers captured exactly ({} lines)",
        write_peak.rss as f64 / MIB,
        write_peak.tasks,
        write_peak.fds,
        exact * lines as usize
    );
    for (id, count) in bad.iter().take(5) {
        println!("  not exact: {id}: {count} lines");
    }
    remove_all(docker, &ids).await;
    let _ = std::fs::remove_dir_all(&go);
    let after_writers = settle(&cap).await;
    println!("phase 2: all removed; tasks alive {after_writers} (baseline {baseline})");

    let rss = idle_peak.rss.max(write_peak.rss) as f64 / MIB;
    let tasks = idle_peak.tasks.max(write_peak.tasks);
    // Outside the lifecycle scopes the capturer runs: the metrics server, the events stream's
    // connection and at most one discovery request's connection (the supervisor awaits each).
    let constant = 3.0;
    let a = verdict("scale: peak RSS (MiB)", rss, "<=", 64.0);
    let b = verdict(
        &format!("scale: peak tasks alive - 2 per container ({n} containers)"),
        tasks - 2.0 * n as f64,
        "<=",
        constant,
    );
    let c = verdict(
        "scale: containers captured exactly once",
        exact as f64,
        ">=",
        n as f64,
    );
    let d = verdict(
        "scale: tasks alive once every container is gone - before any came",
        after_idle.max(after_writers) - baseline,
        "<=",
        0.0,
    );
    a && b && c && d
}
