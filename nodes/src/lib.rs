//! # weir-nodes: Weir's built-in nodes
//!
//! One module per family, each node a small file with its YAML snippet in its docs. Each
//! algorithm (resampler state, segmenter, level meter) is a plain struct usable without the
//! engine; the node around it is a thin adapter. Nodes know nothing of threads or channels.
//!
//! - [`audio`] — `audio.wav_file`, `audio.wav_writer`, `audio.resample`, `audio.level`
//! - [`speech`] — `speech.energy_vad`
//! - [`text`] — `text.print`, `text.lines`
//! - [`io`] — `io.jsonl`
//!
//! ```
//! let mut registry = weir_engine::Registry::new();
//! weir_nodes::register_all(&mut registry);
//! assert!(registry.get("audio.resample").is_some());
//! ```

pub mod audio;
pub mod io;
pub mod speech;
pub mod text;

use weir_engine::Registry;

/// Registers every built-in node kind.
pub fn register_all(registry: &mut Registry) {
    audio::register(registry);
    speech::register(registry);
    text::register(registry);
    io::register(registry);
}

/// A registry with every built-in node kind.
pub fn registry() -> Registry {
    let mut r = Registry::new();
    register_all(&mut r);
    r
}
