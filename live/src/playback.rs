//! `audio.playback`: plays audio frames on a speaker.
//!
//! ```yaml
//! speaker:
//!   node: audio.playback
//!   in: { audio: tts.audio }
//!   with: { device: default, rate: 48000, channels: 1, buffer_ms: 200 }
//! ```
//! Options: `device` (name, part of it, or `default`), `rate` and `channels` (the nearest
//! configuration the device supports is used and logged; incoming audio must have that rate:
//! put `audio.resample` before this node otherwise; mono input is copied to every device
//! channel, and any input is mixed down for a mono device), `buffer_ms` (ring size).
//!
//! The node fills a ring ([`crate::ring`]) and waits for room when it is full, so the graph
//! is paced by the speaker; the cpal callback only drains the ring and writes silence when it
//! runs dry, counting underruns. At end of stream the ring is played out before the stream
//! stops; underruns and stream errors are logged at close.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cpal::traits::StreamTrait;
use weir_engine::{
    Node, NodeError, NodeKind, OptionSpec, OptionType, Options, Outputs, Packet, Payload, PortSpec,
    PortType,
};

use crate::device::{self, Direction, Negotiated, StreamErrors, Wanted};
use crate::ring::{playback_ring, PlaybackCounters, PlaybackFeed};
use crate::LiveError;

/// How long the node waits for the device to take audio before it gives up.
const STALL_LIMIT: Duration = Duration::from_secs(3);

/// The `audio.playback` kind, on the default audio host.
pub fn kind() -> NodeKind {
    declare(NodeKind::new(
        "audio.playback",
        "Plays audio frames on a speaker (cpal).",
        |o| {
            Ok(Box::new(PlaybackNode::new(PlaybackConfig::from_options(
                o,
            )?)))
        },
    ))
}

/// A playback kind called `name` that always opens `device` (a virtual speaker in tests),
/// with the counters of the node it builds.
pub fn kind_with_device(
    name: &'static str,
    device: cpal::Device,
) -> (NodeKind, Arc<PlaybackCounters>) {
    let counters = Arc::new(PlaybackCounters::default());
    let shared = counters.clone();
    let kind = NodeKind::new(name, "Plays on an injected cpal device.", move |o| {
        let mut node = PlaybackNode::with_device(PlaybackConfig::from_options(o)?, device.clone());
        node.counters = shared.clone();
        Ok(Box::new(node))
    });
    (declare(kind), counters)
}

fn declare(kind: NodeKind) -> NodeKind {
    kind.input(PortSpec::new("audio", PortType::Audio, "audio to play"))
        .option(OptionSpec::with_default(
            "device",
            OptionType::Str,
            "default",
            "output device name (or part of it), or `default`",
        ))
        .option(
            OptionSpec::with_default("rate", OptionType::Int, 48_000, "sample rate in Hz")
                .range(1000.0, 384_000.0),
        )
        .option(
            OptionSpec::with_default("channels", OptionType::Int, 1, "channels").range(1.0, 64.0),
        )
        .option(
            OptionSpec::with_default(
                "buffer_ms",
                OptionType::Float,
                200.0,
                "audio queued ahead of the speaker, in ms",
            )
            .range(10.0, 60_000.0),
        )
}

/// Settings of [`PlaybackNode`].
#[derive(Clone, Debug, PartialEq)]
pub struct PlaybackConfig {
    /// Device name, part of it, or `default`.
    pub device: String,
    /// Sample rate asked for.
    pub rate: u32,
    /// Channels asked for.
    pub channels: u16,
    /// Ring capacity in milliseconds.
    pub buffer_ms: f64,
}

impl PlaybackConfig {
    /// Reads the settings from validated options.
    pub fn from_options(o: &Options) -> Result<Self, NodeError> {
        Ok(PlaybackConfig {
            device: o.str("device")?.to_string(),
            rate: o.u64("rate")?.min(384_000) as u32,
            channels: o.u64("channels")?.clamp(1, 64) as u16,
            buffer_ms: o.f64("buffer_ms")?,
        })
    }
}

struct Live {
    stream: cpal::Stream,
    feed: PlaybackFeed,
    negotiated: Negotiated,
    wait: Duration,
    buffer: Duration,
}

/// Sink node playing on a cpal output device.
pub struct PlaybackNode {
    config: PlaybackConfig,
    device: Option<cpal::Device>,
    counters: Arc<PlaybackCounters>,
    errors: Arc<StreamErrors>,
    live: Option<Live>,
    scratch: Vec<f32>,
    device_name: String,
}

impl PlaybackNode {
    /// A node that opens `config.device` on the default audio host.
    pub fn new(config: PlaybackConfig) -> Self {
        PlaybackNode {
            config,
            device: None,
            counters: Arc::default(),
            errors: Arc::default(),
            live: None,
            scratch: Vec::new(),
            device_name: String::new(),
        }
    }

    /// A node that opens `device` instead.
    pub fn with_device(config: PlaybackConfig, device: cpal::Device) -> Self {
        PlaybackNode {
            device: Some(device),
            ..PlaybackNode::new(config)
        }
    }

    /// The ring's counters (frames played, underruns).
    pub fn counters(&self) -> Arc<PlaybackCounters> {
        self.counters.clone()
    }

    fn start(&mut self) -> Result<Live, LiveError> {
        let device = match &self.device {
            Some(d) => d.clone(),
            None => device::find_device(
                &cpal::default_host(),
                &self.config.device,
                Direction::Output,
            )?,
        };
        self.device_name = device::device_name(&device);
        let want = Wanted {
            rate: self.config.rate,
            channels: self.config.channels,
        };
        let n = device::negotiate(&device, Direction::Output, want)?;
        if n.rate != want.rate || n.channels != want.channels {
            tracing::warn!(device = %self.device_name, asked_rate = want.rate,
                asked_channels = want.channels, rate = n.rate, channels = n.channels,
                "playback: the device does not support the configuration asked; using the nearest");
        }
        tracing::info!(device = %self.device_name, rate = n.rate, channels = n.channels,
            format = %n.format, "playback: opened output device");
        let frames = ((self.config.buffer_ms / 1000.0 * f64::from(n.rate)) as usize).max(64);
        let (feed, drain) = playback_ring(frames, n.channels, self.counters.clone());
        let stream = device::build_playback_stream(&device, n, drain, self.errors.clone())?;
        stream.play().map_err(|source| LiveError::Stream {
            device: self.device_name.clone(),
            what: "cannot start the output stream".into(),
            source,
        })?;
        let buffer = Duration::from_secs_f64(frames as f64 / f64::from(n.rate));
        Ok(Live {
            stream,
            feed,
            negotiated: n,
            wait: (buffer / 8).clamp(Duration::from_millis(1), Duration::from_millis(20)),
            buffer,
        })
    }

    fn check_errors(&self) -> Result<(), NodeError> {
        match self.errors.last() {
            Some(kind) if device::is_fatal(kind) => Err(NodeError::new(format!(
                "output device `{}` stopped: {kind}",
                self.device_name
            ))),
            _ => Ok(()),
        }
    }
}

/// Writes `input` (`from` channels) into `out` laid out for `to` channels.
fn remix(input: &[f32], from: u16, to: u16, out: &mut Vec<f32>) -> Result<(), NodeError> {
    out.clear();
    let (from_n, to_n) = (usize::from(from.max(1)), usize::from(to.max(1)));
    if from_n == to_n {
        out.extend_from_slice(input);
    } else if from_n == 1 {
        out.extend(input.iter().flat_map(|&s| std::iter::repeat_n(s, to_n)));
    } else if to_n == 1 {
        let scale = 1.0 / from_n as f32;
        out.extend(
            input
                .chunks_exact(from_n)
                .map(|f| f.iter().sum::<f32>() * scale),
        );
    } else {
        return Err(NodeError::new(format!(
            "cannot map {from} input channels to the device's {to}: send mono, or {to} channels"
        )));
    }
    Ok(())
}

impl Node for PlaybackNode {
    fn open(&mut self) -> Result<(), NodeError> {
        let live = self.start().map_err(|e| NodeError::new(e.to_string()))?;
        self.live = Some(live);
        Ok(())
    }

    fn process(
        &mut self,
        _port: usize,
        packet: Packet,
        _out: &mut Outputs,
    ) -> Result<(), NodeError> {
        let Payload::Audio(frame) = packet.payload else {
            return Ok(());
        };
        let Some(live) = self.live.as_mut() else {
            return Ok(());
        };
        let n = live.negotiated;
        if frame.rate != n.rate {
            return Err(NodeError::new(format!(
                "audio at {} Hz but output device `{}` runs at {} Hz: put `audio.resample` \
                 with `rate: {}` before this node",
                frame.rate, self.device_name, n.rate, n.rate
            )));
        }
        remix(
            &frame.samples,
            frame.channels,
            n.channels,
            &mut self.scratch,
        )?;
        let mut rest: &[f32] = &self.scratch;
        let mut progress = Instant::now();
        while !rest.is_empty() {
            let taken = live.feed.push(rest);
            rest = &rest[taken..];
            if taken > 0 {
                progress = Instant::now();
                continue;
            }
            match self.errors.last() {
                Some(kind) if device::is_fatal(kind) => {
                    return Err(NodeError::new(format!(
                        "output device `{}` stopped: {kind}",
                        self.device_name
                    )))
                }
                _ => {}
            }
            if progress.elapsed() > STALL_LIMIT {
                return Err(NodeError::new(format!(
                    "output device `{}` took no audio for {} s",
                    self.device_name,
                    STALL_LIMIT.as_secs()
                )));
            }
            std::thread::sleep(live.wait);
        }
        Ok(())
    }

    fn close(&mut self, _out: &mut Outputs) -> Result<(), NodeError> {
        let Some(live) = self.live.take() else {
            return Ok(());
        };
        // Let the queued audio play out, then stop the stream.
        live.feed.finish();
        let until = Instant::now() + live.buffer + STALL_LIMIT;
        while live.feed.queued() > 0 && Instant::now() < until {
            std::thread::sleep(live.wait);
        }
        // One more period so the last samples leave the device's own buffer.
        std::thread::sleep(live.wait);
        drop(live.stream);
        let c = &self.counters;
        let (played, under, events) = (
            c.played_frames.load(Relaxed),
            c.underrun_frames.load(Relaxed),
            c.underrun_events.load(Relaxed),
        );
        if under > 0 || self.errors.count() > 0 {
            tracing::warn!(device = %self.device_name, played_frames = played,
                underrun_frames = under, underrun_events = events,
                stream_errors = self.errors.count(), "playback: closed with underruns or errors");
        } else {
            tracing::info!(device = %self.device_name, played_frames = played,
                "playback: closed, no underrun");
        }
        self.check_errors()
    }
}
