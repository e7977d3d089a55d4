//! The model cache (`weir_ml::model_cache`): a second start reads the prepared model from the
//! cache and computes exactly what the source computes; a damaged entry is deleted and
//! rebuilt, never used; a changed source misses the cache and replaces its old entry. Real
//! models (`bash tools/fetch-models.sh`) and a real recording (`bash tools/fetch-data.sh`).

use std::path::{Path, PathBuf};

use tract_onnx::prelude::*;
use weir_ml::llm::{LanguageModel, LoadOptions, Tokenizer};
use weir_ml::model_cache::{CacheEntry, CacheLocation, CacheOutcome, TRACT_VERSION};
use weir_ml::runtime::{f32_values, Model, ModelOptions};

fn root(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel)
}

/// A fresh, empty cache directory for one test.
fn cache_dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("weir-model-cache-{}-{test}", std::process::id()));
    std::fs::remove_dir_all(&dir).ok();
    dir
}

fn load(path: &Path, cache: &CacheLocation) -> Model {
    Model::load(
        path,
        ModelOptions {
            cache: cache.clone(),
            ..ModelOptions::default()
        },
    )
    .unwrap()
}

/// Silero's speech probability for every 32 ms of the recording, state carried along.
fn vad_probabilities(model: &Model) -> Vec<f32> {
    let (_, audio) = weir_nodes::audio::wav_file::read_wav(&root("data/synth/question_16k.wav"))
        .expect("fetch the data with `bash tools/fetch-data.sh`");
    let mut state = Tensor::zero::<f32>(&[2, 1, 128]).unwrap();
    let mut window = vec![0.0f32; 64 + 512];
    let mut probabilities = Vec::new();
    for chunk in audio.chunks_exact(512) {
        window.copy_within(512.., 0);
        window[64..].copy_from_slice(chunk);
        let input = Tensor::from_shape(&[1, 576], &window).unwrap();
        let out = model.run(tvec![input.into(), state.into()]).unwrap();
        probabilities.push(f32_values(&out[0]).unwrap()[0]);
        state = out[1].clone().into_tensor();
    }
    probabilities
}

/// The one entry's NNEF tar in a cache directory.
fn entry_tar(dir: &Path) -> PathBuf {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().ends_with(".nnef.tar"))
        .expect("an entry in the cache directory")
}

/// The entries (tar and checksum files) in a cache directory.
fn entries(dir: &Path) -> Vec<String> {
    // The source digest memos (`*.digest`) are not entries.
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|name| !name.ends_with(".digest"))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[test]
fn a_second_load_reads_the_cache_and_computes_the_same() {
    let dir = cache_dir("hit");
    let cache = CacheLocation::Dir(dir.clone());
    let vad = root("models/silero_vad_16k.onnx");
    let uncached = load(&vad, &CacheLocation::Off);
    assert_eq!(uncached.cache_outcome(), CacheOutcome::Off);
    let first = load(&vad, &cache);
    assert_eq!(first.cache_outcome(), CacheOutcome::Stored);
    assert_eq!(entries(&dir).len(), 2, "{:?}", entries(&dir));
    let second = load(&vad, &cache);
    assert_eq!(second.cache_outcome(), CacheOutcome::Hit);
    assert_eq!(second.input_names(), uncached.input_names());
    assert_eq!(second.output_names(), uncached.output_names());

    let expected = vad_probabilities(&uncached);
    assert!(
        expected.iter().any(|&p| p > 0.9) && expected.iter().any(|&p| p < 0.1),
        "the recording has speech and silence: {expected:?}"
    );
    assert_eq!(vad_probabilities(&second), expected);

    // Names that are not NNEF identifiers (`past_k.0`) come back as they were.
    let decoder = root("models/whisper-tiny.en/decoder.onnx");
    let uncached = load(&decoder, &CacheLocation::Off);
    assert_eq!(load(&decoder, &cache).cache_outcome(), CacheOutcome::Stored);
    let cached = load(&decoder, &cache);
    assert_eq!(cached.cache_outcome(), CacheOutcome::Hit);
    assert_eq!(cached.input_names(), uncached.input_names());
    assert_eq!(cached.output_names(), uncached.output_names());
    assert!(cached.input_names().iter().any(|n| n == "past_k.0"));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_damaged_entry_is_deleted_and_rebuilt_never_used() {
    let dir = cache_dir("damaged");
    let cache = CacheLocation::Dir(dir.clone());
    let vad = root("models/silero_vad_16k.onnx");
    assert_eq!(load(&vad, &cache).cache_outcome(), CacheOutcome::Stored);
    let tar = entry_tar(&dir);
    // Flip bytes in the middle of the weights: still a readable tar, wrong numbers.
    let mut bytes = std::fs::read(&tar).unwrap();
    let middle = bytes.len() / 2;
    for b in &mut bytes[middle..middle + 16] {
        *b ^= 0x5a;
    }
    std::fs::write(&tar, &bytes).unwrap();

    let rebuilt = load(&vad, &cache);
    assert_eq!(rebuilt.cache_outcome(), CacheOutcome::Rebuilt);
    assert_eq!(
        vad_probabilities(&rebuilt),
        vad_probabilities(&load(&vad, &CacheLocation::Off))
    );
    // The rewritten entry is whole again.
    assert_eq!(load(&vad, &cache).cache_outcome(), CacheOutcome::Hit);

    // A torn write (the tar cut short) is caught the same way.
    let bytes = std::fs::read(&tar).unwrap();
    std::fs::write(&tar, &bytes[..bytes.len() / 3]).unwrap();
    assert_eq!(load(&vad, &cache).cache_outcome(), CacheOutcome::Rebuilt);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_changed_source_misses_the_cache_and_replaces_its_entry() {
    let dir = cache_dir("changed");
    let cache = CacheLocation::Dir(dir.join("cache"));
    let source = dir.join("models/model.onnx");
    std::fs::create_dir_all(source.parent().unwrap()).unwrap();
    std::fs::copy(root("models/silero_vad_16k.onnx"), &source).unwrap();
    let vad = load(&source, &cache);
    assert_eq!(vad.cache_outcome(), CacheOutcome::Stored);
    let old_entries = entries(&dir.join("cache"));

    // Another model under the same name: Whisper's cross-attention projection.
    std::fs::copy(root("models/whisper-tiny.en/cross_kv.onnx"), &source).unwrap();
    let other = load(&source, &cache);
    assert_eq!(other.cache_outcome(), CacheOutcome::Stored);
    assert_eq!(other.input_names(), ["encoder_out"]);
    let new_entries = entries(&dir.join("cache"));
    assert_eq!(new_entries.len(), 2, "{new_entries:?}");
    assert!(
        new_entries.iter().all(|e| !old_entries.contains(e)),
        "{old_entries:?} -> {new_entries:?}"
    );
    assert_eq!(load(&source, &cache).cache_outcome(), CacheOutcome::Hit);
    std::fs::remove_dir_all(&dir).ok();
}

/// Greedy ids of the language model after a prompt, loaded with `cache`.
fn greedy_answer(cache: &CacheLocation) -> (CacheOutcome, Vec<u32>) {
    let dir = root("models/smollm2-135m");
    let tokenizer = Tokenizer::from_file(dir.join("tokenizer.json")).unwrap();
    let prompt = tokenizer
        .encode(
            "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n",
            false,
        )
        .unwrap()
        .get_ids()
        .to_vec();
    let options = LoadOptions {
        cache: cache.clone(),
        ..LoadOptions::default()
    };
    let lm = LanguageModel::load(&dir.join("model.onnx"), &options).unwrap();
    let argmax = |v: &[f32]| {
        v.iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map(|(i, _)| i as u32)
            .unwrap()
    };
    let mut session = lm.session().unwrap();
    let mut ids = vec![argmax(&session.feed(&lm, &prompt).unwrap())];
    while ids.len() < 10 && *ids.last().unwrap() != 2 {
        let logits = session.feed(&lm, &ids[ids.len() - 1..]).unwrap();
        ids.push(argmax(&logits));
    }
    (lm.cache_outcome(), ids)
}

#[test]
fn the_language_model_from_the_cache_answers_token_for_token_the_same() {
    let dir = cache_dir("llm");
    let cache = CacheLocation::Dir(dir.clone());
    let (outcome, from_source) = greedy_answer(&CacheLocation::Off);
    assert_eq!(outcome, CacheOutcome::Off);
    assert_eq!(greedy_answer(&cache).0, CacheOutcome::Stored);
    let (outcome, from_cache) = greedy_answer(&cache);
    assert_eq!(outcome, CacheOutcome::Hit);
    assert_eq!(from_cache, from_source);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn the_tract_version_in_the_cache_key_is_the_one_built_with() {
    let lock = std::fs::read_to_string(root("Cargo.lock")).unwrap();
    let locked = lock
        .split("[[package]]")
        .find(|p| p.contains("name = \"tract-nnef\""))
        .and_then(|p| p.lines().find(|l| l.starts_with("version = ")))
        .map(|l| {
            l.trim_start_matches("version = ")
                .trim_matches('"')
                .to_string()
        })
        .unwrap();
    assert_eq!(
        locked, TRACT_VERSION,
        "tract was upgraded: set model_cache::TRACT_VERSION to {locked}"
    );
}

#[test]
fn a_cache_that_cannot_be_written_only_costs_the_speed_up() {
    // A directory under a regular file can never be created.
    let blocker = cache_dir("unwritable");
    std::fs::write(&blocker, b"a file, not a directory").unwrap();
    let cache = CacheLocation::Dir(blocker.join("cache"));
    let vad = root("models/silero_vad_16k.onnx");
    let model = load(&vad, &cache);
    assert_eq!(model.cache_outcome(), CacheOutcome::NotStored);
    assert_eq!(
        vad_probabilities(&model),
        vad_probabilities(&load(&vad, &CacheLocation::Off))
    );
    std::fs::remove_file(&blocker).ok();
}

#[test]
fn two_writers_of_one_entry_write_the_same_bytes() {
    // Two processes that prepare the same model at once must not see each other's checksum as
    // a mismatch: the entry's bytes do not depend on when they were written.
    let vad = root("models/silero_vad_16k.onnx");
    let tars: Vec<Vec<u8>> = ["same-a", "same-b"]
        .iter()
        .map(|name| {
            // A second apart: a tar records its files' times in whole seconds.
            std::thread::sleep(std::time::Duration::from_millis(1100));
            let dir = cache_dir(name);
            assert_eq!(
                load(&vad, &CacheLocation::Dir(dir.clone())).cache_outcome(),
                CacheOutcome::Stored
            );
            let tar = entry_tar(&dir);
            let bytes = std::fs::read(tar).unwrap();
            std::fs::remove_dir_all(&dir).ok();
            bytes
        })
        .collect();
    assert!(tars[0].len() > 100_000);
    assert!(tars[0] == tars[1], "the two entries differ");
}

#[test]
fn the_source_digest_memo_is_trusted_only_while_the_file_is_unchanged() {
    let dir = cache_dir("digest-memo");
    let models = dir.join("models");
    std::fs::create_dir_all(&models).unwrap();
    let source = models.join("vad.onnx");
    std::fs::copy(root("models/silero_vad_16k.onnx"), &source).unwrap();
    let entry = |dir: &Path| CacheEntry::for_source(dir, &source, "options").unwrap();
    let first = entry(&dir).model_path();
    let memo = dir.join("models.vad.digest");
    let text = std::fs::read_to_string(&memo).expect("the digest memo is written");
    assert_eq!(entry(&dir).model_path(), first);

    // A memo that matches the file's signature is used as it is (here, a forged digest).
    let mut lines: Vec<&str> = text.lines().collect();
    let forged = "a".repeat(64);
    lines[2] = &forged;
    std::fs::write(&memo, lines.join("\n") + "\n").unwrap();
    assert_ne!(entry(&dir).model_path(), first, "the memo was not used");

    // Rewriting the file (same bytes) changes its signature: the digest is computed again.
    let bytes = std::fs::read(&source).unwrap();
    std::fs::remove_file(&source).unwrap();
    std::fs::write(&source, bytes).unwrap();
    assert_eq!(entry(&dir).model_path(), first);
    std::fs::remove_dir_all(&dir).ok();
}
