//! Part 5, the torture: seeded random chaos against a real daemon, checked line by line.
//!
//! ```text
//! bench torture [--seed S] [--duration D] [--seeds N] [--daemon-restarts | --no-daemon-restarts]
//!               [--shared-daemon] [--quiet Q] [--keep]
//! ```
//!
//! One round, from seed S (the seeds S, S+1, ... with `--seeds N`):
//! 1. the real `log-capturer`, selecting only this round's containers by the label
//!    `lc.bench=torture-S-PID`, with a random `--rotate-every` (20 ms to 5 s, log-uniform) and
//!    `--heartbeat-every` (1 s to 30 s);
//! 2. for D (default 20 s; `20`, `20s`, `500ms`, `1m`), at random moments: containers start
//!    running random busybox programs (stdout and stderr interleaved, bursts, idle spells,
//!    lines of 1 byte to 200 KB, a last line without newline, TTYs, exit codes; json-file with
//!    and without `max-size`/`max-file`, the `local` driver, `--rm`, restart policy `always`);
//!    containers are restarted, stopped and started, killed and started, stopped for good; the
//!    capturer is SIGTERMed (it must exit 0) or SIGKILLed and started again 0.2 to 2 s later;
//!    the daemon restarts;
//! 3. every container still running is stopped, the capturer gets time to catch up (until its
//!    output stops growing for Q seconds, default 6) and is SIGTERMed (it must exit 0), and per
//!    container and stream its output is compared with the truth. Then every container of the
//!    round is removed; none may be left.
//!
//! It prints one `TORTURE seed=...` line per round (see [`Summary`]), on failure the first
//! differences, and exits non-zero if any round failed.
//!
//! The daemon: a private `dockerd` of the torture's own (socket, data and exec root under
//! `/tmp/lc-torture-PID`, no bridge, no iptables; the test image imported into it by
//! `scripts/testbed.sh`), so it can be restarted without disturbing anyone's tests; it is
//! stopped at the end. Daemon restarts are on with it (`--no-daemon-restarts` turns them off).
//! Without root or `dockerd`, or with `--shared-daemon`, the rounds run on the shared test bed
//! (`DOCKER_HOST`), which is never restarted.
//!
//! Every line names itself: `c<container> <o|e> <run> <seq> <len> <len times x>` (`o` on
//! stdout, `e` on stderr; `run` counts the container's starts, kept in its `/tmp/run`; `seq`
//! counts per run and stream), apart from a few one-byte and empty lines. The truth is the
//! daemon's own log, read once all containers have stopped; for a json-file log with
//! `max-size`, which drops its oldest lines, it is also read every [`SNAPSHOT_EVERY`] while the
//! round runs, and any gap left in a run's sequence numbers is expected all the same.
//! `--rm` containers vanish with their logs: they take part in the chaos, not in the counts.
//!
//! A duplicate is allowed only where a SIGKILL explains it: its first copy was in the output
//! when the capturer died, its second came after, and it is stamped at or after the cursor
//! the capturer had persisted then. That cursor must be recent: a capturer killed after
//! running 2.5 s must have persisted every record its output held 2.5 s before the kill
//! (`--checkpoint-every` is 1 s). So a kill replays at most what the capturer delivered in
//! about one checkpoint interval, plus what capturers killed before their first checkpoint
//! had delivered (a restart catching up on a downtime delivers seconds of lines in a moment).
//!
//! Each round writes `torture.trace` (every action with its time, every program) in its
//! output directory, and on failure the truth of each failing container under `truth/`; both
//! are deleted when the round passes, unless `--keep`. `CAPTURER_BIN=path` tests that
//! capturer binary instead of building the workspace's.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bollard::models::ContainerSummaryStateEnum;
use bollard::query_parameters::{
    KillContainerOptionsBuilder, ListContainersOptionsBuilder, RestartContainerOptionsBuilder,
    StopContainerOptionsBuilder,
};
use bollard::Docker;
use capturer_core::Timestamp;
use capturer_tests::capturer::{Capturer, Record};
use capturer_tests::{remove, try_daemon_lines, wait_exit, DaemonLine, Spec};
use futures_util::stream::{self, StreamExt};
use futures_util::FutureExt;

/// At most this many containers of a round run at once.
const MAX_ALIVE: usize = 8;
/// Lines a round plans to write at most (finite programs per run, loops per second).
const LINE_BUDGET: f64 = 40_000.0;
/// How often the logs that drop their oldest lines (json-file `max-size`) are read.
const SNAPSHOT_EVERY: Duration = Duration::from_secs(2);
/// A rotated log keeps at least this many seconds of its container's fastest writing. The
/// capturer is down 0.2 to 2 s at a time (up to ~4 s when a stop with a 2 s timeout falls in
/// the downtime; a daemon restart stops the writers too), then starts in well under a second
/// and reopens from its cursor; the snapshots come every 2 s. So a line is never rotated away
/// before both the capturer and the snapshots could read it: a loss is the capturer's.
const RETAIN_SECS: f64 = 10.0;
/// Longest wait for the capture to catch up once every container stopped.
const SETTLE_MAX: Duration = Duration::from_secs(45);

// ---------------------------------------------------------------------------------------------
// Options and the rounds.

/// The command line of `bench torture`.
struct Options {
    seed: u64,
    seeds: u64,
    duration: Duration,
    /// `None`: on with a private daemon, off on the shared one.
    daemon_restarts: Option<bool>,
    shared: bool,
    quiet: Duration,
    /// Keep the output and the trace of a round that passed, too.
    keep: bool,
}

impl Options {
    fn parse(args: &[String]) -> Options {
        let has = |name: &str| args.iter().any(|a| a == name);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        Options {
            // Without --seed, a fresh one (printed in every summary, so it can be replayed).
            seed: crate::flag(args, "--seed", now.as_secs() % 100_000),
            seeds: crate::flag(args, "--seeds", 1u64).max(1),
            duration: parse_duration(&crate::flag(args, "--duration", "20s".to_owned()))
                .unwrap_or(Duration::from_secs(20)),
            daemon_restarts: if has("--no-daemon-restarts") {
                Some(false)
            } else if has("--daemon-restarts") {
                Some(true)
            } else {
                None
            },
            shared: has("--shared-daemon"),
            quiet: parse_duration(&crate::flag(args, "--quiet", "6s".to_owned()))
                .unwrap_or(Duration::from_secs(6)),
            keep: has("--keep"),
        }
    }
}

/// `20`, `20s`, `500ms`, `1m`.
fn parse_duration(text: &str) -> Option<Duration> {
    let digits = text.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let n: u64 = digits.parse().ok()?;
    match &text[digits.len()..] {
        "" | "s" => Some(Duration::from_secs(n)),
        "ms" => Some(Duration::from_millis(n)),
        "m" => Some(Duration::from_secs(n * 60)),
        _ => None,
    }
}

/// Runs the rounds; true if every one passed.
pub async fn run(args: &[String]) -> bool {
    let opts = Options::parse(args);
    // Built (cargo, same profile) before the first round, so no round's timing includes it.
    capturer_tests::capturer::binary();
    let Some(mut bed) = Bed::open(opts.shared).await else {
        return false;
    };
    let restarts = opts.daemon_restarts.unwrap_or(bed.private.is_some());
    if restarts && bed.private.is_none() {
        println!("torture: the shared daemon is never restarted; --daemon-restarts ignored");
    }
    let restarts = restarts && bed.private.is_some();
    let mut pass = true;
    for seed in opts.seed..opts.seed + opts.seeds {
        pass &= round(&mut bed, seed, &opts, restarts).await;
    }
    bed.shutdown(opts.keep);
    pass
}

/// One round: plays it, cleans up whatever happened, prints its summary; true if it passed.
async fn round(bed: &mut Bed, seed: u64, opts: &Options, daemon_restarts: bool) -> bool {
    let began = Instant::now();
    let mut round = Round::new(seed, daemon_restarts, opts.quiet);
    println!(
        "torture seed={seed}: daemon {} ({}), rotate_every {}ms, heartbeat_every {}ms, chaos {:?}",
        if bed.private.is_some() {
            "private"
        } else {
            "shared"
        },
        bed.host,
        round.rotate_every.as_millis(),
        round.heartbeat_every.as_millis(),
        opts.duration,
    );
    let played = AssertUnwindSafe(round.play(bed, opts.duration))
        .catch_unwind()
        .await;
    if let Err(panic) = played {
        let text = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
            .unwrap_or_else(|| "a panic".to_owned());
        round.fail(format!("harness: the round panicked: {text}"));
    }
    // Whatever happened: the capturer down, the daemon up, every container of the round gone.
    drop(round.cap.take());
    if let Err(e) = bed.ensure_up().await {
        round.fail(format!(
            "harness: the daemon is down and did not come back: {e}"
        ));
    }
    let left = bed.remove_label(&round.label).await;
    if left > 0 {
        round.fail(format!("{left} containers of the round are left behind"));
    }
    let summary = round.summary();
    println!("{summary}");
    let t = round.tally;
    if t.explained > 0 {
        println!(
            "  duplicates after a SIGKILL: {} (all from the cursor persisted at the kill; the oldest stamped {:.2}s before it)",
            t.explained,
            t.oldest_duplicate_ns as f64 / 1e9
        );
    }
    if !summary.pass {
        for line in round.failures.iter().take(12) {
            println!("  {line}");
        }
        if round.failures.len() > 12 {
            println!(
                "  ... and {} more (see the trace)",
                round.failures.len() - 12
            );
        }
        println!(
            "  capturer log: {}; output: {}; trace: {}",
            round.output.join("capturer.log").display(),
            round.output.join("out").display(),
            round.trace_path().display()
        );
    }
    round.write_trace();
    if summary.pass && !opts.keep {
        let _ = std::fs::remove_dir_all(&round.output);
    }
    println!(
        "torture seed={seed}: took {:.1}s (chaos {:.1}s, settle {:.1}s)",
        began.elapsed().as_secs_f64(),
        round.chaos_took.as_secs_f64(),
        round.settle_took.as_secs_f64()
    );
    summary.pass
}

// ---------------------------------------------------------------------------------------------
// A small seeded random generator.

/// SplitMix64: the same numbers from the same seed, everywhere.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x5EED_1E55_C0FF_EE00)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }

    /// Uniform in `[0, 1)`.
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    /// Log-uniform in `[lo, hi)`: as many small values as large ones, per decade.
    fn log_uniform(&mut self, lo: f64, hi: f64) -> f64 {
        lo * (hi / lo).powf(self.unit())
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.next() as usize % items.len()]
    }
}

// ---------------------------------------------------------------------------------------------
// The daemon.

/// The daemon the rounds run against.
struct Bed {
    docker: Docker,
    /// Its address, for the capturer's `--docker-host`.
    host: String,
    /// Our own dockerd, if it could be started.
    private: Option<Private>,
}

/// A dockerd of the torture's own, under one directory.
struct Private {
    dir: PathBuf,
    child: Option<Child>,
}

impl Private {
    fn socket(&self) -> PathBuf {
        self.dir.join("docker.sock")
    }

    fn spawn(&mut self) -> Result<(), String> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("dockerd.log"))
            .map_err(|e| e.to_string())?;
        let err = log.try_clone().map_err(|e| e.to_string())?;
        let child = Command::new("dockerd")
            .arg("--host")
            .arg(format!("unix://{}", self.socket().display()))
            .arg("--data-root")
            .arg(self.dir.join("data"))
            .arg("--exec-root")
            .arg(self.dir.join("exec"))
            .arg("--pidfile")
            .arg(self.dir.join("dockerd.pid"))
            .args(["--bridge=none", "--iptables=false", "--ip6tables=false"])
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("cannot run dockerd: {e}"))?;
        self.child = Some(child);
        Ok(())
    }

    /// SIGTERM, then waits (it stops its containers first, each within its stop timeout).
    fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        // SAFETY: kill(2) on the pid of our own child process.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(60);
        while child.try_wait().ok().flatten().is_none() {
            if Instant::now() > deadline {
                println!("torture: dockerd did not stop within 60 s; killing it");
                let _ = child.kill();
                let _ = child.wait();
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.dir.join("dockerd.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(5)..].join("\n")
    }
}

impl Drop for Private {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Bed {
    /// The private daemon, or (if it cannot be had, or `shared`) the shared test bed.
    async fn open(shared: bool) -> Option<Bed> {
        if !shared {
            match Bed::private().await {
                Ok(bed) => return Some(bed),
                Err(e) => println!(
                    "torture: no private daemon ({e}); falling back to the shared test bed, without daemon restarts"
                ),
            }
        }
        let Some(docker) = capturer_tests::docker().await else {
            println!("torture: no Docker daemon; run scripts/testbed.sh first");
            return None;
        };
        let host =
            std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///var/run/docker.sock".into());
        Some(Bed {
            docker,
            host,
            private: None,
        })
    }

    async fn private() -> Result<Bed, String> {
        // SAFETY: geteuid(2) has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return Err("not root".into());
        }
        let dir = std::env::temp_dir().join(format!("lc-torture-{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let mut private = Private { dir, child: None };
        private.spawn()?;
        let docker = answer(&mut private).await?;
        // The test image, built the way the test bed builds it (a static busybox, imported).
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/testbed.sh");
        let host = format!("unix://{}", private.socket().display());
        let out = Command::new(script)
            .env("DOCKER_HOST", &host)
            .env("TESTBED_DIR", private.dir.join("testbed"))
            .output()
            .map_err(|e| format!("cannot run scripts/testbed.sh: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "scripts/testbed.sh could not build the image: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(Bed {
            docker,
            host,
            private: Some(private),
        })
    }

    /// Restarts the private daemon (SIGTERM, wait, start, wait until it answers); how long
    /// the stop took.
    async fn restart(&mut self) -> Result<Duration, String> {
        let private = self
            .private
            .as_mut()
            .ok_or("the shared daemon is not restarted")?;
        let began = Instant::now();
        private.stop();
        let stopped = began.elapsed();
        private.spawn()?;
        self.docker = answer(private).await?;
        Ok(stopped)
    }

    /// Brings the private daemon back if it is down (after a panic mid-restart).
    async fn ensure_up(&mut self) -> Result<(), String> {
        if self.docker.ping().await.is_ok() {
            return Ok(());
        }
        match &mut self.private {
            Some(p) if p.child.is_none() => {
                p.spawn()?;
                self.docker = answer(p).await?;
                Ok(())
            }
            Some(p) => {
                self.docker = answer(p).await?;
                Ok(())
            }
            None => Err("the shared daemon does not answer".into()),
        }
    }

    /// Removes every container labelled `lc.bench=<label>`; returns how many are left after.
    async fn remove_label(&self, label: &str) -> usize {
        let ids = self.labelled(label, false).await;
        stream::iter(&ids)
            .for_each_concurrent(8, |id| async move { remove(&self.docker, id).await })
            .await;
        self.labelled(label, false).await.len()
    }

    /// Ids of the containers labelled `lc.bench=<label>`, only running ones if `running`.
    async fn labelled(&self, label: &str, running: bool) -> Vec<String> {
        let selector = format!("lc.bench={label}");
        let filters: HashMap<&str, Vec<&str>> = HashMap::from([("label", vec![selector.as_str()])]);
        let opts = ListContainersOptionsBuilder::default()
            .all(true)
            .filters(&filters)
            .build();
        let list = self
            .docker
            .list_containers(Some(opts))
            .await
            .unwrap_or_default();
        list.into_iter()
            .filter(|c| {
                !running
                    || matches!(
                        c.state,
                        Some(
                            ContainerSummaryStateEnum::RUNNING
                                | ContainerSummaryStateEnum::RESTARTING
                        )
                    )
            })
            .filter_map(|c| c.id)
            .collect()
    }

    /// Stops the private daemon and deletes its directory (unless `keep`, or something is
    /// still mounted under it: then it says so and leaves it).
    fn shutdown(&mut self, keep: bool) {
        let Some(mut private) = self.private.take() else {
            return;
        };
        private.stop();
        if keep {
            println!(
                "torture: the daemon's directory is kept: {}",
                private.dir.display()
            );
            return;
        }
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let dir = private.dir.display().to_string();
        if mounts.lines().any(|l| l.contains(&dir)) {
            println!("torture: something is still mounted under {dir}; left in place");
        } else {
            let _ = std::fs::remove_dir_all(&private.dir);
        }
    }
}

/// Waits (up to 60 s) until the private daemon answers; a client to it.
async fn answer(private: &mut Private) -> Result<Docker, String> {
    let socket = private.socket();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let found = Docker::connect_with_unix(
            &socket.display().to_string(),
            120,
            bollard::API_DEFAULT_VERSION,
        );
        if let Ok(d) = found {
            if let Ok(d) = d.negotiate_version().await {
                return Ok(d);
            }
        }
        let exited = private
            .child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten());
        if let Some(status) = exited {
            private.child = None;
            return Err(format!(
                "dockerd exited at start-up ({status}):\n{}",
                private.log_tail()
            ));
        }
        if Instant::now() > deadline {
            return Err(format!(
                "dockerd did not answer within 60 s:\n{}",
                private.log_tail()
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// The containers' programs.

/// How a container logs.
#[derive(Clone, Copy, Debug)]
enum Logging {
    /// json-file, never rotated.
    Json,
    /// json-file, rotated at `max_size_k` KiB, keeping `max_file` files.
    JsonRotated { max_size_k: u64, max_file: u64 },
    /// The `local` driver with its defaults (20 MB files: never reached here).
    Local,
}

impl Logging {
    fn describe(self) -> String {
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

/// Which streams a burst writes.
#[derive(Clone, Copy, Debug)]
enum Streams {
    Out,
    Err,
    /// stdout every line, stderr every `n`-th.
    Both(u64),
}

/// A container's program, and what it costs.
#[derive(Clone, Debug)]
struct Program {
    script: String,
    /// Loops until stopped (else it ends by itself).
    looping: bool,
    /// Lines one run writes at most (finite), or lines a second at most (looping).
    lines: f64,
    /// Bytes a second its json-file log grows at most (looping programs).
    log_bytes_per_sec: f64,
}

/// A container as planned from the seed.
#[derive(Clone, Debug)]
struct Plan {
    logging: Logging,
    tty: bool,
    auto_remove: bool,
    restart_always: bool,
    program: Program,
}

/// Writes a busybox `sh` program, step by step, counting what it writes.
struct Script {
    idx: usize,
    steps: Vec<String>,
    lines: f64,
    /// Seconds of `sleep` in one pass (loop bodies).
    sleeps: f64,
    pad_max: u64,
    long_lines: u32,
}

impl Script {
    fn new(idx: usize) -> Script {
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
    fn burst(&mut self, rng: &mut Rng, n: u64, pad: u64, streams: Streams) {
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
    fn steady(&mut self, rng: &mut Rng, groups: u64, per: u64, pad: u64, sleep: f64) {
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

    fn sleep(&mut self, secs: f64) {
        self.sleeps += secs;
        self.steps.push(format!("sleep {secs:.2}"));
    }

    /// One line of `len` bytes of padding: the daemon splits it into 16 KiB parts. (It counts
    /// as a line per KiB against the round's budget.)
    fn long(&mut self, len: u64, stderr: bool) {
        self.lines += (len / 1024).max(1) as f64;
        self.long_lines += 1;
        self.pad_max = self.pad_max.max(len);
        self.steps
            .push(format!("{} {len}", if stderr { "e" } else { "o" }));
    }

    /// `n` stdout lines of `len` bytes of padding each (and no more long lines after them).
    fn long_run(&mut self, n: u64, len: u64) {
        self.lines += (n * len / 1024) as f64;
        self.long_lines = self.long_lines.max(3);
        self.pad_max = self.pad_max.max(len);
        self.steps.push(format!(
            "k=0; while [ $k -lt {n} ]; do o {len}; k=$((k+1)); done"
        ));
    }

    /// A line that does not name itself: one byte, or empty (checked against the daemon only).
    fn tiny(&mut self, rng: &mut Rng) {
        self.lines += 1.0;
        self.steps.push(
            rng.pick(&["echo .", "echo", "echo . >&2", "echo >&2"])
                .to_owned(),
        );
    }

    /// The whole program: the preamble (this run's number, the padding, the writers, the first
    /// stdout line), the steps (in a loop if `looping`), then `tail`.
    fn finish(&self, looping: bool, trap: bool, tail: &str) -> String {
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

fn random_streams(rng: &mut Rng) -> Streams {
    match rng.range(0, 3) {
        0 => Streams::Out,
        1 => Streams::Err,
        _ => Streams::Both(rng.range(1, 4)),
    }
}

/// Plans container `idx` of round `seed`: the same plan for the same pair, whatever the
/// chaos did before.
fn plan(seed: u64, idx: usize) -> Plan {
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

// ---------------------------------------------------------------------------------------------
// A round.

/// A container of the round.
struct Guest {
    idx: usize,
    id: String,
    plan: Plan,
    /// What the daemon held of its log: every snapshot merged, per stream in the daemon's
    /// order (by timestamp).
    truth: Vec<DaemonLine>,
    known: HashSet<(String, String, String)>,
    /// When its log was last read (for the next read's `since`).
    read_at: Option<SystemTime>,
}

impl Guest {
    /// A rotated log drops lines: it is read during the round, and its gaps are expected.
    fn rotates(&self) -> bool {
        matches!(self.plan.logging, Logging::JsonRotated { .. })
    }

    /// Counted and checked (an `--rm` container's log vanishes with it).
    fn counted(&self) -> bool {
        !self.plan.auto_remove && !self.id.is_empty()
    }

    fn short_id(&self) -> &str {
        &self.id[..self.id.len().min(12)]
    }

    /// Writes the truth to `<output>/truth/c<idx>.jsonl` (for a failure's post-mortem).
    fn dump_truth(&self, output: &Path) {
        let dir = output.join("truth");
        let _ = std::fs::create_dir_all(&dir);
        let text: String = self
            .truth
            .iter()
            .map(|l| {
                serde_json::json!({"stream": l.stream, "ts": l.ts, "message": l.message})
                    .to_string()
                    + "\n"
            })
            .collect();
        let _ = std::fs::write(
            dir.join(format!("c{}-{}.jsonl", self.idx, self.short_id())),
            text,
        );
    }

    /// Merges what the daemon holds now (since a little before the last read) into the truth.
    async fn read_log(&mut self, docker: &Docker) -> Result<(), bollard::errors::Error> {
        let now = SystemTime::now();
        // Lines are stamped before they reach the file: look 2 s back past the last read.
        let since = self.read_at.map_or(0, |t| {
            t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs() as i32 - 2
        });
        let lines = try_daemon_lines(docker, &self.id, self.plan.tty, since.max(0)).await?;
        for l in lines {
            if self
                .known
                .insert((l.stream.clone(), l.ts.clone(), l.message.clone()))
            {
                self.truth.push(l);
            }
        }
        // Per stream, the daemon's order is its timestamps' order (fixed-width RFC 3339 text),
        // whatever order the reads found the lines in; across streams no order is promised.
        // (A stable sort: a long line's parts share a timestamp, and were joined already.)
        self.truth
            .sort_by(|a, b| (&a.stream, &a.ts).cmp(&(&b.stream, &b.ts)));
        self.read_at = Some(now);
        Ok(())
    }
}

/// Something to do later in the round.
#[derive(Clone, Copy, Debug)]
enum Later {
    /// Start guest `n` again (after a stop or a kill).
    Start(usize),
    /// Start the capturer again (after a SIGTERM or a SIGKILL).
    Capturer,
}

/// The chaos this round favours: a weight per action.
#[derive(Clone, Copy, Debug)]
struct Mix {
    spawn: f64,
    restart: f64,
    stop_start: f64,
    kill_start: f64,
    stop: f64,
    cap_kill: f64,
    cap_term: f64,
    daemon: f64,
}

/// One chaos action.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Action {
    Spawn,
    Restart,
    StopStart,
    KillStart,
    Stop,
    CapKill,
    CapTerm,
    Daemon,
}

/// A capturer checkpoints every second (`--checkpoint-every`): one killed after running this
/// long must have persisted a cursor covering every record written this long before the kill.
const CHECKPOINT_SLACK: Duration = Duration::from_millis(2500);

/// What the capturer had done when a SIGKILL stopped it: per container, the records complete
/// in its output and the cursor positions persisted (stdout, stderr, console).
struct KillMark {
    /// When, in nanoseconds since the epoch (the daemon's clock is this machine's).
    at_ns: u64,
    records: HashMap<String, usize>,
    persisted: HashMap<String, [u64; 3]>,
}

/// Everything a round did and saw.
struct Round {
    seed: u64,
    label: String,
    rng: Rng,
    rotate_every: Duration,
    heartbeat_every: Duration,
    mix: Mix,
    max_guests: usize,
    /// Daemon restarts this round may do: one per 20 s of chaos, at most two (0 if none).
    daemon_max: u64,
    quiet: Duration,
    cap: Option<Capturer>,
    cap_up: bool,
    /// When the running capturer process started.
    cap_started: Instant,
    /// The size of each container's output then.
    start_sizes: HashMap<String, u64>,
    output: PathBuf,
    guests: Vec<Guest>,
    later: Vec<(Instant, Later)>,
    marks: Vec<KillMark>,
    planned_lines: f64,
    restarts: u64,
    kills: u64,
    terms: u64,
    daemon_restarts: u64,
    began: Instant,
    chaos_took: Duration,
    settle_took: Duration,
    tally: Tally,
    failures: Vec<String>,
    trace: Vec<String>,
}

impl Round {
    fn new(seed: u64, daemon_restarts_allowed: bool, quiet: Duration) -> Round {
        let mut rng = Rng::new(seed);
        let rotate_every = Duration::from_millis(rng.log_uniform(20.0, 5000.0) as u64);
        let heartbeat_every = Duration::from_millis(rng.log_uniform(1000.0, 30_000.0) as u64);
        let mix = Mix {
            spawn: 3.0,
            restart: rng.unit() * 1.5,
            stop_start: rng.unit() * 1.5,
            kill_start: rng.unit(),
            stop: rng.unit() * 0.7,
            cap_kill: 0.2 + rng.unit(),
            cap_term: 0.2 + rng.unit(),
            daemon: if daemon_restarts_allowed { 0.2 } else { 0.0 },
        };
        let max_guests = rng.range(6, 16) as usize;
        let label = format!("torture-{seed}-{}", std::process::id());
        Round {
            seed,
            label,
            rng,
            rotate_every,
            heartbeat_every,
            mix,
            max_guests,
            daemon_max: u64::from(daemon_restarts_allowed),
            quiet,
            cap: None,
            cap_up: false,
            cap_started: Instant::now(),
            start_sizes: HashMap::new(),
            output: std::env::temp_dir()
                .join(format!("lc-e2e-torture-{seed}-{}", std::process::id())),
            guests: Vec::new(),
            later: Vec::new(),
            marks: Vec::new(),
            planned_lines: 0.0,
            restarts: 0,
            kills: 0,
            terms: 0,
            daemon_restarts: 0,
            began: Instant::now(),
            chaos_took: Duration::ZERO,
            settle_took: Duration::ZERO,
            tally: Tally::default(),
            failures: Vec::new(),
            trace: Vec::new(),
        }
    }

    fn fail(&mut self, why: String) {
        self.note(format!("FAIL {why}"));
        self.failures.push(why);
    }

    fn note(&mut self, what: String) {
        let t = self.began.elapsed().as_secs_f64();
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64();
        self.trace.push(format!("{t:8.3}s ({wall:.3}) {what}"));
    }

    fn trace_path(&self) -> PathBuf {
        self.output.join("torture.trace")
    }

    fn write_trace(&self) {
        let _ = std::fs::write(self.trace_path(), self.trace.join("\n") + "\n");
    }

    /// The whole round: start, chaos, wind down, compare.
    async fn play(&mut self, bed: &mut Bed, duration: Duration) {
        self.began = Instant::now();
        let extra = [
            "--docker-host".to_owned(),
            bed.host.clone(),
            "--rotate-every".to_owned(),
            format!("{}ms", self.rotate_every.as_millis()),
            "--heartbeat-every".to_owned(),
            format!("{}ms", self.heartbeat_every.as_millis()),
        ];
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        let cap = Capturer::start(
            &format!("torture-{}", self.seed),
            &format!("lc.bench={}", self.label),
            &extra,
        );
        self.output = cap.output.clone();
        self.cap = Some(cap);
        self.cap_up = true;
        self.cap_started = Instant::now();
        self.note(format!("capturer up: {}", extra.join(" ")));
        if self.daemon_max > 0 {
            self.daemon_max = (duration.as_secs() / 20).clamp(1, 2);
        }
        let chaos_began = Instant::now();
        for _ in 0..3 {
            self.spawn(bed, duration).await;
        }
        self.chaos(bed, chaos_began + duration).await;
        self.chaos_took = chaos_began.elapsed();
        self.wind_down(bed).await;
        self.note_rotated(&bed.docker).await;
        let (tally, findings) = self.compare();
        self.tally = tally;
        self.check_tally();
        self.failures.extend(findings);
    }

    /// Random actions until `end`, with what they scheduled for later, and the snapshots.
    async fn chaos(&mut self, bed: &mut Bed, end: Instant) {
        let mut next_action = Instant::now();
        let mut next_snapshot = Instant::now() + SNAPSHOT_EVERY;
        loop {
            let now = Instant::now();
            if now >= end {
                break;
            }
            if let Some(pos) = self.later.iter().position(|(at, _)| *at <= now) {
                let (_, what) = self.later.remove(pos);
                self.run_later(bed, what).await;
            } else if now >= next_snapshot {
                self.snapshot(&bed.docker).await;
                next_snapshot = Instant::now() + SNAPSHOT_EVERY;
            } else if now >= next_action {
                self.act(bed, end).await;
                next_action = Instant::now() + Duration::from_millis(self.rng.range(150, 1200));
            } else {
                let wake = self
                    .later
                    .iter()
                    .map(|(at, _)| *at)
                    .chain([next_action, next_snapshot, end])
                    .min()
                    .unwrap_or(end);
                tokio::time::sleep_until(wake.into()).await;
            }
        }
    }

    /// Picks and runs one action (by this round's weights, among those that apply).
    async fn act(&mut self, bed: &mut Bed, end: Instant) {
        let running = bed.labelled(&self.label, true).await;
        let pending = self
            .later
            .iter()
            .filter(|(_, l)| matches!(l, Later::Start(_)))
            .count();
        let remaining = end.saturating_duration_since(Instant::now());
        let may_spawn = running.len() + pending < MAX_ALIVE && self.guests.len() < self.max_guests;
        let started = self.guests.iter().any(|g| !g.id.is_empty());
        let daemon_ok = self.daemon_restarts < self.daemon_max;
        let m = self.mix;
        let choices = [
            (Action::Spawn, m.spawn, may_spawn),
            (Action::Restart, m.restart, started),
            (Action::StopStart, m.stop_start, started),
            (Action::KillStart, m.kill_start, started),
            (Action::Stop, m.stop, !running.is_empty()),
            (Action::CapKill, m.cap_kill, self.cap_up),
            (Action::CapTerm, m.cap_term, self.cap_up),
            (Action::Daemon, m.daemon, daemon_ok),
        ];
        let total: f64 = choices.iter().filter(|c| c.2).map(|c| c.1).sum();
        let mut x = self.rng.unit() * total;
        let Some(action) = choices
            .iter()
            .filter(|c| c.2 && c.1 > 0.0)
            .find(|c| {
                x -= c.1;
                x < 0.0
            })
            .map(|c| c.0)
        else {
            return;
        };
        match action {
            Action::Spawn => self.spawn(bed, remaining).await,
            Action::Restart | Action::StopStart | Action::KillStart | Action::Stop => {
                if let Some(n) = self.pick_guest(&running, action == Action::Stop) {
                    self.lifecycle(&bed.docker, action, n).await;
                }
            }
            Action::CapKill => self.capturer_down(true),
            Action::CapTerm => self.capturer_down(false),
            Action::Daemon => self.restart_daemon(bed).await,
        }
    }

    /// A guest for a lifecycle action (only a running one for a stop); one whose program would
    /// run again only if the budget allows.
    fn pick_guest(&mut self, running: &[String], running_only: bool) -> Option<usize> {
        let candidates: Vec<usize> = self
            .guests
            .iter()
            .filter(|g| !g.id.is_empty())
            .filter(|g| !running_only || running.contains(&g.id))
            // Starting a finite program again (also a running one: a restart) writes it again.
            .filter(|g| self.planned_lines + self.cost(g.idx) < LINE_BUDGET)
            .map(|g| g.idx)
            .collect();
        (!candidates.is_empty())
            .then(|| candidates[self.rng.range(0, candidates.len() as u64 - 1) as usize])
    }

    /// What starting a guest's program again adds to the round's lines, at most (a looping
    /// one was counted for the whole round when it was spawned).
    fn cost(&self, n: usize) -> f64 {
        let p = &self.guests[n].plan.program;
        if p.looping {
            0.0
        } else {
            p.lines
        }
    }

    /// Creates and starts the next planned container.
    async fn spawn(&mut self, bed: &Bed, remaining: Duration) {
        let idx = self.guests.len();
        let plan = plan(self.seed, idx);
        let p = &plan.program;
        let cost = if p.looping {
            p.lines * remaining.as_secs_f64()
        } else if plan.restart_always {
            // Rerun by the daemon (with its backoff) while the round lasts.
            p.lines * 8.0
        } else {
            p.lines
        };
        if self.planned_lines + cost > LINE_BUDGET {
            // The next container does not fit in the round's budget: no more are spawned.
            self.max_guests = idx;
            self.note(format!(
                "c{idx} ({cost:.0} lines) would exceed the budget: no more containers"
            ));
            return;
        }
        self.planned_lines += cost;
        let mut spec = Spec {
            script: plan.program.script.clone(),
            labels: HashMap::from([("lc.bench".to_owned(), self.label.clone())]),
            tty: plan.tty,
            name: Some(format!("lct-{}-c{idx}", self.label)),
            restart_always: plan.restart_always,
            auto_remove: plan.auto_remove,
            // The daemon's own shutdown waits this long per container before SIGKILL.
            stop_timeout: Some(1),
            ..Spec::default()
        };
        match plan.logging {
            Logging::Json => {}
            Logging::JsonRotated {
                max_size_k,
                max_file,
            } => {
                spec.log_driver = Some("json-file".into());
                spec.log_opts = HashMap::from([
                    ("max-size".to_owned(), format!("{max_size_k}k")),
                    ("max-file".to_owned(), max_file.to_string()),
                ]);
            }
            Logging::Local => spec.log_driver = Some("local".into()),
        }
        let mut guest = Guest {
            idx,
            id: String::new(),
            plan,
            truth: Vec::new(),
            known: HashSet::new(),
            read_at: None,
        };
        let p = &guest.plan;
        let what = format!(
            "c{idx}: {}{}{}{}{}, {:.0} lines{}{}",
            p.logging.describe(),
            if p.tty { ", tty" } else { "" },
            if p.auto_remove { ", --rm" } else { "" },
            if p.restart_always {
                ", restart always"
            } else {
                ""
            },
            if p.program.looping { ", looping" } else { "" },
            p.program.lines,
            if p.program.looping { "/s" } else { "" },
            if p.program.log_bytes_per_sec > 0.0 {
                format!(", log <= {:.0} B/s", p.program.log_bytes_per_sec)
            } else {
                String::new()
            },
        );
        match capturer_tests::start(&bed.docker, &spec).await {
            Ok(id) => {
                guest.id = id;
                self.note(format!(
                    "spawn {what} as {}\n{}",
                    guest.short_id(),
                    guest.plan.program.script
                ));
            }
            Err(e) => self.fail(format!("harness: could not start {what}: {e}")),
        }
        self.guests.push(guest);
    }

    /// A container lifecycle action on guest `n`.
    async fn lifecycle(&mut self, docker: &Docker, action: Action, n: usize) {
        let id = self.guests[n].id.clone();
        let t = self.rng.range(0, 2) as i32;
        let later = Instant::now() + Duration::from_millis(self.rng.range(100, 2000));
        let result = match action {
            Action::Restart => {
                let opts = RestartContainerOptionsBuilder::default().t(t).build();
                docker.restart_container(&id, Some(opts)).await
            }
            Action::StopStart | Action::Stop => {
                let opts = StopContainerOptionsBuilder::default().t(t).build();
                docker.stop_container(&id, Some(opts)).await
            }
            _ => {
                let opts = KillContainerOptionsBuilder::default()
                    .signal("SIGKILL")
                    .build();
                docker.kill_container(&id, Some(opts)).await
            }
        };
        match result {
            Ok(()) => {
                self.note(format!("{action:?} c{n} (t={t})"));
                if matches!(action, Action::StopStart | Action::KillStart) {
                    self.later.push((later, Later::Start(n)));
                }
                if action != Action::Stop {
                    self.restarts += 1;
                    self.planned_lines += self.cost(n);
                }
            }
            // A `--rm` container may be gone, a finished one not running: chaos, not failure.
            Err(e) => self.note(format!("{action:?} c{n}: {e}")),
        }
    }

    async fn run_later(&mut self, bed: &mut Bed, what: Later) {
        match what {
            Later::Start(n) => {
                let id = self.guests[n].id.clone();
                match bed.docker.start_container(&id, None).await {
                    Ok(()) => self.note(format!("start c{n} again")),
                    Err(e) => self.note(format!("start c{n} again: {e}")),
                }
            }
            Later::Capturer => {
                self.note_start_sizes();
                if let Some(cap) = &mut self.cap {
                    cap.restart();
                }
                self.cap_up = true;
                self.cap_started = Instant::now();
                self.note("capturer up again".into());
            }
        }
    }

    /// Notes the size of each container's output, as a capturer process starts.
    fn note_start_sizes(&mut self) {
        let out = self.output.join("out");
        self.start_sizes = self
            .guests
            .iter()
            .filter(|g| g.counted())
            .map(|g| {
                let path = out.join(format!("{}.jsonl", g.id));
                let size = std::fs::metadata(path).map_or(0, |m| m.len());
                (g.id.clone(), size)
            })
            .collect();
    }

    /// SIGKILL (`kill`) or SIGTERM, and a start again after a few hundred ms to 2 s.
    fn capturer_down(&mut self, kill: bool) {
        let Some(cap) = &mut self.cap else {
            return;
        };
        let downtime = Duration::from_millis(self.rng.range(200, 2000));
        if kill {
            cap.kill();
            self.kills += 1;
            let lived = self.cap_started.elapsed();
            let mark = self.kill_mark(lived);
            self.marks.push(mark);
            self.note(format!("capturer SIGKILL, down for {downtime:?}"));
        } else {
            let status = cap.terminate();
            self.terms += 1;
            self.note(format!(
                "capturer SIGTERM ({status}), down for {downtime:?}"
            ));
            if !status.success() {
                let log = self.output.join("capturer.log");
                self.fail(format!(
                    "the capturer exited with {status} on SIGTERM mid-round (log: {})",
                    log.display()
                ));
            }
        }
        self.cap_up = false;
        self.later
            .push((Instant::now() + downtime, Later::Capturer));
    }

    /// What a killed capturer left: complete records and persisted cursors, per container.
    /// If it had run long enough to checkpoint, a capture that had not grown for a while must
    /// be covered by its persisted cursor (else a restart would replay more than a checkpoint
    /// interval's worth): a failure otherwise.
    fn kill_mark(&mut self, lived: Duration) -> KillMark {
        let mut mark = KillMark {
            at_ns: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos() as u64,
            records: HashMap::new(),
            persisted: HashMap::new(),
        };
        let Some(cap) = &self.cap else { return mark };
        let mut stale = Vec::new();
        for g in self.guests.iter().filter(|g| g.counted()) {
            let records = cap.records_lenient(&g.id).records;
            mark.records.insert(g.id.clone(), records.len());
            let path = cap.state_dir().join(format!("{}.json", g.id));
            let saved: serde_json::Value = std::fs::read(&path)
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok())
                .unwrap_or_default();
            let pos = |i: usize| saved["cursor"]["positions"][i]["ts"].as_u64().unwrap_or(0);
            let persisted = [pos(0), pos(1), pos(2)];
            mark.persisted.insert(g.id.clone(), persisted);
            stale.push(format!(
                "  at the kill: c{} has {} records; persisted stdout {} stderr {} console {}",
                g.idx,
                records.len(),
                persisted[0],
                persisted[1],
                persisted[2]
            ));
            let output = cap.output.join("out").join(format!("{}.jsonl", g.id));
            let meta = std::fs::metadata(&output).ok();
            let quiet_for = meta
                .as_ref()
                .and_then(|m| m.modified().ok())
                .and_then(|t| t.elapsed().ok())
                .unwrap_or_default();
            // Only what this process wrote: an earlier one killed before its first checkpoint
            // may have left records no cursor covers (the duplicates check judges their fate).
            let wrote =
                meta.map_or(0, |m| m.len()) > self.start_sizes.get(&g.id).copied().unwrap_or(0);
            if lived < CHECKPOINT_SLACK || quiet_for < CHECKPOINT_SLACK || !wrote {
                continue;
            }
            for (i, stream) in ["stdout", "stderr", "console"].iter().enumerate() {
                let Some(last) = records.iter().rev().find(|r| r.stream == *stream) else {
                    continue;
                };
                let last_ns = Timestamp::parse_rfc3339(last.ts.as_bytes()).map_or(0, |t| t.0);
                if last_ns > persisted[i] {
                    stale.push(format!(
                        "stale cursor at a SIGKILL: c{} {stream} persisted at {} ns, but {} was captured {:.1}s before the kill (the capturer had run {:.1}s)",
                        g.idx,
                        persisted[i],
                        show(last),
                        quiet_for.as_secs_f64(),
                        lived.as_secs_f64()
                    ));
                }
            }
        }
        for s in stale {
            if s.starts_with("  ") {
                self.note(s);
            } else {
                self.fail(s);
            }
        }
        mark
    }

    async fn restart_daemon(&mut self, bed: &mut Bed) {
        let began = Instant::now();
        match bed.restart().await {
            Ok(stopped) => {
                self.daemon_restarts += 1;
                self.note(format!(
                    "daemon restarted in {:?} (stopped in {stopped:?})",
                    began.elapsed()
                ));
            }
            Err(e) => self.fail(format!("harness: the daemon did not restart: {e}")),
        }
    }

    /// Reads the logs that drop lines (json-file with `max-size`), so none is missed.
    async fn snapshot(&mut self, docker: &Docker) {
        for g in self
            .guests
            .iter_mut()
            .filter(|g| g.counted() && g.rotates())
        {
            if let Err(e) = g.read_log(docker).await {
                self.trace
                    .push(format!("snapshot of c{}: {e} (read again later)", g.idx));
            }
        }
    }

    /// The end: the capturer up, every container stopped, the truth read, the capture given
    /// time to catch up, the capturer SIGTERMed (it must exit 0).
    async fn wind_down(&mut self, bed: &mut Bed) {
        // Containers waiting to start again stay stopped; the capturer must run.
        self.later.clear();
        if !self.cap_up {
            self.run_later(bed, Later::Capturer).await;
        }
        let docker = bed.docker.clone();
        let running = bed.labelled(&self.label, true).await;
        self.note(format!(
            "end of chaos: stopping {} containers",
            running.len()
        ));
        stream::iter(&running)
            .for_each_concurrent(MAX_ALIVE, |id| {
                let docker = &docker;
                async move {
                    let opts = StopContainerOptionsBuilder::default().t(1).build();
                    let _ = docker.stop_container(id, Some(opts)).await;
                }
            })
            .await;
        let ids: Vec<String> = self
            .guests
            .iter()
            .filter(|g| g.counted())
            .map(|g| g.id.clone())
            .collect();
        stream::iter(&ids)
            .for_each_concurrent(MAX_ALIVE, |id| {
                let docker = &docker;
                async move { wait_exit(docker, id).await }
            })
            .await;
        for g in self.guests.iter_mut().filter(|g| g.counted()) {
            // The rotated logs are merged with the snapshots; the others read whole.
            if !g.rotates() {
                g.read_at = None;
            }
            if let Err(e) = g.read_log(&docker).await {
                self.failures
                    .push(format!("harness: cannot read the log of c{}: {e}", g.idx));
            }
        }
        let settle = Instant::now();
        self.settle().await;
        self.settle_took = settle.elapsed();
        if let Some(cap) = &mut self.cap {
            let status = cap.terminate();
            self.note(format!("capturer SIGTERM at the end: {status}"));
            if !status.success() {
                self.fail(format!(
                    "the capturer exited with {status} on SIGTERM at the end"
                ));
            }
        }
        self.cap_up = false;
    }

    /// Notes, per rotated log, what the daemon still holds against what the snapshots saw.
    async fn note_rotated(&mut self, docker: &Docker) {
        let mut notes = Vec::new();
        for g in self.guests.iter().filter(|g| g.counted() && g.rotates()) {
            let held = try_daemon_lines(docker, &g.id, false, 0)
                .await
                .map_or(0, |l| l.len());
            let gaps: usize = ["stdout", "stderr"]
                .iter()
                .map(|s| wanted(g, s).iter().filter(|w| w.exact.is_none()).count())
                .sum();
            notes.push(format!(
                "c{} ({}): the daemon holds {held} lines, the snapshots saw {}, {gaps} more are gaps in the sequence numbers",
                g.idx,
                g.plan.logging.describe(),
                g.truth.len()
            ));
        }
        for n in notes {
            self.note(n);
        }
    }

    /// Waits until nothing is missing, or the output stopped growing for `quiet`, or
    /// [`SETTLE_MAX`].
    async fn settle(&mut self) {
        let began = Instant::now();
        let (mut size, mut changed) = (0, Instant::now());
        loop {
            let (tally, _) = self.compare();
            if tally.lost == 0 {
                return;
            }
            let now_size = dir_size(&self.output.join("out"));
            if now_size != size {
                (size, changed) = (now_size, Instant::now());
            }
            if changed.elapsed() >= self.quiet || began.elapsed() >= SETTLE_MAX {
                self.note(format!(
                    "settle: {} lines still missing after {:?}",
                    tally.lost,
                    began.elapsed()
                ));
                return;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    fn check_tally(&mut self) {
        let t = self.tally;
        if t.torn > 0 {
            self.failures
                .push(format!("{} torn records in the output", t.torn));
        }
        if t.unexpected > 0 {
            self.failures.push(format!(
                "{} captured lines the containers never wrote (or changed)",
                t.unexpected
            ));
        }
        if t.duplicated > t.explained {
            self.failures.push(format!(
                "{} of {} duplicates not explained by a SIGKILL",
                t.duplicated - t.explained,
                t.duplicated
            ));
        }
    }

    fn summary(&self) -> Summary {
        let t = self.tally;
        Summary {
            seed: self.seed,
            containers: self.guests.iter().filter(|g| g.counted()).count(),
            lines: t.expected,
            lost: t.lost,
            duplicated: t.duplicated,
            reordered: t.reordered,
            restarts: self.restarts,
            kills: self.kills,
            terms: self.terms,
            daemon_restarts: self.daemon_restarts,
            rotate_every: self.rotate_every,
            pass: self.failures.is_empty() && t.lost == 0 && t.reordered == 0,
        }
    }

    /// Compares every counted container's capture with its truth.
    fn compare(&self) -> (Tally, Vec<String>) {
        let mut total = Tally::default();
        let mut findings = Vec::new();
        let Some(cap) = &self.cap else {
            return (total, findings);
        };
        for g in self.guests.iter().filter(|g| g.counted()) {
            let read = cap.records_lenient(&g.id);
            total.torn += read.torn;
            for stream in ["stdout", "stderr", "console"] {
                let t = compare_stream(g, stream, &read.records, &self.marks);
                if t.tally.failed() {
                    g.dump_truth(&self.output);
                    findings.push(format!(
                        "c{} {} ({}{}) {stream}: {}",
                        g.idx,
                        g.short_id(),
                        g.plan.logging.describe(),
                        if g.plan.tty { ", tty" } else { "" },
                        t.describe()
                    ));
                }
                total.add(&t.tally);
            }
        }
        (total, findings)
    }
}

/// The size of a directory's files (the capture's progress).
fn dir_size(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok()?.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

/// The round's line of figures.
struct Summary {
    seed: u64,
    containers: usize,
    lines: usize,
    lost: usize,
    duplicated: usize,
    reordered: usize,
    restarts: u64,
    kills: u64,
    terms: u64,
    daemon_restarts: u64,
    rotate_every: Duration,
    pass: bool,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "TORTURE seed={} containers={} lines={} lost={} duplicated={} reordered={} restarts={} kills={} terms={} daemon_restarts={} rotate_every={}ms verdict={}",
            self.seed,
            self.containers,
            self.lines,
            self.lost,
            self.duplicated,
            self.reordered,
            self.restarts,
            self.kills,
            self.terms,
            self.daemon_restarts,
            self.rotate_every.as_millis(),
            if self.pass { "PASS" } else { "FAIL" }
        )
    }
}

// ---------------------------------------------------------------------------------------------
// The oracle.

/// Counts over lines.
#[derive(Clone, Copy, Debug, Default)]
struct Tally {
    /// Lines the truth holds (and gaps of a rotated log).
    expected: usize,
    /// Expected, never captured.
    lost: usize,
    /// Captured again.
    duplicated: usize,
    /// Of those, explained by a SIGKILL.
    explained: usize,
    /// Captured after a line that comes later.
    reordered: usize,
    /// Captured, but not a line any container wrote (or not as it wrote it).
    unexpected: usize,
    /// Output lines that were not one record.
    torn: usize,
    /// The oldest explained duplicate: how long before its SIGKILL it was stamped.
    oldest_duplicate_ns: u64,
}

impl Tally {
    fn add(&mut self, o: &Tally) {
        self.expected += o.expected;
        self.lost += o.lost;
        self.duplicated += o.duplicated;
        self.explained += o.explained;
        self.reordered += o.reordered;
        self.unexpected += o.unexpected;
        self.torn += o.torn;
        self.oldest_duplicate_ns = self.oldest_duplicate_ns.max(o.oldest_duplicate_ns);
    }

    fn failed(&self) -> bool {
        self.lost + self.reordered + self.unexpected + (self.duplicated - self.explained) > 0
    }
}

/// What a line is, for matching: a self-naming line by its name, any other by its timestamp
/// and text.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Key {
    /// (`o`/`e`, run, seq).
    Named(u8, u32, u32),
    Raw(String, String),
}

/// A self-naming line of container `idx`: (stream letter, run, seq, whole: the padding is as
/// long as it says and all `x`).
fn name_of(idx: usize, message: &str) -> Option<(u8, u32, u32, bool)> {
    let mut f = message.splitn(6, ' ');
    if f.next()? != format!("c{idx}") {
        return None;
    }
    let tag = match f.next()? {
        "o" => b'o',
        "e" => b'e',
        _ => return None,
    };
    let run = f.next()?.parse().ok()?;
    let seq = f.next()?.parse().ok()?;
    let len: usize = f.next()?.parse().ok()?;
    let pad = f.next()?;
    Some((
        tag,
        run,
        seq,
        pad.len() == len && pad.bytes().all(|b| b == b'x'),
    ))
}

fn key(idx: usize, ts: &str, message: &str) -> Key {
    match name_of(idx, message) {
        Some((tag, run, seq, _)) => Key::Named(tag, run, seq),
        None => Key::Raw(ts.to_owned(), message.to_owned()),
    }
}

/// A line the capture must hold: exactly as the daemon holds it, or (a gap of a rotated log,
/// `exact` empty) any whole line of that name.
struct Want {
    key: Key,
    exact: Option<(String, String)>,
}

/// The lines one stream must hold, in order: the truth, and for a rotated log the gaps in
/// each run's sequence numbers (lines the log dropped before a snapshot saw them).
fn wanted(g: &Guest, stream: &str) -> Vec<Want> {
    let mut out = Vec::new();
    let mut next: HashMap<(u8, u32), u32> = HashMap::new();
    for l in g.truth.iter().filter(|l| l.stream == stream) {
        let k = key(g.idx, &l.ts, &l.message);
        if let (true, Key::Named(tag, run, seq)) = (g.rotates(), &k) {
            let from = next.get(&(*tag, *run)).copied().unwrap_or(0);
            out.extend((from..*seq).map(|s| Want {
                key: Key::Named(*tag, *run, s),
                exact: None,
            }));
            next.insert((*tag, *run), seq + 1);
        }
        out.push(Want {
            key: k,
            exact: Some((l.ts.clone(), l.message.clone())),
        });
    }
    out
}

/// One stream's comparison, with its first differences.
struct StreamCheck {
    tally: Tally,
    first_lost: Option<String>,
    first_duplicate: Option<String>,
    first_reordered: Option<String>,
    first_unexpected: Option<String>,
    first_difference: Option<String>,
}

impl StreamCheck {
    fn describe(&self) -> String {
        let t = &self.tally;
        let mut s = format!(
            "{} expected, {} lost, {} duplicated ({} after a SIGKILL), {} reordered, {} unexpected",
            t.expected, t.lost, t.duplicated, t.explained, t.reordered, t.unexpected
        );
        for (what, line) in [
            ("first lost", &self.first_lost),
            ("first unexplained duplicate", &self.first_duplicate),
            ("first reordered", &self.first_reordered),
            ("first unexpected", &self.first_unexpected),
            ("first difference", &self.first_difference),
        ] {
            if let Some(line) = line {
                let _ = write!(s, "; {what}: {line}");
            }
        }
        s
    }
}

/// Shortens a message for a report.
fn clip(message: &str) -> String {
    if message.len() <= 48 {
        format!("{message:?}")
    } else {
        let cut = (0..=40)
            .rev()
            .find(|&i| message.is_char_boundary(i))
            .unwrap_or(0);
        format!("{:?}… ({} bytes)", &message[..cut], message.len())
    }
}

fn show(r: &Record) -> String {
    format!("{} {}", r.ts, clip(&r.message))
}

fn show_want(w: &Want) -> String {
    match (&w.exact, &w.key) {
        (Some((ts, m)), _) => format!("{ts} {}", clip(m)),
        (None, Key::Named(tag, run, seq)) => {
            format!("(dropped by the log) {} run {run} seq {seq}", *tag as char)
        }
        (None, Key::Raw(ts, m)) => format!("{ts} {}", clip(m)),
    }
}

/// Compares what was captured of one stream of `g` with what must be.
fn compare_stream(g: &Guest, stream: &str, records: &[Record], marks: &[KillMark]) -> StreamCheck {
    let want = wanted(g, stream);
    let at: HashMap<&Key, usize> = want.iter().enumerate().map(|(i, w)| (&w.key, i)).collect();
    let stream_index = match stream {
        "stdout" => 0,
        "stderr" => 1,
        _ => 2,
    };
    let mut check = StreamCheck {
        tally: Tally {
            expected: want.len(),
            ..Tally::default()
        },
        first_lost: None,
        first_duplicate: None,
        first_reordered: None,
        first_unexpected: None,
        first_difference: None,
    };
    // Where each wanted line was first captured (index among all the container's records).
    let mut first_at: Vec<Option<usize>> = vec![None; want.len()];
    let mut furthest: Option<usize> = None;
    let mut firsts = Vec::new();
    for (p, r) in records
        .iter()
        .enumerate()
        .filter(|(_, r)| r.stream == stream)
    {
        let k = key(g.idx, &r.ts, &r.message);
        let matched = at.get(&k).copied().filter(|&i| match &want[i].exact {
            Some((ts, m)) => *ts == r.ts && *m == r.message,
            None => name_of(g.idx, &r.message).is_some_and(|n| n.3),
        });
        let Some(i) = matched.filter(|_| r.container_id == g.id) else {
            check.tally.unexpected += 1;
            check.first_unexpected.get_or_insert_with(|| show(r));
            continue;
        };
        if let Some(first) = first_at[i] {
            check.tally.duplicated += 1;
            let ts = Timestamp::parse_rfc3339(r.ts.as_bytes()).map_or(0, |t| t.0);
            // The kill that explains it: the first copy before the cut, the second after, and
            // not before the cursor persisted then (a restart replays from there). How far
            // back that cursor may be is checked at the kill (`Round::kill_mark`).
            let age = marks
                .iter()
                .filter(|m| {
                    let cut = m.records.get(&g.id).copied().unwrap_or(0);
                    let persisted = m.persisted.get(&g.id).map_or(0, |p| p[stream_index]);
                    first < cut && cut <= p && ts >= persisted
                })
                .map(|m| m.at_ns.saturating_sub(ts))
                .min();
            if let Some(age) = age {
                check.tally.explained += 1;
                check.tally.oldest_duplicate_ns = check.tally.oldest_duplicate_ns.max(age);
            } else {
                check.first_duplicate.get_or_insert_with(|| show(r));
            }
            continue;
        }
        first_at[i] = Some(p);
        if furthest.is_some_and(|f| i < f) {
            check.tally.reordered += 1;
            check.first_reordered.get_or_insert_with(|| show(r));
        }
        furthest = furthest.max(Some(i));
        firsts.push((i, r));
    }
    check.tally.lost = first_at.iter().filter(|f| f.is_none()).count();
    if let Some(i) = first_at.iter().position(Option::is_none) {
        check.first_lost = Some(show_want(&want[i]));
    }
    // The first place where the captured order (first copies) and the wanted order part.
    let n = firsts.len().max(want.len());
    if let Some(d) = (0..n).find(|&d| firsts.get(d).map(|f| f.0) != Some(d)) {
        if check.tally.failed() {
            check.first_difference = Some(format!(
                "line {d}: captured {}, wanted {}",
                firsts.get(d).map_or("nothing".into(), |f| show(f.1)),
                want.get(d).map_or("nothing".into(), show_want)
            ));
        }
    }
    check
}
