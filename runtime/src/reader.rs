//! A reader generation: one follow request on `/containers/{id}/logs`, its frames through the
//! container's machine, its new lines to the sink.
//!
//! The task holds its generation scope's guard for its whole life; the supervisor observes the
//! exit by joining that scope, and only then tells the machine. Lines are handed to the sink
//! before the task ends. A reader cancelled while the sink has no room does not wait: it drops
//! its batch and returns the machine's cursor to the last batch the sink took
//! (`ContainerMachine::hand_back`), so the next generation reads those lines again.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use capturer_core::frame::DAEMON_FRAME_PAYLOAD;
use capturer_core::scope::ScopeGuard;
use capturer_core::{
    Cursor, Demux, Event, Flow, Generation, LineSink, Message, Position, ReadError, ReaderExit,
    Since, Stream, TtySplitter, Verdict,
};
use futures_util::FutureExt;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UnixStream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::conn::{self, Io, RunState};
use crate::container::Shared;
use crate::docker::Endpoint;
use crate::http::{self, Body, HttpError};
use crate::metrics::Metrics;
use crate::pace;
use crate::sink::{Handed, SinkSender, BATCH_BYTES};
use crate::timer::Timer;

/// How long connecting and receiving the response head may take. The body has no timeout:
/// it is a stream; the heartbeat watches it for stalls.
const HEAD_TIMEOUT: Duration = Duration::from_secs(30);

/// The smallest and largest read buffer: idle readers stay small, busy ones read big.
const READ_MIN: usize = 4 * 1024;
const READ_MAX: usize = 64 * 1024;

/// A reader that waited this long for data closes its pause timer (made again once it pauses
/// steadily, `crate::timer`): a descriptor per busy reader, none per idle one.
const TIMER_IDLE: Duration = Duration::from_secs(1);

/// What a reader needs.
pub struct Reader {
    /// Its container.
    pub shared: Arc<Shared>,
    /// Its generation.
    pub generation: Generation,
    /// Where to resume.
    pub from: Start,
    /// The daemon.
    pub endpoint: Endpoint,
    /// The API version prefix, e.g. `v1.41`.
    pub api_version: String,
    /// The sink.
    pub sink: SinkSender,
    /// Set by the supervisor to stop this generation.
    pub cancel: CancellationToken,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// The machine's clock.
    pub clock: Clock,
    /// Tells the supervisor the machine has commands waiting (a report, a cancel) or a new
    /// deadline (the rotation, armed at a generation's first new line).
    pub poke: mpsc::UnboundedSender<Arc<str>>,
    /// The longest a busy stream stays off the poller before its next read (zero: never); see
    /// `crate::pace` for how long it actually does.
    pub pause: Duration,
}

/// Where a generation's stream begins, as the machine said.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Start {
    /// `since=`: the daemon decodes the log from its first entry (none when zero).
    Since(Since),
    /// `tail=`: the log's last entries, read from its end.
    Tail(u64),
}

impl Start {
    /// The request's query parameter, with its `&`.
    fn query(self) -> String {
        match self {
            Start::Since(since) if since.0 .0 == 0 => String::new(),
            Start::Since(since) => format!("&since={since}"),
            Start::Tail(lines) => format!("&tail={lines}"),
        }
    }
}

/// How a generation ended, as the supervisor passes it to the machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// The exit.
    pub exit: ReaderExit,
}

/// Where a generation's outcome is left for the supervisor.
pub type OutcomeSlot = Arc<Mutex<Option<Outcome>>>;

impl Reader {
    /// The task body: read until done, leave the outcome, then leave the scope (by dropping
    /// `guard` last).
    pub async fn run(self, guard: ScopeGuard, slot: OutcomeSlot) {
        let outcome = self.read().await;
        if matches!(outcome.exit, ReaderExit::Failed(_)) {
            self.metrics.stream_error();
        }
        *slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(outcome);
        drop(guard);
    }

    async fn read(&self) -> Outcome {
        let failed = |e: ReadError| Outcome {
            exit: ReaderExit::Failed(e),
        };
        let cancelled = Outcome {
            exit: ReaderExit::Cancelled,
        };
        // A draining read's end is the end of the log only if the container did not run at
        // any moment of it: note its state now, compare once the stream has ended.
        let before = if self.shared.machine().is_draining() {
            tokio::select! {
                _ = self.cancel.cancelled() => return cancelled,
                s = self.run_state() => s,
            }
        } else {
            None
        };
        let io = tokio::select! {
            _ = self.cancel.cancelled() => return cancelled,
            r = tokio::time::timeout(HEAD_TIMEOUT, conn::connect(&self.endpoint)) => match r {
                Ok(Ok(io)) => io,
                Ok(Err(e)) => {
                    tracing::debug!(container = %self.shared.id, error = %e, "log stream: connect failed");
                    return failed(ReadError::Transient);
                }
                Err(_) => return failed(ReadError::Transient),
            },
        };
        match io {
            Io::Unix(s) => self.stream(s, before).await,
            Io::Tcp(s) => self.stream(s, before).await,
        }
    }

    /// The container's run state, or `None` if it is gone or the daemon did not answer.
    async fn run_state(&self) -> Option<RunState> {
        let limit = HEAD_TIMEOUT;
        let api = &self.api_version;
        match conn::run_state(&self.endpoint, api, &self.shared.id, limit).await {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(container = %self.shared.id, error = %e, "log stream: inspect failed");
                None
            }
        }
    }

    async fn stream<S: AsyncRead + AsyncWrite + Unpin + Pause>(
        &self,
        mut io: S,
        before: Option<RunState>,
    ) -> Outcome {
        let failed = |e: ReadError| Outcome {
            exit: ReaderExit::Failed(e),
        };
        let cancelled = Outcome {
            exit: ReaderExit::Cancelled,
        };
        let from = self.from.query();
        let request = format!(
            "GET /{}/containers/{}/logs?follow=1&stdout=1&stderr=1&timestamps=1{from} HTTP/1.1\r\n\
             Host: docker\r\nUser-Agent: log-capturer\r\n\r\n",
            self.api_version, self.shared.id
        );
        let mut buf = Vec::with_capacity(READ_MIN);
        let head = async {
            io.write_all(request.as_bytes()).await?;
            loop {
                if buf.capacity() - buf.len() < 1024 {
                    buf.reserve(READ_MIN);
                }
                if io.read_buf(&mut buf).await? == 0 {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "closed before the response head",
                    ));
                }
                match http::parse_head(&buf) {
                    Ok(Some(found)) => return Ok(found),
                    Ok(None) => {}
                    Err(e) => return Err(std::io::Error::other(e)),
                }
            }
        };
        let (head, head_len) = tokio::select! {
            _ = self.cancel.cancelled() => return cancelled,
            r = tokio::time::timeout(HEAD_TIMEOUT, head) => match r {
                Ok(Ok(found)) => found,
                Ok(Err(e)) => {
                    tracing::debug!(container = %self.shared.id, error = %e, "log stream: no response");
                    return failed(ReadError::Transient);
                }
                Err(_) => return failed(ReadError::Transient),
            },
        };
        match head.status {
            200 => {}
            404 => return failed(ReadError::NotFound),
            501 => {
                let why = String::from_utf8_lossy(&buf[head_len..]).trim().to_owned();
                tracing::warn!(container = %self.shared.id, name = %self.shared.meta.name, reason = %why, "logging driver cannot be read (501)");
                return failed(ReadError::Unsupported);
            }
            status => {
                let why = String::from_utf8_lossy(&buf[head_len..]).trim().to_owned();
                tracing::warn!(container = %self.shared.id, status, reason = %why, "log stream refused");
                return failed(ReadError::Transient);
            }
        }
        let start = {
            let mut m = self.shared.machine();
            let opened = Event::StreamOpened {
                generation: self.generation,
            };
            m.handle(self.clock.now(), opened);
            m.cursor().clone()
        };

        let mut body = Body::new(head.framing);
        let mut decoder = if self.shared.meta.tty {
            Decoder::Tty(TtySplitter::new(DAEMON_FRAME_PAYLOAD))
        } else {
            Decoder::Demux(Demux::new(self.shared.machine().config().partial_cap + 64))
        };
        // The bytes after the head are the first of the body.
        buf.drain(..head_len);
        // Lines pile up in one batch while reads find data waiting; the batch goes to the sink
        // before the reader waits (or once it is big), so a busy stream makes few large
        // batches and an idle one sends each line at once.
        let mut batch = Batch::new(&self.shared.encoder, start);
        // What the pace needs: how long the last wait on the poller took (none yet: idle), and
        // the bytes read since.
        let mut waited = Duration::MAX;
        let mut took = 0usize;
        let mut timer = Timer::default();
        loop {
            if !buf.is_empty() {
                let step = self.process(&buf, &mut body, &mut decoder, &mut batch);
                if !matches!(step, Step::Go) || batch.bytes.len() >= BATCH_BYTES {
                    if let Err(handed_back) = self.hand_over(&mut batch).await {
                        return handed_back;
                    }
                }
                if let Step::Stop(outcome) = step {
                    return outcome;
                }
            }
            if body.is_done() {
                break;
            }
            if self.cancel.is_cancelled() {
                let _ = self.hand_over(&mut batch).await;
                return cancelled;
            }
            // Grow the buffer while reads fill it, halve it while they use less than a quarter:
            // after a burst, 500 quiet readers must not each keep 64 KiB.
            let (used, capacity) = (buf.len(), buf.capacity());
            buf.clear();
            if used == capacity && capacity < READ_MAX {
                buf.reserve(capacity);
            } else if used < capacity / 4 && capacity > READ_MIN {
                buf.shrink_to((capacity / 2).max(READ_MIN));
            }
            let read = match io.read_buf(&mut buf).now_or_never() {
                Some(r) => r,
                None => {
                    if let Err(handed_back) = self.hand_over(&mut batch).await {
                        return handed_back;
                    }
                    // The daemon writes every frame with its own write, and a registered
                    // socket wakes this thread for each one: at a busy stream's rate that is
                    // one wake-up and one small read per line. Off the poller for a moment, the
                    // frames pile up in the socket instead and the next read takes them all.
                    // How long: `pace` (none for an idle stream, so a lone line is not
                    // delayed, nor in a backlog, so the daemon never waits for room).
                    let pause = pace::pause(self.pause, waited, took);
                    if !pause.is_zero() {
                        io = tokio::select! {
                            biased;
                            _ = self.cancel.cancelled() => return cancelled,
                            r = io.pause(timer.sleep(pause)) => match r {
                                Ok(io) => io,
                                Err(_) => return failed(ReadError::Transient),
                            },
                        };
                    }
                    let asked = std::time::Instant::now();
                    let r = tokio::select! {
                        biased;
                        _ = self.cancel.cancelled() => return cancelled,
                        r = io.read_buf(&mut buf) => r,
                    };
                    waited = asked.elapsed();
                    took = 0;
                    if waited >= TIMER_IDLE {
                        // Quiet now: its timerfd goes, so idle readers hold none.
                        timer = Timer::default();
                    }
                    r
                }
            };
            match read {
                Ok(0) if body.may_end_at_eof() => break,
                Ok(0) => {
                    let _ = self.hand_over(&mut batch).await;
                    tracing::debug!(container = %self.shared.id, "log stream: connection closed mid-body");
                    return failed(ReadError::Transient);
                }
                Ok(n) => took += n,
                Err(e) => {
                    let _ = self.hand_over(&mut batch).await;
                    tracing::debug!(container = %self.shared.id, error = %e, "log stream: read failed");
                    return failed(ReadError::Transient);
                }
            }
        }
        if let Err(handed_back) = self.hand_over(&mut batch).await {
            return handed_back;
        }
        // Stopped when the request went out and still stopped, with the same start time: the
        // container did not run during the read, so the daemon sent its whole log.
        let stopped = |s: &RunState| !s.running || s.restarting;
        let stopped_throughout = match before {
            Some(b) if stopped(&b) => self.run_state().await.is_some_and(|a| a == b),
            _ => false,
        };
        self.end_of_stream(&mut decoder, stopped_throughout, batch.taken)
            .await
    }

    /// Hands `batch` to the sink. If the sink could not take it (the reader was cancelled
    /// while the sink was full), the machine's cursor returns to the last batch the sink took,
    /// so that the next generation reads these lines again, and the reader must end.
    async fn hand_over(&self, batch: &mut Batch<'_>) -> Result<(), Outcome> {
        if batch.send(self).await {
            return Ok(());
        }
        if !self
            .shared
            .machine()
            .hand_back(self.generation, &batch.taken)
        {
            tracing::error!(container = %self.shared.id, generation = %self.generation, "lines the sink did not take could not be handed back");
        }
        Err(Outcome {
            exit: ReaderExit::Cancelled,
        })
    }

    /// Decodes one read's worth of bytes through the machine into `batch`.
    fn process<'e>(
        &self,
        bytes: &[u8],
        body: &mut Body,
        decoder: &mut Decoder,
        batch: &mut Batch<'e>,
    ) -> Step {
        let mut problem: Option<String> = None;
        let mut flow = Flow::Continue;
        {
            let now = self.clock.now();
            let mut m = self.shared.machine();
            let deadline = m.poll_timeout();
            let generation = self.generation;
            let mut feed = |stream: Stream, frame: &[u8], batch: &mut Batch<'e>| {
                if flow == Flow::Continue {
                    flow = m.handle_frame(now, generation, stream, frame, batch);
                }
            };
            let decoded = body.decode(bytes, |data| match decoder {
                Decoder::Demux(d) => {
                    if problem.is_none() {
                        if let Err(e) = d.push(data, |f| feed(f.stream, f.bytes, batch)) {
                            problem = Some(e.to_string());
                        }
                    }
                }
                Decoder::Tty(t) => t.push(data, |f| feed(f.stream, f.bytes, batch)),
            });
            if let Err(e) = decoded {
                problem.get_or_insert(http_problem(&e));
            }
            batch.cursor = Some(m.cursor().clone());
            // The supervisor arms its timers from the machine's deadline when it drives it.
            let waiting = m.has_commands() || m.poll_timeout() != deadline;
            drop(m);
            // Only the first poke since the supervisor took the last one sends the id: the
            // channel holds at most one per container (see `capturer_core::poke`).
            if waiting && self.shared.poke.raise() {
                let _ = self.poke.send(self.shared.id.clone());
            }
        }
        if let Some(why) = problem {
            tracing::warn!(container = %self.shared.id, generation = %self.generation, error = %why, "undecodable log stream; reopening from the cursor");
            return Step::Stop(Outcome {
                exit: ReaderExit::Failed(ReadError::BadFrame),
            });
        }
        match flow {
            Flow::Continue => Step::Go,
            // The machine retired this generation (a bad frame): it waits for our exit.
            Flow::Stop => Step::Stop(Outcome {
                exit: ReaderExit::Cancelled,
            }),
        }
    }

    /// The stream ended cleanly: the machine decides what unfinished lines mean.
    async fn end_of_stream(
        &self,
        decoder: &mut Decoder,
        stopped_throughout: bool,
        taken: Cursor,
    ) -> Outcome {
        let mut batch = Batch::new(&self.shared.encoder, taken);
        {
            let now = self.clock.now();
            let mut m = self.shared.machine();
            let generation = self.generation;
            let mut truncated = None;
            match decoder {
                Decoder::Demux(d) => truncated = d.finish().err(),
                Decoder::Tty(t) => t.finish(|f| {
                    m.handle_frame(now, generation, f.stream, f.bytes, &mut batch);
                }),
            }
            if let Some(e) = truncated {
                // A frame cut short: its line will be read again from the cursor.
                tracing::warn!(container = %self.shared.id, error = %e, "log stream ended inside a frame");
                drop(m);
                return Outcome {
                    exit: ReaderExit::Failed(ReadError::BadFrame),
                };
            }
            m.handle_end_of_stream(generation, stopped_throughout, &mut batch);
            batch.cursor = Some(m.cursor().clone());
        }
        if let Err(handed_back) = self.hand_over(&mut batch).await {
            return handed_back;
        }
        // Whether the container runs is not decided here: an inspect is only used to veto a
        // draining read's end (a start it shows did happen); the machine takes a stop as final
        // only from a `die` (see ContainerMachine's `stop_confirmed`).
        Outcome {
            exit: ReaderExit::CleanEnd,
        }
    }
}

/// A socket that can leave the runtime's poller for a while, so that data arriving meanwhile
/// does not wake the thread (tokio has no way to mute a registered socket's readiness).
trait Pause: Sized {
    /// Deregisters, awaits `sleep`, registers again; the socket stays open and keeps its data.
    async fn pause(self, sleep: impl std::future::Future<Output = ()>) -> std::io::Result<Self>;
}

impl Pause for UnixStream {
    async fn pause(self, sleep: impl std::future::Future<Output = ()>) -> std::io::Result<Self> {
        let std = self.into_std()?;
        sleep.await;
        UnixStream::from_std(std)
    }
}

impl Pause for TcpStream {
    async fn pause(self, sleep: impl std::future::Future<Output = ()>) -> std::io::Result<Self> {
        let std = self.into_std()?;
        sleep.await;
        TcpStream::from_std(std)
    }
}

fn http_problem(e: &HttpError) -> String {
    format!("bad HTTP framing: {e}")
}

enum Decoder {
    Demux(Demux),
    Tty(TtySplitter),
}

enum Step {
    Go,
    Stop(Outcome),
}

/// Lines encoded for the sink, the cursor that covers them, and what the cursor dropped.
struct Batch<'a> {
    encoder: &'a crate::output::LineEncoder,
    bytes: Vec<u8>,
    cursor: Option<Cursor>,
    /// The cursor of the last batch the sink took (at first, the generation's own): where the
    /// machine's cursor returns if a batch cannot be handed over.
    taken: Cursor,
    lines: [u64; 3],
    duplicates: u64,
}

impl<'a> Batch<'a> {
    fn new(encoder: &'a crate::output::LineEncoder, taken: Cursor) -> Batch<'a> {
        Batch {
            encoder,
            bytes: Vec::new(),
            cursor: None,
            taken,
            lines: [0; 3],
            duplicates: 0,
        }
    }

    /// Hands the lines to the sink with the cursor that covers them, waiting while the sink is
    /// full, and counts them; the batch is empty afterwards. False if the reader was cancelled
    /// while it waited: the lines were dropped, and the caller must hand them back.
    async fn send(&mut self, reader: &Reader) -> bool {
        let cursor = self.cursor.take();
        let lines = std::mem::take(&mut self.lines);
        let duplicates = std::mem::take(&mut self.duplicates);
        let taken = match cursor {
            Some(cursor) if !self.bytes.is_empty() => {
                let bytes = std::mem::take(&mut self.bytes);
                let id = reader.shared.id.clone();
                let sent = reader.sink.batch(id, bytes, cursor.clone(), &reader.cancel);
                match sent.await {
                    Handed::Taken => {
                        self.taken = cursor;
                        true
                    }
                    Handed::Cancelled => false,
                    Handed::Gone => {
                        tracing::error!(container = %reader.shared.id, "the sink is gone; lines not written");
                        false
                    }
                }
            }
            _ => true,
        };
        if taken {
            for s in Stream::ALL {
                if lines[s.index()] > 0 {
                    reader.metrics.add_lines(s, lines[s.index()]);
                }
            }
            if duplicates > 0 {
                reader.metrics.add_duplicates(duplicates);
            }
        }
        taken
    }
}

impl LineSink for Batch<'_> {
    fn line(&mut self, line: Message<'_>, pos: Position) {
        if self.bytes.capacity() == 0 {
            // Small: an idle stream sends one line per batch, and the sink's budget counts
            // what a batch holds, not what it uses.
            self.bytes.reserve(256);
        }
        self.encoder.encode(&mut self.bytes, &line, pos);
        self.lines[line.stream.index()] += 1;
    }

    fn dropped(&mut self, _stream: Stream, verdict: Verdict) {
        if matches!(verdict, Verdict::Duplicate | Verdict::Resent) {
            self.duplicates += 1;
        }
    }
}
