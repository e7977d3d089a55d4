//! `llm.chat` with the real SmolLM2-135M-Instruct model: interrupts and prompt limits.
//!
//! The model must have been fetched (`bash tools/fetch-models.sh`); without it these tests
//! fail and say so.
//!
//! The interrupt test does not use a timer: the test program itself is the trigger. The graph
//! is `prompts -> chat -> sinks` plus a `trigger` source named by `interrupt: trigger.out`;
//! the program reads the streamed tokens and fires the trigger once it has seen a few of them.
//! So the interrupt always lands in the middle of the answer, whatever the speed of the
//! machine (a timer at +300 ms could fire before the prompt is even processed on a loaded
//! machine, or, on the virtual clock, only once the node is idle again, i.e. after the answer).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use weir_engine::testing::NodeRunner;
use weir_engine::{
    channel_sink, channel_source, Graph, Loader, Packet, Payload, Registry, Timestamp,
};
use weir_media::{Event, Text, Token};
use weir_ml::llm::MAX_PROMPT_CHARS;

const FETCH: &str = "bash tools/fetch-models.sh";
/// Most tokens of the interrupted answer.
const MAX_TOKENS: usize = 200;
/// Tokens the program waits for before it interrupts.
const SEEN_BEFORE_INTERRUPT: usize = 4;
const STORY: &str =
    "Write a very long and detailed story about a dragon who learns to cook, with many \
     characters and at least ten chapters.";
const FRANCE: &str = "What is the capital of France?";

/// The model directory; panics (the test fails) when the model has not been fetched.
fn model_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/smollm2-135m");
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

fn prompt(t: Timestamp, text: &str) -> Packet {
    let text = Text {
        text: Arc::from(text),
        start: t,
        end: t.saturating_add(Duration::from_secs(1)),
    };
    Packet::new(t, text)
}

fn tokens_at(packets: &[Packet], t: Timestamp) -> Vec<Token> {
    packets
        .iter()
        .filter(|p| p.timestamp == t)
        .map(|p| p.get::<Token>().expect("tokens carries tokens").clone())
        .collect()
}

#[test]
fn interrupt_stops_the_answer_and_the_next_prompt_is_answered() {
    let dir = model_dir();
    let mut registry = Registry::new();
    weir_ml::register(&mut registry).unwrap();
    let (prompts, prompt_tx) = channel_source("test.prompts", Text::PORT, 4);
    let (trigger, trigger_tx) = channel_source("test.trigger", Event::PORT, 1);
    let (tokens_sink, tokens_rx) = channel_sink("test.tokens", Token::PORT, 4096);
    let (text_sink, text_rx) = channel_sink("test.text", Text::PORT, 16);
    for kind in [prompts, trigger, tokens_sink, text_sink] {
        registry.register(kind).unwrap();
    }
    let yaml = format!(
        "nodes:
  prompts: {{ node: test.prompts }}
  trigger: {{ node: test.trigger }}
  chat:
    node: llm.chat
    in: {{ prompt: prompts.out }}
    with: {{ model_dir: {dir:?}, max_tokens: {MAX_TOKENS} }}
    interrupt: trigger.out
  tokens: {{ node: test.tokens, in: {{ in: chat.tokens }} }}
  text: {{ node: test.text, in: {{ in: chat.text }} }}
"
    );
    let plan = Loader::new(&registry)
        .load_str(Path::new("interrupt-test.yaml"), &yaml)
        .unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    let running = Graph::build(plan, &registry).unwrap().start().unwrap();

    let (t1, t2) = (Timestamp::ZERO, Timestamp::from_secs_f64(10.0));
    prompt_tx.send(prompt(t1, STORY)).unwrap();
    let mut received = Vec::new();
    while received.len() < SEEN_BEFORE_INTERRUPT {
        let p = tokens_rx
            .recv_timeout(Duration::from_secs(120))
            .expect("the first tokens of the story within 2 minutes");
        let token = p.get::<Token>().expect("tokens carries tokens");
        assert!(
            !token.last,
            "the story ended after {} tokens",
            token.index + 1
        );
        received.push(p);
    }
    let stop = Event::new("speech_start", serde_json::json!({}));
    trigger_tx.send(Packet::new(Timestamp::ZERO, stop)).unwrap();
    // The next prompt follows the interrupt: one sent while the interrupt is still on its way
    // could be queued for the node before it, and would be discarded with the story.
    let monitor = running.monitor();
    while monitor.report().node("chat").unwrap().interrupts == 0 {
        std::thread::sleep(Duration::from_millis(5));
    }
    prompt_tx.send(prompt(t2, FRANCE)).unwrap();
    drop((prompt_tx, trigger_tx));
    let report = running.wait().unwrap();

    received.extend(tokens_rx.try_iter());
    let texts: Vec<Packet> = text_rx.try_iter().collect();

    let story = tokens_at(&received, t1);
    println!("interrupted after {} tokens", story.len());
    assert!(story.len() >= SEEN_BEFORE_INTERRUPT);
    assert!(
        story.len() < MAX_TOKENS,
        "{} tokens: the interrupt did not stop the answer",
        story.len()
    );
    assert!(
        story.iter().all(|t| !t.last),
        "an interrupted answer has no last token"
    );
    assert!(
        texts.iter().all(|p| p.timestamp != t1),
        "a text was sent for the interrupted answer"
    );
    assert_eq!(report.node("chat").unwrap().interrupts, 1);

    // The next prompt is answered whole.
    let answer = tokens_at(&received, t2);
    assert!(
        !answer.is_empty(),
        "no answer to the prompt after the interrupt"
    );
    for (i, token) in answer.iter().enumerate() {
        assert_eq!(token.index as usize, i);
        assert_eq!(token.last, i + 1 == answer.len());
    }
    assert_eq!(texts.len(), 1, "{texts:?}");
    let text = texts[0].get::<Text>().unwrap();
    assert_eq!(texts[0].timestamp, t2);
    let pieces: String = answer.iter().map(|t| &*t.text).collect();
    assert_eq!(&*text.text, pieces);
    assert!(!text.text.trim().is_empty());
}

/// The program stops reading tokens, so the answer's tokens queue up on the edge in front of
/// the sink; then it interrupts. The queued tokens must never reach the sink: they are
/// discarded and counted as flushed on that edge.
#[test]
fn tokens_queued_before_an_interrupt_never_reach_the_sink_and_are_counted_flushed() {
    let dir = model_dir();
    let mut registry = Registry::new();
    weir_ml::register(&mut registry).unwrap();
    let (prompts, prompt_tx) = channel_source("test.prompts", Text::PORT, 4);
    let (trigger, trigger_tx) = channel_source("test.trigger", Event::PORT, 1);
    // The sink hands tokens to the program through a channel of 2: when the program does not
    // read, the sink blocks and the answer's tokens queue on the edge (16) in front of it.
    let (tokens_sink, tokens_rx) = channel_sink("test.tokens", Token::PORT, 2);
    for kind in [prompts, trigger, tokens_sink] {
        registry.register(kind).unwrap();
    }
    let yaml = format!(
        "nodes:
  prompts: {{ node: test.prompts }}
  trigger: {{ node: test.trigger }}
  chat:
    node: llm.chat
    in: {{ prompt: prompts.out }}
    with: {{ model_dir: {dir:?}, max_tokens: {MAX_TOKENS} }}
    interrupt: trigger.out
  tokens: {{ node: test.tokens, in: {{ in: chat.tokens }}, queue: {{ size: 16 }} }}
"
    );
    let plan = Loader::new(&registry)
        .load_str(Path::new("flush-test.yaml"), &yaml)
        .unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    let running = Graph::build(plan, &registry).unwrap().start().unwrap();
    prompt_tx.send(prompt(Timestamp::ZERO, STORY)).unwrap();
    let first = tokens_rx
        .recv_timeout(Duration::from_secs(120))
        .expect("the first token of the story within 2 minutes");
    // Let the queue fill: 16 + 2 tokens at ~35 ms each.
    std::thread::sleep(Duration::from_millis(1500));
    let stop = Event::new("speech_start", serde_json::json!({}));
    trigger_tx.send(Packet::new(Timestamp::ZERO, stop)).unwrap();
    // Reading resumes once the interrupt has fired: before, the sink could still take a
    // token that was queued and not yet stale.
    let monitor = running.monitor();
    while monitor.report().node("chat").unwrap().interrupts == 0 {
        std::thread::sleep(Duration::from_millis(5));
    }
    drop((prompt_tx, trigger_tx));
    let mut received = vec![first];
    received.extend(tokens_rx.iter());
    let report = running.wait().unwrap();

    let chat = report.node("chat").unwrap();
    let edge = report.edge_to("tokens.in").unwrap();
    println!(
        "sent {} tokens, the sink got {}, flushed {}",
        chat.packets_out,
        received.len(),
        edge.flushed
    );
    assert_eq!(chat.interrupts, 1);
    assert!(
        (chat.packets_out as usize) < MAX_TOKENS,
        "the answer was not stopped"
    );
    assert!(
        received.len() <= 1 + 2 + 1,
        "only the tokens the program or the sink already held arrive: {}",
        received.len()
    );
    assert!(
        edge.flushed >= chat.packets_out - received.len() as u64,
        "every token sent but not received is counted flushed: {edge:?}"
    );
    assert!(
        edge.flushed >= 10,
        "the queue in front of the sink was flushed: {edge:?}"
    );
    assert_eq!(
        report.total_dropped(),
        0,
        "flushes are not counted as drops"
    );
}

#[test]
fn an_overlong_prompt_is_skipped_and_the_next_one_answered() {
    let dir = model_dir();
    let long = "Tell me more. ".repeat(MAX_PROMPT_CHARS / 10);
    assert!(long.trim().chars().count() > MAX_PROMPT_CHARS);
    let (t1, t2, t3) = (
        Timestamp::ZERO,
        Timestamp::from_secs_f64(1.0),
        Timestamp::from_secs_f64(2.0),
    );
    let out = NodeRunner::new(weir_ml::llm::node::kind())
        .option("model_dir", dir.to_string_lossy().into_owned())
        .option("max_tokens", 12)
        .feed(
            "prompt",
            [
                prompt(t1, &long),
                prompt(t2, "   "),
                prompt(t3, "Name one colour."),
            ],
        )
        .run()
        .unwrap();
    let texts = out.packets("text");
    assert_eq!(texts.len(), 1, "{texts:?}");
    assert_eq!(texts[0].timestamp, t3);
    let tokens = out.packets("tokens");
    assert!(!tokens.is_empty() && tokens.len() <= 12);
    assert!(tokens.iter().all(|p| p.timestamp == t3));
    assert!(tokens.last().unwrap().get::<Token>().unwrap().last);
    let text = texts[0].get::<Text>().unwrap();
    assert_eq!(
        (text.start, text.end),
        (t3, t3.saturating_add(Duration::from_secs(1)))
    );
}
