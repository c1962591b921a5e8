//! The six invariants, in one place. Unit tests, loom, the model, the fuzzer and the runtime's
//! debug endpoint all call [`check`] (through `ContainerMachine::check_invariants`), and the
//! machine calls it after every step in debug builds.
//!
//! State invariants are checked on the state itself; the ones about steps (nothing spawned
//! after Stopped, the cursor never moving back, a generation opened before its predecessor was
//! joined) are checked at the single place where the guarded thing changes, which records the
//! first breach for `check` to report.

use std::fmt;

use crate::event::Generation;
use crate::machine::{mutated, ContainerMachine};
use crate::stream::Stream;

/// A broken invariant.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Violation {
    /// Invariant 1: More than one reader generation spawned and not joined.
    TwoReaders {
        /// The last generation opened.
        opened: Generation,
        /// The last generation joined.
        joined: Generation,
    },
    /// Invariant 2: A generation was opened while its predecessor's exit was not yet observed.
    OpenedBeforeJoin {
        /// The last generation opened.
        opened: Generation,
        /// The last generation joined.
        joined: Generation,
    },
    /// Invariant 3: No reader, one is wanted, and no deadline will open it: the next generation waits
    /// on something other than the previous one's exit (the seed's rotation waiting for the
    /// heartbeat).
    ReopenBlocked,
    /// Invariant 4: Stopped while a task is alive, a deadline armed, or no stop was asked for.
    StoppedNotQuiet(&'static str),
    /// Invariant 4: A command came out of a stopped machine.
    SpawnedAfterStop,
    /// Invariant 5: More live tasks than one reader and one heartbeat.
    TooManyTasks(u32),
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
    /// A deadline is armed for a lifecycle that is not in the state it times.
    StrayDeadline(&'static str),
    /// Invariant 7: The rotation is armed for a generation that has delivered nothing.
    RotationBeforeProgress,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Violation::TwoReaders { opened, joined } => write!(
                f,
                "invariant 1: more than one live reader (opened {opened}, joined {joined})"
            ),
            Violation::OpenedBeforeJoin { opened, joined } => write!(
                f,
                "invariant 2: generation opened before the previous exit was observed (opened {opened}, joined {joined})"
            ),
            Violation::ReopenBlocked => write!(
                f,
                "invariant 3: the next generation waits on something other than the reader's exit (the heartbeat?)"
            ),
            Violation::StoppedNotQuiet(what) => write!(f, "invariant 4: stopped but {what}"),
            Violation::SpawnedAfterStop => write!(f, "invariant 4: a command after Stopped"),
            Violation::TooManyTasks(n) => write!(f, "invariant 5: {n} live tasks (at most 2)"),
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

/// Checks every invariant of `m`.
pub fn check(m: &ContainerMachine) -> Result<(), Violation> {
    if let Some(v) = &m.violation {
        return Err(v.clone());
    }
    one_reader(m)?;
    opened_after_join(m)?;
    reopen_depends_on_time_only(m)?;
    stopped_is_quiet(m)?;
    bounded_tasks(m)?;
    cursor_well_formed(m)?;
    deadlines_match(m)?;
    rotation_after_progress(m)
}

/// Invariant 7: A rotation is armed only once the live generation delivered a new line. A
/// reopen may take longer than the interval before it sends anything (the daemon scans the
/// log for `since`); retiring it then would retire the next one the same way, forever.
fn rotation_after_progress(m: &ContainerMachine) -> Result<(), Violation> {
    let delivered = m.reader.as_ref().is_some_and(|r| r.delivered);
    if m.rotate_at.is_some() && !delivered && !mutated!(m.config) {
        return Err(Violation::RotationBeforeProgress);
    }
    Ok(())
}

/// Invariant 1: At most one live reader generation: the ledger (opened minus joined) is 0 or 1, and
/// agrees with the reader slot.
fn one_reader(m: &ContainerMachine) -> Result<(), Violation> {
    let in_flight = m.opened.0.checked_sub(m.joined.0);
    match in_flight {
        Some(0) if m.reader.is_none() => Ok(()),
        Some(1) if m.reader.is_some() => Ok(()),
        _ => Err(Violation::TwoReaders {
            opened: m.opened,
            joined: m.joined,
        }),
    }
}

/// Invariant 2: The live generation is the one right after the last joined.
fn opened_after_join(m: &ContainerMachine) -> Result<(), Violation> {
    match &m.reader {
        Some(r) if r.generation != m.opened || m.joined.0 + 1 != r.generation.0 => {
            Err(Violation::OpenedBeforeJoin {
                opened: m.opened,
                joined: m.joined,
            })
        }
        _ => Ok(()),
    }
}

/// Invariant 3: When no reader is live and one is wanted, only time stands between now and the next
/// open: the rotation's join never depends on the heartbeat.
fn reopen_depends_on_time_only(m: &ContainerMachine) -> Result<(), Violation> {
    let wanted = m.stop.is_none() && m.needs_read && !m.unreadable && m.reader.is_none();
    if wanted && m.reopen_at.is_none() {
        return Err(Violation::ReopenBlocked);
    }
    Ok(())
}

/// Invariant 4: Stopped: asked for, no reader, no heartbeat, no deadline.
fn stopped_is_quiet(m: &ContainerMachine) -> Result<(), Violation> {
    if !m.stopped {
        return Ok(());
    }
    let what = if m.stop.is_none() {
        "no stop was asked for"
    } else if m.reader.is_some() {
        "a reader is alive"
    } else if m.heartbeat.is_alive() {
        "the heartbeat is alive"
    } else if m.reopen_at.is_some() || m.rotate_at.is_some() {
        "a deadline is armed"
    } else {
        return Ok(());
    };
    Err(Violation::StoppedNotQuiet(what))
}

/// Invariant 5: Live tasks are bounded by 2 whatever the number of rotations.
fn bounded_tasks(m: &ContainerMachine) -> Result<(), Violation> {
    let t = m.live_tasks();
    let n = t.readers + t.heartbeats;
    if n > 2 || t.readers > 1 || t.heartbeats > 1 {
        return Err(Violation::TooManyTasks(n));
    }
    Ok(())
}

/// Invariant 6: Positions are delivered messages at or after the start (or the start itself), `since`
/// is at or before every position, and partial buffers stay within the cap.
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

/// Deadlines belong to the lifecycle they time: the rotation to an un-cancelled live reader,
/// the backoff to a wanted reader that is not live.
fn deadlines_match(m: &ContainerMachine) -> Result<(), Violation> {
    if m.rotate_at.is_some() && m.reader.as_ref().is_none_or(|r| r.cancel.is_some()) {
        return Err(Violation::StrayDeadline(
            "rotation without a live, un-cancelled reader",
        ));
    }
    if m.reopen_at.is_some() && m.reader.is_some() {
        return Err(Violation::StrayDeadline("backoff while a reader is live"));
    }
    Ok(())
}
