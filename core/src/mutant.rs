//! Deliberately broken variants of the machine, to prove that the checkers catch them.
//!
//! A checker that has never caught a bug proves nothing. The model and the tests switch these
//! on through [`Config::mutant`](crate::Config::mutant); the runtime never does.

use crate::cursor::{Cursor, Position, Verdict};
use crate::stream::Stream;
use crate::timestamp::Timestamp;

/// A known bug, re-created on purpose.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mutant {
    /// The seed incident: the heartbeat and the readers in ONE scope, so the rotation's join
    /// waits for the heartbeat, which only exits at shutdown.
    SharedScope,
    /// Drop every message stamped at or before the cursor (`>` instead of counting).
    StrictlyGreaterCursor,
    /// Keep the cursor in whole seconds and deliver everything from that second again.
    WholeSecondCursor,
    /// The rotation counts from the open: a reopen slower than the interval (the daemon scans
    /// the whole log first) is retired before it delivers, every time: the capture stalls.
    EagerRotation,
    /// Take every frame the daemon sends as new, so a line it sends twice within one stream
    /// (json-file `max-size` rotation) is counted as a second line stamped the same instant.
    TrustResends,
    /// Take a draining read's clean end for the end of the log even if the container started
    /// during the read (the answer then followed the new run, which can end early).
    TrustDrainingEnd,
    /// Take a tail reopen's response as reaching back to the cursor without its proof: a
    /// tail shorter than what was written since the cursor leaves a gap.
    TrustTail,
}

/// The cursor's verdict, as the configured variant gives it.
pub(crate) fn judge(
    cursor: &mut Cursor,
    mutant: Option<Mutant>,
    stream: Stream,
    ts: Timestamp,
) -> Verdict {
    let i = stream.index();
    match mutant {
        Some(Mutant::StrictlyGreaterCursor) => {
            cursor.admit(stream);
            let pos = &mut cursor.positions[i];
            if ts < pos.ts || (ts == pos.ts && pos.n > 0) {
                Verdict::Duplicate
            } else {
                *pos = Position { ts, n: 1 };
                cursor.last = Some(stream);
                Verdict::Deliver
            }
        }
        Some(Mutant::WholeSecondCursor) => {
            cursor.admit(stream);
            let pos = &mut cursor.positions[i];
            let second = ts.floor_secs();
            if second < pos.ts {
                Verdict::Duplicate
            } else {
                let n = if second == pos.ts { pos.n + 1 } else { 1 };
                *pos = Position { ts: second, n };
                cursor.last = Some(stream);
                Verdict::Deliver
            }
        }
        Some(
            Mutant::SharedScope
            | Mutant::EagerRotation
            | Mutant::TrustResends
            | Mutant::TrustDrainingEnd
            | Mutant::TrustTail,
        )
        | None => cursor.accept(stream, ts),
    }
}
