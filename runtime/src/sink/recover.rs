//! Recovery from the sink itself: after a crash, the output files may hold lines the persisted
//! cursor does not cover (written after the last checkpoint), and the newest may end in a torn
//! line (a kill in mid-write). Both are found here, before the container's first read.
//!
//! The persisted cursor comes with a [`Mark`]: the output file (by inode) and its length at
//! that checkpoint. Only what follows the mark can be uncovered, so only that is read,
//! newest first, until every stream's last position is known. Without a mark (a state written
//! by an older version, or none at all) the files are read back to the first line of each
//! stream.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;

use capturer_core::{Position, StreamSet};

use super::file::{current_path, rotated_paths};
use crate::output::record_position;
use crate::state::Mark;

/// How much is read at a time, from the end backwards.
const CHUNK: u64 = 256 * 1024;

/// What a container's output files say.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Recovered {
    /// Per stream, the position of its last line after the mark, if any.
    pub last: [Option<Position>; 3],
    /// Bytes of a torn last line cut off the newest file.
    pub torn: u64,
    /// Bytes read to find the positions.
    pub read: u64,
}

/// Cuts a torn last line off container `id`'s newest file under `dir`, and finds the last
/// position of each of `streams` written after `mark`.
pub fn recover(
    dir: &Path,
    id: &str,
    streams: StreamSet,
    mark: Option<Mark>,
) -> io::Result<Recovered> {
    let mut found = Recovered::default();
    let current = current_path(dir, id);
    match OpenOptions::new().read(true).write(true).open(&current) {
        Ok(f) => found.torn = cut_torn_tail(&f)?,
        // Never written (or rotated away by a crash between rename and create).
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let mut paths = vec![current];
    let mut listed = false;
    let mut i = 0;
    loop {
        if i == paths.len() {
            if listed {
                break;
            }
            // The current file did not reach the mark: the rotated ones, newest first.
            listed = true;
            paths.extend(rotated_paths(dir, id)?.into_iter().rev().map(|(_, p)| p));
            continue;
        }
        let file = match File::open(&paths[i]) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                i += 1;
                continue;
            }
            Err(e) => return Err(e),
        };
        let meta = file.metadata()?;
        let marked = mark.filter(|m| m.file == meta.ino());
        let from = marked.map_or(0, |m| m.len.min(meta.len()));
        found.read += scan_back(&file, from, meta.len(), &mut found.last, streams)?;
        // The lines found may be only in the page cache (written by a process killed before
        // its fsync): the cursor raised over them is persisted soon, so they must be durable
        // first, or a power cut after that would lose them with the cursor claiming them.
        file.sync_all()?;
        let complete = streams.iter().all(|s| found.last[s.index()].is_some());
        if complete || marked.is_some() {
            break;
        }
        i += 1;
    }
    Ok(found)
}

/// Truncates `f` after its last newline; returns how many bytes that dropped.
fn cut_torn_tail(f: &File) -> io::Result<u64> {
    let len = f.metadata()?.len();
    let mut end = len;
    let mut buf = vec![0u8; CHUNK as usize];
    while end > 0 {
        let start = end.saturating_sub(CHUNK);
        let chunk = &mut buf[..(end - start) as usize];
        f.read_exact_at(chunk, start)?;
        if let Some(i) = chunk.iter().rposition(|&b| b == b'\n') {
            let keep = start + i as u64 + 1;
            if keep < len {
                f.set_len(keep)?;
                f.sync_data()?;
            }
            return Ok(len - keep);
        }
        end = start;
    }
    if len > 0 {
        f.set_len(0)?;
        f.sync_data()?;
    }
    Ok(len)
}

/// Reads `f`'s lines in `[from, to)` from the last backwards, noting each stream's last
/// position, until every one of `streams` has one. `to` ends a line and `from` begins one.
fn scan_back(
    f: &File,
    from: u64,
    to: u64,
    last: &mut [Option<Position>; 3],
    streams: StreamSet,
) -> io::Result<u64> {
    let mut end = to;
    // The beginning of a line cut by a chunk boundary, carried to the next (earlier) chunk.
    let mut carry: Vec<u8> = Vec::new();
    let mut read = 0;
    while end > from {
        let start = end.saturating_sub(CHUNK).max(from);
        let mut chunk = vec![0u8; (end - start) as usize];
        f.read_exact_at(&mut chunk, start)?;
        read += chunk.len() as u64;
        chunk.extend_from_slice(&carry);
        // Lines end with '\n'; the text before the chunk's first newline may begin earlier.
        let mut lines = chunk.split(|&b| b == b'\n').rev();
        let _after_last_newline = lines.next();
        let mut lines: Vec<&[u8]> = lines.collect();
        carry = if start > from {
            lines.pop().unwrap_or_default().to_vec()
        } else {
            Vec::new()
        };
        for line in lines {
            if let Some((s, pos)) = record_position(line) {
                last[s.index()].get_or_insert(pos);
            }
        }
        if streams.iter().all(|s| last[s.index()].is_some()) {
            break;
        }
        end = start;
    }
    if !carry.is_empty() {
        if let Some((s, pos)) = record_position(&carry) {
            last[s.index()].get_or_insert(pos);
        }
    }
    Ok(read)
}

#[cfg(test)]
mod tests {
    use super::*;
    use capturer_core::{Stream, Timestamp};
    use std::fs;

    fn record(stream: Stream, ts: u64, n: u64, filler: usize) -> String {
        format!(
            "{{\"container_id\":\"c\",\"container_name\":\"n\",\"image\":\"i\",\"ts\":\"t\",\"stream\":\"{stream}\",\"pos\":\"{ts}.{n}\",\"message\":\"{}\"}}\n",
            "x".repeat(filler)
        )
    }

    fn at(ts: u64, n: u64) -> Option<Position> {
        Some(Position {
            ts: Timestamp(ts),
            n,
        })
    }

    fn tmp(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("lc-recover-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn the_torn_line_is_cut_and_each_streams_last_position_found() {
        let dir = tmp("torn");
        let mut text = String::new();
        text += &record(Stream::Stderr, 5, 1, 10);
        for i in 0..2000 {
            text += &record(Stream::Stdout, 10 + i, 1, 300);
        }
        let torn = &record(Stream::Stdout, 9999, 1, 10)[..40];
        fs::write(dir.join("c.jsonl"), format!("{text}{torn}")).unwrap();
        let r = recover(&dir, "c", StreamSet::MULTIPLEXED, None).unwrap();
        assert_eq!(r.torn, 40);
        assert_eq!(r.last[Stream::Stdout.index()], at(2009, 1));
        assert_eq!(
            r.last[Stream::Stderr.index()],
            at(5, 1),
            "across many chunks"
        );
        assert_eq!(fs::read_to_string(dir.join("c.jsonl")).unwrap(), text);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn only_what_follows_the_mark_is_read_even_across_a_rotation() {
        let dir = tmp("mark");
        let old = record(Stream::Stdout, 1, 1, 10) + &record(Stream::Stderr, 2, 1, 10);
        let after = record(Stream::Stdout, 3, 2, 10);
        fs::write(dir.join("c.jsonl.1"), format!("{old}{after}")).unwrap();
        let inode = fs::metadata(dir.join("c.jsonl.1")).unwrap().ino();
        fs::write(dir.join("c.jsonl"), record(Stream::Stdout, 4, 1, 10)).unwrap();
        let mark = Mark {
            file: inode,
            len: old.len() as u64,
        };
        let r = recover(&dir, "c", StreamSet::MULTIPLEXED, Some(mark)).unwrap();
        assert_eq!(r.last[Stream::Stdout.index()], at(4, 1));
        assert_eq!(
            r.last[Stream::Stderr.index()],
            None,
            "before the mark: covered"
        );
        assert_eq!(r.torn, 0);
        // The mark at the very end of the current file: nothing new.
        let end = fs::metadata(dir.join("c.jsonl")).unwrap();
        let mark = Mark {
            file: end.ino(),
            len: end.len(),
        };
        let r = recover(&dir, "c", StreamSet::MULTIPLEXED, Some(mark)).unwrap();
        assert_eq!(r, Recovered::default());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_container_without_output_recovers_nothing() {
        let dir = tmp("none");
        let r = recover(&dir, "c", StreamSet::for_tty(true), None).unwrap();
        assert_eq!(r, Recovered::default());
        fs::remove_dir_all(&dir).unwrap();
    }
}
