//! What a node sees of the running graph: its outputs, the graph clock, and whether its work
//! was interrupted. Every node method gets a [`Context`].

use std::sync::atomic::Ordering::{Acquire, Relaxed};
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{Receiver, Select, TryRecvError};

use crate::channel::EdgeSender;
use crate::clock::{Clock, ClockKind};
use crate::node::NodeError;
use crate::packet::{Packet, Payload, PortType, Timestamp};
use crate::port::Output;
use crate::runtime::GraphShared;
use crate::stats::NodeStats;

/// One output port: its fan-out edges, the interrupts it triggers and its last timestamp.
pub(crate) struct OutputPort {
    pub(crate) name: &'static str,
    pub(crate) ty: PortType,
    pub(crate) edges: Vec<EdgeSender>,
    /// Interrupts (indices into the graph's regions) fired by every packet on this port.
    pub(crate) interrupts: Vec<usize>,
    pub(crate) last: Option<Timestamp>,
}

/// What [`Context::wait_external`] returned.
#[derive(Debug, PartialEq, Eq)]
pub enum External<T> {
    /// A value from the external channel.
    Item(T),
    /// The external channel's senders are all gone.
    Closed,
    /// The graph is stopping or the node was interrupted: return to the runtime.
    Woken,
}

/// A node's view of the running graph, passed to every node method.
pub struct Context {
    pub(crate) me: usize,
    name: Arc<str>,
    pub(crate) outputs: Vec<OutputPort>,
    /// The node's epoch when the current call started.
    pub(crate) epoch: u64,
    pub(crate) shared: Arc<GraphShared>,
    pub(crate) control: Receiver<()>,
    pub(crate) stats: Arc<NodeStats>,
    /// Time spent waiting during the current call (full queues, the clock, outside input),
    /// left out of the node's process time.
    pub(crate) blocked: Duration,
    open_edges: usize,
    had_edges: bool,
}

impl Context {
    pub(crate) fn new(
        me: usize,
        name: Arc<str>,
        outputs: Vec<OutputPort>,
        shared: Arc<GraphShared>,
        control: Receiver<()>,
        stats: Arc<NodeStats>,
    ) -> Self {
        let open_edges = outputs.iter().map(|p| p.edges.len()).sum();
        Context {
            me,
            name,
            outputs,
            epoch: 0,
            shared,
            control,
            stats,
            blocked: Duration::ZERO,
            open_edges,
            had_edges: open_edges > 0,
        }
    }

    /// The node's name in the graph.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn clock(&self) -> &Clock {
        &self.shared.clock
    }

    /// Sends `value` at `timestamp` on output `port` to every connected input.
    ///
    /// Fails if the timestamp is earlier than the port's previous one (timestamps are
    /// monotonic per stream). If the node was interrupted since the current call began, the
    /// packet is discarded (counted as flushed) and the call should end soon: see
    /// [`Context::cancelled`].
    pub fn send<T: Payload>(
        &mut self,
        port: Output<T>,
        timestamp: Timestamp,
        value: T,
    ) -> Result<(), NodeError> {
        self.send_unchecked(port.index, Packet::new(timestamp, value))
    }

    /// Sends a packet received earlier (a pass-through) on output `port`.
    pub fn forward<T: Payload>(
        &mut self,
        port: Output<T>,
        packet: Packet,
    ) -> Result<(), NodeError> {
        if !packet.is::<T>() {
            return Err(NodeError::new(format!(
                "cannot forward {} on an output of {}",
                packet.port_type(),
                T::PORT
            )));
        }
        self.send_unchecked(port.index, packet)
    }

    /// Sends a packet on output `index`, checking its type at run time (for endpoints whose
    /// payload type is known only at run time).
    pub(crate) fn send_packet(&mut self, index: usize, packet: Packet) -> Result<(), NodeError> {
        let Some(p) = self.outputs.get(index) else {
            return Err(NodeError::new(format!("no output port #{index}")));
        };
        if p.ty != PortType::ANY && packet.port_type() != p.ty {
            return Err(NodeError::new(format!(
                "output `{}` carries {}, not {}",
                p.name,
                p.ty,
                packet.port_type()
            )));
        }
        self.send_unchecked(index, packet)
    }

    /// Sends a packet whose type matches the port (typed handles guarantee it).
    fn send_unchecked(&mut self, index: usize, mut packet: Packet) -> Result<(), NodeError> {
        let Some(p) = self.outputs.get_mut(index) else {
            return Err(NodeError::new(format!("no output port #{index}")));
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
        if self.shared.epochs[self.me].load(Acquire) != self.epoch {
            for edge in &p.edges {
                edge.flushed();
            }
            return Ok(());
        }
        for &region in &p.interrupts {
            self.shared.interrupt(region);
        }
        if p.edges.is_empty() {
            return Ok(());
        }
        packet.epoch = self.epoch;
        packet.fired = self.shared.interrupts_fired.load(Acquire);
        self.stats.packets_out.fetch_add(1, Relaxed);
        let before = p.edges.len();
        let last_edge = before - 1;
        let mut i = 0;
        let mut packet = Some(packet);
        let blocked = &mut self.blocked;
        p.edges.retain(|edge| {
            let pkt = if i == last_edge {
                packet.take()
            } else {
                packet.clone()
            };
            i += 1;
            pkt.is_some_and(|pkt| edge.send(pkt, blocked).is_ok())
        });
        self.open_edges -= before - p.edges.len();
        Ok(())
    }

    /// Counts `n` packets lost outside the graph: before they reached this node (a source
    /// that sees a gap in a network link's sequence numbers) or after it (a publisher whose
    /// subscriber is gone); `--stats` shows them in the `lost` table and `--metrics` as
    /// `weir_node_lost_total`.
    pub fn count_lost(&self, n: u64) {
        self.stats.lost.fetch_add(n, Relaxed);
    }

    /// True if `port` has at least one connected input.
    pub fn is_connected<T>(&self, port: Output<T>) -> bool {
        self.outputs
            .get(port.index)
            .is_some_and(|p| !p.edges.is_empty())
    }

    /// True if the node had connected outputs and none of them has a listener left.
    pub(crate) fn all_closed(&self) -> bool {
        self.had_edges && self.open_edges == 0
    }

    /// Graph time now (zero when every node has opened).
    pub fn now(&self) -> Timestamp {
        self.clock().now()
    }

    /// Which clock the graph runs on.
    pub fn clock_kind(&self) -> ClockKind {
        self.clock().kind()
    }

    /// True if the node was interrupted since the current call began, or the run is being
    /// aborted: long work (a decode loop, a synthesis loop) checks this between steps and
    /// returns early. Two relaxed atomic loads.
    pub fn cancelled(&self) -> bool {
        self.shared.epochs[self.me].load(Relaxed) != self.epoch || self.shared.aborting()
    }

    /// Counts an interrupt that cut output in progress (the `cut` column of `--stats`,
    /// `weir_node_cuts_total`): called from `flush` when the interrupt discarded something the
    /// node was delivering, e.g. a speaker that silenced an answer (a barge-in).
    pub fn count_cut(&self) {
        self.stats.cuts.fetch_add(1, Relaxed);
    }

    /// True once the graph was asked to stop (sources end, the rest drains).
    pub fn stopping(&self) -> bool {
        self.shared.stopping()
    }

    /// The node's epoch for the current call; it grows by one per interrupt.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Waits until graph time `t`. Returns false, early, if the node is interrupted or the
    /// graph stops meanwhile.
    pub fn sleep_until(&mut self, t: Timestamp) -> bool {
        let started = std::time::Instant::now();
        let reached = self.sleep_until_inner(t);
        self.blocked += started.elapsed();
        reached
    }

    fn sleep_until_inner(&mut self, t: Timestamp) -> bool {
        loop {
            if self.cancelled() || self.stopping() {
                return false;
            }
            if self.now() >= t {
                return true;
            }
            match self.clock().kind() {
                ClockKind::Real => {
                    let deadline = self.clock().instant_of(t);
                    if let Err(e) = self.control.recv_deadline(deadline) {
                        return e.is_timeout() || self.now() >= t;
                    }
                }
                ClockKind::Virtual => {
                    if !self.clock().wait(self.me, Some(t), &[]) {
                        continue;
                    }
                    let _ = self.control.recv();
                    if self.clock().woke(self.me, None) {
                        return !self.cancelled() && !self.stopping();
                    }
                }
            }
        }
    }

    /// Waits for a value from a channel outside the graph (a program, a device thread,
    /// standard input) while staying responsive: returns [`External::Woken`] as soon as the
    /// graph stops or the node is interrupted. The virtual clock counts the node idle while
    /// it waits.
    pub fn wait_external<T>(&mut self, rx: &Receiver<T>) -> External<T> {
        let started = std::time::Instant::now();
        let got = self.wait_external_inner(rx);
        self.blocked += started.elapsed();
        got
    }

    fn wait_external_inner<T>(&mut self, rx: &Receiver<T>) -> External<T> {
        loop {
            if self.cancelled() || self.stopping() {
                return External::Woken;
            }
            match rx.try_recv() {
                Ok(v) => return External::Item(v),
                Err(TryRecvError::Disconnected) => return External::Closed,
                Err(TryRecvError::Empty) => {}
            }
            if !self.clock().wait(self.me, None, &[]) {
                continue;
            }
            let mut select = Select::new();
            select.recv(&self.control);
            select.recv(rx);
            let op = select.select();
            let got = if op.index() == 0 {
                let _ = op.recv(&self.control);
                None
            } else {
                Some(op.recv(rx))
            };
            self.clock().woke(self.me, None);
            match got {
                None => continue,
                Some(Ok(v)) => return External::Item(v),
                Some(Err(_)) => return External::Closed,
            }
        }
    }
}
