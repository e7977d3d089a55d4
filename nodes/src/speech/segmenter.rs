//! Turns per-window speech decisions into speech segments: minimum speech and silence
//! durations, padding, and a maximum segment length. Shared by every VAD node; a plain
//! struct, testable without the engine.

use std::sync::Arc;

use weir_media::SpeechSegment;

/// Durations that shape segments, in milliseconds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SegmenterConfig {
    /// Sample rate of the audio.
    pub rate: u32,
    /// Speech shorter than this is ignored.
    pub min_speech_ms: f64,
    /// Silence shorter than this does not end a segment.
    pub min_silence_ms: f64,
    /// Audio kept before and after the speech.
    pub padding_ms: f64,
    /// Segments longer than this are cut (e.g. 30 s for Whisper).
    pub max_segment_ms: f64,
    /// Silence after which a draft of the segment is sent before `min_silence_ms` confirms
    /// it (speculative turn-taking); 0 sends none. At least `padding_ms`, so a draft holds
    /// exactly the audio of the final segment.
    pub draft_silence_ms: f64,
}

/// What the segmenter found.
#[derive(Clone, Debug, PartialEq)]
pub enum SegmentEvent {
    /// Speech started at this sample (confirmed after `min_speech_ms`).
    Start(u64),
    /// Speech ended at this sample.
    End(u64),
    /// A finished segment, padding included.
    Segment(SpeechSegment),
    /// A draft of the open segment after `draft_silence_ms` of silence: the same audio the
    /// final segment will hold if the silence lasts. A segment without a standing draft
    /// (drafts off, a length cut, the end of the stream) is sent as a draft just before its
    /// end, so a graph that works on drafts sees every segment.
    Draft(SpeechSegment),
    /// Speech resumed at this sample after a draft was sent: the draft is void.
    Resumed(u64),
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum State {
    Silence,
    Candidate {
        start: u64,
        speech: u64,
        silence: u64,
    },
    Speech {
        start: u64,
        end: u64,
        drafted: bool,
    },
}

/// The segmentation state machine.
pub struct Segmenter {
    rate: u32,
    min_speech: u64,
    min_silence: u64,
    pad: u64,
    max_len: u64,
    /// 0: no drafts.
    draft_silence: u64,
    state: State,
    buf: Vec<f32>,
    buf_start: u64,
    pos: u64,
    last_end: u64,
}

fn ms_to_samples(ms: f64, rate: u32) -> u64 {
    (ms.max(0.0) / 1000.0 * f64::from(rate)).round() as u64
}

impl Segmenter {
    /// A segmenter at the start of a stream.
    pub fn new(c: SegmenterConfig) -> Self {
        Segmenter {
            rate: c.rate,
            min_speech: ms_to_samples(c.min_speech_ms, c.rate),
            min_silence: ms_to_samples(c.min_silence_ms, c.rate).max(1),
            pad: ms_to_samples(c.padding_ms, c.rate),
            max_len: ms_to_samples(c.max_segment_ms, c.rate).max(1),
            draft_silence: ms_to_samples(c.draft_silence_ms, c.rate),
            state: State::Silence,
            buf: Vec::new(),
            buf_start: 0,
            pos: 0,
            last_end: 0,
        }
    }

    /// Index of the next sample expected.
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// Adds one analysis window of mono samples and whether it holds speech.
    pub fn push(&mut self, window: &[f32], speech: bool, events: &mut Vec<SegmentEvent>) {
        let p = self.pos;
        let n = window.len() as u64;
        self.buf.extend_from_slice(window);
        self.pos += n;
        self.state = match self.state {
            State::Silence if speech => self.candidate(p, n, events),
            State::Silence => State::Silence,
            State::Candidate {
                start,
                speech: s,
                silence,
            } => {
                if speech {
                    self.candidate_grows(start, s + n, events)
                } else if silence + n >= self.min_silence {
                    State::Silence
                } else {
                    State::Candidate {
                        start,
                        speech: s,
                        silence: silence + n,
                    }
                }
            }
            State::Speech {
                start,
                end,
                drafted,
            } => {
                if speech {
                    if drafted {
                        events.push(SegmentEvent::Resumed(p));
                    }
                    let end = p + n;
                    if end - start >= self.max_len {
                        self.emit(start, end, false, events);
                        self.candidate(end, 0, events)
                    } else {
                        State::Speech {
                            start,
                            end,
                            drafted: false,
                        }
                    }
                } else if self.pos - end >= self.min_silence {
                    self.emit(start, end, drafted, events);
                    State::Silence
                } else if !drafted && self.draft_silence > 0 && self.pos - end >= self.draft_silence
                {
                    events.push(SegmentEvent::Draft(self.segment(start, end)));
                    State::Speech {
                        start,
                        end,
                        drafted: true,
                    }
                } else {
                    State::Speech {
                        start,
                        end,
                        drafted,
                    }
                }
            }
        };
        self.trim();
    }

    /// Ends the stream: a segment in progress is emitted up to the last speech.
    pub fn finish(&mut self, events: &mut Vec<SegmentEvent>) {
        if let State::Speech {
            start,
            end,
            drafted,
        } = self.state
        {
            self.emit(start, end, drafted, events);
        }
        self.state = State::Silence;
    }

    fn candidate(&mut self, start: u64, speech: u64, events: &mut Vec<SegmentEvent>) -> State {
        self.candidate_grows(start, speech, events)
    }

    fn candidate_grows(
        &mut self,
        start: u64,
        speech: u64,
        events: &mut Vec<SegmentEvent>,
    ) -> State {
        if speech > 0 && speech >= self.min_speech {
            events.push(SegmentEvent::Start(start));
            State::Speech {
                start,
                end: self.pos,
                drafted: false,
            }
        } else {
            State::Candidate {
                start,
                speech,
                silence: 0,
            }
        }
    }

    /// The segment of speech from `start` to `end`, padded as far as the audio allows.
    fn segment(&self, start: u64, end: u64) -> SpeechSegment {
        let from = start
            .saturating_sub(self.pad)
            .max(self.last_end)
            .max(self.buf_start);
        let to = (end + self.pad).min(self.pos);
        let a = (from - self.buf_start) as usize;
        let b = (to - self.buf_start) as usize;
        SpeechSegment {
            rate: self.rate,
            start_sample: from,
            samples: Arc::from(&self.buf[a..b]),
        }
    }

    /// Ends a segment: a draft first unless one stands (drafts off, a length cut, the end
    /// of the stream), so every segment also goes out as a draft, exactly once.
    fn emit(&mut self, start: u64, end: u64, drafted: bool, events: &mut Vec<SegmentEvent>) {
        let segment = self.segment(start, end);
        self.last_end = segment.end_sample();
        if !drafted {
            events.push(SegmentEvent::Draft(segment.clone()));
        }
        events.push(SegmentEvent::End(end));
        events.push(SegmentEvent::Segment(segment));
    }

    /// Drops buffered audio that no future segment can include.
    fn trim(&mut self) {
        let keep_from = match self.state {
            State::Silence => self.pos.saturating_sub(self.pad),
            State::Candidate { start, .. } | State::Speech { start, .. } => {
                start.saturating_sub(self.pad)
            }
        }
        .max(self.buf_start);
        let drop = (keep_from - self.buf_start) as usize;
        // Amortize: move memory only when the dead prefix is large.
        if drop > 0 && drop >= self.buf.len() / 2 {
            self.buf.drain(..drop);
            self.buf_start = keep_from;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> SegmenterConfig {
        SegmenterConfig {
            rate: 1000,
            min_speech_ms: 50.0,
            min_silence_ms: 100.0,
            padding_ms: 20.0,
            max_segment_ms: 10_000.0,
            draft_silence_ms: 0.0,
        }
    }

    /// Feeds a pattern of 10 ms windows ('#' speech, '.' silence) whose samples are their
    /// own indices; returns every event.
    fn feed(pattern: &str, c: SegmenterConfig) -> Vec<SegmentEvent> {
        let mut s = Segmenter::new(c);
        let mut ev = Vec::new();
        for (i, ch) in pattern.chars().enumerate() {
            let w: Vec<f32> = (0..10).map(|k| (i * 10 + k) as f32).collect();
            s.push(&w, ch == '#', &mut ev);
        }
        s.finish(&mut ev);
        ev
    }

    /// The segments' ranges for a pattern (see [`feed`]).
    fn segments(pattern: &str, c: SegmenterConfig) -> Vec<(u64, u64)> {
        feed(pattern, c)
            .into_iter()
            .filter_map(|e| match e {
                SegmentEvent::Segment(seg) => {
                    // Samples are their own indices: check the audio matches the range.
                    assert_eq!(seg.samples[0] as u64, seg.start_sample);
                    Some((seg.start_sample, seg.end_sample()))
                }
                _ => None,
            })
            .collect()
    }

    #[test]
    fn finds_padded_segments_and_ignores_blips() {
        let p = "....######..........##............#######....";
        // Speech 40..100 padded to 20..120; blip at 200 ignored; 340..410 padded to 320..430.
        assert_eq!(segments(p, config()), vec![(20, 120), (320, 430)]);
    }

    #[test]
    fn short_pauses_do_not_split() {
        let p = "..########.....########...........";
        assert_eq!(segments(p, config()), vec![(0, 250)]);
    }

    #[test]
    fn long_speech_is_cut_at_max_length() {
        let c = SegmenterConfig {
            max_segment_ms: 100.0,
            padding_ms: 0.0,
            ..config()
        };
        let p = "#########################...........";
        let got = segments(p, c);
        assert_eq!(got.first(), Some(&(0, 100)));
        assert!(got.len() >= 2);
        assert!(got.windows(2).all(|w| w[0].1 <= w[1].0));
    }

    /// Feeds a pattern; returns drafts, resumptions and segments as (kind, from, to).
    fn all_events(pattern: &str, c: SegmenterConfig) -> Vec<(char, u64, u64)> {
        feed(pattern, c)
            .into_iter()
            .filter_map(|e| match e {
                SegmentEvent::Draft(d) => Some(('d', d.start_sample, d.end_sample())),
                SegmentEvent::Segment(d) => Some(('s', d.start_sample, d.end_sample())),
                SegmentEvent::Resumed(at) => Some(('r', at, at)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_draft_holds_the_final_segment_and_is_void_when_speech_resumes() {
        let c = SegmenterConfig {
            draft_silence_ms: 40.0,
            ..config()
        };
        // A pause of 60 ms (> draft, < min silence): draft, then resumed; then the end.
        let p = "..########......########...............";
        assert_eq!(
            all_events(p, c),
            vec![('d', 0, 120), ('r', 160, 160), ('d', 0, 260), ('s', 0, 260)]
        );
        // Without drafts the segment is the same, and goes out as a draft too.
        assert_eq!(segments(p, config()), vec![(0, 260)]);
        assert_eq!(all_events(p, config()), vec![('d', 0, 260), ('s', 0, 260)]);
    }
}
