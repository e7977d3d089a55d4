//! Loading graph files: reading, parsing, overrides (`--set`), kind swaps (`--input`) and
//! the environment for `${VAR}`, then validation.

use std::path::Path;
use std::str::FromStr;

use serde_json::Value;

use super::diagnostic::{Diagnostic, GraphFileError, Pos};
use super::spec;
use super::validate::{validate, GraphPlan};
use crate::registry::Registry;

/// An option override: `node.option=value` (the value is parsed as YAML).
#[derive(Clone, Debug, PartialEq)]
pub struct Override {
    /// Node name.
    pub node: String,
    /// Option name.
    pub option: String,
    /// New value.
    pub value: Value,
}

impl FromStr for Override {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (target, raw) = s
            .split_once('=')
            .ok_or_else(|| format!("`{s}`: expected node.option=value"))?;
        let (node, option) = target
            .split_once('.')
            .ok_or_else(|| format!("`{target}`: expected node.option before `=`"))?;
        let value = if raw.is_empty() {
            Value::String(String::new())
        } else {
            serde_saphyr::from_str::<Value>(raw).unwrap_or_else(|_| Value::String(raw.into()))
        };
        Ok(Override {
            node: node.trim().to_string(),
            option: option.trim().to_string(),
            value,
        })
    }
}

/// A node whose kind and options are replaced before validation.
#[derive(Clone, Debug, PartialEq)]
pub struct KindSwap {
    /// Node name.
    pub node: String,
    /// New kind.
    pub kind: String,
    /// New options (the old ones are dropped).
    pub options: Vec<(String, Value)>,
}

/// What to load and how: a graph file's text plus overrides and an environment.
pub struct Loader<'a> {
    registry: &'a Registry,
    overrides: Vec<Override>,
    swaps: Vec<KindSwap>,
    env: EnvLookup<'a>,
}

/// Looks up `${VAR}` values.
type EnvLookup<'a> = Box<dyn Fn(&str) -> Option<String> + 'a>;

impl<'a> Loader<'a> {
    /// A loader for graphs made of `registry`'s kinds, reading `${VAR}` from the process
    /// environment.
    pub fn new(registry: &'a Registry) -> Self {
        Loader {
            registry,
            overrides: Vec::new(),
            swaps: Vec::new(),
            env: Box::new(|k| std::env::var(k).ok()),
        }
    }

    /// Adds `--set` overrides.
    pub fn overrides(mut self, overrides: impl IntoIterator<Item = Override>) -> Self {
        self.overrides.extend(overrides);
        self
    }

    /// Replaces a node's kind and options before validation (e.g. a microphone by a file).
    pub fn swap(mut self, swap: KindSwap) -> Self {
        self.swaps.push(swap);
        self
    }

    /// Replaces the environment used for `${VAR}`.
    pub fn env(mut self, env: impl Fn(&str) -> Option<String> + 'a) -> Self {
        self.env = Box::new(env);
        self
    }

    /// Reads and validates the graph file at `path`.
    pub fn load_file(&self, path: &Path) -> Result<GraphPlan, GraphFileError> {
        let fail = |source: String, d: Diagnostic| GraphFileError {
            file: path.to_path_buf(),
            source,
            diagnostics: vec![d],
        };
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) => {
                let d = Diagnostic::new(Pos::default(), format!("cannot read graph file: {e}"))
                    .expected("a readable YAML file");
                return Err(fail(String::new(), d));
            }
        };
        match String::from_utf8(bytes) {
            Ok(text) => self.load_str(path, &text),
            Err(e) => {
                let bytes = e.as_bytes();
                let at = e.utf8_error().valid_up_to();
                let good = String::from_utf8_lossy(&bytes[..at]).into_owned();
                let line = good.matches('\n').count() as u64 + 1;
                let column = good.rsplit('\n').next().map_or(0, |l| l.chars().count()) as u64 + 1;
                let shown = String::from_utf8_lossy(bytes).into_owned();
                let d = Diagnostic::new(
                    Pos {
                        line,
                        column,
                        len: 1,
                    },
                    format!("the file is not UTF-8 text: byte 0x{:02x}", bytes[at]),
                )
                .expected("a YAML file saved as UTF-8");
                Err(fail(shown, d))
            }
        }
    }

    /// Validates graph text; `path` is used in messages.
    pub fn load_str(&self, path: &Path, text: &str) -> Result<GraphPlan, GraphFileError> {
        let fail = |diagnostics| GraphFileError {
            file: path.to_path_buf(),
            source: text.to_string(),
            diagnostics,
        };
        let raw = match spec::parse(text) {
            Ok(raw) => raw,
            Err(e) => return Err(fail(vec![syntax_diagnostic(&e)])),
        };
        let (plan, diags) = validate(
            self.registry,
            &*self.env,
            &self.swaps,
            raw,
            path,
            &self.overrides,
        );
        if diags.is_empty() {
            Ok(plan)
        } else {
            Err(fail(diags))
        }
    }
}

fn syntax_diagnostic(e: &serde_saphyr::Error) -> Diagnostic {
    let pos = e
        .location()
        .map(|l| Pos::from_location(&l, 1))
        .unwrap_or_default();
    let text = e.without_snippet().to_string();
    // The location is shown by our renderer; keep the first line of the message only, and
    // say in plain words what the parser's terms mean.
    let first = text.lines().next().unwrap_or("invalid YAML");
    let first = first.split(" at line ").next().unwrap_or(first);
    let (message, expected) = plain_syntax_message(first);
    let d = Diagnostic::new(pos, message);
    match expected {
        Some(e) => d.expected(e),
        None => d,
    }
}

/// The parser's message in a user's words, with what was expected where that is known.
fn plain_syntax_message(raw: &str) -> (String, Option<&'static str>) {
    const PLAIN: &[(&str, &str, &str)] = &[
        (
            "invalid u64",
            "not a whole number",
            "a whole number of 0 or more",
        ),
        ("invalid i64", "not a whole number", "a whole number"),
        (
            "invalid floating point",
            "not a number",
            "a number, e.g. 100 or 0.5",
        ),
        ("invalid boolean", "not true or false", "true or false"),
        (
            "budget breached",
            "the file is too large or too deeply nested",
            "a graph file of ordinary size",
        ),
        (
            "recursive",
            "YAML anchors that refer to themselves are not allowed",
            "plain values instead of a self-referring anchor",
        ),
        (
            "expected mapping",
            "a mapping was expected here",
            "`key: value` pairs (or `{ key: value }`)",
        ),
        (
            "expected sequence",
            "a list was expected here",
            "a list, `[a, b]` or `- a` lines",
        ),
        (
            "use Option",
            "a value is missing here",
            "a value after the `:`",
        ),
    ];
    for (needle, message, expected) in PLAIN {
        if raw.contains(needle) {
            return (message.to_string(), Some(expected));
        }
    }
    (raw.to_string(), None)
}

/// Loads and validates `path` with `registry`, applying `overrides`.
pub fn load(
    path: &Path,
    registry: &Registry,
    overrides: &[Override],
) -> Result<GraphPlan, GraphFileError> {
    Loader::new(registry)
        .overrides(overrides.iter().cloned())
        .load_file(path)
}
