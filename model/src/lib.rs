//! An exhaustive model of log-capturer's protocol, driving the real core (lands with issue 5),
//! and the fuzz target bodies shared by `fuzz/` and the regression replay test.

pub mod fuzz;
