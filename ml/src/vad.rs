//! `speech.vad`: voice activity detection with Silero VAD v6 (MIT), run by tract.
//!
//! ```yaml
//! vad:
//!   node: speech.vad
//!   in: { audio: resample.audio }          # 16 kHz; put audio.resample before it
//!   with: { model: models/silero_vad_16k.onnx, threshold: 0.5, min_silence_ms: 300 }
//! ```
//! Options: `model` (path, default `models/silero_vad_16k.onnx`, fetched by
//! `bash tools/models/silero_vad.sh`), `threshold` (speech probability, 0.5), and the
//! segment options shared with `speech.energy_vad`: `min_speech_ms` (250), `min_silence_ms`
//! (300), `padding_ms` (100), `max_segment_s` (30), `draft_silence_ms` (0). Outputs (shared
//! with `speech.energy_vad`, see [`SegmentPorts`]): `segment` (speech segments with their
//! samples), `events` (`speech_start` / `speech_end` / `speech_resumed`), `speech_start` (to
//! interrupt the nodes that answer: `interrupt: vad.speech_start`), `speech_end` (the turn is
//! confirmed), `draft` (a segment after `draft_silence_ms`, before the turn is certain) and
//! `resumed` (speech went on after a draft: interrupt the work on it). A segment whose draft
//! stood is sent exactly as drafted.
//!
//! The model (`silero_vad_openvino_16k.onnx`) takes 512 new samples per call, preceded by the
//! last 64 samples of the previous call, and carries a recurrent state `[2, 1, 128]`.
//! [`SileroVad`] does that stepping and the Silero hysteresis (speech starts at
//! `threshold`, lasts while the probability stays above `threshold - 0.15`);
//! [`VadStream`] turns any amount of audio into 512-sample chunks, decisions and segments
//! (through the shared [`Segmenter`]). The node is a thin adapter over [`VadStream`].
//!
//! Segment ends are refined: Silero's probability lags the end of speech by up to two chunks
//! (32–64 ms of silence still scored as speech), so at a real end (not a `max_segment_s`
//! cut) the trailing 10 ms windows, up to 60 ms, that are within 10 dB of the noise floor
//! (measured on the stream's non-speech chunks) are given back to the silence.

use std::path::PathBuf;

use serde::Deserialize;
use tract_onnx::prelude::*;
use weir_engine::{
    Config, Context, DuplicateKind, Incoming, Input, NodeError, NodeKind, OptionSpec, OptionType,
    Ports, Processor, Registry,
};
use weir_media::AudioFrame;
use weir_nodes::audio::resample::downmix;
use weir_nodes::speech::energy_vad::{
    segment_options, send_segment_events, SegmentOptions, SegmentPorts,
};
use weir_nodes::speech::segmenter::{SegmentEvent, Segmenter, SegmenterConfig};

use crate::runtime::{f32_values, Model, ModelError, ModelOptions};

/// The only sample rate the model takes.
pub const RATE: u32 = 16_000;
/// New samples per model call (32 ms).
pub const CHUNK: usize = 512;
/// Samples of the previous chunk fed again as context.
pub const CONTEXT: usize = 64;
/// Default model file.
pub const DEFAULT_MODEL: &str = "models/silero_vad_16k.onnx";
/// The command that fetches the model.
pub const FETCH_VAD: &str = "bash tools/models/silero_vad.sh";

/// How far below `threshold` the probability may fall before speech ends (Silero's own rule).
const HYSTERESIS: f32 = 0.15;
/// Window used to refine segment ends: 10 ms.
const REFINE_WINDOW: usize = 160;
/// At most this many trailing samples (60 ms, about two chunks) are given back to the silence.
const REFINE_MAX: usize = 6 * REFINE_WINDOW;
/// A 10 ms window within this many dB of the noise floor counts as silence when refining.
const REFINE_MARGIN_DB: f32 = 10.0;

/// Registers `speech.vad`.
pub fn register(registry: &mut Registry) -> Result<(), DuplicateKind> {
    registry.register(kind())
}

/// Options of `speech.vad`.
///
/// Not `deny_unknown_fields`: serde does not support it with `flatten`; the engine validates
/// option names against [`VadConfig::options`] before this struct is built.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct VadConfig {
    /// Silero VAD v6 ONNX file.
    pub model: PathBuf,
    /// Speech probability that starts speech.
    pub threshold: f64,
    /// The segment-shaping options shared with `speech.energy_vad`.
    #[serde(flatten)]
    pub segment: SegmentOptions,
}

impl Config for VadConfig {
    fn options() -> Vec<OptionSpec> {
        let mut options = vec![
            OptionSpec::with_default(
                "model",
                OptionType::Path,
                DEFAULT_MODEL,
                "Silero VAD v6 ONNX file (silero_vad_openvino_16k.onnx)",
            ),
            OptionSpec::with_default(
                "threshold",
                OptionType::Float,
                0.5,
                "speech probability that starts speech",
            )
            .range(0.01, 0.99),
        ];
        options.extend(segment_options());
        options
    }
}

/// The ports of `speech.vad`.
pub struct VadPorts {
    audio: Input<AudioFrame>,
    out: SegmentPorts,
}

fn ports(p: &mut Ports) -> VadPorts {
    VadPorts {
        audio: p.input("audio", "16 kHz audio (down-mixed if multi-channel)"),
        out: SegmentPorts::declare(p),
    }
}

/// The kind declaration.
pub fn kind() -> NodeKind {
    NodeKind::processor(
        "speech.vad",
        "Finds speech segments with the Silero VAD v6 model (16 kHz audio).",
        ports,
        |c: VadConfig, ports| {
            c.segment.check()?;
            Ok(VadNode {
                ports,
                model_path: c.model,
                threshold: c.threshold as f32,
                config: c.segment.segmenter_config(RATE),
                stream: None,
                mono: Vec::new(),
                events: Vec::new(),
            })
        },
    )
}

/// One step of the model: the chunk's speech probability and the hysteresis decision.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct VadStep {
    /// Speech probability of the chunk, 0..1.
    pub probability: f32,
    /// Whether the chunk counts as speech.
    pub speech: bool,
}

/// Silero VAD v6 stepping: context, recurrent state and hysteresis. No engine involved.
#[derive(Debug)]
pub struct SileroVad {
    model: Model,
    state: Tensor,
    input: Vec<f32>,
    threshold: f32,
    triggered: bool,
}

impl SileroVad {
    /// Loads the model at `path` (the `silero_vad_openvino_16k.onnx` variant).
    pub fn load(path: impl Into<PathBuf>, threshold: f32) -> Result<Self, ModelError> {
        let path = path.into();
        let model = Model::load(&path, ModelOptions::default()).map_err(|e| match e {
            ModelError::NotFound { path, .. } => ModelError::NotFound {
                path,
                fetch: FETCH_VAD.to_string(),
            },
            e => e,
        })?;
        model.expect_inputs(&["input", "state"])?;
        model.expect_outputs(&["output", "stateN"])?;
        Ok(Self::with_model(model, threshold))
    }

    /// Wraps an already loaded model (shared between streams: the state is per instance).
    pub fn with_model(model: Model, threshold: f32) -> Self {
        SileroVad {
            model,
            state: Tensor::zero::<f32>(&[2, 1, 128]).expect("static shape"),
            input: vec![0.0; CONTEXT + CHUNK],
            threshold: threshold.clamp(0.01, 0.99),
            triggered: false,
        }
    }

    /// The loaded model.
    pub fn model(&self) -> &Model {
        &self.model
    }

    /// Forgets the stream: zero state and context, not in speech.
    pub fn reset(&mut self) {
        self.state = Tensor::zero::<f32>(&[2, 1, 128]).expect("static shape");
        self.input.iter_mut().for_each(|x| *x = 0.0);
        self.triggered = false;
    }

    /// Scores the next chunk of 16 kHz mono audio. A chunk shorter than [`CHUNK`] (the end of
    /// a stream) is zero-padded; a longer one is an error of the caller and is truncated.
    pub fn step(&mut self, chunk: &[f32]) -> Result<VadStep, ModelError> {
        let n = chunk.len().min(CHUNK);
        let new = &mut self.input[CONTEXT..];
        new[..n].copy_from_slice(&chunk[..n]);
        new[n..].iter_mut().for_each(|x| *x = 0.0);
        let input = Tensor::from_shape(&[1, CONTEXT + CHUNK], &self.input).expect("static shape");
        let state = std::mem::take(&mut self.state);
        let outputs = self.model.run(tvec![input.into(), state.into()])?;
        let bad = |what: &str| ModelError::Run {
            path: self.model.path().to_path_buf(),
            cause: format!("unexpected {what} output"),
        };
        let probability = f32_values(&outputs[0])
            .and_then(|s| s.first().copied())
            .ok_or_else(|| bad("`output`"))?;
        self.state = outputs[1].clone().into_tensor();
        if self.state.shape() != [2, 1, 128] {
            return Err(bad("`stateN`"));
        }
        // The context of the next call is the tail of this call's input.
        self.input.copy_within(CHUNK.., 0);
        let stay = (self.threshold - HYSTERESIS).max(0.01);
        self.triggered = if self.triggered {
            probability >= stay
        } else {
            probability >= self.threshold
        };
        Ok(VadStep {
            probability,
            speech: self.triggered,
        })
    }
}

/// Streaming VAD: any amount of 16 kHz mono audio in, segmenter events out.
pub struct VadStream {
    vad: SileroVad,
    segmenter: Segmenter,
    chunk: Vec<f32>,
    floor: NoiseFloor,
    steps: u64,
    speech_steps: u64,
    /// Start sample of the draft sent for the open segment, while it stands: that segment
    /// is sent as drafted (not refined), so the work done on the draft holds.
    standing_draft: Option<u64>,
}

impl VadStream {
    /// A stream over `vad` with segments shaped by `config` (whose rate must be [`RATE`]).
    pub fn new(vad: SileroVad, config: SegmenterConfig) -> Self {
        VadStream {
            vad,
            segmenter: Segmenter::new(SegmenterConfig {
                rate: RATE,
                ..config
            }),
            chunk: Vec::with_capacity(CHUNK),
            floor: NoiseFloor::default(),
            steps: 0,
            speech_steps: 0,
            standing_draft: None,
        }
    }

    /// Adds samples; finished segments and start/end events are appended to `events`.
    pub fn push(
        &mut self,
        mut samples: &[f32],
        events: &mut Vec<SegmentEvent>,
    ) -> Result<(), ModelError> {
        while !samples.is_empty() {
            let take = (CHUNK - self.chunk.len()).min(samples.len());
            self.chunk.extend_from_slice(&samples[..take]);
            samples = &samples[take..];
            if self.chunk.len() == CHUNK {
                self.run_chunk(events)?;
            }
        }
        Ok(())
    }

    /// Ends the stream: the partial last chunk is scored and a segment in progress emitted.
    pub fn finish(&mut self, events: &mut Vec<SegmentEvent>) -> Result<(), ModelError> {
        if !self.chunk.is_empty() {
            self.run_chunk(events)?;
        }
        let first = events.len();
        self.segmenter.finish(events);
        self.refine_ends(&mut events[first..]);
        Ok(())
    }

    /// Chunks scored so far, and how many of them were speech.
    pub fn counts(&self) -> (u64, u64) {
        (self.steps, self.speech_steps)
    }

    fn run_chunk(&mut self, events: &mut Vec<SegmentEvent>) -> Result<(), ModelError> {
        let step = self.vad.step(&self.chunk)?;
        self.steps += 1;
        if step.speech {
            self.speech_steps += 1;
        } else {
            self.floor.observe(&self.chunk);
        }
        let first = events.len();
        self.segmenter.push(&self.chunk, step.speech, events);
        // An end emitted on a speech chunk is a max-length cut, not the end of speech.
        if step.speech {
            self.standing_draft = None;
        } else {
            self.refine_ends(&mut events[first..]);
        }
        self.chunk.clear();
        Ok(())
    }

    /// Moves each real speech end back over trailing noise-floor audio (at most 60 ms).
    fn refine_ends(&mut self, events: &mut [SegmentEvent]) {
        // A draft sent ahead of its segment's end stands: the segment is then sent as
        // drafted. A draft sent together with its end is refined like the segment.
        for i in 0..events.len() {
            match &events[i] {
                SegmentEvent::Draft(d)
                    if !matches!(events.get(i + 1), Some(SegmentEvent::End(_))) =>
                {
                    self.standing_draft = Some(d.start_sample);
                }
                SegmentEvent::Resumed(_) => self.standing_draft = None,
                _ => {}
            }
        }
        let Some(floor_db) = self.floor.db() else {
            return;
        };
        for i in 0..events.len() {
            let SegmentEvent::End(end) = events[i] else {
                continue;
            };
            let Some(SegmentEvent::Segment(seg)) = events.get(i + 1) else {
                continue;
            };
            if self.standing_draft.take() == Some(seg.start_sample) {
                continue;
            }
            let Some(speech_end) = end.checked_sub(seg.start_sample).map(|e| e as usize) else {
                continue;
            };
            let samples = &seg.samples[..speech_end.min(seg.samples.len())];
            let trim = quiet_tail(samples, floor_db + REFINE_MARGIN_DB);
            if trim == 0 {
                continue;
            }
            let kept = (seg.samples.len() - trim).max(1);
            let mut seg = seg.clone();
            seg.samples = seg.samples[..kept].into();
            events[i] = SegmentEvent::End(end - trim as u64);
            if let Some(SegmentEvent::Draft(d)) = i.checked_sub(1).and_then(|j| events.get(j)) {
                if d.start_sample == seg.start_sample {
                    events[i - 1] = SegmentEvent::Draft(seg.clone());
                }
            }
            events[i + 1] = SegmentEvent::Segment(seg);
        }
    }
}

/// Samples at the end of `samples` (in whole 10 ms windows, at most [`REFINE_MAX`], never
/// all of them) whose level is below `limit_db`.
fn quiet_tail(samples: &[f32], limit_db: f32) -> usize {
    let mut trim = 0;
    while trim + REFINE_WINDOW <= REFINE_MAX && trim + 2 * REFINE_WINDOW <= samples.len() {
        let end = samples.len() - trim;
        if rms_db(&samples[end - REFINE_WINDOW..end]) >= limit_db {
            break;
        }
        trim += REFINE_WINDOW;
    }
    trim
}

fn rms_db(window: &[f32]) -> f32 {
    let energy = window.iter().map(|x| x * x).sum::<f32>() / window.len().max(1) as f32;
    10.0 * energy.max(1e-12).log10()
}

/// The level of the background, from the quietest 10 ms window of non-speech chunks: falls
/// at once, rises slowly (about 1 dB per chunk).
#[derive(Debug, Default)]
struct NoiseFloor {
    db: Option<f32>,
}

impl NoiseFloor {
    fn observe(&mut self, chunk: &[f32]) {
        let quietest = chunk
            .chunks(REFINE_WINDOW)
            .map(rms_db)
            .fold(f32::INFINITY, f32::min);
        if !quietest.is_finite() {
            return;
        }
        self.db = Some(match self.db {
            Some(db) if quietest > db => db + (quietest - db).min(1.0),
            _ => quietest,
        });
    }

    fn db(&self) -> Option<f32> {
        self.db
    }
}

/// The node adapter: checks the rate, down-mixes, forwards to [`VadStream`].
struct VadNode {
    ports: VadPorts,
    model_path: PathBuf,
    threshold: f32,
    config: SegmenterConfig,
    stream: Option<VadStream>,
    mono: Vec<f32>,
    events: Vec<SegmentEvent>,
}

fn node_error(e: ModelError) -> NodeError {
    NodeError::with_source("Silero VAD", e)
}

impl Processor for VadNode {
    fn open(&mut self, _ctx: &mut Context) -> Result<(), NodeError> {
        let vad = SileroVad::load(&self.model_path, self.threshold).map_err(node_error)?;
        self.stream = Some(VadStream::new(vad, self.config));
        Ok(())
    }

    fn process(&mut self, input: Incoming, ctx: &mut Context) -> Result<(), NodeError> {
        let frame = self.ports.audio.expect(&input)?;
        if frame.rate != RATE {
            return Err(NodeError::new(format!(
                "input audio is {} Hz, but the Silero VAD model takes {RATE} Hz only: put an \
                 `audio.resample` node with `rate: {RATE}` before this node",
                frame.rate
            )));
        }
        downmix(&frame.samples, usize::from(frame.channels), &mut self.mono);
        let stream = self
            .stream
            .as_mut()
            .ok_or_else(|| NodeError::new("speech.vad used before open"))?;
        stream
            .push(&self.mono, &mut self.events)
            .map_err(node_error)?;
        send_segment_events(ctx, self.ports.out, &mut self.events, RATE)
    }

    fn close(&mut self, ctx: &mut Context) -> Result<(), NodeError> {
        if let Some(stream) = self.stream.as_mut() {
            stream.finish(&mut self.events).map_err(node_error)?;
        }
        send_segment_events(ctx, self.ports.out, &mut self.events, RATE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quiet_tail_stops_at_loud_audio_and_keeps_limits() {
        let mut s = vec![0.5f32; 1600];
        s.extend(std::iter::repeat_n(0.001f32, 400));
        // 400 quiet samples: two whole 10 ms windows are quiet, the third is half loud.
        assert_eq!(quiet_tail(&s, -40.0), 320);
        let silent = vec![0.0f32; 4000];
        assert_eq!(quiet_tail(&silent, -40.0), REFINE_MAX);
        assert_eq!(quiet_tail(&silent[..300], -40.0), 0);
    }

    #[test]
    fn noise_floor_falls_fast_and_rises_slowly() {
        let mut f = NoiseFloor::default();
        f.observe(&[0.01; CHUNK]);
        let first = f.db().unwrap();
        assert!((first + 40.0).abs() < 0.1, "{first}");
        f.observe(&[0.1; CHUNK]);
        assert!((f.db().unwrap() - (first + 1.0)).abs() < 0.01);
        f.observe(&[0.001; CHUNK]);
        assert!((f.db().unwrap() + 60.0).abs() < 0.1);
    }

    #[test]
    fn missing_model_names_the_fetch_command() {
        let err = SileroVad::load("models/absent_vad.onnx", 0.5).unwrap_err();
        assert!(err.to_string().contains(FETCH_VAD), "{err}");
    }
}
