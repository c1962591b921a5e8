//! # capturer-core: the capture of one container, as a pure state machine
//!
//! This crate holds every decision log-capturer makes about a container's log stream, and
//! nothing else: no tokio, no HTTP, no clock, no I/O. The runtime feeds it what happened and
//! carries out what it says; loom, the stateright model, the fuzzer and the snapshot tests run
//! the very same code, faster than real time and the same way every time.
//!
//! ## States
//!
//! ```text
//!                 ContainerStarted / backoff elapsed
//!        ┌──────┐ ─────────────── OpenStream(g+1, since) ─────────────▶ ┌───────────┐
//!  new ─▶│ Idle │                                                       │ Streaming │ ◀─ frame
//!        └──────┘ ◀──── ReaderExited(g): clean end, error ───────────── └───────────┘   (lines)
//!           ▲   ▲          (backoff, or wait for a start)                    │
//!           │   │                                  RotationDue, stall, bad frame, StopRequested
//!           │   │                                            CancelReader(g) │
//!           │   │                                                            ▼
//!           │   └──────── ReaderExited(g) observed ───────────────── ┌──────────┐
//!           │             (reopen g+1 at once, or after a backoff)   │ Rotating │ ◀─ frame
//!           │                                                        └──────────┘   (lines)
//!           │ stop or removal: reader joined AND heartbeat joined
//!           ▼
//!      ┌─────────┐
//!      │ Stopped │  absorbing: nothing is spawned after it
//!      └─────────┘
//! ```
//!
//! These phases are a projection ([`Phase`]) of the machine's state, which is typed
//! (`machine/lifecycle.rs`): a lifecycle Capturing / Stopping(cause) / Stopped(cause), a reader
//! slot Idle { reopen_at } / Live { reader, rotate_at } while capturing, the reader still to
//! join while stopping, and nothing at all once stopped. Lines come out one way: the data path
//! ([`ContainerMachine::handle_frame`], [`ContainerMachine::handle_end_of_stream`]) hands them
//! to a [`LineSink`]; lifecycle events ([`ContainerMachine::handle`]) never emit one.
//!
//! The reader (one task per generation, one generation per stream rotation) and the heartbeat
//! (one task per container) are separate lifecycles, each counted in its own [`scope`]: the
//! rotation joins the reader's generation scope only, and Stopped is entered only once both
//! are joined. A task that leaves work in the machine tells the supervisor through a [`poke`],
//! which no interleaving can lose.
//!
//! ## Invariants
//!
//! 1, 2, 4 and 5 are the machine's types: the states that would break them cannot be built.
//! [`ContainerMachine::check_invariants`] checks the others after every step in debug builds,
//! and every checker (unit tests, loom, the model, the fuzzer, the runtime's debug endpoint)
//! calls it; the model also checks all seven on the world's own tasks.
//!
//! 1. at most one live reader generation per container (one reader slot);
//! 2. generation g+1 is opened only after generation g's exit was observed (a reader is opened
//!    only into an empty slot, and only its observed exit empties it);
//! 3. the rotation's join never depends on the heartbeat: with no reader and one wanted, only
//!    a deadline stands before the next open;
//! 4. Stopped implies zero live readers and zero live heartbeats, and is absorbing (`Stopped`
//!    holds only its cause);
//! 5. live tasks per container are bounded (2) whatever the number of rotations (one slot, one
//!    heartbeat flag);
//! 6. the cursor never moves backwards; each line is emitted at most once, and none is skipped;
//! 7. a rotation retires only a generation that delivered a new line, so every rotation moves
//!    the cursor and rotations can never keep the capture from progressing.
//!
//! ## Exactly once
//!
//! The [`cursor`] keeps, per stream, the timestamp of the last delivered message at nanosecond
//! precision and how many messages stamped exactly that were delivered; reopening at the
//! minimum over the streams and dropping what the inclusive `since` replays delivers each line
//! once, under the daemon's disordered stdout/stderr. A reopen after a generation that
//! delivered asks instead for the log's last entries ([`tail`]: `tail=K`, whose cost does not grow
//! with the log) and uses them only once they prove they reach back to the cursor, else `since`
//! again. [`rewind`] drops what the daemon sends
//! twice within one stream, [`partial`] merges the daemon's 16 KiB parts back into one line;
//! [`frame`] decodes the byte stream.
//!
//! ## Use
//!
//! ```
//! use capturer_core::{Command, Config, ContainerMachine, Cursor, Event, Instant, StreamSet, Timestamp};
//!
//! let mut m = ContainerMachine::new(Config::default(), Cursor::new(Timestamp(0), StreamSet::MULTIPLEXED));
//! m.handle(Instant(0), Event::ContainerStarted);
//! assert_eq!(m.poll_command(), Some(Command::StartHeartbeat));
//! assert!(matches!(m.poll_command(), Some(Command::OpenStream { .. })));
//! m.check_invariants().unwrap();
//! ```

#![warn(missing_docs)]

pub mod backoff;
pub mod command;
pub mod cursor;
pub mod discovery;
pub mod event;
pub mod frame;
pub mod machine;
#[cfg(feature = "mutants")]
pub mod mutant;
pub mod partial;
pub mod poke;
pub mod rewind;
pub mod scope;
pub mod stream;
mod sync;
pub mod tail;
pub mod time;
pub mod timestamp;

pub use backoff::Backoff;
pub use command::{CancelReason, Command, Flow, Line, LineSink, Report};
pub use cursor::{Cursor, Position, Verdict};
pub use discovery::{Admission, Listed};
pub use event::{Event, Generation, ReadError, ReaderExit};
pub use frame::{Demux, Frame, TtySplitter};
pub use machine::{Config, ContainerMachine, LiveTasks, Phase, Violation};
#[cfg(feature = "mutants")]
pub use mutant::Mutant;
pub use partial::Message;
pub use stream::{Stream, StreamSet};
pub use tail::Opening;
pub use time::Instant;
pub use timestamp::{Since, Timestamp};
