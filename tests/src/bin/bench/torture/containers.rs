//! The chaos on the round's containers: spawns, restarts, stops, kills.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bollard::query_parameters::{
    KillContainerOptionsBuilder, RestartContainerOptionsBuilder, StopContainerOptionsBuilder,
};
use bollard::Docker;
use capturer_tests::Spec;

use super::daemon::Bed;
use super::guest::Guest;
use super::plan::{plan, Logging};
use super::round::{Action, Later, Round, LINE_BUDGET};

impl Round {
    /// A guest for a lifecycle action (only a running one for a stop); one whose program would
    /// run again only if the budget allows.
    pub(super) fn pick_guest(&mut self, running: &[String], running_only: bool) -> Option<usize> {
        let candidates: Vec<usize> = self
            .guests
            .iter()
            .filter(|g| !g.id.is_empty())
            .filter(|g| !running_only || running.contains(&g.id))
            // Starting a finite program again (also a running one: a restart) writes it again.
            .filter(|g| self.planned_lines + self.cost(g.idx) < LINE_BUDGET)
            .map(|g| g.idx)
            .collect();
        (!candidates.is_empty())
            .then(|| candidates[self.rng.range(0, candidates.len() as u64 - 1) as usize])
    }

    /// What starting a guest's program again adds to the round's lines, at most (a looping
    /// one was counted for the whole round when it was spawned).
    fn cost(&self, n: usize) -> f64 {
        let p = &self.guests[n].plan.program;
        if p.looping {
            0.0
        } else {
            p.lines
        }
    }

    /// Creates and starts the next planned container.
    pub(super) async fn spawn(&mut self, bed: &Bed, remaining: Duration) {
        let idx = self.guests.len();
        let plan = plan(self.seed, idx);
        let p = &plan.program;
        let cost = if p.looping {
            p.lines * remaining.as_secs_f64()
        } else if plan.restart_always {
            // Rerun by the daemon (with its backoff) while the round lasts.
            p.lines * 8.0
        } else {
            p.lines
        };
        if self.planned_lines + cost > LINE_BUDGET {
            // The next container does not fit in the round's budget: no more are spawned.
            self.max_guests = idx;
            self.note(format!(
                "c{idx} ({cost:.0} lines) would exceed the budget: no more containers"
            ));
            return;
        }
        self.planned_lines += cost;
        let mut spec = Spec {
            script: plan.program.script.clone(),
            labels: HashMap::from([("lc.bench".to_owned(), self.label.clone())]),
            tty: plan.tty,
            name: Some(format!("lct-{}-c{idx}", self.label)),
            restart_always: plan.restart_always,
            auto_remove: plan.auto_remove,
            // The daemon's own shutdown waits this long per container before SIGKILL.
            stop_timeout: Some(1),
            ..Spec::default()
        };
        match plan.logging {
            Logging::Json => {}
            Logging::JsonRotated {
                max_size_k,
                max_file,
            } => {
                spec.log_driver = Some("json-file".into());
                spec.log_opts = HashMap::from([
                    ("max-size".to_owned(), format!("{max_size_k}k")),
                    ("max-file".to_owned(), max_file.to_string()),
                ]);
            }
            Logging::Local => spec.log_driver = Some("local".into()),
        }
        let mut guest = Guest::new(idx, plan);
        let p = &guest.plan;
        let what = format!(
            "c{idx}: {}{}{}{}{}, {:.0} lines{}{}",
            p.logging.describe(),
            if p.tty { ", tty" } else { "" },
            if p.auto_remove { ", --rm" } else { "" },
            if p.restart_always {
                ", restart always"
            } else {
                ""
            },
            if p.program.looping { ", looping" } else { "" },
            p.program.lines,
            if p.program.looping { "/s" } else { "" },
            if p.program.log_bytes_per_sec > 0.0 {
                format!(", log <= {:.0} B/s", p.program.log_bytes_per_sec)
            } else {
                String::new()
            },
        );
        match capturer_tests::start(&bed.docker, &spec).await {
            Ok(id) => {
                guest.id = id;
                self.note(format!(
                    "spawn {what} as {}\n{}",
                    guest.short_id(),
                    guest.plan.program.script
                ));
            }
            Err(e) => self.fail(format!("harness: could not start {what}: {e}")),
        }
        self.guests.push(guest);
    }

    /// A container lifecycle action on guest `n`.
    pub(super) async fn lifecycle(&mut self, docker: &Docker, action: Action, n: usize) {
        let id = self.guests[n].id.clone();
        let t = self.rng.range(0, 2) as i32;
        let later = Instant::now() + Duration::from_millis(self.rng.range(100, 2000));
        let result = match action {
            Action::Restart => {
                let opts = RestartContainerOptionsBuilder::default().t(t).build();
                docker.restart_container(&id, Some(opts)).await
            }
            Action::StopStart | Action::Stop => {
                let opts = StopContainerOptionsBuilder::default().t(t).build();
                docker.stop_container(&id, Some(opts)).await
            }
            _ => {
                let opts = KillContainerOptionsBuilder::default()
                    .signal("SIGKILL")
                    .build();
                docker.kill_container(&id, Some(opts)).await
            }
        };
        match result {
            Ok(()) => {
                self.note(format!("{action:?} c{n} (t={t})"));
                if matches!(action, Action::StopStart | Action::KillStart) {
                    self.later.push((later, Later::Start(n)));
                }
                if action != Action::Stop {
                    self.restarts += 1;
                    self.planned_lines += self.cost(n);
                }
            }
            // A `--rm` container may be gone, a finished one not running: chaos, not failure.
            Err(e) => self.note(format!("{action:?} c{n}: {e}")),
        }
    }
}
