//! Barge-in on the live voice assistant, on the virtual microphone and speaker with the real
//! models and the real clock: a spoken question is answered aloud, the user talks over the
//! answer, the speaker goes silent, and the interrupting question is answered in turn.
//! `cargo test -p weir-live --test barge_in`.

mod common;

use common::bargein::{clip, run, Script, LEAD_IN, RATE};
use weir_media::Token;

#[test]
fn talking_over_the_answer_silences_it_and_the_new_question_is_answered() {
    let _ = tracing_subscriber::fmt().with_test_writer().try_init();
    let mut script = Script::default();
    script
        .silence(LEAD_IN)
        .say(&clip("synth/command_48k.wav")) // Turn on the lights in the kitchen, please.
        .silence(0.5)
        .talk_over() // the answer has played for a moment
        .say(&clip("synth/question_16k.wav")) // What is the capital of France?
        .silence(10.0);
    let s = run(&script, &[]);
    let played = s.speaker.recorded();
    let (q2_start, q2_end) = script.speech[1];
    eprintln!("{}", s.report.table());

    // The first question was answered aloud before the user talked over it.
    let cut = s.cut_at(q2_start, &played);
    eprintln!("{cut:?}");
    assert!(
        cut.was_playing,
        "the first answer was playing when the user spoke again"
    );
    // ... and it was cut: its sound stopped well before the second question's answer could
    // start (the answer went silent after the VAD heard the interruption, not at its end).
    let cut_frames = cut.to_silence.as_secs_f64() * f64::from(RATE);
    assert!(
        (cut_frames as usize) < q2_end - q2_start,
        "the speaker went silent while the interrupting question was still being spoken: {cut:?}"
    );

    // The interrupting question was answered: spoken after it ended, and printed in full.
    assert!(
        s.sound_after(q2_end, &played) > RATE as usize / 2,
        "the second answer was spoken"
    );
    // The answers, in order: each starts at token index 0.
    let mut answers: Vec<Vec<&Token>> = Vec::new();
    for t in s.tokens.iter().filter_map(|p| p.get::<Token>()) {
        match answers.last_mut() {
            Some(a) if t.index > 0 => a.push(t),
            _ => answers.push(vec![t]),
        }
    }
    let text = |tokens: &[&Token]| tokens.iter().map(|t| &*t.text).collect::<String>();
    assert_eq!(answers.len(), 2, "one answer per question");
    let (first, second) = (&answers[0], &answers[1]);
    eprintln!("first answer (cut): {:?}", text(first));
    eprintln!("second answer: {:?}", text(second));
    assert!(!first.is_empty(), "the first question was answered");
    assert!(
        second.last().is_some_and(|t| t.last) && !text(second).trim().is_empty(),
        "the interrupting question was answered to the end: {:?}",
        text(second)
    );

    // Counted: the questions' speech_starts interrupted the answer region, one of them cut
    // audio being played (a barge-in); what the cut discarded is counted on the edges and in
    // the ring, and nothing played that was not pushed.
    let speaker = s.report.node("speaker").expect("speaker stats");
    // Every speech_start reaches the speaker (a pause within a question may add one).
    assert!(speaker.interrupts >= 2, "{}", s.report.table());
    assert_eq!(speaker.cuts, 1, "one barge-in: {}", s.report.table());
    let c = &s.counters;
    use std::sync::atomic::Ordering::Relaxed;
    assert_eq!(c.barge_ins.load(Relaxed), 1);
    assert!(c.flushed_frames.load(Relaxed) > 0, "the ring held audio");
    let sounding = played.iter().filter(|&&x| x != 0.0).count() as u64;
    assert!(sounding <= c.played_frames.load(Relaxed));
    let region: u64 = ["tts.", "upsample.", "speaker."]
        .iter()
        .filter_map(|to| s.report.edges.iter().find(|e| e.to.starts_with(to)))
        .map(|e| e.flushed)
        .sum();
    assert!(
        region > 0,
        "queued audio or tokens were flushed: {}",
        s.report.table()
    );
    assert!(s.report.table().contains("cut"));
}
