//! Silero VAD (`speech.vad`) on real recordings: segments where the speech is, and a clear
//! error for audio at the wrong rate.

mod common;

use common::{data, read_jsonl, registry, root, run_graph, run_yaml, scratch};

/// The model file; fails with the fetch command when it is missing.
fn model() -> String {
    let path = root().join("models/silero_vad_16k.onnx");
    assert!(
        path.is_file(),
        "model `{}` is missing: run `bash tools/fetch-models.sh` (or `bash tools/models/silero_vad.sh`)",
        path.display()
    );
    path.display().to_string()
}

/// Speech positions in data/pauses.wav, known from how the file was built.
fn reference() -> Vec<(f64, f64)> {
    let text = std::fs::read_to_string(data("pauses.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|c| (c["start"].as_f64().unwrap(), c["end"].as_f64().unwrap()))
        .collect()
}

/// Runs graphs/vad_segments.yaml with `padding_ms`; returns the segments' (start, end).
fn segments(name: &str, padding_ms: u32) -> Vec<(f64, f64)> {
    let out = scratch(name).join("segments.jsonl");
    let sets = [
        format!("vad.model={}", model()),
        format!("vad.padding_ms={padding_ms}"),
        format!("input.path={}", data("pauses.wav").display()),
        format!("segments.path={}", out.display()),
        "show.format=json".to_string(),
    ];
    run_graph(&registry(), "graphs/vad_segments.yaml", &sets).expect("vad_segments.yaml runs");
    read_jsonl(&out)
        .iter()
        .map(|s| {
            assert_eq!(s["type"], "segment");
            let (start, end) = (s["start"].as_f64().unwrap(), s["end"].as_f64().unwrap());
            let len = s["samples"].as_u64().unwrap() as f64 / 16000.0;
            assert!(
                (end - start - len).abs() < 1e-6,
                "segment times match its samples"
            );
            (start, end)
        })
        .collect()
}

#[test]
fn segments_line_up_with_known_speech_within_50ms() {
    let want = reference();
    let got = segments("vad_tight", 0);
    assert_eq!(got.len(), want.len(), "segments {got:?}, speech {want:?}");
    for ((gs, ge), (ws, we)) in got.iter().zip(&want) {
        assert!(
            (gs - ws).abs() <= 0.05,
            "start {gs:.3} vs {ws:.3} (all: {got:?})"
        );
        assert!(
            (ge - we).abs() <= 0.05,
            "end {ge:.3} vs {we:.3} (all: {got:?})"
        );
    }
}

#[test]
fn padding_widens_segments_and_keeps_them_apart() {
    let want = reference();
    let got = segments("vad_padded", 200);
    assert_eq!(got.len(), want.len(), "segments {got:?}, speech {want:?}");
    for ((gs, ge), (ws, we)) in got.iter().zip(&want) {
        assert!(
            (gs - (ws - 0.2)).abs() <= 0.06,
            "padded start {gs:.3} vs {ws:.3}"
        );
        assert!(
            (ge - (we + 0.2)).abs() <= 0.06,
            "padded end {ge:.3} vs {we:.3}"
        );
    }
    assert!(
        got.windows(2).all(|w| w[0].1 <= w[1].0),
        "overlapping segments {got:?}"
    );
}

#[test]
fn wrong_rate_input_is_a_clear_error() {
    let yaml = format!(
        "nodes:
  input: {{ node: audio.wav_file, with: {{ path: '{wav}' }} }}
  vad: {{ node: speech.vad, in: {{ audio: input.audio }}, with: {{ model: '{model}' }} }}
  out: {{ node: text.print, in: {{ in: vad.segment }} }}
",
        wav = data("synth/command_48k.wav").display(),
        model = model(),
    );
    let err = run_yaml(&registry(), &yaml)
        .expect_err("48 kHz input must fail")
        .to_string();
    assert!(err.contains("`vad`"), "{err}");
    assert!(err.contains("48000 Hz"), "{err}");
    assert!(err.contains("16000 Hz"), "{err}");
    assert!(err.contains("audio.resample"), "{err}");
}

#[test]
fn missing_model_names_the_fetch_command() {
    let yaml = format!(
        "nodes:
  input: {{ node: audio.wav_file, with: {{ path: '{wav}' }} }}
  vad: {{ node: speech.vad, in: {{ audio: input.audio }}, with: {{ model: no/such/vad.onnx }} }}
  out: {{ node: text.print, in: {{ in: vad.segment }} }}
",
        wav = data("pauses.wav").display(),
    );
    let err = run_yaml(&registry(), &yaml)
        .expect_err("a missing model must fail")
        .to_string();
    assert!(err.contains("no/such/vad.onnx"), "{err}");
    assert!(err.contains("bash tools/fetch-models.sh"), "{err}");
}
