//! [`Aligner`]: pairs microphone blocks with what the speaker played at the same time, by
//! sample position on one clock, without the engine.
//!
//! The reference is kept in a bounded buffer keyed by position. Before a microphone block
//! `[m, m + n)` is released, the reference up to `m + n` is handed to the canceller (AEC3
//! then looks back up to about half a second for the echo). A block waits for its reference
//! at most `hold` samples of microphone audio; after that it goes on with what there is:
//! silence where nothing was played or nothing arrived. A block with no reference at all is
//! reported (`covered: false`) so the caller can pass it through unchanged; reference that
//! comes after its time was used is dropped (`late`), and reference beyond the buffer's
//! capacity ahead of the microphone is dropped oldest first (`dropped`).

use std::collections::VecDeque;

/// A reference further behind the microphone than this many blocks is skipped, not fed.
const MAX_CATCH_UP_BLOCKS: u64 = 50;

/// What the aligner counted (samples are mono samples at the node's rate).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AlignStats {
    /// Microphone blocks released.
    pub blocks: u64,
    /// Blocks released with no reference at all (passed through).
    pub missing_blocks: u64,
    /// Reference samples that arrived after their time had been used.
    pub late_samples: u64,
    /// Reference samples dropped because the buffer ahead of the microphone was full.
    pub dropped_samples: u64,
    /// Reference samples of silence put in the holes of the reference stream.
    pub gap_samples: u64,
}

/// A microphone block ready for the canceller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ready {
    /// Position of its first sample.
    pub start: u64,
    /// Real samples in it (less than a block only at the end of a run, padded with zeros).
    pub frames: usize,
    /// False if no reference covered its time: pass it through.
    pub covered: bool,
}

/// Pairs a microphone stream with its reference; see the module docs.
pub struct Aligner {
    block: usize,
    hold: usize,
    capacity: usize,
    reference: VecDeque<f32>,
    /// Position of `reference[0]`.
    ref_start: u64,
    ref_seen: bool,
    mic: VecDeque<f32>,
    /// Position of `mic[0]`.
    mic_start: u64,
    /// Reference position fed to the canceller so far.
    fed: Option<u64>,
    scratch: Vec<f32>,
    stats: AlignStats,
}

impl Aligner {
    /// An aligner for `block`-sample blocks that holds at most `hold` samples of microphone
    /// audio waiting for the reference and buffers at most `capacity` reference samples.
    pub fn new(block: usize, hold: usize, capacity: usize) -> Self {
        let block = block.max(1);
        let capacity = capacity.max(2 * block);
        Aligner {
            block,
            hold,
            capacity,
            reference: VecDeque::with_capacity(capacity),
            ref_start: 0,
            ref_seen: false,
            mic: VecDeque::with_capacity(hold + 4 * block),
            mic_start: 0,
            fed: None,
            scratch: vec![0.0; block],
            stats: AlignStats::default(),
        }
    }

    /// What was counted so far.
    pub fn stats(&self) -> AlignStats {
        self.stats
    }

    /// Adds mono reference samples starting at position `start`.
    pub fn push_reference(&mut self, start: u64, samples: &[f32]) {
        let mut start = start;
        let mut samples = samples;
        // What comes before the fed position can no longer be used.
        if let Some(fed) = self.fed {
            if start < fed {
                let late = usize::try_from(fed - start)
                    .unwrap_or(usize::MAX)
                    .min(samples.len());
                self.stats.late_samples += late as u64;
                samples = &samples[late..];
                start += late as u64;
            }
        }
        if samples.is_empty() {
            return;
        }
        let end = self.ref_start + self.reference.len() as u64;
        if !self.ref_seen || start > end + self.capacity as u64 {
            self.reference.clear();
            self.ref_start = start;
            self.ref_seen = true;
        } else if start > end {
            let gap = (start - end) as usize;
            self.stats.gap_samples += gap as u64;
            self.reference.extend(std::iter::repeat_n(0.0, gap));
        } else if start < end {
            // Overlaps what is held (not from a monotonic stream): keep the first copy.
            let skip = ((end - start) as usize).min(samples.len());
            self.stats.late_samples += skip as u64;
            samples = &samples[skip..];
        }
        self.reference.extend(samples.iter().copied());
        let over = self.reference.len().saturating_sub(self.capacity);
        if over > 0 {
            self.reference.drain(..over);
            self.ref_start += over as u64;
            self.stats.dropped_samples += over as u64;
        }
    }

    /// True if microphone audio at `start` does not continue the pending audio (a hole in
    /// the capture): release the pending audio with `closing` before pushing it.
    pub fn breaks_mic(&self, start: u64) -> bool {
        !self.mic.is_empty() && start != self.mic_start + self.mic.len() as u64
    }

    /// Adds mono microphone samples starting at position `start` (after [`Self::breaks_mic`]
    /// was handled).
    pub fn push_mic(&mut self, start: u64, samples: &[f32]) {
        if self.mic.is_empty() {
            self.mic_start = start;
        }
        self.mic.extend(samples.iter().copied());
    }

    /// Releases the next microphone block into `mic`, handing the reference blocks for its
    /// time to `render` first; `None` if no block is due. With `closing`, every pending
    /// sample is due (the last block padded with zeros).
    pub fn next(
        &mut self,
        closing: bool,
        mic: &mut [f32],
        mut render: impl FnMut(&[f32]),
    ) -> Option<Ready> {
        let n = self.block;
        let pending = self.mic.len();
        if pending == 0 || (pending < n && !closing) {
            return None;
        }
        let m = self.mic_start;
        let ref_end = self.ref_start + self.reference.len() as u64;
        let arrived = self.ref_seen && ref_end >= m + n as u64;
        if !arrived && pending <= self.hold && !closing {
            return None;
        }
        let mut fed = self.fed.unwrap_or(m);
        if fed + MAX_CATCH_UP_BLOCKS * n as u64 <= m {
            fed = m;
        }
        let mut covered = false;
        while fed <= m {
            covered |= self.fill(fed);
            render(&self.scratch);
            fed += n as u64;
        }
        self.fed = Some(fed);
        let used = usize::try_from(fed.saturating_sub(self.ref_start))
            .unwrap_or(usize::MAX)
            .min(self.reference.len());
        self.reference.drain(..used);
        self.ref_start += used as u64;
        let frames = pending.min(n);
        for (dst, src) in mic.iter_mut().zip(self.mic.drain(..frames)) {
            *dst = src;
        }
        mic[frames..].fill(0.0);
        self.mic_start += frames as u64;
        self.stats.blocks += 1;
        if !covered {
            self.stats.missing_blocks += 1;
        }
        Some(Ready {
            start: m,
            frames,
            covered,
        })
    }

    /// Copies the reference block at position `at` into the scratch block, silence where
    /// there is none; true if any of it was reference.
    fn fill(&mut self, at: u64) -> bool {
        self.scratch.fill(0.0);
        if !self.ref_seen {
            return false;
        }
        let n = self.block as u64;
        let end = self.ref_start + self.reference.len() as u64;
        let (from, to) = (at.max(self.ref_start), (at + n).min(end));
        if from >= to {
            return false;
        }
        for p in from..to {
            self.scratch[(p - at) as usize] = self.reference[(p - self.ref_start) as usize];
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(a: &mut Aligner, closing: bool) -> Vec<(Ready, Vec<Vec<f32>>, Vec<f32>)> {
        let mut out = Vec::new();
        let mut mic = vec![0.0; 4];
        loop {
            let mut refs = Vec::new();
            match a.next(closing, &mut mic, |r| refs.push(r.to_vec())) {
                Some(r) => out.push((r, refs, mic.clone())),
                None => return out,
            }
        }
    }

    #[test]
    fn pairs_by_position_and_waits_for_the_reference() {
        let mut a = Aligner::new(4, 8, 64);
        a.push_mic(100, &[1.0; 8]);
        assert!(drain(&mut a, false).is_empty(), "held for the reference");
        a.push_reference(98, &[0.5; 6]); // covers 98..104
        let got = drain(&mut a, false);
        assert_eq!(got.len(), 1, "only the first block's time is covered");
        let (ready, refs, mic) = &got[0];
        assert_eq!(
            *ready,
            Ready {
                start: 100,
                frames: 4,
                covered: true
            }
        );
        assert_eq!(refs, &vec![vec![0.5; 4]]);
        assert_eq!(mic, &vec![1.0; 4]);
        a.push_reference(104, &[0.25; 2]);
        let got = drain(&mut a, true);
        assert_eq!(
            got[0].1,
            vec![vec![0.25, 0.25, 0.0, 0.0]],
            "short reference padded"
        );
        assert_eq!(a.stats().missing_blocks, 0);
    }

    #[test]
    fn a_missing_reference_never_holds_the_microphone_beyond_the_hold() {
        let mut a = Aligner::new(4, 8, 64);
        a.push_mic(0, &[1.0; 8]);
        assert!(drain(&mut a, false).is_empty());
        a.push_mic(8, &[1.0; 4]); // 12 pending > hold 8
        let got = drain(&mut a, false);
        assert_eq!(got.len(), 1);
        assert!(!got[0].0.covered);
        assert_eq!(a.stats().missing_blocks, 1);
        // The reference for that time comes late: dropped, counted.
        a.push_reference(0, &[0.5; 6]);
        assert_eq!(a.stats().late_samples, 4);
    }

    #[test]
    fn early_reference_is_bounded_and_gaps_are_silence() {
        let mut a = Aligner::new(4, 0, 8);
        a.push_reference(0, &[0.5; 12]);
        assert_eq!(a.stats().dropped_samples, 4);
        a.push_reference(14, &[0.25; 2]); // a hole at 12..14
        assert_eq!(a.stats().gap_samples, 2);
        a.push_mic(8, &[1.0; 8]);
        let got = drain(&mut a, false);
        let refs: Vec<Vec<f32>> = got.iter().flat_map(|g| g.1.clone()).collect();
        assert_eq!(
            refs,
            vec![vec![0.5; 4], vec![0.0, 0.0, 0.25, 0.25]],
            "blocks at 8 and 12"
        );
    }

    #[test]
    fn a_hole_in_the_capture_releases_the_partial_block() {
        let mut a = Aligner::new(4, 0, 16);
        a.push_mic(0, &[1.0; 6]);
        assert!(a.breaks_mic(40));
        let got = drain(&mut a, true);
        assert_eq!(
            got.iter()
                .map(|g| (g.0.start, g.0.frames))
                .collect::<Vec<_>>(),
            [(0, 4), (4, 2)]
        );
        a.push_mic(40, &[1.0; 4]);
        assert_eq!(drain(&mut a, false)[0].0.start, 40);
    }
}
