//! The chat generation loop, usable without the engine: ChatML prompt, system-prompt prefix
//! cache, streamed UTF-8-safe pieces, stop tokens, greedy or sampled decoding.
//!
//! [`ChatModel::generate_with`] reports its progress to a callback that may stop it: after
//! each chunk of [`PREFILL_CHUNK`] prompt tokens and after every generated token, so the
//! caller (the `llm.chat` node checking for an interrupt) is never more than one model call
//! away from stopping. Prompts longer than [`MAX_PROMPT_CHARS`] characters, or whose tokens
//! do not fit the model's positions, are refused before any model call.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tokenizers::Tokenizer;

use super::model::{CacheForm, LanguageModel, LoadOptions, Session};
use super::sampler::{Sampler, SamplerConfig};
use super::LlmError;

/// The longest user prompt, in characters (checked before tokenizing). At SmolLM2-135M's
/// ~15 ms per prompt token on one core, 4096 characters (about 1000 tokens) are already
/// ~15 s of prompt processing.
pub const MAX_PROMPT_CHARS: usize = 4096;

/// Prompt tokens run per model call; the progress callback runs between chunks.
pub const PREFILL_CHUNK: usize = 64;

/// The default system prompt.
pub const DEFAULT_SYSTEM: &str =
    "You are a helpful assistant running on a small device. Answer briefly.";

/// Everything a [`ChatModel`] needs to load and generate.
#[derive(Clone, Debug)]
pub struct ChatConfig {
    /// Directory with `model.onnx`, `tokenizer.json` and (optional) `generation.json`.
    pub model_dir: PathBuf,
    /// System prompt; empty means no system turn.
    pub system: String,
    /// Most tokens generated per answer (the end token included).
    pub max_tokens: usize,
    /// Greedy or sampled decoding.
    pub sampler: SamplerConfig,
    /// Matrix-multiplication threads.
    pub threads: usize,
    /// Compute the system prompt's KV cache once and clone it for every request; `false`
    /// recomputes it each time (same tokens, slower).
    pub prefix_cache: bool,
    /// Let tract hold the KV cache as state (`transformers_detect_all`); `false` loads the
    /// graph as exported and feeds the cache tensors explicitly.
    pub kv_state: bool,
}

impl Default for ChatConfig {
    fn default() -> Self {
        ChatConfig {
            model_dir: PathBuf::from("models/smollm2-135m"),
            system: DEFAULT_SYSTEM.to_string(),
            max_tokens: 64,
            sampler: SamplerConfig::default(),
            threads: 1,
            prefix_cache: true,
            kv_state: true,
        }
    }
}

/// One streamed token of an answer.
#[derive(Clone, Debug, PartialEq)]
pub struct Piece {
    /// Token id.
    pub id: u32,
    /// Text this token completes; empty while a multi-byte character is still partial, and
    /// for the end token.
    pub text: String,
    /// Position in the answer, from 0.
    pub index: u32,
    /// True on the answer's last token.
    pub last: bool,
}

/// Why an answer ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// The model produced an end token (`<|im_end|>` or `<|endoftext|>`).
    EndToken,
    /// `max_tokens` was reached.
    MaxTokens,
    /// The model's position limit was reached.
    ContextFull,
    /// The caller's callback asked to stop (an interrupt): the answer is incomplete.
    Stopped,
}

/// What [`ChatModel::generate_with`] reports while it works.
#[derive(Clone, Debug, PartialEq)]
pub enum Progress {
    /// `done` of the prompt's `total` tokens have run through the model; the answer has not
    /// started. Reported after every chunk of [`PREFILL_CHUNK`] tokens, the last one included
    /// (so right before the first generated token).
    Prompt {
        /// Prompt tokens run so far.
        done: usize,
        /// Prompt tokens to run.
        total: usize,
    },
    /// A generated token.
    Piece(Piece),
}

/// A finished answer with its timings.
#[derive(Clone, Debug)]
pub struct Answer {
    /// Every generated token id, the end token included (when stopped: the tokens generated
    /// before the stop).
    pub ids: Vec<u32>,
    /// The answer text: exactly the concatenation of the pieces' texts.
    pub text: String,
    /// Why generation stopped.
    pub stop: StopReason,
    /// Tokens run before the first generated one (system prefix included when recomputed).
    pub prompt_tokens: usize,
    /// Time to run the prompt (prefix recomputation included when the cache is off).
    pub prompt_time: Duration,
    /// Time spent in single-token decode steps.
    pub decode_time: Duration,
    /// Number of single-token decode steps.
    pub decode_steps: usize,
}

impl Answer {
    /// Mean decode time per token in milliseconds (0 if no decode step ran).
    pub fn decode_ms_per_token(&self) -> f64 {
        if self.decode_steps == 0 {
            0.0
        } else {
            self.decode_time.as_secs_f64() * 1e3 / self.decode_steps as f64
        }
    }
}

/// Control-token ids of the chat format.
#[derive(Clone, Copy, Debug)]
struct ChatTokens {
    im_start: u32,
    im_end: u32,
}

/// A loaded chat model: tokenizer, language model, cached system prefix and sampler.
pub struct ChatModel {
    config: ChatConfig,
    lm: LanguageModel,
    tokenizer: Tokenizer,
    tokens: ChatTokens,
    stop: Vec<u32>,
    max_positions: usize,
    prefix_ids: Vec<u32>,
    /// The session after the system prefix (when `prefix_cache`).
    prefix: Option<Session>,
    prefix_time: Duration,
    sampler: Sampler,
}

impl std::fmt::Debug for ChatModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatModel")
            .field("config", &self.config)
            .field("cache_form", &self.lm.cache_form())
            .field("prefix_tokens", &self.prefix_ids.len())
            .finish_non_exhaustive()
    }
}

fn required(dir: &Path, name: &str, what: &'static str) -> Result<PathBuf, LlmError> {
    let path = dir.join(name);
    if path.is_file() {
        Ok(path)
    } else {
        Err(LlmError::MissingFile { what, path })
    }
}

fn tok_err(e: tokenizers::Error) -> LlmError {
    LlmError::Tokenizer(e.to_string())
}

/// The longest context Weir accepts from a model's `generation.json` (it sizes the KV cache).
pub const MAX_POSITIONS: usize = 131_072;

/// The most stop ids accepted from `generation.json`.
const MAX_STOP_IDS: usize = 64;

/// Stop ids and position limit from `generation.json`, with SmolLM2's values as defaults.
fn generation_settings(dir: &Path) -> Result<(Vec<u32>, usize), LlmError> {
    let path = dir.join("generation.json");
    let mut stop = vec![2, 0];
    let mut max_positions = 8192;
    if !path.is_file() {
        return Ok((stop, max_positions));
    }
    let bad = |message: String| LlmError::Load {
        path: path.clone(),
        message,
    };
    let text = std::fs::read_to_string(&path).map_err(|e| bad(e.to_string()))?;
    let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
    let ids = |v: &serde_json::Value| -> Vec<u32> {
        match v {
            serde_json::Value::Array(a) => a
                .iter()
                .filter_map(|x| x.as_u64()?.try_into().ok())
                .collect(),
            v => v
                .as_u64()
                .and_then(|x| x.try_into().ok())
                .into_iter()
                .collect(),
        }
    };
    if let Some(v) = json.get("eos_token_id") {
        stop = ids(v);
    }
    if let Some(v) = json.get("endoftext_token_id") {
        stop.extend(ids(v));
    }
    if stop.is_empty() {
        return Err(bad("no `eos_token_id`".into()));
    }
    if stop.len() > MAX_STOP_IDS {
        return Err(bad(format!(
            "{} stop ids; at most {MAX_STOP_IDS} are taken",
            stop.len()
        )));
    }
    if let Some(v) = json.get("max_positions") {
        max_positions = v
            .as_u64()
            .and_then(|n| usize::try_from(n).ok())
            .filter(|n| (1..=MAX_POSITIONS).contains(n))
            .ok_or_else(|| {
                bad(format!(
                    "`max_positions` is {v}; expected a whole number in 1..={MAX_POSITIONS}"
                ))
            })?;
    }
    Ok((stop, max_positions))
}

impl ChatModel {
    /// Loads the tokenizer and model from `config.model_dir` and runs the system prompt once
    /// when `config.prefix_cache` is on. Missing files are named with the command that fetches
    /// them.
    pub fn load(config: ChatConfig) -> Result<ChatModel, LlmError> {
        let dir = &config.model_dir;
        let model_path = required(dir, "model.onnx", "language model")?;
        let tokenizer_path = required(dir, "tokenizer.json", "tokenizer")?;
        let (mut stop, max_positions) = generation_settings(dir)?;
        let mut tokenizer = Tokenizer::from_file(&tokenizer_path).map_err(|e| LlmError::Load {
            path: tokenizer_path.clone(),
            message: e.to_string(),
        })?;
        // Text is always text: a user typing `<|im_end|>` must not end the turn.
        tokenizer.set_encode_special_tokens(true);
        let special = |name: &str| {
            tokenizer.token_to_id(name).ok_or_else(|| LlmError::Load {
                path: tokenizer_path.clone(),
                message: format!("no `{name}` token: not a ChatML tokenizer"),
            })
        };
        let tokens = ChatTokens {
            im_start: special("<|im_start|>")?,
            im_end: special("<|im_end|>")?,
        };
        // A turn always ends at `<|im_end|>` and `<|endoftext|>`, whatever generation.json says.
        let endoftext = tokenizer.token_to_id("<|endoftext|>");
        for id in [Some(tokens.im_end), endoftext].into_iter().flatten() {
            if !stop.contains(&id) {
                stop.push(id);
            }
        }
        let lm = LanguageModel::load(
            &model_path,
            &LoadOptions {
                transform: config.kv_state,
                threads: config.threads.max(1),
                ..LoadOptions::default()
            },
        )?;
        let sampler = Sampler::new(config.sampler.clone());
        let mut chat = ChatModel {
            lm,
            tokenizer,
            tokens,
            stop,
            max_positions,
            prefix_ids: Vec::new(),
            prefix: None,
            prefix_time: Duration::ZERO,
            sampler,
            config,
        };
        chat.prefix_ids = chat.system_ids(&chat.config.system)?;
        if chat.config.prefix_cache {
            let started = Instant::now();
            chat.prefix = Some(chat.prefix_session()?);
            chat.prefix_time = started.elapsed();
        }
        Ok(chat)
    }

    /// The configuration it was loaded with.
    pub fn config(&self) -> &ChatConfig {
        &self.config
    }

    /// The KV-cache form of the loaded model.
    pub fn cache_form(&self) -> CacheForm {
        self.lm.cache_form()
    }

    /// Time spent loading and optimizing the ONNX model.
    pub fn load_time(&self) -> Duration {
        self.lm.load_time()
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// Turns the system-prefix cache on (computing it now) or off.
    pub fn set_prefix_cache(&mut self, on: bool) -> Result<(), LlmError> {
        self.config.prefix_cache = on;
        if !on {
            self.prefix = None;
            self.prefix_time = Duration::ZERO;
        } else if self.prefix.is_none() {
            let started = Instant::now();
            self.prefix = Some(self.prefix_session()?);
            self.prefix_time = started.elapsed();
        }
        Ok(())
    }

    /// Tokens of the system prefix.
    pub fn prefix_tokens(&self) -> usize {
        self.prefix_ids.len()
    }

    /// Time the system prefix took when it was cached in `load` (zero without the cache).
    pub fn prefix_time(&self) -> Duration {
        self.prefix_time
    }

    /// Token ids of plain `text` (control-token names in it are encoded as text).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, LlmError> {
        Ok(self
            .tokenizer
            .encode(text, false)
            .map_err(tok_err)?
            .get_ids()
            .to_vec())
    }

    /// `<|im_start|>system\n{system}<|im_end|>\n`, or nothing for an empty system prompt.
    fn system_ids(&self, system: &str) -> Result<Vec<u32>, LlmError> {
        if system.is_empty() {
            return Ok(Vec::new());
        }
        let mut ids = vec![self.tokens.im_start];
        ids.extend(self.encode("system\n")?);
        ids.extend(self.encode(system)?);
        ids.push(self.tokens.im_end);
        ids.extend(self.encode("\n")?);
        Ok(ids)
    }

    /// `<|im_start|>user\n{text}<|im_end|>\n<|im_start|>assistant\n`.
    pub fn user_ids(&self, text: &str) -> Result<Vec<u32>, LlmError> {
        let mut ids = vec![self.tokens.im_start];
        ids.extend(self.encode("user\n")?);
        ids.extend(self.encode(text)?);
        ids.push(self.tokens.im_end);
        ids.extend(self.encode("\n")?);
        ids.push(self.tokens.im_start);
        ids.extend(self.encode("assistant\n")?);
        Ok(ids)
    }

    /// The full prompt ids (configured system prefix + user turn) for `text`.
    pub fn prompt_ids(&self, text: &str) -> Result<Vec<u32>, LlmError> {
        let mut ids = self.prefix_ids.clone();
        ids.extend(self.user_ids(text)?);
        Ok(ids)
    }

    /// The ChatML prompt ids for any `system` prompt and user `text`.
    pub fn chatml_ids(&self, system: &str, text: &str) -> Result<Vec<u32>, LlmError> {
        let mut ids = self.system_ids(system)?;
        ids.extend(self.user_ids(text)?);
        Ok(ids)
    }

    /// A session that has run the system prefix.
    fn prefix_session(&self) -> Result<Session, LlmError> {
        let mut session = self.lm.session()?;
        if !self.prefix_ids.is_empty() {
            session.feed(&self.lm, &self.prefix_ids)?;
        }
        Ok(session)
    }

    /// Whether the answer ends with token `id`, the `generated`-th, with `cached` tokens in
    /// the KV cache.
    fn stop_reason(&self, id: u32, generated: usize, cached: usize) -> Option<StopReason> {
        if self.stop.contains(&id) {
            Some(StopReason::EndToken)
        } else if generated >= self.config.max_tokens.max(1) {
            Some(StopReason::MaxTokens)
        } else if cached >= self.max_positions {
            Some(StopReason::ContextFull)
        } else {
            None
        }
    }

    /// Decodes `ids` to text, special tokens dropped.
    pub fn decode(&self, ids: &[u32]) -> Result<String, LlmError> {
        self.tokenizer.decode(ids, true).map_err(tok_err)
    }

    /// Answers one user turn (no memory of earlier turns), calling `on_piece` for every token
    /// as soon as it is decoded; an error from `on_piece` stops generation and is returned.
    pub fn generate<E: From<LlmError>>(
        &mut self,
        user: &str,
        mut on_piece: impl FnMut(Piece) -> Result<(), E>,
    ) -> Result<Answer, E> {
        self.generate_with(user, |progress| {
            if let Progress::Piece(piece) = progress {
                on_piece(piece)?;
            }
            Ok(ControlFlow::Continue(()))
        })
    }

    /// Checks a user prompt against [`MAX_PROMPT_CHARS`] and returns its ChatML ids; the
    /// prompt (with the system prefix) must also leave at least one of the model's positions
    /// free ([`LlmError::TooLong`]).
    pub fn checked_user_ids(&self, user: &str) -> Result<Vec<u32>, LlmError> {
        let user = user.trim();
        let chars = user.chars().count();
        if chars > MAX_PROMPT_CHARS {
            return Err(LlmError::TooManyChars {
                chars,
                max: MAX_PROMPT_CHARS,
            });
        }
        let user_ids = self.user_ids(user)?;
        let tokens = self.prefix_ids.len() + user_ids.len();
        if tokens >= self.max_positions {
            return Err(LlmError::TooLong {
                tokens,
                max: self.max_positions,
            });
        }
        Ok(user_ids)
    }

    /// Answers one user turn (no memory of earlier turns), reporting [`Progress`] to
    /// `on_progress`: after every chunk of the prompt and for every generated token, as soon
    /// as it is decoded. When `on_progress` returns [`ControlFlow::Break`], generation ends
    /// before the next model call and the answer is [`StopReason::Stopped`]; an error from it
    /// ends generation and is returned. A prompt that is too long ([`LlmError::TooManyChars`],
    /// [`LlmError::TooLong`]) is refused before any model call.
    pub fn generate_with<E: From<LlmError>>(
        &mut self,
        user: &str,
        on_progress: impl FnMut(Progress) -> Result<ControlFlow<()>, E>,
    ) -> Result<Answer, E> {
        let started = Instant::now();
        let user_ids = self.checked_user_ids(user)?;
        let mut session = self.fresh_session()?;
        let prompt_tokens = if self.prefix.is_some() {
            user_ids.len()
        } else {
            session.len() + user_ids.len()
        };
        self.answer_in(&mut session, &user_ids, prompt_tokens, started, on_progress)
    }

    /// A session holding the system prefix: a clone of the cached one, or computed now.
    pub fn fresh_session(&self) -> Result<Session, LlmError> {
        match &self.prefix {
            Some(prefix) => Ok(prefix.clone()),
            None => self.prefix_session(),
        }
    }

    /// True if the system prefix is cached (a fresh session costs a clone, not a prefill).
    pub fn prefix_cached(&self) -> bool {
        self.prefix.is_some()
    }

    /// The model's position limit (from `generation.json`).
    pub fn max_positions(&self) -> usize {
        self.max_positions
    }

    /// `<|im_end|>` and the newline that close a turn in ChatML.
    pub(crate) fn turn_end_ids(&self) -> Result<Vec<u32>, LlmError> {
        let mut ids = vec![self.tokens.im_end];
        ids.extend(self.encode("\n")?);
        Ok(ids)
    }

    /// True if `id` ends an answer (an end token).
    pub(crate) fn is_stop_id(&self, id: u32) -> bool {
        self.stop.contains(&id)
    }

    /// Runs `feed` (ChatML ids, ending with the assistant's turn opening) through the model
    /// after what `session` already holds, then generates the answer, reporting [`Progress`]
    /// as [`ChatModel::generate_with`] does. On return the session holds `feed` and every
    /// generated token but the last.
    pub fn continue_session<E: From<LlmError>>(
        &mut self,
        session: &mut Session,
        feed: &[u32],
        on_progress: impl FnMut(Progress) -> Result<ControlFlow<()>, E>,
    ) -> Result<Answer, E> {
        self.answer_in(session, feed, feed.len(), Instant::now(), on_progress)
    }

    /// [`ChatModel::continue_session`], counting `prompt_tokens` as the prompt's and timing
    /// it from `started`.
    pub(crate) fn answer_in<E: From<LlmError>>(
        &mut self,
        session: &mut Session,
        feed: &[u32],
        prompt_tokens: usize,
        started: Instant,
        mut on_progress: impl FnMut(Progress) -> Result<ControlFlow<()>, E>,
    ) -> Result<Answer, E> {
        let mut answer = Answer {
            ids: Vec::new(),
            text: String::new(),
            stop: StopReason::Stopped,
            prompt_tokens,
            prompt_time: Duration::ZERO,
            decode_time: Duration::ZERO,
            decode_steps: 0,
        };
        let mut logits = Vec::new();
        let mut done = 0;
        for chunk in feed.chunks(PREFILL_CHUNK) {
            logits = session.feed(&self.lm, chunk)?;
            done += chunk.len();
            let progress = Progress::Prompt {
                done,
                total: feed.len(),
            };
            if on_progress(progress)?.is_break() {
                answer.prompt_time = started.elapsed();
                return Ok(answer);
            }
        }
        answer.prompt_time = started.elapsed();
        self.sampler.reset();
        let mut stream = TextStream::default();
        loop {
            let id = self.sampler.sample(&logits);
            answer.ids.push(id);
            let index = answer.ids.len() - 1;
            let stop = self.stop_reason(id, answer.ids.len(), session.len());
            let mut text = String::new();
            if stop != Some(StopReason::EndToken) {
                text = stream.push(&self.tokenizer, id)?;
            }
            if stop.is_some() {
                text.push_str(&stream.finish(&self.tokenizer)?);
            }
            let flow = on_progress(Progress::Piece(Piece {
                id,
                text,
                index: u32::try_from(index).unwrap_or(u32::MAX),
                last: stop.is_some(),
            }))?;
            if flow.is_break() {
                // Even on the last token: the caller did not take the answer whole.
                break;
            }
            if let Some(stop) = stop {
                answer.stop = stop;
                break;
            }
            let step = Instant::now();
            logits = session.feed(&self.lm, &[id])?;
            answer.decode_time += step.elapsed();
            answer.decode_steps += 1;
        }
        answer.text = stream.text;
        Ok(answer)
    }
}

/// Turns token ids into text pieces, holding back bytes of a character split across tokens.
///
/// Decoding all ids so far and emitting the new suffix works for any tokenizer decoder; the
/// answer is short, so re-decoding costs microseconds against milliseconds per token.
#[derive(Clone, Debug, Default)]
pub struct TextStream {
    ids: Vec<u32>,
    /// Concatenation of every piece emitted so far.
    text: String,
}

impl TextStream {
    /// An empty stream.
    pub fn new() -> TextStream {
        TextStream::default()
    }

    /// Everything emitted so far.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Adds `id`; returns the new text if it ends on a complete character, else "".
    pub fn push(&mut self, tokenizer: &Tokenizer, id: u32) -> Result<String, LlmError> {
        self.ids.push(id);
        let full = tokenizer.decode(&self.ids, true).map_err(tok_err)?;
        if full.ends_with(char::REPLACEMENT_CHARACTER) {
            return Ok(String::new());
        }
        Ok(self.take_new(&full))
    }

    /// Everything not yet emitted, incomplete characters included (as U+FFFD).
    pub fn finish(&mut self, tokenizer: &Tokenizer) -> Result<String, LlmError> {
        let full = tokenizer.decode(&self.ids, true).map_err(tok_err)?;
        Ok(self.take_new(&full))
    }

    fn take_new(&mut self, full: &str) -> String {
        match full.strip_prefix(self.text.as_str()) {
            Some(new) => {
                let new = new.to_string();
                self.text.push_str(&new);
                new
            }
            None => String::new(),
        }
    }
}
