//! Audio nodes: file replay and writing, resampling, levels.

pub mod level;
pub mod resample;
pub mod wav_file;
pub mod wav_writer;

use weir_engine::{DuplicateKind, Registry};

/// Registers the audio node kinds.
pub fn register(registry: &mut Registry) -> Result<(), DuplicateKind> {
    registry.register(wav_file::kind())?;
    registry.register(wav_writer::kind())?;
    registry.register(resample::kind())?;
    registry.register(level::kind())
}
