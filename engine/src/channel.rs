//! Edges: bounded crossbeam channels with an overflow policy and counters.

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TrySendError};

use crate::clock::Clock;
#[cfg(test)]
use crate::clock::ClockKind;
use crate::packet::Packet;
use crate::stats::EdgeStats;

/// What a full queue does with a new packet.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Overflow {
    /// The sender waits for room: lossless back-pressure (the default).
    #[default]
    Block,
    /// The oldest queued packet is dropped to make room; the sender never waits.
    DropOldest,
    /// The new packet is dropped; the sender never waits.
    DropNewest,
}

impl Overflow {
    /// The names accepted in graph files.
    pub const NAMES: [&'static str; 3] = ["block", "drop_oldest", "drop_newest"];
}

impl FromStr for Overflow {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "block" => Ok(Overflow::Block),
            "drop_oldest" => Ok(Overflow::DropOldest),
            "drop_newest" => Ok(Overflow::DropNewest),
            other => Err(format!("unknown overflow policy `{other}`")),
        }
    }
}

impl fmt::Display for Overflow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Overflow::Block => "block",
            Overflow::DropOldest => "drop_oldest",
            Overflow::DropNewest => "drop_newest",
        })
    }
}

/// Size and overflow policy of one edge's queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueConfig {
    /// Capacity in packets, within [`QueueConfig::MAX_SIZE`].
    pub size: usize,
    /// What happens when the queue is full.
    pub overflow: Overflow,
}

impl QueueConfig {
    /// The largest queue a graph file may ask for, in packets.
    pub const MAX_SIZE: u64 = 65_536;
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            size: 16,
            overflow: Overflow::Block,
        }
    }
}

/// The receiving end of the downstream side is gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Disconnected;

/// What both ends of an edge share.
struct EdgeShared {
    stats: Arc<EdgeStats>,
    /// Set when the receiving end is dropped (the consumer ended).
    closed: AtomicBool,
    clock: Clock,
    /// The edge's index in the graph (for the virtual clock).
    id: usize,
}

/// The sending end of an edge.
pub(crate) struct EdgeSender {
    tx: Sender<Packet>,
    /// Index of the producing node (the virtual clock counts it idle while it is blocked).
    producer: usize,
    /// Kept only for `DropOldest`, to evict from the front of a full queue.
    evict: Option<Receiver<Packet>>,
    overflow: Overflow,
    shared: Arc<EdgeShared>,
}

/// The receiving end of an edge: knows its producer, to discard packets made before the
/// producer's latest interrupt.
pub(crate) struct EdgeReceiver {
    pub(crate) rx: Receiver<Packet>,
    /// Index of the producing node (its epoch decides staleness).
    pub(crate) producer: usize,
    /// Input port index on the consuming node.
    pub(crate) port: usize,
    /// The queue's capacity.
    pub(crate) capacity: usize,
    /// A back edge: its consumer neither waits for it when merging nor for its end.
    pub(crate) back: bool,
    shared: Arc<EdgeShared>,
}

impl Drop for EdgeReceiver {
    fn drop(&mut self) {
        self.shared.closed.store(true, Relaxed);
    }
}

impl EdgeReceiver {
    /// The edge's index in the graph.
    pub(crate) fn id(&self) -> usize {
        self.shared.id
    }

    /// Call after taking a packet: records the queue's depth, and on the virtual clock, a producer that may be blocked on
    /// this full queue is woken (counted busy) before the consumer can go idle.
    pub(crate) fn took(&self) {
        self.shared.stats.depth.store(self.rx.len() as u64, Relaxed);
        let clock = &self.shared.clock;
        if clock.is_virtual() && self.rx.len() + 1 >= self.capacity {
            clock.signal(self.producer);
        }
    }

    /// Counts a packet discarded because it was made before an interrupt.
    pub(crate) fn flushed(&self) {
        self.shared.stats.flushed.fetch_add(1, Relaxed);
    }
}

/// Creates an edge's two ends.
pub(crate) fn edge(
    id: usize,
    config: QueueConfig,
    stats: Arc<EdgeStats>,
    clock: Clock,
    producer: usize,
    port: usize,
    back: bool,
) -> (EdgeSender, EdgeReceiver) {
    let (tx, rx) = crossbeam_channel::bounded(config.size.max(1));
    let evict = (config.overflow == Overflow::DropOldest).then(|| rx.clone());
    let shared = Arc::new(EdgeShared {
        stats,
        closed: AtomicBool::new(false),
        clock,
        id,
    });
    let sender = EdgeSender {
        tx,
        producer,
        evict,
        overflow: config.overflow,
        shared: shared.clone(),
    };
    let receiver = EdgeReceiver {
        rx,
        producer,
        port,
        capacity: config.size.max(1),
        back,
        shared,
    };
    (sender, receiver)
}

impl EdgeSender {
    /// Sends `packet` under the edge's overflow policy; time spent blocked on a full queue
    /// is added to `blocked`.
    pub(crate) fn send(&self, packet: Packet, blocked: &mut Duration) -> Result<(), Disconnected> {
        let shared = &*self.shared;
        if shared.closed.load(Relaxed) {
            return Err(Disconnected);
        }
        // Counted in flight before it can be received, taken back if it is not queued.
        shared.clock.sent(shared.id);
        let queued = self.enqueue(packet, blocked);
        if !matches!(queued, Ok(true)) {
            shared.clock.taken(shared.id);
        }
        if !queued? {
            return Ok(());
        }
        shared.stats.sent.fetch_add(1, Relaxed);
        let len = self.tx.len() as u64;
        shared.stats.high_water.fetch_max(len, Relaxed);
        shared.stats.depth.store(len, Relaxed);
        Ok(())
    }

    /// Queues `packet` under the overflow policy; false if it was dropped instead.
    fn enqueue(&self, packet: Packet, blocked: &mut Duration) -> Result<bool, Disconnected> {
        let shared = &*self.shared;
        match self.overflow {
            Overflow::Block => self.send_blocking(packet, blocked)?,
            Overflow::DropNewest => match self.tx.try_send(packet) {
                Ok(()) => {}
                Err(TrySendError::Full(_)) => {
                    shared.stats.dropped.fetch_add(1, Relaxed);
                    return Ok(false);
                }
                Err(TrySendError::Disconnected(_)) => return Err(Disconnected),
            },
            Overflow::DropOldest => {
                let mut packet = packet;
                loop {
                    match self.tx.try_send(packet) {
                        Ok(()) => break,
                        Err(TrySendError::Full(p)) => {
                            packet = p;
                            if shared.closed.load(Relaxed) {
                                return Err(Disconnected);
                            }
                            if let Some(evict) = &self.evict {
                                if evict.try_recv().is_ok() {
                                    shared.stats.dropped.fetch_add(1, Relaxed);
                                    shared.clock.taken(shared.id);
                                }
                            }
                        }
                        Err(TrySendError::Disconnected(_)) => return Err(Disconnected),
                    }
                }
            }
        }
        Ok(true)
    }

    /// Sends, waiting for room. On the virtual clock the producer counts as idle while it
    /// waits; the consumer wakes it (see [`EdgeReceiver::took`]).
    fn send_blocking(&self, packet: Packet, blocked: &mut Duration) -> Result<(), Disconnected> {
        let clock = &self.shared.clock;
        let mut packet = match self.tx.try_send(packet) {
            Ok(()) => return Ok(()),
            Err(TrySendError::Disconnected(_)) => return Err(Disconnected),
            Err(TrySendError::Full(p)) => p,
        };
        let t0 = Instant::now();
        if clock.is_virtual() {
            // A pending wake-up means room was made since the try: try again first.
            while !clock.wait(self.producer, None, &[]) {
                packet = match self.tx.try_send(packet) {
                    Ok(()) => {
                        *blocked += t0.elapsed();
                        return Ok(());
                    }
                    Err(TrySendError::Disconnected(_)) => return Err(Disconnected),
                    Err(TrySendError::Full(p)) => p,
                };
            }
        }
        let sent = self.tx.send(packet);
        clock.woke(self.producer, None);
        *blocked += t0.elapsed();
        sent.map_err(|_| Disconnected)
    }

    /// Counts a packet discarded at send because its maker was interrupted meanwhile.
    pub(crate) fn flushed(&self) {
        self.shared.stats.flushed.fetch_add(1, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::test_payload::Tick;
    use crate::packet::Timestamp;

    fn pkt(i: u64) -> Packet {
        Packet::new(Timestamp::from_nanos(i), Tick(i))
    }

    fn drain(rx: &EdgeReceiver) -> Vec<u64> {
        rx.rx.try_iter().map(|p| p.timestamp.as_nanos()).collect()
    }

    fn make(size: usize, overflow: Overflow, stats: &Arc<EdgeStats>) -> (EdgeSender, EdgeReceiver) {
        let clock = Clock::new(ClockKind::Real, 0, 0);
        edge(
            0,
            QueueConfig { size, overflow },
            stats.clone(),
            clock,
            0,
            0,
            false,
        )
    }

    #[test]
    fn drop_oldest_keeps_the_newest_in_order() {
        let stats = Arc::new(EdgeStats::default());
        let (tx, rx) = make(3, Overflow::DropOldest, &stats);
        for i in 0..10 {
            tx.send(pkt(i), &mut Duration::default()).unwrap();
        }
        assert_eq!(drain(&rx), vec![7, 8, 9]);
        assert_eq!(stats.dropped.load(Relaxed), 7);
        assert_eq!(stats.high_water.load(Relaxed), 3);
    }

    #[test]
    fn drop_newest_keeps_the_oldest() {
        let stats = Arc::new(EdgeStats::default());
        let (tx, rx) = make(2, Overflow::DropNewest, &stats);
        for i in 0..5 {
            tx.send(pkt(i), &mut Duration::default()).unwrap();
        }
        assert_eq!(drain(&rx), vec![0, 1]);
        assert_eq!(stats.dropped.load(Relaxed), 3);
    }

    #[test]
    fn every_policy_sees_its_consumer_end() {
        for overflow in [Overflow::Block, Overflow::DropOldest, Overflow::DropNewest] {
            let (tx, rx) = make(2, overflow, &Arc::default());
            drop(rx);
            assert_eq!(
                tx.send(pkt(0), &mut Duration::default()),
                Err(Disconnected),
                "{overflow}"
            );
        }
    }
}
