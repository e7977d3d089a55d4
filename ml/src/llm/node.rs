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
//! Each prompt packet is one independent user turn (no memory of earlier turns). For every
//! turn, `tokens` gets one [`Token`] per generated token (the end token included, with empty
//! text, flagged `last`), then `text` gets the whole answer with the prompt's start/end. All
//! outputs of a turn carry the prompt packet's timestamp. Blank prompts are skipped.
//!
//! Options: `model_dir`, `system`, `max_tokens`, `temperature`, `top_p`, `seed`, `threads`,
//! `prefix_cache` (compute the system prompt once, clone its KV cache per request), `kv_state`
//! (tract holds the KV cache as state; `false` feeds the 60 cache tensors explicitly).

use std::path::PathBuf;
use std::sync::Arc;

use weir_engine::{
    Node, NodeError, NodeKind, OptionSpec, OptionType, Options, Outputs, Packet, Payload, PortSpec,
    PortType, Text, Token,
};

use super::chat::{ChatConfig, ChatModel, DEFAULT_SYSTEM};
use super::sampler::SamplerConfig;
use super::LlmError;

const TOKENS: usize = 0;
const TEXT: usize = 1;

impl From<LlmError> for NodeError {
    fn from(e: LlmError) -> Self {
        NodeError::with_source("language model", e)
    }
}

/// The kind declaration.
pub fn kind() -> NodeKind {
    NodeKind::new(
        "llm.chat",
        "Answers each text prompt with a small language model (ChatML), streaming tokens.",
        |o| {
            Ok(Box::new(ChatNode {
                config: config(o)?,
                model: None,
            }))
        },
    )
    .input(PortSpec::new(
        "prompt",
        PortType::Text,
        "one user turn per packet",
    ))
    .output(PortSpec::new(
        "tokens",
        PortType::Token,
        "answer tokens as decoded (last flagged)",
    ))
    .output(PortSpec::new(
        "text",
        PortType::Text,
        "the whole answer, spanning the prompt's time",
    ))
    .option(OptionSpec::with_default(
        "model_dir",
        OptionType::Path,
        "models/smollm2-135m",
        "directory with model.onnx, tokenizer.json, generation.json",
    ))
    .option(OptionSpec::with_default(
        "system",
        OptionType::Str,
        DEFAULT_SYSTEM,
        "system prompt (empty: none)",
    ))
    .option(
        OptionSpec::with_default("max_tokens", OptionType::Int, 64, "most tokens per answer")
            .range(1.0, 8192.0),
    )
    .option(
        OptionSpec::with_default(
            "temperature",
            OptionType::Float,
            0.0,
            "0 = greedy; > 0 samples",
        )
        .range(0.0, 10.0),
    )
    .option(
        OptionSpec::with_default(
            "top_p",
            OptionType::Float,
            0.9,
            "nucleus mass kept when sampling",
        )
        .range(0.0, 1.0),
    )
    .option(
        OptionSpec::with_default(
            "seed",
            OptionType::Int,
            42,
            "sampling seed (reset for every answer)",
        )
        .range(0.0, 9.007_199_254_740_991e15),
    )
    .option(
        OptionSpec::with_default(
            "threads",
            OptionType::Int,
            1,
            "matmul threads (tract pool; clamped to the cores)",
        )
        .range(1.0, 64.0),
    )
    .option(OptionSpec::with_default(
        "prefix_cache",
        OptionType::Bool,
        true,
        "compute the system prompt once and reuse its KV cache",
    ))
    .option(OptionSpec::with_default(
        "kv_state",
        OptionType::Bool,
        true,
        "KV cache as tract state (false: explicit cache tensors)",
    ))
}

fn config(o: &Options) -> Result<ChatConfig, NodeError> {
    Ok(ChatConfig {
        model_dir: PathBuf::from(o.str("model_dir")?),
        system: o.str("system")?.to_string(),
        max_tokens: usize::try_from(o.u64("max_tokens")?).unwrap_or(usize::MAX),
        sampler: SamplerConfig {
            temperature: o.f64("temperature")? as f32,
            top_p: o.f64("top_p")? as f32,
            seed: o.u64("seed")?,
        },
        threads: usize::try_from(o.u64("threads")?).unwrap_or(1),
        prefix_cache: o.bool("prefix_cache")?,
        kv_state: o.bool("kv_state")?,
    })
}

/// The node: loads a [`ChatModel`] in `open`, answers each prompt in `process`.
struct ChatNode {
    config: ChatConfig,
    model: Option<ChatModel>,
}

impl Node for ChatNode {
    fn open(&mut self) -> Result<(), NodeError> {
        self.model = Some(ChatModel::load(self.config.clone())?);
        Ok(())
    }

    fn process(
        &mut self,
        _port: usize,
        packet: Packet,
        out: &mut Outputs,
    ) -> Result<(), NodeError> {
        let Payload::Text(prompt) = &packet.payload else {
            return Err(NodeError::new(format!(
                "input `prompt` expects text, got {}",
                packet.payload.port_type()
            )));
        };
        if prompt.text.trim().is_empty() {
            return Ok(());
        }
        let model = self
            .model
            .as_mut()
            .ok_or_else(|| NodeError::new("process called before open"))?;
        let t = packet.timestamp;
        let answer = model.generate(&prompt.text, |piece| {
            let token = Token {
                id: piece.id,
                text: Arc::from(piece.text),
                index: piece.index,
                last: piece.last,
            };
            out.send(TOKENS, Packet::new(t, Payload::Token(token)))
        })?;
        tracing::debug!(
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
        out.send(TEXT, Packet::new(t, Payload::Text(text)))
    }
}
