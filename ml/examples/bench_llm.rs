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
//! split across threads (tract's default is 2^21).

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

/// CPU time of the whole process (all threads) in ms, from `/proc/self/stat` (10 ms ticks);
/// `None` off Linux. On a loaded machine it shows the compute cost that wall time hides.
fn cpu_ms() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the `(comm)`: state is field 3; utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) * 10.0)
}

/// CPU ms of each live thread of tract's pools (named `weir-model-N`), from
/// `/proc/self/task`: how evenly the work is split, whatever else runs on the machine.
fn pool_cpu_ms() -> Vec<(String, f64)> {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Vec::new();
    };
    let mut threads: Vec<(String, f64)> = tasks
        .filter_map(|t| {
            let dir = t.ok()?.path();
            let name = std::fs::read_to_string(dir.join("comm")).ok()?;
            let stat = std::fs::read_to_string(dir.join("stat")).ok()?;
            let rest = &stat[stat.rfind(')')? + 2..];
            let fields: Vec<&str> = rest.split(' ').collect();
            let ticks: f64 =
                fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
            Some((name.trim().to_string(), ticks * 10.0))
        })
        .filter(|(name, ms)| name.starts_with("weir-model") && *ms > 0.0)
        .collect();
    threads.sort_by(|a, b| a.0.cmp(&b.0));
    threads
}

/// Time all threads of the process spent runnable but waiting for a core, in ms (Linux
/// schedstat): how much the other programs on the machine slowed the measurement.
fn run_queue_wait_ms() -> f64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return f64::NAN;
    };
    tasks
        .filter_map(|t| {
            let text = std::fs::read_to_string(t.ok()?.path().join("schedstat")).ok()?;
            text.split(' ').nth(1)?.parse::<f64>().ok()
        })
        .sum::<f64>()
        / 1e6
}

/// Wall and CPU milliseconds of one answer: (prompt, decode per token) each.
#[derive(Clone, Copy, Default)]
struct Timing {
    prompt: f64,
    decode: f64,
    prompt_cpu: f64,
    decode_cpu: f64,
    prompt_tokens: usize,
}

fn timed_answer(chat: &mut ChatModel) -> Result<(Timing, String), LlmError> {
    let before = cpu_ms().unwrap_or(f64::NAN);
    let (mut first, mut last) = (f64::NAN, f64::NAN);
    let answer = chat.generate(PROMPT, |piece| {
        if piece.index == 0 {
            first = cpu_ms().unwrap_or(f64::NAN);
        }
        if piece.last {
            last = cpu_ms().unwrap_or(f64::NAN);
        }
        Ok::<_, LlmError>(())
    })?;
    let steps = answer.decode_steps.max(1) as f64;
    let timing = Timing {
        prompt: answer.prompt_time.as_secs_f64() * 1e3,
        decode: answer.decode_ms_per_token(),
        prompt_cpu: first - before,
        decode_cpu: (last - first) / steps,
        prompt_tokens: answer.prompt_tokens,
    };
    Ok((timing, answer.text))
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
    if let Some(macs) = args.mac_threshold {
        tract_onnx::prelude::multithread::set_threading_mac_threshold(macs);
    }
    // One warm-up answer, not counted.
    timed_answer(&mut chat)?;
    let (mut cached, mut uncached, mut answer_text) = (Vec::new(), Vec::new(), String::new());
    let (wait_before, wall_before) = (run_queue_wait_ms(), Instant::now());
    for _ in 0..args.runs {
        chat.set_prefix_cache(true)?;
        let (timing, text) = timed_answer(&mut chat)?;
        cached.push(timing);
        answer_text = text;
        chat.set_prefix_cache(false)?;
        uncached.push(timed_answer(&mut chat)?.0);
    }
    let waited = run_queue_wait_ms() - wait_before;
    let wall = wall_before.elapsed().as_secs_f64() * 1e3;
    let med = |runs: &[Timing], f: fn(&Timing) -> f64| {
        median(&mut runs.iter().map(f).collect::<Vec<_>>())
    };
    let (c, u) = (med(&cached, |t| t.prompt), med(&uncached, |t| t.prompt));
    let all: Vec<Timing> = cached.iter().chain(&uncached).copied().collect();
    println!(
        "| {threads} | {form} | {tract_load:.0} | {total_load:.0} | {prefix_ms:.0} \
         | {c:.0} ({} tok) | {u:.0} ({} tok) | {:.0} ms ({:.0}%) | {:.0} / {:.0} | {:.1} | {:.1} |",
        cached[0].prompt_tokens,
        uncached[0].prompt_tokens,
        u - c,
        100.0 * (u - c) / u,
        med(&cached, |t| t.prompt_cpu),
        med(&uncached, |t| t.prompt_cpu),
        med(&all, |t| t.decode),
        med(&all, |t| t.decode_cpu),
    );
    eprintln!("  answer ({threads} thread(s), {form}): {answer_text:?}");
    eprintln!("  waited for a core: {waited:.0} ms (all threads) in {wall:.0} ms of runs");
    let pool = pool_cpu_ms();
    if !pool.is_empty() {
        let list: Vec<String> = pool
            .iter()
            .map(|(n, ms)| format!("{n} {ms:.0} ms"))
            .collect();
        eprintln!("  CPU of the pool threads: {}", list.join(", "));
    }
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
    println!(
        "prompt {PROMPT:?}, {} runs (medians), up to {} tokens, greedy, mac threshold {:?}",
        args.runs, args.tokens, args.mac_threshold
    );
    println!(
        "| threads | KV cache | tract load ms | load + prefix ms | system prefix ms \
         | prompt ms, prefix cached | prompt ms, no cache | cache gain \
         | prompt CPU ms, cached / not | decode ms/token | decode CPU ms/token |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
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
