//! The graph clock: the one source of time for every node.
//!
//! Nodes ask their [`crate::Context`] for `now` and `sleep_until`; nobody paces with
//! `Instant` or `thread::sleep`. Graph time starts at zero when every node has opened.
//!
//! - [`ClockKind::Real`] (the default) follows the wall clock.
//! - [`ClockKind::Virtual`] advances only when the whole graph is idle: no node is working,
//!   no signal is pending, no waiting node has a packet queued on an input it listens to,
//!   and at least one node waits for a time. Time then jumps to the earliest such time. A paced replay runs as fast as the CPU allows, and
//!   every node sees the same times and the same packet order on every run.

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Instant;

use crossbeam_channel::Sender;

use crate::packet::Timestamp;

/// Which clock a graph runs on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ClockKind {
    /// Wall-clock time (the default).
    #[default]
    Real,
    /// Simulated time that jumps ahead whenever the graph is idle: deterministic and as fast
    /// as the CPU allows.
    Virtual,
}

impl ClockKind {
    /// The names accepted by `--clock`.
    pub const NAMES: [&'static str; 2] = ["real", "virtual"];
}

impl FromStr for ClockKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "real" => Ok(ClockKind::Real),
            "virtual" => Ok(ClockKind::Virtual),
            other => Err(format!("unknown clock `{other}`: expected real or virtual")),
        }
    }
}

impl fmt::Display for ClockKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ClockKind::Real => "real",
            ClockKind::Virtual => "virtual",
        })
    }
}

/// What a node is doing, as the virtual clock sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Activity {
    Busy,
    /// Blocked, optionally until a graph time.
    Waiting(Option<u64>),
    Ended,
}

#[derive(Clone, Debug)]
struct NodeClock {
    activity: Activity,
    /// While waiting: the edges whose packets would wake the node.
    listening: Vec<usize>,
    /// A wake-up (interrupt, stop, end of an input) not yet seen by the node.
    signal: bool,
    /// The clock reached the node's wait time.
    fired: bool,
}

struct VirtualState {
    nodes: Vec<NodeClock>,
    busy: usize,
    /// Packets queued per edge.
    queued: Vec<u64>,
}

struct Shared {
    kind: ClockKind,
    /// Real clock: the instant graph time zero.
    start: OnceLock<Instant>,
    /// Virtual clock: graph time in nanoseconds (written under `state`).
    now: AtomicU64,
    state: Mutex<VirtualState>,
    wakers: OnceLock<Vec<Sender<()>>>,
}

/// A handle on the graph's clock, shared by every node thread. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Clock(Arc<Shared>);

impl Clock {
    /// A clock for `nodes` node threads and `edges` edges; nodes count as busy until they
    /// first wait.
    pub(crate) fn new(kind: ClockKind, nodes: usize, edges: usize) -> Self {
        let node = NodeClock {
            activity: Activity::Busy,
            listening: Vec::new(),
            signal: false,
            fired: false,
        };
        Clock(Arc::new(Shared {
            kind,
            start: OnceLock::new(),
            now: AtomicU64::new(0),
            state: Mutex::new(VirtualState {
                nodes: vec![node; nodes],
                busy: nodes,
                queued: vec![0; edges],
            }),
            wakers: OnceLock::new(),
        }))
    }

    /// Installs each node's control-lane sender, used to wake it.
    pub(crate) fn set_wakers(&self, wakers: Vec<Sender<()>>) {
        let _ = self.0.wakers.set(wakers);
    }

    pub(crate) fn kind(&self) -> ClockKind {
        self.0.kind
    }

    pub(crate) fn is_virtual(&self) -> bool {
        self.0.kind == ClockKind::Virtual
    }

    fn lock(&self) -> MutexGuard<'_, VirtualState> {
        self.0.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts graph time (every node has opened); true for the one call that started it.
    pub(crate) fn start(&self) -> bool {
        self.0.start.set(Instant::now()).is_ok()
    }

    /// Graph time now.
    pub(crate) fn now(&self) -> Timestamp {
        match self.0.kind {
            ClockKind::Real => match self.0.start.get() {
                Some(start) => Timestamp::from_duration(start.elapsed()),
                None => Timestamp::ZERO,
            },
            ClockKind::Virtual => Timestamp::from_nanos(self.0.now.load(Ordering::Acquire)),
        }
    }

    /// The wall-clock instant of graph time `t` (real clock only).
    pub(crate) fn instant_of(&self, t: Timestamp) -> Instant {
        let start = *self.0.start.get_or_init(Instant::now);
        start
            .checked_add(t.as_duration())
            .unwrap_or_else(|| start + std::time::Duration::from_secs(86_400 * 365))
    }

    /// A packet is entering the queue of `edge`.
    pub(crate) fn sent(&self, edge: usize) {
        if self.is_virtual() {
            if let Some(q) = self.lock().queued.get_mut(edge) {
                *q += 1;
            }
        }
    }

    /// A packet left the queue of `edge` (taken, evicted, or not queued after all).
    pub(crate) fn taken(&self, edge: usize) {
        if self.is_virtual() {
            if let Some(q) = self.lock().queued.get_mut(edge) {
                *q = q.saturating_sub(1);
            }
        }
    }

    /// Wakes node `node` (interrupt, stop, end of an input): it counts as busy until it has
    /// seen the signal and waits again.
    pub(crate) fn signal(&self, node: usize) {
        if self.is_virtual() {
            let mut s = self.lock();
            if let Some(n) = s.nodes.get_mut(node) {
                n.signal = true;
                if matches!(n.activity, Activity::Waiting(_)) {
                    n.activity = Activity::Busy;
                    s.busy += 1;
                }
            }
        }
        if let Some(tx) = self.0.wakers.get().and_then(|w| w.get(node)) {
            let _ = tx.try_send(());
        }
    }

    /// Node `node` is about to block, until `due` if given, woken by packets on the edges
    /// `listening`. Returns false if a signal is pending (the node must handle it instead of
    /// blocking).
    pub(crate) fn wait(&self, node: usize, due: Option<Timestamp>, listening: &[usize]) -> bool {
        if !self.is_virtual() {
            return true;
        }
        let mut s = self.lock();
        let n = &mut s.nodes[node];
        if n.signal {
            n.signal = false;
            return false;
        }
        n.fired = false;
        n.listening.clear();
        n.listening.extend_from_slice(listening);
        n.activity = Activity::Waiting(due.map(Timestamp::as_nanos));
        s.busy -= 1;
        self.advance(&mut s);
        true
    }

    /// Node `node` woke up, having taken a packet from `edge` if given. Returns true if the
    /// clock reached the time it waited for.
    pub(crate) fn woke(&self, node: usize, edge: Option<usize>) -> bool {
        if !self.is_virtual() {
            return false;
        }
        let mut s = self.lock();
        if let Some(q) = edge.and_then(|e| s.queued.get_mut(e)) {
            *q = q.saturating_sub(1);
        }
        let n = &mut s.nodes[node];
        n.signal = false;
        let fired = std::mem::take(&mut n.fired);
        if matches!(n.activity, Activity::Waiting(_)) {
            n.activity = Activity::Busy;
            s.busy += 1;
        }
        fired
    }

    /// Node `node` ended; the nodes in `downstream` will see their inputs end.
    pub(crate) fn ended(&self, node: usize, downstream: &[usize]) {
        if !self.is_virtual() {
            return;
        }
        for &d in downstream {
            self.signal(d);
        }
        let mut s = self.lock();
        if s.nodes[node].activity == Activity::Busy {
            s.busy -= 1;
        }
        s.nodes[node].activity = Activity::Ended;
        self.advance(&mut s);
    }

    /// If no node is busy or has a packet it listens for, jumps to the earliest wait time
    /// and wakes its nodes.
    fn advance(&self, s: &mut VirtualState) {
        if s.busy > 0 {
            return;
        }
        let deliverable = s.nodes.iter().any(|n| {
            matches!(n.activity, Activity::Waiting(_))
                && n.listening
                    .iter()
                    .any(|&e| s.queued.get(e).is_some_and(|&q| q > 0))
        });
        if deliverable {
            return;
        }
        let Some(due) = s
            .nodes
            .iter()
            .filter_map(|n| match n.activity {
                Activity::Waiting(due) => due,
                _ => None,
            })
            .min()
        else {
            return;
        };
        let now = self.0.now.load(Ordering::Acquire).max(due);
        self.0.now.store(now, Ordering::Release);
        for (i, n) in s.nodes.iter_mut().enumerate() {
            if matches!(n.activity, Activity::Waiting(Some(d)) if d <= now) {
                n.activity = Activity::Busy;
                n.fired = true;
                s.busy += 1;
                if let Some(tx) = self.0.wakers.get().and_then(|w| w.get(i)) {
                    let _ = tx.try_send(());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn virtual_time_jumps_when_everyone_waits() {
        let clock = Clock::new(ClockKind::Virtual, 2, 1);
        let (tx0, rx0) = crossbeam_channel::bounded(1);
        let (tx1, _rx1) = crossbeam_channel::bounded(1);
        clock.set_wakers(vec![tx0, tx1]);
        assert!(clock.wait(0, Some(Timestamp::from_nanos(500)), &[]));
        assert_eq!(clock.now(), Timestamp::ZERO, "node 1 is still busy");
        clock.sent(0);
        assert!(clock.wait(1, None, &[0]));
        assert_eq!(clock.now(), Timestamp::ZERO, "a packet waits for node 1");
        clock.woke(1, Some(0));
        assert!(clock.wait(1, None, &[0]));
        assert_eq!(clock.now(), Timestamp::from_nanos(500));
        assert!(rx0.try_recv().is_ok(), "the sleeper is woken");
        assert!(clock.woke(0, None), "and told its time came");
    }

    #[test]
    fn a_packet_for_a_sleeping_node_does_not_hold_time() {
        let clock = Clock::new(ClockKind::Virtual, 1, 1);
        clock.sent(0);
        assert!(clock.wait(0, Some(Timestamp::from_nanos(7)), &[]));
        assert_eq!(clock.now(), Timestamp::from_nanos(7));
    }

    #[test]
    fn a_pending_signal_keeps_a_node_awake() {
        let clock = Clock::new(ClockKind::Virtual, 1, 0);
        clock.signal(0);
        assert!(!clock.wait(0, Some(Timestamp::from_nanos(5)), &[]));
        assert!(clock.wait(0, Some(Timestamp::from_nanos(5)), &[]));
        assert_eq!(clock.now(), Timestamp::from_nanos(5));
    }
}
