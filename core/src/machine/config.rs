//! The machine's settings.

use std::time::Duration;

use crate::backoff::Backoff;
#[cfg(feature = "mutants")]
use crate::mutant::Mutant;
use crate::partial::DEFAULT_CAP;

/// The machine's settings.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Config {
    /// Retire the live stream and reopen it from the cursor this long after it delivered its
    /// first new line (a generation that delivered nothing is never rotated: see `rotate`).
    pub rotate_every: Duration,
    /// A due rotation waits while the live stream read a frame within this long: a stream that
    /// is delivering is not stalled, and retiring it in a backlog would cut the read short at
    /// every rotation (and make the next reopen read the backlog's start again). 0: rotate when
    /// due.
    pub rotate_when_quiet: Duration,
    /// A live stream quiet this long while the container runs counts as stalled (longer
    /// before its first frame, see `stall_limit`).
    pub heartbeat_every: Duration,
    /// Waits between reopens.
    pub backoff: Backoff,
    /// The longest message; longer lines are cut into messages marked truncated.
    pub partial_cap: usize,
    /// The shortest tail a reopen asks for (entries of both streams); 0: always `since`.
    pub tail_floor: u64,
    /// Tails in a row that may miss the cursor before a reopen falls back to `since`.
    pub tail_tries: u32,
    /// Whether K grows with the pace of the last generation (lines per second times the time
    /// since its last line). No K can make a tail unsound (the proof decides), so the model,
    /// whose clock jumps by whole deadlines, turns it off and explores the short tails.
    pub tail_pace: bool,
    /// A known bug to re-create, for checking the checkers. Exists only with the `mutants`
    /// feature, which the model, the fuzzer and the tests turn on and the runtime never does.
    #[cfg(feature = "mutants")]
    pub mutant: Option<Mutant>,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            rotate_every: Duration::from_secs(300),
            rotate_when_quiet: Duration::from_millis(250),
            heartbeat_every: Duration::from_secs(30),
            backoff: Backoff::default(),
            partial_cap: DEFAULT_CAP,
            tail_floor: 1000,
            tail_tries: 3,
            tail_pace: true,
            #[cfg(feature = "mutants")]
            mutant: None,
        }
    }
}

/// Whether the known bug `$m` is planted in `$config`: always false without the `mutants`
/// feature, where neither the mutant nor the field exists.
macro_rules! planted {
    ($config:expr, $m:ident) => {{
        #[cfg(feature = "mutants")]
        let on = $config.mutant == Some($crate::mutant::Mutant::$m);
        #[cfg(not(feature = "mutants"))]
        let on = false;
        on
    }};
}

/// Whether any known bug is planted in `$config` (never without the `mutants` feature).
macro_rules! mutated {
    ($config:expr) => {{
        #[cfg(feature = "mutants")]
        let on = $config.mutant.is_some();
        #[cfg(not(feature = "mutants"))]
        let on = false;
        on
    }};
}

pub(super) use {mutated, planted};
