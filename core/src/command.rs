//! What the machine asks its runtime to do: the machine's outputs.

use std::time::Duration;

use crate::cursor::{Cursor, Position, Verdict};
use crate::event::Generation;
use crate::frame::PrefixError;
use crate::partial::Message;
use crate::stream::Stream;
use crate::timestamp::{Since, Timestamp};

/// An output of the machine, taken with [`ContainerMachine::poll_command`](crate::ContainerMachine::poll_command).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Command {
    /// Spawn reader `generation` in its own scope: `GET /containers/{id}/logs?follow=1&
    /// stdout=1&stderr=1&timestamps=1&since=<since>`.
    OpenStream {
        /// The new generation.
        generation: Generation,
        /// Where to resume.
        since: Since,
    },
    /// Spawn reader `generation` like `OpenStream`, but with `tail=<lines>` instead of `since`:
    /// the daemon reads the log's last `lines` entries from its end, then follows.
    OpenTail {
        /// The new generation.
        generation: Generation,
        /// K: how many entries, of both streams together.
        lines: u64,
    },
    /// Tell reader `generation` to stop; its exit comes back as `ReaderExited`.
    CancelReader {
        /// The generation to stop.
        generation: Generation,
        /// Why.
        reason: CancelReason,
    },
    /// Spawn the container's heartbeat in the container scope.
    StartHeartbeat,
    /// Tell the heartbeat to stop; its exit comes back as `HeartbeatExited`.
    StopHeartbeat,
    /// Persist this cursor once the lines emitted before it are flushed.
    Checkpoint(Cursor),
    /// The container is gone: delete its cursor once its last lines are flushed.
    Forget,
    /// Something an operator should know about; nothing to do.
    Report(Report),
}

/// Why a reader is told to stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CancelReason {
    /// The rotation interval elapsed.
    Rotation,
    /// No frame for a heartbeat interval while the container runs.
    Stall,
    /// A frame could not be read: reopen from the cursor.
    BadFrame,
    /// The capturer is stopping.
    Stop,
    /// A tail reopen cannot prove it reached back to the cursor: reopen with a longer tail,
    /// or with `since`.
    TailMissed,
}

/// Something worth telling an operator.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Report {
    /// A frame had no readable timestamp prefix; the stream is reopened from the cursor.
    BadFrame {
        /// The generation that read it.
        generation: Generation,
        /// What was wrong.
        error: PrefixError,
    },
    /// The logging driver cannot be read (501); reported once, never retried.
    Unreadable,
    /// The stream was quiet for a heartbeat interval while the container ran; rotated.
    Stalled {
        /// The quiet generation.
        generation: Generation,
        /// How long it was quiet.
        quiet: Duration,
    },
    /// An event named a generation that is not the live one; ignored.
    UnknownGeneration {
        /// The generation named.
        generation: Generation,
        /// The event.
        event: &'static str,
    },
    /// The heartbeat exited without being told to; started again.
    HeartbeatLost,
}

/// An owned line: what a `Vec<Line>` [`LineSink`] keeps of each line handed to it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Line {
    /// The stream it was written to.
    pub stream: Stream,
    /// Its timestamp.
    pub ts: Timestamp,
    /// The timestamp as the daemon sent it.
    pub ts_text: String,
    /// The line without its newline.
    pub message: Vec<u8>,
    /// Cut at the cap: the line goes on in the next one.
    pub truncated: bool,
    /// Its position in its stream (see [`LineSink::line`]).
    pub pos: Position,
}

impl Line {
    /// An owned copy of `m`, delivered at `pos`.
    pub fn new(m: Message<'_>, pos: Position) -> Line {
        Line {
            stream: m.stream,
            ts: m.ts,
            ts_text: String::from_utf8_lossy(m.ts_text).into_owned(),
            message: m.body.to_vec(),
            truncated: m.truncated,
            pos,
        }
    }
}

/// Where the data path delivers lines without copying them (the runtime's batch writer).
pub trait LineSink {
    /// A new line, to deliver, at `pos`: the cursor's position of it in its stream (its
    /// timestamp and how many lines of that stamp came before it, plus one), unique per stream
    /// and the same on every read of the log, so a consumer can drop a replay by it.
    fn line(&mut self, line: Message<'_>, pos: Position);
    /// A message the cursor dropped (a replayed duplicate, or one before the start).
    fn dropped(&mut self, _stream: Stream, _verdict: Verdict) {}
}

impl LineSink for Vec<Line> {
    fn line(&mut self, line: Message<'_>, pos: Position) {
        self.push(Line::new(line, pos));
    }
}

/// Whether the reader should go on after a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    /// Keep reading.
    Continue,
    /// Stop reading: the generation is being retired (bad frame, or it is not the live one).
    Stop,
}
