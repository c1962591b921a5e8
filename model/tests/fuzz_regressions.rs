//! Replays every committed fuzz input through the same target body the fuzzer runs.
//!
//! `fuzz/regressions/<target>/` holds the seeds and every input that ever broke something
//! (see `docs/fuzzing.md`); each file goes through `capturer_model::fuzz::<target>`. The test
//! fails if the directory is missing, if a target has no inputs, if a directory names no target,
//! or if any input panics, so it cannot pass by finding nothing to run.

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

/// The `machine` world's re-sends have teeth: with `Mutant::TrustResends` (every frame the
/// daemon sends taken as new, the machine before `Rewind`) the committed input that re-sends
/// the last line alone fails, as do others that re-send, while the real machine passes them
/// all (the test above). Found by the fuzzer from an empty corpus in about 190,000 runs.
#[test]
fn trusting_the_daemons_re_sends_is_caught() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/regressions/machine");
    let mut caught = Vec::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("fuzz/regressions/machine")
        .map(|f| f.expect("a regression file").path())
        .collect();
    files.sort();
    for file in &files {
        let data = std::fs::read(file).expect("a regression input");
        let run = || capturer_model::fuzz::machine::machine_with(&data, Some(Mutant::TrustResends));
        if catch_unwind(AssertUnwindSafe(run)).is_err() {
            caught.push(file.file_name().map(|n| n.to_string_lossy().into_owned()));
        }
    }
    eprintln!(
        "TrustResends: {} of {} machine inputs fail: {caught:?}",
        caught.len(),
        files.len()
    );
    assert!(
        caught
            .iter()
            .any(|n| n.as_deref() == Some("resend-last-line-trust-resends")),
        "the re-send of the last line alone is not caught"
    );
}
