//! A container of the round, and its truth: what the daemon held of its log.

use std::collections::HashSet;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use bollard::Docker;
use capturer_tests::{try_daemon_lines, DaemonLine};

use super::plan::{Logging, Plan};

/// A container of the round.
pub(super) struct Guest {
    /// Its number in the round (`c<idx>` in its lines).
    pub(super) idx: usize,
    /// Its container id (empty if it could not be started).
    pub(super) id: String,
    /// What it is, from the seed.
    pub(super) plan: Plan,
    /// What the daemon held of its log: every snapshot merged, per stream in the daemon's
    /// order (by timestamp).
    pub(super) truth: Vec<DaemonLine>,
    /// The lines of `truth` (stream, timestamp, message), so a snapshot adds only new ones.
    known: HashSet<(String, String, String)>,
    /// When its log was last read (for the next read's `since`; none: read it whole).
    pub(super) read_at: Option<SystemTime>,
}

impl Guest {
    /// Container `idx`, planned, not started yet.
    pub(super) fn new(idx: usize, plan: Plan) -> Guest {
        Guest {
            idx,
            id: String::new(),
            plan,
            truth: Vec::new(),
            known: HashSet::new(),
            read_at: None,
        }
    }

    /// A rotated log drops lines: it is read during the round, and its gaps are expected.
    pub(super) fn rotates(&self) -> bool {
        matches!(self.plan.logging, Logging::JsonRotated { .. })
    }

    /// Counted and checked (an `--rm` container's log vanishes with it).
    pub(super) fn counted(&self) -> bool {
        !self.plan.auto_remove && !self.id.is_empty()
    }

    /// The id as `docker ps` shows it.
    pub(super) fn short_id(&self) -> &str {
        &self.id[..self.id.len().min(12)]
    }

    /// Writes the truth to `<output>/truth/c<idx>-<id>.jsonl` (for a failure's post-mortem).
    pub(super) fn dump_truth(&self, output: &Path) {
        let dir = output.join("truth");
        let _ = std::fs::create_dir_all(&dir);
        let text: String = self
            .truth
            .iter()
            .map(|l| {
                serde_json::json!({"stream": l.stream, "ts": l.ts, "message": l.message})
                    .to_string()
                    + "\n"
            })
            .collect();
        let _ = std::fs::write(
            dir.join(format!("c{}-{}.jsonl", self.idx, self.short_id())),
            text,
        );
    }

    /// Merges what the daemon holds now (since a little before the last read) into the truth.
    pub(super) async fn read_log(&mut self, docker: &Docker) -> Result<(), bollard::errors::Error> {
        let now = SystemTime::now();
        // Lines are stamped before they reach the file: look 2 s back past the last read.
        let since = self.read_at.map_or(0, |t| {
            t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs() as i32 - 2
        });
        let lines = try_daemon_lines(docker, &self.id, self.plan.tty, since.max(0)).await?;
        for l in lines {
            if self
                .known
                .insert((l.stream.clone(), l.ts.clone(), l.message.clone()))
            {
                self.truth.push(l);
            }
        }
        // Per stream, the daemon's order is its timestamps' order (fixed-width RFC 3339 text),
        // whatever order the reads found the lines in; across streams no order is promised.
        // (A stable sort: a long line's parts share a timestamp, and were joined already.)
        self.truth
            .sort_by(|a, b| (&a.stream, &a.ts).cmp(&(&b.stream, &b.ts)));
        self.read_at = Some(now);
        Ok(())
    }
}
