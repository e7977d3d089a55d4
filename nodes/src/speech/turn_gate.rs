//! `speech.turn_gate`: holds what was derived from a speculative turn (its transcript, the
//! answer's tokens and text) until the VAD confirms that the turn is over.
//!
//! ```yaml
//! vad:  { node: speech.vad, in: { audio: resample.audio },
//!         with: { min_silence_ms: 500, padding_ms: 200, draft_silence_ms: 200 } }
//! asr:  { node: speech.whisper, in: { segment: vad.draft }, interrupt: vad.resumed }
//! slm:  { node: llm.chat, in: { prompt: asr.text } }
//! turn: { node: speech.turn_gate, merge_wait_ms: 0,
//!         in: { confirm: vad.speech_end, transcript: asr.text, tokens: slm.tokens, answer: slm.text } }
//! ```
//! Recognition and the answer start on the VAD's `draft` (after `draft_silence_ms` of
//! silence) instead of waiting for `min_silence_ms`. If the user goes on speaking, the VAD's
//! `resumed` interrupts that work and everything downstream of it, this gate included, which
//! discards what it holds. A packet passes once a `speech_end` event at or after its
//! timestamp has arrived (transcripts and answers carry the start of their segment, so a
//! turn's packets pass with the end of that turn's speech, and the next turn's wait for
//! theirs); later packets of a confirmed turn pass at once. Nothing speculative reaches the
//! outputs. Other events on `confirm` are ignored.

use std::collections::VecDeque;

use weir_engine::{
    Context, Incoming, Input, NoConfig, NodeError, NodeKind, Output, Packet, Ports, Processor,
    Timestamp,
};
use weir_media::{Event, Text, Token};

/// The most packets held for one unconfirmed turn; older ones are dropped beyond it (a
/// turn that is never confirmed must not grow memory).
pub const MAX_HELD: usize = 4096;

/// The ports of `speech.turn_gate`.
pub struct GatePorts {
    confirm: Input<Event>,
    transcript_in: Input<Text>,
    tokens_in: Input<Token>,
    answer_in: Input<Text>,
    transcript: Output<Text>,
    tokens: Output<Token>,
    answer: Output<Text>,
}

fn ports(p: &mut Ports) -> GatePorts {
    GatePorts {
        confirm: p.input("confirm", "`speech_end` events: the turn is over"),
        transcript_in: p.optional_input("transcript", "transcripts of draft segments"),
        tokens_in: p.optional_input("tokens", "answer tokens generated on a draft"),
        answer_in: p.optional_input("answer", "whole answers generated on a draft"),
        transcript: p.output("transcript", "confirmed transcripts"),
        tokens: p.output("tokens", "confirmed answer tokens"),
        answer: p.output("answer", "confirmed answers"),
    }
}

/// The kind declaration.
pub fn kind() -> NodeKind {
    NodeKind::processor(
        "speech.turn_gate",
        "Holds transcripts and answers of a speculative turn until the turn is confirmed.",
        ports,
        |_: NoConfig, ports| {
            Ok(TurnGate {
                ports,
                confirmed: None,
                held: VecDeque::new(),
                dropped: 0,
            })
        },
    )
}

/// Which output a held packet goes to.
#[derive(Clone, Copy, Debug)]
enum Lane {
    Transcript,
    Tokens,
    Answer,
}

/// The gate: the end of the latest confirmed turn, and what waits for a later one.
pub struct TurnGate {
    ports: GatePorts,
    confirmed: Option<Timestamp>,
    held: VecDeque<(Lane, Packet)>,
    dropped: u64,
}

impl TurnGate {
    fn passes(&self, packet: &Packet) -> bool {
        self.confirmed.is_some_and(|end| packet.timestamp <= end)
    }

    fn send(&self, lane: Lane, packet: Packet, ctx: &mut Context) -> Result<(), NodeError> {
        match lane {
            Lane::Transcript => ctx.forward(self.ports.transcript, packet),
            Lane::Tokens => ctx.forward(self.ports.tokens, packet),
            Lane::Answer => ctx.forward(self.ports.answer, packet),
        }
    }
}

impl Processor for TurnGate {
    fn process(&mut self, input: Incoming, ctx: &mut Context) -> Result<(), NodeError> {
        if let Some(event) = self.ports.confirm.get(&input) {
            if &*event.name != "speech_end" {
                return Ok(());
            }
            self.confirmed = Some(input.timestamp().max(self.confirmed.unwrap_or_default()));
            while let Some((_, p)) = self.held.front() {
                if !self.passes(p) {
                    break;
                }
                if let Some((lane, packet)) = self.held.pop_front() {
                    self.send(lane, packet, ctx)?;
                }
            }
            return Ok(());
        }
        let lane = if self.ports.transcript_in.get(&input).is_some() {
            Lane::Transcript
        } else if self.ports.tokens_in.get(&input).is_some() {
            Lane::Tokens
        } else if self.ports.answer_in.get(&input).is_some() {
            Lane::Answer
        } else {
            return Err(NodeError::new("a packet on no known input"));
        };
        let packet = input.packet;
        if self.held.is_empty() && self.passes(&packet) {
            return self.send(lane, packet, ctx);
        }
        if self.held.len() == MAX_HELD {
            self.held.pop_front();
            self.dropped += 1;
            if self.dropped.is_power_of_two() {
                tracing::warn!(
                    dropped = self.dropped,
                    "speech.turn_gate: a turn was never confirmed; dropping its oldest packets"
                );
            }
        }
        self.held.push_back((lane, packet));
        Ok(())
    }

    fn flush(&mut self, _ctx: &mut Context) -> Result<(), NodeError> {
        if !self.held.is_empty() {
            tracing::debug!(
                discarded = self.held.len(),
                "speech.turn_gate: speculative turn withdrawn"
            );
        }
        self.held.clear();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use weir_engine::testing::NodeRunner;

    fn at(ms: u64) -> Timestamp {
        Timestamp::from_nanos(ms * 1_000_000)
    }

    fn text(ms: u64, s: &str) -> Packet {
        Packet::new(
            at(ms),
            Text {
                text: Arc::from(s),
                start: at(ms),
                end: at(ms + 500),
            },
        )
    }

    fn token(ms: u64, index: u32) -> Packet {
        Packet::new(
            at(ms),
            Token {
                id: index,
                text: Arc::from("x"),
                index,
                last: false,
            },
        )
    }

    fn speech_end(ms: u64) -> Packet {
        Packet::new(at(ms), Event::new("speech_end", serde_json::json!({})))
    }

    #[test]
    fn a_turn_passes_once_its_speech_end_arrives_and_the_next_waits_for_its_own() {
        let out = NodeRunner::new(kind())
            .feed("transcript", [text(0, "first"), text(2000, "second")])
            .feed("tokens", [token(0, 0), token(0, 1), token(0, 2)])
            .feed(
                "confirm",
                [
                    Packet::new(at(700), Event::new("speech_start", serde_json::json!({}))),
                    speech_end(900),
                ],
            )
            .run()
            .unwrap();
        let heard: Vec<&str> = out
            .values::<Text>("transcript")
            .iter()
            .map(|t| &*t.text)
            .collect();
        assert_eq!(heard, ["first"], "the second turn was never confirmed");
        assert_eq!(out.values::<Token>("tokens").len(), 3);
    }

    #[test]
    fn an_interrupt_withdraws_what_is_held() {
        let out = NodeRunner::new(kind())
            .feed("transcript", [text(0, "draft")])
            .feed("confirm", [speech_end(900)])
            .interrupt_at([speech_end(500)])
            .run()
            .unwrap();
        assert!(out.packets("transcript").is_empty());
        assert_eq!(out.report.node("node").unwrap().interrupts, 1);
    }
}
