//! Small language models: `llm.chat` answers each text prompt with SmolLM2-135M-Instruct (or
//! any ChatML causal LM exported to ONNX), streaming tokens as they are decoded.
//!
//! Layers, from the bottom:
//! - [`model`]: the ONNX model on tract, with its KV cache either as tract state (after
//!   `transformers_detect_all`) or as explicit `past_key_values.*`/`present.*` tensors; a
//!   clonable [`Session`] hides which.
//! - [`sampler`]: greedy or temperature + top-p sampling with a seeded PCG generator.
//! - [`chat`]: [`ChatModel`], the generation loop (ChatML prompt, system prefix computed once
//!   and cloned per request, UTF-8-safe streaming, stop tokens). No engine types: usable on
//!   its own.
//! - [`conversation`]: [`Conversation`], memory across turns: the KV cache of the turns so
//!   far, a token budget, forgetting after a silence, revised speculative turns.
//! - [`node`]: the `llm.chat` node, a thin adapter from packets to [`ChatModel`].
//!
//! Loading goes through the shared [`crate::runtime::Model`] (threads, transform, errors); the
//! KV-cache session is built here on its tract plan, because prefix caching clones the state.

pub mod chat;
pub mod conversation;
pub mod model;
pub mod node;
pub mod sampler;

use std::path::PathBuf;

pub use chat::{
    Answer, ChatConfig, ChatModel, Piece, Progress, StopReason, TextStream, DEFAULT_SYSTEM,
    MAX_PROMPT_CHARS, PREFILL_CHUNK,
};
pub use conversation::{Conversation, ConversationConfig};
pub use model::{CacheForm, LanguageModel, LoadOptions, Session};
pub use sampler::{Rng, Sampler, SamplerConfig};
pub use tokenizers::Tokenizer;

use weir_engine::{DuplicateKind, Registry};

/// The command that fetches and converts every model.
pub const FETCH_COMMAND: &str = "bash tools/fetch-models.sh";

/// What can go wrong loading or running a language model.
#[derive(Debug, thiserror::Error)]
pub enum LlmError {
    /// A model file is not there.
    #[error(
        "{what} not found: {} (fetch the models with `{FETCH_COMMAND}`, or this one alone \
         with `bash tools/models/smollm2.sh`)",
        path.display()
    )]
    MissingFile {
        /// What the file is.
        what: &'static str,
        /// Where it was expected.
        path: PathBuf,
    },
    /// The shared runtime could not load or run the model file.
    #[error(transparent)]
    Model(#[from] crate::runtime::ModelError),
    /// A file exists but cannot be loaded.
    #[error("cannot load {}: {message}", path.display())]
    Load {
        /// The file.
        path: PathBuf,
        /// The cause.
        message: String,
    },
    /// The model's inputs or outputs are not those of a causal LM.
    #[error("{}: unsupported model interface: {message}", path.display())]
    Interface {
        /// The model file.
        path: PathBuf,
        /// What is missing or unexpected.
        message: String,
    },
    /// The tokenizer failed.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// The prompt does not fit in the model's positions.
    #[error("prompt of {tokens} tokens does not fit the model's {max} positions")]
    TooLong {
        /// Prompt tokens.
        tokens: usize,
        /// Position limit.
        max: usize,
    },
    /// The prompt is longer than [`chat::MAX_PROMPT_CHARS`].
    #[error("prompt of {chars} characters is longer than the limit of {max}")]
    TooManyChars {
        /// Prompt characters.
        chars: usize,
        /// The limit.
        max: usize,
    },
    /// Inference failed.
    #[error("inference failed: {0}")]
    Run(String),
}

/// Registers `llm.chat`.
pub fn register(registry: &mut Registry) -> Result<(), DuplicateKind> {
    registry.register(node::kind())
}
