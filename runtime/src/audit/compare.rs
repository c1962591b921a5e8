//! The comparison of one container's output with the daemon's log, by position, per stream.
//!
//! Inside the output alone: a position twice is a duplicate, a position below one before it is
//! reordered. Against the daemon, over the judged range: a daemon line whose position the
//! output lacks is lost, one the output has with another timestamp or message is differing
//! (a record marked truncated needs only be a prefix), an output position inside the daemon's
//! log that the daemon lacks is extra. The range begins per [`Lower`] and ends, per stream, at
//! the cursor or at the output's last line if that is later: the daemon's lines past it are
//! pending, and its lines before it are not the capture's.

use std::collections::HashMap;

use capturer_core::{Cursor, Line, Position, Stream, Timestamp};

use super::captured::{Captured, Record};
use super::daemon::DaemonLog;
use super::report::{ContainerReport, Difference, Kind, Range, StreamReport, Verdict};

/// Where the judged range begins.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lower {
    /// At the capture's start: what the cursor was made with.
    Start(Timestamp),
    /// At each stream's first line in the output (or, for a stream without one, at the
    /// output's earliest line): the output's beginning is gone or unknown.
    Output {
        /// Retention deleted rotated files (else: no cursor).
        retention: bool,
    },
}

/// Judges container `id` (`name`) from what the output holds, what the daemon holds (`None`:
/// it does not know the container) and its persisted cursor.
pub fn judge(
    id: &str,
    name: &str,
    captured: &Captured,
    daemon: Option<&DaemonLog>,
    cursor: Option<&Cursor>,
    lower: Lower,
) -> ContainerReport {
    let mut first: Option<Difference> = None;
    let mut streams = Vec::new();
    for stream in Stream::ALL {
        let out = &captured.streams[stream.index()];
        let lines: &[Line] = daemon.map_or(&[], |d| &d.lines[stream.index()]);
        if out.is_empty() && lines.is_empty() {
            continue;
        }
        let from = match lower {
            Lower::Start(t) => Position { ts: t, n: 0 },
            Lower::Output { .. } => out.iter().map(|r| r.pos).min().unwrap_or(Position {
                ts: captured.earliest().unwrap_or(Timestamp(u64::MAX)),
                n: 0,
            }),
        };
        let mut s = judge_stream(stream, out, lines, from, cursor, &mut first);
        if let Some(d) = daemon {
            s.before_range += d.before_start[stream.index()];
        }
        streams.push(s);
    }
    let unreadable = captured.unreadable_count;
    let different = unreadable > 0 || streams.iter().any(StreamReport::differs);
    let verdict = match (different, daemon) {
        (true, _) => Verdict::Different,
        (false, Some(_)) => Verdict::Exact,
        (false, None) => Verdict::NotInDaemon,
    };
    let range = match lower {
        Lower::Start(t) => Range::CaptureStart {
            at: if t.0 == 0 {
                String::new()
            } else {
                t.to_string()
            },
        },
        Lower::Output { retention: true } => Range::OutputAfterRetention,
        Lower::Output { retention: false } => Range::OutputWithoutCursor,
    };
    ContainerReport {
        id: id.to_owned(),
        name: name.to_owned(),
        running: daemon.is_some_and(|d| d.running),
        verdict,
        range,
        streams,
        unreadable,
        first_unreadable: captured
            .unreadable
            .first()
            .map(|u| format!("{}:{}: {}", u.file.display(), u.line, u.why)),
        first_difference: first,
        why: None,
    }
}

fn judge_stream(
    stream: Stream,
    out: &[Record],
    lines: &[Line],
    from: Position,
    cursor: Option<&Cursor>,
    first: &mut Option<Difference>,
) -> StreamReport {
    let mut s = StreamReport {
        stream: stream.as_str().to_owned(),
        output_lines: out.len() as u64,
        ..StreamReport::default()
    };
    let daemon: HashMap<Position, &Line> = lines.iter().map(|l| (l.pos, l)).collect();
    let text = |l: &Line| String::from_utf8_lossy(&l.message).into_owned();
    let mut note = |kind: Kind, pos: Position, r: Option<&Record>, l: Option<&Line>| {
        let at = (pos, stream);
        if first.as_ref().is_some_and(|f| f.at <= at) {
            return;
        }
        *first = Some(Difference {
            kind,
            stream: stream.as_str().to_owned(),
            pos: format!("{}.{}", pos.ts.0, pos.n),
            ts: l.map_or_else(
                || r.map(|r| r.ts.clone()).unwrap_or_default(),
                |l| l.ts_text.clone(),
            ),
            output: r.map(|r| r.message.clone()),
            daemon: l.map(text),
            at,
        });
    };
    // The output on its own, in file order.
    let mut seen: HashMap<Position, &Record> = HashMap::with_capacity(out.len());
    let mut highest: Option<Position> = None;
    for r in out {
        if seen.contains_key(&r.pos) {
            s.duplicated += 1;
            note(
                Kind::Duplicated,
                r.pos,
                Some(r),
                daemon.get(&r.pos).copied(),
            );
            continue;
        }
        seen.insert(r.pos, r);
        if highest.is_some_and(|h| r.pos < h) {
            s.reordered += 1;
            note(Kind::Reordered, r.pos, Some(r), daemon.get(&r.pos).copied());
        }
        highest = highest.max(Some(r.pos));
    }
    let to = cursor
        .map(|c| c.position(stream))
        .max(highest)
        .unwrap_or_default();
    // The daemon's lines, in its order (which is the positions' order).
    for l in lines {
        if l.pos < from {
            s.before_range += 1;
            continue;
        }
        if l.pos > to {
            s.pending += 1;
            continue;
        }
        s.judged += 1;
        match seen.get(&l.pos) {
            None => {
                s.lost += 1;
                note(Kind::Lost, l.pos, None, Some(l));
            }
            Some(r) if alike(r, l) => s.exact += 1,
            Some(r) => {
                s.differing += 1;
                note(Kind::Differing, l.pos, Some(r), Some(l));
            }
        }
    }
    // What the output has that the daemon does not.
    let oldest = lines.first().map(|l| l.pos);
    for r in out {
        if daemon.contains_key(&r.pos) || seen.get(&r.pos).is_some_and(|&f| !std::ptr::eq(f, r)) {
            continue;
        }
        if oldest.is_some_and(|o| r.pos > o) {
            s.extra += 1;
            note(Kind::Extra, r.pos, Some(r), None);
        } else {
            s.older_than_daemon += 1;
        }
    }
    s
}

/// Whether record `r` is daemon line `l`: the same timestamp, and the same message (a prefix
/// of it if `r` was cut short).
fn alike(r: &Record, l: &Line) -> bool {
    if r.ts != l.ts_text {
        return false;
    }
    let daemon = String::from_utf8_lossy(&l.message);
    if r.truncated {
        daemon.starts_with(r.message.as_str())
    } else {
        daemon == r.message.as_str()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use capturer_core::StreamSet;

    fn pos(ts: u64, n: u64) -> Position {
        Position {
            ts: Timestamp(ts),
            n,
        }
    }

    fn line(ts: u64, n: u64, m: &str) -> Line {
        Line {
            stream: Stream::Stdout,
            ts: Timestamp(ts),
            ts_text: format!("t{ts}"),
            message: m.as_bytes().to_vec(),
            truncated: false,
            pos: pos(ts, n),
        }
    }

    fn record(l: &Line) -> Record {
        Record {
            pos: l.pos,
            ts: l.ts_text.clone(),
            message: String::from_utf8_lossy(&l.message).into_owned(),
            truncated: false,
        }
    }

    fn daemon(lines: Vec<Line>) -> DaemonLog {
        let mut d = DaemonLog::default();
        d.lines[0] = lines;
        d
    }

    fn captured(records: Vec<Record>) -> Captured {
        let mut c = Captured::default();
        c.streams[0] = records;
        c
    }

    /// A cursor that delivered stdout up to `p`.
    fn cursor_at(p: Position) -> Cursor {
        let mut c = Cursor::new(Timestamp(0), StreamSet::MULTIPLEXED);
        c.recover(Stream::Stdout, p);
        c
    }

    fn truth() -> Vec<Line> {
        vec![
            line(10, 1, "a"),
            line(10, 2, "b"),
            line(11, 1, "c"),
            line(12, 1, "d"),
            line(13, 1, "e"),
        ]
    }

    #[test]
    fn the_same_lines_are_exact_and_lines_past_the_cursor_are_pending() {
        let all = truth();
        let out: Vec<Record> = all[..4].iter().map(record).collect();
        let c = cursor_at(pos(12, 1));
        let r = judge(
            "id",
            "n",
            &captured(out),
            Some(&daemon(all)),
            Some(&c),
            Lower::Start(Timestamp(0)),
        );
        assert_eq!(r.verdict, Verdict::Exact, "{r:?}");
        assert_eq!((r.streams[0].exact, r.streams[0].pending), (4, 1));
        assert_eq!(r.first_difference, None);
    }

    #[test]
    fn each_kind_of_difference_is_counted_and_the_lowest_is_first() {
        let all = truth();
        let c = cursor_at(pos(13, 1));
        let mut out: Vec<Record> = all.iter().map(record).collect();
        out.remove(3); // d lost
        out.swap(0, 1); // a after b
        out.push(record(&all[2])); // c twice
        out[2].message = "C".into(); // c differs (its first copy)
        out.push(record(&line(14, 1, "z"))); // extra
        let r = judge(
            "id",
            "n",
            &captured(out),
            Some(&daemon(all)),
            Some(&c),
            Lower::Start(Timestamp(0)),
        );
        let s = &r.streams[0];
        assert_eq!(r.verdict, Verdict::Different);
        assert_eq!(
            (s.lost, s.duplicated, s.reordered, s.differing, s.extra),
            (1, 1, 1, 1, 1),
            "{s:?}"
        );
        let f = r.first_difference.unwrap();
        assert_eq!((f.kind, f.pos.as_str()), (Kind::Reordered, "10.1"));
        assert_eq!(f.daemon.as_deref(), Some("a"));
    }

    #[test]
    fn the_range_begins_at_the_output_when_its_start_is_gone_and_truncation_is_a_prefix() {
        let all = truth();
        let mut out: Vec<Record> = all[2..].iter().map(record).collect();
        out[0].message = "".into();
        out[0].truncated = true;
        let r = judge(
            "id",
            "n",
            &captured(out.clone()),
            Some(&daemon(all.clone())),
            None,
            Lower::Output { retention: true },
        );
        assert_eq!(r.verdict, Verdict::Exact, "{r:?}");
        assert_eq!(r.range, Range::OutputAfterRetention);
        assert_eq!(
            (r.streams[0].before_range, r.streams[0].exact),
            (2, 3),
            "{r:?}"
        );
        let gone = judge(
            "id",
            "n",
            &captured(out),
            None,
            None,
            Lower::Output { retention: false },
        );
        assert_eq!(gone.verdict, Verdict::NotInDaemon);
    }
}
