//! Replays every committed fuzz input through the same target body the fuzzer runs.
//!
//! `fuzz/regressions/<target>/` holds the seeds and every input that ever broke something
//! (see `docs/fuzzing.md`); each file goes through `capturer_model::fuzz::<target>`. The test
//! fails if the directory is missing, if a target has no inputs, if a directory names no target,
//! or if any input panics, so it cannot pass by finding nothing to run.

// Test tooling shared by the tests below: a missing corpus must fail them loudly.
#![allow(clippy::expect_used)]

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::time::Instant;

use capturer_core::Mutant;

#[test]
fn every_regression_input_passes() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/regressions");
    let dirs = std::fs::read_dir(&root).unwrap_or_else(|e| {
        panic!(
            "{}: {e}: the fuzz regression inputs are missing",
            root.display()
        )
    });
    let started = Instant::now();
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    let mut failures = Vec::new();
    for dir in dirs {
        let dir = dir.expect("a regression directory entry");
        if !dir.file_type().expect("its type").is_dir() {
            continue;
        }
        let name = dir.file_name().to_string_lossy().into_owned();
        let body = capturer_model::fuzz::target(&name)
            .unwrap_or_else(|| panic!("fuzz/regressions/{name}/ names no fuzz target"));
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir.path())
            .expect("a target's regression directory")
            .map(|f| f.expect("a regression file").path())
            .filter(|p| {
                p.is_file()
                    && !p
                        .file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with('.'))
            })
            .collect();
        files.sort();
        for file in files {
            let data = std::fs::read(&file).expect("a regression input");
            *counts.entry(name.clone()).or_default() += 1;
            if let Err(panic) = catch_unwind(AssertUnwindSafe(|| body(&data))) {
                let why = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                    .unwrap_or_default();
                failures.push(format!(
                    "{}: {}",
                    file.display(),
                    why.lines().next().unwrap_or("")
                ));
            }
        }
    }
    for (name, _) in capturer_model::fuzz::TARGETS {
        assert!(
            counts.get(name).copied().unwrap_or(0) > 0,
            "fuzz/regressions/{name}/ is missing or empty: nothing would be replayed"
        );
    }
    eprintln!("replayed {counts:?} in {:?}", started.elapsed());
    assert!(
        failures.is_empty(),
        "{} regression input(s) fail (CAPTURER_FUZZ_TRACE=1 prints the steps):\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// The committed `machine` inputs, sorted.
fn machine_inputs() -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/regressions/machine");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("fuzz/regressions/machine")
        .map(|f| f.expect("a regression file").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

/// The names of the `machine` inputs that fail with `mutant` planted in the world's machines.
fn caught_by_corpus(files: &[PathBuf], mutant: Mutant) -> Vec<String> {
    let mut caught = Vec::new();
    for file in files {
        let data = std::fs::read(file).expect("a regression input");
        let run = || capturer_model::fuzz::machine::machine_with(&data, Some(mutant));
        if catch_unwind(AssertUnwindSafe(run)).is_err() {
            caught.push(
                file.file_name()
                    .map_or(String::new(), |n| n.to_string_lossy().into_owned()),
            );
        }
    }
    caught
}

/// The mutants the `machine` world cannot show, and why; the model catches each of them (see
/// `model/tests/model.rs`).
const BEYOND_THE_FUZZ_WORLD: [(Mutant, &str); 1] = [(
    Mutant::TrustDrainingEnd,
    "the world tells the machine of a start at once, so a read is never taken for a \
     draining one after the container started: the model's delayed events show it",
)];

/// The corpus has teeth: replayed with each known bug planted in the machine, at least one
/// committed input fails (the unmutated machine passes them all: the test above). A mutant no
/// input catches means the fuzzer's world cannot see that bug, or its corpus lost the input;
/// the few the world cannot express by construction are listed above, and the test checks
/// that they are indeed not caught (move one out of the list once the world can).
#[test]
fn the_corpus_catches_every_mutant() {
    let files = machine_inputs();
    // The panics are the point here; their messages would drown the report.
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let mut report = Vec::new();
    for (name, mutant) in capturer_model::MUTANTS {
        let started = Instant::now();
        let caught = caught_by_corpus(&files, mutant);
        report.push((name, mutant, caught, started.elapsed()));
    }
    std::panic::set_hook(hook);
    for (name, _, caught, took) in &report {
        eprintln!(
            "mutant {name}: {} of {} machine inputs fail (first {:?}), replayed in {took:.1?}",
            caught.len(),
            files.len(),
            caught.first()
        );
    }
    let beyond = |m: Mutant| BEYOND_THE_FUZZ_WORLD.iter().any(|(b, _)| *b == m);
    let missed: Vec<&str> = report
        .iter()
        .filter(|(_, m, caught, _)| caught.is_empty() && !beyond(*m))
        .map(|(name, ..)| *name)
        .collect();
    assert!(missed.is_empty(), "no committed input catches {missed:?}");
    let now_seen: Vec<&str> = report
        .iter()
        .filter(|(_, m, caught, _)| !caught.is_empty() && beyond(*m))
        .map(|(name, ..)| *name)
        .collect();
    assert!(
        now_seen.is_empty(),
        "{now_seen:?} are caught now: take them out of BEYOND_THE_FUZZ_WORLD"
    );
}

/// The `machine` world's re-sends have teeth: with `Mutant::TrustResends` (every frame the
/// daemon sends taken as new, the machine before `Rewind`) the committed input that re-sends
/// the last line alone fails, as do others that re-send. Found by the fuzzer from an empty
/// corpus in about 190,000 runs.
#[test]
fn trusting_the_daemons_re_sends_is_caught() {
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let caught = caught_by_corpus(&machine_inputs(), Mutant::TrustResends);
    std::panic::set_hook(hook);
    assert!(
        caught.iter().any(|n| n == "resend-last-line-trust-resends"),
        "the re-send of the last line alone is not caught ({} others are)",
        caught.len()
    );
}
