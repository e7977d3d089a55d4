//! What each model costs in memory once loaded on tract: resident memory (VmRSS) and its peak
//! (VmHWM) before and after loading one model, and after one use of it, in a fresh process
//! per model (so nothing else shares the figures).
//!
//! ```text
//! cargo run --release --example model_memory -p weir-ml              # every model, one process each
//! cargo run --release --example model_memory -p weir-ml -- whisper   # one model in this process
//! ```

use std::ops::ControlFlow;
use std::path::Path;
use std::process::{Command, ExitCode};

use weir_ml::llm::{ChatConfig, ChatModel, LlmError};
use weir_ml::tts::Voice;
use weir_ml::vad::SileroVad;
use weir_ml::whisper::{Transcriber, TranscriberOptions};

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
const MODELS: [&str; 4] = ["vad", "whisper", "llm", "tts"];

/// `VmRSS` and `VmHWM` of this process in MiB.
fn memory() -> (f64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn measure(which: &str) -> Result<(), String> {
    let root = Path::new(ROOT);
    let (rss0, _) = memory();
    let mut after_load = (0.0, 0.0);
    let mut loaded = || after_load = memory();
    match which {
        "vad" => {
            let mut vad = SileroVad::load(root.join("models/silero_vad_16k.onnx"), 0.5)
                .map_err(|e| e.to_string())?;
            loaded();
            vad.step(&[0.0; 512]).map_err(|e| e.to_string())?;
        }
        "whisper" => {
            let whisper = Transcriber::load(
                root.join("models/whisper-tiny.en"),
                &TranscriberOptions::default(),
            )
            .map_err(|e| e.to_string())?;
            loaded();
            let silence = vec![0.0f32; 16_000 * 2];
            whisper.transcribe(&silence).map_err(|e| e.to_string())?;
        }
        "llm" => {
            let mut chat = ChatModel::load(ChatConfig {
                model_dir: root.join("models/smollm2-135m"),
                ..ChatConfig::default()
            })
            .map_err(|e| e.to_string())?;
            loaded();
            chat.generate_with("What is the capital of France?", |_| {
                Ok::<_, LlmError>(ControlFlow::Continue(()))
            })
            .map_err(|e| e.to_string())?;
        }
        "tts" => {
            let _voice =
                Voice::load(root.join("models/piper-joe-medium"), 1).map_err(|e| e.to_string())?;
            loaded();
        }
        other => return Err(format!("unknown model `{other}`; one of {MODELS:?}")),
    }
    let (rss, peak) = memory();
    println!(
        "{which:8} before {rss0:6.0} MiB | loaded {:6.0} MiB (+{:4.0}) | after one use {rss:6.0} MiB, peak {peak:6.0} MiB",
        after_load.0,
        after_load.0 - rss0
    );
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = if let Some(which) = args.first() {
        measure(which)
    } else {
        let me = std::env::current_exe().map_err(|e| e.to_string());
        me.and_then(|me| {
            for m in MODELS {
                let status = Command::new(&me)
                    .arg(m)
                    .status()
                    .map_err(|e| e.to_string())?;
                if !status.success() {
                    return Err(format!("measuring `{m}` failed"));
                }
            }
            Ok(())
        })
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("model_memory: {e}");
            ExitCode::FAILURE
        }
    }
}
