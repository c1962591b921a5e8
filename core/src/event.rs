//! What happens to a container's capture: the machine's inputs.

use std::fmt;

/// The number of a reader generation: 1 for the first stream opened, one more per reopen.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct Generation(pub u64);

impl fmt::Display for Generation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "g{}", self.0)
    }
}

/// A lifecycle input to [`ContainerMachine::handle`](crate::ContainerMachine::handle), with
/// its `now` passed alongside. A reader's frames and its clean end take the data path
/// instead ([`handle_frame`](crate::ContainerMachine::handle_frame),
/// [`handle_end_of_stream`](crate::ContainerMachine::handle_end_of_stream)): the one way
/// lines come out of the machine.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub enum Event {
    /// The container runs (a `start` event, or found running by a list or an inspect).
    ContainerStarted,
    /// The container stopped (`die`), or was found stopped. A machine that has never read
    /// reads once what is there.
    ContainerDied,
    /// The container is gone (`destroy`): finish the reader, then stop and forget the cursor.
    ContainerRemoved,
    /// The daemon answered the generation's request with 200.
    StreamOpened {
        /// The reader generation.
        generation: Generation,
    },
    /// The generation's reader task exited and was joined: its exit is observed.
    ReaderExited {
        /// The reader generation.
        generation: Generation,
        /// How it ended.
        exit: ReaderExit,
    },
    /// Rotate the stream now (the rotation deadline passes through `handle_timeout` too); a
    /// generation that has delivered no new line yet is left to deliver (invariant 7).
    RotationDue,
    /// The heartbeat checked the container: whether it runs.
    HeartbeatTick {
        /// What inspect said.
        running: bool,
    },
    /// The heartbeat task exited and was joined.
    HeartbeatExited,
    /// The capturer is shutting down: stop reading, join everything, keep the cursor.
    StopRequested,
}

/// How a reader generation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub enum ReaderExit {
    /// The stream ended (the container stopped, or the daemon closed it).
    CleanEnd,
    /// The reader obeyed a [`Command::CancelReader`](crate::Command::CancelReader).
    Cancelled,
    /// The request or the stream failed.
    Failed(ReadError),
}

/// Why a reader failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub enum ReadError {
    /// Connection refused or reset, a 5xx, a timeout: try again after a backoff.
    Transient,
    /// The byte stream could not be decoded: reopen from the cursor after a backoff.
    BadFrame,
    /// 404: the container no longer exists.
    NotFound,
    /// 501: the logging driver cannot be read; permanent for this container.
    Unsupported,
}
