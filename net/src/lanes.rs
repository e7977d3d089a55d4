//! Where a subscriber sends what it receives: one typed output (`net.subscribe_TYPE`) or one
//! output per port type (`net.subscribe`).

use std::marker::PhantomData;

use serde::de::DeserializeOwned;
use serde::Serialize;
use weir_engine::{Context, NodeError, Output, Payload, Ports, Timestamp};
use weir_media::{AudioFrame, Event, SpeechSegment, Text, Token};

use crate::codec::Codec;

/// The outputs of a subscriber kind.
pub(crate) trait Lanes: Send + 'static {
    /// The port type names it sends, in order.
    fn ports(&self) -> Vec<&'static str>;

    /// Tells it the name of its node kind (for error messages).
    fn named(&mut self, _kind: &'static str) {}

    /// Decodes a `port` payload and sends it at `timestamp`; a port type it has no output
    /// for is an error that says what it accepts.
    fn emit(
        &self,
        port: &str,
        payload: &[u8],
        timestamp: Timestamp,
        ctx: &mut Context,
    ) -> Result<(), NodeError>;
}

/// Sends a decoded `T` on `output`.
fn send<T: Payload + Serialize + DeserializeOwned>(
    output: Output<T>,
    payload: &[u8],
    timestamp: Timestamp,
    ctx: &mut Context,
) -> Result<(), NodeError> {
    let packet = Codec::of::<T>()
        .decode(payload, timestamp)
        .map_err(|e| NodeError::new(e.to_string()))?;
    ctx.forward(output, packet)
}

/// One output of payload `T`.
pub(crate) struct Single<T> {
    output: Output<T>,
    kind: &'static str,
    _payload: PhantomData<fn() -> T>,
}

impl<T: Payload + Serialize + DeserializeOwned> Single<T> {
    /// Declares the output `out`.
    pub fn ports(p: &mut Ports) -> Self {
        Single {
            output: p.output(
                "out",
                "the packets published on the key, timestamps as sent",
            ),
            kind: "net.subscribe_*",
            _payload: PhantomData,
        }
    }
}

impl<T: Payload + Serialize + DeserializeOwned> Lanes for Single<T> {
    fn ports(&self) -> Vec<&'static str> {
        vec![T::PORT.name()]
    }

    fn named(&mut self, kind: &'static str) {
        self.kind = kind;
    }

    fn emit(
        &self,
        port: &str,
        payload: &[u8],
        timestamp: Timestamp,
        ctx: &mut Context,
    ) -> Result<(), NodeError> {
        if port != T::PORT.name() {
            return Err(NodeError::new(format!(
                "the publisher sends `{port}` packets but `{}` outputs `{}`: use \
                 net.subscribe_{port} or publish {} packets on this key",
                self.kind,
                T::PORT,
                T::PORT
            )));
        }
        send(self.output, payload, timestamp, ctx)
    }
}

/// One output per `weir-media` port type, for a key carrying several.
pub(crate) struct Mixed {
    audio: Output<AudioFrame>,
    segment: Output<SpeechSegment>,
    text: Output<Text>,
    token: Output<Token>,
    event: Output<Event>,
}

impl Mixed {
    /// Declares the outputs, named after their port types.
    pub fn ports(p: &mut Ports) -> Self {
        Mixed {
            audio: p.output("audio", "audio frames published on the key"),
            segment: p.output("segment", "speech segments published on the key"),
            text: p.output("text", "text published on the key"),
            token: p.output("token", "tokens published on the key"),
            event: p.output("event", "events published on the key"),
        }
    }
}

impl Lanes for Mixed {
    fn ports(&self) -> Vec<&'static str> {
        vec!["audio", "segment", "text", "token", "event"]
    }

    fn emit(
        &self,
        port: &str,
        payload: &[u8],
        timestamp: Timestamp,
        ctx: &mut Context,
    ) -> Result<(), NodeError> {
        match port {
            "audio" => send(self.audio, payload, timestamp, ctx),
            "segment" => send(self.segment, payload, timestamp, ctx),
            "text" => send(self.text, payload, timestamp, ctx),
            "token" => send(self.token, payload, timestamp, ctx),
            "event" => send(self.event, payload, timestamp, ctx),
            other => Err(NodeError::new(format!(
                "the publisher sends `{other}` packets, for which net.subscribe has no output \
                 (it has audio, segment, text, token, event)"
            ))),
        }
    }
}
