//! Frames the daemon sends twice within one stream: what goes back in time is a re-send.
//!
//! Within one reader generation, the frames of one stream come in log order, and a stream's
//! timestamps never decrease. The daemon breaks that rule in one known way (measured on Docker
//! 20.10 with the json-file driver and `max-size`, see `docs/daemon.md`): after it rotates its
//! own log file, a follow stream may re-read the new file from its start and send again the
//! frames of it that it already sent, then go on. A re-send always ends with the last frame
//! that was sent before it, so it looks like one of:
//!
//! - a jump back: a frame stamped before the previous one, then more of the re-sent run, then
//!   the frames stamped exactly as the last one;
//! - the last frame again, alone: same timestamp, same bytes.
//!
//! [`Rewind`] drops both, per stream, before the frames reach the partial-line merger and the
//! cursor, so the cursor's counting of equal timestamps only ever sees the log as it is.
//!
//! Several messages may carry one timestamp (the parts of a line longer than 16 KiB always do;
//! a coarse clock may stamp two lines alike), so a frame stamped exactly like the previous one
//! is new unless it is that previous frame again, whole. Hence what the filter lets through
//! (documented in `docs/daemon.md`): a re-send that begins at a frame stamped exactly like the
//! last one, other than that last whole line alone: the parts of a long line sent again. It
//! never drops a frame that may be new, except a whole line identical to the one before it and
//! stamped the same nanosecond, which only a coarse clock could produce (Loki, for one, keeps
//! only one of two such entries too).

use crate::stream::Stream;
use crate::timestamp::Timestamp;

/// What the filter says about one frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Seen {
    /// New: pass it on.
    New,
    /// Sent already in this generation: drop it.
    Resent,
}

/// The last frame of one stream, and whether a re-send is being skipped.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
struct Track {
    /// Timestamp of the last new frame.
    ts: Option<Timestamp>,
    /// New frames stamped exactly `ts`.
    at_ts: u32,
    /// Fingerprint of the last new frame, if it ended a line (its payload ends in `\n`).
    complete: Option<u64>,
    /// A re-send is under way.
    skip: Option<Skip>,
}

/// A re-send that began before the last timestamp: all `n` frames stamped with it come again.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Skip(u32);

/// The re-send filter of one reader generation: one track per stream.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Rewind {
    tracks: [Track; 3],
}

impl Rewind {
    /// A filter that has seen nothing (each generation starts with one).
    pub fn new() -> Rewind {
        Rewind::default()
    }

    /// Judges the next frame of `stream`, stamped `ts`, with `payload` (its `\n` included when
    /// it ends a line).
    pub fn judge(&mut self, stream: Stream, ts: Timestamp, payload: &[u8]) -> Seen {
        let t = &mut self.tracks[stream.index()];
        let Some(last) = t.ts else {
            *t = Track::first(ts, payload);
            return Seen::New;
        };
        if ts > last {
            *t = Track::first(ts, payload);
            return Seen::New;
        }
        if ts < last {
            // Gone back in time: a re-send that will come through the frames stamped `last`.
            t.skip.get_or_insert(Skip(t.at_ts));
            return Seen::Resent;
        }
        if let Some(Skip(n)) = t.skip {
            t.skip = n.checked_sub(1).filter(|&r| r > 0).map(Skip);
            if n > 0 {
                return Seen::Resent;
            }
        } else if t.complete.is_some()
            && is_complete(payload)
            && t.complete == Some(fingerprint(payload))
        {
            // The whole line just sent, again: the daemon stamps every line on its own.
            return Seen::Resent;
        }
        t.at_ts += 1;
        t.complete = is_complete(payload).then(|| fingerprint(payload));
        Seen::New
    }
}

/// Whether [`Rewind`] tells a re-send from new frames: `run` is one stream's frames sent again,
/// in order, each as (its timestamp, whether it ends a line), the last of them the last frame
/// sent before. It does when the run begins with a frame stamped before that last one, or is
/// that last frame alone and ends a line; an empty run (nothing of this stream sent again) is
/// no trouble. The model and the fuzz world re-send only such runs (the module doc says what
/// is left out, and why).
pub fn recognises(run: &[(Timestamp, bool)]) -> bool {
    match (run.first(), run.last()) {
        (Some(first), Some(last)) => first.0 < last.0 || (run.len() == 1 && last.1),
        _ => true,
    }
}

impl Track {
    fn first(ts: Timestamp, payload: &[u8]) -> Track {
        Track {
            ts: Some(ts),
            at_ts: 1,
            complete: is_complete(payload).then(|| fingerprint(payload)),
            skip: None,
        }
    }
}

fn is_complete(payload: &[u8]) -> bool {
    payload.last() == Some(&b'\n')
}

/// A fast 64-bit fingerprint of a frame's payload (8 bytes per step, multiply-rotate mixing);
/// only ever compared with the fingerprint of the previous frame of the same stream.
pub fn fingerprint(bytes: &[u8]) -> u64 {
    const K: u64 = 0x517c_c1b7_2722_0a95;
    let mut h = bytes.len() as u64;
    let mut chunks = bytes.chunks_exact(8);
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        h = (h.rotate_left(5) ^ u64::from_le_bytes(w)).wrapping_mul(K);
    }
    let mut w = [0u8; 8];
    let rest = chunks.remainder();
    w[..rest.len()].copy_from_slice(rest);
    h = (h.rotate_left(5) ^ u64::from_le_bytes(w)).wrapping_mul(K);
    h ^ (h >> 29)
}

#[cfg(test)]
mod tests {
    use super::*;
    use Stream::{Stderr, Stdout};

    /// Judges `(stream, ts, payload)` frames; returns the indices passed on.
    fn kept(frames: &[(Stream, u64, &[u8])]) -> Vec<usize> {
        let mut r = Rewind::new();
        frames
            .iter()
            .enumerate()
            .filter(|(_, (s, ts, p))| r.judge(*s, Timestamp(*ts), p) == Seen::New)
            .map(|(i, _)| i)
            .collect()
    }

    #[test]
    fn an_ordered_stream_passes_whole() {
        let f: [(Stream, u64, &[u8]); 5] = [
            (Stdout, 1, b"a\n"),
            (Stderr, 0, b"e\n"),
            (Stdout, 2, b"p1"),
            (Stdout, 2, b"p2\n"),
            (Stdout, 3, b"b\n"),
        ];
        assert_eq!(kept(&f), vec![0, 1, 2, 3, 4]);
    }

    #[test]
    fn the_last_line_sent_again_alone_is_dropped() {
        // Measured: after the daemon rotated its json-file, the last line came again.
        let f: [(Stream, u64, &[u8]); 4] = [
            (Stdout, 1, b"a\n"),
            (Stdout, 2, b"b\n"),
            (Stdout, 2, b"b\n"),
            (Stdout, 3, b"c\n"),
        ];
        assert_eq!(kept(&f), vec![0, 1, 3]);
    }

    #[test]
    fn a_jump_back_is_dropped_through_the_last_timestamp() {
        // Measured: lines 636..639 sent, then 636..639 again, then 640.
        let f: [(Stream, u64, &[u8]); 9] = [
            (Stdout, 6, b"636\n"),
            (Stdout, 7, b"637\n"),
            (Stdout, 8, b"p1"),
            (Stdout, 8, b"p2\n"),
            (Stdout, 6, b"636\n"),
            (Stdout, 7, b"637\n"),
            (Stdout, 8, b"p1"),
            (Stdout, 8, b"p2\n"),
            (Stdout, 9, b"640\n"),
        ];
        assert_eq!(kept(&f), vec![0, 1, 2, 3, 8]);
    }

    #[test]
    fn a_new_line_stamped_like_the_last_one_is_kept_even_in_parts() {
        // A coarse clock: a long line stamped like the whole line before it. Ambiguous with a
        // re-send of parts; kept, since dropping it could lose it.
        let f: [(Stream, u64, &[u8]); 4] = [
            (Stdout, 8, b"a\n"),
            (Stdout, 8, b"p1"),
            (Stdout, 8, b"p2\n"),
            (Stdout, 9, b"x\n"),
        ];
        assert_eq!(kept(&f), vec![0, 1, 2, 3]);
    }

    #[test]
    fn identical_parts_of_one_long_line_are_all_kept() {
        let f: [(Stream, u64, &[u8]); 4] = [
            (Stdout, 8, b"xx"),
            (Stdout, 8, b"xx"),
            (Stdout, 8, b"xx"),
            (Stdout, 8, b"x\n"),
        ];
        assert_eq!(kept(&f), vec![0, 1, 2, 3]);
    }

    #[test]
    fn two_different_lines_stamped_alike_are_both_kept() {
        let f: [(Stream, u64, &[u8]); 3] = [
            (Stdout, 8, b"a\n"),
            (Stdout, 8, b"b\n"),
            (Stdout, 8, b"a\n"),
        ];
        assert_eq!(kept(&f), vec![0, 1, 2]);
    }

    #[test]
    fn streams_are_judged_apart() {
        let f: [(Stream, u64, &[u8]); 3] = [
            (Stdout, 5, b"o\n"),
            (Stderr, 4, b"e\n"),
            (Stderr, 4, b"e\n"),
        ];
        assert_eq!(kept(&f), vec![0, 1]);
    }

    #[test]
    fn fingerprints_differ_on_any_byte_and_on_length() {
        let a = fingerprint(b"0123456789abcdef-");
        assert_ne!(a, fingerprint(b"0123456789abcdef+"));
        assert_ne!(a, fingerprint(b"0123456789abcdef-\0"));
        assert_ne!(fingerprint(b""), fingerprint(b"\0"));
        assert_eq!(a, fingerprint(b"0123456789abcdef-"));
    }
}
