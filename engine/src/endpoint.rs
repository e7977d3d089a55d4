//! Channel endpoints: node kinds that connect a graph to the program embedding it.
//!
//! [`channel_source`] makes a source kind fed from a crossbeam `Sender` the program keeps;
//! [`channel_sink`] makes a sink kind whose packets the program reads from a `Receiver`.
//! Tests use them as a vector source and a collecting sink.

use std::sync::Mutex;
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use crate::node::{Flow, Node, NodeError, Outputs};
use crate::packet::{Packet, PortType};
use crate::registry::{NodeKind, PortSpec};

struct ChannelSource {
    rx: Receiver<Packet>,
}

impl Node for ChannelSource {
    fn produce(&mut self, out: &mut Outputs) -> Result<Flow, NodeError> {
        // Wake up now and then so that a stop request is seen even when no packet comes.
        match self.rx.recv_timeout(Duration::from_millis(50)) {
            Ok(p) => {
                out.send(0, p)?;
                Ok(Flow::Continue)
            }
            Err(RecvTimeoutError::Timeout) => Ok(Flow::Continue),
            Err(RecvTimeoutError::Disconnected) => Ok(Flow::Done),
        }
    }
}

struct ChannelSink {
    tx: Sender<Packet>,
}

impl Node for ChannelSink {
    fn process(
        &mut self,
        _port: usize,
        packet: Packet,
        _out: &mut Outputs,
    ) -> Result<(), NodeError> {
        self.tx
            .send(packet)
            .map_err(|_| NodeError::new("the program stopped reading this sink"))
    }
}

/// A source kind `name` with one output `out` of type `ty`, fed by the returned sender.
/// The stream ends when every clone of the sender is dropped. The kind can be used by one
/// graph node.
pub fn channel_source(name: &'static str, ty: PortType) -> (NodeKind, Sender<Packet>) {
    let (tx, rx) = crossbeam_channel::unbounded();
    let kind = NodeKind::new(name, "packets sent by the embedding program", move |_| {
        Ok(Box::new(ChannelSource { rx: rx.clone() }))
    })
    .output(PortSpec::new("out", ty, "packets from the program"));
    (kind, tx)
}

/// A sink kind `name` with one input `in` of type `ty`, whose packets arrive on the
/// returned receiver; it disconnects when the graph ends. The kind builds one node only: the
/// node owns the only sender, so the receiver sees the end of the stream.
pub fn channel_sink(name: &'static str, ty: PortType) -> (NodeKind, Receiver<Packet>) {
    let (tx, rx) = crossbeam_channel::unbounded();
    let slot = Mutex::new(Some(tx));
    let kind = NodeKind::new(
        name,
        "packets delivered to the embedding program",
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
            Ok(Box::new(ChannelSink { tx }))
        },
    )
    .input(PortSpec::new("in", ty, "packets for the program"));
    (kind, rx)
}
