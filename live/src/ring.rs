//! The real-time hand-off between an audio callback and a node thread, without cpal.
//!
//! Capture: the callback owns a [`CaptureFeed`] and only copies samples into a preallocated
//! SPSC ring (no allocation, lock, log or blocking). When the ring is full the samples that do
//! not fit are lost; the callback counts them and leaves a [`Gap`] marker in a second small
//! ring, so the capture thread's [`Framer`] knows exactly where the hole is. The framer turns
//! the ring into frames whose `start_sample` is the position in the device's stream: lost
//! samples advance the position, so timestamps stay on the device clock and never go back.
//!
//! Playback: the node thread fills a ring with a [`PlaybackFeed`]; the callback drains it with
//! a [`PlaybackDrain`], writing silence and counting underruns when it runs dry. An interrupt
//! clears the ring without touching the consumer's side: the feed publishes "skip everything
//! pushed so far" in one atomic, and the callback honours it at its next call.

use std::sync::atomic::{
    AtomicBool, AtomicU64,
    Ordering::{Acquire, Relaxed, Release},
};
use std::sync::Arc;
use std::thread::Thread;

use ringbuf::traits::{Consumer, Observer, Producer, Split};
use ringbuf::{HeapCons, HeapProd, HeapRb};

/// How many gap markers fit between two reads of the capture thread; more are merged.
const GAP_SLOTS: usize = 256;

/// Frames a playback callback converts at a time (its scratch buffer, made once).
const PULL_CHUNK_FRAMES: usize = 1024;

/// Counters shared by the callback, the node and whoever reports them. All in samples
/// (interleaved values) unless named `frames`.
#[derive(Debug, Default)]
pub struct CaptureCounters {
    /// Callbacks received.
    pub callbacks: AtomicU64,
    /// Frames (samples per channel) the device delivered, lost ones included.
    pub device_frames: AtomicU64,
    /// Frames lost because the ring was full (overruns).
    pub overrun_frames: AtomicU64,
    /// Callbacks that lost at least one frame.
    pub overrun_events: AtomicU64,
    /// Errors the audio backend reported on the stream.
    pub stream_errors: AtomicU64,
    /// Frames turned into packets by the capture thread.
    pub emitted_frames: AtomicU64,
}

impl CaptureCounters {
    /// A snapshot of the counters.
    pub fn snapshot(&self) -> CaptureStats {
        CaptureStats {
            callbacks: self.callbacks.load(Relaxed),
            device_frames: self.device_frames.load(Relaxed),
            overrun_frames: self.overrun_frames.load(Relaxed),
            overrun_events: self.overrun_events.load(Relaxed),
            stream_errors: self.stream_errors.load(Relaxed),
            emitted_frames: self.emitted_frames.load(Relaxed),
        }
    }
}

/// A copy of [`CaptureCounters`] at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CaptureStats {
    /// Callbacks received.
    pub callbacks: u64,
    /// Frames the device delivered, lost ones included.
    pub device_frames: u64,
    /// Frames lost because the ring was full.
    pub overrun_frames: u64,
    /// Callbacks that lost at least one frame.
    pub overrun_events: u64,
    /// Errors reported by the audio backend.
    pub stream_errors: u64,
    /// Frames turned into packets.
    pub emitted_frames: u64,
}

/// A hole in the captured stream: `lost` frames are missing after the first `at` frames that
/// made it into the ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gap {
    /// Frames accepted into the ring before the hole.
    pub at: u64,
    /// Frames missing there.
    pub lost: u64,
}

/// Builds the two ends of a capture ring holding `capacity_frames` frames of `channels`.
pub fn capture_ring(
    capacity_frames: usize,
    channels: u16,
    counters: Arc<CaptureCounters>,
) -> (CaptureFeed, Framer) {
    let channels = usize::from(channels.max(1));
    let (samples_tx, samples_rx) = HeapRb::<f32>::new(capacity_frames.max(1) * channels).split();
    let (gaps_tx, gaps_rx) = HeapRb::<Gap>::new(GAP_SLOTS).split();
    let unplaced = Arc::new(AtomicU64::new(0));
    let feed = CaptureFeed {
        samples: samples_tx,
        gaps: gaps_tx,
        unplaced: unplaced.clone(),
        channels,
        accepted: 0,
        counters: counters.clone(),
        wake: None,
    };
    let framer = Framer {
        samples: samples_rx,
        gaps: gaps_rx,
        unplaced,
        channels,
        read: 0,
        position: 0,
        pending_gap: None,
        lost_since_block: 0,
        counters,
    };
    (feed, framer)
}

/// The callback's end of a capture ring. Every method is real-time safe.
pub struct CaptureFeed {
    samples: HeapProd<f32>,
    gaps: HeapProd<Gap>,
    unplaced: Arc<AtomicU64>,
    channels: usize,
    accepted: u64,
    counters: Arc<CaptureCounters>,
    wake: Option<Thread>,
}

impl CaptureFeed {
    /// Unparks `thread` after each callback, so the capture thread wakes without polling.
    pub fn wake(mut self, thread: Thread) -> Self {
        self.wake = Some(thread);
        self
    }

    /// Copies one callback's interleaved samples, converting each with `convert`.
    ///
    /// A trailing partial frame (never seen from real backends) is dropped and counted.
    pub fn push<T: Copy>(&mut self, data: &[T], convert: impl Fn(T) -> f32) {
        let frames = data.len() / self.channels;
        let whole = &data[..frames * self.channels];
        let room = self.samples.vacant_len() / self.channels * self.channels;
        let take = whole.len().min(room);
        let pushed = self
            .samples
            .push_iter(whole[..take].iter().map(|&s| convert(s)));
        let accepted_frames = (pushed / self.channels) as u64;
        self.accepted += accepted_frames;
        let lost = frames as u64 - accepted_frames;
        self.counters.callbacks.fetch_add(1, Relaxed);
        self.counters
            .device_frames
            .fetch_add(frames as u64, Relaxed);
        if lost > 0 {
            self.counters.overrun_frames.fetch_add(lost, Relaxed);
            self.counters.overrun_events.fetch_add(1, Relaxed);
            let gap = Gap {
                at: self.accepted,
                lost,
            };
            if self.gaps.try_push(gap).is_err() {
                // No slot: the framer applies these at the next position it can.
                self.unplaced.fetch_add(lost, Relaxed);
            }
        }
        if let Some(t) = &self.wake {
            t.unpark();
        }
    }

    /// Counts a backend error (the error callback may call this).
    pub fn count_error(&self) {
        self.counters.stream_errors.fetch_add(1, Relaxed);
    }
}

/// One block of frames read from the ring, with its position in the device's stream.
#[derive(Clone, Debug, PartialEq)]
pub struct Block {
    /// Position (in frames) of the first frame in the device's stream.
    pub start_sample: u64,
    /// Interleaved samples, `channels` per frame.
    pub samples: Vec<f32>,
    /// Frames lost just before this block (0 when contiguous with the previous one).
    pub lost_before: u64,
}

/// The capture thread's end of a capture ring: cuts it into blocks with exact positions.
pub struct Framer {
    samples: HeapCons<f32>,
    gaps: HeapCons<Gap>,
    unplaced: Arc<AtomicU64>,
    channels: usize,
    /// Frames read from the ring so far.
    read: u64,
    /// Position in the device's stream of the next frame to read.
    position: u64,
    pending_gap: Option<Gap>,
    /// Frames lost since the last block was returned.
    lost_since_block: u64,
    counters: Arc<CaptureCounters>,
}

impl Framer {
    /// Frames waiting in the ring.
    pub fn available_frames(&self) -> usize {
        self.samples.occupied_len() / self.channels
    }

    /// Position of the next frame in the device's stream.
    pub fn position(&self) -> u64 {
        self.position
    }

    /// Reads the next block of `frames` frames if the ring holds that many.
    ///
    /// With `partial`, reads whatever is there (at least one frame): used to drain at the end.
    /// A block never spans a gap: it stops at the hole, and the next block starts after it
    /// with `lost_before` set.
    pub fn next_block(&mut self, frames: usize, partial: bool) -> Option<Block> {
        self.lost_since_block += self.apply_gaps_at_read_point();
        let available = self.available_frames();
        let until_gap = self
            .next_gap()
            .map(|g| (g.at - self.read) as usize)
            .unwrap_or(usize::MAX);
        let want = frames.max(1);
        let n = if until_gap < want && until_gap <= available {
            until_gap
        } else if available >= want {
            want
        } else if partial && available > 0 {
            available.min(until_gap)
        } else {
            return None;
        };
        if n == 0 {
            return None;
        }
        let mut samples = vec![0.0; n * self.channels];
        let got = self.samples.pop_slice(&mut samples);
        debug_assert_eq!(got, samples.len());
        let start_sample = self.position;
        self.read += n as u64;
        self.position += n as u64;
        self.counters.emitted_frames.fetch_add(n as u64, Relaxed);
        let lost_before = std::mem::take(&mut self.lost_since_block);
        // Losses counted while no marker slot was free are placed here, as close as known.
        let unplaced = self.unplaced.swap(0, Relaxed);
        self.position += unplaced;
        self.lost_since_block += unplaced;
        Some(Block {
            start_sample,
            samples,
            lost_before,
        })
    }

    /// Frames lost after the last block was taken (e.g. at the end of a stream), counted
    /// once: the `lost_before` no later block will carry. Advances the position past them.
    pub fn take_trailing_loss(&mut self) -> u64 {
        let reached = self.apply_gaps_at_read_point();
        let unplaced = self.unplaced.swap(0, Relaxed);
        self.position += unplaced;
        std::mem::take(&mut self.lost_since_block) + reached + unplaced
    }

    /// The next gap marker not yet reached, if any.
    fn next_gap(&mut self) -> Option<Gap> {
        if self.pending_gap.is_none() {
            self.pending_gap = self.gaps.try_pop();
        }
        self.pending_gap
    }

    /// Skips the position over every gap located exactly at the read point; returns frames lost.
    fn apply_gaps_at_read_point(&mut self) -> u64 {
        let mut lost = 0;
        while let Some(g) = self.next_gap() {
            if g.at > self.read {
                break;
            }
            lost += g.lost;
            self.position += g.lost;
            self.pending_gap = None;
        }
        lost
    }
}

/// Counters of a playback ring.
#[derive(Debug, Default)]
pub struct PlaybackCounters {
    /// Callbacks received.
    pub callbacks: AtomicU64,
    /// Frames written to the device from the ring.
    pub played_frames: AtomicU64,
    /// Frames of silence written because the ring ran dry after playback began.
    pub underrun_frames: AtomicU64,
    /// Callbacks that ran dry after playback began.
    pub underrun_events: AtomicU64,
    /// Errors the audio backend reported on the stream.
    pub stream_errors: AtomicU64,
    /// Frames discarded unplayed because the ring was cleared (an interrupt, e.g. barge-in).
    pub flushed_frames: AtomicU64,
    /// Clears the callback has carried out.
    pub flushes: AtomicU64,
    /// Clears asked while audio was queued: interrupts that cut what the speaker was playing
    /// (barge-ins). Counted by the node when it asks, so a clear of an empty ring is not one.
    pub barge_ins: AtomicU64,
}

/// Builds the two ends of a playback ring holding `capacity_frames` frames of `channels`.
pub fn playback_ring(
    capacity_frames: usize,
    channels: u16,
    counters: Arc<PlaybackCounters>,
) -> (PlaybackFeed, PlaybackDrain) {
    let channels = usize::from(channels.max(1));
    let (tx, rx) = HeapRb::<f32>::new(capacity_frames.max(1) * channels).split();
    let started = Arc::new(AtomicBool::new(false));
    let finishing = Arc::new(AtomicBool::new(false));
    let clear_until = Arc::new(AtomicU64::new(0));
    (
        PlaybackFeed {
            samples: tx,
            started: started.clone(),
            finishing: finishing.clone(),
            clear_until: clear_until.clone(),
            pushed: 0,
        },
        PlaybackDrain {
            samples: rx,
            channels,
            started,
            finishing,
            clear_until,
            popped: 0,
            counters,
            scratch: vec![0.0; PULL_CHUNK_FRAMES * channels],
            tap: None,
        },
    )
}

/// The node's end of a playback ring.
pub struct PlaybackFeed {
    samples: HeapProd<f32>,
    started: Arc<AtomicBool>,
    finishing: Arc<AtomicBool>,
    /// Samples pushed before the latest clear: the callback skips everything before this
    /// position in the stream of pushed samples.
    clear_until: Arc<AtomicU64>,
    /// Samples pushed so far.
    pushed: u64,
}

impl PlaybackFeed {
    /// Copies as many samples as fit; returns how many were taken.
    pub fn push(&mut self, samples: &[f32]) -> usize {
        let n = self.samples.push_slice(samples);
        if n > 0 {
            self.pushed += n as u64;
            self.started.store(true, Relaxed);
        }
        n
    }

    /// Samples the ring can still take.
    pub fn vacant(&self) -> usize {
        self.samples.vacant_len()
    }

    /// Samples not yet played (or not yet skipped after a [`PlaybackFeed::clear`]).
    pub fn queued(&self) -> usize {
        self.samples.occupied_len()
    }

    /// Discards everything queued so far: the callback skips it at its next call instead
    /// of playing it (only the consumer may move the read position of the lock-free ring),
    /// then counts it in [`PlaybackCounters::flushed_frames`]. Audio pushed after this call
    /// is kept. Until new audio comes, running dry is silence by request, not an underrun.
    ///
    /// Returns the samples queued at the call: what will be discarded, give or take what a
    /// callback running at this very moment still plays.
    pub fn clear(&mut self) -> usize {
        let queued = self.samples.occupied_len();
        self.started.store(false, Relaxed);
        // Release: the callback that sees this position also sees every sample before it.
        self.clear_until.store(self.pushed, Release);
        queued
    }

    /// Marks the end of the stream: running dry from now on is not an underrun.
    pub fn finish(&self) {
        self.finishing.store(true, Relaxed);
    }
}

/// The callback's end of a playback ring. Every method is real-time safe.
pub struct PlaybackDrain {
    samples: HeapCons<f32>,
    channels: usize,
    started: Arc<AtomicBool>,
    finishing: Arc<AtomicBool>,
    clear_until: Arc<AtomicU64>,
    /// Samples taken out of the ring so far, played or skipped.
    popped: u64,
    counters: Arc<PlaybackCounters>,
    /// The samples of the current chunk, as `f32`, before conversion.
    scratch: Vec<f32>,
    /// Where every sample handed to the device is copied (silence included).
    tap: Option<CaptureFeed>,
}

impl PlaybackDrain {
    /// Also copies every sample handed to the device (the ring's audio and the silence
    /// around it, never the audio a clear skipped) into `tap`: a capture ring whose framer
    /// then gives what the speaker played with its exact positions in the device's stream.
    pub fn tap(mut self, tap: CaptureFeed) -> Self {
        self.tap = Some(tap);
        self
    }

    /// Fills one callback's interleaved buffer, converting each sample with `convert`;
    /// what the ring cannot provide is silence (`silence`), counted as underrun once
    /// playback has begun and until the stream is finishing. A pending clear is carried
    /// out first: the audio queued before it is skipped, never played.
    pub fn pull<T: Copy>(&mut self, out: &mut [T], silence: T, convert: impl Fn(f32) -> T) {
        self.apply_clear();
        let mut filled = 0;
        let mut dry = false;
        for chunk in out.chunks_mut(self.scratch.len()) {
            let n = chunk.len();
            let got = if dry {
                0
            } else {
                self.samples.pop_slice(&mut self.scratch[..n])
            };
            dry = got < n;
            for (o, &s) in chunk.iter_mut().zip(&self.scratch[..got]) {
                *o = convert(s);
            }
            chunk[got..].fill(silence);
            filled += got;
            if let Some(tap) = self.tap.as_mut() {
                self.scratch[got..n].fill(0.0);
                tap.push(&self.scratch[..n], |s| s);
            }
        }
        self.popped += filled as u64;
        let frames = (out.len() / self.channels) as u64;
        let played = (filled / self.channels) as u64;
        self.counters.callbacks.fetch_add(1, Relaxed);
        self.counters.played_frames.fetch_add(played, Relaxed);
        let dry = frames - played;
        if dry > 0 && self.started.load(Relaxed) && !self.finishing.load(Relaxed) {
            self.counters.underrun_frames.fetch_add(dry, Relaxed);
            self.counters.underrun_events.fetch_add(1, Relaxed);
        }
    }

    /// Skips the samples pushed before the latest clear, if any are left: one atomic load
    /// and an index move, no allocation.
    fn apply_clear(&mut self) {
        let until = self.clear_until.load(Acquire);
        if until <= self.popped {
            return;
        }
        let want = usize::try_from(until - self.popped).unwrap_or(usize::MAX);
        let skipped = self.samples.skip(want);
        self.popped += skipped as u64;
        self.counters
            .flushed_frames
            .fetch_add((skipped / self.channels) as u64, Relaxed);
        self.counters.flushes.fetch_add(1, Relaxed);
    }

    /// Counts a backend error (the error callback may call this).
    pub fn count_error(&self) {
        self.counters.stream_errors.fetch_add(1, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(cap: usize, ch: u16) -> (CaptureFeed, Framer, Arc<CaptureCounters>) {
        let c = Arc::new(CaptureCounters::default());
        let (f, r) = capture_ring(cap, ch, c.clone());
        (f, r, c)
    }

    #[test]
    fn blocks_are_exact_and_contiguous() {
        let (mut feed, mut framer, c) = ring(64, 2);
        let data: Vec<f32> = (0..40).map(|i| i as f32).collect();
        feed.push(&data, |s| s);
        let a = framer.next_block(8, false).unwrap();
        assert_eq!(a.start_sample, 0);
        assert_eq!(a.samples, data[..16]);
        let b = framer.next_block(8, false).unwrap();
        assert_eq!(b.start_sample, 8);
        assert!(framer.next_block(8, false).is_none());
        let tail = framer.next_block(8, true).unwrap();
        assert_eq!((tail.start_sample, tail.samples.len()), (16, 8));
        assert_eq!(c.snapshot().overrun_frames, 0);
    }

    #[test]
    fn overrun_leaves_a_gap_in_positions() {
        let (mut feed, mut framer, c) = ring(10, 1);
        feed.push(&[1.0f32; 6], |s| s);
        feed.push(&[2.0f32; 6], |s| s); // 4 fit, 2 lost after frame 10
        feed.push(&[3.0f32; 3], |s| s); // all lost
        assert_eq!(c.snapshot().overrun_frames, 5);
        let a = framer.next_block(8, false).unwrap();
        assert_eq!((a.start_sample, a.samples.len(), a.lost_before), (0, 8, 0));
        // The next block stops at the hole (frame 10) rather than spanning it.
        assert!(framer
            .next_block(8, false)
            .is_some_and(|b| b.samples.len() == 2));
        feed.push(&[4.0f32; 8], |s| s);
        let after = framer.next_block(8, false).unwrap();
        assert_eq!(after.start_sample, 15);
        assert_eq!(after.lost_before, 5);
        assert_eq!(after.samples, vec![4.0; 8]);
    }

    #[test]
    fn playback_counts_underruns_only_after_start() {
        let c = Arc::new(PlaybackCounters::default());
        let (mut feed, mut drain) = playback_ring(16, 1, c.clone());
        let mut out = [9.0f32; 4];
        drain.pull(&mut out, 0.0, |s| s);
        assert_eq!(c.underrun_frames.load(Relaxed), 0);
        feed.push(&[0.5; 6]);
        drain.pull(&mut out, 0.0, |s| s);
        drain.pull(&mut out, 0.0, |s| s);
        assert_eq!(out, [0.5, 0.5, 0.0, 0.0]);
        assert_eq!(c.underrun_frames.load(Relaxed), 2);
        feed.finish();
        drain.pull(&mut out, 0.0, |s| s);
        assert_eq!(c.underrun_frames.load(Relaxed), 2);
    }

    #[test]
    fn clear_skips_what_was_queued_and_keeps_what_comes_after() {
        let c = Arc::new(PlaybackCounters::default());
        let (mut feed, mut drain) = playback_ring(16, 2, c.clone());
        let mut out = [9.0f32; 4];
        feed.push(&[0.5; 8]);
        drain.pull(&mut out, 0.0, |s| s);
        assert_eq!(out, [0.5; 4]);
        assert_eq!(feed.clear(), 4, "two frames were still queued");
        feed.push(&[0.25; 2]);
        drain.pull(&mut out, 0.0, |s| s);
        assert_eq!(
            out,
            [0.25, 0.25, 0.0, 0.0],
            "old audio skipped, new audio kept"
        );
        assert_eq!(c.flushed_frames.load(Relaxed), 2);
        assert_eq!(c.flushes.load(Relaxed), 1);
        assert_eq!(c.played_frames.load(Relaxed), 3);
        // Silence after a clear with nothing new queued is not an underrun.
        feed.clear();
        drain.pull(&mut out, 0.0, |s| s);
        assert_eq!(out, [0.0; 4]);
        assert_eq!(
            c.underrun_frames.load(Relaxed),
            1,
            "only the short callback above"
        );
        assert_eq!(c.flushes.load(Relaxed), 1, "nothing left to skip");
        assert_eq!(feed.queued(), 0);
    }

    #[test]
    fn the_tap_holds_what_was_played_and_silence_after_a_clear() {
        let c = Arc::new(PlaybackCounters::default());
        let (mut feed, drain) = playback_ring(16, 1, c);
        let (tap, mut played) = capture_ring(64, 1, Arc::default());
        let mut drain = drain.tap(tap);
        let mut out = [9.0f32; 4];
        feed.push(&[0.5; 6]);
        drain.pull(&mut out, 0.0, |s| s);
        feed.clear(); // the last two queued samples are never played
        drain.pull(&mut out, 0.0, |s| s);
        let b = played.next_block(8, false).expect("two callbacks of 4");
        assert_eq!(b.start_sample, 0);
        assert_eq!(b.samples, [0.5, 0.5, 0.5, 0.5, 0.0, 0.0, 0.0, 0.0]);
    }
}
