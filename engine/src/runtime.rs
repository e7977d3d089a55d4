//! The scheduler: one thread per node, bounded channels per edge, end-of-stream by channel
//! disconnection, a stop flag, and live statistics.
//!
//! End of stream: when every input of a node has disconnected (all upstream nodes ended),
//! the node's `close` runs and its outputs are dropped, which ends the stream downstream.
//! Stop (Ctrl-C): sources stop producing; everything already produced drains through.
//! Failure: the failing node's streams end, sources stop, and everything already produced
//! drains through the rest of the graph (nothing is lost); the run then returns the first
//! error with the failing node's name.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use crossbeam_channel::{Receiver, Select};

use crate::channel::edge;
use crate::graph::GraphPlan;
use crate::node::{Flow, Node, NodeError, OutputPort, Outputs};
use crate::packet::Packet;
use crate::registry::Registry;
use crate::stats::{EdgeReport, EdgeStats, NodeReport, NodeStats, RunReport};

/// Why a run failed.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// A node could not be built from its options.
    #[error("node `{node}` ({kind}): {source}")]
    Build {
        /// Node name.
        node: String,
        /// Node kind.
        kind: String,
        /// The cause.
        source: NodeError,
    },
    /// A node's `open` failed.
    #[error("node `{node}` failed to open: {source}")]
    Open {
        /// Node name.
        node: String,
        /// The cause.
        source: NodeError,
    },
    /// A node's `process`, `produce` or `close` failed.
    #[error("node `{node}` failed: {source}")]
    Node {
        /// Node name.
        node: String,
        /// The cause.
        source: NodeError,
    },
    /// A node panicked (a bug in the node).
    #[error("node `{node}` panicked: {message}")]
    Panic {
        /// Node name.
        node: String,
        /// The panic message.
        message: String,
    },
    /// The plan names a kind the registry does not have.
    #[error("node `{node}`: unknown kind `{kind}`")]
    UnknownKind {
        /// Node name.
        node: String,
        /// Node kind.
        kind: String,
    },
    /// A thread could not be started.
    #[error("cannot start a thread for node `{node}`: {source}")]
    Spawn {
        /// Node name.
        node: String,
        /// The cause.
        source: std::io::Error,
    },
}

impl RunError {
    /// The name of the node the error is about.
    pub fn node(&self) -> &str {
        match self {
            RunError::Build { node, .. }
            | RunError::Open { node, .. }
            | RunError::Node { node, .. }
            | RunError::Panic { node, .. }
            | RunError::UnknownKind { node, .. }
            | RunError::Spawn { node, .. } => node,
        }
    }
}

#[derive(Default)]
struct Control {
    stop: AtomicBool,
    error: Mutex<Option<RunError>>,
}

impl Control {
    fn fail(&self, e: RunError) {
        self.stop.store(true, Relaxed);
        let mut slot = self.error.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_none() {
            *slot = Some(e);
        }
    }
}

/// Asks a running graph to stop: sources end, what they produced drains. Cheap to clone.
#[derive(Clone)]
pub struct StopHandle(Arc<Control>);

impl StopHandle {
    /// Stops the sources; the rest of the graph drains and ends.
    pub fn stop(&self) {
        self.0.stop.store(true, Relaxed);
    }
}

struct BuiltNode {
    name: String,
    kind: String,
    node: Box<dyn Node>,
    outputs: Vec<&'static str>,
    inputs: usize,
}

/// A graph whose nodes are built and ready to start.
pub struct Graph {
    plan: GraphPlan,
    nodes: Vec<BuiltNode>,
}

impl Graph {
    /// Builds every node of a validated plan with the registry's factories.
    pub fn build(plan: GraphPlan, registry: &Registry) -> Result<Graph, RunError> {
        let mut nodes = Vec::with_capacity(plan.nodes.len());
        for n in &plan.nodes {
            let kind = registry.get(&n.kind).ok_or_else(|| RunError::UnknownKind {
                node: n.name.clone(),
                kind: n.kind.clone(),
            })?;
            let node = (kind.factory)(&n.options).map_err(|source| RunError::Build {
                node: n.name.clone(),
                kind: n.kind.clone(),
                source,
            })?;
            nodes.push(BuiltNode {
                name: n.name.clone(),
                kind: n.kind.clone(),
                node,
                outputs: kind.outputs.iter().map(|p| p.name).collect(),
                inputs: kind.inputs.len(),
            });
        }
        Ok(Graph { plan, nodes })
    }

    /// The validated plan.
    pub fn plan(&self) -> &GraphPlan {
        &self.plan
    }

    /// Runs the graph to the end and returns its statistics.
    pub fn run(self) -> Result<RunReport, RunError> {
        self.start()?.wait()
    }

    /// Starts one thread per node and returns at once.
    pub fn start(self) -> Result<Running, RunError> {
        let control = Arc::new(Control::default());
        let edge_stats: Vec<Arc<EdgeStats>> =
            self.plan.edges.iter().map(|_| Arc::default()).collect();
        let node_stats: Vec<Arc<NodeStats>> = self.nodes.iter().map(|_| Arc::default()).collect();

        let mut receivers: Vec<Vec<(usize, Receiver<Packet>)>> =
            self.nodes.iter().map(|_| Vec::new()).collect();
        let mut ports: Vec<Vec<OutputPort>> = self
            .nodes
            .iter()
            .map(|n| {
                n.outputs
                    .iter()
                    .map(|&name| OutputPort {
                        name,
                        edges: Vec::new(),
                        last: None,
                    })
                    .collect()
            })
            .collect();
        for (e, stats) in self.plan.edges.iter().zip(&edge_stats) {
            let (tx, rx) = edge(e.queue, stats.clone());
            ports[e.from_node][e.from_port].edges.push(tx);
            receivers[e.to_node].push((e.to_port, rx));
        }

        let started = Instant::now();
        let mut threads = Vec::with_capacity(self.nodes.len());
        let mut names = Vec::with_capacity(self.nodes.len());
        let iter = self
            .nodes
            .into_iter()
            .zip(ports)
            .zip(receivers)
            .zip(&node_stats);
        for (((built, ports), inputs), stats) in iter {
            names.push((built.name.clone(), built.kind.clone()));
            let outputs = Outputs::new(ports, stats.clone());
            let ctx = NodeThread {
                name: built.name.clone(),
                kind: built.kind,
                has_inputs: built.inputs > 0,
                control: control.clone(),
                stats: stats.clone(),
            };
            let mut node = built.node;
            let spawned = std::thread::Builder::new()
                .name(format!("weir:{}", built.name))
                .spawn(move || ctx.run(&mut *node, inputs, outputs));
            match spawned {
                Ok(h) => threads.push(h),
                Err(source) => {
                    control.fail(RunError::Spawn {
                        node: built.name,
                        source,
                    });
                    break;
                }
            }
        }
        Ok(Running {
            threads,
            control,
            names,
            node_stats,
            edge_stats,
            plan: self.plan,
            started,
        })
    }
}

/// A graph whose threads are running.
pub struct Running {
    threads: Vec<JoinHandle<()>>,
    control: Arc<Control>,
    names: Vec<(String, String)>,
    node_stats: Vec<Arc<NodeStats>>,
    edge_stats: Vec<Arc<EdgeStats>>,
    plan: GraphPlan,
    started: Instant,
}

impl Running {
    /// A handle that stops the graph from another thread (e.g. a Ctrl-C handler).
    pub fn stop_handle(&self) -> StopHandle {
        StopHandle(self.control.clone())
    }

    /// True once every node thread has ended.
    pub fn is_finished(&self) -> bool {
        self.threads.iter().all(JoinHandle::is_finished)
    }

    /// A snapshot of the statistics so far.
    pub fn report(&self) -> RunReport {
        let nodes = self
            .names
            .iter()
            .zip(&self.node_stats)
            .map(|((name, kind), s)| NodeReport {
                name: name.clone(),
                kind: kind.clone(),
                packets_in: s.packets_in.load(Relaxed),
                packets_out: s.packets_out.load(Relaxed),
                calls: s.process_time.count(),
                mean: s.process_time.mean(),
                p99: s.process_time.quantile(0.99),
                max: s.process_time.max(),
            })
            .collect();
        let edges = self
            .plan
            .edges
            .iter()
            .zip(&self.edge_stats)
            .map(|(e, s)| EdgeReport {
                from: e.from_label.clone(),
                to: e.to_label.clone(),
                capacity: e.queue.size,
                sent: s.sent.load(Relaxed),
                dropped: s.dropped.load(Relaxed),
                high_water: s.high_water.load(Relaxed),
            })
            .collect();
        RunReport {
            nodes,
            edges,
            wall_time: self.started.elapsed(),
        }
    }

    /// Waits for every node to end; returns the statistics or the first node error.
    pub fn wait(self) -> Result<RunReport, RunError> {
        match self.finish() {
            (report, None) => Ok(report),
            (_, Some(e)) => Err(e),
        }
    }

    /// Waits for every node to end; returns the statistics and the first error, if any.
    pub fn finish(mut self) -> (RunReport, Option<RunError>) {
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        (self.report(), control_error(&self.control))
    }
}

fn control_error(control: &Control) -> Option<RunError> {
    control
        .error
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take()
}

/// What a node's thread needs besides the node itself.
struct NodeThread {
    name: String,
    kind: String,
    has_inputs: bool,
    control: Arc<Control>,
    stats: Arc<NodeStats>,
}

impl NodeThread {
    fn run(self, node: &mut dyn Node, inputs: Vec<(usize, Receiver<Packet>)>, mut out: Outputs) {
        let span = tracing::info_span!("node", name = %self.name, kind = %self.kind);
        let _entered = span.enter();
        let result = catch_unwind(AssertUnwindSafe(|| self.lifecycle(node, inputs, &mut out)));
        match result {
            Ok(Ok(())) => tracing::debug!("ended"),
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "node failed");
                self.control.fail(e);
            }
            Err(panic) => {
                let message = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown panic".into());
                self.control.fail(RunError::Panic {
                    node: self.name.clone(),
                    message,
                });
            }
        }
        // Dropping `out` here ends the stream for every downstream node.
    }

    fn lifecycle(
        &self,
        node: &mut dyn Node,
        inputs: Vec<(usize, Receiver<Packet>)>,
        out: &mut Outputs,
    ) -> Result<(), RunError> {
        node.open().map_err(|source| RunError::Open {
            node: self.name.clone(),
            source,
        })?;
        let body = if self.has_inputs {
            self.consume(node, inputs, out)
        } else {
            self.produce(node, out)
        };
        let closed = node.close(out);
        body.map_err(|source| self.failed(source))?;
        closed.map_err(|source| self.failed(source))
    }

    fn failed(&self, source: NodeError) -> RunError {
        RunError::Node {
            node: self.name.clone(),
            source,
        }
    }

    fn stopping(&self) -> bool {
        self.control.stop.load(Relaxed)
    }

    fn produce(&self, node: &mut dyn Node, out: &mut Outputs) -> Result<(), NodeError> {
        while !self.stopping() && !out.all_closed() {
            let t0 = Instant::now();
            let flow = {
                let _s = tracing::debug_span!("produce").entered();
                node.produce(out)?
            };
            self.stats.process_time.record(t0.elapsed());
            if flow == Flow::Done {
                break;
            }
        }
        Ok(())
    }

    fn consume(
        &self,
        node: &mut dyn Node,
        mut inputs: Vec<(usize, Receiver<Packet>)>,
        out: &mut Outputs,
    ) -> Result<(), NodeError> {
        if let [(port, rx)] = inputs.as_slice() {
            for packet in rx.iter() {
                self.call(node, *port, packet, out)?;
            }
            return Ok(());
        }
        while !inputs.is_empty() {
            let mut select = Select::new();
            for (_, rx) in &inputs {
                select.recv(rx);
            }
            let op = select.select();
            let i = op.index();
            match op.recv(&inputs[i].1) {
                Ok(packet) => {
                    let port = inputs[i].0;
                    self.call(node, port, packet, out)?;
                }
                Err(_) => {
                    inputs.swap_remove(i);
                }
            }
        }
        Ok(())
    }

    fn call(
        &self,
        node: &mut dyn Node,
        port: usize,
        packet: Packet,
        out: &mut Outputs,
    ) -> Result<(), NodeError> {
        self.stats.packets_in.fetch_add(1, Relaxed);
        let t0 = Instant::now();
        {
            let _s = tracing::debug_span!("process", port).entered();
            node.process(port, packet, out)?;
        }
        self.stats.process_time.record(t0.elapsed());
        Ok(())
    }
}
