//! The end of a round: every container stopped, the truth read, the capture given time to
//! catch up, the capturer SIGTERMed.

use std::path::Path;
use std::time::{Duration, Instant};

use bollard::query_parameters::StopContainerOptionsBuilder;
use bollard::Docker;
use capturer_tests::{try_daemon_lines, wait_exit};
use futures_util::stream::{self, StreamExt};

use super::daemon::Bed;
use super::oracle::wanted;
use super::round::{Round, MAX_ALIVE};

/// Longest wait for the capture to catch up once every container stopped.
const SETTLE_MAX: Duration = Duration::from_secs(45);

impl Round {
    /// The end: the capturer up, every container stopped, the truth read, the capture given
    /// time to catch up, the capturer SIGTERMed (it must exit 0).
    pub(super) async fn wind_down(&mut self, bed: &mut Bed) {
        // Containers waiting to start again stay stopped; the capturer must run.
        self.later.clear();
        if !self.cap_up {
            self.capturer_up();
        }
        let docker = bed.docker.clone();
        let running = bed.labelled(&self.label, true).await;
        self.note(format!(
            "end of chaos: stopping {} containers",
            running.len()
        ));
        stream::iter(&running)
            .for_each_concurrent(MAX_ALIVE, |id| {
                let docker = &docker;
                async move {
                    let opts = StopContainerOptionsBuilder::default().t(1).build();
                    let _ = docker.stop_container(id, Some(opts)).await;
                }
            })
            .await;
        let ids: Vec<String> = self
            .guests
            .iter()
            .filter(|g| g.counted())
            .map(|g| g.id.clone())
            .collect();
        stream::iter(&ids)
            .for_each_concurrent(MAX_ALIVE, |id| {
                let docker = &docker;
                async move { wait_exit(docker, id).await }
            })
            .await;
        for g in self.guests.iter_mut().filter(|g| g.counted()) {
            // The rotated logs are merged with the snapshots; the others read whole.
            if !g.rotates() {
                g.read_at = None;
            }
            if let Err(e) = g.read_log(&docker).await {
                self.failures
                    .push(format!("harness: cannot read the log of c{}: {e}", g.idx));
            }
        }
        let settle = Instant::now();
        self.settle().await;
        self.settle_took = settle.elapsed();
        if let Some(cap) = &mut self.cap {
            self.rotations += cap.metric_sum("log_capturer_stream_rotations_total") as u64;
            let status = cap.terminate();
            self.note(format!("capturer SIGTERM at the end: {status}"));
            if !status.success() {
                self.fail(format!(
                    "the capturer exited with {status} on SIGTERM at the end"
                ));
            }
        }
        self.cap_up = false;
    }

    /// Notes, per rotated log, what the daemon still holds against what the snapshots saw.
    pub(super) async fn note_rotated(&mut self, docker: &Docker) {
        let mut notes = Vec::new();
        for g in self.guests.iter().filter(|g| g.counted() && g.rotates()) {
            let held = try_daemon_lines(docker, &g.id, false, 0)
                .await
                .map_or(0, |l| l.len());
            let gaps: usize = ["stdout", "stderr"]
                .iter()
                .map(|s| wanted(g, s).iter().filter(|w| w.exact.is_none()).count())
                .sum();
            notes.push(format!(
                "c{} ({}): the daemon holds {held} lines, the snapshots saw {}, {gaps} more are gaps in the sequence numbers",
                g.idx,
                g.plan.logging.describe(),
                g.truth.len()
            ));
        }
        for n in notes {
            self.note(n);
        }
    }

    /// Waits until nothing is missing, or the output stopped growing for `quiet`, or
    /// [`SETTLE_MAX`].
    async fn settle(&mut self) {
        let began = Instant::now();
        let (mut size, mut changed) = (0, Instant::now());
        loop {
            let (tally, _) = self.compare();
            if tally.lost == 0 {
                return;
            }
            let now_size = dir_size(&self.output.join("out"));
            if now_size != size {
                (size, changed) = (now_size, Instant::now());
            }
            if changed.elapsed() >= self.quiet || began.elapsed() >= SETTLE_MAX {
                self.note(format!(
                    "settle: {} lines still missing after {:?}",
                    tally.lost,
                    began.elapsed()
                ));
                return;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

/// The size of a directory's files (the capture's progress).
fn dir_size(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok()?.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}
