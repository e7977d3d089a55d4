//! Edges: bounded crossbeam channels with an overflow policy and counters.

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender, TrySendError};

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
    /// Capacity in packets (at least 1).
    pub size: usize,
    /// What happens when the queue is full.
    pub overflow: Overflow,
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

/// The sending end of an edge.
pub(crate) struct EdgeSender {
    tx: Sender<Packet>,
    /// Kept only for `DropOldest`, to evict from the front of a full queue.
    evict: Option<Receiver<Packet>>,
    overflow: Overflow,
    stats: Arc<EdgeStats>,
}

/// Creates an edge's two ends.
pub(crate) fn edge(config: QueueConfig, stats: Arc<EdgeStats>) -> (EdgeSender, Receiver<Packet>) {
    let (tx, rx) = crossbeam_channel::bounded(config.size.max(1));
    let evict = (config.overflow == Overflow::DropOldest).then(|| rx.clone());
    let sender = EdgeSender {
        tx,
        evict,
        overflow: config.overflow,
        stats,
    };
    (sender, rx)
}

impl EdgeSender {
    /// Sends `packet` under the edge's overflow policy.
    pub(crate) fn send(&self, packet: Packet) -> Result<(), Disconnected> {
        match self.overflow {
            Overflow::Block => self.tx.send(packet).map_err(|_| Disconnected)?,
            Overflow::DropNewest => match self.tx.try_send(packet) {
                Ok(()) => {}
                Err(TrySendError::Full(_)) => {
                    self.stats.dropped.fetch_add(1, Relaxed);
                    return Ok(());
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
                            if let Some(evict) = &self.evict {
                                if evict.try_recv().is_ok() {
                                    self.stats.dropped.fetch_add(1, Relaxed);
                                }
                            }
                        }
                        Err(TrySendError::Disconnected(_)) => return Err(Disconnected),
                    }
                }
            }
        }
        self.stats.sent.fetch_add(1, Relaxed);
        self.stats
            .high_water
            .fetch_max(self.tx.len() as u64, Relaxed);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::{Event, Payload, Timestamp};

    fn pkt(i: u64) -> Packet {
        Packet::new(
            Timestamp::from_nanos(i),
            Payload::Event(Event {
                name: "n".into(),
                fields: Arc::new(serde_json::Value::Null),
            }),
        )
    }

    fn drain(rx: &Receiver<Packet>) -> Vec<u64> {
        rx.try_iter().map(|p| p.timestamp.as_nanos()).collect()
    }

    #[test]
    fn drop_oldest_keeps_the_newest_in_order() {
        let stats = Arc::new(EdgeStats::default());
        let cfg = QueueConfig {
            size: 3,
            overflow: Overflow::DropOldest,
        };
        let (tx, rx) = edge(cfg, stats.clone());
        for i in 0..10 {
            tx.send(pkt(i)).unwrap();
        }
        assert_eq!(drain(&rx), vec![7, 8, 9]);
        assert_eq!(stats.dropped.load(Relaxed), 7);
        assert_eq!(stats.high_water.load(Relaxed), 3);
    }

    #[test]
    fn drop_newest_keeps_the_oldest() {
        let stats = Arc::new(EdgeStats::default());
        let cfg = QueueConfig {
            size: 2,
            overflow: Overflow::DropNewest,
        };
        let (tx, rx) = edge(cfg, stats.clone());
        for i in 0..5 {
            tx.send(pkt(i)).unwrap();
        }
        assert_eq!(drain(&rx), vec![0, 1]);
        assert_eq!(stats.dropped.load(Relaxed), 3);
    }

    #[test]
    fn block_reports_a_gone_receiver() {
        let (tx, rx) = edge(QueueConfig::default(), Arc::default());
        drop(rx);
        assert_eq!(tx.send(pkt(0)), Err(Disconnected));
    }
}
