//! The exactly-once cursor: what was delivered, per stream, at nanosecond precision.
//!
//! # The daemon's rules (measured, see `docs/cursor.md`)
//!
//! - `since` is inclusive at nanosecond precision: reopening at the last delivered timestamp
//!   sends that message again, and every other message stamped the same.
//! - Within one stream, timestamps never decrease. Across stdout and stderr they are NOT
//!   ordered: each stream is copied by its own goroutine, so a stderr message may be stamped
//!   before a stdout message that reached the log first.
//! - The json-file driver (Docker 20.10, measured) drops EVERY message stamped before `since`,
//!   not only those before the first message at or after it.
//!
//! # The rule
//!
//! Per stream, keep the [`Position`] `(ts, n)`: the timestamp of the last delivered message and
//! how many messages stamped exactly `ts` were delivered. Reopen with `since` = the minimum of
//! `ts` over the container's streams. A stream that has delivered nothing sits at the capture's
//! start, because its first message may be stamped before anything the other stream sent.
//!
//! Why that is exact, under either daemon rule: every undelivered message of stream `s` comes
//! after `s`'s last delivered one, so it is stamped at or after `s.ts >= since` and is sent
//! again; every message stamped exactly `s.ts` is sent again too (all are `>= since`), in log
//! order, so counting them and dropping the first `n` removes exactly what was delivered; and a
//! message stamped before `s.ts` was delivered, because the stream is ordered.

use crate::stream::{Stream, StreamSet};
use crate::timestamp::{Since, Timestamp};

/// The last delivered message of one stream.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Position {
    /// Timestamp of the last delivered message (the capture's start if none was).
    pub ts: Timestamp,
    /// How many messages stamped exactly `ts` were delivered.
    pub n: u64,
}

/// What the cursor decides about one complete message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Verdict {
    /// New: deliver it; the cursor has moved past it.
    Deliver,
    /// Already delivered by an earlier generation: the inclusive `since` replayed it.
    Duplicate,
    /// Stamped before the capture's start (`--from now`): never to be delivered.
    BeforeStart,
    /// Sent twice by the daemon within one stream (see [`rewind`](crate::rewind)); dropped
    /// before it reached the cursor.
    Resent,
}

/// Per-stream positions of one container, and the `since` to reopen from.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Cursor {
    /// Where the capture began: nothing stamped earlier is delivered.
    pub(crate) start: Timestamp,
    /// The streams this container writes.
    pub(crate) streams: StreamSet,
    /// Per stream, the last delivered message.
    pub(crate) positions: [Position; 3],
    /// Per stream, messages stamped exactly `positions[s].ts` seen by the current generation.
    /// Not persisted: every generation starts counting from zero.
    #[cfg_attr(feature = "serde", serde(skip))]
    pub(crate) replayed: [u64; 3],
    /// The stream of the last delivered message, while this process's deliveries are known
    /// to be a prefix of the log (see [`tail`](crate::tail)). Not persisted: a cursor read back
    /// from disk reopens with `since`.
    #[cfg_attr(feature = "serde", serde(skip))]
    pub(crate) last: Option<Stream>,
}

impl Cursor {
    /// A cursor that has delivered nothing and delivers what is stamped at or after `start`.
    pub fn new(start: Timestamp, streams: StreamSet) -> Cursor {
        Cursor {
            start,
            streams,
            positions: [Position { ts: start, n: 0 }; 3],
            replayed: [0; 3],
            last: None,
        }
    }

    /// Where the capture began.
    pub fn start(&self) -> Timestamp {
        self.start
    }

    /// The streams this cursor covers.
    pub fn streams(&self) -> StreamSet {
        self.streams
    }

    /// The last delivered message of `stream`.
    pub fn position(&self, stream: Stream) -> Position {
        self.positions[stream.index()]
    }

    /// The `since` to reopen from: the minimum position over the container's streams.
    pub fn since(&self) -> Since {
        let ts = self
            .streams
            .iter()
            .map(|s| self.positions[s.index()].ts)
            .min()
            .unwrap_or(self.start);
        ts.to_since()
    }

    /// The stream of the last delivered message, if a tail reopen may rely on it.
    pub fn last(&self) -> Option<Stream> {
        self.last
    }

    /// A tail reopen may no longer rely on this cursor (a message was left half received, or
    /// the cursor went back): the next reopen uses `since`.
    pub fn forget_last(&mut self) {
        self.last = None;
    }

    /// Whether [`accept`](Self::accept) would deliver this message (nothing changes).
    pub(crate) fn would_deliver(&self, stream: Stream, ts: Timestamp) -> bool {
        let i = stream.index();
        let pos = self.positions[i];
        ts > pos.ts || (ts == pos.ts && self.replayed[i] >= pos.n)
    }

    /// Messages of `stream` stamped at its position seen by the current generation.
    pub(crate) fn replayed(&self, stream: Stream) -> u64 {
        self.replayed[stream.index()]
    }

    /// The current generation has passed the last delivered message, of stream `except`: every
    /// message of the other streams stamped at their positions has been delivered, so their
    /// counts are complete whatever of them this generation saw.
    pub(crate) fn complete_counts(&mut self, except: Stream) {
        for s in Stream::ALL {
            if s != except {
                self.replayed[s.index()] = self.positions[s.index()].n;
            }
        }
    }

    /// Forgets what the previous generation saw: the next one replays from `since()`.
    pub fn begin_generation(&mut self) {
        self.replayed = [0; 3];
    }

    /// Decides whether the next complete message of `stream`, stamped `ts`, is new, and if so
    /// moves the position past it. The only way a position changes.
    pub fn accept(&mut self, stream: Stream, ts: Timestamp) -> Verdict {
        self.admit(stream);
        let i = stream.index();
        let pos = &mut self.positions[i];
        if ts < pos.ts {
            return if pos.n == 0 && pos.ts == self.start {
                Verdict::BeforeStart
            } else {
                Verdict::Duplicate
            };
        }
        if ts > pos.ts {
            *pos = Position { ts, n: 1 };
            self.replayed[i] = 1;
            self.last = Some(stream);
            return Verdict::Deliver;
        }
        self.replayed[i] += 1;
        if self.replayed[i] <= pos.n {
            Verdict::Duplicate
        } else {
            pos.n = self.replayed[i];
            self.last = Some(stream);
            Verdict::Deliver
        }
    }

    /// Raises `stream`'s position to `pos` if that is later: the sink's output holds lines up
    /// to `pos` that this cursor was not persisted with (a crash between a write and the next
    /// checkpoint). A position before the capture's start, or one counting no message, is not
    /// a delivered one and changes nothing. Returns whether the position moved.
    pub fn recover(&mut self, stream: Stream, pos: Position) -> bool {
        let i = stream.index();
        if pos.ts < self.start || pos.n == 0 || pos <= self.positions[i] {
            return false;
        }
        self.admit(stream);
        self.positions[i] = pos;
        true
    }

    /// Adds a stream the container was not expected to write (it holds `since` at the start
    /// until it delivers, which only widens the next replay).
    pub(crate) fn admit(&mut self, stream: Stream) {
        if !self.streams.contains(stream) {
            self.streams = self.streams.with(stream);
        }
    }

    /// Whether every position is the start itself or a delivered message after it (a cursor
    /// read back from disk is checked with this before use).
    pub fn is_consistent(&self) -> bool {
        self.positions
            .iter()
            .all(|p| p.ts >= self.start && (p.n > 0 || p.ts == self.start))
    }

    /// Whether `self` is at or past `earlier` on every stream: positions never move back.
    pub fn dominates(&self, earlier: &Cursor) -> bool {
        Stream::ALL
            .iter()
            .all(|s| self.positions[s.index()] >= earlier.positions[s.index()])
    }
}

#[cfg(test)]
mod tests {
    //! The cursor against the daemon's exact replay rule: inclusive `since` at nanosecond
    //! precision, equal timestamps, and disorder across streams.

    use super::*;
    use Stream::{Stderr, Stdout};

    /// A log as the daemon stores it: (stream, timestamp), in file order.
    type Log = [(Stream, u64)];

    /// What the daemon sends for `since`: every message stamped at or after it, in file order.
    fn replay(log: &Log, since: Since) -> Vec<(usize, Stream, u64)> {
        log.iter()
            .enumerate()
            .filter(|(_, (_, ts))| Timestamp(*ts) >= since.0)
            .map(|(i, (s, ts))| (i, *s, *ts))
            .collect()
    }

    /// Reads `log` with a reopen after each of `cuts` messages received; returns the indices
    /// delivered, in order.
    fn read_with_reopens(log: &Log, cuts: &[usize]) -> Vec<usize> {
        let mut cursor = Cursor::new(Timestamp(0), StreamSet::MULTIPLEXED);
        let mut delivered = Vec::new();
        let mut cuts = cuts.iter().copied().peekable();
        loop {
            cursor.begin_generation();
            let mut interrupted = false;
            for (received, (i, s, ts)) in replay(log, cursor.since()).into_iter().enumerate() {
                if cuts.peek() == Some(&received) {
                    cuts.next();
                    interrupted = true;
                    break;
                }
                if cursor.accept(s, Timestamp(ts)) == Verdict::Deliver {
                    delivered.push(i);
                }
            }
            if !interrupted {
                return delivered;
            }
        }
    }

    #[test]
    fn recovery_only_moves_a_position_forward() {
        let mut c = Cursor::new(Timestamp(10), StreamSet::MULTIPLEXED);
        c.accept(Stdout, Timestamp(20));
        let at = |ts, n| Position {
            ts: Timestamp(ts),
            n,
        };
        assert!(!c.recover(Stdout, at(15, 3)), "behind: kept");
        assert!(
            !c.recover(Stderr, at(5, 1)),
            "before the start: not a delivery"
        );
        assert!(!c.recover(Stderr, at(30, 0)), "counts no message");
        assert!(c.recover(Stdout, at(20, 2)));
        assert!(c.recover(Stderr, at(12, 1)));
        assert_eq!(c.position(Stdout), at(20, 2));
        assert!(c.is_consistent());
        // The replay after recovery drops what the output already holds, and only that.
        c.begin_generation();
        assert_eq!(c.accept(Stdout, Timestamp(20)), Verdict::Duplicate);
        assert_eq!(c.accept(Stdout, Timestamp(20)), Verdict::Duplicate);
        assert_eq!(c.accept(Stdout, Timestamp(20)), Verdict::Deliver);
        assert_eq!(c.accept(Stderr, Timestamp(12)), Verdict::Duplicate);
        assert_eq!(c.accept(Stderr, Timestamp(13)), Verdict::Deliver);
    }

    #[test]
    fn inclusive_since_replays_the_last_message_and_it_is_dropped() {
        let log = [(Stdout, 10), (Stdout, 20), (Stdout, 30)];
        assert_eq!(read_with_reopens(&log, &[2]), vec![0, 1, 2]);
    }

    #[test]
    fn equal_timestamps_are_counted_not_compared() {
        let log = [(Stdout, 10), (Stdout, 10), (Stdout, 10), (Stdout, 11)];
        for cut in 0..4 {
            assert_eq!(
                read_with_reopens(&log, &[cut]),
                vec![0, 1, 2, 3],
                "cut {cut}"
            );
        }
    }

    #[test]
    fn since_is_the_minimum_over_the_streams() {
        let mut c = Cursor::new(Timestamp(0), StreamSet::MULTIPLEXED);
        c.accept(Stdout, Timestamp(50));
        assert_eq!(
            c.since(),
            Timestamp(0).to_since(),
            "stderr has delivered nothing"
        );
        c.accept(Stderr, Timestamp(40));
        assert_eq!(c.since(), Timestamp(40).to_since());
        c.accept(Stderr, Timestamp(70));
        assert_eq!(c.since(), Timestamp(50).to_since());
    }

    #[test]
    fn stderr_older_than_the_stdout_before_it_is_not_lost() {
        // e1 is stamped before o1 but reached the log after it.
        let log = [
            (Stdout, 100),
            (Stderr, 90),
            (Stdout, 101),
            (Stderr, 95),
            (Stdout, 101),
        ];
        for cut in 0..log.len() {
            for cut2 in 0..log.len() {
                assert_eq!(read_with_reopens(&log, &[cut, cut2]), vec![0, 1, 2, 3, 4]);
            }
        }
    }

    #[test]
    fn a_quiet_stream_holds_since_at_the_start() {
        // stderr writes late, stamped before the stdout it follows: since must not pass it.
        let log = [(Stdout, 10), (Stdout, 20), (Stderr, 15), (Stdout, 30)];
        for cut in 0..log.len() {
            assert_eq!(
                read_with_reopens(&log, &[cut]),
                vec![0, 1, 2, 3],
                "cut {cut}"
            );
        }
    }

    #[test]
    fn nothing_before_the_start_is_delivered() {
        let mut c = Cursor::new(Timestamp(100), StreamSet::MULTIPLEXED);
        assert_eq!(c.accept(Stdout, Timestamp(99)), Verdict::BeforeStart);
        assert_eq!(c.accept(Stdout, Timestamp(100)), Verdict::Deliver);
        assert_eq!(c.accept(Stdout, Timestamp(99)), Verdict::Duplicate);
    }

    #[test]
    fn an_unexpected_stream_widens_since_instead_of_losing_lines() {
        let mut c = Cursor::new(Timestamp(0), StreamSet::TTY);
        c.accept(Stream::Console, Timestamp(10));
        assert_eq!(c.since(), Timestamp(10).to_since());
        assert_eq!(c.accept(Stdout, Timestamp(5)), Verdict::Deliver);
        assert!(c.streams().contains(Stdout));
        assert_eq!(c.since(), Timestamp(5).to_since());
    }

    #[test]
    fn exhaustive_small_logs_with_every_cut_pair() {
        // Every two-stream log of 5 messages over 3 timestamps, ordered within each stream,
        // read with up to two reopens at every point: each message exactly once, in order.
        let mut logs = 0;
        for mask in 0u32..(1 << 5) {
            for stamps in 0u32..3u32.pow(5) {
                let mut log = Vec::new();
                let (mut last_o, mut last_e) = (0, 0);
                let mut ok = true;
                let mut st = stamps;
                for i in 0..5 {
                    let s = if mask & (1 << i) != 0 { Stderr } else { Stdout };
                    let ts = u64::from(st % 3) + 1;
                    st /= 3;
                    let last = if s == Stdout {
                        &mut last_o
                    } else {
                        &mut last_e
                    };
                    if ts < *last {
                        ok = false;
                    }
                    *last = ts;
                    log.push((s, ts));
                }
                if !ok {
                    continue;
                }
                logs += 1;
                for a in 0..=5 {
                    for b in 0..=5 {
                        assert_eq!(
                            read_with_reopens(&log, &[a, b]),
                            vec![0, 1, 2, 3, 4],
                            "{log:?} {a} {b}"
                        );
                    }
                }
            }
        }
        assert!(logs > 100);
    }
}
