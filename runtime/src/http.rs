//! Just enough HTTP/1.1 to read one streaming response: the head, then a chunked,
//! length-delimited or close-delimited body, decoded without copying.
//!
//! The log stream is the hot path: the daemon writes every log frame as its own HTTP chunk, so
//! a general-purpose client hands out one buffer per 50-byte frame. Here one socket read of
//! many chunks is decoded in place and its data slices go straight to the frame decoder.

/// Why a response could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HttpError {
    /// The status line or a header is not HTTP/1.x.
    #[error("malformed response head: {0}")]
    Head(&'static str),
    /// The head is longer than we accept.
    #[error("response head over {0} bytes")]
    HeadTooLarge(usize),
    /// A chunk size line is not hexadecimal, or a chunk is not followed by CRLF.
    #[error("malformed chunked body: {0}")]
    Chunk(&'static str),
}

/// The longest response head accepted.
pub const MAX_HEAD: usize = 64 * 1024;

/// How the body ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// `Content-Length: n`.
    Length(u64),
    /// Until the connection closes.
    Close,
}

/// A parsed response head.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Head {
    /// The status code.
    pub status: u16,
    /// How the body is delimited.
    pub framing: Framing,
}

/// Looks for a complete head at the start of `buf`: `Ok(Some((head, length)))` once it is all
/// there, `Ok(None)` if more bytes are needed.
pub fn parse_head(buf: &[u8]) -> Result<Option<(Head, usize)>, HttpError> {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return if buf.len() > MAX_HEAD {
            Err(HttpError::HeadTooLarge(MAX_HEAD))
        } else {
            Ok(None)
        };
    };
    let text = std::str::from_utf8(&buf[..end]).map_err(|_| HttpError::Head("not UTF-8"))?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next().ok_or(HttpError::Head("empty"))?;
    let mut parts = status_line.splitn(3, ' ');
    match parts.next() {
        Some(v) if v.starts_with("HTTP/1.") => {}
        _ => return Err(HttpError::Head("not an HTTP/1.x status line")),
    }
    let status = parts
        .next()
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or(HttpError::Head("bad status code"))?;
    let mut framing = Framing::Close;
    for line in lines {
        let (name, value) = line
            .split_once(':')
            .ok_or(HttpError::Head("header without a colon"))?;
        let value = value.trim();
        if name.eq_ignore_ascii_case("transfer-encoding")
            && value.to_ascii_lowercase().contains("chunked")
        {
            framing = Framing::Chunked;
        } else if name.eq_ignore_ascii_case("content-length") && framing != Framing::Chunked {
            framing = Framing::Length(
                value
                    .parse()
                    .map_err(|_| HttpError::Head("bad content-length"))?,
            );
        }
    }
    Ok(Some((Head { status, framing }, end + 4)))
}

/// The body decoder's state between reads.
#[derive(Clone, Debug, PartialEq, Eq)]
enum State {
    /// Reading the hex size (and ignoring extensions) up to CRLF.
    Size { size: u64, digits: u32, ext: bool },
    /// Saw CR after the size line.
    SizeLf(u64),
    /// Inside a chunk's data: this many bytes left.
    Data(u64),
    /// Expecting the CR after a chunk's data.
    DataCr,
    /// Expecting the LF after a chunk's data.
    DataLf,
    /// After the last chunk: skipping trailer lines; `blank` if the line so far is empty.
    Trailer { blank: bool },
    /// Fixed length: this many bytes left.
    Length(u64),
    /// Until EOF.
    Close,
    /// The body is complete.
    Done,
}

/// Decodes a response body incrementally.
#[derive(Clone, Debug)]
pub struct Body {
    state: State,
}

impl Body {
    /// A decoder for a body with this framing.
    pub fn new(framing: Framing) -> Body {
        let state = match framing {
            Framing::Chunked => State::Size {
                size: 0,
                digits: 0,
                ext: false,
            },
            Framing::Length(0) => State::Done,
            Framing::Length(n) => State::Length(n),
            Framing::Close => State::Close,
        };
        Body { state }
    }

    /// Whether the body is complete (more bytes would be a protocol error).
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Whether the connection closing now ends the body properly.
    pub fn may_end_at_eof(&self) -> bool {
        matches!(self.state, State::Close | State::Done)
    }

    /// Decodes `input`, handing every piece of body data to `data` in order, as slices of
    /// `input`. Bytes after the end of the body are ignored.
    pub fn decode<'a>(
        &mut self,
        mut input: &'a [u8],
        mut data: impl FnMut(&'a [u8]),
    ) -> Result<(), HttpError> {
        while !input.is_empty() {
            match &mut self.state {
                State::Done => return Ok(()),
                State::Close => {
                    data(input);
                    return Ok(());
                }
                State::Length(left) | State::Data(left) => {
                    let take = (*left).min(input.len() as u64) as usize;
                    data(&input[..take]);
                    input = &input[take..];
                    *left -= take as u64;
                    if *left == 0 {
                        self.state = match self.state {
                            State::Length(_) => State::Done,
                            _ => State::DataCr,
                        };
                    }
                }
                State::Size { size, digits, ext } => {
                    let b = input[0];
                    input = &input[1..];
                    match b {
                        b'\r' => self.state = State::SizeLf(*size),
                        _ if *ext => {}
                        b';' | b' ' | b'\t' => *ext = true,
                        _ => {
                            let d = (b as char)
                                .to_digit(16)
                                .ok_or(HttpError::Chunk("size is not hexadecimal"))?;
                            *digits += 1;
                            if *digits > 15 {
                                return Err(HttpError::Chunk("size too large"));
                            }
                            *size = *size * 16 + u64::from(d);
                        }
                    }
                }
                State::SizeLf(size) => {
                    if input[0] != b'\n' {
                        return Err(HttpError::Chunk("size line not ended by CRLF"));
                    }
                    input = &input[1..];
                    self.state = match *size {
                        0 => State::Trailer { blank: true },
                        n => State::Data(n),
                    };
                }
                State::DataCr => {
                    if input[0] != b'\r' {
                        return Err(HttpError::Chunk("chunk data not followed by CRLF"));
                    }
                    input = &input[1..];
                    self.state = State::DataLf;
                }
                State::DataLf => {
                    if input[0] != b'\n' {
                        return Err(HttpError::Chunk("chunk data not followed by CRLF"));
                    }
                    input = &input[1..];
                    self.state = State::Size {
                        size: 0,
                        digits: 0,
                        ext: false,
                    };
                }
                State::Trailer { blank } => {
                    let b = input[0];
                    input = &input[1..];
                    match b {
                        b'\r' => {}
                        b'\n' if *blank => self.state = State::Done,
                        b'\n' => *blank = true,
                        _ => *blank = false,
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(framing: Framing, wire: &[u8], step: usize) -> (Vec<u8>, bool) {
        let mut body = Body::new(framing);
        let mut out = Vec::new();
        for piece in wire.chunks(step) {
            body.decode(piece, |d| out.extend_from_slice(d)).unwrap();
        }
        (out, body.is_done())
    }

    #[test]
    fn parses_heads() {
        let head = b"HTTP/1.1 200 OK\r\nContent-Type: x\r\nTransfer-Encoding: chunked\r\n\r\nrest";
        let (h, len) = parse_head(head).unwrap().unwrap();
        assert_eq!(
            h,
            Head {
                status: 200,
                framing: Framing::Chunked
            }
        );
        assert_eq!(&head[len..], b"rest");
        let (h, _) = parse_head(b"HTTP/1.0 501 Not Implemented\r\nContent-Length: 12\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(
            h,
            Head {
                status: 501,
                framing: Framing::Length(12)
            }
        );
        assert_eq!(parse_head(b"HTTP/1.1 200 OK\r\n"), Ok(None));
        assert!(parse_head(b"SSH-2.0\r\n\r\n").is_err());
        assert!(parse_head(&vec![b'a'; MAX_HEAD + 1]).is_err());
    }

    #[test]
    fn chunked_in_any_split() {
        let wire = b"5\r\nhello\r\n1;ext=1\r\n \r\n6\r\nworld!\r\n0\r\nTrailer: x\r\n\r\nignored";
        for step in 1..wire.len() {
            let (out, done) = decode_all(Framing::Chunked, wire, step);
            assert_eq!(out, b"hello world!");
            assert!(done, "step {step}");
        }
    }

    #[test]
    fn length_and_close() {
        assert_eq!(
            decode_all(Framing::Length(3), b"abcdef", 2),
            (b"abc".to_vec(), true)
        );
        assert_eq!(
            decode_all(Framing::Close, b"abcdef", 4),
            (b"abcdef".to_vec(), false)
        );
    }

    #[test]
    fn bad_chunks_are_errors() {
        let mut b = Body::new(Framing::Chunked);
        assert!(b.decode(b"zz\r\n", |_| {}).is_err());
        let mut b = Body::new(Framing::Chunked);
        assert!(b.decode(b"1\r\nab", |_| {}).is_err());
        let mut b = Body::new(Framing::Chunked);
        assert!(b.decode(b"ffffffffffffffff\r\n", |_| {}).is_err());
    }
}
