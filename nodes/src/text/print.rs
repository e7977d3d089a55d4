//! `text.print`: prints any packet to standard output, for people or as JSON lines.
//!
//! ```yaml
//! out:
//!   node: text.print
//!   in: { in: asr.text }
//!   with: { format: human }   # or json
//! ```
//! In `human` format, streamed tokens are printed as they come, on one line per answer.

use std::io::{self, Write};

use weir_engine::{
    Node, NodeError, NodeKind, OptionSpec, OptionType, Outputs, Packet, Payload, PortSpec, PortType,
};

/// The kind declaration.
pub fn kind() -> NodeKind {
    NodeKind::new(
        "text.print",
        "Prints packets to stdout (human-readable or JSON lines).",
        |o| {
            Ok(Box::new(PrintNode {
                json: o.str("format")? == "json",
                mid_line: false,
            }))
        },
    )
    .input(PortSpec::new("in", PortType::Any, "anything to print"))
    .option(OptionSpec::with_default(
        "format",
        OptionType::Choice(&["human", "json"]),
        "human",
        "human: readable lines, tokens streamed; json: one JSON object per packet",
    ))
}

/// A human-readable line for a packet (tokens excluded: they are streamed).
pub fn human_line(packet: &Packet) -> String {
    let t = packet.timestamp;
    match &packet.payload {
        Payload::Text(x) => format!("[{} - {}] {}", x.start, x.end, x.text.trim()),
        Payload::Segment(s) => format!(
            "[{} - {}] speech segment ({:.2}s, {} samples)",
            s.start(),
            s.end(),
            (s.end().as_secs_f64() - s.start().as_secs_f64()),
            s.samples.len()
        ),
        Payload::Event(e) => format!("[{t}] {} {}", e.name, e.fields),
        Payload::Audio(a) => format!(
            "[{t}] audio {} frames at {} Hz x{}",
            a.frames(),
            a.rate,
            a.channels
        ),
        Payload::Token(k) => format!("[{t}] token {} {:?}", k.id, k.text),
    }
}

struct PrintNode {
    json: bool,
    mid_line: bool,
}

impl Node for PrintNode {
    fn process(
        &mut self,
        _port: usize,
        packet: Packet,
        _out: &mut Outputs,
    ) -> Result<(), NodeError> {
        let stdout = io::stdout();
        let mut w = stdout.lock();
        let result = if self.json {
            writeln!(w, "{}", packet.to_json())
        } else if let Payload::Token(k) = &packet.payload {
            self.mid_line = !k.last;
            write!(w, "{}", k.text).and_then(|_| if k.last { writeln!(w) } else { Ok(()) })
        } else {
            if self.mid_line {
                let _ = writeln!(w);
                self.mid_line = false;
            }
            writeln!(w, "{}", human_line(&packet))
        };
        result
            .and_then(|_| w.flush())
            .map_err(|e| NodeError::with_source("cannot write to stdout", e))
    }

    fn close(&mut self, _out: &mut Outputs) -> Result<(), NodeError> {
        if self.mid_line {
            println!();
        }
        Ok(())
    }
}
