//! The fuzz target bodies: one function per target, called by the cargo-fuzz targets in `fuzz/`
//! and by the regression replay test (`model/tests/fuzz_regressions.rs`), so that every input
//! that ever broke something runs again in every `cargo test`.
//!
//! Each body takes the fuzzer's bytes, reads a structured case out of them with
//! [`arbitrary::Unstructured`], and panics (with a readable account) when the core breaks a
//! rule. See `docs/fuzzing.md`.

pub mod cursor;
pub mod frames;
pub mod machine;
pub mod reference;

pub use cursor::cursor;
pub use frames::frames;
pub use machine::machine;

/// A target body: the fuzzer's bytes in, a panic out if the core broke a rule.
pub type Body = fn(&[u8]);

/// Every target: its name (as in `fuzz/fuzz_targets/` and `fuzz/regressions/`) and its body.
pub const TARGETS: [(&str, Body); 3] =
    [("machine", machine), ("cursor", cursor), ("frames", frames)];

/// The body of the target named `name`.
pub fn target(name: &str) -> Option<Body> {
    TARGETS.iter().find(|(n, _)| *n == name).map(|(_, f)| *f)
}

/// Whether `CAPTURER_FUZZ_TRACE` asks for every step to be printed (read once).
pub(crate) fn tracing() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| {
        std::env::var_os("CAPTURER_FUZZ_TRACE").is_some_and(|v| !v.is_empty() && v != "0")
    })
}
