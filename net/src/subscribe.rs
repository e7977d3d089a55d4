//! `net.subscribe_TYPE`: a source of the packets published on a Zenoh key, one kind per
//! port type (`net.subscribe_audio`, `net.subscribe_text`, ...), so the graph's port types
//! are checked before anything runs, and what crosses the link is checked against them.
//!
//! ```yaml
//!   mic:
//!     node: net.subscribe_audio
//!     with: { key: weir/mic, listen: "tcp/0.0.0.0:7447" }
//! ```
//!
//! A gap in the publisher's sequence numbers (packets dropped by congestion control, by
//! this node's `overflow: drop`, or lost with the link) is counted in the node's `lost`
//! counter (`--stats`, `--metrics`). The publisher's end of stream ends this source.

use std::marker::PhantomData;

use crossbeam_channel::Receiver;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use weir_engine::{
    Config, Context, External, Flow, NodeError, NodeKind, OptionSpec, OptionType, Output, Payload,
    Ports, Source,
};
use zenoh::pubsub::Subscriber;
use zenoh::Wait;

use crate::codec::Codec;
use crate::link::{Link, Shared};
use crate::wire::{read_header, Kind};

/// Overflow policies of the receive queue.
const OVERFLOW: &[&str] = &["block", "drop"];

/// Options of the subscriber kinds.
#[derive(Deserialize)]
pub(crate) struct SubscribeConfig {
    #[serde(flatten)]
    link: Link,
    queue: usize,
    overflow: String,
}

impl Config for SubscribeConfig {
    fn options() -> Vec<OptionSpec> {
        let mut options = crate::link::options();
        options.extend([
            OptionSpec::with_default(
                "queue",
                OptionType::Int,
                64,
                "messages held between the link and the graph",
            )
            .range(1.0, 65_536.0),
            OptionSpec::with_default(
                "overflow",
                OptionType::Choice(OVERFLOW),
                "block",
                "when the queue is full: block (back-pressure up to the publisher) or drop (counted as lost)",
            ),
        ]);
        options
    }
}

/// The open link of a subscriber.
struct Open {
    session: Shared,
    subscriber: Subscriber<()>,
    messages: Receiver<Vec<u8>>,
}

/// Receives packets of payload `T`.
struct Subscribe<T> {
    output: Output<T>,
    config: SubscribeConfig,
    kind: &'static str,
    link: Option<Open>,
    /// The sequence number expected next from the publisher.
    next_seq: Option<u64>,
    _payload: PhantomData<fn() -> T>,
}

impl<T: Payload + Serialize + DeserializeOwned> Subscribe<T> {
    fn error(&self, what: impl std::fmt::Display) -> NodeError {
        NodeError::new(format!("key `{}`: {what}", self.config.link.key))
    }

    /// Handles one message; false at the end of the stream.
    fn receive(&mut self, message: &[u8], ctx: &mut Context) -> Result<bool, NodeError> {
        let (header, payload) = read_header(message).map_err(|e| self.error(e))?;
        if header.kind == Kind::End {
            return Ok(false);
        }
        if header.port != T::PORT.name() {
            return Err(self.error(format!(
                "the publisher sends `{}` packets but `{}` outputs `{}`: use net.subscribe_{} \
                 or publish {} packets on this key",
                header.port,
                self.kind,
                T::PORT,
                header.port,
                T::PORT
            )));
        }
        match self.next_seq {
            Some(next) if header.seq > next => {
                let lost = header.seq - next;
                ctx.count_lost(lost);
                tracing::warn!(key = %self.config.link.key, lost, "packets lost on the link");
            }
            Some(next) if header.seq < next => {
                tracing::info!(key = %self.config.link.key, "a new publisher stream starts");
            }
            _ => {}
        }
        self.next_seq = Some(header.seq + 1);
        let packet = Codec::of::<T>()
            .decode(payload, header.timestamp)
            .map_err(|e| self.error(e))?;
        ctx.forward(self.output, packet)?;
        Ok(true)
    }
}

impl<T: Payload + Serialize + DeserializeOwned> Source for Subscribe<T> {
    fn open(&mut self, _ctx: &mut Context) -> Result<(), NodeError> {
        let session = self.config.link.open()?;
        let (tx, messages) = crossbeam_channel::bounded(self.config.queue);
        let block = self.config.overflow == "block";
        let subscriber = session
            .session()
            .declare_subscriber(self.config.link.key.clone())
            .callback(move |sample| {
                let bytes = sample.payload().to_bytes().into_owned();
                // Blocking here holds Zenoh's reader, which back-pressures the link.
                let _ = if block {
                    tx.send(bytes).map_err(|_| ())
                } else {
                    tx.try_send(bytes).map_err(|_| ())
                };
            })
            .wait()
            .map_err(|e| self.error(format!("cannot subscribe: {e}")))?;
        self.link = Some(Open {
            session,
            subscriber,
            messages,
        });
        Ok(())
    }

    fn produce(&mut self, ctx: &mut Context) -> Result<Flow, NodeError> {
        let Some(open) = &self.link else {
            return Ok(Flow::Done);
        };
        match ctx.wait_external(&open.messages) {
            External::Item(message) => Ok(if self.receive(&message, ctx)? {
                Flow::Continue
            } else {
                Flow::Done
            }),
            External::Closed => Ok(Flow::Done),
            External::Woken => Ok(Flow::Continue),
        }
    }

    fn close(&mut self, _ctx: &mut Context) -> Result<(), NodeError> {
        if let Some(Open {
            session,
            subscriber,
            messages,
        }) = self.link.take()
        {
            drop(messages);
            let _ = subscriber.undeclare().wait();
            drop(session);
        }
        Ok(())
    }
}

/// The subscriber kind `name` for payload `T`.
pub(crate) fn kind<T: Payload + Serialize + DeserializeOwned>(
    name: &'static str,
    doc: &'static str,
) -> NodeKind {
    fn ports<T: Payload>(p: &mut Ports) -> Output<T> {
        p.output(
            "out",
            "the packets published on the key, timestamps as sent",
        )
    }
    NodeKind::source(
        name,
        doc,
        ports::<T>,
        move |config: SubscribeConfig, output| {
            Ok(Subscribe::<T> {
                output,
                config,
                kind: name,
                link: None,
                next_seq: None,
                _payload: PhantomData,
            })
        },
    )
}
