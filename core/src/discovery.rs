//! Which containers a starting capturer takes on, and how: the decision behind discovery.
//!
//! The capturer may be stopped for a while (an upgrade, a crash, a reboot). What ran in the
//! meantime must not be lost, yet a first start on a host must not dig up the logs of every
//! container that ever exited there. The rule rests on one persisted instant, the
//! **watermark**: when the capturer first started on this host (its state directory), written
//! before that first start lists anything and never moved. Every container that ran at or
//! after it is the capturer's to capture; one that had stopped before it is history.
//!
//! Given a container as the daemon lists it (every container, `all=true`) and inspects it:
//!
//! | the container | decision |
//! | --- | --- |
//! | runs (or is paused) | [`Admission::Follow`]: from its saved cursor, or per `--from` |
//! | stopped, with a saved cursor | [`Admission::Drain`]: read what it wrote since |
//! | stopped, no cursor, stopped at or after the watermark | [`Admission::Drain`]: it ran while the capturer was watching, or down; read it whole |
//! | stopped before the watermark, no cursor | [`Admission::Skip`]: history |
//! | never started | [`Admission::Skip`]: it has no log |
//!
//! A container waiting to be restarted by its restart policy counts as stopped: it died (its
//! log is complete until its next `start`), though the daemon's inspect says `Running`.
//!
//! Why a fixed instant and not the time of the latest start: a capturer killed before its
//! first checkpoint leaves no cursor for the containers it had admitted; the next start must
//! still drain those of them that have stopped since, and only "it ran after the watermark"
//! says so. A first start takes the watermark as it begins, so everything stopped then is
//! history and everything else is followed.
//!
//! A container removed while the capturer was down is gone with its log; the runtime counts
//! those it can still learn of (from the daemon's bounded event history) and says so once.

use crate::timestamp::Timestamp;

/// A container as a listing and an inspect show it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Listed {
    /// It runs (or is paused: its log may grow). Not when it waits for a restart.
    pub running: bool,
    /// When it last stopped (`FinishedAt`); `None` if it never ran.
    pub stopped_at: Option<Timestamp>,
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

/// The decision for one container, given the watermark (`None`: nothing stopped is drained
/// without a cursor, the pre-watermark rule, kept for the model to show what it lost).
pub fn admission(c: Listed, watermark: Option<Timestamp>) -> Admission {
    if c.running {
        return Admission::Follow;
    }
    if c.has_cursor {
        return Admission::Drain;
    }
    match (c.stopped_at, watermark) {
        (Some(stopped), Some(w)) if stopped >= w => Admission::Drain,
        _ => Admission::Skip,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: Timestamp = Timestamp(1_000);

    fn listed(running: bool, stopped_at: Option<u64>, has_cursor: bool) -> Listed {
        Listed {
            running,
            stopped_at: stopped_at.map(Timestamp),
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
    fn one_that_stopped_after_the_watermark_is_drained_whole() {
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
    fn what_stopped_before_the_watermark_is_left_alone() {
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
