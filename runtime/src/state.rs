//! The position store: one cursor file per container, replaced atomically.
//!
//! A cursor is written to a temporary file, fsynced, renamed over the old one, and the
//! directory fsynced, so a crash leaves either the old cursor or the new one, never half.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use capturer_core::{Cursor, Timestamp};
use serde::{Deserialize, Serialize};

/// The cursors of all containers, under one directory.
#[derive(Clone, Debug)]
pub struct StateStore {
    dir: PathBuf,
}

#[derive(Serialize, Deserialize)]
struct Saved {
    version: u32,
    container_id: String,
    cursor: Cursor,
    /// Absent in files written before the sink recorded where its output stood.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    output: Option<Mark>,
}

/// Where a container's output stood when its cursor was persisted: the output file (by inode,
/// which a rename keeps) and its length then. Recovery reads only what came after.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mark {
    /// The file's inode number.
    pub file: u64,
    /// Its length when the cursor was persisted: every line before it is covered.
    pub len: u64,
}

/// A container's persisted cursor, and where its output stood then (for sinks that say).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SavedCursor {
    /// The cursor.
    pub cursor: Cursor,
    /// Where the output stood.
    pub mark: Option<Mark>,
}

const VERSION: u32 = 1;

/// The watch's file; not a `.json` cursor file, so `load_all` passes it by.
const WATCH: &str = "watermark";

/// What the capturer knows of its own past on this host, for discovery.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Watch {
    /// When it first started here (`capturer_core::discovery`'s watermark): never moves.
    pub watermark: Timestamp,
    /// The last time it was known running (saved at every checkpoint); `None` on a first
    /// start. Containers started after it and gone by now were missed.
    pub alive: Option<Timestamp>,
}

#[derive(Serialize, Deserialize)]
struct SavedWatch {
    version: u32,
    watermark: Timestamp,
    alive: Timestamp,
}

impl StateStore {
    /// The store under `dir`, created if missing.
    pub fn open(dir: &Path) -> io::Result<StateStore> {
        fs::create_dir_all(dir)?;
        // A crash between a temporary file's creation and its rename leaves it behind.
        for entry in fs::read_dir(dir)?.flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "tmp") {
                let _ = fs::remove_file(path);
            }
        }
        Ok(StateStore {
            dir: dir.to_owned(),
        })
    }

    /// The store under `dir` as it is, to read only: nothing is created or cleaned up (the
    /// audit must not change what it judges).
    pub fn existing(dir: &Path) -> StateStore {
        StateStore {
            dir: dir.to_owned(),
        }
    }

    fn path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.json"))
    }

    /// Every saved cursor. Unreadable files are reported and skipped (their container starts
    /// over per `--from`), never fatal.
    pub fn load_all(&self) -> io::Result<HashMap<String, SavedCursor>> {
        let mut out = HashMap::new();
        for entry in fs::read_dir(&self.dir)? {
            let path = entry?.path();
            if path.extension().is_none_or(|e| e != "json") {
                continue;
            }
            match fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|b| serde_json::from_slice::<Saved>(&b).map_err(|e| e.to_string()))
            {
                Ok(s) if s.version == VERSION => {
                    let saved = SavedCursor {
                        cursor: s.cursor,
                        mark: s.output,
                    };
                    out.insert(s.container_id, saved);
                }
                Ok(s) => {
                    tracing::warn!(path = %path.display(), version = s.version, "cursor file of an unknown version; ignored")
                }
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "unreadable cursor file; ignored")
                }
            }
        }
        Ok(out)
    }

    /// Replaces the cursor of `id` (and where its output stood) atomically and durably.
    pub fn save(&self, id: &str, cursor: &Cursor, mark: Option<Mark>) -> io::Result<()> {
        let saved = Saved {
            version: VERSION,
            container_id: id.to_owned(),
            cursor: cursor.clone(),
            output: mark,
        };
        let bytes = serde_json::to_vec(&saved).map_err(io::Error::other)?;
        self.replace(&format!("{id}.json"), &bytes)
    }

    /// Writes `name` through a temporary file, fsync, rename, fsync of the directory.
    fn replace(&self, name: &str, bytes: &[u8]) -> io::Result<()> {
        // A name of its own per write: a stop that gives up persists from another thread than
        // the sink's, which may still be writing the same cursor.
        static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = self.dir.join(format!(".{name}.{n}.tmp"));
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, self.dir.join(name))?;
        File::open(&self.dir)?.sync_all()
    }

    /// The watch of an earlier run, or a new one begun `now` and saved at once (a first start):
    /// see [`Watch`]. An unreadable file is reported and taken as a first start.
    pub fn begin_watch(&self, now: Timestamp) -> Watch {
        if let Some(w) = self.load_watch() {
            return w;
        }
        let w = Watch {
            watermark: now,
            alive: None,
        };
        if let Err(e) = self.save_watch(w.watermark, now) {
            tracing::error!(error = %e, "cannot save the watermark; the next start will take itself for a first one");
        }
        w
    }

    fn load_watch(&self) -> Option<Watch> {
        let path = self.dir.join(WATCH);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return None,
            Err(e) => {
                tracing::error!(path = %path.display(), error = %e, "unreadable watermark; taken as a first start");
                return None;
            }
        };
        match serde_json::from_slice::<SavedWatch>(&bytes) {
            Ok(w) if w.version == VERSION => Some(Watch {
                watermark: w.watermark,
                alive: Some(w.alive),
            }),
            Ok(w) => {
                tracing::error!(path = %path.display(), version = w.version, "watermark of an unknown version; taken as a first start");
                None
            }
            Err(e) => {
                tracing::error!(path = %path.display(), error = %e, "unreadable watermark; taken as a first start");
                None
            }
        }
    }

    /// Replaces the watch file atomically and durably: the watermark, and `alive`, a time the
    /// capturer was running at.
    pub fn save_watch(&self, watermark: Timestamp, alive: Timestamp) -> io::Result<()> {
        let w = SavedWatch {
            version: VERSION,
            watermark,
            alive,
        };
        let bytes = serde_json::to_vec(&w).map_err(io::Error::other)?;
        self.replace(WATCH, &bytes)
    }

    /// Deletes the cursor of `id` (its container is gone).
    pub fn remove(&self, id: &str) -> io::Result<()> {
        match fs::remove_file(self.path(id)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use capturer_core::{Stream, StreamSet};

    #[test]
    fn saves_loads_and_removes() {
        let dir = std::env::temp_dir().join(format!("lc-state-{}", std::process::id()));
        let store = StateStore::open(&dir).unwrap();
        let mut c = Cursor::new(Timestamp(5), StreamSet::MULTIPLEXED);
        c.accept(Stream::Stderr, Timestamp(9));
        let mark = Mark { file: 7, len: 99 };
        store.save("abc", &c, Some(mark)).unwrap();
        std::fs::write(dir.join("junk.json"), b"{not json").unwrap();
        let all = store.load_all().unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!(all["abc"].cursor.position(Stream::Stderr).ts, Timestamp(9));
        assert_eq!(all["abc"].cursor.since(), c.since());
        assert_eq!(all["abc"].mark, Some(mark));
        // Written as before marks existed: no `output` key at all.
        store.save("old", &c, None).unwrap();
        let text = std::fs::read_to_string(dir.join("old.json")).unwrap();
        assert!(!text.contains("output"), "{text}");
        let old = store.load_all().unwrap().remove("old");
        assert_eq!(
            old.map(|o| o.mark),
            Some(None),
            "a file without a mark still loads"
        );
        store.remove("old").unwrap();
        store.remove("abc").unwrap();
        store.remove("abc").unwrap();
        assert!(store.load_all().unwrap().is_empty());
        let first = store.begin_watch(Timestamp(42));
        assert_eq!(first.watermark, Timestamp(42));
        assert_eq!(first.alive, None, "a first start");
        let again = store.begin_watch(Timestamp(99));
        assert_eq!(again.watermark, Timestamp(42), "the watermark never moves");
        assert_eq!(again.alive, Some(Timestamp(42)));
        store.save_watch(Timestamp(42), Timestamp(77)).unwrap();
        assert_eq!(store.begin_watch(Timestamp(99)).alive, Some(Timestamp(77)));
        assert!(store.load_all().unwrap().is_empty(), "not a cursor");
        std::fs::write(dir.join("watermark"), b"garbage").unwrap();
        assert_eq!(
            store.begin_watch(Timestamp(100)).watermark,
            Timestamp(100),
            "unreadable: taken as a first start"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
