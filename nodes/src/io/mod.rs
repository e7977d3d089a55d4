//! I/O nodes: files of structured output.

pub mod jsonl;

use weir_engine::Registry;

/// Registers the I/O node kinds.
pub fn register(registry: &mut Registry) {
    registry.register(jsonl::kind());
}
