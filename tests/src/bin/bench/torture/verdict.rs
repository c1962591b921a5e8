//! A round's verdict: the comparison of every container's capture, the failures it adds, and
//! the summary line.

use std::time::Duration;

use capturer_tests::exact::position_faults;

use super::oracle::{compare_stream, Tally, STREAMS};
use super::round::Round;

impl Round {
    /// The final comparison: its counts kept, and the failures they and each stream show.
    pub(super) fn judge(&mut self) {
        let (tally, findings) = self.compare();
        self.tally = tally;
        self.check_tally();
        self.failures.extend(findings);
    }

    /// The failures the counts show by themselves: torn records, lines no container wrote,
    /// duplicates (none is allowed, after a SIGKILL either).
    fn check_tally(&mut self) {
        let t = self.tally;
        if t.torn > 0 {
            self.failures
                .push(format!("{} torn records in the output", t.torn));
        }
        if t.unexpected > 0 {
            self.failures.push(format!(
                "{} captured lines the containers never wrote (or changed)",
                t.unexpected
            ));
        }
        if t.duplicated > 0 {
            self.failures.push(format!(
                "{} duplicates after {} SIGKILLs of the capturer",
                t.duplicated, self.kills
            ));
        }
    }

    /// The round's line of figures, and its verdict.
    pub(super) fn summary(&self) -> Summary {
        let t = self.tally;
        Summary {
            seed: self.seed,
            containers: self.guests.iter().filter(|g| g.counted()).count(),
            lines: t.expected,
            lost: t.lost,
            duplicated: t.duplicated,
            reordered: t.reordered,
            restarts: self.restarts,
            kills: self.kills,
            terms: self.terms,
            daemon_restarts: self.daemon_restarts,
            rotations: self.rotations,
            resent_parts: t.resent_parts,
            rotate_every: self.rotate_every,
            pass: self.failures.is_empty() && t.lost + t.duplicated + t.reordered == 0,
        }
    }

    /// Compares every counted container's capture with its truth.
    pub(super) fn compare(&self) -> (Tally, Vec<String>) {
        let mut total = Tally::default();
        let mut findings = Vec::new();
        let Some(cap) = &self.cap else {
            return (total, findings);
        };
        for g in self.guests.iter().filter(|g| g.counted()) {
            let read = cap.records_lenient(&g.id);
            total.torn += read.torn;
            // Every copy of a line carries its position, and no two lines share one.
            let faults = position_faults(&read.records);
            if let Some(first) = faults.first() {
                findings.push(format!(
                    "c{} {}: {} records break the pos contract; first: {first}",
                    g.idx,
                    g.short_id(),
                    faults.len()
                ));
            }
            for stream in STREAMS {
                let t = compare_stream(g, stream, &read.records);
                if t.tally.failed() {
                    g.dump_truth(&self.output);
                    findings.push(format!(
                        "c{} {} ({}{}) {stream}: {}",
                        g.idx,
                        g.short_id(),
                        g.plan.logging.describe(),
                        if g.plan.tty { ", tty" } else { "" },
                        t.describe()
                    ));
                }
                total.add(&t.tally);
            }
        }
        (total, findings)
    }
}

/// The round's line of figures.
pub(super) struct Summary {
    seed: u64,
    containers: usize,
    lines: usize,
    lost: usize,
    duplicated: usize,
    reordered: usize,
    restarts: u64,
    kills: u64,
    terms: u64,
    daemon_restarts: u64,
    rotations: u64,
    /// Lines with a full part the daemon sent twice (see `Tally::resent_parts`).
    resent_parts: usize,
    rotate_every: Duration,
    /// No failure, nothing lost, duplicated or reordered.
    pub(super) pass: bool,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "TORTURE seed={} containers={} lines={} lost={} duplicated={} reordered={} restarts={} kills={} terms={} daemon_restarts={} rotations={} resent_parts={} rotate_every={}ms verdict={}",
            self.seed,
            self.containers,
            self.lines,
            self.lost,
            self.duplicated,
            self.reordered,
            self.restarts,
            self.kills,
            self.terms,
            self.daemon_restarts,
            self.rotations,
            self.resent_parts,
            self.rotate_every.as_millis(),
            if self.pass { "PASS" } else { "FAIL" }
        )
    }
}
