//! Service signals on the real launcher: SIGTERM and SIGHUP drain like Ctrl-C and every sink
//! finalizes its file; a second signal ends the run at once, files still finalized.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{data, read_jsonl, root, scratch};

fn start(graph: &str, out: &Path, extra: &[&str]) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_weir"))
        .current_dir(root())
        .args(["run", graph])
        .args(extra)
        .env("WEIR_OUT", out)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start weir")
}

fn signal(child: &std::process::Child, sig: &str) {
    let status = Command::new("kill")
        .args([format!("-{sig}"), child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn sigterm_and_sighup_drain_and_write_complete_json_lines() {
    data("pauses.wav");
    for sig in ["TERM", "HUP"] {
        let dir = scratch(&format!("signal_{sig}"));
        let child = start(
            "graphs/segments.yaml",
            &dir,
            &["--set", "input.realtime=true", "--set", "vad.padding_ms=0"],
        );
        // Speech at 1.20-1.93, 3.13-4.23 and 5.43-7.87 s: stop in the third.
        std::thread::sleep(Duration::from_millis(6500));
        signal(&child, sig);
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "SIG{sig}: exit {:?}: {err}",
            out.status.code()
        );
        assert!(err.contains("stopping: draining"), "{err}");
        let segments = read_jsonl(&dir.join("segments.jsonl"));
        assert_eq!(segments.len(), 3, "SIG{sig}: {segments:?}");
        let end = segments[2]["end"].as_f64().unwrap();
        assert!(
            end > 5.7 && end < 7.5,
            "SIG{sig}: cut at the stop, ends at {end}"
        );
    }
}

#[test]
fn sigterm_finalizes_the_wav_file_being_written() {
    let dir = scratch("signal_wav");
    let input = data("pauses.wav");
    let child = start(
        "graphs/resample.yaml",
        &dir,
        &[
            "--input",
            input.to_str().unwrap(),
            "--set",
            "input.realtime=true",
        ],
    );
    std::thread::sleep(Duration::from_millis(2500));
    signal(&child, "TERM");
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "exit {:?}: {err}", out.status.code());
    let wav = dir.join("resampled_16k.wav");
    let reader = hound::WavReader::open(&wav).expect("the WAV file is readable");
    let secs = f64::from(reader.duration()) / f64::from(reader.spec().sample_rate);
    assert!(
        (1.5..4.0).contains(&secs),
        "the file holds what was captured before the stop: {secs:.2} s"
    );
    let samples = reader.into_samples::<i16>().count() as f64;
    assert!(
        (samples / 16_000.0 - secs).abs() < 1e-3,
        "header and data agree"
    );
}

/// Twenty questions typed at once keep the drain busy: the first signal stops reading them,
/// but those already queued would still be answered. Returns the launcher's exit and the
/// seconds it took to end after the last signal.
fn stop_a_long_drain(signals: usize, extra: &[&str]) -> (std::process::Output, f64) {
    use std::io::Write;
    let dir = scratch(&format!("signal_drain_{signals}"));
    use std::io::BufRead;
    let mut child = Command::new(env!("CARGO_BIN_EXE_weir"))
        .current_dir(root())
        .args(["run", "graphs/chat.yaml"])
        .args(extra)
        .env("WEIR_OUT", &dir)
        .env("RUST_LOG", "warn,weir_engine::clock=info")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start weir");
    let mut stdin = child.stdin.take().unwrap();
    for i in 0..20 {
        writeln!(stdin, "Question {i}: name three rivers of Europe.").unwrap();
    }
    // The signals come once the model has loaded (a loaded machine may take many seconds)
    // and an answer is on its way; standard input stays open, so the source is blocked on
    // it when they come.
    let (started_tx, started) = std::sync::mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if line.contains("graph clock started") {
                let _ = started_tx.send(());
            }
            text.push_str(&line);
            text.push('\n');
        }
        text
    });
    started
        .recv_timeout(Duration::from_secs(120))
        .expect("the graph started");
    std::thread::sleep(Duration::from_millis(1500));
    for _ in 0..signals {
        signal(&child, "TERM");
        std::thread::sleep(Duration::from_millis(300));
    }
    let t0 = std::time::Instant::now();
    let mut out = child.wait_with_output().unwrap();
    let secs = t0.elapsed().as_secs_f64();
    drop(stdin);
    out.stderr = reader.join().unwrap().into_bytes();
    (out, secs)
}

#[test]
fn a_second_signal_or_the_drain_deadline_ends_a_long_drain_at_once() {
    let (out, secs) = stop_a_long_drain(2, &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "exit {:?}: {err}", out.status.code());
    assert!(err.contains("stopping: draining"), "{err}");
    assert!(err.contains("ending now"), "{err}");
    assert!(
        secs < 5.0,
        "the run went on for {secs:.1} s after the second signal"
    );

    let (out, secs) = stop_a_long_drain(1, &["--drain-timeout", "1"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "exit {:?}: {err}", out.status.code());
    assert!(err.contains("did not drain within 1.0 s"), "{err}");
    assert!(
        secs < 6.0,
        "the run went on for {secs:.1} s after the signal"
    );
}
