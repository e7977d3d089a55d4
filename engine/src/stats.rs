//! Per-node and per-edge statistics, updated lock-free while the graph runs.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Number of sub-buckets per power of two in [`LatencyHistogram`] (relative error < 1/8).
const SUB_BUCKETS: usize = 8;
const BUCKETS: usize = 64 * SUB_BUCKETS;

/// A lock-free log-scale histogram of durations, for mean and percentiles.
pub struct LatencyHistogram {
    buckets: Box<[AtomicU64]>,
    count: AtomicU64,
    total_nanos: AtomicU64,
    max_nanos: AtomicU64,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        LatencyHistogram {
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            total_nanos: AtomicU64::new(0),
            max_nanos: AtomicU64::new(0),
        }
    }
}

fn bucket_of(nanos: u64) -> usize {
    if nanos < SUB_BUCKETS as u64 {
        return nanos as usize;
    }
    let exp = 63 - nanos.leading_zeros() as usize; // nanos >= 2^exp
    let shift = exp - SUB_BUCKETS.trailing_zeros() as usize;
    let sub = ((nanos >> shift) as usize) & (SUB_BUCKETS - 1);
    ((exp - SUB_BUCKETS.trailing_zeros() as usize + 1) * SUB_BUCKETS + sub).min(BUCKETS - 1)
}

fn bucket_floor(bucket: usize) -> u64 {
    if bucket < SUB_BUCKETS {
        return bucket as u64;
    }
    let group = bucket / SUB_BUCKETS - 1;
    let sub = (bucket % SUB_BUCKETS) as u64;
    (SUB_BUCKETS as u64 + sub) << group
}

impl LatencyHistogram {
    /// Records one duration.
    pub fn record(&self, d: Duration) {
        let nanos = d.as_nanos().min(u128::from(u64::MAX)) as u64;
        self.buckets[bucket_of(nanos)].fetch_add(1, Relaxed);
        self.count.fetch_add(1, Relaxed);
        self.total_nanos.fetch_add(nanos, Relaxed);
        self.max_nanos.fetch_max(nanos, Relaxed);
    }

    /// Number of recorded durations.
    pub fn count(&self) -> u64 {
        self.count.load(Relaxed)
    }

    /// Mean of the recorded durations (zero if none).
    pub fn mean(&self) -> Duration {
        let n = self.count();
        if n == 0 {
            return Duration::ZERO;
        }
        Duration::from_nanos(self.total_nanos.load(Relaxed) / n)
    }

    /// The largest recorded duration.
    pub fn max(&self) -> Duration {
        Duration::from_nanos(self.max_nanos.load(Relaxed))
    }

    /// The `q`-quantile (0..=1), accurate to within one bucket (about 12%).
    pub fn quantile(&self, q: f64) -> Duration {
        let n = self.count();
        if n == 0 {
            return Duration::ZERO;
        }
        let rank = ((q.clamp(0.0, 1.0) * n as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, b) in self.buckets.iter().enumerate() {
            seen += b.load(Relaxed);
            if seen >= rank {
                let upper = bucket_floor(i + 1).saturating_sub(1).max(bucket_floor(i));
                let mid = (bucket_floor(i) + upper) / 2;
                return Duration::from_nanos(mid.min(self.max_nanos.load(Relaxed)));
            }
        }
        self.max()
    }
}

/// Counters of one node, shared between its thread and observers.
#[derive(Default)]
pub struct NodeStats {
    /// Packets received on all inputs.
    pub packets_in: AtomicU64,
    /// Packets sent on all outputs (counted once per port, not per edge).
    pub packets_out: AtomicU64,
    /// Time spent in `process` (or `produce` for sources), without time spent waiting (full
    /// queues, the clock, input from outside the graph).
    pub process_time: LatencyHistogram,
    /// Interrupts that reached the node (its own or one upstream of it).
    pub interrupts: AtomicU64,
    /// Packets whose processing failed and were skipped (`on_error: skip` or `restart`).
    pub errors: AtomicU64,
    /// Times the node was rebuilt after a failure (`on_error: restart`).
    pub restarts: AtomicU64,
    /// Packets the node knows were lost outside the graph: before they reached it (a gap in
    /// the sequence numbers of a network link) or after it sent them on (a publisher whose
    /// subscriber is gone); see [`crate::Context::count_lost`].
    pub lost: AtomicU64,
    /// Interrupts that cut output in progress, as the node reported from its `flush`
    /// ([`crate::Context::count_cut`]): for a speaker, a barge-in that silenced an answer.
    pub cuts: AtomicU64,
    /// Nanoseconds since the run started at which the current call began; 0 when idle.
    pub busy_since: AtomicU64,
}

/// Counters of one edge, shared between its two ends and observers.
#[derive(Default)]
pub struct EdgeStats {
    /// Packets accepted into the queue.
    pub sent: AtomicU64,
    /// Packets dropped by the overflow policy.
    pub dropped: AtomicU64,
    /// Largest queue length seen right after a send.
    pub high_water: AtomicU64,
    /// Queue length after the latest send or receive.
    pub depth: AtomicU64,
    /// Packets discarded because an interrupt made them stale (not overflow drops).
    pub flushed: AtomicU64,
}

/// A snapshot of one node's statistics.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeReport {
    /// Node name from the graph file.
    pub name: String,
    /// Node kind, e.g. `audio.resample`.
    pub kind: String,
    /// Packets received.
    pub packets_in: u64,
    /// Packets sent.
    pub packets_out: u64,
    /// Number of timed `process`/`produce` calls.
    pub calls: u64,
    /// Mean time per call.
    pub mean: Duration,
    /// 99th percentile time per call.
    pub p99: Duration,
    /// Longest call.
    pub max: Duration,
    /// Interrupts that reached the node.
    pub interrupts: u64,
    /// Packets skipped after an error (`on_error: skip` or `restart`).
    pub errors: u64,
    /// Times the node was rebuilt after a failure (`on_error: restart`).
    pub restarts: u64,
    /// Packets lost outside the graph, before the node (a gap on a network link) or after it
    /// (a publisher with no subscriber).
    pub lost: u64,
    /// Interrupts that cut output in progress (the node said so in its `flush`).
    pub cuts: u64,
}

/// A snapshot of one edge's statistics.
#[derive(Clone, Debug, PartialEq)]
pub struct EdgeReport {
    /// `node.port` the edge starts at.
    pub from: String,
    /// `node.port` the edge ends at.
    pub to: String,
    /// Queue capacity.
    pub capacity: usize,
    /// Packets accepted.
    pub sent: u64,
    /// Packets dropped by the overflow policy.
    pub dropped: u64,
    /// Largest queue length seen.
    pub high_water: u64,
    /// Packets discarded by interrupts.
    pub flushed: u64,
    /// Queue length at the last send or receive.
    pub depth: u64,
}

/// Statistics of a whole run.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RunReport {
    /// One entry per node, in graph-file order.
    pub nodes: Vec<NodeReport>,
    /// One entry per edge.
    pub edges: Vec<EdgeReport>,
    /// Wall-clock duration of the run.
    pub wall_time: Duration,
    /// Stalls the watchdog reported while the graph ran, in order.
    pub stalls: Vec<String>,
}

impl RunReport {
    /// The report of node `name`, if any.
    pub fn node(&self, name: &str) -> Option<&NodeReport> {
        self.nodes.iter().find(|n| n.name == name)
    }

    /// The edge that ends at `to` (`node.port`), if any.
    pub fn edge_to(&self, to: &str) -> Option<&EdgeReport> {
        self.edges.iter().find(|e| e.to == to)
    }

    /// Total packets discarded by interrupts on all edges.
    pub fn total_flushed(&self) -> u64 {
        self.edges.iter().map(|e| e.flushed).sum()
    }

    /// Total packets dropped on all edges.
    pub fn total_dropped(&self) -> u64 {
        self.edges.iter().map(|e| e.dropped).sum()
    }

    /// A human-readable table of node and edge statistics.
    pub fn table(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "{:<16} {:<18} {:>9} {:>9} {:>10} {:>10} {:>10} {:>6} {:>6} {:>6} {:>6}",
            "node", "kind", "in", "out", "mean", "p99", "max", "intr", "err", "rst", "cut"
        );
        let lost = self.nodes.iter().any(|n| n.lost > 0);
        for n in &self.nodes {
            let _ = writeln!(
                s,
                "{:<16} {:<18} {:>9} {:>9} {:>10} {:>10} {:>10} {:>6} {:>6} {:>6} {:>6}",
                n.name,
                n.kind,
                n.packets_in,
                n.packets_out,
                fmt_dur(n.mean),
                fmt_dur(n.p99),
                fmt_dur(n.max),
                n.interrupts,
                n.errors,
                n.restarts,
                n.cuts
            );
        }
        if lost {
            let _ = writeln!(s, "\n{:<16} {:>9}", "node", "lost");
            for n in self.nodes.iter().filter(|n| n.lost > 0) {
                let _ = writeln!(s, "{:<16} {:>9}", n.name, n.lost);
            }
        }
        let _ = writeln!(
            s,
            "\n{:<36} {:>6} {:>9} {:>9} {:>9} {:>10}",
            "edge", "queue", "sent", "dropped", "flushed", "max depth"
        );
        for e in &self.edges {
            let _ = writeln!(
                s,
                "{:<36} {:>6} {:>9} {:>9} {:>9} {:>10}",
                format!("{} -> {}", e.from, e.to),
                e.capacity,
                e.sent,
                e.dropped,
                e.flushed,
                e.high_water
            );
        }
        for stall in &self.stalls {
            let _ = writeln!(s, "\nstall: {stall}");
        }
        let _ = writeln!(s, "\nwall time {}", fmt_dur(self.wall_time));
        s
    }
}

/// Escapes a Prometheus label value.
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// One Prometheus metric family read from a report row: name, type, help, value.
type Metric<R> = (&'static str, &'static str, &'static str, fn(&R) -> f64);

/// Per-node metric families.
const NODE_METRICS: &[Metric<NodeReport>] = &[
    (
        "weir_node_packets_in_total",
        "counter",
        "Packets received.",
        |n| n.packets_in as f64,
    ),
    (
        "weir_node_packets_out_total",
        "counter",
        "Packets sent.",
        |n| n.packets_out as f64,
    ),
    (
        "weir_node_calls_total",
        "counter",
        "Timed process or produce calls.",
        |n| n.calls as f64,
    ),
    (
        "weir_node_process_seconds_mean",
        "gauge",
        "Mean time per call.",
        |n| n.mean.as_secs_f64(),
    ),
    (
        "weir_node_process_seconds_p99",
        "gauge",
        "99th percentile time per call.",
        |n| n.p99.as_secs_f64(),
    ),
    (
        "weir_node_interrupts_total",
        "counter",
        "Interrupts that reached the node.",
        |n| n.interrupts as f64,
    ),
    (
        "weir_node_errors_total",
        "counter",
        "Packets skipped after an error.",
        |n| n.errors as f64,
    ),
    (
        "weir_node_restarts_total",
        "counter",
        "Times the node was rebuilt after a failure.",
        |n| n.restarts as f64,
    ),
    (
        "weir_node_lost_total",
        "counter",
        "Packets lost outside the graph, on a network link before or after the node.",
        |n| n.lost as f64,
    ),
    (
        "weir_node_cuts_total",
        "counter",
        "Interrupts that cut output in progress (for a speaker: barge-ins).",
        |n| n.cuts as f64,
    ),
];

/// Per-edge metric families.
const EDGE_METRICS: &[Metric<EdgeReport>] = &[
    (
        "weir_edge_sent_total",
        "counter",
        "Packets queued on the edge.",
        |e| e.sent as f64,
    ),
    (
        "weir_edge_dropped_total",
        "counter",
        "Packets dropped by the overflow policy.",
        |e| e.dropped as f64,
    ),
    (
        "weir_edge_flushed_total",
        "counter",
        "Packets discarded by interrupts.",
        |e| e.flushed as f64,
    ),
    ("weir_edge_depth", "gauge", "Packets in the queue.", |e| {
        e.depth as f64
    }),
    (
        "weir_edge_capacity",
        "gauge",
        "Queue capacity in packets.",
        |e| e.capacity as f64,
    ),
];

/// Whole-run metric families.
const RUN_METRICS: &[Metric<RunReport>] = &[
    (
        "weir_stalls_total",
        "counter",
        "Stalls reported by the watchdog.",
        |r| r.stalls.len() as f64,
    ),
    (
        "weir_uptime_seconds",
        "gauge",
        "Time since the graph started.",
        |r| r.wall_time.as_secs_f64(),
    ),
];

/// Writes the families of `metrics` with one sample per row, labelled by `labels`.
fn write_families<R>(
    out: &mut String,
    metrics: &[Metric<R>],
    rows: &[R],
    labels: impl Fn(&R) -> String,
) {
    use std::fmt::Write;
    for (name, kind, help, value) in metrics {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for row in rows {
            let _ = writeln!(out, "{name}{} {}", labels(row), value(row));
        }
    }
}

impl RunReport {
    /// The statistics in the Prometheus text exposition format (version 0.0.4).
    pub fn prometheus(&self) -> String {
        let mut s = String::new();
        write_families(&mut s, NODE_METRICS, &self.nodes, |n| {
            format!(
                "{{node=\"{}\",kind=\"{}\"}}",
                label(&n.name),
                label(&n.kind)
            )
        });
        write_families(&mut s, EDGE_METRICS, &self.edges, |e| {
            format!("{{from=\"{}\",to=\"{}\"}}", label(&e.from), label(&e.to))
        });
        write_families(&mut s, RUN_METRICS, std::slice::from_ref(self), |_| {
            String::new()
        });
        s
    }
}

/// Formats a duration compactly (`850ns`, `12.3µs`, `4.56ms`, `1.23s`).
pub fn fmt_dur(d: Duration) -> String {
    let n = d.as_nanos();
    if n < 1_000 {
        format!("{n}ns")
    } else if n < 1_000_000 {
        format!("{:.1}µs", n as f64 / 1e3)
    } else if n < 1_000_000_000 {
        format!("{:.2}ms", n as f64 / 1e6)
    } else {
        format!("{:.2}s", n as f64 / 1e9)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_monotonic_and_cover_their_floor() {
        let mut last = 0;
        for n in [0u64, 1, 7, 8, 9, 15, 16, 100, 1_000, 123_456, 9_999_999_999] {
            let b = bucket_of(n);
            assert!(b >= last, "bucket of {n} went backwards");
            assert!(bucket_floor(b) <= n, "floor of bucket {b} above {n}");
            assert!(bucket_floor(b + 1) > n, "next floor not above {n}");
            last = b;
        }
    }

    #[test]
    fn quantiles_are_within_a_bucket() {
        let h = LatencyHistogram::default();
        for i in 1..=1000u64 {
            h.record(Duration::from_micros(i));
        }
        let p50 = h.quantile(0.5).as_micros() as f64;
        let p99 = h.quantile(0.99).as_micros() as f64;
        assert!((p50 - 500.0).abs() / 500.0 < 0.13, "p50 {p50}");
        assert!((p99 - 990.0).abs() / 990.0 < 0.13, "p99 {p99}");
        assert_eq!(h.count(), 1000);
        assert_eq!(h.mean(), Duration::from_nanos(500_500));
    }
}
