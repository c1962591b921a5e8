//! The file output: one JSON-lines file per container, `<id>.jsonl`, renamed to
//! `<id>.jsonl.<n>` when it would grow past the size limit (`n` is one more than the highest
//! so far, so the highest is the newest). Durable means written and fsynced.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use capturer_core::Cursor;

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

/// Files under one directory, rotated at `max_size`.
pub struct FileOutput {
    dir: PathBuf,
    max_size: u64,
    files: HashMap<Arc<str>, OutFile>,
}

/// One container's file: opened at its first write.
#[derive(Default)]
struct OutFile {
    open: Option<Opened>,
    pending: Pending,
}

struct Opened {
    file: File,
    inode: u64,
    size: u64,
    unsynced: bool,
}

impl FileOutput {
    /// Files under `dir` (created if missing).
    pub fn new(dir: PathBuf, max_size: u64) -> io::Result<FileOutput> {
        fs::create_dir_all(&dir)?;
        Ok(FileOutput {
            dir,
            max_size,
            files: HashMap::new(),
        })
    }
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
        for (id, f) in self.files.iter_mut().filter(|(_, f)| !f.pending.is_empty()) {
            f.write(&self.dir, id, self.max_size)?;
        }
        Ok(())
    }

    fn sync(&mut self) -> io::Result<()> {
        self.write()?;
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
    /// first if they would take it past `max_size`.
    fn write(&mut self, dir: &Path, id: &str, max_size: u64) -> io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let current = current_path(dir, id);
        let o = match &mut self.open {
            Some(o) => o,
            None => self.open.insert(Opened::append(&current)?),
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
        }
        self.pending.write_to(&mut o.file, |n| {
            o.size += n as u64;
            o.unsynced = true;
        })
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
