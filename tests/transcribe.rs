//! Whisper (`speech.whisper`) behind Silero VAD on real recordings: graphs/transcribe.yaml
//! over the 5 LibriVox and 5 "cards" recordings of pocketsphinx-testdata, scored by word
//! error rate against their reference transcripts.

mod common;

use std::path::{Path, PathBuf};

use common::{data, read_jsonl, read_wav, registry, root, run_graph, scratch};
use weir_ml::whisper::{Transcriber, TranscriberOptions};

const LIBRIVOX: [&str; 5] = ["0870", "0880", "0890", "0920", "0930"];
const GAP_S: f64 = 1.0;

/// The model directory; fails with the fetch command when a file is missing.
fn models() -> PathBuf {
    let dir = root().join("models/whisper-tiny.en");
    for f in [
        "encoder.onnx",
        "cross_kv.onnx",
        "decoder.onnx",
        "tokens.txt",
    ] {
        assert!(
            dir.join(f).is_file(),
            "model `{}` is missing: run `bash tools/fetch-models.sh` (or `bash tools/models/whisper.sh`)",
            dir.join(f).display()
        );
    }
    let vad = root().join("models/silero_vad_16k.onnx");
    assert!(
        vad.is_file(),
        "model `{}` is missing: run `bash tools/fetch-models.sh` (or `bash tools/models/silero_vad.sh`)",
        vad.display()
    );
    dir
}

/// The 10 recordings with their reference transcripts, in a fixed order.
fn recordings() -> Vec<(PathBuf, String)> {
    let mut refs = Vec::new();
    let librivox = std::fs::read_to_string(data("pocketsphinx/librivox/transcription")).unwrap();
    let cards = std::fs::read_to_string(data("pocketsphinx/cards/cards.transcription")).unwrap();
    let parse = |text: &str| -> Vec<(String, String)> {
        text.lines()
            .filter_map(|l| {
                let (words, id) = l.trim().rsplit_once('(')?;
                let words = words
                    .trim()
                    .trim_start_matches("<s>")
                    .trim_end_matches("</s>");
                Some((
                    id.trim_end_matches(')').to_string(),
                    words.trim().to_string(),
                ))
            })
            .collect()
    };
    let lib = parse(&librivox);
    for n in LIBRIVOX {
        let id = format!("sense_and_sensibility_01_austen_64kb-{n}");
        let words = lib
            .iter()
            .find(|(i, _)| *i == id)
            .expect("reference")
            .1
            .clone();
        refs.push((data(&format!("pocketsphinx/librivox/{id}.wav")), words));
    }
    for (id, words) in parse(&cards) {
        refs.push((data(&format!("pocketsphinx/cards/{id}.wav")), words));
    }
    assert_eq!(refs.len(), 10, "expected 5 librivox and 5 cards recordings");
    refs
}

/// Lower case, no punctuation, "mr." as "mister", hyphens as spaces, digits as words.
fn words(text: &str) -> Vec<String> {
    const NUMBERS: [&str; 13] = [
        "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
        "eleven", "twelve",
    ];
    let text = text
        .to_lowercase()
        .replace("mr.", "mister")
        .replace('-', " ");
    let cleaned: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '\'' {
                c
            } else {
                ' '
            }
        })
        .collect();
    cleaned
        .split_whitespace()
        .map(|w| match w.parse::<usize>() {
            Ok(n) if n < NUMBERS.len() => NUMBERS[n].to_string(),
            _ => w.to_string(),
        })
        .collect()
}

/// Word-level edit distance.
fn edits(reference: &[String], hypothesis: &[String]) -> usize {
    let mut d: Vec<usize> = (0..=hypothesis.len()).collect();
    for (i, r) in reference.iter().enumerate() {
        let mut prev = d[0];
        d[0] = i + 1;
        for (j, h) in hypothesis.iter().enumerate() {
            let cur = (d[j + 1] + 1).min(d[j] + 1).min(prev + usize::from(r != h));
            prev = d[j + 1];
            d[j + 1] = cur;
        }
    }
    d[hypothesis.len()]
}

/// Joins the recordings with `gap_s` of silence (and the same before the first); returns the
/// file and each recording's (start, end) in seconds.
fn concatenate(files: &[PathBuf], gap_s: f64, out: &Path) -> (Vec<f32>, Vec<(f64, f64)>) {
    let gap = vec![0.0f32; (gap_s * 16000.0) as usize];
    let mut all = gap.clone();
    let mut spans = Vec::new();
    for f in files {
        let (spec, samples) = read_wav(f);
        assert_eq!(
            (spec.sample_rate, spec.channels),
            (16000, 1),
            "{}",
            f.display()
        );
        let start = all.len() as f64 / 16000.0;
        all.extend(&samples);
        spans.push((start, all.len() as f64 / 16000.0));
        all.extend(&gap);
    }
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 16000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(out, spec).unwrap();
    for s in &all {
        w.write_sample((s * 32767.0).round().clamp(-32768.0, 32767.0) as i16)
            .unwrap();
    }
    w.finalize().unwrap();
    (all, spans)
}

#[test]
fn transcribe_graph_word_error_rate_is_below_15_percent() {
    let model_dir = models();
    let recs = recordings();
    let dir = scratch("transcribe_wer");
    let wav = dir.join("all.wav");
    let files: Vec<PathBuf> = recs.iter().map(|(f, _)| f.clone()).collect();
    let (_, spans) = concatenate(&files, GAP_S, &wav);
    let out = dir.join("transcript.jsonl");
    let sets = [
        format!("input.path={}", wav.display()),
        format!("asr.model_dir={}", model_dir.display()),
        format!(
            "vad.model={}",
            root().join("models/silero_vad_16k.onnx").display()
        ),
        format!("transcript.path={}", out.display()),
    ];
    run_graph(&registry(), "graphs/transcribe.yaml", &sets).expect("transcribe.yaml runs");

    // Each text goes to the recording its segment's middle falls in.
    let mut hyps = vec![String::new(); recs.len()];
    let mut last_t = -1.0;
    for line in read_jsonl(&out) {
        assert_eq!(line["type"], "text", "{line}");
        let (t, start, end) = (
            line["t"].as_f64().unwrap(),
            line["start"].as_f64().unwrap(),
            line["end"].as_f64().unwrap(),
        );
        assert!(
            start < end && (t - start).abs() < 1e-9 && t >= last_t,
            "{line}"
        );
        last_t = t;
        let mid = (start + end) / 2.0;
        let i = spans
            .iter()
            .position(|(s, e)| mid >= s - GAP_S / 2.0 && mid < e + GAP_S / 2.0)
            .unwrap_or_else(|| panic!("segment {start:.2}..{end:.2} s is in no recording"));
        hyps[i].push(' ');
        hyps[i].push_str(line["text"].as_str().unwrap());
    }

    let (mut errors, mut total) = (0, 0);
    let mut report = String::new();
    for ((file, reference), hyp) in recs.iter().zip(&hyps) {
        let (r, h) = (words(reference), words(hyp));
        let e = edits(&r, &h);
        errors += e;
        total += r.len();
        let name = file.file_name().unwrap().to_string_lossy();
        report += &format!(
            "{name}: {e}/{} errors\n  ref: {reference}\n  hyp: {}\n",
            r.len(),
            hyp.trim()
        );
    }
    let wer = errors as f64 / total as f64;
    println!("{report}WER {errors}/{total} = {:.1}%", 100.0 * wer);
    assert!(
        wer < 0.15,
        "WER {:.1}% is not below 15%:\n{report}",
        100.0 * wer
    );
}

#[test]
fn segments_longer_than_30s_are_transcribed_in_pieces() {
    let model_dir = models();
    let recs = recordings();
    let dir = scratch("transcribe_long");
    let files: Vec<PathBuf> = recs.iter().map(|(f, _)| f.clone()).collect();
    let (samples, _) = concatenate(&files, 0.25, &dir.join("long.wav"));
    assert!(
        samples.len() > 480_000,
        "the test needs more than 30 s of audio"
    );
    let t = Transcriber::load(&model_dir, &TranscriberOptions::default()).expect("models load");
    let got = t.transcribe(&samples).expect("transcribes");
    // Two pieces, each padded to at least 15 s: more than one 30 s window in total.
    assert!(got.timings.window_samples > 480_000, "{:?}", got.timings);
    let reference: Vec<String> = recs.iter().flat_map(|(_, r)| words(r)).collect();
    let e = edits(&reference, &words(&got.text));
    let wer = e as f64 / reference.len() as f64;
    println!(
        "{} s: {}\nWER {:.1}%",
        samples.len() / 16000,
        got.text,
        100.0 * wer
    );
    assert!(wer < 0.25, "WER {:.1}%: {}", 100.0 * wer, got.text);
}
