//! `speech.tts` with the real Piper voice and espeak-ng: the tract port matches onnxruntime,
//! what it says is heard by Whisper, and an interrupt stops it.
//!
//! The models must have been fetched (`bash tools/fetch-models.sh`) and espeak-ng installed
//! (`apt-get install espeak-ng`); without them these tests fail and say so.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use weir_engine::testing::NodeRunner;
use weir_engine::{
    channel_sink, channel_source, Graph, Loader, Packet, Payload, Registry, Timestamp,
};
use weir_media::{AudioFrame, Event, Text, Token};
use weir_ml::llm::Rng;
use weir_ml::tts::{Scales, TtsError, Voice};
use weir_ml::whisper::{Transcriber, TranscriberOptions, RATE};
use weir_nodes::audio::resample::{Method, StreamResampler};

fn root(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel)
}

fn voice_dir() -> PathBuf {
    let dir = root("models/piper-joe-medium");
    assert!(
        dir.join("part_a.onnx").is_file(),
        "{} is missing: fetch the voice with `bash tools/models/piper.sh` first",
        dir.display()
    );
    dir
}

fn text(t: Timestamp, s: &str) -> Packet {
    let text = Text {
        text: Arc::from(s),
        start: t,
        end: t,
    };
    Packet::new(t, text)
}

/// The samples of a run's audio output, checked to be mono, at one rate, contiguous.
fn samples(packets: &[Packet]) -> (u32, Vec<f32>) {
    let mut out = Vec::new();
    let mut rate = 0;
    for p in packets {
        let f = p.get::<AudioFrame>().expect("audio carries audio");
        assert_eq!(f.channels, 1);
        assert_eq!(f.start_sample, out.len() as u64, "contiguous timestamps");
        assert_eq!(p.timestamp, f.timestamp());
        rate = f.rate;
        out.extend_from_slice(&f.samples);
    }
    (rate, out)
}

fn rms(x: &[f32]) -> f32 {
    (x.iter().map(|s| s * s).sum::<f32>() / x.len().max(1) as f32).sqrt()
}

/// Whisper tiny.en's transcript of `samples` at `rate`, lower case.
fn hear(rate: u32, samples: &[f32]) -> String {
    let mut r = StreamResampler::new(rate, RATE, 1, Method::Fft).unwrap();
    let mut at16k = Vec::new();
    r.push(samples, &mut at16k).unwrap();
    r.finish(&mut at16k).unwrap();
    let whisper = Transcriber::load(
        root("models/whisper-tiny.en"),
        &TranscriberOptions::default(),
    )
    .expect("Whisper tiny.en (bash tools/fetch-models.sh)");
    whisper.transcribe(&at16k).unwrap().text.to_lowercase()
}

#[test]
fn tract_parts_match_onnxruntime() {
    let dir = voice_dir();
    let voice = Voice::load(&dir, 1).unwrap();
    assert_eq!(voice.rate(), 22_050);
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("verify.json")).unwrap()).unwrap();
    let ids: Vec<i64> = report["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_i64().unwrap())
        .collect();
    let bytes = std::fs::read(dir.join("reference.f32")).unwrap();
    let want: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect();
    // Without noise the voice is deterministic: the reference is onnxruntime's output of the
    // original, uncut model.
    let scales = Scales {
        noise_scale: 0.0,
        length_scale: voice.scales().length_scale,
        noise_w: 0.0,
    };
    let got = voice.synthesize(&ids, scales, &mut Rng::new(1)).unwrap();
    assert_eq!(
        got.len(),
        want.len(),
        "sample count differs from onnxruntime"
    );
    let err = got
        .iter()
        .zip(&want)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    println!("max |tract - onnxruntime| = {err:e}");
    assert!(err < 1e-3, "tract differs from onnxruntime by {err}");
}

#[test]
fn a_spoken_sentence_is_heard_by_whisper() {
    let sentence = "The capital of France is Paris. It is a beautiful city.";
    let out = NodeRunner::new(weir_ml::tts::node::kind())
        .unpaced()
        .option("voice_dir", voice_dir().to_string_lossy().into_owned())
        .feed("text", [text(Timestamp::ZERO, sentence)])
        .run()
        .unwrap();
    let (rate, audio) = samples(out.packets("audio"));
    assert_eq!(rate, 22_050);
    let secs = audio.len() as f64 / f64::from(rate);
    println!("{secs:.2} s of speech, rms {:.3}", rms(&audio));
    // About 12 words: at a speaking rate of 2 to 5 words per second.
    assert!((2.0..7.0).contains(&secs), "{secs} s for 12 words");
    assert!(rms(&audio) > 0.02, "near silence: rms {}", rms(&audio));
    assert!(audio.iter().all(|s| s.is_finite()));
    let heard = hear(rate, &audio);
    println!("Whisper heard: {heard}");
    // Whisper tiny.en sometimes runs "France is" together as "Francis".
    for word in ["capital", "fran", "paris", "beautiful", "city"] {
        assert!(heard.contains(word), "`{word}` not in `{heard}`");
    }
}

#[test]
fn streamed_tokens_are_spoken_phrase_by_phrase_and_seeded() {
    let pieces = ["Hello", ",", " my", " friend", ".", " Good", "bye", "!", ""];
    let tokens = |t: u64| {
        pieces.iter().enumerate().map(move |(i, s)| {
            let token = Token {
                id: i as u32,
                text: Arc::from(*s),
                index: i as u32,
                last: i + 1 == pieces.len(),
            };
            Packet::new(Timestamp::from_nanos(t), token)
        })
    };
    let run = || {
        let out = NodeRunner::new(weir_ml::tts::node::kind())
            .unpaced()
            .option("voice_dir", voice_dir().to_string_lossy().into_owned())
            .feed("tokens", tokens(0).chain(tokens(5_000_000_000)))
            .run()
            .unwrap();
        samples(out.packets("audio")).1
    };
    let (a, b) = (run(), run());
    assert_eq!(a, b, "the same seed gives the same audio");
    // Two answers, each spoken the same way: the seed is reset per answer.
    let half = a.len() / 2;
    assert_eq!(a[..half], a[half..], "both answers sound the same");
    let heard = hear(22_050, &a[..half]);
    assert!(
        heard.contains("hello") && heard.contains("friend"),
        "{heard}"
    );
}

#[test]
fn espeak_engine_speaks_without_a_model() {
    let out = NodeRunner::new(weir_ml::tts::node::kind())
        .unpaced()
        .option("engine", "espeak")
        .option("voice_dir", "/nonexistent")
        .feed("text", [text(Timestamp::ZERO, "Turn left at the station.")])
        .run()
        .unwrap();
    let (rate, audio) = samples(out.packets("audio"));
    assert_eq!(rate, 22_050);
    let secs = audio.len() as f64 / f64::from(rate);
    assert!((0.8..5.0).contains(&secs), "{secs} s");
    assert!(rms(&audio) > 0.02);
    let heard = hear(rate, &audio);
    assert!(
        heard.contains("left") && heard.contains("station"),
        "{heard}"
    );
}

#[test]
fn missing_voice_and_missing_espeak_name_the_fix() {
    let e = Voice::load("/nonexistent/voice", 1).unwrap_err();
    assert!(matches!(e, TtsError::MissingVoice { .. }));
    assert!(e.to_string().contains("tools/models/piper.sh"), "{e}");
    let err = NodeRunner::new(weir_ml::tts::node::kind())
        .option("engine", "espeak")
        .option("espeak", "/nonexistent/espeak-ng")
        .feed("text", [text(Timestamp::ZERO, "hi")])
        .run()
        .unwrap_err()
        .to_string();
    assert!(err.contains("apt-get install espeak-ng"), "{err}");
}

/// Words of a long answer, as a language model streams them.
fn word_tokens(s: &str, t: Timestamp) -> Vec<Packet> {
    let words: Vec<String> = s.split_inclusive(' ').map(str::to_string).collect();
    let n = words.len();
    words
        .into_iter()
        .enumerate()
        .map(|(i, w)| {
            let token = Token {
                id: 0,
                text: Arc::from(w),
                index: i as u32,
                last: i + 1 == n,
            };
            Packet::new(t, token)
        })
        .collect()
}

#[test]
fn an_interrupt_stops_speech_and_flushes_queued_tokens() {
    let mut registry = Registry::new();
    weir_ml::register(&mut registry).unwrap();
    let (tokens, tokens_tx) = channel_source("test.tokens", Token::PORT, 1024);
    let (trigger, trigger_tx) = channel_source("test.trigger", Event::PORT, 1);
    let (texts, text_tx) = channel_source("test.texts", Text::PORT, 4);
    let (sink, audio_rx) = channel_sink("test.audio", AudioFrame::PORT, 4096);
    for kind in [tokens, trigger, texts, sink] {
        registry.register(kind).unwrap();
    }
    let dir = voice_dir();
    // As in the voice assistant, the interrupt targets the producer of the tokens (there the
    // language model): its region holds the speech node, and the tokens it had queued for
    // the speech node are stale. The next answer comes from outside the region.
    let yaml = format!(
        "nodes:
  tokens: {{ node: test.tokens, interrupt: trigger.out }}
  trigger: {{ node: test.trigger }}
  texts: {{ node: test.texts }}
  tts:
    node: speech.tts
    in: {{ tokens: tokens.out, text: texts.out }}
    queue: {{ size: 512, overflow: block }}
    with: {{ voice_dir: {dir:?} }}
  audio: {{ node: test.audio, in: {{ in: tts.audio }} }}
"
    );
    let plan = Loader::new(&registry)
        .load_str(Path::new("tts-interrupt-test.yaml"), &yaml)
        .unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    let running = Graph::build(plan, &registry).unwrap().start().unwrap();

    let long = "The first thing to know is that the station is to the north. \
                Walk past the bakery and the bank. Then turn left at the fountain. \
                The platform is on the second floor, next to the lifts. \
                Trains leave every ten minutes during the day. \
                Tickets can be bought at the machines or on the train.";
    for p in word_tokens(long, Timestamp::ZERO) {
        tokens_tx.send(p).unwrap();
    }
    let first = audio_rx
        .recv_timeout(Duration::from_secs(120))
        .expect("the first audio within 2 minutes");
    let stop = Event::new("speech_start", serde_json::json!({}));
    trigger_tx.send(Packet::new(Timestamp::ZERO, stop)).unwrap();
    let next = "Goodbye for now, and have a nice day.";
    text_tx
        .send(text(Timestamp::from_secs_f64(60.0), next))
        .unwrap();
    drop((tokens_tx, trigger_tx, text_tx));
    let report = running.wait().unwrap();

    let packets: Vec<Packet> = std::iter::once(first).chain(audio_rx.try_iter()).collect();
    let secs = |epoch: u64| {
        packets
            .iter()
            .filter(|p| p.epoch() == epoch)
            .map(|p| p.get::<AudioFrame>().unwrap().frames())
            .sum::<usize>() as f64
            / 22_050.0
    };
    let (before, after) = (secs(0), secs(1));
    println!("{before:.2} s spoken before the interrupt, {after:.2} s after");
    let tts = report.node("tts").unwrap();
    assert_eq!(tts.interrupts, 1);
    let flushed = report.edge_to("tts.tokens").map_or(0, |e| e.flushed);
    println!("flushed tokens: {flushed}");
    assert!(flushed > 0, "no queued token was flushed");
    // The whole answer is about 20 s of speech; at most the phrase being made when the
    // interrupt came and the one before it are heard.
    assert!(
        before < 9.0,
        "{before} s spoken: the interrupt did not stop the answer"
    );
    assert!(after > 0.5, "the answer after the interrupt was not spoken");
    // What is heard after the interrupt is the next answer, whole and contiguous.
    let next: Vec<Packet> = packets.into_iter().filter(|p| p.epoch() == 1).collect();
    let first_sample = next[0].get::<AudioFrame>().unwrap().start_sample;
    let mut tail = Vec::new();
    for p in &next {
        let f = p.get::<AudioFrame>().unwrap();
        assert_eq!(f.start_sample, first_sample + tail.len() as u64);
        tail.extend_from_slice(&f.samples);
    }
    let heard = hear(22_050, &tail);
    assert!(
        heard.contains("goodbye") && heard.contains("day"),
        "{heard}"
    );
}
