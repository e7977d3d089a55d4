//! # weir-engine: the Weir graph runtime
//!
//! Weir runs real-time speech and language pipelines described as graphs of nodes in a YAML
//! file. This crate is the runtime; it knows nothing of audio or models (payloads are opaque
//! values that implement [`Payload`]; the vocabulary lives in `weir-media`, the nodes in
//! `weir-nodes`), and nodes know nothing of threads or channels.
//!
//! ## Architecture
//! - [`graph`]: a graph file is parsed with positions kept ([`serde_saphyr::Spanned`]), then
//!   validated against a [`Registry`] into a [`GraphPlan`]; every problem is reported at once
//!   with file, line, column, node, what was expected and the closest valid name.
//! - [`registry`]: [`NodeKind`]s declare typed ports (from the node's [`Ports`] function),
//!   typed options (from its [`Config`]) and a factory; the same declarations drive
//!   validation and `weir nodes`.
//! - [`node`]: the contract: a [`Source`] produces, a [`Processor`] processes; both may
//!   `open`, `flush` (after an interrupt) and `close`. Each gets a [`Context`]: typed sends,
//!   the graph clock, and `cancelled()`.
//! - [`clock`]: one clock per graph, real or virtual (deterministic, as fast as the CPU).
//! - [`channel`]: every edge is a bounded crossbeam channel with an [`Overflow`] policy
//!   (`block`, `drop_oldest`, `drop_newest`); drops and flushes are counted.
//! - [`runtime`]: one thread per node, a control lane served before data, epochs for
//!   interrupts, timestamp-ordered merging of several inputs, an open barrier; end of stream
//!   flows downstream by disconnection; stop drains; the first error names the node.
//! - [`stats`]: per-node packets, process time and interrupts; per-edge queue high-water
//!   mark, drops and flushes.
//! - [`testing`]: a single-node harness on the virtual clock.
//!
//! ## Example: wiring two nodes
//! ```
//! use weir_engine::{channel_sink, channel_source, Graph, Loader, Packet, Payload, PortType,
//!     Registry, Timestamp};
//! use std::path::Path;
//!
//! #[derive(Debug)]
//! struct Note(String);
//! impl Payload for Note {
//!     const PORT: PortType = PortType::named("note");
//!     fn write_json(&self, o: &mut serde_json::Map<String, serde_json::Value>) {
//!         o.insert("note".into(), self.0.clone().into());
//!     }
//! }
//!
//! let mut registry = Registry::new();
//! let (source, tx) = channel_source("app.in", Note::PORT, 16);
//! let (sink, rx) = channel_sink("app.out", Note::PORT, 16);
//! registry.register(source).unwrap();
//! registry.register(sink).unwrap();
//!
//! let yaml = "
//! nodes:
//!   input: { node: app.in }
//!   output: { node: app.out, in: { in: input.out } }
//! ";
//! let plan = Loader::new(&registry).load_str(Path::new("inline.yaml"), yaml).unwrap();
//! let running = Graph::build(plan, &registry).unwrap().start().unwrap();
//! tx.send(Packet::new(Timestamp::ZERO, Note("hello".into()))).unwrap();
//! drop(tx); // end of stream
//! let got: Vec<Packet> = rx.iter().collect();
//! assert_eq!(got[0].get::<Note>().unwrap().0, "hello");
//! running.wait().unwrap();
//! ```

pub mod channel;
pub mod clock;
pub mod context;
pub mod endpoint;
pub mod graph;
pub mod node;
pub mod packet;
pub mod port;
pub mod registry;
pub mod runtime;
pub mod stats;
pub mod testing;

pub use channel::{Overflow, QueueConfig};
pub use clock::ClockKind;
pub use context::{Context, External};
pub use endpoint::{channel_sink, channel_source};
pub use graph::{GraphFileError, GraphPlan, Loader, Override};
pub use node::{Flow, NodeError, Processor, Source};
pub use packet::{Packet, Payload, PortType, Timestamp};
pub use port::{AnyInput, Incoming, Input, InputId, Output, PortSpec, Ports};
pub use registry::{
    Config, DuplicateKind, NoConfig, NodeKind, OptionSpec, OptionType, Options, Registry, Role,
};
pub use runtime::{Graph, Monitor, RunError, Running, StopHandle};
pub use stats::RunReport;
