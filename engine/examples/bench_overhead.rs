//! Engine overhead benchmark: a source, 5 pass-through nodes and a sink, run through the
//! engine and through raw crossbeam channels between the same number of threads, in the
//! same process, alternating. Prints throughput (packets/s) and per-hop latency (median,
//! p99) for both.
//!
//! `cargo run --release -p weir-engine --example bench_overhead [-- ROUNDS]`

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde::Deserialize;
use weir_engine::{
    Config, Context, Flow, Graph, Incoming, Input, Loader, NoConfig, NodeError, NodeKind,
    OptionSpec, OptionType, Output, Packet, Payload, PortType, Ports, Processor, Registry, Source,
    Timestamp,
};

const STAGES: usize = 5;
const HOPS: u64 = STAGES as u64 + 1;
const QUEUE: usize = 16;
const THROUGHPUT_PACKETS: u64 = 200_000;
const LATENCY_PACKETS: u64 = 20_000;
const LATENCY_GAP: Duration = Duration::from_micros(50);

/// The benchmark's payload: a small value, shared by reference counting like real payloads.
#[derive(Debug, Clone)]
struct Tick;

impl Payload for Tick {
    const PORT: PortType = PortType::named("tick");
    fn write_json(&self, _: &mut serde_json::Map<String, serde_json::Value>) {}
}

/// Nanoseconds since the benchmark started: the packet's timestamp is its send time.
fn now_ns(epoch: Instant) -> u64 {
    epoch.elapsed().as_nanos() as u64
}

/// Spins until `deadline` (sleep is far too coarse for 50 µs gaps).
fn wait_until(deadline: Instant) {
    while Instant::now() < deadline {
        std::hint::spin_loop();
    }
}

#[derive(Deserialize)]
struct SourceConfig {
    count: u64,
}

impl Config for SourceConfig {
    fn options() -> Vec<OptionSpec> {
        vec![OptionSpec::required("count", OptionType::Int, "")]
    }
}

struct BenchSource {
    epoch: Instant,
    sent: u64,
    count: u64,
    gap: Duration,
    out: Output<Tick>,
}

impl Source for BenchSource {
    fn produce(&mut self, ctx: &mut Context) -> Result<Flow, NodeError> {
        if self.sent == self.count {
            return Ok(Flow::Done);
        }
        if !self.gap.is_zero() {
            wait_until(self.epoch + self.gap * self.sent as u32);
        }
        let ts = Timestamp::from_nanos(now_ns(self.epoch));
        ctx.send(self.out, ts, Tick)?;
        self.sent += 1;
        Ok(Flow::Continue)
    }
}

struct Pass {
    out: Output<Tick>,
}

impl Processor for Pass {
    fn process(&mut self, input: Incoming, ctx: &mut Context) -> Result<(), NodeError> {
        ctx.forward(self.out, input.packet)
    }
}

struct Sink {
    epoch: Instant,
    latencies: Vec<u64>,
    results: Arc<Mutex<Vec<u64>>>,
}

impl Processor for Sink {
    fn process(&mut self, input: Incoming, _: &mut Context) -> Result<(), NodeError> {
        self.latencies
            .push(now_ns(self.epoch) - input.timestamp().as_nanos());
        Ok(())
    }
    fn close(&mut self, _: &mut Context) -> Result<(), NodeError> {
        *self.results.lock().unwrap() = std::mem::take(&mut self.latencies);
        Ok(())
    }
}

fn pass_ports(p: &mut Ports) -> (Input<Tick>, Output<Tick>) {
    (p.input("in", ""), p.output("out", ""))
}

struct Run {
    elapsed: Duration,
    latencies: Vec<u64>,
}

fn engine_run(count: u64, gap: Duration) -> Run {
    let epoch = Instant::now();
    let results = Arc::new(Mutex::new(Vec::new()));
    let mut reg = Registry::new();
    reg.register(NodeKind::source(
        "bench.source",
        "",
        |p| p.output::<Tick>("out", ""),
        move |c: SourceConfig, out| {
            Ok(BenchSource {
                epoch,
                sent: 0,
                count: c.count,
                gap,
                out,
            })
        },
    ))
    .unwrap();
    reg.register(NodeKind::processor(
        "bench.pass",
        "",
        pass_ports,
        |_: NoConfig, (_, out)| Ok(Pass { out }),
    ))
    .unwrap();
    let r = results.clone();
    reg.register(NodeKind::processor(
        "bench.sink",
        "",
        |p| p.input::<Tick>("in", ""),
        move |_: NoConfig, _| {
            Ok(Sink {
                epoch,
                latencies: Vec::with_capacity(count as usize),
                results: r.clone(),
            })
        },
    ))
    .unwrap();
    let mut yaml = format!(
        "defaults: {{ queue: {QUEUE} }}\nnodes:\n  s0: {{ node: bench.source, with: {{ count: {count} }} }}\n"
    );
    for i in 1..=STAGES {
        yaml += &format!(
            "  s{i}: {{ node: bench.pass, in: {{ in: s{}.out }} }}\n",
            i - 1
        );
    }
    yaml += &format!("  sink: {{ node: bench.sink, in: {{ in: s{STAGES}.out }} }}\n");
    let plan = Loader::new(&reg)
        .load_str(Path::new("bench.yaml"), &yaml)
        .unwrap();
    let start = Instant::now();
    Graph::build(plan, &reg).unwrap().run().unwrap();
    let elapsed = start.elapsed();
    let latencies = std::mem::take(&mut *results.lock().unwrap());
    Run { elapsed, latencies }
}

fn raw_run(count: u64, gap: Duration) -> Run {
    let epoch = Instant::now();
    let (first_tx, mut rx) = crossbeam_channel::bounded::<Packet>(QUEUE);
    let mut handles = Vec::new();
    for _ in 0..STAGES {
        let (tx, next_rx) = crossbeam_channel::bounded::<Packet>(QUEUE);
        let input = rx;
        handles.push(thread::spawn(move || {
            for p in input.iter() {
                if tx.send(p).is_err() {
                    break;
                }
            }
        }));
        rx = next_rx;
    }
    let sink = thread::spawn(move || {
        let mut lat = Vec::with_capacity(count as usize);
        for p in rx.iter() {
            lat.push(now_ns(epoch) - p.timestamp.as_nanos());
        }
        lat
    });
    let start = Instant::now();
    let source = thread::spawn(move || {
        for i in 0..count {
            if !gap.is_zero() {
                wait_until(epoch + gap * i as u32);
            }
            let ts = Timestamp::from_nanos(now_ns(epoch));
            first_tx.send(Packet::new(ts, Tick)).unwrap();
        }
    });
    source.join().unwrap();
    for h in handles {
        h.join().unwrap();
    }
    let latencies = sink.join().unwrap();
    Run {
        elapsed: start.elapsed(),
        latencies,
    }
}

fn quantile(sorted: &[u64], q: f64) -> u64 {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(5);
    let mut tput = [Vec::new(), Vec::new()];
    let mut p50 = [Vec::new(), Vec::new()];
    let mut p99 = [Vec::new(), Vec::new()];
    for round in 0..rounds {
        for (i, which) in ["engine", "raw"].iter().enumerate() {
            let run = |count, gap| {
                if i == 0 {
                    engine_run(count, gap)
                } else {
                    raw_run(count, gap)
                }
            };
            let t = run(THROUGHPUT_PACKETS, Duration::ZERO);
            assert_eq!(
                t.latencies.len() as u64,
                THROUGHPUT_PACKETS,
                "{which}: packets lost"
            );
            tput[i].push(THROUGHPUT_PACKETS as f64 / t.elapsed.as_secs_f64());
            let mut l = run(LATENCY_PACKETS, LATENCY_GAP).latencies;
            l.sort_unstable();
            p50[i].push(quantile(&l, 0.5) as f64 / HOPS as f64);
            p99[i].push(quantile(&l, 0.99) as f64 / HOPS as f64);
        }
        eprintln!("round {} of {rounds} done", round + 1);
    }
    let (te, tr) = (median(tput[0].clone()), median(tput[1].clone()));
    let (le, lr) = (median(p50[0].clone()), median(p50[1].clone()));
    let (qe, qr) = (median(p99[0].clone()), median(p99[1].clone()));
    println!("chain of {STAGES} pass-through nodes ({HOPS} hops), queues of {QUEUE}, medians of {rounds} rounds");
    println!(
        "{:<28} {:>14} {:>14} {:>8}",
        "", "weir engine", "raw crossbeam", "ratio"
    );
    println!(
        "{:<28} {:>14.0} {:>14.0} {:>8.2}",
        "throughput (packets/s)",
        te,
        tr,
        tr / te
    );
    println!(
        "{:<28} {:>14.0} {:>14.0} {:>8.2}",
        "per-hop latency p50 (ns)",
        le,
        lr,
        le / lr
    );
    println!(
        "{:<28} {:>14.0} {:>14.0} {:>8.2}",
        "per-hop latency p99 (ns)",
        qe,
        qr,
        qe / qr
    );
}
