//! I/O nodes: files of structured output.

pub mod jsonl;

use weir_engine::{DuplicateKind, Registry};

/// Registers the I/O node kinds.
pub fn register(registry: &mut Registry) -> Result<(), DuplicateKind> {
    registry.register(jsonl::kind())
}
