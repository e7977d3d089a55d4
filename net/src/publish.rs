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
//! an end-of-stream message, which ends the subscriber's graph too. Up to four inputs
//! (`in`, `in2`..`in4`, merged in timestamp order) share one key and keep their order across
//! the link (`net.subscribe` sends each type on its own output).
//!
//! When the subscriber goes away (its process ended, the link went down), the node logs it
//! and the graph keeps running; Zenoh reconnects with back-off (250 ms doubling to 4 s) to
//! the `connect` endpoints. Meanwhile, with `overflow: drop` every packet is dropped at once;
//! with `overflow: block` the node first waits up to `link_wait_ms` for the subscriber to
//! come back (back-pressure upstream, nothing lost if it does), then drops until it is back.
//! Dropped packets are counted in the node's `lost` column (`--stats`). A subscriber that
//! declares another port type or encoding version ([`crate::expect`]) fails this node with
//! the reason (its first packet is still sent, so the subscriber reports it too).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use serde::Deserialize;
use weir_engine::{
    AnyInput, Config, Context, Incoming, NodeError, NodeKind, OptionSpec, OptionType, Packet,
    Ports, Processor,
};
use zenoh::bytes::ZBytes;
use zenoh::matching::MatchingListener;
use zenoh::pubsub::Publisher;
use zenoh::qos::{CongestionControl, Priority};
use zenoh::Wait;

use crate::codec::Codecs;
use crate::expect::{Expectation, Watch};
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

/// How long `open` waits for a reachable subscriber's announcement of what it reads.
const ANNOUNCEMENT: Duration = Duration::from_millis(500);

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
    link_wait_ms: u64,
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
            OptionSpec::with_default(
                "link_wait_ms",
                OptionType::Int,
                5_000,
                "overflow: block: when the subscriber is gone, wait this long for it before dropping (counted as lost)",
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
    /// The latest matching status.
    matched: Arc<AtomicBool>,
    _listener: MatchingListener<()>,
    /// The subscribers' expectations.
    watch: Option<Watch>,
    /// Tells subscribers this publisher is alive.
    _alive: Option<zenoh::liveliness::LivelinessToken>,
}

/// Sends each packet with a header (port type, sequence number, timestamp).
struct Publish {
    _inputs: Inputs,
    config: PublishConfig,
    codecs: Arc<Codecs>,
    link: Option<Open>,
    /// This opening's stream id (see [`crate::wire::Header::stream`]).
    stream: u64,
    seq: u64,
    buffer: Vec<u8>,
    /// Packets dropped since the subscriber went away (None: it is there).
    down: Option<u64>,
    /// The subscribers' expectations seen so far.
    expected: Vec<Expectation>,
    /// The port type whose packets were checked against `expected`.
    checked: Option<&'static str>,
}

/// The inputs: one required, three more on the same key.
struct Inputs {
    _in: [AnyInput; 4],
}

fn ports(p: &mut Ports) -> Inputs {
    Inputs {
        _in: [
            p.any_input(
                "in",
                "packets to publish (any type with a network encoding)",
            ),
            p.optional_any_input(
                "in2",
                "more packets for the same key (merged in timestamp order)",
            ),
            p.optional_any_input("in3", "more packets for the same key"),
            p.optional_any_input("in4", "more packets for the same key"),
        ],
    }
}

impl Publish {
    fn zenoh_error(&self, what: &str, e: zenoh::Error) -> NodeError {
        NodeError::new(format!("{what} on key `{}`: {e}", self.config.link.key))
    }

    /// Waits until a subscriber is reachable, at most `wait`; false if none came.
    fn wait_matching(open: &Open, wait: Duration) -> bool {
        if open.matched.load(Ordering::Acquire) {
            return true;
        }
        let deadline = Instant::now() + wait;
        while let Ok(matching) = open.matching.recv_deadline(deadline) {
            if matching {
                return true;
            }
        }
        open.matched.load(Ordering::Acquire)
    }

    /// Checks a packet type against every subscriber's expectation (again only when new
    /// expectations arrived or the type changed).
    fn check(&mut self, port: &'static str) -> Result<(), String> {
        let mut new = false;
        if let Some(watch) = self.link.as_ref().and_then(|o| o.watch.as_ref()) {
            for e in watch.arrivals.try_iter() {
                if !self.expected.contains(&e) {
                    self.expected.push(e);
                    new = true;
                }
            }
        }
        if !new && self.checked == Some(port) {
            return Ok(());
        }
        self.checked = Some(port);
        match self
            .expected
            .iter()
            .find_map(|e| e.refuses(port, &self.config.link.key))
        {
            Some(why) => Err(why),
            None => Ok(()),
        }
    }

    /// True if the packet may go out now; false if it is to be dropped (the subscriber is
    /// gone). Logs the link going down and coming back.
    fn link_up(&mut self) -> bool {
        let Some(open) = &self.link else {
            return false;
        };
        if open.matched.load(Ordering::Acquire) {
            if let Some(dropped) = self.down.take() {
                tracing::warn!(key = %self.config.link.key, dropped, "a subscriber is back: publishing again");
            }
            return true;
        }
        if self.down.is_none() {
            tracing::warn!(
                key = %self.config.link.key,
                "no subscriber any more (its process ended or the link is down); Zenoh reconnects with back-off"
            );
            let wait = if self.config.overflow == "block" {
                self.config.link_wait_ms
            } else {
                0
            };
            if wait > 0 && Self::wait_matching(open, Duration::from_millis(wait)) {
                tracing::warn!(key = %self.config.link.key, "a subscriber is back: publishing again, nothing dropped");
                return true;
            }
            tracing::warn!(key = %self.config.link.key, "dropping packets until a subscriber is back (counted as lost)");
            self.down = Some(0);
        }
        false
    }

    fn put(&mut self, header: &Header<'_>, packet: Option<&Packet>) -> Result<(), NodeError> {
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
        // Zenoh takes the buffer (no copy); the next packet starts a new one of the same size.
        let capacity = self.buffer.capacity();
        let bytes = ZBytes::from(std::mem::replace(
            &mut self.buffer,
            Vec::with_capacity(capacity),
        ));
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
        self.stream = stream_id();
        self.seq = 0;
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
        let watch = crate::expect::watch(&session, &self.config.link.key)
            .map_err(|e| tracing::debug!(key = %self.config.link.key, "{e}"))
            .ok();
        let (tx, matching) = crossbeam_channel::unbounded();
        let matched = Arc::new(AtomicBool::new(false));
        let flag = matched.clone();
        let listener = publisher
            .matching_listener()
            .callback(move |status| {
                flag.store(status.matching(), Ordering::Release);
                let _ = tx.send(status.matching());
            })
            .wait()
            .map_err(|e| self.zenoh_error("cannot watch for subscribers", e))?;
        let now = publisher
            .matching_status()
            .wait()
            .map_err(|e| self.zenoh_error("cannot read the matching status", e))?;
        if now.matching() {
            matched.store(true, Ordering::Release);
        }
        let alive = crate::expect::announce_publisher(&session, &self.config.link.key)
            .map_err(|e| tracing::debug!(key = %self.config.link.key, "{e}"))
            .ok();
        let open = Open {
            session,
            publisher,
            matching,
            matched,
            _listener: listener,
            watch,
            _alive: alive,
        };
        let wait = self.config.wait_subscriber_ms;
        if wait > 0 && !Self::wait_matching(&open, Duration::from_millis(wait)) {
            return Err(NodeError::new(format!(
                "no subscriber of key `{}` within {wait} ms (connect `{}`, listen `{}`): start \
                 the subscribing graph first, check the endpoints, or set wait_subscriber_ms: 0",
                self.config.link.key, self.config.link.connect, self.config.link.listen
            )));
        }
        // A Weir subscriber announces what it reads along with its subscription; give the
        // announcement a moment to arrive so the first packet is checked too.
        if open.matched.load(Ordering::Acquire) {
            if let Some(e) = open
                .watch
                .as_ref()
                .and_then(|w| w.arrivals.recv_timeout(ANNOUNCEMENT).ok())
            {
                self.expected.push(e);
            }
        }
        self.link = Some(open);
        Ok(())
    }

    fn process(&mut self, input: Incoming, ctx: &mut Context) -> Result<(), NodeError> {
        let packet = input.packet;
        let port = packet.port_type().name();
        let refused = self.check(port).err();
        if refused.is_none() && !self.link_up() {
            ctx.count_lost(1);
            if let Some(n) = &mut self.down {
                *n += 1;
            }
            self.seq += 1;
            return Ok(());
        }
        let header = Header {
            kind: Kind::Data,
            port: port.into(),
            stream: self.stream,
            seq: self.seq,
            timestamp: packet.timestamp,
        };
        self.seq += 1;
        self.put(&header, Some(&packet))?;
        match refused {
            Some(why) => Err(NodeError::new(why)),
            None => Ok(()),
        }
    }

    fn close(&mut self, _ctx: &mut Context) -> Result<(), NodeError> {
        if self.link.is_none() {
            return Ok(());
        }
        let header = Header {
            kind: Kind::End,
            port: "".into(),
            stream: self.stream,
            seq: self.seq,
            timestamp: weir_engine::Timestamp::ZERO,
        };
        let sent = self.put(&header, None);
        if let Some(open) = self.link.take() {
            // The subscriber ends its stream on the end message and leaves; wait for that
            // (bounded) so the message is not cut off by closing the session.
            let deadline = Instant::now() + LINGER;
            while open.matched.load(Ordering::Acquire) {
                match open.matching.recv_deadline(deadline) {
                    Ok(false) | Err(_) => break,
                    Ok(true) => {}
                }
            }
            let Open {
                session,
                publisher,
                _listener,
                watch,
                _alive,
                ..
            } = open;
            drop(_alive);
            drop(watch);
            drop(_listener);
            let _ = publisher.undeclare().wait();
            drop(session);
        }
        sent
    }
}

/// A random id for a new publisher stream (std's per-process random hash keys over the
/// process id, the time and a counter).
fn stream_id() -> u64 {
    use std::hash::BuildHasher;
    static OPENED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let time = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    std::collections::hash_map::RandomState::new().hash_one((
        std::process::id(),
        time,
        OPENED.fetch_add(1, Ordering::Relaxed),
    ))
}

/// The `net.publish` kind, encoding payloads with `codecs`.
pub(crate) fn kind(codecs: Arc<Codecs>) -> NodeKind {
    NodeKind::processor(
        "net.publish",
        "Publishes packets to a Zenoh key (peer-to-peer or through a router), with timestamps and a versioned binary encoding.",
        ports,
        move |config: PublishConfig, inputs| {
            Ok(Publish {
                _inputs: inputs,
                config,
                codecs: codecs.clone(),
                link: None,
                stream: 0,
                seq: 0,
                buffer: Vec::new(),
                down: None,
                expected: Vec::new(),
                checked: None,
            })
        },
    )
}
