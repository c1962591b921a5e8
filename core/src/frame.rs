//! Frames off the wire: the multiplexed stream of a non-TTY container, the raw stream of a TTY
//! container, and the timestamp prefix of each message.
//!
//! Non-TTY (`application/vnd.docker.multiplexed-stream`): each message is one frame with an
//! 8-byte header `[stream, 0, 0, 0, len: u32 big-endian]` followed by `len` bytes; stream 0 and
//! 1 are stdout, 2 is stderr, 3 is an error the daemon sends in-band after the 200.
//! TTY: one raw stream of `\n`-terminated lines.
//! With `timestamps=1` every message starts with an RFC 3339 timestamp and one space.
//!
//! Both decoders are sans-IO: feed them the bytes as they come, in chunks of any size; frames
//! that lie whole inside a chunk are handed out as slices of it (no copy), and what is buffered
//! across chunks is bounded.

use crate::stream::Stream;
use crate::timestamp::{Timestamp, TimestampError, MAX_TS_LEN};

/// The largest payload the daemon puts in one frame (longer lines are split).
pub const DAEMON_FRAME_PAYLOAD: usize = 16 * 1024;

/// One decoded frame: a log message (or a part of one) with its timestamp prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frame<'a> {
    /// The stream the message was written to.
    pub stream: Stream,
    /// `<timestamp> <payload>`, exactly as sent.
    pub bytes: &'a [u8],
}

/// Why the byte stream could not be decoded. The reader reports it and the stream is reopened
/// from the cursor.
#[derive(Clone, Debug, PartialEq, Eq, Hash, thiserror::Error)]
pub enum DecodeError {
    /// The stream byte of a header is not 0, 1, 2 or 3.
    #[error("frame header names stream {0}, not 0..=3")]
    BadStream(u8),
    /// Header bytes 1 to 3 are not zero: the decoder is out of step with the stream.
    #[error("frame header padding is not zero: {0:02x?}")]
    BadPadding([u8; 3]),
    /// A frame longer than the decoder accepts.
    #[error("frame of {len} bytes exceeds the limit of {max}")]
    TooLarge {
        /// Declared length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The daemon reported an error in-band (stream 3).
    #[error("daemon error in the log stream: {0}")]
    Daemon(String),
    /// The stream ended inside a frame.
    #[error("log stream ended inside a frame ({0} bytes buffered)")]
    Truncated(usize),
}

/// A frame's timestamp prefix could not be read.
#[derive(Clone, Debug, PartialEq, Eq, Hash, thiserror::Error)]
pub enum PrefixError {
    /// No space separates a timestamp from the payload.
    #[error("no timestamp prefix in a frame of {0} bytes")]
    Missing(usize),
    /// The prefix is not a timestamp.
    #[error("bad timestamp prefix: {0}")]
    Timestamp(#[from] TimestampError),
}

/// A frame split into its timestamp and payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamped<'a> {
    /// The parsed timestamp.
    pub ts: Timestamp,
    /// The timestamp exactly as sent (ASCII).
    pub ts_text: &'a [u8],
    /// The message bytes, with the trailing `\n` if the message is complete.
    pub payload: &'a [u8],
}

/// Splits `<timestamp> <payload>` and parses the timestamp.
pub fn split_timestamp(bytes: &[u8]) -> Result<Stamped<'_>, PrefixError> {
    let window = &bytes[..bytes.len().min(MAX_TS_LEN + 1)];
    let space = window
        .iter()
        .position(|&b| b == b' ')
        .ok_or(PrefixError::Missing(bytes.len()))?;
    let ts_text = &bytes[..space];
    let ts = Timestamp::parse_rfc3339(ts_text)?;
    Ok(Stamped {
        ts,
        ts_text,
        payload: &bytes[space + 1..],
    })
}

const HEADER: usize = 8;

/// Decoder of the multiplexed (non-TTY) log stream.
#[derive(Debug)]
pub struct Demux {
    buf: Vec<u8>,
    max_frame: usize,
}

impl Demux {
    /// A decoder that rejects frames longer than `max_frame` bytes (memory stays bounded by it).
    pub fn new(max_frame: usize) -> Demux {
        Demux {
            buf: Vec::new(),
            max_frame,
        }
    }

    /// Bytes held across chunks (a frame not yet complete).
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Decodes `chunk`, calling `on_frame` for each complete frame in order. Stops at the first
    /// error; the decoder must not be fed again after one.
    pub fn push(
        &mut self,
        mut chunk: &[u8],
        mut on_frame: impl FnMut(Frame<'_>),
    ) -> Result<(), DecodeError> {
        // Finish the frame begun in an earlier chunk.
        if !self.buf.is_empty() {
            if self.buf.len() < HEADER {
                let take = (HEADER - self.buf.len()).min(chunk.len());
                self.buf.extend_from_slice(&chunk[..take]);
                chunk = &chunk[take..];
                if self.buf.len() < HEADER {
                    return Ok(());
                }
            }
            let (stream, len) = self.header(&self.buf[..HEADER])?;
            let missing = HEADER + len - self.buf.len();
            let take = missing.min(chunk.len());
            self.buf.extend_from_slice(&chunk[..take]);
            chunk = &chunk[take..];
            if take < missing {
                return Ok(());
            }
            let buf = std::mem::take(&mut self.buf);
            emit(stream, &buf[HEADER..], &mut on_frame)?;
            self.buf = buf;
            self.buf.clear();
        }
        // Whole frames straight out of the chunk.
        while chunk.len() >= HEADER {
            let (stream, len) = self.header(&chunk[..HEADER])?;
            if chunk.len() < HEADER + len {
                break;
            }
            emit(stream, &chunk[HEADER..HEADER + len], &mut on_frame)?;
            chunk = &chunk[HEADER + len..];
        }
        if !chunk.is_empty() {
            if chunk.len() >= HEADER {
                self.header(&chunk[..HEADER])?;
            }
            self.buf.extend_from_slice(chunk);
        }
        Ok(())
    }

    /// The stream ended: an error if it ended inside a frame.
    pub fn finish(&mut self) -> Result<(), DecodeError> {
        match self.buf.len() {
            0 => Ok(()),
            n => Err(DecodeError::Truncated(n)),
        }
    }

    fn header(&self, h: &[u8]) -> Result<(u8, usize), DecodeError> {
        if h[1..4] != [0, 0, 0] {
            return Err(DecodeError::BadPadding([h[1], h[2], h[3]]));
        }
        if h[0] > 3 {
            return Err(DecodeError::BadStream(h[0]));
        }
        let len = u32::from_be_bytes([h[4], h[5], h[6], h[7]]) as usize;
        if len > self.max_frame {
            return Err(DecodeError::TooLarge {
                len,
                max: self.max_frame,
            });
        }
        Ok((h[0], len))
    }
}

fn emit(
    stream: u8,
    payload: &[u8],
    on_frame: &mut impl FnMut(Frame<'_>),
) -> Result<(), DecodeError> {
    let stream = match stream {
        0 | 1 => Stream::Stdout,
        2 => Stream::Stderr,
        _ => {
            return Err(DecodeError::Daemon(
                String::from_utf8_lossy(payload).trim_end().to_owned(),
            ))
        }
    };
    on_frame(Frame {
        stream,
        bytes: payload,
    });
    Ok(())
}

/// Splitter of the raw stream of a TTY container into console frames.
///
/// With `timestamps=1` the daemon writes each message of a TTY container's log as
/// `<timestamp> <payload>` with nothing around it (measured, `docs/daemon.md`). A payload ends
/// in `\n` (a whole line, or the last part of a long one); or it is exactly `part` bytes without
/// `\n` (a part of a longer line: the daemon's log copier cuts at its 16 KiB buffer, and every
/// part carries the line's timestamp); or it is a run's last line without newline, which the
/// next run's first message, or the end of the stream, follows directly. So a frame ends at
/// the first `\n`, after `part` payload bytes, or where the daemon's own prefix of a later
/// message begins (its fixed format, stamped at or after this one), whichever comes first; each
/// frame is a slice of the stream, prefix included, and the partial merger joins the parts.
#[derive(Debug)]
pub struct TtySplitter {
    buf: Vec<u8>,
    part: usize,
}

/// The daemon's timestamp prefix in its fixed format: `2006-01-02T15:04:05.000000000Z `.
const DAEMON_PREFIX_LEN: usize = 31;

impl TtySplitter {
    /// A splitter for a daemon whose messages hold at most `part` payload bytes
    /// ([`DAEMON_FRAME_PAYLOAD`] for the real one).
    pub fn new(part: usize) -> TtySplitter {
        TtySplitter {
            buf: Vec::new(),
            part: part.max(1),
        }
    }

    /// Bytes held across chunks: at most one message, prefix and part.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Splits `chunk`, calling `on_frame` for each message, in order.
    pub fn push(&mut self, mut chunk: &[u8], mut on_frame: impl FnMut(Frame<'_>)) {
        if !self.buf.is_empty() {
            self.buf.extend_from_slice(chunk);
            let mut at = 0;
            while let Some(n) = next_message(&self.buf[at..], self.part, false) {
                console(&self.buf[at..at + n], &mut on_frame);
                at += n;
            }
            self.buf.drain(..at);
            return;
        }
        while let Some(n) = next_message(chunk, self.part, false) {
            console(&chunk[..n], &mut on_frame);
            chunk = &chunk[n..];
        }
        self.buf.extend_from_slice(chunk);
    }

    /// The stream ended: hands out what is left (a last line without newline).
    pub fn finish(&mut self, mut on_frame: impl FnMut(Frame<'_>)) {
        let mut at = 0;
        while let Some(n) = next_message(&self.buf[at..], self.part, true) {
            console(&self.buf[at..at + n], &mut on_frame);
            at += n;
        }
        self.buf.clear();
    }
}

/// The length of the first message in `bytes`, or `None` if more bytes are needed (never at
/// the end, where whatever is left is a message).
fn next_message(bytes: &[u8], part: usize, at_end: bool) -> Option<usize> {
    if bytes.is_empty() {
        return None;
    }
    let rest = || at_end.then_some(bytes.len());
    let head = &bytes[..bytes.len().min(MAX_TS_LEN + 1)];
    let space = head.iter().position(|&b| b == b' ');
    if let Some(nl) = head.iter().position(|&b| b == b'\n') {
        if space.is_none_or(|sp| nl < sp) {
            // A line with no prefix: the machine reports a bad frame and reopens.
            return Some(nl + 1);
        }
    }
    let Some(sp) = space else {
        if bytes.len() <= MAX_TS_LEN {
            return rest();
        }
        // No prefix where one must be: hand the bytes on, at most a message's worth at a time.
        let limit = bytes.len().min(MAX_TS_LEN + 1 + part);
        return match bytes[..limit].iter().position(|&b| b == b'\n') {
            Some(nl) => Some(nl + 1),
            None if limit == MAX_TS_LEN + 1 + part => Some(limit),
            None => rest(),
        };
    };
    let own = Timestamp::parse_rfc3339(&bytes[..sp]).ok();
    let body = &bytes[sp + 1..];
    let window = &body[..body.len().min(part)];
    let newline = window.iter().position(|&b| b == b'\n');
    let end = newline.map_or(window.len(), |nl| nl + 1);
    // A later message's prefix that begins inside the payload ends this one there.
    if let Some(k) = embedded_prefix(body, end, own) {
        return Some(sp + 1 + k);
    }
    match newline {
        // A prefix holds no newline, so one that began before it would have been seen whole.
        Some(_) => Some(sp + 1 + end),
        // A full part; but a prefix may begin in its last bytes: see them whole first.
        None if end == part && (at_end || body.len() >= part + DAEMON_PREFIX_LEN - 1) => {
            Some(sp + 1 + end)
        }
        None => rest(),
    }
}

/// Where in `body` (before `before`) the daemon's prefix of a message stamped at or after
/// `own` begins, if anywhere (at 0: this message's payload is empty, as the `local` driver's
/// last part of a line can be).
fn embedded_prefix(body: &[u8], before: usize, own: Option<Timestamp>) -> Option<usize> {
    let own = own?;
    (0..before).find(|&k| {
        body.get(k..k + DAEMON_PREFIX_LEN).is_some_and(|p| {
            is_daemon_prefix(p)
                && Timestamp::parse_rfc3339(&p[..DAEMON_PREFIX_LEN - 1]).is_ok_and(|t| t >= own)
        })
    })
}

/// `dddd-dd-ddTdd:dd:dd.dddddddddZ `, the daemon's fixed nine-digit format and its space.
fn is_daemon_prefix(p: &[u8]) -> bool {
    const SHAPE: &[u8; DAEMON_PREFIX_LEN] = b"dddd-dd-ddTdd:dd:dd.dddddddddZ ";
    p.len() == DAEMON_PREFIX_LEN
        && p[DAEMON_PREFIX_LEN - 2..] == *b"Z "
        && p.iter().zip(SHAPE).all(|(&b, &want)| match want {
            b'd' => b.is_ascii_digit(),
            other => b == other,
        })
}

fn console(bytes: &[u8], on_frame: &mut impl FnMut(Frame<'_>)) {
    on_frame(Frame {
        stream: Stream::Console,
        bytes,
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(stream: u8, payload: &[u8]) -> Vec<u8> {
        let mut v = vec![stream, 0, 0, 0];
        v.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        v.extend_from_slice(payload);
        v
    }

    type Decoded = (Vec<(Stream, Vec<u8>)>, Result<(), DecodeError>);

    fn demux_all(bytes: &[u8], chunk: usize) -> Decoded {
        let mut d = Demux::new(1 << 20);
        let mut out = Vec::new();
        for c in bytes.chunks(chunk.max(1)) {
            if let Err(e) = d.push(c, |f| out.push((f.stream, f.bytes.to_vec()))) {
                return (out, Err(e));
            }
        }
        let end = d.finish();
        (out, end)
    }

    #[test]
    fn splits_timestamp_and_payload() {
        let s = split_timestamp(b"2024-01-01T00:00:00.000000001Z hello\n").unwrap();
        assert_eq!(s.ts, Timestamp(1_704_067_200_000_000_001));
        assert_eq!(s.ts_text, b"2024-01-01T00:00:00.000000001Z");
        assert_eq!(s.payload, b"hello\n");
        assert_eq!(split_timestamp(b"nospace"), Err(PrefixError::Missing(7)));
        assert!(matches!(
            split_timestamp(b"2024-01-01 x"),
            Err(PrefixError::Timestamp(_))
        ));
    }

    #[test]
    fn every_chunking_yields_the_same_frames() {
        let mut bytes = frame(1, b"a\n");
        bytes.extend(frame(2, b"bb\n"));
        bytes.extend(frame(0, b""));
        bytes.extend(frame(1, &[b'x'; 300]));
        for chunk in 1..bytes.len() + 1 {
            let (frames, end) = demux_all(&bytes, chunk);
            assert_eq!(end, Ok(()));
            assert_eq!(frames.len(), 4, "chunk {chunk}");
            assert_eq!(frames[1], (Stream::Stderr, b"bb\n".to_vec()));
            assert_eq!(frames[3].1.len(), 300);
        }
    }

    #[test]
    fn bad_headers_are_errors() {
        assert_eq!(
            demux_all(&frame(7, b"x"), 64).1,
            Err(DecodeError::BadStream(7))
        );
        assert_eq!(
            demux_all(b"2024-01-01T00:00:00Z hi\n", 64).1,
            Err(DecodeError::BadPadding(*b"024"))
        );
        let mut big = vec![1, 0, 0, 0];
        big.extend(u32::MAX.to_be_bytes());
        assert!(matches!(
            demux_all(&big, 3).1,
            Err(DecodeError::TooLarge { .. })
        ));
        assert_eq!(
            demux_all(&frame(3, b"boom\n"), 64).1,
            Err(DecodeError::Daemon("boom".into()))
        );
        let f = frame(1, b"abc");
        assert_eq!(demux_all(&f[..9], 64).1, Err(DecodeError::Truncated(9)));
    }

    #[test]
    fn tty_lines_and_pieces() {
        let raw =
            b"2024-01-01T00:00:00Z one\r\n2024-01-01T00:00:01Z two\r\n2024-01-01T00:00:02Z par";
        for chunk in 1..raw.len() {
            let mut t = TtySplitter::new(DAEMON_FRAME_PAYLOAD);
            let mut out = Vec::new();
            for c in raw.chunks(chunk) {
                t.push(c, |f| out.push(f.bytes.to_vec()));
            }
            t.finish(|f| out.push(f.bytes.to_vec()));
            assert_eq!(
                out,
                vec![
                    b"2024-01-01T00:00:00Z one\r\n".to_vec(),
                    b"2024-01-01T00:00:01Z two\r\n".to_vec(),
                    b"2024-01-01T00:00:02Z par".to_vec()
                ]
            );
        }
    }

    /// Splits `raw` in chunks of every size; asserts they all agree; returns the frames.
    fn tty_split(raw: &[u8], part: usize) -> Vec<Vec<u8>> {
        let mut first: Option<Vec<Vec<u8>>> = None;
        for chunk in 1..=raw.len() {
            let mut t = TtySplitter::new(part);
            let mut out = Vec::new();
            for c in raw.chunks(chunk) {
                t.push(c, |f| out.push(f.bytes.to_vec()));
                assert!(t.buffered() <= MAX_TS_LEN + part + DAEMON_PREFIX_LEN + chunk);
            }
            t.finish(|f| out.push(f.bytes.to_vec()));
            assert_eq!(out.concat(), raw, "chunks of {chunk}");
            match &first {
                Some(f) => assert_eq!(&out, f, "chunks of {chunk}"),
                None => first = Some(out),
            }
        }
        first.unwrap_or_default()
    }

    #[test]
    fn a_long_tty_line_comes_as_the_daemons_parts_each_prefixed() {
        // Measured: a 40,000-byte line is sent as parts of 16,384 payload bytes, each with the
        // line's timestamp, and nothing between them (docs/daemon.md).
        let ts = b"2026-11-29T22:20:31.255269873Z ";
        let mut raw = Vec::new();
        for p in [&b"xxxxxxxx"[..], b"xxxxxxxx", b"xx\r\n"] {
            raw.extend_from_slice(ts);
            raw.extend_from_slice(p);
        }
        raw.extend_from_slice(b"2026-11-29T22:20:31.255399827Z short\r\n");
        let out = tty_split(&raw, 8);
        let payloads: Vec<&[u8]> = out
            .iter()
            .map(|f| split_timestamp(f).unwrap().payload)
            .collect();
        assert_eq!(
            payloads,
            [&b"xxxxxxxx"[..], b"xxxxxxxx", b"xx\r\n", b"short\r\n"]
        );
    }

    #[test]
    fn a_runs_last_line_without_newline_ends_where_the_next_run_begins() {
        // A TTY container wrote `abc` and exited; it ran again and wrote `def`.
        let raw = b"2026-11-29T22:20:31.000000001Z abc2026-11-29T22:21:00.000000000Z def\r\n";
        assert_eq!(
            tty_split(raw, 16),
            vec![
                b"2026-11-29T22:20:31.000000001Z abc".to_vec(),
                b"2026-11-29T22:21:00.000000000Z def\r\n".to_vec()
            ]
        );
        // Text that only looks like a prefix, or is stamped earlier, is the line's own.
        let raw = b"2026-11-29T22:20:31.000000001Z at 2026-11-29T22:20:30.000000000Z done\r\n";
        assert_eq!(tty_split(raw, 100), vec![raw.to_vec()]);
        let raw = b"2026-11-29T22:20:31.000000001Z at 2026-11-29T22:20:39Z done\r\n";
        assert_eq!(tty_split(raw, 100), vec![raw.to_vec()]);
    }

    #[test]
    fn an_empty_last_part_ends_where_the_next_message_begins() {
        // Measured with the local driver: a 16,383-byte TTY line is a full part ending in
        // `\r`, then an empty part (its `\n` dropped), then the next message.
        let raw = b"2026-11-29T22:20:31.000000001Z xx\r2026-11-29T22:20:31.000000001Z 2026-11-29T22:20:31.000000002Z e\r\n";
        assert_eq!(
            tty_split(raw, 3),
            vec![
                b"2026-11-29T22:20:31.000000001Z xx\r".to_vec(),
                b"2026-11-29T22:20:31.000000001Z ".to_vec(),
                b"2026-11-29T22:20:31.000000002Z e\r\n".to_vec()
            ]
        );
    }

    #[test]
    fn bytes_without_a_prefix_reach_the_machine_as_bad_frames() {
        // Whatever the splitter makes of them, the machine sees no timestamp and reopens.
        let raw = b"no timestamp in this line at all\nnor here";
        let out = tty_split(raw, 8);
        assert!(split_timestamp(&out[0]).is_err());
        assert!(out.iter().all(|f| f.len() <= MAX_TS_LEN + 1 + 8));
    }
}
