//! The graph clock through the launcher: a paced replay on the virtual clock gives exactly
//! the output of an unpaced run without waiting for the recording, and a live graph replayed
//! from a recording twice on the virtual clock gives byte-identical output.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use common::{data, read_wav, root, scratch, stderr};

/// Writes `path` as `times` copies of a 16-bit mono recording back to back.
fn repeat_wav(src: &Path, times: usize, path: &Path) -> f64 {
    let (spec, samples) = read_wav(src);
    assert_eq!(spec.channels, 1);
    let out_spec = hound::WavSpec {
        channels: 1,
        sample_rate: spec.sample_rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, out_spec).unwrap();
    for _ in 0..times {
        for s in &samples {
            w.write_sample((s * 32767.0).round() as i16).unwrap();
        }
    }
    w.finalize().unwrap();
    (samples.len() * times) as f64 / f64::from(spec.sample_rate)
}

fn weir(args: &[&str], out: &Path) -> (std::process::Output, f64) {
    let t0 = Instant::now();
    let output = Command::new(env!("CARGO_BIN_EXE_weir"))
        .current_dir(root())
        .args(args)
        .env("WEIR_OUT", out)
        .output()
        .expect("run weir");
    (output, t0.elapsed().as_secs_f64())
}

#[test]
fn a_paced_replay_on_the_virtual_clock_equals_the_unpaced_run_and_does_not_wait() {
    let dir = scratch("clock_segments");
    let long = dir.join("long.wav");
    let duration = repeat_wav(&data("pauses.wav"), 6, &long);
    let long = long.to_str().unwrap();
    let (paced_dir, fast_dir) = (dir.join("paced"), dir.join("fast"));
    std::fs::create_dir_all(&paced_dir).unwrap();
    std::fs::create_dir_all(&fast_dir).unwrap();
    let (paced, paced_secs) = weir(
        &[
            "run",
            "graphs/segments.yaml",
            "--input",
            long,
            "--set",
            "input.realtime=true",
            "--clock",
            "virtual",
        ],
        &paced_dir,
    );
    assert!(paced.status.success(), "{}", stderr(&paced));
    let (fast, _) = weir(&["run", "graphs/segments.yaml", "--input", long], &fast_dir);
    assert!(fast.status.success(), "{}", stderr(&fast));
    let a = std::fs::read(paced_dir.join("segments.jsonl")).unwrap();
    let b = std::fs::read(fast_dir.join("segments.jsonl")).unwrap();
    assert_eq!(
        a.iter().filter(|&&c| c == b'\n').count(),
        18,
        "3 segments x 6"
    );
    assert_eq!(
        a, b,
        "segments differ between the paced virtual run and the unpaced run"
    );
    assert_eq!(paced.stdout, fast.stdout, "printed output differs");
    eprintln!(
        "{duration:.1} s of paced audio replayed in {paced_secs:.2} s ({:.0}x real time)",
        duration / paced_secs
    );
    assert!(
        paced_secs < duration / 2.0,
        "the virtual clock waited like the real one: {paced_secs:.1} s for {duration:.1} s"
    );
}

#[test]
fn a_live_graph_replayed_twice_on_the_virtual_clock_gives_identical_output() {
    let dir = scratch("clock_golden");
    let args = [
        "run",
        "graphs/voice_assistant_live.yaml",
        "--input",
        "data/pauses.wav",
        "--clock",
        "virtual",
        "--set",
        "slm.max_tokens=24",
    ];
    let (first, _) = weir(&args, &dir);
    assert!(first.status.success(), "{}", stderr(&first));
    let (second, _) = weir(&args, &dir);
    assert!(second.status.success(), "{}", stderr(&second));
    let text = String::from_utf8_lossy(&first.stdout);
    assert!(
        text.lines().filter(|l| !l.trim().is_empty()).count() >= 3,
        "three utterances were answered:\n{text}"
    );
    assert_eq!(
        first.stdout,
        second.stdout,
        "the replays differ:\n--- first\n{text}\n--- second\n{}",
        String::from_utf8_lossy(&second.stdout)
    );
}
