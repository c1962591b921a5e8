//! The invariants, in one place. Unit tests, loom, the model, the fuzzer and the runtime's
//! debug endpoint all call [`check`] (through `ContainerMachine::check_invariants`), and the
//! machine calls it after every step in debug builds.
//!
//! Most of them are the machine's types (`lifecycle.rs`): there is no state to check.
//!
//! 1. at most one live reader generation: the reader slot holds one;
//! 2. generation g+1 is opened only after generation g's exit was observed: a reader is
//!    opened only into an empty slot, and only its observed exit empties a slot;
//! 4. Stopped has no reader, no heartbeat, no deadline and is absorbing: `Stopped` holds only
//!    its cause, nothing moves it, and a command out of it is recorded below;
//! 5. live tasks per container are at most 2 whatever the number of rotations: one reader
//!    slot and one heartbeat flag.
//!
//! The rest depend on values, and are checked here: on the state (3, 6, 7, and that a
//! rotation deadline belongs to a reader not yet told to stop), or, for the ones about
//! steps (nothing comes out of Stopped, the cursor never moves back), at the single place
//! where the guarded thing changes, which records the first breach for `check` to report.

use std::fmt;

use crate::stream::Stream;

use super::config::mutated;
use super::lifecycle::{Capture, Lifecycle, ReaderSlot};
use super::ContainerMachine;

/// A broken invariant.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Violation {
    /// Invariant 3: No reader, one is wanted, and no deadline will open it: the next
    /// generation waits on something other than the previous one's exit (the seed's rotation
    /// waiting for the heartbeat).
    ReopenBlocked,
    /// Invariant 4: A command came out of a stopped machine.
    SpawnedAfterStop,
    /// Invariant 6: A stream's position moved backwards.
    CursorMovedBack {
        /// The stream.
        stream: Stream,
    },
    /// Invariant 6: A position is not a delivered message, or lies before the start.
    CursorMalformed {
        /// The stream.
        stream: Stream,
    },
    /// Memory bound: a partial buffer holds more than the cap.
    PartialOverCap(usize),
    /// A rotation deadline is armed for a reader already told to stop.
    StrayDeadline(&'static str),
    /// Invariant 7: The rotation is armed for a generation that has delivered nothing.
    RotationBeforeProgress,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Violation::ReopenBlocked => write!(
                f,
                "invariant 3: the next generation waits on something other than the reader's exit (the heartbeat?)"
            ),
            Violation::SpawnedAfterStop => write!(f, "invariant 4: a command after Stopped"),
            Violation::CursorMovedBack { stream } => {
                write!(f, "invariant 6: the {stream} position moved backwards")
            }
            Violation::CursorMalformed { stream } => {
                write!(f, "invariant 6: the {stream} position is malformed")
            }
            Violation::PartialOverCap(n) => write!(f, "partial buffers hold {n} bytes, over the cap"),
            Violation::StrayDeadline(what) => write!(f, "stray deadline: {what}"),
            Violation::RotationBeforeProgress => write!(
                f,
                "invariant 7: a rotation is armed for a generation that has delivered nothing"
            ),
        }
    }
}

impl std::error::Error for Violation {}

/// Checks every invariant of `m` that its types do not hold.
pub fn check(m: &ContainerMachine) -> Result<(), Violation> {
    if let Some(v) = &m.violation {
        return Err(v.clone());
    }
    reopen_depends_on_time_only(m)?;
    cursor_well_formed(m)?;
    rotation_after_progress(m)
}

/// Invariant 3: When no reader is live and one is wanted, only time stands between now and
/// the next open: the rotation's join never depends on the heartbeat.
fn reopen_depends_on_time_only(m: &ContainerMachine) -> Result<(), Violation> {
    if m.wants_reader() && m.poll_timeout().is_none() {
        return Err(Violation::ReopenBlocked);
    }
    Ok(())
}

/// Invariant 6: Positions are delivered messages at or after the start (or the start
/// itself), `since` is at or before every position, and partial buffers stay within the cap.
fn cursor_well_formed(m: &ContainerMachine) -> Result<(), Violation> {
    let c = &m.cursor;
    for stream in Stream::ALL {
        // The whole-second mutant keeps floored positions; only `since` is checked for it.
        let inconsistent = !mutated!(m.config) && !c.is_consistent();
        if inconsistent || (c.streams().contains(stream) && c.since().0 > c.position(stream).ts) {
            return Err(Violation::CursorMalformed { stream });
        }
    }
    let cap = m.config.partial_cap.max(1);
    if m.partials.buffered() > 3 * cap + 1 {
        return Err(Violation::PartialOverCap(m.partials.buffered()));
    }
    Ok(())
}

/// Invariant 7: A rotation is armed only for a live generation that delivered a new line and
/// was not told to stop. A reopen may take longer than the interval before it sends anything
/// (the daemon scans the log for `since`); retiring it then would retire the next one the
/// same way, forever.
fn rotation_after_progress(m: &ContainerMachine) -> Result<(), Violation> {
    let Lifecycle::Capturing(Capture {
        reader: ReaderSlot::Live {
            reader,
            rotate_at: Some(_),
        },
        ..
    }) = &m.lifecycle
    else {
        return Ok(());
    };
    if reader.cancel.is_some() {
        return Err(Violation::StrayDeadline(
            "rotation for a reader already told to stop",
        ));
    }
    if !reader.delivered && !mutated!(m.config) {
        return Err(Violation::RotationBeforeProgress);
    }
    Ok(())
}
