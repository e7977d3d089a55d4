//! Times the SmolLM2 prompt (prefill) on tract in isolation: the system prefix is run once,
//! then each run clones that session, feeds the user turn as one chunk (timed), and feeds a
//! few single tokens (timed, decode). Medians of several runs.
//!
//! ```text
//! cargo run --release --example bench_prefill -p weir-ml -- [--runs 9] [--threads 1]
//!     [--model-dir models/smollm2-135m] [--user "What is the capital of France?"]
//!     [--dump logits.f32] [--all-positions]
//! ```
//! `--all-positions` runs the output layer on every prompt position (the exported graph as
//! is) instead of the last one only.
//! `--dump` writes the logits of the last prompt token (little-endian f32) so two builds or
//! two load options can be compared.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use weir_ml::llm::{LanguageModel, LoadOptions, Tokenizer, DEFAULT_SYSTEM};

struct Args {
    runs: usize,
    threads: usize,
    model_dir: PathBuf,
    user: String,
    dump: Option<PathBuf>,
    all_positions: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        runs: 9,
        threads: 1,
        model_dir: PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../models/smollm2-135m"
        )),
        user: "What is the capital of France?".to_string(),
        dump: None,
        all_positions: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        let number = |v: String| v.parse::<usize>().map_err(|e| format!("{v:?}: {e}"));
        match flag.as_str() {
            "--runs" => args.runs = number(value()?)?.max(1),
            "--threads" => args.threads = number(value()?)?.max(1),
            "--model-dir" => args.model_dir = PathBuf::from(value()?),
            "--user" => args.user = value()?,
            "--dump" => args.dump = Some(PathBuf::from(value()?)),
            "--all-positions" => args.all_positions = true,
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(args)
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

fn argmax(values: &[f32]) -> usize {
    values
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map(|(i, _)| i)
        .unwrap_or(0)
}

fn run(args: &Args) -> Result<(), String> {
    let tokenizer = Tokenizer::from_file(args.model_dir.join("tokenizer.json"))
        .map_err(|e| format!("tokenizer: {e}"))?;
    let encode = |text: &str| -> Result<Vec<u32>, String> {
        Ok(tokenizer
            .encode(text, false)
            .map_err(|e| format!("encode: {e}"))?
            .get_ids()
            .to_vec())
    };
    let system = encode(&format!("<|im_start|>system\n{DEFAULT_SYSTEM}<|im_end|>\n"))?;
    let user = encode(&format!(
        "<|im_start|>user\n{}<|im_end|>\n<|im_start|>assistant\n",
        args.user
    ))?;
    let options = LoadOptions {
        threads: args.threads,
        last_position_only: !args.all_positions,
        ..LoadOptions::default()
    };
    let started = Instant::now();
    let lm = LanguageModel::load(&args.model_dir.join("model.onnx"), &options)
        .map_err(|e| e.to_string())?;
    let load_ms = started.elapsed().as_secs_f64() * 1e3;
    let mut kernels = std::collections::BTreeMap::<String, usize>::new();
    for k in lm.matmul_kernels() {
        *kernels.entry(k).or_default() += 1;
    }
    println!(
        "panel extractors: {:?}",
        weir_ml::kernels::panel_extractors()
    );
    println!("matrix products (kernel(s): count): {kernels:?}");
    let mut prefix = lm.session().map_err(|e| e.to_string())?;
    prefix.feed(&lm, &system).map_err(|e| e.to_string())?;

    let (mut prompt, mut decode) = (Vec::new(), Vec::new());
    let mut last = Vec::new();
    // One warm-up run first, not counted.
    for run in 0..=args.runs {
        let mut session = prefix.clone();
        let t = Instant::now();
        let logits = session.feed(&lm, &user).map_err(|e| e.to_string())?;
        let prompt_ms = t.elapsed().as_secs_f64() * 1e3;
        let mut next = argmax(&logits) as u32;
        let t = Instant::now();
        const STEPS: usize = 4;
        for _ in 0..STEPS {
            next = argmax(&session.feed(&lm, &[next]).map_err(|e| e.to_string())?) as u32;
        }
        let decode_ms = t.elapsed().as_secs_f64() * 1e3 / STEPS as f64;
        if run > 0 {
            prompt.push(prompt_ms);
            decode.push(decode_ms);
        }
        last = logits;
    }
    let p = median(&mut prompt);
    let d = median(&mut decode);
    println!(
        "load {load_ms:.0} ms | system prefix {} tok | user turn {} tok: prompt {p:.1} ms \
         ({:.1} ms/token) | decode {d:.1} ms/token | prompt/decode-step {:.2} | top-1 {}",
        system.len(),
        user.len(),
        p / user.len() as f64,
        p / d,
        argmax(&last)
    );
    if let Some(path) = &args.dump {
        let bytes: Vec<u8> = last.iter().flat_map(|v| v.to_le_bytes()).collect();
        std::fs::write(path, bytes).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(())
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("bench_prefill: {e}");
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench_prefill: {e}");
            ExitCode::FAILURE
        }
    }
}
