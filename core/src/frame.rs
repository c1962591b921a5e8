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

/// Splitter of the raw stream of a TTY container into `\n`-terminated console frames.
///
/// A line longer than `max_line` is handed out in pieces of at most `max_line` bytes, each
/// piece after the first prefixed again with the line's timestamp, so every frame reads the
/// same way as a multiplexed one and the partial merger joins (or truncates) them.
#[derive(Debug)]
pub struct TtySplitter {
    buf: Vec<u8>,
    max_line: usize,
    /// The timestamp prefix (with its space) of the line being split, once a piece went out.
    prefix: Vec<u8>,
}

impl TtySplitter {
    /// A splitter that holds at most `max_line` bytes of an unfinished line.
    pub fn new(max_line: usize) -> TtySplitter {
        TtySplitter {
            buf: Vec::new(),
            max_line: max_line.max(MAX_TS_LEN + 2),
            prefix: Vec::new(),
        }
    }

    /// Bytes held across chunks.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Splits `chunk`, calling `on_frame` for each line (or piece of a long line) in order.
    pub fn push(&mut self, mut chunk: &[u8], mut on_frame: impl FnMut(Frame<'_>)) {
        while !chunk.is_empty() {
            match chunk.iter().position(|&b| b == b'\n') {
                Some(nl) if self.buf.is_empty() && self.prefix.is_empty() && nl < self.max_line => {
                    console(&chunk[..=nl], &mut on_frame);
                    chunk = &chunk[nl + 1..];
                }
                found => {
                    let end = found.map_or(chunk.len(), |nl| nl + 1);
                    if self.buf.is_empty() && !self.prefix.is_empty() {
                        self.buf.extend_from_slice(&self.prefix);
                    }
                    let room = self.max_line - self.buf.len();
                    let take = end.min(room);
                    self.buf.extend_from_slice(&chunk[..take]);
                    chunk = &chunk[take..];
                    if self.buf.last() == Some(&b'\n') {
                        console(&self.buf, &mut on_frame);
                        self.buf.clear();
                        self.prefix.clear();
                    } else if self.buf.len() >= self.max_line {
                        if self.prefix.is_empty() {
                            let sp = self.buf.iter().position(|&b| b == b' ').unwrap_or(0);
                            self.prefix
                                .extend_from_slice(&self.buf[..=sp.min(MAX_TS_LEN)]);
                        }
                        console(&self.buf, &mut on_frame);
                        self.buf.clear();
                    }
                }
            }
        }
    }

    /// The stream ended: hands out an unfinished last line (a final line without newline).
    pub fn finish(&mut self, mut on_frame: impl FnMut(Frame<'_>)) {
        if self.buf.len() > self.prefix.len() {
            console(&self.buf, &mut on_frame);
        }
        self.buf.clear();
        self.prefix.clear();
    }
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
            let mut t = TtySplitter::new(1 << 20);
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

    #[test]
    fn long_tty_lines_come_in_prefixed_pieces() {
        let mut raw = b"2024-01-01T00:00:00Z ".to_vec();
        raw.extend([b'x'; 100]);
        raw.push(b'\n');
        let mut t = TtySplitter::new(50);
        let mut out = Vec::new();
        t.push(&raw, |f| out.push(f.bytes.to_vec()));
        assert!(out.len() >= 3);
        let mut payload = Vec::new();
        for piece in &out {
            assert!(piece.len() <= 50);
            let s = split_timestamp(piece).unwrap();
            assert_eq!(s.ts_text, b"2024-01-01T00:00:00Z");
            payload.extend_from_slice(s.payload);
        }
        assert_eq!(payload.len(), 101);
        assert_eq!(out.last().unwrap().last(), Some(&b'\n'));
    }
}
