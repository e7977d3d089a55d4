//! The voice assistant cut in two (`graphs/split/`): the device and the brain as two real
//! `weir run` processes on a free loopback port, compared with the single-process graph on the
//! same recordings.

mod common;

use std::path::Path;

use common::{free_port, require_models, scratch, stat_of, stderr, weir, Spawned};

/// The `intr` column of the `--stats` node table.
const INTR: usize = 7;

/// The tests of this file run one at a time: each starts three processes with four models,
/// and on a 2-core machine two of them at once starve each other's real-time replay.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Waits for the other tests of this file; a test that failed does not block the rest.
fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Transcripts and answers of a session log, in order.
fn texts(out: &Path) -> Vec<String> {
    common::read_jsonl(&out.join("session.jsonl"))
        .iter()
        .filter(|l| l["type"] == "text")
        .map(|l| l["text"].as_str().unwrap().to_string())
        .collect()
}

/// Names of the events in a session log, in order.
fn events(out: &Path) -> Vec<String> {
    common::read_jsonl(&out.join("session.jsonl"))
        .iter()
        .filter_map(|l| l["event"].as_str().map(str::to_string))
        .collect()
}

/// The single-process assistant on `mic_path`; returns its standard output.
fn single(out: &Path, mic_path: Option<&str>) -> String {
    let mut args = vec!["run", "graphs/voice_assistant.yaml", "--clock", "virtual"];
    let set = mic_path.map(|p| format!("mic.path={p}"));
    if let Some(set) = &set {
        args.extend(["--set", set]);
    }
    let run = weir(&args, &[("WEIR_OUT", out)]);
    assert!(run.status.success(), "{}", stderr(&run));
    String::from_utf8_lossy(&run.stdout).into_owned()
}

/// Both halves on a free port; returns (device, brain) runs, both successful.
fn split(out: &Path, mic_path: Option<&str>) -> (std::process::Output, std::process::Output) {
    let addr = format!("127.0.0.1:{}", free_port());
    let brain = Spawned::weir(
        "brain",
        &["run", "graphs/split/brain.yaml", "--stats"],
        &[("WEIR_LISTEN", addr.clone())],
    );
    let mut args = vec!["run", "graphs/split/device.yaml", "--stats"];
    let set = mic_path.map(|p| format!("mic.path={p}"));
    if let Some(set) = &set {
        args.extend(["--set", set]);
    }
    let device = Spawned::weir(
        "device",
        &args,
        &[
            ("WEIR_BRAIN", addr),
            ("WEIR_OUT", out.to_str().unwrap().to_string()),
        ],
    );
    let device = device.finish();
    let brain = brain.finish();
    assert!(device.status.success(), "device: {}", stderr(&device));
    assert!(brain.status.success(), "brain: {}", stderr(&brain));
    (device, brain)
}

#[test]
fn the_split_assistant_hears_and_answers_like_the_single_process_graph() {
    let _serial = one_at_a_time();
    require_models();
    let one = scratch("split_reference");
    let printed = single(&one, None);
    let two = scratch("split_two_processes");
    let (device, _) = split(&two, None);

    let said = texts(&one);
    assert_eq!(said.len(), 2, "one transcript, one answer: {said:?}");
    assert!(said[1].contains("Paris"), "{said:?}");
    assert_eq!(texts(&two), said, "the same transcript and answer text");
    assert_eq!(events(&two), events(&one));
    // The same lines printed: the transcript and the answer streamed token by token (two
    // printers, in either order).
    let lines = |s: &str| {
        let mut l: Vec<String> = s.lines().map(str::to_string).collect();
        l.sort();
        l
    };
    assert_eq!(
        lines(&String::from_utf8_lossy(&device.stdout)),
        lines(&printed)
    );
    // The answer is spoken on the device, with the same voice and text: the same audio.
    let (_, want) = common::read_wav(&one.join("answer.wav"));
    let (_, got) = common::read_wav(&two.join("answer.wav"));
    assert!(want.len() > 22_050, "{} samples spoken", want.len());
    assert!(want == got, "the spoken answer differs");
}

#[test]
fn a_continued_utterance_seen_on_the_device_withdraws_the_brains_speculative_work() {
    let _serial = one_at_a_time();
    require_models();
    let one = scratch("split_continued_reference");
    let input = common::continued_utterance(&one);
    let input = input.to_str().unwrap();
    single(&one, Some(input));
    let two = scratch("split_continued");
    let (device, brain) = split(&two, Some(input));

    assert_eq!(
        events(&two),
        ["speech_start", "speech_resumed", "speech_end"]
    );
    // The device's `resumed` crossed the link and interrupted the recognizer there, and
    // through it the SLM and the turn gate, which discarded what it held.
    let brain_stats = stderr(&brain);
    for node in ["asr", "slm", "turn"] {
        assert_eq!(
            stat_of(&brain_stats, node, INTR),
            1,
            "{node}: {brain_stats}"
        );
    }
    assert_eq!(stat_of(&stderr(&device), "tts", INTR), 1);
    let said = texts(&two);
    assert_eq!(
        said,
        texts(&one),
        "the whole utterance's transcript and answer only"
    );
    assert!(said[0].to_lowercase().contains("clubs"), "{said:?}");
}
