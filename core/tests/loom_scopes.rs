//! The scope's join and counter invariants over every interleaving, under loom.
//!
//! ```sh
//! RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=3 CARGO_TARGET_DIR=target/loom \
//!     cargo test -p capturer-core --release --features mutants --test loom_scopes -- --nocapture
//! ```
//!
//! `capturer_core::scope` is the code the runtime runs: under `cfg(loom)` its atomics, lock
//! and condvar are loom's (see `core/src/sync.rs`), so loom schedules every step of it. Each
//! test prints how many interleavings it explored (shown with `--nocapture`) and fails if it
//! explored only one. loom allows 4 threads besides main here; no test spawns more than 3.
//!
//! The checks have teeth: with the `mutants` feature (the command above passes
//! `--features mutants`), a bug planted in the scope itself (`ScopeMutant`) and the seed's
//! shared scope must each make loom fail, with the failure each one causes, and each test
//! prints after how many interleavings loom found it.
#![cfg(loom)]

use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::AtomicUsize as StdAtomicUsize;
// Test scaffolding (the cells, the signals) is shared through std's `Arc`, whose reference
// counting loom does not schedule; only the scope under test pays for loom's `Arc`.
use std::future::Future;
use std::sync::Arc as StdArc;
use std::time::Instant;

use capturer_core::scope::{Scope, ScopeGuard, ScopeMutant};
use loom::cell::UnsafeCell;
use loom::future::block_on;
use loom::sync::atomic::{AtomicBool, Ordering};
use loom::thread;

/// Runs `body` under `loom::model`, counting the interleavings (one call per execution).
fn explore(name: &str, body: impl Fn() + Sync + Send + 'static) -> usize {
    let executions = StdArc::new(StdAtomicUsize::new(0));
    let counter = executions.clone();
    let started = Instant::now();
    loom::model(move || {
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        body();
    });
    let executions = executions.load(std::sync::atomic::Ordering::Relaxed);
    println!(
        "loom {name}: {executions} interleavings explored in {:.1?}, all passed",
        started.elapsed()
    );
    assert!(
        executions > 1,
        "{name}: loom explored a single interleaving"
    );
    executions
}

/// Runs `body` under `loom::model` expecting loom to fail it: returns how many interleavings
/// it explored up to the failure, and loom's message. Panics if every interleaving passed.
fn caught(name: &str, body: impl Fn() + Sync + Send + 'static) -> (usize, String) {
    let executions = StdArc::new(StdAtomicUsize::new(0));
    let counter = executions.clone();
    let started = Instant::now();
    let outcome = panic::catch_unwind(AssertUnwindSafe(|| {
        loom::model(move || {
            counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            body();
        })
    }));
    let executions = executions.load(std::sync::atomic::Ordering::Relaxed);
    let message = match outcome {
        Ok(()) => panic!("{name}: loom passed the mutant over {executions} interleavings"),
        Err(panic) => panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default(),
    };
    println!(
        "loom {name}: caught at interleaving {executions}, in {:.1?}: {}",
        started.elapsed(),
        message.lines().next().unwrap_or("")
    );
    (executions, message)
}

/// A data cell written by a task before it leaves its scope and read after the join: loom
/// reports a causality violation if the join does not happen-after the write.
struct Slot(UnsafeCell<u32>);

// SAFETY: loom tracks every access to the cell and fails the test on an unsynchronized one.
unsafe impl Sync for Slot {}

impl Slot {
    fn new() -> Slot {
        Slot(UnsafeCell::new(0))
    }
    fn write(&self, value: u32) {
        // SAFETY: checked by loom (see the `Sync` impl).
        self.0.with_mut(|p| unsafe { *p = value });
    }
    fn read(&self) -> u32 {
        // SAFETY: checked by loom (see the `Sync` impl).
        self.0.with(|p| unsafe { *p })
    }
}

/// The order that ends a task: "stop" for the heartbeat, "cancel" for a reader. A flag and an
/// unpark: loom schedules the flag's accesses, while park and unpark are no scheduling points
/// (with a `Mutex` and `Condvar` instead, test c explored 105,773 interleavings, not 82,384).
#[derive(Clone)]
struct Signal {
    raised: StdArc<AtomicBool>,
    task: thread::Thread,
}

impl Signal {
    fn raise(&self) {
        self.raised.store(true, Ordering::Release);
        self.task.unpark();
    }
}

fn enter(scope: &Scope) -> ScopeGuard {
    match scope.enter() {
        Some(guard) => guard,
        None => panic!("{} is closed", scope.name()),
    }
}

/// Waits for a thread's end (loom fails the model on any thread's panic by itself).
fn join(thread: thread::JoinHandle<()>) {
    if let Err(panic) = thread.join() {
        panic::resume_unwind(panic);
    }
}

/// a. With three tasks inside, a scope's join completes only after every guard is dropped
/// (their writes are visible to it, or loom reports the race) and never misses the last drop,
/// which races with the close: a missed wakeup would leave the joiner asleep for good, which
/// loom reports as a deadlock.
#[test]
fn a_join_completes_after_every_drop_three_holders() {
    explore("a (3 holders, close racing, async join)", || {
        let scope = Scope::named("a");
        let slots: StdArc<Vec<Slot>> = StdArc::new((0..3).map(|_| Slot::new()).collect());
        for i in 0..3 {
            let guard = enter(&scope);
            let slots = slots.clone();
            thread::spawn(move || {
                slots[i].write(1);
                drop(guard);
            });
        }
        scope.close();
        block_on(scope.join());
        assert!(slots.iter().all(|slot| slot.read() == 1), "joined early");
        assert_eq!(scope.live(), 0);
    });
}

/// a, with two joiners of both kinds: a thread in `join_blocking` and the main thread's async
/// join wait on one scope; the last drop, racing with the close, wakes both.
#[test]
fn a_join_wakes_every_joiner() {
    explore("a (close racing, async + blocking joiners)", || {
        let scope = Scope::named("a");
        let slot = StdArc::new(Slot::new());
        let guard = enter(&scope);
        {
            let slot = slot.clone();
            thread::spawn(move || {
                slot.write(1);
                drop(guard);
            });
        }
        {
            let scope = scope.clone();
            let slot = slot.clone();
            thread::spawn(move || {
                scope.join_blocking();
                assert_eq!(slot.read(), 1, "joined early");
            });
        }
        scope.close();
        block_on(scope.join());
        assert_eq!(slot.read(), 1, "joined early");
    });
}

/// b. enter, drop and close race. The count never goes below zero (the guard's drop asserts it
/// under loom, and no observed count exceeds the guards that can exist) and join never
/// returns while a guard lives: the task inside writes its slot while it holds its guard, the
/// joiner reads it after the join, and loom reports the race if the two can overlap.
#[test]
fn b_count_never_below_zero_and_join_never_early() {
    explore("b (enter, drop, close racing)", || {
        let scope = Scope::named("b");
        let inside = StdArc::new(Slot::new());

        // Entered before the race, dropped during it.
        let early = enter(&scope);
        thread::spawn(move || drop(early));
        // Enters during the race, unless the close comes first.
        {
            let scope = scope.clone();
            let inside = inside.clone();
            thread::spawn(move || {
                if let Some(guard) = scope.enter() {
                    inside.write(1);
                    assert!((1..=2).contains(&scope.live()));
                    drop(guard);
                }
            });
        }
        {
            let scope = scope.clone();
            thread::spawn(move || {
                scope.close();
                assert!(scope.enter().is_none(), "entered a closed scope");
            });
        }

        block_on(scope.join());
        // Closed and empty, for good; the enterer's task, if it ran, is over and its write
        // visible (loom reports the race otherwise).
        assert_eq!(scope.live(), 0);
        assert!(scope.enter().is_none());
        let _ = inside.read();
    });
}

/// How the container's tasks are counted: the fix, or the seed's bug.
#[derive(Clone, Copy, Debug)]
enum Layout {
    /// One scope for the container (its heartbeat) and one per reader generation.
    PerLifecycle,
    /// The seed bug: one scope (the Go `WaitGroup`) for the heartbeat and the readers.
    Shared,
}

/// Spawns a task that holds `guard` until its signal is raised: the heartbeat (until stop), or
/// a reader (until cancelled).
fn spawn_task(guard: ScopeGuard) -> (thread::JoinHandle<()>, Signal) {
    let raised = StdArc::new(AtomicBool::new(false));
    let handle = {
        let raised = raised.clone();
        thread::spawn(move || {
            let _guard = guard;
            while !raised.load(Ordering::Acquire) {
                thread::park();
            }
        })
    };
    let task = handle.thread().clone();
    (handle, Signal { raised, task })
}

/// c and d: a container's life, as the runtime lives it. A heartbeat that runs until told to
/// stop; a reader per generation that runs until cancelled; a rotation that cancels the
/// current reader and joins its generation; a second generation; then stop, which tells the
/// heartbeat and the reader to end and joins everything. `layout` decides which scope each
/// task is counted in, and nothing else.
fn container_lifetime(layout: Layout) {
    let container = Scope::named("container");
    let (heartbeat, stop) = spawn_task(enter(&container));
    let generation_scope = |n: u32| match layout {
        Layout::PerLifecycle => Scope::named(format!("generation {n}")),
        Layout::Shared => container.clone(),
    };

    let first = generation_scope(1);
    let (reader, cancel) = spawn_task(enter(&first));
    // The rotation: cancel generation 1 and join its scope, then open generation 2.
    cancel.raise();
    first.close();
    block_on(first.join());
    join(reader);
    let second = generation_scope(2);
    let (reader, cancel) = spawn_task(enter(&second));

    // Stop: the heartbeat and the current reader are told to end; both scopes are joined.
    stop.raise();
    cancel.raise();
    container.close();
    second.close();
    second.join_blocking();
    block_on(container.join());
    assert_eq!(container.live() + second.live(), 0);
    join(reader);
    join(heartbeat);
}

#[test]
fn c_seed_fix_rotation_joins_only_its_generation() {
    explore("c (seed fix: scope per lifecycle)", || {
        container_lifetime(Layout::PerLifecycle)
    });
}

/// The seed bug deadlocks on every schedule, so this proves that loom detects a deadlock, not
/// that it searches: the mutants of the scope itself (below) are found by the search.
#[test]
fn d_seed_bug_shared_scope_deadlocks_and_loom_finds_it() {
    let (_, message) = caught("d (seed bug: one shared scope)", || {
        container_lifetime(Layout::Shared)
    });
    assert!(
        message.starts_with("deadlock"),
        "loom failed the mutant, but not with a deadlock: {message}"
    );
    // The seed's deadlock exactly: the main thread (the rotation, joining) and the heartbeat
    // (waiting for a stop that comes after the rotation) are blocked, generation 1's reader
    // has ended, and generation 2 never started.
    assert!(
        message.contains("(Id(0), Blocked")
            && message.contains("(Id(1), Blocked")
            && message.contains("(Id(2), Terminated)")
            && !message.contains("Id(3)"),
        "not the seed's deadlock: {message}"
    );
}

/// e. Stop races a rotation: stop arrives from another thread before, while or after the
/// rotation joins generation 1. Stop tells the heartbeat to end, closes the container and
/// joins it, while the rotation joins the generation. Everything joins, every thread ends,
/// and loom's leak check passes: every loom `Arc` (each scope's, each guard's and join's
/// reference to it, each parked waker) is dropped by the end of every execution.
#[test]
fn e_stop_racing_a_rotation_joins_everything() {
    explore("e (stop racing a rotation)", || {
        let container = Scope::named("container");
        let (heartbeat, stop) = spawn_task(enter(&container));
        let generation = Scope::named("generation 1");
        let (reader, cancel) = spawn_task(enter(&generation));
        let stopper = {
            let container = container.clone();
            thread::spawn(move || {
                stop.raise();
                container.close();
                container.join_blocking();
            })
        };

        // The rotation.
        cancel.raise();
        generation.close();
        block_on(generation.join());
        join(reader);
        join(stopper);
        join(heartbeat);
        assert_eq!(container.live() + generation.live(), 0);
        assert!(container.is_closed() && generation.is_closed());
    });
}

/// A waker that raises a flag, for a joiner that polls by hand. A std atomic, as the other
/// test signals: loom runs one thread at a time, so it is sequentially consistent, and it
/// orders nothing loom tracks (the slot's write and read are ordered by the scope alone).
/// A loom `AtomicBool` stored from inside a waker's `wake` read back `false` in loom 0.7.
struct FlagWaker(std::sync::atomic::AtomicBool);

impl std::task::Wake for FlagWaker {
    fn wake(self: StdArc<Self>) {
        self.0.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

/// One task inside `scope` writes its slot, leaves, and says it is done, while the main thread
/// closes the scope and joins it by polling by hand: after each `Pending` it waits for a wake,
/// and if the task has finished and no wake came since that poll, the wake-up was lost. The
/// smallest shape in which each scope mutant shows, and the lost wake-up is a plain assertion
/// (loom's own deadlock report, raised from a spawned thread while the main thread waits in a
/// loom future, aborts the test process).
fn one_holder_joined(scope: Scope) {
    let slot = StdArc::new(Slot::new());
    let done = StdArc::new(std::sync::atomic::AtomicBool::new(false));
    let guard = enter(&scope);
    let holder = {
        let slot = slot.clone();
        let done = done.clone();
        thread::spawn(move || {
            slot.write(1);
            drop(guard);
            done.store(true, std::sync::atomic::Ordering::SeqCst);
        })
    };
    scope.close();
    let flag = StdArc::new(FlagWaker(std::sync::atomic::AtomicBool::new(false)));
    let waker = std::task::Waker::from(flag.clone());
    let mut joining = std::pin::pin!(scope.join());
    loop {
        let polled = joining
            .as_mut()
            .poll(&mut std::task::Context::from_waker(&waker));
        if polled.is_ready() {
            break;
        }
        loop {
            if flag.0.swap(false, std::sync::atomic::Ordering::SeqCst) {
                break;
            }
            // Read `done` before looking at the flag again: a wake comes before `done`.
            if done.load(std::sync::atomic::Ordering::SeqCst) {
                assert!(
                    flag.0.swap(false, std::sync::atomic::Ordering::SeqCst),
                    "lost wakeup: the scope is done, and the pending join was never woken"
                );
                break;
            }
            thread::yield_now();
        }
    }
    assert_eq!(slot.read(), 1, "joined early");
    join(holder);
}

/// The unmutated scope passes the shape the mutants below fail.
#[test]
fn f_one_holder_joined() {
    explore("f (one holder, close racing, joined by hand)", || {
        one_holder_joined(Scope::named("f"))
    });
}

/// A `Relaxed` leave publishes nothing: a join that reads the final count on its fast path
/// returns without synchronizing with the task's write, and loom reports the data race.
#[test]
fn g_mutant_relaxed_leave_is_a_race() {
    let (n, message) = caught("g (mutant: relaxed leave)", || {
        one_holder_joined(Scope::planted("g", ScopeMutant::RelaxedLeave))
    });
    assert!(
        message.contains("Causality violation"),
        "not a data race: {message}"
    );
    assert!(n > 1, "found on the first schedule: no search was needed");
}

/// Without the re-check under the lock, the last guard can leave between the join's check and
/// its registration: the wake finds no waker and the joiner would sleep for good.
#[test]
fn h_mutant_no_recheck_under_the_lock_loses_the_wakeup() {
    let (n, message) = caught("h (mutant: no re-check under the lock)", || {
        one_holder_joined(Scope::planted("h", ScopeMutant::NoRecheckUnderLock))
    });
    assert!(
        message.starts_with("lost wakeup"),
        "not a lost wakeup: {message}"
    );
    assert!(n > 1, "found on the first schedule: no search was needed");
}

/// A last guard that wakes the joiners before it leaves: the woken joiner still counts it,
/// registers again, and the leave that follows wakes nobody. loom's first schedule already
/// runs into it (the joiner re-polls between the wake and the leave).
#[test]
fn i_mutant_wake_before_leave_loses_the_wakeup() {
    let (_, message) = caught("i (mutant: wake before the leave)", || {
        one_holder_joined(Scope::planted("i", ScopeMutant::WakeBeforeLeave))
    });
    assert!(
        message.starts_with("lost wakeup"),
        "not a lost wakeup: {message}"
    );
}
