//! `audio.denoise`: RNNoise noise suppression (crate `nnnoiseless`).
//!
//! ```yaml
//! clean:
//!   node: audio.denoise
//!   in: { audio: mic.audio }
//! ```
//! Input must be 48 kHz mono (RNNoise's only format): capture at 48 kHz or resample first.
//! Audio is processed in 480-sample (10 ms) blocks; output frames keep the input's sample
//! positions. A hole in the input positions (e.g. a capture overrun) flushes the pending
//! partial block, padded with silence, and restarts at the new position. No options.
//! After an interrupt, the pending partial block (less than 10 ms of audio from before it) is
//! dropped.

use std::sync::Arc;

use nnnoiseless::DenoiseState;
use weir_engine::{
    Context, Incoming, Input, NoConfig, NodeError, NodeKind, Output, Ports, Processor,
};
use weir_media::AudioFrame;

/// RNNoise's sample rate.
pub const RATE: u32 = 48_000;
/// RNNoise's block length in samples.
pub const BLOCK: usize = DenoiseState::FRAME_SIZE;
/// RNNoise works on samples in the 16-bit integer range.
const SCALE: f32 = 32_768.0;

/// The ports of `audio.denoise`.
#[derive(Clone, Copy, Debug)]
pub struct DenoisePorts {
    input: Input<AudioFrame>,
    output: Output<AudioFrame>,
}

fn ports(p: &mut Ports) -> DenoisePorts {
    DenoisePorts {
        input: p.input("audio", "48 kHz mono audio"),
        output: p.output("audio", "denoised audio"),
    }
}

/// The `audio.denoise` kind.
pub fn kind() -> NodeKind {
    NodeKind::processor(
        "audio.denoise",
        "Suppresses noise with RNNoise (48 kHz mono).",
        ports,
        |_: NoConfig, ports| {
            Ok(DenoiseNode {
                ports,
                denoiser: Denoiser::new(),
            })
        },
    )
}

/// The RNNoise block loop, without the engine.
pub struct Denoiser {
    state: Box<DenoiseState<'static>>,
    pending: Vec<f32>,
    /// Stream position of `pending[0]`.
    start: u64,
    scratch: [f32; BLOCK],
}

impl Default for Denoiser {
    fn default() -> Self {
        Denoiser::new()
    }
}

impl Denoiser {
    /// A fresh denoiser.
    pub fn new() -> Self {
        Denoiser {
            state: DenoiseState::new(),
            pending: Vec::with_capacity(BLOCK * 4),
            start: 0,
            scratch: [0.0; BLOCK],
        }
    }

    /// Adds mono samples starting at stream position `start`; returns the denoised samples
    /// ready so far with their start position (whole blocks only).
    pub fn push(&mut self, start: u64, samples: &[f32]) -> Vec<(u64, Vec<f32>)> {
        let mut ready = Vec::new();
        let expected = self.start + self.pending.len() as u64;
        if self.pending.is_empty() {
            self.start = start;
        } else if start != expected {
            ready.extend(self.flush());
            self.start = start;
        }
        self.pending.extend(samples.iter().map(|s| s * SCALE));
        let whole = self.pending.len() / BLOCK * BLOCK;
        if whole > 0 {
            let mut out = Vec::with_capacity(whole);
            for block in self.pending[..whole].chunks_exact(BLOCK) {
                self.state.process_frame(&mut self.scratch, block);
                out.extend(self.scratch.iter().map(|s| s / SCALE));
            }
            ready.push((self.start, out));
            self.pending.drain(..whole);
            self.start += whole as u64;
        }
        ready
    }

    /// Processes the pending partial block padded with silence; returns its real samples.
    pub fn flush(&mut self) -> Option<(u64, Vec<f32>)> {
        if self.pending.is_empty() {
            return None;
        }
        let n = self.pending.len();
        let mut block = [0.0f32; BLOCK];
        block[..n].copy_from_slice(&self.pending);
        self.state.process_frame(&mut self.scratch, &block);
        let out = self.scratch[..n].iter().map(|s| s / SCALE).collect();
        let start = self.start;
        self.pending.clear();
        self.start += n as u64;
        Some((start, out))
    }

    /// Drops the pending partial block unprocessed; returns how many samples it held.
    pub fn discard(&mut self) -> usize {
        let n = self.pending.len();
        self.pending.clear();
        n
    }
}

/// Node adapter around [`Denoiser`].
pub struct DenoiseNode {
    ports: DenoisePorts,
    denoiser: Denoiser,
}

impl Default for DenoiseNode {
    fn default() -> Self {
        DenoiseNode::new()
    }
}

impl DenoiseNode {
    /// A node with a fresh denoiser.
    pub fn new() -> Self {
        DenoiseNode {
            ports: ports(&mut Ports::default()),
            denoiser: Denoiser::new(),
        }
    }

    fn send(&self, ctx: &mut Context, start: u64, samples: Vec<f32>) -> Result<(), NodeError> {
        let frame = AudioFrame {
            rate: RATE,
            channels: 1,
            start_sample: start,
            samples: Arc::from(samples),
        };
        ctx.send(self.ports.output, frame.timestamp(), frame)
    }
}

impl Processor for DenoiseNode {
    fn process(&mut self, input: Incoming, ctx: &mut Context) -> Result<(), NodeError> {
        let frame = self.ports.input.expect(&input)?;
        if frame.rate != RATE || frame.channels != 1 {
            return Err(NodeError::new(format!(
                "RNNoise needs 48000 Hz mono audio, got {} Hz with {} channels: capture with \
                 `rate: 48000, channels: 1` or put `audio.resample` (rate: 48000) before it",
                frame.rate, frame.channels
            )));
        }
        for (start, samples) in self.denoiser.push(frame.start_sample, &frame.samples) {
            self.send(ctx, start, samples)?;
        }
        Ok(())
    }

    fn flush(&mut self, _ctx: &mut Context) -> Result<(), NodeError> {
        let dropped = self.denoiser.discard();
        tracing::debug!(
            dropped_samples = dropped,
            "denoise: interrupted, partial block dropped"
        );
        Ok(())
    }

    fn close(&mut self, ctx: &mut Context) -> Result<(), NodeError> {
        match self.denoiser.flush() {
            Some((start, samples)) => self.send(ctx, start, samples),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_engine::testing::NodeRunner;
    use weir_engine::{Packet, Timestamp};

    #[test]
    fn keeps_positions_and_length() {
        let mut d = Denoiser::new();
        let noise: Vec<f32> = (0..1000)
            .map(|i| ((i * 7919) % 200) as f32 / 1000.0 - 0.1)
            .collect();
        let ready = d.push(100, &noise);
        assert_eq!(ready.len(), 1);
        assert_eq!((ready[0].0, ready[0].1.len()), (100, 960));
        let (start, tail) = d.flush().unwrap();
        assert_eq!((start, tail.len()), (1060, 40));
        let in_energy: f32 = noise[480..960].iter().map(|s| s * s).sum();
        let out_energy: f32 = ready[0].1[480..].iter().map(|s| s * s).sum();
        assert!(out_energy < in_energy, "noise should be reduced");
    }

    fn noise(n: usize, seed: usize) -> Vec<f32> {
        (0..n)
            .map(|i| (((i + seed) * 7919) % 200) as f32 / 1000.0 - 0.1)
            .collect()
    }

    fn frame(start: u64, samples: Vec<f32>, rate: u32) -> Packet {
        let f = AudioFrame {
            rate,
            channels: 1,
            start_sample: start,
            samples: Arc::from(samples),
        };
        Packet::new(f.timestamp(), f)
    }

    #[test]
    fn node_keeps_positions_and_flushes_the_tail_at_close() {
        // 3 frames of 700 samples, then a hole (an overrun upstream) and one more frame.
        let packets = vec![
            frame(0, noise(700, 0), RATE),
            frame(700, noise(700, 1), RATE),
            frame(1400, noise(700, 2), RATE),
            frame(5000, noise(500, 3), RATE),
        ];
        let out = NodeRunner::new(kind())
            .feed("audio", packets)
            .run()
            .expect("denoise runs");
        let spans: Vec<(u64, usize)> = out
            .values::<AudioFrame>("audio")
            .iter()
            .map(|f| (f.start_sample, f.frames()))
            .collect();
        // Whole blocks as they fill, the partial block before the hole padded and cut back
        // to its real length, then the tail at close.
        assert_eq!(
            spans,
            [
                (0, 480),
                (480, 480),
                (960, 960),
                (1920, 180),
                (5000, 480),
                (5480, 20)
            ]
        );
        for p in out.packets("audio") {
            let f = p.get::<AudioFrame>().expect("audio");
            assert_eq!(p.timestamp, f.timestamp());
            assert_eq!((f.rate, f.channels), (RATE, 1));
        }
    }

    #[test]
    fn interrupt_drops_the_pending_partial_block() {
        let out = NodeRunner::new(kind())
            .feed(
                "audio",
                [
                    frame(0, noise(700, 0), RATE),
                    frame(700, noise(700, 1), RATE),
                ],
            )
            // Between the two frames (at 5 ms; the second comes at 14.6 ms).
            .interrupt_at([Packet::new(
                Timestamp::from_nanos(5_000_000),
                weir_media::Event::new("speech_start", serde_json::json!({})),
            )])
            .run()
            .expect("denoise runs");
        let spans: Vec<(u64, usize)> = out
            .values::<AudioFrame>("audio")
            .iter()
            .map(|f| (f.start_sample, f.frames()))
            .collect();
        // The 220 samples pending at the interrupt are gone: the next block starts at 700.
        assert_eq!(spans, [(0, 480), (700, 480), (1180, 220)]);
    }

    #[test]
    fn node_refuses_audio_it_cannot_denoise() {
        let err = NodeRunner::new(kind())
            .feed("audio", [frame(0, noise(480, 0), 16_000)])
            .run()
            .expect_err("16 kHz is refused");
        assert!(
            err.to_string().contains("RNNoise needs 48000 Hz mono"),
            "{err}"
        );
    }
}
