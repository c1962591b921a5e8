//! Merging partial frames into whole messages.
//!
//! The daemon splits a line longer than 16 KiB into frames of 16,384 payload bytes; none but the
//! last ends in `\n`, and all carry the SAME timestamp. A last line without newline, written
//! just before the container exits, arrives without `\n` and is never completed.
//!
//! So, per stream: frames without `\n` are buffered while they carry the same timestamp; a frame
//! ending in `\n` completes the message; a frame with a different timestamp first flushes what
//! is buffered as a message of its own (the unfinished last line before a restart); the end of
//! the stream flushes everything. A message never exceeds `cap` bytes: beyond it, what is
//! buffered goes out as one message marked truncated, and merging goes on from there. The
//! split is a function of the frames alone, so a replay splits the same way and the cursor
//! counts the same messages.
//!
//! The `local` logging driver sends the last part of a long line without its `\n` (measured,
//! `docs/daemon.md`), so such a line ends only at the next timestamp or the stream's end, like
//! an unfinished one; on the console it then still carries the `\r` of the terminal's `\r\n`,
//! which is taken off as from any console line: one trailing `\r` of a line of several parts.

use crate::stream::Stream;
use crate::timestamp::{Timestamp, MAX_TS_LEN};

/// The default cap on one message: 1 MiB.
pub const DEFAULT_CAP: usize = 1 << 20;

/// A complete message, ready for the cursor's verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Message<'a> {
    /// The stream it was written to.
    pub stream: Stream,
    /// Its timestamp (all its parts carry the same).
    pub ts: Timestamp,
    /// The timestamp as the daemon sent it.
    pub ts_text: &'a [u8],
    /// The line without its trailing newline (nor `\r` on the console).
    pub body: &'a [u8],
    /// Cut at the cap: the line goes on in the next message.
    pub truncated: bool,
}

/// The timestamp text of a buffered message, kept inline.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct TsText {
    len: u8,
    bytes: [u8; MAX_TS_LEN],
}

impl TsText {
    fn new(text: &[u8]) -> TsText {
        let len = text.len().min(MAX_TS_LEN);
        let mut bytes = [0; MAX_TS_LEN];
        bytes[..len].copy_from_slice(&text[..len]);
        TsText {
            len: len as u8,
            bytes,
        }
    }

    fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Pending {
    ts: Timestamp,
    ts_text: TsText,
    bytes: Vec<u8>,
    /// Frames merged into it so far.
    parts: u32,
}

/// The partial-line buffers of one container, one per stream.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Partials {
    cap: usize,
    pending: [Option<Pending>; 3],
}

impl Partials {
    /// Buffers that merge messages up to `cap` bytes (at least 1).
    pub fn new(cap: usize) -> Partials {
        Partials {
            cap: cap.max(1),
            pending: [None, None, None],
        }
    }

    /// Bytes buffered over all streams: at most the cap per stream, plus one trailing `\r`
    /// on the console.
    pub fn buffered(&self) -> usize {
        self.pending.iter().flatten().map(|p| p.bytes.len()).sum()
    }

    /// Whether a message is being assembled on `stream`.
    pub fn is_pending(&self, stream: Stream) -> bool {
        self.pending[stream.index()].is_some()
    }

    /// Takes one frame's payload (with its `\n` if complete) and hands every message it
    /// completes to `out`, in order.
    pub fn push(
        &mut self,
        stream: Stream,
        ts: Timestamp,
        ts_text: &[u8],
        payload: &[u8],
        out: &mut dyn FnMut(Message<'_>),
    ) {
        let slot = &mut self.pending[stream.index()];
        if slot.as_ref().is_some_and(|p| p.ts != ts) {
            if let Some(p) = slot.take() {
                unfinished(stream, p, self.cap, out);
            }
        }
        let (body, complete) = match payload.strip_suffix(b"\n") {
            Some(line) => (line, true),
            None => (payload, false),
        };
        if slot.is_none() && complete {
            let line = strip_cr(stream, body);
            if line.len() <= self.cap {
                out(Message {
                    stream,
                    ts,
                    ts_text,
                    body: line,
                    truncated: false,
                });
                return;
            }
        }
        let mut rest = body;
        if let Some(p) = slot.as_mut() {
            // One more part of the line it holds.
            p.parts = p.parts.saturating_add(1);
        }
        loop {
            let p = slot.get_or_insert_with(|| Pending {
                ts,
                ts_text: TsText::new(ts_text),
                bytes: Vec::new(),
                parts: 1,
            });
            // What may stay buffered: the cap, plus on the console one trailing `\r`, which a
            // `\n` in the next frame would turn into the end of the line rather than content.
            let last = rest.last().or(p.bytes.last());
            let keep = self.cap + usize::from(stream == Stream::Console && last == Some(&b'\r'));
            if p.bytes.len() + rest.len() <= keep {
                p.bytes.extend_from_slice(rest);
                break;
            }
            // Over the cap: a message of exactly `cap` bytes goes out marked truncated.
            if p.bytes.len() >= self.cap {
                out(cut(stream, p, self.cap));
                p.bytes.drain(..self.cap);
            } else {
                let fill = self.cap - p.bytes.len();
                p.bytes.extend_from_slice(&rest[..fill]);
                rest = &rest[fill..];
                out(cut(stream, p, self.cap));
                p.bytes.clear();
            }
        }
        if complete {
            if let Some(p) = slot.take() {
                out(Message {
                    stream,
                    ts: p.ts,
                    ts_text: p.ts_text.as_bytes(),
                    body: strip_cr(stream, &p.bytes),
                    truncated: false,
                });
            }
        }
    }

    /// The stream ended: every buffered message goes out as it is.
    pub fn flush(&mut self, out: &mut dyn FnMut(Message<'_>)) {
        for stream in Stream::ALL {
            if let Some(p) = self.pending[stream.index()].take() {
                unfinished(stream, p, self.cap, out);
            }
        }
    }

    /// The reader died mid-message: drop the parts, the next generation replays them.
    pub fn discard(&mut self) {
        self.pending = [None, None, None];
    }
}

fn strip_cr(stream: Stream, line: &[u8]) -> &[u8] {
    match stream {
        Stream::Console => line.strip_suffix(b"\r").unwrap_or(line),
        _ => line,
    }
}

/// A buffered message that ended without its newline (end of stream, or a new timestamp):
/// sent as it is, but for the console's `\r` of a line of several parts (the `local` driver
/// drops the last part's `\n`: see the module doc); if a console `\r` held beyond the cap makes
/// it longer than the cap, its first `cap` bytes go out marked truncated, like any longer line.
fn unfinished(stream: Stream, mut p: Pending, cap: usize, out: &mut dyn FnMut(Message<'_>)) {
    if stream == Stream::Console && p.parts > 1 && p.bytes.last() == Some(&b'\r') {
        p.bytes.pop();
    }
    while p.bytes.len() > cap {
        out(cut(stream, &p, cap));
        p.bytes.drain(..cap);
    }
    out(Message {
        stream,
        ts: p.ts,
        ts_text: p.ts_text.as_bytes(),
        body: &p.bytes,
        truncated: false,
    });
}

/// The first `cap` bytes of a buffer that ran over the cap, marked truncated.
fn cut(stream: Stream, p: &Pending, cap: usize) -> Message<'_> {
    Message {
        stream,
        ts: p.ts,
        ts_text: p.ts_text.as_bytes(),
        body: &p.bytes[..cap],
        truncated: true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Out = Vec<(Stream, u64, Vec<u8>, bool)>;

    fn push(p: &mut Partials, out: &mut Out, s: Stream, ts: u64, payload: &[u8]) {
        p.push(s, Timestamp(ts), b"T", payload, &mut |m| {
            out.push((m.stream, m.ts.0, m.body.to_vec(), m.truncated))
        });
    }

    #[test]
    fn whole_lines_pass_through() {
        let (mut p, mut out) = (Partials::new(DEFAULT_CAP), Out::new());
        push(&mut p, &mut out, Stream::Stdout, 1, b"a\n");
        push(&mut p, &mut out, Stream::Stdout, 1, b"\n");
        assert_eq!(
            out,
            vec![
                (Stream::Stdout, 1, b"a".to_vec(), false),
                (Stream::Stdout, 1, vec![], false)
            ]
        );
    }

    #[test]
    fn parts_with_one_timestamp_merge_per_stream() {
        let (mut p, mut out) = (Partials::new(DEFAULT_CAP), Out::new());
        push(&mut p, &mut out, Stream::Stdout, 5, b"aa");
        push(&mut p, &mut out, Stream::Stderr, 4, b"e\n");
        push(&mut p, &mut out, Stream::Stdout, 5, b"bb");
        push(&mut p, &mut out, Stream::Stdout, 5, b"c\n");
        assert_eq!(
            out,
            vec![
                (Stream::Stderr, 4, b"e".to_vec(), false),
                (Stream::Stdout, 5, b"aabbc".to_vec(), false)
            ]
        );
        assert_eq!(p.buffered(), 0);
    }

    #[test]
    fn a_new_timestamp_flushes_an_unfinished_line() {
        let (mut p, mut out) = (Partials::new(DEFAULT_CAP), Out::new());
        push(&mut p, &mut out, Stream::Stdout, 5, b"last words");
        push(&mut p, &mut out, Stream::Stdout, 9, b"after restart\n");
        assert_eq!(out[0], (Stream::Stdout, 5, b"last words".to_vec(), false));
        assert_eq!(
            out[1],
            (Stream::Stdout, 9, b"after restart".to_vec(), false)
        );
    }

    #[test]
    fn the_cap_truncates_and_goes_on() {
        let (mut p, mut out) = (Partials::new(4), Out::new());
        push(&mut p, &mut out, Stream::Stdout, 1, b"abc");
        push(&mut p, &mut out, Stream::Stdout, 1, b"defghij");
        assert!(p.buffered() <= 4);
        push(&mut p, &mut out, Stream::Stdout, 1, b"k\n");
        let bodies: Vec<_> = out.iter().map(|o| (o.2.clone(), o.3)).collect();
        assert_eq!(
            bodies,
            vec![
                (b"abcd".to_vec(), true),
                (b"efgh".to_vec(), true),
                (b"ijk".to_vec(), false)
            ]
        );
    }

    fn console(p: &mut Partials, out: &mut Out, payload: &[u8]) {
        push(p, out, Stream::Console, 1, payload);
    }

    #[test]
    fn a_console_cr_is_stripped_once_and_only_before_a_newline() {
        // Found by the fuzzer (F1): `\r` was stripped per frame and again per message.
        let (mut p, mut out) = (Partials::new(DEFAULT_CAP), Out::new());
        console(&mut p, &mut out, b"abc\r");
        p.flush(&mut |m| out.push((m.stream, m.ts.0, m.body.to_vec(), m.truncated)));
        assert_eq!(
            out.pop().map(|o| o.2),
            Some(b"abc\r".to_vec()),
            "no newline: kept"
        );
        console(&mut p, &mut out, b"abc\r");
        console(&mut p, &mut out, b"\r\n");
        assert_eq!(
            out.pop().map(|o| o.2),
            Some(b"abc\r".to_vec()),
            "split like whole"
        );
        console(&mut p, &mut out, b"abc\r\r\n");
        assert_eq!(out.pop().map(|o| o.2), Some(b"abc\r".to_vec()));
        let (mut p, mut out) = (Partials::new(3), Out::new());
        console(&mut p, &mut out, b"abc\r");
        console(&mut p, &mut out, b"\n");
        assert_eq!(
            out,
            vec![(Stream::Console, 1, b"abc".to_vec(), false)],
            "a 3-byte line fits a cap of 3"
        );
        assert!(p.buffered() == 0);
        console(&mut p, &mut out, b"abc\r");
        console(&mut p, &mut out, b"x\n");
        assert_eq!(
            out[1..],
            [
                (Stream::Console, 1, b"abc".to_vec(), true),
                (Stream::Console, 1, b"\rx".to_vec(), false)
            ]
        );
    }

    #[test]
    fn a_long_console_line_without_its_newline_loses_the_terminals_cr() {
        // The local driver: parts of a long TTY line, the last one `...\r` without `\n`.
        let (mut p, mut out) = (Partials::new(DEFAULT_CAP), Out::new());
        console(&mut p, &mut out, b"aaaa");
        console(&mut p, &mut out, b"bb\r");
        push(&mut p, &mut out, Stream::Console, 2, b"next\r\n");
        assert_eq!(out[0].2, b"aaaabb");
        // A single unfinished part keeps its `\r` (a progress line at exit).
        p.push(Stream::Console, Timestamp(3), b"T", b"50%\r", &mut |m| {
            out.push((m.stream, m.ts.0, m.body.to_vec(), m.truncated))
        });
        p.flush(&mut |m| out.push((m.stream, m.ts.0, m.body.to_vec(), m.truncated)));
        assert_eq!(out[2].2, b"50%\r");
    }

    #[test]
    fn end_of_stream_flushes_and_console_loses_its_cr() {
        let (mut p, mut out) = (Partials::new(DEFAULT_CAP), Out::new());
        push(&mut p, &mut out, Stream::Console, 1, b"tty\r\n");
        push(&mut p, &mut out, Stream::Console, 2, b"no newline");
        p.flush(&mut |m| out.push((m.stream, m.ts.0, m.body.to_vec(), m.truncated)));
        assert_eq!(out[0].2, b"tty");
        assert_eq!(out[1].2, b"no newline");
        assert!(p.buffered() == 0);
    }
}
