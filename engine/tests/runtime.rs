//! The engine on real threads: interrupts and flushes, the virtual clock, the open barrier,
//! timestamp-ordered merging, stop, and the defects fixed on the way.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Deserialize;
use weir_engine::testing::NodeRunner;
use weir_engine::{
    channel_source, ClockKind, Config, Context, Flow, Graph, Incoming, Input, Loader, NoConfig,
    NodeError, NodeKind, OptionSpec, OptionType, Output, Packet, Payload, PortType, Ports,
    Processor, Registry, RunReport, Source, Timestamp,
};

/// A numbered value.
#[derive(Debug, Clone, PartialEq)]
struct Num(u64);

impl Payload for Num {
    const PORT: PortType = PortType::named("num");
    fn write_json(&self, o: &mut serde_json::Map<String, serde_json::Value>) {
        o.insert("n".into(), self.0.into());
    }
}

fn ms(n: u64) -> Timestamp {
    Timestamp::from_nanos(n * 1_000_000)
}

fn nums(times_ms: &[u64]) -> Vec<Packet> {
    times_ms
        .iter()
        .map(|&t| Packet::new(ms(t), Num(t)))
        .collect()
}

// ---------------------------------------------------------------- nodes used by the tests

/// For each input, emits `tokens` numbers, one per `step_ms` of graph time, like a decoder.
struct Generator {
    ports: (Input<Num>, Output<Num>),
    tokens: u64,
    step: Duration,
    made: Arc<AtomicU64>,
}

#[derive(Deserialize)]
struct GeneratorConfig {
    tokens: u64,
    step_ms: u64,
}

impl Config for GeneratorConfig {
    fn options() -> Vec<OptionSpec> {
        vec![
            OptionSpec::with_default("tokens", OptionType::Int, 100, "").range(1.0, 1e6),
            OptionSpec::with_default("step_ms", OptionType::Int, 10, "").range(1.0, 1e6),
        ]
    }
}

impl Processor for Generator {
    fn process(&mut self, input: Incoming, ctx: &mut Context) -> Result<(), NodeError> {
        self.ports.0.expect(&input)?;
        let mut t = ctx.now();
        for i in 0..self.tokens {
            t = t.saturating_add(self.step);
            if !ctx.sleep_until(t) {
                break;
            }
            self.made.fetch_add(1, Ordering::Relaxed);
            ctx.send(self.ports.1, input.timestamp(), Num(i))?;
        }
        Ok(())
    }
}

fn generator_kind(made: Arc<AtomicU64>) -> NodeKind {
    NodeKind::processor(
        "test.generator",
        "emits numbers slowly",
        |p| (p.input::<Num>("in", ""), p.output::<Num>("out", "")),
        move |c: GeneratorConfig, ports| {
            Ok(Generator {
                ports,
                tokens: c.tokens,
                step: Duration::from_millis(c.step_ms),
                made: made.clone(),
            })
        },
    )
}

/// Takes `step_ms` of graph time per packet and records what it got and when.
struct SlowSink {
    step: Duration,
    got: Arc<Mutex<Vec<(u64, Timestamp)>>>,
    flushes: Arc<AtomicU64>,
}

impl Processor for SlowSink {
    fn process(&mut self, input: Incoming, ctx: &mut Context) -> Result<(), NodeError> {
        let n = input.packet.get::<Num>().map_or(u64::MAX, |n| n.0);
        self.got.lock().unwrap().push((n, ctx.now()));
        let until = ctx.now().saturating_add(self.step);
        ctx.sleep_until(until);
        Ok(())
    }

    fn flush(&mut self, _ctx: &mut Context) -> Result<(), NodeError> {
        self.flushes.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

/// Paced source of `count` numbers, one every `step_ms`, released at their timestamps.
struct Ticker {
    out: Output<Num>,
    next: u64,
    count: u64,
    step: u64,
    start: u64,
}

impl Source for Ticker {
    fn produce(&mut self, ctx: &mut Context) -> Result<Flow, NodeError> {
        if self.next == self.count {
            return Ok(Flow::Done);
        }
        let t = ms(self.start + self.next * self.step);
        if !ctx.sleep_until(t) {
            return Ok(Flow::Done);
        }
        ctx.send(self.out, t, Num(self.next))?;
        self.next += 1;
        Ok(Flow::Continue)
    }
}

#[derive(Deserialize)]
struct TickerConfig {
    count: u64,
    step_ms: u64,
    start_ms: u64,
}

impl Config for TickerConfig {
    fn options() -> Vec<OptionSpec> {
        vec![
            OptionSpec::with_default("count", OptionType::Int, 10, "").range(0.0, 1e9),
            OptionSpec::with_default("step_ms", OptionType::Int, 20, "").range(1.0, 1e9),
            OptionSpec::with_default("start_ms", OptionType::Int, 0, "").range(0.0, 1e9),
        ]
    }
}

fn ticker_kind() -> NodeKind {
    NodeKind::source(
        "test.ticker",
        "paced numbers",
        |p| p.output::<Num>("out", ""),
        |c: TickerConfig, out| {
            Ok(Ticker {
                out,
                next: 0,
                count: c.count,
                step: c.step_ms,
                start: c.start_ms,
            })
        },
    )
}

/// Records every packet with the graph time it was handled at.
fn recorder_kind(name: &'static str, got: Arc<Mutex<Vec<(u64, Timestamp)>>>) -> NodeKind {
    NodeKind::processor(
        name,
        "records",
        |p| p.any_input("in", ""),
        move |_: NoConfig, _| {
            Ok(SlowSink {
                step: Duration::ZERO,
                got: got.clone(),
                flushes: Arc::default(),
            })
        },
    )
}

fn run(registry: &Registry, yaml: &str, clock: ClockKind) -> RunReport {
    let plan = Loader::new(registry)
        .load_str(Path::new("test.yaml"), yaml)
        .unwrap_or_else(|e| panic!("{e}"));
    Graph::build(plan, registry)
        .unwrap()
        .with_clock(clock)
        .run()
        .unwrap()
}

// ---------------------------------------------------------------- interrupts

#[test]
fn an_interrupt_stops_work_within_a_step_and_flushes_what_is_queued_downstream() {
    let made = Arc::new(AtomicU64::new(0));
    let got = Arc::new(Mutex::new(Vec::new()));
    let flushes = Arc::new(AtomicU64::new(0));
    let mut r = Registry::new();
    r.register(ticker_kind()).unwrap();
    r.register(generator_kind(made.clone())).unwrap();
    let (g, f) = (got.clone(), flushes.clone());
    r.register(NodeKind::processor(
        "test.slow_sink",
        "",
        |p| p.input::<Num>("in", ""),
        move |_: NoConfig, _| {
            Ok(SlowSink {
                step: Duration::from_millis(30),
                got: g.clone(),
                flushes: f.clone(),
            })
        },
    ))
    .unwrap();
    // One prompt at 0 ms; the generator makes a token every 10 ms, the sink takes 30 ms per
    // token, so tokens queue up; the trigger fires at 205 ms.
    let yaml = "
nodes:
  prompt: { node: test.ticker, with: { count: 1 } }
  barge: { node: test.ticker, with: { count: 1, start_ms: 205 } }
  gen: { node: test.generator, in: { in: prompt.out }, interrupt: barge.out }
  sink: { node: test.slow_sink, in: { in: gen.out }, queue: { size: 64 } }
";
    let report = run(&r, yaml, ClockKind::Virtual);
    let made = made.load(Ordering::Relaxed);
    let got = got.lock().unwrap().clone();
    assert_eq!(
        made, 20,
        "tokens at 10..=200 ms were made, none after 205 ms"
    );
    let flushed = report.edge_to("sink.in").unwrap().flushed;
    assert_eq!(
        got.len() as u64 + flushed,
        made,
        "every token is delivered or flushed"
    );
    assert!(flushed >= 10, "the queued tokens were flushed: {flushed}");
    let cut = ms(205);
    assert!(
        got.iter().all(|(_, t)| *t <= cut),
        "no token made before the interrupt reached the sink after it: {got:?}"
    );
    assert_eq!(report.node("gen").unwrap().interrupts, 1);
    assert_eq!(report.node("sink").unwrap().interrupts, 1);
    assert_eq!(report.node("prompt").unwrap().interrupts, 0);
    assert_eq!(flushes.load(Ordering::Relaxed), 1, "the sink flushed once");
}

#[test]
fn what_was_queued_for_the_target_when_its_interrupt_fired_is_discarded() {
    // Prompts at 0, 50, 100 and 150 ms; the generator works on the first for 10 ms per
    // token, so the next two wait in its queue when the trigger fires at 105 ms. They were
    // sent before the interrupt, by a node the interrupt does not reach: the target must not
    // start on them afterwards. The prompt sent after the trigger is answered in full.
    let made = Arc::new(AtomicU64::new(0));
    let got = Arc::new(Mutex::new(Vec::new()));
    let mut r = Registry::new();
    r.register(ticker_kind()).unwrap();
    r.register(generator_kind(made.clone())).unwrap();
    r.register(recorder_kind("test.recorder", got.clone()))
        .unwrap();
    let yaml = "
nodes:
  prompt: { node: test.ticker, with: { count: 4, step_ms: 50 } }
  barge: { node: test.ticker, with: { count: 1, start_ms: 105 } }
  gen: { node: test.generator, in: { in: prompt.out }, interrupt: barge.out, with: { tokens: 20 } }
  sink: { node: test.recorder, in: { in: gen.out } }
";
    let report = run(&r, yaml, ClockKind::Virtual);
    let got = got.lock().unwrap().clone();
    assert_eq!(
        report.edge_to("gen.in").unwrap().flushed,
        2,
        "the prompts queued at 50 and 100 ms were discarded"
    );
    assert_eq!(
        made.load(Ordering::Relaxed),
        30,
        "10 tokens of the first prompt (10..=100 ms), 20 of the last: {got:?}"
    );
    let after: Vec<_> = got.iter().filter(|(_, t)| *t > ms(150)).collect();
    assert_eq!(
        after.len(),
        20,
        "the prompt after the interrupt was answered: {got:?}"
    );
    assert_eq!(
        got.len() as u64 + report.edge_to("sink.in").unwrap().flushed,
        30
    );
}

#[test]
fn an_interrupt_from_downstream_of_its_target_is_refused() {
    let mut r = Registry::new();
    r.register(ticker_kind()).unwrap();
    r.register(generator_kind(Arc::default())).unwrap();
    let yaml = "
nodes:
  prompt: { node: test.ticker }
  gen: { node: test.generator, in: { in: prompt.out }, interrupt: gen2.out }
  gen2: { node: test.generator, in: { in: gen.out } }
";
    let err = Loader::new(&r)
        .load_str(Path::new("loop.yaml"), yaml)
        .unwrap_err()
        .to_string();
    assert!(err.contains("loop.yaml:4:"), "{err}");
    assert!(err.contains("`gen2` is downstream of `gen`"), "{err}");
    let bad_port = "
nodes:
  prompt: { node: test.ticker }
  gen: { node: test.generator, in: { in: prompt.out }, interrupt: prompt.outt }
";
    let err = Loader::new(&r)
        .load_str(Path::new("port.yaml"), bad_port)
        .unwrap_err()
        .to_string();
    assert!(err.contains("has no output `outt`"), "{err}");
    assert!(err.contains("did you mean `out`"), "{err}");
}

// ---------------------------------------------------------------- the clock

#[test]
fn the_virtual_clock_replays_paced_sources_fast_and_exactly() {
    let got = Arc::new(Mutex::new(Vec::new()));
    let mut r = Registry::new();
    r.register(ticker_kind()).unwrap();
    r.register(recorder_kind("test.record", got.clone()))
        .unwrap();
    // 30 s of packets every 20 ms.
    let yaml = "
nodes:
  src: { node: test.ticker, with: { count: 1500, step_ms: 20 } }
  rec: { node: test.record, in: { in: src.out } }
";
    let t0 = Instant::now();
    run(&r, yaml, ClockKind::Virtual);
    let wall = t0.elapsed();
    let got = got.lock().unwrap().clone();
    assert_eq!(got.len(), 1500);
    for (n, t) in &got {
        assert_eq!(*t, ms(n * 20), "packet {n} was seen at its media time");
    }
    assert!(
        wall < Duration::from_secs(10),
        "30 s of paced input took {wall:?} on the virtual clock"
    );
}

#[test]
fn a_stop_wakes_a_sleeping_source_at_once() {
    let mut r = Registry::new();
    r.register(ticker_kind()).unwrap();
    r.register(recorder_kind("test.record", Arc::default()))
        .unwrap();
    let yaml = "
nodes:
  src: { node: test.ticker, with: { count: 3, step_ms: 3600000 } }
  rec: { node: test.record, in: { in: src.out } }
";
    let plan = Loader::new(&r).load_str(Path::new("t.yaml"), yaml).unwrap();
    let running = Graph::build(plan, &r).unwrap().start().unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let t0 = Instant::now();
    running.stop_handle().stop();
    let report = running.wait().unwrap();
    assert!(t0.elapsed() < Duration::from_secs(5));
    assert_eq!(
        report.node("rec").unwrap().packets_in,
        1,
        "only the packet at 0 ms"
    );
}

// ---------------------------------------------------------------- merge

/// Two inputs; records `(port, n)` in the order received.
struct Pair {
    a: Input<Num>,
    b: Input<Num>,
    got: Arc<Mutex<Vec<(char, u64, Timestamp)>>>,
}

impl Processor for Pair {
    fn process(&mut self, input: Incoming, ctx: &mut Context) -> Result<(), NodeError> {
        let (port, n) = match (self.a.get(&input), self.b.get(&input)) {
            (Some(n), _) => ('a', n.0),
            (_, Some(n)) => ('b', n.0),
            _ => return Err(NodeError::new("no such port")),
        };
        self.got.lock().unwrap().push((port, n, ctx.now()));
        Ok(())
    }
}

fn pair_kind(got: Arc<Mutex<Vec<(char, u64, Timestamp)>>>) -> NodeKind {
    fn ports(p: &mut Ports) -> (Input<Num>, Input<Num>) {
        (p.input("a", ""), p.input("b", ""))
    }
    NodeKind::processor(
        "test.pair",
        "two inputs",
        ports,
        move |_: NoConfig, (a, b)| {
            Ok(Pair {
                a,
                b,
                got: got.clone(),
            })
        },
    )
}

#[test]
fn two_inputs_arrive_in_timestamp_order_whatever_the_arrival_order() {
    for round in 0..10 {
        let got = Arc::new(Mutex::new(Vec::new()));
        let a: Vec<u64> = (0..200).map(|i| i * 2).collect();
        let b: Vec<u64> = (0..200).map(|i| i * 2 + 1).collect();
        NodeRunner::new(pair_kind(got.clone()))
            .feed("a", nums(&a))
            .feed("b", nums(&b))
            .unpaced()
            .clock(ClockKind::Real)
            .run()
            .unwrap();
        let order: Vec<u64> = got.lock().unwrap().iter().map(|(_, n, _)| *n).collect();
        let expected: Vec<u64> = (0..400).collect();
        assert_eq!(order, expected, "round {round}");
    }
}

#[test]
fn a_silent_input_is_waited_for_at_most_the_merge_bound() {
    let got = Arc::new(Mutex::new(Vec::new()));
    NodeRunner::new(pair_kind(got.clone()))
        .feed("a", nums(&[0, 20, 40]))
        .feed("b", nums(&[1000]))
        .run()
        .unwrap();
    let got = got.lock().unwrap().clone();
    let seen: Vec<(char, u64, Timestamp)> = vec![
        ('a', 0, ms(100)),
        ('a', 20, ms(120)),
        ('a', 40, ms(140)),
        ('b', 1000, ms(1000)),
    ];
    assert_eq!(
        got, seen,
        "each packet of `a` waited 100 ms of graph time for `b`"
    );
}

// ---------------------------------------------------------------- barrier and defects

struct SlowOpen {
    opened: Arc<AtomicBool>,
}

impl Processor for SlowOpen {
    fn open(&mut self, _ctx: &mut Context) -> Result<(), NodeError> {
        std::thread::sleep(Duration::from_millis(300));
        self.opened.store(true, Ordering::SeqCst);
        Ok(())
    }
    fn process(&mut self, _: Incoming, _: &mut Context) -> Result<(), NodeError> {
        Ok(())
    }
}

struct CheckOpened {
    out: Output<Num>,
    opened: Arc<AtomicBool>,
    sent: bool,
}

impl Source for CheckOpened {
    fn produce(&mut self, ctx: &mut Context) -> Result<Flow, NodeError> {
        if !self.opened.load(Ordering::SeqCst) {
            return Err(NodeError::new("produced before every node opened"));
        }
        if std::mem::replace(&mut self.sent, true) {
            return Ok(Flow::Done);
        }
        ctx.send(self.out, Timestamp::ZERO, Num(0))?;
        Ok(Flow::Continue)
    }
}

#[test]
fn sources_start_only_after_every_node_opened() {
    let opened = Arc::new(AtomicBool::new(false));
    let mut r = Registry::new();
    let o = opened.clone();
    r.register(NodeKind::source(
        "test.check",
        "",
        |p| p.output::<Num>("out", ""),
        move |_: NoConfig, out| {
            Ok(CheckOpened {
                out,
                opened: o.clone(),
                sent: false,
            })
        },
    ))
    .unwrap();
    let o = opened.clone();
    r.register(NodeKind::processor(
        "test.slow_open",
        "",
        |p| p.input::<Num>("in", ""),
        move |_: NoConfig, _| Ok(SlowOpen { opened: o.clone() }),
    ))
    .unwrap();
    let yaml = "
nodes:
  src: { node: test.check }
  slow: { node: test.slow_open, in: { in: src.out }, queue: { size: 1, overflow: drop_oldest } }
";
    let report = run(&r, yaml, ClockKind::Real);
    assert_eq!(report.edge_to("slow.in").unwrap().sent, 1);
    assert_eq!(report.total_dropped(), 0);
}

struct Endless {
    out: Output<Num>,
    n: u64,
}

impl Source for Endless {
    fn produce(&mut self, ctx: &mut Context) -> Result<Flow, NodeError> {
        self.n += 1;
        ctx.send(self.out, Timestamp::from_nanos(self.n), Num(self.n))?;
        Ok(Flow::Continue)
    }
}

struct FailAfter(u64);

impl Processor for FailAfter {
    fn process(&mut self, _: Incoming, _: &mut Context) -> Result<(), NodeError> {
        self.0 -= 1;
        if self.0 == 0 {
            return Err(NodeError::new("enough"));
        }
        Ok(())
    }
}

#[test]
fn a_drop_oldest_edge_sees_its_consumer_end() {
    let mut r = Registry::new();
    r.register(NodeKind::source(
        "test.endless",
        "",
        |p| p.output::<Num>("out", ""),
        |_: NoConfig, out| Ok(Endless { out, n: 0 }),
    ))
    .unwrap();
    r.register(NodeKind::processor(
        "test.fail_after",
        "",
        |p| p.input::<Num>("in", ""),
        |_: NoConfig, _| Ok(FailAfter(3)),
    ))
    .unwrap();
    let yaml = "
nodes:
  src: { node: test.endless }
  sink: { node: test.fail_after, in: { in: src.out }, queue: { size: 4, overflow: drop_oldest } }
";
    let plan = Loader::new(&r).load_str(Path::new("t.yaml"), yaml).unwrap();
    let (tx, rx) = crossbeam_channel::bounded(1);
    let r = Arc::new(r);
    std::thread::spawn(move || {
        let result = Graph::build(plan, &r).unwrap().run();
        let _ = tx.send(result.map(|_| ()).map_err(|e| e.to_string()));
    });
    let result = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("the source kept producing into a dead edge");
    assert_eq!(result.unwrap_err(), "node `sink` failed: enough");
}

#[test]
fn a_kind_cannot_be_registered_twice() {
    let mut r = Registry::new();
    r.register(ticker_kind()).unwrap();
    let err = r.register(ticker_kind()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "node kind `test.ticker` is registered twice"
    );
}

#[test]
fn endpoints_are_bounded() {
    let (_kind, tx) = channel_source("app.in", Num::PORT, 2);
    tx.try_send(Packet::new(Timestamp::ZERO, Num(0))).unwrap();
    tx.try_send(Packet::new(Timestamp::ZERO, Num(1))).unwrap();
    assert!(tx.try_send(Packet::new(Timestamp::ZERO, Num(2))).is_err());
}

/// Blocks on a queue of one in front of a consumer that takes 50 ms per packet.
#[test]
fn process_time_leaves_out_time_blocked_on_a_full_queue() {
    struct Nap;
    impl Processor for Nap {
        fn process(&mut self, _: Incoming, _: &mut Context) -> Result<(), NodeError> {
            std::thread::sleep(Duration::from_millis(50));
            Ok(())
        }
    }
    let mut r = Registry::new();
    r.register(NodeKind::source(
        "test.endless",
        "",
        |p| p.output::<Num>("out", ""),
        |_: NoConfig, out| Ok(Endless { out, n: 0 }),
    ))
    .unwrap();
    r.register(NodeKind::processor(
        "test.nap",
        "",
        |p| p.input::<Num>("in", ""),
        |_: NoConfig, _| Ok(Nap),
    ))
    .unwrap();
    let yaml = "
nodes:
  src: { node: test.endless }
  nap: { node: test.nap, in: { in: src.out }, queue: { size: 1 } }
";
    let plan = Loader::new(&r).load_str(Path::new("t.yaml"), yaml).unwrap();
    let running = Graph::build(plan, &r).unwrap().start().unwrap();
    std::thread::sleep(Duration::from_millis(600));
    running.stop_handle().stop();
    let report = running.wait().unwrap();
    let src = report.node("src").unwrap();
    assert!(src.calls >= 5, "{src:?}");
    assert!(
        src.mean < Duration::from_millis(10),
        "the source's time blocked in send counted as work: {src:?}"
    );
}

// ---------------------------------------------------------------- fault isolation, watchdog

/// Fails on odd numbers and panics on multiples of 5 (other than 0).
struct Picky {
    out: Output<Num>,
}

impl Processor for Picky {
    fn process(&mut self, input: Incoming, ctx: &mut Context) -> Result<(), NodeError> {
        let n = input.packet.get::<Num>().map_or(0, |n| n.0);
        if n.is_multiple_of(5) && n > 0 {
            panic!("cannot stand {n}");
        }
        if n % 2 == 1 {
            return Err(NodeError::new(format!("odd {n}")));
        }
        ctx.send(self.out, input.timestamp(), Num(n))
    }
}

fn picky_registry(got: Arc<Mutex<Vec<(u64, Timestamp)>>>) -> Registry {
    let mut r = Registry::new();
    r.register(ticker_kind()).unwrap();
    r.register(NodeKind::processor(
        "test.picky",
        "",
        |p| (p.input::<Num>("in", ""), p.output::<Num>("out", "")),
        |_: NoConfig, (_, out)| Ok(Picky { out }),
    ))
    .unwrap();
    r.register(recorder_kind("test.record", got)).unwrap();
    r
}

#[test]
fn on_error_skip_counts_failed_and_panicking_packets_and_goes_on() {
    let got = Arc::new(Mutex::new(Vec::new()));
    let r = picky_registry(got.clone());
    let yaml = "
nodes:
  src: { node: test.ticker, with: { count: 12, step_ms: 1 } }
  picky: { node: test.picky, in: { in: src.out }, on_error: skip }
  rec: { node: test.record, in: { in: picky.out } }
";
    let report = run(&r, yaml, ClockKind::Virtual);
    let kept: Vec<u64> = got.lock().unwrap().iter().map(|(n, _)| *n).collect();
    assert_eq!(kept, [0, 2, 4, 6, 8], "10 panicked, the odd ones failed");
    assert_eq!(report.node("picky").unwrap().errors, 7);

    let stop = "
nodes:
  src: { node: test.ticker, with: { count: 12, step_ms: 1 } }
  picky: { node: test.picky, in: { in: src.out } }
  rec: { node: test.record, in: { in: picky.out } }
";
    let plan = Loader::new(&r).load_str(Path::new("t.yaml"), stop).unwrap();
    let err = Graph::build(plan, &r).unwrap().run().unwrap_err();
    assert_eq!(err.to_string(), "node `picky` failed: odd 1");
}

/// Numbers what it got since it was opened and fails on multiples of `fail_every` (or on
/// everything with 1): a node whose state a restart must reset.
struct Counting {
    out: Output<Num>,
    fail_every: u64,
    since_open: u64,
    opens: Arc<AtomicU64>,
}

impl Processor for Counting {
    fn open(&mut self, _ctx: &mut Context) -> Result<(), NodeError> {
        self.opens.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn process(&mut self, input: Incoming, ctx: &mut Context) -> Result<(), NodeError> {
        let n = input.packet.get::<Num>().map_or(0, |n| n.0);
        if n.is_multiple_of(self.fail_every) {
            return Err(NodeError::new(format!("cannot take {n}")));
        }
        self.since_open += 1;
        ctx.send(self.out, ctx.now(), Num(n * 100 + self.since_open))
    }
}

#[derive(Deserialize)]
struct CountingConfig {
    fail_every: u64,
}

impl Config for CountingConfig {
    fn options() -> Vec<OptionSpec> {
        vec![OptionSpec::with_default("fail_every", OptionType::Int, 4, "").range(1.0, 1e6)]
    }
}

fn restart_registry(
    got: Arc<Mutex<Vec<(u64, Timestamp)>>>,
    builds: Arc<AtomicU64>,
    opens: Arc<AtomicU64>,
) -> Registry {
    let mut r = Registry::new();
    r.register(ticker_kind()).unwrap();
    r.register(NodeKind::processor(
        "test.counting",
        "",
        |p| (p.input::<Num>("in", ""), p.output::<Num>("out", "")),
        move |c: CountingConfig, (_, out)| {
            builds.fetch_add(1, Ordering::Relaxed);
            Ok(Counting {
                out,
                fail_every: c.fail_every,
                since_open: 0,
                opens: opens.clone(),
            })
        },
    ))
    .unwrap();
    r.register(recorder_kind("test.record", got)).unwrap();
    r
}

#[test]
fn on_error_restart_rebuilds_the_node_after_a_doubling_back_off() {
    let got = Arc::new(Mutex::new(Vec::new()));
    let (builds, opens) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let r = restart_registry(got.clone(), builds.clone(), opens.clone());
    let yaml = "
nodes:
  src: { node: test.ticker, with: { count: 10, step_ms: 1, start_ms: 1 } }
  counting: { node: test.counting, in: { in: src.out }, on_error: restart }
  rec: { node: test.record, in: { in: counting.out } }
";
    let report = run(&r, yaml, ClockKind::Virtual);
    let got = got.lock().unwrap().clone();
    let values: Vec<u64> = got.iter().map(|(n, _)| *n).collect();
    // 0 (at 1 ms), 4 and 8 fail; the count since open starts again after each restart.
    assert_eq!(values, [101, 202, 303, 501, 602, 703, 901]);
    let at = |i: usize| got[i].1.as_nanos() / 1_000_000;
    assert_eq!(at(0), 1 + 100, "the first restart waits 100 ms");
    assert_eq!(at(3), 101 + 200, "the second, within the window, 200 ms");
    assert_eq!(at(6), 301 + 400, "the third 400 ms");
    let n = report.node("counting").unwrap();
    assert_eq!((n.errors, n.restarts), (3, 3));
    assert_eq!(builds.load(Ordering::Relaxed), 4);
    assert_eq!(opens.load(Ordering::Relaxed), 4);
}

#[test]
fn on_error_restart_gives_up_after_its_limit() {
    let got = Arc::new(Mutex::new(Vec::new()));
    let (builds, opens) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let r = restart_registry(got.clone(), builds.clone(), opens);
    let yaml = "
nodes:
  src: { node: test.ticker, with: { count: 20, step_ms: 1, start_ms: 1 } }
  counting: { node: test.counting, in: { in: src.out }, with: { fail_every: 1 }, on_error: restart }
  rec: { node: test.record, in: { in: counting.out } }
";
    let plan = Loader::new(&r).load_str(Path::new("t.yaml"), yaml).unwrap();
    let (report, err) = Graph::build(plan, &r)
        .unwrap()
        .with_clock(ClockKind::Virtual)
        .start()
        .unwrap()
        .finish();
    assert_eq!(
        err.map(|e| e.to_string()).as_deref(),
        Some("node `counting` failed: cannot take 5 (restarted 5 times within 60 s; giving up)")
    );
    let n = report.node("counting").unwrap();
    assert_eq!((n.errors, n.restarts), (6, 5));
    assert_eq!(builds.load(Ordering::Relaxed), 6);
    assert!(got.lock().unwrap().is_empty());
}

/// Emits one number per `step` of graph time from whenever it was opened; the first one
/// built fails on its third packet, as a device that goes away would.
struct Flaky {
    out: Output<Num>,
    sent: u64,
    fails: bool,
}

impl Source for Flaky {
    fn produce(&mut self, ctx: &mut Context) -> Result<Flow, NodeError> {
        if self.fails && self.sent == 2 {
            return Err(NodeError::new("device went away"));
        }
        if !ctx.sleep_until(ctx.now().saturating_add(Duration::from_millis(10))) {
            return Ok(Flow::Done);
        }
        self.sent += 1;
        ctx.send(self.out, ctx.now(), Num(self.sent))?;
        Ok(if self.sent == 4 {
            Flow::Done
        } else {
            Flow::Continue
        })
    }
}

#[test]
fn a_restarted_source_goes_on_from_the_current_time() {
    let got = Arc::new(Mutex::new(Vec::new()));
    let mut r = Registry::new();
    let built = Arc::new(AtomicU64::new(0));
    r.register(NodeKind::source(
        "test.flaky",
        "",
        |p| p.output::<Num>("out", ""),
        move |_: NoConfig, out| {
            let first = built.fetch_add(1, Ordering::Relaxed) == 0;
            Ok(Flaky {
                out,
                sent: 0,
                fails: first,
            })
        },
    ))
    .unwrap();
    r.register(recorder_kind("test.record", got.clone()))
        .unwrap();
    let yaml = "
nodes:
  src: { node: test.flaky, on_error: restart }
  rec: { node: test.record, in: { in: src.out } }
";
    let report = run(&r, yaml, ClockKind::Virtual);
    let got = got.lock().unwrap().clone();
    let ms_of = |t: Timestamp| t.as_nanos() / 1_000_000;
    let seen: Vec<(u64, u64)> = got.iter().map(|&(n, t)| (n, ms_of(t))).collect();
    assert_eq!(
        seen,
        [(1, 10), (2, 20), (1, 130), (2, 140), (3, 150), (4, 160)]
    );
    assert_eq!(report.node("src").unwrap().restarts, 1);
}

#[test]
fn nodes_of_a_live_graph_skip_failed_packets_unless_told_otherwise() {
    let mut r = Registry::new();
    r.register(ticker_kind().role(weir_engine::Role::Live))
        .unwrap();
    r.register(NodeKind::processor(
        "test.pass",
        "",
        |p| (p.input::<Num>("in", ""), p.output::<Num>("out", "")),
        |_: NoConfig, (_, out)| Ok(Picky { out }),
    ))
    .unwrap();
    let yaml = "
nodes:
  mic: { node: test.ticker }
  a: { node: test.pass, in: { in: mic.out } }
  b: { node: test.pass, in: { in: a.out }, on_error: stop }
";
    let plan = Loader::new(&r).load_str(Path::new("t.yaml"), yaml).unwrap();
    let policy = |name: &str| plan.nodes.iter().find(|n| n.name == name).unwrap().on_error;
    use weir_engine::graph::OnError;
    assert_eq!(
        policy("mic"),
        OnError::Stop,
        "a source has no packet to skip"
    );
    assert_eq!(policy("a"), OnError::Skip);
    assert_eq!(policy("b"), OnError::Stop);
}

#[test]
fn the_watchdog_reports_a_slow_node_and_a_full_queue_while_they_stall() {
    struct Stuck;
    impl Processor for Stuck {
        fn process(&mut self, _: Incoming, _: &mut Context) -> Result<(), NodeError> {
            std::thread::sleep(Duration::from_millis(700));
            Ok(())
        }
    }
    let mut r = Registry::new();
    r.register(ticker_kind()).unwrap();
    r.register(NodeKind::processor(
        "test.stuck",
        "",
        |p| p.input::<Num>("in", ""),
        |_: NoConfig, _| Ok(Stuck),
    ))
    .unwrap();
    let yaml = "
nodes:
  src: { node: test.ticker, with: { count: 6, step_ms: 1 } }
  stuck: { node: test.stuck, in: { in: src.out }, queue: { size: 2 } }
";
    let plan = Loader::new(&r).load_str(Path::new("t.yaml"), yaml).unwrap();
    let report = Graph::build(plan, &r)
        .unwrap()
        .with_watchdog(Duration::from_millis(300))
        .run()
        .unwrap();
    assert!(
        report
            .stalls
            .iter()
            .any(|s| s.starts_with("node `stuck` has been working on one packet")),
        "{:?}",
        report.stalls
    );
    assert!(
        report
            .stalls
            .iter()
            .any(|s| s.starts_with("edge `src.out -> stuck.in` has been full (2/2)")),
        "{:?}",
        report.stalls
    );
}

// ---------------------------------------------------------------- back edges

/// Adds to each number on `in` the sum of every number fed back on `fb` so far.
struct Accumulate {
    ports: (Input<Num>, Input<Num>, Output<Num>),
    fed_back: u64,
}

impl Processor for Accumulate {
    fn process(&mut self, input: Incoming, ctx: &mut Context) -> Result<(), NodeError> {
        if let Some(v) = self.ports.1.get(&input) {
            self.fed_back = self.fed_back.wrapping_add(v.0);
            return Ok(());
        }
        let x = self.ports.0.expect(&input)?;
        ctx.send(
            self.ports.2,
            input.timestamp(),
            Num(x.0.wrapping_add(self.fed_back)),
        )
    }
}

fn accumulate_kind() -> NodeKind {
    NodeKind::processor(
        "test.accumulate",
        "adds what is fed back",
        |p| {
            (
                p.input::<Num>("in", ""),
                p.optional_input::<Num>("fb", ""),
                p.output::<Num>("out", ""),
            )
        },
        |_: NoConfig, ports| Ok(Accumulate { ports, fed_back: 0 }),
    )
}

/// Doubles each number.
struct Double((Input<Num>, Output<Num>));

impl Processor for Double {
    fn process(&mut self, input: Incoming, ctx: &mut Context) -> Result<(), NodeError> {
        let x = self.0 .0.expect(&input)?;
        ctx.send(self.0 .1, input.timestamp(), Num(x.0.wrapping_mul(2)))
    }
}

fn double_kind() -> NodeKind {
    NodeKind::processor(
        "test.double",
        "doubles",
        |p| (p.input::<Num>("in", ""), p.output::<Num>("out", "")),
        |_: NoConfig, ports| Ok(Double(ports)),
    )
}

fn loop_registry() -> Registry {
    let mut r = Registry::new();
    r.register(accumulate_kind()).unwrap();
    r.register(double_kind()).unwrap();
    r.register(ticker_kind()).unwrap();
    r
}

#[test]
fn a_loop_with_a_back_edge_runs_exactly_and_ends_with_its_forward_inputs() {
    const N: u64 = 20;
    let mut r = loop_registry();
    let (src, tx) = channel_source("test.source", Num::PORT, 4);
    let (sink, rx) = weir_engine::channel_sink("test.sink", Num::PORT, 4);
    r.register(src).unwrap();
    r.register(sink).unwrap();
    // `acc` is listed before `sink`, so `dbl` hands each result to the back edge before the
    // sink: when the test reads result `i`, its feedback is queued for `acc`, and it is
    // older than the next number, which the merge delivers in timestamp order.
    let yaml = "
nodes:
  src: { node: test.source }
  acc:
    node: test.accumulate
    in: { in: src.out }
    back: { fb: dbl.out }
    merge_wait_ms: 0
  dbl: { node: test.double, in: { in: acc.out } }
  sink: { node: test.sink, in: { in: dbl.out } }
";
    let plan = Loader::new(&r)
        .load_str(Path::new("loop.yaml"), yaml)
        .unwrap_or_else(|e| panic!("{e}"));
    let back = plan.edges.iter().find(|e| e.back).expect("one back edge");
    assert_eq!(back.to_label, "acc.fb");
    assert_eq!(
        back.queue.overflow,
        weir_engine::Overflow::DropOldest,
        "back edges drop by default"
    );
    let running = Graph::build(plan, &r).unwrap().start().unwrap();
    let (mut expected, mut fed_back) = (Vec::new(), 0);
    let mut got = Vec::new();
    for i in 1..=N {
        tx.send(Packet::new(ms(i), Num(i))).unwrap();
        let out = 2 * (i + fed_back);
        fed_back += out;
        expected.push(out);
        let p = rx.recv().expect("one result per number");
        got.push(p.get::<Num>().unwrap().0);
    }
    drop(tx);
    assert!(rx.recv().is_err(), "the sink ends after the last number");
    let report = running.wait().unwrap();
    assert_eq!(
        got, expected,
        "each number plus everything fed back before it"
    );
    let fb = report.edge_to("acc.fb").unwrap();
    assert_eq!((fb.sent, fb.dropped, fb.flushed), (N, 0, 0));
    assert_eq!(report.edge_to("sink.in").unwrap().sent, N);
}

#[test]
fn a_back_edge_whose_consumer_ended_discards_without_blocking() {
    // `acc` ends with its ticker while `dbl` still sends on the back edge (a queue of one
    // that nobody reads): the sends are discarded, nothing blocks, the graph ends.
    let got = Arc::new(Mutex::new(Vec::new()));
    let mut r = loop_registry();
    r.register(recorder_kind("test.recorder", got.clone()))
        .unwrap();
    let yaml = "
nodes:
  src: { node: test.ticker, with: { count: 50, step_ms: 1 } }
  acc: { node: test.accumulate, in: { in: src.out }, back: { fb: dbl.out }, back_queue: { size: 1 } }
  dbl: { node: test.double, in: { in: acc.out }, queue: { size: 64 } }
  sink: { node: test.recorder, in: { in: dbl.out }, queue: { size: 64 } }
";
    for clock in [ClockKind::Virtual, ClockKind::Real] {
        got.lock().unwrap().clear();
        let report = run(&r, yaml, clock);
        assert_eq!(got.lock().unwrap().len(), 50, "{clock:?}");
        let fb = report.edge_to("acc.fb").unwrap();
        assert_eq!(fb.capacity, 1);
        assert!(fb.sent <= 50 && fb.dropped <= fb.sent, "{clock:?}: {fb:?}");
    }
}

#[test]
fn an_interrupt_does_not_cross_a_back_edge() {
    let got = Arc::new(Mutex::new(Vec::new()));
    let mut r = loop_registry();
    r.register(recorder_kind("test.recorder", got.clone()))
        .unwrap();
    let yaml = "
nodes:
  src: { node: test.ticker, with: { count: 10, step_ms: 20 } }
  barge: { node: test.ticker, with: { count: 1, start_ms: 95 } }
  acc: { node: test.accumulate, in: { in: src.out }, back: { fb: dbl.out } }
  dbl: { node: test.double, in: { in: acc.out }, interrupt: barge.out }
  sink: { node: test.recorder, in: { in: dbl.out } }
";
    let plan = Loader::new(&r)
        .load_str(Path::new("loop.yaml"), yaml)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        plan.interrupt_regions(),
        vec![vec![3, 4]],
        "dbl and sink only"
    );
    let report = run(&r, yaml, ClockKind::Virtual);
    assert_eq!(report.node("dbl").unwrap().interrupts, 1);
    assert_eq!(report.node("sink").unwrap().interrupts, 1);
    assert_eq!(report.node("acc").unwrap().interrupts, 0);
    assert_eq!(report.node("src").unwrap().interrupts, 0);
    assert_eq!(report.edge_to("acc.fb").unwrap().flushed, 0);
    assert_eq!(got.lock().unwrap().len(), 10, "nothing was queued to flush");
}

#[test]
fn back_edge_errors_name_the_problem() {
    let r = loop_registry();
    let load = |yaml: &str| {
        Loader::new(&r)
            .load_str(Path::new("loop.yaml"), yaml)
            .unwrap_err()
            .to_string()
    };
    let err = load(
        "
nodes:
  src: { node: test.ticker }
  acc: { node: test.accumulate, in: { in: src.out, fb: dbl.out } }
  dbl: { node: test.double, in: { in: acc.out } }
",
    );
    assert!(err.contains("cycle: dbl -> acc -> dbl"), "{err}");
    assert!(err.contains("loop.yaml:4:"), "{err}");
    assert!(err.contains("under `back:`"), "{err}");
    let err = load(
        "
nodes:
  src: { node: test.ticker }
  acc:
    node: test.accumulate
    in: { in: src.out }
    back: { fb: dbl.out }
    back_queue: { size: 4, overflow: block }
  dbl: { node: test.double, in: { in: acc.out } }
",
    );
    assert!(err.contains("a back edge cannot block"), "{err}");
    assert!(err.contains("loop.yaml:8:38"), "{err}");
    assert!(err.contains("node `acc`") || err.contains("acc"), "{err}");
    let err = load(
        "
nodes:
  src: { node: test.ticker }
  acc: { node: test.accumulate, in: { in: src.out }, back: { fbb: dbl.out } }
  dbl: { node: test.double, in: { in: acc.out } }
",
    );
    assert!(err.contains("unknown input `fbb`"), "{err}");
    assert!(err.contains("did you mean `fb`"), "{err}");
    let err = load(
        "
nodes:
  src: { node: test.ticker }
  acc: { node: test.accumulate, in: { in: src.out }, back: { fb: src.outt } }
",
    );
    assert!(err.contains("has no output `outt`"), "{err}");
}
