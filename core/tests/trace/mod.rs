//! A test harness that drives one machine and writes down everything it says, for snapshots.

// Test tooling: a broken expectation must fail the test loudly.
#![allow(clippy::expect_used)]

use std::fmt::Write as _;
use std::time::Duration;

use capturer_core::{
    Backoff, Command, Config, ContainerMachine, Cursor, Event, Generation, Instant, Line, Stream,
    StreamSet, Timestamp,
};

/// A machine under test, with the trace of every step.
pub struct Trace {
    pub m: ContainerMachine,
    pub now: Instant,
    pub text: String,
    /// Every line emitted, in order.
    pub lines: Vec<Line>,
    /// Every cursor checkpointed, in order.
    pub checkpoints: Vec<Cursor>,
    /// How many commands came out, in all.
    pub commands: usize,
}

/// The configuration the traces use: short intervals, a visible backoff, no jitter, and every
/// reopen with `since` (the traces of a tail reopen turn it on with [`tail_config`]).
pub fn config() -> Config {
    Config {
        tail_floor: 0,
        rotate_when_quiet: Duration::ZERO,
        rotate_every: Duration::from_millis(100),
        heartbeat_every: Duration::from_secs(1),
        backoff: Backoff {
            initial: Duration::from_millis(10),
            max: Duration::from_millis(80),
            jitter_seed: 0,
        },
        ..Config::default()
    }
}

/// [`config`] with tail reopens of at least `floor` entries.
pub fn tail_config(floor: u64) -> Config {
    Config {
        tail_floor: floor,
        ..config()
    }
}

/// `<ts> <payload>` with the daemon's timestamp format; `ns` counts from 2024-01-01T00:00:00Z.
pub fn frame(ns: u64, payload: &[u8]) -> Vec<u8> {
    let mut v = stamp(ns).to_string().into_bytes();
    v.push(b' ');
    v.extend_from_slice(payload);
    v
}

/// A timestamp `ns` after 2024-01-01T00:00:00Z.
pub fn stamp(ns: u64) -> Timestamp {
    Timestamp(1_704_067_200_000_000_000 + ns)
}

impl Trace {
    pub fn new(config: Config) -> Trace {
        Trace::resume(config, Cursor::new(Timestamp(0), StreamSet::MULTIPLEXED))
    }

    pub fn resume(config: Config, cursor: Cursor) -> Trace {
        Trace {
            m: ContainerMachine::new(config, cursor),
            now: Instant(0),
            text: String::new(),
            lines: Vec::new(),
            checkpoints: Vec::new(),
            commands: 0,
        }
    }

    /// Moves the clock to `ms` milliseconds.
    pub fn at(&mut self, ms: u64) -> &mut Trace {
        self.now = Instant(ms * 1_000_000);
        self
    }

    /// Feeds one event at the current time and records what comes out.
    pub fn on(&mut self, event: Event) -> &mut Trace {
        let label = describe_event(&event);
        self.m.handle(self.now, event);
        self.record(&label, Vec::new())
    }

    /// Feeds a frame of `generation` on `stream`, through the data path.
    pub fn frame(&mut self, g: u64, stream: Stream, ns: u64, payload: &[u8]) -> &mut Trace {
        self.bytes(Generation(g), stream, &frame(ns, payload))
    }

    /// Feeds the raw bytes of one frame of `generation` on `stream`, through the data path.
    pub fn bytes(&mut self, generation: Generation, stream: Stream, bytes: &[u8]) -> &mut Trace {
        let (ts, payload) = match capturer_core::frame::split_timestamp(bytes) {
            Ok(s) => (String::from_utf8_lossy(s.ts_text).into_owned(), s.payload),
            Err(_) => ("<bad>".to_owned(), bytes),
        };
        let label = format!("Frame {generation} {stream} {ts} {}", short(payload));
        let mut sunk = Vec::new();
        self.m
            .handle_frame(self.now, generation, stream, bytes, &mut sunk);
        self.record(&label, sunk)
    }

    /// The stream of `generation` ends cleanly, through the data path; `stopped_throughout`
    /// as the runtime would find it.
    pub fn end(&mut self, generation: Generation, stopped_throughout: bool) -> &mut Trace {
        let ran = if stopped_throughout {
            ""
        } else {
            " (the container ran during the read)"
        };
        let label = format!("EndOfStream {generation}{ran}");
        let mut sunk = Vec::new();
        self.m
            .handle_end_of_stream(generation, stopped_throughout, &mut sunk);
        self.record(&label, sunk)
    }

    /// Fires the pending deadline, moving the clock to it.
    pub fn timeout(&mut self) -> &mut Trace {
        let deadline = self.m.poll_timeout().expect("a deadline is armed");
        self.now = deadline;
        self.m.handle_timeout(deadline);
        self.record("deadline passes", Vec::new())
    }

    /// Writes down one step: the lines its data path handed to the sink, then every command.
    fn record(&mut self, label: &str, sunk: Vec<Line>) -> &mut Trace {
        self.m
            .check_invariants()
            .expect("invariants hold after every step");
        let _ = writeln!(self.text, "{:>5}ms  {label}", self.now.0 / 1_000_000);
        for l in sunk {
            self.commands += 1;
            let _ = writeln!(self.text, "           -> {}", describe_line(&l));
            self.lines.push(l);
        }
        while let Some(c) = self.m.poll_command() {
            self.commands += 1;
            let _ = writeln!(self.text, "           -> {}", describe_command(&c));
            if let Command::Checkpoint(cursor) = c {
                self.checkpoints.push(cursor);
            }
        }
        let tasks = self.m.live_tasks();
        let _ = writeln!(
            self.text,
            "           [{}; readers {}, heartbeats {}; next deadline {}]",
            self.m.phase(),
            tasks.readers,
            tasks.heartbeats,
            self.m
                .poll_timeout()
                .map_or("none".to_owned(), |t| format!("{}ms", t.0 / 1_000_000))
        );
        self
    }

    /// The messages emitted on `stream`, as text.
    pub fn messages(&self, stream: Stream) -> Vec<String> {
        self.lines
            .iter()
            .filter(|l| l.stream == stream)
            .map(|l| String::from_utf8_lossy(&l.message).into_owned())
            .collect()
    }
}

fn short(bytes: &[u8]) -> String {
    if bytes.len() <= 24 {
        format!("{:?}", String::from_utf8_lossy(bytes))
    } else {
        format!(
            "{:?}..({} bytes)",
            String::from_utf8_lossy(&bytes[..16]),
            bytes.len()
        )
    }
}

fn describe_event(e: &Event) -> String {
    match e {
        Event::StreamOpened { generation } => format!("StreamOpened {generation}"),
        Event::ReaderExited { generation, exit } => format!("ReaderExited {generation} {exit:?}"),
        other => format!("{other:?}"),
    }
}

/// A line the data path handed to the sink (written `Emit`, as the snapshots always were).
fn describe_line(l: &Line) -> String {
    format!(
        "Emit {} {} {}{}",
        l.stream,
        l.ts_text,
        short(&l.message),
        if l.truncated { " TRUNCATED" } else { "" }
    )
}

fn describe_command(c: &Command) -> String {
    match c {
        Command::OpenStream { generation, since } => {
            format!("OpenStream {generation} since={since}")
        }
        Command::OpenTail { generation, lines } => {
            format!("OpenTail {generation} tail={lines}")
        }
        Command::CancelReader { generation, reason } => {
            format!("CancelReader {generation} ({reason:?})")
        }
        Command::Checkpoint(c) => {
            let pos: Vec<String> = c
                .streams()
                .iter()
                .map(|s| {
                    let p = c.position(s);
                    format!("{s}={}#{}", p.ts.to_since(), p.n)
                })
                .collect();
            format!("Checkpoint {} since={}", pos.join(" "), c.since())
        }
        other => format!("{other:?}"),
    }
}
