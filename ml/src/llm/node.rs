//! `llm.chat`: answers each text prompt with a small language model, streaming tokens.
//!
//! ```yaml
//! slm:
//!   node: llm.chat
//!   in: { prompt: asr.text }
//!   with:
//!     model_dir: models/smollm2-135m
//!     system: "You control a kiosk. Answer briefly."
//!     max_tokens: 48
//!     temperature: 0        # 0 = greedy; > 0 samples with top_p and seed
//! ```
//! The node keeps the conversation (see [`super::conversation`]): each prompt is a user turn
//! appended to the KV cache of the turns before it, as long as they fit in `memory_tokens`
//! (the oldest are dropped beyond it); a prompt that starts more than `forget_after_s` of
//! media time after the previous one ended starts afresh from the system prompt; an
//! interrupted answer stays in the history as far as it was generated; and the transcript of
//! a whole turn replaces its interrupted draft (same start). `memory_tokens: 0` answers each
//! prompt on its own. For every turn, `tokens` gets one [`Token`] per generated token (the end token included, with empty
//! text, flagged `last`), then `text` gets the whole answer with the prompt's start/end. All
//! outputs of a turn carry the prompt packet's timestamp. Blank prompts are skipped.
//!
//! Options: `model_dir`, `system`, `max_tokens`, `memory_tokens`, `forget_after_s`,
//! `temperature`, `top_p`, `seed`, `threads`,
//! `prefix_cache` (compute the system prompt once, clone its KV cache per request), `kv_state`
//! (tract holds the KV cache as state; `false` feeds the 60 cache tensors explicitly).
//!
//! Interrupts: the node checks [`Context::cancelled`] after every prompt chunk and before
//! and after sending every token, so an interrupt (e.g. `interrupt: vad.speech_start`: the
//! user speaks again) stops the answer within one model call. An interrupted answer sends no
//! `text` and no token flagged `last`; the next prompt is answered normally.
//!
//! One bad prompt never ends the run: a prompt longer than [`MAX_PROMPT_CHARS`] characters,
//! or whose tokens (system prompt included) do not fit the model's positions (8192 for
//! SmolLM2), is skipped with a warning naming its length and the limit; a prompt whose
//! tokenization or inference fails is skipped with an error message.

use std::ops::ControlFlow;
use std::path::PathBuf;
use std::sync::Arc;

use serde::Deserialize;
use weir_engine::{
    Config, Context, Incoming, Input, NodeError, NodeKind, OptionSpec, OptionType, Output, Ports,
    Processor,
};
use weir_media::{Text, Token};

use super::chat::{Answer, ChatConfig, ChatModel, Progress, StopReason, DEFAULT_SYSTEM};
use super::conversation::{Conversation, ConversationConfig};
use super::sampler::SamplerConfig;
use super::LlmError;
#[cfg(doc)]
use super::MAX_PROMPT_CHARS;

impl From<LlmError> for NodeError {
    fn from(e: LlmError) -> Self {
        NodeError::with_source("language model", e)
    }
}

/// Options of `llm.chat`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChatNodeConfig {
    /// Directory with `model.onnx`, `tokenizer.json`, `generation.json`.
    pub model_dir: PathBuf,
    /// System prompt (empty: none).
    pub system: String,
    /// Most tokens per answer.
    pub max_tokens: usize,
    /// Most tokens of remembered conversation plus the new prompt (0: no memory).
    pub memory_tokens: usize,
    /// Seconds of media time after which the conversation starts afresh.
    pub forget_after_s: f64,
    /// 0 = greedy; > 0 samples.
    pub temperature: f32,
    /// Nucleus mass kept when sampling.
    pub top_p: f32,
    /// Sampling seed (reset for every answer).
    pub seed: u64,
    /// Matmul threads.
    pub threads: usize,
    /// Compute the system prompt once and reuse its KV cache.
    pub prefix_cache: bool,
    /// KV cache as tract state (false: explicit cache tensors).
    pub kv_state: bool,
}

impl Config for ChatNodeConfig {
    fn options() -> Vec<OptionSpec> {
        vec![
            OptionSpec::with_default(
                "model_dir",
                OptionType::Path,
                "models/smollm2-135m",
                "directory with model.onnx, tokenizer.json, generation.json",
            ),
            OptionSpec::with_default(
                "system",
                OptionType::Str,
                DEFAULT_SYSTEM,
                "system prompt (empty: none)",
            ),
            OptionSpec::with_default("max_tokens", OptionType::Int, 64, "most tokens per answer")
                .range(1.0, 8192.0),
            OptionSpec::with_default(
                "memory_tokens",
                OptionType::Int,
                1024,
                "most tokens of remembered conversation plus the new prompt; the oldest turns \
                 are dropped beyond it (0: each prompt on its own)",
            )
            .range(0.0, 131_072.0),
            OptionSpec::with_default(
                "forget_after_s",
                OptionType::Float,
                60.0,
                "a prompt starting this long after the previous one ended starts a new \
                 conversation (seconds of media time)",
            )
            .range(0.001, 31_536_000.0),
            OptionSpec::with_default(
                "temperature",
                OptionType::Float,
                0.0,
                "0 = greedy; > 0 samples",
            )
            .range(0.0, 10.0),
            OptionSpec::with_default(
                "top_p",
                OptionType::Float,
                0.9,
                "nucleus mass kept when sampling",
            )
            .range(0.0, 1.0),
            OptionSpec::with_default(
                "seed",
                OptionType::Int,
                42,
                "sampling seed (reset for every answer)",
            )
            .range(0.0, 9.007_199_254_740_991e15),
            OptionSpec::with_default(
                "threads",
                OptionType::Int,
                1,
                "matmul threads (tract pool; clamped to the cores)",
            )
            .range(1.0, 64.0),
            OptionSpec::with_default(
                "prefix_cache",
                OptionType::Bool,
                true,
                "compute the system prompt once and reuse its KV cache",
            ),
            OptionSpec::with_default(
                "kv_state",
                OptionType::Bool,
                true,
                "KV cache as tract state (false: explicit cache tensors)",
            ),
        ]
    }
}

impl From<ChatNodeConfig> for ChatConfig {
    fn from(c: ChatNodeConfig) -> Self {
        ChatConfig {
            model_dir: c.model_dir,
            system: c.system,
            max_tokens: c.max_tokens,
            sampler: SamplerConfig {
                temperature: c.temperature,
                top_p: c.top_p,
                seed: c.seed,
            },
            threads: c.threads.max(1),
            prefix_cache: c.prefix_cache,
            kv_state: c.kv_state,
        }
    }
}

/// The ports of `llm.chat`.
pub struct ChatPorts {
    prompt: Input<Text>,
    tokens: Output<Token>,
    text: Output<Text>,
}

fn ports(p: &mut Ports) -> ChatPorts {
    ChatPorts {
        prompt: p.input("prompt", "one user turn per packet"),
        tokens: p.output("tokens", "answer tokens as decoded (last flagged)"),
        text: p.output("text", "the whole answer, spanning the prompt's time"),
    }
}

/// The kind declaration.
pub fn kind() -> NodeKind {
    NodeKind::processor(
        "llm.chat",
        "Answers each text prompt with a small language model (ChatML), streaming tokens.",
        ports,
        |c: ChatNodeConfig, ports| {
            let memory = (c.memory_tokens > 0).then(|| {
                Conversation::new(ConversationConfig {
                    memory_tokens: c.memory_tokens,
                    forget_after: std::time::Duration::from_secs_f64(c.forget_after_s),
                })
            });
            Ok(ChatNode {
                ports,
                config: c.into(),
                model: None,
                conversation: memory,
            })
        },
    )
}

/// The node: loads a [`ChatModel`] in `open`, answers each prompt in `process`, within the
/// conversation when it has memory. An interrupt marks the latest turn as interrupted.
struct ChatNode {
    ports: ChatPorts,
    config: ChatConfig,
    model: Option<ChatModel>,
    conversation: Option<Conversation>,
}

/// Why an answer failed: the model (this prompt is skipped) or the engine (the run ends).
enum TurnError {
    Llm(LlmError),
    Node(NodeError),
}

impl From<LlmError> for TurnError {
    fn from(e: LlmError) -> Self {
        TurnError::Llm(e)
    }
}

impl From<NodeError> for TurnError {
    fn from(e: NodeError) -> Self {
        TurnError::Node(e)
    }
}

impl Processor for ChatNode {
    fn open(&mut self, _ctx: &mut Context) -> Result<(), NodeError> {
        self.model = Some(ChatModel::load(self.config.clone())?);
        Ok(())
    }

    fn process(&mut self, input: Incoming, ctx: &mut Context) -> Result<(), NodeError> {
        let prompt = self.ports.prompt.expect(&input)?;
        if prompt.text.trim().is_empty() || ctx.cancelled() {
            return Ok(());
        }
        let model = self
            .model
            .as_mut()
            .ok_or_else(|| NodeError::new("process called before open"))?;
        let t = input.timestamp();
        let tokens = self.ports.tokens;
        let on_progress = |progress| {
            if ctx.cancelled() {
                return Ok::<_, TurnError>(ControlFlow::Break(()));
            }
            if let Progress::Piece(piece) = progress {
                let token = Token {
                    id: piece.id,
                    text: Arc::from(piece.text),
                    index: piece.index,
                    last: piece.last,
                };
                ctx.send(tokens, t, token)?;
                if ctx.cancelled() {
                    return Ok(ControlFlow::Break(()));
                }
            }
            Ok(ControlFlow::Continue(()))
        };
        let result: Result<Answer, TurnError> = match &mut self.conversation {
            Some(conversation) => model.converse(
                conversation,
                &prompt.text,
                (prompt.start.as_duration(), prompt.end.as_duration()),
                on_progress,
            ),
            None => model.generate_with(&prompt.text, on_progress),
        };
        let answer = match result {
            Ok(answer) => answer,
            Err(TurnError::Node(e)) => return Err(e),
            Err(TurnError::Llm(e)) => {
                let start = prompt.start;
                if matches!(e, LlmError::TooManyChars { .. } | LlmError::TooLong { .. }) {
                    tracing::warn!(prompt_start = %start, "{e}: prompt skipped");
                } else {
                    tracing::error!(prompt_start = %start, "cannot answer prompt: {e}; skipped");
                }
                return Ok(());
            }
        };
        if answer.stop == StopReason::Stopped {
            tracing::debug!(
                tokens = answer.ids.len(),
                prompt_tokens = answer.prompt_tokens,
                "llm.chat interrupted: {} tokens generated before the stop",
                answer.ids.len()
            );
            return Ok(());
        }
        tracing::debug!(
            remembered_turns = self.conversation.as_ref().map_or(0, Conversation::turns),
            prompt_tokens = answer.prompt_tokens,
            prompt_ms = answer.prompt_time.as_secs_f64() * 1e3,
            decode_ms_per_token = answer.decode_ms_per_token(),
            tokens = answer.ids.len(),
            "llm.chat answer"
        );
        let text = Text {
            text: Arc::from(answer.text),
            start: prompt.start,
            end: prompt.end,
        };
        ctx.send(self.ports.text, t, text)
    }

    fn flush(&mut self, _ctx: &mut Context) -> Result<(), NodeError> {
        if let Some(conversation) = &mut self.conversation {
            conversation.interrupted();
        }
        Ok(())
    }
}
