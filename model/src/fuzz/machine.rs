//! Target `machine`: one [`ContainerMachine`], driven two ways.
//!
//! **Nonsense** (a quarter of the inputs): arbitrary `(time advance, event)` steps, including
//! frames of stale or future generations, garbage frames, exits nobody asked for, and the data
//! path ([`ContainerMachine::handle_frame`], [`ContainerMachine::handle_end_of_stream`]) next to
//! [`ContainerMachine::handle`]. After every step: no panic, [`ContainerMachine::check_invariants`],
//! the cursor never moves back, lines come out of a stream in timestamp order and never before
//! the start, nothing comes out of a stopped machine, and a due deadline is consumed by
//! `handle_timeout`.
//!
//! **Differential** (the rest): a [`World`] holds a container that writes a log (two streams,
//! timestamps never decreasing within a stream, equal-timestamp groups, disorder across the
//! streams, 16 KiB parts, unfinished last lines), a daemon stand-in that serves each reader
//! generation from its `since` under one of the two [`SinceRule`]s, reader tasks that open, read,
//! fail, get cancelled, end cleanly (also while the container runs: a daemon restart), a
//! heartbeat that inspects (sometimes with a stale answer), dies and is stopped, rotations,
//! container stops and restarts, capturer restarts from the last checkpoint, and stale events.
//! The daemon may also re-send within a generation (the json-file driver with `max-size`, see
//! `docs/daemon.md`), in the shapes [`capturer_core::rewind::Rewind`] claims to handle: a
//! contiguous run of what the reader sent, ending with the last frame it sent, whose frames of
//! each stream begin with one stamped before that stream's last, or are that stream's last
//! whole line alone.
//! Every command the machine gives is carried out, checked against what the world knows (one
//! reader at a time, one heartbeat). At the end the container stops and the world runs to
//! quiescence; then what the machine emitted, per stream, must equal what the [`reference`]
//! says the log holds: each line exactly once, in order, nothing skipped.
//!
//! Physical rules the world keeps (each is something a real daemon cannot do otherwise):
//! a stopped container writes nothing; after a container stop or a stream's clean end, a
//! stream's next entry is stamped later than its last (the log copier restarted, time passed);
//! frames come after the daemon's 200; a clean end while the container is stopped comes only
//! after every entry was sent. Set `CAPTURER_FUZZ_TRACE=1` to print every step, and
//! `CAPTURER_FUZZ_MUTANT=<name>` (a name `capturer-model check --mutant` takes) to put a known
//! bug in the differential world's machines and see the target catch it.

use std::collections::VecDeque;
use std::time::Duration;

use arbitrary::{Arbitrary, Unstructured};
use capturer_core::{
    Backoff, CancelReason, Command, Config, ContainerMachine, Cursor, Event, Flow, Generation,
    Instant, Line, Mutant, ReadError, ReaderExit, Stream, StreamSet, Timestamp,
};

use super::reference::{self, Delivered, Entry, SinceFilter, SinceRule};
use super::tracing;

/// 2024-01-01T00:00:00Z, a moment before the container's clocks start.
const BASE: u64 = 1_704_067_200_000_000_000;
/// Steps of one input, at most.
const MAX_STEPS: usize = 256;

/// `Send`'s `via` byte with its bit 0 cleared: the daemon re-sends before it sends on. No input
/// committed before re-sends existed has it, so each of them replays exactly as it did.
const RESEND_MARK: u8 = 0x10;

/// The `machine` target: see the module docs (`CAPTURER_FUZZ_MUTANT` picks a mutant).
pub fn machine(data: &[u8]) {
    machine_with(data, env_mutant());
}

/// The `machine` target with `mutant` in the differential world's machines. With a mutant the
/// nonsense mode, which checks the machine's own invariants, is skipped: a mutant is there to
/// be caught by the world's verdict.
pub fn machine_with(data: &[u8], mutant: Option<Mutant>) {
    let mut u = Unstructured::new(data);
    let Ok(nonsense) = u.ratio(1u8, 4u8) else {
        return;
    };
    if nonsense {
        if mutant.is_none() {
            let _ = nonsense_run(&mut u);
        }
    } else {
        differential(&mut u, mutant);
    }
}

/// The mutant `CAPTURER_FUZZ_MUTANT` names (read once); an unknown name is an error.
fn env_mutant() -> Option<Mutant> {
    static MUTANT: std::sync::OnceLock<Option<Mutant>> = std::sync::OnceLock::new();
    *MUTANT.get_or_init(|| {
        let name = std::env::var("CAPTURER_FUZZ_MUTANT").ok()?;
        if name.is_empty() {
            return None;
        }
        match crate::mutant_named(&name) {
            Some(m) => Some(m),
            None => panic!(
                "CAPTURER_FUZZ_MUTANT={name}: not a mutant ({})",
                crate::MUTANT_NAMES.join(", ")
            ),
        }
    })
}

macro_rules! trace {
    ($($arg:tt)*) => {
        if tracing() {
            eprintln!($($arg)*);
        }
    };
}

fn config(u: &mut Unstructured<'_>) -> arbitrary::Result<Config> {
    let ms = |n: u16| Duration::from_millis(u64::from(n));
    let rotate: u16 = u.int_in_range(1..=2000)?;
    let heartbeat: u16 = u.int_in_range(1..=2000)?;
    Ok(Config {
        rotate_every: ms(rotate),
        heartbeat_every: ms(heartbeat),
        // Tail reopens in half the worlds, 1 to 8 entries at least, drawn from bytes already
        // read so that every committed input still decodes to the same world.
        tail_floor: if heartbeat % 2 == 0 {
            0
        } else {
            1 + u64::from(rotate % 8)
        },
        tail_tries: 3,
        tail_pace: true,
        // Rotations that wait for a quiet stream in a third of the worlds, from bytes already
        // read, as above.
        rotate_when_quiet: if rotate % 3 == 0 {
            ms(heartbeat % 500)
        } else {
            Duration::ZERO
        },
        backoff: Backoff {
            initial: ms(u.int_in_range(0..=500)?),
            max: ms(u.int_in_range(0..=5000)?),
            jitter_seed: if u.arbitrary()? { u.arbitrary()? } else { 0 },
        },
        partial_cap: match u.int_in_range(0..=3u8)? {
            0 | 1 => capturer_core::partial::DEFAULT_CAP,
            _ => usize::from(u.int_in_range(1..=12u8)?),
        },
        mutant: None,
    })
}

/// Checks made after every step, in both modes.
struct Watch {
    cursor: Cursor,
    checkpoint: Option<Cursor>,
    opened: Generation,
    stopped: bool,
}

impl Watch {
    fn new(m: &ContainerMachine) -> Watch {
        Watch {
            cursor: m.cursor().clone(),
            checkpoint: None,
            opened: m.generation(),
            stopped: m.is_stopped(),
        }
    }

    /// After a step, before its commands are taken.
    fn step(&mut self, m: &ContainerMachine, what: &dyn std::fmt::Debug) {
        if let Err(v) = m.check_invariants() {
            panic!("after {what:?}: {v}\n{m:#?}");
        }
        assert!(
            m.cursor().dominates(&self.cursor),
            "after {what:?}: the cursor moved backwards\nwas {:?}\nnow {:?}",
            self.cursor,
            m.cursor()
        );
        self.cursor = m.cursor().clone();
        let t = m.live_tasks();
        assert!(t.readers + t.heartbeats <= 2, "after {what:?}: {t:?}");
        if self.stopped {
            assert!(
                m.is_stopped(),
                "after {what:?}: a stopped machine started again"
            );
        }
        self.stopped = m.is_stopped();
        if let Some(deadline) = m.poll_timeout() {
            assert!(
                !m.is_stopped(),
                "after {what:?}: a deadline on a stopped machine"
            );
            let _ = deadline;
        }
    }

    /// One command out of the machine.
    fn command(&mut self, m: &ContainerMachine, c: &Command, was_stopped: bool) {
        assert!(
            !was_stopped,
            "a command out of a machine already stopped: {c:?}"
        );
        match c {
            Command::OpenTail { generation, .. } => {
                assert_eq!(generation.0, self.opened.0 + 1, "generations open in order");
                self.opened = *generation;
            }
            Command::OpenStream { generation, since } => {
                assert_eq!(generation.0, self.opened.0 + 1, "generations open in order");
                self.opened = *generation;
                for s in m.cursor().streams().iter() {
                    assert!(
                        since.0 <= m.cursor().position(s).ts,
                        "since {since} after the {s} position"
                    );
                }
            }
            Command::Checkpoint(c) => {
                if let Some(prev) = &self.checkpoint {
                    assert!(c.dominates(prev), "a checkpoint behind the previous one");
                }
                self.checkpoint = Some(c.clone());
            }
            _ => {}
        }
    }
}

/// Emitted lines per stream must go forward in time and never precede the start.
fn check_line(emitted: &mut [Vec<Delivered>; 3], start: Timestamp, line: &Line) {
    assert!(
        line.ts >= start,
        "a line stamped before the start: {line:?}"
    );
    assert_eq!(
        Timestamp::parse_rfc3339(line.ts_text.as_bytes()),
        Ok(line.ts),
        "a line's timestamp text does not match its timestamp"
    );
    let out = &mut emitted[line.stream.index()];
    if let Some(last) = out.last() {
        assert!(
            last.ts <= line.ts,
            "{} went back in time: {} after {}",
            line.stream,
            line.ts.0,
            last.ts.0
        );
    }
    out.push(Delivered {
        ts: line.ts,
        body: line.message.clone(),
        truncated: line.truncated,
    });
}

// ---------------------------------------------------------------------------------------------
// Nonsense: arbitrary events.

fn pick_generation(
    u: &mut Unstructured<'_>,
    m: &ContainerMachine,
) -> arbitrary::Result<Generation> {
    let g = m.generation().0;
    Ok(match u.int_in_range(0..=6u8)? {
        0..=2 => m.live_generation().unwrap_or(m.generation()),
        3 => Generation(g + 1),
        4 => Generation(g.saturating_sub(1)),
        5 => Generation(0),
        _ => Generation::arbitrary(u)?,
    })
}

fn frame_bytes(u: &mut Unstructured<'_>) -> arbitrary::Result<Vec<u8>> {
    let mut v = match u.int_in_range(0..=7u8)? {
        0 => return Vec::<u8>::arbitrary(u),
        1 => {
            let mut t = Timestamp(BASE + u64::from(u.arbitrary::<u16>()?))
                .to_string()
                .into_bytes();
            let i = u.choose_index(t.len())?;
            t[i] = u.arbitrary()?;
            t
        }
        2 => Timestamp(u.arbitrary::<u64>()? % 10_000_000_000_000_000_000)
            .to_string()
            .into_bytes(),
        _ => Timestamp(BASE + u64::from(u.int_in_range(0..=16u8)?))
            .to_string()
            .into_bytes(),
    };
    v.push(b' ');
    let len = u.int_in_range(0..=20)?;
    for _ in 0..len {
        v.push(u.int_in_range(b'a'..=b'd')?);
    }
    if u.arbitrary()? {
        v.push(b'\n');
    }
    Ok(v)
}

#[derive(Debug)]
enum Step {
    Event(Event),
    DataFrame {
        generation: Generation,
        stream: Stream,
        bytes: Vec<u8>,
    },
    DataEnd(Generation, bool),
    Timeout,
}

fn nonsense_step(u: &mut Unstructured<'_>, m: &ContainerMachine) -> arbitrary::Result<Step> {
    Ok(match u.int_in_range(0..=9u8)? {
        0 => Step::Event(Event::arbitrary(u)?),
        1 => Step::Timeout,
        2 | 3 => Step::DataFrame {
            generation: pick_generation(u, m)?,
            stream: Stream::arbitrary(u)?,
            bytes: frame_bytes(u)?,
        },
        4 => Step::DataEnd(pick_generation(u, m)?, u.arbitrary()?),
        // Once `handle`'s own frame and end of stream, checked against the data path; the
        // data path is now the only one, and the choices keep their bytes.
        5 => Step::DataFrame {
            generation: pick_generation(u, m)?,
            stream: Stream::arbitrary(u)?,
            bytes: frame_bytes(u)?,
        },
        6 => Step::Event(Event::ReaderExited {
            generation: pick_generation(u, m)?,
            exit: ReaderExit::arbitrary(u)?,
        }),
        7 => Step::Event(Event::StreamOpened {
            generation: pick_generation(u, m)?,
        }),
        8 => Step::DataEnd(pick_generation(u, m)?, u.arbitrary()?),
        _ => Step::Event(match u.int_in_range(0..=6u8)? {
            0 => Event::ContainerStarted,
            1 => Event::ContainerDied,
            2 => Event::ContainerRemoved,
            3 => Event::RotationDue,
            4 => Event::HeartbeatTick {
                running: u.arbitrary()?,
            },
            5 => Event::HeartbeatExited,
            _ => Event::StopRequested,
        }),
    })
}

fn nonsense_run(u: &mut Unstructured<'_>) -> arbitrary::Result<()> {
    let config = config(u)?;
    let start = if u.arbitrary()? {
        Timestamp(0)
    } else {
        Timestamp(BASE + u64::from(u.int_in_range(0..=8u8)?))
    };
    let streams = if u.ratio(1u8, 4u8)? {
        StreamSet::TTY
    } else {
        StreamSet::MULTIPLEXED
    };
    let mut m = ContainerMachine::new(config, Cursor::new(start, streams));
    let mut watch = Watch::new(&m);
    let mut emitted: [Vec<Delivered>; 3] = Default::default();
    let mut now = Instant(0);
    for _ in 0..MAX_STEPS {
        if u.is_empty() {
            break;
        }
        now = now.after(match u.int_in_range(0..=3u8)? {
            0 => Duration::ZERO,
            1 => Duration::from_nanos(u.arbitrary::<u64>()?),
            _ => Duration::from_millis(u64::from(u.arbitrary::<u16>()?)),
        });
        let step = nonsense_step(u, &m)?;
        trace!("@{} {step:?}", now.0);
        let was_stopped = m.is_stopped();
        // Lines handed to a sink by the data path, and every command, in order.
        let mut sunk: Vec<Line> = Vec::new();
        let mut commands: Vec<Command> = Vec::new();
        match &step {
            Step::Event(e) => m.handle(now, e.clone()),
            Step::DataFrame {
                generation,
                stream,
                bytes,
            } => {
                let live = m.live_generation();
                let flow = m.handle_frame(now, *generation, *stream, bytes, &mut sunk);
                if live != Some(*generation) {
                    assert_eq!(
                        flow,
                        Flow::Stop,
                        "a frame of a generation not live must stop its reader"
                    );
                }
            }
            Step::DataEnd(generation, stopped_throughout) => {
                m.handle_end_of_stream(*generation, *stopped_throughout, &mut sunk)
            }
            Step::Timeout => m.handle_timeout(now),
        }
        commands.extend(std::iter::from_fn(|| m.poll_command()));
        if was_stopped {
            assert!(
                sunk.is_empty() && commands.is_empty(),
                "a stopped machine gave {sunk:?} {commands:?}"
            );
        }
        watch.step(&m, &step);
        for l in &sunk {
            trace!("  -> sink {l:?}");
            check_line(&mut emitted, start, l);
        }
        for c in &commands {
            trace!("  -> {c:?}");
            watch.command(&m, c, was_stopped);
        }
        fire_due(&mut m, now, &mut watch, &mut |_| {});
    }
    Ok(())
}

/// Calls `handle_timeout` while a deadline is due; it must consume it.
fn fire_due(
    m: &mut ContainerMachine,
    now: Instant,
    watch: &mut Watch,
    on: &mut dyn FnMut(&Command),
) {
    for round in 0.. {
        match m.poll_timeout() {
            Some(t) if t <= now => {
                assert!(
                    round < 3,
                    "handle_timeout does not consume a due deadline ({t:?} <= {now:?})"
                );
                trace!("@{} timeout due at {}", now.0, t.0);
                let was_stopped = m.is_stopped();
                m.handle_timeout(now);
                watch.step(m, &"handle_timeout");
                while let Some(c) = m.poll_command() {
                    trace!("  -> {c:?}");
                    watch.command(m, &c, was_stopped);
                    on(&c);
                }
            }
            _ => return,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Differential: a world around the machine.

/// What happens next in the world.
#[derive(Arbitrary, Clone, Copy, Debug)]
enum Action {
    /// The container writes one entry (if it runs): a whole line, or a 16 KiB part of one.
    Write {
        stderr: bool,
        step: u8,
        part: bool,
        filler: u8,
    },
    /// Time passes; due deadlines fire.
    Advance { ms: u16 },
    /// The daemon answers the live reader's request with 200.
    Open,
    /// The live reader forwards up to `n % 8 + 1` entries, through the data path (bit 0 of
    /// `via` once chose `handle`). If `via` is [`RESEND_MARK`] (bit 0 aside), the daemon first
    /// goes back and queues a re-send, its start picked by `n >> 3` (see `World::resend`).
    Send { n: u8, via: u8 },
    /// The live reader's request or stream fails.
    Fail { bad_frame: bool },
    /// The live reader exits as it must: after its clean end, or because it was told to stop.
    Exit,
    /// The daemon ends the live stream cleanly (the container stopped and all was sent, or a
    /// daemon restart while it runs). `_via_event` once chose `handle` over the data path; the
    /// data path is the only one now, and the field stays so that committed inputs decode.
    CleanEnd { _via_event: bool },
    /// The container stops.
    Stop,
    /// The container starts (or the runtime hears of it again).
    Start,
    /// The heartbeat's inspect comes back: true, or stale (before the last stop or start).
    Tick { stale: bool },
    /// The heartbeat task exits (as told, or by itself).
    HeartbeatExit,
    /// A rotation is due now.
    Rotate,
    /// The live reader forwards a frame whose prefix is not a timestamp.
    Garbage,
    /// An event for a generation that is not the live one.
    Stale { which: u8, kind: u8 },
    /// The capturer shuts down; once the machine is stopped it starts again from the checkpoint.
    StopCapturer,
    /// `handle_timeout` whether or not anything is due.
    Timeout,
}

#[derive(Clone, Debug)]
struct Reader {
    generation: Generation,
    filter: SinceFilter,
    /// `tail=K`: the daemon begins K entries before the end of the log as it is when it
    /// answers.
    tail: Option<usize>,
    opened: bool,
    /// Index of the next log entry it considers.
    pos: usize,
    cancelled: bool,
    /// The machine said `Flow::Stop`.
    stopped_reading: bool,
    /// It sent `EndOfStream`.
    ended: bool,
    /// The container ran at some moment since it was opened (what the runtime's inspects
    /// around a draining read would show).
    ran: bool,
    /// The log entries it sent, in order (re-sends not counted again).
    sent: Vec<usize>,
    /// The machine delivered a new line while it was the live reader.
    delivered: bool,
    /// A re-send under way: the entries the daemon sends again before it goes on.
    replay: VecDeque<usize>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Hb {
    None,
    Live,
    Stopping,
}

/// The container, the daemon, the tasks, and the record of what the machine emitted.
pub struct World {
    config: Config,
    rule: SinceRule,
    start: Timestamp,
    m: ContainerMachine,
    watch: Watch,
    now: Instant,
    log: Vec<Entry>,
    clocks: [u64; 2],
    fresh: [bool; 2],
    running: bool,
    prev_running: bool,
    reader: Option<Reader>,
    hb: Hb,
    emitted: [Vec<Delivered>; 3],
    restarts: u32,
    tag: u32,
}

const STREAMS: [Stream; 2] = [Stream::Stdout, Stream::Stderr];

impl World {
    fn new(u: &mut Unstructured<'_>, mutant: Option<Mutant>) -> arbitrary::Result<World> {
        let config = Config {
            mutant,
            ..config(u)?
        };
        let rule = if u.arbitrary()? {
            SinceRule::SkipUntilFirst
        } else {
            SinceRule::DropAllBefore
        };
        let clocks = [
            BASE + u64::from(u.arbitrary::<u8>()?),
            BASE + u64::from(u.arbitrary::<u8>()?),
        ];
        let start = if u.arbitrary()? {
            Timestamp(0)
        } else {
            Timestamp(BASE + u64::from(u.arbitrary::<u8>()?))
        };
        let running = u.arbitrary()?;
        Ok(World::with(config, rule, clocks, start, running))
    }

    /// A world whose container's clocks start at `clocks` (stdout, stderr), running or not,
    /// captured from `start`, its daemon under `rule`.
    fn with(
        config: Config,
        rule: SinceRule,
        clocks: [u64; 2],
        start: Timestamp,
        running: bool,
    ) -> World {
        let m = ContainerMachine::new(config.clone(), Cursor::new(start, StreamSet::MULTIPLEXED));
        let watch = Watch::new(&m);
        let mut w = World {
            config,
            rule,
            start,
            m,
            watch,
            now: Instant(0),
            log: Vec::new(),
            clocks,
            fresh: [false; 2],
            running,
            prev_running: !running,
            reader: None,
            hb: Hb::None,
            emitted: Default::default(),
            restarts: 0,
            tag: 0,
        };
        trace!(
            "world: rule {rule:?}, start {}, clocks {clocks:?}, running {running}, {:?}",
            start.0,
            w.config
        );
        w.handle(if running {
            Event::ContainerStarted
        } else {
            Event::ContainerDied
        });
        w
    }

    fn handle(&mut self, e: Event) {
        trace!("@{} {e:?}", self.now.0);
        let was_stopped = self.m.is_stopped();
        self.m.handle(self.now, e.clone());
        self.after(&e, was_stopped, Vec::new());
    }

    /// After any call into the machine: check, carry out the commands, restart if stopped.
    fn after(&mut self, what: &dyn std::fmt::Debug, was_stopped: bool, sunk: Vec<Line>) {
        self.watch.step(&self.m, what);
        for l in &sunk {
            trace!("  -> sink {l:?}");
            check_line(&mut self.emitted, self.start, l);
        }
        if let (Some(r), false) = (&mut self.reader, sunk.is_empty()) {
            r.delivered = true;
        }
        while let Some(c) = self.m.poll_command() {
            trace!("  -> {c:?}");
            self.watch.command(&self.m, &c, was_stopped);
            self.carry_out(c);
        }
        if self.m.is_stopped() {
            self.restart_capturer();
        }
    }

    fn carry_out(&mut self, c: Command) {
        match c {
            Command::OpenStream { .. } | Command::OpenTail { .. } => {
                let (generation, since, tail) = match c {
                    Command::OpenTail { generation, lines } => (
                        generation,
                        Timestamp(0),
                        Some(usize::try_from(lines).unwrap_or(usize::MAX)),
                    ),
                    Command::OpenStream { generation, since } => (generation, since.0, None),
                    _ => return,
                };
                assert!(
                    self.reader.is_none(),
                    "g{} opened while the world still runs reader {:?}",
                    generation.0,
                    self.reader
                );
                self.reader = Some(Reader {
                    generation,
                    filter: SinceFilter::new(self.rule, since),
                    tail,
                    opened: false,
                    pos: 0,
                    cancelled: false,
                    stopped_reading: false,
                    ended: false,
                    ran: self.running,
                    sent: Vec::new(),
                    delivered: false,
                    replay: VecDeque::new(),
                });
            }
            Command::CancelReader { generation, reason } => match &mut self.reader {
                Some(r) if r.generation == generation => {
                    // Invariant 7, seen from the world: a rotation retires only a generation
                    // that delivered a new line, or a slow reopen is retired again and again.
                    assert!(
                        reason != CancelReason::Rotation || r.delivered,
                        "a rotation retired g{} before it delivered a line",
                        generation.0
                    );
                    r.cancelled = true;
                }
                other => panic!(
                    "cancel of g{} while the world runs reader {other:?}",
                    generation.0
                ),
            },
            Command::StartHeartbeat => {
                assert_eq!(self.hb, Hb::None, "a second heartbeat started");
                self.hb = Hb::Live;
            }
            Command::StopHeartbeat => {
                assert_eq!(self.hb, Hb::Live, "stop of a heartbeat that is not live");
                self.hb = Hb::Stopping;
            }
            Command::Forget => panic!("Forget without a removal"),
            Command::Checkpoint(_) | Command::Report(_) => {}
        }
    }

    /// The machine stopped (the capturer shut down): start a new one from the last checkpoint.
    fn restart_capturer(&mut self) {
        assert!(
            self.reader.is_none(),
            "stopped with a reader running: {:?}",
            self.reader
        );
        assert_eq!(self.hb, Hb::None, "stopped with a heartbeat running");
        let Some(cursor) = self.watch.checkpoint.clone() else {
            panic!("stopped without a checkpoint");
        };
        assert_eq!(
            &cursor,
            self.m.cursor(),
            "the last checkpoint is not the final cursor"
        );
        self.restarts += 1;
        trace!("capturer restart #{} from {cursor:?}", self.restarts);
        self.m = ContainerMachine::new(self.config.clone(), cursor);
        self.watch = Watch {
            checkpoint: self.watch.checkpoint.take(),
            ..Watch::new(&self.m)
        };
        let e = if self.running {
            Event::ContainerStarted
        } else {
            Event::ContainerDied
        };
        self.handle(e);
    }

    fn fire_due(&mut self) {
        for round in 0.. {
            match self.m.poll_timeout() {
                Some(t) if t <= self.now => {
                    assert!(round < 3, "handle_timeout does not consume a due deadline");
                    trace!("@{} timeout (due {})", self.now.0, t.0);
                    let was_stopped = self.m.is_stopped();
                    self.m.handle_timeout(self.now);
                    self.after(&"handle_timeout", was_stopped, Vec::new());
                }
                _ => return,
            }
        }
    }

    fn write(&mut self, stderr: bool, step: u8, part: bool, filler: u8) {
        if !self.running {
            return;
        }
        let i = usize::from(stderr);
        let mut delta = match step {
            0..=159 => 0,
            160..=239 => u64::from(step - 159),
            _ => u64::from(step - 239) * 400_000_000,
        };
        if self.fresh[i] {
            delta = delta.max(1);
            self.fresh[i] = false;
        }
        self.clocks[i] += delta;
        self.tag += 1;
        let mut payload = format!("{}{}", if stderr { 'e' } else { 'o' }, self.tag).into_bytes();
        payload.extend(std::iter::repeat_n(b'.', usize::from(filler % 8)));
        if !part {
            payload.push(b'\n');
        }
        let entry = Entry {
            stream: STREAMS[i],
            ts: Timestamp(self.clocks[i]),
            payload,
        };
        trace!(
            "write #{} {} {} {:?}",
            self.log.len(),
            entry.stream,
            entry.ts.0,
            String::from_utf8_lossy(&entry.payload)
        );
        self.log.push(entry);
    }

    /// The live reader, if it can forward frames.
    fn reading(&self) -> Option<&Reader> {
        self.reader
            .as_ref()
            .filter(|r| r.opened && !r.ended && !r.stopped_reading)
    }

    /// A frame of `generation` through the data path, the one way frames enter the machine.
    fn frame(&mut self, generation: Generation, stream: Stream, bytes: Vec<u8>) {
        trace!(
            "@{} data frame g{} {stream} {:?}",
            self.now.0,
            generation.0,
            String::from_utf8_lossy(&bytes)
        );
        let was_stopped = self.m.is_stopped();
        let mut sunk = Vec::new();
        let flow = self
            .m
            .handle_frame(self.now, generation, stream, &bytes, &mut sunk);
        if flow == Flow::Stop {
            if let Some(r) = &mut self.reader {
                if r.generation == generation {
                    r.stopped_reading = true;
                }
            }
        }
        self.after(&"handle_frame", was_stopped, sunk);
    }

    fn send(&mut self, n: usize) {
        for _ in 0..n {
            let Some(r) = self.reading() else { return };
            let generation = r.generation;
            let mut filter = r.filter;
            let mut pos = r.pos;
            let again = r.replay.front().copied();
            let next = match again {
                Some(i) => Some(i),
                None => loop {
                    let Some(e) = self.log.get(pos) else {
                        break None;
                    };
                    pos += 1;
                    if filter.sends(e.ts) {
                        break Some(pos - 1);
                    }
                },
            };
            if let Some(r) = &mut self.reader {
                if again.is_some() {
                    r.replay.pop_front();
                } else {
                    r.filter = filter;
                    r.pos = pos;
                    r.sent.extend(next);
                }
            }
            let Some(i) = next else { return };
            if again.is_some() {
                trace!("re-send of #{i}");
            }
            let e = &self.log[i];
            self.frame(generation, e.stream, e.frame());
        }
    }

    /// The entries of the live reader's stream where the daemon may go back to: the first of a
    /// contiguous run of what it sent that ends with the last entry it sent. `Rewind` judges
    /// each stream on its own, so per stream the run's entries must begin with one stamped
    /// before that stream's last entry sent, or be that last entry alone when it ends a line
    /// (`rewind::ends_line`: this world's parts are shorter than the daemon's 16 KiB, so each
    /// ends a line to it, and one sent again alone stands for the measured re-send of a long
    /// line's last part; a full part sent again alone is the residual left out).
    /// Left out, as `Rewind` documents: a run of a stream beginning at an entry stamped exactly
    /// like its last one and holding more than it (the parts of a long line, or equal-stamped
    /// lines, sent again), which no filter can tell from new entries.
    fn resend_starts(&self, r: &Reader) -> Vec<usize> {
        (0..r.sent.len())
            .filter(|&q| {
                STREAMS.iter().all(|&s| {
                    let run: Vec<(Timestamp, bool)> = r.sent[q..]
                        .iter()
                        .map(|&i| &self.log[i])
                        .filter(|e| e.stream == s)
                        .map(|e| (e.ts, capturer_core::rewind::ends_line(&e.payload)))
                        .collect();
                    capturer_core::rewind::recognises(&run)
                })
            })
            .collect()
    }

    /// The daemon goes back (it rotated its json-file) and queues again a run of what the live
    /// reader sent, ending with the last entry it sent: the `pick`-th (modulo) of the runs
    /// `resend_starts` allows. Nothing if a re-send is still under way.
    fn resend(&mut self, pick: u8) {
        let Some(r) = self.reading() else { return };
        if !r.replay.is_empty() {
            return;
        }
        let starts = self.resend_starts(r);
        if starts.is_empty() {
            return;
        }
        let q = starts[usize::from(pick) % starts.len()];
        let run = r.sent[q..].to_vec();
        trace!("the daemon goes back and re-sends entries {run:?}");
        if let Some(r) = &mut self.reader {
            r.replay.extend(run);
        }
    }

    fn exit(&mut self, exit: ReaderExit) {
        if let Some(r) = self.reader.take() {
            self.handle(Event::ReaderExited {
                generation: r.generation,
                exit,
            });
        }
    }

    /// Whether the live reader has entries left to send (a re-send under way included).
    fn unsent(&self) -> bool {
        let Some(r) = &self.reader else { return false };
        let mut filter = r.filter;
        !r.replay.is_empty()
            || self.log[r.pos.min(self.log.len())..]
                .iter()
                .any(|e| filter.sends(e.ts))
    }

    /// Whether the live reader has sent part of a line whose next part it has not sent.
    fn clean_end(&mut self) {
        let Some(r) = self.reading() else { return };
        if !self.running && self.unsent() {
            // A stopped container's stream ends only once everything was sent.
            return;
        }
        let generation = r.generation;
        let stopped_throughout = !r.ran && !self.running;
        if let Some(r) = &mut self.reader {
            r.ended = true;
        }
        if self.running {
            // A daemon restart: the log copier starts again, later.
            self.fresh = [true; 2];
        }
        self.end_of_stream(generation, stopped_throughout);
    }

    /// `generation`'s stream ends cleanly, through the data path.
    fn end_of_stream(&mut self, generation: Generation, stopped_throughout: bool) {
        trace!("@{} data end of stream g{}", self.now.0, generation.0);
        let was_stopped = self.m.is_stopped();
        let mut sunk = Vec::new();
        self.m
            .handle_end_of_stream(generation, stopped_throughout, &mut sunk);
        self.after(&"handle_end_of_stream", was_stopped, sunk);
    }

    fn act(&mut self, a: Action) {
        trace!("action {a:?}");
        match a {
            Action::Write {
                stderr,
                step,
                part,
                filler,
            } => self.write(stderr, step, part, filler),
            Action::Advance { ms } => {
                self.now = self.now.after(Duration::from_millis(u64::from(ms % 4096)));
                self.fire_due();
            }
            Action::Open => {
                if let Some(r) = &mut self.reader {
                    if !r.opened {
                        r.opened = true;
                        if let Some(k) = r.tail {
                            r.pos = self.log.len().saturating_sub(k);
                        }
                        let generation = r.generation;
                        self.handle(Event::StreamOpened { generation });
                    }
                }
            }
            Action::Send { n, via } => {
                if via & !1 == RESEND_MARK {
                    self.resend(n >> 3);
                }
                self.send(usize::from(n % 8) + 1);
            }
            Action::Fail { bad_frame } => {
                if self.reader.as_ref().is_some_and(|r| !r.ended) {
                    let e = if bad_frame {
                        ReadError::BadFrame
                    } else {
                        ReadError::Transient
                    };
                    self.exit(ReaderExit::Failed(e));
                }
            }
            Action::Exit => match &self.reader {
                Some(r) if r.ended => self.exit(ReaderExit::CleanEnd),
                Some(r) if r.cancelled || r.stopped_reading => self.exit(ReaderExit::Cancelled),
                _ => {}
            },
            Action::CleanEnd { .. } => self.clean_end(),
            Action::Stop => {
                if self.running {
                    self.running = false;
                    self.prev_running = true;
                    self.fresh = [true; 2];
                }
                self.handle(Event::ContainerDied);
            }
            Action::Start => {
                if !self.running {
                    self.running = true;
                    self.prev_running = false;
                    self.fresh = [true; 2];
                }
                if let Some(r) = &mut self.reader {
                    r.ran = true;
                }
                self.handle(Event::ContainerStarted);
            }
            Action::Tick { stale } => {
                let running = if stale {
                    self.prev_running
                } else {
                    self.running
                };
                if self.hb != Hb::None {
                    self.handle(Event::HeartbeatTick { running });
                }
            }
            Action::HeartbeatExit => {
                if self.hb != Hb::None {
                    self.hb = Hb::None;
                    self.handle(Event::HeartbeatExited);
                }
            }
            Action::Rotate => self.handle(Event::RotationDue),
            Action::Garbage => {
                if let Some(r) = self.reading() {
                    let generation = r.generation;
                    self.frame(
                        generation,
                        Stream::Stdout,
                        b"2024-13-01T00:00:00Z garbage\n".to_vec(),
                    );
                }
            }
            Action::Stale { which, kind } => self.stale(which, kind),
            Action::StopCapturer => self.handle(Event::StopRequested),
            Action::Timeout => {
                trace!("@{} handle_timeout", self.now.0);
                let was_stopped = self.m.is_stopped();
                self.m.handle_timeout(self.now);
                self.after(&"handle_timeout", was_stopped, Vec::new());
            }
        }
    }

    /// An event about a generation that is not live: late news of a joined one, or nonsense.
    fn stale(&mut self, which: u8, kind: u8) {
        let opened = self.m.generation().0;
        let generation = Generation(match which % 4 {
            0 => 0,
            1 => opened.saturating_sub(1),
            2 => opened + 1,
            _ => opened.saturating_sub(2),
        });
        if self.m.live_generation() == Some(generation) {
            return;
        }
        let e = match kind % 5 {
            0 | 1 => {
                let Some(entry) = self.log.get(usize::from(which) % self.log.len().max(1)) else {
                    return;
                };
                let (stream, bytes) = (entry.stream, entry.frame());
                self.frame(generation, stream, bytes);
                return;
            }
            2 => Event::StreamOpened { generation },
            3 => {
                self.end_of_stream(generation, false);
                return;
            }
            _ => Event::ReaderExited {
                generation,
                exit: ReaderExit::Cancelled,
            },
        };
        self.handle(e);
    }

    /// The container stops; everything runs until nothing is left to do.
    fn quiesce(&mut self) {
        trace!("--- quiesce");
        if self.running {
            self.running = false;
            self.prev_running = true;
            self.fresh = [true; 2];
        }
        self.handle(Event::ContainerDied);
        if self.hb == Hb::Live {
            self.handle(Event::HeartbeatTick { running: false });
        }
        let mut ticked = false;
        for _ in 0..10_000 {
            if let Some(r) = self.reader.clone() {
                if !r.opened {
                    self.act(Action::Open);
                } else if r.ended {
                    self.exit(ReaderExit::CleanEnd);
                } else if r.cancelled || r.stopped_reading {
                    self.exit(ReaderExit::Cancelled);
                } else if !r.replay.is_empty() || r.pos < self.log.len() {
                    self.send(self.log.len() + r.replay.len());
                } else {
                    self.clean_end();
                }
                ticked = false;
                continue;
            }
            if self.hb == Hb::Stopping {
                self.act(Action::HeartbeatExit);
                continue;
            }
            if let Some(t) = self.m.poll_timeout() {
                self.now = self.now.max(t);
                self.fire_due();
                ticked = false;
                continue;
            }
            if self.hb == Hb::Live && !ticked {
                self.handle(Event::HeartbeatTick { running: false });
                ticked = true;
                continue;
            }
            return;
        }
        panic!(
            "the world did not come to rest in 10,000 steps\n{:#?}",
            self.m
        );
    }

    fn verdict(&self, actions: &[Action]) {
        for stream in STREAMS {
            let want = reference::expected(&self.log, stream, self.config.partial_cap, self.start);
            let got = &self.emitted[stream.index()];
            if *got != want {
                let show = |d: &[Delivered]| {
                    d.iter()
                        .map(|d| format!("  {d}"))
                        .collect::<Vec<_>>()
                        .join("\n")
                };
                let log: Vec<String> = self
                    .log
                    .iter()
                    .enumerate()
                    .map(|(i, e)| {
                        format!(
                            "  #{i} {} {} {:?}",
                            e.stream,
                            e.ts.0,
                            String::from_utf8_lossy(&e.payload)
                        )
                    })
                    .collect();
                panic!(
                    "{stream}: the machine's lines differ from the reference's\n\
                     rule {:?}, start {}, cap {}, restarts {}\nwant:\n{}\ngot:\n{}\nlog:\n{}\nactions: {actions:?}\n\
                     (CAPTURER_FUZZ_TRACE=1 prints every step)",
                    self.rule,
                    self.start.0,
                    self.config.partial_cap,
                    self.restarts,
                    show(&want),
                    show(got),
                    log.join("\n")
                );
            }
        }
    }
}

fn differential(u: &mut Unstructured<'_>, mutant: Option<Mutant>) {
    let Ok(mut world) = World::new(u, mutant) else {
        return;
    };
    let mut actions = Vec::new();
    while !u.is_empty() && actions.len() < MAX_STEPS {
        match Action::arbitrary(u) {
            Ok(a) => actions.push(a),
            Err(_) => break,
        }
    }
    for a in &actions {
        world.act(*a);
    }
    world.quiesce();
    world.verdict(&actions);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A line of `stream` stamped `step` nanoseconds after the stream's last (0: the same
    /// instant), whole or a 16 KiB part.
    fn write(stream: Stream, step: u8, part: bool) -> Action {
        Action::Write {
            stderr: stream == Stream::Stderr,
            step: if step == 0 { 0 } else { 159 + step },
            part,
            filler: 0,
        }
    }

    /// The live reader forwards `n` entries through `handle`, after a re-send picked by `pick`.
    fn resend_then_send(pick: u8, n: u8) -> Action {
        Action::Send {
            n: (pick << 3) | (n - 1),
            via: RESEND_MARK | 1,
        }
    }

    /// Runs `actions` in a world whose container runs, captured from the start, with the
    /// machine's real settings and `mutant`; panics as the target does.
    fn run(rule: SinceRule, actions: &[Action], mutant: Option<Mutant>) {
        let config = Config {
            mutant,
            ..Config::default()
        };
        let mut w = World::with(config, rule, [BASE + 1, BASE + 1], Timestamp(0), true);
        for &a in actions {
            w.act(a);
        }
        w.quiesce();
        w.verdict(actions);
    }

    /// Whether `run` panics, and with what.
    fn caught(rule: SinceRule, actions: &[Action], mutant: Option<Mutant>) -> Option<String> {
        std::panic::catch_unwind(|| run(rule, actions, mutant))
            .err()
            .map(|p| {
                p.downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                    .unwrap_or_default()
            })
    }

    /// Each shape of re-send `Rewind` claims to handle, in a world that sends it: the real
    /// machine delivers every line once, `Mutant::TrustResends` delivers one twice.
    #[test]
    fn the_daemons_re_sends_are_judged() {
        use Stream::{Stderr, Stdout};
        let head = [
            Action::Open,
            write(Stdout, 0, false), // o1 @+1
            write(Stderr, 0, false), // e2 @+1
            write(Stdout, 1, true),  // o3 @+2, a 16 KiB part
            write(Stdout, 0, false), // o4 @+2, the rest of that line
            write(Stderr, 2, false), // e5 @+3
            Action::Send { n: 4, via: 1 },
        ];
        // After those five frames the world may go back to any of them: o1 (both streams jump
        // back), e2 (stderr jumps back; stdout's long line again from its first part, after
        // that line ended), o3 (that, and stderr's last line alone), o4 (each stream's last
        // line alone) or e5 (alone). `pick` chooses among the five, modulo.
        let shapes: [(&str, Vec<Action>); 6] = [
            (
                "a jump back over both streams",
                vec![resend_then_send(0, 5)],
            ),
            (
                "a jump back, and a long line again from its first part",
                vec![resend_then_send(1, 4)],
            ),
            (
                "a long line again from its first part, and a last line alone",
                vec![resend_then_send(2, 3)],
            ),
            (
                "each stream's last line alone",
                vec![resend_then_send(3, 2)],
            ),
            ("the last line alone", vec![resend_then_send(4, 1)]),
            (
                "a jump back, then new lines",
                vec![
                    resend_then_send(5, 5),
                    write(Stdout, 1, false),
                    write(Stderr, 0, false),
                    Action::Send { n: 1, via: 0 },
                ],
            ),
        ];
        for rule in [SinceRule::DropAllBefore, SinceRule::SkipUntilFirst] {
            for (what, tail) in &shapes {
                let actions: Vec<Action> = head.iter().chain(tail).copied().collect();
                if let Some(why) = caught(rule, &actions, None) {
                    panic!("{what}, {rule:?}: the real machine fails: {why}");
                }
                let why = caught(rule, &actions, Some(Mutant::TrustResends))
                    .unwrap_or_else(|| panic!("{what}, {rule:?}: TrustResends is not caught"));
                assert!(
                    why.contains("differ from the reference"),
                    "{what}, {rule:?}: {why}"
                );
            }
        }
    }
}
