//! Speech nodes: voice activity detection and segmentation.

pub mod energy_vad;
pub mod segmenter;

use weir_engine::Registry;

/// Registers the speech node kinds.
pub fn register(registry: &mut Registry) {
    registry.register(energy_vad::kind());
}
