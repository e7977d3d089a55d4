//! The runtime's promises: overflow policies, end of stream, stop, and failures that name
//! the node, on real threads and channels with test nodes defined here.

mod common;

use std::time::Duration;

use common::run_yaml;
use crossbeam_channel::Receiver;
use serde::Deserialize;
use weir_engine::{
    channel_sink, Config, Context, Flow, Graph, Incoming, Input, Loader, NodeError, NodeKind,
    OptionSpec, OptionType, Output, Packet, Payload, Processor, Registry, RunError, Source,
    Timestamp,
};
use weir_media::Event;

/// Room in the collecting sinks: every test reads them only after the run.
const SINK_CAPACITY: usize = 4096;

/// Emits `count` events (0 = until stopped) with timestamps 0, 1, 2, ... ms.
struct Counter {
    out: Output<Event>,
    next: u64,
    count: u64,
    pace: Duration,
}

/// The options of `test.counter`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CounterConfig {
    count: u64,
    pace_us: u64,
}

impl Config for CounterConfig {
    fn options() -> Vec<OptionSpec> {
        vec![
            OptionSpec::with_default("count", OptionType::Int, 100, "how many"),
            OptionSpec::with_default("pace_us", OptionType::Int, 0, "sleep per packet"),
        ]
    }
}

impl Source for Counter {
    fn produce(&mut self, ctx: &mut Context) -> Result<Flow, NodeError> {
        if self.count != 0 && self.next >= self.count {
            return Ok(Flow::Done);
        }
        ctx.send(
            self.out,
            Timestamp::from_nanos(self.next * 1_000_000),
            Event::new("n", serde_json::json!(self.next)),
        )?;
        self.next += 1;
        if !self.pace.is_zero() {
            let until = ctx.now().saturating_add(self.pace);
            if !ctx.sleep_until(until) {
                // Stopped while pacing: nothing more to produce.
                return Ok(Flow::Done);
            }
        }
        Ok(Flow::Continue)
    }
}

/// Passes packets on after taking `delay` of graph time; fails at packet `fail_at`, or
/// panics at `panic_at`.
struct Slow {
    input: Input<Event>,
    out: Output<Event>,
    delay: Duration,
    seen: u64,
    fail_at: Option<u64>,
    panic_at: Option<u64>,
    backwards: bool,
}

/// The options of `test.slow`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SlowConfig {
    delay_us: u64,
    fail_at: i64,
    panic_at: i64,
    backwards: bool,
}

impl Config for SlowConfig {
    fn options() -> Vec<OptionSpec> {
        vec![
            OptionSpec::with_default("delay_us", OptionType::Int, 0, "sleep per packet"),
            OptionSpec::with_default("fail_at", OptionType::Int, -1, "fail at this packet"),
            OptionSpec::with_default("panic_at", OptionType::Int, -1, "panic at this packet"),
            OptionSpec::with_default(
                "backwards",
                OptionType::Bool,
                false,
                "send a timestamp backwards",
            ),
        ]
    }
}

impl Processor for Slow {
    fn process(&mut self, input: Incoming, ctx: &mut Context) -> Result<(), NodeError> {
        self.input.expect(&input)?;
        if !self.delay.is_zero() {
            let until = ctx.now().saturating_add(self.delay);
            ctx.sleep_until(until);
        }
        if Some(self.seen) == self.fail_at {
            return Err(NodeError::new(format!("bad packet #{}", self.seen)));
        }
        if Some(self.seen) == self.panic_at {
            panic!("test panic at #{}", self.seen);
        }
        let mut packet = input.packet;
        if self.backwards && self.seen == 3 {
            packet.timestamp = Timestamp::ZERO;
        }
        self.seen += 1;
        ctx.forward(self.out, packet)
    }
}

fn test_registry() -> (Registry, Receiver<Packet>) {
    let mut reg = Registry::new();
    reg.register(NodeKind::source(
        "test.counter",
        "counts",
        |p| p.output::<Event>("out", "numbers"),
        |c: CounterConfig, out| {
            Ok(Counter {
                out,
                next: 0,
                count: c.count,
                pace: Duration::from_micros(c.pace_us),
            })
        },
    ))
    .unwrap();
    reg.register(NodeKind::processor(
        "test.slow",
        "slow pass-through",
        |p| {
            (
                p.input::<Event>("in", "numbers"),
                p.output::<Event>("out", "numbers"),
            )
        },
        |c: SlowConfig, (input, out)| {
            let at = |v: i64| u64::try_from(v).ok();
            Ok(Slow {
                input,
                out,
                delay: Duration::from_micros(c.delay_us),
                seen: 0,
                fail_at: at(c.fail_at),
                panic_at: at(c.panic_at),
                backwards: c.backwards,
            })
        },
    ))
    .unwrap();
    let (sink, rx) = channel_sink("test.collect", Event::PORT, SINK_CAPACITY);
    reg.register(sink).unwrap();
    (reg, rx)
}

fn graph(count: u64, queue: &str, slow: &str) -> String {
    format!(
        "nodes:
  source: {{ node: test.counter, with: {{ count: {count} }} }}
  slow: {{ node: test.slow, in: {{ in: source.out }}, queue: {queue}, with: {slow} }}
  collect: {{ node: test.collect, in: {{ in: slow.out }} }}
"
    )
}

fn numbers(rx: &Receiver<Packet>) -> Vec<u64> {
    rx.try_iter()
        .map(|p| {
            p.get::<Event>()
                .expect("not an event")
                .fields
                .as_u64()
                .unwrap()
        })
        .collect()
}

#[test]
fn block_loses_nothing_and_keeps_order() {
    let (reg, rx) = test_registry();
    let report = run_yaml(
        &reg,
        &graph(500, "{ size: 4, overflow: block }", "{ delay_us: 100 }"),
    )
    .unwrap();
    assert_eq!(numbers(&rx), (0..500).collect::<Vec<_>>());
    assert_eq!(report.total_dropped(), 0);
    assert_eq!(report.total_flushed(), 0, "no interrupt, nothing flushed");
    let edge = report.edge_to("slow.in").unwrap();
    assert_eq!(edge.sent, 500);
    assert!(
        edge.high_water <= 4 && edge.high_water >= 2,
        "high water {}",
        edge.high_water
    );
    assert_eq!(report.node("slow").unwrap().packets_in, 500);
}

#[test]
fn drop_oldest_counts_drops_and_keeps_the_newest_in_order() {
    let (reg, rx) = test_registry();
    let report = run_yaml(
        &reg,
        &graph(
            300,
            "{ size: 4, overflow: drop_oldest }",
            "{ delay_us: 1000 }",
        ),
    )
    .unwrap();
    let got = numbers(&rx);
    let dropped = report.edge_to("slow.in").unwrap().dropped;
    assert!(dropped > 0, "a slow sink must cause drops");
    assert_eq!(
        got.len() as u64 + dropped,
        300,
        "every packet is delivered or counted as dropped"
    );
    assert!(got.windows(2).all(|w| w[0] < w[1]), "out of order: {got:?}");
    assert_eq!(
        got.last(),
        Some(&299),
        "the newest packet survives drop_oldest"
    );
}

#[test]
fn drop_newest_counts_drops_and_keeps_the_oldest_in_order() {
    let (reg, rx) = test_registry();
    let report = run_yaml(
        &reg,
        &graph(
            300,
            "{ size: 4, overflow: drop_newest }",
            "{ delay_us: 1000 }",
        ),
    )
    .unwrap();
    let got = numbers(&rx);
    let dropped = report.edge_to("slow.in").unwrap().dropped;
    assert!(dropped > 0);
    assert_eq!(got.len() as u64 + dropped, 300);
    assert!(got.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(
        got.first(),
        Some(&0),
        "the oldest packet survives drop_newest"
    );
}

#[test]
fn a_node_error_stops_the_graph_names_the_node_and_drains_the_rest() {
    let (reg, rx) = test_registry();
    let err = run_yaml(&reg, &graph(0, "{ size: 4 }", "{ fail_at: 10 }")).unwrap_err();
    match &err {
        RunError::Node { node, source } => {
            assert_eq!(node, "slow");
            assert_eq!(source.message(), "bad packet #10");
        }
        other => panic!("unexpected error {other}"),
    }
    assert_eq!(err.to_string(), "node `slow` failed: bad packet #10");
    // What the failing node had sent before the error still arrives.
    assert_eq!(numbers(&rx), (0..10).collect::<Vec<_>>());
}

#[test]
fn a_panicking_node_is_reported_not_propagated() {
    let (reg, _rx) = test_registry();
    let err = run_yaml(&reg, &graph(100, "{ size: 4 }", "{ panic_at: 5 }")).unwrap_err();
    assert!(
        matches!(&err, RunError::Panic { node, message } if node == "slow" && message.contains("test panic at #5")),
        "{err}"
    );
}

#[test]
fn timestamps_going_backwards_are_an_error() {
    let (reg, _rx) = test_registry();
    let err = run_yaml(&reg, &graph(10, "{ size: 4 }", "{ backwards: true }")).unwrap_err();
    assert!(
        err.to_string().contains("is earlier than the previous"),
        "{err}"
    );
    assert_eq!(err.node(), "slow");
}

#[test]
fn stop_ends_sources_and_drains_everything_produced() {
    let (reg, rx) = test_registry();
    let yaml = "nodes:
  source: { node: test.counter, with: { count: 0, pace_us: 500 } }
  slow: { node: test.slow, in: { in: source.out }, queue: { size: 64 }, with: { delay_us: 2000 } }
  collect: { node: test.collect, in: { in: slow.out } }
";
    let plan = Loader::new(&reg)
        .load_str(std::path::Path::new("t.yaml"), yaml)
        .unwrap();
    let running = Graph::build(plan, &reg).unwrap().start().unwrap();
    std::thread::sleep(Duration::from_millis(150));
    running.stop_handle().stop();
    let report = running.wait().unwrap();
    let got = numbers(&rx);
    let produced = report.node("source").unwrap().packets_out;
    assert!(produced > 10, "the source ran ({produced} packets)");
    assert_eq!(
        got.len() as u64,
        produced,
        "everything produced before the stop is delivered"
    );
    assert_eq!(got, (0..produced).collect::<Vec<_>>());
}

#[test]
fn fan_out_delivers_every_packet_to_every_consumer() {
    let (mut reg, rx) = test_registry();
    let (sink2, rx2) = channel_sink("test.collect2", Event::PORT, SINK_CAPACITY);
    reg.register(sink2).unwrap();
    let yaml = "nodes:
  source: { node: test.counter, with: { count: 200 } }
  a: { node: test.collect, in: { in: source.out } }
  b: { node: test.collect2, in: { in: source.out } }
";
    let report = run_yaml(&reg, yaml).unwrap();
    assert_eq!(numbers(&rx), (0..200).collect::<Vec<_>>());
    assert_eq!(numbers(&rx2), (0..200).collect::<Vec<_>>());
    assert_eq!(report.node("source").unwrap().packets_out, 200);
}

#[test]
fn stop_ends_a_graph_whose_program_source_is_idle() {
    let mut reg = Registry::new();
    let (source, tx) = weir_engine::channel_source("test.program", Event::PORT, 16);
    let (sink, rx) = channel_sink("test.collect", Event::PORT, SINK_CAPACITY);
    reg.register(source).unwrap();
    reg.register(sink).unwrap();
    let yaml = "nodes:
  program: { node: test.program }
  collect: { node: test.collect, in: { in: program.out } }
";
    let plan = Loader::new(&reg)
        .load_str(std::path::Path::new("t.yaml"), yaml)
        .unwrap();
    let running = Graph::build(plan, &reg).unwrap().start().unwrap();
    let ev = Event::new("n", serde_json::json!(7));
    tx.send(Packet::new(Timestamp::ZERO, ev)).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let t0 = std::time::Instant::now();
    running.stop_handle().stop();
    running.wait().unwrap();
    assert!(
        t0.elapsed() < Duration::from_secs(2),
        "stop took {:?}",
        t0.elapsed()
    );
    assert_eq!(numbers(&rx), vec![7]);
    drop(tx);
}
