//! Node kinds and the registry that maps kind names to them.
//!
//! A [`NodeKind`] declares everything the validator and `weir nodes` need, from one place per
//! node: the ports (from the function that makes the node's typed port handles), the
//! options (from the node's [`Config`] struct) and a factory that builds the node from
//! validated options. Node families expose `register(&mut Registry)`; nothing registers
//! itself implicitly, and a second kind of the same name is refused.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::node::{AnyNode, NodeError, Processor, Source};
pub use crate::port::PortSpec;
use crate::port::Ports;

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

    /// The value of option `name` (set or defaulted).
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.values.get(name)
    }

    /// True if the option has a value (set or defaulted).
    pub fn contains(&self, name: &str) -> bool {
        self.values.contains_key(name)
    }

    /// The options deserialized into a node's config struct.
    pub fn to_config<C: DeserializeOwned>(&self, kind: &str) -> Result<C, NodeError> {
        let object: serde_json::Map<String, Value> = self
            .values
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        serde_json::from_value(Value::Object(object)).map_err(|e| {
            NodeError::new(format!(
                "the options of `{kind}` do not fit its config (a bug in the node): {e}"
            ))
        })
    }

    /// Iterates over `(name, value)` pairs.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.values.iter().map(|(k, v)| (k.as_str(), v))
    }
}

/// A node's options as a typed struct, and their declarations (types, defaults, ranges,
/// docs) for validation and `weir nodes`. Keep the struct and [`Config::options`] side by
/// side; the struct deserializes from the validated options (serde, one field per option,
/// `Option<T>` for options without a default).
pub trait Config: DeserializeOwned + 'static {
    /// The declarations of the options, in the order `weir nodes` shows them.
    fn options() -> Vec<OptionSpec>;
}

/// The config of a node kind without options.
#[derive(Clone, Copy, Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoConfig {}

impl Config for NoConfig {
    fn options() -> Vec<OptionSpec> {
        Vec::new()
    }
}

/// What a kind is for, beyond its ports, so tools can act on it without knowing its name.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Role {
    /// Nothing special.
    #[default]
    Plain,
    /// Reads a recording from a file: `weir run --input FILE` sets option `path`, and
    /// option `realtime` (a bool) paces it like a live device.
    Recording {
        /// The option naming the file.
        path: &'static str,
        /// The bool option that paces output at the speed of the recording.
        realtime: &'static str,
    },
    /// A live device (a microphone): `weir run --input FILE` replaces it by the
    /// [`Role::Recording`] kind with the same output type, paced.
    Live,
    /// Writes what it receives to a file named by option `path`, with file name extension
    /// `extension`: what a [`Role::LiveOutput`] node becomes in a replay.
    Writer {
        /// The option naming the file.
        path: &'static str,
        /// The file name extension, without the dot (`wav`).
        extension: &'static str,
    },
    /// A live output device (a speaker): when `weir run --input FILE` replaces the graph's
    /// live source, it also replaces this node by the [`Role::Writer`] kind with the same
    /// input type, so a replay needs no device.
    LiveOutput,
}

/// Builds a node from its validated options (shared: a node thread keeps it to rebuild its
/// node for `on_error: restart`).
pub(crate) type Factory = Arc<dyn Fn(&Options) -> Result<AnyNode, NodeError> + Send + Sync>;

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
    /// What the kind is for.
    pub role: Role,
    factory: Factory,
}

impl NodeKind {
    /// A source kind: `declare` makes the port handles (and, called once here, the port
    /// declarations); `build` makes the node from its config and handles.
    pub fn source<C, P, N>(
        name: &'static str,
        doc: &'static str,
        declare: fn(&mut Ports) -> P,
        build: impl Fn(C, P) -> Result<N, NodeError> + Send + Sync + 'static,
    ) -> Self
    where
        C: Config,
        P: 'static,
        N: Source + 'static,
    {
        Self::typed(name, doc, declare, move |c, p| {
            Ok(AnyNode::Source(Box::new(build(c, p)?)))
        })
    }

    /// A processor kind: `declare` makes the port handles (and, called once here, the port
    /// declarations); `build` makes the node from its config and handles.
    pub fn processor<C, P, N>(
        name: &'static str,
        doc: &'static str,
        declare: fn(&mut Ports) -> P,
        build: impl Fn(C, P) -> Result<N, NodeError> + Send + Sync + 'static,
    ) -> Self
    where
        C: Config,
        P: 'static,
        N: Processor + 'static,
    {
        Self::typed(name, doc, declare, move |c, p| {
            Ok(AnyNode::Processor(Box::new(build(c, p)?)))
        })
    }

    /// The port declarations from one call of `declare`; each build makes fresh handles
    /// with another call and a config from the validated options.
    fn typed<C: Config, P: 'static>(
        name: &'static str,
        doc: &'static str,
        declare: fn(&mut Ports) -> P,
        build: impl Fn(C, P) -> Result<AnyNode, NodeError> + Send + Sync + 'static,
    ) -> Self {
        let mut ports = Ports::default();
        declare(&mut ports);
        Self::with_factory::<C>(name, doc, ports, move |o| {
            build(o.to_config(name)?, declare(&mut Ports::default()))
        })
    }

    pub(crate) fn with_factory<C: Config>(
        name: &'static str,
        doc: &'static str,
        ports: Ports,
        factory: impl Fn(&Options) -> Result<AnyNode, NodeError> + Send + Sync + 'static,
    ) -> Self {
        NodeKind {
            name,
            doc,
            inputs: ports.inputs,
            outputs: ports.outputs,
            options: C::options(),
            role: Role::Plain,
            factory: Arc::new(factory),
        }
    }

    /// Declares what the kind is for.
    pub fn role(mut self, role: Role) -> Self {
        self.role = role;
        self
    }

    /// The factory that builds nodes of this kind from validated options.
    pub(crate) fn factory(&self) -> Factory {
        self.factory.clone()
    }

    /// True for kinds without inputs.
    pub fn is_source(&self) -> bool {
        self.inputs.is_empty()
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

    /// Adds a kind; a kind of the same name is refused.
    pub fn register(&mut self, kind: NodeKind) -> Result<(), DuplicateKind> {
        match self.kinds.entry(kind.name) {
            std::collections::btree_map::Entry::Occupied(_) => Err(DuplicateKind(kind.name)),
            std::collections::btree_map::Entry::Vacant(slot) => {
                slot.insert(kind);
                Ok(())
            }
        }
    }

    /// The [`Role::Recording`] kind whose first output carries `ty`, if any.
    pub fn recording_kind(&self, ty: crate::PortType) -> Option<&NodeKind> {
        self.kinds().find(|k| {
            matches!(k.role, Role::Recording { .. })
                && k.outputs.first().is_some_and(|o| o.ty == ty)
        })
    }

    /// The [`Role::Writer`] kind whose first input takes `ty`, if any.
    pub fn writer_kind(&self, ty: crate::PortType) -> Option<&NodeKind> {
        self.kinds().find(|k| {
            matches!(k.role, Role::Writer { .. }) && k.inputs.first().is_some_and(|i| i.ty == ty)
        })
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

/// A second kind with a name already registered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("node kind `{0}` is registered twice")]
pub struct DuplicateKind(pub &'static str);
