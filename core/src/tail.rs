//! The reopen from the end of the log: `tail=K&follow=1` instead of `since`, and the proof
//! that it left no gap.
//!
//! # Why
//!
//! A `since` reopen costs the daemon a decode of the container's whole log before its first
//! frame (it filters from the first entry): a cost that grows with the log, paid at every
//! rotation. `tail=K` reads the last K entries from the end of the file, a cost that grows with
//! K; K only has to cover what was written since the cursor (`docs/runtime.md`, "Reopen").
//!
//! # The daemon's rule (moby, `daemon/logger/loggerutils/logfile.go`: `tailFiles`)
//!
//! `tail=K` counts the json-file's entries, both streams together (one json line each; a
//! 16 KiB part is an entry), backwards from the end of the newest file and into rotated ones;
//! `since` is applied after the tail is taken (so it is never sent with one); with `follow=1`
//! the stream goes on from where the tail ended. The response is a contiguous run of the file
//! up to its end, then what is written after, in file order.
//!
//! # The proof
//!
//! A cursor carries [`Cursor::last`]: the stream of the last message it delivered (D), kept
//! only while two facts hold, which every generation keeps (`docs/runtime.md` has the
//! argument): (the prefix) every message before D in file order was delivered, or is stamped
//! before the capture's start; (nothing straddles) no undelivered message began before D.
//! `last` is cleared where that is not known: a cursor read back from disk (a crash may have
//! lost records of one stream and not of the other), a generation that ended with a message
//! half received, a cursor handed back. Without it the reopen uses `since`.
//!
//! A tail generation delivers nothing before its proof: a complete message of stream `last`
//! stamped strictly before `last`'s position. Then the response began before D (within a
//! stream, file order is timestamp order) and holds all of the file after D; `last`'s count of
//! messages stamped at its position starts at that run's first, so D is found exactly; before
//! D everything is a duplicate (the prefix); at D every other stream's count is complete (all
//! its messages before D were delivered), so after D the cursor judges every message exactly,
//! as after a `since` replay. A message of `last` not stamped before its position before the
//! proof, a message the cursor would deliver before it (then it cannot come), or K frames
//! without it: the tail did not reach back far enough, and the generation is cancelled
//! unused. The next tail is twice as long; after `tries` misses in a row, `since`.

use std::time::Duration;

use crate::cursor::{Cursor, Position, Verdict};
use crate::machine::Config;
use crate::stream::Stream;
use crate::time::Instant;
use crate::timestamp::Timestamp;

/// How a new generation's stream begins.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Opening {
    /// Everything stamped at or after the cursor's `since`: the daemon decodes the whole log.
    Since,
    /// The last `lines` entries of the log, then what follows; proven before use.
    Tail {
        /// K: entries of both streams together.
        lines: u64,
    },
}

/// The reopen policy's memory from one generation to the next.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Tails {
    /// Tail generations in a row that ended without their proof.
    misses: u32,
    /// New lines the latest generation that delivered any has delivered.
    lines: u64,
    /// When it delivered its first and its latest.
    first: Option<Instant>,
    last: Option<Instant>,
}

impl Tails {
    /// How the next generation opens, at `now`: a tail of K entries, K twice what the latest
    /// generation's pace says was written since its last line (at least `floor`), doubled per
    /// miss; `since` when the cursor cannot prove a tail, the tail is off (`floor` 0), or
    /// `tries` tails in a row missed.
    pub fn opening(&self, cursor: &Cursor, now: Instant, config: &Config) -> Opening {
        let (floor, tries) = (config.tail_floor, config.tail_tries);
        if floor == 0 || self.misses >= tries || cursor.last().is_none() {
            return Opening::Since;
        }
        let behind = match (self.first, self.last) {
            (Some(first), Some(last)) => {
                let span = last.since(first).max(Duration::from_secs(1)).as_nanos();
                let idle = now.since(last).as_nanos();
                u64::try_from(u128::from(self.lines).saturating_mul(idle) / span)
                    .unwrap_or(u64::MAX)
            }
            _ => 0,
        };
        let lines = behind
            .saturating_mul(2)
            .max(floor)
            .saturating_mul(1u64 << self.misses.min(32));
        Opening::Tail { lines }
    }

    /// A generation delivered a new line at `now` (`first`: its first); noted if the pace
    /// counts (`pace`).
    pub fn delivered(&mut self, now: Instant, first: bool, pace: bool) {
        if !pace {
            return;
        }
        if first {
            self.lines = 0;
            self.first = Some(now);
        }
        self.lines = self.lines.saturating_add(1);
        self.last = Some(now);
    }

    /// A tail generation ended without its proof: the next one is longer, or `since`.
    pub fn missed(&mut self) {
        self.misses = self.misses.saturating_add(1);
    }

    /// A generation reached the cursor (a proven tail, or a `since` that delivered): tails
    /// start again from the shortest.
    pub fn reached(&mut self) {
        self.misses = 0;
    }
}

/// A live tail generation's proof, until the last delivered message is passed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Proof {
    /// The stream of the last delivered message, and its position.
    last: Stream,
    at: Position,
    /// Frames the tail may still hold before the proof must have come.
    frames_left: u64,
    stage: Stage,
}

/// Where a proof stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Stage {
    /// No message of `last` stamped before its position yet: nothing may be delivered.
    Waiting,
    /// Found: the response holds everything after the last delivered message, not yet passed.
    Proven,
    /// The last delivered message is passed: the cursor judges alone from here.
    Passed,
    /// The tail did not reach back far enough: nothing of this generation is used.
    Missed,
}

impl Proof {
    /// The proof a tail of `lines` entries owes, resuming `cursor`; `None` if the cursor
    /// cannot give one (no `last`).
    pub fn new(cursor: &Cursor, lines: u64) -> Option<Proof> {
        let last = cursor.last()?;
        let at = cursor.position(last);
        (at.n > 0).then_some(Proof {
            last,
            at,
            frames_left: lines,
            stage: Stage::Waiting,
        })
    }

    /// Where it stands.
    pub fn stage(&self) -> Stage {
        self.stage
    }

    /// Whether the generation may deliver (the proof came, or is not owed any more).
    pub fn settled(&self) -> bool {
        matches!(self.stage, Stage::Proven | Stage::Passed)
    }

    /// A frame arrived: the tail is one entry shorter. Returns false once K frames came with
    /// no proof: the tail ended before reaching back to the cursor.
    pub fn frame(&mut self) -> bool {
        if self.stage == Stage::Waiting {
            self.frames_left = self.frames_left.saturating_sub(1);
            if self.frames_left == 0 {
                self.stage = Stage::Missed;
            }
        }
        self.stage != Stage::Missed
    }

    /// The verdict on the next complete message, through the proof; `None` when it shows the
    /// proof cannot come (the generation must deliver nothing more).
    pub fn judge(&mut self, cursor: &mut Cursor, stream: Stream, ts: Timestamp) -> Option<Verdict> {
        match self.stage {
            Stage::Missed => None,
            Stage::Passed => Some(cursor.accept(stream, ts)),
            Stage::Waiting => {
                let proof = stream == self.last && ts < self.at.ts;
                if proof {
                    self.stage = Stage::Proven;
                    Some(cursor.accept(stream, ts))
                } else if stream == self.last || cursor.would_deliver(stream, ts) {
                    self.stage = Stage::Missed;
                    None
                } else {
                    Some(cursor.accept(stream, ts))
                }
            }
            Stage::Proven => {
                let verdict = cursor.accept(stream, ts);
                if stream == self.last && ts == self.at.ts && cursor.replayed(stream) == self.at.n {
                    // The last delivered message: every other stream's count is complete.
                    cursor.complete_counts(stream);
                    self.stage = Stage::Passed;
                }
                Some(verdict)
            }
        }
    }
}
