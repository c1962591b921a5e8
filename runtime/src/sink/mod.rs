//! The sink: takes batches of encoded lines with the cursor that covers them, delivers them to
//! an [`Output`], and persists a cursor only once the output says its lines are durable.
//!
//! It runs on its own thread (file I/O blocks). Readers hand it batches through a channel
//! bounded in BYTES ([`QUEUE_BYTES`]): when it falls behind, readers wait for room instead of
//! memory growing, and a reader cancelled while it waits hands its lines back to its machine
//! (they are read again) rather than holding a stop or a rotation.
//!
//! Durability flows one way (docs/durability.md): a batch is taken by the output and written;
//! every `checkpoint_every` the output is synced (fsync, or a server's acknowledgement), and
//! only then are the cursors of what it took persisted, each with the output's [`Mark`] so that
//! recovery after a crash reads only what came after it ([`recover`]).
//!
//! When busy, the sink drains everything queued, writes it, then pauses [`PAUSE`] before
//! looking again: batches pile up in the meantime without waking it, so a stream of small
//! batches costs one wake-up per pause instead of one per batch (measured in
//! `docs/benchmarks.md`: the wake-ups were a fifth of the capturer's CPU).

pub mod file;
mod loki;
mod nats;
mod pending;
pub mod recover;
mod retry;
mod stdout;

use std::collections::HashMap;
use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use capturer_core::{Cursor, Timestamp};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::config::{Settings, SinkKind};
use crate::metrics::Metrics;
use crate::state::{Mark, StateStore};

/// Bytes of batches in flight between the readers and the sink, at most.
pub const QUEUE_BYTES: usize = 8 << 20;

/// A reader sends what it has once its batch reaches this size.
pub const BATCH_BYTES: usize = 64 * 1024;

/// How long the sink lets batches pile up after a busy drain.
const PAUSE: Duration = Duration::from_millis(2);

/// What every sink does with lines; the delivery loop here does the rest (the queue, the
/// cursors, the checkpoints). Errors are retried by the loop: an output keeps what it took
/// until it is written.
pub trait Output: Send {
    /// Takes whole JSON lines of container `id` (none at a checkpoint), and the cursor that
    /// covers them, to be written by the next `write`.
    fn take(&mut self, id: &Arc<str>, bytes: Vec<u8>, cursor: &Cursor);
    /// Writes what was taken. A failed write keeps the rest for the next call.
    fn write(&mut self) -> io::Result<()>;
    /// Makes everything taken durable (written and fsynced, or acknowledged by a server).
    /// Only after it returns `Ok` are the cursors covering those lines persisted.
    fn sync(&mut self) -> io::Result<()>;
    /// Where container `id`'s output stands now, persisted with its cursor (see [`Mark`]);
    /// `None` for an output that cannot be read back.
    fn mark(&self, id: &str) -> Option<Mark>;
    /// The container is gone: write, sync and close what it has.
    fn close(&mut self, id: &str) -> io::Result<()>;
    /// For an output that cannot be read back: the cursors of what reached it, readable while
    /// a write is stuck, so that a stop that gives up can still persist them.
    fn written(&self) -> Option<stdout::Written> {
        None
    }
}

/// A message to the sink.
#[derive(Debug)]
pub enum SinkMsg {
    /// Lines of one container, and the cursor that covers them.
    Batch {
        /// The container.
        id: Arc<str>,
        /// JSON lines.
        bytes: Vec<u8>,
        /// The cursor after the last of these lines.
        cursor: Cursor,
        /// Its share of the byte budget, given back once taken by the output.
        room: OwnedSemaphorePermit,
    },
    /// The machine checkpointed: persist at the next tick (the lines sent before are covered).
    Checkpoint {
        /// The container.
        id: Arc<str>,
        /// Its cursor.
        cursor: Cursor,
    },
    /// The container is gone: close its output and delete its cursor.
    Forget {
        /// The container.
        id: Arc<str>,
    },
    /// Write and persist everything before this, then end (even if a sender is still alive,
    /// as after a stop that timed out).
    Close,
}

/// What became of a batch offered to the sink.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Handed {
    /// The sink has it.
    Taken,
    /// The reader was cancelled while the sink had no room: the batch was dropped, and its
    /// lines must be handed back to the machine.
    Cancelled,
    /// The sink has ended.
    Gone,
}

/// The way into the sink, shared by the readers and the supervisor.
#[derive(Clone, Debug)]
pub struct SinkSender {
    tx: mpsc::UnboundedSender<SinkMsg>,
    room: Arc<Semaphore>,
    queued: Arc<AtomicUsize>,
}

impl SinkSender {
    /// Hands over a batch, first waiting for room in the byte budget, unless `cancel` fires
    /// first.
    pub async fn batch(
        &self,
        id: Arc<str>,
        bytes: Vec<u8>,
        cursor: Cursor,
        cancel: &CancellationToken,
    ) -> Handed {
        // The allocation is what the queue costs in memory, so that is what the budget counts.
        let want = bytes.capacity().clamp(1, QUEUE_BYTES) as u32;
        let room = tokio::select! {
            biased;
            room = self.room.clone().acquire_many_owned(want) => room,
            _ = cancel.cancelled() => return Handed::Cancelled,
        };
        let Ok(room) = room else {
            return Handed::Gone;
        };
        self.queued.fetch_add(1, Ordering::Relaxed);
        let msg = SinkMsg::Batch {
            id,
            bytes,
            cursor,
            room,
        };
        if self.tx.send(msg).is_ok() {
            Handed::Taken
        } else {
            Handed::Gone
        }
    }

    /// Hands over a control message (no lines), behind everything sent before it.
    pub fn control(&self, msg: SinkMsg) -> bool {
        self.tx.send(msg).is_ok()
    }
}

/// The running sink thread.
pub struct SinkHandle {
    /// Where to send.
    pub tx: SinkSender,
    done: std::sync::mpsc::Receiver<io::Result<()>>,
    thread: std::thread::JoinHandle<()>,
    written: Option<stdout::Written>,
    store: StateStore,
}

/// The sink did not finish within the time it was given.
#[derive(Debug)]
pub struct StillWriting;

impl SinkHandle {
    /// Has the sink write and persist everything sent so far, and waits up to `limit` for it
    /// to end. Blocking: call it outside the async runtime. On `StillWriting` the thread is
    /// left as it is (stuck on a full disk or an unread pipe): what it had not made durable
    /// has no persisted cursor, so the next start reads it again; for an output that cannot be
    /// read back, the cursors of what did reach it are persisted here.
    pub fn finish(self, limit: Duration) -> Result<io::Result<()>, StillWriting> {
        self.tx.control(SinkMsg::Close);
        drop(self.tx);
        match self.done.recv_timeout(limit) {
            Ok(result) => {
                let _ = self.thread.join();
                Ok(result)
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                if let Some(written) = &self.written {
                    let written = written.lock().unwrap_or_else(|e| e.into_inner());
                    for (id, cursor) in written.iter() {
                        if let Err(e) = self.store.save(id, cursor, None) {
                            tracing::error!(container = %id, error = %e, "cannot persist the cursor of what reached the output; those lines will be written again");
                        }
                    }
                }
                Err(StillWriting)
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                let _ = self.thread.join();
                Ok(Err(io::Error::other("the sink thread panicked")))
            }
        }
    }
}

/// Per container: the last cursor whose lines the output took, and the last one persisted.
#[derive(Default)]
struct Positions {
    taken: Option<Cursor>,
    persisted: Option<Cursor>,
}

/// The delivery loop's state.
struct Delivery {
    out: Box<dyn Output>,
    retry: retry::Retry,
    store: StateStore,
    positions: HashMap<Arc<str>, Positions>,
    metrics: Arc<Metrics>,
    queued: Arc<AtomicUsize>,
    /// The discovery watermark, saved again with the time at every checkpoint (`alive`).
    watermark: Timestamp,
}

/// Starts the sink thread for `settings.sink`.
pub fn spawn(
    settings: &Settings,
    store: StateStore,
    metrics: Arc<Metrics>,
    watermark: Timestamp,
) -> io::Result<SinkHandle> {
    let out: Box<dyn Output> = match settings.sink {
        SinkKind::File => Box::new(file::FileOutput::new(
            settings.output.clone(),
            settings.max_file_size,
            settings.max_files.map(|max_files| file::Retention {
                max_files,
                state_dir: settings.state_dir.clone(),
            }),
        )?),
        SinkKind::Stdout => Box::new(stdout::StdoutOutput::new()?),
        SinkKind::Nats => Box::new(nats::NatsOutput::new(settings.nats.clone())?),
        SinkKind::Loki => Box::new(loki::LokiOutput::new(
            settings.loki.clone(),
            settings.docker_host.clone(),
            metrics.clone(),
        )?),
    };
    let checkpoint_every = settings.checkpoint_every;
    let written = out.written();
    let (tx, rx) = mpsc::unbounded_channel();
    let queued = Arc::new(AtomicUsize::new(0));
    let delivery = Delivery {
        out,
        retry: retry::Retry::new(metrics.clone()),
        store: store.clone(),
        positions: HashMap::new(),
        metrics,
        queued: queued.clone(),
        watermark,
    };
    let (done_tx, done) = std::sync::mpsc::channel();
    let thread = std::thread::Builder::new()
        .name("sink".into())
        .spawn(move || {
            let _ = done_tx.send(delivery.run(rx, checkpoint_every));
        })?;
    let tx = SinkSender {
        tx,
        room: Arc::new(Semaphore::new(QUEUE_BYTES)),
        queued,
    };
    Ok(SinkHandle {
        tx,
        done,
        thread,
        written,
        store,
    })
}

impl Delivery {
    fn run(mut self, mut rx: mpsc::UnboundedReceiver<SinkMsg>, every: Duration) -> io::Result<()> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()?;
        let mut next_checkpoint = Instant::now() + every;
        'run: loop {
            // Wait for work, or for the next checkpoint.
            let first = rt.block_on(async {
                tokio::select! {
                    msg = rx.recv() => Some(msg),
                    _ = tokio::time::sleep_until(next_checkpoint.into()) => None,
                }
            });
            let mut handled = 0;
            match first {
                Some(Some(SinkMsg::Close) | None) => break 'run,
                Some(Some(msg)) => {
                    self.handle(msg);
                    handled += 1;
                }
                None => {}
            }
            // Drain what else is queued, without waiting.
            loop {
                match rx.try_recv() {
                    Ok(SinkMsg::Close) | Err(mpsc::error::TryRecvError::Disconnected) => break 'run,
                    Ok(msg) => {
                        self.handle(msg);
                        handled += 1;
                    }
                    Err(mpsc::error::TryRecvError::Empty) => break,
                }
            }
            let out = &mut self.out;
            self.retry.run("write", || out.write());
            self.metrics
                .set_queue_depth(self.queued.load(Ordering::Relaxed));
            if Instant::now() >= next_checkpoint {
                self.checkpoint();
                next_checkpoint = Instant::now() + every;
            }
            if handled > 1 {
                // Busy: let the next batches pile up without waking this thread for each.
                std::thread::sleep(PAUSE);
            }
        }
        self.checkpoint();
        Ok(())
    }

    fn handle(&mut self, msg: SinkMsg) {
        match msg {
            SinkMsg::Batch {
                id,
                bytes,
                cursor,
                room,
            } => {
                self.metrics.add_bytes(bytes.len() as u64);
                self.metrics
                    .delivered(&id, &cursor, crate::clock::wall_now());
                self.out.take(&id, bytes, &cursor);
                drop(room);
                self.queued.fetch_sub(1, Ordering::Relaxed);
                self.positions.entry(id).or_default().taken = Some(cursor);
            }
            SinkMsg::Checkpoint { id, cursor } => {
                self.out.take(&id, Vec::new(), &cursor);
                self.positions.entry(id).or_default().taken = Some(cursor);
            }
            SinkMsg::Close => {}
            SinkMsg::Forget { id } => {
                let out = &mut self.out;
                self.retry.run("close an output", || out.close(&id));
                self.positions.remove(&id);
                self.metrics.forgotten(&id);
                if let Err(e) = self.store.remove(&id) {
                    tracing::warn!(container = %id, error = %e, "could not delete the cursor of a removed container");
                }
            }
        }
    }

    /// Makes everything taken durable, then persists every cursor that moved, with the mark of
    /// where its output stands: a persisted cursor never runs ahead of durable lines.
    fn checkpoint(&mut self) {
        let out = &mut self.out;
        self.retry.run("sync", || out.sync());
        for (id, p) in &mut self.positions {
            if p.taken.is_some() && p.taken != p.persisted {
                if let Some(c) = &p.taken {
                    let mark = self.out.mark(id);
                    let store = &self.store;
                    self.retry
                        .run("persist a cursor", || store.save(id, c, mark));
                }
                p.persisted = p.taken.clone();
            }
        }
        self.metrics.checkpointed(self.positions.keys());
        // The capturer runs at least until now: what starts after this and is gone by the next
        // start was missed.
        let alive = crate::clock::wall_now();
        let watermark = self.watermark;
        let store = &self.store;
        self.retry.run("persist the watermark", || {
            store.save_watch(watermark, alive)
        });
    }
}
