//! Weir's operators in the real Whisper decoder (`weir_ml::attention` and `weir_ml::q4_matmul`,
//! against tract's own): every
//! cross-attention of the four layers is fused (the last one through tract's cut to the last
//! position), on the model parsed from its source and on the one read from the model cache,
//! and a decoder step computes the same logits as tract's own operators on the
//! cross-attention keys and values of a real recording. Real models
//! (`bash tools/fetch-models.sh`) and a real recording (`bash tools/fetch-data.sh`).

use std::path::{Path, PathBuf};

use tract_onnx::prelude::*;
use weir_ml::model_cache::{CacheLocation, CacheOutcome};
use weir_ml::runtime::{f32_values, Model, ModelOptions};
use weir_ml::whisper::{Transcriber, TranscriberOptions, MIN_WINDOW, NO_TIMESTAMPS, SOT};

fn root(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel)
}

fn decoder(fused_attention: bool, cache: CacheLocation) -> Model {
    Model::load(
        root("models/whisper-tiny.en/decoder.onnx"),
        ModelOptions {
            fused_attention,
            // tract's own operators on the side without fusion, Weir's on the other.
            q4_matmul: fused_attention,
            cache,
            ..ModelOptions::default()
        },
    )
    .expect("fetch the models with `bash tools/fetch-models.sh`")
}

/// Runs one decoder step on `tokens` after `past` (8 tensors), returns (logits, present).
fn step(
    model: &Model,
    tokens: &[i64],
    past: &[TValue],
    cross: &[TValue],
) -> (Vec<f32>, Vec<TValue>) {
    let tokens = Tensor::from_shape(&[1, tokens.len()], tokens).unwrap();
    let mut inputs: TVec<TValue> = tvec![tokens.into()];
    inputs.extend(past.iter().cloned());
    inputs.extend(cross.iter().cloned());
    let mut outputs = model.run(inputs).unwrap();
    let logits = outputs.pop().unwrap();
    (f32_values(&logits).unwrap().to_vec(), outputs.into_vec())
}

fn argmax(xs: &[f32]) -> usize {
    (0..xs.len())
        .max_by(|&a, &b| xs[a].total_cmp(&xs[b]))
        .unwrap()
}

#[test]
fn fused_decoder_computes_what_tracts_operators_compute() {
    // The fused decoder as a second start gets it: prepared from the model cache.
    let dir = std::env::temp_dir().join(format!("weir-attention-{}", std::process::id()));
    std::fs::remove_dir_all(&dir).ok();
    let first = decoder(true, CacheLocation::Dir(dir.clone()));
    let fused = decoder(true, CacheLocation::Dir(dir.clone()));
    std::fs::remove_dir_all(&dir).ok();
    assert_eq!(first.cache_outcome(), CacheOutcome::Stored);
    assert_eq!(fused.cache_outcome(), CacheOutcome::Hit);
    let plain = decoder(false, CacheLocation::Off);
    let count = |m: &Model| {
        m.plan()
            .model()
            .nodes()
            .iter()
            .filter(|n| n.op.name() == "WeirFewQueryAttention")
            .count()
    };
    assert_eq!(count(&first), 4, "one fused cross-attention per layer");
    assert_eq!(count(&fused), 4, "the same from the cache");
    assert_eq!(count(&plain), 0);

    let (_, audio) = weir_nodes::audio::wav_file::read_wav(&root("data/synth/question_16k.wav"))
        .expect("fetch the data with `bash tools/fetch-data.sh`");
    let transcriber = Transcriber::load(
        root("models/whisper-tiny.en"),
        &TranscriberOptions::default(),
    )
    .unwrap();
    let cross = transcriber.encode(&audio, MIN_WINDOW).unwrap().cross;
    let empty = TValue::from(Tensor::zero::<f32>(&[1, 6, 0, 64]).unwrap());
    let none = vec![empty; 8];

    // The prompt: two query rows.
    let prompt = [i64::from(SOT), i64::from(NO_TIMESTAMPS)];
    let (a, past_a) = step(&fused, &prompt, &none, &cross);
    let (b, past_b) = step(&plain, &prompt, &none, &cross);
    let worst = a
        .iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max);
    assert!(worst < 1e-3, "prompt logits differ by up to {worst}");
    assert_eq!(argmax(&a), argmax(&b));

    // A step after it: one query row, the KV cache of each side.
    let next = [argmax(&a) as i64];
    let (a, _) = step(&fused, &next, &past_a, &cross);
    let (b, _) = step(&plain, &next, &past_b, &cross);
    let worst = a
        .iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max);
    assert!(worst < 1e-3, "step logits differ by up to {worst}");
    assert_eq!(argmax(&a), argmax(&b));

    // And the whole transcription (fused decoder) is the question.
    let text = transcriber.transcribe(&audio).unwrap().text.to_lowercase();
    assert!(text.contains("capital"), "{text}");
}
