//! Memory across turns with the real SmolLM2-135M-Instruct model: the KV cache carried from
//! turn to turn gives exactly what recomputing the whole history gives, interrupted answers
//! stay, a revised speculative turn replaces its draft, and the budget and the silence
//! timeout forget.
//!
//! The model must have been fetched (`bash tools/fetch-models.sh`); without it these tests
//! fail and say so.

use std::ops::ControlFlow;
use std::path::Path;
use std::time::Duration;

use weir_ml::llm::{
    Answer, ChatConfig, ChatModel, Conversation, ConversationConfig, LlmError, Progress, StopReason,
};

const PARIS: &str = "Tell me about Paris.";
const PEOPLE: &str = "How many people live there?";

fn model() -> ChatModel {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/smollm2-135m");
    assert!(
        dir.join("model.onnx").is_file(),
        "SmolLM2 not found in {}: run `bash tools/fetch-models.sh`",
        dir.display()
    );
    ChatModel::load(ChatConfig {
        model_dir: dir,
        system: "You are a voice assistant on a kiosk. Answer in one short sentence.".into(),
        max_tokens: 24,
        ..ChatConfig::default()
    })
    .unwrap()
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

/// One whole turn spanning `span` seconds.
fn say(chat: &mut ChatModel, conv: &mut Conversation, text: &str, span: (f64, f64)) -> Answer {
    chat.converse(conv, text, (secs(span.0), secs(span.1)), |_| {
        Ok::<_, LlmError>(ControlFlow::Continue(()))
    })
    .unwrap()
}

/// A turn cut after `tokens` generated tokens, as an interrupt cuts it.
fn cut(chat: &mut ChatModel, conv: &mut Conversation, text: &str, span: (f64, f64), tokens: u32) {
    let answer = chat
        .converse(conv, text, (secs(span.0), secs(span.1)), |p| {
            Ok::<_, LlmError>(match p {
                Progress::Piece(piece) if piece.index + 1 == tokens => ControlFlow::Break(()),
                _ => ControlFlow::Continue(()),
            })
        })
        .unwrap();
    assert_eq!(answer.stop, StopReason::Stopped);
    assert_eq!(answer.ids.len(), tokens as usize);
}

fn roomy() -> Conversation {
    Conversation::new(ConversationConfig::default())
}

#[test]
fn the_second_turn_continues_the_cache_exactly_as_recomputing_the_history_would() {
    let mut chat = model();
    let mut conv = roomy();
    let first = say(&mut chat, &mut conv, PARIS, (0.0, 1.6));
    let history = conv.history_ids();
    let second = say(&mut chat, &mut conv, PEOPLE, (4.6, 6.7));
    assert_eq!(conv.turns(), 2);
    assert!(
        second.text.contains("Paris"),
        "the answer uses the first turn: {:?} after {:?}",
        second.text,
        first.text
    );
    // Only the new user turn and the closing of the first answer (its last token, unless
    // that was the end token, then `<|im_end|>` and a newline) ran as prompt.
    let user = chat.checked_user_ids(PEOPLE).unwrap();
    let closing = if first.stop == StopReason::EndToken {
        2
    } else {
        3
    };
    assert_eq!(second.prompt_tokens, user.len() + closing);

    // The same history recomputed from its ids on a fresh session gives the same answer.
    let mut session = chat.fresh_session().unwrap();
    let mut feed = history;
    feed.extend(&user);
    let recomputed = chat
        .continue_session(&mut session, &feed, |_| {
            Ok::<_, LlmError>(ControlFlow::Continue(()))
        })
        .unwrap();
    assert_eq!(recomputed.ids, second.ids);

    // Without memory the second question has nothing to refer to.
    let alone = chat
        .generate_with(PEOPLE, |_| Ok::<_, LlmError>(ControlFlow::Continue(())))
        .unwrap();
    assert_ne!(alone.ids, second.ids);
}

#[test]
fn an_interrupted_answer_stays_as_far_as_it_went_and_a_revised_draft_replaces_it() {
    let mut chat = model();

    // Barge-in: the answer is cut after 3 tokens, the user asks something new (later start).
    let mut conv = roomy();
    cut(&mut chat, &mut conv, PARIS, (0.0, 1.6), 3);
    conv.interrupted();
    say(&mut chat, &mut conv, PEOPLE, (2.0, 3.0));
    assert_eq!(conv.turns(), 2, "the cut turn is kept");
    let user = chat.checked_user_ids(PARIS).unwrap();
    let history = conv.history_ids();
    // user turn, 3 answer tokens, `<|im_end|>` and a newline: then the second turn.
    assert_eq!(&history[..user.len()], &user[..]);
    let second_start = user.len() + 3 + 2;
    assert_eq!(
        &history[second_start..second_start + 3],
        &chat.checked_user_ids(PEOPLE).unwrap()[..3]
    );

    // Speculation withdrawn: the draft's answer was interrupted, then the whole turn (same
    // start) arrives; it replaces the draft instead of following it.
    let mut revised = roomy();
    say(&mut chat, &mut revised, PARIS, (0.0, 1.6));
    say(&mut chat, &mut revised, "How many", (4.6, 5.2));
    revised.interrupted();
    let answer = say(&mut chat, &mut revised, PEOPLE, (4.6, 6.7));
    let mut plain = roomy();
    say(&mut chat, &mut plain, PARIS, (0.0, 1.6));
    let expected = say(&mut chat, &mut plain, PEOPLE, (4.6, 6.7));
    assert_eq!(revised.turns(), 2);
    assert_eq!(revised.history_ids(), plain.history_ids());
    assert_eq!(answer.ids, expected.ids);
}

#[test]
fn the_budget_drops_the_oldest_turns_and_a_long_silence_forgets() {
    let mut chat = model();
    let mut tight = Conversation::new(ConversationConfig {
        memory_tokens: 60,
        forget_after: Duration::from_secs(60),
    });
    for (i, q) in [PARIS, PEOPLE, "What is the capital of Italy?"]
        .iter()
        .enumerate()
    {
        let t = i as f64 * 3.0;
        say(&mut chat, &mut tight, q, (t, t + 1.5));
        assert!(tight.tokens() <= 60 + 26, "{} tokens", tight.tokens());
    }
    assert!(tight.dropped_turns() >= 1, "60 tokens hold about one turn");
    assert!(tight.turns() < 3);

    let mut conv = Conversation::new(ConversationConfig {
        memory_tokens: 1024,
        forget_after: Duration::from_secs(2),
    });
    say(&mut chat, &mut conv, PARIS, (0.0, 1.6));
    let later = say(&mut chat, &mut conv, PEOPLE, (4.6, 6.7));
    assert_eq!(conv.forgotten(), 1);
    assert_eq!(conv.turns(), 1);
    let alone = chat
        .generate_with(PEOPLE, |_| Ok::<_, LlmError>(ControlFlow::Continue(())))
        .unwrap();
    assert_eq!(later.ids, alone.ids, "after the silence it starts afresh");
}
