//! `frames`: see `capturer_model::fuzz::frames` and docs/fuzzing.md.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| capturer_model::fuzz::frames(data));
