//! The node contract: what every node implements, and how it sends packets.
//!
//! Guarantees the runtime gives a node:
//! - `open` is called once, on the node's own thread, before anything else;
//! - `process` is called once per input packet, in arrival order, with the index of the input
//!   port it came on (ports are numbered as declared in the node's [`NodeKind`](crate::NodeKind));
//! - a source (a node with no inputs) has `produce` called until it returns [`Flow::Done`] or
//!   the graph is stopped;
//! - `close` is called once after the last packet (end of stream) if `open` succeeded, and may
//!   still send packets (to flush buffered state); then the node's outputs end.

use std::error::Error as StdError;
use std::fmt;

use crate::channel::EdgeSender;
use crate::packet::{Packet, Timestamp};
use crate::stats::NodeStats;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

/// Whether a source has more to produce.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    /// Call `produce` again.
    Continue,
    /// The source is exhausted: end of stream.
    Done,
}

/// A failure inside a node; the runtime adds the node's name.
#[derive(Debug, thiserror::Error)]
#[error("{message}{}", source.as_ref().map(|s| format!(": {s}")).unwrap_or_default())]
pub struct NodeError {
    message: String,
    source: Option<Box<dyn StdError + Send + Sync + 'static>>,
}

impl NodeError {
    /// An error with a message only.
    pub fn new(message: impl Into<String>) -> Self {
        NodeError {
            message: message.into(),
            source: None,
        }
    }

    /// An error with a message and the underlying cause.
    pub fn with_source(
        message: impl Into<String>,
        source: impl StdError + Send + Sync + 'static,
    ) -> Self {
        NodeError {
            message: message.into(),
            source: Some(Box::new(source)),
        }
    }

    /// The message, without the cause.
    pub fn message(&self) -> &str {
        &self.message
    }
}

/// A processing step in a graph. Only `process` (or `produce`, for sources) is required.
pub trait Node: Send {
    /// Loads models and allocates buffers. Runs on the node's thread before any packet.
    fn open(&mut self) -> Result<(), NodeError> {
        Ok(())
    }

    /// Handles one packet that arrived on input `port`.
    fn process(&mut self, port: usize, packet: Packet, out: &mut Outputs) -> Result<(), NodeError> {
        let _ = (port, packet, out);
        Ok(())
    }

    /// Produces the next packets of a source (a node without inputs).
    fn produce(&mut self, out: &mut Outputs) -> Result<Flow, NodeError> {
        let _ = out;
        Ok(Flow::Done)
    }

    /// Flushes buffered state at end of stream.
    fn close(&mut self, out: &mut Outputs) -> Result<(), NodeError> {
        let _ = out;
        Ok(())
    }
}

impl fmt::Debug for dyn Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Node")
    }
}

/// One output port: its fan-out edges and the last timestamp it sent.
pub(crate) struct OutputPort {
    pub(crate) name: &'static str,
    pub(crate) edges: Vec<EdgeSender>,
    pub(crate) last: Option<Timestamp>,
}

/// The output ports of a node, indexed as declared in its kind.
pub struct Outputs {
    pub(crate) ports: Vec<OutputPort>,
    pub(crate) stats: Arc<NodeStats>,
    open_edges: usize,
    had_edges: bool,
}

impl Outputs {
    pub(crate) fn new(ports: Vec<OutputPort>, stats: Arc<NodeStats>) -> Self {
        let open_edges = ports.iter().map(|p| p.edges.len()).sum();
        Outputs {
            ports,
            stats,
            open_edges,
            had_edges: open_edges > 0,
        }
    }

    /// Sends `packet` on output `port` to every connected input.
    ///
    /// Fails if the port does not exist or if the timestamp is earlier than the port's
    /// previous one (timestamps are monotonic per stream). An edge whose receiver is gone is
    /// dropped silently: nobody is listening there any more.
    pub fn send(&mut self, port: usize, packet: Packet) -> Result<(), NodeError> {
        let Some(p) = self.ports.get_mut(port) else {
            return Err(NodeError::new(format!("no output port #{port}")));
        };
        if let Some(last) = p.last {
            if packet.timestamp < last {
                return Err(NodeError::new(format!(
                    "output `{}`: timestamp {} is earlier than the previous {}",
                    p.name, packet.timestamp, last
                )));
            }
        }
        p.last = Some(packet.timestamp);
        if p.edges.is_empty() {
            return Ok(());
        }
        self.stats.packets_out.fetch_add(1, Relaxed);
        let before = p.edges.len();
        let last_edge = p.edges.len() - 1;
        let mut i = 0;
        let mut packet = Some(packet);
        p.edges.retain(|edge| {
            let pkt = if i == last_edge {
                packet.take().expect("the last edge takes the packet once")
            } else {
                packet.clone().expect("packet kept until the last edge")
            };
            i += 1;
            edge.send(pkt).is_ok()
        });
        self.open_edges -= before - p.edges.len();
        Ok(())
    }

    /// True if `port` has at least one connected input.
    pub fn is_connected(&self, port: usize) -> bool {
        self.ports.get(port).is_some_and(|p| !p.edges.is_empty())
    }

    /// True if the node had connected outputs and none of them has a listener left.
    pub(crate) fn all_closed(&self) -> bool {
        self.had_edges && self.open_edges == 0
    }
}
