//! Ctrl-C on the launcher: the sources stop, what was captured drains, the speech segment in
//! progress is flushed, and the run ends cleanly.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::{data, read_jsonl, root, scratch};

#[test]
fn ctrl_c_drains_and_flushes_the_segment_in_progress() {
    data("pauses.wav");
    let dir = scratch("interrupt");
    let child = Command::new(env!("CARGO_BIN_EXE_weir"))
        .current_dir(root())
        .args([
            "run",
            "graphs/segments.yaml",
            "--set",
            "input.realtime=true",
            "--set",
            "vad.padding_ms=0",
        ])
        .env("WEIR_OUT", &dir)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start weir");
    // pauses.wav has speech at 1.20-1.93, 3.13-4.23 and 5.43-7.87 s: interrupt in the third.
    std::thread::sleep(Duration::from_millis(6500));
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "exit {:?}: {err}", out.status.code());
    assert!(err.contains("stopping: draining"), "{err}");

    let segments = read_jsonl(&dir.join("segments.jsonl"));
    assert_eq!(segments.len(), 3, "{segments:?}");
    let last = &segments[2];
    let (start, end) = (
        last["start"].as_f64().unwrap(),
        last["end"].as_f64().unwrap(),
    );
    assert!(
        (start - 5.43).abs() < 0.06,
        "third segment starts at {start}"
    );
    assert!(
        end > 5.7 && end < 7.5,
        "the segment in progress was cut at the stop: ends at {end}"
    );
}
