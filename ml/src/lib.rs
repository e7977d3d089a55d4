//! # weir-ml: model nodes on tract
//!
//! Nodes that run ONNX models with tract, all on the CPU, loaded once in `open`: voice
//! activity, speech recognition, a small language model, speech synthesis.

pub mod attention;
pub mod kernels;
pub mod llm;
pub mod model_cache;
pub mod q4_matmul;
pub mod runtime;
pub mod tts;
pub mod vad;
pub mod whisper;

use weir_engine::{DuplicateKind, Registry};

/// Registers the model node kinds: `speech.vad`, `speech.whisper`, `llm.chat`, `speech.tts`.
pub fn register(registry: &mut Registry) -> Result<(), DuplicateKind> {
    vad::register(registry)?;
    whisper::register(registry)?;
    llm::register(registry)?;
    tts::register(registry)
}
