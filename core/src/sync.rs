//! The synchronization primitives the scopes use: loom's under `cfg(loom)`, std's otherwise.
//!
//! Everything in this crate that synchronizes threads goes through this module, so that
//! `RUSTFLAGS="--cfg loom"` swaps every atomic, lock and condition variable for loom's model
//! of it, and loom explores the very code the runtime runs (the shape of tokio's `src/loom/`).
//! Only what the crate uses is re-exported.

#[cfg(loom)]
pub(crate) use loom::sync::{Arc, Condvar, Mutex, MutexGuard};

#[cfg(not(loom))]
pub(crate) use std::sync::{Arc, Condvar, Mutex, MutexGuard};

/// Atomics: loom's under `cfg(loom)`, std's otherwise.
pub(crate) mod atomic {
    #[cfg(loom)]
    pub(crate) use loom::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    #[cfg(not(loom))]
    pub(crate) use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
}
