//! What a subscriber knows of the publisher stream it reads: gaps in the sequence numbers
//! (lost packets) and a publisher that came back as a new stream (a restart), whose
//! timestamps may start again from zero.
//!
//! A new stream is never a gap: its first sequence number is not compared with the old
//! stream's (what the publisher dropped while no subscriber matched, it counted itself).
//! Its timestamps are kept when they continue forward (a publisher stamping with a clock that
//! kept running, such as the brain's answers stamped with the device's speech times). When
//! they go back (the publisher's clock restarted with its process), the whole new stream is
//! shifted so that its first packet lands where the old stream's clock would be now: the
//! last timestamp forwarded plus the subscriber's graph time elapsed since. The outputs stay
//! monotonic, the spacing within the new stream is exact, and the time the publisher was
//! away shows as a gap.

use weir_engine::Timestamp;

/// The stream being read.
#[derive(Clone, Copy, Debug)]
struct Current {
    id: u64,
    next_seq: u64,
    /// Nanoseconds added to this stream's timestamps.
    shift: u64,
}

/// The last packet forwarded.
#[derive(Clone, Copy, Debug)]
struct Last {
    /// Its timestamp, as forwarded (shifted).
    forwarded: Timestamp,
    /// The subscriber's graph time when it was forwarded.
    at: Timestamp,
}

/// A publisher's new stream, seen after another.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Rejoin {
    /// Nanoseconds added to the new stream's timestamps (0: they continue forward).
    pub shift: u64,
    /// Streams that followed another so far, this one included.
    pub restarts: u64,
}

/// What to do with one packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Admitted {
    /// The timestamp to forward it with.
    pub timestamp: Timestamp,
    /// Packets of the same stream missing before it.
    pub lost: u64,
    /// Set when it starts a new stream after another.
    pub rejoined: Option<Rejoin>,
}

/// Follows the streams of one key.
#[derive(Debug, Default)]
pub(crate) struct Tracker {
    current: Option<Current>,
    last: Option<Last>,
    restarts: u64,
}

impl Tracker {
    /// Admits packet `seq` of stream `stream`, stamped `timestamp` by its publisher, at the
    /// subscriber's graph time `now`.
    pub fn admit(
        &mut self,
        stream: u64,
        seq: u64,
        timestamp: Timestamp,
        now: Timestamp,
    ) -> Admitted {
        let mut lost = 0;
        let mut rejoined = None;
        match &mut self.current {
            Some(c) if c.id == stream => {
                lost = seq.saturating_sub(c.next_seq);
                c.next_seq = c.next_seq.max(seq + 1);
            }
            current => {
                let shift = match self.last {
                    Some(last) if timestamp < last.forwarded => {
                        let away = now.as_nanos().saturating_sub(last.at.as_nanos());
                        last.forwarded.as_nanos().saturating_add(away) - timestamp.as_nanos()
                    }
                    _ => 0,
                };
                if current.is_some() {
                    self.restarts += 1;
                    rejoined = Some(Rejoin {
                        shift,
                        restarts: self.restarts,
                    });
                }
                *current = Some(Current {
                    id: stream,
                    next_seq: seq + 1,
                    shift,
                });
            }
        }
        let shift = self.current.map_or(0, |c| c.shift);
        let mut timestamp = Timestamp::from_nanos(timestamp.as_nanos().saturating_add(shift));
        if let Some(last) = self.last {
            // A stream's own timestamps are monotonic; this only guards a publisher that is not.
            timestamp = timestamp.max(last.forwarded);
        }
        self.last = Some(Last {
            forwarded: timestamp,
            at: now,
        });
        Admitted {
            timestamp,
            lost,
            rejoined,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Timestamp {
        Timestamp::from_nanos(n * 1_000_000)
    }

    #[test]
    fn gaps_within_a_stream_are_lost_and_timestamps_pass_through() {
        let mut t = Tracker::default();
        assert_eq!(t.admit(7, 3, ms(60), ms(0)).lost, 0, "joined mid-stream");
        let a = t.admit(7, 6, ms(120), ms(60));
        assert_eq!((a.lost, a.timestamp, a.rejoined), (2, ms(120), None));
    }

    #[test]
    fn a_restarted_clock_continues_from_the_old_one_plus_the_time_away() {
        let mut t = Tracker::default();
        t.admit(1, 0, ms(5_000), ms(1_000));
        t.admit(1, 1, ms(5_020), ms(1_020));
        // Back 3 s later (subscriber's time) from zero, having dropped 4 packets itself.
        let a = t.admit(2, 4, ms(0), ms(4_020));
        assert_eq!(a.lost, 0, "a new stream is not a gap");
        assert_eq!(a.timestamp, ms(8_020));
        assert_eq!(
            a.rejoined,
            Some(Rejoin {
                shift: 8_020_000_000,
                restarts: 1
            })
        );
        let b = t.admit(2, 5, ms(20), ms(4_040));
        assert_eq!((b.timestamp, b.lost, b.rejoined), (ms(8_040), 0, None));
        assert_eq!(t.admit(2, 7, ms(60), ms(4_080)).lost, 1);
    }

    #[test]
    fn a_new_stream_whose_clock_went_on_keeps_its_timestamps() {
        let mut t = Tracker::default();
        t.admit(1, 0, ms(2_000), ms(0));
        let a = t.admit(9, 0, ms(22_000), ms(20_000));
        assert_eq!(a.timestamp, ms(22_000));
        assert_eq!(
            a.rejoined,
            Some(Rejoin {
                shift: 0,
                restarts: 1
            })
        );
    }
}
