//! Lifecycle scopes: counting and joining the live tasks of one lifecycle (lands with issue 4).
