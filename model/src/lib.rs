//! # capturer-model: an exhaustive model of log-capturer's protocol, driving the real core
//!
//! A [stateright](https://docs.rs/stateright) model whose state holds K real
//! [`capturer_core::ContainerMachine`]s and an abstract Docker daemon around them: per
//! container a finite log on stdout and stderr ([`log`]), running / stopped / removed, the
//! daemon's `since` rule (both readings, [`log::SinceRule`]), daemon restarts, the reader and
//! heartbeat tasks the machine's commands spawned, the sink's output (written, then durable)
//! and the persisted cursor, which capturer crashes (SIGKILL, power loss) truncate to what
//! survives and the start-up recovers from ([`system`]).
//! [`check`] runs the checker and renders counterexamples as readable traces; the binary
//! (`cargo run --release -p capturer-model -- check`) prints the figures. `docs/model.md`
//! says what is modelled, what is abstracted away and why that is sound.
//!
//! The fuzz target bodies shared by `fuzz/` and the regression replay test live in [`fuzz`].

pub mod check;
pub mod fuzz;
pub mod log;
pub mod system;

pub use check::{run, Outcome, Search, Verdict};
pub use log::SinceRule;
pub use system::{Action, Bounds, CaptureModel, Options, RuntimeMutant, State};

use capturer_core::Mutant;

/// Every mutant, by the name `capturer-model check --mutant` and `CAPTURER_FUZZ_MUTANT` take.
pub const MUTANTS: [(&str, Mutant); 7] = [
    ("shared-scope", Mutant::SharedScope),
    ("strictly-greater", Mutant::StrictlyGreaterCursor),
    ("whole-second", Mutant::WholeSecondCursor),
    ("eager-rotation", Mutant::EagerRotation),
    ("trust-resends", Mutant::TrustResends),
    ("trust-draining-end", Mutant::TrustDrainingEnd),
    ("trust-tail", Mutant::TrustTail),
];

/// The mutants' names, in order.
pub const MUTANT_NAMES: [&str; 7] = [
    MUTANTS[0].0,
    MUTANTS[1].0,
    MUTANTS[2].0,
    MUTANTS[3].0,
    MUTANTS[4].0,
    MUTANTS[5].0,
    MUTANTS[6].0,
];

/// The mutant called `name`.
pub fn mutant_named(name: &str) -> Option<Mutant> {
    MUTANTS.iter().find(|(n, _)| *n == name).map(|(_, m)| *m)
}

/// Every mutant of the model's runtime (its sink and start-up), by the name `capturer-model
/// check --mutant` takes.
pub const RUNTIME_MUTANTS: [(&str, RuntimeMutant); 4] = [
    ("persist-before-ack", RuntimeMutant::PersistBeforeAck),
    ("no-recovery", RuntimeMutant::NoRecovery),
    ("sync-own-writes-only", RuntimeMutant::SyncOwnWritesOnly),
    (
        "unnoticed-heartbeat-exit",
        RuntimeMutant::UnnoticedHeartbeatExit,
    ),
];

/// The runtime mutant called `name`.
pub fn runtime_mutant_named(name: &str) -> Option<RuntimeMutant> {
    RUNTIME_MUTANTS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, m)| *m)
}
