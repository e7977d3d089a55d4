//! # weir-net: graphs that span processes and devices, over Zenoh
//!
//! Two node families carry a stream across a link: `net.publish` sends whatever arrives on
//! its input to a Zenoh key expression; `net.subscribe_TYPE` (one kind per port type:
//! `audio`, `segment`, `text`, `token`, `event`) is a source of what is published on a key.
//! Sessions run in peer mode with multicast scouting off: the graph says which endpoints to
//! `connect` to and `listen` on (or, in `client` mode, which router to use).
//!
//! A packet crosses as `"WEIR" | version | header | payload` ([`wire`]): the header holds
//! the port type name, the publisher's stream id, a sequence number and the timestamp; the payload is the payload's
//! serde form in postcard ([`codec`]), so samples arrive bit-exact. A foreign message, another
//! encoding version or another port type than the subscriber declares is a clear error.
//!
//! Back-pressure: `overflow: block` on both sides (the default) is lossless: a full
//! subscriber queue holds Zenoh's reader, TCP fills, and the publisher blocks (Zenoh's
//! `CongestionControl::Block`). `overflow: drop` drops instead (`CongestionControl::Drop` on
//! the publisher, a full queue on the subscriber); the subscriber counts every gap in the
//! sequence numbers as `lost` in `--stats`.
//!
//! Zenoh runs its own (tokio) threads; the nodes use its blocking API, and the subscriber
//! waits for messages with [`weir_engine::Context::wait_external`], so a stop or an
//! interrupt always reaches it.

pub mod codec;
mod expect;
mod lanes;
mod link;
mod publish;
mod subscribe;
mod track;
pub mod wire;

use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;
use weir_engine::{DuplicateKind, NodeKind, Payload, Registry};
use weir_media::{AudioFrame, Event, SpeechSegment, Text, Token};

pub use codec::{Codec, Codecs};
pub use wire::WireError;

/// The `net.publish` kind, publishing the payload types of `codecs` (for payloads beyond
/// `weir-media`'s; [`register`] uses [`Codecs::media`]).
pub fn publish_kind(codecs: Arc<Codecs>) -> NodeKind {
    publish::kind(codecs)
}

/// A subscriber kind called `name` for payload `T` (for payloads beyond `weir-media`'s).
pub fn subscribe_kind<T: Payload + Serialize + DeserializeOwned>(
    name: &'static str,
    doc: &'static str,
) -> NodeKind {
    subscribe::kind(name, doc, lanes::Single::<T>::ports)
}

/// Registers `net.publish` (for the `weir-media` payloads) and one subscriber kind per
/// `weir-media` payload type.
pub fn register(registry: &mut Registry) -> Result<(), DuplicateKind> {
    registry.register(publish::kind(Arc::new(Codecs::media())))?;
    registry.register(subscribe::kind(
        "net.subscribe",
        "Packets of several types published on one Zenoh key, each type on its own output, in the order sent.",
        lanes::Mixed::ports,
    ))?;
    registry.register(subscribe_kind::<AudioFrame>(
        "net.subscribe_audio",
        "Audio frames published on a Zenoh key (see net.publish).",
    ))?;
    registry.register(subscribe_kind::<SpeechSegment>(
        "net.subscribe_segment",
        "Speech segments published on a Zenoh key (see net.publish).",
    ))?;
    registry.register(subscribe_kind::<Text>(
        "net.subscribe_text",
        "Text published on a Zenoh key (see net.publish).",
    ))?;
    registry.register(subscribe_kind::<Token>(
        "net.subscribe_token",
        "Tokens published on a Zenoh key (see net.publish).",
    ))?;
    registry.register(subscribe_kind::<Event>(
        "net.subscribe_event",
        "Events published on a Zenoh key (see net.publish).",
    ))
}
