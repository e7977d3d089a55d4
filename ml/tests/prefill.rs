//! The prompt (prefill) paths of the SmolLM2 model agree with the exported graph: running the
//! output layer on the last position only gives the same logits and the same greedy answer as
//! running it on every position, and the 4-bit products of a several-token prompt go through a
//! matrix-matrix kernel (Weir's panel-extractor registration, `weir_ml::kernels`) when they
//! run on tract's kernels; the last-position runs use Weir's own 4-bit operator
//! (`weir_ml::q4_matmul`, the default), so the two kernels are compared too. Real model,
//! real prompt. (The logits are also compared with tract's own kernel selection, by
//! `WEIR_Q4_PANEL_EXTRACT=off`, in BENCHMARKS.md: identical.)
//!
//! The model must have been fetched (`bash tools/fetch-models.sh`); without it these tests fail
//! and say so.

use std::path::{Path, PathBuf};

use weir_ml::llm::{LanguageModel, LoadOptions, Tokenizer};

/// The model directory; panics (the test fails) when the model has not been fetched.
fn model_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/smollm2-135m");
    for file in ["model.onnx", "tokenizer.json"] {
        let path = dir.join(file);
        assert!(
            path.is_file(),
            "{} is missing: fetch the models with `bash tools/fetch-models.sh` first",
            path.display()
        );
    }
    dir
}

fn argmax(values: &[f32]) -> u32 {
    values
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map(|(i, _)| i as u32)
        .unwrap()
}

/// Logits after the system prefix and after the user turn (fed as one chunk after the
/// cached prefix), then the greedy continuation of up to 12 tokens.
/// `q4_matmul` picks Weir's 4-bit operator or tract's kernels (with Weir's panel extractor).
fn run(
    transform: bool,
    last_position_only: bool,
    q4_matmul: bool,
) -> (Vec<f32>, Vec<f32>, Vec<u32>) {
    let dir = model_dir();
    let tokenizer = Tokenizer::from_file(dir.join("tokenizer.json")).unwrap();
    let encode = |text: &str| tokenizer.encode(text, false).unwrap().get_ids().to_vec();
    let system =
        encode("<|im_start|>system\nYou are a helpful assistant. Answer briefly.<|im_end|>\n");
    let user = encode(
        "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n",
    );
    let options = LoadOptions {
        transform,
        last_position_only,
        q4_matmul,
        ..LoadOptions::default()
    };
    let lm = LanguageModel::load(&dir.join("model.onnx"), &options).unwrap();
    #[cfg(target_arch = "x86_64")]
    if !q4_matmul
        && std::arch::is_x86_feature_detected!("avx2")
        && std::arch::is_x86_feature_detected!("f16c")
    {
        let extractors = weir_ml::kernels::panel_extractors();
        assert!(
            extractors.iter().any(|e| e.starts_with("weir_")),
            "{extractors:?}"
        );
        // The 4-bit products of the 30 layers (qkv, o, gate_up, down) switch between a
        // matrix-vector kernel for one token and a matrix-matrix one, fed by Weir's panel
        // extractor, for a prompt.
        let kernels = lm.matmul_kernels();
        let extracted = kernels
            .iter()
            .filter(|k| k.contains(" / ") && k.contains("[weir_"))
            .count();
        assert!(extracted >= 30 * 3, "{extracted}: {kernels:?}");
    }
    let mut session = lm.session().unwrap();
    let after_system = session.feed(&lm, &system).unwrap();
    let after_user = session.feed(&lm, &user).unwrap();
    let mut ids = vec![argmax(&after_user)];
    while ids.len() < 12 && *ids.last().unwrap() != 2 {
        let logits = session.feed(&lm, &ids[ids.len() - 1..]).unwrap();
        ids.push(argmax(&logits));
    }
    (after_system, after_user, ids)
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn check(transform: bool) {
    // Every position on tract's kernels against the last position on Weir's 4-bit operator.
    let (sys_all, user_all, ids_all) = run(transform, false, false);
    let (sys_last, user_last, ids_last) = run(transform, true, true);
    assert_eq!(user_last.len(), 49152);
    let (d_sys, d_user) = (
        max_abs_diff(&sys_all, &sys_last),
        max_abs_diff(&user_all, &user_last),
    );
    assert!(
        d_sys < 1e-3 && d_user < 1e-3,
        "max |diff| {d_sys} / {d_user}"
    );
    assert_eq!(ids_all, ids_last);
    // Greedy ids of tools/SMOLLM2_ONNX.md: "Le Grand Paris is the capital of France."
    assert_eq!(
        ids_last,
        [7026, 8503, 7042, 314, 260, 3575, 282, 4649, 30, 2]
    );
}

#[test]
fn last_position_head_matches_all_positions_with_kv_state() {
    check(true);
}

#[test]
fn last_position_head_matches_all_positions_with_explicit_cache() {
    check(false);
}
