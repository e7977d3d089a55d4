//! Node kinds and the registry that maps kind names to them.
//!
//! A [`NodeKind`] declares everything the validator and `weir nodes` need: ports with their
//! types, options with types, defaults and docs, and a factory that builds the node from
//! validated [`Options`]. Node families expose `register(&mut Registry)`; nothing registers
//! itself implicitly.

use std::collections::BTreeMap;
use std::fmt;

use serde_json::Value;

use crate::node::{Node, NodeError};
use crate::packet::PortType;

/// A declared input or output port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortSpec {
    /// Port name as written in graph files.
    pub name: &'static str,
    /// Payload type.
    pub ty: PortType,
    /// For inputs: whether the graph must connect it.
    pub required: bool,
    /// One-line description.
    pub doc: &'static str,
}

impl PortSpec {
    /// A required input or an output.
    pub fn new(name: &'static str, ty: PortType, doc: &'static str) -> Self {
        PortSpec {
            name,
            ty,
            required: true,
            doc,
        }
    }

    /// An input that may stay unconnected.
    pub fn optional(name: &'static str, ty: PortType, doc: &'static str) -> Self {
        PortSpec {
            required: false,
            ..PortSpec::new(name, ty, doc)
        }
    }
}

/// The type of an option value.
#[derive(Clone, Debug, PartialEq)]
pub enum OptionType {
    /// `true` / `false`.
    Bool,
    /// An integer.
    Int,
    /// A number (integers accepted).
    Float,
    /// A string.
    Str,
    /// A file path (a string; checked by the node when it opens).
    Path,
    /// One of a fixed set of strings.
    Choice(&'static [&'static str]),
}

impl fmt::Display for OptionType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OptionType::Bool => f.write_str("bool"),
            OptionType::Int => f.write_str("integer"),
            OptionType::Float => f.write_str("number"),
            OptionType::Str => f.write_str("string"),
            OptionType::Path => f.write_str("path"),
            OptionType::Choice(c) => write!(f, "one of {}", c.join("|")),
        }
    }
}

/// A declared option of a node kind.
#[derive(Clone, Debug, PartialEq)]
pub struct OptionSpec {
    /// Option name as written under `with:`.
    pub name: &'static str,
    /// Value type.
    pub ty: OptionType,
    /// Value used when the graph does not set it; `None` and not required means "unset".
    pub default: Option<Value>,
    /// Whether the graph must set it.
    pub required: bool,
    /// Inclusive numeric range, for `Int` and `Float`.
    pub range: Option<(f64, f64)>,
    /// One-line description.
    pub doc: &'static str,
}

impl OptionSpec {
    /// An option the graph must set.
    pub fn required(name: &'static str, ty: OptionType, doc: &'static str) -> Self {
        OptionSpec {
            name,
            ty,
            default: None,
            required: true,
            range: None,
            doc,
        }
    }

    /// An option with a default value.
    pub fn with_default(
        name: &'static str,
        ty: OptionType,
        default: impl Into<Value>,
        doc: &'static str,
    ) -> Self {
        OptionSpec {
            default: Some(default.into()),
            required: false,
            ..OptionSpec::required(name, ty, doc)
        }
    }

    /// An option that may stay unset.
    pub fn optional(name: &'static str, ty: OptionType, doc: &'static str) -> Self {
        OptionSpec {
            required: false,
            ..OptionSpec::required(name, ty, doc)
        }
    }

    /// Restricts a numeric option to `min..=max`.
    pub fn range(mut self, min: f64, max: f64) -> Self {
        self.range = Some((min, max));
        self
    }

    /// Checks `value` against the type and range; the error says what was expected.
    pub fn check(&self, value: &Value) -> Result<(), String> {
        let ok = match (&self.ty, value) {
            (OptionType::Bool, Value::Bool(_)) => true,
            (OptionType::Int, Value::Number(n)) => n.is_i64() || n.is_u64(),
            (OptionType::Float, Value::Number(_)) => true,
            (OptionType::Str | OptionType::Path, Value::String(_)) => true,
            (OptionType::Choice(c), Value::String(s)) => {
                if !c.contains(&s.as_str()) {
                    return Err(format!("one of {}", c.join(", ")));
                }
                true
            }
            _ => false,
        };
        if !ok {
            return Err(format!("{}, found {}", self.ty, describe(value)));
        }
        if let (Some((min, max)), Some(x)) = (self.range, value.as_f64()) {
            if x < min || x > max {
                return Err(format!("a value in {min}..={max}, found {x}"));
            }
        }
        Ok(())
    }
}

/// A short description of a value's YAML type, for error messages.
pub(crate) fn describe(value: &Value) -> String {
    match value {
        Value::Null => "nothing".into(),
        Value::Bool(b) => format!("bool `{b}`"),
        Value::Number(n) if n.is_f64() => format!("number `{n}`"),
        Value::Number(n) => format!("integer `{n}`"),
        Value::String(s) => format!("string `{s}`"),
        Value::Array(_) => "a list".into(),
        Value::Object(_) => "a map".into(),
    }
}

/// Validated option values of one node, defaults filled in.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Options {
    values: BTreeMap<String, Value>,
}

impl Options {
    pub(crate) fn insert(&mut self, name: &str, value: Value) {
        self.values.insert(name.to_string(), value);
    }

    /// Builds options from pairs, for nodes created in code.
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, Value)>) -> Self {
        let mut o = Options::default();
        for (k, v) in pairs {
            o.insert(k, v);
        }
        o
    }

    fn value(&self, name: &str) -> Result<&Value, NodeError> {
        self.values
            .get(name)
            .ok_or_else(|| NodeError::new(format!("option `{name}` is not set")))
    }

    fn typed<'s, T: 's>(
        &'s self,
        name: &str,
        what: &str,
        f: impl Fn(&'s Value) -> Option<T>,
    ) -> Result<T, NodeError> {
        let v = self.value(name)?;
        f(v).ok_or_else(|| {
            NodeError::new(format!(
                "option `{name}`: expected {what}, found {}",
                describe(v)
            ))
        })
    }

    /// True if the option has a value (set or defaulted).
    pub fn contains(&self, name: &str) -> bool {
        self.values.contains_key(name)
    }

    /// A string or path option.
    pub fn str(&self, name: &str) -> Result<&str, NodeError> {
        self.typed(name, "a string", Value::as_str)
    }

    /// An optional string or path option.
    pub fn opt_str(&self, name: &str) -> Option<&str> {
        self.values.get(name).and_then(Value::as_str)
    }

    /// A boolean option.
    pub fn bool(&self, name: &str) -> Result<bool, NodeError> {
        self.typed(name, "a bool", Value::as_bool)
    }

    /// A non-negative integer option.
    pub fn u64(&self, name: &str) -> Result<u64, NodeError> {
        self.typed(name, "a non-negative integer", Value::as_u64)
    }

    /// An integer option.
    pub fn i64(&self, name: &str) -> Result<i64, NodeError> {
        self.typed(name, "an integer", Value::as_i64)
    }

    /// A numeric option.
    pub fn f64(&self, name: &str) -> Result<f64, NodeError> {
        self.typed(name, "a number", Value::as_f64)
    }

    /// An optional numeric option.
    pub fn opt_f64(&self, name: &str) -> Option<f64> {
        self.values.get(name).and_then(Value::as_f64)
    }

    /// Iterates over `(name, value)` pairs.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.values.iter().map(|(k, v)| (k.as_str(), v))
    }
}

/// Builds a node from its validated options.
pub type Factory = Box<dyn Fn(&Options) -> Result<Box<dyn Node>, NodeError> + Send + Sync>;

/// Everything known about a kind of node before any is built.
pub struct NodeKind {
    /// Kind name, `family.name`.
    pub name: &'static str,
    /// One-line description.
    pub doc: &'static str,
    /// Input ports, in index order.
    pub inputs: Vec<PortSpec>,
    /// Output ports, in index order.
    pub outputs: Vec<PortSpec>,
    /// Options.
    pub options: Vec<OptionSpec>,
    /// Builds a node of this kind.
    pub factory: Factory,
}

impl NodeKind {
    /// A kind with no ports or options yet.
    pub fn new(
        name: &'static str,
        doc: &'static str,
        factory: impl Fn(&Options) -> Result<Box<dyn Node>, NodeError> + Send + Sync + 'static,
    ) -> Self {
        NodeKind {
            name,
            doc,
            inputs: Vec::new(),
            outputs: Vec::new(),
            options: Vec::new(),
            factory: Box::new(factory),
        }
    }

    /// Adds an input port.
    pub fn input(mut self, port: PortSpec) -> Self {
        self.inputs.push(port);
        self
    }

    /// Adds an output port.
    pub fn output(mut self, port: PortSpec) -> Self {
        self.outputs.push(port);
        self
    }

    /// Adds an option.
    pub fn option(mut self, option: OptionSpec) -> Self {
        self.options.push(option);
        self
    }

    /// The index of input `name`.
    pub fn input_index(&self, name: &str) -> Option<usize> {
        self.inputs.iter().position(|p| p.name == name)
    }

    /// The index of output `name`.
    pub fn output_index(&self, name: &str) -> Option<usize> {
        self.outputs.iter().position(|p| p.name == name)
    }

    /// The option called `name`.
    pub fn option_spec(&self, name: &str) -> Option<&OptionSpec> {
        self.options.iter().find(|o| o.name == name)
    }

    /// A multi-line description: ports and options with types, defaults and docs.
    pub fn describe(&self) -> String {
        use std::fmt::Write;
        let mut s = format!("{}\n    {}\n", self.name, self.doc);
        let port_lines = |s: &mut String, title: &str, ports: &[PortSpec]| {
            if ports.is_empty() {
                return;
            }
            let _ = writeln!(s, "  {title}:");
            for p in ports {
                let opt = if p.required { "" } else { " (optional)" };
                let _ = writeln!(s, "    {:<14} {:<8} {}{}", p.name, p.ty, p.doc, opt);
            }
        };
        port_lines(&mut s, "inputs", &self.inputs);
        port_lines(&mut s, "outputs", &self.outputs);
        if !self.options.is_empty() {
            let _ = writeln!(s, "  options:");
            for o in &self.options {
                let default = match (&o.default, o.required) {
                    (_, true) => "required".to_string(),
                    (Some(v), _) => format!("default {v}"),
                    (None, _) => "optional".to_string(),
                };
                let range = o
                    .range
                    .map(|(a, b)| format!(", {a}..={b}"))
                    .unwrap_or_default();
                let _ = writeln!(
                    s,
                    "    {:<16} {:<12} {} ({default}{range})",
                    o.name,
                    o.ty.to_string(),
                    o.doc
                );
            }
        }
        s
    }
}

/// The node kinds a graph may use, by name.
#[derive(Default)]
pub struct Registry {
    kinds: BTreeMap<&'static str, NodeKind>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Registry::default()
    }

    /// Adds a kind; a later kind of the same name replaces the earlier one.
    pub fn register(&mut self, kind: NodeKind) {
        self.kinds.insert(kind.name, kind);
    }

    /// The kind called `name`.
    pub fn get(&self, name: &str) -> Option<&NodeKind> {
        self.kinds.get(name)
    }

    /// All kinds, sorted by name.
    pub fn kinds(&self) -> impl Iterator<Item = &NodeKind> {
        self.kinds.values()
    }

    /// All kind names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.kinds.keys().copied()
    }
}
