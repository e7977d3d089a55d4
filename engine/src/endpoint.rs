//! Channel endpoints: node kinds that connect a graph to the program embedding it.
//!
//! [`channel_source`] makes a source kind fed from a bounded crossbeam `Sender` the program
//! keeps; [`channel_sink`] makes a sink kind whose packets the program reads from a bounded
//! `Receiver`. A full endpoint pushes back: the program's `send` waits, and a sink waits for
//! the program to read. Tests use them as a vector source and a collecting sink.

use std::sync::Mutex;

use crossbeam_channel::{Receiver, Sender};

use crate::context::{Context, External};
use crate::node::{AnyNode, Flow, NodeError, Processor, Source};
use crate::packet::{Packet, PortType};
use crate::port::{Incoming, Ports};
use crate::registry::{NoConfig, NodeKind};

/// The largest endpoint capacity, in packets.
pub const MAX_ENDPOINT_CAPACITY: usize = 65_536;

struct ChannelSource {
    rx: Receiver<Packet>,
}

impl Source for ChannelSource {
    fn produce(&mut self, ctx: &mut Context) -> Result<Flow, NodeError> {
        match ctx.wait_external(&self.rx) {
            External::Item(p) => {
                ctx.send_packet(0, p)?;
                Ok(Flow::Continue)
            }
            External::Woken => Ok(Flow::Continue),
            External::Closed => Ok(Flow::Done),
        }
    }
}

struct ChannelSink {
    tx: Sender<Packet>,
}

impl Processor for ChannelSink {
    fn process(&mut self, input: Incoming, _ctx: &mut Context) -> Result<(), NodeError> {
        self.tx
            .send(input.packet)
            .map_err(|_| NodeError::new("the program stopped reading this sink"))
    }
}

fn check_capacity(capacity: usize) -> usize {
    capacity.clamp(1, MAX_ENDPOINT_CAPACITY)
}

/// A source kind `name` with one output `out` of type `ty`, fed by the returned sender
/// (holding at most `capacity` packets, clamped to 1..=[`MAX_ENDPOINT_CAPACITY`]). The stream
/// ends when every clone of the sender is dropped. The kind can be used by one graph node.
pub fn channel_source(
    name: &'static str,
    ty: PortType,
    capacity: usize,
) -> (NodeKind, Sender<Packet>) {
    let (tx, rx) = crossbeam_channel::bounded(check_capacity(capacity));
    let mut ports = Ports::default();
    ports.dynamic_output("out", ty, "packets from the program");
    let kind = NodeKind::with_factory::<NoConfig>(
        name,
        "packets sent by the embedding program",
        ports,
        move |_| Ok(AnyNode::Source(Box::new(ChannelSource { rx: rx.clone() }))),
    );
    (kind, tx)
}

/// A sink kind `name` with one input `in` of type `ty`, whose packets arrive on the
/// returned receiver (holding at most `capacity` packets, clamped to
/// 1..=[`MAX_ENDPOINT_CAPACITY`]); it disconnects when the graph ends. The kind builds one
/// node only: the node owns the only sender, so the receiver sees the end of the stream.
pub fn channel_sink(
    name: &'static str,
    ty: PortType,
    capacity: usize,
) -> (NodeKind, Receiver<Packet>) {
    let (tx, rx) = crossbeam_channel::bounded(check_capacity(capacity));
    let slot = Mutex::new(Some(tx));
    let mut ports = Ports::default();
    ports.dynamic_input("in", ty, "packets for the program");
    let kind = NodeKind::with_factory::<NoConfig>(
        name,
        "packets delivered to the embedding program",
        ports,
        move |_| {
            let tx = slot
                .lock()
                .map_err(|_| NodeError::new("sink state poisoned"))?
                .take()
                .ok_or_else(|| {
                    NodeError::new(format!(
                        "`{name}` can feed one graph node only, and it is taken"
                    ))
                })?;
            Ok(AnyNode::Processor(Box::new(ChannelSink { tx })))
        },
    );
    (kind, rx)
}
