//! A Piper (VITS) voice on tract, in two parts.
//!
//! tract cannot run the whole Piper graph, so `tools/convert_piper.py` cuts it where its
//! output length becomes data-dependent:
//! - part A, the text encoder and the duration predictor, folded at a fixed phoneme count
//!   [`Voice::capacity`] (zero-padded): phoneme ids -> frames per phoneme, prior mean and log
//!   standard deviation per phoneme;
//! - part B, the flow and the HiFi-GAN decoder, with a symbolic frame count: the prior sample
//!   -> audio, [`HOP`] samples per frame.
//!
//! Between them [`Voice::synthesize`] repeats each phoneme's columns by its duration and adds
//! the model's noise term, `randn * exp(logs) * noise_scale`. Both noise terms (this one and
//! the duration predictor's) come from a seeded generator, so a seed always gives the same
//! audio.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use tract_onnx::prelude::*;

use super::phonemes::PhonemeTable;
use super::TtsError;
use crate::llm::Rng;
use crate::runtime::{f32_values, Model, ModelOptions};

/// Audio samples per decoder frame.
pub const HOP: usize = 256;
/// Channels of the prior (VITS `inter_channels`).
pub const CHANNELS: usize = 192;
/// Most frames part B decodes in one call (about 24 s at 22.05 kHz): longer expansions are
/// cut, with a warning.
pub const MAX_FRAMES: usize = 2048;
/// The fetch command for this voice alone.
pub const FETCH_VOICE: &str = "bash tools/models/piper.sh";

/// The synthesis settings of a voice (`inference` in its `.onnx.json`), each overridable.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Scales {
    /// Spread of the prior sample (expressiveness).
    pub noise_scale: f32,
    /// Duration multiplier (> 1 speaks slower).
    pub length_scale: f32,
    /// Spread of the duration predictor's noise (rhythm variation).
    pub noise_w: f32,
}

#[derive(Deserialize)]
struct VoiceJson {
    audio: AudioJson,
    inference: InferenceJson,
    espeak: EspeakJson,
    phoneme_id_map: HashMap<String, Vec<i64>>,
}

#[derive(Deserialize)]
struct AudioJson {
    sample_rate: u32,
}

#[derive(Deserialize)]
struct InferenceJson {
    noise_scale: f32,
    length_scale: f32,
    noise_w: f32,
}

#[derive(Deserialize)]
struct EspeakJson {
    voice: String,
}

/// A loaded voice: its two parts, its phoneme table and settings.
#[derive(Debug)]
pub struct Voice {
    dir: PathBuf,
    part_a: Model,
    part_b: Model,
    table: PhonemeTable,
    rate: u32,
    espeak_voice: String,
    scales: Scales,
    capacity: usize,
}

impl Voice {
    /// Loads `dir/part_a.onnx`, `dir/part_b.onnx` and `dir/voice.json` (as written by
    /// `tools/models/piper.sh`).
    pub fn load(dir: impl AsRef<Path>, threads: usize) -> Result<Voice, TtsError> {
        let dir = dir.as_ref().to_path_buf();
        let json_path = dir.join("voice.json");
        for path in [
            dir.join("part_a.onnx"),
            dir.join("part_b.onnx"),
            json_path.clone(),
        ] {
            if !path.is_file() {
                return Err(TtsError::MissingVoice { path });
            }
        }
        let bad = |message: String| TtsError::Voice {
            path: json_path.clone(),
            message,
        };
        let text = std::fs::read_to_string(&json_path).map_err(|e| bad(e.to_string()))?;
        let json: VoiceJson = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
        if !(8_000..=96_000).contains(&json.audio.sample_rate) {
            return Err(bad(format!(
                "sample_rate {} is outside 8000..=96000",
                json.audio.sample_rate
            )));
        }
        let table = PhonemeTable::from_map(&json.phoneme_id_map, &json_path)?;
        let options = ModelOptions::threads(threads);
        let part_a = Model::load(dir.join("part_a.onnx"), options.clone())?;
        part_a.expect_inputs(&["input", "input_lengths", "scales", "dp_noise"])?;
        part_a.expect_outputs(&["durations", "m_p", "logs_p"])?;
        let part_b = Model::load(dir.join("part_b.onnx"), options)?;
        part_b.expect_inputs(&["z_p", "y_mask"])?;
        let capacity = input_length(&part_a).ok_or_else(|| TtsError::Voice {
            path: dir.join("part_a.onnx"),
            message: "part A's `input` has no fixed length: re-run the fetch".to_string(),
        })?;
        if !(16..=1024).contains(&capacity) {
            return Err(TtsError::Voice {
                path: dir.join("part_a.onnx"),
                message: format!("part A's phoneme length {capacity} is outside 16..=1024"),
            });
        }
        let i = &json.inference;
        Ok(Voice {
            dir,
            part_a,
            part_b,
            table,
            rate: json.audio.sample_rate,
            espeak_voice: json.espeak.voice,
            scales: Scales {
                noise_scale: i.noise_scale,
                length_scale: i.length_scale,
                noise_w: i.noise_w,
            },
            capacity,
        })
    }

    /// The directory the voice was loaded from.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The voice's sample rate.
    pub fn rate(&self) -> u32 {
        self.rate
    }

    /// The espeak-ng voice its phonemes come from (`en-us`).
    pub fn espeak_voice(&self) -> &str {
        &self.espeak_voice
    }

    /// The voice's own settings.
    pub fn scales(&self) -> Scales {
        self.scales
    }

    /// The phoneme table.
    pub fn table(&self) -> &PhonemeTable {
        &self.table
    }

    /// Most ids part A reads at once, start and end ids included.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Most body ids (phoneme + pad pairs) one [`Voice::synthesize`] call takes.
    pub fn max_body(&self) -> usize {
        (self.capacity - 3) & !1
    }

    /// Part A: frames per phoneme, prior mean and log std, for framed `ids`.
    pub fn encode(&self, ids: &[i64], scales: Scales, rng: &mut Rng) -> Result<Encoded, TtsError> {
        let n = self.capacity;
        if ids.is_empty() || ids.len() > n {
            return Err(TtsError::TooManyPhonemes {
                ids: ids.len(),
                max: n,
            });
        }
        let mut padded = vec![0i64; n];
        padded[..ids.len()].copy_from_slice(ids);
        let noise: Vec<f32> = (0..2 * n).map(|_| gaussian(rng)).collect();
        let inputs = tvec![
            Tensor::from_shape(&[1, n], &padded)
                .expect("static shape")
                .into(),
            Tensor::from_shape(&[1], &[ids.len() as i64])
                .expect("static shape")
                .into(),
            Tensor::from_shape(
                &[3],
                &[scales.noise_scale, scales.length_scale, scales.noise_w],
            )
            .expect("static shape")
            .into(),
            Tensor::from_shape(&[1, 2, n], &noise)
                .expect("static shape")
                .into(),
        ];
        let out = self.part_a.run(inputs)?;
        let get = |i: usize, len: usize| -> Result<Vec<f32>, TtsError> {
            f32_values(&out[i])
                .filter(|v| v.len() == len)
                .map(<[f32]>::to_vec)
                .ok_or_else(|| TtsError::Voice {
                    path: self.part_a.path().to_path_buf(),
                    message: format!("output {i} is not f32 with {len} values"),
                })
        };
        let durations = get(0, n)?;
        Ok(Encoded {
            len: ids.len(),
            capacity: n,
            durations: durations[..ids.len()]
                .iter()
                .map(|&d| {
                    if d.is_finite() {
                        d.max(0.0) as usize
                    } else {
                        0
                    }
                })
                .collect(),
            m_p: get(1, CHANNELS * n)?,
            logs_p: get(2, CHANNELS * n)?,
        })
    }

    /// Expands an [`Encoded`] phrase to frames and samples the prior:
    /// `m + randn * exp(logs) * noise_scale`, `[CHANNELS, frames]` row-major.
    pub fn expand(&self, enc: &Encoded, noise_scale: f32, rng: &mut Rng) -> (Vec<f32>, usize) {
        // Durations come from the model: summed saturating, then capped.
        let mut frames = enc
            .durations
            .iter()
            .fold(0usize, |sum, &d| sum.saturating_add(d));
        if frames > MAX_FRAMES {
            tracing::warn!(
                frames,
                max = MAX_FRAMES,
                "speech.tts: phrase longer than {MAX_FRAMES} frames, cut"
            );
            frames = MAX_FRAMES;
        }
        let mut z = vec![0f32; CHANNELS * frames];
        for c in 0..CHANNELS {
            let row = &mut z[c * frames..(c + 1) * frames];
            let mut f = 0;
            for (j, &d) in enc.durations.iter().enumerate() {
                let m = enc.m_p[c * enc.capacity + j];
                let s = enc.logs_p[c * enc.capacity + j].exp() * noise_scale;
                for _ in 0..d {
                    if f == frames {
                        break;
                    }
                    row[f] = m + gaussian(rng) * s;
                    f += 1;
                }
            }
        }
        (z, frames)
    }

    /// Part B: audio for a prior sample of `frames` frames.
    pub fn decode(&self, z: Vec<f32>, frames: usize) -> Result<Vec<f32>, TtsError> {
        if frames == 0 {
            return Ok(Vec::new());
        }
        let shape_error = |e: TractError| TtsError::Voice {
            path: self.part_b.path().to_path_buf(),
            message: format!("a prior of {} values for {frames} frames: {e}", z.len()),
        };
        let inputs = tvec![
            Tensor::from_shape(&[1, CHANNELS, frames], &z)
                .map_err(shape_error)?
                .into(),
            Tensor::from_shape(&[1, 1, frames], &vec![1f32; frames])
                .map_err(shape_error)?
                .into(),
        ];
        let out = self.part_b.run(inputs)?;
        f32_values(&out[0])
            .map(<[f32]>::to_vec)
            .ok_or_else(|| TtsError::Voice {
                path: self.part_b.path().to_path_buf(),
                message: "the output is not f32".to_string(),
            })
    }

    /// Audio for framed `ids` (at most [`Voice::capacity`]): part A, expansion, part B.
    pub fn synthesize(
        &self,
        ids: &[i64],
        scales: Scales,
        rng: &mut Rng,
    ) -> Result<Vec<f32>, TtsError> {
        let enc = self.encode(ids, scales, rng)?;
        let (z, frames) = self.expand(&enc, scales.noise_scale, rng);
        self.decode(z, frames)
    }
}

/// Part A's result for one phrase.
#[derive(Clone, Debug)]
pub struct Encoded {
    len: usize,
    capacity: usize,
    /// Frames per phoneme id (`len` values).
    pub durations: Vec<usize>,
    m_p: Vec<f32>,
    logs_p: Vec<f32>,
}

impl Encoded {
    /// The number of real (unpadded) ids.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True if no id was encoded (never, for a successful encode).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// The fixed length of a model's first input's second axis, if it has one.
fn input_length(model: &Model) -> Option<usize> {
    let plan = model.plan();
    let m = plan.model();
    let outlet = *m.input_outlets().ok()?.first()?;
    let fact = m.outlet_fact(outlet).ok()?;
    fact.shape.as_concrete()?.get(1).copied()
}

/// A standard normal sample (Box-Muller on two uniforms).
fn gaussian(rng: &mut Rng) -> f32 {
    let u1 = 1.0 - rng.next_f32(); // (0, 1]: ln is finite
    let u2 = rng.next_f32();
    (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaussian_has_unit_spread() {
        let mut rng = Rng::new(3);
        let xs: Vec<f32> = (0..20_000).map(|_| gaussian(&mut rng)).collect();
        let mean = xs.iter().sum::<f32>() / xs.len() as f32;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f32>() / xs.len() as f32;
        assert!(mean.abs() < 0.03, "{mean}");
        assert!((var - 1.0).abs() < 0.05, "{var}");
        assert!(xs.iter().all(|x| x.is_finite()));
    }
}
