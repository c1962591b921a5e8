//! The model: K real [`ContainerMachine`]s against an abstract Docker daemon.
//!
//! The state holds, per container, the machine itself (the core type, driven only through its
//! public API: `handle`, `handle_timeout`, `poll_command`, `poll_timeout`, and the read-only
//! accessors) and the world around it: how much of its log the container has written, whether
//! it runs or was removed, the docker events not yet delivered to the capturer, the reader and
//! heartbeat TASKS that the machine's commands created (the world's own count, not the
//! machine's), and what reached the sink. Every action is one thing happening in the world; the
//! machine reacts, and every command it emits is carried out at once, as the runtime does.
//!
//! Time: each container has a clock ([`Container::now`]) that starts at [`NOW`] and moves only
//! forward, in two kinds of step: a deadline passing (its own action, which moves the clock to
//! the deadline the machine reports and calls `handle_timeout` there), and a heartbeat tick,
//! which comes [`TICK`] after the previous moment (half the heartbeat interval, so that a tick
//! may find a stream active within the interval, and skip its inspect as the runtime does when
//! `wants_heartbeat_tick` says so, or quiet for a whole interval: stalled). Every other event
//! happens at the clock's current moment. Both steps are budgeted, so the state space stays
//! finite, and every path is a real schedule.

use std::hash::{Hash, Hasher};
use std::time::Duration;

use capturer_core::discovery::{admission, Admission, Listed};
use capturer_core::partial::DEFAULT_CAP;
use capturer_core::{
    Backoff, CancelReason, Command, Config, ContainerMachine, Cursor, Event, Generation, Instant,
    Line, Mutant, Phase, Position, ReadError, ReaderExit, Report, Stream, StreamSet, Timestamp,
};
use stateright::{Model, Property};

use crate::log::{canonical_log, meaning, rel, Entry, LogLine, Meaning, SinceRule, BASE};

/// The moment every container's clock starts at.
pub const NOW: Instant = Instant(0);

/// How far a heartbeat tick moves a container's clock: half the heartbeat interval.
pub const TICK: Duration = Duration::from_secs(15);

/// The first backoff; the second failure in a row waits twice as long.
pub const BACKOFF_INITIAL: Duration = Duration::from_secs(1);

/// How much of each kind of trouble the world may cause. Budgets are for the whole system:
/// the checker tries every way of sharing them among the containers.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Bounds {
    /// Containers (identical; symmetry reduces them).
    pub containers: usize,
    /// Log entries per container (see [`canonical_log`]).
    pub lines: usize,
    /// Rotation deadlines that may pass.
    pub rotations: u8,
    /// Times a stopped container may be started again.
    pub restarts: u8,
    /// Daemon restarts (every stream and every request in flight breaks).
    pub daemon_restarts: u8,
    /// Reader errors (a stream breaking on its own).
    pub reader_errors: u8,
    /// Heartbeat ticks.
    pub ticks: u8,
    /// Heartbeats that exit on their own (a panic, a closed channel): the machine must notice
    /// and start another.
    pub heartbeat_losses: u8,
    /// Whether a stopped container may be removed.
    pub removals: bool,
    /// Capturer stops (each stops every machine). A stop can always happen, so every complete
    /// history goes through all of them.
    pub capturer_stops: u8,
    /// Capturer restarts after a stop, from the checkpointed cursors; like stops, bound to
    /// happen once possible. With as many restarts as stops every history ends with the
    /// capturer running, at rest: where exactly-once is judged.
    pub capturer_restarts: u8,
    /// Frames a reader may still deliver after it was told to stop.
    pub in_flight: u8,
    /// Where the first run ends (entries written before the restart); `None`: at every
    /// boundary that does not cut a line in two.
    pub split: Option<usize>,
    /// Daemon re-sends: an open stream goes back and sends again a run of what it sent (after
    /// the daemon rotated its json-file), in the shapes `capturer_core::rewind` handles.
    pub resends: u8,
    /// Early ends: a follow stream of a container that stopped ends before it sent everything
    /// the container wrote (measured on Docker 20.10: a race in the daemon's follow loop).
    pub early_ends: u8,
    /// Containers that do not exist at the capturer's first listing: each may be created, run
    /// (and stop) while the capturer is stopped, and is found by the next start-up listing.
    pub births: usize,
    /// Capturer crashes (SIGKILL or a power loss), each followed by a start-up that recovers
    /// from what survived: the sink's output and the persisted cursor. A shared event, like a
    /// stop: each container goes through it on its own.
    pub crashes: u8,
    /// Sink ticks per container (a shared event): the sink makes what it wrote durable (fsync,
    /// or a network sink's acknowledgement), then persists the cursor that covers it. Only a
    /// tick with something to do is taken (an idle one changes nothing).
    pub syncs: u8,
    /// Whether a reopen may use a tail (`tail=K`, proven before use); without, every reopen
    /// asks for `since`, as before tails.
    pub tails: bool,
}

impl Default for Bounds {
    fn default() -> Bounds {
        // One container: a second one runs after the first with what is left of the shared
        // budgets, so its histories are among the first's, and it would cost what re-sends
        // and early ends need (`docs/model.md`, "Bounds and figures"). Births (a container of
        // their own) likewise.
        Bounds {
            containers: 1,
            lines: 6,
            rotations: 2,
            restarts: 1,
            daemon_restarts: 1,
            reader_errors: 0,
            ticks: 0,
            heartbeat_losses: 0,
            removals: false,
            capturer_stops: 1,
            capturer_restarts: 1,
            in_flight: 1,
            split: None,
            resends: 1,
            early_ends: 1,
            births: 0,
            crashes: 1,
            syncs: 0,
            tails: true,
        }
    }
}

/// What to check: the bounds, the daemon's `since` rule and the machine's variant.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Options {
    /// The bounds.
    pub bounds: Bounds,
    /// The daemon's `since` rule.
    pub since_rule: SinceRule,
    /// A known bug re-created in the machine, or `None` for the real one.
    pub mutant: Option<Mutant>,
    /// Run the containers one after the other (sound: they are independent); `false`
    /// interleaves their steps in every order (a product, for cross-checking).
    pub compose: bool,
    /// The pre-fix start-up listing: `discovery::admission` with no watermark, ever (only
    /// running containers and those with a saved cursor are taken on).
    pub old_discovery: bool,
    /// A known bug re-created in the model's runtime (its sink and start-up), or `None`.
    pub runtime_mutant: Option<RuntimeMutant>,
}

/// A bug of the runtime's durability flow, re-created in the model's abstract runtime (the
/// core's [`Mutant`]s re-create the machine's). Selected by `check --mutant NAME` like those.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RuntimeMutant {
    /// The sink's tick persists the cursor first, then makes the lines it covers durable
    /// (fsync, or a network sink's acknowledgement): a crash in between leaves a persisted
    /// cursor past lines a power loss then erases, and they are never read again.
    PersistBeforeAck,
    /// The start-up resumes from the persisted cursor alone, ignoring the positions in the
    /// output: lines written after the last persisted cursor, which survive a SIGKILL, are
    /// delivered again.
    NoRecovery,
    /// The sink's tick fsyncs the output only if this process wrote to it since its last
    /// fsync. After a SIGKILL, the records the killed process wrote may still be in the page
    /// cache only; the start-up resumes past them, and a tick that persists that cursor
    /// without an fsync leaves it past records a power loss then erases.
    SyncOwnWritesOnly,
    /// The heartbeat's join is registered only when it is told to stop (the runtime before
    /// issue 16): one that exits on its own is never reported, the machine believes it alive
    /// (no stall is ever detected again), and the stop tells a heartbeat that is gone.
    UnnoticedHeartbeatExit,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            bounds: Bounds::default(),
            since_rule: SinceRule::SkipAllOlder,
            mutant: None,
            compose: true,
            old_discovery: false,
            runtime_mutant: None,
        }
    }
}

/// The stateright model of the whole capture.
#[derive(Clone, Debug)]
pub struct CaptureModel {
    opts: Options,
    log: Vec<Entry>,
    frames: Vec<Vec<u8>>,
    meaning: Meaning,
    /// Per stream, each logical line's position (what the cursor holds once it delivered it).
    positions: [Vec<Position>; 2],
    config: Config,
    start: Cursor,
}

/// The capturer process.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Capturer {
    /// Capturing.
    Running,
    /// Told to stop: every machine was sent `StopRequested`.
    Stopping,
    /// Crashed (SIGKILL or a power loss): no machine, no task; what survives of its output
    /// is decided in the next step (once per distinct crashed state, not once per state a
    /// crash may strike in).
    Crashed,
    /// Crashed, and what survived is known: it starts again next, from that.
    Down,
}

impl Capturer {
    /// The process is alive (running or stopping).
    pub fn up(self) -> bool {
        matches!(self, Capturer::Running | Capturer::Stopping)
    }
}

/// A docker event not yet delivered to the capturer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DockerEvent {
    /// `start`.
    Started,
    /// `die`.
    Died,
    /// `destroy`.
    Removed,
}

/// Where a reader task stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Stage {
    /// Spawned; answered within the same step.
    Requested,
    /// The daemon answered 200; frames flow.
    Open,
    /// The stream ended and `EndOfStream` was sent; the task exits cleanly.
    Ended,
    /// The request or the stream failed; the task exits with this error.
    Failed(ReadError),
}

/// A reader task in the world, created by `OpenStream`, gone once its exit is observed.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ReaderTask {
    /// Its generation.
    pub generation: Generation,
    /// The `since` it asked for (zero with a tail).
    pub since: Timestamp,
    /// The tail it asked for (`tail=K`: the last K entries when the daemon answers), if any.
    pub tail: Option<u8>,
    /// The first file index the daemon may send: where its tail began (0 without one).
    pub from: u8,
    /// Where it stands.
    pub stage: Stage,
    /// The next file index the daemon looks at.
    pub pos: u8,
    /// Rule B only: still skipping entries older than `since`.
    pub filtering: bool,
    /// The stream ends after this many entries (the container stopped).
    pub end_at: Option<u8>,
    /// It was told to stop, and why.
    pub cancel: Option<CancelReason>,
    /// Frames it delivered after being told to stop.
    pub after_cancel: u8,
    /// It follows a running container (the daemon answered while it ran).
    pub follow: bool,
    /// One past the furthest entry it sent (`pos` is behind it while a re-send is under way).
    pub sent: u8,
    /// Where its latest re-send stands (forgotten once it has shown what it must: states
    /// that differ only in when a re-send happened are then one).
    pub resend: Option<Resend>,
    /// Its stream ended before everything the container wrote was sent.
    pub early: bool,
    /// It delivered at least one new line to the sink.
    pub progress: bool,
    /// The container ran at some moment since its request went out: what the runtime's two
    /// inspects around a draining read would show (`EndOfStream::stopped_throughout`).
    pub ran: bool,
}

/// A reader's re-send, for the property that one is dropped and the stream goes on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Resend {
    /// The daemon went back; no new entry has been sent since.
    UnderWay,
    /// After it, the reader sent a new entry (the next one forgets the re-send).
    GoneOn,
}

/// A heartbeat task in the world.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct HeartbeatTask {
    /// It was told to stop.
    pub stopping: bool,
}

/// Where the latest rotation (a reader retired for any reason but a stop) stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Rotation {
    /// None in progress.
    Done,
    /// The reader was told to stop; its exit is not yet observed.
    Cancelled(Generation),
    /// Its exit was observed and the next generation is not open yet. `clean`: the reader
    /// had read everything of a stopped container (or it was gone), and the container has
    /// not started since: there may be nothing left to read.
    Joined {
        /// Nothing may be left to read.
        clean: bool,
    },
    /// Exit observed, the machine knows everything the world knows (no docker event pending),
    /// something may be left to read, no stop was asked for, and yet neither an open nor a
    /// deadline followed: the rotation waits on something other than the reader's exit.
    Blocked,
}

/// A cursor's positions, per stream (stdout, stderr): what the state file holds.
pub type Positions = [Position; 2];

/// What survives of a container's output when the capturer crashes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Cut {
    /// SIGKILL: everything written survives (in the page cache), durable or not.
    Kill,
    /// A power loss (or an OS crash): per stream (stdout, stderr), this many records survive,
    /// at least the durable ones and at most what was written (the OS may have written some
    /// back; a torn last line is dropped). What survived is on disk: durable.
    Power([u8; 2]),
}

/// Something the world saw that must never happen; the first one per container is kept.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Flaw {
    /// A line was delivered a second time.
    Duplicate {
        /// The stream.
        stream: Stream,
        /// Which logical line (0-based, in the stream).
        line: u8,
    },
    /// A line was delivered before an earlier one of its stream: that one is lost.
    Skipped {
        /// The stream.
        stream: Stream,
        /// The line that should have come next.
        expected: u8,
        /// The line that came.
        got: u8,
    },
    /// A line that the container never wrote.
    Unknown {
        /// The stream.
        stream: Stream,
    },
    /// A reader was spawned while another one was alive.
    TwoReaders,
    /// A heartbeat was spawned while another one was alive.
    TwoHeartbeats,
    /// A stopped machine emitted a command.
    CommandAfterStop,
    /// A checkpoint, or a persisted cursor, is behind the persisted one.
    CheckpointMovedBack,
    /// A command named a task that does not exist.
    StrayCommand(&'static str),
    /// The machine said an event named a task it does not know, though the task is real.
    StrayReport(&'static str),
    /// A rotation retired a generation that had delivered no new line.
    IdleRotation,
}

/// One container: the real machine and its world.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Container {
    /// The machine under test.
    pub machine: ContainerMachine,
    /// The capturer, as this container sees it: the stop reaches each machine on its own.
    pub capturer: Capturer,
    /// Daemon restarts this container's streams went through.
    pub daemon_restarts: u8,
    /// Capturer stops that reached this machine.
    pub stops: u8,
    /// Capturer restarts that re-listed this container.
    pub relists: u8,
    /// Log entries written so far: the first run's from the start, the rest when it starts
    /// again (writing a run's entries at its start is sound: see `docs/model.md`).
    pub written: u8,
    /// How many entries the first run writes.
    pub split: u8,
    /// The container runs.
    pub running: bool,
    /// It was started again after it stopped.
    pub restarted: bool,
    /// The container was removed.
    pub removed: bool,
    /// The machine was told of the removal.
    pub removal_seen: bool,
    /// Docker events not yet delivered, oldest first.
    pub events: Vec<DockerEvent>,
    /// Live reader tasks (the machine must keep this at most one).
    pub readers: Vec<ReaderTask>,
    /// Live heartbeat tasks.
    pub heartbeats: Vec<HeartbeatTask>,
    /// The sink's output, per stream (stdout, stderr): it holds that stream's first
    /// `delivered[s]` logical lines, in order, each record at its own position (anything else
    /// reaching the sink is a [`Flaw`], and the output's state after a flaw does not matter).
    /// Written records are visible to a reader of the file at once.
    pub delivered: [u8; 2],
    /// Per stream, how many of the output's first records are durable (fsynced, or
    /// acknowledged): the rest is lost in a power loss, unless the OS wrote it back before.
    pub durable: [u8; 2],
    /// The persisted cursor's positions (the state file), which a start-up recovers from with
    /// the output. (The cursor the sink would persist at its next tick, the one covering what
    /// it was handed, is the machine's own: [`CaptureModel::flushed`].)
    pub checkpoint: Option<Positions>,
    /// Mutant `PersistBeforeAck` only: a tick persisted the cursor and has yet to fsync.
    pub acking: bool,
    /// Mutant `SyncOwnWritesOnly` only: this process wrote to the output since its last fsync.
    pub wrote: bool,
    /// Sink ticks this container went through.
    pub syncs: u8,
    /// Crashes this container went through.
    pub crashes: u8,
    /// A line reached the sink with a position (`pos`) other than its own.
    pub misplaced: bool,
    /// What survived the crash lacks records that were written (a power loss before they were
    /// durable). Cleared at the start-up: kept only as a witness that such crashes are reached
    /// (every history goes on from there to a terminal state, where exactly-once is judged).
    pub lost_on_crash: bool,
    /// The latest rotation.
    pub rotation: Rotation,
    /// The first flaw seen.
    pub flaw: Option<Flaw>,
    /// This container's clock: where the machine's time stands (see the module docs).
    pub now: Instant,
    /// A live stream was found stalled by a heartbeat tick (`Report::Stalled`).
    pub stalled: bool,
    /// A tick was skipped because `wants_heartbeat_tick` said it could change nothing.
    pub tick_skipped: bool,
    /// A heartbeat exited on its own and the machine started another.
    pub heartbeat_restarted: bool,
    /// The container exists (false for a birth until it is created).
    pub exists: bool,
    /// The capturer knows it: it has a machine for it (listed and admitted, or seen starting).
    pub admitted: bool,
    /// A follow stream of it ended early.
    pub ended_early: bool,
    /// A start-up listing admitted it with no saved cursor though it had stopped
    /// (`Admission::Drain` by the watermark).
    pub drained_new: bool,
}

/// The budgets left, shared by all containers.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Budget {
    /// Rotation deadlines.
    pub rotations: u8,
    /// Container restarts.
    pub restarts: u8,
    /// Reader errors.
    pub reader_errors: u8,
    /// Heartbeat ticks.
    pub ticks: u8,
    /// Heartbeats exiting on their own.
    pub heartbeat_losses: u8,
    /// Daemon re-sends.
    pub resends: u8,
    /// Early ends of follow streams.
    pub early_ends: u8,
}

/// The whole world.
///
/// Containers share nothing but the daemon, the capturer and the budgets, and what a daemon
/// restart or a capturer stop does to one container depends on that container alone. So each
/// container goes through every shared event on its own, at a point of its own history that
/// the checker chooses, and the containers run one after the other: the first to the end of
/// its history, then the next (see `docs/model.md` for why this covers every interleaving).
/// A container that is done is kept as the [`Summary`] of what the properties said about it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct State {
    /// The containers still to run (the first one moves), or every container when
    /// [`Options::compose`] is off.
    pub containers: Vec<Container>,
    /// The containers that are done, in order.
    pub done: Vec<Summary>,
    /// What the world may still do.
    pub budget: Budget,
}

/// What every per-container check said about a container at the end of its history: bit `i`
/// for the check of property `i`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Summary(pub u32);

/// One thing happening in the world. `usize` fields index containers, then tasks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    /// The container stops (`die`).
    Die(usize),
    /// The stopped container starts again (`start`) and writes the rest of its log.
    Start(usize),
    /// The same, between a request made while it was stopped and the daemon's answer: that
    /// stream follows the running container.
    StartBeforeAnswer(usize),
    /// The stopped container is removed (`destroy`).
    Remove(usize),
    /// The oldest pending docker event reaches the capturer.
    DeliverEvent(usize),
    /// A reader delivers the next frame the daemon sends.
    Frame(usize, usize),
    /// A reader reaches the end of its stream (container stopped, everything sent).
    End(usize, usize),
    /// A reader's stream breaks.
    ReaderError(usize, usize),
    /// A reader's daemon goes back to this entry and sends again everything it sent from it.
    Resend(usize, usize, u8),
    /// A follow stream of a stopped container ends before it sent everything written.
    EarlyEnd(usize, usize),
    /// The container is created and started while the capturer is stopped.
    Birth(usize),
    /// A reader task exits and is joined.
    ReaderExit(usize, usize),
    /// The machine's deadline (rotation or backoff) passes.
    Deadline(usize),
    /// The heartbeat's next tick: the clock moves on by [`TICK`], and it inspects the
    /// container unless the machine says the answer could change nothing.
    Tick(usize, usize),
    /// A live heartbeat exits on its own (a panic, a closed channel) and is joined.
    HeartbeatLost(usize, usize),
    /// A heartbeat task exits and is joined.
    HeartbeatExit(usize, usize),
    /// The daemon restarts: every stream and request in flight of the container fails.
    DaemonRestart(usize),
    /// The capturer is told to stop (SIGTERM): `StopRequested` reaches the machine.
    Stop(usize),
    /// The stopped or crashed capturer starts again: it recovers the container's cursor from
    /// the output and the persisted cursor, and lists the container.
    Restart(usize),
    /// The sink's tick for the container: the lines written become durable (fsync, or a
    /// network sink's acknowledgement), then the cursor that covers them is persisted. With
    /// `RuntimeMutant::PersistBeforeAck` only the persist happens here, the fsync is [`Action::Ack`].
    Sync(usize),
    /// `RuntimeMutant::PersistBeforeAck`: the tick's fsync, after its persist.
    Ack(usize),
    /// The capturer crashes: the process, its machine and its tasks are gone.
    Crash(usize),
    /// What survives of the container's output, decided right after a crash.
    Survive(usize, Cut),
    /// The first container is done; the next one runs.
    Pass,
    /// Without composition: the daemon restarts, for every container at once.
    DaemonRestartAll,
    /// Without composition: the capturer is told to stop, every machine at once.
    StopAll,
    /// Without composition: the capturer starts again once every machine stopped.
    RestartAll,
    /// Without composition: the sink's tick, for every container at once.
    SyncAll,
    /// Without composition: the capturer crashes, for every container at once (what survives
    /// of each output is then decided container by container).
    CrashAll,
}

/// Collects a readable account of one step, for traces and the Explorer.
#[derive(Default)]
struct Notes {
    on: bool,
    lines: Vec<String>,
}

impl Notes {
    fn add(&mut self, f: impl FnOnce() -> String) {
        if self.on {
            self.lines.push(f());
        }
    }
}

enum Input {
    Event(Event),
    Timeout(Instant),
    /// A frame of the reader's stream, through the data path.
    Frame {
        generation: Generation,
        stream: Stream,
        entry: usize,
    },
    /// The reader's stream ended cleanly, through the data path.
    End {
        generation: Generation,
        stopped_throughout: bool,
    },
}

impl CaptureModel {
    /// A model for `opts`.
    pub fn new(opts: Options) -> CaptureModel {
        let log = canonical_log(opts.bounds.lines);
        let frames = log.iter().map(Entry::frame).collect();
        let meaning = meaning(&log);
        // A line's position: its stamp, and how many lines of its stream carry that stamp up
        // to it (itself included).
        let positions = meaning.lines.clone().map(|lines| {
            (0..lines.len())
                .map(|j| Position {
                    ts: lines[j].ts,
                    n: lines[..=j].iter().filter(|l| l.ts == lines[j].ts).count() as u64,
                })
                .collect()
        });
        let config = Config {
            rotate_every: Duration::from_secs(300),
            heartbeat_every: Duration::from_secs(30),
            backoff: Backoff {
                initial: BACKOFF_INITIAL,
                max: Duration::from_secs(4),
                jitter_seed: 0,
            },
            partial_cap: DEFAULT_CAP,
            // Tails as short as one entry, so that a tail can miss the cursor in a log of a
            // few entries (the runtime's floor is 1000); one miss falls back to `since` (every
            // further try multiplies the states: 8x at three tries, `docs/model.md`).
            tail_floor: u64::from(opts.bounds.tails),
            tail_tries: 1,
            tail_pace: false,
            // A rotation that waits for a quiet stream only comes later; the model's clock
            // already reaches each deadline between any two frames, so every later moment is
            // among its histories.
            rotate_when_quiet: Duration::ZERO,
            mutant: opts.mutant,
        };
        CaptureModel {
            opts,
            log,
            frames,
            meaning,
            positions,
            config,
            start: Cursor::new(BASE, StreamSet::MULTIPLEXED),
        }
    }

    /// The options.
    pub fn options(&self) -> &Options {
        &self.opts
    }

    /// The container's log, in file order.
    pub fn log(&self) -> &[Entry] {
        &self.log
    }

    /// What the log means: its logical lines.
    pub fn meaning(&self) -> &Meaning {
        &self.meaning
    }

    /// The machines' configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Where a container's first run may end: every entry boundary that does not cut a line
    /// in two (or the whole log when containers never restart, or the one the bounds fix).
    pub fn splits(&self) -> Vec<u8> {
        let len = self.log.len();
        if self.opts.bounds.restarts == 0 {
            return vec![len as u8];
        }
        if let Some(k) = self.opts.bounds.split {
            return vec![k.min(len) as u8];
        }
        (1..=len)
            .filter(|&w| !self.meaning.mid_group[w])
            .map(|w| w as u8)
            .collect()
    }

    /// Whether the log holds a line written in several parts (`--lines 4` and fewer do not).
    pub fn has_merged_line(&self) -> bool {
        self.meaning.lines[0].iter().any(|l| l.text == b"p1p2")
    }

    /// Whether `s` has no successor.
    pub fn is_terminal(&self, s: &State) -> bool {
        let mut actions = Vec::new();
        self.actions(s, &mut actions);
        actions.is_empty()
    }

    /// Container `k` is at rest and will stay so until the world changes: the capturer runs,
    /// the container is stopped, every docker event about it was delivered, no reader is
    /// alive and no deadline is armed.
    pub fn is_quiescent(&self, k: &Container) -> bool {
        k.capturer == Capturer::Running
            && !k.running
            && k.events.is_empty()
            && k.readers.is_empty()
            && k.machine.poll_timeout().is_none()
    }

    /// Every line written to `k` is in the output exactly once: per stream, the output holds
    /// the stream's lines in order, none missing (unless `k` was removed: its log is gone),
    /// and no line the sink was handed was a duplicate, a skip or unknown.
    pub fn all_delivered(&self, k: &Container) -> bool {
        once_in_order(k) && (k.removed || k.delivered == self.meaning.upto[usize::from(k.written)])
    }

    /// Per stream, the position of the output's last record among the first `n[s]` (what the
    /// start-up reads from the tail of the surviving output), if any.
    pub fn last_positions(&self, n: [u8; 2]) -> [Option<Position>; 2] {
        [0, 1].map(|s| {
            usize::from(n[s])
                .checked_sub(1)
                .map(|j| self.positions[s][j])
        })
    }

    /// The persisted cursor is not past the durable output: per stream, its position is at
    /// most the last durable record's (or the capture's start where none is). A power loss
    /// keeps the durable records, so a cursor past them would skip what it erased.
    pub fn persisted_within_durable(&self, k: &Container) -> bool {
        // Once a line reached the sink twice, out of order or unknown (property 6 fails), the
        // output's counts no longer say what it holds.
        let Some(cp) = k.checkpoint.filter(|_| once_in_order(k)) else {
            return true;
        };
        let durable = self.last_positions(k.durable);
        (0..2).all(|s| cp[s] <= durable[s].unwrap_or(self.start_positions()[s]))
    }

    /// Some stream of `k`'s output holds a line past the persisted cursor.
    pub fn output_ahead(&self, k: &Container) -> bool {
        let cp = k.checkpoint.unwrap_or_else(|| self.start_positions());
        let last = self.last_positions(k.delivered);
        (0..2).any(|s| last[s].is_some_and(|p| p > cp[s]))
    }

    /// The capture's start, per stream: where a cursor that delivered nothing stands.
    pub fn start_positions(&self) -> Positions {
        positions(&self.start)
    }

    /// The cursor the sink holds for `k`, which its next tick persists: the one that covers
    /// every line handed to it (the last batch's, or the machine's last `Checkpoint`). It is
    /// the machine's cursor: that moves only when a line is delivered, and each line goes to
    /// the sink with it. None while the capturer has no machine for `k`.
    pub fn flushed(&self, k: &Container) -> Option<Positions> {
        (k.admitted && k.capturer.up()).then(|| positions(k.machine.cursor()))
    }

    /// The cursor at `p`: the capture's start, each stream raised to its position.
    pub fn cursor_at(&self, p: Positions) -> Cursor {
        let mut cursor = self.start.clone();
        for (s, p) in [Stream::Stdout, Stream::Stderr].into_iter().zip(p) {
            if p > cursor.position(s) {
                raise(&mut cursor, s, p);
            }
        }
        cursor
    }

    /// At rest, `k` has delivered every line it wrote, exactly once.
    pub fn exactly_once_at_rest(&self, k: &Container) -> bool {
        !self.is_quiescent(k) || self.all_delivered(k)
    }

    /// What a step does, in words: the world's action, then every command the machine emitted.
    pub fn describe_step(&self, s: &State, a: Action) -> Vec<String> {
        let mut st = s.clone();
        let mut notes = Notes {
            on: true,
            lines: Vec::new(),
        };
        self.apply(&mut st, a, &mut notes);
        notes.lines
    }

    /// How an initial state came about, in words (the capturer lists the running containers).
    pub fn describe_init(&self, s: &State) -> Vec<String> {
        let mut out = Vec::new();
        for (c, k) in s.containers.iter().enumerate() {
            let c = c + s.done.len();
            if !k.exists {
                out.push(format!(
                    "c{c} does not exist yet (its first run will write {} entries)",
                    k.split
                ));
                continue;
            }
            let written: Vec<String> = self.log[..usize::from(k.split)]
                .iter()
                .map(Entry::to_string)
                .collect();
            out.push(format!(
                "c{c} runs and has written [{}]; the capturer lists it as running",
                written.join(", ")
            ));
            let mut m = ContainerMachine::new(self.config.clone(), self.start.clone());
            m.handle(NOW, Event::ContainerStarted);
            while let Some(cmd) = m.poll_command() {
                out.push(format!("    -> {}", show_command(&cmd)));
            }
        }
        out
    }

    /// One line per container: where it ended up.
    pub fn describe_state(&self, s: &State) -> Vec<String> {
        let mut out = Vec::new();
        for (c, summary) in s.done.iter().enumerate() {
            let failed: Vec<&str> = PROPERTIES
                .iter()
                .enumerate()
                .filter(|(i, _)| summary.0 & (1 << i) == 0)
                .map(|(_, p)| p.0)
                .collect();
            out.push(format!("c{c}: done; checks that failed on it: {failed:?}"));
        }
        for (c, k) in s.containers.iter().enumerate() {
            let c = c + s.done.len();
            let inv = match k.machine.check_invariants() {
                Ok(()) => "ok".to_string(),
                Err(v) => v.to_string(),
            };
            let want = self.meaning.upto[usize::from(k.written)];
            out.push(format!(
                "c{c}: output {}, persisted cursor {}, crashes {}",
                self.show_output(k),
                k.checkpoint.map(show_persisted).unwrap_or_default(),
                k.crashes,
            ));
            out.push(format!(
                "c{c}: phase {}, last generation {}, {} reader task(s), {} heartbeat task(s), \
                 delivered stdout {}/{} stderr {}/{} of the lines written, rotation {:?}, \
                 running {}, removed {}, known to the capturer {}, flaw {:?}, \
                 check_invariants: {inv}",
                k.machine.phase(),
                k.machine.generation(),
                k.readers.len(),
                k.heartbeats.len(),
                k.delivered[0],
                want[0],
                k.delivered[1],
                want[1],
                k.rotation,
                k.running,
                k.removed,
                k.admitted,
                k.flaw,
            ));
        }
        out
    }

    /// The output's lines per stream, and how many are durable.
    fn show_output(&self, k: &Container) -> String {
        let stream = |s: usize| {
            let texts: Vec<String> = self.meaning.lines[s][..usize::from(k.delivered[s])]
                .iter()
                .map(|l| String::from_utf8_lossy(&l.text).into_owned())
                .collect();
            format!("[{}] ({} durable)", texts.join(", "), k.durable[s])
        };
        format!("stdout {}, stderr {}", stream(0), stream(1))
    }

    fn limit(r: &ReaderTask, c: &Container) -> usize {
        usize::from(r.end_at.unwrap_or(c.written).min(c.written))
    }

    /// The next entry the daemon sends this reader, below `limit`.
    fn next_sendable(&self, r: &ReaderTask, limit: usize) -> Option<usize> {
        (usize::from(r.pos)..limit).find(|&i| {
            let newer = self.log[i].ts >= r.since;
            match self.opts.since_rule {
                SinceRule::SkipAllOlder => newer,
                SinceRule::StopAtFirstNewer => !r.filtering || newer,
            }
        })
    }

    /// The entries `r` has sent so far, in order (the daemon's since rule replayed).
    fn sent_entries(&self, r: &ReaderTask) -> Vec<usize> {
        let mut filtering = true;
        (usize::from(r.from)..usize::from(r.sent))
            .filter(|&i| {
                let newer = self.log[i].ts >= r.since;
                let sends = match self.opts.since_rule {
                    SinceRule::SkipAllOlder => newer,
                    SinceRule::StopAtFirstNewer => !filtering || newer,
                };
                filtering &= !sends;
                sends
            })
            .collect()
    }

    /// Where `r`'s daemon may go back to: the first entry of a re-sent run, which ends with
    /// the last entry sent. Per stream (`Rewind` judges each on its own), the run's entries
    /// must begin with one stamped before that stream's last entry sent, or be that last
    /// entry alone when it ended a line. Excluded: a run of a stream that begins at an entry
    /// stamped exactly like its last one and holds more than it (the parts of a long line, or
    /// equal-stamped lines, sent again), which no filter can tell from new entries.
    pub fn resend_starts(&self, r: &ReaderTask) -> Vec<u8> {
        let sent = self.sent_entries(r);
        (0..sent.len())
            .filter(|&q| {
                [Stream::Stdout, Stream::Stderr].iter().all(|&s| {
                    let run: Vec<(Timestamp, bool)> = sent[q..]
                        .iter()
                        .map(|&i| &self.log[i])
                        .filter(|e| e.stream == s)
                        .map(|e| (e.ts, e.complete))
                        .collect();
                    capturer_core::rewind::recognises(&run)
                })
            })
            .map(|q| sent[q] as u8)
            .collect()
    }

    /// Creates container `k`'s machine (it was listed and admitted, or seen starting), from
    /// the cursor [`recover`](Self::recover)ed from its output and its persisted cursor (the
    /// capture's start if neither has anything); a container with no persisted cursor has
    /// that one saved at once, as the runtime does before a watermark may vouch for it.
    fn admit(&self, k: &mut Container, notes: &mut Notes) {
        let persisted = k.checkpoint.unwrap_or_else(|| self.start_positions());
        let (cursor, ahead) = self.recover(k.delivered, persisted);
        notes.add(|| {
            format!(
                "    recovery: the output's last positions {}, persisted {}: resumes from {}{}",
                show_positions(self.last_positions(k.delivered)),
                k.checkpoint
                    .map(show_persisted)
                    .unwrap_or_else(|| "none".into()),
                show_cursor(&cursor),
                if ahead { " (the output is ahead)" } else { "" }
            )
        });
        k.checkpoint.get_or_insert(positions(&cursor));
        k.machine = ContainerMachine::new(self.config.clone(), cursor);
        k.admitted = true;
    }

    /// The start-up's recovery rule: per stream, the LATER of the last position found in the
    /// surviving output and the persisted cursor's (with `RuntimeMutant::NoRecovery`, the
    /// persisted cursor alone). Also says whether the output was ahead on some stream.
    pub fn recover(&self, out: [u8; 2], persisted: Positions) -> (Cursor, bool) {
        let mut at = persisted;
        let mut ahead = false;
        if self.opts.runtime_mutant != Some(RuntimeMutant::NoRecovery) {
            for (p, last) in at.iter_mut().zip(self.last_positions(out)) {
                if let Some(last) = last.filter(|last| last > p) {
                    *p = last;
                    ahead = true;
                }
            }
        }
        (self.cursor_at(at), ahead)
    }

    /// The sink persists `p` (a tick, or its close).
    fn persist(k: &mut Container, p: Positions) {
        if k.checkpoint
            .is_some_and(|old| p[0] < old[0] || p[1] < old[1])
        {
            flaw(k, Flaw::CheckpointMovedBack);
        }
        k.checkpoint = Some(p);
    }

    fn apply(&self, st: &mut State, a: Action, notes: &mut Notes) {
        if a == Action::Pass {
            let k = st.containers.remove(0);
            notes.add(|| format!("c{} is done; the next container runs", st.done.len()));
            st.done.push(self.summarize(&k));
            return;
        }
        let offset = st.done.len();
        let each = |f: fn(usize) -> Action| (0..st.containers.len()).map(f).collect::<Vec<_>>();
        let steps = match a {
            Action::DaemonRestartAll => each(Action::DaemonRestart),
            Action::StopAll => each(Action::Stop),
            Action::RestartAll => each(Action::Restart),
            Action::SyncAll => each(Action::Sync),
            Action::CrashAll => each(Action::Crash),
            other => vec![other],
        };
        for step in steps {
            self.act(st, step, offset, notes);
        }
        for k in &mut st.containers {
            settle(k);
            self.settle_sink(k);
        }
    }

    /// Once a container has no crash left, what is durable and what is persisted no longer
    /// matters: only a start-up after a crash reads them, and the close at a stop makes the
    /// whole output durable and persists the last cursor. So ticks stop, and the sink is kept
    /// as if it had just ticked (merging states that differ only in when it ticked).
    fn settle_sink(&self, k: &mut Container) {
        if self.may_crash_later(k) || !k.capturer.up() {
            return;
        }
        k.crashes = self.opts.bounds.crashes;
        k.syncs = self.opts.bounds.syncs;
        k.durable = k.delivered;
        k.acking = false;
        k.wrote = false;
        if let Some(f) = self.flushed(k) {
            Self::persist(k, f);
        }
    }

    /// `k`'s capturer may crash now: while it runs, as one of its stops; while it stops, on
    /// the way (SIGKILL after a SIGTERM that took too long).
    fn may_crash(&self, k: &Container) -> bool {
        k.capturer.up() && self.may_crash_later(k)
    }

    /// A crash of `k`'s capturer may still come: the budget allows one, a restart after it,
    /// and a stop still to come or under way.
    fn may_crash_later(&self, k: &Container) -> bool {
        let b = &self.opts.bounds;
        k.crashes < b.crashes
            && k.relists < b.capturer_restarts
            && (k.stops < b.capturer_stops || k.capturer != Capturer::Running)
    }

    /// The per-container checks of every property, on `k`.
    pub fn summarize(&self, k: &Container) -> Summary {
        let mut bits = 0;
        for (i, p) in PROPERTIES.iter().enumerate() {
            if (p.2)(self, k) {
                bits |= 1 << i;
            }
        }
        Summary(bits)
    }

    fn act(&self, st: &mut State, a: Action, offset: usize, notes: &mut Notes) {
        let name = |c: usize| c + offset;
        match a {
            Action::Die(c) => {
                let n = name(c);
                notes.add(|| format!("c{n} stops (die)"));
                let k = &mut st.containers[c];
                k.running = false;
                if k.capturer == Capturer::Running {
                    k.events.push(DockerEvent::Died);
                }
                let written = k.written;
                for r in &mut k.readers {
                    if r.stage == Stage::Open && r.end_at.is_none() {
                        r.end_at = Some(written);
                    }
                }
            }
            Action::Start(c) | Action::StartBeforeAnswer(c) => {
                let n = name(c);
                if a == Action::StartBeforeAnswer(c) {
                    for r in &mut st.containers[c].readers {
                        if r.stage == Stage::Open && !r.follow && r.sent == r.from {
                            r.end_at = None;
                            r.follow = true;
                            let generation = r.generation;
                            notes.add(|| {
                                format!(
                                    "c{n}: the daemon answers {generation}'s request only now: \
                                     the stream follows the container, which starts:"
                                )
                            });
                        }
                    }
                }
                st.budget.restarts -= 1;
                let k = &mut st.containers[c];
                let (from, to) = (usize::from(k.written), self.log.len());
                notes.add(|| {
                    let news: Vec<String> =
                        self.log[from..to].iter().map(Entry::to_string).collect();
                    format!("c{n} starts again and writes [{}]", news.join(", "))
                });
                k.written = to as u8;
                k.running = true;
                k.restarted = true;
                for r in &mut k.readers {
                    r.ran = true;
                }
                if k.capturer == Capturer::Running {
                    k.events.push(DockerEvent::Started);
                }
                if let Rotation::Joined { clean: true } = k.rotation {
                    k.rotation = Rotation::Joined { clean: false };
                }
            }
            Action::Remove(c) => {
                let n = name(c);
                notes.add(|| format!("c{n} is removed"));
                let k = &mut st.containers[c];
                k.removed = true;
                if k.capturer == Capturer::Running {
                    k.events.push(DockerEvent::Removed);
                }
            }
            Action::DeliverEvent(c) => {
                let n = name(c);
                let k = &mut st.containers[c];
                let ev = k.events.remove(0);
                notes.add(|| format!("c{n} docker event {ev:?} reaches the capturer"));
                if !k.admitted {
                    // The runtime takes on a container it does not know when it starts, and
                    // ignores any other event about it.
                    if ev != DockerEvent::Started {
                        notes.add(|| "    (ignored: the capturer does not know it)".to_string());
                        return;
                    }
                    self.admit(k, notes);
                }
                let event = match ev {
                    DockerEvent::Started => Event::ContainerStarted,
                    DockerEvent::Died => Event::ContainerDied,
                    DockerEvent::Removed => {
                        k.removal_seen = true;
                        Event::ContainerRemoved
                    }
                };
                self.feed(st, c, Input::Event(event), notes);
            }
            Action::Frame(c, r) => {
                let n = name(c);
                let k = &mut st.containers[c];
                let limit = Self::limit(&k.readers[r], k);
                let Some(i) = self.next_sendable(&k.readers[r], limit) else {
                    return;
                };
                let reader = &mut k.readers[r];
                let skipped = i - usize::from(reader.pos);
                reader.pos = (i + 1) as u8;
                let again = reader.pos <= reader.sent;
                reader.sent = reader.sent.max(reader.pos);
                if !again {
                    reader.resend = match reader.resend {
                        Some(Resend::UnderWay) => Some(Resend::GoneOn),
                        Some(Resend::GoneOn) | None => None,
                    };
                }
                if self.opts.since_rule == SinceRule::StopAtFirstNewer {
                    reader.filtering = false;
                }
                let in_flight = reader.cancel.is_some();
                if in_flight {
                    reader.after_cancel += 1;
                }
                let generation = reader.generation;
                let e = &self.log[i];
                notes.add(|| {
                    let skipped = if skipped > 0 {
                        format!(" (the daemon skipped {skipped} older entr(ies))")
                    } else {
                        String::new()
                    };
                    let in_flight = if in_flight {
                        " (in flight after the cancel)"
                    } else {
                        ""
                    };
                    let what = if again { "re-sends" } else { "delivers" };
                    format!("c{n} reader {generation} {what} entry #{i}: {e}{skipped}{in_flight}")
                });
                let frame = Input::Frame {
                    generation,
                    stream: e.stream,
                    entry: i,
                };
                self.feed(st, c, frame, notes);
            }
            Action::End(c, r) => {
                let n = name(c);
                let reader = &mut st.containers[c].readers[r];
                reader.stage = Stage::Ended;
                let generation = reader.generation;
                let stopped_throughout = !reader.ran;
                notes.add(|| format!("c{n} reader {generation}: end of stream"));
                let end = Input::End {
                    generation,
                    stopped_throughout,
                };
                self.feed(st, c, end, notes);
            }
            Action::ReaderError(c, r) => {
                let n = name(c);
                st.budget.reader_errors -= 1;
                let reader = &mut st.containers[c].readers[r];
                reader.stage = Stage::Failed(ReadError::Transient);
                let generation = reader.generation;
                notes.add(|| format!("c{n} reader {generation}: the stream breaks"));
            }
            Action::Resend(c, r, from) => {
                let n = name(c);
                st.budget.resends -= 1;
                let reader = &mut st.containers[c].readers[r];
                reader.resend = Some(Resend::UnderWay);
                reader.pos = from;
                let generation = reader.generation;
                let last = reader.sent - 1;
                notes.add(|| {
                    format!(
                        "c{n} reader {generation}: the daemon goes back (it rotated its \
                         json-file) and re-sends from entry #{from} to #{last}"
                    )
                });
            }
            Action::EarlyEnd(c, r) => {
                let n = name(c);
                st.budget.early_ends -= 1;
                let k = &mut st.containers[c];
                k.ended_early = true;
                let reader = &mut k.readers[r];
                reader.stage = Stage::Ended;
                reader.early = true;
                let generation = reader.generation;
                let stopped_throughout = !reader.ran;
                let unsent = usize::from(reader.end_at.unwrap_or(0)) - usize::from(reader.pos);
                notes.add(|| {
                    format!(
                        "c{n} reader {generation}: the follow stream ends early, {unsent} \
                         entr(ies) written but not sent"
                    )
                });
                let end = Input::End {
                    generation,
                    stopped_throughout,
                };
                self.feed(st, c, end, notes);
            }
            Action::Birth(c) => {
                let n = name(c);
                let k = &mut st.containers[c];
                k.exists = true;
                k.running = true;
                k.written = k.split;
                let written: Vec<String> = self.log[..usize::from(k.split)]
                    .iter()
                    .map(Entry::to_string)
                    .collect();
                notes.add(|| {
                    format!(
                        "c{n} is created and started while the capturer is down; it writes [{}]",
                        written.join(", ")
                    )
                });
            }
            Action::ReaderExit(c, r) => {
                let n = name(c);
                let reader = st.containers[c].readers.remove(r);
                let early = reader.early;
                let exit = match reader.stage {
                    Stage::Ended => ReaderExit::CleanEnd,
                    Stage::Failed(e) => ReaderExit::Failed(e),
                    Stage::Requested | Stage::Open => ReaderExit::Cancelled,
                };
                let generation = reader.generation;
                notes.add(|| format!("c{n} reader {generation} exits ({exit:?}) and is joined"));
                self.feed(
                    st,
                    c,
                    Input::Event(Event::ReaderExited { generation, exit }),
                    notes,
                );
                let k = &mut st.containers[c];
                if k.rotation == Rotation::Cancelled(generation) {
                    let clean = match exit {
                        ReaderExit::CleanEnd => !early,
                        ReaderExit::Failed(ReadError::NotFound) => true,
                        _ => false,
                    };
                    k.rotation = if k.machine.live_generation().is_some() {
                        Rotation::Done
                    } else {
                        Rotation::Joined { clean }
                    };
                }
            }
            Action::Deadline(c) => {
                let n = name(c);
                let k = &mut st.containers[c];
                let Some(t) = k.machine.poll_timeout() else {
                    return;
                };
                k.now = k.now.max(t);
                let what = if k.machine.live_generation().is_some() {
                    st.budget.rotations -= 1;
                    "rotation"
                } else {
                    "backoff"
                };
                notes.add(|| {
                    format!(
                        "c{n} the {what} deadline passes (t = {}s)",
                        t.0 / 1_000_000_000
                    )
                });
                self.feed(st, c, Input::Timeout(t), notes);
            }
            Action::Tick(c, _) => {
                let n = name(c);
                st.budget.ticks -= 1;
                let k = &mut st.containers[c];
                k.now = k.now.after(TICK);
                let running = k.running;
                let t = k.now.0 / 1_000_000_000;
                if k.machine.wants_heartbeat_tick(k.now) {
                    notes.add(|| format!("c{n} heartbeat tick (t = {t}s): running = {running}"));
                    self.feed(st, c, Input::Event(Event::HeartbeatTick { running }), notes);
                } else {
                    notes.add(|| {
                        format!("c{n} heartbeat tick (t = {t}s): skipped, the stream is active")
                    });
                    k.tick_skipped = true;
                }
            }
            Action::HeartbeatLost(c, h) => {
                let n = name(c);
                st.budget.heartbeat_losses -= 1;
                st.containers[c].heartbeats.remove(h);
                if self.opts.runtime_mutant == Some(RuntimeMutant::UnnoticedHeartbeatExit) {
                    notes.add(|| format!("c{n} heartbeat exits on its own, unnoticed (mutant)"));
                    return;
                }
                notes.add(|| format!("c{n} heartbeat exits on its own and is joined"));
                self.feed(st, c, Input::Event(Event::HeartbeatExited), notes);
                let k = &mut st.containers[c];
                if !k.heartbeats.is_empty() {
                    k.heartbeat_restarted = true;
                }
            }
            Action::HeartbeatExit(c, h) => {
                let n = name(c);
                st.containers[c].heartbeats.remove(h);
                notes.add(|| format!("c{n} heartbeat exits and is joined"));
                self.feed(st, c, Input::Event(Event::HeartbeatExited), notes);
            }
            Action::DaemonRestart(c) => {
                let n = name(c);
                notes.add(|| {
                    format!(
                        "c{}: the daemon restarts; its streams and requests in flight fail",
                        n
                    )
                });
                let k = &mut st.containers[c];
                k.daemon_restarts += 1;
                for r in &mut k.readers {
                    if matches!(r.stage, Stage::Requested | Stage::Open) {
                        r.stage = Stage::Failed(ReadError::Transient);
                    }
                }
            }
            Action::Stop(c) => {
                let n = name(c);
                notes.add(|| format!("c{}: the capturer is told to stop", n));
                let k = &mut st.containers[c];
                k.capturer = Capturer::Stopping;
                k.stops += 1;
                k.events.clear();
                if k.admitted {
                    self.feed(st, c, Input::Event(Event::StopRequested), notes);
                }
            }
            Action::Restart(c) => {
                let n = name(c);
                let k = &mut st.containers[c];
                if k.capturer == Capturer::Stopping {
                    // A clean stop: the sink wrote, made durable and persisted everything
                    // before the process ended.
                    notes.add(|| {
                        format!(
                            "c{n}: the sink closes (its output durable, the last cursor \
                             persisted); the capturer starts again"
                        )
                    });
                    k.durable = k.delivered;
                    k.acking = false;
                    k.wrote = false;
                    if let Some(f) = self.flushed(k) {
                        Self::persist(k, f);
                    }
                } else {
                    notes.add(|| format!("c{n}: the capturer starts again after its crash"));
                }
                k.relists += 1;
                k.capturer = Capturer::Running;
                k.lost_on_crash = false;
                if k.removed || !k.exists {
                    return;
                }
                // The runtime's watermark is when the capturer first started (its first
                // listing, the model's initial state): every container here ran after it, so
                // a stopped one stopped after it. Times here are only compared with each other.
                let listed = Listed {
                    running: k.running,
                    stopped_at: (!k.running).then_some(Timestamp(2)),
                    has_cursor: k.checkpoint.is_some(),
                };
                let watermark = (!self.opts.old_discovery).then_some(Timestamp(1));
                let decision = admission(listed, watermark);
                notes.add(|| {
                    format!("c{n} listed: {listed:?}, watermark {watermark:?}: {decision:?}")
                });
                let event = match decision {
                    Admission::Skip => {
                        k.admitted = false;
                        return;
                    }
                    Admission::Follow => Event::ContainerStarted,
                    Admission::Drain => {
                        k.drained_new |= !listed.has_cursor;
                        Event::ContainerDied
                    }
                };
                self.admit(k, notes);
                notes.add(|| format!("    -> the machine is fed {event:?}"));
                self.feed(st, c, Input::Event(event), notes);
            }
            Action::Sync(c) => {
                let n = name(c);
                let k = &mut st.containers[c];
                k.syncs += 1;
                let flushed = self.flushed(k);
                let persisted = flushed.map(show_persisted);
                let output = self.show_output(k);
                if self.opts.runtime_mutant == Some(RuntimeMutant::PersistBeforeAck) {
                    notes.add(|| {
                        format!(
                            "c{n}: the sink's tick persists the cursor {} FIRST (mutant); its \
                             fsync comes next (output {output})",
                            persisted.unwrap_or_default()
                        )
                    });
                    if let Some(f) = flushed {
                        Self::persist(k, f);
                    }
                    k.acking = true;
                } else if self.opts.runtime_mutant == Some(RuntimeMutant::SyncOwnWritesOnly)
                    && !k.wrote
                {
                    notes.add(|| {
                        format!(
                            "c{n}: the sink's tick persists the cursor {} WITHOUT an fsync \
                             (mutant: this process wrote nothing; output {output})",
                            persisted.unwrap_or_default()
                        )
                    });
                    if let Some(f) = flushed {
                        Self::persist(k, f);
                    }
                } else {
                    notes.add(|| {
                        format!(
                            "c{n}: the sink's tick fsyncs the output ({output}), then \
                             persists the cursor {}",
                            persisted.unwrap_or_default()
                        )
                    });
                    k.durable = k.delivered;
                    k.wrote = false;
                    if let Some(f) = flushed {
                        Self::persist(k, f);
                    }
                }
            }
            Action::Ack(c) => {
                let n = name(c);
                let k = &mut st.containers[c];
                let output = self.show_output(k);
                notes.add(|| format!("c{n}: the sink's tick fsyncs the output ({output})"));
                k.durable = k.delivered;
                k.acking = false;
            }
            Action::Crash(c) => {
                let n = name(c);
                let k = &mut st.containers[c];
                notes.add(|| format!("c{n}: the capturer CRASHES"));
                k.crashes += 1;
                if k.capturer == Capturer::Running {
                    // A crash ends the capturer like a stop does (the stop budget counts both).
                    k.stops += 1;
                }
                k.capturer = Capturer::Crashed;
                k.acking = false;
                k.wrote = false;
                // The process is gone, and with it the machine, its tasks and its events.
                k.machine = ContainerMachine::new(self.config.clone(), self.start.clone());
                k.admitted = false;
                k.readers.clear();
                k.heartbeats.clear();
                k.events.clear();
                k.rotation = Rotation::Done;
            }
            Action::Survive(c, cut) => {
                let n = name(c);
                let k = &mut st.containers[c];
                let output = self.show_output(k);
                let persisted = k.checkpoint.map(show_persisted).unwrap_or_default();
                let what = match cut {
                    Cut::Kill => "SIGKILL: everything written survives".to_string(),
                    Cut::Power(keep) if keep == k.durable => {
                        "a power loss: only the durable records survive".to_string()
                    }
                    Cut::Power(keep) if keep == k.delivered => {
                        "a power loss after the OS wrote everything back".to_string()
                    }
                    Cut::Power(keep) => format!(
                        "a power loss after the OS wrote some back: {} stdout and {} stderr \
                         record(s) survive",
                        keep[0], keep[1]
                    ),
                };
                notes.add(|| {
                    format!(
                        "c{n}: {what}; the output was {output}, the persisted cursor {persisted}"
                    )
                });
                k.capturer = Capturer::Down;
                if let Cut::Power(keep) = cut {
                    k.lost_on_crash |= keep != k.delivered;
                    k.delivered = keep;
                    k.durable = keep;
                }
            }
            Action::Pass
            | Action::DaemonRestartAll
            | Action::StopAll
            | Action::RestartAll
            | Action::SyncAll
            | Action::CrashAll => {}
        }
    }

    /// Feeds one input to container `c`'s machine and carries out every command it emits. A
    /// new reader's request is answered at once (`StreamOpened` follows its `OpenStream`): an
    /// answer that comes later is the same as one that comes at once followed by whatever
    /// happened in between (a `die` ends a stream that was following).
    fn feed(&self, st: &mut State, c: usize, input: Input, notes: &mut Notes) {
        let k = &mut st.containers[c];
        let mut input = Some(input);
        while let Some(next) = input.take() {
            let stopped_before = k.machine.is_stopped();
            // The data path hands lines to the sink; the model's sink judges each at once.
            let mut lines: Vec<Line> = Vec::new();
            match next {
                Input::Event(e) => k.machine.handle(k.now, e),
                Input::Timeout(t) => k.machine.handle_timeout(t),
                Input::Frame {
                    generation,
                    stream,
                    entry,
                } => {
                    let bytes = &self.frames[entry];
                    k.machine
                        .handle_frame(k.now, generation, stream, bytes, &mut lines);
                }
                Input::End {
                    generation,
                    stopped_throughout,
                } => k
                    .machine
                    .handle_end_of_stream(generation, stopped_throughout, &mut lines),
            }
            for line in &lines {
                notes.add(|| format!("    -> {}", show_line(line)));
                if stopped_before {
                    flaw(k, Flaw::CommandAfterStop);
                }
                self.deliver(k, line);
            }
            while let Some(cmd) = k.machine.poll_command() {
                notes.add(|| format!("    -> {}", show_command(&cmd)));
                if stopped_before {
                    flaw(k, Flaw::CommandAfterStop);
                }
                self.execute(k, cmd);
            }
            if let Some(r) = k.readers.iter_mut().find(|r| r.stage == Stage::Requested) {
                let generation = r.generation;
                if k.removed {
                    notes.add(|| format!("    {generation}: 404, the container is gone"));
                    r.stage = Stage::Failed(ReadError::NotFound);
                } else {
                    r.stage = Stage::Open;
                    r.end_at = (!k.running).then_some(k.written);
                    r.follow = k.running;
                    if let Some(lines) = r.tail {
                        // `tail=K`: the last K entries of the log as it stands, then the rest.
                        r.from = k.written.saturating_sub(lines);
                        r.pos = r.from;
                        r.sent = r.from;
                        let from = r.from;
                        notes.add(|| format!("    {generation}: its tail begins at entry #{from}"));
                    }
                    notes.add(|| {
                        let what = if k.running {
                            "follows the running container"
                        } else {
                            "sends what the stopped container wrote, then ends"
                        };
                        format!("    {generation}: the daemon answers 200 ({what})")
                    });
                    input = Some(Input::Event(Event::StreamOpened { generation }));
                }
            }
        }
    }

    /// Carries out one command, as the runtime does.
    fn execute(&self, k: &mut Container, cmd: Command) {
        match cmd {
            Command::OpenStream { .. } | Command::OpenTail { .. } => {
                let (generation, since, tail) = match cmd {
                    Command::OpenTail { generation, lines } => (
                        generation,
                        Timestamp(0),
                        Some(u8::try_from(lines).unwrap_or(u8::MAX)),
                    ),
                    Command::OpenStream { generation, since } => (generation, since.0, None),
                    _ => return,
                };
                if !k.readers.is_empty() {
                    flaw(k, Flaw::TwoReaders);
                }
                k.readers.push(ReaderTask {
                    generation,
                    since,
                    tail,
                    from: 0,
                    stage: Stage::Requested,
                    pos: 0,
                    filtering: true,
                    end_at: None,
                    cancel: None,
                    after_cancel: 0,
                    follow: false,
                    sent: 0,
                    resend: None,
                    early: false,
                    progress: false,
                    ran: k.running,
                });
            }
            Command::CancelReader { generation, reason } => {
                match k.readers.iter_mut().find(|r| r.generation == generation) {
                    Some(r) => {
                        r.cancel.get_or_insert(reason);
                        if reason == CancelReason::Rotation && !r.progress {
                            flaw(k, Flaw::IdleRotation);
                        }
                    }
                    None => flaw(k, Flaw::StrayCommand("CancelReader names no live reader")),
                }
                if reason != CancelReason::Stop {
                    k.rotation = Rotation::Cancelled(generation);
                }
            }
            Command::StartHeartbeat => {
                if !k.heartbeats.is_empty() {
                    flaw(k, Flaw::TwoHeartbeats);
                }
                k.heartbeats.push(HeartbeatTask { stopping: false });
            }
            Command::StopHeartbeat => match k.heartbeats.iter_mut().find(|h| !h.stopping) {
                Some(h) => h.stopping = true,
                None => flaw(
                    k,
                    Flaw::StrayCommand("StopHeartbeat with no live heartbeat"),
                ),
            },
            Command::Checkpoint(cursor) => {
                // The sink persists it at its next tick (it is the machine's cursor, which
                // `flushed` reads), once the lines before it are durable.
                let p = positions(&cursor);
                if k.checkpoint
                    .is_some_and(|old| p[0] < old[0] || p[1] < old[1])
                {
                    flaw(k, Flaw::CheckpointMovedBack);
                }
            }
            Command::Forget => {
                // The sink closes the file (fsynced) and deletes the cursor.
                k.durable = k.delivered;
                k.wrote = false;
                k.acking = false;
                k.checkpoint = None;
            }
            Command::Report(Report::UnknownGeneration { event, .. }) => {
                flaw(k, Flaw::StrayReport(event));
            }
            Command::Report(Report::Stalled { .. }) => k.stalled = true,
            Command::Report(_) => {}
        }
    }

    /// The exactly-once oracle: a delivered line must be the next logical line of its stream.
    fn deliver(&self, k: &mut Container, line: &Line) {
        let i = match line.stream {
            Stream::Stdout => 0,
            Stream::Stderr => 1,
            Stream::Console => {
                flaw(
                    k,
                    Flaw::Unknown {
                        stream: line.stream,
                    },
                );
                return;
            }
        };
        let lines = &self.meaning.lines[i];
        let same = |l: &LogLine| l.ts == line.ts && l.text == line.message && !line.truncated;
        let next = usize::from(k.delivered[i]);
        let Some(j) = lines.iter().position(same) else {
            flaw(
                k,
                Flaw::Unknown {
                    stream: line.stream,
                },
            );
            return;
        };
        // Equal-timestamp lines are told apart by their text, and by their order.
        let j = if lines.get(next).is_some_and(same) {
            next
        } else {
            j
        };
        // Kept apart from the flaws: a wrong position must not hide a later duplicate.
        k.misplaced |= line.pos != self.positions[i][j];
        if j < next {
            flaw(
                k,
                Flaw::Duplicate {
                    stream: line.stream,
                    line: j as u8,
                },
            );
            return;
        }
        let live = k.machine.live_generation();
        if let Some(r) = k.readers.iter_mut().find(|r| Some(r.generation) == live) {
            r.progress = true;
        }
        k.wrote |= self.opts.runtime_mutant == Some(RuntimeMutant::SyncOwnWritesOnly);
        if j > next {
            flaw(
                k,
                Flaw::Skipped {
                    stream: line.stream,
                    expected: next as u8,
                    got: j as u8,
                },
            );
        }
        k.delivered[i] = (j + 1) as u8;
    }

    /// The actions that concern container `c` alone, and with `shared` the shared events as
    /// this container goes through them.
    fn local_actions(&self, s: &State, c: usize, shared: bool, actions: &mut Vec<Action>) {
        let b = &self.opts.bounds;
        let budget = &s.budget;
        let k = &s.containers[c];
        if k.capturer == Capturer::Crashed {
            // Nothing happens before what survived the crash is known.
            actions.push(Action::Survive(c, Cut::Kill));
            actions.extend(power_cuts(k).map(|keep| Action::Survive(c, Cut::Power(keep))));
            return;
        }
        let capturing = k.capturer == Capturer::Running;
        if k.running {
            actions.push(Action::Die(c));
        }
        if k.exists && !k.running && !k.removed && budget.restarts > 0 {
            actions.push(Action::Start(c));
            if k.readers
                .iter()
                .any(|r| r.stage == Stage::Open && !r.follow && r.sent == r.from)
            {
                actions.push(Action::StartBeforeAnswer(c));
            }
        }
        if k.exists && !k.running && !k.removed && b.removals {
            actions.push(Action::Remove(c));
        }
        if !k.exists && !capturing {
            actions.push(Action::Birth(c));
        }
        if !k.events.is_empty() && capturing {
            actions.push(Action::DeliverEvent(c));
        }
        for (i, r) in k.readers.iter().enumerate() {
            match r.stage {
                Stage::Requested | Stage::Open => {
                    let limit = Self::limit(r, k);
                    let may_send = r.cancel.is_none() || r.after_cancel < b.in_flight;
                    if may_send && self.next_sendable(r, limit).is_some() {
                        actions.push(Action::Frame(c, i));
                    }
                    if let Some(e) = r.end_at {
                        if self.next_sendable(r, usize::from(e)).is_none() {
                            actions.push(Action::End(c, i));
                        }
                    }
                    if budget.reader_errors > 0 {
                        actions.push(Action::ReaderError(c, i));
                    }
                    if budget.resends > 0 && may_send && r.sent > r.from && r.pos == r.sent {
                        for from in self.resend_starts(r) {
                            actions.push(Action::Resend(c, i, from));
                        }
                    }
                    if let (true, Some(e)) = (r.follow && budget.early_ends > 0, r.end_at) {
                        if self.next_sendable(r, usize::from(e)).is_some() {
                            actions.push(Action::EarlyEnd(c, i));
                        }
                    }
                    if r.cancel.is_some() {
                        actions.push(Action::ReaderExit(c, i));
                    }
                }
                Stage::Ended | Stage::Failed(_) => actions.push(Action::ReaderExit(c, i)),
            }
        }
        if k.machine.poll_timeout().is_some() {
            let rotation = k.machine.live_generation().is_some();
            // Fairness: docker events reach the capturer within a backoff (a second or more).
            if (rotation && budget.rotations > 0) || (!rotation && k.events.is_empty()) {
                actions.push(Action::Deadline(c));
            }
        }
        for (i, h) in k.heartbeats.iter().enumerate() {
            if h.stopping {
                actions.push(Action::HeartbeatExit(c, i));
            } else {
                if budget.ticks > 0 {
                    actions.push(Action::Tick(c, i));
                }
                if budget.heartbeat_losses > 0 {
                    actions.push(Action::HeartbeatLost(c, i));
                }
            }
        }
        if k.acking {
            actions.push(Action::Ack(c));
        }
        // The shared events, as this container goes through them.
        if !shared {
            return;
        }
        if k.daemon_restarts < b.daemon_restarts {
            actions.push(Action::DaemonRestart(c));
        }
        if capturing && k.stops < b.capturer_stops {
            actions.push(Action::Stop(c));
        }
        if may_restart(k, b) {
            actions.push(Action::Restart(c));
        }
        if self.may_sync(k) && self.sync_due(k) {
            actions.push(Action::Sync(c));
        }
        if self.may_crash(k) {
            actions.push(Action::Crash(c));
        }
    }

    /// The sink may tick for `k` (the capturer is up, the budget allows, no tick half done).
    fn may_sync(&self, k: &Container) -> bool {
        k.capturer.up() && k.syncs < self.opts.bounds.syncs && self.may_crash_later(k) && !k.acking
    }

    /// A tick would change something for `k`: records to make durable, or a cursor to persist.
    fn sync_due(&self, k: &Container) -> bool {
        k.durable != k.delivered || self.flushed(k).is_some_and(|f| Some(f) != k.checkpoint)
    }
}

/// What a power loss may leave of `k`'s output: per stream, from the durable records to
/// everything written.
fn power_cuts(k: &Container) -> impl Iterator<Item = [u8; 2]> {
    let (d, w) = (k.durable, k.delivered);
    (d[0]..=w[0]).flat_map(move |o| (d[1]..=w[1]).map(move |e| [o, e]))
}

/// The capturer may start again: after a crash, at once; after a stop, once every task of the
/// machine was joined, within the restart budget.
pub fn may_restart(k: &Container, b: &Bounds) -> bool {
    match k.capturer {
        Capturer::Down => true,
        Capturer::Stopping => stop_complete(k) && k.relists < b.capturer_restarts,
        Capturer::Running | Capturer::Crashed => false,
    }
}

/// Moves the latest rotation on, after a step: it completes when the next generation opens,
/// or when a stop or removal overtakes it before it was blocked.
fn settle(k: &mut Container) {
    let stopping = k.capturer != Capturer::Running;
    let m = &k.machine;
    k.rotation = match k.rotation {
        Rotation::Joined { .. } | Rotation::Blocked if m.live_generation().is_some() => {
            Rotation::Done
        }
        Rotation::Joined { .. } if stopping || k.removal_seen || m.is_stopped() => Rotation::Done,
        Rotation::Joined { clean: false } if m.poll_timeout().is_none() && k.events.is_empty() => {
            Rotation::Blocked
        }
        other => other,
    };
}

fn flaw(k: &mut Container, f: Flaw) {
    k.flaw.get_or_insert(f);
}

/// Moves `cursor`'s position of `stream` up to `p` (which is past it) with the runtime's own
/// recovery primitive, `Cursor::recover`.
fn raise(cursor: &mut Cursor, stream: Stream, p: Position) {
    cursor.recover(stream, p);
    assert_eq!(cursor.position(stream), p, "the cursor is raised to {p:?}");
}

fn show_position(p: Position) -> String {
    format!("{} #{}", rel(p.ts), p.n)
}

fn show_positions(p: [Option<Position>; 2]) -> String {
    let one = |p: Option<Position>| p.map_or("none".to_string(), show_position);
    format!("(stdout {}, stderr {})", one(p[0]), one(p[1]))
}

/// A cursor's positions on stdout and stderr.
pub fn positions(c: &Cursor) -> Positions {
    [c.position(Stream::Stdout), c.position(Stream::Stderr)]
}

fn show_persisted(p: Positions) -> String {
    format!(
        "(stdout {}, stderr {})",
        show_position(p[0]),
        show_position(p[1])
    )
}

fn show_cursor(c: &Cursor) -> String {
    format!(
        "(stdout {}, stderr {})",
        show_position(c.position(Stream::Stdout)),
        show_position(c.position(Stream::Stderr))
    )
}

/// A line the data path handed to the sink (the reader hands it with the cursor that covers
/// it; the sink writes it at once: visible to a reader of the file, not yet durable).
fn show_line(line: &Line) -> String {
    format!(
        "Emit({} \"{}\" @{})",
        line.stream,
        String::from_utf8_lossy(&line.message),
        rel(line.ts)
    )
}

fn show_command(cmd: &Command) -> String {
    match cmd {
        Command::OpenStream { generation, since } => {
            format!("OpenStream({generation}, since {})", rel(since.0))
        }
        Command::OpenTail { generation, lines } => format!("OpenTail({generation}, tail {lines})"),
        Command::CancelReader { generation, reason } => {
            format!("CancelReader({generation}, {reason:?})")
        }
        Command::Checkpoint(c) => format!("Checkpoint{}", show_cursor(c)),
        other => format!("{other:?}"),
    }
}

/// A canonical member of `s`'s symmetry class when containers interleave: they are
/// identical, so any permutation of a state is equivalent to it; they are sorted by a hash.
pub fn representative(s: &State) -> State {
    let mut r = s.clone();
    r.containers.sort_by_cached_key(container_key);
    r
}

/// The same when containers run one after the other: the one running stays first, the ones
/// waiting (still in their initial states) may come in any order.
pub fn representative_composed(s: &State) -> State {
    let mut r = s.clone();
    if r.containers.len() > 2 {
        r.containers[1..].sort_by_cached_key(container_key);
    }
    r
}

fn container_key(k: &Container) -> u64 {
    let mut h = Fnv(0xcbf2_9ce4_8422_2325);
    k.hash(&mut h);
    h.finish()
}

/// FNV-1a: fast, and good enough to order containers (a collision only costs reduction).
struct Fnv(u64);

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
}

impl Model for CaptureModel {
    type State = State;
    type Action = Action;

    fn init_states(&self) -> Vec<State> {
        let b = &self.opts.bounds;
        let container = |split: u8, born: bool| Container {
            machine: ContainerMachine::new(self.config.clone(), self.start.clone()),
            capturer: Capturer::Running,
            daemon_restarts: 0,
            stops: 0,
            relists: 0,
            written: if born { 0 } else { split },
            split,
            running: !born,
            restarted: false,
            removed: false,
            removal_seen: false,
            events: Vec::new(),
            readers: Vec::new(),
            heartbeats: Vec::new(),
            delivered: [0, 0],
            durable: [0, 0],
            checkpoint: None,
            acking: false,
            wrote: false,
            syncs: 0,
            crashes: 0,
            misplaced: false,
            lost_on_crash: false,
            rotation: Rotation::Done,
            flaw: None,
            now: NOW,
            stalled: false,
            tick_skipped: false,
            heartbeat_restarted: false,
            exists: !born,
            admitted: false,
            ended_early: false,
            drained_new: false,
        };
        // Containers are identical but for where their first run ends; permutations are
        // equivalent, so only non-decreasing assignments of splits start a search (among the
        // containers there at the start, and among the births).
        let splits = self.splits();
        let assignments = |n: usize| {
            let mut combos: Vec<Vec<u8>> = vec![Vec::new()];
            for _ in 0..n {
                let mut next = Vec::new();
                for combo in &combos {
                    for &sp in &splits {
                        if combo.last().is_none_or(|&l| sp >= l) {
                            let mut c = combo.clone();
                            c.push(sp);
                            next.push(c);
                        }
                    }
                }
                combos = next;
            }
            combos
        };
        let births = assignments(b.births);
        let mut states = Vec::new();
        for combo in assignments(b.containers) {
            for born in &births {
                let mut st = State {
                    containers: combo
                        .iter()
                        .map(|&sp| container(sp, false))
                        .chain(born.iter().map(|&sp| container(sp, true)))
                        .collect(),
                    done: Vec::new(),
                    budget: Budget {
                        rotations: b.rotations,
                        restarts: b.restarts,
                        reader_errors: b.reader_errors,
                        ticks: b.ticks,
                        heartbeat_losses: b.heartbeat_losses,
                        resends: b.resends,
                        early_ends: b.early_ends,
                    },
                };
                // The capturer's first start: it lists the containers, all running (with no
                // watermark yet, a stopped one would be left alone).
                for c in 0..st.containers.len() {
                    if st.containers[c].exists {
                        self.admit(&mut st.containers[c], &mut Notes::default());
                        let started = Input::Event(Event::ContainerStarted);
                        self.feed(&mut st, c, started, &mut Notes::default());
                    }
                }
                for k in &mut st.containers {
                    self.settle_sink(k);
                }
                states.push(st);
            }
        }
        states
    }

    fn actions(&self, s: &State, actions: &mut Vec<Action>) {
        if !self.opts.compose {
            // What survived a crash is decided first, container by container.
            if let Some(c) = s
                .containers
                .iter()
                .position(|k| k.capturer == Capturer::Crashed)
            {
                self.local_actions(s, c, false, actions);
                return;
            }
            // Every interleaving, and the shared events happen to every container at once.
            for c in 0..s.containers.len() {
                self.local_actions(s, c, false, actions);
            }
            let b = &self.opts.bounds;
            let all = |f: &dyn Fn(&Container) -> bool| s.containers.iter().all(f);
            if all(&|k| k.daemon_restarts < b.daemon_restarts) {
                actions.push(Action::DaemonRestartAll);
            }
            if all(&|k| k.capturer == Capturer::Running && k.stops < b.capturer_stops) {
                actions.push(Action::StopAll);
            }
            if all(&|k| may_restart(k, b)) {
                actions.push(Action::RestartAll);
            }
            if all(&|k| self.may_sync(k)) && s.containers.iter().any(|k| self.sync_due(k)) {
                actions.push(Action::SyncAll);
            }
            if all(&|k| self.may_crash(k)) {
                actions.push(Action::CrashAll);
            }
            return;
        }
        if s.containers.is_empty() {
            return;
        }
        self.local_actions(s, 0, true, actions);
        if actions.is_empty() && s.containers.len() > 1 {
            actions.push(Action::Pass);
        }
    }

    fn next_state(&self, s: &State, a: Action) -> Option<State> {
        let mut st = s.clone();
        self.apply(&mut st, a, &mut Notes::default());
        Some(st)
    }

    fn format_action(&self, a: &Action) -> String {
        format!("{a:?}")
    }

    fn format_step(&self, s: &State, a: Action) -> Option<String> {
        let notes = self.describe_step(s, a).join("\n");
        let next = self.next_state(s, a)?;
        Some(format!("{notes}\n\n{next:#?}"))
    }

    fn properties(&self) -> Vec<Property<Self>> {
        // A `sometimes` of a feature the bounds leave out would fail for want of an example.
        let b = &self.opts.bounds;
        let off = |name: &str| {
            (name == names::RESENT_DROPPED && b.resends == 0)
                || (name == names::EARLY_END_READ && b.early_ends == 0)
                || (name == names::BORN_WHILE_DOWN_READ && b.births == 0)
                || ((name == names::CRASH_LOST || name == names::CRASH_OUTPUT_AHEAD)
                    && b.crashes == 0)
                || ((name == names::STALL_ROTATED || name == names::TICK_SKIPPED) && b.ticks < 2)
                || (name == names::HEARTBEAT_RESTARTED && b.heartbeat_losses == 0)
                || (name == names::PARTIAL_MERGED && !self.has_merged_line())
                || (name == names::RESUME_AFTER_RESTART && b.restarts == 0)
        };
        properties().into_iter().filter(|p| !off(p.name)).collect()
    }
}

/// The machine is Stopped and the world has no task of it left (or the capturer has no
/// machine for the container).
pub fn stop_complete(k: &Container) -> bool {
    !k.admitted || (k.machine.is_stopped() && k.readers.is_empty() && k.heartbeats.is_empty())
}

fn no_flaw(k: &Container, f: impl Fn(&Flaw) -> bool) -> bool {
    !k.flaw.as_ref().is_some_and(f)
}

/// No line reached the sink twice, out of order or unknown.
fn once_in_order(k: &Container) -> bool {
    no_flaw(k, |f| {
        matches!(
            f,
            Flaw::Duplicate { .. } | Flaw::Skipped { .. } | Flaw::Unknown { .. }
        )
    })
}

/// Property names, for tests and reports.
pub mod names {
    /// `check_invariants` holds for every machine (invariants 1 to 6, from the machine's books).
    pub const INVARIANTS: &str =
        "the machine's invariants hold (check_invariants; 1, 2, 4, 5 are its types)";
    /// World: at most one reader task per container; g+1 spawned only after g was joined.
    pub const ONE_READER: &str = "1-2: at most one live reader task per container";
    /// World: the rotation never waits on the heartbeat.
    pub const NO_HEARTBEAT_WAIT: &str =
        "3: a joined rotation is followed by an open or a deadline, never by a wait";
    /// World: Stopped means no task and no command.
    pub const STOPPED_QUIET: &str = "4: Stopped has no live task and emits nothing";
    /// World: tasks per container bounded by 2.
    pub const BOUNDED_TASKS: &str = "5: at most 2 live tasks per container (1 reader, 1 heartbeat)";
    /// World: checkpoints, and the persisted cursor, never move back.
    pub const CURSOR_FORWARD: &str = "6: checkpointed cursors never move back";
    /// The exactly-once oracle, on every step.
    pub const PREFIX: &str =
        "6: delivered is, per stream, an in-order, duplicate-free prefix of the log";
    /// Commands and events agree with the world's tasks.
    pub const AGREE: &str = "machine and world agree on which tasks exist";
    /// World: every rotation retires a generation that delivered a new line.
    pub const PROGRESS: &str =
        "7: a generation retired by a rotation had delivered a new line (progress)";
    /// Quiescent states: everything written was delivered.
    pub const AT_REST: &str = "a container at rest has delivered every line it wrote";
    /// Eventually: rotations complete.
    pub const ROTATION_COMPLETES: &str = "every rotation completes";
    /// Eventually: a stop reaches Stopped with zero live tasks.
    pub const STOP_REACHES_STOPPED: &str = "capturer stop reaches Stopped with zero live tasks";
    /// Eventually: exactly once at quiescence.
    pub const EXACTLY_ONCE: &str = "at quiescence every line was delivered exactly once";
    /// Sometimes: a stop while a rotation is in progress.
    pub const STOP_DURING_ROTATING: &str = "stop during Rotating";
    /// Sometimes: a cancelled reader still delivers a frame.
    pub const FRAMES_IN_FLIGHT: &str = "rotation with frames in flight";
    /// Sometimes: lines of a restarted container delivered after earlier ones.
    pub const RESUME_AFTER_RESTART: &str = "resume after restart";
    /// Sometimes: a backoff deadline is armed.
    pub const BACKOFF: &str = "a reopen waits out a backoff";
    /// Sometimes: a merged partial line was delivered.
    pub const PARTIAL_MERGED: &str = "a line split in parts is delivered merged";
    /// Sometimes: the last line without newline was delivered.
    pub const LAST_LINE_FLUSHED: &str = "the last line without newline is flushed at end of stream";
    /// Sometimes: a stream re-sent a run and then delivered something new.
    pub const RESENT_DROPPED: &str = "a re-sent run is dropped and the stream goes on";
    /// Sometimes: a follow stream ended early and, at rest, every line was delivered.
    pub const EARLY_END_READ: &str = "a follow stream that ended early is read to the end";
    /// Sometimes: a container born and stopped while the capturer was down was read whole.
    pub const BORN_WHILE_DOWN_READ: &str =
        "a container that ran while the capturer was down is drained";
    /// World: every record carries its own position.
    pub const POSITIONS: &str = "every line reaches the sink with its own position (pos)";
    /// World: the sink persists a cursor only once the lines it covers are durable.
    pub const PERSISTED_DURABLE: &str =
        "8: the persisted cursor never runs ahead of the durable output";
    /// Sometimes: a power loss erased written records (the start-up must read them again).
    pub const CRASH_LOST: &str = "a crash erases written lines (a power loss)";
    /// Sometimes: a tick found a live stream quiet for an interval, and the machine rotated it.
    pub const STALL_ROTATED: &str = "a stream quiet for a heartbeat interval is found stalled";
    /// Sometimes: a tick was skipped because the stream was active within the interval.
    pub const TICK_SKIPPED: &str = "a tick skips its inspect while the stream is active";
    /// Sometimes: a heartbeat exited on its own and another was started.
    pub const HEARTBEAT_RESTARTED: &str = "a heartbeat that exited on its own is restarted";
    /// Sometimes: exactly-once is judged, and holds, at rest after a capturer restart (without
    /// one, every history would end with the capturer stopped, where it is not judged).
    pub const EXACTLY_ONCE_JUDGED: &str =
        "exactly once is judged: at rest after a capturer restart, every line once";
    /// Sometimes: after a crash the output is past the persisted cursor (the start-up must
    /// resume from the output).
    pub const CRASH_OUTPUT_AHEAD: &str =
        "after a crash the output is past the persisted cursor (SIGKILL)";
}

/// How a property is judged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Every container, in every state.
    Always,
    /// Every container, in every terminal state (the graph is finite and acyclic).
    Eventually,
    /// Some container, in some state.
    Sometimes,
}

/// A per-container check.
pub type Check = fn(&CaptureModel, &Container) -> bool;

/// Every property: its name, its kind and its check on one container. The system's property is
/// the check over every container (for `sometimes`, over some container).
pub const PROPERTIES: [(&str, Kind, Check); 30] = [
    (names::INVARIANTS, Kind::Always, |_, k| {
        k.machine.check_invariants().is_ok()
    }),
    (names::ONE_READER, Kind::Always, |_, k| {
        k.readers.len() <= 1 && no_flaw(k, |f| *f == Flaw::TwoReaders)
    }),
    (names::NO_HEARTBEAT_WAIT, Kind::Always, |_, k| {
        k.rotation != Rotation::Blocked
    }),
    (names::STOPPED_QUIET, Kind::Always, |_, k| {
        (!k.machine.is_stopped() || (k.readers.is_empty() && k.heartbeats.is_empty()))
            && no_flaw(k, |f| *f == Flaw::CommandAfterStop)
    }),
    (names::BOUNDED_TASKS, Kind::Always, |_, k| {
        k.readers.len() + k.heartbeats.len() <= 2
            && k.heartbeats.len() <= 1
            && no_flaw(k, |f| *f == Flaw::TwoHeartbeats)
    }),
    (names::CURSOR_FORWARD, Kind::Always, |_, k| {
        no_flaw(k, |f| *f == Flaw::CheckpointMovedBack)
    }),
    (names::PREFIX, Kind::Always, |_, k| once_in_order(k)),
    (names::AGREE, Kind::Always, |_, k| {
        no_flaw(k, |f| {
            matches!(f, Flaw::StrayCommand(_) | Flaw::StrayReport(_))
        })
    }),
    (names::PROGRESS, Kind::Always, |_, k| {
        no_flaw(k, |f| *f == Flaw::IdleRotation)
    }),
    (names::AT_REST, Kind::Always, |m, k| {
        m.exactly_once_at_rest(k)
    }),
    (names::ROTATION_COMPLETES, Kind::Eventually, |_, k| {
        matches!(
            k.rotation,
            Rotation::Done | Rotation::Joined { clean: true }
        )
    }),
    (names::STOP_REACHES_STOPPED, Kind::Eventually, |_, k| {
        k.capturer == Capturer::Running || stop_complete(k)
    }),
    (names::EXACTLY_ONCE, Kind::Eventually, |m, k| {
        m.exactly_once_at_rest(k)
    }),
    (names::STOP_DURING_ROTATING, Kind::Sometimes, |_, k| {
        k.capturer == Capturer::Stopping
            && k.machine.phase() == Phase::Rotating
            && k.readers
                .iter()
                .any(|r| r.cancel == Some(CancelReason::Rotation))
    }),
    (names::FRAMES_IN_FLIGHT, Kind::Sometimes, |_, k| {
        k.readers
            .iter()
            .any(|r| r.cancel == Some(CancelReason::Rotation) && r.after_cancel > 0)
    }),
    (names::RESUME_AFTER_RESTART, Kind::Sometimes, |m, k| {
        let first_run = m.meaning.upto[usize::from(k.split)];
        k.restarted
            && first_run.iter().any(|&n| n > 0)
            && (k.delivered[0] > first_run[0] || k.delivered[1] > first_run[1])
    }),
    (names::BACKOFF, Kind::Sometimes, |_, k| {
        k.machine.live_generation().is_none() && k.machine.poll_timeout().is_some()
    }),
    (names::PARTIAL_MERGED, Kind::Sometimes, |m, k| {
        let merged = m.meaning.lines[0].iter().position(|l| l.text == b"p1p2");
        merged.is_some_and(|i| usize::from(k.delivered[0]) > i)
    }),
    (names::LAST_LINE_FLUSHED, Kind::Sometimes, |m, k| {
        usize::from(k.delivered[0]) == m.meaning.lines[0].len()
            && usize::from(k.written) == m.log.len()
    }),
    (names::RESENT_DROPPED, Kind::Sometimes, |_, k| {
        k.readers.iter().any(|r| r.resend == Some(Resend::GoneOn))
    }),
    (names::EARLY_END_READ, Kind::Sometimes, |m, k| {
        k.ended_early && m.is_quiescent(k) && m.all_delivered(k)
    }),
    (names::BORN_WHILE_DOWN_READ, Kind::Sometimes, |m, k| {
        k.drained_new && k.written > 0 && m.is_quiescent(k) && m.all_delivered(k)
    }),
    (names::POSITIONS, Kind::Always, |_, k| !k.misplaced),
    (names::PERSISTED_DURABLE, Kind::Always, |m, k| {
        m.persisted_within_durable(k)
    }),
    (names::CRASH_LOST, Kind::Sometimes, |_, k| {
        k.capturer == Capturer::Down && k.lost_on_crash
    }),
    (names::CRASH_OUTPUT_AHEAD, Kind::Sometimes, |m, k| {
        k.capturer == Capturer::Down && m.output_ahead(k)
    }),
    (names::STALL_ROTATED, Kind::Sometimes, |_, k| k.stalled),
    (names::TICK_SKIPPED, Kind::Sometimes, |_, k| k.tick_skipped),
    (names::HEARTBEAT_RESTARTED, Kind::Sometimes, |_, k| {
        k.heartbeat_restarted
    }),
    (names::EXACTLY_ONCE_JUDGED, Kind::Sometimes, |m, k| {
        k.relists > 0 && m.is_quiescent(k) && m.all_delivered(k)
    }),
];

/// Property `P` holds for every container (done ones by their summary).
fn every<const P: usize>(m: &CaptureModel, s: &State) -> bool {
    s.done.iter().all(|d| d.0 & (1 << P) != 0)
        && s.containers.iter().all(|k| (PROPERTIES[P].2)(m, k))
}

/// Property `P` holds for some container.
fn some<const P: usize>(m: &CaptureModel, s: &State) -> bool {
    s.done.iter().any(|d| d.0 & (1 << P) != 0)
        || s.containers.iter().any(|k| (PROPERTIES[P].2)(m, k))
}

/// `s` is terminal and property `P` holds for every container.
fn at_end<const P: usize>(m: &CaptureModel, s: &State) -> bool {
    every::<P>(m, s) && m.is_terminal(s)
}

macro_rules! property {
    ($i:literal) => {{
        let (name, kind, _) = PROPERTIES[$i];
        match kind {
            Kind::Always => Property::always(name, every::<$i>),
            Kind::Eventually => Property::eventually(name, at_end::<$i>),
            Kind::Sometimes => Property::sometimes(name, some::<$i>),
        }
    }};
}

fn properties() -> Vec<Property<CaptureModel>> {
    vec![
        property!(0),
        property!(1),
        property!(2),
        property!(3),
        property!(4),
        property!(5),
        property!(6),
        property!(7),
        property!(8),
        property!(9),
        property!(10),
        property!(11),
        property!(12),
        property!(13),
        property!(14),
        property!(15),
        property!(16),
        property!(17),
        property!(18),
        property!(19),
        property!(20),
        property!(21),
        property!(22),
        property!(23),
        property!(24),
        property!(25),
        property!(26),
        property!(27),
        property!(28),
        property!(29),
    ]
}
