//! Benchmark of the live capture path on the virtual microphone, at real time.
//!
//! ```text
//! cargo run --release -p weir-live --example bench_capture -- [--seconds 20] [--wav FILE]
//!     [--block 480] [--frame-ms 20] [--vad speech.energy_vad]
//! cargo run --release -p weir-live --example bench_capture -- --vad speech.vad
//! ```
//! Graph: virtual mic → `audio.capture` → `audio.resample` (16 kHz) → VAD, plus a stamping
//! sink on the capture output. Reports callback-to-packet latency (from the virtual device
//! calling the cpal callback with a packet's last frame to the packet arriving at the next
//! node's thread: median, p99, max), CPU use of the process and of each node thread (from
//! /proc, Linux), overruns and queue drops. The WAV (default data/synth/command_48k.wav, a
//! synthetic signal if missing) is looped to `--seconds`.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use weir_engine::{
    Context, Graph, Incoming, Input, Loader, NoConfig, NodeError, NodeKind, Processor,
};
use weir_live::capture;
use weir_live::virtual_device::VirtualMic;
use weir_media::AudioFrame;

struct Args {
    seconds: f64,
    wav: Option<PathBuf>,
    block: usize,
    frame_ms: f64,
    vad: String,
}

fn args() -> Args {
    let mut a = Args {
        seconds: 20.0,
        wav: Some(PathBuf::from("data/synth/command_48k.wav")),
        block: 480,
        frame_ms: 20.0,
        vad: "speech.energy_vad".into(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_default();
        match flag.as_str() {
            "--seconds" => a.seconds = value.parse().unwrap_or(a.seconds),
            "--wav" => a.wav = Some(PathBuf::from(value)),
            "--block" => a.block = value.parse().unwrap_or(a.block),
            "--frame-ms" => a.frame_ms = value.parse().unwrap_or(a.frame_ms),
            "--vad" => a.vad = value,
            other => eprintln!("ignored argument `{other}`"),
        }
    }
    a
}

/// Mono samples and rate of the WAV, or a synthetic burst signal at 48 kHz.
fn load(path: Option<&Path>) -> (Vec<f32>, u32, String) {
    if let Some(p) = path.filter(|p| p.exists()) {
        if let Ok(mut r) = hound::WavReader::open(p) {
            let spec = r.spec();
            let ch = usize::from(spec.channels.max(1));
            let raw: Vec<f32> = match spec.sample_format {
                hound::SampleFormat::Float => {
                    r.samples::<f32>().map(|s| s.unwrap_or(0.0)).collect()
                }
                hound::SampleFormat::Int => {
                    let scale = 1.0 / (1u64 << (spec.bits_per_sample - 1)) as f32;
                    r.samples::<i32>()
                        .map(|s| s.unwrap_or(0) as f32 * scale)
                        .collect()
                }
            };
            let mono = raw
                .chunks(ch)
                .map(|f| f.iter().sum::<f32>() / ch as f32)
                .collect();
            return (mono, spec.sample_rate, p.display().to_string());
        }
    }
    let rate = 48_000;
    let signal = (0..rate as usize * 3)
        .map(|i| {
            let t = i as f32 / rate as f32;
            let on = (t % 1.5) < 0.8;
            if on {
                0.3 * (std::f32::consts::TAU * 220.0 * t).sin()
            } else {
                0.001 * ((i * 7919 % 97) as f32 / 97.0 - 0.5)
            }
        })
        .collect();
    (signal, rate, "synthetic bursts".into())
}

/// Arrival time and end position of every packet reaching the stamping sink.
type Stamps = Arc<Mutex<Vec<(Instant, u64)>>>;

struct Stamp {
    stamps: Stamps,
    input: Input<AudioFrame>,
}

impl Processor for Stamp {
    fn process(&mut self, input: Incoming, _: &mut Context) -> Result<(), NodeError> {
        // Wall-clock arrival time: this is a measurement, not pacing.
        let now = Instant::now();
        if let Some(a) = self.input.get(&input) {
            self.stamps
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push((now, a.end_sample()));
        }
        Ok(())
    }
}

/// Exits with a message when a kind cannot be registered.
fn registered<T, E: std::fmt::Display>(result: Result<T, E>) -> T {
    result.unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::exit(2);
    })
}

/// CPU seconds (user + system) of this process, from /proc/self/stat (Linux).
fn process_cpu() -> f64 {
    let ticks = 100.0; // USER_HZ on Linux
    let parse = |stat: &str| -> Option<f64> {
        let rest = &stat[stat.rfind(')')? + 2..];
        let f: Vec<&str> = rest.split_whitespace().collect();
        let user: f64 = f.get(11)?.parse().ok()?;
        let sys: f64 = f.get(12)?.parse().ok()?;
        Some((user + sys) / ticks)
    };
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| parse(&s))
        .unwrap_or(0.0)
}

/// CPU seconds of each live thread by name, from /proc/self/task/*/schedstat (nanoseconds).
fn thread_cpu() -> Vec<(String, f64)> {
    let mut threads = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/proc/self/task") {
        for t in dir.flatten() {
            let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
            let stat = std::fs::read_to_string(t.path().join("schedstat")).unwrap_or_default();
            if let Some(ns) = stat
                .split_whitespace()
                .next()
                .and_then(|v| v.parse::<f64>().ok())
            {
                threads.push((comm.trim().to_string(), ns / 1e9));
            }
        }
    }
    threads
}

fn quantile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

fn main() {
    let a = args();
    let (one, rate, source) = load(a.wav.as_deref());
    let total = (a.seconds * f64::from(rate)) as usize;
    let samples: Vec<f32> = one.iter().copied().cycle().take(total).collect();
    let mic = VirtualMic::new(samples, rate, 1).block_frames(a.block);

    let mut registry = registered(weir_nodes::registry());
    registered(weir_ml::register(&mut registry));
    let (mic_kind, counters) = capture::kind_with_device("bench.mic", mic.device());
    registered(registry.register(mic_kind));
    let stamps: Stamps = Arc::default();
    let shared = stamps.clone();
    registered(registry.register(NodeKind::processor(
        "bench.stamp",
        "records packet arrival",
        |p| p.input::<AudioFrame>("in", "audio"),
        move |_: NoConfig, input| {
            Ok(Stamp {
                stamps: shared.clone(),
                input,
            })
        },
    )));
    let vad_options = if a.vad == "speech.vad" {
        "with: { model: models/silero_vad_16k.onnx }"
    } else {
        ""
    };
    let yaml = format!(
        "
nodes:
  mic: {{ node: bench.mic, with: {{ rate: {rate}, channels: 1, frame_ms: {} }} }}
  stamp: {{ node: bench.stamp, in: {{ in: mic.audio }} }}
  resample:
    node: audio.resample
    in: {{ audio: mic.audio }}
    with: {{ rate: 16000 }}
    queue: {{ size: 64, overflow: drop_oldest }}
  vad:
    node: {}
    in: {{ audio: resample.audio }}
    queue: {{ size: 64, overflow: drop_oldest }}
    {vad_options}
",
        a.frame_ms, a.vad
    );
    let plan = match Loader::new(&registry).load_str(Path::new("bench.yaml"), &yaml) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    let running = Graph::build(plan, &registry)
        .expect("graph builds")
        .start()
        .expect("graph starts");
    drop(registry);
    let cpu0 = process_cpu();
    let t0 = Instant::now();
    mic.wait_finished(Duration::from_secs_f64(a.seconds * 2.0 + 10.0));
    let wall = t0.elapsed().as_secs_f64();
    let (cpu1, threads) = (process_cpu(), thread_cpu());
    running.stop_handle().stop();
    let report = running.wait().expect("graph runs");

    let callbacks = mic.callbacks();
    let stamps = stamps.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let mut latencies: Vec<Duration> = stamps
        .iter()
        .filter_map(|&(arrived, end)| {
            let i = callbacks.partition_point(|c| c.end_frame < end);
            callbacks
                .get(i)
                .map(|c| arrived.saturating_duration_since(c.at))
        })
        .collect();
    latencies.sort_unstable();
    let late = callbacks.iter().map(|c| c.late).max().unwrap_or_default();
    let took = callbacks.iter().map(|c| c.took).max().unwrap_or_default();
    let s = counters.snapshot();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "source: {source}, {rate} Hz, {:.1} s looped, callback {} frames, packets {} ms, VAD {}",
        a.seconds, a.block, a.frame_ms, a.vad
    );
    println!(
        "callback-to-packet latency over {} packets: median {:.3} ms, p99 {:.3} ms, max {:.3} ms",
        latencies.len(),
        ms(quantile(&latencies, 0.5)),
        ms(quantile(&latencies, 0.99)),
        ms(latencies.last().copied().unwrap_or_default())
    );
    println!(
        "callbacks: {}, longest {:.3} ms, latest start {:.3} ms behind schedule",
        callbacks.len(),
        ms(took),
        ms(late)
    );
    println!(
        "CPU: process {:.2}% of one core over {wall:.1} s wall (virtual mic thread included)",
        (cpu1 - cpu0) / wall * 100.0
    );
    for (name, cpu) in &threads {
        println!("  thread {name:<16} {:.2}%", cpu / wall * 100.0);
    }
    println!(
        "capture: {} frames emitted, {} overrun frames, {} stream errors",
        s.emitted_frames, s.overrun_frames, s.stream_errors
    );
    for e in &report.edges {
        println!(
            "  edge {} -> {}: sent {}, dropped {}, high water {}/{}",
            e.from, e.to, e.sent, e.dropped, e.high_water, e.capacity
        );
    }
}
