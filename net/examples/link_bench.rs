//! Per-hop latency and throughput of an audio edge between two processes on loopback:
//! Weir's `net.publish` / `net.subscribe_audio` against raw Zenoh put/subscribe with
//! messages of the same size, and against one in-process Weir edge, measured in the same
//! run, rounds alternating.
//!
//! The far end is a second process: `weir run bench/net_echo.yaml` (Weir), or this program
//! in `raw-echo` mode (raw Zenoh); it sends every message back. This process sends 20 ms
//! frames of 16 kHz mono audio (320 samples), one at a time for latency (round trip / 2),
//! then a burst for throughput (first send to last echo).
//!
//! ```sh
//! cargo build --release --bin weir -p weir-net --example link_bench
//! target/release/examples/link_bench --weir target/release/weir --rounds 5
//! ```
//!
//! Raw Zenoh publishes with `CongestionControl::Block`, like Weir's `overflow: block`
//! (Zenoh's default for `put` drops when its queue is full, which loses echoes of a burst).
//!
//! `--weir self` runs the far end's graph in this program instead of the launcher (the same
//! net nodes and engine, without the launcher's logging and signal handling).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use weir_engine::{
    channel_sink, channel_source, Graph, Loader, Packet, Payload, Registry, Timestamp,
};
use weir_media::AudioFrame;
use zenoh::qos::CongestionControl;
use zenoh::Wait;

const FRAME: usize = 320;
const RATE: u32 = 16_000;

struct Args {
    weir: PathBuf,
    rounds: usize,
    pings: usize,
    burst: usize,
    /// Weir's publishers with `express: true` (no batching).
    express: bool,
}

fn parse_args() -> Result<Option<(String, u16)>, String> {
    let a: Vec<String> = std::env::args().skip(1).collect();
    if let Some(mode @ ("raw-echo" | "weir-echo")) = a.first().map(String::as_str) {
        let port = a
            .get(1)
            .and_then(|p| p.parse().ok())
            .ok_or(format!("{mode} PORT"))?;
        return Ok(Some((mode.into(), port)));
    }
    Ok(None)
}

/// The Weir far end without the launcher: `bench/net_echo.yaml` run by this program (only
/// the net kinds registered), for `--weir self`.
fn weir_echo(port: u16, express: bool) {
    let mut registry = Registry::new();
    weir_net::register(&mut registry).unwrap();
    let yaml = std::fs::read_to_string("bench/net_echo.yaml")
        .unwrap()
        .replace(
            "${WEIR_LISTEN:-127.0.0.1:7447}",
            &format!("127.0.0.1:{port}"),
        )
        .replace(
            "with: { key: bench/pong,",
            &format!("with: {{ key: bench/pong, express: {express},"),
        );
    let plan = Loader::new(&registry)
        .load_str(Path::new("bench/net_echo.yaml"), &yaml)
        .unwrap();
    Graph::build(plan, &registry).unwrap().run().unwrap();
}

fn args() -> Args {
    let mut out = Args {
        weir: PathBuf::from("target/release/weir"),
        rounds: 5,
        pings: 500,
        burst: 5_000,
        express: false,
    };
    let a: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < a.len() {
        if a[i] == "--express" {
            out.express = true;
            i += 1;
            continue;
        }
        assert!(i + 1 < a.len(), "{} needs a value", a[i]);
        match a[i].as_str() {
            "--weir" => out.weir = PathBuf::from(&a[i + 1]),
            "--rounds" => out.rounds = a[i + 1].parse().expect("--rounds N"),
            "--pings" => out.pings = a[i + 1].parse().expect("--pings N"),
            "--burst" => out.burst = a[i + 1].parse().expect("--burst N"),
            other => panic!("unknown argument {other}"),
        }
        i += 2;
    }
    out
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local address").port()
}

fn peer(connect: Option<u16>, listen: Option<u16>) -> zenoh::Config {
    let mut c = zenoh::Config::default();
    c.insert_json5("mode", "\"peer\"").unwrap();
    c.insert_json5("scouting/multicast/enabled", "false")
        .unwrap();
    let ep = |p: Option<u16>| match p {
        Some(p) => format!("[\"tcp/127.0.0.1:{p}\"]"),
        None => "[]".into(),
    };
    c.insert_json5("connect/endpoints", &ep(connect)).unwrap();
    c.insert_json5("listen/endpoints", &ep(listen)).unwrap();
    c
}

/// The raw Zenoh far end: echoes bench/raw/ping to bench/raw/pong until an empty message.
fn raw_echo(port: u16) {
    let session = zenoh::open(peer(None, Some(port))).wait().unwrap();
    let publisher = session
        .declare_publisher("bench/raw/pong")
        .congestion_control(CongestionControl::Block)
        .wait()
        .unwrap();
    let (tx, rx) = crossbeam_channel::unbounded::<zenoh::bytes::ZBytes>();
    let _sub = session
        .declare_subscriber("bench/raw/ping")
        .callback(move |s| {
            let _ = tx.send(s.payload().clone());
        })
        .wait()
        .unwrap();
    for payload in rx {
        let end = payload.is_empty();
        publisher.put(payload).wait().unwrap();
        if end {
            break;
        }
    }
    std::thread::sleep(Duration::from_millis(200));
    session.close().wait().unwrap();
}

fn frame(i: usize) -> AudioFrame {
    let samples: Vec<f32> = (0..FRAME)
        .map(|k| ((i * FRAME + k) % 100) as f32 / 100.0)
        .collect();
    AudioFrame {
        rate: RATE,
        channels: 1,
        start_sample: (i * FRAME) as u64,
        samples: Arc::from(samples),
    }
}

/// Round trips (one at a time) and burst time through `send`/`recv`.
fn measure<M>(
    pings: usize,
    burst: usize,
    make: impl Fn(usize) -> M,
    send: &Sender<M>,
    recv: &Receiver<M>,
) -> (Vec<Duration>, Duration)
where
    M: Send + 'static,
{
    let mut rtts = Vec::with_capacity(pings);
    for i in 0..pings {
        let m = make(i);
        let t = Instant::now();
        send.send(m).unwrap();
        recv.recv().unwrap();
        rtts.push(t.elapsed());
    }
    let messages: Vec<M> = (pings..pings + burst).map(make).collect();
    let t = Instant::now();
    let s = send.clone();
    let feeder = std::thread::spawn(move || {
        for m in messages {
            s.send(m).unwrap();
        }
    });
    for _ in 0..burst {
        recv.recv().unwrap();
    }
    let elapsed = t.elapsed();
    feeder.join().unwrap();
    (rtts, elapsed)
}

fn weir_round(args: &Args) -> (Vec<Duration>, Duration) {
    let port = free_port();
    let echo: Child = if args.weir == Path::new("self") {
        Command::new(std::env::current_exe().unwrap())
            .args(["weir-echo", &port.to_string()])
            .env("WEIR_EXPRESS", args.express.to_string())
            .stdout(Stdio::null())
            .spawn()
            .expect("start this program as the weir echo")
    } else {
        Command::new(&args.weir)
            .args(["run", "bench/net_echo.yaml", "--set"])
            .arg(format!("pong.express={}", args.express))
            .env("WEIR_LISTEN", format!("127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the weir echo (build it: cargo build --release --bin weir)")
    };
    let yaml = format!(
        "nodes:\n  in: {{ node: bench.in }}\n  ping: {{ node: net.publish, in: {{ in: in.out }}, with: {{ key: bench/ping, express: {}, connect: \"tcp/127.0.0.1:{port}\" }} }}\n  pong: {{ node: net.subscribe_audio, with: {{ key: bench/pong, connect: \"tcp/127.0.0.1:{port}\" }} }}\n  out: {{ node: bench.out, in: {{ in: pong.out }} }}\n",
        args.express
    );
    let got = graph_round(args, &yaml);
    let mut echo = echo;
    echo.wait().unwrap();
    got
}

fn raw_round(args: &Args, size: usize) -> (Vec<Duration>, Duration) {
    let port = free_port();
    let me = std::env::current_exe().unwrap();
    let mut echo = Command::new(me)
        .args(["raw-echo", &port.to_string()])
        .spawn()
        .unwrap();
    let session = zenoh::open(peer(Some(port), None)).wait().unwrap();
    let publisher = session
        .declare_publisher("bench/raw/ping")
        .congestion_control(CongestionControl::Block)
        .wait()
        .unwrap();
    let (back_tx, back_rx) = crossbeam_channel::bounded::<Vec<u8>>(64);
    let _sub = session
        .declare_subscriber("bench/raw/pong")
        .callback(move |s| {
            let _ = back_tx.send(s.payload().to_bytes().into_owned());
        })
        .wait()
        .unwrap();
    while !publisher.matching_status().wait().unwrap().matching() {
        std::thread::sleep(Duration::from_millis(10));
    }
    // The echo's publisher must see this subscriber too: one probe round trip.
    let (out_tx, out_rx) = crossbeam_channel::bounded::<Vec<u8>>(64);
    let sender = std::thread::spawn(move || {
        for m in out_rx {
            publisher.put(m).wait().unwrap();
        }
        publisher.put(Vec::<u8>::new()).wait().unwrap();
    });
    let make = |i: usize| {
        let mut m = vec![0u8; size];
        m[..8].copy_from_slice(&(i as u64).to_le_bytes());
        m
    };
    loop {
        out_tx.send(make(0)).unwrap();
        if back_rx.recv_timeout(Duration::from_millis(200)).is_ok() {
            break;
        }
    }
    while back_rx.try_recv().is_ok() {}
    let got = measure(args.pings, args.burst, make, &out_tx, &back_rx);
    drop(out_tx);
    sender.join().unwrap();
    echo.wait().unwrap();
    session.close().wait().unwrap();
    got
}

/// One in-process edge: a channel source straight into a channel sink.
fn local_round(args: &Args) -> (Vec<Duration>, Duration) {
    graph_round(
        args,
        "nodes:\n  in: { node: bench.in }\n  out: { node: bench.out, in: { in: in.out } }\n",
    )
}

/// Runs `yaml`, whose `bench.in` and `bench.out` nodes are this program's channel ends (the
/// net kinds are registered too), and measures the round trips between them.
fn graph_round(args: &Args, yaml: &str) -> (Vec<Duration>, Duration) {
    let mut registry = Registry::new();
    weir_net::register(&mut registry).unwrap();
    let (source, tx) = channel_source("bench.in", AudioFrame::PORT, 64);
    let (sink, rx) = channel_sink("bench.out", AudioFrame::PORT, 64);
    registry.register(source).unwrap();
    registry.register(sink).unwrap();
    let plan = Loader::new(&registry)
        .load_str(Path::new("bench.yaml"), yaml)
        .unwrap();
    let running = Graph::build(plan, &registry).unwrap().start().unwrap();
    let make = |i: usize| {
        let f = frame(i);
        Packet::new(f.timestamp(), f)
    };
    let got = measure(args.pings, args.burst, make, &tx, &rx);
    drop(tx);
    while rx.recv().is_ok() {}
    running.wait().unwrap();
    got
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn encoded_size() -> usize {
    let f = frame(0);
    let header = weir_net::wire::Header {
        kind: weir_net::wire::Kind::Data,
        port: "audio".into(),
        stream: 1,
        seq: 1000,
        timestamp: Timestamp::from_nanos(1_000_000_000),
    };
    let mut out = Vec::new();
    weir_net::wire::write_header(&header, &mut out).unwrap();
    let packet = Packet::new(f.timestamp(), f);
    weir_net::Codecs::media()
        .get("audio")
        .unwrap()
        .encode(&packet, &mut out)
        .unwrap();
    out.len()
}

/// Nanoseconds to encode (header and payload, into a reused buffer) and to decode one frame,
/// medians over `n` of each.
fn codec_cost(n: usize) -> (f64, f64) {
    let codecs = weir_net::Codecs::media();
    let codec = codecs.get("audio").unwrap();
    let packet = {
        let f = frame(0);
        Packet::new(f.timestamp(), f)
    };
    let mut buffer = Vec::new();
    let (mut enc, mut dec) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for i in 0..n {
        let t = Instant::now();
        let header = weir_net::wire::Header {
            kind: weir_net::wire::Kind::Data,
            port: "audio".into(),
            stream: 1,
            seq: i as u64,
            timestamp: packet.timestamp,
        };
        weir_net::wire::write_header(&header, &mut buffer).unwrap();
        codec.encode(&packet, &mut buffer).unwrap();
        enc.push(t.elapsed().as_nanos() as f64);
        let t = Instant::now();
        let (header, payload) = weir_net::wire::read_header(&buffer).unwrap();
        let back = codec.decode(payload, header.timestamp).unwrap();
        dec.push(t.elapsed().as_nanos() as f64);
        std::hint::black_box(back);
    }
    (median(enc), median(dec))
}

fn main() {
    if let Some((mode, port)) = parse_args().unwrap() {
        if mode == "raw-echo" {
            raw_echo(port);
        } else {
            weir_echo(
                port,
                std::env::var("WEIR_EXPRESS").is_ok_and(|v| v == "true"),
            );
        }
        return;
    }
    let args = args();
    let size = encoded_size();
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "audio frame of {FRAME} samples: {size} bytes on the wire; load average {}",
        load.trim()
    );
    let (enc, dec) = codec_cost(10_000);
    println!("codec per frame (median of 10000): encode {enc:.0} ns, decode {dec:.0} ns");
    let mut rows: Vec<(&str, Vec<f64>, Vec<f64>)> = vec![
        ("raw Zenoh, 2 processes", vec![], vec![]),
        ("Weir net, 2 processes", vec![], vec![]),
        ("Weir, 1 in-process edge", vec![], vec![]),
    ];
    for round in 0..args.rounds {
        for (i, row) in rows.iter_mut().enumerate() {
            let (rtts, burst) = match i {
                0 => raw_round(&args, size),
                1 => weir_round(&args),
                _ => local_round(&args),
            };
            let hop = median(rtts.iter().map(|d| d.as_secs_f64() * 1e6 / 2.0).collect());
            let rate = args.burst as f64 / burst.as_secs_f64();
            println!(
                "round {round} {:<26} hop {hop:>8.1} us  {rate:>9.0} frames/s",
                row.0
            );
            row.1.push(hop);
            row.2.push(rate);
        }
    }
    println!("\n| path | per-hop latency, median (us) | throughput, median (frames/s) | latency vs raw | throughput vs raw |");
    println!("|---|---|---|---|---|");
    let raw_hop = median(rows[0].1.clone());
    let raw_rate = median(rows[0].2.clone());
    for (name, hops, rates) in &rows {
        let hop = median(hops.clone());
        let rate = median(rates.clone());
        println!(
            "| {name} | {hop:.1} | {rate:.0} | {:.2}x | {:.2}x |",
            hop / raw_hop,
            rate / raw_rate
        );
    }
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("\nload average at the end: {}", load.trim());
}
