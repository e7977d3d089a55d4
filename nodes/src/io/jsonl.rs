//! `io.jsonl`: writes every packet as one JSON object per line to a file.
//!
//! ```yaml
//! save:
//!   node: io.jsonl
//!   in: { in: vad.segment }
//!   with: { path: out/segments.jsonl }
//! ```
//! Up to four streams can go to one file, e.g. a session log of what was heard, what was
//! answered and when speech started: `in: { in: asr.text, in2: slm.text, in3:
//! vad.events }`. Lines are written in timestamp order across the inputs (the engine merges
//! them), so the log reads as a timeline.
//! Objects have `t` (seconds) and `type`, plus the payload's fields; see
//! [`Packet::to_json`](weir_engine::Packet::to_json). Lines are buffered; the file is
//! flushed at end of stream, including after a stop request (Ctrl-C, SIGTERM).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;

use serde::Deserialize;
use weir_engine::{
    AnyInput, Config, Context, Incoming, NodeError, NodeKind, OptionSpec, OptionType, Ports,
    Processor,
};

/// Options of `io.jsonl`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JsonlConfig {
    /// File to create.
    pub path: PathBuf,
}

impl Config for JsonlConfig {
    fn options() -> Vec<OptionSpec> {
        vec![OptionSpec::required(
            "path",
            OptionType::Path,
            "file to create (parent directories are created)",
        )]
    }
}

/// The ports of `io.jsonl`: one required input and three optional ones, all written to
/// the same file.
pub struct JsonlPorts {
    inputs: [AnyInput; 4],
}

fn ports(p: &mut Ports) -> JsonlPorts {
    JsonlPorts {
        inputs: [
            p.any_input("in", "anything to record"),
            p.optional_any_input("in2", "a second stream for the same file"),
            p.optional_any_input("in3", "a third stream for the same file"),
            p.optional_any_input("in4", "a fourth stream for the same file"),
        ],
    }
}

/// The kind declaration.
pub fn kind() -> NodeKind {
    NodeKind::processor(
        "io.jsonl",
        "Writes packets as JSON lines to a file.",
        ports,
        |c: JsonlConfig, ports| {
            Ok(JsonlNode {
                ports,
                path: c.path,
                file: None,
            })
        },
    )
}

struct JsonlNode {
    ports: JsonlPorts,
    path: PathBuf,
    file: Option<BufWriter<File>>,
}

impl JsonlNode {
    fn error(&self, what: &str, e: std::io::Error) -> NodeError {
        NodeError::with_source(format!("{what} `{}`", self.path.display()), e)
    }
}

impl Processor for JsonlNode {
    fn open(&mut self, _ctx: &mut Context) -> Result<(), NodeError> {
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| self.error("cannot create the folder of", e))?;
        }
        let file = File::create(&self.path).map_err(|e| self.error("cannot create", e))?;
        self.file = Some(BufWriter::new(file));
        Ok(())
    }

    fn process(&mut self, input: Incoming, _ctx: &mut Context) -> Result<(), NodeError> {
        let Some(packet) = self.ports.inputs.iter().find_map(|i| i.get(&input)) else {
            return Ok(());
        };
        let Some(f) = self.file.as_mut() else {
            return Ok(());
        };
        let line = packet.to_json();
        let r = serde_json::to_writer(&mut *f, &line)
            .map_err(std::io::Error::from)
            .and_then(|_| f.write_all(b"\n"));
        r.map_err(|e| self.error("cannot write", e))
    }

    /// Flushes the buffered lines: runs at end of stream, including after a stop request.
    fn close(&mut self, _ctx: &mut Context) -> Result<(), NodeError> {
        if let Some(mut f) = self.file.take() {
            f.flush().map_err(|e| self.error("cannot write", e))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_engine::testing::NodeRunner;
    use weir_engine::{Packet, Timestamp};
    use weir_media::Event;

    #[test]
    fn every_packet_is_one_line_and_close_flushes() {
        let dir = std::env::temp_dir().join(format!("weir-jsonl-{}", std::process::id()));
        let path = dir.join("sub/out.jsonl");
        let events = (0..3u64).map(|i| {
            Packet::new(
                Timestamp::from_nanos(i * 500_000_000),
                Event::new("tick", serde_json::json!({ "n": i })),
            )
        });
        NodeRunner::new(kind())
            .unpaced()
            .option("path", path.to_str().unwrap())
            .feed("in", events)
            .run()
            .unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(
            lines[2],
            serde_json::json!({"t": 1.0, "type": "event", "event": "tick", "n": 2})
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn several_inputs_are_written_as_one_timeline() {
        let dir = std::env::temp_dir().join(format!("weir-jsonl-merge-{}", std::process::id()));
        let path = dir.join("log.jsonl");
        let at = |ms: u64, name: &str| {
            Packet::new(
                Timestamp::from_nanos(ms * 1_000_000),
                Event::new(name, serde_json::json!({})),
            )
        };
        // Unpaced: each input arrives as fast as its feeder sends, in no particular order
        // between the two; the file must still be in time order.
        NodeRunner::new(kind())
            .unpaced()
            .option("path", path.to_str().unwrap())
            .feed("in", (0..50).map(|i| at(i * 20, "heard")))
            .feed("in2", (0..50).map(|i| at(i * 20 + 10, "said")))
            .run()
            .unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let times: Vec<f64> = text
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["t"]
                    .as_f64()
                    .unwrap()
            })
            .collect();
        assert_eq!(times.len(), 100);
        assert!(times.windows(2).all(|w| w[0] < w[1]), "{times:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
