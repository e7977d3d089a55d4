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
//!
//! Interrupts (barge-in): when this node or one upstream of it is interrupted, `flush`
//! clears the ring at once: the audio queued but not yet played is discarded and the speaker
//! goes silent within one device period (the callback skips the discarded samples instead of
//! playing them; see [`crate::ring::PlaybackFeed::clear`]). A frame half pushed when the
//! interrupt comes is abandoned. Discarded audio is logged at debug level
//! (`discarded_frames`), counted in [`PlaybackCounters::flushed_frames`] and summed up in the
//! log line at close (`flushed_frames`). The silence that follows is not an underrun.
//!
//! Barge-ins are counted here: an interrupt whose flush found audio queued in the ring cut
//! an answer the speaker was playing ([`PlaybackCounters::barge_ins`], the `cut` column of
//! `--stats`, `weir_node_cuts_total` in the metrics). An interrupt that finds the ring empty
//! (nothing was being played, e.g. the answer was still being generated) is not one.
//!
//! Output `played` (optional): every sample the callback handed to the device, silence
//! included, in 10 ms frames stamped from the device's sample count (frame `k` of the
//! stream is at `k / rate`), with the device's channels. It is the echo reference for
//! `audio.aec`: after an interrupt it shows the silence that was played, never the flushed
//! audio. The callback copies into a second preallocated ring (no allocation); the node's
//! thread sends what it holds whenever it runs (while it plays and waits for room, at a
//! flush, at close): while the node waits for its next input nothing is sent, and what
//! overflows that ring meanwhile (a second past the buffer) shows as a jump in the positions.
//!
//! Waiting for room in the ring is waiting on hardware, not pacing: on the real clock it
//! sleeps on the graph clock so an interrupt or a stop wakes it at once; a device that takes
//! nothing for [`STALL_LIMIT`] fails the node.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cpal::traits::StreamTrait;
use serde::Deserialize;
use weir_engine::{
    ClockKind, Config, Context, Incoming, Input, NodeError, NodeKind, OptionSpec, OptionType,
    Output, Ports, Processor, Role, Timestamp,
};
use weir_media::AudioFrame;

use crate::device::{self, Direction, Negotiated, StreamErrors, Wanted};
use crate::ring::{capture_ring, playback_ring, Framer, PlaybackCounters, PlaybackFeed};
use crate::LiveError;

/// How long the node waits for the device to take audio before it gives up.
pub const STALL_LIMIT: Duration = Duration::from_secs(3);

/// The ports of `audio.playback`.
#[derive(Clone, Copy, Debug)]
pub struct PlaybackPorts {
    audio: Input<AudioFrame>,
    played: Output<AudioFrame>,
}

fn ports(p: &mut Ports) -> PlaybackPorts {
    PlaybackPorts {
        audio: p.input("audio", "audio to play"),
        played: p.output(
            "played",
            "what the device was handed (silence included), stamped from its sample count",
        ),
    }
}

/// The `audio.playback` kind, on the default audio host.
pub fn kind() -> NodeKind {
    NodeKind::processor(
        "audio.playback",
        "Plays audio frames on a speaker (cpal).",
        ports,
        |c: PlaybackConfig, ports| Ok(PlaybackNode::new(c).with_ports(ports)),
    )
    .role(Role::LiveOutput)
}

/// A playback kind called `name` that always opens `device` (a virtual speaker in tests),
/// with the counters of the node it builds.
pub fn kind_with_device(
    name: &'static str,
    device: cpal::Device,
) -> (NodeKind, Arc<PlaybackCounters>) {
    let counters = Arc::new(PlaybackCounters::default());
    let shared = counters.clone();
    let kind = NodeKind::processor(
        name,
        "Plays on an injected cpal device.",
        ports,
        move |c: PlaybackConfig, ports| {
            let mut node = PlaybackNode::with_device(c, device.clone()).with_ports(ports);
            node.counters = shared.clone();
            Ok(node)
        },
    );
    (kind, counters)
}

/// Settings of [`PlaybackNode`]: the options of `audio.playback`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
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

impl Config for PlaybackConfig {
    fn options() -> Vec<OptionSpec> {
        vec![
            OptionSpec::with_default(
                "device",
                OptionType::Str,
                "default",
                "output device name (or part of it), or `default`",
            ),
            OptionSpec::with_default("rate", OptionType::Int, 48_000, "sample rate in Hz")
                .range(1000.0, 384_000.0),
            OptionSpec::with_default("channels", OptionType::Int, 1, "channels").range(1.0, 64.0),
            OptionSpec::with_default(
                "buffer_ms",
                OptionType::Float,
                200.0,
                "audio queued ahead of the speaker, in ms",
            )
            .range(10.0, 60_000.0),
        ]
    }
}

impl Default for PlaybackConfig {
    fn default() -> Self {
        PlaybackConfig {
            device: "default".into(),
            rate: 48_000,
            channels: 1,
            buffer_ms: 200.0,
        }
    }
}

struct Live {
    stream: cpal::Stream,
    feed: PlaybackFeed,
    negotiated: Negotiated,
    wait: Duration,
    buffer: Duration,
    /// What the callback handed to the device, when `played` is connected.
    played: Option<Framer>,
    /// Frames per `played` packet (10 ms).
    played_frames: usize,
}

/// Sends what the device was handed so far on `port`, in 10 ms frames (with `all`, the
/// partial rest too), stamped from the device's sample count.
fn send_played(
    live: &mut Live,
    port: Output<AudioFrame>,
    all: bool,
    ctx: &mut Context,
) -> Result<(), NodeError> {
    let Some(framer) = live.played.as_mut() else {
        return Ok(());
    };
    let n = live.negotiated;
    while let Some(block) = framer.next_block(live.played_frames, all) {
        let frame = AudioFrame {
            rate: n.rate,
            channels: n.channels,
            start_sample: block.start_sample,
            samples: Arc::from(block.samples),
        };
        ctx.send(
            port,
            Timestamp::from_samples(block.start_sample, n.rate),
            frame,
        )?;
    }
    Ok(())
}

/// Sink node playing on a cpal output device.
pub struct PlaybackNode {
    config: PlaybackConfig,
    ports: PlaybackPorts,
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
            ports: ports(&mut Ports::default()),
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

    /// Uses the port handles the kind declared.
    fn with_ports(mut self, ports: PlaybackPorts) -> Self {
        self.ports = ports;
        self
    }

    /// The ring's counters (frames played, underruns, flushes).
    pub fn counters(&self) -> Arc<PlaybackCounters> {
        self.counters.clone()
    }

    fn start(&mut self, tap: bool) -> Result<Live, LiveError> {
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
        let (feed, mut drain) = playback_ring(frames, n.channels, self.counters.clone());
        // Room for the ring's worth and a second more: what the node thread has not yet sent
        // while it waits for its next input is lost (counted) beyond that.
        let played = if tap {
            let (feed, framer) = capture_ring(frames + n.rate as usize, n.channels, Arc::default());
            drain = drain.tap(feed);
            Some(framer)
        } else {
            None
        };
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
            played,
            played_frames: (n.rate as usize / 100).max(1),
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

    /// Discards the audio queued for the speaker; logs what was dropped. Returns the frames
    /// that were queued.
    fn discard_queued(&mut self, why: &str) -> usize {
        let Some(live) = self.live.as_mut() else {
            return 0;
        };
        let queued = live.feed.clear();
        let channels = usize::from(live.negotiated.channels.max(1));
        tracing::debug!(
            device = %self.device_name,
            discarded_frames = queued / channels,
            flushed_frames_before = self.counters.flushed_frames.load(Relaxed),
            "playback: {why}: queued audio discarded, the speaker goes silent"
        );
        queued / channels
    }
}

/// Waits about `period` for the device to take audio: hardware waiting, not pacing. On the
/// real clock it sleeps on the graph clock, so an interrupt or a stop ends the wait at once.
/// On the virtual clock (whose time says nothing about the device) or once the graph is
/// stopping (the clock no longer sleeps then, and the queued audio still drains), it parks
/// the thread for that long instead. Returns at once if the node was interrupted.
fn wait_for_device(ctx: &mut Context, period: Duration) {
    if ctx.cancelled() {
        return;
    }
    if ctx.clock_kind() == ClockKind::Real && !ctx.stopping() {
        let until = ctx.now().saturating_add(period);
        ctx.sleep_until(until);
    } else {
        std::thread::park_timeout(period);
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

impl Processor for PlaybackNode {
    fn open(&mut self, ctx: &mut Context) -> Result<(), NodeError> {
        let tap = ctx.is_connected(self.ports.played);
        let live = self.start(tap).map_err(|e| NodeError::new(e.to_string()))?;
        self.live = Some(live);
        Ok(())
    }

    fn process(&mut self, input: Incoming, ctx: &mut Context) -> Result<(), NodeError> {
        let frame = self.ports.audio.expect(&input)?;
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
        // A watchdog on the device, in real time: graph time may not move while we wait.
        let mut progress = Instant::now();
        while !rest.is_empty() {
            if ctx.cancelled() {
                // Interrupted: the rest of this frame is stale; `flush` clears the ring next.
                return Ok(());
            }
            let taken = live.feed.push(rest);
            rest = &rest[taken..];
            send_played(live, self.ports.played, false, ctx)?;
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
            wait_for_device(ctx, live.wait);
        }
        send_played(live, self.ports.played, false, ctx)
    }

    /// Barge-in: silences the speaker at once by discarding the queued audio. An interrupt
    /// that found audio queued cut an answer being played: counted as a barge-in (in
    /// [`PlaybackCounters::barge_ins`] and the node's `cut` statistic).
    fn flush(&mut self, ctx: &mut Context) -> Result<(), NodeError> {
        if self.discard_queued("interrupted") > 0 {
            self.counters.barge_ins.fetch_add(1, Relaxed);
            ctx.count_cut();
        }
        match self.live.as_mut() {
            Some(live) => send_played(live, self.ports.played, false, ctx),
            None => Ok(()),
        }
    }

    fn close(&mut self, ctx: &mut Context) -> Result<(), NodeError> {
        if self.live.is_none() {
            return Ok(());
        }
        if let Some(live) = self.live.as_ref() {
            // Let the queued audio play out (unless interrupted meanwhile), then stop.
            live.feed.finish();
        }
        let (buffer, wait) = self
            .live
            .as_ref()
            .map_or((Duration::ZERO, Duration::ZERO), |l| (l.buffer, l.wait));
        let until = Instant::now() + buffer + STALL_LIMIT;
        while self.live.as_ref().is_some_and(|l| l.feed.queued() > 0) && Instant::now() < until {
            if ctx.cancelled() {
                self.discard_queued("interrupted while playing out");
                break;
            }
            wait_for_device(ctx, wait);
            if let Some(live) = self.live.as_mut() {
                send_played(live, self.ports.played, false, ctx)?;
            }
        }
        // One more period so the last samples (or the skip of a clear) leave the device.
        wait_for_device(ctx, wait);
        if let Some(mut live) = self.live.take() {
            send_played(&mut live, self.ports.played, true, ctx)?;
            drop(live.stream);
        }
        let c = &self.counters;
        let (played, under, events, flushed, flushes) = (
            c.played_frames.load(Relaxed),
            c.underrun_frames.load(Relaxed),
            c.underrun_events.load(Relaxed),
            c.flushed_frames.load(Relaxed),
            c.flushes.load(Relaxed),
        );
        if under > 0 || self.errors.count() > 0 {
            tracing::warn!(device = %self.device_name, played_frames = played,
                underrun_frames = under, underrun_events = events, flushed_frames = flushed,
                flushes, stream_errors = self.errors.count(),
                "playback: closed with underruns or errors");
        } else {
            tracing::info!(device = %self.device_name, played_frames = played,
                flushed_frames = flushed, flushes,
                barge_ins = c.barge_ins.load(Relaxed), "playback: closed, no underrun");
        }
        self.check_errors()
    }
}
