//! Echo on the live voice assistant: the virtual speaker's sound comes back into the virtual
//! microphone through a room (40 ms later, -6 dB, low-passed, two reflections), with the
//! real models and the real clock. With `audio.aec` cleaning the microphone the assistant
//! never interrupts itself, and a user talking over it still does; without it, its own
//! echo cuts its answer (which shows these tests can fail).
//! `cargo test -p weir-live --test echo`.

mod common;

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Mutex;

use common::bargein::{clip, run_with, Echo, Script, Session, LEAD_IN, RATE};
use weir_media::Token;

/// One graph at a time: each runs three models in real time.
static SERIAL: Mutex<()> = Mutex::new(());

fn room(aec: bool) -> Echo {
    Echo {
        delay_ms: 40.0,
        gain: 0.5,
        aec,
    }
}

/// The answers, in order (each starts at token index 0), as text, with whether each ran to
/// its last token.
fn answers(s: &Session) -> Vec<(String, bool)> {
    let mut out: Vec<(String, bool)> = Vec::new();
    for t in s.tokens.iter().filter_map(|p| p.get::<Token>()) {
        match out.last_mut() {
            Some(a) if t.index > 0 => {
                a.0.push_str(&t.text);
                a.1 = t.last;
            }
            _ => out.push((t.text.to_string(), t.last)),
        }
    }
    out
}

/// A question, then silence while the answer plays and echoes.
fn question_then_listen() -> Script {
    let mut script = Script::default();
    script
        .silence(LEAD_IN)
        .say(&clip("synth/question_16k.wav")) // What is the capital of France?
        .silence(0.5)
        .talk_over() // the answer has played for a moment
        .silence(12.0);
    script
}

#[test]
fn with_aec_the_assistant_never_interrupts_itself() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let _ = tracing_subscriber::fmt().with_test_writer().try_init();
    let s = run_with(&question_then_listen(), &[], Some(room(true)));
    eprintln!("{}", s.report.table());
    let answers = answers(&s);
    eprintln!("{answers:?}");
    let speaker = s.report.node("speaker").expect("speaker stats");
    assert_eq!(
        speaker.cuts,
        0,
        "no barge-in on the echo: {}",
        s.report.table()
    );
    assert_eq!(s.counters.barge_ins.load(Relaxed), 0);
    assert_eq!(
        s.counters.flushed_frames.load(Relaxed),
        0,
        "nothing flushed"
    );
    assert_eq!(answers.len(), 1, "one question, one answer: {answers:?}");
    assert!(
        answers[0].1,
        "the answer was spoken to its end: {answers:?}"
    );
    let aec = s.aec.as_ref().expect("aec counters");
    assert!(aec.blocks.load(Relaxed) > 0);
    // The reference covered the answer's time: the echo was cancelled, not passed through.
    let played = s.speaker.recorded();
    let sounding = played.iter().filter(|&&x| x != 0.0).count();
    assert!(
        sounding > RATE as usize,
        "the answer was heard: {sounding} frames"
    );
}

#[test]
fn without_aec_the_assistant_interrupts_itself_on_its_echo() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let _ = tracing_subscriber::fmt().with_test_writer().try_init();
    let s = run_with(&question_then_listen(), &[], Some(room(false)));
    eprintln!("{}", s.report.table());
    eprintln!("{:?}", answers(&s));
    let speaker = s.report.node("speaker").expect("speaker stats");
    assert!(
        speaker.cuts >= 1,
        "the echo alone cut the answer: {}",
        s.report.table()
    );
}

#[test]
fn with_aec_a_user_talking_over_the_answer_still_interrupts_it() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let _ = tracing_subscriber::fmt().with_test_writer().try_init();
    let mut script = Script::default();
    script
        .silence(LEAD_IN)
        .say(&clip("synth/command_48k.wav")) // Turn on the lights in the kitchen, please.
        .silence(0.5)
        .talk_over()
        .say(&clip("synth/question_16k.wav")) // What is the capital of France?
        .silence(12.0);
    let s = run_with(&script, &[], Some(room(true)));
    eprintln!("{}", s.report.table());
    let answers = answers(&s);
    eprintln!("{answers:?}");
    let played = s.speaker.recorded();
    let (q2_start, q2_end) = script.speech[1];
    let cut = s.cut_at(q2_start, &played);
    assert!(
        cut.was_playing,
        "the first answer was still playing when the user spoke: the echo did not cut it"
    );
    let speaker = s.report.node("speaker").expect("speaker stats");
    assert_eq!(
        speaker.cuts,
        1,
        "one barge-in, on the question: {}",
        s.report.table()
    );
    assert_eq!(answers.len(), 2, "one answer per question: {answers:?}");
    assert!(
        answers[1].1 && !answers[1].0.trim().is_empty(),
        "the interrupting question was answered to the end: {answers:?}"
    );
    assert!(
        s.sound_after(q2_end, &played) > RATE as usize / 2,
        "the second answer was spoken"
    );
}
