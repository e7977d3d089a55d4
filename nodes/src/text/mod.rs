//! Text nodes: printing, and lines of text as a source.

pub mod lines;
pub mod print;

use weir_engine::{DuplicateKind, Registry};

/// Registers the text node kinds.
pub fn register(registry: &mut Registry) -> Result<(), DuplicateKind> {
    registry.register(print::kind())?;
    registry.register(lines::kind())
}
