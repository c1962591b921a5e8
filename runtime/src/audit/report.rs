//! What an audit found, per container and stream, as text for people and JSON for machines.

use std::fmt::Write as _;

use capturer_core::{Position, Stream};
use serde::Serialize;

/// Up to how many containers not captured the text names.
const NAMED: usize = 10;

/// How much of a message the text shows.
const SHOWN: usize = 200;

/// The whole audit.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// The output directory judged.
    pub output: String,
    /// The state directory whose cursors bound the judged range.
    pub state_dir: String,
    /// Whether the state directory exists (without it no range ends at a cursor).
    pub state_found: bool,
    /// Every container judged, or that the output holds.
    pub containers: Vec<ContainerReport>,
    /// Selected containers the daemon lists that neither the output nor the state knows: not
    /// judged, as the audit cannot know whether the capturer was meant to take them (or has
    /// yet to reach them).
    pub not_captured: Vec<Named>,
}

/// A container by id and name.
#[derive(Clone, Debug, Serialize)]
pub struct Named {
    /// The full id.
    pub id: String,
    /// The name.
    pub name: String,
}

/// What the audit says of one container.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Every judged line once, in order, as the daemon holds it.
    Exact,
    /// At least one difference.
    Different,
    /// The daemon no longer has it: nothing to compare with (its output's own order and
    /// duplicates were checked, and were fine).
    NotInDaemon,
    /// The daemon cannot send its log (its logging driver cannot be read, as `run` finds
    /// too): nothing to compare with.
    Unreadable,
}

/// Where the judged range begins; it ends at the cursor, or at the output's last line if that
/// is later.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "from")]
pub enum Range {
    /// The capture's start as the persisted cursor says (`--from start`: the log's beginning;
    /// `--from now`: the capturer's first start).
    CaptureStart {
        /// The start, RFC 3339; empty for the log's beginning.
        at: String,
    },
    /// The first line the output still holds: retention deleted older rotated files.
    OutputAfterRetention,
    /// The first line the output holds: the state directory has no cursor for it.
    OutputWithoutCursor,
}

/// One container's findings.
#[derive(Clone, Debug, Serialize)]
pub struct ContainerReport {
    /// The full id.
    pub id: String,
    /// The name.
    pub name: String,
    /// It runs: lines past the cursor may still be on their way.
    pub running: bool,
    /// The verdict.
    pub verdict: Verdict,
    /// Where the judged range begins.
    pub range: Range,
    /// Per stream written on either side.
    pub streams: Vec<StreamReport>,
    /// Output lines that are not one of its records.
    pub unreadable: u64,
    /// The first of them, `file:line: why`.
    pub first_unreadable: Option<String>,
    /// The difference at the lowest position.
    pub first_difference: Option<Difference>,
    /// Why the daemon's log could not be read, if it could not.
    pub why: Option<String>,
}

/// One stream's counts.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct StreamReport {
    /// `stdout`, `stderr` or `console`.
    pub stream: String,
    /// Records the output holds.
    pub output_lines: u64,
    /// The daemon's lines inside the judged range.
    pub judged: u64,
    /// Of those, found once in the output with the same timestamp and message.
    pub exact: u64,
    /// In the daemon's log inside the range, absent from the output.
    pub lost: u64,
    /// Copies of a position already in the output.
    pub duplicated: u64,
    /// Records whose position is lower than one before them.
    pub reordered: u64,
    /// At a position the daemon has, with another timestamp or message.
    pub differing: u64,
    /// At a position inside the daemon's log that the daemon does not have.
    pub extra: u64,
    /// The daemon's lines after the range (past the cursor): still on their way.
    pub pending: u64,
    /// The daemon's lines before the range: not the capture's.
    pub before_range: u64,
    /// Output lines older than anything the daemon still holds (its own log rotated them
    /// away): cannot be judged.
    pub older_than_daemon: u64,
}

impl StreamReport {
    /// Whether this stream shows a difference.
    pub fn differs(&self) -> bool {
        self.lost + self.duplicated + self.reordered + self.differing + self.extra > 0
    }
}

/// Kinds of difference.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// The daemon has it, the output does not.
    Lost,
    /// The output has it twice.
    Duplicated,
    /// The output has it after a later line.
    Reordered,
    /// Both have it, not alike.
    Differing,
    /// The output has it, the daemon does not.
    Extra,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Lost => "lost",
            Kind::Duplicated => "duplicated",
            Kind::Reordered => "reordered",
            Kind::Differing => "differing",
            Kind::Extra => "extra",
        }
    }
}

/// One difference, with both sides' text.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Difference {
    /// What kind.
    pub kind: Kind,
    /// The stream.
    pub stream: String,
    /// The position, `<ts in ns>.<n>`.
    pub pos: String,
    /// The timestamp, as the daemon (or else the output) has it.
    pub ts: String,
    /// The output's message, if it has one there.
    pub output: Option<String>,
    /// The daemon's message, if it has one there.
    pub daemon: Option<String>,
    /// The position itself, to find the lowest.
    #[serde(skip)]
    pub at: (Position, Stream),
}

impl Report {
    /// Whether every judged container is exact.
    pub fn is_exact(&self) -> bool {
        self.containers
            .iter()
            .all(|c| c.verdict != Verdict::Different)
    }

    /// The report as text, one block per container and a summary.
    pub fn text(&self) -> String {
        let mut t = String::new();
        let _ = writeln!(
            t,
            "audit of {} (state {}{})",
            self.output,
            self.state_dir,
            if self.state_found { "" } else { ", not found" }
        );
        for c in &self.containers {
            c.text(&mut t);
        }
        if !self.not_captured.is_empty() {
            let _ = write!(
                t,
                "not captured (no output, no cursor; not judged): {} containers",
                self.not_captured.len()
            );
            if self.not_captured.len() <= NAMED {
                let names: Vec<&str> = self.not_captured.iter().map(|n| n.name.as_str()).collect();
                let _ = write!(t, ": {}", names.join(", "));
            }
            t.push('\n');
        }
        let count = |v: Verdict| self.containers.iter().filter(|c| c.verdict == v).count();
        let _ = writeln!(
            t,
            "summary: judged {}: {} exact, {} different; {} not in the daemon, {} unreadable; {}",
            count(Verdict::Exact) + count(Verdict::Different),
            count(Verdict::Exact),
            count(Verdict::Different),
            count(Verdict::NotInDaemon),
            count(Verdict::Unreadable),
            if self.is_exact() {
                "EXACT"
            } else {
                "DIFFERENT"
            }
        );
        t
    }
}

impl ContainerReport {
    fn text(&self, t: &mut String) {
        let short = &self.id[..self.id.len().min(12)];
        let verdict = match self.verdict {
            Verdict::Exact => "exact",
            Verdict::Different => "DIFFERENT",
            Verdict::NotInDaemon => "not in the daemon (not judged)",
            Verdict::Unreadable => "its log cannot be read from the daemon (not judged)",
        };
        let running = if self.running { ", running" } else { "" };
        let _ = writeln!(t, "{} ({short}{running}): {verdict}", self.name);
        if let Some(why) = &self.why {
            let _ = writeln!(t, "  {why}");
        }
        let range = match &self.range {
            Range::CaptureStart { at } if at.is_empty() => {
                "from the log's first line (the capture's start)".to_owned()
            }
            Range::CaptureStart { at } => format!("from {at} (the capture's start)"),
            Range::OutputAfterRetention => {
                "from the first line the output still holds (retention deleted older files)"
                    .to_owned()
            }
            Range::OutputWithoutCursor => {
                "from the first line the output holds (no cursor for it)".to_owned()
            }
        };
        let end = match self.range {
            Range::OutputWithoutCursor => "the output's last line",
            _ => "the cursor (or the output's last line, if later)",
        };
        let _ = writeln!(t, "  range: {range} to {end}");
        for s in &self.streams {
            let _ = write!(
                t,
                "  {}: {} in the output, {} judged, {} exact",
                s.stream, s.output_lines, s.judged, s.exact
            );
            for (n, what) in [
                (s.lost, "lost"),
                (s.duplicated, "duplicated"),
                (s.reordered, "reordered"),
                (s.differing, "differing"),
                (s.extra, "extra"),
                (s.pending, "pending"),
                (s.before_range, "before the range"),
                (s.older_than_daemon, "older than the daemon's log"),
            ] {
                if n > 0 {
                    let _ = write!(t, ", {n} {what}");
                }
            }
            t.push('\n');
        }
        if self.unreadable > 0 {
            let _ = writeln!(
                t,
                "  unreadable output lines: {} (first: {})",
                self.unreadable,
                self.first_unreadable.as_deref().unwrap_or("")
            );
        }
        if let Some(d) = &self.first_difference {
            let _ = writeln!(
                t,
                "  first difference: {} {} at pos {} ({})",
                d.stream,
                d.kind.as_str(),
                d.pos,
                d.ts
            );
            let side = |s: &Option<String>| match s {
                Some(m) if m.len() > SHOWN => {
                    let cut: String = m.chars().take(SHOWN).collect();
                    format!("{cut:?}... ({} bytes)", m.len())
                }
                Some(m) => format!("{m:?}"),
                None => "(absent)".to_owned(),
            };
            let _ = writeln!(t, "    daemon: {}", side(&d.daemon));
            let _ = writeln!(t, "    output: {}", side(&d.output));
        }
    }
}
