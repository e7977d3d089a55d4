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

use std::sync::Arc;

use weir_engine::{
    Event, Node, NodeError, NodeKind, OptionSpec, OptionType, Options, Outputs, Packet, Payload,
    PortSpec, PortType, Timestamp,
};

use super::segmenter::{SegmentEvent, Segmenter, SegmenterConfig};
use crate::audio::level::levels;
use crate::audio::resample::downmix;

/// The segment-shaping options shared by the VAD nodes.
pub fn segment_options(kind: NodeKind) -> NodeKind {
    kind.option(
        OptionSpec::with_default(
            "min_speech_ms",
            OptionType::Float,
            250.0,
            "shortest speech kept",
        )
        .range(0.0, 10_000.0),
    )
    .option(
        OptionSpec::with_default(
            "min_silence_ms",
            OptionType::Float,
            300.0,
            "silence that ends a segment",
        )
        .range(1.0, 10_000.0),
    )
    .option(
        OptionSpec::with_default(
            "padding_ms",
            OptionType::Float,
            100.0,
            "audio kept around speech",
        )
        .range(0.0, 5_000.0),
    )
    .option(
        OptionSpec::with_default(
            "max_segment_s",
            OptionType::Float,
            30.0,
            "longest segment; longer speech is cut",
        )
        .range(0.5, 3600.0),
    )
}

/// Reads the shared segment options.
pub fn segmenter_config(o: &Options, rate: u32) -> Result<SegmenterConfig, NodeError> {
    Ok(SegmenterConfig {
        rate,
        min_speech_ms: o.f64("min_speech_ms")?,
        min_silence_ms: o.f64("min_silence_ms")?,
        padding_ms: o.f64("padding_ms")?,
        max_segment_ms: o.f64("max_segment_s")? * 1000.0,
    })
}

/// The kind declaration.
pub fn kind() -> NodeKind {
    let kind = NodeKind::new(
        "speech.energy_vad",
        "Finds speech segments by signal energy against a tracked noise floor.",
        |o| Ok(Box::new(EnergyVadNode::new(o.clone())?)),
    )
    .input(PortSpec::new(
        "audio",
        PortType::Audio,
        "audio (down-mixed if multi-channel)",
    ))
    .output(PortSpec::new(
        "segment",
        PortType::Segment,
        "speech segments with their samples",
    ))
    .output(PortSpec::new(
        "events",
        PortType::Event,
        "speech_start / speech_end events",
    ))
    .option(
        OptionSpec::with_default(
            "threshold_db",
            OptionType::Float,
            -45.0,
            "absolute level below which nothing is speech",
        )
        .range(-120.0, 0.0),
    )
    .option(
        OptionSpec::with_default(
            "margin_db",
            OptionType::Float,
            10.0,
            "how far above the noise floor speech must be",
        )
        .range(0.0, 60.0),
    );
    segment_options(kind)
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
    options: Options,
    detector: EnergyDetector,
    segmenter: Option<Segmenter>,
    rate: u32,
    window: Vec<f32>,
    window_len: usize,
    mono: Vec<f32>,
    events: Vec<SegmentEvent>,
}

impl EnergyVadNode {
    fn new(options: Options) -> Result<Self, NodeError> {
        let detector = EnergyDetector::new(
            options.f64("threshold_db")? as f32,
            options.f64("margin_db")? as f32,
        );
        Ok(EnergyVadNode {
            options,
            detector,
            segmenter: None,
            rate: 0,
            window: Vec::new(),
            window_len: 0,
            mono: Vec::new(),
            events: Vec::new(),
        })
    }
}

/// Sends segmenter results: segments on port 0, start/end events on port 1.
pub fn send_segment_events(
    events: &mut Vec<SegmentEvent>,
    rate: u32,
    out: &mut Outputs,
) -> Result<(), NodeError> {
    for e in events.drain(..) {
        match e {
            SegmentEvent::Segment(seg) => {
                out.send(0, Packet::new(seg.start(), Payload::Segment(seg)))?;
            }
            SegmentEvent::Start(s) | SegmentEvent::End(s) => {
                let name = if matches!(e, SegmentEvent::Start(_)) {
                    "speech_start"
                } else {
                    "speech_end"
                };
                let t = Timestamp::from_samples(s, rate);
                let event = Event {
                    name: Arc::from(name),
                    fields: Arc::new(serde_json::json!({ "sample": s, "time": t.as_secs_f64() })),
                };
                out.send(1, Packet::new(t, Payload::Event(event)))?;
            }
        }
    }
    Ok(())
}

impl Node for EnergyVadNode {
    fn process(
        &mut self,
        _port: usize,
        packet: Packet,
        out: &mut Outputs,
    ) -> Result<(), NodeError> {
        let Payload::Audio(frame) = &packet.payload else {
            return Ok(());
        };
        if self.segmenter.is_none() {
            self.rate = frame.rate;
            self.window_len = (frame.rate as usize / 100).max(1);
            self.segmenter = Some(Segmenter::new(segmenter_config(&self.options, frame.rate)?));
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
        send_segment_events(&mut self.events, self.rate, out)
    }

    fn close(&mut self, out: &mut Outputs) -> Result<(), NodeError> {
        if let Some(seg) = self.segmenter.as_mut() {
            if !self.window.is_empty() {
                let speech = self.detector.is_speech(&self.window);
                seg.push(&self.window, speech, &mut self.events);
                self.window.clear();
            }
            seg.finish(&mut self.events);
        }
        send_segment_events(&mut self.events, self.rate, out)
    }
}
