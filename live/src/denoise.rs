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

use std::sync::Arc;

use nnnoiseless::DenoiseState;
use weir_engine::{
    AudioFrame, Node, NodeError, NodeKind, Outputs, Packet, Payload, PortSpec, PortType,
};

/// RNNoise's sample rate.
pub const RATE: u32 = 48_000;
/// RNNoise's block length in samples.
pub const BLOCK: usize = DenoiseState::FRAME_SIZE;
/// RNNoise works on samples in the 16-bit integer range.
const SCALE: f32 = 32_768.0;

/// The `audio.denoise` kind.
pub fn kind() -> NodeKind {
    NodeKind::new(
        "audio.denoise",
        "Suppresses noise with RNNoise (48 kHz mono).",
        |_| Ok(Box::new(DenoiseNode::new())),
    )
    .input(PortSpec::new("audio", PortType::Audio, "48 kHz mono audio"))
    .output(PortSpec::new("audio", PortType::Audio, "denoised audio"))
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
}

/// Node adapter around [`Denoiser`].
pub struct DenoiseNode {
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
            denoiser: Denoiser::new(),
        }
    }
}

fn send(out: &mut Outputs, start: u64, samples: Vec<f32>) -> Result<(), NodeError> {
    let frame = AudioFrame {
        rate: RATE,
        channels: 1,
        start_sample: start,
        samples: Arc::from(samples),
    };
    out.send(0, Packet::new(frame.timestamp(), Payload::Audio(frame)))
}

impl Node for DenoiseNode {
    fn process(
        &mut self,
        _port: usize,
        packet: Packet,
        out: &mut Outputs,
    ) -> Result<(), NodeError> {
        let Payload::Audio(frame) = packet.payload else {
            return Ok(());
        };
        if frame.rate != RATE || frame.channels != 1 {
            return Err(NodeError::new(format!(
                "RNNoise needs 48000 Hz mono audio, got {} Hz with {} channels: capture with \
                 `rate: 48000, channels: 1` or put `audio.resample` (rate: 48000) before it",
                frame.rate, frame.channels
            )));
        }
        for (start, samples) in self.denoiser.push(frame.start_sample, &frame.samples) {
            send(out, start, samples)?;
        }
        Ok(())
    }

    fn close(&mut self, out: &mut Outputs) -> Result<(), NodeError> {
        match self.denoiser.flush() {
            Some((start, samples)) => send(out, start, samples),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
