//! `text.lines`: a text source, one packet per line of standard input or of a file.
//!
//! ```yaml
//! ask:
//!   node: text.lines
//!   with: { path: "-" }      # "-" is standard input; or a text file
//! ```
//! Empty lines are skipped. The stream ends at end of input. A packet's timestamp is the
//! graph time when the line arrived (text has no media clock of its own).
//!
//! Lines are read on a helper thread and handed over through a small bounded queue, so the
//! node stays responsive: a stop request (Ctrl-C) ends the stream at once, even while
//! standard input stays open. A line that is not valid UTF-8 is skipped with a warning
//! naming its line number; a line longer than [`MAX_LINE_BYTES`] is cut to that length
//! (at a character boundary), with a warning. Neither ends the stream; only a read error does.

use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender};
use serde::Deserialize;
use weir_engine::{
    Config, Context, External, Flow, NodeError, NodeKind, OptionSpec, OptionType, Output, Ports,
    Source,
};
use weir_media::Text;

/// The longest line kept, in bytes (64 KiB); the rest of a longer line is dropped.
pub const MAX_LINE_BYTES: usize = 64 * 1024;

/// Lines read ahead of the node, at most.
const QUEUE: usize = 64;

/// Options of `text.lines`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinesConfig {
    /// Text file to read, or `-` for standard input.
    pub path: PathBuf,
}

impl Config for LinesConfig {
    fn options() -> Vec<OptionSpec> {
        vec![OptionSpec::with_default(
            "path",
            OptionType::Path,
            "-",
            "text file to read, or `-` for standard input",
        )]
    }
}

/// The ports of `text.lines`.
pub struct LinesPorts {
    text: Output<Text>,
}

fn ports(p: &mut Ports) -> LinesPorts {
    LinesPorts {
        text: p.output("text", "one packet per non-empty line"),
    }
}

/// The kind declaration.
pub fn kind() -> NodeKind {
    NodeKind::source(
        "text.lines",
        "Reads lines of text (stdin or a file) as text packets.",
        ports,
        |c: LinesConfig, ports| {
            Ok(LinesNode {
                ports,
                path: c.path,
                lines: None,
                skipped: Arc::default(),
            })
        },
    )
}

/// What the reader thread hands over: a non-empty, trimmed line, or the error that ended
/// reading.
type Line = Result<String, io::Error>;

struct LinesNode {
    ports: LinesPorts,
    path: PathBuf,
    lines: Option<Receiver<Line>>,
    /// Lines skipped because they were not UTF-8.
    skipped: Arc<AtomicU64>,
}

impl LinesNode {
    fn stdin(&self) -> bool {
        self.path == Path::new("-")
    }

    fn shown(&self) -> String {
        if self.stdin() {
            "standard input".to_string()
        } else {
            format!("`{}`", self.path.display())
        }
    }
}

impl Source for LinesNode {
    fn open(&mut self, ctx: &mut Context) -> Result<(), NodeError> {
        let file = if self.stdin() {
            None
        } else {
            Some(File::open(&self.path).map_err(|e| {
                NodeError::with_source(
                    format!("cannot open text file `{}`", self.path.display()),
                    e,
                )
            })?)
        };
        let (tx, rx) = crossbeam_channel::bounded(QUEUE);
        let source = self.shown();
        let node = ctx.name().to_string();
        let skipped = self.skipped.clone();
        std::thread::Builder::new()
            .name(format!("weir-lines-{node}"))
            .spawn(move || {
                let reader = LineReader {
                    tx,
                    source,
                    node,
                    skipped,
                };
                match file {
                    Some(f) => reader.run(BufReader::new(f)),
                    None => reader.run(io::stdin().lock()),
                }
            })
            .map_err(|e| NodeError::with_source("cannot start the line reader thread", e))?;
        self.lines = Some(rx);
        Ok(())
    }

    fn produce(&mut self, ctx: &mut Context) -> Result<Flow, NodeError> {
        let Some(lines) = self.lines.as_ref() else {
            return Ok(Flow::Done);
        };
        match ctx.wait_external(lines) {
            External::Item(Ok(line)) => {
                let t = ctx.now();
                let text = Text {
                    text: Arc::from(line),
                    start: t,
                    end: t,
                };
                ctx.send(self.ports.text, t, text)?;
                Ok(Flow::Continue)
            }
            External::Item(Err(e)) => Err(NodeError::with_source(
                format!("cannot read {}", self.shown()),
                e,
            )),
            External::Closed => Ok(Flow::Done),
            // Stopping or interrupted: let the runtime act, then wait again.
            External::Woken => Ok(Flow::Continue),
        }
    }

    fn close(&mut self, _ctx: &mut Context) -> Result<(), NodeError> {
        // Dropping the receiver ends the reader thread at its next line (a read already
        // blocked on standard input lasts until that line or the end of the process).
        self.lines = None;
        let skipped = self.skipped.load(Ordering::Relaxed);
        if skipped > 0 {
            tracing::warn!(
                source = %self.shown(), skipped,
                "lines that were not valid UTF-8 were skipped"
            );
        }
        Ok(())
    }
}

/// The helper thread's side: reads lines and sends the non-empty ones.
struct LineReader {
    tx: Sender<Line>,
    source: String,
    node: String,
    skipped: Arc<AtomicU64>,
}

impl LineReader {
    fn run(self, mut reader: impl BufRead) {
        let mut buf = Vec::new();
        let mut number = 0u64;
        loop {
            let len = match read_capped_line(&mut reader, &mut buf, MAX_LINE_BYTES) {
                Ok(Some(len)) => len,
                Ok(None) => return,
                Err(e) => {
                    let _ = self.tx.send(Err(e));
                    return;
                }
            };
            number += 1;
            let Some(line) = self.decode(&buf, len, number) else {
                continue;
            };
            let line = line.trim();
            if !line.is_empty() && self.tx.send(Ok(line.to_string())).is_err() {
                return; // the node is gone
            }
        }
    }

    /// The text of line `number` (`len` bytes long, `bytes` of them kept), or `None` (with a
    /// warning) if it is not UTF-8.
    fn decode<'a>(&self, bytes: &'a [u8], len: usize, number: u64) -> Option<&'a str> {
        let mut bytes = bytes;
        if len > bytes.len() {
            tracing::warn!(
                node = %self.node, source = %self.source, line = number, bytes = len,
                "line {number} is longer than {MAX_LINE_BYTES} bytes: only its start is kept"
            );
            // The cut may split a character: drop the incomplete tail.
            if let Err(e) = std::str::from_utf8(bytes) {
                if e.error_len().is_none() {
                    bytes = &bytes[..e.valid_up_to()];
                }
            }
        }
        match std::str::from_utf8(bytes) {
            Ok(s) => Some(s),
            Err(e) => {
                self.skipped.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    node = %self.node, source = %self.source, line = number,
                    "line {number} is not valid UTF-8 (byte {}): skipped",
                    e.valid_up_to() + 1
                );
                None
            }
        }
    }
}

/// Reads one line (up to and without its `\n`) into `buf`, keeping at most `max` bytes of
/// it; returns the line's full length, or `None` at end of input.
fn read_capped_line(
    reader: &mut impl BufRead,
    buf: &mut Vec<u8>,
    max: usize,
) -> io::Result<Option<usize>> {
    buf.clear();
    let mut len = 0usize;
    let mut any = false;
    loop {
        let chunk = match reader.fill_buf() {
            Ok(chunk) => chunk,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if chunk.is_empty() {
            return Ok(any.then_some(len));
        }
        any = true;
        let (part, used, end) = match chunk.iter().position(|&b| b == b'\n') {
            Some(i) => (&chunk[..i], i + 1, true),
            None => (chunk, chunk.len(), false),
        };
        let room = max.saturating_sub(buf.len());
        buf.extend_from_slice(&part[..part.len().min(room)]);
        len = len.saturating_add(part.len());
        reader.consume(used);
        if end {
            return Ok(Some(len));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_engine::testing::NodeRunner;
    use weir_engine::Timestamp;

    fn temp_file(name: &str, bytes: &[u8]) -> PathBuf {
        let path = std::env::temp_dir().join(format!("weir-lines-{}-{name}", std::process::id()));
        std::fs::write(&path, bytes).unwrap();
        path
    }

    #[test]
    fn capped_lines_report_their_full_length() {
        let mut r = io::Cursor::new(b"abcdef\n\nxy\r\nlast".to_vec());
        let mut buf = Vec::new();
        let mut got = Vec::new();
        while let Some(len) = read_capped_line(&mut r, &mut buf, 4).unwrap() {
            got.push((String::from_utf8(buf.clone()).unwrap(), len));
        }
        let want = [("abcd", 6), ("", 0), ("xy\r", 3), ("last", 4)];
        assert_eq!(got, want.map(|(s, n)| (s.to_string(), n)));
    }

    #[test]
    fn bad_and_huge_lines_do_not_end_the_stream() {
        let mut bytes = b"  hello \n\n\xff\xfe bad\n".to_vec();
        // A huge line whose cut falls inside a two-byte character.
        bytes.extend(std::iter::repeat_n(b'a', MAX_LINE_BYTES - 1));
        bytes.extend("é and more".as_bytes());
        bytes.extend(b"\nworld\n");
        let path = temp_file("mixed", &bytes);
        let out = NodeRunner::new(kind())
            .option("path", path.to_str().unwrap())
            .run()
            .unwrap();
        std::fs::remove_file(&path).unwrap();
        let texts: Vec<&Text> = out.values::<Text>("text");
        assert_eq!(texts.len(), 3);
        assert_eq!(&*texts[0].text, "hello");
        assert_eq!(texts[1].text.len(), MAX_LINE_BYTES - 1);
        assert!(texts[1].text.bytes().all(|b| b == b'a'));
        assert_eq!(&*texts[2].text, "world");
        for p in out.packets("text") {
            let t = p.get::<Text>().unwrap();
            assert_eq!((t.start, t.end), (p.timestamp, p.timestamp));
        }
    }

    #[test]
    fn the_reader_counts_skipped_lines_and_goes_on() {
        let (tx, rx) = crossbeam_channel::bounded(QUEUE);
        let skipped = Arc::new(AtomicU64::new(0));
        let reader = LineReader {
            tx,
            source: "test input".into(),
            node: "ask".into(),
            skipped: skipped.clone(),
        };
        reader.run(io::Cursor::new(b"one\n\xc3\x28\n\xff\ntwo".to_vec()));
        let lines: Vec<String> = rx.iter().map(Result::unwrap).collect();
        assert_eq!(lines, ["one", "two"]);
        assert_eq!(skipped.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn a_missing_file_fails_at_open() {
        let err = NodeRunner::new(kind())
            .option("path", "no/such/lines.txt")
            .run()
            .unwrap_err()
            .to_string();
        assert!(err.contains("no/such/lines.txt"), "{err}");
    }

    #[test]
    fn timestamps_are_graph_time() {
        let path = temp_file("times", b"a\nb\n");
        let out = NodeRunner::new(kind())
            .option("path", path.to_str().unwrap())
            .run()
            .unwrap();
        std::fs::remove_file(&path).unwrap();
        let times: Vec<Timestamp> = out.packets("text").iter().map(|p| p.timestamp).collect();
        assert_eq!(times.len(), 2);
        assert!(times[0] <= times[1]);
    }

    /// A line source whose input stays open (a FIFO with a silent writer, like a terminal)
    /// still stops at once when asked.
    #[cfg(unix)]
    #[test]
    fn stop_wakes_a_node_waiting_for_input() {
        use std::io::Write;
        use std::time::Duration;
        let dir = crate::test_util::temp_dir("lines-fifo");
        let fifo = dir.join("in.fifo");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        if !made.is_ok_and(|s| s.success()) {
            eprintln!("mkfifo is not available: test skipped");
            return;
        }
        let writer_path = fifo.clone();
        let (release, released) = crossbeam_channel::bounded::<()>(0);
        let writer = std::thread::spawn(move || {
            let mut w = std::fs::OpenOptions::new()
                .write(true)
                .open(&writer_path)
                .unwrap();
            w.write_all(b"first line\n").unwrap();
            w.flush().unwrap();
            // Keep the input open, silent, until the test is over.
            let _ = released.recv();
        });
        let with = format!(
            "{{ path: {} }}",
            serde_json::to_string(fifo.to_str().unwrap()).unwrap()
        );
        let (got, after_stop) = crate::test_util::run_source_until(
            kind(),
            &with,
            "text",
            weir_engine::PortType::of::<Text>(),
            |_| true,
        );
        drop(release);
        writer.join().unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(&*got[0].get::<Text>().unwrap().text, "first line");
        assert!(after_stop < Duration::from_secs(1), "{after_stop:?}");
    }
}
