//! The abstract Docker daemon's side of one container: its log file and the `since` rule.
//!
//! A container's log is a fixed, finite list of [`Entry`]s in FILE order (the order the
//! json-file driver wrote them). The model's world says how many of them the container has
//! written so far; a reader generation walks the file from the start and sends what its
//! [`SinceRule`] lets through. What the capturer must deliver is the list of logical
//! [`LogLine`]s: per stream, partial entries carrying one timestamp merged with the part that
//! completes them, and an entry left without a newline delivered on its own.

use std::fmt;

use capturer_core::{Stream, Timestamp};

/// 2024-01-01T00:00:00Z, in nanoseconds: the capture starts here and every entry is stamped
/// after it.
pub const BASE: Timestamp = Timestamp(1_704_067_200_000_000_000);

const MS: u64 = 1_000_000;

/// One message as the daemon stores it: a frame's worth of payload with its timestamp.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Entry {
    /// The stream the container wrote it to.
    pub stream: Stream,
    /// The daemon's timestamp.
    pub ts: Timestamp,
    /// The text, without its newline.
    pub text: &'static str,
    /// Whether it ends in `\n`; an entry without one is a 16 KiB part or a last line.
    pub complete: bool,
}

impl Entry {
    const fn new(stream: Stream, ms: u64, text: &'static str, complete: bool) -> Entry {
        Entry {
            stream,
            ts: Timestamp(BASE.0 + ms * MS),
            text,
            complete,
        }
    }

    /// The frame the daemon sends for it: `<RFC 3339 timestamp> <payload>`.
    pub fn frame(&self) -> Vec<u8> {
        let nl = if self.complete { "\n" } else { "" };
        format!("{} {}{}", self.ts, self.text, nl).into_bytes()
    }
}

impl fmt::Display for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let nl = if self.complete { "\\n" } else { "" };
        write!(
            f,
            "{} \"{}{}\" @{}",
            self.stream,
            self.text,
            nl,
            rel(self.ts)
        )
    }
}

/// A timestamp relative to [`BASE`], in seconds with millisecond precision (`+1.250s`).
pub fn rel(ts: Timestamp) -> String {
    let d = ts.0.saturating_sub(BASE.0);
    format!("+{}.{:03}s", d / 1_000_000_000, d / MS % 1000)
}

/// The body of every model log, in file order; [`canonical_log`] takes a prefix and appends
/// the last line. Each feature the cursor must survive is in the first four:
///
/// - `o1`: a stdout line;
/// - `e1`: a stderr line stamped BEFORE the stdout line written before it (stdout and stderr
///   are copied by separate goroutines in dockerd);
/// - `p1` + `p2`: one line split in two parts carrying one timestamp, the first without `\n`
///   (the daemon's 16 KiB parts), stamped like `o1`: `o1` and `p1p2` are two distinct lines
///   with the SAME timestamp (a strictly-greater-than cursor loses the second);
/// - `e2`: a later stderr line, newer than the stdout before it: once both streams have
///   delivered, `since` can pass `e1`'s stamp while `e1` lies after `o1` in the file, which is
///   where the two readings of the daemon's `since` rule differ;
/// - then `o2`;
/// - all of them within one second, so that a whole-second cursor replays them.
const BODY: [Entry; 6] = [
    Entry::new(Stream::Stdout, 1000, "o1", true),
    Entry::new(Stream::Stderr, 500, "e1", true),
    Entry::new(Stream::Stdout, 1000, "p1", false),
    Entry::new(Stream::Stdout, 1000, "p2", true),
    Entry::new(Stream::Stderr, 1100, "e2", true),
    Entry::new(Stream::Stdout, 1400, "o2", true),
];

/// The last entry: a line without a newline, written just before the container exits; the
/// daemon never completes it and the capturer flushes it at the end of the stream.
const LAST: Entry = Entry::new(Stream::Stdout, 1900, "end", false);

/// The largest `n` [`canonical_log`] accepts.
pub const MAX_ENTRIES: usize = BODY.len() + 1;

/// A log of `n` entries (1 to [`MAX_ENTRIES`]): the first `n - 1` of the body, then the last
/// line without a newline.
pub fn canonical_log(n: usize) -> Vec<Entry> {
    let n = n.clamp(1, MAX_ENTRIES);
    let mut log: Vec<Entry> = BODY[..n - 1].to_vec();
    log.push(LAST);
    log
}

/// How the daemon applies `since` when a log stream is opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SinceRule {
    /// Measured on Docker 20.10 (`docs/cursor.md`): every entry stamped before `since` is
    /// skipped, wherever it lies in the file.
    SkipAllOlder,
    /// The other reading of the Engine API docs: entries are skipped only until the first one stamped at or after
    /// `since`; after it everything is sent, older stamps included.
    StopAtFirstNewer,
}

impl SinceRule {
    /// Both rules.
    pub const ALL: [SinceRule; 2] = [SinceRule::SkipAllOlder, SinceRule::StopAtFirstNewer];

    /// A short name for reports.
    pub fn name(self) -> &'static str {
        match self {
            SinceRule::SkipAllOlder => "A: skip every entry older than since (measured)",
            SinceRule::StopAtFirstNewer => "B: stop skipping at the first entry at or after since",
        }
    }
}

/// One logical line the capturer must deliver.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct LogLine {
    /// Its timestamp (all its parts carry it).
    pub ts: Timestamp,
    /// Its text, parts merged, without a newline.
    pub text: Vec<u8>,
}

/// What a log means: the logical lines per stream, and how many of them the first `w`
/// entries hold.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Meaning {
    /// Per stream index (stdout 0, stderr 1), the logical lines in order.
    pub lines: [Vec<LogLine>; 2],
    /// `upto[w][s]`: how many logical lines of stream `s` the first `w` entries hold, an
    /// unfinished last part counting as a line (it is flushed at the end of the stream).
    pub upto: Vec<[u8; 2]>,
    /// `mid_group[w]`: after `w` entries a line is half written (its next part, on the same
    /// stream with the same timestamp, is still to come). The container does not exit there.
    pub mid_group: Vec<bool>,
}

/// The logical lines of `log`, merged the way the daemon's 16 KiB parts are: per stream, parts
/// without `\n` carrying one timestamp are joined with the part that completes them; a part
/// followed by a different timestamp on its stream, or by nothing, is a line of its own.
pub fn meaning(log: &[Entry]) -> Meaning {
    let mut upto = Vec::with_capacity(log.len() + 1);
    let mut mid_group = Vec::with_capacity(log.len() + 1);
    for w in 0..=log.len() {
        let lines = merge(&log[..w]);
        upto.push([lines[0].len() as u8, lines[1].len() as u8]);
        mid_group.push(half_written(log, w));
    }
    Meaning {
        lines: merge(log),
        upto,
        mid_group,
    }
}

fn half_written(log: &[Entry], w: usize) -> bool {
    [Stream::Stdout, Stream::Stderr].iter().any(|&s| {
        let last = log[..w].iter().rev().find(|e| e.stream == s);
        let next = log[w..].iter().find(|e| e.stream == s);
        matches!((last, next), (Some(l), Some(n)) if !l.complete && n.ts == l.ts)
    })
}

fn merge(log: &[Entry]) -> [Vec<LogLine>; 2] {
    let mut out: [Vec<LogLine>; 2] = [Vec::new(), Vec::new()];
    let mut pending: [Option<LogLine>; 2] = [None, None];
    for e in log {
        let i = e.stream.index();
        if pending[i].as_ref().is_some_and(|p| p.ts != e.ts) {
            out[i].extend(pending[i].take());
        }
        let p = pending[i].get_or_insert_with(|| LogLine {
            ts: e.ts,
            text: Vec::new(),
        });
        p.text.extend_from_slice(e.text.as_bytes());
        if e.complete {
            out[i].extend(pending[i].take());
        }
    }
    for i in 0..2 {
        out[i].extend(pending[i].take());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_canonical_log_means_what_it_says() {
        let log = canonical_log(MAX_ENTRIES);
        let m = meaning(&log);
        let text = |s: usize| -> Vec<String> {
            m.lines[s]
                .iter()
                .map(|l| String::from_utf8_lossy(&l.text).into_owned())
                .collect()
        };
        assert_eq!(text(0), ["o1", "p1p2", "o2", "end"]);
        assert_eq!(text(1), ["e1", "e2"]);
        assert_eq!(
            m.lines[0][0].ts, m.lines[0][1].ts,
            "an equal-timestamp group"
        );
        assert!(m.mid_group[3], "after p1, p2 is still to come");
        assert!(!m.mid_group[4]);
        assert_eq!(
            m.upto[3],
            [2, 1],
            "p1 alone counts as a line if the stream ends there"
        );
        assert_eq!(m.upto[log.len()], [4, 2]);
    }

    #[test]
    fn within_a_stream_timestamps_never_decrease() {
        let log = canonical_log(MAX_ENTRIES);
        for s in [Stream::Stdout, Stream::Stderr] {
            let ts: Vec<_> = log.iter().filter(|e| e.stream == s).map(|e| e.ts).collect();
            assert!(ts.windows(2).all(|w| w[0] <= w[1]), "{s}");
        }
    }

    #[test]
    fn a_short_log_keeps_its_last_line_and_splits_a_lone_part() {
        let log = canonical_log(4);
        let m = meaning(&log);
        let texts: Vec<_> = m.lines[0].iter().map(|l| l.text.clone()).collect();
        assert_eq!(texts, [b"o1".to_vec(), b"p1".to_vec(), b"end".to_vec()]);
        assert!(!m.mid_group[3], "p1 is followed by a different timestamp");
    }

    #[test]
    fn frames_use_the_daemon_format() {
        let e = &canonical_log(2)[0];
        assert_eq!(e.frame(), b"2024-01-01T00:00:01.000000000Z o1\n".to_vec());
    }
}
