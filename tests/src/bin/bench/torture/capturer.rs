//! The capturer under test: its start, its SIGTERMs and SIGKILLs and starts again.

use std::time::{Duration, Instant};

use capturer_tests::capturer::Capturer;

use super::round::{Later, Round};

impl Round {
    /// Starts the round's capturer (against the daemon at `host`, selecting the round's label,
    /// with its `--rotate-every`, `--heartbeat-every` and `--rotate-when-quiet`).
    pub(super) fn start_capturer(&mut self, host: &str) {
        let extra = [
            "--docker-host".to_owned(),
            host.to_owned(),
            "--rotate-every".to_owned(),
            format!("{}ms", self.rotate_every.as_millis()),
            "--heartbeat-every".to_owned(),
            format!("{}ms", self.heartbeat_every.as_millis()),
            "--rotate-when-quiet".to_owned(),
            format!("{}ms", self.rotate_when_quiet.as_millis()),
        ];
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        let mut cap = Capturer::start(
            &format!("torture-{}", self.seed),
            &format!("lc.bench={}", self.label),
            &extra,
        );
        cap.keep_output();
        self.output = cap.output.clone();
        self.cap = Some(cap);
        self.cap_up = true;
        self.note(format!("capturer up: {}", extra.join(" ")));
    }

    /// Starts the capturer again (after a SIGTERM or a SIGKILL).
    pub(super) fn capturer_up(&mut self) {
        if let Some(cap) = &mut self.cap {
            cap.restart();
        }
        self.cap_up = true;
        self.note("capturer up again".into());
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
            // Where each output stood: a line found twice after this is this kill's doing.
            let held: Vec<String> = self
                .guests
                .iter()
                .filter(|g| g.counted())
                .map(|g| format!("c{} {}", g.idx, cap.records_lenient(&g.id).records.len()))
                .collect();
            self.note(format!(
                "capturer SIGKILL, down for {downtime:?}; records then: {}",
                held.join(", ")
            ));
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
}
