//! `text.lines`: a text source, one packet per line of standard input or of a file.
//!
//! ```yaml
//! ask:
//!   node: text.lines
//!   with: { path: "-" }      # "-" is standard input; or a text file
//! ```
//! Empty lines are skipped. The stream ends at end of input. A packet's timestamp is the
//! time since the node opened (text has no media clock of its own). Reading standard input
//! blocks: after Ctrl-C the graph ends at the next line or end of input (Ctrl-C twice quits).

use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::sync::Arc;
use std::time::Instant;

use weir_engine::{
    Flow, Node, NodeError, NodeKind, OptionSpec, OptionType, Outputs, Packet, Payload, PortSpec,
    PortType, Text, Timestamp,
};

/// The kind declaration.
pub fn kind() -> NodeKind {
    NodeKind::new(
        "text.lines",
        "Reads lines of text (stdin or a file) as text packets.",
        |o| {
            Ok(Box::new(LinesNode {
                path: o.str("path")?.to_string(),
                reader: None,
                opened: Instant::now(),
                line: String::new(),
            }))
        },
    )
    .output(PortSpec::new(
        "text",
        PortType::Text,
        "one packet per non-empty line",
    ))
    .option(OptionSpec::with_default(
        "path",
        OptionType::Path,
        "-",
        "text file to read, or `-` for standard input",
    ))
}

struct LinesNode {
    path: String,
    reader: Option<Box<dyn BufRead + Send>>,
    opened: Instant,
    line: String,
}

impl Node for LinesNode {
    fn open(&mut self) -> Result<(), NodeError> {
        self.reader = Some(if self.path == "-" {
            Box::new(BufReader::new(io::stdin()))
        } else {
            let file = File::open(&self.path).map_err(|e| {
                NodeError::with_source(format!("cannot open text file `{}`", self.path), e)
            })?;
            Box::new(BufReader::new(file))
        });
        self.opened = Instant::now();
        Ok(())
    }

    fn produce(&mut self, out: &mut Outputs) -> Result<Flow, NodeError> {
        let Some(reader) = self.reader.as_mut() else {
            return Ok(Flow::Done);
        };
        self.line.clear();
        let n = reader
            .read_line(&mut self.line)
            .map_err(|e| NodeError::with_source(format!("cannot read `{}`", self.path), e))?;
        if n == 0 {
            return Ok(Flow::Done);
        }
        let text = self.line.trim();
        if !text.is_empty() {
            let t = Timestamp::from_nanos(self.opened.elapsed().as_nanos() as u64);
            let payload = Payload::Text(Text {
                text: Arc::from(text),
                start: t,
                end: t,
            });
            out.send(0, Packet::new(t, payload))?;
        }
        Ok(Flow::Continue)
    }
}
