//! Bytes an output has taken and not yet written, written with as few system calls as the
//! kernel allows, and never twice.

use std::io::{self, Write};

/// Batches waiting to be written, in order, and how much of the first one already was.
#[derive(Debug, Default)]
pub struct Pending {
    bufs: Vec<Vec<u8>>,
    /// Bytes of `bufs[0]` already written (a write stopped inside it).
    written: usize,
}

impl Pending {
    /// Queues a batch behind the others.
    pub fn push(&mut self, bytes: Vec<u8>) {
        if !bytes.is_empty() {
            self.bufs.push(bytes);
        }
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.bufs.is_empty()
    }

    /// Bytes still to write.
    pub fn len(&self) -> usize {
        self.bufs.iter().map(Vec::len).sum::<usize>() - self.written
    }

    /// Whether the next byte begins a line (no write stopped inside a batch).
    pub fn at_line_start(&self) -> bool {
        self.written == 0
    }

    /// Writes everything to `w` with vectored writes, calling `wrote` with each write's size.
    /// On an error, what was written stays written and the rest waits for the next call.
    pub fn write_to(&mut self, w: &mut impl Write, mut wrote: impl FnMut(usize)) -> io::Result<()> {
        while !self.bufs.is_empty() {
            let slices: Vec<io::IoSlice<'_>> = std::iter::once(&self.bufs[0][self.written..])
                .chain(self.bufs[1..].iter().map(Vec::as_slice))
                .take(1024)
                .map(io::IoSlice::new)
                .collect();
            let n = match w.write_vectored(&slices) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            wrote(n);
            let mut done = n + self.written;
            let mut whole = 0;
            while whole < self.bufs.len() && done >= self.bufs[whole].len() {
                done -= self.bufs[whole].len();
                whole += 1;
            }
            self.bufs.drain(..whole);
            self.written = done;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Accepts at most `room` bytes per write, then fails once every `fail_every` writes.
    struct Choppy {
        got: Vec<u8>,
        room: usize,
        calls: usize,
    }

    impl Write for Choppy {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.calls += 1;
            if self.calls % 3 == 0 {
                return Err(io::ErrorKind::StorageFull.into());
            }
            let n = buf.len().min(self.room);
            self.got.extend_from_slice(&buf[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_failed_or_short_write_neither_loses_nor_repeats_a_byte() {
        let mut p = Pending::default();
        p.push(b"one\n".to_vec());
        p.push(Vec::new());
        p.push(b"two two\n".to_vec());
        assert_eq!(p.len(), 12);
        let mut w = Choppy {
            got: Vec::new(),
            room: 5,
            calls: 0,
        };
        let mut failures = 0;
        while !p.is_empty() {
            if p.write_to(&mut w, |_| {}).is_err() {
                failures += 1;
            }
        }
        assert!(failures > 0);
        assert_eq!(w.got, b"one\ntwo two\n");
        assert!(p.at_line_start());
    }
}
