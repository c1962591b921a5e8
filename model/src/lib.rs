//! An exhaustive model of log-capturer's protocol (placeholder until the model lands).
