//! Memory across turns: a [`Conversation`] keeps the KV cache of everything said so far, so a
//! new user turn is appended to it instead of recomputing the history.
//!
//! - **Budget.** The history (earlier turns, each a user prompt and the answer as far as it
//!   was generated) holds at most [`ConversationConfig::memory_tokens`] tokens together with
//!   the new prompt; when a new prompt does not fit, the oldest turns are dropped and the
//!   rest is recomputed once after the cached system prefix (positions move, so the cache of
//!   the kept turns cannot be reused).
//! - **Forgetting.** A turn that starts more than [`ConversationConfig::forget_after`] after
//!   the previous one ended (media time: the next kiosk customer) starts afresh from the
//!   system prefix.
//! - **Interrupted answers** stay in the history as far as they were generated, closed as a
//!   turn, so "no, I meant ..." has its context.
//! - **Revised turns.** A speculative turn (a draft transcript answered early, then
//!   interrupted because the user went on) is followed by the whole turn's transcript, which
//!   starts at the same time: that turn replaces the draft's instead of following it.
//!
//! Nothing here knows the engine: times are media times as [`Duration`]s from the stream's
//! start.

use std::collections::VecDeque;
use std::ops::ControlFlow;
use std::time::{Duration, Instant};

use super::chat::{Answer, ChatModel, Progress, StopReason};
use super::model::Session;
use super::LlmError;

/// How much a [`Conversation`] remembers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConversationConfig {
    /// Most tokens of history plus the new prompt; the oldest turns are dropped beyond it.
    pub memory_tokens: usize,
    /// A turn starting this long after the previous one ended starts a new conversation.
    pub forget_after: Duration,
}

impl Default for ConversationConfig {
    fn default() -> Self {
        ConversationConfig {
            memory_tokens: 1024,
            forget_after: Duration::from_secs(60),
        }
    }
}

/// What a conversation holds between turns; cloning it is cheap (the KV cache's tensors are
/// shared until the next model call replaces them).
#[derive(Clone, Debug, Default)]
struct History {
    /// The session after the system prefix and the turns fed so far; `None` starts afresh.
    session: Option<Session>,
    /// Every remembered turn's ids, oldest first: user turn, answer, `<|im_end|>\n`.
    turns: VecDeque<Vec<u32>>,
    /// Total ids in `turns`.
    tokens: usize,
    /// Trailing ids of the last turn that are not in the session yet (they are fed with the
    /// next prompt, so closing a turn costs no model call of its own).
    unfed: usize,
}

/// The latest turn: its media span, whether it was interrupted, and the history before it.
#[derive(Debug)]
struct LastTurn {
    start: Duration,
    end: Duration,
    interrupted: bool,
    before: History,
}

/// A conversation with a [`ChatModel`]: its KV cache and the turns it remembers.
#[derive(Debug)]
pub struct Conversation {
    config: ConversationConfig,
    history: History,
    last: Option<LastTurn>,
    forgotten: u64,
    dropped_turns: u64,
}

impl Conversation {
    /// An empty conversation.
    pub fn new(config: ConversationConfig) -> Conversation {
        Conversation {
            config,
            history: History::default(),
            last: None,
            forgotten: 0,
            dropped_turns: 0,
        }
    }

    /// Turns remembered.
    pub fn turns(&self) -> usize {
        self.history.turns.len()
    }

    /// Tokens of history remembered (the system prefix not counted).
    pub fn tokens(&self) -> usize {
        self.history.tokens
    }

    /// Every remembered token after the system prefix, oldest first: each turn's ChatML user
    /// turn, its answer as far as it was generated, and `<|im_end|>\n`.
    pub fn history_ids(&self) -> Vec<u32> {
        self.history.turns.iter().flatten().copied().collect()
    }

    /// How many times the conversation was forgotten after a silence.
    pub fn forgotten(&self) -> u64 {
        self.forgotten
    }

    /// How many old turns were dropped to keep within the budget.
    pub fn dropped_turns(&self) -> u64 {
        self.dropped_turns
    }

    /// Marks the latest turn as interrupted (the engine's flush): a turn that comes next with
    /// the same start revises it.
    pub fn interrupted(&mut self) {
        if let Some(last) = &mut self.last {
            last.interrupted = true;
        }
    }

    /// Forgets everything; the next turn starts from the system prefix.
    pub fn clear(&mut self) {
        self.history = History::default();
        self.last = None;
    }

    /// Makes room for a prompt of `prompt` tokens: drops the oldest turns while the history
    /// and the prompt exceed the budget or, with the prefix and an answer of `answer` tokens,
    /// the model's positions. After a drop the session is gone: positions moved, so the kept
    /// turns are recomputed after the prefix.
    fn make_room(&mut self, prompt: usize, prefix: usize, answer: usize, positions: usize) {
        let h = &mut self.history;
        while let Some(oldest) = h.turns.front() {
            let fits = h.tokens + prompt <= self.config.memory_tokens
                && prefix + h.tokens + prompt + answer < positions;
            if fits {
                break;
            }
            h.tokens -= oldest.len();
            h.turns.pop_front();
            h.session = None;
            self.dropped_turns += 1;
        }
    }
}

impl ChatModel {
    /// Answers one user turn of `conversation`, spanning `start..end` of media time: the turn
    /// is appended to the remembered history (see [`Conversation`]) and the answer reported
    /// through `on_progress` as in [`ChatModel::generate_with`]. A refused prompt
    /// ([`LlmError::TooManyChars`], [`LlmError::TooLong`]) changes nothing; a failed model
    /// call forgets the conversation.
    pub fn converse<E: From<LlmError>>(
        &mut self,
        conversation: &mut Conversation,
        user: &str,
        (start, end): (Duration, Duration),
        on_progress: impl FnMut(Progress) -> Result<ControlFlow<()>, E>,
    ) -> Result<Answer, E> {
        let started = Instant::now();
        let user_ids = self.checked_user_ids(user)?;
        if let Some(last) = conversation.last.take() {
            if last.interrupted && last.start == start {
                conversation.history = last.before;
            } else if start.saturating_sub(last.end) > conversation.config.forget_after {
                conversation.history = History::default();
                conversation.forgotten += 1;
            }
        }
        let before = conversation.history.clone();
        conversation.make_room(
            user_ids.len(),
            self.prefix_tokens(),
            self.config().max_tokens,
            self.max_positions(),
        );
        let h = &mut conversation.history;
        let (mut session, recomputed) = match h.session.take() {
            Some(session) => (session, 0),
            None => {
                // Afresh, or after a drop: every remembered turn is fed after the prefix.
                h.unfed = h.tokens;
                let prefix = if self.prefix_cached() {
                    0
                } else {
                    self.prefix_tokens()
                };
                (self.fresh_session()?, prefix)
            }
        };
        let mut feed: Vec<u32> = h
            .turns
            .iter()
            .flatten()
            .copied()
            .skip(h.tokens - h.unfed)
            .collect();
        feed.extend_from_slice(&user_ids);
        let prompt_tokens = recomputed + feed.len();
        let answer = match self.answer_in(&mut session, &feed, prompt_tokens, started, on_progress)
        {
            Ok(answer) => answer,
            Err(e) => {
                // The session may be half-fed: start afresh next time.
                conversation.clear();
                return Err(e);
            }
        };
        if answer.ids.is_empty() {
            // Stopped before the answer began: the turn never happened.
            conversation.history = before;
            return Ok(answer);
        }
        // The session holds everything fed and every generated token but the last; the turn
        // is closed (end token, newline) when the next prompt is fed.
        let generated = answer.ids.len();
        let mut turn = user_ids;
        turn.extend_from_slice(&answer.ids[..generated - 1]);
        let last_id = answer.ids[generated - 1];
        if !self.is_stop_id(last_id) {
            turn.push(last_id);
        }
        let in_session = turn.len() - usize::from(!self.is_stop_id(last_id));
        turn.extend(self.turn_end_ids()?);
        let h = &mut conversation.history;
        h.unfed = turn.len() - in_session;
        h.tokens += turn.len();
        h.turns.push_back(turn);
        h.session = Some(session);
        conversation.last = Some(LastTurn {
            start,
            end,
            interrupted: answer.stop == StopReason::Stopped,
            before,
        });
        Ok(answer)
    }
}
