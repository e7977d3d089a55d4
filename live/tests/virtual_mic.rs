//! The capture and playback nodes on cpal's custom host: a virtual microphone plays a WAV file
//! at real time through the normal `build_input_stream` path; a virtual speaker records what
//! playback gives it.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use weir_engine::{
    channel_sink, Context, Flow, Graph, Incoming, Input, Loader, NoConfig, NodeError, NodeKind,
    Output, Packet, Payload, Processor, Registry, RunError, RunReport, Source, Timestamp,
};
use weir_live::capture::{self, CaptureConfig, CaptureNode};
use weir_live::device::{find_device, Direction};
use weir_live::playback;
use weir_live::ring::CaptureCounters;
use weir_live::virtual_device::{VirtualHost, VirtualMic, VirtualSpeaker};
use weir_media::{AudioFrame, Event};

const RATE: u32 = 48_000;

/// A deterministic test signal: a chirp with a little noise, never exactly zero.
fn signal(frames: usize, channels: u16) -> Vec<f32> {
    let mut seed = 0x2545_f491_u32;
    (0..frames * usize::from(channels))
        .map(|i| {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            let t = (i / usize::from(channels)) as f32 / RATE as f32;
            let noise = (seed % 1000) as f32 / 1.0e5;
            0.5 * (std::f32::consts::TAU * (200.0 + 400.0 * t) * t).sin() + noise + 1.0e-3
        })
        .collect()
}

/// Writes `samples` as a 32-bit float WAV and reads it back as the virtual mic's input.
fn wav_roundtrip(name: &str, samples: &[f32], channels: u16) -> (PathBuf, Vec<f32>) {
    let path = std::env::temp_dir().join(format!("weir-live-{}-{name}.wav", std::process::id()));
    let spec = hound::WavSpec {
        channels,
        sample_rate: RATE,
        bits_per_sample: 32,
        sample_format: hound::SampleFormat::Float,
    };
    let mut w = hound::WavWriter::create(&path, spec).expect("create WAV");
    for &s in samples {
        w.write_sample(s).expect("write WAV");
    }
    w.finalize().expect("finish WAV");
    let read: Vec<f32> = hound::WavReader::open(&path)
        .expect("open WAV")
        .samples::<f32>()
        .map(|s| s.expect("sample"))
        .collect();
    (path, read)
}

/// Packets the collecting sinks hold, so a test can read them after the run.
const SINK_CAPACITY: usize = 4096;

/// A node that takes `delay` per packet: a downstream node that cannot keep up (the sleep
/// stands for CPU work, not pacing).
struct Slow {
    delay: Duration,
    input: Input<AudioFrame>,
    output: Output<AudioFrame>,
}

impl Processor for Slow {
    fn process(&mut self, input: Incoming, ctx: &mut Context) -> Result<(), NodeError> {
        std::thread::sleep(self.delay);
        self.input.expect(&input)?;
        ctx.forward(self.output, input.packet)
    }
}

fn slow_kind(delay: Duration) -> NodeKind {
    NodeKind::processor(
        "test.slow",
        "sleeps per packet",
        |p| (p.input("in", "audio"), p.output("out", "audio")),
        move |_: NoConfig, (input, output)| {
            Ok(Slow {
                delay,
                input,
                output,
            })
        },
    )
}

struct Run {
    audio: Vec<Packet>,
    events: Vec<Packet>,
    report: RunReport,
    counters: std::sync::Arc<CaptureCounters>,
}

/// Runs `yaml` with `test.mic` on `mic`, stops once the mic has played everything, and
/// collects what reached `test.audio_out` and `test.event_out`.
fn run(mic: &VirtualMic, yaml: &str, registry: Option<Registry>) -> Run {
    let mut registry = registry.unwrap_or_default();
    let (mic_kind, counters) = capture::kind_with_device("test.mic", mic.device());
    registry.register(mic_kind).expect("new kind");
    let (audio_sink, audio_rx) = channel_sink("test.audio_out", AudioFrame::PORT, SINK_CAPACITY);
    let (event_sink, event_rx) = channel_sink("test.event_out", Event::PORT, SINK_CAPACITY);
    registry.register(audio_sink).expect("new kind");
    registry.register(event_sink).expect("new kind");
    let plan = Loader::new(&registry)
        .load_str(Path::new("test.yaml"), yaml)
        .expect("valid graph");
    let running = Graph::build(plan, &registry)
        .expect("graph builds")
        .start()
        .expect("graph starts");
    drop(registry);
    let seconds = mic.samples().len() as f64 / f64::from(RATE);
    assert!(
        mic.wait_finished(Duration::from_secs_f64(seconds * 3.0 + 5.0)),
        "the virtual microphone did not finish"
    );
    running.stop_handle().stop();
    let report = running.wait().expect("graph runs");
    Run {
        audio: audio_rx.iter().collect(),
        events: event_rx.iter().collect(),
        report,
        counters,
    }
}

fn audio(p: &Packet) -> &AudioFrame {
    p.get::<AudioFrame>()
        .unwrap_or_else(|| panic!("expected audio, got {p:?}"))
}

/// Every packet is bit-exact to the file at its own position, and stamped from it.
fn assert_packets_match(packets: &[Packet], file: &[f32], channels: u16) {
    let ch = usize::from(channels);
    let mut last_end = 0;
    for p in packets {
        let a = audio(p);
        assert_eq!(a.rate, RATE);
        assert_eq!(a.channels, channels);
        assert!(a.start_sample >= last_end, "packets overlap or go back");
        assert_eq!(p.timestamp, Timestamp::from_samples(a.start_sample, RATE));
        let (s, e) = (a.start_sample as usize * ch, a.end_sample() as usize * ch);
        assert_eq!(
            &a.samples[..],
            &file[s..e],
            "samples at frame {}",
            a.start_sample
        );
        last_end = a.end_sample();
    }
}

#[test]
fn virtual_mic_packets_are_bit_exact_and_stamped_from_sample_positions() {
    let channels = 2;
    let frames = RATE as usize * 3 / 2; // 1.5 s
    let (path, file) = wav_roundtrip("exact", &signal(frames, channels), channels);
    let mic = VirtualMic::new(file.clone(), RATE, channels).block_frames(441);
    let yaml = "
nodes:
  mic: { node: test.mic, with: { rate: 48000, channels: 2, frame_ms: 20 } }
  out: { node: test.audio_out, in: { in: mic.audio } }
  ev: { node: test.event_out, in: { in: mic.event } }
";
    let r = run(&mic, yaml, None);
    let _ = std::fs::remove_file(path);
    assert_packets_match(&r.audio, &file, channels);
    let all: Vec<f32> = r
        .audio
        .iter()
        .flat_map(|p| audio(p).samples.to_vec())
        .collect();
    assert_eq!(all, file, "the concatenated packets are the file");
    // 20 ms packets, whatever the callback size; only the last may be shorter.
    let sizes: Vec<usize> = r.audio.iter().map(|p| audio(p).frames()).collect();
    assert!(
        sizes[..sizes.len() - 1].iter().all(|&n| n == 960),
        "{sizes:?}"
    );
    let s = r.counters.snapshot();
    assert_eq!((s.overrun_frames, s.stream_errors), (0, 0));
    assert_eq!(s.emitted_frames, frames as u64);
    let names: Vec<String> = r.events.iter().map(event_name).collect();
    assert_eq!(names, ["capture_stats"]);
}

fn event(p: &Packet) -> &Event {
    p.get::<Event>()
        .unwrap_or_else(|| panic!("expected an event, got {p:?}"))
}

fn event_name(p: &Packet) -> String {
    event(p).name.to_string()
}

fn event_field(p: &Packet, field: &str) -> u64 {
    event(p).fields[field].as_u64().expect("numeric field")
}

/// The callbacks kept their schedule whatever happened downstream. A callback that waited
/// for the slow consumer (30-45 ms a packet, for 10-20 ms of audio) would fall further behind
/// with every packet, to about a second over these runs; the bounds only leave room for a
/// loaded machine's scheduling.
fn assert_callbacks_on_time(mic: &VirtualMic) {
    let log = mic.callbacks();
    let late = log.iter().map(|c| c.late).max().unwrap_or_default();
    let took = log.iter().map(|c| c.took).max().unwrap_or_default();
    assert!(
        late < Duration::from_millis(200),
        "a callback was {late:?} late"
    );
    assert!(
        took < Duration::from_millis(100),
        "a callback took {took:?}"
    );
}

#[test]
fn slow_consumer_behind_drop_oldest_edge_drops_packets_not_the_callback() {
    let frames = RATE as usize * 2;
    let file = signal(frames, 1);
    let mic = VirtualMic::new(file.clone(), RATE, 1);
    let mut registry = Registry::new();
    registry
        .register(slow_kind(Duration::from_millis(45)))
        .expect("new kind");
    let yaml = "
nodes:
  mic: { node: test.mic, with: { rate: 48000, channels: 1, frame_ms: 20 } }
  slow:
    node: test.slow
    in: { in: mic.audio }
    queue: { size: 4, overflow: drop_oldest }
  out: { node: test.audio_out, in: { in: slow.out } }
";
    let r = run(&mic, yaml, Some(registry));
    assert_callbacks_on_time(&mic);
    let edge = r
        .report
        .edges
        .iter()
        .find(|e| e.to.starts_with("slow"))
        .expect("mic -> slow edge");
    assert!(
        edge.dropped > 0,
        "the drop_oldest edge should drop: {edge:?}"
    );
    assert_eq!(
        r.counters.snapshot().overrun_frames,
        0,
        "capture never waited"
    );
    // What got through is still exact and correctly stamped.
    assert_packets_match(&r.audio, &file, 1);
    assert_eq!(
        r.audio.len() as u64 + edge.dropped,
        (frames / 960) as u64,
        "every packet either arrived or was counted as dropped"
    );
}

#[test]
fn stalled_capture_thread_overruns_the_ring_and_counts_every_lost_sample() {
    let frames = RATE as usize * 2;
    let file = signal(frames, 1);
    let mic = VirtualMic::new(file.clone(), RATE, 1).block_frames(240);
    let mut registry = Registry::new();
    registry
        .register(slow_kind(Duration::from_millis(30)))
        .expect("new kind");
    // A blocking one-slot edge holds the capture thread back; the 30 ms ring overflows.
    let yaml = "
nodes:
  mic: { node: test.mic, with: { rate: 48000, channels: 1, frame_ms: 10, ring_ms: 30 } }
  slow:
    node: test.slow
    in: { in: mic.audio }
    queue: { size: 1, overflow: block }
  out: { node: test.audio_out, in: { in: slow.out } }
  ev: { node: test.event_out, in: { in: mic.event } }
";
    let r = run(&mic, yaml, Some(registry));
    assert_callbacks_on_time(&mic);
    let s = r.counters.snapshot();
    assert!(s.overrun_frames > 0 && s.overrun_events > 0, "{s:?}");
    assert_eq!(s.device_frames, frames as u64);
    let received: u64 = r.audio.iter().map(|p| audio(p).frames() as u64).sum();
    assert_eq!(
        received + s.overrun_frames,
        frames as u64,
        "every frame is accounted"
    );
    // Positions skip the lost samples: each packet is still the file at its position.
    assert_packets_match(&r.audio, &file, 1);
    let overrun_events: Vec<&Packet> = r
        .events
        .iter()
        .filter(|p| event_name(p) == "overrun")
        .collect();
    let lost: u64 = overrun_events
        .iter()
        .map(|p| event_field(p, "lost_frames"))
        .sum();
    assert_eq!(
        lost, s.overrun_frames,
        "overrun events add up to the counter"
    );
    let stats = r.events.last().expect("capture_stats at close");
    assert_eq!(event_name(stats), "capture_stats");
    assert_eq!(event_field(stats, "overrun_frames"), s.overrun_frames);
}

#[test]
fn capture_mixes_down_to_mono_when_the_device_has_more_channels() {
    let file = signal(RATE as usize / 4, 2);
    let mic = VirtualMic::new(file.clone(), RATE, 2);
    let yaml = "
nodes:
  mic: { node: test.mic, with: { rate: 44100, channels: 1 } }
  out: { node: test.audio_out, in: { in: mic.audio } }
";
    let r = run(&mic, yaml, None);
    let mono: Vec<f32> = r
        .audio
        .iter()
        .flat_map(|p| audio(p).samples.to_vec())
        .collect();
    let expected: Vec<f32> = file.chunks(2).map(|f| (f[0] + f[1]) * 0.5).collect();
    assert_eq!(mono, expected);
    assert!(r
        .audio
        .iter()
        .all(|p| audio(p).rate == RATE && audio(p).channels == 1));
}

#[test]
fn host_without_microphone_fails_with_a_replay_hint() {
    let host = VirtualHost::new(None, Some(VirtualSpeaker::new(RATE, 2))).host();
    let err = find_device(&host, "default", Direction::Input).expect_err("no mic");
    let text = err.to_string();
    assert!(
        text.contains("no audio input device is available"),
        "{text}"
    );
    assert!(
        text.contains("audio.wav_file") && text.contains("--input"),
        "{text}"
    );
    let err = find_device(&host, "USB mic", Direction::Input).expect_err("no such mic");
    assert!(
        err.to_string()
            .contains("no input device is called `USB mic`"),
        "{err}"
    );
}

#[test]
fn default_host_without_sound_card_fails_at_open_not_panics() {
    if Path::new("/dev/snd").exists() {
        eprintln!("skipped: this machine has a sound card");
        return;
    }
    let mut node = CaptureNode::new(CaptureConfig::default());
    let err = node.open_device().expect_err("no sound card");
    let text = err.to_string();
    assert!(
        text.contains("no audio input device is available"),
        "{text}"
    );
    assert!(text.contains("weir run GRAPH --input FILE.wav"), "{text}");
    // The same through the runtime: the graph fails at open, naming the node.
    let mut registry = Registry::new();
    weir_live::register(&mut registry).expect("new kinds");
    let (sink, _rx) = channel_sink("test.audio_out", AudioFrame::PORT, 16);
    registry.register(sink).expect("new kind");
    let yaml = "
nodes:
  mic: { node: audio.capture }
  out: { node: test.audio_out, in: { in: mic.audio } }
";
    let plan = Loader::new(&registry)
        .load_str(Path::new("mic.yaml"), yaml)
        .expect("valid graph");
    let err = Graph::build(plan, &registry)
        .expect("graph builds")
        .run()
        .expect_err("no sound card");
    assert!(matches!(err, RunError::Open { .. }), "{err}");
    assert_eq!(err.node(), "mic");
    assert!(
        err.to_string()
            .contains("no audio input device is available"),
        "{err}"
    );
}

#[test]
fn devices_report_lists_devices_and_configs() {
    let mic = VirtualMic::new(vec![0.0; 10], RATE, 1);
    let speaker = VirtualSpeaker::new(44_100, 2);
    let text = weir_live::devices_report_for(&VirtualHost::new(Some(mic), Some(speaker)).host())
        .expect("report");
    assert!(
        text.contains(
            "input devices:\n  Weir virtual microphone (default)\n    1 ch, 48000 Hz, f32"
        ),
        "{text}"
    );
    assert!(
        text.contains("output devices:\n  Weir virtual speaker (default)\n    2 ch, 44100 Hz, f32"),
        "{text}"
    );
    // The real host must answer too (an empty list on a machine without sound).
    let real = weir_live::devices_report().expect("default host report");
    assert!(real.contains("input devices:"), "{real}");
}

#[test]
fn playback_plays_every_sample_in_order() {
    let speaker = VirtualSpeaker::new(RATE, 2);
    let (kind, counters) = playback::kind_with_device("test.speaker", speaker.device());
    let mut registry = Registry::new();
    registry.register(kind).expect("new kind");
    let (source, tx) = weir_engine::channel_source("test.audio_in", AudioFrame::PORT, 64);
    registry.register(source).expect("new kind");
    let yaml = "
nodes:
  src: { node: test.audio_in }
  spk: { node: test.speaker, in: { audio: src.out }, with: { rate: 48000, channels: 2 } }
";
    let plan = Loader::new(&registry)
        .load_str(Path::new("play.yaml"), yaml)
        .expect("valid graph");
    let running = Graph::build(plan, &registry).unwrap().start().unwrap();
    let mono = signal(RATE as usize / 2, 1);
    for (i, chunk) in mono.chunks(960).enumerate() {
        let frame = AudioFrame {
            rate: RATE,
            channels: 1,
            start_sample: (i * 960) as u64,
            samples: chunk.into(),
        };
        tx.send(Packet::new(frame.timestamp(), frame)).unwrap();
    }
    drop(tx);
    running.wait().expect("playback runs");
    let played = speaker.recorded();
    let first = played
        .iter()
        .position(|&s| s != 0.0)
        .expect("something played");
    let expected: Vec<f32> = mono.iter().flat_map(|&s| [s, s]).collect();
    assert_eq!(&played[first..first + expected.len()], &expected[..]);
    let under = counters
        .underrun_frames
        .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(under, 0, "the ring never ran dry while audio was coming");
}

/// How long the tone source stays after the interrupt, so the speaker records the silence.
const SILENCE_WINDOW: Duration = Duration::from_millis(600);

/// A text-to-speech stand-in: sends `frames` 20 ms frames of a tone as fast as the graph
/// takes them, then waits for more work. After an interrupt it drops the rest of the tone,
/// stays for [`SILENCE_WINDOW`] and ends.
struct Tone {
    audio: Output<AudioFrame>,
    frames: u64,
    next: u64,
    cut: Option<Timestamp>,
    /// Samples sent before the interrupt.
    sent: Arc<AtomicU64>,
}

const TONE_FRAME: usize = 960;

/// Never silent: 0.2 ± 0.1.
fn tone_sample(i: u64) -> f32 {
    0.2 + 0.1 * (std::f32::consts::TAU * 440.0 * i as f32 / RATE as f32).sin()
}

impl Source for Tone {
    fn produce(&mut self, ctx: &mut Context) -> Result<Flow, NodeError> {
        if let Some(at) = self.cut {
            ctx.sleep_until(at.saturating_add(SILENCE_WINDOW));
            return Ok(Flow::Done);
        }
        if self.next == self.frames {
            // All sent: wait (until interrupted or stopped) like a TTS between answers.
            ctx.sleep_until(Timestamp::MAX);
            return Ok(Flow::Continue);
        }
        let start = self.next * TONE_FRAME as u64;
        let samples: Vec<f32> = (start..start + TONE_FRAME as u64)
            .map(tone_sample)
            .collect();
        let frame = AudioFrame {
            rate: RATE,
            channels: 1,
            start_sample: start,
            samples: samples.into(),
        };
        ctx.send(self.audio, frame.timestamp(), frame)?;
        if !ctx.cancelled() {
            self.sent.fetch_add(TONE_FRAME as u64, Relaxed);
        }
        self.next += 1;
        Ok(Flow::Continue)
    }

    fn flush(&mut self, ctx: &mut Context) -> Result<(), NodeError> {
        self.cut = Some(ctx.now());
        Ok(())
    }
}

/// Barge-in: one `speech_start` event at graph time `at`.
struct Barge {
    event: Output<Event>,
    at: Timestamp,
}

impl Source for Barge {
    fn produce(&mut self, ctx: &mut Context) -> Result<Flow, NodeError> {
        if ctx.sleep_until(self.at) {
            let now = ctx.now();
            ctx.send(
                self.event,
                now,
                Event::new("speech_start", serde_json::json!({})),
            )?;
        }
        Ok(Flow::Done)
    }
}

#[test]
fn interrupt_silences_playback_at_once_and_discards_the_queued_audio() {
    let _ = tracing_subscriber::fmt().with_test_writer().try_init();
    let tone_seconds = 5;
    let barge_at = Duration::from_millis(500);
    let speaker = VirtualSpeaker::new(RATE, 1);
    let (kind, counters) = playback::kind_with_device("test.speaker", speaker.device());
    let mut registry = Registry::new();
    registry.register(kind).expect("new kind");
    let sent = Arc::new(AtomicU64::new(0));
    let shared = sent.clone();
    let frames = (tone_seconds * RATE as usize / TONE_FRAME) as u64;
    registry
        .register(NodeKind::source(
            "test.tone",
            "a long tone, sent ahead of the speaker",
            |p| p.output::<AudioFrame>("audio", "tone"),
            move |_: NoConfig, audio| {
                Ok(Tone {
                    audio,
                    frames,
                    next: 0,
                    cut: None,
                    sent: shared.clone(),
                })
            },
        ))
        .expect("new kind");
    registry
        .register(NodeKind::source(
            "test.barge",
            "one interrupt",
            |p| p.output::<Event>("event", "speech_start"),
            move |_: NoConfig, event| {
                Ok(Barge {
                    event,
                    at: Timestamp::from_duration(barge_at),
                })
            },
        ))
        .expect("new kind");
    // The whole tone fits in the edge queue: without the interrupt, all of it would play.
    // The speaker's own ring holds a second of it.
    let yaml = "
nodes:
  barge: { node: test.barge }
  tone: { node: test.tone, interrupt: barge.event }
  spk:
    node: test.speaker
    in: { audio: tone.audio }
    queue: { size: 300 }
    with: { rate: 48000, channels: 1, buffer_ms: 1000 }
";
    let plan = Loader::new(&registry)
        .load_str(Path::new("barge.yaml"), yaml)
        .unwrap_or_else(|e| panic!("{e}"));
    let running = Graph::build(plan, &registry)
        .expect("graph builds")
        .start()
        .expect("graph starts");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !running.is_finished() {
        if Instant::now() > deadline {
            running.stop_handle().stop();
            panic!("the graph did not end after the interrupt");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let report = running.wait().expect("graph runs");

    let sent = sent.load(Relaxed) as usize;
    assert_eq!(
        sent,
        tone_seconds * RATE as usize,
        "the whole tone was sent"
    );
    let recorded = speaker.recorded();
    let first = recorded
        .iter()
        .position(|&s| s != 0.0)
        .expect("the tone played");
    let last = recorded
        .iter()
        .rposition(|&s| s != 0.0)
        .expect("the tone played");
    let played = last + 1 - first;
    let rate = RATE as usize;
    eprintln!(
        "sent {sent} samples, played {played} ({:.3} s), then {} samples of silence; \
         flushed {} frames in {} flush(es)",
        played as f64 / RATE as f64,
        recorded.len() - (last + 1),
        counters.flushed_frames.load(Relaxed),
        counters.flushes.load(Relaxed),
    );
    // What played is the tone, without a hole, up to the interrupt and no further.
    assert!(
        recorded[first..=last].iter().all(|&s| s != 0.0),
        "the tone played without gaps and never resumed after going silent"
    );
    assert_eq!(
        recorded[first],
        tone_sample(0),
        "the tone plays from its start"
    );
    assert!(
        played >= rate * 3 / 10,
        "about the half second before the interrupt played: {played}"
    );
    // Without the flush the speaker would have played the 1 s ring after the interrupt.
    assert!(
        played <= rate * 8 / 10,
        "the speaker went silent within 300 ms of the interrupt (half a second), \
         played {played} samples"
    );
    assert!(
        played * 4 < sent,
        "far less played ({played}) than sent ({sent})"
    );
    let silent_after = recorded.len() - (last + 1);
    assert!(
        silent_after >= rate * 3 / 10,
        "the speaker stayed silent after the flush: {silent_after} samples"
    );
    // The ring was about full (a second) when it was cleared: counted, not played.
    let flushed = counters.flushed_frames.load(Relaxed) as usize;
    assert!(flushed >= rate / 2, "flushed {flushed} frames");
    assert_eq!(counters.flushes.load(Relaxed), 1);
    assert!(played + flushed <= sent);
    assert_eq!(
        counters.underrun_frames.load(Relaxed),
        0,
        "silence after a flush is not an underrun"
    );
    // The tone still queued on the edge was discarded by the runtime, not played.
    let edge = report
        .edge_to("spk.audio")
        .or_else(|| report.edges.iter().find(|e| e.to.starts_with("spk")));
    let edge = edge.expect("tone -> spk edge");
    assert!(edge.flushed > 0, "{edge:?}");
    assert_eq!(report.node("spk").map(|n| n.interrupts), Some(1));
    // The interrupt cut audio being played: one barge-in, in the counters and the stats.
    assert_eq!(counters.barge_ins.load(Relaxed), 1);
    assert_eq!(report.node("spk").map(|n| n.cuts), Some(1));
}
