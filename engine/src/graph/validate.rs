//! Turns a parsed graph file into a validated [`GraphPlan`], collecting every problem.
//!
//! Checks: unknown top-level keys, node fields, kinds, ports and options (with suggestions);
//! missing required options; option types and ranges; duplicate node names; inputs fed
//! twice; `node.port` references; port type mismatches; unconnected required inputs; queue
//! settings; cycles (back edges, under `back:`, close loops on purpose and are left out);
//! back edges that block or are a node's only inputs. `${VAR}` in string options is replaced from the environment, and
//! `--set node.option=value` overrides are applied before the checks.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use petgraph::graph::DiGraph;
use serde_json::Value;
use serde_saphyr::Spanned;

use super::diagnostic::{Diagnostic, Pos};
use super::loader::{KindSwap, Override};
use super::spec::{RawGraph, RawNode, RawQueue, SpannedStr};
use crate::channel::{Overflow, QueueConfig};
use crate::registry::{NodeKind, OptionType, Options, Registry};

/// Field names people write by habit, and the field they mean.
const FIELD_ALIASES: &[(&str, &str)] = &[
    ("inputs", "in"),
    ("input", "in"),
    ("options", "with"),
    ("params", "with"),
    ("config", "with"),
    ("kind", "node"),
    ("type", "node"),
];

/// How long a node with several inputs waits for a silent one, by default.
pub const DEFAULT_MERGE_WAIT: Duration = Duration::from_millis(100);

/// The longest `merge_wait_ms` a graph may set.
pub const MAX_MERGE_WAIT_MS: f64 = 60_000.0;

/// A validated node: its kind and its options with defaults filled in.
#[derive(Clone, Debug, PartialEq)]
pub struct PlanNode {
    /// Name from the graph file.
    pub name: String,
    /// Kind name, e.g. `audio.resample`.
    pub kind: String,
    /// Validated options.
    pub options: Options,
    /// With several inputs: how long (graph time) to wait for a silent input before
    /// handing over the earliest packet that is there.
    pub merge_wait: Duration,
    /// What a failing `process` call does.
    pub on_error: OnError,
}

/// What happens when a node fails to process one packet (an error or a panic).
///
/// Without `on_error`, a node stops in a file graph (a wrong result should end the run
/// loudly) and skips in a live graph (one with a [`crate::Role::Live`] source: a device must
/// keep answering); a source always stops.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OnError {
    /// The node ends, the sources stop, what was produced drains and the run fails with the
    /// node's error.
    #[default]
    Stop,
    /// The packet is skipped: the error is logged with the packet's timestamp, counted in
    /// the node's `errors`, and the node goes on with the next packet.
    Skip,
    /// The packet is skipped and the node is rebuilt from its options and opened again
    /// after a back-off (see [`RestartPolicy`]); sources too. Counted in `restarts`.
    Restart,
}

impl OnError {
    /// The names accepted in graph files.
    pub const NAMES: [&'static str; 3] = ["stop", "skip", "restart"];
}

/// How `on_error: restart` backs off and when it gives up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RestartPolicy {
    /// Wait (graph time) before the first restart; doubled for each further restart within
    /// `window`.
    pub first_backoff: Duration,
    /// The longest wait between two restarts.
    pub max_backoff: Duration,
    /// At most this many restarts within `window`; one more failure stops the node as
    /// `on_error: stop` would.
    pub limit: usize,
    /// The sliding window the restarts are counted in.
    pub window: Duration,
}

impl RestartPolicy {
    /// 100 ms, doubling up to 5 s; at most 5 restarts within 60 s.
    pub const DEFAULT: RestartPolicy = RestartPolicy {
        first_backoff: Duration::from_millis(100),
        max_backoff: Duration::from_secs(5),
        limit: 5,
        window: Duration::from_secs(60),
    };

    /// The wait before restart number `n` (1-based) within the window.
    pub fn backoff(&self, n: usize) -> Duration {
        let doublings = u32::try_from(n.saturating_sub(1))
            .unwrap_or(u32::MAX)
            .min(16);
        self.first_backoff
            .saturating_mul(1 << doublings)
            .min(self.max_backoff)
    }
}

/// A validated interrupt: every packet on the trigger port interrupts the target node and
/// everything downstream of it.
#[derive(Clone, Debug, PartialEq)]
pub struct PlanInterrupt {
    /// Index of the node whose output triggers the interrupt.
    pub trigger_node: usize,
    /// Its output port index.
    pub trigger_port: usize,
    /// Index of the interrupted node.
    pub target: usize,
    /// `node.port` of the trigger, for reports.
    pub label: String,
}

/// A validated edge from an output port to an input port (ports by index).
#[derive(Clone, Debug, PartialEq)]
pub struct PlanEdge {
    /// Index of the producing node in [`GraphPlan::nodes`].
    pub from_node: usize,
    /// Output port index on the producing node.
    pub from_port: usize,
    /// Index of the consuming node.
    pub to_node: usize,
    /// Input port index on the consuming node.
    pub to_port: usize,
    /// `node.port` of the producer, for reports.
    pub from_label: String,
    /// `node.port` of the consumer, for reports.
    pub to_label: String,
    /// Queue capacity and overflow policy.
    pub queue: QueueConfig,
    /// A back edge (`back:` in the file): it closes a loop, so cycle checks, the
    /// topological order and interrupt regions ignore it, and its consumer neither waits
    /// for it when merging nor for its end.
    pub back: bool,
}

/// A graph that passed validation: safe to build and run.
#[derive(Clone, Debug, PartialEq)]
pub struct GraphPlan {
    /// Graph name (`graph:`), or the file stem.
    pub name: String,
    /// `description:`, if any.
    pub description: String,
    /// Nodes in file order.
    pub nodes: Vec<PlanNode>,
    /// Edges in file order.
    pub edges: Vec<PlanEdge>,
    /// Interrupts in file order.
    pub interrupts: Vec<PlanInterrupt>,
}

impl GraphPlan {
    /// The nodes in a topological order (producers before consumers).
    pub fn topological_order(&self) -> Vec<usize> {
        let mut g = DiGraph::<usize, ()>::new();
        let ids: Vec<_> = (0..self.nodes.len()).map(|i| g.add_node(i)).collect();
        for e in self.edges.iter().filter(|e| !e.back) {
            g.add_edge(ids[e.from_node], ids[e.to_node], ());
        }
        match petgraph::algo::toposort(&g, None) {
            Ok(order) => order.into_iter().map(|n| g[n]).collect(),
            Err(_) => (0..self.nodes.len()).collect(),
        }
    }

    /// Node `node` and every node downstream of it, in topological order.
    pub fn downstream_of(&self, node: usize) -> Vec<usize> {
        let mut reached = vec![false; self.nodes.len()];
        let mut stack = vec![node];
        while let Some(n) = stack.pop() {
            if std::mem::replace(&mut reached[n], true) {
                continue;
            }
            stack.extend(
                self.edges
                    .iter()
                    .filter(|e| e.from_node == n && !e.back)
                    .map(|e| e.to_node),
            );
        }
        self.topological_order()
            .into_iter()
            .filter(|&n| reached[n])
            .collect()
    }

    /// For each interrupt, the nodes it reaches, in topological order.
    pub fn interrupt_regions(&self) -> Vec<Vec<usize>> {
        self.interrupts
            .iter()
            .map(|i| self.downstream_of(i.target))
            .collect()
    }
}

fn pos_of<T>(s: &Spanned<T>, len: usize) -> Pos {
    Pos::from_location(&s.referenced, len)
}

fn str_pos(s: &SpannedStr) -> Pos {
    pos_of(s, s.value.chars().count())
}

struct Validator<'a> {
    swaps: &'a [KindSwap],
    /// `(node, option, argument)` of every `--set` override, to report them as such.
    from_cli: Vec<(String, String, String)>,
    registry: &'a Registry,
    env: &'a dyn Fn(&str) -> Option<String>,
    diags: Vec<Diagnostic>,
    /// The file declares a live device (even if `--input` replaced it by a recording).
    live: bool,
}

/// A node while it is being validated.
struct Pending<'r> {
    name: SpannedStr,
    kind: Option<&'r NodeKind>,
    raw: RawNode,
    options: Options,
}

impl<'a> Validator<'a> {
    fn report(&mut self, d: Diagnostic) {
        self.diags.push(d);
    }

    fn graph(&mut self, raw: RawGraph, path: &Path, overrides: &[Override]) -> GraphPlan {
        for key in &raw.unknown {
            self.report(
                Diagnostic::new(
                    str_pos(key),
                    format!("unknown top-level key `{}`", key.value),
                )
                .expected(format!("one of {}", RawGraph::KEYS.join(", ")))
                .suggest(&key.value, RawGraph::KEYS.iter().copied()),
            );
        }
        let defaults = match &raw.defaults {
            Some(q) => self.queue(q, QueueConfig::default(), None),
            None => QueueConfig::default(),
        };
        let name = raw
            .graph
            .as_ref()
            .map(|g| g.value.clone())
            .unwrap_or_else(|| {
                path.file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_else(|| "graph".into())
            });
        let mut plan = GraphPlan {
            name,
            description: raw.description.clone().unwrap_or_default(),
            nodes: Vec::new(),
            edges: Vec::new(),
            interrupts: Vec::new(),
        };
        let Some(nodes) = raw.nodes else {
            self.report(
                Diagnostic::new(
                    Pos {
                        line: 1,
                        column: 1,
                        len: 1,
                    },
                    "the graph has no `nodes:` section",
                )
                .expected("`nodes:` with at least one node"),
            );
            return plan;
        };
        let pending = self.nodes(nodes.value.0, overrides);
        let live = self.live;
        self.edges(&pending, defaults, &mut plan);
        let cyclic = self.cycles(&pending, &plan);
        plan.nodes = pending
            .iter()
            .map(|p| PlanNode {
                name: p.name.value.clone(),
                kind: p.kind.map(|k| k.name.to_string()).unwrap_or_default(),
                options: p.options.clone(),
                merge_wait: self.merge_wait(p),
                on_error: self.on_error(p, live),
            })
            .collect();
        if !cyclic {
            self.interrupts(&pending, &mut plan);
        }
        plan
    }

    fn nodes(
        &mut self,
        raw: Vec<(SpannedStr, Spanned<RawNode>)>,
        overrides: &[Override],
    ) -> Vec<Pending<'a>> {
        let mut seen: HashMap<String, u64> = HashMap::new();
        let mut out: Vec<Pending<'a>> = Vec::new();
        for (name, node) in raw {
            if let Some(line) = seen.get(&name.value) {
                self.report(
                    Diagnostic::new(
                        str_pos(&name),
                        format!(
                            "node `{}` is defined twice (first on line {line})",
                            name.value
                        ),
                    )
                    .node(&name.value)
                    .expected("a unique node name"),
                );
                continue;
            }
            seen.insert(name.value.clone(), name.referenced.line());
            let mut raw = node.value;
            let declared = raw.node.as_ref().and_then(|k| self.registry.get(&k.value));
            if declared.is_some_and(|k| matches!(k.role, crate::Role::Live)) {
                self.live = true;
            }
            if let Some(swap) = self.swaps.iter().find(|s| s.node == name.value) {
                let at = raw.node.as_ref().map_or(node.referenced, |k| k.referenced);
                raw.node = Some(Spanned::new(swap.kind.clone(), at, at));
                raw.with.0 = swap
                    .options
                    .iter()
                    .map(|(k, v)| {
                        (
                            Spanned::new(k.clone(), at, at),
                            Spanned::new(v.clone(), at, at),
                        )
                    })
                    .collect();
            }
            for key in &raw.unknown {
                let mut d =
                    Diagnostic::new(str_pos(key), format!("unknown node field `{}`", key.value))
                        .node(&name.value)
                        .expected(format!("one of {}", RawNode::KEYS.join(", ")))
                        .suggest(&key.value, RawNode::KEYS.iter().copied());
                if let Some((_, meant)) = FIELD_ALIASES.iter().find(|(a, _)| *a == key.value) {
                    d.help = Some(format!("did you mean `{meant}`?"));
                }
                self.report(d);
            }
            let kind = self.kind(&name, &node.referenced, &raw);
            out.push(Pending {
                name,
                kind,
                raw,
                options: Options::default(),
            });
        }
        for o in overrides {
            let Some(p) = out.iter_mut().find(|p| p.name.value == o.node) else {
                let names: Vec<&str> = seen.keys().map(String::as_str).collect();
                self.report(
                    Diagnostic::new(Pos::default(), format!("no node named `{}`", o.node))
                        .from_command_line(format!("--set {}.{}={}", o.node, o.option, o.value))
                        .expected("`--set NODE.OPTION=VALUE` with a node of the graph")
                        .suggest(&o.node, names),
                );
                continue;
            };
            self.from_cli.push((
                o.node.clone(),
                o.option.clone(),
                format!("--set {}.{}={}", o.node, o.option, o.value),
            ));
            let loc = p.name.referenced;
            let key = Spanned::new(o.option.clone(), loc, loc);
            let value = Spanned::new(o.value.clone(), loc, loc);
            p.raw.with.0.retain(|(k, _)| k.value != o.option);
            p.raw.with.0.push((key, value));
        }
        for p in &mut out {
            if let Some(kind) = p.kind {
                p.options = self.options(&p.name, kind, &p.raw);
            }
        }
        out
    }

    fn kind(
        &mut self,
        name: &SpannedStr,
        at: &serde_saphyr::Location,
        raw: &RawNode,
    ) -> Option<&'a NodeKind> {
        let Some(kind) = &raw.node else {
            self.report(
                Diagnostic::new(
                    Pos::from_location(at, 1),
                    format!("node `{}` has no kind", name.value),
                )
                .node(&name.value)
                .expected("`node: <kind>`, e.g. `node: audio.wav_file` (see `weir nodes`)"),
            );
            return None;
        };
        let found = self.registry.get(&kind.value);
        if found.is_none() {
            let names: Vec<&str> = self.registry.names().collect();
            self.report(
                Diagnostic::new(str_pos(kind), format!("unknown node kind `{}`", kind.value))
                    .node(&name.value)
                    .expected(format!("one of {}", names.join(", ")))
                    .suggest(&kind.value, names.iter().copied()),
            );
        }
        found
    }

    fn options(&mut self, name: &SpannedStr, kind: &NodeKind, raw: &RawNode) -> Options {
        let node = name.value.as_str();
        let mut options = Options::default();
        let mut seen = Vec::new();
        for (key, value) in &raw.with.0 {
            let cli = self
                .from_cli
                .iter()
                .find(|(n, o, _)| n == node && *o == key.value)
                .map(|(_, _, arg)| arg.clone());
            let mark = |d: Diagnostic| match &cli {
                Some(arg) => d.from_command_line(arg.clone()),
                None => d,
            };
            let Some(spec) = kind.option_spec(&key.value) else {
                let names: Vec<&str> = kind.options.iter().map(|o| o.name).collect();
                let expected = if names.is_empty() {
                    format!("no options: `{}` takes none", kind.name)
                } else {
                    format!("one of {}", names.join(", "))
                };
                self.report(mark(
                    Diagnostic::new(
                        str_pos(key),
                        format!("unknown option `{}` for {}", key.value, kind.name),
                    )
                    .node(node)
                    .expected(expected)
                    .suggest(&key.value, names),
                ));
                continue;
            };
            if seen.contains(&key.value) {
                self.report(mark(
                    Diagnostic::new(str_pos(key), format!("option `{}` is set twice", key.value))
                        .node(node),
                ));
                continue;
            }
            seen.push(key.value.clone());
            let v = match self.expand_env(&value.value) {
                Ok(v) => v,
                Err(var) => {
                    self.report(mark(
                        Diagnostic::new(
                            pos_of(value, 1),
                            format!("environment variable `{var}` is not set"),
                        )
                        .node(node)
                        .expected(format!(
                            "`{var}` in the environment, or `${{{var}:-default}}`"
                        )),
                    ));
                    continue;
                }
            };
            match spec.check(&v) {
                Ok(()) => options.insert(spec.name, v),
                Err(expected) => {
                    let len = match &value.value {
                        Value::String(s) => s.chars().count(),
                        other => other.to_string().chars().count(),
                    };
                    let mut d = Diagnostic::new(
                        pos_of(value, len),
                        format!("invalid value for option `{}`", spec.name),
                    )
                    .node(node)
                    .expected(expected);
                    if let (OptionType::Choice(choices), Value::String(s)) = (&spec.ty, &v) {
                        d = d.suggest(s, choices.iter().copied());
                    }
                    self.report(mark(d));
                }
            }
        }
        for spec in &kind.options {
            if seen.iter().any(|s| s == spec.name) {
                continue;
            }
            if spec.required {
                self.report(
                    Diagnostic::new(
                        str_pos(name),
                        format!("missing required option `{}` for {}", spec.name, kind.name),
                    )
                    .node(node)
                    .expected(format!(
                        "`with: {{ {}: <{}> }}` ({})",
                        spec.name, spec.ty, spec.doc
                    )),
                );
            } else if let Some(d) = &spec.default {
                options.insert(spec.name, d.clone());
            }
        }
        options
    }

    /// Replaces `${VAR}` and `${VAR:-default}` in strings; returns the missing variable.
    fn expand_env(&self, v: &Value) -> Result<Value, String> {
        let Value::String(s) = v else {
            return Ok(v.clone());
        };
        if !s.contains("${") {
            return Ok(v.clone());
        }
        let mut out = String::new();
        let mut rest = s.as_str();
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let Some(end) = after.find('}') else {
                out.push_str(&rest[start..]);
                rest = "";
                break;
            };
            let expr = &after[..end];
            let (var, default) = match expr.split_once(":-") {
                Some((v, d)) => (v, Some(d)),
                None => (expr, None),
            };
            match ((self.env)(var), default) {
                (Some(val), _) => out.push_str(&val),
                (None, Some(d)) => out.push_str(d),
                (None, None) => return Err(var.to_string()),
            }
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        Ok(Value::String(out))
    }

    fn queue(
        &mut self,
        q: &Spanned<RawQueue>,
        base: QueueConfig,
        node: Option<&str>,
    ) -> QueueConfig {
        let mut cfg = base;
        let with_node = |d: Diagnostic| match node {
            Some(n) => d.node(n),
            None => d,
        };
        for key in &q.value.unknown {
            self.report(with_node(
                Diagnostic::new(
                    str_pos(key),
                    format!("unknown queue setting `{}`", key.value),
                )
                .expected("`size` (packets) or `overflow`")
                .suggest(&key.value, RawQueue::KEYS.iter().copied()),
            ));
        }
        if let Some(size) = q.value.size.as_ref().or(q.value.queue.as_ref()) {
            if size.value == 0 {
                self.report(with_node(
                    Diagnostic::new(pos_of(size, 1), "queue size 0 would deadlock the edge")
                        .expected("a size of at least 1"),
                ));
            } else if size.value > QueueConfig::MAX_SIZE {
                self.report(with_node(
                    Diagnostic::new(
                        pos_of(size, size.value.to_string().len()),
                        format!("queue size {} is too large", size.value),
                    )
                    .expected(format!("a size in 1..={} packets", QueueConfig::MAX_SIZE)),
                ));
            } else {
                cfg.size = size.value as usize;
            }
        }
        if let Some(o) = &q.value.overflow {
            match o.value.parse::<Overflow>() {
                Ok(policy) => cfg.overflow = policy,
                Err(msg) => self.report(with_node(
                    Diagnostic::new(str_pos(o), msg)
                        .expected(format!("one of {}", Overflow::NAMES.join(", ")))
                        .suggest(&o.value, Overflow::NAMES),
                )),
            }
        }
        cfg
    }

    fn edges(&mut self, nodes: &[Pending<'a>], defaults: QueueConfig, plan: &mut GraphPlan) {
        let names: Vec<&str> = nodes.iter().map(|n| n.name.value.as_str()).collect();
        for (to_node, n) in nodes.iter().enumerate() {
            let node = n.name.value.as_str();
            let queue = match &n.raw.queue {
                Some(q) => self.queue(q, defaults, Some(node)),
                None => defaults,
            };
            let back_queue = self.back_queue(n, queue);
            let mut fed: Vec<&str> = Vec::new();
            let inputs = n.raw.inputs.0.iter().map(|(p, s)| (p, s, false));
            let backs = n.raw.back.0.iter().map(|(p, s)| (p, s, true));
            for (port, source, back) in inputs.chain(backs) {
                let to_port = match n.kind {
                    Some(kind) => match kind.input_index(&port.value) {
                        Some(i) => Some(i),
                        None => {
                            self.unknown_input(kind, node, port);
                            None
                        }
                    },
                    None => None,
                };
                if fed.contains(&port.value.as_str()) {
                    self.report(
                        Diagnostic::new(
                            str_pos(port),
                            format!("input `{}` is fed twice", port.value),
                        )
                        .node(node)
                        .expected("one source per input; add a node to merge streams"),
                    );
                    continue;
                }
                fed.push(&port.value);
                let Some((from_node, from_port)) = self.source(nodes, &names, node, source) else {
                    continue;
                };
                let (Some(to_port), Some(kind)) = (to_port, n.kind) else {
                    continue;
                };
                let Some(from_kind) = nodes[from_node].kind else {
                    continue;
                };
                let out_ty = from_kind.outputs[from_port].ty;
                let in_ty = kind.inputs[to_port].ty;
                if !out_ty.feeds(in_ty) {
                    self.report(
                        Diagnostic::new(
                            str_pos(source),
                            format!(
                                "`{}` carries {out_ty} but input `{}` takes {in_ty}",
                                source.value, port.value
                            ),
                        )
                        .node(node)
                        .expected(format!("an output of type {in_ty}")),
                    );
                    continue;
                }
                plan.edges.push(PlanEdge {
                    from_node,
                    from_port,
                    to_node,
                    to_port,
                    from_label: source.value.clone(),
                    to_label: format!("{node}.{}", port.value),
                    queue: if back { back_queue } else { queue },
                    back,
                });
            }
            if n.raw.inputs.0.is_empty() && !n.raw.back.0.is_empty() {
                self.report(
                    Diagnostic::new(
                        str_pos(&n.raw.back.0[0].0),
                        format!("node `{node}` has only back edges for inputs"),
                    )
                    .node(node)
                    .expected(
                        "at least one input under `in:` (a node ends when its `in:` inputs \
                         end; back edges do not keep it running)",
                    ),
                );
            }
            if let Some(kind) = n.kind {
                for p in kind.inputs.iter().filter(|p| p.required) {
                    if !fed.contains(&p.name) {
                        self.report(
                            Diagnostic::new(
                                str_pos(&n.name),
                                format!(
                                    "required input `{}` of {} is not connected",
                                    p.name, kind.name
                                ),
                            )
                            .node(node)
                            .expected(format!(
                                "`in: {{ {}: <node>.<port> }}` carrying {}",
                                p.name, p.ty
                            )),
                        );
                    }
                }
            }
        }
    }

    /// The queue of a node's back edges: `back_queue:` over the node's queue size with
    /// `drop_oldest`; `block` is refused (a loop that blocks can deadlock).
    fn back_queue(&mut self, n: &Pending<'a>, queue: QueueConfig) -> QueueConfig {
        let base = QueueConfig {
            size: queue.size,
            overflow: Overflow::DropOldest,
        };
        let Some(q) = &n.raw.back_queue else {
            return base;
        };
        let node = n.name.value.as_str();
        let cfg = self.queue(q, base, Some(node));
        if cfg.overflow != Overflow::Block {
            return cfg;
        }
        let pos = q
            .value
            .overflow
            .as_ref()
            .map_or_else(|| pos_of(q, 1), str_pos);
        self.report(
            Diagnostic::new(pos, "a back edge cannot block")
                .node(node)
                .expected(
                    "`overflow: drop_oldest` (the default) or `drop_newest`: a loop whose \
                     edge waits for room can deadlock",
                ),
        );
        base
    }

    fn unknown_input(&mut self, kind: &NodeKind, node: &str, port: &SpannedStr) {
        let ports: Vec<&str> = kind.inputs.iter().map(|p| p.name).collect();
        let expected = if ports.is_empty() {
            format!("no inputs: {} is a source", kind.name)
        } else {
            format!("one of {}", ports.join(", "))
        };
        self.report(
            Diagnostic::new(
                str_pos(port),
                format!("unknown input `{}` for {}", port.value, kind.name),
            )
            .node(node)
            .expected(expected)
            .suggest(&port.value, ports),
        );
    }

    /// Resolves `node.port` to (node index, output index), reporting problems.
    fn source(
        &mut self,
        nodes: &[Pending<'a>],
        names: &[&str],
        node: &str,
        source: &SpannedStr,
    ) -> Option<(usize, usize)> {
        let Some((from, port)) = source.value.rsplit_once('.') else {
            self.report(
                Diagnostic::new(
                    str_pos(source),
                    format!("`{}` is not a node output", source.value),
                )
                .node(node)
                .expected("`<node>.<port>`, e.g. `mic.audio`"),
            );
            return None;
        };
        let Some(i) = names.iter().position(|n| *n == from) else {
            self.report(
                Diagnostic::new(str_pos(source), format!("no node named `{from}`"))
                    .node(node)
                    .expected(format!("one of {}", names.join(", ")))
                    .suggest(from, names.iter().copied()),
            );
            return None;
        };
        let kind = nodes[i].kind?;
        match kind.output_index(port) {
            Some(p) => Some((i, p)),
            None => {
                let outs: Vec<&str> = kind.outputs.iter().map(|p| p.name).collect();
                let expected = if outs.is_empty() {
                    format!("nothing: {} is a sink without outputs", kind.name)
                } else {
                    format!("one of {}", outs.join(", "))
                };
                self.report(
                    Diagnostic::new(
                        str_pos(source),
                        format!("`{from}` ({}) has no output `{port}`", kind.name),
                    )
                    .node(node)
                    .expected(expected)
                    .suggest(port, outs),
                );
                None
            }
        }
    }

    /// Reports cycles; true if there is one.
    fn cycles(&mut self, nodes: &[Pending<'a>], plan: &GraphPlan) -> bool {
        let mut found = false;
        let mut g = DiGraph::<usize, usize>::new();
        let ids: Vec<_> = (0..nodes.len()).map(|i| g.add_node(i)).collect();
        for (e, edge) in plan.edges.iter().enumerate().filter(|(_, e)| !e.back) {
            g.add_edge(ids[edge.from_node], ids[edge.to_node], e);
        }
        for scc in petgraph::algo::tarjan_scc(&g) {
            let self_loop = scc.len() == 1 && g.contains_edge(scc[0], scc[0]);
            if scc.len() < 2 && !self_loop {
                continue;
            }
            found = true;
            let mut members: Vec<usize> = scc.iter().map(|n| g[*n]).collect();
            members.sort_unstable();
            // Report at the first edge (in file order) that closes the cycle.
            let Some(edge) = plan.edges.iter().find(|e| {
                !e.back && members.contains(&e.from_node) && members.contains(&e.to_node)
            }) else {
                continue;
            };
            let target = &nodes[edge.to_node];
            let pos = target
                .raw
                .inputs
                .0
                .iter()
                .find(|(_, src)| src.value == edge.from_label)
                .map(|(_, src)| str_pos(src))
                .unwrap_or_else(|| str_pos(&target.name));
            let path = cycle_path(&plan.edges, &members, edge.from_node)
                .into_iter()
                .map(|i| nodes[i].name.value.as_str())
                .collect::<Vec<_>>();
            self.report(
                Diagnostic::new(pos, format!("cycle: {}", path.join(" -> ")))
                    .node(&target.name.value)
                    .expected(
                        "a graph without cycles (data flows one way); to feed a result back on \
                     purpose, wire that input under `back:`",
                    ),
            );
        }
        found
    }

    fn on_error(&mut self, p: &Pending<'a>, live: bool) -> OnError {
        let is_source = p.kind.is_some_and(|k| k.is_source());
        let Some(policy) = &p.raw.on_error else {
            return if live && !is_source {
                OnError::Skip
            } else {
                OnError::Stop
            };
        };
        match policy.value.as_str() {
            "stop" => OnError::Stop,
            "restart" => OnError::Restart,
            "skip" if !is_source => OnError::Skip,
            "skip" => {
                self.report(
                    Diagnostic::new(str_pos(policy), "`on_error: skip` is for nodes with inputs")
                        .node(&p.name.value)
                        .expected("`on_error: stop` or `restart` (a source has no packet to skip)"),
                );
                OnError::Stop
            }
            other => {
                self.report(
                    Diagnostic::new(
                        str_pos(policy),
                        format!("unknown `on_error` policy `{other}`"),
                    )
                    .node(&p.name.value)
                    .expected(format!("one of {}", OnError::NAMES.join(", ")))
                    .suggest(other, OnError::NAMES),
                );
                OnError::Stop
            }
        }
    }

    fn merge_wait(&mut self, p: &Pending<'a>) -> Duration {
        let Some(ms) = &p.raw.merge_wait_ms else {
            return DEFAULT_MERGE_WAIT;
        };
        if !(0.0..=MAX_MERGE_WAIT_MS).contains(&ms.value) {
            self.report(
                Diagnostic::new(
                    pos_of(ms, ms.value.to_string().len()),
                    "invalid `merge_wait_ms`",
                )
                .node(&p.name.value)
                .expected(format!(
                    "milliseconds in 0..={MAX_MERGE_WAIT_MS}, found {}",
                    ms.value
                )),
            );
            return DEFAULT_MERGE_WAIT;
        }
        Duration::from_secs_f64(ms.value / 1000.0)
    }

    /// Resolves `interrupt: node.port` entries into the plan.
    fn interrupts(&mut self, nodes: &[Pending<'a>], plan: &mut GraphPlan) {
        let names: Vec<&str> = nodes.iter().map(|n| n.name.value.as_str()).collect();
        for (target, n) in nodes.iter().enumerate() {
            let Some(trigger) = &n.raw.interrupt else {
                continue;
            };
            let node = n.name.value.as_str();
            let Some((from, port)) = self.source(nodes, &names, node, trigger) else {
                continue;
            };
            let region = plan.downstream_of(target);
            if region.contains(&from) {
                let why = if from == target {
                    "a node cannot interrupt itself".to_string()
                } else {
                    format!("`{}` is downstream of `{node}`, so it would be flushed by its own interrupt", names[from])
                };
                self.report(
                    Diagnostic::new(str_pos(trigger), format!("`{}` cannot interrupt `{node}`: {why}", trigger.value))
                        .node(node)
                        .expected("an output of a node that is not downstream of this one, e.g. `vad.speech_start`"),
                );
                continue;
            }
            plan.interrupts.push(PlanInterrupt {
                trigger_node: from,
                trigger_port: port,
                target,
                label: trigger.value.clone(),
            });
        }
    }
}

/// Walks edges inside one strongly connected component from `start` back to `start`.
fn cycle_path(edges: &[PlanEdge], members: &[usize], start: usize) -> Vec<usize> {
    let mut path = vec![start];
    let mut current = start;
    for _ in 0..=members.len() {
        let next = edges
            .iter()
            .filter(|e| !e.back && e.from_node == current && members.contains(&e.to_node))
            .map(|e| e.to_node)
            .find(|n| *n == start || !path.contains(n));
        match next {
            Some(n) => {
                path.push(n);
                if n == start {
                    break;
                }
                current = n;
            }
            None => break,
        }
    }
    path
}

/// Validates a parsed graph; returns the plan and the problems found (sorted by position).
pub(super) fn validate(
    registry: &Registry,
    env: &dyn Fn(&str) -> Option<String>,
    swaps: &[KindSwap],
    raw: RawGraph,
    path: &Path,
    overrides: &[Override],
) -> (GraphPlan, Vec<Diagnostic>) {
    let mut v = Validator {
        registry,
        env,
        swaps,
        diags: Vec::new(),
        from_cli: Vec::new(),
        live: false,
    };
    let plan = v.graph(raw, path, overrides);
    v.diags
        .sort_by_key(|d| (d.pos.line, d.pos.column, d.message.clone()));
    (plan, v.diags)
}
