//! The poke: how a task that left work in a container's machine tells the supervisor, without
//! ever losing the news and without sending it twice.
//!
//! The machine sits behind one mutex shared by the supervisor, the reader, the heartbeat and
//! the metrics. A reader that leaves commands in it, or moves its deadline, must have the
//! supervisor look at it soon; the supervisor learns which container to look at from a channel
//! of container ids. A [`Poke`] per container decides who sends: [`Poke::raise`] returns true
//! only to the first raiser since the supervisor last [took](Poke::take) the news, and only it
//! sends the id. So a container has at most one id in flight, and the channel holds at most
//! one id per container: unbounded, yet bounded by construction, so a send never fails for a
//! full channel and nothing is dropped (quinn's connection driver keeps the same flag).
//!
//! The order that makes a lost wake-up impossible:
//!
//! * the task: first the work (under the machine's lock), then `raise`, and it sends the id
//!   if `raise` says so;
//! * the supervisor: on receiving the id, first `take`, then the machine (lock, drain every
//!   command, read the deadline).
//!
//! If the task's `raise` comes before the supervisor's `take`, the drain that follows the take
//! sees the work (the raise and the take are read-modify-writes of one flag, and the work was
//! done before the raise). If it comes after, the flag was down, so the task sends the id
//! again and the supervisor comes back. Taking after the drain instead loses work left between
//! the two; `core/tests/loom_poke.rs` checks both orders over every interleaving.

use crate::sync::atomic::{AtomicBool, Ordering};

/// A container's "work is waiting" flag; see the module docs.
#[derive(Debug)]
pub struct Poke {
    pending: AtomicBool,
}

impl Poke {
    /// A lowered flag: no news in flight.
    pub fn new() -> Poke {
        Poke {
            pending: AtomicBool::new(false),
        }
    }

    /// Raises the flag after leaving work: true if it was down, and the caller must then send
    /// the news (the container's id) to the supervisor; false if news is already in flight.
    pub fn raise(&self) -> bool {
        !self.pending.swap(true, Ordering::AcqRel)
    }

    /// Lowers the flag as the supervisor takes the news, BEFORE it looks at the machine;
    /// returns whether it was raised.
    pub fn take(&self) -> bool {
        self.pending.swap(false, Ordering::AcqRel)
    }
}

impl Default for Poke {
    fn default() -> Poke {
        Poke::new()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn only_the_first_raise_since_the_take_sends() {
        let poke = Poke::new();
        assert!(!poke.take(), "a new flag is down");
        assert!(poke.raise(), "the first raise sends");
        assert!(!poke.raise(), "news already in flight");
        assert!(poke.take());
        assert!(poke.raise(), "after the take, the next raise sends again");
    }
}
