//! Bad audio files: clear errors naming the node and the file, no panic, nothing lost.

mod common;

use common::{data, read_wav, scratch, stderr, weir};

#[test]
fn truncated_wav_delivers_what_it_has_then_fails_clearly() {
    let dir = scratch("truncated");
    let good = std::fs::read(data("pocketsphinx/cards/001.wav")).unwrap();
    let cut = 44 + (good.len() - 44) * 6 / 10;
    let cut = cut - cut % 2 + 1; // end mid-sample
    let bad = dir.join("truncated.wav");
    std::fs::write(&bad, &good[..cut]).unwrap();
    let run = weir(
        &[
            "run",
            "graphs/resample.yaml",
            "--input",
            bad.to_str().unwrap(),
        ],
        &[("WEIR_OUT", &dir)],
    );
    let err = stderr(&run);
    assert_eq!(run.status.code(), Some(1), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(err.contains("node `input` failed"), "{err}");
    assert!(err.contains("is truncated or corrupt after"), "{err}");
    assert!(err.contains("truncated.wav"), "{err}");
    // Every whole sample that was in the file reached the output.
    let (_, samples) = read_wav(&dir.join("resampled_16k.wav"));
    assert_eq!(samples.len(), (cut - 44) / 2);
}

#[test]
fn text_file_named_wav_is_reported() {
    let dir = scratch("not_wav");
    let bad = dir.join("notes.wav");
    std::fs::write(&bad, "these are meeting notes, not audio\n").unwrap();
    let run = weir(
        &[
            "run",
            "graphs/resample.yaml",
            "--input",
            bad.to_str().unwrap(),
        ],
        &[("WEIR_OUT", &dir)],
    );
    let err = stderr(&run);
    assert_eq!(run.status.code(), Some(1), "{err}");
    assert!(err.contains("node `input` failed to open"), "{err}");
    assert!(err.contains("is not a readable WAV file"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn missing_wav_names_the_file() {
    let dir = scratch("missing_wav");
    let run = weir(
        &["run", "graphs/resample.yaml", "--input", "no/such/file.wav"],
        &[("WEIR_OUT", &dir)],
    );
    let err = stderr(&run);
    assert_eq!(run.status.code(), Some(1), "{err}");
    assert!(
        err.contains("cannot open WAV file `no/such/file.wav`"),
        "{err}"
    );
}

#[test]
fn unwritable_output_is_reported() {
    let input = data("pocketsphinx/cards/001.wav");
    let run = weir(
        &[
            "run",
            "graphs/resample.yaml",
            "--input",
            input.to_str().unwrap(),
            "--set",
            "output.path=/nonexistent/dir/x.wav",
        ],
        &[],
    );
    let err = stderr(&run);
    assert_eq!(run.status.code(), Some(1), "{err}");
    assert!(
        err.contains("node `output` failed") && err.contains("/nonexistent/dir/x.wav"),
        "{err}"
    );
}
