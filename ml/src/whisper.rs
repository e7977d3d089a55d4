//! `speech.whisper`: speech segments to text with Whisper tiny.en (MIT), run by tract.
//!
//! ```yaml
//! asr:
//!   node: speech.whisper
//!   in: { segment: vad.segment }           # 16 kHz mono segments, e.g. from speech.vad
//!   with: { model_dir: models/whisper-tiny.en, max_tokens: 224, threads: 1 }
//! ```
//! Options: `model_dir` (default `models/whisper-tiny.en`, made by
//! `bash tools/models/whisper.sh`), `max_tokens` (generated tokens per 30 s piece, 224),
//! `threads` (tract threads per model call, 1). Output `text`: one [`Text`] per segment
//! that has words, spanning the segment, at the segment's start time.
//!
//! The model files and their contract are described in `tools/WHISPER_ONNX.md`:
//! `encoder.onnx` (audio → encoder states, log-mel inside), `cross_kv.onnx` (encoder states →
//! cross-attention keys and values, once per segment) and `decoder.onnx` (tokens + self- and
//! cross-attention K/V → next-token logits and the grown self-attention cache).
//! [`Transcriber`] holds the loop and needs no engine:
//! 1. the encoder window is the segment rounded up to 320 samples, but at least 15 s and at
//!    most 30 s, zero-padded: shorter windows make the model repeat itself instead of ending,
//!    and 15 s costs about half of whisper's fixed 30 s;
//! 2. greedy decoding from `<|startoftranscript|><|notimestamps|>` with the KV cache, until
//!    `<|endoftext|>`, `max_tokens`, a budget of 8 tokens per second of audio + 10, or a
//!    repetition loop (the repeated tail is dropped);
//! 3. the text is the UTF-8 of the token bytes of `tokens.txt`.
//!
//! Segments longer than 30 s are cut into equal pieces of at most 30 s, transcribed one after
//! the other and joined (a segment of any length gives one [`Text`]).
//!
//! The node never ends a run because of one segment: a segment at another rate than 16 kHz,
//! with non-finite samples, or whose transcription fails is skipped with a warning, and the
//! next one is transcribed. After an interrupt ([`Context::cancelled`], checked before the
//! encoder, between 30 s pieces and between decoder steps) the segment in progress is dropped
//! without output.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Deserialize;
use tract_onnx::prelude::*;
use weir_engine::{
    Config, Context, DuplicateKind, Incoming, Input, NodeError, NodeKind, OptionSpec, OptionType,
    Output, Ports, Processor, Registry,
};
use weir_media::{SpeechSegment, Text};

use crate::runtime::{f32_values, Model, ModelError, ModelOptions};

/// The sample rate Whisper takes.
pub const RATE: u32 = 16_000;
/// The longest encoder window: 30 s.
pub const MAX_WINDOW: usize = 480_000;
/// The shortest encoder window: 15 s (see the module docs).
pub const MIN_WINDOW: usize = 240_000;
/// Encoder windows are multiples of this (two mel hops of 160 samples).
pub const WINDOW_STEP: usize = 320;
/// Default model directory.
pub const DEFAULT_MODEL_DIR: &str = "models/whisper-tiny.en";
/// The command that makes the model directory.
pub const FETCH_WHISPER: &str = "bash tools/models/whisper.sh";

/// `<|endoftext|>`: end of the transcript; ids from here on are control tokens.
pub const EOT: u32 = 50256;
/// `<|startoftranscript|>`.
pub const SOT: u32 = 50257;
/// `<|notimestamps|>`.
pub const NO_TIMESTAMPS: u32 = 50362;
/// Whisper's limit on generated tokens per window (`2 + 224 <= 448` positions).
pub const MAX_TOKENS: usize = 224;
const LAYERS: usize = 4;
const HEADS: usize = 6;
const HEAD_DIM: usize = 64;

/// The encoder window for `len` samples: `min(30 s, max(15 s, round_up(len, 320)))`.
pub fn window_len(len: usize) -> usize {
    len.div_ceil(WINDOW_STEP)
        .saturating_mul(WINDOW_STEP)
        .clamp(MIN_WINDOW, MAX_WINDOW)
}

/// Why a transcription failed.
#[derive(Debug, thiserror::Error)]
pub enum WhisperError {
    /// A model file is missing, unreadable or not the expected one.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// `tokens.txt` is missing or malformed.
    #[error("token table `{path}`: {reason}: run `{fetch}`", path = .path.display(), fetch = crate::runtime::FETCH_MODELS)]
    Tokens {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
}

/// How to load and run the models.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TranscriberOptions {
    /// Most tokens generated per 30 s piece (at most [`MAX_TOKENS`]).
    pub max_tokens: usize,
    /// tract threads per model call.
    pub threads: usize,
}

impl Default for TranscriberOptions {
    fn default() -> Self {
        TranscriberOptions {
            max_tokens: MAX_TOKENS,
            threads: 1,
        }
    }
}

/// Where the time of one transcription went.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Timings {
    /// Encoder runs.
    pub encoder: Duration,
    /// Cross-attention K/V runs.
    pub cross_kv: Duration,
    /// Decoder runs, prompt included.
    pub decoder: Duration,
    /// Decoder calls (one for the prompt, one per generated token after it).
    pub decoder_calls: usize,
    /// Samples given to the encoder, padding included.
    pub window_samples: usize,
}

/// The result of [`Transcriber::transcribe`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Transcript {
    /// The text, trimmed.
    pub text: String,
    /// Generated token ids (without the prompt and `<|endoftext|>`).
    pub tokens: Vec<u32>,
    /// True if decoding stopped on a repetition loop or a token limit, not `<|endoftext|>`.
    pub truncated: bool,
    /// True if the caller's `stop` check ended the work early (see
    /// [`Transcriber::transcribe_until`]): the text is partial.
    pub stopped: bool,
    /// Time spent.
    pub timings: Timings,
}

/// The output of [`Transcriber::encode`].
#[derive(Clone, Debug)]
pub struct Encoded {
    /// Cross-attention keys and values, `cross_k.0, cross_v.0, ..., cross_v.3`.
    pub cross: Vec<TValue>,
    /// Time the encoder took.
    pub encoder: Duration,
    /// Time cross-K/V took.
    pub cross_kv: Duration,
    /// Samples given to the encoder, padding included.
    pub window: usize,
}

/// Whisper's encoder, cross-K/V and decoder with the token table: audio in, text out.
#[derive(Debug)]
pub struct Transcriber {
    encoder: Model,
    cross_kv: Model,
    decoder: Model,
    tokens: Vec<Vec<u8>>,
    max_tokens: usize,
}

impl Transcriber {
    /// Loads `encoder.onnx`, `cross_kv.onnx`, `decoder.onnx` and `tokens.txt` from `dir`.
    pub fn load(dir: impl AsRef<Path>, options: &TranscriberOptions) -> Result<Self, WhisperError> {
        let dir = dir.as_ref();
        let load = |name: &str| {
            let model_options = ModelOptions {
                // The decoder attends from one new token to the encoder's frames.
                fused_attention: name == "decoder.onnx",
                ..ModelOptions::threads(options.threads)
            };
            Model::load(dir.join(name), model_options).map_err(|e| match e {
                ModelError::NotFound { path, .. } => ModelError::NotFound {
                    path,
                    fetch: FETCH_WHISPER.to_string(),
                },
                e => e,
            })
        };
        let encoder = load("encoder.onnx")?;
        encoder.expect_inputs(&["audio"])?;
        let cross_kv = load("cross_kv.onnx")?;
        cross_kv.expect_inputs(&["encoder_out"])?;
        let decoder = load("decoder.onnx")?;
        let mut names = vec!["tokens".to_string()];
        for prefix in ["past", "cross"] {
            for l in 0..LAYERS {
                names.push(format!("{prefix}_k.{l}"));
                names.push(format!("{prefix}_v.{l}"));
            }
        }
        decoder.expect_inputs(&names.iter().map(String::as_str).collect::<Vec<_>>())?;
        let tokens = read_tokens(&dir.join("tokens.txt"))?;
        Ok(Transcriber {
            encoder,
            cross_kv,
            decoder,
            tokens,
            max_tokens: options.max_tokens.clamp(1, MAX_TOKENS),
        })
    }

    /// The three models, for measurements: encoder, cross-K/V, decoder.
    pub fn models(&self) -> [&Model; 3] {
        [&self.encoder, &self.cross_kv, &self.decoder]
    }

    /// Transcribes 16 kHz mono audio of any length (pieces of at most 30 s).
    pub fn transcribe(&self, samples: &[f32]) -> Result<Transcript, WhisperError> {
        self.transcribe_until(samples, &mut || false)
    }

    /// [`Transcriber::transcribe`] that calls `stop` before each 30 s piece and between
    /// decoder steps; when it returns true, the work ends at once and the result is flagged
    /// [`Transcript::stopped`] (its text is what was decoded so far).
    pub fn transcribe_until(
        &self,
        samples: &[f32],
        stop: &mut dyn FnMut() -> bool,
    ) -> Result<Transcript, WhisperError> {
        let pieces = samples.len().div_ceil(MAX_WINDOW).max(1);
        let piece_len = samples.len().div_ceil(pieces).div_ceil(WINDOW_STEP) * WINDOW_STEP;
        let mut all = Transcript::default();
        for piece in samples.chunks(piece_len.max(WINDOW_STEP)) {
            if stop() {
                all.stopped = true;
                break;
            }
            let t = self.transcribe_window(piece, stop)?;
            if !t.text.is_empty() {
                if !all.text.is_empty() {
                    all.text.push(' ');
                }
                all.text.push_str(&t.text);
            }
            all.tokens.extend(&t.tokens);
            all.truncated |= t.truncated;
            let (a, b) = (&mut all.timings, t.timings);
            a.encoder += b.encoder;
            a.cross_kv += b.cross_kv;
            a.decoder += b.decoder;
            a.decoder_calls += b.decoder_calls;
            a.window_samples += b.window_samples;
            if t.stopped {
                all.stopped = true;
                break;
            }
        }
        Ok(all)
    }

    /// Runs the encoder on `samples` (at most 30 s) zero-padded to `window` samples, then
    /// cross-K/V (whose 8 tensors, in decoder input order, are what [`Transcriber::decode`]
    /// takes).
    pub fn encode(&self, samples: &[f32], window: usize) -> Result<Encoded, WhisperError> {
        let started = Instant::now();
        let n = samples.len().min(MAX_WINDOW);
        let window = window.clamp(n.max(640), MAX_WINDOW);
        let mut audio = vec![0f32; window];
        audio[..n].copy_from_slice(&samples[..n]);
        let audio = Tensor::from_shape(&[1, window], &audio).expect("shape matches length");
        let encoded = self.encoder.run(tvec![audio.into()])?;
        let encoder = started.elapsed();
        let started = Instant::now();
        let cross = self.cross_kv.run(encoded)?.into_iter().collect();
        Ok(Encoded {
            cross,
            encoder,
            cross_kv: started.elapsed(),
            window,
        })
    }

    /// Greedy decoding against the cross-attention tensors from [`Transcriber::encode`];
    /// `budget` caps the generated tokens.
    pub fn decode(&self, cross: &[TValue], budget: usize) -> Result<Transcript, WhisperError> {
        self.decode_until(cross, budget, &mut || false)
    }

    /// [`Transcriber::decode`] that calls `stop` before every decoder step and ends, flagged
    /// [`Transcript::stopped`], when it returns true.
    pub fn decode_until(
        &self,
        cross: &[TValue],
        budget: usize,
        stop: &mut dyn FnMut() -> bool,
    ) -> Result<Transcript, WhisperError> {
        let started = Instant::now();
        let empty = TValue::from(Tensor::zero::<f32>(&[1, HEADS, 0, HEAD_DIM]).expect("static"));
        let mut past: Vec<TValue> = vec![empty; 2 * LAYERS];
        let mut input: Vec<i64> = vec![i64::from(SOT), i64::from(NO_TIMESTAMPS)];
        let mut generated: Vec<u32> = Vec::new();
        let mut calls = 0;
        let mut truncated = true;
        let mut stopped = false;
        while generated.len() < budget {
            if stop() {
                stopped = true;
                break;
            }
            let tokens = Tensor::from_shape(&[1, input.len()], &input).expect("shape matches");
            let mut inputs: TVec<TValue> = tvec![tokens.into()];
            inputs.extend(past.drain(..));
            inputs.extend(cross.iter().cloned());
            let mut outputs = self.decoder.run(inputs)?;
            calls += 1;
            let logits = outputs.pop().ok_or_else(|| self.bad_output("logits"))?;
            if outputs.len() != 2 * LAYERS {
                return Err(self.bad_output("present_*"));
            }
            past.extend(outputs);
            let next = argmax_text(&logits).ok_or_else(|| self.bad_output("logits"))?;
            if next == EOT {
                truncated = false;
                break;
            }
            generated.push(next);
            if let Some(keep) = repetition_cut(&generated) {
                generated.truncate(keep);
                break;
            }
            input.clear();
            input.push(i64::from(next));
        }
        Ok(Transcript {
            text: self.text(&generated),
            tokens: generated,
            truncated,
            stopped,
            timings: Timings {
                decoder: started.elapsed(),
                decoder_calls: calls,
                ..Timings::default()
            },
        })
    }

    /// The text of token ids: their bytes (control tokens skipped), UTF-8, trimmed.
    pub fn text(&self, ids: &[u32]) -> String {
        let bytes: Vec<u8> = ids
            .iter()
            .filter(|&&id| id < EOT)
            .filter_map(|&id| self.tokens.get(id as usize))
            .flatten()
            .copied()
            .collect();
        String::from_utf8_lossy(&bytes).trim().to_string()
    }

    fn transcribe_window(
        &self,
        samples: &[f32],
        stop: &mut dyn FnMut() -> bool,
    ) -> Result<Transcript, WhisperError> {
        let encoded = self.encode(samples, window_len(samples.len()))?;
        let seconds = samples.len() as f64 / f64::from(RATE);
        let budget = self.max_tokens.min((8.0 * seconds).ceil() as usize + 10);
        let mut t = self.decode_until(&encoded.cross, budget, stop)?;
        t.timings.encoder = encoded.encoder;
        t.timings.cross_kv = encoded.cross_kv;
        t.timings.window_samples = encoded.window;
        Ok(t)
    }

    fn bad_output(&self, what: &str) -> WhisperError {
        WhisperError::Model(ModelError::Run {
            path: self.decoder.path().to_path_buf(),
            cause: format!("unexpected `{what}` output"),
        })
    }
}

/// The most likely text token or `<|endoftext|>` (control tokens are never chosen).
fn argmax_text(logits: &TValue) -> Option<u32> {
    let scores = f32_values(logits)?;
    let scores = &scores[..scores.len().min(EOT as usize + 1)];
    let (best, _) =
        scores
            .iter()
            .enumerate()
            .fold((None, f32::NEG_INFINITY), |(bi, bv), (i, &v)| {
                if v > bv {
                    (Some(i), v)
                } else {
                    (bi, bv)
                }
            });
    best.map(|i| i as u32)
}

/// If `tokens` ends in a loop, the length to keep (up to the end of the loop's first copy).
///
/// A loop is a tail of `n` tokens repeated right before itself: 3 times in a row when `n` is
/// 1..=4 (so "no, no" survives), twice when `n` is 5 or more (a sentence said again).
pub fn repetition_cut(tokens: &[u32]) -> Option<usize> {
    let len = tokens.len();
    for n in 1..=len / 2 {
        let copies = if n <= 4 { 3 } else { 2 };
        if n * copies > len {
            continue;
        }
        let tail = &tokens[len - n..];
        if (2..=copies).all(|c| &tokens[len - c * n..len - (c - 1) * n] == tail) {
            return Some(len - (copies - 1) * n);
        }
    }
    None
}

/// Reads `tokens.txt`: line `i` is the hex of token `i`'s bytes.
fn read_tokens(path: &Path) -> Result<Vec<Vec<u8>>, WhisperError> {
    let err = |reason: String| WhisperError::Tokens {
        path: path.to_path_buf(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    let tokens = text
        .lines()
        .enumerate()
        .map(|(i, line)| hex(line.trim()).ok_or_else(|| err(format!("line {} is not hex", i + 1))))
        .collect::<Result<Vec<_>, _>>()?;
    if tokens.len() <= NO_TIMESTAMPS as usize {
        return Err(err(format!("{} tokens, expected 51864", tokens.len())));
    }
    Ok(tokens)
}

fn hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Registers `speech.whisper`.
pub fn register(registry: &mut Registry) -> Result<(), DuplicateKind> {
    registry.register(kind())
}

/// Options of `speech.whisper`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WhisperConfig {
    /// Directory with `encoder.onnx`, `cross_kv.onnx`, `decoder.onnx` and `tokens.txt`.
    pub model_dir: PathBuf,
    /// Most tokens generated per 30 s of audio.
    pub max_tokens: usize,
    /// tract threads per model call.
    pub threads: usize,
}

impl Config for WhisperConfig {
    fn options() -> Vec<OptionSpec> {
        vec![
            OptionSpec::with_default(
                "model_dir",
                OptionType::Path,
                DEFAULT_MODEL_DIR,
                "directory with encoder.onnx, cross_kv.onnx, decoder.onnx, tokens.txt",
            ),
            OptionSpec::with_default(
                "max_tokens",
                OptionType::Int,
                MAX_TOKENS as u64,
                "most tokens generated per 30 s of audio",
            )
            .range(1.0, MAX_TOKENS as f64),
            OptionSpec::with_default(
                "threads",
                OptionType::Int,
                1,
                "tract threads per model call",
            )
            .range(1.0, 64.0),
        ]
    }
}

/// The ports of `speech.whisper`.
pub struct WhisperPorts {
    segment: Input<SpeechSegment>,
    text: Output<Text>,
}

fn ports(p: &mut Ports) -> WhisperPorts {
    WhisperPorts {
        segment: p.input("segment", "16 kHz mono speech segments"),
        text: p.output("text", "the transcript of each segment, spanning it"),
    }
}

/// The kind declaration.
pub fn kind() -> NodeKind {
    NodeKind::processor(
        "speech.whisper",
        "Transcribes speech segments with Whisper tiny.en (English).",
        ports,
        |c: WhisperConfig, ports| {
            Ok(WhisperNode {
                ports,
                model_dir: c.model_dir,
                options: TranscriberOptions {
                    max_tokens: c.max_tokens,
                    threads: c.threads,
                },
                transcriber: None,
            })
        },
    )
}

/// The node adapter over [`Transcriber`].
struct WhisperNode {
    ports: WhisperPorts,
    model_dir: PathBuf,
    options: TranscriberOptions,
    transcriber: Option<Transcriber>,
}

/// Why a segment cannot be transcribed (the node skips it), or `None` if it can.
fn unusable(seg: &SpeechSegment) -> Option<String> {
    if seg.rate != RATE {
        return Some(format!(
            "segment is {} Hz, but Whisper takes {RATE} Hz only: resample the audio to {RATE} \
             Hz (`audio.resample` with `rate: {RATE}`) before the VAD",
            seg.rate
        ));
    }
    let bad = seg.samples.iter().filter(|x| !x.is_finite()).count();
    if bad > 0 {
        return Some(format!(
            "segment has {bad} non-finite samples out of {}",
            seg.samples.len()
        ));
    }
    None
}

impl Processor for WhisperNode {
    fn open(&mut self, _ctx: &mut Context) -> Result<(), NodeError> {
        let t = Transcriber::load(&self.model_dir, &self.options)
            .map_err(|e| NodeError::with_source("Whisper", e))?;
        self.transcriber = Some(t);
        Ok(())
    }

    fn process(&mut self, input: Incoming, ctx: &mut Context) -> Result<(), NodeError> {
        let seg = self.ports.segment.expect(&input)?;
        if let Some(why) = unusable(seg) {
            tracing::warn!(start = %seg.start(), end = %seg.end(), "{why}: segment skipped");
            return Ok(());
        }
        if seg.samples.is_empty() || ctx.cancelled() {
            return Ok(());
        }
        let transcriber = self
            .transcriber
            .as_ref()
            .ok_or_else(|| NodeError::new("speech.whisper used before open"))?;
        let t = match transcriber.transcribe_until(&seg.samples, &mut || ctx.cancelled()) {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(
                    start = %seg.start(),
                    end = %seg.end(),
                    "cannot transcribe segment: {e}; segment skipped"
                );
                return Ok(());
            }
        };
        if t.stopped {
            tracing::debug!(
                start = %seg.start(),
                tokens = t.tokens.len(),
                "transcription interrupted: segment dropped"
            );
            return Ok(());
        }
        tracing::debug!(
            start = %seg.start(),
            tokens = t.tokens.len(),
            encoder_ms = t.timings.encoder.as_millis() as u64,
            decoder_ms = t.timings.decoder.as_millis() as u64,
            truncated = t.truncated,
            "transcribed segment"
        );
        if t.text.is_empty() {
            return Ok(());
        }
        let text = Text {
            text: Arc::from(t.text),
            start: seg.start(),
            end: seg.end(),
        };
        ctx.send(self.ports.text, seg.start(), text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_rule() {
        assert_eq!(window_len(0), MIN_WINDOW);
        assert_eq!(window_len(16_000), MIN_WINDOW);
        assert_eq!(window_len(240_001), 240_320);
        assert_eq!(window_len(300_000), 300_160);
        assert_eq!(window_len(1_000_000), MAX_WINDOW);
    }

    #[test]
    fn repetition_guard_keeps_one_copy() {
        // "ten of clubs" x 3.
        let looped = [838, 286, 9784, 838, 286, 9784, 838, 286, 9784];
        assert_eq!(repetition_cut(&looped), Some(3));
        // "no, no" is not a loop.
        assert_eq!(repetition_cut(&[1400, 11, 645, 11, 645]), None);
        // A 6-token sentence said twice.
        let twice = [1, 2, 3, 4, 5, 6, 1, 2, 3, 4, 5, 6];
        assert_eq!(repetition_cut(&twice), Some(6));
        assert_eq!(repetition_cut(&[1, 2, 3, 4, 5, 6, 7]), None);
    }

    #[test]
    fn hex_lines() {
        assert_eq!(hex("20416e64"), Some(b" And".to_vec()));
        assert_eq!(hex("2"), None);
        assert_eq!(hex("zz"), None);
    }

    #[test]
    fn missing_models_name_the_fetch_command() {
        let err = Transcriber::load("models/absent", &TranscriberOptions::default()).unwrap_err();
        assert!(err.to_string().contains("tools/fetch-models.sh"), "{err}");
    }
}
