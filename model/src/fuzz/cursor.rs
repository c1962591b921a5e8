//! Target `cursor`: the exactly-once cursor against the daemon's inclusive `since`.
//!
//! A generated log of two interleaved streams (timestamps never decreasing within a stream,
//! equal-timestamp groups, arbitrary disorder across streams, some entries before the capture's
//! start) is read through [`capturer_core::Cursor`] by a sequence of generations, each opened at
//! `cursor.since()` and cut after an arbitrary number of received messages. The daemon stand-in
//! applies either `since` rule ([`SinceRule`]). Once a generation reads the log to its end, every
//! entry stamped at or after the start must have been delivered exactly once, in log order.

use std::fmt::Write as _;

use arbitrary::Unstructured;
use capturer_core::{Cursor, Stream, StreamSet, Timestamp, Verdict};

use super::reference::{SinceFilter, SinceRule};

/// 2024-01-01T00:00:00Z, a second before the clocks of the generated logs start.
const BASE: u64 = 1_704_067_200_000_000_000;

/// One generated case.
#[derive(Clone, Debug)]
struct Case {
    rule: SinceRule,
    streams: StreamSet,
    start: Timestamp,
    log: Vec<(Stream, Timestamp)>,
    /// Per generation: how many messages it receives before it is cut.
    cuts: Vec<usize>,
}

fn stamp_step(step: u8) -> u64 {
    match step {
        0..=127 => 0,
        128..=223 => u64::from(step - 127),
        _ => u64::from(step - 223) * 1_000_000_000,
    }
}

impl Case {
    fn generate(u: &mut Unstructured<'_>) -> arbitrary::Result<Case> {
        let rule = if u.arbitrary()? {
            SinceRule::SkipUntilFirst
        } else {
            SinceRule::DropAllBefore
        };
        let tty = u.ratio(1u8, 8u8)?;
        let streams = StreamSet::for_tty(tty);
        let members: Vec<Stream> = streams.iter().collect();
        let mut clocks = [
            BASE + u64::from(u.arbitrary::<u8>()?),
            BASE + u64::from(u.arbitrary::<u8>()?),
        ];
        let start = if u.arbitrary()? {
            Timestamp(BASE + u64::from(u.arbitrary::<u8>()?))
        } else {
            Timestamp(0)
        };
        let n = u.int_in_range(0..=48)?;
        let mut log = Vec::with_capacity(n);
        for _ in 0..n {
            let which = usize::from(u.arbitrary::<bool>()?) % members.len();
            clocks[which] += stamp_step(u.arbitrary()?);
            log.push((members[which], Timestamp(clocks[which])));
        }
        let reopens = u.int_in_range(0..=8)?;
        let mut cuts = Vec::with_capacity(reopens);
        for _ in 0..reopens {
            cuts.push(usize::from(u.int_in_range(0..=12u8)?));
        }
        Ok(Case {
            rule,
            streams,
            start,
            log,
            cuts,
        })
    }

    /// Reads the log; returns the indices delivered in order, or the first broken rule.
    fn read(&self, mut trace: Option<&mut String>) -> Result<Vec<usize>, String> {
        let mut cursor = Cursor::new(self.start, self.streams);
        let mut delivered = Vec::new();
        let mut generation = 0;
        loop {
            let cut = self.cuts.get(generation).copied();
            generation += 1;
            cursor.begin_generation();
            let since = cursor.since().0;
            for s in self.streams.iter() {
                if since > cursor.position(s).ts {
                    return Err(format!(
                        "g{generation}: since {} is after the {s} position",
                        since.0
                    ));
                }
            }
            if let Some(t) = trace.as_deref_mut() {
                let _ = writeln!(
                    t,
                    "g{generation}: since {} (cut after {cut:?} received)",
                    since.0
                );
            }
            let mut filter = SinceFilter::new(self.rule, since);
            let mut received = 0;
            let mut interrupted = false;
            for (i, &(stream, ts)) in self.log.iter().enumerate() {
                if !filter.sends(ts) {
                    continue;
                }
                if Some(received) == cut {
                    interrupted = true;
                    break;
                }
                received += 1;
                let before = cursor.clone();
                let verdict = cursor.accept(stream, ts);
                if let Some(t) = trace.as_deref_mut() {
                    let _ = writeln!(t, "  #{i} {stream} {} -> {verdict:?}", ts.0);
                }
                if !cursor.dominates(&before) {
                    return Err(format!("g{generation}: #{i} moved the cursor backwards"));
                }
                if verdict == Verdict::Deliver {
                    if delivered.contains(&i) {
                        return Err(format!("g{generation}: #{i} delivered twice"));
                    }
                    delivered.push(i);
                }
            }
            if !interrupted {
                return Ok(delivered);
            }
        }
    }
}

/// The `cursor` target: see the module docs.
pub fn cursor(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let Ok(case) = Case::generate(&mut u) else {
        return;
    };
    let want: Vec<usize> = (0..case.log.len())
        .filter(|&i| case.log[i].1 >= case.start)
        .collect();
    let got = case.read(None);
    if got.as_ref() != Ok(&want) {
        let mut trace = String::new();
        let _ = case.read(Some(&mut trace));
        let log: Vec<String> = case
            .log
            .iter()
            .enumerate()
            .map(|(i, (s, ts))| format!("#{i} {s} {}", ts.0))
            .collect();
        panic!(
            "cursor: delivered {got:?}, want {want:?}\n\
             rule {:?}, streams {:?}, start {}, cuts {:?}\nlog:\n  {}\ntrace:\n{trace}",
            case.rule,
            case.streams,
            case.start.0,
            case.cuts,
            log.join("\n  ")
        );
    }
}
