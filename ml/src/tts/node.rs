//! `speech.tts`: speaks text, or a language model's tokens as they stream, phrase by phrase.
//!
//! ```yaml
//! tts:
//!   node: speech.tts
//!   in: { tokens: slm.tokens }        # or { text: some.text }
//!   interrupt: vad.speech_start       # barge-in: stop speaking when the user talks
//!   with:
//!     engine: piper                   # or espeak: espeak-ng's own voice, licence-clean
//!     voice_dir: models/piper-joe-medium
//!     max_phrase_chars: 160
//! save:
//!   node: audio.wav_writer
//!   in: { audio: tts.audio }
//!   with: { path: out/answer.wav }
//! ```
//! Tokens are cut into phrases ([`super::phrases`]): a phrase is spoken as soon as it is
//! complete, while the language model goes on generating, so the first audio follows the
//! first phrase rather than the whole answer. A token flagged `last` ends the answer; each
//! `text` packet is a whole answer. Audio is mono at the voice's rate (22050 Hz for Piper
//! joe-medium and for espeak-ng), sent in blocks of `frame_ms`, timestamped by its sample
//! count: one contiguous stream across answers, as a WAV writer or a playback device
//! expects. Put an `audio.resample` after the node for another rate.
//!
//! Options: `engine` (`piper` | `espeak`), `voice_dir`, `espeak` (the program),
//! `espeak_voice` (default: the voice's own, `en-us`), `noise_scale`, `length_scale`,
//! `noise_w` (default: the voice's), `seed` (noise; reset for every answer, so the same
//! answer sounds the same), `comma_chars`, `max_phrase_chars`, `frame_ms`, `threads`.
//!
//! Interrupts: the node checks [`Context::cancelled`] between the two model parts, between
//! pieces of a long phrase and between audio blocks; `flush` drops the phrase being
//! collected. Audio made before the interrupt is discarded by the engine (counted as
//! flushed), and the next answer is spoken normally.
//!
//! A phrase that fails (espeak-ng exits with an error) is skipped with an error message; a
//! missing voice file or a missing espeak-ng program fails at `open`, naming the fix.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Deserialize;
use weir_engine::{
    Config, Context, Incoming, Input, NodeError, NodeKind, OptionSpec, OptionType, Output, Ports,
    Processor, Timestamp,
};
use weir_media::{AudioFrame, Text, Token};

use super::phonemes::{split_body, Espeak};
use super::phrases::{PhraseConfig, Phrases};
use super::piper::{Scales, Voice};
use super::TtsError;
use crate::llm::Rng;

/// The rate of espeak-ng's own voices.
const ESPEAK_RATE: u32 = 22_050;

impl From<TtsError> for NodeError {
    fn from(e: TtsError) -> Self {
        NodeError::with_source("speech synthesis", e)
    }
}

/// Which synthesizer `speech.tts` uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    /// A Piper voice on tract, phonemes from espeak-ng.
    Piper,
    /// espeak-ng's own formant voice (robotic, GPL program run as a process, no model).
    Espeak,
}

/// Options of `speech.tts`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TtsNodeConfig {
    /// The synthesizer.
    pub engine: Engine,
    /// Directory with `part_a.onnx`, `part_b.onnx`, `voice.json` (engine `piper`).
    pub voice_dir: PathBuf,
    /// The espeak-ng program.
    pub espeak: PathBuf,
    /// espeak-ng voice; default: the Piper voice's own (`en-us`).
    pub espeak_voice: Option<String>,
    /// Prior noise; default: the voice's.
    pub noise_scale: Option<f32>,
    /// Duration multiplier; default: the voice's.
    pub length_scale: Option<f32>,
    /// Duration noise; default: the voice's.
    pub noise_w: Option<f32>,
    /// Noise seed, reset for every answer.
    pub seed: u64,
    /// A comma ends a phrase once it has this many characters.
    pub comma_chars: usize,
    /// Longest phrase, in characters.
    pub max_phrase_chars: usize,
    /// Audio block length in milliseconds.
    pub frame_ms: f64,
    /// Matmul threads.
    pub threads: usize,
}

impl Config for TtsNodeConfig {
    fn options() -> Vec<OptionSpec> {
        vec![
            OptionSpec::with_default(
                "engine",
                OptionType::Choice(&["piper", "espeak"]),
                "piper",
                "piper: a Piper voice on tract; espeak: espeak-ng's own voice (licence-clean)",
            ),
            OptionSpec::with_default(
                "voice_dir",
                OptionType::Path,
                "models/piper-joe-medium",
                "directory with part_a.onnx, part_b.onnx, voice.json (engine piper)",
            ),
            OptionSpec::with_default(
                "espeak",
                OptionType::Path,
                "espeak-ng",
                "the espeak-ng program (run as a separate process)",
            ),
            OptionSpec::optional(
                "espeak_voice",
                OptionType::Str,
                "espeak-ng voice (default: the Piper voice's own, en-us)",
            ),
            OptionSpec::optional(
                "noise_scale",
                OptionType::Float,
                "prior noise (default: the voice's)",
            )
            .range(0.0, 2.0),
            OptionSpec::optional(
                "length_scale",
                OptionType::Float,
                "duration multiplier, > 1 is slower (default: the voice's)",
            )
            .range(0.25, 4.0),
            OptionSpec::optional(
                "noise_w",
                OptionType::Float,
                "duration noise (default: the voice's)",
            )
            .range(0.0, 2.0),
            OptionSpec::with_default(
                "seed",
                OptionType::Int,
                1,
                "noise seed, reset for every answer",
            )
            .range(0.0, 9.007_199_254_740_991e15),
            OptionSpec::with_default(
                "comma_chars",
                OptionType::Int,
                40,
                "a comma ends a phrase once it has this many characters",
            )
            .range(1.0, 1000.0),
            OptionSpec::with_default(
                "max_phrase_chars",
                OptionType::Int,
                160,
                "longest phrase in characters (cut at a space)",
            )
            .range(16.0, 1000.0),
            OptionSpec::with_default(
                "frame_ms",
                OptionType::Float,
                50.0,
                "audio block length in milliseconds",
            )
            .range(5.0, 1000.0),
            OptionSpec::with_default(
                "threads",
                OptionType::Int,
                1,
                "matmul threads (tract pool; clamped to the cores)",
            )
            .range(1.0, 64.0),
        ]
    }
}

/// The ports of `speech.tts`.
pub struct TtsPorts {
    tokens: Input<Token>,
    text: Input<Text>,
    audio: Output<AudioFrame>,
}

fn ports(p: &mut Ports) -> TtsPorts {
    TtsPorts {
        tokens: p.optional_input("tokens", "streamed answer tokens (`last` ends an answer)"),
        text: p.optional_input("text", "whole texts to speak, one answer per packet"),
        audio: p.output("audio", "speech, mono, contiguous sample-count timestamps"),
    }
}

/// The kind declaration.
pub fn kind() -> NodeKind {
    NodeKind::processor(
        "speech.tts",
        "Speaks text or streamed tokens phrase by phrase (Piper voice on tract, or espeak-ng).",
        ports,
        |c: TtsNodeConfig, ports| {
            let phrases = Phrases::new(PhraseConfig {
                comma_chars: c.comma_chars,
                max_chars: c.max_phrase_chars,
            });
            Ok(TtsNode {
                ports,
                config: c,
                synth: None,
                phrases,
                next_sample: 0,
                answer: None,
                totals: Totals::default(),
            })
        },
    )
}

/// The loaded synthesizer.
enum Synth {
    Piper {
        voice: Box<Voice>,
        espeak: Espeak,
        scales: Scales,
    },
    Espeak {
        espeak: Espeak,
    },
}

/// The answer being spoken.
struct Answer {
    rng: Rng,
    /// Graph time of the first input of the answer.
    started: Timestamp,
    /// Timestamp of the input packet that began the answer.
    input: Timestamp,
    first_audio: Option<Timestamp>,
    phrases: usize,
}

/// Counters over the run, logged at close.
#[derive(Default)]
struct Totals {
    phrases: u64,
    audio_samples: u64,
    compute: Duration,
    answers: u64,
}

/// The node: loads the synthesizer in `open`, collects phrases, speaks each as it completes.
struct TtsNode {
    ports: TtsPorts,
    config: TtsNodeConfig,
    synth: Option<Synth>,
    phrases: Phrases,
    next_sample: u64,
    answer: Option<Answer>,
    totals: Totals,
}

impl TtsNode {
    fn rate(&self) -> u32 {
        match &self.synth {
            Some(Synth::Piper { voice, .. }) => voice.rate(),
            _ => ESPEAK_RATE,
        }
    }

    fn begin_answer(&mut self, input: Timestamp, ctx: &Context) {
        if self.answer.is_none() {
            self.answer = Some(Answer {
                rng: Rng::new(self.config.seed),
                started: ctx.now(),
                input,
                first_audio: None,
                phrases: 0,
            });
        }
    }

    fn end_answer(&mut self) {
        if let Some(a) = self.answer.take() {
            self.totals.answers += 1;
            tracing::debug!(
                phrases = a.phrases,
                input_ts = %a.input,
                first_audio_at = a.first_audio.map(|t| t.as_secs_f64()),
                first_audio_after_ms = a.first_audio.map(|t| ms_between(a.started, t)),
                "speech.tts: answer spoken"
            );
        }
    }

    /// Synthesizes `phrase` and sends its audio; stops early when interrupted. A phrase that
    /// fails is skipped with an error message.
    fn speak(&mut self, phrase: &str, ctx: &mut Context) -> Result<(), NodeError> {
        if ctx.cancelled() {
            return Ok(());
        }
        let started = Instant::now();
        let Some(answer) = self.answer.as_mut() else {
            return Ok(());
        };
        answer.phrases += 1;
        self.totals.phrases += 1;
        let synth = self
            .synth
            .as_ref()
            .ok_or_else(|| NodeError::new("process called before open"))?;
        let pieces = match synth {
            Synth::Espeak { espeak } => espeak.speak(phrase).and_then(|(rate, s)| {
                if rate == ESPEAK_RATE {
                    Ok(vec![s])
                } else {
                    Err(TtsError::Espeak {
                        program: espeak.program().to_path_buf(),
                        message: format!("spoke at {rate} Hz, not {ESPEAK_RATE} Hz"),
                    })
                }
            }),
            Synth::Piper {
                voice,
                espeak,
                scales,
            } => speak_piper(voice, espeak, *scales, phrase, &mut answer.rng, ctx),
        };
        self.totals.compute += started.elapsed();
        match pieces {
            Ok(pieces) => {
                for samples in pieces {
                    self.send_audio(&samples, ctx)?;
                }
                Ok(())
            }
            Err(e) => {
                tracing::error!(phrase, "speech.tts: {e}; phrase skipped");
                Ok(())
            }
        }
    }

    fn send_audio(&mut self, samples: &[f32], ctx: &mut Context) -> Result<(), NodeError> {
        let rate = self.rate();
        let block = ((self.config.frame_ms / 1000.0 * f64::from(rate)) as usize).max(1);
        for chunk in samples.chunks(block) {
            if ctx.cancelled() {
                return Ok(());
            }
            if let Some(a) = self.answer.as_mut() {
                if a.first_audio.is_none() {
                    a.first_audio = Some(ctx.now());
                    // Benchmarks time the first spoken audio from this line's arrival.
                    tracing::debug!("speech.tts: first audio of the answer");
                }
            }
            let frame = AudioFrame {
                rate,
                channels: 1,
                start_sample: self.next_sample,
                samples: Arc::from(chunk),
            };
            let t = frame.timestamp();
            self.next_sample = frame.end_sample();
            self.totals.audio_samples += chunk.len() as u64;
            ctx.send(self.ports.audio, t, frame)?;
        }
        Ok(())
    }
}

/// Piper: IPA from espeak-ng, ids cut to part A's length at word boundaries, one audio piece
/// per cut. Returns early (fewer pieces) when the node is interrupted.
fn speak_piper(
    voice: &Voice,
    espeak: &Espeak,
    scales: Scales,
    phrase: &str,
    rng: &mut Rng,
    ctx: &Context,
) -> Result<Vec<Vec<f32>>, TtsError> {
    let ipa = espeak.ipa(phrase)?;
    let table = voice.table();
    let (body, unknown) = table.body(&ipa);
    if unknown > 0 {
        tracing::debug!(
            unknown,
            ipa,
            "speech.tts: phonemes not in the voice's table skipped"
        );
    }
    let mut pieces = Vec::new();
    for piece in split_body(&body, voice.max_body(), table.space()) {
        if ctx.cancelled() {
            break;
        }
        let enc = voice.encode(&table.frame(piece), scales, rng)?;
        if ctx.cancelled() {
            break;
        }
        let (z, frames) = voice.expand(&enc, scales.noise_scale, rng);
        pieces.push(voice.decode(z, frames)?);
    }
    Ok(pieces)
}

fn ms_between(from: Timestamp, to: Timestamp) -> f64 {
    (to.as_secs_f64() - from.as_secs_f64()) * 1e3
}

impl Processor for TtsNode {
    fn open(&mut self, _ctx: &mut Context) -> Result<(), NodeError> {
        let c = &self.config;
        self.synth = Some(match c.engine {
            Engine::Espeak => {
                let espeak = Espeak::new(
                    &c.espeak,
                    c.espeak_voice.clone().unwrap_or_else(|| "en-us".into()),
                );
                espeak.check()?;
                Synth::Espeak { espeak }
            }
            Engine::Piper => {
                let voice = Voice::load(&c.voice_dir, c.threads.max(1))?;
                let espeak = Espeak::new(
                    &c.espeak,
                    c.espeak_voice
                        .clone()
                        .unwrap_or_else(|| voice.espeak_voice().to_string()),
                );
                espeak.check()?;
                let d = voice.scales();
                let scales = Scales {
                    noise_scale: c.noise_scale.unwrap_or(d.noise_scale),
                    length_scale: c.length_scale.unwrap_or(d.length_scale),
                    noise_w: c.noise_w.unwrap_or(d.noise_w),
                };
                tracing::debug!(voice = %voice.dir().display(), rate = voice.rate(),
                    phonemes = voice.capacity(), ?scales, "speech.tts: voice loaded");
                Synth::Piper {
                    voice: Box::new(voice),
                    espeak,
                    scales,
                }
            }
        });
        Ok(())
    }

    fn process(&mut self, input: Incoming, ctx: &mut Context) -> Result<(), NodeError> {
        let t = input.timestamp();
        if let Some(token) = self.ports.tokens.get(&input) {
            let (text, last) = (token.text.clone(), token.last);
            self.begin_answer(t, ctx);
            for phrase in self.phrases.push(&text) {
                self.speak(&phrase, ctx)?;
            }
            if last {
                if let Some(phrase) = self.phrases.finish() {
                    self.speak(&phrase, ctx)?;
                }
                self.end_answer();
            }
            return Ok(());
        }
        let text = self.ports.text.expect(&input)?.text.clone();
        self.begin_answer(t, ctx);
        let mut phrases = self.phrases.push(&text);
        phrases.extend(self.phrases.finish());
        for phrase in phrases {
            self.speak(&phrase, ctx)?;
        }
        self.end_answer();
        Ok(())
    }

    fn flush(&mut self, _ctx: &mut Context) -> Result<(), NodeError> {
        self.phrases.clear();
        if self.answer.take().is_some() {
            tracing::debug!("speech.tts: answer interrupted, queued text dropped");
        }
        Ok(())
    }

    fn close(&mut self, ctx: &mut Context) -> Result<(), NodeError> {
        if let Some(phrase) = self.phrases.finish() {
            self.speak(&phrase, ctx)?;
        }
        self.end_answer();
        let t = &self.totals;
        let audio = t.audio_samples as f64 / f64::from(self.rate());
        let compute = t.compute.as_secs_f64();
        tracing::info!(
            answers = t.answers,
            phrases = t.phrases,
            audio_s = audio,
            compute_s = compute,
            rtf = if audio > 0.0 { compute / audio } else { 0.0 },
            "speech.tts: closed"
        );
        Ok(())
    }
}
