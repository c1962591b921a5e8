//! The standard-output sink. A pipe cannot be fsynced: a line is durable once it is in the
//! pipe, which is as far as the capturer can see. It cannot be read back either, so after a
//! SIGKILL up to a checkpoint interval of lines is written again here (same `pos`; the file
//! sink recovers instead). A stop whose pipe nobody reads is exact: what reached the pipe, to
//! the last whole line, is noted as it goes ([`Written`]) and persisted when the stop gives up.

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::AsFd;
use std::sync::{Arc, Mutex};

use capturer_core::Cursor;

use super::Output;
use crate::output::record_position;
use crate::state::Mark;

/// The size up to which a write to a pipe is atomic (POSIX guarantees 512; Linux has 4096).
const PIPE_BUF: usize = 4096;

/// Per container, the cursor covering every whole line that reached standard output; shared,
/// so that a stop can persist it while the sink thread is stuck in a write.
pub type Written = Arc<Mutex<HashMap<Arc<str>, Cursor>>>;

/// Standard output, written one batch at a time (a raw `write` on a duplicate of fd 1: no
/// buffer between the capturer and the pipe, so what a write reports is in the pipe).
pub struct StdoutOutput {
    out: File,
    queue: VecDeque<(Arc<str>, Vec<u8>, Cursor)>,
    /// Bytes of the front batch already written.
    at: usize,
    written: Written,
}

impl StdoutOutput {
    /// The process's standard output.
    pub fn new() -> io::Result<StdoutOutput> {
        Ok(StdoutOutput {
            out: File::from(io::stdout().as_fd().try_clone_to_owned()?),
            queue: VecDeque::new(),
            at: 0,
            written: Written::default(),
        })
    }
}

impl Output for StdoutOutput {
    fn take(&mut self, id: &Arc<str>, bytes: Vec<u8>, cursor: &Cursor) {
        // Without lines too (a checkpoint): in order, it says where the container stands.
        self.queue.push_back((id.clone(), bytes, cursor.clone()));
    }

    fn write(&mut self) -> io::Result<()> {
        while let Some((id, bytes, cursor)) = self.queue.front() {
            if bytes.is_empty() {
                let mut written = self.written.lock().unwrap_or_else(|e| e.into_inner());
                written.insert(id.clone(), cursor.clone());
                drop(written);
                self.queue.pop_front();
                continue;
            }
            // At most PIPE_BUF bytes, cut after a newline where one is: such a write to a pipe
            // is atomic, so a write blocked on a full pipe has written nothing, and each one
            // that returns says exactly which lines reached the pipe.
            let window = &bytes[self.at..bytes.len().min(self.at + PIPE_BUF)];
            let piece = match window.iter().rposition(|&b| b == b'\n') {
                Some(i) if self.at + window.len() < bytes.len() => &window[..=i],
                _ => window,
            };
            let n = match self.out.write(piece) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            let end = self.at + n;
            let mut written = self.written.lock().unwrap_or_else(|e| e.into_inner());
            if end == bytes.len() {
                written.insert(id.clone(), cursor.clone());
                drop(written);
                self.queue.pop_front();
                self.at = 0;
            } else {
                // Stopped inside the batch (a full pipe): the whole lines that made it count.
                if let Some(c) = written.get_mut(id) {
                    raise_over_lines(c, &bytes[..end], self.at);
                }
                self.at = end;
            }
        }
        Ok(())
    }

    fn sync(&mut self) -> io::Result<()> {
        self.write()
    }

    fn mark(&self, _id: &str) -> Option<Mark> {
        None
    }

    fn close(&mut self, id: &str) -> io::Result<()> {
        self.write()?;
        self.written
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
        Ok(())
    }

    fn written(&self) -> Option<Written> {
        Some(self.written.clone())
    }
}

/// Raises `cursor` over the records of `bytes` whose newline lies at or after `from`: the lines
/// one write completed.
fn raise_over_lines(cursor: &mut Cursor, bytes: &[u8], from: usize) {
    let Some(last_nl) = bytes.iter().rposition(|&b| b == b'\n') else {
        return;
    };
    if last_nl < from {
        return;
    }
    // Each line ends at a newline; it starts after the previous one. From the last line back,
    // until each of the container's streams has its last one.
    let mut end = last_nl;
    let mut found = [false; 3];
    loop {
        let start = bytes[..end]
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1);
        if let Some((s, pos)) = record_position(&bytes[start..end]) {
            if !found[s.index()] {
                found[s.index()] = true;
                cursor.recover(s, pos);
            }
        }
        let all = cursor.streams().iter().all(|s| found[s.index()]);
        if all || start == 0 || start <= from {
            break;
        }
        end = start - 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use capturer_core::{Position, Stream, StreamSet, Timestamp};

    fn record(stream: Stream, ts: u64) -> String {
        format!("{{\"container_id\":\"c\",\"ts\":\"t\",\"stream\":\"{stream}\",\"pos\":\"{ts}.1\",\"message\":\"m\"}}\n")
    }

    #[test]
    fn only_whole_lines_a_write_completed_raise_the_cursor() {
        let text =
            record(Stream::Stdout, 10) + &record(Stream::Stderr, 11) + &record(Stream::Stdout, 12);
        let bytes = text.as_bytes();
        let first_end = record(Stream::Stdout, 10).len();
        let mut c = Cursor::new(Timestamp(0), StreamSet::MULTIPLEXED);
        // A write that stopped inside the second line: only the first counts.
        raise_over_lines(&mut c, &bytes[..first_end + 5], 0);
        assert_eq!(
            c.position(Stream::Stdout),
            Position {
                ts: Timestamp(10),
                n: 1
            }
        );
        assert_eq!(c.position(Stream::Stderr).n, 0);
        // The next write finished the third line.
        raise_over_lines(&mut c, bytes, first_end + 5);
        assert_eq!(
            c.position(Stream::Stdout),
            Position {
                ts: Timestamp(12),
                n: 1
            }
        );
        assert_eq!(
            c.position(Stream::Stderr),
            Position {
                ts: Timestamp(11),
                n: 1
            }
        );
    }
}
