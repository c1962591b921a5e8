//! The output contract: one JSON object per line, written without per-line allocation.
//!
//! `{"container_id":…,"container_name":…,"image":…,"ts":…,"stream":…,"pos":…,"message":…}`
//! and `"truncated":true` when a line was cut at the cap. `pos` is the line's position in its
//! stream, `"<ts in ns>.<n>"` (the n-th line stamped that nanosecond): unique per container and
//! stream, and the same when a line is read again, so a consumer can drop a replay. The
//! container's part is encoded once; the message is escaped straight into the batch buffer.
//! Bytes that are not UTF-8 become U+FFFD, so every line is valid JSON.

use capturer_core::{Message, Position, Stream};

use crate::docker::ContainerMeta;

/// Encodes one container's lines.
#[derive(Clone, Debug)]
pub struct LineEncoder {
    prefix: Vec<u8>,
}

impl LineEncoder {
    /// The encoder for a container.
    pub fn new(meta: &ContainerMeta) -> LineEncoder {
        let mut prefix = Vec::with_capacity(160);
        prefix.extend_from_slice(b"{\"container_id\":\"");
        escape(&mut prefix, meta.id.as_bytes());
        prefix.extend_from_slice(b"\",\"container_name\":\"");
        escape(&mut prefix, meta.name.as_bytes());
        prefix.extend_from_slice(b"\",\"image\":\"");
        escape(&mut prefix, meta.image.as_bytes());
        prefix.extend_from_slice(b"\",\"ts\":\"");
        LineEncoder { prefix }
    }

    /// Appends `m`, at `pos` in its stream, as one JSON line to `out`.
    pub fn encode(&self, out: &mut Vec<u8>, m: &Message<'_>, pos: Position) {
        out.extend_from_slice(&self.prefix);
        escape(out, m.ts_text);
        out.extend_from_slice(match m.stream {
            Stream::Stdout => b"\",\"stream\":\"stdout\",\"pos\":\"".as_slice(),
            Stream::Stderr => b"\",\"stream\":\"stderr\",\"pos\":\"",
            Stream::Console => b"\",\"stream\":\"console\",\"pos\":\"",
        });
        push_decimal(out, pos.ts.0);
        out.push(b'.');
        push_decimal(out, pos.n);
        out.extend_from_slice(b"\",\"message\":\"");
        escape(out, m.body);
        if m.truncated {
            out.extend_from_slice(b"\",\"truncated\":true}\n");
        } else {
            out.extend_from_slice(b"\"}\n");
        }
    }
}

/// The stream and position of one record written by [`LineEncoder::encode`] (without its
/// newline), or `None` if it is not one. Recovery reads the sink's output back with it.
pub fn record_position(record: &[u8]) -> Option<(Stream, Position)> {
    // Inside an escaped string every quote follows a backslash, so these keys match only
    // where the encoder put them.
    const KEY: &[u8] = b"\",\"stream\":\"";
    let at = record.windows(KEY.len()).position(|w| w == KEY)? + KEY.len();
    let rest = &record[at..];
    let (stream, rest) = [Stream::Stdout, Stream::Stderr, Stream::Console]
        .into_iter()
        .find_map(|s| rest.strip_prefix(s.as_str().as_bytes()).map(|r| (s, r)))?;
    let rest = rest.strip_prefix(b"\",\"pos\":\"")?;
    let end = rest.iter().position(|&b| b == b'"')?;
    let text = std::str::from_utf8(&rest[..end]).ok()?;
    let (ts, n) = text.split_once('.')?;
    Some((
        stream,
        Position {
            ts: capturer_core::Timestamp(ts.parse().ok()?),
            n: n.parse().ok()?,
        },
    ))
}

/// `record` (one record written by [`LineEncoder::encode`], without its newline) with its
/// message cut so that the whole is at most `max` bytes, and marked `"truncated":true`, the
/// other fields and their order untouched; the record as it is if it fits; `None` if it is not
/// a record or even an empty message does not fit. The cut never splits an escape or a
/// character, and is the same whenever the same record is cut to the same size.
pub fn cut_record(record: &[u8], max: usize) -> Option<Vec<u8>> {
    const KEY: &[u8] = b"\",\"message\":\"";
    const CUT: &[u8] = b"\",\"truncated\":true}";
    if record.len() <= max {
        return Some(record.to_vec());
    }
    // Inside an escaped string every quote follows a backslash: the key matches only where
    // the encoder put it, and the message is the last field.
    let at = record.windows(KEY.len()).position(|w| w == KEY)? + KEY.len();
    let end = if record.ends_with(CUT) {
        record.len() - CUT.len()
    } else if record.ends_with(b"\"}") {
        record.len() - 2
    } else {
        return None;
    };
    let body = record.get(at..end)?;
    let room = max.checked_sub(at + CUT.len())?;
    let mut cut = 0;
    while cut < body.len() {
        let len = match body[cut] {
            b'\\' if body.get(cut + 1) == Some(&b'u') => 6,
            b'\\' => 2,
            b if b < 0x80 => 1,
            b if b >= 0xf0 => 4,
            b if b >= 0xe0 => 3,
            _ => 2,
        };
        if cut + len > room {
            break;
        }
        cut += len;
    }
    let mut out = Vec::with_capacity(at + cut + CUT.len());
    out.extend_from_slice(&record[..at]);
    out.extend_from_slice(&body[..cut]);
    out.extend_from_slice(CUT);
    Some(out)
}

/// Appends `v` in decimal, a digit loop on the stack (no formatter on the hot path).
fn push_decimal(out: &mut Vec<u8>, mut v: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// Escapes `bytes` as the inside of a JSON string; invalid UTF-8 becomes U+FFFD.
///
/// One pass for ASCII, which most log lines are: the scan stops at bytes to escape and at the
/// first non-ASCII byte, and only from there is the rest validated as UTF-8.
fn escape(out: &mut Vec<u8>, bytes: &[u8]) {
    let mut start = 0;
    while let Some(i) = bytes[start..].iter().position(|&b| STOPS[usize::from(b)]) {
        let i = start + i;
        out.extend_from_slice(&bytes[start..i]);
        if bytes[i] >= 0x80 {
            match std::str::from_utf8(&bytes[i..]) {
                Ok(rest) => escape_str(out, rest),
                Err(_) => escape_str(out, &String::from_utf8_lossy(&bytes[i..])),
            }
            return;
        }
        escape_byte(out, bytes[i]);
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
}

/// Bytes that a JSON string cannot hold as they are.
const NEEDS_ESCAPE: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 0x20 {
        t[b] = true;
        b += 1;
    }
    t[b'"' as usize] = true;
    t[b'\\' as usize] = true;
    t[0x7f] = true;
    t
};

/// Where the ASCII scan of [`escape`] stops: a byte to escape, or one that is not ASCII.
const STOPS: [bool; 256] = {
    let mut t = NEEDS_ESCAPE;
    let mut b = 0x80;
    while b < 0x100 {
        t[b] = true;
        b += 1;
    }
    t
};

fn escape_byte(out: &mut Vec<u8>, b: u8) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    match b {
        b'"' => out.extend_from_slice(b"\\\""),
        b'\\' => out.extend_from_slice(b"\\\\"),
        b'\n' => out.extend_from_slice(b"\\n"),
        b'\r' => out.extend_from_slice(b"\\r"),
        b'\t' => out.extend_from_slice(b"\\t"),
        b => out.extend_from_slice(&[
            b'\\',
            b'u',
            b'0',
            b'0',
            HEX[usize::from(b >> 4)],
            HEX[usize::from(b & 15)],
        ]),
    }
}

/// Escapes valid UTF-8 (multi-byte characters are copied as they are).
fn escape_str(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    let mut start = 0;
    // Copy the runs between escapes whole: most lines have none.
    while let Some(i) = bytes[start..]
        .iter()
        .position(|&b| NEEDS_ESCAPE[usize::from(b)])
    {
        let i = start + i;
        out.extend_from_slice(&bytes[start..i]);
        escape_byte(out, bytes[i]);
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use capturer_core::Timestamp;
    use std::collections::HashMap;

    #[test]
    fn every_line_is_json_with_the_contract_fields() {
        let meta = ContainerMeta {
            id: "a".repeat(64),
            name: "web\"1".into(),
            image: "img:1".into(),
            tty: false,
            labels: HashMap::new(),
            running: true,
            finished: None,
        };
        let enc = LineEncoder::new(&meta);
        let mut out = Vec::new();
        let body = b"tab\there \"quoted\" \\ \x01 caf\xc3\xa9 bad\xff";
        enc.encode(
            &mut out,
            &Message {
                stream: Stream::Stderr,
                ts: Timestamp(1),
                ts_text: b"2024-01-01T00:00:00.000000001Z",
                body,
                truncated: true,
            },
            Position {
                ts: Timestamp(1),
                n: 2,
            },
        );
        assert_eq!(out.last(), Some(&b'\n'));
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["container_id"], "a".repeat(64));
        assert_eq!(v["container_name"], "web\"1");
        assert_eq!(v["image"], "img:1");
        assert_eq!(v["stream"], "stderr");
        assert_eq!(v["ts"], "2024-01-01T00:00:00.000000001Z");
        assert_eq!(v["pos"], "1.2");
        let mut big = Vec::new();
        push_decimal(&mut big, u64::MAX);
        push_decimal(&mut big, 0);
        assert_eq!(big, b"184467440737095516150");
        assert_eq!(
            v["message"],
            "tab\there \"quoted\" \\ \u{1} café bad\u{fffd}"
        );
        assert_eq!(v["truncated"], true);
        assert_eq!(
            record_position(&out[..out.len() - 1]),
            Some((
                Stream::Stderr,
                Position {
                    ts: Timestamp(1),
                    n: 2
                }
            ))
        );
    }

    #[test]
    fn escapes_after_the_first_non_ascii_byte_too() {
        for (raw, text) in [
            (&b"caf\xc3\xa9 \"q\"\n\x01"[..], "café \"q\"\n\u{1}"),
            (b"\xff\"\\", "\u{fffd}\"\\"),
            (b"plain", "plain"),
            (b"\x7f\xe2\x82\xac\t", "\u{7f}€\t"),
        ] {
            let mut out = b"\"".to_vec();
            escape(&mut out, raw);
            out.push(b'"');
            let back: String = serde_json::from_slice(&out).unwrap();
            assert_eq!(back, text, "{:?}", String::from_utf8_lossy(&out));
        }
    }

    #[test]
    fn a_record_cut_to_size_keeps_its_fields_and_is_marked() {
        let meta = ContainerMeta {
            id: "c".repeat(64),
            name: "n\",\"message\":\"x".into(),
            image: "i".into(),
            tty: false,
            labels: HashMap::new(),
            running: true,
            finished: None,
        };
        let mut body = Vec::new();
        for _ in 0..300 {
            body.extend_from_slice("é\"\u{1}a".as_bytes());
        }
        let pos = Position {
            ts: Timestamp(5),
            n: 1,
        };
        let m = Message {
            stream: Stream::Stdout,
            ts: pos.ts,
            ts_text: b"1970-01-01T00:00:00.000000005Z",
            body: &body,
            truncated: false,
        };
        let mut out = Vec::new();
        LineEncoder::new(&meta).encode(&mut out, &m, pos);
        out.pop();
        let full: serde_json::Value = serde_json::from_slice(&out).unwrap();
        for max in [out.len(), 2000, 1000, 700, 400] {
            let cut = cut_record(&out, max).unwrap();
            assert!(cut.len() <= max, "{max}: {}", cut.len());
            let v: serde_json::Value = serde_json::from_slice(&cut).unwrap();
            assert_eq!(v["pos"], "5.1");
            assert_eq!(v["container_name"], full["container_name"]);
            let message = v["message"].as_str().unwrap();
            assert!(full["message"].as_str().unwrap().starts_with(message));
            assert_eq!(record_position(&cut), record_position(&out));
            if max == out.len() {
                assert_eq!(cut, out, "a record that fits is left as it is");
            } else {
                assert_eq!(v["truncated"], true);
                assert!(cut.len() + 6 > max, "{max}: cut too short, {}", cut.len());
                let again = cut_record(&cut, max / 2 + 300).unwrap();
                assert!(again.len() <= max / 2 + 300);
            }
        }
        assert_eq!(
            cut_record(&out, 100),
            None,
            "not even an empty message fits"
        );
        assert_eq!(cut_record(b"{\"not\":\"a record, and long\"}", 10), None);
    }

    #[test]
    fn a_position_is_read_only_from_its_key() {
        let meta = ContainerMeta {
            id: "b".repeat(64),
            name: "x\",\"stream\":\"stdout\",\"pos\":\"9.9".into(),
            image: "i".into(),
            tty: true,
            labels: HashMap::new(),
            running: true,
            finished: None,
        };
        let mut out = Vec::new();
        let pos = Position {
            ts: Timestamp(1_700_000_000_123_456_789),
            n: 3,
        };
        let m = Message {
            stream: Stream::Console,
            ts: pos.ts,
            ts_text: b"2023-11-14T22:13:20.123456789Z",
            body: b"\",\"stream\":\"stderr\",\"pos\":\"1.1\"",
            truncated: false,
        };
        LineEncoder::new(&meta).encode(&mut out, &m, pos);
        assert_eq!(record_position(&out), Some((Stream::Console, pos)));
        assert_eq!(record_position(b"{\"container_id\":\"a\""), None, "torn");
        assert_eq!(record_position(b"not json"), None);
    }
}
