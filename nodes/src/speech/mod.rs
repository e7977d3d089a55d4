//! Speech nodes: voice activity detection and segmentation.

pub mod energy_vad;
pub mod segmenter;

use weir_engine::{DuplicateKind, Registry};

/// Registers the speech node kinds.
pub fn register(registry: &mut Registry) -> Result<(), DuplicateKind> {
    registry.register(energy_vad::kind())
}
