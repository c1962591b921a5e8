//! The lifecycle of one container's capture: events in, commands out, time passed in.
//!
//! The state is a `Lifecycle` whose variants carry their own data
//! (`lifecycle.rs`), so most invariants hold by construction; [`invariants`] checks the rest.

mod config;
pub mod invariants;
mod lifecycle;
mod phase;

use std::collections::VecDeque;
use std::time::Duration;

use crate::command::{CancelReason, Command, Flow, LineSink, Report};
use crate::cursor::{Cursor, Verdict};
use crate::event::{Event, Generation, ReadError, ReaderExit};
use crate::frame::split_timestamp;
#[cfg(feature = "mutants")]
use crate::mutant;
use crate::partial::{Message, Partials};
use crate::rewind::Seen;
use crate::stream::Stream;
use crate::tail::{Opening, Proof, Stage, Tails};
use crate::time::Instant;

pub use config::Config;
pub use invariants::Violation;
pub use phase::{LiveTasks, Phase};

use config::planted;
use lifecycle::{Capture, Lifecycle, Reader, ReaderSlot, StopCause, Stopping};

/// The capture of one container: a pure, deterministic state machine.
///
/// Feed it [`Event`]s with [`handle`](Self::handle), the live reader's frames with
/// [`handle_frame`](Self::handle_frame) and its clean end with
/// [`handle_end_of_stream`](Self::handle_end_of_stream) (the one way lines come out: handed
/// to a [`LineSink`] without copying), call [`handle_timeout`](Self::handle_timeout) when
/// [`poll_timeout`](Self::poll_timeout) passes, and carry out every [`Command`] from
/// [`poll_command`](Self::poll_command).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ContainerMachine {
    config: Config,
    /// What is known of the container itself.
    container: Container,
    /// Where the capture stands, with what exists in that state.
    lifecycle: Lifecycle,
    /// The last generation opened (0: none yet); a live reader is this one.
    opened: Generation,
    /// Failed reads in a row, for the backoff.
    failures: u32,
    /// Generations retired as stalled before their first frame: each doubles how long the
    /// next one may wait for its first frame (the daemon scans the whole log first).
    slow_starts: u32,
    /// How the next generation opens: what the tail reopen remembers.
    tails: Tails,
    cursor: Cursor,
    partials: Partials,
    out: VecDeque<Command>,
    /// The first invariant broken at the point of a step; reported by `check_invariants`.
    violation: Option<Violation>,
}

/// What the machine knows of the container, whatever its lifecycle.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Container {
    /// It runs, as last learned.
    running: bool,
    /// It does not run, and a `die` (not merely an inspect, which may be older than a `start`
    /// already seen) said so: its log is complete.
    stop_confirmed: bool,
    /// Its logging driver cannot be read (501).
    unreadable: bool,
}

impl ContainerMachine {
    /// A machine for a container known by the runtime, resuming from `cursor`. It does nothing
    /// until told the container is running (or stopped, to read what is there once).
    pub fn new(config: Config, mut cursor: Cursor) -> ContainerMachine {
        let cap = config.partial_cap;
        // What happened before this machine is not known (a crash may have kept one stream's
        // records and lost the other's): its first reopen uses `since`.
        cursor.forget_last();
        ContainerMachine {
            config,
            container: Container {
                running: false,
                stop_confirmed: false,
                unreadable: false,
            },
            lifecycle: Lifecycle::Capturing(Capture {
                reader: ReaderSlot::Idle { reopen_at: None },
                heartbeat: false,
                needs_read: false,
            }),
            opened: Generation(0),
            failures: 0,
            slow_starts: 0,
            tails: Tails::default(),
            cursor,
            partials: Partials::new(cap),
            out: VecDeque::new(),
            violation: None,
        }
    }

    /// The phase a user sees: a projection of the lifecycle.
    pub fn phase(&self) -> Phase {
        match &self.lifecycle {
            Lifecycle::Stopped(_) => Phase::Stopped,
            _ => self.reader().map_or(Phase::Idle, Reader::phase),
        }
    }

    /// The latest generation opened (the live one, if any).
    pub fn generation(&self) -> Generation {
        self.opened
    }

    /// The live generation, if a reader is live.
    pub fn live_generation(&self) -> Option<Generation> {
        self.reader().map(|_| self.opened)
    }

    /// Tasks spawned and not yet joined, per lifecycle.
    pub fn live_tasks(&self) -> LiveTasks {
        let heartbeat = match &self.lifecycle {
            Lifecycle::Capturing(c) => c.heartbeat,
            Lifecycle::Stopping(s) => s.heartbeat,
            Lifecycle::Stopped(_) => false,
        };
        LiveTasks {
            readers: u32::from(self.reader().is_some()),
            heartbeats: u32::from(heartbeat),
        }
    }

    /// What was delivered so far.
    pub fn cursor(&self) -> &Cursor {
        &self.cursor
    }

    /// The settings.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Terminal: everything joined.
    pub fn is_stopped(&self) -> bool {
        matches!(self.lifecycle, Lifecycle::Stopped(_))
    }

    /// Bytes held in partial-line buffers (at most one cap per stream).
    pub fn buffered(&self) -> usize {
        self.partials.buffered()
    }

    /// Whether a heartbeat tick could change anything at `now`. Not while the container is
    /// believed running and its live stream was active within the heartbeat interval: such a
    /// stream is not stalled, and it proves the container ran. The runtime then skips the
    /// inspect (and the tick, which is optional: no outcome depends on it), sparing the daemon
    /// a request per container per interval while logs flow.
    pub fn wants_heartbeat_tick(&self, now: Instant) -> bool {
        let Lifecycle::Capturing(c) = &self.lifecycle else {
            return true;
        };
        if !self.container.running || !c.heartbeat {
            return true;
        }
        match &c.reader {
            ReaderSlot::Live { reader: r, .. } if r.opened && !r.ended && r.cancel.is_none() => {
                now.since(r.last_activity) >= self.stall_limit(r)
            }
            _ => true,
        }
    }

    /// The next deadline (a backoff ending, or the rotation); call `handle_timeout` then.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match &self.lifecycle {
            Lifecycle::Capturing(c) => match c.reader {
                ReaderSlot::Idle { reopen_at } => reopen_at,
                ReaderSlot::Live { rotate_at, .. } => rotate_at,
            },
            Lifecycle::Stopping(_) | Lifecycle::Stopped(_) => None,
        }
    }

    /// Whether commands are waiting (after a frame: a report, or the cancel of a bad stream).
    pub fn has_commands(&self) -> bool {
        !self.out.is_empty()
    }

    /// The next command to carry out, in order.
    pub fn poll_command(&mut self) -> Option<Command> {
        self.out.pop_front()
    }

    /// Checks the invariants the types do not hold by construction (see the crate docs);
    /// every checker calls this.
    pub fn check_invariants(&self) -> Result<(), Violation> {
        invariants::check(self)
    }

    /// Takes one lifecycle event.
    pub fn handle(&mut self, now: Instant, event: Event) {
        if self.is_stopped() {
            // Absorbing: nothing moves a stopped machine.
            return;
        }
        match event {
            Event::ContainerStarted => self.on_started(now),
            Event::ContainerDied => self.on_died(now),
            Event::ContainerRemoved => self.on_removed(),
            Event::StreamOpened { generation } => {
                if let Some(r) = self.live_reader(generation, "StreamOpened") {
                    r.opened = true;
                    r.last_activity = now;
                }
            }
            Event::ReaderExited { generation, exit } => {
                self.on_reader_exited(now, generation, exit)
            }
            Event::RotationDue => self.rotate(CancelReason::Rotation),
            Event::HeartbeatTick { running } => self.on_heartbeat(now, running),
            Event::HeartbeatExited => self.on_heartbeat_exited(now),
            Event::StopRequested => self.begin_stop(),
        }
        self.self_check();
    }

    /// The data path: one frame of `generation`'s stream; new lines go to `sink` without a
    /// copy.
    pub fn handle_frame(
        &mut self,
        now: Instant,
        generation: Generation,
        stream: Stream,
        bytes: &[u8],
        sink: &mut impl LineSink,
    ) -> Flow {
        if self.is_stopped() {
            return Flow::Stop;
        }
        let flow = self.frame(now, generation, stream, bytes, sink);
        self.self_check();
        flow
    }

    /// The data path: `generation`'s stream ended cleanly (sent by the reader before it
    /// exits); unfinished lines go to `sink`. `stopped_throughout`: the runtime checked that
    /// the container did not run at any moment of this read: it was stopped before the
    /// request went out and still is, with the same start time. Only then is a draining
    /// read's end the end of the log (a container may start between the request and the
    /// daemon's answer, and the answer then follows the new run, whose follow stream can end
    /// early).
    pub fn handle_end_of_stream(
        &mut self,
        generation: Generation,
        stopped_throughout: bool,
        sink: &mut impl LineSink,
    ) {
        if !self.is_stopped() {
            self.end_of_stream(generation, stopped_throughout, sink);
            self.self_check();
        }
    }

    /// The live generation's reader was cancelled while waiting for room in a full sink, so
    /// the lines it holds after `kept` (the cursor of the last batch the sink took, or the
    /// cursor it began with) go nowhere: the cursor returns to `kept`, and the next generation
    /// reads them again. Ignored (false) unless `generation` is live and `kept` is a cursor
    /// this one has passed through (same start, at or behind it on every stream).
    pub fn hand_back(&mut self, generation: Generation, kept: &Cursor) -> bool {
        let live = self.live_generation() == Some(generation);
        if !live || kept.start() != self.cursor.start() || !self.cursor.dominates(kept) {
            return false;
        }
        let streams = self.cursor.streams();
        self.cursor = kept.clone();
        // Lines after `kept` will be read again, some of them perhaps half: prove nothing
        // from this cursor's last message, reopen with `since`.
        self.cursor.forget_last();
        for s in streams.iter() {
            self.cursor.admit(s);
        }
        self.cursor.begin_generation();
        true
    }

    /// Whether the live generation is a draining read (opened after a `die`, no `start`
    /// since): the runtime then checks whether the container stayed stopped throughout it.
    pub fn is_draining(&self) -> bool {
        self.reader().is_some_and(|r| r.draining)
    }

    /// A deadline from `poll_timeout` passed: reopen after a backoff, or rotate.
    pub fn handle_timeout(&mut self, now: Instant) {
        if let Lifecycle::Capturing(c) = &mut self.lifecycle {
            if let ReaderSlot::Idle { reopen_at } = &mut c.reader {
                if reopen_at.is_some_and(|t| t <= now) {
                    *reopen_at = None;
                    self.try_open(now);
                }
            }
        }
        let quiet = self.config.rotate_when_quiet;
        if let Lifecycle::Capturing(Capture {
            reader:
                ReaderSlot::Live {
                    reader: r,
                    rotate_at: Some(t),
                },
            ..
        }) = &mut self.lifecycle
        {
            if *t <= now {
                // Reading (a frame within `quiet`): not stalled, so the rotation waits for the
                // stream's first quiet moment; a backlog is read to its end. (Compared as
                // instants: at the end of time `after` saturates, and a deadline that is not
                // later than now would never pass.)
                let quiet_at = r.last_activity.after(quiet);
                if r.opened && !r.ended && quiet_at > now {
                    *t = quiet_at;
                } else {
                    self.rotate(CancelReason::Rotation);
                }
            }
        }
        self.self_check();
    }

    /// The live reader, in any lifecycle.
    fn reader(&self) -> Option<&Reader> {
        match &self.lifecycle {
            Lifecycle::Capturing(Capture {
                reader: ReaderSlot::Live { reader, .. },
                ..
            }) => Some(reader),
            Lifecycle::Stopping(s) => s.reader.as_ref(),
            _ => None,
        }
    }

    fn reader_mut(&mut self) -> Option<&mut Reader> {
        match &mut self.lifecycle {
            Lifecycle::Capturing(Capture {
                reader: ReaderSlot::Live { reader, .. },
                ..
            }) => Some(reader),
            Lifecycle::Stopping(s) => s.reader.as_mut(),
            _ => None,
        }
    }

    /// The capture, unless stopping.
    fn capture(&mut self) -> Option<&mut Capture> {
        match &mut self.lifecycle {
            Lifecycle::Capturing(c) => Some(c),
            _ => None,
        }
    }

    /// The live reader, if it is `generation`; otherwise reports the stray event.
    fn live_reader(&mut self, generation: Generation, event: &'static str) -> Option<&mut Reader> {
        if self.live_generation() != Some(generation) {
            self.out
                .push_back(Command::Report(Report::UnknownGeneration {
                    generation,
                    event,
                }));
            return None;
        }
        self.reader_mut()
    }

    /// How long `r` may be quiet before it counts as stalled. Before its first frame the
    /// daemon may still be scanning the log for `since` (its cost grows with the whole log):
    /// each generation in a row retired as stalled before a first frame doubles the wait, so
    /// however slow the scan, some generation outwaits it.
    fn stall_limit(&self, r: &Reader) -> Duration {
        if r.framed {
            self.config.heartbeat_every
        } else {
            let doubled = 1u32 << self.slow_starts.min(16);
            self.config.heartbeat_every.saturating_mul(doubled)
        }
    }

    fn on_started(&mut self, now: Instant) {
        self.container.running = true;
        self.container.stop_confirmed = false;
        if let Some(r) = self.reader_mut() {
            // It may write into this stream now, or wrote after it ended: reaching its end no
            // longer proves the log was read whole.
            r.draining = false;
            r.complete = false;
        }
        let Some(c) = self.capture() else { return };
        c.needs_read = true;
        let backoff = matches!(c.reader, ReaderSlot::Idle { reopen_at: Some(_) });
        self.start_heartbeat();
        if !backoff {
            self.schedule_reopen(now);
        }
    }

    fn on_died(&mut self, now: Instant) {
        let believed_running = std::mem::replace(&mut self.container.running, false);
        self.container.stop_confirmed = true;
        if !matches!(self.lifecycle, Lifecycle::Capturing(_)) {
            return;
        }
        if !believed_running {
            // A stop the machine did not see coming: a run it never saw whole (a fresh machine,
            // a missed `start`), or a repeated `die`. A live stream was not opened on a complete
            // log after all.
            if let Some(r) = self.reader_mut() {
                r.draining = false;
                r.complete = false;
            }
        }
        let Some(c) = self.capture() else { return };
        // The run's log is complete now: read what is left of it.
        c.needs_read = true;
        if matches!(c.reader, ReaderSlot::Idle { reopen_at: None }) {
            self.schedule_reopen(now);
        }
    }

    fn on_removed(&mut self) {
        self.container.running = false;
        // The live reader, if any, drains what the daemon still sends and ends by itself.
        let told_heartbeat = self.enter_stopping(StopCause::Removed, true);
        if told_heartbeat {
            self.push(Command::StopHeartbeat);
        }
        self.maybe_finish_stop();
    }

    fn begin_stop(&mut self) {
        let told_heartbeat = self.enter_stopping(StopCause::Requested, false);
        let generation = self.opened;
        if let Some(r) = self.reader_mut() {
            if r.cancel.is_none() {
                r.cancel = Some(CancelReason::Stop);
                self.push(Command::CancelReader {
                    generation,
                    reason: CancelReason::Stop,
                });
            }
        }
        if told_heartbeat {
            self.push(Command::StopHeartbeat);
        }
        self.maybe_finish_stop();
    }

    /// Moves a capture to Stopping (its deadlines and wishes dropped, its reader kept, its
    /// heartbeat told to stop), or, when already stopping, makes `cause` the cause if
    /// `overrides`. Returns whether the heartbeat is to be told to stop.
    fn enter_stopping(&mut self, cause: StopCause, overrides: bool) -> bool {
        let placeholder = Lifecycle::Stopped(cause);
        match std::mem::replace(&mut self.lifecycle, placeholder) {
            Lifecycle::Capturing(c) => {
                let reader = match c.reader {
                    ReaderSlot::Live { reader, .. } => Some(reader),
                    ReaderSlot::Idle { .. } => None,
                };
                self.lifecycle = Lifecycle::Stopping(Stopping {
                    cause,
                    reader,
                    heartbeat: c.heartbeat,
                });
                c.heartbeat
            }
            Lifecycle::Stopping(mut s) => {
                if overrides {
                    s.cause = cause;
                }
                self.lifecycle = Lifecycle::Stopping(s);
                false
            }
            stopped @ Lifecycle::Stopped(_) => {
                self.lifecycle = stopped;
                false
            }
        }
    }

    fn start_heartbeat(&mut self) {
        if let Some(c) = self.capture() {
            if !c.heartbeat {
                c.heartbeat = true;
                self.push(Command::StartHeartbeat);
            }
        }
    }

    fn on_heartbeat(&mut self, now: Instant, running: bool) {
        if !self.capture().is_some_and(|c| c.heartbeat) {
            return;
        }
        // The heartbeat's inspect corrects a missed `start`. A "stopped" is only noted: the
        // inspect may be older than a `start` already handled, so only a `die` confirms a stop
        // (the runtime feeds one for every stop, from the events or from a resync).
        if running && !self.container.running {
            self.on_started(now);
        } else if !running {
            self.container.running = false;
        }
        let stalled = match self.reader() {
            Some(r) if running && r.opened && !r.ended && r.cancel.is_none() => {
                let quiet = now.since(r.last_activity);
                (quiet >= self.stall_limit(r)).then_some((quiet, r.framed))
            }
            _ => None,
        };
        if let Some((quiet, framed)) = stalled {
            if !framed {
                self.slow_starts = self.slow_starts.saturating_add(1);
            }
            let generation = self.opened;
            self.push(Command::Report(Report::Stalled { generation, quiet }));
            self.rotate(CancelReason::Stall);
        }
    }

    fn on_heartbeat_exited(&mut self, now: Instant) {
        match &mut self.lifecycle {
            Lifecycle::Capturing(c) if c.heartbeat => {
                c.heartbeat = false;
                self.push(Command::Report(Report::HeartbeatLost));
                self.start_heartbeat();
            }
            Lifecycle::Stopping(s) if s.heartbeat => s.heartbeat = false,
            _ => self.push(Command::Report(Report::UnknownGeneration {
                generation: Generation(0),
                event: "HeartbeatExited",
            })),
        }
        // Only the seed's shared scope ever waits for the heartbeat before reopening.
        if self
            .capture()
            .is_some_and(|c| c.reader == ReaderSlot::Idle { reopen_at: None })
        {
            self.schedule_reopen(now);
        }
        self.maybe_finish_stop();
    }

    fn frame(
        &mut self,
        now: Instant,
        generation: Generation,
        stream: Stream,
        bytes: &[u8],
        sink: &mut impl LineSink,
    ) -> Flow {
        let trust = planted!(self.config, TrustResends);
        let Some(r) = self.live_reader(generation, "Frame") else {
            return Flow::Stop;
        };
        if r.ended {
            return Flow::Stop;
        }
        r.last_activity = now;
        let stamped = match split_timestamp(bytes) {
            Ok(s) => s,
            Err(error) => {
                self.push(Command::Report(Report::BadFrame { generation, error }));
                self.rotate(CancelReason::BadFrame);
                return Flow::Stop;
            }
        };
        r.framed = true;
        if r.proof.as_mut().is_some_and(|p| !p.frame()) {
            return self.tail_missed();
        }
        if !trust && r.rewind.judge(stream, stamped.ts, stamped.payload) == Seen::Resent {
            sink.dropped(stream, Verdict::Resent);
            return Flow::Continue;
        }
        let mut proof = r.proof.take();
        let delivered = self.deliver_with(sink, proof.as_deref_mut(), |partials, out| {
            partials.push(stream, stamped.ts, stamped.ts_text, stamped.payload, out)
        });
        let missed = proof.as_ref().is_some_and(|p| p.stage() == Stage::Missed);
        if let Some(r) = self.reader_mut() {
            r.proof = proof;
        }
        if delivered {
            self.progressed(now);
        }
        if missed {
            return self.tail_missed();
        }
        Flow::Continue
    }

    /// The live tail generation cannot prove it reached back to the cursor: it delivers
    /// nothing more, and is cancelled; the next one is longer, or uses `since`.
    fn tail_missed(&mut self) -> Flow {
        self.rotate(CancelReason::TailMissed);
        Flow::Stop
    }

    /// The live generation delivered a new line. The first time, the rotation is armed: a
    /// generation is retired `rotate_every` after it began to make progress, never before.
    fn progressed(&mut self, now: Instant) {
        let rotate_every = self.config.rotate_every;
        let first = !self.reader().is_some_and(|r| r.delivered);
        self.tails.delivered(now, first, self.config.tail_pace);
        match &mut self.lifecycle {
            Lifecycle::Capturing(Capture {
                reader: ReaderSlot::Live { reader, rotate_at },
                ..
            }) => {
                if reader.delivered {
                    return;
                }
                reader.delivered = true;
                if reader.cancel.is_none() && rotate_at.is_none() {
                    *rotate_at = Some(now.after(rotate_every));
                }
            }
            Lifecycle::Stopping(Stopping {
                reader: Some(reader),
                ..
            }) => reader.delivered = true,
            _ => {}
        }
    }

    fn end_of_stream(
        &mut self,
        generation: Generation,
        stopped_throughout: bool,
        sink: &mut impl LineSink,
    ) {
        let trust = planted!(self.config, TrustDrainingEnd);
        let Some(r) = self.live_reader(generation, "EndOfStream") else {
            return;
        };
        if r.ended {
            return;
        }
        r.ended = true;
        let unproven = r.proof.as_ref().is_some_and(|p| !p.settled());
        if !r.draining || !(stopped_throughout || trust) || unproven {
            // A follow stream can end before it sent all of the log (measured: with unread
            // data in the file), so an unfinished line here may go on: the draining read
            // that follows sees it whole. A read opened as draining was a follow too if the
            // container started before the daemon answered it. A tail that never proved it
            // reached back to the cursor read nothing it may use.
            self.drop_partials(unproven);
            return;
        }
        r.complete = true;
        // A draining read saw the whole log: what is unfinished is a last line without newline.
        let mut proof = self.reader_mut().and_then(|r| r.proof.take());
        let flushed = self.deliver_with(sink, proof.as_deref_mut(), |partials, out| {
            partials.flush(out)
        });
        if let Some(r) = self.reader_mut() {
            r.proof = proof;
        }
        if flushed {
            if let Some(r) = self.reader_mut() {
                r.delivered = true;
            }
        }
    }

    /// Runs `feed` over the partial buffers; every complete message it yields passes the
    /// cursor, and the new ones go to `sink`. Returns whether anything new was delivered.
    fn deliver_with<S: LineSink>(
        &mut self,
        sink: &mut S,
        mut proof: Option<&mut Proof>,
        feed: impl FnOnce(&mut Partials, &mut dyn FnMut(Message<'_>)),
    ) -> bool {
        let cursor = &mut self.cursor;
        #[cfg(feature = "mutants")]
        let mutant = self.config.mutant;
        let violation = &mut self.violation;
        let mut delivered = false;
        feed(&mut self.partials, &mut |m: Message<'_>| {
            let before = cursor.position(m.stream);
            let verdict = match proof.as_deref_mut() {
                // Unsettled, a tail's messages go through its proof; one that shows the proof
                // cannot come is used for nothing, nor is anything after it.
                Some(p) if !matches!(p.stage(), Stage::Passed) => {
                    match p.judge(cursor, m.stream, m.ts) {
                        Some(v) => v,
                        None => return,
                    }
                }
                #[cfg(feature = "mutants")]
                _ => mutant::judge(cursor, mutant, m.stream, m.ts),
                #[cfg(not(feature = "mutants"))]
                _ => cursor.accept(m.stream, m.ts),
            };
            if cursor.position(m.stream) < before && violation.is_none() {
                *violation = Some(Violation::CursorMovedBack { stream: m.stream });
            }
            match verdict {
                Verdict::Deliver => {
                    delivered = true;
                    let pos = cursor.position(m.stream);
                    sink.line(m, pos);
                }
                other => sink.dropped(m.stream, other),
            }
        });
        delivered
    }

    fn on_reader_exited(&mut self, now: Instant, generation: Generation, exit: ReaderExit) {
        if self.live_generation() != Some(generation) {
            self.live_reader(generation, "ReaderExited");
            return;
        }
        // Its exit is observed: the slot is empty, and the next generation may open.
        let reader = match &mut self.lifecycle {
            Lifecycle::Capturing(c) => {
                match std::mem::replace(&mut c.reader, ReaderSlot::Idle { reopen_at: None }) {
                    ReaderSlot::Live { reader, .. } => Some(reader),
                    ReaderSlot::Idle { .. } => None,
                }
            }
            Lifecycle::Stopping(s) => s.reader.take(),
            Lifecycle::Stopped(_) => None,
        };
        let Some(reader) = reader else { return };
        // On a clean end `handle_end_of_stream` flushed them; otherwise the next generation
        // replays them.
        self.drop_partials(reader.proof.as_ref().is_some_and(|p| !p.settled()));
        match reader.proof.as_ref().map(|p| p.stage()) {
            Some(Stage::Waiting | Stage::Missed) => self.tails.missed(),
            Some(Stage::Proven | Stage::Passed) => self.tails.reached(),
            None if reader.delivered => self.tails.reached(),
            None => {}
        }
        let capturing = matches!(self.lifecycle, Lifecycle::Capturing(_));
        if capturing {
            // When stopping, Stopped itself checkpoints (or forgets) once everything is joined.
            self.push(Command::Checkpoint(self.cursor.clone()));
        }
        let healthy = reader.delivered;
        match exit {
            ReaderExit::Cancelled => match reader.cancel {
                // A missed tail is no failure: the next, longer one opens at once.
                Some(CancelReason::TailMissed) => {}
                Some(CancelReason::Rotation | CancelReason::Stall | CancelReason::Stop) => {
                    if healthy {
                        self.failures = 0;
                    }
                }
                Some(CancelReason::BadFrame) | None => self.fail(healthy),
            },
            ReaderExit::CleanEnd if self.container.running => self.fail(healthy),
            ReaderExit::CleanEnd if reader.complete => {
                // Opened after the container stopped, read to its end while it stayed
                // stopped: all of it was read.
                self.read_all();
                self.failures = 0;
            }
            // The container stopped, but this stream was a follow (opened while it ran, or it
            // started again before the daemon answered), and the daemon can end a follow
            // stream before it sent all of the log (measured): read once more, after a
            // backoff, with a stream opened now that the log is complete.
            ReaderExit::CleanEnd => self.fail(true),
            ReaderExit::Failed(ReadError::Unsupported) => {
                self.read_all();
                if !self.container.unreadable {
                    self.container.unreadable = true;
                    self.push(Command::Report(Report::Unreadable));
                }
            }
            ReaderExit::Failed(ReadError::NotFound) => {
                self.container.running = false;
                self.read_all();
            }
            ReaderExit::Failed(ReadError::Transient | ReadError::BadFrame) => self.fail(healthy),
        }
        if capturing {
            self.schedule_reopen(now);
        } else {
            self.maybe_finish_stop();
        }
    }

    /// Drops the unfinished messages (the next generation reads them again). `unproven`: they
    /// came from a tail that never proved it reached back to the cursor, and mean nothing.
    fn drop_partials(&mut self, unproven: bool) {
        let under_way = Stream::ALL.iter().any(|&s| self.partials.is_pending(s));
        if under_way && !unproven {
            // A message was under way past the last delivered one: the next tail might begin
            // after its first part, so it would prove nothing about it.
            self.cursor.forget_last();
        }
        self.partials.discard();
    }

    /// Nothing is left to read (until the container runs again).
    fn read_all(&mut self) {
        if let Some(c) = self.capture() {
            c.needs_read = false;
        }
    }

    fn fail(&mut self, healthy: bool) {
        self.failures = if healthy {
            1
        } else {
            self.failures.saturating_add(1)
        };
    }

    /// Tells the live reader to stop, unless it already was. A rotation retires only a
    /// generation that delivered a new line: one still waiting for the daemon (whose reopen
    /// scans the whole log before it sends anything) is left to deliver, or every reopen could
    /// be cut short the same way and the capture would never move again.
    fn rotate(&mut self, reason: CancelReason) {
        let eager = planted!(self.config, EagerRotation);
        let generation = self.opened;
        let Lifecycle::Capturing(Capture {
            reader: ReaderSlot::Live { reader, rotate_at },
            ..
        }) = &mut self.lifecycle
        else {
            return;
        };
        if reason == CancelReason::Rotation && !reader.delivered && !eager {
            return;
        }
        if reader.cancel.is_none() {
            reader.cancel = Some(reason);
            *rotate_at = None;
            self.push(Command::CancelReader { generation, reason });
        }
    }

    /// Opens the next generation now, or arms the backoff deadline.
    fn schedule_reopen(&mut self, now: Instant) {
        if !self.wants_reader() {
            return;
        }
        if planted!(self.config, SharedScope) && self.live_tasks().heartbeats > 0 {
            // The seed bug: the rotation joins a scope the heartbeat is also in.
            return;
        }
        let delay = self.config.backoff.delay(self.failures, self.opened.0);
        if delay.is_zero() {
            self.open(now);
        } else if let Some(c) = self.capture() {
            c.reader = ReaderSlot::Idle {
                reopen_at: Some(now.after(delay)),
            };
        }
    }

    fn try_open(&mut self, now: Instant) {
        if self.wants_reader() {
            self.open(now);
        }
    }

    /// Capturing, lines may be waiting, the driver is readable, and the slot is empty.
    fn wants_reader(&self) -> bool {
        match &self.lifecycle {
            Lifecycle::Capturing(c) => {
                c.needs_read
                    && !self.container.unreadable
                    && matches!(c.reader, ReaderSlot::Idle { .. })
            }
            _ => false,
        }
    }

    /// Spawns the next generation into the empty slot: the only place one is created.
    fn open(&mut self, now: Instant) {
        let draining = !self.container.running && self.container.stop_confirmed;
        let eager = planted!(self.config, EagerRotation);
        let trust_tail = planted!(self.config, TrustTail);
        let opening = self.tails.opening(&self.cursor, now, &self.config);
        let rotate_every = self.config.rotate_every;
        let Lifecycle::Capturing(c) = &mut self.lifecycle else {
            return;
        };
        if !matches!(c.reader, ReaderSlot::Idle { .. }) {
            return;
        }
        // The bug `EagerRotation`: the rotation counts from the open, so a reopen that takes
        // longer than the interval to deliver anything is retired before it does, again and
        // again.
        let rotate_at = eager.then(|| now.after(rotate_every));
        let mut reader = Reader::new(now, draining);
        if let Opening::Tail { lines } = opening {
            // The bug `TrustTail`: no proof, every tail is taken to reach back to the cursor.
            reader.proof = Proof::new(&self.cursor, lines)
                .filter(|_| !trust_tail)
                .map(Box::new);
        }
        c.reader = ReaderSlot::Live { reader, rotate_at };
        let generation = Generation(self.opened.0 + 1);
        self.opened = generation;
        self.cursor.begin_generation();
        self.partials.discard();
        self.push(match opening {
            Opening::Tail { lines } => Command::OpenTail { generation, lines },
            Opening::Since => Command::OpenStream {
                generation,
                since: self.cursor.since(),
            },
        });
    }

    /// Stopping, with the reader and the heartbeat joined: Stopped.
    fn maybe_finish_stop(&mut self) {
        let Lifecycle::Stopping(s) = &self.lifecycle else {
            return;
        };
        if s.reader.is_some() || s.heartbeat {
            return;
        }
        let cause = s.cause;
        self.push(match cause {
            StopCause::Requested => Command::Checkpoint(self.cursor.clone()),
            StopCause::Removed => Command::Forget,
        });
        self.lifecycle = Lifecycle::Stopped(cause);
    }

    /// Queues a command: the one place commands come out, so nothing comes out of Stopped.
    fn push(&mut self, command: Command) {
        if self.is_stopped() {
            self.violation.get_or_insert(Violation::SpawnedAfterStop);
            return;
        }
        self.out.push_back(command);
    }

    /// In debug builds every step re-checks the invariants (a mutant is left to the checkers).
    fn self_check(&self) {
        #[cfg(debug_assertions)]
        if !config::mutated!(self.config) {
            if let Err(v) = self.check_invariants() {
                panic!("capturer-core invariant violated: {v}\n{self:#?}");
            }
        }
    }
}
