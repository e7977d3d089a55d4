//! `llm.chat` with the real SmolLM2-135M-Instruct model, driven through the engine with channel
//! endpoints (and the explicit-KV-cache form through the library).
//!
//! The model must have been fetched (`bash tools/fetch-models.sh`); without it these tests fail
//! and say so.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crossbeam_channel::Receiver;
use weir_engine::{
    channel_sink, channel_source, Graph, Loader, Packet, Payload, RunError, Timestamp,
};
use weir_media::{Text, Token};
use weir_ml::llm::{CacheForm, ChatConfig, ChatModel, LlmError, SamplerConfig, TextStream};

const FETCH: &str = "bash tools/fetch-models.sh";
const FRANCE: &str = "What is the capital of France?";
/// The system prompt of the reference answer in tools/SMOLLM2_ONNX.md. (With the node's
/// default system prompt the 135M model answers this question without naming Paris.)
const SYSTEM: &str = "You are a helpful assistant. Answer briefly.";

/// The model directory; panics (the test fails) when the model has not been fetched.
fn model_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/smollm2-135m");
    for file in ["model.onnx", "tokenizer.json"] {
        let path = dir.join(file);
        assert!(
            path.is_file(),
            "{} is missing: fetch the models with `{FETCH}` first",
            path.display()
        );
    }
    dir
}

/// One answer as seen on the node's outputs.
#[derive(Debug)]
struct Turn {
    tokens: Vec<(Timestamp, Token)>,
    text: (Timestamp, Text),
}

impl Turn {
    fn ids(&self) -> Vec<u32> {
        self.tokens.iter().map(|(_, t)| t.id).collect()
    }

    fn pieces(&self) -> String {
        self.tokens.iter().map(|(_, t)| &*t.text).collect()
    }
}

/// Runs one graph: a prompt source feeding one `llm.chat` node per entry of `chats`
/// (`(node name, options as a YAML flow map)`), each output into its own sink; returns the
/// turns of every chat node, in order.
fn run_chats(chats: &[(&str, String)], prompts: &[&str]) -> Result<Vec<Vec<Turn>>, RunError> {
    let mut registry = weir_nodes::registry().expect("node kinds register once");
    weir_ml::register(&mut registry).expect("ML node kinds register once");
    let (source, tx) = channel_source("test.prompts", Text::PORT, 16);
    registry.register(source).unwrap();
    let mut yaml = String::from("nodes:\n  input: { node: test.prompts }\n");
    let mut sinks: Vec<(Receiver<Packet>, Receiver<Packet>)> = Vec::new();
    for (i, (name, with)) in chats.iter().enumerate() {
        let tokens_kind: &'static str = Box::leak(format!("test.tokens{i}").into_boxed_str());
        let text_kind: &'static str = Box::leak(format!("test.text{i}").into_boxed_str());
        // Read only after the run: room for every answer.
        let (tokens_sink, tokens_rx) = channel_sink(tokens_kind, Token::PORT, 4096);
        let (text_sink, text_rx) = channel_sink(text_kind, Text::PORT, 4096);
        registry.register(tokens_sink).unwrap();
        registry.register(text_sink).unwrap();
        sinks.push((tokens_rx, text_rx));
        yaml.push_str(&format!(
            "  {name}: {{ node: llm.chat, in: {{ prompt: input.out }}, with: {with} }}\n\
             \x20 {name}_tokens: {{ node: {tokens_kind}, in: {{ in: {name}.tokens }} }}\n\
             \x20 {name}_text: {{ node: {text_kind}, in: {{ in: {name}.text }} }}\n"
        ));
    }
    let plan = Loader::new(&registry)
        .load_str(Path::new("llm-test.yaml"), &yaml)
        .unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    let running = Graph::build(plan, &registry)?.start()?;
    for (i, prompt) in prompts.iter().enumerate() {
        let t = Timestamp::from_secs_f64(i as f64 * 2.0);
        let text = Text {
            text: Arc::from(*prompt),
            start: t,
            end: Timestamp::from_secs_f64(i as f64 * 2.0 + 1.5),
        };
        tx.send(Packet::new(t, text)).unwrap();
    }
    drop(tx);
    running.wait()?;
    Ok(sinks
        .iter()
        .map(|(tokens_rx, text_rx)| {
            let texts: Vec<(Timestamp, Text)> = text_rx
                .try_iter()
                .map(|p| match p.get::<Text>() {
                    Some(t) => (p.timestamp, t.clone()),
                    None => panic!("text output carried {p:?}"),
                })
                .collect();
            let mut turns: Vec<Vec<(Timestamp, Token)>> = vec![Vec::new()];
            for p in tokens_rx.try_iter() {
                let Some(t) = p.get::<Token>().cloned() else {
                    panic!("tokens output carried {p:?}")
                };
                let last = t.last;
                turns.last_mut().unwrap().push((p.timestamp, t));
                if last {
                    turns.push(Vec::new());
                }
            }
            assert!(
                turns.pop().unwrap().is_empty(),
                "a turn without a last token"
            );
            assert_eq!(turns.len(), texts.len(), "one text per streamed answer");
            turns
                .into_iter()
                .zip(texts)
                .map(|(tokens, text)| Turn { tokens, text })
                .collect()
        })
        .collect())
}

/// Checks what every answer must satisfy: timestamps and span of its prompt, indices in
/// order, `last` only at the end, pieces that add up to the text.
fn check_turn(turn: &Turn, prompt_index: usize, max_tokens: usize) {
    let t = Timestamp::from_secs_f64(prompt_index as f64 * 2.0);
    assert_eq!(turn.text.0, t);
    assert_eq!(turn.text.1.start, t);
    assert_eq!(
        turn.text.1.end,
        Timestamp::from_secs_f64(prompt_index as f64 * 2.0 + 1.5)
    );
    assert!(!turn.tokens.is_empty() && turn.tokens.len() <= max_tokens);
    for (i, (ts, token)) in turn.tokens.iter().enumerate() {
        assert_eq!(*ts, t);
        assert_eq!(token.index as usize, i);
        assert_eq!(token.last, i + 1 == turn.tokens.len());
    }
    assert_eq!(turn.pieces(), &*turn.text.1.text);
}

#[test]
fn answers_paris_and_prefix_cache_gives_the_same_tokens() {
    let dir = model_dir();
    let with = |extra: &str| {
        format!("{{ model_dir: {dir:?}, system: {SYSTEM:?}, max_tokens: 24{extra} }}")
    };
    let prompts = [FRANCE, "Name one colour."];
    let outcome = run_chats(
        &[
            ("cached", with("")),
            ("uncached", with(", prefix_cache: false")),
        ],
        &prompts,
    )
    .unwrap();
    let (cached, uncached) = (&outcome[0], &outcome[1]);
    assert_eq!(cached.len(), prompts.len());
    assert_eq!(uncached.len(), prompts.len());
    for (i, (a, b)) in cached.iter().zip(uncached).enumerate() {
        check_turn(a, i, 24);
        check_turn(b, i, 24);
        assert_eq!(
            a.ids(),
            b.ids(),
            "prompt {i}: prefix cache changed the tokens"
        );
        println!("{:?} -> {:?} {:?}", prompts[i], a.text.1.text, a.ids());
    }
    let answer = &cached[0].text.1.text;
    assert!(answer.contains("Paris"), "answer: {answer:?}");
    assert_eq!(
        cached[0].tokens.last().unwrap().1.id,
        2,
        "ends with <|im_end|>"
    );
}

#[test]
fn max_tokens_is_honoured_and_sampling_is_seeded() {
    let dir = model_dir();
    let with = format!(
        "{{ model_dir: {:?}, max_tokens: 5, temperature: 0.8, top_p: 0.95, seed: 7, \
         memory_tokens: 0 }}",
        dir
    );
    let story = "Tell me a long story about a dragon and a knight.";
    let outcome = run_chats(&[("chat", with)], &[story, story]).unwrap();
    let turns = &outcome[0];
    assert_eq!(turns.len(), 2);
    for (i, turn) in turns.iter().enumerate() {
        check_turn(turn, i, 5);
        assert_eq!(turn.tokens.len(), 5, "a long story needs all 5 tokens");
    }
    assert_eq!(turns[0].ids(), turns[1].ids(), "same seed, same answer");
}

#[test]
fn explicit_kv_cache_form_gives_the_reference_answer() {
    let config = ChatConfig {
        model_dir: model_dir(),
        system: SYSTEM.into(),
        max_tokens: 16,
        sampler: SamplerConfig::default(),
        kv_state: false,
        ..ChatConfig::default()
    };
    let mut chat = ChatModel::load(config).unwrap();
    assert_eq!(chat.cache_form(), CacheForm::Explicit);

    let mut pieces = String::new();
    let answer = chat
        .generate(FRANCE, |piece| {
            pieces.push_str(&piece.text);
            Ok::<_, LlmError>(())
        })
        .unwrap();
    // Greedy ids of tools/SMOLLM2_ONNX.md (tract state form and onnxruntime agree on them).
    assert_eq!(
        answer.ids,
        [7026, 8503, 7042, 314, 260, 3575, 282, 4649, 30, 2]
    );
    assert_eq!(answer.text, "Le Grand Paris is the capital of France.");
    assert_eq!(pieces, answer.text);

    // The ChatML prompt of the same document, built from its parts.
    assert_eq!(
        chat.chatml_ids("You are helpful.", FRANCE).unwrap(),
        [
            1, 9690, 198, 2683, 359, 5356, 30, 2, 198, 1, 4093, 198, 1780, 314, 260, 3575, 282,
            4649, 47, 2, 198, 1, 520, 9531, 198
        ]
    );

    // Multi-byte characters split across tokens are held back until complete.
    let text = "Très bien: 日本語, 🙂 ok";
    let ids = chat.encode(text).unwrap();
    let mut stream = TextStream::new();
    let mut streamed = String::new();
    for id in ids {
        let piece = stream.push(chat.tokenizer(), id).unwrap();
        assert!(!piece.contains('\u{FFFD}'), "partial character emitted");
        streamed.push_str(&piece);
    }
    streamed.push_str(&stream.finish(chat.tokenizer()).unwrap());
    assert_eq!(streamed, text);
}

#[test]
fn missing_model_names_the_fetch_command() {
    let err = run_chats(
        &[("chat", "{ model_dir: /nonexistent/smollm2 }".to_string())],
        &[FRANCE],
    )
    .unwrap_err();
    let message = err.to_string();
    assert!(message.contains(FETCH), "{message}");
    assert!(message.contains("model.onnx"), "{message}");
    assert_eq!(err.node(), "chat");
}
