//! Helpers shared by the graph tests: paths, the launcher, graph runs, output readers.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use weir_engine::{Graph, Loader, Override, Registry, RunError, RunReport};

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A file under `data/`; fails with the set-up command when the data is missing.
pub fn data(rel: &str) -> PathBuf {
    let p = root().join("data").join(rel);
    assert!(
        p.exists(),
        "test data `{}` is missing: run `bash tools/fetch-data.sh` first",
        p.display()
    );
    p
}

/// A fresh, empty scratch folder for one test.
pub fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create scratch folder");
    dir
}

/// Every node kind the launcher knows.
pub fn registry() -> Registry {
    let mut r = weir_nodes::registry().expect("node kinds register once");
    weir_ml::register(&mut r).expect("ML node kinds register once");
    weir_live::register(&mut r).expect("live node kinds register once");
    weir_net::register(&mut r).expect("network node kinds register once");
    r
}

/// Runs the launcher with `args` from the repository root.
pub fn weir(args: &[&str], env: &[(&str, &Path)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_weir"));
    cmd.current_dir(root()).args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run the weir binary")
}

/// The launcher's standard error as text.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Loads `graph` (relative to the root) with `NODE.OPTION=VALUE` overrides and runs it.
pub fn run_graph(
    registry: &Registry,
    graph: &str,
    overrides: &[String],
) -> Result<RunReport, RunError> {
    let sets: Vec<Override> = overrides
        .iter()
        .map(|s| s.parse().expect("override syntax"))
        .collect();
    let plan = Loader::new(registry)
        .overrides(sets)
        .load_file(&root().join(graph))
        .unwrap_or_else(|e| panic!("{graph} does not load:\n{e}"));
    Graph::build(plan, registry)?.run()
}

/// Loads a graph given as YAML text and runs it.
pub fn run_yaml(registry: &Registry, yaml: &str) -> Result<RunReport, RunError> {
    let plan = Loader::new(registry)
        .load_str(Path::new("test.yaml"), yaml)
        .unwrap_or_else(|e| panic!("test graph does not load:\n{e}"));
    Graph::build(plan, registry)?.run()
}

/// Reads a JSON-lines file.
pub fn read_jsonl(path: &Path) -> Vec<serde_json::Value> {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    text.lines()
        .map(|l| serde_json::from_str(l).expect("valid JSON line"))
        .collect()
}

/// Reads a WAV file as f32 samples in [-1, 1] with its spec.
pub fn read_wav(path: &Path) -> (hound::WavSpec, Vec<f32>) {
    weir_nodes::audio::wav_file::read_wav(path).unwrap_or_else(|e| panic!("{e}"))
}

/// Frames (samples per channel) of a WAV file, from its header.
pub fn wav_frames(path: &Path) -> u64 {
    u64::from(hound::WavReader::open(path).expect("open WAV").duration())
}
