//! Which containers a starting capturer takes on, and how: the decision behind discovery.
//!
//! The capturer may be stopped for a while (an upgrade, a crash, a reboot). What ran in the
//! meantime must not be lost, yet a first start on a host must not dig up the logs of every
//! container that ever exited there. The rule rests on one persisted instant, the
//! **watermark**: a time before which every selected container that started is known to the
//! capturer's state (it has a saved cursor, or its machine would have one once it had run).
//! The runtime takes it just before a start-up listing and persists it only once the cursors
//! of every container that listing admitted are durable.
//!
//! Given a container as the daemon lists it (every container, `all=true`):
//!
//! | the container | decision |
//! | --- | --- |
//! | runs | [`Admission::Follow`]: from its saved cursor, or per `--from` |
//! | stopped, with a saved cursor | [`Admission::Drain`]: read what it wrote since |
//! | stopped, no cursor, started at or after the watermark | [`Admission::Drain`]: it ran while the capturer was down; read it whole |
//! | stopped, no cursor, started before the watermark, or no watermark yet (a first start) | [`Admission::Skip`] |
//! | never started | [`Admission::Skip`]: it has no log |
//!
//! A container removed while the capturer was down is gone with its log; the runtime counts
//! those it can still learn of (from the daemon's bounded event history) and says so once.

use crate::timestamp::Timestamp;

/// A container as a listing and an inspect show it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Listed {
    /// It runs (or restarts, or is paused: its log may grow).
    pub running: bool,
    /// When it last started; `None` if it never did.
    pub started: Option<Timestamp>,
    /// The capturer has a saved cursor for it.
    pub has_cursor: bool,
}

/// What to do with a listed container.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Admission {
    /// Capture it as a running container (`Event::ContainerStarted`).
    Follow,
    /// Read what its log holds past the cursor, once (`Event::ContainerDied`).
    Drain,
    /// Leave it alone.
    Skip,
}

/// The decision for one container, given the persisted watermark (`None` on a first start).
pub fn admission(c: Listed, watermark: Option<Timestamp>) -> Admission {
    if c.running {
        return Admission::Follow;
    }
    if c.has_cursor {
        return Admission::Drain;
    }
    match (c.started, watermark) {
        (Some(started), Some(w)) if started >= w => Admission::Drain,
        _ => Admission::Skip,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: Timestamp = Timestamp(1_000);

    fn listed(running: bool, started: Option<u64>, has_cursor: bool) -> Listed {
        Listed {
            running,
            started: started.map(Timestamp),
            has_cursor,
        }
    }

    #[test]
    fn running_containers_are_followed_whatever_the_state() {
        for w in [None, Some(W)] {
            for cursor in [false, true] {
                let c = listed(true, Some(5), cursor);
                assert_eq!(admission(c, w), Admission::Follow);
            }
        }
    }

    #[test]
    fn a_stopped_container_with_a_cursor_is_drained() {
        assert_eq!(
            admission(listed(false, Some(5), true), None),
            Admission::Drain
        );
        assert_eq!(
            admission(listed(false, Some(5), true), Some(W)),
            Admission::Drain
        );
    }

    #[test]
    fn one_that_ran_while_the_capturer_was_down_is_drained_whole() {
        assert_eq!(
            admission(listed(false, Some(1_000), false), Some(W)),
            Admission::Drain
        );
        assert_eq!(
            admission(listed(false, Some(2_000), false), Some(W)),
            Admission::Drain
        );
    }

    #[test]
    fn history_before_the_watch_began_is_left_alone() {
        assert_eq!(
            admission(listed(false, Some(999), false), Some(W)),
            Admission::Skip
        );
        assert_eq!(
            admission(listed(false, Some(2_000), false), None),
            Admission::Skip
        );
        assert_eq!(
            admission(listed(false, None, false), Some(W)),
            Admission::Skip
        );
    }
}
