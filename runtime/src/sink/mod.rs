//! The sink: writes batches of JSON lines, then persists the cursors they cover.
//!
//! It runs on its own thread (file I/O blocks). Readers hand it batches through a channel
//! bounded in BYTES ([`QUEUE_BYTES`]): when it falls behind, readers wait for room instead of
//! memory growing. A batch carries the cursor that covers its lines; the sink records it as
//! flushed once the bytes are written, and every `checkpoint_every` fsyncs the files that took
//! data and then persists their cursors, so a persisted cursor never runs ahead of the lines on
//! disk.
//!
//! When busy, the sink drains everything queued, writes it, then pauses [`PAUSE`] before
//! looking again: batches pile up in the meantime without waking it, so a stream of small
//! batches costs one wake-up per pause instead of one per batch (measured in
//! `docs/benchmarks.md`: the wake-ups were a fifth of the capturer's CPU).

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use capturer_core::{Cursor, Timestamp};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

use crate::config::SinkKind;
use crate::metrics::Metrics;
use crate::state::StateStore;

/// Bytes of batches in flight between the readers and the sink, at most.
pub const QUEUE_BYTES: usize = 8 << 20;

/// A reader sends what it has once its batch reaches this size.
pub const BATCH_BYTES: usize = 64 * 1024;

/// How long the sink lets batches pile up after a busy drain.
const PAUSE: Duration = Duration::from_millis(2);

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
        /// Its share of the byte budget, given back once written.
        room: OwnedSemaphorePermit,
    },
    /// The machine checkpointed: persist at the next tick (the lines sent before are covered).
    Checkpoint {
        /// The container.
        id: Arc<str>,
        /// Its cursor.
        cursor: Cursor,
    },
    /// The container is gone: close its file and delete its cursor.
    Forget {
        /// The container.
        id: Arc<str>,
    },
    /// Write and persist everything before this, then end (even if a sender is still alive,
    /// as after a stop that timed out).
    Close,
}

/// The way into the sink, shared by the readers and the supervisor.
#[derive(Clone, Debug)]
pub struct SinkSender {
    tx: mpsc::UnboundedSender<SinkMsg>,
    room: Arc<Semaphore>,
    queued: Arc<AtomicUsize>,
}

impl SinkSender {
    /// Hands over a batch, first waiting for room in the byte budget. False if the sink is gone.
    pub async fn batch(&self, id: Arc<str>, bytes: Vec<u8>, cursor: Cursor) -> bool {
        // The allocation is what the queue costs in memory, so that is what the budget counts.
        let want = bytes.capacity().clamp(1, QUEUE_BYTES) as u32;
        let Ok(room) = self.room.clone().acquire_many_owned(want).await else {
            return false;
        };
        self.queued.fetch_add(1, Ordering::Relaxed);
        self.tx
            .send(SinkMsg::Batch {
                id,
                bytes,
                cursor,
                room,
            })
            .is_ok()
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
    thread: std::thread::JoinHandle<io::Result<()>>,
}

impl SinkHandle {
    /// Has the sink write and persist everything sent so far, and waits for it to end.
    /// Blocking: call it outside the async runtime.
    pub fn finish(self) -> io::Result<()> {
        // If the thread is gone already, join reports why.
        self.tx.control(SinkMsg::Close);
        drop(self.tx);
        self.thread
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("the sink thread panicked")))
    }
}

/// Where the bytes go.
enum Out {
    Files {
        dir: PathBuf,
        max_size: u64,
        open: HashMap<Arc<str>, OpenFile>,
    },
    Stdout(io::BufWriter<io::Stdout>),
}

struct OpenFile {
    file: File,
    size: u64,
    unsynced: bool,
    /// Batches handled since the last drain ended, written in one go (one `writev`) then.
    pending: Vec<Vec<u8>>,
    /// Bytes of `pending`'s first batch already written (a write stopped inside it).
    written: usize,
}

/// Per container: the last cursor whose lines are written, and the last one persisted.
#[derive(Default)]
struct Positions {
    flushed: Option<Cursor>,
    persisted: Option<Cursor>,
}

struct Sink {
    out: Out,
    store: StateStore,
    positions: HashMap<Arc<str>, Positions>,
    metrics: Arc<Metrics>,
    queued: Arc<AtomicUsize>,
    /// The discovery watermark, saved again with the time at every checkpoint (`alive`).
    watermark: Timestamp,
}

/// Starts the sink thread.
pub fn spawn(
    kind: SinkKind,
    dir: PathBuf,
    max_size: u64,
    store: StateStore,
    checkpoint_every: Duration,
    metrics: Arc<Metrics>,
    watermark: Timestamp,
) -> io::Result<SinkHandle> {
    let out = match kind {
        SinkKind::File => {
            fs::create_dir_all(&dir)?;
            Out::Files {
                dir,
                max_size,
                open: HashMap::new(),
            }
        }
        SinkKind::Stdout => Out::Stdout(io::BufWriter::with_capacity(BATCH_BYTES, io::stdout())),
    };
    let (tx, rx) = mpsc::unbounded_channel();
    let queued = Arc::new(AtomicUsize::new(0));
    let sink = Sink {
        out,
        store,
        positions: HashMap::new(),
        metrics,
        queued: queued.clone(),
        watermark,
    };
    let thread = std::thread::Builder::new()
        .name("sink".into())
        .spawn(move || sink.run(rx, checkpoint_every))?;
    let tx = SinkSender {
        tx,
        room: Arc::new(Semaphore::new(QUEUE_BYTES)),
        queued,
    };
    Ok(SinkHandle { tx, thread })
}

impl Sink {
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
            self.write_out();
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
        self.write_out();
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
                retry("open the output", || self.open(&id));
                match &mut self.out {
                    Out::Stdout(out) => retry("write to standard output", || out.write_all(&bytes)),
                    Out::Files { open, .. } => {
                        if let Some(f) = open.get_mut(&id) {
                            f.pending.push(bytes);
                        }
                    }
                }
                drop(room);
                self.queued.fetch_sub(1, Ordering::Relaxed);
                self.positions.entry(id).or_default().flushed = Some(cursor);
            }
            SinkMsg::Checkpoint { id, cursor } => {
                self.positions.entry(id).or_default().flushed = Some(cursor);
            }
            SinkMsg::Close => {}
            SinkMsg::Forget { id } => {
                if let Out::Files {
                    dir,
                    max_size,
                    open,
                } = &mut self.out
                {
                    if let Some(mut f) = open.remove(&id) {
                        retry("write", || write_file(dir, &id, *max_size, &mut f));
                        retry("sync", || f.file.sync_data());
                    }
                }
                self.positions.remove(&id);
                if let Err(e) = self.store.remove(&id) {
                    tracing::warn!(container = %id, error = %e, "could not delete the cursor of a removed container");
                }
            }
        }
    }

    /// Opens the container's output file if it is not open yet (nothing to do for stdout).
    fn open(&mut self, id: &str) -> io::Result<()> {
        if let Out::Files { dir, open, .. } = &mut self.out {
            if !open.contains_key(id) {
                let path = dir.join(format!("{id}.jsonl"));
                let file = OpenOptions::new().create(true).append(true).open(&path)?;
                let size = file.metadata()?.len();
                open.insert(
                    Arc::from(id),
                    OpenFile {
                        file,
                        size,
                        unsynced: false,
                        pending: Vec::new(),
                        written: 0,
                    },
                );
            }
        }
        Ok(())
    }

    /// Writes what the drain gathered: one write per file, rotating a file that would grow
    /// past the size limit first.
    fn write_out(&mut self) {
        match &mut self.out {
            Out::Stdout(out) => retry("write to standard output", || out.flush()),
            Out::Files {
                dir,
                max_size,
                open,
            } => {
                for (id, f) in open.iter_mut().filter(|(_, f)| !f.pending.is_empty()) {
                    retry("write", || write_file(dir, id, *max_size, f));
                }
            }
        }
    }

    /// Fsyncs the files that took data, then persists every cursor that moved.
    fn checkpoint(&mut self) {
        self.write_out();
        if let Out::Files { open, .. } = &mut self.out {
            for f in open.values_mut().filter(|f| f.unsynced) {
                retry("sync", || f.file.sync_data());
                f.unsynced = false;
            }
        }
        for (id, p) in &mut self.positions {
            if p.flushed.is_some() && p.flushed != p.persisted {
                if let Some(c) = &p.flushed {
                    retry("persist a cursor", || self.store.save(id, c));
                }
                p.persisted = p.flushed.clone();
            }
        }
        // The capturer runs at least until now: what starts after this and is gone by the next
        // start was missed.
        let alive = crate::clock::wall_now();
        let watermark = self.watermark;
        retry("persist the watermark", || {
            self.store.save_watch(watermark, alive)
        });
    }
}

/// Writes a file's pending batches with one `writev` (or as few as the kernel allows),
/// rotating the file first if they would take it past `max_size`.
fn write_file(dir: &Path, id: &str, max_size: u64, f: &mut OpenFile) -> io::Result<()> {
    if f.pending.is_empty() {
        return Ok(());
    }
    let total: usize = f.pending.iter().map(Vec::len).sum::<usize>() - f.written;
    // Rotate only between whole writes: after a partial one, the rest of its line comes next.
    if f.written == 0 && f.size > 0 && f.size + total as u64 > max_size {
        f.file.sync_data()?;
        let current = dir.join(format!("{id}.jsonl"));
        let mut n = 1;
        while dir.join(format!("{id}.jsonl.{n}")).exists() {
            n += 1;
        }
        fs::rename(&current, dir.join(format!("{id}.jsonl.{n}")))?;
        f.file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&current)?;
        f.size = 0;
    }
    while !f.pending.is_empty() {
        let slices: Vec<io::IoSlice<'_>> = std::iter::once(&f.pending[0][f.written..])
            .chain(f.pending[1..].iter().map(Vec::as_slice))
            .take(1024)
            .map(io::IoSlice::new)
            .collect();
        let n = match f.file.write_vectored(&slices) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        f.size += n as u64;
        f.unsynced = true;
        // What was written is not written again if the rest fails.
        let mut done = n + f.written;
        let mut whole = 0;
        while whole < f.pending.len() && done >= f.pending[whole].len() {
            done -= f.pending[whole].len();
            whole += 1;
        }
        f.pending.drain(..whole);
        f.written = done;
    }
    Ok(())
}

/// Repeats `op` until it succeeds: the sink never drops what it was given. While it fails,
/// the queue fills and the readers wait.
fn retry(what: &str, mut op: impl FnMut() -> io::Result<()>) {
    let mut wait = Duration::from_millis(100);
    loop {
        match op() {
            Ok(()) => return,
            Err(e) => {
                tracing::error!(error = %e, "sink could not {what}; retrying in {wait:?}");
                std::thread::sleep(wait);
                wait = (wait * 2).min(Duration::from_secs(5));
            }
        }
    }
}
