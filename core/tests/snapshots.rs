//! The machine's complete command trace in the situations that matter, as insta snapshots.
//!
//! The machine is deterministic (time is passed in, jitter is seeded with 0), so nothing in a
//! trace is unstable and no filter is needed. Each test also asserts the lines delivered, so a
//! snapshot accepted by mistake cannot hide a lost or duplicated line.

mod trace;

use capturer_core::{
    Cursor, Event, Generation, ReadError, ReaderExit, Stream, StreamSet, Timestamp,
};
use trace::{config, stamp, tail_config, Trace};

const G1: Generation = Generation(1);
const G2: Generation = Generation(2);
const G3: Generation = Generation(3);

fn started() -> Trace {
    let mut t = Trace::new(config());
    t.at(0).on(Event::ContainerStarted);
    t.at(1).on(Event::StreamOpened { generation: G1 });
    t
}

#[test]
fn normal_rotation() {
    let mut t = started();
    t.at(10).frame(1, Stream::Stdout, 10, b"one\n");
    t.at(20).frame(1, Stream::Stdout, 20, b"two\n");
    t.timeout(); // the rotation, 100ms after g1's first new line
    t.at(111).on(Event::ReaderExited {
        generation: G1,
        exit: ReaderExit::Cancelled,
    });
    t.at(112).on(Event::StreamOpened { generation: G2 });
    // The inclusive since replays "two"; it is dropped.
    t.at(113).frame(2, Stream::Stdout, 20, b"two\n");
    t.at(114).frame(2, Stream::Stdout, 30, b"three\n");
    assert_eq!(t.messages(Stream::Stdout), ["one", "two", "three"]);
    insta::assert_snapshot!("normal_rotation", t.text);
}

/// The rotation falls due (100 ms after the first new line) while the stream reads a backlog, a
/// frame every 10 ms: it waits for the stream's first quiet moment (30 ms without a frame), so
/// the backlog is read to its end by one generation.
#[test]
fn a_due_rotation_waits_for_a_quiet_stream() {
    let mut t = Trace::new(capturer_core::Config {
        rotate_when_quiet: std::time::Duration::from_millis(30),
        ..config()
    });
    t.at(0).on(Event::ContainerStarted);
    t.at(1).on(Event::StreamOpened { generation: G1 });
    for i in 1..=30u64 {
        let at = 10 * i;
        while t.m.poll_timeout().is_some_and(|d| d.0 <= at * 1_000_000) {
            t.timeout();
        }
        t.at(at)
            .frame(1, Stream::Stdout, at, format!("l{i}\n").as_bytes());
    }
    assert_eq!(t.m.phase(), capturer_core::Phase::Streaming, "{}", t.text);
    // The deadline armed before the last frame (310 ms) finds it 10 ms old and waits again; 30 ms after
    // the last frame the stream is quiet, and rotated.
    t.timeout();
    assert_eq!(t.m.phase(), capturer_core::Phase::Streaming, "{}", t.text);
    t.timeout();
    assert_eq!(t.m.phase(), capturer_core::Phase::Rotating, "{}", t.text);
    assert_eq!(t.now.0, 330 * 1_000_000, "{}", t.text);
    assert_eq!(t.messages(Stream::Stdout).len(), 30);
    insta::assert_snapshot!("a_due_rotation_waits_for_a_quiet_stream", t.text);
}

#[test]
fn rotation_while_frames_still_arrive() {
    let mut t = started();
    t.at(10).frame(1, Stream::Stdout, 10, b"a\n");
    t.at(100).on(Event::RotationDue);
    // Frames already in flight after the cancel are still delivered...
    t.at(101).frame(1, Stream::Stdout, 11, b"b\n");
    t.at(102).frame(1, Stream::Stderr, 12, b"c\n");
    t.at(103).on(Event::ReaderExited {
        generation: G1,
        exit: ReaderExit::Cancelled,
    });
    t.at(104).on(Event::StreamOpened { generation: G2 });
    // ...and the next generation's replay of them is dropped.
    t.at(105).frame(2, Stream::Stdout, 10, b"a\n");
    t.at(105).frame(2, Stream::Stdout, 11, b"b\n");
    t.at(105).frame(2, Stream::Stderr, 12, b"c\n");
    t.at(106).frame(2, Stream::Stdout, 13, b"d\n");
    assert_eq!(t.messages(Stream::Stdout), ["a", "b", "d"]);
    assert_eq!(t.messages(Stream::Stderr), ["c"]);
    insta::assert_snapshot!("rotation_while_frames_still_arrive", t.text);
}

#[test]
fn stop_during_rotating() {
    let mut t = started();
    t.at(10).frame(1, Stream::Stdout, 10, b"a\n");
    t.at(100).on(Event::RotationDue);
    t.at(101).on(Event::StopRequested);
    assert!(
        !t.m.is_stopped(),
        "the reader and the heartbeat are still alive"
    );
    t.at(102).on(Event::HeartbeatExited);
    assert!(!t.m.is_stopped(), "the reader is still alive");
    t.at(103).on(Event::ReaderExited {
        generation: G1,
        exit: ReaderExit::Cancelled,
    });
    assert!(t.m.is_stopped());
    // Absorbing: nothing moves it, nothing comes out (`record` drains and counts every
    // command after each step, so the count is what those two steps emitted).
    let before = t.commands;
    t.at(104).on(Event::ContainerStarted);
    t.at(105).on(Event::RotationDue);
    assert_eq!(t.commands, before, "a stopped machine emitted a command");
    assert!(t.m.is_stopped());
    insta::assert_snapshot!("stop_during_rotating", t.text);
}

#[test]
fn reader_error_backoff_reopen() {
    let mut t = started();
    t.at(5).frame(1, Stream::Stdout, 5, b"a\n");
    // g1 delivered, so its failure is the first in a row: wait 10ms.
    t.at(6).on(Event::ReaderExited {
        generation: G1,
        exit: ReaderExit::Failed(ReadError::Transient),
    });
    t.timeout();
    // g2 delivered nothing: the second failure in a row waits 20ms, the third 40ms.
    t.at(20).on(Event::ReaderExited {
        generation: G2,
        exit: ReaderExit::Failed(ReadError::Transient),
    });
    t.timeout();
    t.at(45).on(Event::ReaderExited {
        generation: G3,
        exit: ReaderExit::Failed(ReadError::Transient),
    });
    t.timeout();
    t.at(86).on(Event::StreamOpened {
        generation: Generation(4),
    });
    t.at(87).frame(4, Stream::Stdout, 5, b"a\n");
    t.at(88).frame(4, Stream::Stdout, 6, b"b\n");
    let opens: Vec<&str> = t
        .text
        .lines()
        .filter(|l| l.contains("deadline passes"))
        .collect();
    assert_eq!(opens.len(), 3);
    assert!(opens[0].trim_start().starts_with("16ms") && opens[1].trim_start().starts_with("40ms"));
    assert!(opens[2].trim_start().starts_with("85ms"));
    assert_eq!(t.messages(Stream::Stdout), ["a", "b"]);
    insta::assert_snapshot!("reader_error_backoff_reopen", t.text);
}

#[test]
fn clean_end_on_a_running_container_backs_off() {
    let mut t = started();
    t.at(5).frame(1, Stream::Stdout, 5, b"a\n");
    // The daemon ends the stream although the container runs: no tight loop.
    for (g, ms) in [(1, 10), (2, 30), (3, 60)] {
        t.at(ms).end(Generation(g), false);
        t.at(ms).on(Event::ReaderExited {
            generation: Generation(g),
            exit: ReaderExit::CleanEnd,
        });
        t.timeout();
    }
    let waits: Vec<u64> = t
        .text
        .lines()
        .filter(|l| l.contains("deadline passes"))
        .filter_map(|l| l.trim().split("ms").next()?.parse().ok())
        .collect();
    assert_eq!(
        waits,
        vec![20, 50, 100],
        "10, 20, 40ms after each clean end"
    );
    insta::assert_snapshot!("clean_end_on_running_container_backs_off", t.text);
}

#[test]
fn container_restart_resumes_from_the_cursor() {
    let mut t = started();
    t.at(5).frame(1, Stream::Stdout, 5, b"before\n");
    t.at(6).frame(1, Stream::Stderr, 6, b"err before\n");
    t.at(10).on(Event::ContainerDied);
    t.at(11).end(G1, true);
    t.at(11).on(Event::ReaderExited {
        generation: G1,
        exit: ReaderExit::CleanEnd,
    });
    // g1 delivered, so one more read confirms nothing was written after its end.
    t.timeout();
    t.at(22).on(Event::StreamOpened { generation: G2 });
    t.at(23).frame(2, Stream::Stdout, 5, b"before\n");
    t.at(23).frame(2, Stream::Stderr, 6, b"err before\n");
    t.at(24).end(G2, true);
    t.at(24).on(Event::ReaderExited {
        generation: G2,
        exit: ReaderExit::CleanEnd,
    });
    assert_eq!(
        t.m.poll_timeout(),
        None,
        "stopped and drained: no reopen until it starts"
    );
    t.at(50).on(Event::ContainerStarted);
    t.at(51).on(Event::StreamOpened { generation: G3 });
    t.at(52).frame(3, Stream::Stdout, 5, b"before\n");
    t.at(52).frame(3, Stream::Stderr, 6, b"err before\n");
    t.at(53).frame(3, Stream::Stdout, 50, b"after\n");
    assert_eq!(t.messages(Stream::Stdout), ["before", "after"]);
    assert_eq!(t.messages(Stream::Stderr), ["err before"]);
    insta::assert_snapshot!("container_restart_resumes_from_the_cursor", t.text);
}

#[test]
fn long_line_split_in_three_frames_across_a_rotation() {
    let line: Vec<u8> = (0..40_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    let (p1, rest) = line.split_at(16_384);
    let (p2, p3) = rest.split_at(16_384);
    let mut p3 = p3.to_vec();
    p3.push(b'\n');
    let mut t = started();
    t.at(5).frame(1, Stream::Stdout, 5, b"short\n");
    t.at(10).frame(1, Stream::Stdout, 10, p1);
    t.at(11).frame(1, Stream::Stdout, 10, p2);
    t.at(100).on(Event::RotationDue);
    t.at(101).on(Event::ReaderExited {
        generation: G1,
        exit: ReaderExit::Cancelled,
    });
    t.at(102).on(Event::StreamOpened { generation: G2 });
    t.at(103).frame(2, Stream::Stdout, 10, p1);
    t.at(104).frame(2, Stream::Stdout, 10, p2);
    t.at(105).frame(2, Stream::Stdout, 10, &p3);
    assert_eq!(t.lines.len(), 2);
    assert_eq!(t.lines[1].message, line);
    assert!(!t.lines[1].truncated);
    insta::assert_snapshot!("long_line_split_across_rotation", t.text);
}

#[test]
fn stderr_older_than_the_last_stdout_is_not_lost() {
    let mut t = started();
    t.at(10).frame(1, Stream::Stdout, 100, b"out 1\n");
    // Written to the log after "out 1", stamped before it.
    t.at(11).frame(1, Stream::Stderr, 90, b"err 1\n");
    t.at(12).frame(1, Stream::Stdout, 110, b"out 2\n");
    t.at(13).on(Event::RotationDue);
    t.at(14).on(Event::ReaderExited {
        generation: G1,
        exit: ReaderExit::Cancelled,
    });
    // since = min(stdout 110, stderr 90) = 90: the daemon resends from there.
    t.at(15).on(Event::StreamOpened { generation: G2 });
    t.at(16).frame(2, Stream::Stdout, 100, b"out 1\n");
    t.at(16).frame(2, Stream::Stderr, 90, b"err 1\n");
    t.at(16).frame(2, Stream::Stdout, 110, b"out 2\n");
    t.at(17).frame(2, Stream::Stderr, 95, b"err 2\n");
    t.at(18).frame(2, Stream::Stdout, 120, b"out 3\n");
    assert_eq!(t.messages(Stream::Stdout), ["out 1", "out 2", "out 3"]);
    assert_eq!(t.messages(Stream::Stderr), ["err 1", "err 2"]);
    insta::assert_snapshot!("stderr_older_than_last_stdout", t.text);
}

#[test]
fn last_line_without_newline_at_container_exit() {
    let mut t = started();
    t.at(5).frame(1, Stream::Stdout, 5, b"complete\n");
    t.at(6).frame(1, Stream::Stdout, 6, b"no newline");
    assert_eq!(
        t.messages(Stream::Stdout),
        ["complete"],
        "held until the stream ends"
    );
    t.at(7).on(Event::ContainerDied);
    t.at(8).end(G1, true);
    t.at(8).on(Event::ReaderExited {
        generation: G1,
        exit: ReaderExit::CleanEnd,
    });
    // g1 was opened while the container ran: its end may come before the last of the log
    // (measured), so an unfinished line is not taken for a last one yet.
    assert_eq!(t.messages(Stream::Stdout), ["complete"]);
    // The draining read, opened once the container is known to have stopped, sees it whole.
    t.timeout();
    t.at(19).on(Event::StreamOpened { generation: G2 });
    t.at(19).frame(2, Stream::Stdout, 5, b"complete\n");
    t.at(19).frame(2, Stream::Stdout, 6, b"no newline");
    t.at(20).end(G2, true);
    t.at(20).on(Event::ReaderExited {
        generation: G2,
        exit: ReaderExit::CleanEnd,
    });
    assert_eq!(t.messages(Stream::Stdout), ["complete", "no newline"]);
    assert_eq!(
        t.m.poll_timeout(),
        None,
        "drained: nothing until the next start"
    );
    insta::assert_snapshot!("last_line_without_newline", t.text);
}

#[test]
fn unreadable_driver_is_reported_once_and_never_retried() {
    let mut t = Trace::new(config());
    t.at(0).on(Event::ContainerStarted);
    t.at(1).on(Event::ReaderExited {
        generation: G1,
        exit: ReaderExit::Failed(ReadError::Unsupported),
    });
    assert_eq!(t.m.poll_timeout(), None);
    t.at(50).on(Event::ContainerDied);
    t.at(60).on(Event::ContainerStarted);
    t.at(70).on(Event::HeartbeatTick { running: true });
    assert_eq!(t.text.matches("Unreadable").count(), 1);
    assert_eq!(t.text.matches("OpenStream").count(), 1);
    insta::assert_snapshot!("unreadable_driver", t.text);
}

#[test]
fn removal_drains_the_reader_then_forgets_the_cursor() {
    let mut t = started();
    t.at(5).frame(1, Stream::Stdout, 5, b"a\n");
    t.at(6).on(Event::ContainerDied);
    t.at(7).on(Event::ContainerRemoved);
    t.at(8).frame(1, Stream::Stdout, 7, b"last\n");
    t.at(9).end(G1, true);
    t.at(9).on(Event::ReaderExited {
        generation: G1,
        exit: ReaderExit::CleanEnd,
    });
    assert!(!t.m.is_stopped(), "the heartbeat is still being joined");
    t.at(10).on(Event::HeartbeatExited);
    assert!(t.m.is_stopped());
    assert_eq!(t.messages(Stream::Stdout), ["a", "last"]);
    assert!(t.text.contains("-> Forget"));
    insta::assert_snapshot!("removal_forgets_cursor", t.text);
}

#[test]
fn a_quiet_live_stream_is_rotated_by_the_heartbeat() {
    let mut t = started();
    t.at(1).frame(1, Stream::Stdout, 1, b"a\n");
    t.at(500).on(Event::HeartbeatTick { running: true });
    assert!(
        !t.text.contains("CancelReader"),
        "quiet for less than the interval"
    );
    t.at(1_001).on(Event::HeartbeatTick { running: true });
    assert!(t.text.contains("CancelReader g1 (Stall)"));
    insta::assert_snapshot!("stall_rotates", t.text);
}

#[test]
fn a_tick_is_wanted_only_when_the_stream_has_been_quiet_for_an_interval() {
    let mut t = started();
    t.at(500);
    assert!(!t.m.wants_heartbeat_tick(t.now), "active 499 ms ago");
    t.at(990).frame(1, Stream::Stdout, 5, b"a\n");
    t.at(1_500);
    assert!(!t.m.wants_heartbeat_tick(t.now), "a frame 510 ms ago");
    t.at(1_990);
    assert!(
        t.m.wants_heartbeat_tick(t.now),
        "quiet for the whole interval"
    );
    t.at(2_000).on(Event::ContainerDied);
    assert!(t.m.wants_heartbeat_tick(t.now), "not believed running");
}

#[test]
fn resuming_after_the_capturer_restarts() {
    // The capturer stopped with this cursor saved; the container wrote more meanwhile.
    let mut first = started();
    first.at(5).frame(1, Stream::Stdout, 5, b"a\n");
    first.at(6).frame(1, Stream::Stdout, 6, b"b\n");
    first.at(7).on(Event::StopRequested);
    first.at(8).on(Event::ReaderExited {
        generation: G1,
        exit: ReaderExit::Cancelled,
    });
    first.at(8).on(Event::HeartbeatExited);
    assert!(first.m.is_stopped());
    let saved = first
        .checkpoints
        .last()
        .expect("Stopped checkpoints the cursor")
        .clone();
    assert_eq!(saved.position(Stream::Stdout).ts, stamp(6));
    let mut t = Trace::resume(config(), saved);
    t.at(0).on(Event::ContainerStarted);
    t.at(1).on(Event::StreamOpened { generation: G1 });
    t.at(2).frame(1, Stream::Stdout, 5, b"a\n");
    t.at(2).frame(1, Stream::Stdout, 6, b"b\n");
    t.at(2).frame(1, Stream::Stdout, 7, b"written while down\n");
    assert_eq!(t.messages(Stream::Stdout), ["written while down"]);
    let fresh = Cursor::new(Timestamp(0), StreamSet::MULTIPLEXED);
    assert_ne!(t.m.cursor(), &fresh);
    insta::assert_snapshot!("resume_after_capturer_restart", t.text);
}

#[test]
fn a_rotation_waits_until_the_reopened_stream_delivers() {
    // Issue cases 1-3 and 5: a reopen makes the daemon scan the whole log before it sends
    // anything, and once that took longer than the interval, every generation was retired
    // before it delivered a line: the capture never moved again.
    let mut t = started();
    t.at(10).frame(1, Stream::Stdout, 10, b"a\n");
    t.timeout(); // 110ms
    t.at(111).on(Event::ReaderExited {
        generation: G1,
        exit: ReaderExit::Cancelled,
    });
    t.at(112).on(Event::StreamOpened { generation: G2 });
    assert_eq!(t.m.poll_timeout(), None, "no rotation before g2 delivers");
    // The daemon scans for 900ms (nine intervals), then replays "a" (not new)...
    t.at(1_012).frame(2, Stream::Stdout, 10, b"a\n");
    assert_eq!(t.m.poll_timeout(), None, "a replayed line is no progress");
    // ...then the first new line arms the rotation, an interval later.
    t.at(1_013).frame(2, Stream::Stdout, 20, b"b\n");
    assert_eq!(
        t.m.poll_timeout(),
        Some(capturer_core::Instant(1_113_000_000))
    );
    assert_eq!(t.text.matches("CancelReader").count(), 1);
    assert_eq!(t.messages(Stream::Stdout), ["a", "b"]);
    insta::assert_snapshot!("rotation_waits_for_progress", t.text);
}

#[test]
fn a_stream_waiting_for_its_first_frame_gets_twice_as_long_each_time() {
    // A stall before the first frame may be the daemon's scan of a big log: each such stall
    // doubles the next wait, so some generation outwaits any scan.
    let mut t = started();
    t.at(1_001).on(Event::HeartbeatTick { running: true });
    assert_eq!(t.text.matches("(Stall)").count(), 1, "1s without a frame");
    t.at(1_002).on(Event::ReaderExited {
        generation: G1,
        exit: ReaderExit::Cancelled,
    });
    t.at(1_003).on(Event::StreamOpened { generation: G2 });
    t.at(2_004).on(Event::HeartbeatTick { running: true });
    assert_eq!(t.text.matches("(Stall)").count(), 1, "g2 may wait 2s");
    t.at(3_004).on(Event::HeartbeatTick { running: true });
    assert_eq!(t.text.matches("(Stall)").count(), 2, "but not longer");
    t.at(3_005).on(Event::ReaderExited {
        generation: G2,
        exit: ReaderExit::Cancelled,
    });
    t.at(3_006).on(Event::StreamOpened { generation: G3 });
    t.at(6_000).frame(3, Stream::Stdout, 1, b"first\n");
    assert_eq!(
        t.text.matches("(Stall)").count(),
        2,
        "g3 waited 3s, under 4s"
    );
    // Once frames flow, a quiet spell of one interval is a stall again.
    t.at(7_001).on(Event::HeartbeatTick { running: true });
    assert_eq!(t.text.matches("(Stall)").count(), 3);
    assert_eq!(t.messages(Stream::Stdout), ["first"]);
}

#[test]
fn lines_the_daemon_sends_twice_within_one_stream_are_delivered_once() {
    // Issue case 6, as measured with json-file max-size: after its own file rotation the
    // daemon went back and sent lines again, within the same follow stream.
    let mut t = started();
    for (at, ts) in [(10, 636), (11, 637), (12, 638), (13, 639)] {
        t.at(at)
            .frame(1, Stream::Stdout, ts, format!("line {ts}\n").as_bytes());
    }
    // Back four lines...
    for (at, ts) in [(14, 636), (15, 637), (16, 638), (17, 639)] {
        t.at(at)
            .frame(1, Stream::Stdout, ts, format!("line {ts}\n").as_bytes());
    }
    t.at(18).frame(1, Stream::Stdout, 640, b"line 640\n");
    // ...and back one line: the last one again, alone.
    t.at(19).frame(1, Stream::Stdout, 640, b"line 640\n");
    t.at(20).frame(1, Stream::Stdout, 641, b"line 641\n");
    let want: Vec<String> = (636..=641).map(|i| format!("line {i}")).collect();
    assert_eq!(t.messages(Stream::Stdout), want);
    insta::assert_snapshot!("daemon_resends_within_a_stream", t.text);
}

#[test]
fn a_draining_read_answered_as_a_follow_flushes_no_part() {
    // Found by the model (--early-ends): the container started again between a draining read's
    // request and the daemon's answer, so the answer followed the new run, and that follow
    // stream ended early with a part of a long line held, before the `start` reached the
    // machine. Flushing the part as a whole line lost the rest of the line. The runtime
    // checks that the container stayed stopped throughout the read; it did not.
    let mut t = started();
    t.at(5).frame(1, Stream::Stdout, 1_000, b"o1\n");
    t.at(6).on(Event::ContainerDied);
    t.at(7).end(G1, false);
    t.at(7).on(Event::ReaderExited {
        generation: G1,
        exit: ReaderExit::CleanEnd,
    });
    t.timeout();
    assert!(
        t.m.is_draining(),
        "g2 was opened after a die, no start since"
    );
    t.at(20).on(Event::StreamOpened { generation: G2 });
    t.at(21).frame(2, Stream::Stdout, 1_000, b"o1\n");
    t.at(21).frame(2, Stream::Stderr, 500, b"e1\n");
    t.at(22).frame(2, Stream::Stdout, 1_000, b"p1");
    t.at(23).end(G2, false);
    t.at(23).on(Event::ReaderExited {
        generation: G2,
        exit: ReaderExit::CleanEnd,
    });
    assert_eq!(t.messages(Stream::Stdout), ["o1"], "p1 is not a whole line");
    t.at(24).on(Event::ContainerStarted);
    t.at(25).on(Event::ContainerDied);
    t.timeout();
    t.at(60).on(Event::StreamOpened { generation: G3 });
    t.at(61).frame(3, Stream::Stdout, 1_000, b"o1\n");
    t.at(61).frame(3, Stream::Stderr, 500, b"e1\n");
    t.at(61).frame(3, Stream::Stdout, 1_000, b"p1");
    t.at(61).frame(3, Stream::Stdout, 1_000, b"p2\n");
    t.at(61).frame(3, Stream::Stderr, 1_100, b"e2\n");
    t.at(61).frame(3, Stream::Stdout, 1_900, b"end");
    t.at(62).end(G3, true);
    t.at(62).on(Event::ReaderExited {
        generation: G3,
        exit: ReaderExit::CleanEnd,
    });
    assert_eq!(t.messages(Stream::Stdout), ["o1", "p1p2", "end"]);
    assert_eq!(t.messages(Stream::Stderr), ["e1", "e2"]);
    assert_eq!(
        t.m.poll_timeout(),
        None,
        "read whole: nothing until a start"
    );
    insta::assert_snapshot!("draining_read_answered_as_a_follow", t.text);
}

#[test]
fn lines_a_full_sink_never_took_are_read_again() {
    let mut t = started();
    t.at(10).frame(1, Stream::Stdout, 10, b"taken\n");
    let kept = t.m.cursor().clone();
    t.at(11).frame(1, Stream::Stdout, 11, b"never taken\n");
    t.at(100).on(Event::RotationDue);
    // The reader waited for room in the sink, was cancelled, and drops its batch.
    assert!(!t.m.hand_back(G2, &kept), "not the live generation");
    assert!(t.m.hand_back(G1, &kept));
    t.lines.retain(|l| l.message != b"never taken");
    t.at(101).on(Event::ReaderExited {
        generation: G1,
        exit: ReaderExit::Cancelled,
    });
    let last = t.checkpoints.last().expect("a checkpoint at the exit");
    assert!(
        last.dominates(&kept) && kept.dominates(last),
        "the checkpoint covers only what the sink took"
    );
    t.at(102).on(Event::StreamOpened { generation: G2 });
    t.at(103).frame(2, Stream::Stdout, 10, b"taken\n");
    t.at(103).frame(2, Stream::Stdout, 11, b"never taken\n");
    assert_eq!(t.messages(Stream::Stdout), ["taken", "never taken"]);
    insta::assert_snapshot!("lines_a_full_sink_never_took_are_read_again", t.text);
}

/// g1 delivered o10 e15 o20 e25 (file order) and was rotated: stderr delivered last.
fn tail_after_rotation(tries: u32) -> Trace {
    let mut t = Trace::new(capturer_core::Config {
        tail_tries: tries,
        ..tail_config(2)
    });
    t.at(0).on(Event::ContainerStarted);
    t.at(1).on(Event::StreamOpened { generation: G1 });
    t.at(10).frame(1, Stream::Stdout, 10, b"o10\n");
    t.at(10).frame(1, Stream::Stderr, 15, b"e15\n");
    t.at(20).frame(1, Stream::Stdout, 20, b"o20\n");
    t.at(30).frame(1, Stream::Stderr, 25, b"e25\n");
    t.at(110).on(Event::RotationDue);
    t.at(111).on(Event::ReaderExited {
        generation: G1,
        exit: ReaderExit::Cancelled,
    });
    t.at(112).on(Event::StreamOpened { generation: G2 });
    t
}

#[test]
fn tail_reopen_that_reaches_back_resumes_after_the_last_line() {
    let mut t = tail_after_rotation(3);
    // Too short: the first stderr message is the last one delivered, not one before it, so
    // the tail may have begun after it. Nothing of g2 is used; g3 asks twice as much.
    t.at(113).frame(2, Stream::Stdout, 20, b"o20\n");
    t.at(113).frame(2, Stream::Stderr, 25, b"e25\n");
    t.at(113).frame(2, Stream::Stdout, 30, b"o30\n");
    t.at(114).on(Event::ReaderExited {
        generation: G2,
        exit: ReaderExit::Cancelled,
    });
    t.at(115).on(Event::StreamOpened { generation: G3 });
    // e15 is the proof: the response holds everything after e25.
    t.at(116).frame(3, Stream::Stderr, 15, b"e15\n");
    t.at(116).frame(3, Stream::Stdout, 20, b"o20\n");
    t.at(116).frame(3, Stream::Stderr, 25, b"e25\n");
    t.at(117).frame(3, Stream::Stdout, 30, b"o30\n");
    t.at(117).frame(3, Stream::Stderr, 35, b"e35\n");
    assert_eq!(t.messages(Stream::Stdout), ["o10", "o20", "o30"]);
    assert_eq!(t.messages(Stream::Stderr), ["e15", "e25", "e35"]);
    insta::assert_snapshot!(
        "tail_reopen_that_reaches_back_resumes_after_the_last_line",
        t.text
    );
}

#[test]
fn tail_reopen_delivers_nothing_before_its_proof() {
    let mut t = tail_after_rotation(1);
    // A new line before the proof: the proof cannot come after it (it would be older), so
    // the tail began after the cursor. o30 is not delivered; after one miss, `since`.
    t.at(113).frame(2, Stream::Stdout, 30, b"o30\n");
    t.at(113).frame(2, Stream::Stderr, 35, b"e35\n");
    t.at(114).on(Event::ReaderExited {
        generation: G2,
        exit: ReaderExit::Cancelled,
    });
    t.at(115).on(Event::StreamOpened { generation: G3 });
    t.at(116).frame(3, Stream::Stdout, 20, b"o20\n");
    t.at(116).frame(3, Stream::Stderr, 25, b"e25\n");
    t.at(116).frame(3, Stream::Stdout, 30, b"o30\n");
    t.at(116).frame(3, Stream::Stderr, 35, b"e35\n");
    assert_eq!(t.messages(Stream::Stdout), ["o10", "o20", "o30"]);
    assert_eq!(t.messages(Stream::Stderr), ["e15", "e25", "e35"]);
    insta::assert_snapshot!("tail_reopen_delivers_nothing_before_its_proof", t.text);
}
