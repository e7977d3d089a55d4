//! A single-node test harness, like MediaPipe's calculator runner: feed packets to a node's
//! inputs, run it on real threads inside a real graph, collect what it sends.
//!
//! ```
//! # use weir_engine::{testing::NodeRunner, *};
//! # #[derive(Debug)] struct Num(u64);
//! # impl Payload for Num {
//! #     const PORT: PortType = PortType::named("num");
//! #     fn write_json(&self, _: &mut serde_json::Map<String, serde_json::Value>) {}
//! # }
//! struct Double { input: Input<Num>, output: Output<Num> }
//! impl Processor for Double {
//!     fn process(&mut self, input: Incoming, ctx: &mut Context) -> Result<(), NodeError> {
//!         let n = self.input.expect(&input)?.0;
//!         ctx.send(self.output, input.timestamp(), Num(2 * n))
//!     }
//! }
//! let kind = NodeKind::processor(
//!     "demo.double", "doubles",
//!     |p| (p.input::<Num>("in", ""), p.output::<Num>("out", "")),
//!     |_: NoConfig, (input, output)| Ok(Double { input, output }),
//! );
//! let out = NodeRunner::new(kind)
//!     .feed("in", (1..=3).map(|i| Packet::new(Timestamp::from_nanos(i), Num(i))))
//!     .run()
//!     .unwrap();
//! let doubled: Vec<u64> = out.values::<Num>("out").iter().map(|n| n.0).collect();
//! assert_eq!(doubled, [2, 4, 6]);
//! ```
//!
//! Runs on the virtual clock by default, with every fed packet released at its own
//! timestamp, so a test sees the same order and the same times on every run and runs as
//! fast as the CPU allows.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use serde_json::Value;

use crate::clock::ClockKind;
use crate::context::Context;
use crate::graph::Loader;
use crate::node::{AnyNode, Flow, NodeError, Processor, Source};
use crate::packet::{Packet, Payload, PortType};
use crate::port::{Incoming, Ports};
use crate::registry::{NoConfig, NodeKind, Registry};
use crate::runtime::{Graph, RunError};
use crate::stats::RunReport;

/// Why a harness run failed.
#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    /// The generated graph did not validate (a bad port or option name in the test).
    #[error("the test graph does not load:\n{0}")]
    Graph(String),
    /// The run failed.
    #[error(transparent)]
    Run(#[from] RunError),
}

/// Feeds one node, runs it, and collects its outputs.
pub struct NodeRunner {
    kind: NodeKind,
    options: Vec<(String, Value)>,
    feeds: Vec<(String, Vec<Packet>)>,
    trigger: Option<Vec<Packet>>,
    clock: ClockKind,
    paced: bool,
}

/// What a node sent, per output port, and the run's statistics.
#[derive(Debug)]
pub struct RunOutput {
    /// Packets per output port name, in the order sent.
    pub outputs: BTreeMap<String, Vec<Packet>>,
    /// Statistics; the node under test is called `node`, its feeders `feed_<port>`.
    pub report: RunReport,
}

impl RunOutput {
    /// The packets sent on output `port`.
    pub fn packets(&self, port: &str) -> &[Packet] {
        self.outputs
            .get(port)
            .map(Vec::as_slice)
            .unwrap_or_default()
    }

    /// The payloads of type `T` sent on output `port`.
    pub fn values<T: Payload>(&self, port: &str) -> Vec<&T> {
        self.packets(port).iter().filter_map(Packet::get).collect()
    }
}

struct Feeder {
    packets: std::vec::IntoIter<Packet>,
    paced: bool,
}

impl Source for Feeder {
    fn produce(&mut self, ctx: &mut Context) -> Result<Flow, NodeError> {
        let Some(p) = self.packets.next() else {
            return Ok(Flow::Done);
        };
        if self.paced && !ctx.sleep_until(p.timestamp) {
            return Ok(Flow::Done);
        }
        ctx.send_packet(0, p)?;
        Ok(Flow::Continue)
    }
}

struct Collector(Arc<Mutex<Vec<Packet>>>);

impl Processor for Collector {
    fn process(&mut self, input: Incoming, _ctx: &mut Context) -> Result<(), NodeError> {
        self.0
            .lock()
            .map_err(|_| NodeError::new("collector poisoned"))?
            .push(input.packet);
        Ok(())
    }
}

/// A kind name for a harness node; leaked, as kind names are `'static` (a few bytes per
/// run, in tests only).
fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

fn feeder_kind(name: &'static str, ty: PortType, packets: Vec<Packet>, paced: bool) -> NodeKind {
    let mut ports = Ports::default();
    ports.dynamic_output("out", ty, "fed packets");
    let slot = Mutex::new(Some(packets));
    NodeKind::with_factory::<NoConfig>(name, "test feeder", ports, move |_| {
        let packets = slot
            .lock()
            .ok()
            .and_then(|mut s| s.take())
            .unwrap_or_default();
        Ok(AnyNode::Source(Box::new(Feeder {
            packets: packets.into_iter(),
            paced,
        })))
    })
}

impl NodeRunner {
    /// A runner for one node of `kind`.
    pub fn new(kind: NodeKind) -> Self {
        NodeRunner {
            kind,
            options: Vec::new(),
            feeds: Vec::new(),
            trigger: None,
            clock: ClockKind::Virtual,
            paced: true,
        }
    }

    /// Sets an option, as `with:` would.
    pub fn option(mut self, name: &str, value: impl Into<Value>) -> Self {
        self.options.push((name.to_string(), value.into()));
        self
    }

    /// Feeds `packets` (timestamps non-decreasing) to input `port`.
    pub fn feed(mut self, port: &str, packets: impl IntoIterator<Item = Packet>) -> Self {
        self.feeds
            .push((port.to_string(), packets.into_iter().collect()));
        self
    }

    /// Interrupts the node at the time of each of `packets` (their payloads do not matter).
    pub fn interrupt_at(mut self, packets: impl IntoIterator<Item = Packet>) -> Self {
        self.trigger = Some(packets.into_iter().collect());
        self
    }

    /// Runs on `clock` (the virtual clock by default).
    pub fn clock(mut self, clock: ClockKind) -> Self {
        self.clock = clock;
        self
    }

    /// Releases fed packets as fast as possible instead of at their timestamps.
    pub fn unpaced(mut self) -> Self {
        self.paced = false;
        self
    }

    /// Runs the node until its inputs end and returns what it sent.
    pub fn run(self) -> Result<RunOutput, RunnerError> {
        let mut registry = Registry::new();
        let kind_name = self.kind.name;
        let inputs: Vec<(&'static str, PortType)> =
            self.kind.inputs.iter().map(|p| (p.name, p.ty)).collect();
        let outputs: Vec<&'static str> = self.kind.outputs.iter().map(|p| p.name).collect();
        let mut yaml = String::from("nodes:\n");
        let mut wiring = Vec::new();
        for (port, packets) in self.feeds {
            let ty = inputs
                .iter()
                .find(|(n, _)| *n == port)
                .map(|(_, ty)| *ty)
                .unwrap_or(PortType::ANY);
            let ty = match (ty, packets.first()) {
                (PortType::ANY, Some(p)) => p.port_type(),
                (ty, _) => ty,
            };
            let name = leak(format!("test.feed.{port}"));
            let _ = registry.register(feeder_kind(name, ty, packets, self.paced));
            yaml.push_str(&format!("  feed_{port}: {{ node: {name} }}\n"));
            wiring.push(format!("{port}: feed_{port}.out"));
        }
        let mut interrupt = String::new();
        if let Some(packets) = self.trigger {
            let ty = packets.first().map_or(PortType::ANY, Packet::port_type);
            let name = leak("test.trigger".to_string());
            let _ = registry.register(feeder_kind(name, ty, packets, self.paced));
            yaml.push_str(&format!("  trigger: {{ node: {name} }}\n"));
            interrupt = ", interrupt: trigger.out".to_string();
        }
        let with =
            serde_json::to_string(&self.options.into_iter().collect::<serde_json::Map<_, _>>())
                .unwrap_or_else(|_| "{}".into());
        yaml.push_str(&format!(
            "  node: {{ node: {kind_name}, in: {{ {} }}, with: {with}{interrupt} }}\n",
            wiring.join(", ")
        ));
        let _ = registry.register(self.kind);
        let mut collected = BTreeMap::new();
        for port in outputs {
            let store = Arc::new(Mutex::new(Vec::new()));
            collected.insert(port.to_string(), store.clone());
            let mut ports = Ports::default();
            ports.dynamic_input("in", PortType::ANY, "collected packets");
            let name = leak(format!("test.collect.{port}"));
            let slot = Mutex::new(Some(store));
            let _ = registry.register(NodeKind::with_factory::<NoConfig>(
                name,
                "test collector",
                ports,
                move |_| {
                    let store = slot
                        .lock()
                        .ok()
                        .and_then(|mut s| s.take())
                        .unwrap_or_default();
                    Ok(AnyNode::Processor(Box::new(Collector(store))))
                },
            ));
            yaml.push_str(&format!(
                "  collect_{port}: {{ node: {name}, in: {{ in: node.{port} }}, queue: {{ size: 1024 }} }}\n"
            ));
        }
        let plan = Loader::new(&registry)
            .load_str(Path::new("node-runner.yaml"), &yaml)
            .map_err(|e| RunnerError::Graph(e.to_string()))?;
        let report = Graph::build(plan, &registry)?
            .with_clock(self.clock)
            .run()?;
        let outputs = collected
            .into_iter()
            .map(|(k, v)| {
                let packets = std::mem::take(&mut *v.lock().unwrap_or_else(|p| p.into_inner()));
                (k, packets)
            })
            .collect();
        Ok(RunOutput { outputs, report })
    }
}
