//! # weir-ml: model nodes on tract
//!
//! Nodes that run ONNX models with tract, all on the CPU, loaded once in `open`.

use weir_engine::Registry;

/// Registers the model node kinds.
pub fn register(registry: &mut Registry) {
    let _ = registry;
}
