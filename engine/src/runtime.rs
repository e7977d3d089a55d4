//! The scheduler: one thread per node, bounded channels per edge, a control lane per node,
//! epochs for interrupts, the graph clock, and live statistics.
//!
//! - **Open barrier.** Every node opens on its own thread (models load in parallel); sources
//!   start producing only when all have opened.
//! - **End of stream.** When every input of a node has disconnected, its `close` runs and its
//!   outputs are dropped, which ends the stream downstream.
//! - **Stop** (Ctrl-C, SIGTERM): sources stop producing, even while asleep; everything already
//!   produced drains through.
//! - **Failure.** The failing node's streams end, sources stop, and everything already
//!   produced drains through the rest of the graph; the run returns the first error with the
//!   failing node's name.
//! - **Interrupts.** A packet on a trigger port interrupts a target node: the epoch of the
//!   target and of every node downstream of it grows by one, in topological order, and each
//!   of them is woken on its control lane, which is served before data. Work in progress sees
//!   [`crate::Context::cancelled`]; packets made in an older epoch are discarded at send or
//!   on arrival and counted as `flushed` per edge; each node's `flush` runs before it handles
//!   anything else. A packet made before an interrupt can never reach a sink after it, and
//!   what was queued for the target itself when the interrupt fired (a draft segment sent
//!   just before the VAD's `resumed`) is discarded too, whoever sent it.
//! - **Merge.** A node with several inputs gets their packets in timestamp order (ties by
//!   port): it waits for a packet on every open input, or at most `merge_wait_ms` of graph
//!   time for a silent one, then takes the earliest.

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use crossbeam_channel::{Select, TryRecvError};

use crate::channel::{edge, EdgeReceiver};
use crate::clock::{Clock, ClockKind};
use crate::context::{Context, OutputPort};
use crate::graph::{GraphPlan, OnError, RestartPolicy};
use crate::node::{AnyNode, Flow, NodeError, Processor, Source};
use crate::packet::{Packet, Timestamp};
use crate::port::{Incoming, InputId};
use crate::registry::{Factory, Options, Registry};
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
    /// A node's `process`, `produce`, `flush` or `close` failed.
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

/// Waits until every node has opened (or failed to).
struct OpenBarrier {
    arrived: Mutex<usize>,
    all: Condvar,
    total: usize,
}

impl OpenBarrier {
    fn arrive_and_wait(&self) {
        let mut n = self.arrived.lock().unwrap_or_else(|p| p.into_inner());
        *n += 1;
        if *n >= self.total {
            self.all.notify_all();
            return;
        }
        while *n < self.total {
            n = self.all.wait(n).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// A node thread that never started counts as arrived.
    fn release_all(&self) {
        let mut n = self.arrived.lock().unwrap_or_else(|p| p.into_inner());
        *n = self.total;
        self.all.notify_all();
    }
}

/// What every node thread of a running graph shares.
pub(crate) struct GraphShared {
    /// Each node's epoch: the number of interrupts that reached it.
    pub(crate) epochs: Box<[AtomicU64]>,
    /// For each interrupt: the target and the nodes downstream of it, in topological order.
    regions: Vec<Vec<usize>>,
    /// How many interrupts have fired so far; every packet is stamped with it when sent.
    pub(crate) interrupts_fired: AtomicU64,
    /// Per node: the count of interrupts fired when it was last the target of one. Packets
    /// stamped earlier that are still queued on its inputs are discarded: what was sent to
    /// an interrupted node before the interrupt is never worked on after it.
    pub(crate) target_marks: Box<[AtomicU64]>,
    stop: AtomicBool,
    abort: AtomicBool,
    error: Mutex<Option<RunError>>,
    pub(crate) clock: Clock,
    node_stats: Vec<Arc<NodeStats>>,
    sources: Vec<usize>,
    barrier: OpenBarrier,
    /// Stalls reported by the watchdog.
    stalls: Mutex<Vec<String>>,
    /// Set when every node thread has ended.
    done: AtomicBool,
}

impl GraphShared {
    pub(crate) fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    pub(crate) fn aborting(&self) -> bool {
        self.abort.load(Ordering::Relaxed)
    }

    fn abort(&self) {
        self.abort.store(true, Ordering::Relaxed);
        self.stop.store(true, Ordering::Relaxed);
        for n in 0..self.epochs.len() {
            self.clock.signal(n);
        }
    }

    fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
        for &s in &self.sources {
            self.clock.signal(s);
        }
    }

    fn fail(&self, e: RunError) {
        {
            let mut slot = self.error.lock().unwrap_or_else(|p| p.into_inner());
            if slot.is_none() {
                *slot = Some(e);
            }
        }
        self.stop();
    }

    /// Interrupts region `region`: bumps every epoch in it (upstream first), then wakes each
    /// node so it flushes at once.
    pub(crate) fn interrupt(&self, region: usize) {
        let Some(nodes) = self.regions.get(region) else {
            return;
        };
        let fired = self.interrupts_fired.fetch_add(1, Ordering::AcqRel) + 1;
        if let Some(&target) = nodes.first() {
            self.target_marks[target].fetch_max(fired, Ordering::AcqRel);
        }
        for &n in nodes {
            self.epochs[n].fetch_add(1, Ordering::Release);
            self.node_stats[n]
                .interrupts
                .fetch_add(1, Ordering::Relaxed);
        }
        for &n in nodes {
            self.clock.signal(n);
        }
    }
}

/// Asks a running graph to stop: sources end (waking if asleep), what they produced drains.
/// Cheap to clone.
#[derive(Clone)]
pub struct StopHandle(Arc<GraphShared>);

impl StopHandle {
    /// Stops the sources; the rest of the graph drains and ends.
    pub fn stop(&self) {
        self.0.stop();
    }

    /// Ends the run now: sources stop, every node drops what is queued for it, work in
    /// progress sees [`crate::Context::cancelled`], and every node still runs `close`, so
    /// files are finalized.
    pub fn abort(&self) {
        self.0.abort();
    }
}

struct BuiltNode {
    name: String,
    kind: String,
    node: AnyNode,
    outputs: Vec<(&'static str, crate::PortType)>,
    factory: Factory,
}

/// A graph whose nodes are built and ready to start.
pub struct Graph {
    plan: GraphPlan,
    nodes: Vec<BuiltNode>,
    clock: ClockKind,
    watchdog: Option<std::time::Duration>,
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
            let factory = kind.factory();
            let node = factory(&n.options).map_err(|source| RunError::Build {
                node: n.name.clone(),
                kind: n.kind.clone(),
                source,
            })?;
            nodes.push(BuiltNode {
                name: n.name.clone(),
                kind: n.kind.clone(),
                node,
                outputs: kind.outputs.iter().map(|p| (p.name, p.ty)).collect(),
                factory,
            });
        }
        Ok(Graph {
            plan,
            nodes,
            clock: ClockKind::Real,
            watchdog: None,
        })
    }

    /// Runs on `clock` instead of the real clock.
    pub fn with_clock(mut self, clock: ClockKind) -> Self {
        self.clock = clock;
        self
    }

    /// Reports, while the graph runs, a node that works on one packet longer than `limit`
    /// and a queue that stays full longer than `limit` (a log line and
    /// [`RunReport::stalls`]).
    pub fn with_watchdog(mut self, limit: std::time::Duration) -> Self {
        self.watchdog = Some(limit);
        self
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
        let count = self.nodes.len();
        let started = Instant::now();
        let clock = Clock::new(self.clock, count, self.plan.edges.len());
        let edge_stats: Vec<Arc<EdgeStats>> =
            self.plan.edges.iter().map(|_| Arc::default()).collect();
        let node_stats: Vec<Arc<NodeStats>> = self.nodes.iter().map(|_| Arc::default()).collect();
        let (wakers, controls): (Vec<_>, Vec<_>) = (0..count)
            .map(|_| crossbeam_channel::bounded::<()>(1))
            .unzip();
        clock.set_wakers(wakers);

        let regions = self.plan.interrupt_regions();
        let shared = Arc::new(GraphShared {
            epochs: (0..count).map(|_| AtomicU64::new(0)).collect(),
            regions,
            interrupts_fired: AtomicU64::new(0),
            target_marks: (0..count).map(|_| AtomicU64::new(0)).collect(),
            stop: AtomicBool::new(false),
            abort: AtomicBool::new(false),
            error: Mutex::new(None),
            clock: clock.clone(),
            node_stats: node_stats.clone(),
            sources: (0..count)
                .filter(|&i| matches!(self.nodes[i].node, AnyNode::Source(_)))
                .collect(),
            barrier: OpenBarrier {
                arrived: Mutex::new(0),
                all: Condvar::new(),
                total: count,
            },
            stalls: Mutex::new(Vec::new()),
            done: AtomicBool::new(false),
        });
        if let Some(limit) = self.watchdog {
            let watchdog = Watchdog {
                shared: shared.clone(),
                limit,
                started,
                nodes: self.nodes.iter().map(|n| n.name.clone()).collect(),
                node_stats: node_stats.clone(),
                edges: self
                    .plan
                    .edges
                    .iter()
                    .map(|e| (format!("{} -> {}", e.from_label, e.to_label), e.queue.size))
                    .collect(),
                edge_stats: edge_stats.clone(),
            };
            let _ = std::thread::Builder::new()
                .name("weir:watchdog".into())
                .spawn(move || watchdog.run());
        }

        let mut receivers: Vec<Vec<EdgeReceiver>> = self.nodes.iter().map(|_| Vec::new()).collect();
        let mut ports: Vec<Vec<OutputPort>> = self
            .nodes
            .iter()
            .map(|n| {
                n.outputs
                    .iter()
                    .map(|&(name, ty)| OutputPort {
                        name,
                        ty,
                        edges: Vec::new(),
                        interrupts: Vec::new(),
                        last: None,
                    })
                    .collect()
            })
            .collect();
        let mut downstream: Vec<Vec<usize>> = self.nodes.iter().map(|_| Vec::new()).collect();
        for (id, (e, stats)) in self.plan.edges.iter().zip(&edge_stats).enumerate() {
            let (tx, rx) = edge(
                id,
                e.queue,
                stats.clone(),
                clock.clone(),
                e.from_node,
                e.to_port,
                e.back,
            );
            ports[e.from_node][e.from_port].edges.push(tx);
            receivers[e.to_node].push(rx);
            if !downstream[e.from_node].contains(&e.to_node) {
                downstream[e.from_node].push(e.to_node);
            }
        }
        for (region, i) in self.plan.interrupts.iter().enumerate() {
            ports[i.trigger_node][i.trigger_port]
                .interrupts
                .push(region);
        }

        let mut threads = Vec::with_capacity(count);
        let mut names = Vec::with_capacity(count);
        let iter = self
            .nodes
            .into_iter()
            .zip(ports)
            .zip(receivers)
            .zip(controls)
            .zip(downstream)
            .enumerate();
        for (me, ((((built, ports), inputs), control), downstream)) in iter {
            names.push((built.name.clone(), built.kind.clone()));
            let ctx = Context::new(
                me,
                Arc::from(built.name.as_str()),
                ports,
                shared.clone(),
                control,
                node_stats[me].clone(),
            );
            let thread = NodeThread {
                name: built.name.clone(),
                kind: built.kind,
                merge_wait: self.plan.nodes[me].merge_wait,
                on_error: self.plan.nodes[me].on_error,
                rebuild: Rebuild {
                    factory: built.factory,
                    options: self.plan.nodes[me].options.clone(),
                    policy: RestartPolicy::DEFAULT,
                    recent: VecDeque::new(),
                },
                closed: false,
                started,
                downstream,
            };
            let node = built.node;
            let spawned = std::thread::Builder::new()
                .name(format!("weir:{}", built.name))
                .spawn(move || thread.run(node, inputs, ctx));
            match spawned {
                Ok(h) => threads.push(h),
                Err(source) => {
                    shared.fail(RunError::Spawn {
                        node: built.name,
                        source,
                    });
                    shared.barrier.release_all();
                    break;
                }
            }
        }
        Ok(Running {
            threads,
            monitor: Monitor(Arc::new(MonitorInner {
                shared,
                names,
                node_stats,
                edge_stats,
                plan: self.plan,
                started,
            })),
        })
    }
}

/// A graph whose threads are running.
pub struct Running {
    threads: Vec<JoinHandle<()>>,
    monitor: Monitor,
}

/// Reads a running graph's statistics from any thread (a metrics endpoint, a UI). Cheap to
/// clone; stays valid after the run ends.
#[derive(Clone)]
pub struct Monitor(Arc<MonitorInner>);

struct MonitorInner {
    shared: Arc<GraphShared>,
    names: Vec<(String, String)>,
    node_stats: Vec<Arc<NodeStats>>,
    edge_stats: Vec<Arc<EdgeStats>>,
    plan: GraphPlan,
    started: Instant,
}

impl Running {
    fn shared(&self) -> &Arc<GraphShared> {
        &self.monitor.0.shared
    }

    /// A handle that stops the graph from another thread (e.g. a signal handler).
    pub fn stop_handle(&self) -> StopHandle {
        StopHandle(self.shared().clone())
    }

    /// True once every node thread has ended.
    pub fn is_finished(&self) -> bool {
        self.threads.iter().all(JoinHandle::is_finished)
    }

    /// A snapshot of the statistics so far.
    pub fn report(&self) -> RunReport {
        self.monitor.report()
    }

    /// A handle that reads the statistics from another thread.
    pub fn monitor(&self) -> Monitor {
        self.monitor.clone()
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
        self.shared().done.store(true, Ordering::Relaxed);
        let error = self
            .shared()
            .error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        (self.report(), error)
    }
}

/// What a node's thread needs besides the node, its inputs and its context.
struct NodeThread {
    name: String,
    kind: String,
    merge_wait: std::time::Duration,
    on_error: OnError,
    rebuild: Rebuild,
    /// The node was closed by a restart that then gave up: `close` must not run again.
    closed: bool,
    /// When the run started (for `busy_since`).
    started: Instant,
    downstream: Vec<usize>,
}

/// What `on_error: restart` needs: the kind's factory, the node's options, and the graph
/// times of the recent restarts.
struct Rebuild {
    factory: Factory,
    options: Options,
    policy: RestartPolicy,
    recent: VecDeque<Timestamp>,
}

/// Where a node's input loop stands with one input: packets taken from its queue but not
/// yet handed to the node (the merge holds them to deliver in timestamp order).
struct InputSlot {
    rx: EdgeReceiver,
    /// Packets with the graph time they arrived at.
    held: VecDeque<(Packet, Timestamp)>,
    /// How many packets may be held: the edge's queue size.
    capacity: usize,
    open: bool,
}

impl InputSlot {
    fn has_room(&self) -> bool {
        self.open && self.held.len() < self.capacity
    }
}

impl NodeThread {
    fn run(mut self, mut node: AnyNode, inputs: Vec<EdgeReceiver>, mut ctx: Context) {
        let span = tracing::info_span!("node", name = %self.name, kind = %self.kind);
        let _entered = span.enter();
        let shared = ctx.shared.clone();
        let result = catch_unwind(AssertUnwindSafe(|| {
            self.lifecycle(&mut node, inputs, &mut ctx)
        }));
        let failure = match result {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e),
            Err(panic) => Some(RunError::Panic {
                node: self.name.clone(),
                message: panic_message(&*panic),
            }),
        };
        if let Some(e) = failure {
            tracing::debug!(error = %e, "node failed");
            shared.fail(e);
        }
        // Dropping `ctx` (the outputs) ends the stream for every downstream node; only then
        // may the virtual clock count this node out, after waking them to see the end.
        let me = ctx.me;
        drop(ctx);
        shared.clock.ended(me, &self.downstream);
    }

    fn lifecycle(
        &mut self,
        node: &mut AnyNode,
        inputs: Vec<EdgeReceiver>,
        ctx: &mut Context,
    ) -> Result<(), RunError> {
        let opened = match node {
            AnyNode::Source(s) => s.open(ctx),
            AnyNode::Processor(p) => p.open(ctx),
        };
        let shared = ctx.shared.clone();
        if let Err(source) = opened {
            shared.fail(RunError::Open {
                node: self.name.clone(),
                source,
            });
            shared.barrier.arrive_and_wait();
            return Ok(());
        }
        shared.barrier.arrive_and_wait();
        if shared.clock.start() {
            // The moment sources start (models loaded), for benchmarks that time a run from
            // outside: `RUST_LOG=weir_engine=info` prints it with its wall-clock time.
            tracing::info!(target: "weir_engine::clock", "all nodes open: graph clock started");
        }
        let (body, closed) = match node {
            AnyNode::Source(s) => {
                let body = self.produce(s, ctx);
                (body, if self.closed { Ok(()) } else { s.close(ctx) })
            }
            AnyNode::Processor(p) => {
                let body = self.consume(p, inputs, ctx);
                (body, if self.closed { Ok(()) } else { p.close(ctx) })
            }
        };
        body.map_err(|source| self.failed(source))?;
        closed.map_err(|source| self.failed(source))
    }

    fn failed(&self, source: NodeError) -> RunError {
        RunError::Node {
            node: self.name.clone(),
            source,
        }
    }

    /// Serves the control lane: after an interrupt, takes the new epoch and flushes.
    fn flush_if_interrupted(
        &self,
        ctx: &mut Context,
        flush: impl FnOnce(&mut Context) -> Result<(), NodeError>,
    ) -> Result<(), NodeError> {
        let epoch = ctx.shared.epochs[ctx.me].load(Ordering::Acquire);
        if epoch == ctx.epoch {
            return Ok(());
        }
        ctx.epoch = epoch;
        let _s = tracing::debug_span!("flush", epoch).entered();
        flush(ctx)
    }

    fn produce(&mut self, node: &mut Box<dyn Source>, ctx: &mut Context) -> Result<(), NodeError> {
        loop {
            self.flush_if_interrupted(ctx, |ctx| node.flush(ctx))?;
            while ctx.control.try_recv().is_ok() {}
            if ctx.stopping() || ctx.all_closed() {
                return Ok(());
            }
            ctx.blocked = std::time::Duration::ZERO;
            let t0 = Instant::now();
            let flow = {
                let _s = tracing::debug_span!("produce").entered();
                if self.on_error == OnError::Restart {
                    guarded(|| node.produce(ctx))
                } else {
                    node.produce(ctx)
                }
            };
            ctx.stats
                .process_time
                .record(t0.elapsed().saturating_sub(ctx.blocked));
            match flow {
                Ok(Flow::Done) => return Ok(()),
                Ok(Flow::Continue) => {}
                Err(e) if self.on_error == OnError::Restart => {
                    ctx.stats.errors.fetch_add(1, Ordering::Relaxed);
                    let closed = guarded(|| node.close(ctx));
                    match self.restart(e, closed, ctx)? {
                        AnyNode::Source(s) => *node = s,
                        AnyNode::Processor(_) => return Err(NodeError::new(WRONG_VARIANT)),
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// `on_error: restart` after `error`, once the failed node was closed (`closed` is how
    /// that went): waits the back-off, builds a fresh node and opens it (a failed build or
    /// open counts as one more failure). Gives up with the error once the policy's limit is
    /// reached.
    fn restart(
        &mut self,
        mut error: NodeError,
        closed: Result<(), NodeError>,
        ctx: &mut Context,
    ) -> Result<AnyNode, NodeError> {
        if let Err(e) = closed {
            tracing::warn!(node = %self.name, "closing the failed node: {e}");
        }
        self.closed = true;
        loop {
            let now = ctx.now();
            let r = &mut self.rebuild;
            let window = r.policy.window;
            r.recent.retain(|&t| t.saturating_add(window) > now);
            if r.recent.len() >= r.policy.limit {
                return Err(NodeError::new(format!(
                    "{error} (restarted {} times within {} s; giving up)",
                    r.recent.len(),
                    r.policy.window.as_secs()
                )));
            }
            r.recent.push_back(now);
            let backoff = r.policy.backoff(r.recent.len());
            tracing::warn!(
                node = %self.name,
                at = %now,
                "restarting in {} ms after: {error}",
                backoff.as_millis()
            );
            ctx.sleep_until(now.saturating_add(backoff));
            let built = guarded(|| (r.factory)(&r.options)).and_then(|mut fresh| {
                let opened = match &mut fresh {
                    AnyNode::Source(s) => guarded(|| s.open(ctx)),
                    AnyNode::Processor(p) => guarded(|| p.open(ctx)),
                };
                opened.map(|()| fresh)
            });
            match built {
                Ok(fresh) => {
                    ctx.stats.restarts.fetch_add(1, Ordering::Relaxed);
                    self.closed = false;
                    return Ok(fresh);
                }
                Err(e) => error = e,
            }
        }
    }

    fn consume(
        &mut self,
        node: &mut Box<dyn Processor>,
        inputs: Vec<EdgeReceiver>,
        ctx: &mut Context,
    ) -> Result<(), NodeError> {
        // One input takes one packet at a time, so its queue keeps its overflow policy; several
        // inputs hold up to a queue's worth each while merging.
        let single = inputs.len() == 1;
        let mut slots: Vec<InputSlot> = inputs
            .into_iter()
            .map(|rx| InputSlot {
                capacity: if single { 1 } else { rx.capacity },
                rx,
                held: VecDeque::new(),
                open: true,
            })
            .collect();
        let clock = ctx.shared.clock.clone();
        let mut scratch = Scratch::default();
        loop {
            if ctx.shared.aborting() {
                return Ok(());
            }
            self.flush_if_interrupted(ctx, |ctx| node.flush(ctx))?;
            for slot in &mut slots {
                fill(slot, ctx, &clock);
            }
            // The earliest arrival among held packets decides how long a silent input is
            // waited for.
            let first_arrival = slots
                .iter()
                .filter_map(|s| s.held.front().map(|(_, at)| *at))
                .min();
            let due = first_arrival.map(|at| at.saturating_add(self.merge_wait));
            // The node ends with its forward inputs: back edges close a loop through this
            // node's own output, so waiting for their end would never end. What they still
            // hold is discarded.
            if slots
                .iter()
                .all(|s| s.rx.back || (!s.open && s.held.is_empty()))
            {
                return Ok(());
            }
            match due {
                None => {}
                Some(due) => {
                    // Deliver the earliest packet once every open forward input has one, or
                    // once a silent input has been waited for long enough (a back edge is
                    // never waited for). A full input is not read meanwhile: its producer
                    // waits (back-pressure), memory stays bounded.
                    let missing = slots
                        .iter()
                        .any(|s| s.open && !s.rx.back && s.held.is_empty());
                    if !missing || ctx.now() >= due {
                        if let Some(incoming) = take_earliest(&mut slots, ctx) {
                            self.call(node, incoming, ctx)?;
                        }
                        continue;
                    }
                }
            }
            wait(&mut slots, ctx, &clock, due, &mut scratch);
        }
    }

    fn call(
        &mut self,
        node: &mut Box<dyn Processor>,
        incoming: Incoming,
        ctx: &mut Context,
    ) -> Result<(), NodeError> {
        ctx.stats.packets_in.fetch_add(1, Ordering::Relaxed);
        ctx.blocked = std::time::Duration::ZERO;
        let t0 = Instant::now();
        let since = t0.duration_since(self.started).as_nanos().max(1);
        ctx.stats
            .busy_since
            .store(u64::try_from(since).unwrap_or(u64::MAX), Ordering::Relaxed);
        let timestamp = incoming.timestamp();
        let result = {
            let _s = tracing::debug_span!("process", port = incoming.port.index()).entered();
            match self.on_error {
                OnError::Stop => node.process(incoming, ctx),
                OnError::Skip | OnError::Restart => guarded(|| node.process(incoming, ctx)),
            }
        };
        ctx.stats.busy_since.store(0, Ordering::Relaxed);
        ctx.stats
            .process_time
            .record(t0.elapsed().saturating_sub(ctx.blocked));
        match (result, self.on_error) {
            (Ok(()), _) => Ok(()),
            (Err(e), OnError::Skip) => {
                ctx.stats.errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(node = %self.name, at = %timestamp, "skipped a packet: {e}");
                Ok(())
            }
            (Err(e), OnError::Restart) => {
                ctx.stats.errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(node = %self.name, at = %timestamp, "skipped a packet: {e}");
                let closed = guarded(|| node.close(ctx));
                match self.restart(e, closed, ctx)? {
                    AnyNode::Processor(p) => *node = p,
                    AnyNode::Source(_) => return Err(NodeError::new(WRONG_VARIANT)),
                }
                Ok(())
            }
            (Err(e), OnError::Stop) => Err(e),
        }
    }
}

impl Monitor {
    /// A snapshot of the statistics so far.
    pub fn report(&self) -> RunReport {
        let m = &*self.0;
        use std::sync::atomic::Ordering::Relaxed;
        let nodes = m
            .names
            .iter()
            .zip(&m.node_stats)
            .map(|((name, kind), s)| NodeReport {
                name: name.clone(),
                kind: kind.clone(),
                packets_in: s.packets_in.load(Relaxed),
                packets_out: s.packets_out.load(Relaxed),
                calls: s.process_time.count(),
                mean: s.process_time.mean(),
                p99: s.process_time.quantile(0.99),
                max: s.process_time.max(),
                interrupts: s.interrupts.load(Relaxed),
                errors: s.errors.load(Relaxed),
                restarts: s.restarts.load(Relaxed),
                lost: s.lost.load(Relaxed),
                cuts: s.cuts.load(Relaxed),
            })
            .collect();
        let edges = m
            .plan
            .edges
            .iter()
            .zip(&m.edge_stats)
            .map(|(e, s)| EdgeReport {
                from: e.from_label.clone(),
                to: e.to_label.clone(),
                capacity: e.queue.size,
                sent: s.sent.load(Relaxed),
                dropped: s.dropped.load(Relaxed),
                high_water: s.high_water.load(Relaxed),
                flushed: s.flushed.load(Relaxed),
                depth: s.depth.load(Relaxed),
            })
            .collect();
        RunReport {
            nodes,
            edges,
            wall_time: m.started.elapsed(),
            stalls: m
                .shared
                .stalls
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        }
    }

    /// True until every node thread has ended.
    pub fn is_running(&self) -> bool {
        !self.0.shared.done.load(Ordering::Relaxed)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // Ends the watchdog even when the program drops a running graph without waiting.
        if self.threads.iter().all(JoinHandle::is_finished) {
            self.shared().done.store(true, Ordering::Relaxed);
        }
    }
}

/// The message of a panic payload.
/// Why a restart could not take the rebuilt node (a factory that changed its variant).
const WRONG_VARIANT: &str = "the rebuilt node is not of the same variant (source/processor)";

/// Runs `f`, turning a panic into an error.
fn guarded<T>(f: impl FnOnce() -> Result<T, NodeError>) -> Result<T, NodeError> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|panic| {
        Err(NodeError::new(format!(
            "panicked: {}",
            panic_message(&*panic)
        )))
    })
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

/// True if `packet` was made before its producer's latest interrupt (not on a back edge:
/// an interrupt does not flow backwards), or sent before the latest interrupt that targeted
/// the receiving node.
fn stale(packet: &Packet, rx: &EdgeReceiver, ctx: &Context) -> bool {
    (!rx.back && packet.epoch < ctx.shared.epochs[rx.producer].load(Ordering::Acquire))
        || packet.fired < ctx.shared.target_marks[ctx.me].load(Ordering::Acquire)
}

/// Takes the packets queued on an input, without blocking, up to its capacity.
fn fill(slot: &mut InputSlot, ctx: &Context, clock: &Clock) {
    while slot.has_room() {
        match slot.rx.rx.try_recv() {
            Ok(p) => {
                clock.taken(slot.rx.id());
                slot.rx.took();
                accept(slot, p, ctx);
            }
            Err(TryRecvError::Empty) => return,
            Err(TryRecvError::Disconnected) => slot.open = false,
        }
    }
}

/// Holds `packet` unless it was made before its producer's latest interrupt.
fn accept(slot: &mut InputSlot, packet: Packet, ctx: &Context) {
    if stale(&packet, &slot.rx, ctx) {
        slot.rx.flushed();
    } else {
        // A single input is handed over at once: its arrival time is not needed.
        let arrived = if slot.capacity > 1 {
            ctx.now()
        } else {
            Timestamp::ZERO
        };
        slot.held.push_back((packet, arrived));
    }
}

/// The held packet with the earliest timestamp (ties: the lower port), if still fresh.
fn take_earliest(slots: &mut [InputSlot], ctx: &Context) -> Option<Incoming> {
    let i = slots
        .iter()
        .enumerate()
        .filter_map(|(i, s)| s.held.front().map(|(p, _)| (p.timestamp, s.rx.port, i)))
        .min()?
        .2;
    let slot = &mut slots[i];
    let (packet, _) = slot.held.pop_front()?;
    if stale(&packet, &slot.rx, ctx) {
        slot.rx.flushed();
        return None;
    }
    Some(Incoming {
        port: InputId(slot.rx.port),
        packet,
    })
}

/// Spins, then yields, for a short while before a blocking wait, like crossbeam's own `recv`:
/// a packet that arrives meanwhile is taken without the cost of registering with several
/// channels. True if data or a signal is ready (an input's end is seen by the blocking
/// wait).
fn ready_soon(slots: &[InputSlot], waiting: &[usize], ctx: &Context) -> bool {
    const SPIN_ROUNDS: u32 = 6;
    const YIELD_ROUNDS: u32 = 4;
    let ready = || !ctx.control.is_empty() || waiting.iter().any(|&i| !slots[i].rx.rx.is_empty());
    for round in 0..SPIN_ROUNDS + YIELD_ROUNDS {
        if ready() {
            return true;
        }
        if round < SPIN_ROUNDS {
            for _ in 0..(1 << round) {
                std::hint::spin_loop();
            }
        } else {
            std::thread::yield_now();
        }
    }
    false
}

/// Buffers reused by every wait of a node's input loop (no allocation per packet).
#[derive(Default)]
struct Scratch {
    waiting: Vec<usize>,
    edges: Vec<usize>,
}

/// Blocks until a packet arrives on an input with room, a signal arrives on the control
/// lane, or graph time `due` passes.
fn wait(
    slots: &mut [InputSlot],
    ctx: &Context,
    clock: &Clock,
    due: Option<Timestamp>,
    scratch: &mut Scratch,
) {
    let waiting = &mut scratch.waiting;
    waiting.clear();
    waiting.extend((0..slots.len()).filter(|&i| slots[i].has_room()));
    if !clock.is_virtual() && ready_soon(slots, waiting, ctx) {
        return;
    }
    if clock.is_virtual() {
        scratch.edges.clear();
        scratch
            .edges
            .extend(waiting.iter().map(|&i| slots[i].rx.id()));
        if !clock.wait(ctx.me, due, &scratch.edges) {
            return;
        }
    }
    let mut select = Select::new();
    select.recv(&ctx.control);
    for &i in waiting.iter() {
        select.recv(&slots[i].rx.rx);
    }
    let op = match (clock.kind(), due) {
        (ClockKind::Real, Some(due)) => match select.select_deadline(clock.instant_of(due)) {
            Ok(op) => op,
            Err(_) => {
                clock.woke(ctx.me, None);
                return;
            }
        },
        _ => select.select(),
    };
    if op.index() == 0 {
        let _ = op.recv(&ctx.control);
        clock.woke(ctx.me, None);
        return;
    }
    let i = waiting[op.index() - 1];
    let got = op.recv(&slots[i].rx.rx);
    drop(select);
    let slot = &mut slots[i];
    match got {
        Ok(p) => {
            clock.woke(ctx.me, Some(slot.rx.id()));
            slot.rx.took();
            accept(slot, p, ctx);
        }
        Err(_) => {
            clock.woke(ctx.me, None);
            slot.open = false;
        }
    }
}

/// Watches a running graph for stalls: a node working on one packet too long, a queue full
/// too long. Each stall is reported once, when it passes the limit.
struct Watchdog {
    shared: Arc<GraphShared>,
    limit: std::time::Duration,
    started: Instant,
    nodes: Vec<String>,
    node_stats: Vec<Arc<NodeStats>>,
    edges: Vec<(String, usize)>,
    edge_stats: Vec<Arc<EdgeStats>>,
}

impl Watchdog {
    fn run(self) {
        let tick = (self.limit / 4).clamp(
            std::time::Duration::from_millis(20),
            std::time::Duration::from_secs(1),
        );
        let limit_ns = u64::try_from(self.limit.as_nanos()).unwrap_or(u64::MAX);
        let mut reported_calls = vec![0u64; self.nodes.len()];
        let mut full_since: Vec<Option<u64>> = vec![None; self.edges.len()];
        let mut reported_full = vec![false; self.edges.len()];
        while !self.shared.done.load(Ordering::Relaxed) {
            std::thread::sleep(tick);
            let now = u64::try_from(self.started.elapsed().as_nanos()).unwrap_or(u64::MAX);
            for (i, stats) in self.node_stats.iter().enumerate() {
                let since = stats.busy_since.load(Ordering::Relaxed);
                if since != 0 && now.saturating_sub(since) > limit_ns && reported_calls[i] != since
                {
                    reported_calls[i] = since;
                    self.report(format!(
                        "node `{}` has been working on one packet for {:.1} s (watchdog limit {:.1} s)",
                        self.nodes[i],
                        (now - since) as f64 / 1e9,
                        self.limit.as_secs_f64()
                    ));
                }
            }
            for (i, stats) in self.edge_stats.iter().enumerate() {
                let (label, capacity) = &self.edges[i];
                let depth = stats.depth.load(Ordering::Relaxed);
                if depth < *capacity as u64 {
                    full_since[i] = None;
                    reported_full[i] = false;
                    continue;
                }
                let since = *full_since[i].get_or_insert(now);
                if now - since > limit_ns && !reported_full[i] {
                    reported_full[i] = true;
                    self.report(format!(
                        "edge `{label}` has been full ({depth}/{capacity}) for {:.1} s: its consumer is not keeping up",
                        (now - since) as f64 / 1e9
                    ));
                }
            }
        }
    }

    fn report(&self, message: String) {
        tracing::warn!("stall: {message}");
        self.shared
            .stalls
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(message);
    }
}
