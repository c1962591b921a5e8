//! The file output: one JSON-lines file per container, `<id>.jsonl`, renamed to
//! `<id>.jsonl.<n>` when it would grow past the size limit (`n` is one more than the highest
//! so far, so the highest is the newest). Durable means written and fsynced.
//!
//! Retention (`--max-files N`): at most N rotated files per container are kept besides the live
//! one, the oldest deleted first; but a file is deleted only once every line it holds is
//! covered by the container's persisted cursor, since recovery reads back what lies beyond it
//! ([`super::recover`]). The persisted cursor's [`Mark`] names the output file it stood in:
//! every rotated file older than that one is covered. The file holding the mark is never
//! deleted (were its inode reused by a new live file, the mark would point into the wrong
//! file), so while checkpoints lag behind rotations a container may hold a few more than N for
//! a moment; each checkpoint deletes what it covers.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use capturer_core::Cursor;
use serde::Deserialize;

use super::pending::Pending;
use super::Output;
use crate::state::Mark;

/// The file a container's lines are appended to.
pub fn current_path(dir: &Path, id: &str) -> PathBuf {
    dir.join(format!("{id}.jsonl"))
}

/// A container's rotated files, oldest first, with their numbers.
pub fn rotated_paths(dir: &Path, id: &str) -> io::Result<Vec<(u64, PathBuf)>> {
    let prefix = format!("{id}.jsonl.");
    let mut found = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(n) = name
            .to_str()
            .and_then(|n| n.strip_prefix(&prefix))
            .and_then(|n| n.parse::<u64>().ok())
        else {
            continue;
        };
        found.push((n, entry.path()));
    }
    found.sort();
    Ok(found)
}

/// How many rotated files to keep, and where the cursors that say which are covered are.
#[derive(Clone, Debug)]
pub struct Retention {
    /// Rotated files kept per container besides the live one.
    pub max_files: u64,
    /// The state directory (`<id>.json`, see `crate::state`).
    pub state_dir: PathBuf,
}

/// Files under one directory, rotated at `max_size`.
pub struct FileOutput {
    dir: PathBuf,
    max_size: u64,
    retention: Option<Retention>,
    files: HashMap<Arc<str>, OutFile>,
}

/// One container's file: opened at its first write.
#[derive(Default)]
struct OutFile {
    open: Option<Opened>,
    pending: Pending,
    /// It may hold more rotated files than the retention keeps.
    over: bool,
}

struct Opened {
    file: File,
    inode: u64,
    size: u64,
    unsynced: bool,
}

impl FileOutput {
    /// Files under `dir` (created if missing), each container's rotated ones pruned to
    /// `retention` (`None`: all kept).
    pub fn new(
        dir: PathBuf,
        max_size: u64,
        retention: Option<Retention>,
    ) -> io::Result<FileOutput> {
        fs::create_dir_all(&dir)?;
        Ok(FileOutput {
            dir,
            max_size,
            retention,
            files: HashMap::new(),
        })
    }

    /// Deletes the rotated files of the containers over the limit that their persisted cursors
    /// cover. A failure is reported, never fatal: the files stay, and the next try may do.
    fn prune(&mut self) {
        let Some(keep) = &self.retention else {
            return;
        };
        for (id, f) in self.files.iter_mut().filter(|(_, f)| f.over) {
            match prune(&self.dir, id, keep) {
                Ok(over) => f.over = over,
                Err(e) => {
                    tracing::warn!(container = %id, error = %e, "cannot delete old rotated output files; kept for now");
                }
            }
        }
    }
}

/// What `crate::state` persists that retention reads: where the output stood.
#[derive(Deserialize)]
struct PersistedMark {
    #[serde(default)]
    output: Option<Mark>,
}

/// Deletes container `id`'s oldest rotated files beyond `keep.max_files` that its persisted
/// cursor covers; returns whether it still has more than that.
fn prune(dir: &Path, id: &str, keep: &Retention) -> io::Result<bool> {
    let rotated = rotated_paths(dir, id)?;
    let excess = rotated.len().saturating_sub(keep.max_files as usize);
    if excess == 0 {
        return Ok(false);
    }
    let mark = match fs::read(keep.state_dir.join(format!("{id}.json"))) {
        Ok(bytes) => serde_json::from_slice::<PersistedMark>(&bytes)
            .ok()
            .and_then(|p| p.output),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(e),
    };
    // No mark: nothing is known to be covered.
    let Some(mark) = mark else {
        return Ok(true);
    };
    let inode = |p: &Path| fs::metadata(p).map(|m| m.ino()).ok();
    let covered = if inode(&current_path(dir, id)) == Some(mark.file) {
        rotated.len()
    } else {
        // Those older than the file holding the mark; none if it is not found.
        rotated
            .iter()
            .position(|(_, p)| inode(p) == Some(mark.file))
            .unwrap_or(0)
    };
    let delete = excess.min(covered);
    for (_, path) in &rotated[..delete] {
        match fs::remove_file(path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    Ok(excess > delete)
}

impl Output for FileOutput {
    fn take(&mut self, id: &Arc<str>, bytes: Vec<u8>, _cursor: &Cursor) {
        self.files
            .entry(id.clone())
            .or_default()
            .pending
            .push(bytes);
    }

    fn write(&mut self) -> io::Result<()> {
        let mut rotated = false;
        for (id, f) in self.files.iter_mut().filter(|(_, f)| !f.pending.is_empty()) {
            rotated |= f.write(&self.dir, id, self.max_size)?;
        }
        if rotated {
            self.prune();
        }
        Ok(())
    }

    fn sync(&mut self) -> io::Result<()> {
        self.write()?;
        // The cursors persisted at the last checkpoint may cover more now.
        self.prune();
        for o in self.files.values_mut().filter_map(|f| f.open.as_mut()) {
            if o.unsynced {
                o.file.sync_data()?;
                o.unsynced = false;
            }
        }
        Ok(())
    }

    fn mark(&self, id: &str) -> Option<Mark> {
        match self.files.get(id).and_then(|f| f.open.as_ref()) {
            Some(o) => Some(Mark {
                file: o.inode,
                len: o.size,
            }),
            // Not written by this process: the file as an earlier one left it (recovery has
            // raised the cursor over all of it).
            None => fs::metadata(current_path(&self.dir, id))
                .ok()
                .map(|m| Mark {
                    file: m.ino(),
                    len: m.len(),
                }),
        }
    }

    fn close(&mut self, id: &str) -> io::Result<()> {
        if let Some(f) = self.files.get_mut(id) {
            f.write(&self.dir, id, self.max_size)?;
            if let Some(o) = &f.open {
                o.file.sync_data()?;
            }
        }
        self.files.remove(id);
        Ok(())
    }
}

impl OutFile {
    /// Writes the pending batches with as few `writev`s as the kernel allows, rotating the file
    /// first if they would take it past `max_size`; returns whether it rotated (or opened the
    /// file: an earlier run may have left more rotated files than the retention keeps).
    fn write(&mut self, dir: &Path, id: &str, max_size: u64) -> io::Result<bool> {
        if self.pending.is_empty() {
            return Ok(false);
        }
        let current = current_path(dir, id);
        let mut event = false;
        let o = match &mut self.open {
            Some(o) => o,
            None => {
                event = true;
                self.open.insert(Opened::append(&current)?)
            }
        };
        let total = self.pending.len() as u64;
        // Rotate only between whole lines: after a partial write, the rest of its line follows.
        if self.pending.at_line_start() && o.size > 0 && o.size + total > max_size {
            o.file.sync_data()?;
            // One more than the highest: the numbers keep the files' order even if an operator
            // deleted old ones (recovery reads them newest first).
            let n = rotated_paths(dir, id)?.last().map_or(1, |(n, _)| n + 1);
            fs::rename(&current, dir.join(format!("{id}.jsonl.{n}")))?;
            *o = Opened::append(&current)?;
            event = true;
        }
        self.over |= event;
        self.pending.write_to(&mut o.file, |n| {
            o.size += n as u64;
            o.unsynced = true;
        })?;
        Ok(event)
    }
}

impl Opened {
    fn append(path: &Path) -> io::Result<Opened> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let meta = file.metadata()?;
        Ok(Opened {
            file,
            inode: meta.ino(),
            size: meta.len(),
            unsynced: false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::record_position;
    use crate::state::StateStore;
    use capturer_core::{Position, Stream, StreamSet, Timestamp};

    fn record(i: u64) -> Vec<u8> {
        format!(
            "{{\"container_id\":\"c\",\"container_name\":\"n\",\"image\":\"i\",\"ts\":\"t\",\"stream\":\"stdout\",\"pos\":\"{i}.1\",\"message\":\"{}\"}}\n",
            "x".repeat(60)
        )
        .into_bytes()
    }

    /// The records every file of `c` holds, by number, and how many rotated files there are.
    fn held(dir: &Path) -> (Vec<u64>, usize) {
        let rotated = rotated_paths(dir, "c").unwrap();
        let mut all = Vec::new();
        let files = rotated
            .iter()
            .map(|(_, p)| p.clone())
            .chain([current_path(dir, "c")]);
        for p in files {
            let text = fs::read(&p).unwrap_or_default();
            for line in text.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                let (_, pos) = record_position(line).unwrap();
                all.push(pos.ts.0);
            }
        }
        (all, rotated.len())
    }

    #[test]
    fn max_files_deletes_only_what_the_persisted_cursor_covers() {
        let base = std::env::temp_dir().join(format!("lc-file-retention-{}", std::process::id()));
        let _ = fs::remove_dir_all(&base);
        let (dir, state) = (base.join("out"), base.join("state"));
        let store = StateStore::open(&state).unwrap();
        // Three records a file: a rotation every third record.
        let size = record(0).len() as u64 * 3;
        let keep = Retention {
            max_files: 2,
            state_dir: state.clone(),
        };
        let mut out = FileOutput::new(dir.clone(), size, Some(keep)).unwrap();
        let id: Arc<str> = Arc::from("c");
        let cursor = Cursor::new(Timestamp(0), StreamSet::for_tty(true));
        // The sink persists what a checkpoint made durable; here the cursor lags by a
        // checkpoint, and checkpoints come every 7 records, so rotations outrun them.
        let mut persisted: Option<(u64, Mark)> = None;
        let mut pending: Option<(u64, Mark)> = None;
        let mut most = 0;
        for i in 1..=400u64 {
            out.take(&id, record(i), &cursor);
            out.write().unwrap();
            if i % 7 == 0 {
                out.sync().unwrap();
                if let Some((upto, mark)) = pending.take() {
                    store.save("c", &cursor, Some(mark)).unwrap();
                    persisted = Some((upto, mark));
                }
                pending = Some((i, out.mark("c").unwrap()));
            }
            let (records, rotated) = held(&dir);
            most = most.max(rotated);
            // Nothing beyond the persisted cursor is ever deleted: every record after it is
            // still in the files, in order, and so is every record if none was persisted.
            let after = persisted.map_or(0, |(upto, _)| upto);
            let expected: Vec<u64> = (after + 1..=i).collect();
            let kept: Vec<u64> = records.iter().copied().filter(|r| *r > after).collect();
            assert_eq!(kept, expected, "after record {i}");
            assert!(records.windows(2).all(|w| w[0] + 1 == w[1]), "in order");
        }
        // Checkpoints that catch up delete down to the limit.
        for _ in 0..2 {
            out.sync().unwrap();
            store.save("c", &cursor, out.mark("c")).unwrap();
        }
        out.sync().unwrap();
        let (records, rotated) = held(&dir);
        assert_eq!(rotated, 2, "two rotated files besides the live one");
        // While lagging: the limit, the file holding the mark, and the files of the up to 20
        // records (two checkpoints' worth, 3 a file) beyond it.
        assert!(most <= 2 + 1 + 7, "{most} rotated files at most");
        assert_eq!(records.last(), Some(&400));
        // The highest numbers are the newest, and recovery from the persisted mark finds
        // the last line.
        let numbers: Vec<u64> = rotated_paths(&dir, "c")
            .unwrap()
            .iter()
            .map(|(n, _)| *n)
            .collect();
        assert!(numbers.len() == 2 && numbers[0] < numbers[1], "{numbers:?}");
        let saved = store.load_all().unwrap().remove("c").unwrap();
        let found =
            crate::sink::recover::recover(&dir, "c", StreamSet::for_tty(true), saved.mark).unwrap();
        assert_eq!(
            found,
            crate::sink::recover::Recovered::default(),
            "nothing beyond the mark"
        );
        let found = crate::sink::recover::recover(&dir, "c", StreamSet::MULTIPLEXED, None).unwrap();
        assert_eq!(
            found.last[Stream::Stdout.index()],
            Some(Position {
                ts: Timestamp(400),
                n: 1
            })
        );
        fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn without_a_persisted_cursor_nothing_is_deleted() {
        let base = std::env::temp_dir().join(format!("lc-file-nocursor-{}", std::process::id()));
        let _ = fs::remove_dir_all(&base);
        let dir = base.join("out");
        let keep = Retention {
            max_files: 0,
            state_dir: base.join("state"),
        };
        let mut out = FileOutput::new(dir.clone(), record(0).len() as u64, Some(keep)).unwrap();
        let id: Arc<str> = Arc::from("c");
        let cursor = Cursor::new(Timestamp(0), StreamSet::for_tty(true));
        for i in 1..=10 {
            out.take(&id, record(i), &cursor);
            out.write().unwrap();
            out.sync().unwrap();
        }
        let (records, rotated) = held(&dir);
        assert_eq!(rotated, 9);
        assert_eq!(records, (1..=10).collect::<Vec<_>>());
        fs::remove_dir_all(&base).unwrap();
    }
}
