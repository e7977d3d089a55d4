//! # weir-live: live audio devices
//!
//! cpal capture and playback nodes whose audio callbacks only copy into lock-free buffers.

use weir_engine::Registry;

/// Registers the live audio node kinds.
pub fn register(registry: &mut Registry) {
    let _ = registry;
}
