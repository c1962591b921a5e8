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
    /// A live stream quiet this long while the container runs counts as stalled (longer
    /// before its first frame, see `stall_limit`).
    pub heartbeat_every: Duration,
    /// Waits between reopens.
    pub backoff: Backoff,
    /// The longest message; longer lines are cut into messages marked truncated.
    pub partial_cap: usize,
    /// A known bug to re-create, for checking the checkers. Exists only with the `mutants`
    /// feature, which the model, the fuzzer and the tests turn on and the runtime never does.
    #[cfg(feature = "mutants")]
    pub mutant: Option<Mutant>,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            rotate_every: Duration::from_secs(300),
            heartbeat_every: Duration::from_secs(30),
            backoff: Backoff::default(),
            partial_cap: DEFAULT_CAP,
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
