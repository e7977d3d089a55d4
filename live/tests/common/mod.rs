//! Helpers shared by the graph tests (and, by path, the examples).

pub mod bargein;
