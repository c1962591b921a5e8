//! The runtime's concurrency seam under loom: the machine behind one mutex, a reader that
//! leaves work in it and pokes, and the supervisor that takes the poke and drives the machine.
//!
//! ```sh
//! RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=3 CARGO_TARGET_DIR=target/loom \
//!     cargo test -p capturer-core --release --features mutants --test loom_poke -- --nocapture
//! ```
//!
//! `capturer_core::poke::Poke` is the flag the runtime uses (its atomic is loom's under
//! `cfg(loom)`, through `core/src/sync.rs`), and the machine is the real one. The protocol of
//! `core/src/poke.rs` (take, then drive) must leave no command and no deadline behind over
//! every interleaving; the reversed order (drive, then take) must be caught losing one.
#![cfg(loom)]

use std::collections::VecDeque;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool as StdAtomicBool, AtomicUsize as StdAtomicUsize};
use std::sync::Arc as StdArc;

use capturer_core::poke::Poke;
use capturer_core::{
    Config, ContainerMachine, Cursor, Event, Generation, Instant, Line, Stream, StreamSet,
    Timestamp,
};
use loom::sync::Mutex;
use loom::thread;

const SEQ: std::sync::atomic::Ordering = std::sync::atomic::Ordering::SeqCst;

/// When the supervisor lowers the flag.
#[derive(Clone, Copy, Debug)]
enum Order {
    /// The protocol: take the news, then drive the machine.
    TakeThenDrive,
    /// The planted bug: drive the machine, then take the news.
    DriveThenTake,
}

/// What the reader, the supervisor and the channel between them share.
struct Seam {
    machine: Mutex<ContainerMachine>,
    poke: Poke,
    /// The channel of container ids (one container here: an id is a unit).
    ids: Mutex<VecDeque<()>>,
    /// The reader is done (a test signal, not part of the protocol).
    reader_done: StdAtomicBool,
}

/// A machine with generation 1 open, its start-up commands carried out.
fn streaming() -> ContainerMachine {
    let mut m = ContainerMachine::new(
        Config::default(),
        Cursor::new(Timestamp(0), StreamSet::MULTIPLEXED),
    );
    m.handle(Instant(0), Event::ContainerStarted);
    while m.poll_command().is_some() {}
    m.handle(
        Instant(1),
        Event::StreamOpened {
            generation: Generation(1),
        },
    );
    while m.poll_command().is_some() {}
    m
}

/// One read, as the runtime's reader does it: frames through the machine under the lock, then
/// a poke if it left commands or moved the deadline.
fn read(seam: &Seam, now: u64, bytes: &[u8]) {
    let waiting = {
        let mut m = seam.machine.lock().unwrap_or_else(|e| e.into_inner());
        let deadline = m.poll_timeout();
        let mut lines: Vec<Line> = Vec::new();
        m.handle_frame(
            Instant(now),
            Generation(1),
            Stream::Stdout,
            bytes,
            &mut lines,
        );
        m.has_commands() || m.poll_timeout() != deadline
    };
    if waiting && seam.poke.raise() {
        seam.ids
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push_back(());
    }
}

/// The supervisor's drive: every command out, and the deadline it arms its timer at.
fn drive(seam: &Seam, armed: &mut Option<Instant>) {
    let mut m = seam.machine.lock().unwrap_or_else(|e| e.into_inner());
    while m.poll_command().is_some() {}
    *armed = m.poll_timeout();
}

fn seam(order: Order) {
    let seam = StdArc::new(Seam {
        machine: Mutex::new(streaming()),
        poke: Poke::new(),
        ids: Mutex::new(VecDeque::new()),
        reader_done: StdAtomicBool::new(false),
    });
    let reader = {
        let seam = seam.clone();
        thread::spawn(move || {
            // The first new line arms the rotation (a new deadline); the bad frame that
            // follows leaves a report and the cancel of this generation.
            read(&seam, 2, b"2024-01-01T00:00:00.000000001Z a\n");
            read(&seam, 3, b"not a timestamp\n");
            seam.reader_done.store(true, SEQ);
        })
    };
    let mut armed = None;
    loop {
        let finished = seam.reader_done.load(SEQ);
        let news = seam
            .ids
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop_front();
        match (news, order) {
            (Some(()), Order::TakeThenDrive) => {
                seam.poke.take();
                drive(&seam, &mut armed);
            }
            (Some(()), Order::DriveThenTake) => {
                drive(&seam, &mut armed);
                seam.poke.take();
            }
            (None, _) if finished => break,
            (None, _) => thread::yield_now(),
        }
    }
    let m = seam.machine.lock().unwrap_or_else(|e| e.into_inner());
    assert!(
        !m.has_commands(),
        "lost wake-up: commands left in the machine, and no news in flight"
    );
    assert_eq!(
        armed,
        m.poll_timeout(),
        "lost wake-up: a deadline the supervisor never armed"
    );
    drop(m);
    if reader.join().is_err() {
        panic!("the reader panicked");
    }
}

#[test]
fn taking_the_poke_before_driving_loses_nothing() {
    let executions = StdArc::new(StdAtomicUsize::new(0));
    let counter = executions.clone();
    let started = std::time::Instant::now();
    loom::model(move || {
        counter.fetch_add(1, SEQ);
        seam(Order::TakeThenDrive);
    });
    let n = executions.load(SEQ);
    println!(
        "loom poke (take, then drive): {n} interleavings explored in {:.1?}, all passed",
        started.elapsed()
    );
    assert!(n > 1, "loom explored a single interleaving");
}

#[test]
fn taking_the_poke_after_driving_is_caught() {
    let executions = StdArc::new(StdAtomicUsize::new(0));
    let counter = executions.clone();
    let outcome = panic::catch_unwind(AssertUnwindSafe(|| {
        loom::model(move || {
            counter.fetch_add(1, SEQ);
            seam(Order::DriveThenTake);
        })
    }));
    let n = executions.load(SEQ);
    let message = match outcome {
        Ok(()) => panic!("loom passed the reversed order over {n} interleavings"),
        Err(panic) => panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default(),
    };
    println!("loom poke (mutant: drive, then take): caught at interleaving {n}: {message}");
    assert!(message.starts_with("lost wake-up"), "{message}");
    assert!(n > 1, "found on the first schedule: no search was needed");
}
