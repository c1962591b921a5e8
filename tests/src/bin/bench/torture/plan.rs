//! What each container of a round is, planned from the seed: how it logs, and its program.

use capturer_tests::rng::Rng;

use super::script::{random_streams, Script};

/// A rotated log keeps at least this many seconds of its container's fastest writing. The
/// capturer is down 0.2 to 2 s at a time (up to ~4 s when a stop with a 2 s timeout falls in
/// the downtime; a daemon restart stops the writers too), then starts in well under a second
/// and reopens from its cursor; the snapshots come every 2 s. So a line is never rotated away
/// before both the capturer and the snapshots could read it: a loss is the capturer's.
const RETAIN_SECS: f64 = 10.0;

/// How a container logs.
#[derive(Clone, Copy, Debug)]
pub(super) enum Logging {
    /// json-file, never rotated.
    Json,
    /// json-file, rotated at `max_size_k` KiB, keeping `max_file` files.
    JsonRotated { max_size_k: u64, max_file: u64 },
    /// The `local` driver with its defaults (20 MB files: reached by long lines only).
    Local,
}

impl Logging {
    /// Whether the daemon rotates its log files (and so may send a frame again, see
    /// `capturer_core::rewind`).
    pub(super) fn rotates_files(self) -> bool {
        !matches!(self, Logging::Json)
    }

    /// The driver and its options, for the trace and the reports.
    pub(super) fn describe(self) -> String {
        match self {
            Logging::Json => "json-file".into(),
            Logging::JsonRotated {
                max_size_k,
                max_file,
            } => format!("json-file max-size={max_size_k}k max-file={max_file}"),
            Logging::Local => "local".into(),
        }
    }
}

/// A container's program, and what it costs.
#[derive(Clone, Debug)]
pub(super) struct Program {
    /// The busybox `sh` script.
    pub(super) script: String,
    /// Loops until stopped (else it ends by itself).
    pub(super) looping: bool,
    /// Lines one run writes at most (finite), or lines a second at most (looping).
    pub(super) lines: f64,
    /// Bytes a second its json-file log grows at most (looping programs).
    pub(super) log_bytes_per_sec: f64,
}

/// A container as planned from the seed.
#[derive(Clone, Debug)]
pub(super) struct Plan {
    /// Its log driver and options.
    pub(super) logging: Logging,
    /// Runs with a TTY (one `console` stream).
    pub(super) tty: bool,
    /// `--rm`: its log vanishes with it.
    pub(super) auto_remove: bool,
    /// Restart policy `always`.
    pub(super) restart_always: bool,
    /// What it runs.
    pub(super) program: Program,
}

/// Plans container `idx` of round `seed`: the same plan for the same pair, whatever the
/// chaos did before.
pub(super) fn plan(seed: u64, idx: usize) -> Plan {
    let mut rng = Rng::new(seed.wrapping_mul(1_000_003) ^ ((idx as u64 + 1) << 32));
    let auto_remove = rng.chance(0.1);
    // A rotated log needs a steady writer of short lines to be sized for (see `rotated`).
    if !auto_remove && rng.chance(0.25) {
        return rotated(&mut rng, idx);
    }
    let logging = if rng.chance(0.25) {
        Logging::Local
    } else {
        Logging::Json
    };
    let tty = rng.chance(0.15);
    let looping = rng.chance(0.35);
    let program = if looping {
        looping_program(&mut rng, idx)
    } else {
        finite_program(&mut rng, idx)
    };
    // `always` reruns a finite program whenever it ends: only for cheap ones.
    let restart_always = !auto_remove && (looping || program.lines <= 300.0) && rng.chance(0.12);
    Plan {
        logging,
        tty,
        auto_remove,
        restart_always,
        program,
    }
}

/// A finite program: 1 to 6 steps, at most ~3000 lines a run (or one big log), then maybe a
/// last line without newline, then an exit code.
fn finite_program(rng: &mut Rng, idx: usize) -> Program {
    let mut s = Script::new(idx);
    let mut big = false;
    for _ in 0..rng.range(1, 6) {
        if s.lines > 3000.0 {
            break;
        }
        match rng.range(0, 20) {
            // A big log (megabytes, or tens of thousands of lines): a reopen from a cursor
            // makes the daemon scan it all, which takes longer than a short --rotate-every.
            20 if !big => {
                big = true;
                if rng.chance(0.5) {
                    s.long_run(rng.range(20, 50), rng.range(100_000, 200_000));
                } else {
                    let n = rng.range(10_000, 20_000);
                    let streams = random_streams(rng);
                    s.burst(rng, n, 20, streams);
                }
                // ... and it keeps writing for seconds, reopened over and over.
                let (groups, per) = (rng.range(10, 30), rng.range(1, 5));
                let sleep = rng.log_uniform(0.1, 0.3);
                s.steady(rng, groups, per, 20, sleep);
            }
            0..=5 => {
                let n = rng.log_uniform(1.0, 1500.0) as u64;
                let pad = rng.pick(&[0, 10, 100, 300]);
                let streams = random_streams(rng);
                s.burst(rng, n, pad, streams);
            }
            6..=10 => {
                let (groups, per) = (rng.range(2, 25), rng.range(1, 40));
                let pad = rng.pick(&[0, 20, 200]);
                let sleep = rng.log_uniform(0.01, 0.3);
                s.steady(rng, groups, per, pad, sleep);
            }
            11..=13 => s.sleep(rng.log_uniform(0.1, 3.0)),
            14..=16 if s.long_lines < 3 => {
                // Around the daemon's 16 KiB split, and far beyond it.
                let len = match rng.range(0, 3) {
                    0 => rng.pick(&[16_383, 16_384, 16_385, 32_768, 32_769]),
                    1 => rng.range(1_000, 200_000),
                    _ => rng.pick(&[65_536, 100_000, 200_000]),
                };
                let stderr = rng.chance(0.3);
                s.long(len, stderr);
            }
            _ => s.tiny(rng),
        }
    }
    let tail = if rng.chance(0.5) {
        // The last line has no newline: the daemon logs it as it is at exit.
        "printf '%s' \"c$IDX o $r $i 3 xxx\"\n".replace("$IDX", &idx.to_string())
    } else {
        String::new()
    };
    let code = rng.pick(&[0, 0, 1, 2, 3, 42, 127, 255]);
    let trap = rng.chance(0.3);
    Program {
        script: s.finish(false, trap, &format!("{tail}exit {code}\n")),
        looping: false,
        lines: s.lines + 2.0,
        log_bytes_per_sec: 0.0,
    }
}

/// A program that writes until it is stopped: small bursts and one-byte lines, then a sleep,
/// at most ~200 lines a second.
fn looping_program(rng: &mut Rng, idx: usize) -> Program {
    let mut s = Script::new(idx);
    for _ in 0..rng.range(1, 3) {
        if rng.chance(0.8) {
            let n = rng.range(1, 50);
            let pad = rng.pick(&[0, 30, 150]);
            let streams = random_streams(rng);
            s.burst(rng, n, pad, streams);
        } else {
            s.tiny(rng);
        }
    }
    let sleep = rng.log_uniform(0.1, 1.0).max(s.lines / 200.0);
    s.sleep(sleep);
    Program {
        script: s.finish(true, rng.chance(0.3), ""),
        looping: true,
        lines: s.lines / s.sleeps,
        log_bytes_per_sec: 0.0,
    }
}

/// A steady writer of short lines whose json-file log rotates: `max-file` files of `max-size`
/// hold at least [`RETAIN_SECS`] of its fastest writing even just after a rotation dropped the
/// oldest file, so no line leaves the log before the capturer (down at most a few seconds) and
/// the snapshots (every 2 s) have seen it.
fn rotated(rng: &mut Rng, idx: usize) -> Plan {
    let mut s = Script::new(idx);
    let n = rng.range(1, 20);
    let pad = rng.pick(&[0, 20, 100]);
    let streams = random_streams(rng);
    s.burst(rng, n, pad, streams);
    // At most 150 lines a second.
    let sleep = rng.log_uniform(0.05, 0.5).max(s.lines / 150.0);
    s.sleep(sleep);
    let lines_per_sec = s.lines / s.sleeps;
    // A json-file entry: the message, its newline, and ~75 bytes of JSON around it (stream,
    // RFC 3339 time); the message is `c<i> <o|e> <run> <seq> <len> ` (under 30) and the pad.
    let entry = 110.0 + pad as f64;
    let bytes_per_sec = lines_per_sec * entry;
    let max_file = rng.range(2, 5);
    // Just after a rotation the log holds max-file - 1 full files.
    let max_size_k = ((RETAIN_SECS * bytes_per_sec / (max_file - 1) as f64) / 1024.0).ceil() as u64;
    Plan {
        logging: Logging::JsonRotated {
            max_size_k: max_size_k.max(1),
            max_file,
        },
        tty: false,
        auto_remove: false,
        restart_always: rng.chance(0.1),
        program: Program {
            script: s.finish(true, rng.chance(0.3), ""),
            looping: true,
            lines: lines_per_sec,
            log_bytes_per_sec: bytes_per_sec,
        },
    }
}
