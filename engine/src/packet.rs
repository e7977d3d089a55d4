//! Packets: a media timestamp, an epoch and an opaque, cheaply clonable payload.
//!
//! Timestamps are *media* time, not wall-clock time: for audio they are the position of the
//! first sample divided by the sample rate. Every output port's timestamps must not go
//! backwards; the runtime checks this on every send.
//!
//! The engine knows no media: a payload is any type that implements [`Payload`] (a port type
//! name and a JSON form). The audio, speech and text vocabulary lives in `weir-media`.

use std::any::{Any, TypeId};
use std::fmt;
use std::sync::Arc;

/// Media time in nanoseconds since the start of the stream; its serde form is the number of
/// nanoseconds.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(transparent)]
pub struct Timestamp(u64);

impl Timestamp {
    /// The start of every stream.
    pub const ZERO: Timestamp = Timestamp(0);

    /// The latest representable time.
    pub const MAX: Timestamp = Timestamp(u64::MAX);

    /// A timestamp of `nanos` nanoseconds.
    pub const fn from_nanos(nanos: u64) -> Self {
        Timestamp(nanos)
    }

    /// The time of sample `position` in a stream of `rate` samples per second.
    pub fn from_samples(position: u64, rate: u32) -> Self {
        let rate = u128::from(rate.max(1));
        let nanos = u128::from(position) * 1_000_000_000 / rate;
        Timestamp(u64::try_from(nanos).unwrap_or(u64::MAX))
    }

    /// A timestamp from seconds; negative or non-finite input gives zero.
    pub fn from_secs_f64(secs: f64) -> Self {
        if secs.is_finite() && secs > 0.0 {
            Timestamp((secs * 1e9).round() as u64)
        } else {
            Timestamp::ZERO
        }
    }

    /// A timestamp from a duration since the start.
    pub fn from_duration(d: std::time::Duration) -> Self {
        Timestamp(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
    }

    /// Nanoseconds since the start of the stream.
    pub const fn as_nanos(self) -> u64 {
        self.0
    }

    /// Seconds since the start of the stream.
    pub fn as_secs_f64(self) -> f64 {
        self.0 as f64 / 1e9
    }

    /// The time since the start as a duration.
    pub const fn as_duration(self) -> std::time::Duration {
        std::time::Duration::from_nanos(self.0)
    }

    /// This time plus `d`, saturating.
    pub fn saturating_add(self, d: std::time::Duration) -> Self {
        let d = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        Timestamp(self.0.saturating_add(d))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.3}s", self.as_secs_f64())
    }
}

/// The type of data a port carries, by name; edges must connect equal types (or `any`
/// inputs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PortType(&'static str);

impl PortType {
    /// Any payload (only for inputs of generic sinks such as printers).
    pub const ANY: PortType = PortType("any");

    /// The port type called `name` (e.g. `audio`).
    pub const fn named(name: &'static str) -> Self {
        PortType(name)
    }

    /// The port type of payload `T`.
    pub fn of<T: Payload>() -> Self {
        T::PORT
    }

    /// The type's name as written in messages.
    pub const fn name(self) -> &'static str {
        self.0
    }

    /// True if an output of type `self` may feed an input of type `input`.
    pub fn feeds(self, input: PortType) -> bool {
        input == PortType::ANY || self == input
    }
}

impl fmt::Display for PortType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

/// A value that can travel along edges. Implemented by the payload vocabulary crates, not by
/// the engine; the engine only needs the port type and the JSON form.
pub trait Payload: Any + Send + Sync + fmt::Debug {
    /// The port type that carries this payload.
    const PORT: PortType;

    /// Adds the payload's fields to a packet's JSON object (which already holds `t` and
    /// `type`).
    fn write_json(&self, object: &mut serde_json::Map<String, serde_json::Value>);
}

/// The object-safe face of [`Payload`], so packets can hold any payload.
trait AnyPayload: Send + Sync + fmt::Debug {
    fn as_any(&self) -> &dyn Any;
    fn port(&self) -> PortType;
    fn write_json(&self, object: &mut serde_json::Map<String, serde_json::Value>);
}

impl<T: Payload> AnyPayload for T {
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn port(&self) -> PortType {
        T::PORT
    }
    fn write_json(&self, object: &mut serde_json::Map<String, serde_json::Value>) {
        Payload::write_json(self, object)
    }
}

/// A timestamped payload: the unit that flows along edges. Cloning shares the payload.
#[derive(Clone, Debug)]
pub struct Packet {
    /// Media time of the payload.
    pub timestamp: Timestamp,
    /// The epoch of the producing node when the packet was made; the runtime sets it on
    /// send and discards the packet if the producer was interrupted since.
    pub(crate) epoch: u64,
    /// How many interrupts had fired in the graph when the packet was sent (the runtime
    /// sets it); an interrupt's target discards packets sent before it.
    pub(crate) fired: u64,
    payload: Arc<dyn AnyPayload>,
}

impl Packet {
    /// A packet of `payload` at `timestamp`.
    pub fn new<T: Payload>(timestamp: Timestamp, payload: T) -> Self {
        Packet {
            timestamp,
            epoch: 0,
            fired: 0,
            payload: Arc::new(payload),
        }
    }

    /// The payload, if it is a `T`.
    pub fn get<T: Payload>(&self) -> Option<&T> {
        self.payload.as_any().downcast_ref()
    }

    /// True if the payload is a `T`.
    pub fn is<T: Payload>(&self) -> bool {
        self.payload.as_any().type_id() == TypeId::of::<T>()
    }

    /// The port type of the payload.
    pub fn port_type(&self) -> PortType {
        self.payload.port()
    }

    /// The epoch the packet was made in (see [`crate::Context::epoch`]).
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The packet as a JSON object, for text sinks: `{"t": seconds, "type": ..., ...}`.
    pub fn to_json(&self) -> serde_json::Value {
        let mut object = serde_json::Map::new();
        object.insert("t".into(), self.timestamp.as_secs_f64().into());
        object.insert("type".into(), self.port_type().name().into());
        self.payload.write_json(&mut object);
        serde_json::Value::Object(object)
    }
}

#[cfg(test)]
pub(crate) mod test_payload {
    use super::*;

    /// A counter payload for the engine's own tests.
    #[derive(Debug, Clone, PartialEq)]
    pub struct Tick(pub u64);

    impl Payload for Tick {
        const PORT: PortType = PortType::named("tick");
        fn write_json(&self, object: &mut serde_json::Map<String, serde_json::Value>) {
            object.insert("n".into(), self.0.into());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::test_payload::Tick;
    use super::*;

    #[test]
    fn payloads_are_typed_and_shared() {
        let p = Packet::new(Timestamp::from_nanos(5), Tick(7));
        let q = p.clone();
        assert_eq!(q.get::<Tick>(), Some(&Tick(7)));
        assert!(p.is::<Tick>());
        assert_eq!(p.port_type().name(), "tick");
        assert_eq!(
            p.to_json(),
            serde_json::json!({"t": 5e-9, "type": "tick", "n": 7})
        );
    }

    #[test]
    fn sample_times_saturate() {
        assert_eq!(
            Timestamp::from_samples(16_000, 16_000).as_nanos(),
            1_000_000_000
        );
        assert_eq!(Timestamp::from_samples(u64::MAX, 1), Timestamp::MAX);
    }
}
