//! `speech.energy_vad`: a simple energy-based voice activity detector.
//!
//! ```yaml
//! vad:
//!   node: speech.energy_vad
//!   in: { audio: resample.audio }
//!   with: { threshold_db: -40, margin_db: 12, min_silence_ms: 300 }
//! ```
//! Each 10 ms window is speech when its RMS level is above both `threshold_db` and the
//! tracked noise floor plus `margin_db`. Windows become segments through the shared
//! [`super::segmenter::Segmenter`]. Multi-channel input is down-mixed.
//!
//! Outputs (shared with `speech.vad`, see [`SegmentPorts`]): `segment` (speech segments with
//! their samples), `events` (`speech_start` and `speech_end` events) and `speech_start` (the
//! same `speech_start` packets alone, to interrupt other nodes: `interrupt: vad.speech_start`).
//! A `speech_start` event is stamped with the sample where speech started, and is sent once
//! `min_speech_ms` of speech confirm it.

use serde::Deserialize;
use weir_engine::{
    Config, Context, Incoming, Input, NodeError, NodeKind, OptionSpec, OptionType, Output, Packet,
    Ports, Processor, Timestamp,
};
use weir_media::{AudioFrame, Event, SpeechSegment};

use super::segmenter::{SegmentEvent, Segmenter, SegmenterConfig};
use crate::audio::level::levels;
use crate::audio::resample::downmix;

/// The segment-shaping options shared by the VAD nodes (`min_speech_ms`, `min_silence_ms`,
/// `padding_ms`, `max_segment_s`), as config fields. Embed it in a VAD's config with
/// `#[serde(flatten)]` (and without `deny_unknown_fields`, which serde does not support
/// together with `flatten`), and append [`segment_options`] to the VAD's declarations.
#[derive(Clone, Copy, Debug, PartialEq, Deserialize)]
pub struct SegmentOptions {
    /// Shortest speech kept, in ms.
    pub min_speech_ms: f64,
    /// Silence that ends a segment, in ms.
    pub min_silence_ms: f64,
    /// Audio kept around speech, in ms.
    pub padding_ms: f64,
    /// Longest segment, in seconds; longer speech is cut.
    pub max_segment_s: f64,
    /// Silence after which a draft of the segment goes out on `draft`, in ms; 0 = none (each
    /// segment then goes out on `draft` as it ends).
    pub draft_silence_ms: f64,
}

impl Default for SegmentOptions {
    /// The declared defaults (see [`segment_options`]).
    fn default() -> Self {
        SegmentOptions {
            min_speech_ms: 250.0,
            min_silence_ms: 300.0,
            padding_ms: 100.0,
            max_segment_s: 30.0,
            draft_silence_ms: 0.0,
        }
    }
}

impl SegmentOptions {
    /// The segmenter settings for audio at `rate`.
    pub fn segmenter_config(&self, rate: u32) -> SegmenterConfig {
        SegmenterConfig {
            rate,
            min_speech_ms: self.min_speech_ms,
            min_silence_ms: self.min_silence_ms,
            padding_ms: self.padding_ms,
            max_segment_ms: self.max_segment_s * 1000.0,
            draft_silence_ms: self.draft_silence_ms,
        }
    }

    /// Checks the options against each other: a draft needs at least `padding_ms` of
    /// silence (so it holds exactly the final segment's audio) and less than
    /// `min_silence_ms` (or it would come after the segment).
    pub fn check(&self) -> Result<(), NodeError> {
        let d = self.draft_silence_ms;
        if d > 0.0 && (d < self.padding_ms || d >= self.min_silence_ms) {
            return Err(NodeError::new(format!(
                "`draft_silence_ms` is {d}; expected 0 (no drafts) or at least `padding_ms` \
                 ({}) and less than `min_silence_ms` ({})",
                self.padding_ms, self.min_silence_ms
            )));
        }
        Ok(())
    }
}

/// The declarations of the segment-shaping options shared by the VAD nodes (the fields of
/// [`SegmentOptions`]), in the order `weir nodes` shows them.
pub fn segment_options() -> Vec<OptionSpec> {
    vec![
        OptionSpec::with_default(
            "min_speech_ms",
            OptionType::Float,
            250.0,
            "shortest speech kept",
        )
        .range(0.0, 10_000.0),
        OptionSpec::with_default(
            "min_silence_ms",
            OptionType::Float,
            300.0,
            "silence that ends a segment",
        )
        .range(1.0, 10_000.0),
        OptionSpec::with_default(
            "padding_ms",
            OptionType::Float,
            100.0,
            "audio kept around speech",
        )
        .range(0.0, 5_000.0),
        OptionSpec::with_default(
            "max_segment_s",
            OptionType::Float,
            30.0,
            "longest segment; longer speech is cut",
        )
        .range(0.5, 3600.0),
        OptionSpec::with_default(
            "draft_silence_ms",
            OptionType::Float,
            0.0,
            "silence after which a draft goes out on `draft` (speculation); 0: at the end",
        )
        .range(0.0, 10_000.0),
    ]
}

/// The segmenter settings for audio at `rate` from the shared segment options.
pub fn segmenter_config(options: &SegmentOptions, rate: u32) -> SegmenterConfig {
    options.segmenter_config(rate)
}

/// The outputs every VAD node declares, in this order: `segment`, `events`, `speech_start`,
/// `speech_end`, `draft`, `resumed`.
#[derive(Clone, Copy, Debug)]
pub struct SegmentPorts {
    /// `segment`: speech segments with their samples.
    pub segment: Output<SpeechSegment>,
    /// `events`: `speech_start`, `speech_end` and `speech_resumed` events.
    pub event: Output<Event>,
    /// `speech_start`: the `speech_start` events alone (an interrupt trigger).
    pub speech_start: Output<Event>,
    /// `speech_end`: the `speech_end` events alone (the turn is over: a confirmation).
    pub speech_end: Output<Event>,
    /// `draft`: a segment sent after `draft_silence_ms`, before the turn is certain.
    pub draft: Output<SpeechSegment>,
    /// `resumed`: speech went on after a draft (an interrupt trigger for the work on it).
    pub resumed: Output<Event>,
}

impl SegmentPorts {
    /// Declares the three outputs (after any outputs declared before).
    pub fn declare(p: &mut Ports) -> SegmentPorts {
        SegmentPorts {
            segment: p.output("segment", "speech segments with their samples"),
            event: p.output("events", "speech_start / speech_end events"),
            speech_start: p.output(
                "speech_start",
                "speech_start events only (use as an interrupt trigger)",
            ),
            speech_end: p.output(
                "speech_end",
                "speech_end events only (the turn is confirmed)",
            ),
            draft: p.output(
                "draft",
                "draft segments after `draft_silence_ms`, before the turn is certain",
            ),
            resumed: p.output(
                "resumed",
                "speech went on after a draft (interrupt the work on the draft)",
            ),
        }
    }
}

/// Sends (and removes) segmenter results: segments on `ports.segment`, start and end events on
/// `ports.event`, start events also on `ports.speech_start` (the same packet). Event
/// timestamps are the sample positions at `rate`; a segment's is its start.
pub fn send_segment_events(
    ctx: &mut Context,
    ports: SegmentPorts,
    events: &mut Vec<SegmentEvent>,
    rate: u32,
) -> Result<(), NodeError> {
    for e in events.drain(..) {
        let (name, sample) = match e {
            SegmentEvent::Segment(seg) => {
                ctx.send(ports.segment, seg.start(), seg)?;
                continue;
            }
            SegmentEvent::Draft(seg) => {
                ctx.send(ports.draft, seg.start(), seg)?;
                continue;
            }
            SegmentEvent::Start(s) => ("speech_start", s),
            SegmentEvent::End(s) => ("speech_end", s),
            SegmentEvent::Resumed(s) => ("speech_resumed", s),
        };
        let t = Timestamp::from_samples(sample, rate);
        let fields = serde_json::json!({ "sample": sample, "time": t.as_secs_f64() });
        let packet = Packet::new(t, Event::new(name, fields));
        let alone = match name {
            "speech_start" => ports.speech_start,
            "speech_end" => ports.speech_end,
            _ => ports.resumed,
        };
        ctx.forward(alone, packet.clone())?;
        ctx.forward(ports.event, packet)?;
    }
    Ok(())
}

/// Options of `speech.energy_vad`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct EnergyVadConfig {
    /// Absolute level below which nothing is speech, in dBFS.
    pub threshold_db: f64,
    /// How far above the noise floor speech must be, in dB.
    pub margin_db: f64,
    /// The shared segment-shaping options.
    #[serde(flatten)]
    pub segment: SegmentOptions,
}

impl Config for EnergyVadConfig {
    fn options() -> Vec<OptionSpec> {
        let mut options = vec![
            OptionSpec::with_default(
                "threshold_db",
                OptionType::Float,
                -45.0,
                "absolute level below which nothing is speech",
            )
            .range(-120.0, 0.0),
            OptionSpec::with_default(
                "margin_db",
                OptionType::Float,
                10.0,
                "how far above the noise floor speech must be",
            )
            .range(0.0, 60.0),
        ];
        options.extend(segment_options());
        options
    }
}

/// The ports of `speech.energy_vad`.
pub struct EnergyVadPorts {
    audio: Input<AudioFrame>,
    out: SegmentPorts,
}

fn ports(p: &mut Ports) -> EnergyVadPorts {
    EnergyVadPorts {
        audio: p.input("audio", "audio (down-mixed if multi-channel)"),
        out: SegmentPorts::declare(p),
    }
}

/// The kind declaration.
pub fn kind() -> NodeKind {
    NodeKind::processor(
        "speech.energy_vad",
        "Finds speech segments by signal energy against a tracked noise floor.",
        ports,
        |c: EnergyVadConfig, ports| {
            c.segment.check()?;
            Ok(EnergyVadNode::new(c, ports))
        },
    )
}

/// Energy decision per window, with a noise floor that follows quiet stretches.
pub struct EnergyDetector {
    threshold_db: f32,
    margin_db: f32,
    floor_db: Option<f32>,
}

impl EnergyDetector {
    /// A detector with the given absolute threshold and margin over the noise floor.
    pub fn new(threshold_db: f32, margin_db: f32) -> Self {
        EnergyDetector {
            threshold_db,
            margin_db,
            floor_db: None,
        }
    }

    /// True if `window` holds speech; updates the noise floor.
    pub fn is_speech(&mut self, window: &[f32]) -> bool {
        let (rms, _) = levels(window);
        let floor = *self.floor_db.get_or_insert(rms);
        // The floor falls fast to quieter windows and rises slowly (about 0.1 dB per 10 ms).
        self.floor_db = Some(if rms < floor {
            rms
        } else {
            floor + (rms - floor).min(0.1)
        });
        rms > self.threshold_db && rms > floor + self.margin_db
    }
}

/// The energy VAD node.
pub struct EnergyVadNode {
    ports: EnergyVadPorts,
    segment: SegmentOptions,
    detector: EnergyDetector,
    segmenter: Option<Segmenter>,
    rate: u32,
    window: Vec<f32>,
    window_len: usize,
    mono: Vec<f32>,
    events: Vec<SegmentEvent>,
}

impl EnergyVadNode {
    fn new(config: EnergyVadConfig, ports: EnergyVadPorts) -> Self {
        EnergyVadNode {
            ports,
            segment: config.segment,
            detector: EnergyDetector::new(config.threshold_db as f32, config.margin_db as f32),
            segmenter: None,
            rate: 0,
            window: Vec::new(),
            window_len: 0,
            mono: Vec::new(),
            events: Vec::new(),
        }
    }
}

impl Processor for EnergyVadNode {
    fn process(&mut self, input: Incoming, ctx: &mut Context) -> Result<(), NodeError> {
        let frame = self.ports.audio.expect(&input)?;
        if self.segmenter.is_none() {
            self.rate = frame.rate;
            self.window_len = (frame.rate as usize / 100).max(1);
            self.segmenter = Some(Segmenter::new(self.segment.segmenter_config(frame.rate)));
        } else if frame.rate != self.rate {
            return Err(NodeError::new(format!(
                "sample rate changed mid-stream from {} Hz to {} Hz",
                self.rate, frame.rate
            )));
        }
        downmix(&frame.samples, usize::from(frame.channels), &mut self.mono);
        let Some(seg) = self.segmenter.as_mut() else {
            return Ok(());
        };
        let mut rest = &self.mono[..];
        while !rest.is_empty() {
            let take = (self.window_len - self.window.len()).min(rest.len());
            self.window.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            if self.window.len() == self.window_len {
                let speech = self.detector.is_speech(&self.window);
                seg.push(&self.window, speech, &mut self.events);
                self.window.clear();
            }
        }
        send_segment_events(ctx, self.ports.out, &mut self.events, self.rate)
    }

    fn close(&mut self, ctx: &mut Context) -> Result<(), NodeError> {
        if let Some(seg) = self.segmenter.as_mut() {
            if !self.window.is_empty() {
                let speech = self.detector.is_speech(&self.window);
                seg.push(&self.window, speech, &mut self.events);
                self.window.clear();
            }
            seg.finish(&mut self.events);
        }
        send_segment_events(ctx, self.ports.out, &mut self.events, self.rate)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use weir_engine::testing::NodeRunner;

    /// 1 kHz-rate audio: `pattern` is 10 ms windows, '#' loud noise, '.' near silence.
    fn audio(pattern: &str) -> Vec<Packet> {
        let rate = 1000;
        let mut seed = 1u32;
        let mut noise = move || {
            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (seed >> 8) as f32 / (1 << 24) as f32 - 0.5
        };
        let samples: Vec<f32> = pattern
            .chars()
            .flat_map(|c| {
                let gain = if c == '#' { 0.5 } else { 0.0005 };
                (0..10).map(|_| gain * noise()).collect::<Vec<_>>()
            })
            .collect();
        samples
            .chunks(40)
            .scan(0u64, |pos, chunk| {
                let f = AudioFrame {
                    rate,
                    channels: 1,
                    start_sample: *pos,
                    samples: Arc::from(chunk),
                };
                *pos = f.end_sample();
                Some(Packet::new(f.timestamp(), f))
            })
            .collect()
    }

    #[test]
    fn options_keep_their_order_and_defaults() {
        let names: Vec<&str> = EnergyVadConfig::options().iter().map(|o| o.name).collect();
        assert_eq!(
            names,
            [
                "threshold_db",
                "margin_db",
                "min_speech_ms",
                "min_silence_ms",
                "padding_ms",
                "max_segment_s",
                "draft_silence_ms"
            ]
        );
        let defaults: serde_json::Map<String, serde_json::Value> = segment_options()
            .into_iter()
            .map(|o| (o.name.to_string(), o.default.unwrap()))
            .collect();
        let parsed: SegmentOptions =
            serde_json::from_value(serde_json::Value::Object(defaults)).unwrap();
        assert_eq!(parsed, SegmentOptions::default());
        let outputs: Vec<&str> = kind().outputs.iter().map(|p| p.name).collect();
        assert_eq!(
            outputs,
            [
                "segment",
                "events",
                "speech_start",
                "speech_end",
                "draft",
                "resumed"
            ]
        );
    }

    #[test]
    fn finds_segments_and_repeats_speech_starts_on_their_own_port() {
        let pattern = "..........##########..............................########..........";
        let out = NodeRunner::new(kind())
            .unpaced()
            .option("min_speech_ms", 30.0)
            .option("threshold_db", -45)
            .option("min_silence_ms", 100)
            .option("padding_ms", 20) // integers are accepted for float options
            .feed("audio", audio(pattern))
            .run()
            .unwrap();
        let segments: Vec<(u64, u64)> = out
            .values::<SpeechSegment>("segment")
            .iter()
            .map(|s| (s.start_sample, s.end_sample()))
            .collect();
        assert_eq!(segments, [(80, 220), (480, 600)]);
        let events: Vec<(String, u64)> = out
            .values::<Event>("events")
            .iter()
            .map(|e| (e.name.to_string(), e.fields["sample"].as_u64().unwrap()))
            .collect();
        assert_eq!(
            events,
            [
                ("speech_start".to_string(), 100),
                ("speech_end".to_string(), 200),
                ("speech_start".to_string(), 500),
                ("speech_end".to_string(), 580),
            ]
        );
        let starts = out.packets("speech_start");
        let all = out.packets("events");
        assert_eq!(starts.len(), 2);
        for (start, i) in starts.iter().zip([0, 2]) {
            assert_eq!(start.timestamp, all[i].timestamp);
            assert_eq!(start.get::<Event>(), all[i].get::<Event>());
        }
        assert_eq!(starts[1].timestamp, Timestamp::from_nanos(500_000_000));
    }
}
