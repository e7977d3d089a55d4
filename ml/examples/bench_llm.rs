//! Measures the SmolLM2 chat model on tract: model load time, prompt time with and without the
//! system-prefix cache, and decode time per token, at several thread counts, for both
//! KV-cache forms. Medians of several runs.
//!
//! ```text
//! cargo run --example bench_llm -p weir-ml -- [--runs 5] [--threads 1,2] [--tokens 32]
//!     [--model-dir models/smollm2-135m] [--explicit] [--mac-threshold N]
//! ```
//! `--explicit` adds a 1-thread run of the explicit-KV-cache form; `--mac-threshold` sets
//! tract's process-wide size (multiply-accumulates) above which a matrix-vector product is
//! split across threads (tract's default is 2^21, which leaves most of a 135M model's decode
//! step on one thread).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use weir_ml::llm::{ChatConfig, ChatModel, LlmError};

const PROMPT: &str = "What is the capital of France?";

struct Args {
    runs: usize,
    threads: Vec<usize>,
    tokens: usize,
    model_dir: PathBuf,
    explicit: bool,
    /// tract's multiply-accumulate count above which a matrix-vector product is threaded.
    mac_threshold: Option<usize>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        runs: 5,
        threads: vec![1, 2],
        tokens: 32,
        model_dir: PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../models/smollm2-135m"
        )),
        explicit: false,
        mac_threshold: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        let number = |v: String| v.parse::<usize>().map_err(|e| format!("{v:?}: {e}"));
        match flag.as_str() {
            "--runs" => args.runs = number(value()?)?.max(1),
            "--tokens" => args.tokens = number(value()?)?.max(2),
            "--threads" => {
                args.threads = value()?
                    .split(',')
                    .map(|s| number(s.to_string()))
                    .collect::<Result<_, _>>()?
            }
            "--model-dir" => args.model_dir = PathBuf::from(value()?),
            "--explicit" => args.explicit = true,
            "--mac-threshold" => args.mac_threshold = Some(number(value()?)?),
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

/// One configuration: load, then `runs` answers with and without the prefix cache.
fn bench(args: &Args, threads: usize, kv_state: bool) -> Result<(), LlmError> {
    let form = if kv_state { "state" } else { "explicit" };
    let config = ChatConfig {
        model_dir: args.model_dir.clone(),
        max_tokens: args.tokens,
        threads,
        kv_state,
        ..ChatConfig::default()
    };
    let started = Instant::now();
    let mut chat = ChatModel::load(config)?;
    let total_load = started.elapsed().as_secs_f64() * 1e3;
    let tract_load = chat.load_time().as_secs_f64() * 1e3;
    let prefix_ms = chat.prefix_time().as_secs_f64() * 1e3;
    let (mut cached, mut uncached, mut decode) = (Vec::new(), Vec::new(), Vec::new());
    let mut answer_text = String::new();
    let mut prompt_tokens = (0, 0);
    // One warm-up answer, not counted.
    chat.generate(PROMPT, |_| Ok::<_, LlmError>(()))?;
    for _ in 0..args.runs {
        chat.set_prefix_cache(true)?;
        let a = chat.generate(PROMPT, |_| Ok::<_, LlmError>(()))?;
        cached.push(a.prompt_time.as_secs_f64() * 1e3);
        decode.push(a.decode_ms_per_token());
        prompt_tokens.0 = a.prompt_tokens;
        answer_text = a.text;
        chat.set_prefix_cache(false)?;
        let b = chat.generate(PROMPT, |_| Ok::<_, LlmError>(()))?;
        uncached.push(b.prompt_time.as_secs_f64() * 1e3);
        decode.push(b.decode_ms_per_token());
        prompt_tokens.1 = b.prompt_tokens;
    }
    let (c, u) = (median(&mut cached), median(&mut uncached));
    println!(
        "| {threads} | {form} | {tract_load:.0} | {total_load:.0} | {prefix_ms:.0} | {c:.0} ({} tok) \
         | {u:.0} ({} tok) | {:.0} ms ({:.0}%) | {:.1} |",
        prompt_tokens.0,
        prompt_tokens.1,
        u - c,
        100.0 * (u - c) / u,
        median(&mut decode),
    );
    eprintln!("  answer ({threads} thread(s), {form}): {answer_text:?}");
    Ok(())
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("bench_llm: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(macs) = args.mac_threshold {
        tract_onnx::prelude::multithread::set_threading_mac_threshold(macs);
    }
    println!(
        "prompt {PROMPT:?}, {} runs (medians), up to {} tokens, greedy, mac threshold {:?}",
        args.runs, args.tokens, args.mac_threshold
    );
    println!(
        "| threads | KV cache | tract load ms | load + prefix ms | system prefix ms \
         | prompt ms, prefix cached | prompt ms, no cache | cache gain | decode ms/token |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    let mut configs: Vec<(usize, bool)> = args.threads.iter().map(|&t| (t, true)).collect();
    if args.explicit {
        configs.push((1, false));
    }
    for (threads, kv_state) in configs {
        if let Err(e) = bench(&args, threads, kv_state) {
            eprintln!("bench_llm: {e}");
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}
