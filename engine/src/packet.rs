//! Packets: a media timestamp and a cheaply clonable payload.
//!
//! Timestamps are *media* time, not wall-clock time: for audio they are the position of the
//! first sample divided by the sample rate. Every output port's timestamps must not go
//! backwards; the runtime checks this on every send.

use std::fmt;
use std::sync::Arc;

/// Media time in nanoseconds since the start of the stream.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(u64);

impl Timestamp {
    /// The start of every stream.
    pub const ZERO: Timestamp = Timestamp(0);

    /// A timestamp of `nanos` nanoseconds.
    pub const fn from_nanos(nanos: u64) -> Self {
        Timestamp(nanos)
    }

    /// The time of sample `position` in a stream of `rate` samples per second.
    pub fn from_samples(position: u64, rate: u32) -> Self {
        let rate = u128::from(rate.max(1));
        Timestamp((u128::from(position) * 1_000_000_000 / rate) as u64)
    }

    /// A timestamp from seconds; negative or non-finite input gives zero.
    pub fn from_secs_f64(secs: f64) -> Self {
        if secs.is_finite() && secs > 0.0 {
            Timestamp((secs * 1e9).round() as u64)
        } else {
            Timestamp::ZERO
        }
    }

    /// Nanoseconds since the start of the stream.
    pub const fn as_nanos(self) -> u64 {
        self.0
    }

    /// Seconds since the start of the stream.
    pub fn as_secs_f64(self) -> f64 {
        self.0 as f64 / 1e9
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.3}s", self.as_secs_f64())
    }
}

/// A block of audio: interleaved `f32` samples in [-1, 1], shared, never copied downstream.
#[derive(Clone, Debug, PartialEq)]
pub struct AudioFrame {
    /// Sample rate in Hz.
    pub rate: u32,
    /// Number of interleaved channels.
    pub channels: u16,
    /// Index (in frames, i.e. per channel) of the first sample in the stream.
    pub start_sample: u64,
    /// Interleaved samples; `samples.len()` is a multiple of `channels`.
    pub samples: Arc<[f32]>,
}

impl AudioFrame {
    /// Number of frames (samples per channel).
    pub fn frames(&self) -> usize {
        self.samples.len() / usize::from(self.channels.max(1))
    }

    /// Index of the frame just after this block.
    pub fn end_sample(&self) -> u64 {
        self.start_sample + self.frames() as u64
    }

    /// Media time of the first frame.
    pub fn timestamp(&self) -> Timestamp {
        Timestamp::from_samples(self.start_sample, self.rate)
    }
}

/// A stretch of detected speech: mono samples with their position in the stream.
#[derive(Clone, Debug, PartialEq)]
pub struct SpeechSegment {
    /// Sample rate in Hz.
    pub rate: u32,
    /// Index of the first sample of the segment in the stream.
    pub start_sample: u64,
    /// Mono samples of the segment (padding included).
    pub samples: Arc<[f32]>,
}

impl SpeechSegment {
    /// Index of the sample just after the segment.
    pub fn end_sample(&self) -> u64 {
        self.start_sample + self.samples.len() as u64
    }

    /// Media time of the segment's start.
    pub fn start(&self) -> Timestamp {
        Timestamp::from_samples(self.start_sample, self.rate)
    }

    /// Media time of the segment's end.
    pub fn end(&self) -> Timestamp {
        Timestamp::from_samples(self.end_sample(), self.rate)
    }
}

/// Text with the media time span it describes (a transcript, an answer).
#[derive(Clone, Debug, PartialEq)]
pub struct Text {
    /// The text itself.
    pub text: Arc<str>,
    /// Start of the media span the text is about.
    pub start: Timestamp,
    /// End of the media span the text is about.
    pub end: Timestamp,
}

/// One piece of a streamed generation (a token decoded to text).
#[derive(Clone, Debug, PartialEq)]
pub struct Token {
    /// Token id in the model's vocabulary.
    pub id: u32,
    /// The text this token adds (may be empty for partial UTF-8 sequences).
    pub text: Arc<str>,
    /// Position of the token in its answer, from 0.
    pub index: u32,
    /// True on the answer's last token.
    pub last: bool,
}

/// A named event with structured fields (levels, speech start/end, ...).
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    /// What happened, e.g. `speech_start`.
    pub name: Arc<str>,
    /// Details as a JSON object.
    pub fields: Arc<serde_json::Value>,
}

/// What a packet carries. Each variant is cheap to clone.
#[derive(Clone, Debug, PartialEq)]
pub enum Payload {
    /// Audio samples.
    Audio(AudioFrame),
    /// A speech segment.
    Segment(SpeechSegment),
    /// Text.
    Text(Text),
    /// A streamed token.
    Token(Token),
    /// An event.
    Event(Event),
}

impl Payload {
    /// The port type that carries this payload.
    pub fn port_type(&self) -> PortType {
        match self {
            Payload::Audio(_) => PortType::Audio,
            Payload::Segment(_) => PortType::Segment,
            Payload::Text(_) => PortType::Text,
            Payload::Token(_) => PortType::Token,
            Payload::Event(_) => PortType::Event,
        }
    }
}

/// A timestamped payload: the unit that flows along edges.
#[derive(Clone, Debug, PartialEq)]
pub struct Packet {
    /// Media time of the payload.
    pub timestamp: Timestamp,
    /// The data.
    pub payload: Payload,
}

impl Packet {
    /// A packet of `payload` at `timestamp`.
    pub fn new(timestamp: Timestamp, payload: Payload) -> Self {
        Packet { timestamp, payload }
    }

    /// The packet as a JSON object, for text sinks: `{"t": seconds, "type": ..., ...}`.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::json;
        let t = self.timestamp.as_secs_f64();
        match &self.payload {
            Payload::Audio(a) => json!({
                "t": t, "type": "audio", "rate": a.rate, "channels": a.channels,
                "start_sample": a.start_sample, "frames": a.frames(),
            }),
            Payload::Segment(s) => json!({
                "t": t, "type": "segment", "start": s.start().as_secs_f64(),
                "end": s.end().as_secs_f64(), "start_sample": s.start_sample,
                "samples": s.samples.len(), "rate": s.rate,
            }),
            Payload::Text(x) => json!({
                "t": t, "type": "text", "text": &*x.text,
                "start": x.start.as_secs_f64(), "end": x.end.as_secs_f64(),
            }),
            Payload::Token(k) => json!({
                "t": t, "type": "token", "id": k.id, "text": &*k.text,
                "index": k.index, "last": k.last,
            }),
            Payload::Event(e) => {
                let mut obj = serde_json::Map::new();
                obj.insert("t".into(), json!(t));
                obj.insert("type".into(), json!("event"));
                obj.insert("event".into(), json!(&*e.name));
                if let serde_json::Value::Object(fields) = &*e.fields {
                    obj.extend(fields.iter().map(|(k, v)| (k.clone(), v.clone())));
                }
                serde_json::Value::Object(obj)
            }
        }
    }
}

/// The type of data a port carries; edges must connect equal types (or `Any` inputs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PortType {
    /// [`AudioFrame`]s.
    Audio,
    /// [`SpeechSegment`]s.
    Segment,
    /// [`Text`].
    Text,
    /// [`Token`]s.
    Token,
    /// [`Event`]s.
    Event,
    /// Any payload (only for inputs of generic sinks such as printers).
    Any,
}

impl PortType {
    /// True if an output of type `self` may feed an input of type `input`.
    pub fn feeds(self, input: PortType) -> bool {
        input == PortType::Any || self == input
    }
}

impl fmt::Display for PortType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PortType::Audio => "audio",
            PortType::Segment => "segment",
            PortType::Text => "text",
            PortType::Token => "token",
            PortType::Event => "event",
            PortType::Any => "any",
        })
    }
}
