//! End-to-end benchmark of the voice assistant: a recorded question is played at real-time
//! pace into `graphs/voice_assistant.yaml` (models loaded first), several times; measures the
//! latency from the end of speech to the transcript, to the first answer token and to the
//! first sample of the spoken answer, and the process's peak resident memory. With
//! `RUST_LOG=weir_ml=info` the speech node logs its real-time factor at the end.
//!
//! `cargo run --example bench_assistant [-- ROUNDS [FILE.wav]]`

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use weir_engine::{channel_sink, channel_source, Graph, Loader, Override, Packet, Payload};
use weir_media::{AudioFrame, Text, Token};

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let rounds: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(3);
    let file = std::env::args()
        .nth(2)
        .unwrap_or_else(|| "data/synth/question_44k_stereo.wav".into());

    let mut registry = weir_nodes::registry()?;
    weir_ml::register(&mut registry)?;
    // The bench reads both sinks while it feeds; they hold a whole answer in between.
    let (mic, audio_tx) = channel_source("bench.mic", AudioFrame::PORT, 64);
    let (tokens, tokens_rx) = channel_sink("bench.tokens", Token::PORT, 1024);
    let (texts, text_rx) = channel_sink("bench.text", Text::PORT, 1024);
    let (speech, speech_rx) = channel_sink("bench.speech", AudioFrame::PORT, 4096);
    registry.register(mic)?;
    registry.register(tokens)?;
    registry.register(texts)?;
    registry.register(speech)?;

    // The shipped graph with its file source and printers swapped for the bench's endpoints.
    let yaml = std::fs::read_to_string("graphs/voice_assistant.yaml")?
        .replace("node: audio.wav_file", "node: bench.mic")
        .replace(
            "with: { path: data/synth/question_44k_stereo.wav, frame_ms: 20, realtime: false }",
            "",
        )
        .replace("in: { audio: mic.audio }", "in: { audio: mic.out }");
    let yaml = yaml
        .replace(
            "node: text.print\n    in: { in: asr.text }",
            "node: bench.text\n    in: { in: asr.text }",
        )
        .replace(
            "node: text.print\n    in: { in: slm.tokens }",
            "node: bench.tokens\n    in: { in: slm.tokens }",
        )
        .replace(
            "node: audio.wav_writer\n    in: { audio: tts.audio }\n    with: { path: \"${WEIR_OUT:-out}/answer.wav\" }",
            "node: bench.speech\n    in: { in: tts.audio }",
        );
    assert!(
        yaml.contains("bench.speech"),
        "the graph's answer.wav writer was not found"
    );
    let plan = Loader::new(&registry)
        .overrides(Vec::<Override>::new())
        .load_str(Path::new("graphs/voice_assistant.yaml"), &yaml)?;
    let t_start = Instant::now();
    let running = Graph::build(plan, &registry)?.start()?;

    let (spec, samples) = weir_nodes::audio::wav_file::read_wav(std::path::Path::new(&file))?;
    let ch = usize::from(spec.channels);
    let last_loud = samples.iter().rposition(|s| s.abs() > 0.01).unwrap_or(0) / ch;
    let speech_end = Duration::from_secs_f64(last_loud as f64 / f64::from(spec.sample_rate));
    let frame = (spec.sample_rate / 50) as usize * ch;
    let silence = vec![0.0f32; frame];

    // Let the models load (the first feed would otherwise wait behind them).
    std::thread::sleep(Duration::from_secs(12));
    eprintln!("models loaded; peak RSS so far {:.0} MiB", peak_rss_mib());

    let mut position = 0u64;
    let send = |chunk: &[f32], position: &mut u64| -> Result<(), Box<dyn std::error::Error>> {
        let audio = AudioFrame {
            rate: spec.sample_rate,
            channels: spec.channels,
            start_sample: *position,
            samples: Arc::from(chunk),
        };
        *position = audio.end_sample();
        audio_tx.send(Packet::new(audio.timestamp(), audio))?;
        Ok(())
    };
    let (mut to_token, mut to_text, mut to_audio) = (Vec::new(), Vec::new(), Vec::new());
    let mut spoken = 0usize;
    for round in 0..rounds {
        let t0 = Instant::now();
        for (i, chunk) in samples.chunks(frame).enumerate() {
            let due =
                t0 + Duration::from_secs_f64((i * frame / ch) as f64 / f64::from(spec.sample_rate));
            std::thread::sleep(due.saturating_duration_since(Instant::now()));
            send(chunk, &mut position)?;
        }
        // Keep the microphone running (silence) until the answer starts.
        let end_of_speech = t0 + speech_end;
        let (mut text_at, mut token_at, mut audio_at, mut last_audio) = (None, None, None, None);
        let mut answered = false;
        // Until the answer is written and spoken (no audio for 1.5 s after its last token).
        loop {
            std::thread::sleep(Duration::from_millis(20));
            send(&silence, &mut position)?;
            let now = Instant::now();
            if text_at.is_none() && text_rx.try_recv().is_ok() {
                text_at = Some(now);
            }
            for p in tokens_rx.try_iter() {
                token_at.get_or_insert(now);
                answered |= p.get::<Token>().is_some_and(|t| t.last);
            }
            for p in speech_rx.try_iter() {
                audio_at.get_or_insert(now);
                last_audio = Some(now);
                spoken += p.get::<AudioFrame>().map_or(0, AudioFrame::frames);
            }
            let quiet = last_audio.is_some_and(|t| now - t > Duration::from_millis(1500));
            if answered && quiet {
                break;
            }
        }
        let ms =
            |t: Option<Instant>| t.map_or(f64::NAN, |t| (t - end_of_speech).as_secs_f64() * 1e3);
        let (txt, tok, aud) = (ms(text_at), ms(token_at), ms(audio_at));
        eprintln!(
            "round {}: transcript after {txt:.0} ms, first answer token after {tok:.0} ms, \
             first audio after {aud:.0} ms",
            round + 1
        );
        to_token.push(tok);
        to_text.push(txt);
        to_audio.push(aud);
    }
    drop(audio_tx);
    let report = running.wait()?;
    println!(
        "voice_assistant.yaml, {} played at real-time pace, {rounds} rounds (medians)",
        file
    );
    println!(
        "end of speech -> transcript            {:>8.0} ms",
        median(to_text)
    );
    println!(
        "end of speech -> first answer token    {:>8.0} ms",
        median(to_token)
    );
    println!(
        "end of speech -> first answer audio    {:>8.0} ms",
        median(to_audio)
    );
    println!(
        "answer audio per round                 {:>8.2} s",
        spoken as f64 / 22_050.0 / rounds as f64
    );
    println!(
        "peak RSS (whole process)               {:>8.0} MiB",
        peak_rss_mib()
    );
    println!(
        "graph start -> end                     {:>8.1} s",
        t_start.elapsed().as_secs_f64()
    );
    eprintln!("{}", report.table());
    Ok(())
}
