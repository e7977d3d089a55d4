//! Time to silence on barge-in: the live voice assistant (`graphs/voice_assistant_live.yaml`)
//! on the virtual microphone and speaker, real models, real clock. The microphone plays a
//! question, then `--rounds` more questions each spoken over the answer to the one before;
//! for each, the time from the first sample of the interrupting speech to the end of the
//! last non-silent sample the speaker played is measured from the two devices' sample
//! clocks. Prints each round, then the median (p50) and p90 of the rounds where an answer
//! was playing when the user spoke.
//!
//! With `--echo`, the speaker is also heard by the microphone through the virtual room
//! (40 ms, -6 dB) and `audio.aec` cleans the microphone before the VAD (as in
//! `tests/echo.rs`): rounds whose answer the echo had already cut show as `silent`.
//!
//! ```sh
//! cargo run -p weir-live --example bench_bargein -- --rounds 10
//! cargo run -p weir-live --example bench_bargein -- --rounds 10 \
//!     --set vad.min_speech_ms=64
//! cargo run -p weir-live --example bench_bargein -- --rounds 8 --echo \
//!     --set vad.min_speech_ms=64
//! ```

#[path = "../tests/common/bargein.rs"]
mod bargein;

use std::time::Duration;

use bargein::{clip, run_with, Echo, Script, LEAD_IN};

fn quantile(sorted: &[Duration], q: f64) -> Duration {
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[i]
}

fn main() {
    let mut rounds = 10usize;
    let mut set = Vec::new();
    let mut echo = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| panic!("{a} needs a value"));
        match a.as_str() {
            "--rounds" => rounds = value().parse().expect("--rounds N"),
            "--set" => set.push(value()),
            "--echo" => {
                echo = Some(Echo {
                    delay_ms: 40.0,
                    gain: 0.5,
                    aec: true,
                })
            }
            other => {
                panic!("unknown argument {other}; use --rounds N, --set NODE.OPTION=VALUE, --echo")
            }
        }
    }
    let clips = [
        clip("synth/question_16k.wav"),
        clip("synth/command_48k.wav"),
    ];
    let mut script = Script::default();
    script.silence(LEAD_IN).say(&clips[0]);
    for i in 0..rounds {
        script.silence(0.5).talk_over().say(&clips[(i + 1) % 2]);
    }
    script.silence(8.0);
    let s = run_with(&script, &set, echo);
    let played = s.speaker.recorded();
    let mut cuts = Vec::new();
    for (i, &(onset, _)) in script.speech.iter().enumerate().skip(1) {
        let cut = s.cut_at(onset, &played);
        println!(
            "round {i:>2}: {} time to silence {:>7.1} ms",
            if cut.was_playing {
                "playing"
            } else {
                "silent "
            },
            cut.to_silence.as_secs_f64() * 1e3
        );
        if cut.was_playing {
            cuts.push(cut.to_silence);
        }
    }
    let speaker = s.report.node("speaker").expect("speaker stats");
    println!(
        "barge-ins counted by the speaker: {} (interrupts: {})",
        speaker.cuts, speaker.interrupts
    );
    cuts.sort();
    if cuts.is_empty() {
        println!("no round cut a playing answer");
        return;
    }
    println!(
        "time to silence over {} barge-ins: p50 {:.1} ms, p90 {:.1} ms, min {:.1} ms, max {:.1} ms",
        cuts.len(),
        quantile(&cuts, 0.5).as_secs_f64() * 1e3,
        quantile(&cuts, 0.9).as_secs_f64() * 1e3,
        cuts[0].as_secs_f64() * 1e3,
        cuts[cuts.len() - 1].as_secs_f64() * 1e3,
    );
}
