//! The fuzz target bodies: one function per target, called by `fuzz/` and by the regression
//! replay test (lands with issue 6).
