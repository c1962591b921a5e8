//! The lifecycle of one container's capture: events in, commands out, time passed in.

use std::collections::VecDeque;
use std::fmt;
use std::time::Duration;

use crate::backoff::Backoff;
use crate::command::{CancelReason, Command, Flow, Line, LineSink, Report};
use crate::cursor::{Cursor, Verdict};
use crate::event::{Event, Generation, ReadError, ReaderExit};
use crate::frame::split_timestamp;
use crate::invariants::{self, Violation};
#[cfg(feature = "mutants")]
use crate::mutant::{self, Mutant};
use crate::partial::{Message, Partials, DEFAULT_CAP};
use crate::rewind::{Rewind, Seen};
use crate::stream::Stream;
use crate::time::Instant;

/// The machine's settings.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Config {
    /// Retire the live stream and reopen it from the cursor this long after it delivered its
    /// first new line (a generation that delivered nothing is never rotated: see `rotate`).
    pub rotate_every: Duration,
    /// A live stream quiet this long while the container runs counts as stalled (longer
    /// before its first frame, see `stall_limit`).
    pub heartbeat_every: Duration,
    /// Waits between reopens.
    pub backoff: Backoff,
    /// The longest message; longer lines are cut into messages marked truncated.
    pub partial_cap: usize,
    /// A known bug to re-create, for checking the checkers. Exists only with the `mutants`
    /// feature, which the model, the fuzzer and the tests turn on and the runtime never does.
    #[cfg(feature = "mutants")]
    pub mutant: Option<Mutant>,
}

/// Whether the known bug `$m` is planted in `$config`: always false without the `mutants`
/// feature, where neither the mutant nor the field exists.
macro_rules! planted {
    ($config:expr, $m:ident) => {{
        #[cfg(feature = "mutants")]
        let on = $config.mutant == Some(Mutant::$m);
        #[cfg(not(feature = "mutants"))]
        let on = false;
        on
    }};
}

/// Whether any known bug is planted in `$config` (never without the `mutants` feature).
macro_rules! mutated {
    ($config:expr) => {{
        #[cfg(feature = "mutants")]
        let on = $config.mutant.is_some();
        #[cfg(not(feature = "mutants"))]
        let on = false;
        on
    }};
}
pub(crate) use mutated;

impl Default for Config {
    fn default() -> Config {
        Config {
            rotate_every: Duration::from_secs(300),
            heartbeat_every: Duration::from_secs(30),
            backoff: Backoff::default(),
            partial_cap: DEFAULT_CAP,
            #[cfg(feature = "mutants")]
            mutant: None,
        }
    }
}

/// The state a user sees, in metrics and on the debug endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Phase {
    /// No reader: not yet opened, waiting out a backoff, or the container is not running.
    Idle,
    /// One reader generation is live on the log stream.
    Streaming,
    /// The live reader was told to stop; the next opens once its exit is observed.
    Rotating,
    /// Terminal: reader and heartbeat joined; nothing is ever spawned again.
    Stopped,
}

impl Phase {
    /// Every phase, in order.
    pub const ALL: [Phase; 4] = [
        Phase::Idle,
        Phase::Streaming,
        Phase::Rotating,
        Phase::Stopped,
    ];

    /// The lowercase name used in metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Idle => "idle",
            Phase::Streaming => "streaming",
            Phase::Rotating => "rotating",
            Phase::Stopped => "stopped",
        }
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Live tasks per lifecycle, as the machine accounts for them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct LiveTasks {
    /// Reader generations spawned and not yet joined (0 or 1).
    pub readers: u32,
    /// Heartbeats spawned and not yet joined (0 or 1).
    pub heartbeats: u32,
}

/// The live reader generation.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Reader {
    pub(crate) generation: Generation,
    /// The daemon answered 200.
    pub(crate) opened: bool,
    /// When it last showed life (spawned, opened, or a frame).
    pub(crate) last_activity: Instant,
    /// It received at least one frame (new or not): the daemon has found where to start.
    pub(crate) framed: bool,
    /// It delivered at least one new line: the stream is healthy, and it made progress.
    pub(crate) delivered: bool,
    /// Drops what the daemon sends twice within this generation's stream.
    pub(crate) rewind: Rewind,
    /// Its stream ended cleanly (`EndOfStream`); no more frames.
    pub(crate) ended: bool,
    /// It was opened once a `die` said the container stopped, and no `start` or other `die`
    /// came since: its log was complete, so reaching its end means everything was read, once
    /// the runtime confirms the container stayed stopped throughout the read (`complete`).
    pub(crate) draining: bool,
    /// A draining read reached its end, and the container stayed stopped throughout.
    pub(crate) complete: bool,
    /// It was told to stop, and why.
    pub(crate) cancel: Option<CancelReason>,
}

/// The container's heartbeat lifecycle.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Heartbeat {
    NotStarted,
    Live,
    Stopping,
    Joined,
}

impl Heartbeat {
    /// Spawned and not yet joined.
    pub(crate) fn is_alive(self) -> bool {
        matches!(self, Heartbeat::Live | Heartbeat::Stopping)
    }
}

/// Why the machine is heading for Stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum StopCause {
    /// The capturer shuts down: keep the cursor.
    Requested,
    /// The container is gone: forget the cursor.
    Removed,
}

/// The capture of one container: a pure, deterministic state machine.
///
/// Feed it [`Event`]s with [`handle`](Self::handle) (or, on the data path,
/// [`handle_frame`](Self::handle_frame) and [`handle_end_of_stream`](Self::handle_end_of_stream),
/// which hand lines to a [`LineSink`] without copying), call
/// [`handle_timeout`](Self::handle_timeout) when [`poll_timeout`](Self::poll_timeout) passes, and
/// carry out every [`Command`] from [`poll_command`](Self::poll_command).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ContainerMachine {
    pub(crate) config: Config,
    /// Whether the container runs, as last learned.
    pub(crate) running: bool,
    /// It does not run, and a `die` (not merely an inspect, which may be older than a `start`
    /// already seen) said so: its log is complete.
    pub(crate) stop_confirmed: bool,
    /// There may be lines not yet read: a reader is wanted.
    pub(crate) needs_read: bool,
    /// The logging driver cannot be read (501).
    pub(crate) unreadable: bool,
    pub(crate) stop: Option<StopCause>,
    pub(crate) stopped: bool,
    pub(crate) reader: Option<Reader>,
    pub(crate) heartbeat: Heartbeat,
    /// The last generation opened (0: none yet).
    pub(crate) opened: Generation,
    /// The last generation whose exit was observed.
    pub(crate) joined: Generation,
    /// Failed reads in a row, for the backoff.
    pub(crate) failures: u32,
    /// Generations retired as stalled before their first frame: each doubles how long the
    /// next one may wait for its first frame (the daemon scans the whole log first).
    pub(crate) slow_starts: u32,
    pub(crate) reopen_at: Option<Instant>,
    pub(crate) rotate_at: Option<Instant>,
    pub(crate) cursor: Cursor,
    pub(crate) partials: Partials,
    pub(crate) out: VecDeque<Command>,
    /// The first invariant broken at the point of a mutation; reported by `check_invariants`.
    pub(crate) violation: Option<Violation>,
}

impl ContainerMachine {
    /// A machine for a container known by the runtime, resuming from `cursor`. It does nothing
    /// until told the container is running (or stopped, to read what is there once).
    pub fn new(config: Config, cursor: Cursor) -> ContainerMachine {
        let cap = config.partial_cap;
        ContainerMachine {
            config,
            running: false,
            stop_confirmed: false,
            needs_read: false,
            unreadable: false,
            stop: None,
            stopped: false,
            reader: None,
            heartbeat: Heartbeat::NotStarted,
            opened: Generation(0),
            joined: Generation(0),
            failures: 0,
            slow_starts: 0,
            reopen_at: None,
            rotate_at: None,
            cursor,
            partials: Partials::new(cap),
            out: VecDeque::new(),
            violation: None,
        }
    }

    /// The phase a user sees.
    pub fn phase(&self) -> Phase {
        match &self.reader {
            _ if self.stopped => Phase::Stopped,
            Some(r) if r.cancel.is_some() => Phase::Rotating,
            Some(_) => Phase::Streaming,
            None => Phase::Idle,
        }
    }

    /// The latest generation opened (the live one, if any).
    pub fn generation(&self) -> Generation {
        self.opened
    }

    /// The live generation, if a reader is live.
    pub fn live_generation(&self) -> Option<Generation> {
        self.reader.as_ref().map(|r| r.generation)
    }

    /// Tasks spawned and not yet joined, per lifecycle.
    pub fn live_tasks(&self) -> LiveTasks {
        LiveTasks {
            readers: u32::from(self.reader.is_some()),
            heartbeats: u32::from(self.heartbeat.is_alive()),
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
        self.stopped
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
        if !self.running || self.heartbeat != Heartbeat::Live {
            return true;
        }
        match &self.reader {
            Some(r) if r.opened && !r.ended && r.cancel.is_none() => {
                now.since(r.last_activity) >= self.stall_limit(r)
            }
            _ => true,
        }
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

    /// The next deadline (a backoff ending, or the rotation); call `handle_timeout` then.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match (self.reopen_at, self.rotate_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
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

    /// Checks the six invariants (see the crate docs); every checker calls this.
    pub fn check_invariants(&self) -> Result<(), Violation> {
        invariants::check(self)
    }

    /// Takes one event.
    pub fn handle(&mut self, now: Instant, event: Event) {
        if self.stopped {
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
            Event::Frame {
                generation,
                stream,
                bytes,
            } => {
                let mut lines = Vec::<Line>::new();
                self.frame(now, generation, stream, &bytes, &mut lines);
                self.out.extend(lines.into_iter().map(Command::Emit));
            }
            Event::EndOfStream {
                generation,
                stopped_throughout,
            } => {
                let mut lines = Vec::<Line>::new();
                self.end_of_stream(generation, stopped_throughout, &mut lines);
                self.out.extend(lines.into_iter().map(Command::Emit));
            }
            Event::ReaderExited { generation, exit } => {
                self.on_reader_exited(now, generation, exit)
            }
            Event::RotationDue => self.rotate(CancelReason::Rotation),
            Event::HeartbeatTick { running } => self.on_heartbeat(now, running),
            Event::HeartbeatExited => self.on_heartbeat_exited(now),
            Event::StopRequested => self.begin_stop(StopCause::Requested),
        }
        self.self_check();
    }

    /// Data path: one frame of `generation`'s stream; new lines go to `sink` without a copy.
    pub fn handle_frame(
        &mut self,
        now: Instant,
        generation: Generation,
        stream: Stream,
        bytes: &[u8],
        sink: &mut impl LineSink,
    ) -> Flow {
        if self.stopped {
            return Flow::Stop;
        }
        let flow = self.frame(now, generation, stream, bytes, sink);
        self.self_check();
        flow
    }

    /// Data path: `generation`'s stream ended cleanly; unfinished lines go to `sink`. See
    /// [`Event::EndOfStream`] for `stopped_throughout`.
    pub fn handle_end_of_stream(
        &mut self,
        generation: Generation,
        stopped_throughout: bool,
        sink: &mut impl LineSink,
    ) {
        if !self.stopped {
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
        for s in streams.iter() {
            self.cursor.admit(s);
        }
        self.cursor.begin_generation();
        true
    }

    /// Whether the live generation is a draining read (opened after a `die`, no `start`
    /// since): the runtime then checks whether the container stayed stopped throughout it.
    pub fn is_draining(&self) -> bool {
        self.reader.as_ref().is_some_and(|r| r.draining)
    }

    /// A deadline from `poll_timeout` passed: reopen after a backoff, or rotate.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.stopped {
            return;
        }
        if self.reopen_at.is_some_and(|t| t <= now) {
            self.reopen_at = None;
            self.try_open(now);
        }
        if self.rotate_at.is_some_and(|t| t <= now) {
            self.rotate(CancelReason::Rotation);
        }
        self.self_check();
    }

    fn on_started(&mut self, now: Instant) {
        self.running = true;
        self.stop_confirmed = false;
        if let Some(r) = &mut self.reader {
            // It may write into this stream now, or wrote after it ended: reaching its end no
            // longer proves the log was read whole.
            r.draining = false;
            r.complete = false;
        }
        if self.stop.is_some() {
            return;
        }
        self.needs_read = true;
        self.start_heartbeat();
        if self.reopen_at.is_none() {
            self.schedule_reopen(now);
        }
    }

    fn on_died(&mut self, now: Instant) {
        let believed_running = std::mem::replace(&mut self.running, false);
        self.stop_confirmed = true;
        if self.stop.is_some() {
            return;
        }
        if !believed_running {
            // A stop the machine did not see coming: a run it never saw whole (a fresh machine,
            // a missed `start`), or a repeated `die`. A live stream was not opened on a complete
            // log after all.
            if let Some(r) = &mut self.reader {
                r.draining = false;
                r.complete = false;
            }
        }
        // The run's log is complete now: read what is left of it.
        self.needs_read = true;
        if self.reader.is_none() && self.reopen_at.is_none() {
            self.schedule_reopen(now);
        }
    }

    fn on_removed(&mut self) {
        self.running = false;
        self.needs_read = false;
        self.stop = Some(StopCause::Removed);
        self.reopen_at = None;
        self.rotate_at = None;
        // The live reader, if any, drains what the daemon still sends and ends by itself.
        self.stop_heartbeat();
        self.maybe_finish_stop();
    }

    fn begin_stop(&mut self, cause: StopCause) {
        self.stop.get_or_insert(cause);
        self.reopen_at = None;
        self.rotate_at = None;
        if let Some(r) = &mut self.reader {
            if r.cancel.is_none() {
                r.cancel = Some(CancelReason::Stop);
                let generation = r.generation;
                self.push(Command::CancelReader {
                    generation,
                    reason: CancelReason::Stop,
                });
            }
        }
        self.stop_heartbeat();
        self.maybe_finish_stop();
    }

    fn start_heartbeat(&mut self) {
        if self.stop.is_none()
            && matches!(self.heartbeat, Heartbeat::NotStarted | Heartbeat::Joined)
        {
            self.heartbeat = Heartbeat::Live;
            self.push(Command::StartHeartbeat);
        }
    }

    fn stop_heartbeat(&mut self) {
        if self.heartbeat == Heartbeat::Live {
            self.heartbeat = Heartbeat::Stopping;
            self.push(Command::StopHeartbeat);
        }
    }

    fn on_heartbeat(&mut self, now: Instant, running: bool) {
        if self.heartbeat != Heartbeat::Live {
            return;
        }
        // The heartbeat's inspect corrects a missed `start`. A "stopped" is only noted: the
        // inspect may be older than a `start` already handled, so only a `die` confirms a stop
        // (the runtime feeds one for every stop, from the events or from a resync).
        if running && !self.running {
            self.on_started(now);
        } else if !running {
            self.running = false;
        }
        let stalled = match &self.reader {
            Some(r) if running && r.opened && !r.ended && r.cancel.is_none() => {
                let quiet = now.since(r.last_activity);
                (quiet >= self.stall_limit(r)).then_some((r.generation, quiet, r.framed))
            }
            _ => None,
        };
        if let Some((generation, quiet, framed)) = stalled {
            if !framed {
                self.slow_starts = self.slow_starts.saturating_add(1);
            }
            self.push(Command::Report(Report::Stalled { generation, quiet }));
            self.rotate(CancelReason::Stall);
        }
    }

    fn on_heartbeat_exited(&mut self, now: Instant) {
        match self.heartbeat {
            Heartbeat::Stopping => self.heartbeat = Heartbeat::Joined,
            Heartbeat::Live => {
                self.heartbeat = Heartbeat::Joined;
                self.push(Command::Report(Report::HeartbeatLost));
                self.start_heartbeat();
            }
            Heartbeat::NotStarted | Heartbeat::Joined => {
                self.push(Command::Report(Report::UnknownGeneration {
                    generation: Generation(0),
                    event: "HeartbeatExited",
                }));
            }
        }
        // Only the seed's shared scope ever waits for the heartbeat before reopening.
        if self.reader.is_none() && self.reopen_at.is_none() {
            self.schedule_reopen(now);
        }
        self.maybe_finish_stop();
    }

    /// The live reader, if it is `generation`; otherwise reports the stray event.
    fn live_reader(&mut self, generation: Generation, event: &'static str) -> Option<&mut Reader> {
        match &mut self.reader {
            Some(r) if r.generation == generation => Some(r),
            _ => {
                self.out
                    .push_back(Command::Report(Report::UnknownGeneration {
                        generation,
                        event,
                    }));
                None
            }
        }
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
        if !trust && r.rewind.judge(stream, stamped.ts, stamped.payload) == Seen::Resent {
            sink.dropped(stream, Verdict::Resent);
            return Flow::Continue;
        }
        let delivered = self.deliver_with(sink, |partials, out| {
            partials.push(stream, stamped.ts, stamped.ts_text, stamped.payload, out)
        });
        if delivered {
            self.progressed(now);
        }
        Flow::Continue
    }

    /// The live generation delivered a new line. The first time, the rotation is armed: a
    /// generation is retired `rotate_every` after it began to make progress, never before.
    fn progressed(&mut self, now: Instant) {
        let Some(r) = &mut self.reader else { return };
        if r.delivered {
            return;
        }
        r.delivered = true;
        if r.cancel.is_none() && self.stop.is_none() && self.rotate_at.is_none() {
            self.rotate_at = Some(now.after(self.config.rotate_every));
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
        if !r.draining || !(stopped_throughout || trust) {
            // A follow stream can end before it sent all of the log (measured: with unread
            // data in the file), so an unfinished line here may go on: the draining read
            // that follows sees it whole. A read opened as draining was a follow too if the
            // container started before the daemon answered it.
            self.partials.discard();
            return;
        }
        r.complete = true;
        // A draining read saw the whole log: what is unfinished is a last line without newline.
        if self.deliver_with(sink, |partials, out| partials.flush(out)) {
            if let Some(r) = &mut self.reader {
                r.delivered = true;
            }
        }
    }

    /// Runs `feed` over the partial buffers; every complete message it yields passes the
    /// cursor, and the new ones go to `sink`. Returns whether anything new was delivered.
    fn deliver_with<S: LineSink>(
        &mut self,
        sink: &mut S,
        feed: impl FnOnce(&mut Partials, &mut dyn FnMut(Message<'_>)),
    ) -> bool {
        let cursor = &mut self.cursor;
        #[cfg(feature = "mutants")]
        let mutant = self.config.mutant;
        let violation = &mut self.violation;
        let mut delivered = false;
        feed(&mut self.partials, &mut |m: Message<'_>| {
            let before = cursor.position(m.stream);
            #[cfg(feature = "mutants")]
            let verdict = mutant::judge(cursor, mutant, m.stream, m.ts);
            #[cfg(not(feature = "mutants"))]
            let verdict = cursor.accept(m.stream, m.ts);
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
        let Some(reader) = self
            .live_reader(generation, "ReaderExited")
            .map(|r| r.clone())
        else {
            return;
        };
        self.reader = None;
        self.joined = generation;
        self.rotate_at = None;
        // On a clean end `EndOfStream` flushed them; otherwise the next generation replays them.
        self.partials.discard();
        if self.stop.is_none() {
            // When stopping, Stopped itself checkpoints (or forgets) once everything is joined.
            self.push(Command::Checkpoint(self.cursor.clone()));
        }
        let healthy = reader.delivered;
        match exit {
            ReaderExit::Cancelled => match reader.cancel {
                Some(CancelReason::Rotation | CancelReason::Stall | CancelReason::Stop) => {
                    if healthy {
                        self.failures = 0;
                    }
                }
                Some(CancelReason::BadFrame) | None => self.fail(healthy),
            },
            ReaderExit::CleanEnd if self.running => self.fail(healthy),
            ReaderExit::CleanEnd if reader.complete => {
                // Opened after the container stopped, read to its end while it stayed
                // stopped: all of it was read.
                self.needs_read = false;
                self.failures = 0;
            }
            // The container stopped, but this stream was a follow (opened while it ran, or it
            // started again before the daemon answered), and the daemon can end a follow
            // stream before it sent all of the log (measured): read once more, after a
            // backoff, with a stream opened now that the log is complete.
            ReaderExit::CleanEnd => self.fail(true),
            ReaderExit::Failed(ReadError::Unsupported) => {
                self.needs_read = false;
                if !self.unreadable {
                    self.unreadable = true;
                    self.push(Command::Report(Report::Unreadable));
                }
            }
            ReaderExit::Failed(ReadError::NotFound) => {
                self.running = false;
                self.needs_read = false;
            }
            ReaderExit::Failed(ReadError::Transient | ReadError::BadFrame) => self.fail(healthy),
        }
        if self.stop.is_some() {
            self.maybe_finish_stop();
        } else {
            self.schedule_reopen(now);
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
        if self.stop.is_some() {
            return;
        }
        let eager = planted!(self.config, EagerRotation);
        if let Some(r) = &mut self.reader {
            if reason == CancelReason::Rotation && !r.delivered && !eager {
                return;
            }
            if r.cancel.is_none() {
                r.cancel = Some(reason);
                let generation = r.generation;
                self.rotate_at = None;
                self.push(Command::CancelReader { generation, reason });
            }
        }
    }

    /// Opens the next generation now, or arms the backoff deadline.
    fn schedule_reopen(&mut self, now: Instant) {
        if !self.wants_reader() {
            return;
        }
        if planted!(self.config, SharedScope) && self.heartbeat.is_alive() {
            // The seed bug: the rotation joins a scope the heartbeat is also in.
            return;
        }
        let delay = self.config.backoff.delay(self.failures, self.opened.0);
        if delay.is_zero() {
            self.open(now);
        } else {
            self.reopen_at = Some(now.after(delay));
        }
    }

    fn try_open(&mut self, now: Instant) {
        if self.wants_reader() {
            self.open(now);
        }
    }

    fn wants_reader(&self) -> bool {
        self.stop.is_none() && self.needs_read && !self.unreadable && self.reader.is_none()
    }

    /// Spawns the next generation: the only place one is created.
    fn open(&mut self, now: Instant) {
        if self.stopped
            || self.stop.is_some()
            || self.reader.is_some()
            || self.joined != self.opened
        {
            self.flag(Violation::OpenedBeforeJoin {
                opened: self.opened,
                joined: self.joined,
            });
            return;
        }
        let generation = Generation(self.opened.0 + 1);
        self.opened = generation;
        self.cursor.begin_generation();
        self.partials.discard();
        self.reader = Some(Reader {
            generation,
            opened: false,
            last_activity: now,
            framed: false,
            delivered: false,
            rewind: Rewind::new(),
            ended: false,
            draining: !self.running && self.stop_confirmed,
            complete: false,
            cancel: None,
        });
        if planted!(self.config, EagerRotation) {
            // The bug: the rotation counts from the open, so a reopen that takes longer than
            // the interval to deliver anything is retired before it does, again and again.
            self.rotate_at = Some(now.after(self.config.rotate_every));
        }
        let since = self.cursor.since();
        self.push(Command::OpenStream { generation, since });
    }

    fn maybe_finish_stop(&mut self) {
        let Some(cause) = self.stop else { return };
        if self.stopped || self.reader.is_some() || self.heartbeat.is_alive() {
            return;
        }
        self.push(match cause {
            StopCause::Requested => Command::Checkpoint(self.cursor.clone()),
            StopCause::Removed => Command::Forget,
        });
        self.stopped = true;
        self.reopen_at = None;
        self.rotate_at = None;
    }

    fn push(&mut self, command: Command) {
        if self.stopped {
            self.flag(Violation::SpawnedAfterStop);
            return;
        }
        self.out.push_back(command);
    }

    fn flag(&mut self, violation: Violation) {
        self.violation.get_or_insert(violation);
    }

    /// In debug builds every step re-checks the invariants (a mutant is left to the checkers).
    fn self_check(&self) {
        #[cfg(debug_assertions)]
        if !mutated!(self.config) {
            if let Err(v) = self.check_invariants() {
                panic!("capturer-core invariant violated: {v}\n{self:#?}");
            }
        }
    }
}
