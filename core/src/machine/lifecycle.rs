//! The machine's state, as types: each variant holds what exists in that state and nothing
//! else, so the combinations the invariants used to check at run time cannot be built.
//!
//! ```text
//! Lifecycle::Capturing(Capture)      reader slot: Idle { reopen_at } | Live { reader, rotate_at }
//!     │                              heartbeat:   live or not
//!     │ StopRequested / ContainerRemoved
//!     ▼
//! Lifecycle::Stopping(Stopping)      the reader still to join, if any (no deadline exists here)
//!     │                              the heartbeat told to stop, until it is joined
//!     │ reader and heartbeat joined
//!     ▼
//! Lifecycle::Stopped(StopCause)      nothing: no task, no deadline (invariant 4)
//! ```
//!
//! A slot holds one reader at most, and its generation is the machine's last opened one
//! (invariants 1 and 2: a reader is opened only into an idle slot, which its predecessor's
//! observed exit emptied); one flag says whether the heartbeat lives (with the slot,
//! invariant 5: two tasks at most, whatever the number of rotations); the backoff deadline
//! exists only in an idle slot, the rotation deadline only next to a live reader.

use crate::command::CancelReason;
use crate::rewind::Rewind;
use crate::tail::Proof;
use crate::time::Instant;

use super::phase::Phase;

/// Where a container's capture stands.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) enum Lifecycle {
    /// Reading, or waiting to read.
    Capturing(Capture),
    /// Told to stop, or the container is gone: joining what is left.
    Stopping(Stopping),
    /// Terminal and absorbing: everything joined.
    Stopped(StopCause),
}

/// The state while capturing.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) struct Capture {
    /// The reader generation, or the wait for the next.
    pub(super) reader: ReaderSlot,
    /// The heartbeat task is spawned and not joined.
    pub(super) heartbeat: bool,
    /// There may be lines not yet read: a reader is wanted.
    pub(super) needs_read: bool,
}

/// The reader generation of a capture.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) enum ReaderSlot {
    /// No reader; the next one opens when the backoff ends, if it is armed.
    Idle {
        /// The end of the backoff.
        reopen_at: Option<Instant>,
    },
    /// The machine's last opened generation is live.
    Live {
        /// The reader.
        reader: Reader,
        /// When it is to be retired and reopened (once it delivered a new line).
        rotate_at: Option<Instant>,
    },
}

/// The state while stopping: no deadline exists, nothing is opened.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) struct Stopping {
    /// Why.
    pub(super) cause: StopCause,
    /// The reader still to join (cancelled, or, for a removed container, reading to its end).
    pub(super) reader: Option<Reader>,
    /// The heartbeat was told to stop and is not joined yet.
    pub(super) heartbeat: bool,
}

/// Why the machine is heading for Stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) enum StopCause {
    /// The capturer shuts down: keep the cursor.
    Requested,
    /// The container is gone: forget the cursor.
    Removed,
}

/// The live reader generation (its number is the machine's last opened).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) struct Reader {
    /// The daemon answered 200.
    pub(super) opened: bool,
    /// When it last showed life (spawned, opened, or a frame).
    pub(super) last_activity: Instant,
    /// It received at least one frame (new or not): the daemon has found where to start.
    pub(super) framed: bool,
    /// It delivered at least one new line: the stream is healthy, and it made progress.
    pub(super) delivered: bool,
    /// Drops what the daemon sends twice within this generation's stream.
    pub(super) rewind: Rewind,
    /// Its stream ended cleanly (`handle_end_of_stream`); no more frames.
    pub(super) ended: bool,
    /// It was opened once a `die` said the container stopped, and no `start` or other `die`
    /// came since: its log was complete, so reaching its end means everything was read, once
    /// the runtime confirms the container stayed stopped throughout the read (`complete`).
    pub(super) draining: bool,
    /// A draining read reached its end, and the container stayed stopped throughout.
    pub(super) complete: bool,
    /// It was told to stop, and why.
    pub(super) cancel: Option<CancelReason>,
    /// Opened with a tail: what it must receive before it may deliver (see `tail`).
    pub(super) proof: Option<Box<Proof>>,
}

impl Reader {
    /// A reader just spawned at `now`.
    pub(super) fn new(now: Instant, draining: bool) -> Reader {
        Reader {
            opened: false,
            last_activity: now,
            framed: false,
            delivered: false,
            rewind: Rewind::new(),
            ended: false,
            draining,
            complete: false,
            cancel: None,
            proof: None,
        }
    }

    /// Streaming, or Rotating once told to stop.
    pub(super) fn phase(&self) -> Phase {
        match self.cancel {
            Some(_) => Phase::Rotating,
            None => Phase::Streaming,
        }
    }
}
