//! The default graph end to end on a recorded spoken question: real VAD, Whisper, SLM and
//! speech synthesis.

mod common;

use common::{data, require_models, root, stderr, weir};

#[test]
fn voice_assistant_answers_the_spoken_question_with_streamed_tokens() {
    require_models();
    data("synth/question_44k_stereo.wav");
    let out = common::scratch("voice_assistant_session");
    let run = weir(
        &[
            "run",
            "graphs/voice_assistant.yaml",
            "--set",
            "answer.format=json",
            "--set",
            "heard.format=json",
        ],
        &[("WEIR_OUT", &out)],
    );
    assert!(run.status.success(), "{}", stderr(&run));
    let stdout = String::from_utf8_lossy(&run.stdout);
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l}: {e}")))
        .collect();

    let heard: Vec<&str> = lines
        .iter()
        .filter(|l| l["type"] == "text")
        .filter_map(|l| l["text"].as_str())
        .collect();
    assert_eq!(heard.len(), 1, "one question was asked: {heard:?}");
    let question = heard[0].to_lowercase();
    assert!(
        question.contains("capital") && question.contains("france"),
        "heard {question:?}"
    );

    let tokens: Vec<&serde_json::Value> = lines.iter().filter(|l| l["type"] == "token").collect();
    assert!(tokens.len() > 1, "the answer is streamed token by token");
    let answer: String = tokens.iter().filter_map(|t| t["text"].as_str()).collect();
    assert!(answer.contains("Paris"), "answer {answer:?}");
    let indices: Vec<u64> = tokens
        .iter()
        .map(|t| t["index"].as_u64().unwrap())
        .collect();
    assert_eq!(
        indices,
        (0..tokens.len() as u64).collect::<Vec<_>>(),
        "tokens in order"
    );
    assert_eq!(
        tokens.last().unwrap()["last"],
        true,
        "the last token is flagged"
    );

    // The session log gets all three streams (their order is checked on the virtual clock).
    let mut kinds = session_kinds(&out);
    kinds.sort();
    assert_eq!(kinds, ["speech_end", "speech_start", "text", "text"]);

    // The answer is spoken: a valid WAV file in which Whisper hears the answer again.
    let (spec, speech) = common::read_wav(&out.join("answer.wav"));
    assert_eq!((spec.sample_rate, spec.channels), (22_050, 1));
    let secs = speech.len() as f64 / 22_050.0;
    let rms = (speech.iter().map(|s| s * s).sum::<f32>() / speech.len().max(1) as f32).sqrt();
    assert!(secs > 1.0 && rms > 0.02, "{secs} s of speech, rms {rms}");
    let heard = hear_22k(&speech);
    assert!(
        heard.contains("paris"),
        "Whisper heard the answer as {heard:?}"
    );
}

/// Whisper tiny.en's transcript (lower case) of 22.05 kHz mono speech.
fn hear_22k(speech: &[f32]) -> String {
    use weir_nodes::audio::resample::{Method, StreamResampler};
    let mut resampler = StreamResampler::new(22_050, 16_000, 1, Method::Fft).unwrap();
    let mut at16k = Vec::new();
    resampler.push(speech, &mut at16k).unwrap();
    resampler.finish(&mut at16k).unwrap();
    let whisper = weir_ml::whisper::Transcriber::load(
        root().join("models/whisper-tiny.en"),
        &weir_ml::whisper::TranscriberOptions::default(),
    )
    .unwrap();
    whisper.transcribe(&at16k).unwrap().text.to_lowercase()
}

/// `type` of each session log line, or the event's name for events.
fn session_kinds(out: &std::path::Path) -> Vec<String> {
    common::read_jsonl(&out.join("session.jsonl"))
        .iter()
        .map(|l| match l["type"].as_str() {
            Some("event") => l["event"].as_str().unwrap_or("?").to_string(),
            Some(t) => t.to_string(),
            None => "?".to_string(),
        })
        .collect()
}

/// On the virtual clock the session log's merge never times out while a model works, so
/// the three streams come out as one timeline in timestamp order (ties by input).
#[test]
fn the_session_log_is_one_timeline_on_the_virtual_clock() {
    require_models();
    let out = common::scratch("voice_assistant_timeline");
    let run = weir(
        &["run", "graphs/voice_assistant.yaml", "--clock", "virtual"],
        &[("WEIR_OUT", &out)],
    );
    assert!(run.status.success(), "{}", stderr(&run));
    let log = common::read_jsonl(&out.join("session.jsonl"));
    let times: Vec<f64> = log.iter().map(|l| l["t"].as_f64().unwrap()).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{log:?}");
    assert_eq!(
        session_kinds(&out),
        ["text", "text", "speech_start", "speech_end"],
        "transcript and answer carry the utterance's start time: {log:?}"
    );
    assert!(
        log[1]["text"].as_str().unwrap().contains("Paris"),
        "{log:?}"
    );
}

#[test]
fn voice_assistant_prints_transcript_and_answer_for_people() {
    require_models();
    let run = weir(&["run", "graphs/voice_assistant.yaml"], &[]);
    assert!(run.status.success(), "{}", stderr(&run));
    let stdout = String::from_utf8_lossy(&run.stdout);
    let mut lines = stdout.lines();
    let transcript = lines.next().unwrap_or_default();
    assert!(
        transcript.starts_with("[0.") && transcript.to_lowercase().contains("capital"),
        "{stdout}"
    );
    assert!(lines.any(|l| l.contains("Paris")), "{stdout}");
}

#[test]
fn live_graph_replays_a_file_in_place_of_the_microphone() {
    require_models();
    let wav = data("synth/question_44k_stereo.wav");
    let out = common::scratch("voice_assistant_live_replay");
    let run = weir(
        &[
            "run",
            "graphs/voice_assistant_live.yaml",
            "--input",
            wav.to_str().unwrap(),
            "--stats",
        ],
        &[("WEIR_OUT", &out)],
    );
    let err = stderr(&run);
    assert!(run.status.success(), "{err}");
    // The microphone node became a file source paced at real time, the speaker a WAV file.
    assert!(err.contains("mic              audio.wav_file"), "{err}");
    assert!(err.contains("speaker          audio.wav_writer"), "{err}");
    let (spec, speech) = common::read_wav(&out.join("speaker.wav"));
    assert_eq!((spec.sample_rate, spec.channels), (48_000, 1));
    assert!(speech.len() > 48_000, "{} samples spoken", speech.len());
    assert!(
        String::from_utf8_lossy(&run.stdout).contains("Paris"),
        "{}",
        String::from_utf8_lossy(&run.stdout)
    );
}

/// The `intr` column of `node` in a `--stats` table.
fn interrupts_of(stats: &str, node: &str) -> u64 {
    stats
        .lines()
        .find(|l| l.split_whitespace().next() == Some(node))
        .and_then(|l| l.split_whitespace().nth(7))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no stats for `{node}` in {stats}"))
}

/// What the session log says: transcripts and answers, in order.
fn texts(log: &[serde_json::Value]) -> Vec<String> {
    log.iter()
        .filter(|l| l["type"] == "text")
        .map(|l| l["text"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn a_continued_utterance_withdraws_the_speculative_transcript_and_answer() {
    require_models();
    let out = common::scratch("voice_assistant_continued");
    let input = common::continued_utterance(&out);
    let mic = format!("mic.path={}", input.display());
    let speculative = weir(
        &[
            "run",
            "graphs/voice_assistant.yaml",
            "--clock",
            "virtual",
            "--stats",
            "--set",
            &mic,
        ],
        &[("WEIR_OUT", &out)],
    );
    assert!(speculative.status.success(), "{}", stderr(&speculative));
    let log = common::read_jsonl(&out.join("session.jsonl"));
    let events: Vec<&str> = log.iter().filter_map(|l| l["event"].as_str()).collect();
    assert_eq!(
        events,
        ["speech_start", "speech_resumed", "speech_end"],
        "one turn, resumed once: {log:?}"
    );
    // The draft at the pause was transcribed and answered, then withdrawn: the recognizer
    // was interrupted, and only the whole utterance's transcript and answer came out.
    let stats = stderr(&speculative);
    assert_eq!(interrupts_of(&stats, "asr"), 1, "{stats}");
    assert_eq!(interrupts_of(&stats, "turn"), 1, "{stats}");
    let said = texts(&log);
    assert_eq!(said.len(), 2, "one transcript, one answer: {said:?}");
    let heard = said[0].to_lowercase();
    assert!(
        heard.contains("capital") && heard.contains("clubs"),
        "the transcript holds both parts: {heard:?}"
    );

    // Without speculation the same turn gives the same transcript and answer.
    let plain = common::scratch("voice_assistant_continued_plain");
    let run = weir(
        &[
            "run",
            "graphs/voice_assistant.yaml",
            "--clock",
            "virtual",
            "--set",
            &mic,
            "--set",
            "vad.draft_silence_ms=0",
        ],
        &[("WEIR_OUT", &plain)],
    );
    assert!(run.status.success(), "{}", stderr(&run));
    let plain_log = common::read_jsonl(&plain.join("session.jsonl"));
    assert_eq!(texts(&plain_log), said);
}

#[test]
fn the_assistant_remembers_the_previous_turn_until_a_long_silence() {
    require_models();
    let two_turns = data("synth/two_turns_16k.wav");
    let mic = format!("mic.path={}", two_turns.display());
    // "Tell me about Paris." ... 3 s ... "How many people live there?"
    let answers = |out: &std::path::Path, extra: &[&str]| {
        let mut args = vec!["run", "graphs/voice_assistant.yaml", "--clock", "virtual"];
        args.extend(["--set", &mic]);
        for e in extra {
            args.extend(["--set", e]);
        }
        let run = weir(&args, &[("WEIR_OUT", out)]);
        assert!(run.status.success(), "{}", stderr(&run));
        let said = texts(&common::read_jsonl(&out.join("session.jsonl")));
        assert_eq!(said.len(), 4, "two transcripts, two answers: {said:?}");
        assert!(said[2].to_lowercase().contains("people"), "{said:?}");
        said
    };
    let remembered = answers(&common::scratch("voice_assistant_two_turns"), &[]);
    assert!(
        remembered[3].contains("Paris"),
        "\"there\" is Paris, from the first turn: {remembered:?}"
    );
    // After 2 s of silence the conversation starts afresh: the same question has nothing to
    // refer to (ml/tests/conversation.rs shows it is then answered as with no memory).
    let forgot = answers(
        &common::scratch("voice_assistant_two_turns_forgot"),
        &["slm.forget_after_s=2"],
    );
    assert_eq!(forgot[..3], remembered[..3]);
    assert!(!forgot[3].contains("Paris"), "{forgot:?}");
}
