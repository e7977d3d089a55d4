//! `speech.vad` and `speech.whisper` through the engine's node harness, with the real models
//! and recordings (`bash tools/fetch-models.sh`, `bash tools/fetch-data.sh`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use weir_engine::testing::NodeRunner;
use weir_engine::{Packet, Timestamp};
use weir_media::{AudioFrame, Event, SpeechSegment, Text};
use weir_ml::whisper::{Transcriber, TranscriberOptions, RATE};

fn root(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel)
}

/// 16 kHz mono samples of a recording of `data/`.
fn recording(rel: &str) -> Vec<f32> {
    let path = root(rel);
    let (spec, samples) = weir_nodes::audio::wav_file::read_wav(&path)
        .unwrap_or_else(|e| panic!("{e} (fetch the data with `bash tools/fetch-data.sh`)"));
    assert_eq!((spec.sample_rate, spec.channels), (16_000, 1), "{rel}");
    samples
}

fn whisper_dir() -> String {
    root("models/whisper-tiny.en")
        .to_string_lossy()
        .into_owned()
}

fn segment(rate: u32, start_sample: u64, samples: Vec<f32>) -> Packet {
    let seg = SpeechSegment {
        rate,
        start_sample,
        samples: Arc::from(samples),
    };
    Packet::new(seg.start(), seg)
}

#[test]
fn vad_sends_segments_and_speech_starts_on_their_own_port() {
    let audio = recording("data/pauses.wav");
    let frames = audio.chunks(320).scan(0u64, |pos, chunk| {
        let frame = AudioFrame {
            rate: 16_000,
            channels: 1,
            start_sample: *pos,
            samples: Arc::from(chunk),
        };
        *pos = frame.end_sample();
        Some(Packet::new(frame.timestamp(), frame))
    });
    let out = NodeRunner::new(weir_ml::vad::kind())
        .option(
            "model",
            root("models/silero_vad_16k.onnx")
                .to_string_lossy()
                .into_owned(),
        )
        .feed("audio", frames)
        .run()
        .unwrap();
    // data/pauses.json: three utterances, at 1.2 s, 3.13 s and 5.43 s.
    let segments = out.values::<SpeechSegment>("segment");
    assert_eq!(segments.len(), 3, "{segments:?}");
    let events = out.packets("events");
    let names: Vec<&str> = events
        .iter()
        .map(|p| &*p.get::<Event>().unwrap().name)
        .collect();
    assert_eq!(
        names,
        [
            "speech_start",
            "speech_end",
            "speech_start",
            "speech_end",
            "speech_start",
            "speech_end"
        ]
    );
    let starts: Vec<Timestamp> = events
        .iter()
        .filter(|p| &*p.get::<Event>().unwrap().name == "speech_start")
        .map(|p| p.timestamp)
        .collect();
    let interrupts: Vec<Timestamp> = out
        .packets("speech_start")
        .iter()
        .map(|p| p.timestamp)
        .collect();
    assert_eq!(interrupts, starts);
    for (start, expected) in starts.iter().zip([1.2, 3.1332, 5.4341]) {
        assert!(
            (start.as_secs_f64() - expected).abs() < 0.3,
            "speech start at {start}, expected about {expected} s"
        );
    }
}

#[test]
fn whisper_skips_unusable_segments_and_transcribes_the_rest() {
    let speech = recording("data/synth/question_16k.wav");
    // A 35 s segment: the question, 30 s of silence, the question again (two 17.5 s pieces).
    let mut long = speech.clone();
    long.resize(long.len() + 30 * RATE as usize, 0.0);
    long.extend_from_slice(&speech);
    let long_start = 10 * u64::from(RATE);
    let out = NodeRunner::new(weir_ml::whisper::kind())
        .option("model_dir", whisper_dir())
        .feed(
            "segment",
            [
                // 8 kHz: skipped with a warning (it used to end the run).
                segment(8_000, 0, speech.clone()),
                // Non-finite samples: skipped.
                segment(RATE, u64::from(RATE), vec![f32::NAN; 8_000]),
                segment(RATE, 2 * u64::from(RATE), speech.clone()),
                segment(RATE, long_start, long.clone()),
            ],
        )
        .run()
        .unwrap();
    let texts = out.packets("text");
    assert_eq!(texts.len(), 2, "{texts:?}");
    let first = texts[0].get::<Text>().unwrap();
    assert_eq!(texts[0].timestamp, Timestamp::from_secs_f64(2.0));
    assert!(!first.text.is_empty());
    let second = texts[1].get::<Text>().unwrap();
    assert_eq!(texts[1].timestamp, Timestamp::from_secs_f64(10.0));
    assert_eq!(
        second.end,
        Timestamp::from_samples(long_start + long.len() as u64, RATE)
    );
    // Both pieces are transcribed: the question appears twice.
    println!("{:?} / {:?}", first.text, second.text);
    assert!(
        second.text.len() > first.text.len(),
        "{:?} vs {:?}",
        second.text,
        first.text
    );
}

#[test]
fn whisper_stops_between_decoder_steps() {
    let speech = recording("data/synth/question_16k.wav");
    let t = Transcriber::load(
        root("models/whisper-tiny.en"),
        &TranscriberOptions::default(),
    )
    .expect("models load");
    let whole = t.transcribe(&speech).unwrap();
    assert!(!whole.stopped);
    assert!(whole.tokens.len() > 3, "{whole:?}");
    let mut checks = 0;
    let cut = t
        .transcribe_until(&speech, &mut || {
            checks += 1;
            // The first check is before the piece, the next ones before each decoder step.
            checks > 4
        })
        .unwrap();
    assert!(cut.stopped);
    assert_eq!(cut.timings.decoder_calls, 3);
    assert_eq!(cut.tokens, whole.tokens[..3]);
    let none = t.transcribe_until(&speech, &mut || true).unwrap();
    assert!(none.stopped && none.tokens.is_empty() && none.timings.encoder.is_zero());
}
