//! Speech nodes: voice activity detection, segmentation, and the turn gate of speculative
//! turn-taking.

pub mod energy_vad;
pub mod segmenter;
pub mod turn_gate;

use weir_engine::{DuplicateKind, Registry};

/// Registers the speech node kinds.
pub fn register(registry: &mut Registry) -> Result<(), DuplicateKind> {
    registry.register(energy_vad::kind())?;
    registry.register(turn_gate::kind())
}
