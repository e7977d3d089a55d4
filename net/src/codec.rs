//! Which payload types cross a link, and how: a port type name mapped to postcard encode and
//! decode functions. The engine stays media-free; another payload crate's types cross once
//! their codec is in the [`Codecs`] given to [`crate::publish_kind`], and a subscriber kind
//! is made for them with [`crate::subscribe_kind`].

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde::Serialize;
use weir_engine::{Packet, Payload, PortType, Timestamp};

use crate::wire::WireError;

/// Appends a packet's payload to a message.
type EncodeFn = fn(&Packet, &mut Vec<u8>) -> Result<(), WireError>;
/// Makes a packet from a payload's bytes and a timestamp.
type DecodeFn = fn(&[u8], Timestamp) -> Result<Packet, WireError>;

/// The binary form of one payload type.
#[derive(Clone, Copy, Debug)]
pub struct Codec {
    /// The port type it encodes.
    pub port: PortType,
    encode: EncodeFn,
    decode: DecodeFn,
}

impl Codec {
    /// The codec of payload `T`, through its serde form.
    pub fn of<T: Payload + Serialize + DeserializeOwned>() -> Self {
        Codec {
            port: T::PORT,
            encode: |packet, out| {
                let payload = packet.get::<T>().ok_or_else(|| WireError::UnknownPort {
                    port: packet.port_type().name().into(),
                    known: T::PORT.name().into(),
                })?;
                let bytes = postcard::to_extend(payload, std::mem::take(out));
                *out = bytes.map_err(|source| WireError::Encode {
                    port: T::PORT.name().into(),
                    source,
                })?;
                Ok(())
            },
            decode: |bytes, timestamp| {
                let payload: T =
                    postcard::from_bytes(bytes).map_err(|source| WireError::Corrupt {
                        what: "payload",
                        source,
                    })?;
                Ok(Packet::new(timestamp, payload))
            },
        }
    }

    /// Appends the payload of `packet` to `out`.
    pub fn encode(&self, packet: &Packet, out: &mut Vec<u8>) -> Result<(), WireError> {
        (self.encode)(packet, out)
    }

    /// The packet at `timestamp` whose payload is `bytes`.
    pub fn decode(&self, bytes: &[u8], timestamp: Timestamp) -> Result<Packet, WireError> {
        (self.decode)(bytes, timestamp)
    }
}

/// Codecs by port type name.
#[derive(Clone, Debug, Default)]
pub struct Codecs {
    by_port: BTreeMap<&'static str, Codec>,
}

impl Codecs {
    /// No codecs.
    pub fn new() -> Self {
        Codecs::default()
    }

    /// The codecs of the `weir-media` vocabulary: audio, segment, text, token, event.
    pub fn media() -> Self {
        use weir_media::{AudioFrame, Event, SpeechSegment, Text, Token};
        let mut codecs = Codecs::new();
        codecs.add(Codec::of::<AudioFrame>());
        codecs.add(Codec::of::<SpeechSegment>());
        codecs.add(Codec::of::<Text>());
        codecs.add(Codec::of::<Token>());
        codecs.add(Codec::of::<Event>());
        codecs
    }

    /// Adds (or replaces) the codec of its port type.
    pub fn add(&mut self, codec: Codec) {
        self.by_port.insert(codec.port.name(), codec);
    }

    /// The codec of port type `port`; the error lists the known ones.
    pub fn get(&self, port: &str) -> Result<&Codec, WireError> {
        self.by_port
            .get(port)
            .ok_or_else(|| WireError::UnknownPort {
                port: port.into(),
                known: self.by_port.keys().copied().collect::<Vec<_>>().join(", "),
            })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use weir_media::{AudioFrame, Event, Text};

    use super::*;

    fn round_trip(packet: &Packet) -> Packet {
        let codecs = Codecs::media();
        let codec = codecs.get(packet.port_type().name()).unwrap();
        let mut bytes = Vec::new();
        codec.encode(packet, &mut bytes).unwrap();
        codec.decode(&bytes, packet.timestamp).unwrap()
    }

    #[test]
    fn audio_crosses_bit_exact() {
        let samples: Vec<f32> = vec![0.0, -0.0, 1.0, -1.0, f32::MIN_POSITIVE, 0.123_456_79, 3e-9];
        let frame = AudioFrame {
            rate: 44_100,
            channels: 1,
            start_sample: 441,
            samples: Arc::from(samples.clone()),
        };
        let back = round_trip(&Packet::new(frame.timestamp(), frame.clone()));
        let got = back.get::<AudioFrame>().unwrap();
        assert_eq!(got, &frame);
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&got.samples), bits(&samples));
        assert_eq!(back.timestamp, frame.timestamp());
    }

    #[test]
    fn text_and_events_keep_their_fields() {
        let text = Text {
            text: "Paris.".into(),
            start: Timestamp::from_nanos(5),
            end: Timestamp::from_nanos(9),
        };
        let back = round_trip(&Packet::new(Timestamp::from_nanos(9), text.clone()));
        assert_eq!(back.get::<Text>(), Some(&text));
        let event = Event::new(
            "speech_start",
            serde_json::json!({"sample": 3, "db": -20.5}),
        );
        let back = round_trip(&Packet::new(Timestamp::ZERO, event.clone()));
        assert_eq!(back.get::<Event>(), Some(&event));
    }

    #[test]
    fn an_unknown_port_type_names_the_known_ones() {
        let err = Codecs::media().get("tick").unwrap_err().to_string();
        assert!(err.contains("`tick`") && err.contains("audio, event, segment, text, token"));
    }

    #[test]
    fn a_payload_of_another_type_is_a_corrupt_payload_not_a_panic() {
        let codecs = Codecs::media();
        let err = codecs
            .get("audio")
            .unwrap()
            .decode(&[0xff; 3], Timestamp::ZERO);
        assert!(matches!(
            err,
            Err(WireError::Corrupt {
                what: "payload",
                ..
            })
        ));
    }
}
