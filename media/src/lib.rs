//! # weir-media: what flows along Weir's edges
//!
//! The engine moves opaque payloads; this crate is the vocabulary the speech and language
//! nodes share: [`AudioFrame`], [`SpeechSegment`], [`Text`], [`Token`] and [`Event`]. Each
//! implements [`Payload`] (its port type name and JSON form) and serde (the binary form that
//! `weir-net` sends between processes: postcard keeps every sample bit-exact). A new kind of payload
//! (synthesized speech chunks, embeddings) is a new type here or in its own crate; the engine
//! does not change.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use weir_engine::{Payload, PortType, Timestamp};

/// A block of audio: interleaved `f32` samples in [-1, 1], shared, never copied downstream.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AudioFrame {
    /// Sample rate in Hz.
    pub rate: u32,
    /// Number of interleaved channels.
    pub channels: u16,
    /// Index (in frames, i.e. per channel) of the first sample in the stream.
    pub start_sample: u64,
    /// Interleaved samples; `samples.len()` is a multiple of `channels`.
    #[serde(with = "shared")]
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

impl Payload for AudioFrame {
    const PORT: PortType = PortType::named("audio");
    fn write_json(&self, o: &mut Map<String, Value>) {
        o.insert("rate".into(), self.rate.into());
        o.insert("channels".into(), self.channels.into());
        o.insert("start_sample".into(), self.start_sample.into());
        o.insert("frames".into(), self.frames().into());
    }
}

/// A stretch of detected speech: mono samples with their position in the stream.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SpeechSegment {
    /// Sample rate in Hz.
    pub rate: u32,
    /// Index of the first sample of the segment in the stream.
    pub start_sample: u64,
    /// Mono samples of the segment (padding included).
    #[serde(with = "shared")]
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

impl Payload for SpeechSegment {
    const PORT: PortType = PortType::named("segment");
    fn write_json(&self, o: &mut Map<String, Value>) {
        o.insert("start".into(), self.start().as_secs_f64().into());
        o.insert("end".into(), self.end().as_secs_f64().into());
        o.insert("start_sample".into(), self.start_sample.into());
        o.insert("samples".into(), self.samples.len().into());
        o.insert("rate".into(), self.rate.into());
    }
}

/// Text with the media time span it describes (a transcript, an answer).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Text {
    /// The text itself.
    #[serde(with = "shared")]
    pub text: Arc<str>,
    /// Start of the media span the text is about.
    pub start: Timestamp,
    /// End of the media span the text is about.
    pub end: Timestamp,
}

impl Payload for Text {
    const PORT: PortType = PortType::named("text");
    fn write_json(&self, o: &mut Map<String, Value>) {
        o.insert("text".into(), json!(&*self.text));
        o.insert("start".into(), self.start.as_secs_f64().into());
        o.insert("end".into(), self.end.as_secs_f64().into());
    }
}

/// One piece of a streamed generation (a token decoded to text).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Token {
    /// Token id in the model's vocabulary.
    pub id: u32,
    /// The text this token adds (may be empty for partial UTF-8 sequences).
    #[serde(with = "shared")]
    pub text: Arc<str>,
    /// Position of the token in its answer, from 0.
    pub index: u32,
    /// True on the answer's last token.
    pub last: bool,
}

impl Payload for Token {
    const PORT: PortType = PortType::named("token");
    fn write_json(&self, o: &mut Map<String, Value>) {
        o.insert("id".into(), self.id.into());
        o.insert("text".into(), json!(&*self.text));
        o.insert("index".into(), self.index.into());
        o.insert("last".into(), self.last.into());
    }
}

/// A named event with structured fields (levels, speech start/end, ...).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// What happened, e.g. `speech_start`.
    #[serde(with = "shared")]
    pub name: Arc<str>,
    /// Details as a JSON object (in serde forms: its JSON text, so formats that are not
    /// self-describing can carry it).
    #[serde(with = "json_text")]
    pub fields: Arc<Value>,
}

impl Event {
    /// An event called `name` with `fields` (a JSON object).
    pub fn new(name: &str, fields: Value) -> Self {
        Event {
            name: Arc::from(name),
            fields: Arc::new(fields),
        }
    }
}

impl Payload for Event {
    const PORT: PortType = PortType::named("event");
    fn write_json(&self, o: &mut Map<String, Value>) {
        o.insert("event".into(), json!(&*self.name));
        if let Value::Object(fields) = &*self.fields {
            o.extend(fields.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
    }
}

/// Serde for shared buffers (`Arc<[f32]>`, `Arc<str>`) as their contents, without serde's
/// `rc` feature (which would rebuild every dependent of serde in the workspace).
mod shared {
    use std::sync::Arc;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<T, S>(value: &Arc<T>, s: S) -> Result<S::Ok, S::Error>
    where
        T: Serialize + ?Sized,
        S: Serializer,
    {
        T::serialize(value, s)
    }

    pub fn deserialize<'de, T, D>(d: D) -> Result<Arc<T>, D::Error>
    where
        T: ?Sized,
        Box<T>: Deserialize<'de>,
        D: Deserializer<'de>,
    {
        Box::<T>::deserialize(d).map(Arc::from)
    }
}

/// Serde for an event's fields as JSON text.
mod json_text {
    use std::sync::Arc;

    use serde::de::Error as _;
    use serde::{Deserialize, Deserializer, Serializer};
    use serde_json::Value;

    pub fn serialize<S: Serializer>(value: &Arc<Value>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&value.to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Arc<Value>, D::Error> {
        let text = String::deserialize(d)?;
        serde_json::from_str(&text)
            .map(Arc::new)
            .map_err(D::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_engine::Packet;

    #[test]
    fn json_forms_keep_their_fields() {
        let seg = SpeechSegment {
            rate: 16_000,
            start_sample: 16_000,
            samples: Arc::from(vec![0.0; 8_000]),
        };
        let p = Packet::new(seg.start(), seg);
        assert_eq!(
            p.to_json(),
            json!({"t": 1.0, "type": "segment", "start": 1.0, "end": 1.5,
                   "start_sample": 16000, "samples": 8000, "rate": 16000})
        );
        let e = Packet::new(
            Timestamp::ZERO,
            Event::new("speech_start", json!({"sample": 3})),
        );
        assert_eq!(
            e.to_json(),
            json!({"t": 0.0, "type": "event", "event": "speech_start", "sample": 3})
        );
    }
}
