//! The voice assistant cut in two (`graphs/split/`): the device and the brain as two real
//! `weir run` processes on a free loopback port, compared with the single-process graph on the
//! same recordings.

mod common;

use std::path::Path;

use common::{free_port, lost_of, require_models, scratch, stat_of, stderr, weir, Spawned};

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

/// Three questions in one 16 kHz recording, at 0 s, 10.08 s and 22.08 s: "What is the
/// capital of France?", "seven of clubs" (cards/003), the first question again; 1.5 s of
/// silence after the last. Offsets are whole multiples of the VAD's window and the frame.
fn three_questions(dir: &Path) -> std::path::PathBuf {
    let (_, question) = common::read_wav(&common::data("synth/question_16k.wav"));
    let (_, cards) = common::read_wav(&common::data("pocketsphinx/cards/003.wav"));
    let mut samples = vec![0.0f32; 353_280 + question.len() + 24_000];
    samples[..question.len()].copy_from_slice(&question);
    samples[161_280..161_280 + cards.len()].copy_from_slice(&cards);
    samples[353_280..353_280 + question.len()].copy_from_slice(&question);
    let path = dir.join("three_questions.wav");
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 16_000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(&path, spec).unwrap();
    for s in samples {
        w.write_sample((s * 32767.0) as i16).unwrap();
    }
    w.finalize().unwrap();
    path
}

/// The device graph replaying `input` at its pace, connected to the brain at `addr`,
/// serving metrics on `metrics`; with no brain it drops at once (counted), so what a dead
/// brain missed is exact.
fn three_question_device(out: &Path, input: &Path, addr: &str, metrics: &str) -> Spawned {
    let mic = format!("mic.path={}", input.display());
    Spawned::weir(
        "device",
        &[
            "run",
            "graphs/split/device.yaml",
            "--stats",
            "--metrics",
            metrics,
            "--set",
            &mic,
            "--set",
            "mic.realtime=true",
            "--set",
            "speech_up.link_wait_ms=0",
            "--set",
            "events_up.link_wait_ms=0",
        ],
        &[
            ("WEIR_BRAIN", addr.to_string()),
            ("WEIR_OUT", out.to_str().unwrap().to_string()),
        ],
    )
}

/// Every packet the device published (`speech_up`, `events_up`) reached the first brain
/// (`first_got`, read before it was killed), the second (`brain_log`'s stats) or was
/// dropped and counted by the device (`device_log`'s `lost`).
fn assert_every_packet_accounted(device_log: &str, brain_log: &str, first_got: [u64; 2]) {
    let second_got = [
        stat_of(brain_log, "speech", 3),
        stat_of(brain_log, "events", 3),
    ];
    for (i, node) in ["speech_up", "events_up"].iter().enumerate() {
        let sent = stat_of(device_log, node, 2);
        let dropped = lost_of(device_log, node);
        assert!(dropped > 0, "{node}: the second question was dropped");
        assert_eq!(
            sent,
            first_got[i] + dropped + second_got[i],
            "{node}: {sent} published = {} to the first brain + {dropped} dropped + {} to the second",
            first_got[i],
            second_got[i]
        );
    }
    assert_eq!(
        lost_of(device_log, "events_up"),
        2,
        "the second question's start and end"
    );
    assert_eq!((first_got[1], second_got[1]), (2, 2));
}

#[test]
fn a_brain_killed_mid_run_is_replaced_and_the_device_counts_what_it_never_got() {
    let _serial = one_at_a_time();
    require_models();
    let out = scratch("split_brain_restart");
    let input = three_questions(&out);
    let addr = format!("127.0.0.1:{}", free_port());
    let (brain_metrics, device_metrics) = (
        format!("127.0.0.1:{}", free_port()),
        format!("127.0.0.1:{}", free_port()),
    );
    let brain = |what: &str, metrics: &str| {
        Spawned::weir(
            what,
            &[
                "run",
                "graphs/split/brain.yaml",
                "--stats",
                "--metrics",
                metrics,
            ],
            &[("WEIR_LISTEN", addr.clone())],
        )
    };
    let first = brain("first brain", &brain_metrics);
    let device = three_question_device(&out, &input, &addr, &device_metrics);
    let device_stat = |name: &str, node: &str, kind: &str| {
        common::metric(&device_metrics, &common::node_series(name, node, kind))
    };
    let events_in = || device_stat("weir_node_packets_in_total", "events_up", "net.publish");
    common::wait_until(120, "the first answer never reached the device", || {
        device_stat(
            "weir_node_packets_out_total",
            "answer_text",
            "net.subscribe_text",
        )
        .is_some_and(|n| n >= 1.0)
    });
    assert_eq!(
        events_in(),
        Some(2.0),
        "the first brain answered after the second question began (too slow for this test)"
    );
    // The dead brain's account, read just before the kill (between questions: nothing in
    // flight).
    let got = |node: &str, kind: &str| {
        common::metric(
            &brain_metrics,
            &common::node_series("weir_node_packets_out_total", node, kind),
        )
        .expect("the first brain's metrics") as u64
    };
    let first_got = [
        got("speech", "net.subscribe"),
        got("events", "net.subscribe_event"),
    ];
    first.kill();
    // The second question is spoken with no brain; the new one starts after it.
    common::wait_until(60, "the second question never ended", || {
        events_in().is_some_and(|n| n >= 4.0)
    });
    let second = brain("second brain", &brain_metrics);
    let device = device.finish();
    let second = second.finish();
    let (device_log, brain_log) = (stderr(&device), stderr(&second));
    assert!(device.status.success(), "device: {device_log}");
    assert!(second.status.success(), "brain: {brain_log}");

    // Heard and answered: the first question by the first brain, the third by the second.
    let said = texts(&out);
    assert_eq!(said.len(), 4, "two transcripts, two answers: {said:?}");
    // Whisper tiny hears the 16 kHz recording as "What is the capital and friends?" (the
    // single-process test replays the 44.1 kHz one): what matters is that the new brain, with
    // a fresh conversation, hears and answers the same question as the first one did.
    assert!(said[0].contains("What is the capital"), "{said:?}");
    assert_eq!(
        said[2], said[0],
        "the same question, heard by the new brain"
    );
    assert!(!said[1].is_empty(), "{said:?}");
    assert_eq!(said[3], said[1], "and answered as the first brain did");
    assert!(
        !said.iter().any(|s| s.to_lowercase().contains("clubs")),
        "the question asked while no brain ran is never answered: {said:?}"
    );
    assert_eq!(events(&out).len(), 6, "the device heard all three");

    assert_every_packet_accounted(&device_log, &brain_log, first_got);
    // Nothing the brains sent was lost; the new brain's streams are restarts, not gaps.
    for node in ["transcript", "tokens", "answer_text"] {
        assert_eq!(lost_of(&device_log, node), 0, "{node}: {device_log}");
    }
    for said in [
        "no subscriber any more",
        "the publisher is gone",
        "a subscriber is back: publishing again",
        "a restarted publisher",
    ] {
        assert!(
            device_log.contains(said),
            "the device reports `{said}`: {device_log}"
        );
    }
}
