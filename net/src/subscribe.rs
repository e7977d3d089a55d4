//! `net.subscribe_TYPE`: a source of the packets published on a Zenoh key, one kind per
//! port type (`net.subscribe_audio`, `net.subscribe_text`, ...), so the graph's port types
//! are checked before anything runs, and what crosses the link is checked against them;
//! `net.subscribe` has one output per port type, for a key that carries several (a
//! `net.publish` with several inputs), in the order they were sent.
//!
//! ```yaml
//!   mic:
//!     node: net.subscribe_audio
//!     with: { key: weir/mic, listen: "tcp/0.0.0.0:7447" }
//! ```
//!
//! A gap in the publisher's sequence numbers (packets dropped by congestion control, by
//! this node's `overflow: drop`, or lost with the link) is counted in the node's `lost`
//! counter (`--stats`, `--metrics`), and so are messages still queued when the node stops.
//! The publisher's end of stream ends this source. The node declares what it expects as a
//! Zenoh liveliness token ([`crate::expect`]), so a publisher of another type or encoding
//! version fails too, not only this side. A publisher that goes away (its process ended, the
//! link went down) and comes back is logged. A restarted publisher is a new stream (its
//! stream id in the header): not a gap, and its timestamps, if its clock started again from
//! zero, are shifted to continue the old stream's (`crate::track`), so they stay monotonic.

use crossbeam_channel::Receiver;
use serde::Deserialize;
use weir_engine::{
    Config, Context, External, Flow, NodeError, NodeKind, OptionSpec, OptionType, Ports, Source,
};
use zenoh::bytes::ZBytes;
use zenoh::liveliness::LivelinessToken;
use zenoh::pubsub::Subscriber;
use zenoh::Wait;

use crate::lanes::Lanes;
use crate::link::{Link, Shared};
use crate::track::Tracker;
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
    _token: Option<LivelinessToken>,
    _publishers: Option<Subscriber<()>>,
    messages: Receiver<ZBytes>,
}

/// Receives packets and sends them on the outputs of `L`.
struct Subscribe<L> {
    lanes: L,
    config: SubscribeConfig,
    link: Option<Open>,
    /// The publisher's streams: gaps and restarts.
    tracker: Tracker,
}

impl<L: Lanes> Subscribe<L> {
    fn error(&self, what: impl std::fmt::Display) -> NodeError {
        NodeError::new(format!("key `{}`: {what}", self.config.link.key))
    }

    /// Handles one message; false at the end of the stream.
    fn receive(&mut self, message: &[u8], ctx: &mut Context) -> Result<bool, NodeError> {
        let (header, payload) = read_header(message).map_err(|e| self.error(e))?;
        if header.kind == Kind::End {
            return Ok(false);
        }
        let admitted = self
            .tracker
            .admit(header.stream, header.seq, header.timestamp, ctx.now());
        if admitted.lost > 0 {
            ctx.count_lost(admitted.lost);
            tracing::warn!(key = %self.config.link.key, lost = admitted.lost, "packets lost on the link");
        }
        if let Some(rejoin) = admitted.rejoined {
            tracing::warn!(
                key = %self.config.link.key,
                restarts = rejoin.restarts,
                shift_ms = rejoin.shift / 1_000_000,
                "a restarted publisher: a new stream (timestamps shifted by shift_ms to stay monotonic; 0: its clock went on)"
            );
        }
        self.lanes
            .emit(&header.port, payload, admitted.timestamp, ctx)
            .map_err(|e| self.error(e))?;
        Ok(true)
    }
}

impl<L: Lanes> Source for Subscribe<L> {
    fn open(&mut self, _ctx: &mut Context) -> Result<(), NodeError> {
        let session = self.config.link.open()?;
        let (tx, messages) = crossbeam_channel::bounded(self.config.queue);
        let block = self.config.overflow == "block";
        let subscriber = session
            .session()
            .declare_subscriber(self.config.link.key.clone())
            .callback(move |sample| {
                let bytes = sample.payload().clone();
                // Blocking here holds Zenoh's reader, which back-pressures the link.
                let _ = if block {
                    tx.send(bytes).map_err(|_| ())
                } else {
                    tx.try_send(bytes).map_err(|_| ())
                };
            })
            .wait()
            .map_err(|e| self.error(format!("cannot subscribe: {e}")))?;
        // Without the token (a key with wildcards) only this side checks what arrives.
        let token = crate::expect::declare(&session, &self.config.link.key, &self.lanes.ports())
            .map_err(|e| tracing::debug!(key = %self.config.link.key, "{e}"))
            .ok();
        let publishers = crate::expect::watch_publishers(&session, &self.config.link.key)
            .map_err(|e| tracing::debug!(key = %self.config.link.key, "{e}"))
            .ok();
        self.link = Some(Open {
            session,
            subscriber,
            _token: token,
            _publishers: publishers,
            messages,
        });
        Ok(())
    }

    fn produce(&mut self, ctx: &mut Context) -> Result<Flow, NodeError> {
        let Some(open) = &self.link else {
            return Ok(Flow::Done);
        };
        match ctx.wait_external(&open.messages) {
            External::Item(message) => {
                let bytes = message.to_bytes();
                Ok(if self.receive(&bytes, ctx)? {
                    Flow::Continue
                } else {
                    Flow::Done
                })
            }
            External::Closed => Ok(Flow::Done),
            External::Woken => Ok(Flow::Continue),
        }
    }

    fn close(&mut self, ctx: &mut Context) -> Result<(), NodeError> {
        if let Some(Open {
            session,
            subscriber,
            _token,
            _publishers,
            messages,
        }) = self.link.take()
        {
            // Stop watching the publisher first: it leaves when this subscription does.
            drop(_publishers);
            let _ = subscriber.undeclare().wait();
            // What arrived but was never sent on (the graph stopped first) is lost too.
            let unread = messages
                .try_iter()
                .filter(|m| read_header(&m.to_bytes()).is_ok_and(|(h, _)| h.kind == Kind::Data))
                .count() as u64;
            if unread > 0 {
                ctx.count_lost(unread);
                tracing::warn!(key = %self.config.link.key, unread, "messages left unread at the stop");
            }
            drop(_token);
            drop(session);
        }
        Ok(())
    }
}

/// A subscriber kind called `name` sending on the outputs `ports` declares.
pub(crate) fn kind<L: Lanes>(
    name: &'static str,
    doc: &'static str,
    ports: fn(&mut Ports) -> L,
) -> NodeKind {
    NodeKind::source(
        name,
        doc,
        ports,
        move |config: SubscribeConfig, mut lanes: L| {
            lanes.named(name);
            Ok(Subscribe {
                lanes,
                config,
                link: None,
                tracker: Tracker::default(),
            })
        },
    )
}
