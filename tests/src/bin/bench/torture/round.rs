//! A round: its state, its trace, and its chaos (random actions until the chaos ends).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use bollard::Docker;
use capturer_tests::capturer::Capturer;
use capturer_tests::rng::Rng;

use super::daemon::Bed;
use super::guest::Guest;
use super::oracle::Tally;
use super::since_epoch;

/// At most this many containers of a round run at once.
pub(super) const MAX_ALIVE: usize = 8;
/// Lines a round plans to write at most (finite programs per run, loops per second).
pub(super) const LINE_BUDGET: f64 = 40_000.0;
/// How often the logs that drop their oldest lines (json-file `max-size`) are read.
pub(super) const SNAPSHOT_EVERY: Duration = Duration::from_secs(2);

/// Something to do later in the round.
#[derive(Clone, Copy, Debug)]
pub(super) enum Later {
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
pub(super) enum Action {
    /// Create and start the next planned container.
    Spawn,
    /// `docker restart` a container.
    Restart,
    /// Stop a container, start it again later.
    StopStart,
    /// SIGKILL a container, start it again later.
    KillStart,
    /// Stop a running container for good.
    Stop,
    /// SIGKILL the capturer, start it again later.
    CapKill,
    /// SIGTERM the capturer, start it again later.
    CapTerm,
    /// Restart the private daemon.
    Daemon,
}

/// Everything a round did and saw.
pub(super) struct Round {
    /// The round's seed: everything random in it comes from it.
    pub(super) seed: u64,
    /// The value of the `lc.bench` label of its containers (its capturer selects by it).
    pub(super) label: String,
    /// The chaos's random numbers.
    pub(super) rng: Rng,
    /// The capturer's `--rotate-every`.
    pub(super) rotate_every: Duration,
    /// The capturer's `--heartbeat-every`.
    pub(super) heartbeat_every: Duration,
    /// The capturer's `--rotate-when-quiet`: 0 for an even seed (rotations cut streams that
    /// are delivering), its default 250 ms for an odd one (they wait for a pause); not drawn,
    /// so that no seed's other draws change.
    pub(super) rotate_when_quiet: Duration,
    /// The weights of the actions.
    mix: Mix,
    /// Containers the round may spawn at most (fewer once the budget is spent).
    pub(super) max_guests: usize,
    /// Daemon restarts this round may do: one per 20 s of chaos, at most two (0 if none).
    daemon_max: u64,
    /// How long the output must stop growing before the settle gives up (`--quiet`).
    pub(super) quiet: Duration,
    /// The capturer under test (none before the round starts and after its clean-up).
    pub(super) cap: Option<Capturer>,
    /// Whether its process runs now.
    pub(super) cap_up: bool,
    /// The capturer's output directory (also holds the trace and the truth on failure).
    pub(super) output: PathBuf,
    /// The containers spawned, in order (`c<idx>` is `guests[idx]`).
    pub(super) guests: Vec<Guest>,
    /// Actions scheduled for later, with their time.
    pub(super) later: Vec<(Instant, Later)>,
    /// Lines the round's programs may write at most, so far (against [`LINE_BUDGET`]).
    pub(super) planned_lines: f64,
    /// Container restarts, stop-starts and kill-starts.
    pub(super) restarts: u64,
    /// SIGKILLs of the capturer.
    pub(super) kills: u64,
    /// SIGTERMs of the capturer mid-round.
    pub(super) terms: u64,
    /// Daemon restarts done.
    pub(super) daemon_restarts: u64,
    /// Stream rotations the capturers counted (`log_capturer_stream_rotations_total`, read
    /// before each of them stopped).
    pub(super) rotations: u64,
    /// When the round started (the trace's times are from then).
    began: Instant,
    /// How long the chaos took.
    pub(super) chaos_took: Duration,
    /// How long the settle took.
    pub(super) settle_took: Duration,
    /// The final comparison's counts.
    pub(super) tally: Tally,
    /// Why the round fails (none: it passes, unless lines are lost or reordered).
    pub(super) failures: Vec<String>,
    /// Every action and what it did.
    trace: Vec<String>,
}

impl Round {
    /// Round `seed`, its parameters drawn, nothing started yet.
    pub(super) fn new(seed: u64, daemon_restarts_allowed: bool, quiet: Duration) -> Round {
        let mut rng = Rng::new(seed);
        let rotate_every = Duration::from_millis(rng.log_uniform(20.0, 5000.0) as u64);
        let heartbeat_every = Duration::from_millis(rng.log_uniform(1000.0, 30_000.0) as u64);
        let rotate_when_quiet = if seed % 2 == 0 {
            Duration::ZERO
        } else {
            Duration::from_millis(250)
        };
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
            rotate_when_quiet,
            mix,
            max_guests,
            daemon_max: u64::from(daemon_restarts_allowed),
            quiet,
            cap: None,
            cap_up: false,
            output: std::env::temp_dir()
                .join(format!("lc-e2e-torture-{seed}-{}", std::process::id())),
            guests: Vec::new(),
            later: Vec::new(),
            planned_lines: 0.0,
            restarts: 0,
            kills: 0,
            terms: 0,
            daemon_restarts: 0,
            rotations: 0,
            began: Instant::now(),
            chaos_took: Duration::ZERO,
            settle_took: Duration::ZERO,
            tally: Tally::default(),
            failures: Vec::new(),
            trace: Vec::new(),
        }
    }

    /// Records a failure (in the trace too).
    pub(super) fn fail(&mut self, why: String) {
        self.note(format!("FAIL {why}"));
        self.failures.push(why);
    }

    /// Adds a line to the trace, with the time since the round began and the wall clock.
    pub(super) fn note(&mut self, what: String) {
        let t = self.began.elapsed().as_secs_f64();
        let wall = since_epoch().as_secs_f64();
        self.trace.push(format!("{t:8.3}s ({wall:.3}) {what}"));
    }

    /// Where the trace is written.
    pub(super) fn trace_path(&self) -> PathBuf {
        self.output.join("torture.trace")
    }

    /// Writes the trace.
    pub(super) fn write_trace(&self) {
        let _ = std::fs::write(self.trace_path(), self.trace.join("\n") + "\n");
    }

    /// The whole round: start, chaos, wind down, compare.
    pub(super) async fn play(&mut self, bed: &mut Bed, duration: Duration) {
        self.began = Instant::now();
        self.start_capturer(&bed.host);
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
        self.judge();
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

    /// Does what was scheduled.
    async fn run_later(&mut self, bed: &mut Bed, what: Later) {
        match what {
            Later::Start(n) => {
                let id = self.guests[n].id.clone();
                match bed.docker.start_container(&id, None).await {
                    Ok(()) => self.note(format!("start c{n} again")),
                    Err(e) => self.note(format!("start c{n} again: {e}")),
                }
            }
            Later::Capturer => self.capturer_up(),
        }
    }

    /// Restarts the private daemon.
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
}
