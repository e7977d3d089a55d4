//! Numbers read from model files are range-checked before they size anything.

use std::path::{Path, PathBuf};

use weir_ml::llm::{ChatConfig, ChatModel};

/// A copy of the SmolLM2 model directory (files linked, not copied) whose
/// `generation.json` is replaced by `generation`.
fn model_dir_with(name: &str, generation: &str) -> PathBuf {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/smollm2-135m");
    assert!(
        source.join("model.onnx").is_file(),
        "run `bash tools/fetch-models.sh` first"
    );
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for entry in std::fs::read_dir(&source).unwrap() {
        let path = entry.unwrap().path();
        let file = path.file_name().unwrap();
        if file != "generation.json" {
            std::os::unix::fs::symlink(path.canonicalize().unwrap(), dir.join(file)).unwrap();
        }
    }
    std::fs::write(dir.join("generation.json"), generation).unwrap();
    dir
}

fn load_error(name: &str, generation: &str) -> String {
    let config = ChatConfig {
        model_dir: model_dir_with(name, generation),
        ..ChatConfig::default()
    };
    match ChatModel::load(config) {
        Ok(_) => panic!("{generation} was accepted"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn a_context_length_out_of_range_is_refused_before_loading() {
    for (name, value) in [("huge", "1000000000000"), ("zero", "0"), ("text", "\"8k\"")] {
        let json = format!(r#"{{"eos_token_id": 2, "max_positions": {value}}}"#);
        let e = load_error(&format!("positions_{name}"), &json);
        assert!(e.contains("generation.json"), "{e}");
        assert!(
            e.contains(&format!(
                "`max_positions` is {value}; expected a whole number in 1..=131072"
            )),
            "{e}"
        );
    }
}

#[test]
fn too_many_stop_ids_are_refused() {
    let ids: Vec<String> = (0..1000).map(|i| i.to_string()).collect();
    let json = format!(r#"{{"eos_token_id": [{}]}}"#, ids.join(","));
    let e = load_error("stop_ids", &json);
    assert!(e.contains("1000 stop ids; at most 64 are taken"), "{e}");
}
