//! The sink: writes batches of JSON lines, then persists the cursors they cover.
//!
//! It runs on its own thread (file I/O blocks), fed by a bounded channel: when it falls
//! behind, the readers wait on `send` instead of memory growing. A batch carries the cursor
//! that covers its lines; the sink records it as flushed once the bytes are written, and every
//! `checkpoint_every` fsyncs the files that took data and then persists their cursors, so a
//! persisted cursor never runs ahead of the lines on disk.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use capturer_core::Cursor;
use tokio::sync::mpsc;

use crate::config::SinkKind;
use crate::metrics::Metrics;
use crate::state::StateStore;

/// Batches in flight between the readers and the sink (each at most [`BATCH_BYTES`] or so).
pub const QUEUE: usize = 64;

/// A reader sends what it has once its batch reaches this size.
pub const BATCH_BYTES: usize = 64 * 1024;

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

/// The running sink thread.
pub struct SinkHandle {
    /// Where to send.
    pub tx: mpsc::Sender<SinkMsg>,
    thread: std::thread::JoinHandle<io::Result<()>>,
}

impl SinkHandle {
    /// Has the sink write and persist everything sent so far, and waits for it to end.
    /// Blocking: call it outside the async runtime.
    pub fn finish(self) -> io::Result<()> {
        // If the thread is gone already, join reports why.
        let _ = self.tx.blocking_send(SinkMsg::Close);
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
    Stdout(io::Stdout),
}

struct OpenFile {
    file: File,
    size: u64,
    unsynced: bool,
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
}

/// Starts the sink thread.
pub fn spawn(
    kind: SinkKind,
    dir: PathBuf,
    max_size: u64,
    store: StateStore,
    checkpoint_every: Duration,
    metrics: Arc<Metrics>,
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
        SinkKind::Stdout => Out::Stdout(io::stdout()),
    };
    let (tx, rx) = mpsc::channel(QUEUE);
    let sink = Sink {
        out,
        store,
        positions: HashMap::new(),
        metrics,
    };
    let thread = std::thread::Builder::new()
        .name("sink".into())
        .spawn(move || sink.run(rx, checkpoint_every))?;
    Ok(SinkHandle { tx, thread })
}

impl Sink {
    fn run(mut self, mut rx: mpsc::Receiver<SinkMsg>, every: Duration) -> io::Result<()> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()?;
        rt.block_on(async {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    msg = rx.recv() => match msg {
                        Some(SinkMsg::Close) | None => break,
                        Some(msg) => self.handle(msg),
                    },
                    _ = tick.tick() => self.checkpoint(),
                }
                self.metrics
                    .set_queue_depth(QUEUE - rx.capacity().min(QUEUE));
            }
        });
        self.checkpoint();
        Ok(())
    }

    fn handle(&mut self, msg: SinkMsg) {
        match msg {
            SinkMsg::Batch { id, bytes, cursor } => {
                retry("write", || self.write(&id, &bytes));
                self.metrics.add_bytes(bytes.len() as u64);
                self.positions.entry(id).or_default().flushed = Some(cursor);
            }
            SinkMsg::Checkpoint { id, cursor } => {
                self.positions.entry(id).or_default().flushed = Some(cursor);
            }
            SinkMsg::Close => {}
            SinkMsg::Forget { id } => {
                if let Out::Files { open, .. } = &mut self.out {
                    if let Some(f) = open.remove(&id) {
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

    fn write(&mut self, id: &str, bytes: &[u8]) -> io::Result<()> {
        match &mut self.out {
            Out::Stdout(out) => {
                let mut lock = out.lock();
                lock.write_all(bytes)?;
                lock.flush()
            }
            Out::Files {
                dir,
                max_size,
                open,
            } => {
                let f = match open.get_mut(id) {
                    Some(f) => f,
                    None => {
                        let path = dir.join(format!("{id}.jsonl"));
                        let file = OpenOptions::new().create(true).append(true).open(&path)?;
                        let size = file.metadata()?.len();
                        open.entry(Arc::from(id)).or_insert(OpenFile {
                            file,
                            size,
                            unsynced: false,
                        })
                    }
                };
                if f.size > 0 && f.size + bytes.len() as u64 > *max_size {
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
                f.file.write_all(bytes)?;
                f.size += bytes.len() as u64;
                f.unsynced = true;
                Ok(())
            }
        }
    }

    /// Fsyncs the files that took data, then persists every cursor that moved.
    fn checkpoint(&mut self) {
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
    }
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
