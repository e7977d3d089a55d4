//! `io.jsonl`: writes every packet as one JSON object per line to a file.
//!
//! ```yaml
//! save:
//!   node: io.jsonl
//!   in: { in: vad.segment }
//!   with: { path: out/segments.jsonl }
//! ```
//! Objects have `t` (seconds) and `type`, plus the payload's fields; see
//! [`Packet::to_json`](weir_engine::Packet::to_json).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;

use weir_engine::{
    Node, NodeError, NodeKind, OptionSpec, OptionType, Outputs, Packet, PortSpec, PortType,
};

/// The kind declaration.
pub fn kind() -> NodeKind {
    NodeKind::new("io.jsonl", "Writes packets as JSON lines to a file.", |o| {
        Ok(Box::new(JsonlNode {
            path: PathBuf::from(o.str("path")?),
            file: None,
        }))
    })
    .input(PortSpec::new("in", PortType::Any, "anything to record"))
    .option(OptionSpec::required(
        "path",
        OptionType::Path,
        "file to create (parent directories are created)",
    ))
}

struct JsonlNode {
    path: PathBuf,
    file: Option<BufWriter<File>>,
}

impl JsonlNode {
    fn error(&self, what: &str, e: std::io::Error) -> NodeError {
        NodeError::with_source(format!("{what} `{}`", self.path.display()), e)
    }
}

impl Node for JsonlNode {
    fn open(&mut self) -> Result<(), NodeError> {
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| self.error("cannot create the folder of", e))?;
        }
        let file = File::create(&self.path).map_err(|e| self.error("cannot create", e))?;
        self.file = Some(BufWriter::new(file));
        Ok(())
    }

    fn process(
        &mut self,
        _port: usize,
        packet: Packet,
        _out: &mut Outputs,
    ) -> Result<(), NodeError> {
        let Some(f) = self.file.as_mut() else {
            return Ok(());
        };
        let line = packet.to_json();
        let r = serde_json::to_writer(&mut *f, &line)
            .map_err(std::io::Error::from)
            .and_then(|_| f.write_all(b"\n"));
        r.map_err(|e| self.error("cannot write", e))
    }

    fn close(&mut self, _out: &mut Outputs) -> Result<(), NodeError> {
        if let Some(mut f) = self.file.take() {
            f.flush().map_err(|e| self.error("cannot write", e))?;
        }
        Ok(())
    }
}
