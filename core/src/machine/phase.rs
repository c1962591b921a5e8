//! What a user sees of a machine: its phase, and its live tasks.

use std::fmt;

/// The state a user sees, in metrics and on the debug endpoint: a projection of the
/// machine's lifecycle.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Phase {
    /// No reader: not yet opened, waiting out a backoff, or the container is not running.
    Idle,
    /// One reader generation is live on the log stream.
    Streaming,
    /// The live reader was told to stop; the next opens once its exit is observed.
    Rotating,
    /// Terminal: reader and heartbeat joined; nothing is ever spawned again.
    Stopped,
}

impl Phase {
    /// Every phase, in order.
    pub const ALL: [Phase; 4] = [
        Phase::Idle,
        Phase::Streaming,
        Phase::Rotating,
        Phase::Stopped,
    ];

    /// The lowercase name used in metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Idle => "idle",
            Phase::Streaming => "streaming",
            Phase::Rotating => "rotating",
            Phase::Stopped => "stopped",
        }
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Live tasks per lifecycle, as the machine accounts for them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct LiveTasks {
    /// Reader generations spawned and not yet joined (0 or 1).
    pub readers: u32,
    /// Heartbeats spawned and not yet joined (0 or 1).
    pub heartbeats: u32,
}
