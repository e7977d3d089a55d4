//! Text nodes: printing.

pub mod print;

use weir_engine::Registry;

/// Registers the text node kinds.
pub fn register(registry: &mut Registry) {
    registry.register(print::kind());
}
