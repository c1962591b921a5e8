//! Frames the daemon sends twice within one stream: what goes back in time is a re-send.
//!
//! Within one reader generation, the frames of one stream come in log order, and a stream's
//! timestamps never decrease. The daemon breaks that rule in one known way (measured on Docker
//! 20.10, json-file with `max-size` and `local`, see `docs/daemon.md`): after it rotates its
//! own log file, a follow stream may send again frames it already sent, then go on. What it
//! sends again looks like one of:
//!
//! - a jump back: a frame stamped before the previous one, then more of the re-sent run, then
//!   the frames stamped exactly as the last one;
//! - after a line's end, frames of that stamp again: the last frame alone (a short line, or a
//!   long line's last part), or a long line from its first part (`local`).
//!
//! [`Rewind`] drops both, per stream, before the frames reach the partial-line merger and the
//! cursor, so the cursor's counting of equal timestamps only ever sees the log as it is. Its
//! rule for frames stamped exactly like the last one: once a line stamped `t` has ended (see
//! [`ends_line`]), a frame stamped `t` identical to one already passed at `t` is sent again.
//! Only after a line's end: inside a line, a full 16 KiB part may be followed by an identical
//! one (a line of one repeated character); after it, a new frame stamped the same nanosecond
//! takes a coarse clock, and an identical one a coarse clock and a repeated line.
//!
//! Hence what the filter lets through (documented in `docs/daemon.md`): a re-send that begins
//! inside a line, at a frame stamped like the last one (a full part sent again alone before its
//! line ended). It never drops a frame that may be new, except a line stamped the same
//! nanosecond as a line before it and beginning with the same bytes as one of that stamp's
//! frames, which only a coarse clock could produce (Loki, for one, keeps only one of two
//! identical entries too).

use crate::frame::DAEMON_FRAME_PAYLOAD;
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
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
struct Track {
    /// Timestamp of the last new frame.
    ts: Option<Timestamp>,
    /// New frames stamped exactly `ts`.
    at_ts: u32,
    /// Whether the last new frame ended a line ([`ends_line`]).
    ended: bool,
    /// Fingerprints of the new frames stamped `ts`, the last [`MAX_SEEN`] of them (a re-send
    /// ends with the last frame sent, so it is a run of the latest).
    seen: Vec<u64>,
    /// A re-send is under way.
    skip: Option<Skip>,
}

/// Frames of one stamp whose fingerprints a track keeps: a line of 1 MiB in 16 KiB parts. A
/// re-send of more is let through.
const MAX_SEEN: usize = 64;

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
        let fp = fingerprint(payload);
        match t.ts {
            Some(last) if ts < last => {
                // Gone back in time: a re-send that will come through the frames stamped `last`.
                t.skip.get_or_insert(Skip(t.at_ts));
                return Seen::Resent;
            }
            Some(last) if ts == last => {
                if let Some(Skip(n)) = t.skip {
                    t.skip = n.checked_sub(1).filter(|&r| r > 0).map(Skip);
                    if n > 0 {
                        return Seen::Resent;
                    }
                } else if t.ended && t.seen.contains(&fp) {
                    // After a line's end, what was sent at this stamp, again. `ended` stays: the
                    // rest of the re-send is judged alike.
                    return Seen::Resent;
                }
            }
            _ => {
                // A new stamp (the seen list keeps its allocation: one per stream, not per frame).
                t.ts = Some(ts);
                t.at_ts = 0;
                t.skip = None;
                t.seen.clear();
            }
        }
        t.at_ts += 1;
        t.ended = ends_line(payload);
        if t.seen.len() == MAX_SEEN {
            t.seen.remove(0);
        }
        t.seen.push(fp);
        Seen::New
    }
}

/// Whether [`Rewind`] tells a re-send from new frames: `run` is one stream's frames sent again,
/// in order, each as (its timestamp, whether it [`ends_line`]), the last of them the last frame
/// sent before. It does when the run begins with a frame stamped before that last one, or when
/// that last frame ended a line (the run is then frames of its stamp, at most [`MAX_SEEN`]); an
/// empty run (nothing of this stream sent again) is no trouble. The model and the fuzz world
/// re-send only such runs (the module doc says what is left out, and why).
pub fn recognises(run: &[(Timestamp, bool)]) -> bool {
    match (run.first(), run.last()) {
        (Some(first), Some(last)) => first.0 < last.0 || (last.1 && run.len() <= MAX_SEEN),
        _ => true,
    }
}

/// Whether a frame's payload ends a line: it ends in `\n`, or it is shorter than a full daemon
/// part (the `local` driver's last part of a long line, or a last line without newline). Only a
/// full part without `\n` may be followed by more of its line.
pub fn ends_line(payload: &[u8]) -> bool {
    payload.last() == Some(&b'\n') || payload.len() < DAEMON_FRAME_PAYLOAD
}

/// A fast 64-bit fingerprint of a frame's payload (8 bytes per step, multiply-rotate mixing);
/// only ever compared with those of frames of the same stream and stamp.
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

    /// A full daemon part of `c`, and the end of its line.
    fn full(c: u8) -> Vec<u8> {
        vec![c; DAEMON_FRAME_PAYLOAD]
    }

    #[test]
    fn the_last_part_of_a_long_line_sent_again_alone_is_dropped() {
        // Measured (`daemon-facts.py resend-long`): after rotating its file, the daemon sent
        // a long line's last part again; with `local` that part has no `\n`.
        let (a, b) = (full(b'a'), full(b'b'));
        for last in [&b"tail"[..], b"tail\n"] {
            let f: [(Stream, u64, &[u8]); 5] = [
                (Stdout, 8, &a),
                (Stdout, 8, &b),
                (Stdout, 8, last),
                (Stdout, 8, last),
                (Stdout, 9, b"next\n"),
            ];
            assert_eq!(kept(&f), vec![0, 1, 2, 4], "last part {last:?}");
        }
    }

    #[test]
    fn a_full_part_sent_again_alone_is_let_through() {
        // Measured too, and the residual: the same bytes as a line of one repeated character.
        let x = full(b'x');
        let f: [(Stream, u64, &[u8]); 3] = [(Stdout, 8, &x), (Stdout, 8, &x), (Stdout, 8, b"x")];
        assert_eq!(kept(&f), vec![0, 1, 2]);
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
        let x = full(b'x');
        let f: [(Stream, u64, &[u8]); 4] = [
            (Stdout, 8, &x),
            (Stdout, 8, &x),
            (Stdout, 8, &x),
            (Stdout, 8, b"x\n"),
        ];
        assert_eq!(kept(&f), vec![0, 1, 2, 3]);
    }

    #[test]
    fn different_lines_stamped_alike_are_all_kept() {
        let f: [(Stream, u64, &[u8]); 3] = [
            (Stdout, 8, b"a\n"),
            (Stdout, 8, b"b\n"),
            (Stdout, 8, b"c\n"),
        ];
        assert_eq!(kept(&f), vec![0, 1, 2]);
    }

    #[test]
    fn a_long_line_sent_again_from_its_first_part_is_dropped() {
        // Measured with `local` and `max-size`: p1 p2 p1 p2, all stamped alike, then the next
        // line; or p1 p2 p1 and the next line at once.
        let (p1, p2) = (full(b'a'), b"tail".to_vec());
        let again: [(Stream, u64, &[u8]); 5] = [
            (Stdout, 8, &p1),
            (Stdout, 8, &p2),
            (Stdout, 8, &p1),
            (Stdout, 8, &p2),
            (Stdout, 9, b"next\n"),
        ];
        assert_eq!(kept(&again), vec![0, 1, 4]);
        let first_only: [(Stream, u64, &[u8]); 4] = [
            (Stdout, 8, &p1),
            (Stdout, 8, &p2),
            (Stdout, 8, &p1),
            (Stdout, 9, b"next\n"),
        ];
        assert_eq!(kept(&first_only), vec![0, 1, 3]);
    }

    #[test]
    fn a_re_send_of_the_latest_frames_of_a_crowded_stamp_is_dropped() {
        // Found by the fuzzer: more frames at one stamp than the track keeps; a re-send is a
        // run of the latest, so those are the ones to keep.
        let parts: Vec<Vec<u8>> = (0..MAX_SEEN + 10)
            .map(|i| format!("part {i}\n").into_bytes())
            .collect();
        let mut f: Vec<(Stream, u64, &[u8])> = parts.iter().map(|p| (Stdout, 8, &p[..])).collect();
        let resent = &parts[parts.len() - MAX_SEEN..];
        f.extend(resent.iter().map(|p| (Stdout, 8, &p[..])));
        assert_eq!(kept(&f), (0..parts.len()).collect::<Vec<_>>());
    }

    #[test]
    fn a_repeated_line_stamped_like_a_line_before_it_is_taken_for_a_re_send() {
        // The price of the rule, on a coarse clock only: the daemon stamps each line itself.
        let f: [(Stream, u64, &[u8]); 3] = [
            (Stdout, 8, b"a\n"),
            (Stdout, 8, b"b\n"),
            (Stdout, 8, b"a\n"),
        ];
        assert_eq!(kept(&f), vec![0, 1]);
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
