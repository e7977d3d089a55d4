//! # weir-engine: the Weir graph runtime
//!
//! Weir runs real-time speech and language pipelines described as graphs of nodes in a YAML
//! file. This crate is the runtime; it knows nothing of audio or models (those are nodes, in
//! `weir-nodes`), and nodes know nothing of threads or channels.
//!
//! ## Architecture
//! - [`graph`]: a graph file is parsed with positions kept ([`serde_saphyr::Spanned`]), then
//!   validated against a [`Registry`] into a [`GraphPlan`]; every problem is reported at once
//!   with file, line, column, node, what was expected and the closest valid name.
//! - [`registry`]: [`NodeKind`]s declare typed ports, typed options with defaults, and a
//!   factory; the same declarations drive validation and `weir nodes`.
//! - [`node`]: the [`Node`] contract (`open`, `process`/`produce`, `close`) and [`Outputs`].
//! - [`packet`]: [`Packet`]s carry a media [`Timestamp`] and a cheaply clonable [`Payload`]
//!   (audio moves as `Arc<[f32]>`, never copied downstream).
//! - [`channel`]: every edge is a bounded crossbeam channel with an [`Overflow`] policy
//!   (`block`, `drop_oldest`, `drop_newest`); drops are counted.
//! - [`runtime`]: one thread per node; end of stream flows downstream by disconnection;
//!   stop drains; the first node error stops the graph and names the node.
//! - [`stats`]: per-node packets and process time (mean, p99), per-edge queue high-water
//!   mark and drops.
//!
//! ## Example: wiring two nodes
//! ```
//! use weir_engine::{channel_sink, channel_source, Graph, Loader, Packet, Payload, PortType,
//!     Text, Timestamp, Registry};
//! use std::path::Path;
//!
//! let mut registry = Registry::new();
//! let (source, tx) = channel_source("app.text_in", PortType::Text);
//! let (sink, rx) = channel_sink("app.text_out", PortType::Text);
//! registry.register(source);
//! registry.register(sink);
//!
//! let yaml = "
//! nodes:
//!   input: { node: app.text_in }
//!   output: { node: app.text_out, in: { in: input.out } }
//! ";
//! let plan = Loader::new(&registry).load_str(Path::new("inline.yaml"), yaml).unwrap();
//! let running = Graph::build(plan, &registry).unwrap().start().unwrap();
//! let text = Text { text: "hello".into(), start: Timestamp::ZERO, end: Timestamp::ZERO };
//! tx.send(Packet::new(Timestamp::ZERO, Payload::Text(text))).unwrap();
//! drop(tx); // end of stream
//! let got: Vec<Packet> = rx.iter().collect();
//! assert_eq!(got.len(), 1);
//! running.wait().unwrap();
//! ```

pub mod channel;
pub mod endpoint;
pub mod graph;
pub mod node;
pub mod packet;
pub mod registry;
pub mod runtime;
pub mod stats;

pub use channel::{Overflow, QueueConfig};
pub use endpoint::{channel_sink, channel_source};
pub use graph::{GraphFileError, GraphPlan, Loader, Override};
pub use node::{Flow, Node, NodeError, Outputs};
pub use packet::{
    AudioFrame, Event, Packet, Payload, PortType, SpeechSegment, Text, Timestamp, Token,
};
pub use registry::{NodeKind, OptionSpec, OptionType, Options, PortSpec, Registry};
pub use runtime::{Graph, RunError, Running, StopHandle};
pub use stats::RunReport;
