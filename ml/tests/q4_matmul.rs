//! Weir's 4-bit product operator (`weir_ml::q4_matmul`) in the real SmolLM2: every
//! `MatMulNBits` product of the model runs on it, and a greedy answer, prompt and decode
//! steps, is the same token for token as on tract's own kernels, with the KV cache as tract
//! state and as explicit tensors. Real model (`bash tools/fetch-models.sh`).

use std::path::{Path, PathBuf};

use weir_ml::llm::{LanguageModel, LoadOptions, Tokenizer};
use weir_ml::model_cache::CacheLocation;

fn root(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel)
}

/// (number of Weir 4-bit nodes in the plan, greedy answer tokens).
fn greedy_answer(q4_matmul: bool, transform: bool) -> (usize, Vec<u32>) {
    let dir = root("models/smollm2-135m");
    let tokenizer = Tokenizer::from_file(dir.join("tokenizer.json"))
        .expect("fetch the models with `bash tools/fetch-models.sh`");
    let prompt = tokenizer
        .encode(
            "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n",
            false,
        )
        .unwrap()
        .get_ids()
        .to_vec();
    let options = LoadOptions {
        transform,
        q4_matmul,
        cache: CacheLocation::Off,
        ..LoadOptions::default()
    };
    let lm = LanguageModel::load(&dir.join("model.onnx"), &options).unwrap();
    let argmax = |v: &[f32]| (0..v.len()).max_by(|&a, &b| v[a].total_cmp(&v[b])).unwrap() as u32;
    let mut session = lm.session().unwrap();
    let mut ids = vec![argmax(&session.feed(&lm, &prompt).unwrap())];
    while ids.len() < 12 && *ids.last().unwrap() != 2 {
        let logits = session.feed(&lm, &ids[ids.len() - 1..]).unwrap();
        ids.push(argmax(&logits));
    }
    let weir_nodes = lm
        .matmul_kernels()
        .iter()
        .filter(|k| *k == weir_ml::q4_matmul::KERNEL_NAME)
        .count();
    (weir_nodes, ids)
}

#[test]
fn greedy_answer_is_the_same_on_weirs_kernel() {
    for transform in [true, false] {
        let (weir_nodes, weir) = greedy_answer(true, transform);
        let (tract_nodes, tract) = greedy_answer(false, transform);
        assert!(weir_nodes >= 120, "{weir_nodes} products on Weir's kernel");
        assert_eq!(tract_nodes, 0);
        assert_eq!(weir, tract, "kv state: {transform}");
        // "The capital of France is Paris." and the end of the turn.
        assert_eq!(weir, [504, 3575, 282, 4649, 314, 7042, 30, 2]);
    }
}
