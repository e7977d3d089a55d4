//! Placeholder until the node lands.

use weir_engine::Registry;

/// Registers this module's node kinds.
pub fn register(registry: &mut Registry) {
    let _ = registry;
}
