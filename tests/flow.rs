//! The runtime's promises: overflow policies, end of stream, stop, and failures that name
//! the node, on real threads and channels with test nodes defined here.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::run_yaml;
use crossbeam_channel::Receiver;
use weir_engine::{
    channel_sink, Event, Flow, Graph, Loader, Node, NodeError, NodeKind, OptionSpec, OptionType,
    Outputs, Packet, Payload, PortSpec, PortType, Registry, RunError, Timestamp,
};

/// Emits `count` events (0 = until stopped) with timestamps 0, 1, 2, ... ms.
struct Counter {
    next: u64,
    count: u64,
    pace: Duration,
}

impl Node for Counter {
    fn produce(&mut self, out: &mut Outputs) -> Result<Flow, NodeError> {
        if self.count != 0 && self.next >= self.count {
            return Ok(Flow::Done);
        }
        let ev = Event {
            name: Arc::from("n"),
            fields: Arc::new(serde_json::json!(self.next)),
        };
        out.send(
            0,
            Packet::new(
                Timestamp::from_nanos(self.next * 1_000_000),
                Payload::Event(ev),
            ),
        )?;
        self.next += 1;
        if !self.pace.is_zero() {
            std::thread::sleep(self.pace);
        }
        Ok(Flow::Continue)
    }
}

/// Passes packets on after sleeping; fails at packet `fail_at`, or panics at `panic_at`.
struct Slow {
    delay: Duration,
    seen: u64,
    fail_at: Option<u64>,
    panic_at: Option<u64>,
    backwards: bool,
}

impl Node for Slow {
    fn process(
        &mut self,
        _port: usize,
        mut packet: Packet,
        out: &mut Outputs,
    ) -> Result<(), NodeError> {
        std::thread::sleep(self.delay);
        if Some(self.seen) == self.fail_at {
            return Err(NodeError::new(format!("bad packet #{}", self.seen)));
        }
        if Some(self.seen) == self.panic_at {
            panic!("test panic at #{}", self.seen);
        }
        if self.backwards && self.seen == 3 {
            packet.timestamp = Timestamp::ZERO;
        }
        self.seen += 1;
        out.send(0, packet)
    }
}

fn test_registry() -> (Registry, Receiver<Packet>) {
    let mut reg = Registry::new();
    reg.register(
        NodeKind::new("test.counter", "counts", |o| {
            Ok(Box::new(Counter {
                next: 0,
                count: o.u64("count")?,
                pace: Duration::from_micros(o.u64("pace_us")?),
            }))
        })
        .output(PortSpec::new("out", PortType::Event, "numbers"))
        .option(OptionSpec::with_default(
            "count",
            OptionType::Int,
            100,
            "how many",
        ))
        .option(OptionSpec::with_default(
            "pace_us",
            OptionType::Int,
            0,
            "sleep per packet",
        )),
    );
    reg.register(
        NodeKind::new("test.slow", "slow pass-through", |o| {
            let at = |k: &str| o.i64(k).ok().filter(|v| *v >= 0).map(|v| v as u64);
            Ok(Box::new(Slow {
                delay: Duration::from_micros(o.u64("delay_us")?),
                seen: 0,
                fail_at: at("fail_at"),
                panic_at: at("panic_at"),
                backwards: o.bool("backwards")?,
            }))
        })
        .input(PortSpec::new("in", PortType::Event, "numbers"))
        .output(PortSpec::new("out", PortType::Event, "numbers"))
        .option(OptionSpec::with_default(
            "delay_us",
            OptionType::Int,
            0,
            "sleep per packet",
        ))
        .option(OptionSpec::with_default(
            "fail_at",
            OptionType::Int,
            -1,
            "fail at this packet",
        ))
        .option(OptionSpec::with_default(
            "panic_at",
            OptionType::Int,
            -1,
            "panic at this packet",
        ))
        .option(OptionSpec::with_default(
            "backwards",
            OptionType::Bool,
            false,
            "send a timestamp backwards",
        )),
    );
    let (sink, rx) = channel_sink("test.collect", PortType::Event);
    reg.register(sink);
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
        .map(|p| match p.payload {
            Payload::Event(e) => e.fields.as_u64().unwrap(),
            _ => panic!("not an event"),
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
    let (sink2, rx2) = channel_sink("test.collect2", PortType::Event);
    reg.register(sink2);
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
    let (source, tx) = weir_engine::channel_source("test.program", PortType::Event);
    let (sink, rx) = channel_sink("test.collect", PortType::Event);
    reg.register(source);
    reg.register(sink);
    let yaml = "nodes:
  program: { node: test.program }
  collect: { node: test.collect, in: { in: program.out } }
";
    let plan = Loader::new(&reg)
        .load_str(std::path::Path::new("t.yaml"), yaml)
        .unwrap();
    let running = Graph::build(plan, &reg).unwrap().start().unwrap();
    let ev = Event {
        name: Arc::from("n"),
        fields: Arc::new(serde_json::json!(7)),
    };
    tx.send(Packet::new(Timestamp::ZERO, Payload::Event(ev)))
        .unwrap();
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
