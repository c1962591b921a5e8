//! The synchronization primitives the scopes use: loom's under `cfg(loom)`, std's otherwise.
