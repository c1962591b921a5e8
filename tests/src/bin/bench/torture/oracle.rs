//! The oracle: what one stream of a container must hold, and how its capture differs.

use std::collections::HashMap;
use std::fmt::Write as _;

use capturer_tests::capturer::Record;

use super::guest::Guest;

/// A container's streams, in the order of a cursor's positions.
pub(super) const STREAMS: [&str; 3] = ["stdout", "stderr", "console"];

/// Counts over lines.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Tally {
    /// Lines the truth holds (and gaps of a rotated log).
    pub(super) expected: usize,
    /// Expected, never captured.
    pub(super) lost: usize,
    /// Captured again: never allowed, SIGKILL or not (a start recovers from its output).
    pub(super) duplicated: usize,
    /// Captured after a line that comes later.
    pub(super) reordered: usize,
    /// Captured, but not a line any container wrote (or not as it wrote it).
    pub(super) unexpected: usize,
    /// Output lines that were not one record.
    pub(super) torn: usize,
    /// Lines captured with one full 16 KiB part twice: the daemon sent that part again after
    /// rotating its file, which no reader can tell from a line's own repeated content
    /// (`docs/daemon.md`); counted and reported, not a failure.
    pub(super) resent_parts: usize,
}

impl Tally {
    /// Adds another's counts.
    pub(super) fn add(&mut self, o: &Tally) {
        self.expected += o.expected;
        self.lost += o.lost;
        self.duplicated += o.duplicated;
        self.reordered += o.reordered;
        self.unexpected += o.unexpected;
        self.torn += o.torn;
        self.resent_parts += o.resent_parts;
    }

    /// Anything lost, duplicated, reordered or unexpected.
    pub(super) fn failed(&self) -> bool {
        self.lost + self.duplicated + self.reordered + self.unexpected > 0
    }
}

/// What a line is, for matching: a self-naming line by its name, any other by its timestamp
/// and text.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) enum Key {
    /// (`o`/`e`, run, seq).
    Named(u8, u32, u32),
    /// (timestamp, message).
    Raw(String, String),
}

/// A self-naming line of container `idx`: (stream letter, run, seq, whole: the padding is as
/// long as it says and all `x`).
fn name_of(idx: usize, message: &str) -> Option<(u8, u32, u32, bool)> {
    let mut f = message.splitn(6, ' ');
    if f.next()? != format!("c{idx}") {
        return None;
    }
    let tag = match f.next()? {
        "o" => b'o',
        "e" => b'e',
        _ => return None,
    };
    let run = f.next()?.parse().ok()?;
    let seq = f.next()?.parse().ok()?;
    let len: usize = f.next()?.parse().ok()?;
    let pad = f.next()?;
    Some((
        tag,
        run,
        seq,
        pad.len() == len && pad.bytes().all(|b| b == b'x'),
    ))
}

/// The key of a line of container `idx`.
fn key(idx: usize, ts: &str, message: &str) -> Key {
    match name_of(idx, message) {
        Some((tag, run, seq, _)) => Key::Named(tag, run, seq),
        None => Key::Raw(ts.to_owned(), message.to_owned()),
    }
}

/// A line the capture must hold: exactly as the daemon holds it, or (a gap of a rotated log,
/// `exact` empty) any whole line of that name.
pub(super) struct Want {
    /// Its name, or its timestamp and text.
    key: Key,
    /// Its timestamp and message, exactly (none: a gap of a rotated log).
    pub(super) exact: Option<(String, String)>,
}

/// The lines one stream must hold, in order: the truth, and for a rotated log the gaps in
/// each run's sequence numbers (lines the log dropped before a snapshot saw them).
pub(super) fn wanted(g: &Guest, stream: &str) -> Vec<Want> {
    let mut out = Vec::new();
    let mut next: HashMap<(u8, u32), u32> = HashMap::new();
    for l in g.truth.iter().filter(|l| l.stream == stream) {
        let k = key(g.idx, &l.ts, &l.message);
        if let (true, Key::Named(tag, run, seq)) = (g.rotates(), &k) {
            let from = next.get(&(*tag, *run)).copied().unwrap_or(0);
            out.extend((from..*seq).map(|s| Want {
                key: Key::Named(*tag, *run, s),
                exact: None,
            }));
            next.insert((*tag, *run), seq + 1);
        }
        out.push(Want {
            key: k,
            exact: Some((l.ts.clone(), l.message.clone())),
        });
    }
    out
}

/// One stream's comparison, with its first differences.
pub(super) struct StreamCheck {
    /// Its counts.
    pub(super) tally: Tally,
    first_lost: Option<String>,
    first_duplicate: Option<String>,
    first_reordered: Option<String>,
    first_unexpected: Option<String>,
    first_difference: Option<String>,
}

impl StreamCheck {
    /// Its counts and first differences, for the report.
    pub(super) fn describe(&self) -> String {
        let t = &self.tally;
        let mut s = format!(
            "{} expected, {} lost, {} duplicated, {} reordered, {} unexpected",
            t.expected, t.lost, t.duplicated, t.reordered, t.unexpected
        );
        for (what, line) in [
            ("first lost", &self.first_lost),
            ("first duplicate", &self.first_duplicate),
            ("first reordered", &self.first_reordered),
            ("first unexpected", &self.first_unexpected),
            ("first difference", &self.first_difference),
        ] {
            if let Some(line) = line {
                let _ = write!(s, "; {what}: {line}");
            }
        }
        s
    }
}

/// Shortens a message for a report.
fn clip(message: &str) -> String {
    if message.len() <= 48 {
        format!("{message:?}")
    } else {
        let cut = (0..=40)
            .rev()
            .find(|&i| message.is_char_boundary(i))
            .unwrap_or(0);
        format!("{:?}… ({} bytes)", &message[..cut], message.len())
    }
}

/// A captured record, for a report.
pub(super) fn show(r: &Record) -> String {
    format!("{} {}", r.ts, clip(&r.message))
}

/// A wanted line, for a report.
fn show_want(w: &Want) -> String {
    match (&w.exact, &w.key) {
        (Some((ts, m)), _) => format!("{ts} {}", clip(m)),
        (None, Key::Named(tag, run, seq)) => {
            format!("(dropped by the log) {} run {run} seq {seq}", *tag as char)
        }
        (None, Key::Raw(ts, m)) => format!("{ts} {}", clip(m)),
    }
}

/// Whether `got` is `want` with one of its full 16 KiB parts (as the daemon cut the line) twice.
fn one_part_doubled(want: &str, got: &str) -> bool {
    let part = capturer_core::frame::DAEMON_FRAME_PAYLOAD;
    let (w, g) = (want.as_bytes(), got.as_bytes());
    g.len() == w.len() + part
        && (1..=w.len() / part).any(|j| {
            let end = j * part;
            g[..end] == w[..end]
                && g[end..end + part] == w[end - part..end]
                && g[end + part..] == w[end..]
        })
}

/// Compares what was captured of one stream of `g` with what must be.
pub(super) fn compare_stream(g: &Guest, stream: &str, records: &[Record]) -> StreamCheck {
    let want = wanted(g, stream);
    let at: HashMap<&Key, usize> = want.iter().enumerate().map(|(i, w)| (&w.key, i)).collect();
    let mut check = StreamCheck {
        tally: Tally {
            expected: want.len(),
            ..Tally::default()
        },
        first_lost: None,
        first_duplicate: None,
        first_reordered: None,
        first_unexpected: None,
        first_difference: None,
    };
    // Where each wanted line was first captured (index among all the container's records).
    let mut first_at: Vec<Option<usize>> = vec![None; want.len()];
    let mut furthest: Option<usize> = None;
    let mut firsts = Vec::new();
    for (p, r) in records
        .iter()
        .enumerate()
        .filter(|(_, r)| r.stream == stream)
    {
        let k = key(g.idx, &r.ts, &r.message);
        let mut resent_part = false;
        let matched = at.get(&k).copied().filter(|&i| match &want[i].exact {
            Some((ts, m)) if *ts == r.ts && *m == r.message => true,
            Some((ts, m)) => {
                resent_part = *ts == r.ts
                    && g.plan.logging.rotates_files()
                    && one_part_doubled(m, &r.message);
                resent_part
            }
            None => name_of(g.idx, &r.message).is_some_and(|n| n.3),
        });
        if resent_part && matched.is_some() {
            check.tally.resent_parts += 1;
        }
        let Some(i) = matched.filter(|_| r.container_id == g.id) else {
            check.tally.unexpected += 1;
            check.first_unexpected.get_or_insert_with(|| show(r));
            continue;
        };
        if let Some(first) = first_at[i] {
            check.tally.duplicated += 1;
            check
                .first_duplicate
                .get_or_insert_with(|| format!("{} (records {first} and {p})", show(r)));
            continue;
        }
        first_at[i] = Some(p);
        if furthest.is_some_and(|f| i < f) {
            check.tally.reordered += 1;
            check.first_reordered.get_or_insert_with(|| show(r));
        }
        furthest = furthest.max(Some(i));
        firsts.push((i, r));
    }
    check.tally.lost = first_at.iter().filter(|f| f.is_none()).count();
    if let Some(i) = first_at.iter().position(Option::is_none) {
        check.first_lost = Some(show_want(&want[i]));
    }
    // The first place where the captured order (first copies) and the wanted order part.
    let n = firsts.len().max(want.len());
    if let Some(d) = (0..n).find(|&d| firsts.get(d).map(|f| f.0) != Some(d)) {
        if check.tally.failed() {
            check.first_difference = Some(format!(
                "line {d}: captured {}, wanted {}",
                firsts.get(d).map_or("nothing".into(), |f| show(f.1)),
                want.get(d).map_or("nothing".into(), show_want)
            ));
        }
    }
    check
}
