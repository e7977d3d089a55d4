//! `net.publish`: sends every packet it receives to a Zenoh key expression.
//!
//! ```yaml
//!   uplink:
//!     node: net.publish
//!     in: { in: resample.audio }
//!     with: { key: weir/mic, connect: "tcp/192.168.1.20:7447", overflow: block }
//! ```
//!
//! Opening waits (at most `wait_subscriber_ms`) until a subscriber of the key is reachable,
//! so the start of the stream is not published to nobody. The end of the input is sent as
//! an end-of-stream message, which ends the subscriber's graph too.

use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::Receiver;
use serde::Deserialize;
use weir_engine::{
    AnyInput, Config, Context, Incoming, NodeError, NodeKind, OptionSpec, OptionType, Ports,
    Processor,
};
use zenoh::matching::MatchingListener;
use zenoh::pubsub::Publisher;
use zenoh::qos::{CongestionControl, Priority};
use zenoh::Wait;

use crate::codec::Codecs;
use crate::link::{Link, Shared};
use crate::wire::{write_header, Header, Kind};

/// Overflow policies of the link.
const OVERFLOW: &[&str] = &["block", "drop"];

/// Zenoh priorities by name.
const PRIORITIES: &[&str] = &[
    "real_time",
    "interactive_high",
    "interactive_low",
    "data_high",
    "data",
    "data_low",
    "background",
];

/// How long `close` waits for the subscriber to take the end of the stream.
const LINGER: Duration = Duration::from_secs(2);

/// Options of `net.publish`.
#[derive(Deserialize)]
pub(crate) struct PublishConfig {
    #[serde(flatten)]
    link: Link,
    overflow: String,
    priority: String,
    express: bool,
    wait_subscriber_ms: u64,
}

impl Config for PublishConfig {
    fn options() -> Vec<OptionSpec> {
        let mut options = crate::link::options();
        options.extend([
            OptionSpec::with_default(
                "overflow",
                OptionType::Choice(OVERFLOW),
                "block",
                "when the link is congested: block (lossless back-pressure) or drop (counted by the subscriber)",
            ),
            OptionSpec::with_default(
                "priority",
                OptionType::Choice(PRIORITIES),
                "data",
                "Zenoh priority of the stream",
            ),
            OptionSpec::with_default(
                "express",
                OptionType::Bool,
                false,
                "send each packet at once instead of batching (lower latency, lower throughput)",
            ),
            OptionSpec::with_default(
                "wait_subscriber_ms",
                OptionType::Int,
                10_000,
                "at open, wait this long for a subscriber of the key (0: do not wait)",
            )
            .range(0.0, 600_000.0),
        ]);
        options
    }
}

fn priority(name: &str) -> Priority {
    match name {
        "real_time" => Priority::RealTime,
        "interactive_high" => Priority::InteractiveHigh,
        "interactive_low" => Priority::InteractiveLow,
        "data_high" => Priority::DataHigh,
        "data_low" => Priority::DataLow,
        "background" => Priority::Background,
        _ => Priority::Data,
    }
}

/// The open link of a publisher.
struct Open {
    session: Shared,
    publisher: Publisher<'static>,
    /// Matching-status changes (true: a subscriber is reachable).
    matching: Receiver<bool>,
    _listener: MatchingListener<()>,
}

/// Sends each packet with a header (port type, sequence number, timestamp).
struct Publish {
    input: AnyInput,
    config: PublishConfig,
    codecs: Arc<Codecs>,
    link: Option<Open>,
    seq: u64,
    buffer: Vec<u8>,
}

fn ports(p: &mut Ports) -> AnyInput {
    p.any_input(
        "in",
        "packets to publish (any type with a network encoding)",
    )
}

impl Publish {
    fn zenoh_error(&self, what: &str, e: zenoh::Error) -> NodeError {
        NodeError::new(format!("{what} on key `{}`: {e}", self.config.link.key))
    }

    /// Waits until a subscriber is reachable, at most `wait`.
    fn wait_for_subscriber(&self, open: &Open, wait: Duration) -> Result<(), NodeError> {
        let now = open
            .publisher
            .matching_status()
            .wait()
            .map_err(|e| self.zenoh_error("cannot read the matching status", e))?;
        if now.matching() {
            return Ok(());
        }
        let deadline = std::time::Instant::now() + wait;
        while let Ok(matching) = open.matching.recv_deadline(deadline) {
            if matching {
                return Ok(());
            }
        }
        Err(NodeError::new(format!(
            "no subscriber of key `{}` within {} ms (connect `{}`, listen `{}`): start the \
             subscribing graph first, check the endpoints, or set wait_subscriber_ms: 0",
            self.config.link.key,
            wait.as_millis(),
            self.config.link.connect,
            self.config.link.listen
        )))
    }

    fn put(
        &mut self,
        header: &Header,
        packet: Option<&weir_engine::Packet>,
    ) -> Result<(), NodeError> {
        write_header(header, &mut self.buffer)
            .map_err(|e| NodeError::with_source("cannot encode", e))?;
        if let Some(packet) = packet {
            let codec = self
                .codecs
                .get(&header.port)
                .map_err(|e| NodeError::with_source("cannot publish", e))?;
            codec
                .encode(packet, &mut self.buffer)
                .map_err(|e| NodeError::with_source("cannot publish", e))?;
        }
        let Some(open) = &self.link else {
            return Err(NodeError::new("the link is not open"));
        };
        let bytes = self.buffer.clone();
        let put = if header.kind == Kind::End {
            // The end of the stream is never dropped, whatever the overflow policy.
            open.session
                .session()
                .put(open.publisher.key_expr().clone(), bytes)
                .congestion_control(CongestionControl::Block)
                .priority(priority(&self.config.priority))
                .wait()
        } else {
            open.publisher.put(bytes).wait()
        };
        put.map_err(|e| self.zenoh_error("cannot publish", e))
    }
}

impl Processor for Publish {
    fn open(&mut self, _ctx: &mut Context) -> Result<(), NodeError> {
        let session = self.config.link.open()?;
        let congestion = if self.config.overflow == "drop" {
            CongestionControl::Drop
        } else {
            CongestionControl::Block
        };
        let publisher = session
            .session()
            .declare_publisher(self.config.link.key.clone())
            .congestion_control(congestion)
            .priority(priority(&self.config.priority))
            .express(self.config.express)
            .wait()
            .map_err(|e| self.zenoh_error("cannot declare a publisher", e))?;
        let (tx, matching) = crossbeam_channel::unbounded();
        let listener = publisher
            .matching_listener()
            .callback(move |status| {
                let _ = tx.send(status.matching());
            })
            .wait()
            .map_err(|e| self.zenoh_error("cannot watch for subscribers", e))?;
        let open = Open {
            session,
            publisher,
            matching,
            _listener: listener,
        };
        if self.config.wait_subscriber_ms > 0 {
            self.wait_for_subscriber(&open, Duration::from_millis(self.config.wait_subscriber_ms))?;
        }
        self.link = Some(open);
        Ok(())
    }

    fn process(&mut self, input: Incoming, _ctx: &mut Context) -> Result<(), NodeError> {
        let Some(packet) = self.input.get(&input) else {
            return Ok(());
        };
        let header = Header {
            kind: Kind::Data,
            port: packet.port_type().name().into(),
            seq: self.seq,
            timestamp: packet.timestamp,
        };
        self.seq += 1;
        self.put(&header, Some(packet))
    }

    fn close(&mut self, _ctx: &mut Context) -> Result<(), NodeError> {
        if self.link.is_none() {
            return Ok(());
        }
        let header = Header {
            kind: Kind::End,
            port: String::new(),
            seq: self.seq,
            timestamp: weir_engine::Timestamp::ZERO,
        };
        let sent = self.put(&header, None);
        if let Some(open) = self.link.take() {
            // The subscriber ends its stream on the end message and leaves; wait for that
            // (bounded) so the message is not cut off by closing the session.
            let deadline = std::time::Instant::now() + LINGER;
            while let Ok(matching) = open.matching.recv_deadline(deadline) {
                if !matching {
                    break;
                }
            }
            let Open {
                session,
                publisher,
                _listener,
                ..
            } = open;
            drop(_listener);
            let _ = publisher.undeclare().wait();
            drop(session);
        }
        sent
    }
}

/// The `net.publish` kind, encoding payloads with `codecs`.
pub(crate) fn kind(codecs: Arc<Codecs>) -> NodeKind {
    NodeKind::processor(
        "net.publish",
        "Publishes packets to a Zenoh key (peer-to-peer or through a router), with timestamps and a versioned binary encoding.",
        ports,
        move |config: PublishConfig, input| {
            Ok(Publish {
                input,
                config,
                codecs: codecs.clone(),
                link: None,
                seq: 0,
                buffer: Vec::new(),
            })
        },
    )
}
