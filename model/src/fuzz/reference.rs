//! The delivery rule, written the obvious way, for the differential checks.
//!
//! Nothing here is clever or fast: a log is a list of entries as the daemon's json-file driver
//! stores them (one frame each), and what must be delivered is read off that list directly.
//!
//! - A line is the concatenation of the consecutive entries of one stream that carry the same
//!   timestamp, up to and including the first one that ends in `\n` (the daemon's 16 KiB parts).
//!   An entry stamped differently from an unfinished line before it ends that line as it is
//!   (the last words before a restart); so does the end of the log (the container exited).
//! - A line is delivered without its `\n` (and, on the console, without the `\r` before it;
//!   also without a last `\r` when a line of several parts ended without `\n`: the `local`
//!   driver drops the last part's `\n`).
//! - A line longer than the cap is delivered as pieces of exactly `cap` bytes marked truncated,
//!   then the rest (at most `cap` bytes) unmarked.
//! - Nothing stamped before the capture's start is delivered; everything else is delivered
//!   exactly once, in log order per stream.

use capturer_core::{Stream, Timestamp};

/// One entry of a container's log: one frame's worth, as the json-file driver stores it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The stream it was written to.
    pub stream: Stream,
    /// Its timestamp.
    pub ts: Timestamp,
    /// Its bytes, with the `\n` if it ends a line.
    pub payload: Vec<u8>,
}

impl Entry {
    /// The frame the daemon sends for it with `timestamps=1`: `<RFC 3339> <payload>`.
    pub fn frame(&self) -> Vec<u8> {
        let mut v = self.ts.to_string().into_bytes();
        v.push(b' ');
        v.extend_from_slice(&self.payload);
        v
    }
}

/// One delivered message, as the reference and the core both describe it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Delivered {
    /// Its timestamp.
    pub ts: Timestamp,
    /// The line without its newline.
    pub body: Vec<u8>,
    /// Cut at the cap.
    pub truncated: bool,
}

impl std::fmt::Display for Delivered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}{} {:?}",
            self.ts.0,
            if self.truncated { " (truncated)" } else { "" },
            String::from_utf8_lossy(&self.body)
        )
    }
}

/// A line of one stream: its timestamp, its bytes, and whether a `\n` ended it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefLine {
    /// The timestamp all its parts carry.
    pub ts: Timestamp,
    /// Its bytes, without the `\n`.
    pub bytes: Vec<u8>,
    /// A `\n` ended it (otherwise a new timestamp or the end of the log did).
    pub complete: bool,
    /// Entries (frames) it was sent in.
    pub parts: usize,
}

/// The lines of one stream, from its entries `(timestamp, payload)` in log order, the log read
/// to its end.
pub fn lines<'a>(entries: impl IntoIterator<Item = (Timestamp, &'a [u8])>) -> Vec<RefLine> {
    let mut out = Vec::new();
    let mut open: Option<RefLine> = None;
    for (ts, payload) in entries {
        if open.as_ref().is_some_and(|l| l.ts != ts) {
            out.extend(open.take());
        }
        let (part, complete) = match payload.split_last() {
            Some((b'\n', rest)) => (rest, true),
            _ => (payload, false),
        };
        let line = open.get_or_insert_with(|| RefLine {
            ts,
            bytes: Vec::new(),
            complete: false,
            parts: 0,
        });
        line.bytes.extend_from_slice(part);
        line.parts += 1;
        if complete {
            line.complete = true;
            out.extend(open.take());
        }
    }
    out.extend(open);
    out
}

/// What must be delivered for the lines of `stream`, with messages capped at `cap` bytes and
/// the capture begun at `start`.
pub fn deliveries(
    stream: Stream,
    lines: &[RefLine],
    cap: usize,
    start: Timestamp,
) -> Vec<Delivered> {
    let cap = cap.max(1);
    let mut out = Vec::new();
    for line in lines.iter().filter(|l| l.ts >= start) {
        let mut body: &[u8] = &line.bytes;
        if stream == Stream::Console && (line.complete || line.parts > 1) {
            body = body.strip_suffix(b"\r").unwrap_or(body);
        }
        while body.len() > cap {
            out.push(Delivered {
                ts: line.ts,
                body: body[..cap].to_vec(),
                truncated: true,
            });
            body = &body[cap..];
        }
        out.push(Delivered {
            ts: line.ts,
            body: body.to_vec(),
            truncated: false,
        });
    }
    out
}

/// What must be delivered from a whole log, for one stream.
pub fn expected(log: &[Entry], stream: Stream, cap: usize, start: Timestamp) -> Vec<Delivered> {
    let entries = log
        .iter()
        .filter(|e| e.stream == stream)
        .map(|e| (e.ts, e.payload.as_slice()));
    deliveries(stream, &lines(entries), cap, start)
}

/// Which entries a reader opened with `since` is sent, as the daemon decides it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SinceRule {
    /// Measured on Docker 20.10 (`docs/cursor.md`): every entry stamped before `since` is
    /// dropped, wherever it lies.
    DropAllBefore,
    /// The other reading of the Engine API docs: entries are skipped until the first one stamped
    /// at or after `since`; everything after it is sent, older stamps included.
    SkipUntilFirst,
}

/// The daemon's filter for one reader: feed it the entries in log order, it says which to send.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SinceFilter {
    rule: SinceRule,
    since: Timestamp,
    skipping: bool,
}

impl SinceFilter {
    /// A filter for a request with `since`.
    pub fn new(rule: SinceRule, since: Timestamp) -> SinceFilter {
        SinceFilter {
            rule,
            since,
            skipping: true,
        }
    }

    /// Whether the next entry, stamped `ts`, is sent.
    pub fn sends(&mut self, ts: Timestamp) -> bool {
        match self.rule {
            SinceRule::DropAllBefore => ts >= self.since,
            SinceRule::SkipUntilFirst => {
                if self.skipping && ts >= self.since {
                    self.skipping = false;
                }
                !self.skipping
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(stream: Stream, ts: u64, payload: &str) -> Entry {
        Entry {
            stream,
            ts: Timestamp(ts),
            payload: payload.as_bytes().to_vec(),
        }
    }

    fn bodies(d: &[Delivered]) -> Vec<(u64, String, bool)> {
        d.iter()
            .map(|d| {
                (
                    d.ts.0,
                    String::from_utf8_lossy(&d.body).into_owned(),
                    d.truncated,
                )
            })
            .collect()
    }

    #[test]
    fn parts_merge_and_unfinished_lines_end_at_a_new_stamp_or_the_end() {
        let log = [
            e(Stream::Stdout, 5, "a\n"),
            e(Stream::Stdout, 5, "b"),
            e(Stream::Stderr, 3, "x\n"),
            e(Stream::Stdout, 5, "c\n"),
            e(Stream::Stdout, 6, "last"),
            e(Stream::Stdout, 9, "next\n"),
            e(Stream::Stdout, 9, "tail"),
        ];
        assert_eq!(
            bodies(&expected(&log, Stream::Stdout, 100, Timestamp(0))),
            vec![
                (5, "a".into(), false),
                (5, "bc".into(), false),
                (6, "last".into(), false),
                (9, "next".into(), false),
                (9, "tail".into(), false)
            ]
        );
        assert_eq!(
            bodies(&expected(&log, Stream::Stderr, 100, Timestamp(4))),
            vec![]
        );
    }

    #[test]
    fn the_cap_cuts_pieces_of_exactly_cap_bytes() {
        let log = [
            e(Stream::Stdout, 1, "abcdefghi\n"),
            e(Stream::Stdout, 2, "abcd\n"),
        ];
        assert_eq!(
            bodies(&expected(&log, Stream::Stdout, 4, Timestamp(0))),
            vec![
                (1, "abcd".into(), true),
                (1, "efgh".into(), true),
                (1, "i".into(), false),
                (2, "abcd".into(), false)
            ]
        );
    }

    #[test]
    fn since_rules() {
        let stamps = [5, 10, 6, 11, 7].map(Timestamp);
        let sent = |rule| {
            let mut f = SinceFilter::new(rule, Timestamp(6));
            stamps
                .iter()
                .filter(|ts| f.sends(**ts))
                .map(|t| t.0)
                .collect::<Vec<_>>()
        };
        assert_eq!(sent(SinceRule::DropAllBefore), vec![10, 6, 11, 7]);
        assert_eq!(sent(SinceRule::SkipUntilFirst), vec![10, 6, 11, 7]);
        let mut f = SinceFilter::new(SinceRule::SkipUntilFirst, Timestamp(10));
        let sent: Vec<_> = stamps
            .iter()
            .filter(|ts| f.sends(**ts))
            .map(|t| t.0)
            .collect();
        assert_eq!(sent, vec![10, 6, 11, 7]);
        let mut f = SinceFilter::new(SinceRule::DropAllBefore, Timestamp(10));
        let sent: Vec<_> = stamps
            .iter()
            .filter(|ts| f.sends(**ts))
            .map(|t| t.0)
            .collect();
        assert_eq!(sent, vec![10, 11]);
    }
}
