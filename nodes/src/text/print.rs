//! `text.print`: prints any packet to standard output, for people or as JSON lines.
//!
//! ```yaml
//! out:
//!   node: text.print
//!   in: { in: asr.text }
//!   with: { format: human }   # or json
//! ```
//! In `human` format, streamed tokens are printed as they come, on one line per answer. After
//! an interrupt, an answer cut short is ended with ` …` and a new line.

use std::io::{self, Write};

use serde::Deserialize;
use weir_engine::{
    AnyInput, Config, Context, Incoming, NodeError, NodeKind, OptionSpec, OptionType, Packet,
    Ports, Processor,
};
use weir_media::{AudioFrame, Event, SpeechSegment, Text, Token};

/// Options of `text.print`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrintConfig {
    /// `human` or `json`.
    pub format: String,
}

impl Config for PrintConfig {
    fn options() -> Vec<OptionSpec> {
        vec![OptionSpec::with_default(
            "format",
            OptionType::Choice(&["human", "json"]),
            "human",
            "human: readable lines, tokens streamed; json: one JSON object per packet",
        )]
    }
}

/// The ports of `text.print`.
pub struct PrintPorts {
    input: AnyInput,
}

fn ports(p: &mut Ports) -> PrintPorts {
    PrintPorts {
        input: p.any_input("in", "anything to print"),
    }
}

/// The kind declaration.
pub fn kind() -> NodeKind {
    NodeKind::processor(
        "text.print",
        "Prints packets to stdout (human-readable or JSON lines).",
        ports,
        |c: PrintConfig, ports| {
            Ok(PrintNode {
                ports,
                json: c.format == "json",
                mid_line: false,
            })
        },
    )
}

/// A human-readable line for a packet (tokens excluded: they are streamed).
pub fn human_line(packet: &Packet) -> String {
    let t = packet.timestamp;
    if let Some(x) = packet.get::<Text>() {
        format!("[{} - {}] {}", x.start, x.end, x.text.trim())
    } else if let Some(s) = packet.get::<SpeechSegment>() {
        format!(
            "[{} - {}] speech segment ({:.2}s, {} samples)",
            s.start(),
            s.end(),
            (s.end().as_secs_f64() - s.start().as_secs_f64()),
            s.samples.len()
        )
    } else if let Some(e) = packet.get::<Event>() {
        format!("[{t}] {} {}", e.name, e.fields)
    } else if let Some(a) = packet.get::<AudioFrame>() {
        format!(
            "[{t}] audio {} frames at {} Hz x{}",
            a.frames(),
            a.rate,
            a.channels
        )
    } else if let Some(k) = packet.get::<Token>() {
        format!("[{t}] token {} {:?}", k.id, k.text)
    } else {
        format!("[{t}] {}", packet.to_json())
    }
}

struct PrintNode {
    ports: PrintPorts,
    json: bool,
    mid_line: bool,
}

impl PrintNode {
    fn end_line(&mut self, w: &mut impl Write, mark: &str) -> io::Result<()> {
        if std::mem::take(&mut self.mid_line) {
            writeln!(w, "{mark}")?;
        }
        Ok(())
    }
}

impl PrintNode {
    /// Ends a streamed line on stdout with `mark` (if one is open) and flushes.
    fn end_stdout_line(&mut self, mark: &str) -> Result<(), NodeError> {
        let stdout = io::stdout();
        let mut w = stdout.lock();
        self.end_line(&mut w, mark)
            .and_then(|_| w.flush())
            .map_err(stdout_error)
    }
}

fn stdout_error(e: io::Error) -> NodeError {
    NodeError::with_source("cannot write to stdout", e)
}

impl Processor for PrintNode {
    fn process(&mut self, input: Incoming, _ctx: &mut Context) -> Result<(), NodeError> {
        let Some(packet) = self.ports.input.get(&input) else {
            return Ok(());
        };
        let stdout = io::stdout();
        let mut w = stdout.lock();
        let result = if self.json {
            writeln!(w, "{}", packet.to_json())
        } else if let Some(k) = packet.get::<Token>() {
            self.mid_line = !k.last;
            write!(w, "{}", k.text).and_then(|_| if k.last { writeln!(w) } else { Ok(()) })
        } else {
            self.end_line(&mut w, "")
                .and_then(|_| writeln!(w, "{}", human_line(packet)))
        };
        result.and_then(|_| w.flush()).map_err(stdout_error)
    }

    fn flush(&mut self, _ctx: &mut Context) -> Result<(), NodeError> {
        self.end_stdout_line(" …")
    }

    fn close(&mut self, _ctx: &mut Context) -> Result<(), NodeError> {
        self.end_stdout_line("")
    }
}
