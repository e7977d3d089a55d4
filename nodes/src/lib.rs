//! # weir-nodes: Weir's built-in nodes
//!
//! One module per family, each node a small file with its YAML snippet in its docs. Each
//! algorithm (resampler state, segmenter, level meter) is a plain struct usable without the
//! engine; the node around it is a thin adapter. Nodes know nothing of the graph's threads
//! or channels.
//!
//! - [`audio`] — `audio.wav_file`, `audio.wav_writer`, `audio.resample`, `audio.level`
//! - [`speech`] — `speech.energy_vad`
//! - [`text`] — `text.print`, `text.lines`
//! - [`io`] — `io.jsonl`
//!
//! ```
//! let mut registry = weir_engine::Registry::new();
//! weir_nodes::register_all(&mut registry).unwrap();
//! assert!(registry.get("audio.resample").is_some());
//! ```

pub mod audio;
pub mod io;
pub mod speech;
pub mod text;

use weir_engine::{DuplicateKind, Registry};

/// Registers every built-in node kind; fails if one of them is already registered.
pub fn register_all(registry: &mut Registry) -> Result<(), DuplicateKind> {
    audio::register(registry)?;
    speech::register(registry)?;
    text::register(registry)?;
    io::register(registry)
}

/// A registry with every built-in node kind.
pub fn registry() -> Result<Registry, DuplicateKind> {
    let mut r = Registry::new();
    register_all(&mut r)?;
    Ok(r)
}

#[cfg(test)]
pub(crate) mod test_util {
    //! Helpers shared by the crate's tests.

    use std::path::{Path, PathBuf};
    use std::time::{Duration, Instant};

    use weir_engine::{channel_sink, Graph, Loader, NodeKind, Packet, PortType, Registry};

    /// A fresh, empty temporary folder for one test.
    pub fn temp_dir(test: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("weir-nodes-{}-{test}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// Runs `source` (options `with`, a YAML flow map) on the real clock into a sink
    /// collecting output `port`; calls `stop_when` on each packet and stops the graph once it
    /// returns true. Returns the packets and how long the run took after the stop request
    /// (zero if the stream ended by itself).
    pub fn run_source_until(
        source: NodeKind,
        with: &str,
        port: &str,
        ty: PortType,
        mut stop_when: impl FnMut(&Packet) -> bool,
    ) -> (Vec<Packet>, Duration) {
        let kind = source.name;
        let mut registry = Registry::new();
        registry.register(source).unwrap();
        let (sink, rx) = channel_sink("test.sink", ty, 1024);
        registry.register(sink).unwrap();
        let yaml = format!(
            "nodes:\n  src: {{ node: {kind}, with: {with} }}\n  \
             out: {{ node: test.sink, in: {{ in: src.{port} }} }}\n"
        );
        let plan = Loader::new(&registry)
            .load_str(Path::new("test.yaml"), &yaml)
            .unwrap();
        let running = Graph::build(plan, &registry).unwrap().start().unwrap();
        let stop = running.stop_handle();
        let mut got = Vec::new();
        let mut stopped_at = None;
        for packet in rx.iter() {
            let done = stop_when(&packet);
            got.push(packet);
            if done && stopped_at.is_none() {
                stopped_at = Some(Instant::now());
                stop.stop();
            }
        }
        running.wait().unwrap();
        (got, stopped_at.map_or(Duration::ZERO, |t| t.elapsed()))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_kind_registers_once() {
        let r = super::registry().unwrap();
        let names: Vec<&str> = r.names().collect();
        assert_eq!(
            names,
            [
                "audio.level",
                "audio.resample",
                "audio.wav_file",
                "audio.wav_writer",
                "io.jsonl",
                "speech.energy_vad",
                "speech.turn_gate",
                "text.lines",
                "text.print",
            ]
        );
        let mut again = super::registry().unwrap();
        assert!(super::register_all(&mut again).is_err());
    }
}
