//! `audio.capture`: a microphone as a source of timestamped audio frames.
//!
//! ```yaml
//! mic:
//!   node: audio.capture
//!   with: { device: default, rate: 48000, channels: 1, frame_ms: 20 }
//! ```
//! Options: `device` (a name as listed by `weir devices`, a part of it, or `default`),
//! `rate`, `channels` (the device's nearest supported configuration is used and logged; a
//! device with more channels than asked is mixed down to mono when `channels: 1`),
//! `frame_ms` (packet length), `ring_ms` (how much audio the real-time ring holds while the
//! capture thread is late).
//!
//! The cpal callback only copies into the ring ([`crate::ring`]); this node's thread cuts
//! frames and stamps them from the device's sample count, so a stall never makes time jump
//! backwards and lost samples (overruns) show as a forward jump of `start_sample`. Overruns
//! and stream errors are logged, sent as `overrun` / `stream_error` events on the `event`
//! output, and summed up in a `capture_stats` event and a log line at close.
//!
//! This is the live-source kind ([`Role::Live`]): `weir run GRAPH --input FILE.wav` replaces
//! it with the recording kind (`audio.wav_file`), paced. Waiting for the device is hardware
//! waiting: the thread parks until the callback wakes it (a few milliseconds at most at a
//! time, so a stop is seen at once); timestamps come from the sample count, not a clock.

use std::sync::Arc;
use std::time::{Duration, Instant};

use cpal::traits::StreamTrait;
use serde::Deserialize;
use serde_json::json;
use weir_engine::{
    Config, Context, Flow, NodeError, NodeKind, OptionSpec, OptionType, Output, Ports, Role,
    Source, Timestamp,
};
use weir_media::{AudioFrame, Event};

use crate::device::{self, Direction, Negotiated, StreamErrors, Wanted};
use crate::ring::{capture_ring, Block, CaptureCounters, Framer};
use crate::LiveError;

/// The longest the capture thread waits for the device before it looks at the graph again
/// (stop, interrupt); the callback wakes it as soon as audio arrives.
const MAX_WAIT: Duration = Duration::from_millis(20);

/// The ports of `audio.capture`.
#[derive(Clone, Copy, Debug)]
pub struct CapturePorts {
    audio: Output<AudioFrame>,
    event: Output<Event>,
}

fn ports(p: &mut Ports) -> CapturePorts {
    CapturePorts {
        audio: p.output(
            "audio",
            "audio frames stamped from the device's sample count",
        ),
        event: p.output("event", "overrun, stream_error and capture_stats events"),
    }
}

/// The `audio.capture` kind, on the default audio host.
pub fn kind() -> NodeKind {
    NodeKind::source(
        "audio.capture",
        "Captures a microphone (cpal) as timestamped audio frames.",
        ports,
        |c: CaptureConfig, ports| Ok(CaptureNode::new(c).with_ports(ports)),
    )
    .role(Role::Live)
}

/// A capture kind called `name` that always opens `device` (a virtual microphone in tests),
/// with the counters of the node it builds.
pub fn kind_with_device(
    name: &'static str,
    device: cpal::Device,
) -> (NodeKind, Arc<CaptureCounters>) {
    let counters = Arc::new(CaptureCounters::default());
    let shared = counters.clone();
    let kind = NodeKind::source(
        name,
        "Captures an injected cpal device.",
        ports,
        move |c: CaptureConfig, ports| {
            Ok(CaptureNode::with_device(c, device.clone())
                .share_counters(shared.clone())
                .with_ports(ports))
        },
    )
    .role(Role::Live);
    (kind, counters)
}

/// Settings of [`CaptureNode`]: the options of `audio.capture`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaptureConfig {
    /// Device name, part of it, or `default`.
    pub device: String,
    /// Sample rate asked for.
    pub rate: u32,
    /// Channels asked for.
    pub channels: u16,
    /// Frame length in milliseconds.
    pub frame_ms: f64,
    /// Ring capacity in milliseconds.
    pub ring_ms: f64,
}

impl Config for CaptureConfig {
    fn options() -> Vec<OptionSpec> {
        vec![
            OptionSpec::with_default(
                "device",
                OptionType::Str,
                "default",
                "input device name (or part of it), or `default`",
            ),
            OptionSpec::with_default("rate", OptionType::Int, 48_000, "sample rate in Hz")
                .range(1000.0, 384_000.0),
            OptionSpec::with_default("channels", OptionType::Int, 1, "channels").range(1.0, 64.0),
            OptionSpec::with_default("frame_ms", OptionType::Float, 20.0, "frame length in ms")
                .range(1.0, 1000.0),
            OptionSpec::with_default(
                "ring_ms",
                OptionType::Float,
                500.0,
                "audio the real-time ring holds while the capture thread is late, in ms",
            )
            .range(10.0, 60_000.0),
        ]
    }
}

impl Default for CaptureConfig {
    fn default() -> Self {
        CaptureConfig {
            device: "default".into(),
            rate: 48_000,
            channels: 1,
            frame_ms: 20.0,
            ring_ms: 500.0,
        }
    }
}

enum DeviceChoice {
    DefaultHost,
    Device(cpal::Device),
}

/// What the node has while its stream runs.
struct Live {
    /// `None` once closing: dropping the stream stops the callbacks.
    stream: Option<cpal::Stream>,
    framer: Framer,
    negotiated: Negotiated,
    out_channels: u16,
    frame_frames: usize,
    wait: Duration,
}

/// Source node capturing a cpal input device.
pub struct CaptureNode {
    config: CaptureConfig,
    ports: CapturePorts,
    source: DeviceChoice,
    counters: Arc<CaptureCounters>,
    errors: Arc<StreamErrors>,
    live: Option<Live>,
    errors_seen: usize,
    last_overrun_log: Option<Instant>,
    device_name: String,
}

impl CaptureNode {
    /// A node that opens `config.device` on the default audio host.
    pub fn new(config: CaptureConfig) -> Self {
        CaptureNode {
            config,
            ports: ports(&mut Ports::default()),
            source: DeviceChoice::DefaultHost,
            counters: Arc::default(),
            errors: Arc::default(),
            live: None,
            errors_seen: 0,
            last_overrun_log: None,
            device_name: String::new(),
        }
    }

    /// A node that opens `device` (any cpal device, e.g. a custom host's) instead.
    pub fn with_device(config: CaptureConfig, device: cpal::Device) -> Self {
        CaptureNode {
            source: DeviceChoice::Device(device),
            ..CaptureNode::new(config)
        }
    }

    /// Uses the port handles the kind declared.
    fn with_ports(mut self, ports: CapturePorts) -> Self {
        self.ports = ports;
        self
    }

    /// Uses `counters` for the ring's counters, so the caller can read them.
    pub fn share_counters(mut self, counters: Arc<CaptureCounters>) -> Self {
        self.counters = counters;
        self
    }

    /// The ring's counters (overruns, frames, callbacks).
    pub fn counters(&self) -> Arc<CaptureCounters> {
        self.counters.clone()
    }

    /// The configuration the device agreed to, once open.
    pub fn negotiated(&self) -> Option<Negotiated> {
        self.live.as_ref().map(|l| l.negotiated)
    }

    /// Opens the device and starts its stream, as [`Source::open`] does, outside a graph
    /// (`weir devices`, examples). The callback wakes the calling thread: call it from the
    /// thread that will read the audio.
    pub fn open_device(&mut self) -> Result<(), NodeError> {
        let live = self.start().map_err(|e| {
            let e = match (&self.source, e) {
                (_, e @ (LiveError::NoInputDevice { .. } | LiveError::DeviceNotFound { .. })) => e,
                (DeviceChoice::DefaultHost, other) => LiveError::NoInputDevice {
                    detail: other.to_string(),
                },
                (DeviceChoice::Device(_), other) => other,
            };
            NodeError::new(e.to_string())
        })?;
        self.live = Some(live);
        Ok(())
    }

    fn start(&mut self) -> Result<Live, LiveError> {
        let device = match &self.source {
            DeviceChoice::Device(d) => d.clone(),
            DeviceChoice::DefaultHost => {
                device::find_device(&cpal::default_host(), &self.config.device, Direction::Input)?
            }
        };
        self.device_name = device::device_name(&device);
        let want = Wanted {
            rate: self.config.rate,
            channels: self.config.channels,
        };
        let n = device::negotiate(&device, Direction::Input, want)?;
        let out_channels = if want.channels == 1 { 1 } else { n.channels };
        if n.rate != want.rate || n.channels != want.channels {
            tracing::warn!(
                device = %self.device_name, asked_rate = want.rate, asked_channels = want.channels,
                rate = n.rate, channels = n.channels, emitted_channels = out_channels,
                "capture: the device does not support the configuration asked; using the nearest"
            );
        }
        tracing::info!(
            device = %self.device_name, rate = n.rate, channels = n.channels,
            format = %n.format, "capture: opened input device"
        );
        let frame_frames =
            ((self.config.frame_ms / 1000.0 * f64::from(n.rate)).round() as usize).max(1);
        let ring_frames =
            ((self.config.ring_ms / 1000.0 * f64::from(n.rate)) as usize).max(2 * frame_frames);
        let (feed, framer) = capture_ring(ring_frames, n.channels, self.counters.clone());
        let feed = feed.wake(std::thread::current());
        let stream = device::build_capture_stream(&device, n, feed, self.errors.clone())?;
        stream.play().map_err(|source| LiveError::Stream {
            device: self.device_name.clone(),
            what: "cannot start the input stream".into(),
            source,
        })?;
        let frame_time = Duration::from_secs_f64(frame_frames as f64 / f64::from(n.rate));
        Ok(Live {
            stream: Some(stream),
            framer,
            negotiated: n,
            out_channels,
            frame_frames,
            wait: frame_time.clamp(Duration::from_millis(1), MAX_WAIT),
        })
    }

    /// Sends one block as an audio packet, after an `overrun` event if samples were lost.
    fn emit(&mut self, block: Block, ctx: &mut Context) -> Result<(), NodeError> {
        let Some(live) = self.live.as_ref() else {
            return Ok(());
        };
        let rate = live.negotiated.rate;
        let at = Timestamp::from_samples(block.start_sample, rate);
        if block.lost_before > 0 {
            let total = self.counters.snapshot().overrun_frames;
            let quiet = self
                .last_overrun_log
                .is_some_and(|t| t.elapsed() < Duration::from_secs(1));
            if !quiet {
                tracing::warn!(
                    lost_frames = block.lost_before, total_lost_frames = total,
                    at = %at, "capture: ring overrun, samples lost (the capture thread is late)"
                );
                self.last_overrun_log = Some(Instant::now());
            }
            let fields = json!({
                "lost_frames": block.lost_before,
                "total_lost_frames": total,
                "at_sample": block.start_sample,
            });
            send_event(ctx, self.ports.event, at, "overrun", fields)?;
        }
        let samples = mix(block.samples, live.negotiated.channels, live.out_channels);
        let frame = AudioFrame {
            rate,
            channels: live.out_channels,
            start_sample: block.start_sample,
            samples: Arc::from(samples),
        };
        ctx.send(self.ports.audio, at, frame)
    }

    /// Reports new stream errors; fails if the stream cannot go on.
    fn check_errors(&mut self, ctx: &mut Context) -> Result<(), NodeError> {
        let count = self.errors.count();
        if count == self.errors_seen {
            return Ok(());
        }
        let new = count - self.errors_seen;
        self.errors_seen = count;
        let kind = self.errors.last().unwrap_or(cpal::ErrorKind::Other);
        tracing::warn!(device = %self.device_name, new, total = count, kind = %kind,
            "capture: the audio backend reported stream errors");
        let at = self.position_time();
        let fields = json!({ "kind": format!("{kind:?}"), "message": kind.to_string(),
            "count": new, "total": count });
        send_event(ctx, self.ports.event, at, "stream_error", fields)?;
        if device::is_fatal(kind) {
            return Err(NodeError::new(format!(
                "input device `{}` stopped: {kind}",
                self.device_name
            )));
        }
        Ok(())
    }

    fn position_time(&self) -> Timestamp {
        self.live
            .as_ref()
            .map(|l| Timestamp::from_samples(l.framer.position(), l.negotiated.rate))
            .unwrap_or(Timestamp::ZERO)
    }
}

fn send_event(
    ctx: &mut Context,
    port: Output<Event>,
    at: Timestamp,
    name: &str,
    fields: serde_json::Value,
) -> Result<(), NodeError> {
    if !ctx.is_connected(port) {
        return Ok(());
    }
    ctx.send(port, at, Event::new(name, fields))
}

/// Mixes interleaved `samples` of `from` channels down to mono when `to` is 1.
fn mix(samples: Vec<f32>, from: u16, to: u16) -> Vec<f32> {
    if from == to || from <= 1 {
        return samples;
    }
    let scale = 1.0 / f32::from(from);
    samples
        .chunks_exact(usize::from(from))
        .map(|f| f.iter().sum::<f32>() * scale)
        .collect()
}

impl Source for CaptureNode {
    fn open(&mut self, _ctx: &mut Context) -> Result<(), NodeError> {
        self.open_device()
    }

    /// Sends the next frame once the device has delivered it. Waiting for the device is
    /// waiting on hardware, not pacing: the thread parks until the callback wakes it, at
    /// most `MAX_WAIT` at a time, so a stop or an interrupt is seen within that time.
    fn produce(&mut self, ctx: &mut Context) -> Result<Flow, NodeError> {
        self.check_errors(ctx)?;
        let Some(live) = self.live.as_mut() else {
            return Ok(Flow::Done);
        };
        let frames = live.frame_frames;
        let mut block = live.framer.next_block(frames, false);
        if block.is_none() {
            if ctx.stopping() {
                // The runtime ends the stream; `close` hands on what is left in the ring.
                return Ok(Flow::Continue);
            }
            std::thread::park_timeout(live.wait);
            if ctx.cancelled() || ctx.stopping() {
                // Interrupted while waiting: let the runtime flush first, so the next block
                // is sent in the new epoch instead of being discarded.
                return Ok(Flow::Continue);
            }
            block = live.framer.next_block(frames, false);
        }
        if let Some(b) = block {
            self.emit(b, ctx)?;
        }
        Ok(Flow::Continue)
    }

    fn close(&mut self, ctx: &mut Context) -> Result<(), NodeError> {
        let Some(live) = self.live.as_mut() else {
            return Ok(());
        };
        // Stop the callbacks first, then hand on everything already captured.
        live.stream = None;
        let frames = live.frame_frames;
        while let Some(b) = self
            .live
            .as_mut()
            .and_then(|l| l.framer.next_block(frames, true))
        {
            self.emit(b, ctx)?;
        }
        let at = self.position_time();
        let trailing = self
            .live
            .as_mut()
            .map_or(0, |l| l.framer.take_trailing_loss());
        if trailing > 0 {
            let fields = json!({
                "lost_frames": trailing,
                "total_lost_frames": self.counters.snapshot().overrun_frames,
                "at_sample": self.live.as_ref().map_or(0, |l| l.framer.position() - trailing),
            });
            send_event(ctx, self.ports.event, at, "overrun", fields)?;
        }
        let at = self.position_time();
        self.live = None;
        self.check_errors(ctx)?;
        let s = self.counters.snapshot();
        let fields = json!({
            "callbacks": s.callbacks, "device_frames": s.device_frames,
            "emitted_frames": s.emitted_frames, "overrun_frames": s.overrun_frames,
            "overrun_events": s.overrun_events, "stream_errors": self.errors.count(),
        });
        if s.overrun_frames > 0 || self.errors.count() > 0 {
            tracing::warn!(device = %self.device_name, overrun_frames = s.overrun_frames,
                overrun_events = s.overrun_events, stream_errors = self.errors.count(),
                emitted_frames = s.emitted_frames, "capture: closed with losses");
        } else {
            tracing::info!(device = %self.device_name, emitted_frames = s.emitted_frames,
                callbacks = s.callbacks, "capture: closed, nothing lost");
        }
        send_event(ctx, self.ports.event, at, "capture_stats", fields)
    }
}
