//! Graph-file errors that point at the source: file, line, column, node, what was expected,
//! and the closest valid name; rendered like compiler errors with the offending line.

use std::fmt;
use std::path::PathBuf;

/// A position in a graph file (1-based; 0 means unknown).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pos {
    /// Line, from 1.
    pub line: u64,
    /// Column, from 1.
    pub column: u64,
    /// Length of the highlighted text in characters (at least 1 when rendered).
    pub len: u64,
}

impl Pos {
    pub(crate) fn from_location(loc: &serde_saphyr::Location, len: usize) -> Self {
        Pos {
            line: loc.line(),
            column: loc.column(),
            len: len as u64,
        }
    }
}

/// One problem in a graph file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    /// Where it is.
    pub pos: Pos,
    /// The node it concerns, if any.
    pub node: Option<String>,
    /// What is wrong, e.g. "unknown node kind `audio.resampel`".
    pub message: String,
    /// What was expected, e.g. "one of audio.resample, audio.wav_file".
    pub expected: Option<String>,
    /// A suggestion, e.g. "did you mean `audio.resample`?".
    pub help: Option<String>,
    /// Set when the problem is in a command-line override (`--set node.option=value`), which
    /// is shown instead of a file position.
    pub command_line: Option<String>,
}

impl Diagnostic {
    /// A diagnostic at `pos` with a message.
    pub fn new(pos: Pos, message: impl Into<String>) -> Self {
        Diagnostic {
            pos,
            node: None,
            message: message.into(),
            expected: None,
            help: None,
            command_line: None,
        }
    }

    /// Marks the problem as coming from the command-line argument `arg`.
    pub fn from_command_line(mut self, arg: impl Into<String>) -> Self {
        self.command_line = Some(arg.into());
        self
    }

    /// Names the node.
    pub fn node(mut self, node: &str) -> Self {
        self.node = Some(node.to_string());
        self
    }

    /// Says what was expected.
    pub fn expected(mut self, expected: impl Into<String>) -> Self {
        self.expected = Some(expected.into());
        self
    }

    /// Adds "did you mean `x`?" if a close name exists among `candidates`.
    pub fn suggest<'a>(mut self, bad: &str, candidates: impl IntoIterator<Item = &'a str>) -> Self {
        if let Some(best) = closest(bad, candidates) {
            self.help = Some(format!("did you mean `{best}`?"));
        }
        self
    }
}

/// The candidate closest to `bad`, if it is close enough to be a likely typo.
pub fn closest<'a>(bad: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let limit = (bad.chars().count() / 3).max(2);
    candidates
        .into_iter()
        .map(|c| (strsim::damerau_levenshtein(bad, c), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Every problem found in one graph file, with the text needed to show them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GraphFileError {
    /// The graph file (or `<string>` for graphs given as text).
    pub file: PathBuf,
    /// The file's text, for snippets.
    pub source: String,
    /// The problems, in file order.
    pub diagnostics: Vec<Diagnostic>,
}

impl std::error::Error for GraphFileError {}

impl fmt::Display for GraphFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let lines: Vec<&str> = self.source.lines().collect();
        for d in &self.diagnostics {
            writeln!(f, "error: {}", d.message)?;
            let file = self.file.display();
            if let Some(arg) = &d.command_line {
                writeln!(f, "  --> command line: {arg}")?;
            } else if d.pos.line == 0 {
                writeln!(f, "  --> {file}")?;
            } else {
                writeln!(f, "  --> {file}:{}:{}", d.pos.line, d.pos.column)?;
                let width = d.pos.line.to_string().len();
                if let Some(text) = lines.get(d.pos.line as usize - 1) {
                    let pad = " ".repeat(d.pos.column.saturating_sub(1) as usize);
                    let marks = "^".repeat(d.pos.len.max(1) as usize);
                    let label = d.help.as_deref().unwrap_or("");
                    writeln!(f, "{:width$} |", "")?;
                    writeln!(f, "{} | {}", d.pos.line, text)?;
                    writeln!(f, "{:width$} | {pad}{marks} {label}", "")?;
                }
            }
            if let Some(node) = &d.node {
                writeln!(f, "   = node: {node}")?;
            }
            if let Some(e) = &d.expected {
                writeln!(f, "   = expected: {e}")?;
            }
            if d.pos.line == 0 || d.command_line.is_some() {
                if let Some(h) = &d.help {
                    writeln!(f, "   = help: {h}")?;
                }
            }
            writeln!(f)?;
        }
        let n = self.diagnostics.len();
        write!(
            f,
            "{} error{} in {}",
            n,
            if n == 1 { "" } else { "s" },
            self.file.display()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closest_finds_typos_and_ignores_strangers() {
        let kinds = ["audio.resample", "audio.wav_file", "text.print"];
        assert_eq!(closest("audio.resampel", kinds), Some("audio.resample"));
        assert_eq!(closest("txt.print", kinds), Some("text.print"));
        assert_eq!(closest("llm.chat", kinds), None);
    }
}
