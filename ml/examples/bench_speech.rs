//! Measures the speech models on tract: load times, Silero VAD real-time factor, Whisper
//! encoder time per second of audio (15 s and 30 s windows), cross-K/V time, decoder time per
//! token, and a whole transcription with the 15 s rule against whisper's fixed 30 s window.
//! Medians of several runs, on real recordings from `data/` (`bash tools/fetch-data.sh`).
//!
//! ```text
//! cargo run --example bench_speech -p weir-ml -- [--runs 5] [--threads 1]
//! ```

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use weir_ml::runtime::{Model, ModelOptions};
use weir_ml::vad::{SileroVad, VadStream};
use weir_ml::whisper::{Transcriber, TranscriberOptions, MAX_WINDOW, MIN_WINDOW};
use weir_nodes::speech::segmenter::SegmenterConfig;

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
const SPEECH: &str = "data/pocketsphinx/librivox/sense_and_sensibility_01_austen_64kb-0870.wav";

struct Args {
    runs: usize,
    threads: usize,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        runs: 5,
        threads: 1,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        let n = value
            .parse::<usize>()
            .map_err(|e| format!("{flag} {value:?}: {e}"))?;
        match flag.as_str() {
            "--runs" => args.runs = n.max(1),
            "--threads" => args.threads = n.max(1),
            _ => return Err(format!("unknown flag {flag}; use --runs N, --threads N")),
        }
    }
    Ok(args)
}

fn path(rel: &str) -> PathBuf {
    Path::new(ROOT).join(rel)
}

/// 16 kHz mono samples of a WAV file.
fn read_wav(rel: &str) -> Result<Vec<f32>, String> {
    let mut reader = weir_nodes::audio::wav_file::open_wav(&path(rel))
        .map_err(|e| format!("{e} (run `bash tools/fetch-data.sh`)"))?;
    let spec = reader.spec();
    if spec.sample_rate != 16_000 || spec.channels != 1 || spec.bits_per_sample != 16 {
        return Err(format!("{rel}: expected 16 kHz 16-bit mono"));
    }
    reader
        .samples::<i16>()
        .map(|s| s.map(|s| f32::from(s) / 32768.0).map_err(|e| e.to_string()))
        .collect()
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Median of `runs` timings of `f` (in ms, as `f` reports them).
fn measure(runs: usize, mut f: impl FnMut() -> Result<f64, String>) -> Result<f64, String> {
    let mut xs = Vec::with_capacity(runs);
    for _ in 0..runs {
        xs.push(f()?);
    }
    Ok(median(xs))
}

fn bench_vad(args: &Args) -> Result<(), String> {
    let model = path("models/silero_vad_16k.onnx");
    let load = measure(args.runs, || {
        let m = Model::load(&model, ModelOptions::default()).map_err(|e| e.to_string())?;
        Ok(ms(m.load_time()))
    })?;
    let audio = read_wav("data/pauses.wav")?;
    let seconds = audio.len() as f64 / 16_000.0;
    let shared = Model::load(&model, ModelOptions::default()).map_err(|e| e.to_string())?;
    let config = SegmenterConfig {
        rate: 16_000,
        min_speech_ms: 250.0,
        min_silence_ms: 300.0,
        padding_ms: 100.0,
        max_segment_ms: 30_000.0,
        draft_silence_ms: 0.0,
    };
    let mut chunks = 0;
    let total = measure(args.runs, || {
        let mut stream = VadStream::new(SileroVad::with_model(shared.clone(), 0.5), config);
        let mut events = Vec::new();
        let started = Instant::now();
        // 20 ms packets, as audio.wav_file sends them.
        for packet in audio.chunks(320) {
            stream
                .push(packet, &mut events)
                .map_err(|e| e.to_string())?;
        }
        stream.finish(&mut events).map_err(|e| e.to_string())?;
        chunks = stream.counts().0;
        Ok(ms(started.elapsed()))
    })?;
    println!("Silero VAD (models/silero_vad_16k.onnx)");
    println!("  load                      {load:8.1} ms");
    println!(
        "  data/pauses.wav {seconds:.1} s    {total:8.1} ms  = {:.2} ms per 32 ms chunk, real-time factor {:.4}",
        total / chunks as f64,
        total / 1000.0 / seconds
    );
    Ok(())
}

fn bench_whisper(args: &Args) -> Result<(), String> {
    let dir = path("models/whisper-tiny.en");
    let options = TranscriberOptions {
        threads: args.threads,
        ..TranscriberOptions::default()
    };
    let mut loads = [Vec::new(), Vec::new(), Vec::new()];
    let mut transcriber = None;
    for _ in 0..args.runs.min(3) {
        let t = Transcriber::load(&dir, &options).map_err(|e| e.to_string())?;
        for (i, m) in t.models().iter().enumerate() {
            loads[i].push(ms(m.load_time()));
        }
        transcriber = Some(t);
    }
    let t = transcriber.expect("loaded at least once");
    let [enc, cross, dec] = loads.map(median);
    println!(
        "Whisper tiny.en ({}), {} thread(s)",
        dir.display(),
        args.threads
    );
    println!("  load encoder / cross_kv / decoder   {enc:.0} / {cross:.0} / {dec:.0} ms");

    let audio = read_wav(SPEECH)?;
    let speech_s = audio.len() as f64 / 16_000.0;
    for window in [MIN_WINDOW, MAX_WINDOW] {
        let window_s = window as f64 / 16_000.0;
        let mut cross_ms = Vec::new();
        let encoder = measure(args.runs, || {
            let e = t.encode(&audio, window).map_err(|e| e.to_string())?;
            cross_ms.push(ms(e.cross_kv));
            Ok(ms(e.encoder))
        })?;
        let encoded = t.encode(&audio, window).map_err(|e| e.to_string())?;
        let mut tokens = 0;
        let per_token = measure(args.runs, || {
            let d = t.decode(&encoded.cross, 224).map_err(|e| e.to_string())?;
            tokens = d.tokens.len();
            Ok(ms(d.timings.decoder) / d.timings.decoder_calls as f64)
        })?;
        println!(
            "  {window_s:.0} s window: encoder {encoder:7.1} ms = {:5.1} ms per s of window; cross_kv {:5.1} ms; decoder {per_token:5.1} ms/token ({tokens} tokens)",
            encoder / window_s,
            median(cross_ms),
        );
    }

    // The whole segment: the 15 s rule (what the node does) against a fixed 30 s window.
    let whole = measure(args.runs, || {
        let r = t.transcribe(&audio).map_err(|e| e.to_string())?;
        Ok(ms(r.timings.encoder
            + r.timings.cross_kv
            + r.timings.decoder))
    })?;
    let fixed = measure(args.runs, || {
        let e = t.encode(&audio, MAX_WINDOW).map_err(|e| e.to_string())?;
        let d = t.decode(&e.cross, 224).map_err(|e| e.to_string())?;
        Ok(ms(e.encoder + e.cross_kv + d.timings.decoder))
    })?;
    let trimmed_text = t.transcribe(&audio).map_err(|e| e.to_string())?.text;
    let e = t.encode(&audio, MAX_WINDOW).map_err(|e| e.to_string())?;
    let fixed_text = t.text(&t.decode(&e.cross, 224).map_err(|e| e.to_string())?.tokens);
    println!(
        "  {speech_s:.1} s of speech ({SPEECH}):\n    15 s rule {whole:7.1} ms (RTF {:.3}), 30 s window {fixed:7.1} ms (RTF {:.3}); same text: {}",
        whole / 1000.0 / speech_s,
        fixed / 1000.0 / speech_s,
        trimmed_text == fixed_text
    );
    println!("    text: {trimmed_text}");
    Ok(())
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    println!("medians of {} runs", args.runs);
    for result in [bench_vad(&args), bench_whisper(&args)] {
        if let Err(e) = result {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}
