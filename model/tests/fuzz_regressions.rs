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
