//! Energy VAD on a real recording with known pauses: segments where the speech is.

mod common;

use common::{data, read_jsonl, scratch, stderr, weir};

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

fn segments(padding_ms: u32, dir: &std::path::Path) -> Vec<(f64, f64)> {
    let pad = format!("vad.padding_ms={padding_ms}");
    let run = weir(
        &["run", "graphs/segments.yaml", "--set", &pad],
        &[("WEIR_OUT", dir)],
    );
    assert!(run.status.success(), "{}", stderr(&run));
    read_jsonl(&dir.join("segments.jsonl"))
        .iter()
        .map(|s| {
            assert_eq!(s["type"], "segment");
            (s["start"].as_f64().unwrap(), s["end"].as_f64().unwrap())
        })
        .collect()
}

#[test]
fn segments_line_up_with_known_speech_within_50ms() {
    let want = reference();
    let got = segments(0, &scratch("segments_tight"));
    assert_eq!(got.len(), want.len(), "segments {got:?}, speech {want:?}");
    for ((gs, ge), (ws, we)) in got.iter().zip(&want) {
        assert!((gs - ws).abs() <= 0.05, "start {gs:.3} vs {ws:.3}");
        assert!((ge - we).abs() <= 0.05, "end {ge:.3} vs {we:.3}");
    }
}

#[test]
fn padding_widens_segments_and_keeps_them_apart() {
    let want = reference();
    let got = segments(200, &scratch("segments_padded"));
    assert_eq!(got.len(), want.len());
    for ((gs, ge), (ws, we)) in got.iter().zip(&want) {
        assert!(
            (gs - (ws - 0.2)).abs() <= 0.05,
            "padded start {gs:.3} vs {ws:.3}"
        );
        assert!(
            (ge - (we + 0.2)).abs() <= 0.05,
            "padded end {ge:.3} vs {we:.3}"
        );
    }
    assert!(
        got.windows(2).all(|w| w[0].1 <= w[1].0),
        "overlapping segments {got:?}"
    );
}

#[test]
fn segment_samples_match_their_times() {
    let dir = scratch("segments_samples");
    let run = weir(&["run", "graphs/segments.yaml"], &[("WEIR_OUT", &dir)]);
    assert!(run.status.success(), "{}", stderr(&run));
    for s in read_jsonl(&dir.join("segments.jsonl")) {
        let start = s["start_sample"].as_u64().unwrap() as f64 / 16000.0;
        let len = s["samples"].as_u64().unwrap() as f64 / 16000.0;
        assert!((s["start"].as_f64().unwrap() - start).abs() < 1e-6);
        assert!((s["end"].as_f64().unwrap() - (start + len)).abs() < 1e-6);
    }
}
