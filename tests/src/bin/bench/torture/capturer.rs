//! The capturer under test: its start, its SIGTERMs and SIGKILLs and starts again, and what a
//! kill left behind.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use capturer_core::Timestamp;
use capturer_tests::capturer::Capturer;

use super::oracle::{show, STREAMS};
use super::round::{Later, Round};
use super::since_epoch;

/// A capturer checkpoints every second (`--checkpoint-every`): one killed after running this
/// long must have persisted a cursor covering every record written this long before the kill.
const CHECKPOINT_SLACK: Duration = Duration::from_millis(2500);

/// What the capturer had done when a SIGKILL stopped it: per container, the records complete
/// in its output and the cursor positions persisted (stdout, stderr, console).
pub(super) struct KillMark {
    /// When, in nanoseconds since the epoch (the daemon's clock is this machine's).
    pub(super) at_ns: u64,
    /// Per container id, the complete records in its output.
    pub(super) records: HashMap<String, usize>,
    /// Per container id, the persisted cursor's timestamps (stdout, stderr, console).
    pub(super) persisted: HashMap<String, [u64; 3]>,
}

impl Round {
    /// Starts the round's capturer (against the daemon at `host`, selecting the round's label,
    /// with its `--rotate-every` and `--heartbeat-every`).
    pub(super) fn start_capturer(&mut self, host: &str) {
        let extra = [
            "--docker-host".to_owned(),
            host.to_owned(),
            "--rotate-every".to_owned(),
            format!("{}ms", self.rotate_every.as_millis()),
            "--heartbeat-every".to_owned(),
            format!("{}ms", self.heartbeat_every.as_millis()),
        ];
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        let cap = Capturer::start(
            &format!("torture-{}", self.seed),
            &format!("lc.bench={}", self.label),
            &extra,
        );
        self.output = cap.output.clone();
        self.cap = Some(cap);
        self.cap_up = true;
        self.cap_started = Instant::now();
        self.note(format!("capturer up: {}", extra.join(" ")));
    }

    /// Starts the capturer again (after a SIGTERM or a SIGKILL).
    pub(super) fn capturer_up(&mut self) {
        self.note_start_sizes();
        if let Some(cap) = &mut self.cap {
            cap.restart();
        }
        self.cap_up = true;
        self.cap_started = Instant::now();
        self.note("capturer up again".into());
    }

    /// Notes the size of each container's output, as a capturer process starts.
    fn note_start_sizes(&mut self) {
        let out = self.output.join("out");
        self.start_sizes = self
            .guests
            .iter()
            .filter(|g| g.counted())
            .map(|g| {
                let path = out.join(format!("{}.jsonl", g.id));
                let size = std::fs::metadata(path).map_or(0, |m| m.len());
                (g.id.clone(), size)
            })
            .collect();
    }

    /// SIGKILL (`kill`) or SIGTERM, and a start again after a few hundred ms to 2 s.
    pub(super) fn capturer_down(&mut self, kill: bool) {
        let Some(cap) = &mut self.cap else {
            return;
        };
        let downtime = Duration::from_millis(self.rng.range(200, 2000));
        self.rotations += cap.metric_sum("log_capturer_stream_rotations_total") as u64;
        if kill {
            cap.kill();
            self.kills += 1;
            let lived = self.cap_started.elapsed();
            let mark = self.kill_mark(lived);
            self.marks.push(mark);
            self.note(format!("capturer SIGKILL, down for {downtime:?}"));
        } else {
            let status = cap.terminate();
            self.terms += 1;
            self.note(format!(
                "capturer SIGTERM ({status}), down for {downtime:?}"
            ));
            if !status.success() {
                let log = self.output.join("capturer.log");
                self.fail(format!(
                    "the capturer exited with {status} on SIGTERM mid-round (log: {})",
                    log.display()
                ));
            }
        }
        self.cap_up = false;
        self.later
            .push((Instant::now() + downtime, Later::Capturer));
    }

    /// What a killed capturer left: complete records and persisted cursors, per container.
    /// If it had run long enough to checkpoint, a capture that had not grown for a while must
    /// be covered by its persisted cursor (else a restart would replay more than a checkpoint
    /// interval's worth): a failure otherwise.
    fn kill_mark(&mut self, lived: Duration) -> KillMark {
        let mut mark = KillMark {
            at_ns: since_epoch().as_nanos() as u64,
            records: HashMap::new(),
            persisted: HashMap::new(),
        };
        let Some(cap) = &self.cap else { return mark };
        let mut stale = Vec::new();
        for g in self.guests.iter().filter(|g| g.counted()) {
            let records = cap.records_lenient(&g.id).records;
            mark.records.insert(g.id.clone(), records.len());
            let path = cap.state_dir().join(format!("{}.json", g.id));
            let saved: serde_json::Value = std::fs::read(&path)
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok())
                .unwrap_or_default();
            let pos = |i: usize| saved["cursor"]["positions"][i]["ts"].as_u64().unwrap_or(0);
            let persisted = [pos(0), pos(1), pos(2)];
            mark.persisted.insert(g.id.clone(), persisted);
            stale.push(format!(
                "  at the kill: c{} has {} records; persisted stdout {} stderr {} console {}",
                g.idx,
                records.len(),
                persisted[0],
                persisted[1],
                persisted[2]
            ));
            let output = cap.output.join("out").join(format!("{}.jsonl", g.id));
            let meta = std::fs::metadata(&output).ok();
            let quiet_for = meta
                .as_ref()
                .and_then(|m| m.modified().ok())
                .and_then(|t| t.elapsed().ok())
                .unwrap_or_default();
            // Only what this process wrote: an earlier one killed before its first checkpoint
            // may have left records no cursor covers (the duplicates check judges their fate).
            let wrote =
                meta.map_or(0, |m| m.len()) > self.start_sizes.get(&g.id).copied().unwrap_or(0);
            if lived < CHECKPOINT_SLACK || quiet_for < CHECKPOINT_SLACK || !wrote {
                continue;
            }
            for (i, stream) in STREAMS.iter().enumerate() {
                let Some(last) = records.iter().rev().find(|r| r.stream == *stream) else {
                    continue;
                };
                let last_ns = Timestamp::parse_rfc3339(last.ts.as_bytes()).map_or(0, |t| t.0);
                if last_ns > persisted[i] {
                    stale.push(format!(
                        "stale cursor at a SIGKILL: c{} {stream} persisted at {} ns, but {} was captured {:.1}s before the kill (the capturer had run {:.1}s)",
                        g.idx,
                        persisted[i],
                        show(last),
                        quiet_for.as_secs_f64(),
                        lived.as_secs_f64()
                    ));
                }
            }
        }
        for s in stale {
            if s.starts_with("  ") {
                self.note(s);
            } else {
                self.fail(s);
            }
        }
        mark
    }
}
