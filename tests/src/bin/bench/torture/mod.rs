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
//!    `--heartbeat-every` (1 s to 30 s), `--rotate-when-quiet` 0 for an even seed, 250 ms
//!    for an odd one;
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
//! It prints one `TORTURE seed=...` line per round (see [`verdict::Summary`]), on failure the first
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
//! `max-size`, which drops its oldest lines, it is also read every [`round::SNAPSHOT_EVERY`]
//! while the round runs, and any gap left in a run's sequence numbers is expected all the same.
//! `--rm` containers vanish with their logs: they take part in the chaos, not in the counts.
//!
//! No line may be captured twice, after a SIGKILL either: a start recovers from what its
//! output files hold (issue 13), so the verdict counts every duplicate as a failure. Each
//! SIGKILL is in the trace, with how many records each output held then.
//!
//! Each round writes `torture.trace` (every action with its time, every program) in its
//! output directory, and on failure the truth of each failing container under `truth/`; both
//! are deleted when the round passes, unless `--keep`. `CAPTURER_BIN=path` tests that
//! capturer binary instead of building the workspace's.

mod capturer;
mod containers;
mod daemon;
mod guest;
mod oracle;
mod plan;
mod round;
mod script;
mod verdict;
mod wind_down;

use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::FutureExt;

use daemon::Bed;
use round::Round;

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
        let now = since_epoch();
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
    let restarts = opts.daemon_restarts.unwrap_or(bed.is_private());
    if restarts && !bed.is_private() {
        println!("torture: the shared daemon is never restarted; --daemon-restarts ignored");
    }
    let restarts = restarts && bed.is_private();
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
        "torture seed={seed}: daemon {} ({}), rotate_every {}ms, rotate_when_quiet {}ms, heartbeat_every {}ms, chaos {:?}",
        if bed.is_private() {
            "private"
        } else {
            "shared"
        },
        bed.host,
        round.rotate_every.as_millis(),
        round.rotate_when_quiet.as_millis(),
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

/// The time since the Unix epoch (zero before it).
fn since_epoch() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}
