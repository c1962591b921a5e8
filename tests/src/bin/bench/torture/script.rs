//! The containers' busybox `sh` programs, written step by step.

use std::fmt::Write as _;

use capturer_tests::rng::Rng;

/// Which streams a burst writes.
#[derive(Clone, Copy, Debug)]
pub(super) enum Streams {
    /// stdout only.
    Out,
    /// stderr only.
    Err,
    /// stdout every line, stderr every `n`-th.
    Both(u64),
}

/// Writes a busybox `sh` program, step by step, counting what it writes.
pub(super) struct Script {
    /// The container's number, in every line it writes.
    idx: usize,
    steps: Vec<String>,
    /// Lines one pass writes at most (a long line counts once per KiB).
    pub(super) lines: f64,
    /// Seconds of `sleep` in one pass (loop bodies).
    pub(super) sleeps: f64,
    /// The longest padding a line has.
    pad_max: u64,
    /// Long lines written so far (3 once a run of them was).
    pub(super) long_lines: u32,
}

impl Script {
    /// An empty program for container `idx`.
    pub(super) fn new(idx: usize) -> Script {
        Script {
            idx,
            steps: Vec::new(),
            lines: 0.0,
            sleeps: 0.0,
            pad_max: 0,
            long_lines: 0,
        }
    }

    /// `n` lines of `0..=pad` padding each, on `streams`.
    pub(super) fn burst(&mut self, rng: &mut Rng, n: u64, pad: u64, streams: Streams) {
        let (a, b) = (rng.range(1, 97), rng.range(0, pad));
        let len = format!("$(( (k*{a}+{b}) % {} ))", pad + 1);
        let body = match streams {
            Streams::Out => format!("o {len}"),
            Streams::Err => format!("e {len}"),
            Streams::Both(every) => format!("o {len}; [ $((k % {every})) -eq 0 ] && e {len}"),
        };
        let extra = match streams {
            Streams::Both(every) => (n as f64 / every as f64).ceil(),
            _ => 0.0,
        };
        self.lines += n as f64 + extra;
        self.pad_max = self.pad_max.max(pad);
        self.steps.push(format!(
            "k=0; while [ $k -lt {n} ]; do {body}; k=$((k+1)); done"
        ));
    }

    /// `groups` bursts of `per` lines with `sleep` seconds after each.
    pub(super) fn steady(&mut self, rng: &mut Rng, groups: u64, per: u64, pad: u64, sleep: f64) {
        let streams = random_streams(rng);
        let mut inner = Script::new(self.idx);
        inner.burst(rng, per, pad, streams);
        self.lines += inner.lines * groups as f64;
        self.pad_max = self.pad_max.max(pad);
        self.sleeps += sleep * groups as f64;
        self.steps.push(format!(
            "g=0; while [ $g -lt {groups} ]; do {}; sleep {sleep:.2}; g=$((g+1)); done",
            inner.steps[0]
        ));
    }

    /// A pause of `secs` seconds.
    pub(super) fn sleep(&mut self, secs: f64) {
        self.sleeps += secs;
        self.steps.push(format!("sleep {secs:.2}"));
    }

    /// One line of `len` bytes of padding: the daemon splits it into 16 KiB parts. (It counts
    /// as a line per KiB against the round's budget.)
    pub(super) fn long(&mut self, len: u64, stderr: bool) {
        self.lines += (len / 1024).max(1) as f64;
        self.long_lines += 1;
        self.pad_max = self.pad_max.max(len);
        self.steps
            .push(format!("{} {len}", if stderr { "e" } else { "o" }));
    }

    /// `n` stdout lines of `len` bytes of padding each (and no more long lines after them).
    pub(super) fn long_run(&mut self, n: u64, len: u64) {
        self.lines += (n * len / 1024) as f64;
        self.long_lines = self.long_lines.max(3);
        self.pad_max = self.pad_max.max(len);
        self.steps.push(format!(
            "k=0; while [ $k -lt {n} ]; do o {len}; k=$((k+1)); done"
        ));
    }

    /// A line that does not name itself: one byte, or empty (checked against the daemon only).
    pub(super) fn tiny(&mut self, rng: &mut Rng) {
        self.lines += 1.0;
        self.steps.push(
            rng.pick(&["echo .", "echo", "echo . >&2", "echo >&2"])
                .to_owned(),
        );
    }

    /// The whole program: the preamble (this run's number, the padding, the writers, the first
    /// stdout line), the steps (in a loop if `looping`), then `tail`.
    pub(super) fn finish(&self, looping: bool, trap: bool, tail: &str) -> String {
        let idx = self.idx;
        let mut s = String::new();
        // The run number survives restarts in the container's own file system.
        s.push_str("r=0; [ -f /tmp/run ] && read r < /tmp/run; r=$((r+1)); echo $r > /tmp/run\n");
        let _ = writeln!(
            s,
            "X=x; while [ ${{#X}} -lt {} ]; do X=$X$X; done",
            self.pad_max.max(1)
        );
        let _ = writeln!(
            s,
            "i=0; j=0\n\
             o() {{ echo \"c{idx} o $r $i $1 ${{X:0:$1}}\"; i=$((i+1)); }}\n\
             e() {{ echo \"c{idx} e $r $j $1 ${{X:0:$1}}\" >&2; j=$((j+1)); }}"
        );
        if trap {
            // Last words on SIGTERM (run once the current command ends, maybe between an `e`'s
            // echo and its count: so a line that does not name itself).
            let _ = writeln!(s, "trap 'echo \"c{idx} bye $r\" >&2; exit 143' TERM");
        }
        s.push_str("o 0\n");
        let body = self.steps.join("\n");
        if looping {
            let _ = writeln!(s, "while true; do\n{body}\ndone");
        } else {
            let _ = writeln!(s, "{body}");
        }
        s.push_str(tail);
        s
    }
}

/// stdout (a quarter of the time), stderr (a quarter) or both (stderr every 1st to 4th line).
pub(super) fn random_streams(rng: &mut Rng) -> Streams {
    match rng.range(0, 3) {
        0 => Streams::Out,
        1 => Streams::Err,
        _ => Streams::Both(rng.range(1, 4)),
    }
}
