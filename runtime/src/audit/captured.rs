//! What the file sink's output holds: which containers, and one container's records per stream
//! in file order (rotated files oldest first, then the current one).

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader};
use std::path::{Path, PathBuf};

use capturer_core::{Position, Stream, Timestamp};

use crate::sink::file::{current_path, rotated_paths};

/// One record of the output, as the audit compares it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// Its position in its stream.
    pub pos: Position,
    /// `ts`, as written.
    pub ts: String,
    /// `message`.
    pub message: String,
    /// `truncated`: the message is a prefix of the line.
    pub truncated: bool,
}

/// A line of an output file that is not one record of this container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unreadable {
    /// The file.
    pub file: PathBuf,
    /// Its line number, from 1.
    pub line: u64,
    /// What is wrong with it.
    pub why: String,
}

/// Everything the output holds for one container.
#[derive(Clone, Debug, Default)]
pub struct Captured {
    /// The container's name, as its last record says.
    pub name: Option<String>,
    /// Per stream (by `Stream::index`), the records in file order.
    pub streams: [Vec<Record>; 3],
    /// Lines that are not one of its records (torn by a crash, edited, foreign).
    pub unreadable: Vec<Unreadable>,
    /// How many of those there were in all (only the first few are kept).
    pub unreadable_count: u64,
    /// Rotated files numbered from 1 are missing below the lowest one left: deleted by
    /// retention, so the output no longer starts where the capture did.
    pub trimmed: bool,
    /// Files read.
    pub files: usize,
}

/// How many unreadable lines are kept to be shown.
const KEEP_UNREADABLE: usize = 5;

impl Captured {
    /// The earliest timestamp of any stream's first record.
    pub fn earliest(&self) -> Option<Timestamp> {
        self.streams
            .iter()
            .filter_map(|s| s.first())
            .map(|r| r.pos.ts)
            .min()
    }

    fn unreadable(&mut self, file: &Path, line: u64, why: impl Into<String>) {
        self.unreadable_count += 1;
        if self.unreadable.len() < KEEP_UNREADABLE {
            self.unreadable.push(Unreadable {
                file: file.to_owned(),
                line,
                why: why.into(),
            });
        }
    }
}

/// The ids of the containers with files under `dir`: `<id>.jsonl` and `<id>.jsonl.<n>`, where
/// the id is 64 hex digits (other files are not the file sink's).
pub fn container_ids(dir: &Path) -> io::Result<BTreeSet<String>> {
    let mut ids = BTreeSet::new();
    for entry in fs::read_dir(dir)? {
        let name = entry?.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some((id, rest)) = name.split_once(".jsonl") else {
            continue;
        };
        let numbered = rest
            .strip_prefix('.')
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
        if (rest.is_empty() || numbered)
            && id.len() == 64
            && id.bytes().all(|b| b.is_ascii_hexdigit())
        {
            ids.insert(id.to_owned());
        }
    }
    Ok(ids)
}

/// Reads every file of container `id` under `dir`.
pub fn read(dir: &Path, id: &str) -> io::Result<Captured> {
    let mut out = Captured::default();
    let rotated = rotated_paths(dir, id)?;
    out.trimmed = rotated.first().is_some_and(|(n, _)| *n > 1);
    let mut paths: Vec<PathBuf> = rotated.into_iter().map(|(_, p)| p).collect();
    paths.push(current_path(dir, id));
    for path in paths {
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io::Error::new(e.kind(), format!("{}: {e}", path.display()))),
        };
        out.files += 1;
        read_file(BufReader::new(file), &path, id, &mut out)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    }
    Ok(out)
}

/// The fields of a record the audit reads; the others are not judged.
#[derive(serde::Deserialize)]
struct Fields {
    container_id: String,
    container_name: String,
    ts: String,
    stream: String,
    pos: String,
    message: String,
    #[serde(default)]
    truncated: bool,
}

fn read_file(mut file: impl BufRead, path: &Path, id: &str, out: &mut Captured) -> io::Result<()> {
    let mut line = Vec::new();
    let mut number = 0;
    loop {
        line.clear();
        if file.read_until(b'\n', &mut line)? == 0 {
            return Ok(());
        }
        number += 1;
        let Some(whole) = line.strip_suffix(b"\n") else {
            out.unreadable(
                path,
                number,
                "no newline at the end of the file (a torn write)",
            );
            return Ok(());
        };
        match parse(whole, id) {
            Ok((stream, record, name)) => {
                out.name = Some(name);
                out.streams[stream.index()].push(record);
            }
            Err(why) => out.unreadable(path, number, why),
        }
    }
}

/// One record of container `id`, its stream and its container's name; or what is wrong.
fn parse(bytes: &[u8], id: &str) -> Result<(Stream, Record, String), String> {
    let f: Fields = serde_json::from_slice(bytes).map_err(|e| format!("not a record: {e}"))?;
    if f.container_id != id {
        return Err(format!("a record of container {}", f.container_id));
    }
    let stream = Stream::ALL
        .into_iter()
        .find(|s| s.as_str() == f.stream)
        .ok_or_else(|| format!("unknown stream {:?}", f.stream))?;
    let pos = parse_pos(&f.pos).ok_or_else(|| format!("pos {:?} is not <ns>.<n>", f.pos))?;
    let record = Record {
        pos,
        ts: f.ts,
        message: f.message,
        truncated: f.truncated,
    };
    Ok((stream, record, f.container_name))
}

/// `"<ts in ns>.<n>"`, as the output contract writes a position.
pub fn parse_pos(text: &str) -> Option<Position> {
    let (ts, n) = text.split_once('.')?;
    Some(Position {
        ts: Timestamp(ts.parse().ok()?),
        n: n.parse().ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "0d6c94817365b5f3936a70e52e562e4863244e7cf15ddee7ae482c932001cd8f";

    fn record(stream: &str, pos: &str, message: &str) -> String {
        format!(
            "{{\"container_id\":\"{ID}\",\"container_name\":\"web\",\"image\":\"i\",\"ts\":\"t\",\"stream\":\"{stream}\",\"pos\":\"{pos}\",\"message\":\"{message}\"}}\n"
        )
    }

    #[test]
    fn reads_rotated_files_first_and_counts_what_is_not_a_record() {
        let dir = std::env::temp_dir().join(format!("lc-audit-captured-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        fs::write(
            dir.join(format!("{ID}.jsonl.2")),
            record("stdout", "5.1", "a"),
        )
        .unwrap();
        let current = format!(
            "{}not json\n{}{}",
            record("stdout", "6.1", "b"),
            record("stderr", "4.1", "c"),
            "{\"torn"
        );
        fs::write(dir.join(format!("{ID}.jsonl")), current).unwrap();
        fs::write(dir.join("notes.jsonl"), "x").unwrap();
        fs::write(dir.join(format!("{ID}.jsonl.tmp")), "x").unwrap();
        assert_eq!(
            container_ids(&dir).unwrap().into_iter().collect::<Vec<_>>(),
            vec![ID.to_owned()]
        );
        let c = read(&dir, ID).unwrap();
        assert!(c.trimmed, "file 1 is gone");
        assert_eq!(c.files, 2);
        assert_eq!(c.name.as_deref(), Some("web"));
        let stdout: Vec<&str> = c.streams[0].iter().map(|r| r.message.as_str()).collect();
        assert_eq!(stdout, ["a", "b"]);
        assert_eq!(c.streams[1][0].pos, parse_pos("4.1").unwrap());
        assert_eq!(c.unreadable_count, 2);
        assert_eq!(c.unreadable[0].line, 2);
        assert_eq!(c.earliest(), Some(Timestamp(4)));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn positions_parse_only_in_their_shape() {
        assert_eq!(
            parse_pos("1700000000123456789.3"),
            Some(Position {
                ts: Timestamp(1_700_000_000_123_456_789),
                n: 3
            })
        );
        assert_eq!(parse_pos("12"), None);
        assert_eq!(parse_pos("a.1"), None);
    }
}
