//! Lifecycle scopes: counting and joining the live tasks of ONE lifecycle.
//!
//! A [`Scope`] counts the tasks of one lifecycle (one container's heartbeat, one reader
//! generation, ...). [`Scope::enter`] hands out a [`ScopeGuard`]; dropping the guard leaves.
//! There is no other way to decrement, so a task cannot leave twice or leave a scope it never
//! entered, and the count cannot go below zero. [`Scope::close`] refuses new entries from then
//! on; [`Scope::join`] (a runtime-agnostic future) and [`Scope::join_blocking`] complete once
//! the scope is closed AND empty, which is a terminal state.
//!
//! Use one scope per lifecycle. The seed incident was a single Go `WaitGroup` shared by a
//! per-container heartbeat and the per-rotation readers: the rotation waited on the heartbeat,
//! which only ends with the container, and every rotation leaked its waiter. With a scope per
//! lifecycle, a rotation joins its reader generation only (see `docs/scopes.md`).
//!
//! ```
//! use capturer_core::scope::Scope;
//!
//! let generation = Scope::named("reader generation 1");
//! let guard = generation.enter().unwrap();
//! let reader = std::thread::spawn(move || {
//!     let _guard = guard; // the reader's whole life; dropped when it returns
//! });
//! generation.close(); // the rotation: no new reader joins this generation
//! generation.join_blocking(); // returns once the reader has left
//! assert_eq!(generation.live(), 0);
//! assert!(generation.enter().is_none());
//! reader.join().unwrap();
//! ```
//!
//! ## State
//!
//! One `AtomicUsize` packs the closed bit (bit 0) and the number of live guards (the bits
//! above, so one guard is `2`), as tokio-util's `TaskTracker` does. Every change to it is a
//! read-modify-write (compare-exchange, `fetch_sub`, `fetch_or`), never a plain store. The
//! value `CLOSED` (closed, no guard) is terminal: `enter` refuses a closed scope without
//! writing, and no guard is left to drop, so once a thread reads it, it stays.
//!
//! Joiners park in a `Mutex<Waiters>`: the wakers of pending [`Join`] futures, and a `Condvar`
//! for [`Scope::join_blocking`]. Whoever moves the state to `CLOSED` (the last guard to leave a
//! closed scope, or `close` on an empty one) locks it, takes every waker, notifies the condvar
//! if a thread sleeps on it, and wakes the wakers after unlocking. Exactly one operation makes
//! that transition, so the joiners are woken once.
//!
//! ## Memory orderings, and why they suffice
//!
//! * `enter`: compare-exchange, `Relaxed` on success and failure. It only has to count; it
//!   publishes nothing and reads nothing the entering task relies on. Coherence on the single
//!   atomic is enough: the CAS compares the whole word, so it never succeeds on a closed
//!   scope, and the guard's later `fetch_sub` is ordered after its own increment.
//! * guard drop: `fetch_sub(2, Release)`. Everything the task did before leaving
//!   happens-before any `Acquire` load that reads this value or a later one: every later write
//!   is a read-modify-write, so it continues this store's release sequence.
//! * `close`: `fetch_or(CLOSED, Release)`, for the same reason: what the closer did before
//!   closing is visible to whoever joins.
//! * `join`, `join_blocking`, `is_closed`, `live`: `Acquire` loads. A join that reads
//!   `CLOSED` therefore synchronizes with every drop and with the close, and the tasks'
//!   effects are visible when it returns (loom checks this with `UnsafeCell`s).
//! * No lost wakeup: a joiner re-checks the state while holding the waiter lock before it
//!   registers or sleeps, and the transition's author takes the same lock after its
//!   read-modify-write. Either the joiner's lock comes first (it registers, and the author
//!   finds it), or the author's unlock happens-before the joiner's lock, and then write-read
//!   coherence forces the joiner's load to see `CLOSED`. The lock carries this argument; the
//!   orderings above only carry the tasks' data.
//!
//! loom explores these orderings over every interleaving in `core/tests/loom_scopes.rs`, and
//! with the `mutants` feature it is shown to catch each of three planted bugs in this very
//! code ([`ScopeMutant`]): a relaxed leave, a join that does not re-check under the lock, and
//! a last guard that wakes the joiners before it leaves.

use std::borrow::Cow;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::PoisonError;
use std::task::{Context, Poll, Waker};

use crate::sync::atomic::{AtomicUsize, Ordering};
use crate::sync::{Arc, Condvar, Mutex, MutexGuard};

/// The closed bit of the packed state.
const CLOSED: usize = 1;
/// One live guard in the packed state.
const ONE: usize = 2;

/// The live tasks of one lifecycle: enter for a guard, close, then join.
///
/// Cloning is cheap (one `Arc`) and every clone is the same scope.
#[derive(Clone)]
pub struct Scope {
    inner: Arc<Inner>,
}

/// Proof that a task is inside a scope; dropping it leaves the scope.
///
/// It is the only way to decrement the count, exactly once, so the count never goes below
/// zero. It owns a reference to the scope, so it can move into any task (`Send + 'static`).
#[must_use = "dropping the guard leaves the scope at once"]
pub struct ScopeGuard {
    inner: Arc<Inner>,
}

/// Completes once its scope is closed and empty; see [`Scope::join`].
///
/// Runtime-agnostic (only `std::task`), `Send + 'static`, and fused: once ready it stays ready.
/// Any number of joins may wait on the same scope.
#[must_use = "futures do nothing unless polled"]
pub struct Join {
    inner: Arc<Inner>,
    /// This future's slot in the waiter list, once it has registered a waker.
    key: Option<u64>,
}

struct Inner {
    name: Cow<'static, str>,
    /// A planted bug, for showing that loom catches it (`mutants` feature only).
    #[cfg(feature = "mutants")]
    mutant: Option<ScopeMutant>,
    /// The closed bit and the live count, packed: `live * ONE | closed`.
    state: AtomicUsize,
    waiters: Mutex<Waiters>,
    /// `join_blocking` sleeps here.
    done: Condvar,
}

/// A known bug planted in a scope, to show that loom finds it (`mutants` feature only).
#[cfg(feature = "mutants")]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScopeMutant {
    /// The guard leaves with a `Relaxed` decrement: a join that reads the final count does
    /// not synchronize with the task's last writes (loom: a causality violation).
    RelaxedLeave,
    /// The join checks for done before it takes the waiter lock, not under it: the last
    /// guard may leave, and wake nobody, between the check and the registration (loom: a
    /// lost wakeup, the joiner asleep for good).
    NoRecheckUnderLock,
    /// The last guard wakes the joiners, then decrements: a woken joiner polls, still sees
    /// the guard, and waits again for a wake that already happened (loom: a deadlock).
    WakeBeforeLeave,
}

/// Who waits for the scope: the wakers of the pending [`Join`]s, each under its future's key,
/// and how many threads sleep in [`Scope::join_blocking`].
struct Waiters {
    next_key: u64,
    wakers: Vec<(u64, Waker)>,
    sleepers: usize,
}

impl Scope {
    /// A new open, empty scope.
    pub fn new() -> Scope {
        Scope::named("scope")
    }

    /// A new open, empty scope with a name for debugging (e.g. `"container 3f2a heartbeat"`).
    pub fn named(name: impl Into<Cow<'static, str>>) -> Scope {
        Scope {
            inner: Arc::new(Inner::new(name.into())),
        }
    }

    /// A scope with the known bug `mutant` planted in it, for the loom tests.
    #[cfg(feature = "mutants")]
    pub fn planted(name: impl Into<Cow<'static, str>>, mutant: ScopeMutant) -> Scope {
        let mut inner = Inner::new(name.into());
        inner.mutant = Some(mutant);
        Scope {
            inner: Arc::new(inner),
        }
    }

    /// The name given at creation.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Enters the scope: `None` once it is closed, otherwise a guard that leaves on drop.
    ///
    /// Also `None` in the impossible case of `usize::MAX / 2` live guards.
    pub fn enter(&self) -> Option<ScopeGuard> {
        let state = &self.inner.state;
        let mut current = state.load(Ordering::Relaxed);
        loop {
            if current & CLOSED != 0 {
                return None;
            }
            let next = current.checked_add(ONE)?;
            match state.compare_exchange(current, next, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => {
                    return Some(ScopeGuard {
                        inner: self.inner.clone(),
                    })
                }
                Err(actual) => current = actual,
            }
        }
    }

    /// Refuses new entries from now on; the tasks inside carry on. Idempotent.
    pub fn close(&self) {
        let previous = self.inner.state.fetch_or(CLOSED, Ordering::Release);
        if previous == 0 {
            // Open and empty until now: this close completes the joins.
            self.inner.wake_joiners();
        }
    }

    /// Whether the scope is closed (no new entries).
    pub fn is_closed(&self) -> bool {
        self.inner.state.load(Ordering::Acquire) & CLOSED != 0
    }

    /// How many tasks are inside now (guards alive).
    pub fn live(&self) -> usize {
        self.inner.state.load(Ordering::Acquire) / ONE
    }

    /// A future that completes once the scope is closed and empty.
    ///
    /// It owns a reference to the scope, so it is `Send + 'static` and can be awaited anywhere.
    /// It does not close the scope: call [`Scope::close`] first, or it waits for whoever does.
    pub fn join(&self) -> Join {
        Join {
            inner: self.inner.clone(),
            key: None,
        }
    }

    /// Blocks the current thread until the scope is closed and empty.
    ///
    /// Like [`Scope::join`], it does not close the scope.
    pub fn join_blocking(&self) {
        let inner = &*self.inner;
        if inner.is_done() {
            return;
        }
        let mut waiters = inner.lock();
        waiters.sleepers += 1;
        while !inner.is_done() {
            waiters = inner
                .done
                .wait(waiters)
                .unwrap_or_else(PoisonError::into_inner);
        }
        waiters.sleepers -= 1;
    }
}

impl Default for Scope {
    fn default() -> Scope {
        Scope::new()
    }
}

impl fmt::Debug for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.fmt(f)
    }
}

impl Inner {
    /// An open, empty scope's state.
    fn new(name: Cow<'static, str>) -> Inner {
        Inner {
            name,
            #[cfg(feature = "mutants")]
            mutant: None,
            state: AtomicUsize::new(0),
            waiters: Mutex::new(Waiters {
                next_key: 0,
                wakers: Vec::new(),
                sleepers: 0,
            }),
            done: Condvar::new(),
        }
    }

    /// Whether the bug `m` is planted here (never without the `mutants` feature).
    #[cfg(feature = "mutants")]
    fn planted(&self, m: ScopeMutant) -> bool {
        self.mutant == Some(m)
    }

    /// Closed and empty: the terminal state. `Acquire`, so the tasks' effects are visible.
    fn is_done(&self) -> bool {
        self.state.load(Ordering::Acquire) == CLOSED
    }

    /// The waiter list; a poisoned lock is still a valid list (nothing panics while holding it
    /// half-updated).
    fn lock(&self) -> MutexGuard<'_, Waiters> {
        self.waiters.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Called once, by whoever moved the state to closed and empty.
    fn wake_joiners(&self) {
        let wakers = {
            let mut waiters = self.lock();
            if waiters.sleepers > 0 {
                self.done.notify_all();
            }
            std::mem::take(&mut waiters.wakers)
        };
        // Outside the lock: a waker may poll the join right here.
        for (_, waker) in wakers {
            waker.wake();
        }
    }
}

impl fmt::Debug for Inner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.state.load(Ordering::Acquire);
        f.debug_struct("Scope")
            .field("name", &self.name)
            .field("live", &(state / ONE))
            .field("closed", &(state & CLOSED != 0))
            .finish()
    }
}

impl ScopeGuard {
    /// The name of the scope this guard is inside.
    pub fn scope_name(&self) -> &str {
        &self.inner.name
    }
}

impl Drop for ScopeGuard {
    fn drop(&mut self) {
        #[cfg(feature = "mutants")]
        if self.inner.planted(ScopeMutant::WakeBeforeLeave) {
            if self.inner.state.load(Ordering::Acquire) == CLOSED | ONE {
                self.inner.wake_joiners();
            }
            self.inner.state.fetch_sub(ONE, Ordering::Release);
            return;
        }
        #[cfg(feature = "mutants")]
        let leave = if self.inner.planted(ScopeMutant::RelaxedLeave) {
            Ordering::Relaxed
        } else {
            Ordering::Release
        };
        #[cfg(not(feature = "mutants"))]
        let leave = Ordering::Release;
        let previous = self.inner.state.fetch_sub(ONE, leave);
        // Impossible by construction (one guard, one decrement); checked in debug builds and
        // under loom, whose runs are release builds.
        if cfg!(any(debug_assertions, loom)) {
            assert!(previous >= ONE, "a scope's count went below zero");
        }
        if previous == CLOSED | ONE {
            // The last task left a closed scope: this drop completes the joins.
            self.inner.wake_joiners();
        }
    }
}

impl fmt::Debug for ScopeGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScopeGuard")
            .field("scope", &self.inner.name)
            .finish()
    }
}

impl Future for Join {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        if this.key.is_none() && this.inner.is_done() {
            return Poll::Ready(());
        }
        #[cfg(feature = "mutants")]
        if this.inner.planted(ScopeMutant::NoRecheckUnderLock) {
            if this.inner.is_done() {
                return Poll::Ready(());
            }
            // The bug: the check above, then the lock; the last guard may leave between.
            let mut waiters = this.inner.lock();
            let key = *this.key.get_or_insert_with(|| {
                let key = waiters.next_key;
                waiters.next_key = waiters.next_key.wrapping_add(1);
                key
            });
            match waiters.wakers.iter_mut().find(|(k, _)| *k == key) {
                Some((_, waker)) => waker.clone_from(cx.waker()),
                None => waiters.wakers.push((key, cx.waker().clone())),
            }
            return Poll::Pending;
        }
        let mut waiters = this.inner.lock();
        // Re-check under the lock: the transition's author takes this lock after it, so
        // either we see it now or it will find the waker we register below.
        if this.inner.is_done() {
            if let Some(key) = this.key.take() {
                waiters.wakers.retain(|(k, _)| *k != key);
            }
            return Poll::Ready(());
        }
        let key = match this.key {
            Some(key) => key,
            None => {
                let key = waiters.next_key;
                waiters.next_key = waiters.next_key.wrapping_add(1);
                this.key = Some(key);
                key
            }
        };
        match waiters.wakers.iter_mut().find(|(k, _)| *k == key) {
            Some((_, waker)) => waker.clone_from(cx.waker()),
            None => waiters.wakers.push((key, cx.waker().clone())),
        }
        Poll::Pending
    }
}

impl Drop for Join {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            self.inner.lock().wakers.retain(|(k, _)| *k != key);
        }
    }
}

impl fmt::Debug for Join {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Join")
            .field("scope", &self.inner.name)
            .field("registered", &self.key.is_some())
            .finish()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;
    use std::sync::mpsc;
    use std::task::Wake;
    use std::thread;
    use std::time::Duration;

    /// A waker that counts its wakes and unparks the test thread.
    struct ThreadWaker {
        thread: thread::Thread,
        woken: AtomicBool,
    }

    impl Wake for ThreadWaker {
        fn wake(self: std::sync::Arc<Self>) {
            self.wake_by_ref();
        }
        fn wake_by_ref(self: &std::sync::Arc<Self>) {
            self.woken.store(true, std::sync::atomic::Ordering::SeqCst);
            self.thread.unpark();
        }
    }

    /// A minimal executor: polls `fut` on this thread, parking between polls.
    fn block_on<F: Future>(fut: F) -> F::Output {
        let waker_state = std::sync::Arc::new(ThreadWaker {
            thread: thread::current(),
            woken: AtomicBool::new(false),
        });
        let waker = Waker::from(waker_state.clone());
        let mut cx = Context::from_waker(&waker);
        let mut fut = std::pin::pin!(fut);
        loop {
            if let Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
                return out;
            }
            while !waker_state
                .woken
                .swap(false, std::sync::atomic::Ordering::SeqCst)
            {
                thread::park();
            }
        }
    }

    fn poll_once(join: &mut Join, waker: &Waker) -> Poll<()> {
        Pin::new(join).poll(&mut Context::from_waker(waker))
    }

    #[test]
    fn enter_leave_close_basics() {
        let scope = Scope::named("basics");
        assert_eq!(scope.name(), "basics");
        assert_eq!(scope.live(), 0);
        assert!(!scope.is_closed());
        let a = scope.enter().unwrap();
        let b = scope.clone().enter().unwrap();
        assert_eq!(scope.live(), 2);
        assert_eq!(a.scope_name(), "basics");
        drop(a);
        assert_eq!(scope.live(), 1);
        scope.close();
        scope.close(); // idempotent
        assert!(scope.is_closed());
        assert_eq!(scope.live(), 1);
        drop(b);
        assert_eq!(scope.live(), 0);
        assert!(scope.is_closed());
        scope.join_blocking();
        block_on(scope.join());
    }

    #[test]
    fn enter_after_close_is_refused() {
        let scope = Scope::new();
        let inside = scope.enter().unwrap();
        scope.close();
        assert!(scope.enter().is_none());
        assert_eq!(scope.live(), 1, "a refused entry does not count");
        drop(inside);
        assert!(scope.enter().is_none());
        assert_eq!(scope.live(), 0);
    }

    #[test]
    fn guard_drop_is_the_only_decrement() {
        let scope = Scope::new();
        let guards: Vec<_> = (0..5).map(|_| scope.enter().unwrap()).collect();
        // Nothing but dropping a guard changes the count: closing, joining, cloning, polling.
        scope.close();
        let _clone = scope.clone();
        let mut join = scope.join();
        let waker = Waker::noop();
        assert_eq!(poll_once(&mut join, waker), Poll::Pending);
        assert_eq!(scope.live(), 5);
        for (i, guard) in guards.into_iter().enumerate() {
            assert_eq!(scope.live(), 5 - i);
            assert_eq!(poll_once(&mut join, waker), Poll::Pending);
            drop(guard);
        }
        assert_eq!(scope.live(), 0);
        assert_eq!(poll_once(&mut join, waker), Poll::Ready(()));
    }

    #[test]
    fn join_waits_for_close_even_when_empty() {
        let scope = Scope::new();
        let mut join = scope.join();
        assert_eq!(poll_once(&mut join, Waker::noop()), Poll::Pending);
        drop(scope.enter().unwrap());
        assert_eq!(poll_once(&mut join, Waker::noop()), Poll::Pending);
        scope.close();
        assert_eq!(poll_once(&mut join, Waker::noop()), Poll::Ready(()));
        assert_eq!(
            poll_once(&mut join, Waker::noop()),
            Poll::Ready(()),
            "fused"
        );
    }

    #[test]
    fn join_completes_across_threads() {
        let scope = Scope::named("threads");
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let release_rx = std::sync::Mutex::new(release_rx);
        let release_rx = std::sync::Arc::new(release_rx);
        let workers: Vec<_> = (0..4)
            .map(|_| {
                let guard = scope.enter().unwrap();
                let rx = release_rx.clone();
                thread::spawn(move || {
                    let _guard = guard;
                    let _ = rx.lock().unwrap().recv();
                })
            })
            .collect();
        scope.close();
        let async_joiner = {
            let scope = scope.clone();
            thread::spawn(move || block_on(scope.join()))
        };
        let blocking_joiner = {
            let scope = scope.clone();
            thread::spawn(move || scope.join_blocking())
        };
        thread::sleep(Duration::from_millis(20));
        assert!(!async_joiner.is_finished());
        assert!(!blocking_joiner.is_finished());
        assert_eq!(scope.live(), 4);
        drop(release_tx);
        block_on(scope.join());
        scope.join_blocking();
        async_joiner.join().unwrap();
        blocking_joiner.join().unwrap();
        for worker in workers {
            worker.join().unwrap();
        }
        assert_eq!(scope.live(), 0);
    }

    #[test]
    fn close_on_an_empty_scope_wakes_the_joiners() {
        let scope = Scope::new();
        let joiners: Vec<_> = (0..3)
            .map(|i| {
                let scope = scope.clone();
                thread::spawn(move || {
                    if i % 2 == 0 {
                        block_on(scope.join());
                    } else {
                        scope.join_blocking();
                    }
                })
            })
            .collect();
        thread::sleep(Duration::from_millis(20));
        scope.close();
        for joiner in joiners {
            joiner.join().unwrap();
        }
    }

    #[test]
    fn dropping_a_pending_join_unregisters_it() {
        let scope = Scope::new();
        let guard = scope.enter().unwrap();
        scope.close();
        let mut join = scope.join();
        assert_eq!(poll_once(&mut join, Waker::noop()), Poll::Pending);
        assert_eq!(poll_once(&mut join, Waker::noop()), Poll::Pending);
        assert_eq!(
            scope.inner.lock().wakers.len(),
            1,
            "re-polling reuses the slot"
        );
        drop(join);
        assert!(scope.inner.lock().wakers.is_empty());
        drop(guard);
    }

    #[test]
    fn the_last_drop_wakes_a_registered_join() {
        let scope = Scope::new();
        let guard = scope.enter().unwrap();
        scope.close();
        let waker_state = std::sync::Arc::new(ThreadWaker {
            thread: thread::current(),
            woken: AtomicBool::new(false),
        });
        let waker = Waker::from(waker_state.clone());
        let mut join = scope.join();
        assert_eq!(poll_once(&mut join, &waker), Poll::Pending);
        assert!(!waker_state.woken.load(std::sync::atomic::Ordering::SeqCst));
        thread::spawn(move || drop(guard)).join().unwrap();
        assert!(waker_state.woken.load(std::sync::atomic::Ordering::SeqCst));
        assert_eq!(poll_once(&mut join, &waker), Poll::Ready(()));
    }

    #[test]
    fn types_suit_the_runtime() {
        fn send_sync_static<T: Send + Sync + 'static>() {}
        fn send_static<T: Send + 'static>() {}
        send_sync_static::<Scope>();
        send_static::<ScopeGuard>();
        send_static::<Join>();
        let scope = Scope::named(format!("container {}", 42));
        assert_eq!(
            format!("{scope:?}"),
            r#"Scope { name: "container 42", live: 0, closed: false }"#
        );
    }
}
