//! `audio.resample`: any rate and channel count to a target rate, optionally down-mixed.
//!
//! ```yaml
//! resample:
//!   node: audio.resample
//!   in: { audio: mic.audio }
//!   with: { rate: 16000, mono: true }
//! ```
//! Uses rubato's FFT resampler (`method: fft`, the default): the ratio of two integer rates is
//! fixed, and FFT resampling is both the fastest and alias-free. `method: sinc` uses the
//! asynchronous sinc resampler, for sources whose ratio is not exact. Polynomial resamplers
//! are never used: they let aliases through when down-sampling.
//!
//! Timing is exact: the resampler's delay is trimmed, so output sample `k` is at `k / rate`
//! seconds, and at end of stream the tail is flushed so that the output has
//! `round(input_frames * rate / input_rate)` frames.

use std::sync::Arc;

use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{
    Async, Fft, FixedAsync, FixedSync, Indexing, Resampler, SincInterpolationParameters,
    WindowFunction,
};
use serde::Deserialize;
use weir_engine::{
    Config, Context, Incoming, Input, NodeError, NodeKind, OptionSpec, OptionType, Output, Ports,
    Processor,
};
use weir_media::AudioFrame;

/// Input frames per resampler call.
const CHUNK: usize = 1024;

/// The ports of `audio.resample`.
pub struct ResamplePorts {
    audio_in: Input<AudioFrame>,
    audio_out: Output<AudioFrame>,
}

fn ports(p: &mut Ports) -> ResamplePorts {
    ResamplePorts {
        audio_in: p.input("audio", "audio at any rate"),
        audio_out: p.output("audio", "audio at `rate`"),
    }
}

/// The kind declaration.
pub fn kind() -> NodeKind {
    NodeKind::processor(
        "audio.resample",
        "Resamples audio to a target rate (FFT or sinc), optionally down-mixing to mono.",
        ports,
        |c: ResampleConfig, ports| Ok(ResampleNode::new(c, ports)),
    )
}

/// Resampling algorithm.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// rubato `Fft` (synchronous).
    Fft,
    /// rubato `Async` with sinc interpolation.
    Sinc,
}

/// Settings of [`ResampleNode`]: the options of `audio.resample`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResampleConfig {
    /// Output rate in Hz.
    pub rate: u32,
    /// Down-mix to mono.
    pub mono: bool,
    /// Algorithm.
    pub method: Method,
}

impl Config for ResampleConfig {
    fn options() -> Vec<OptionSpec> {
        vec![
            OptionSpec::with_default("rate", OptionType::Int, 16000, "output sample rate in Hz")
                .range(1000.0, 384_000.0),
            OptionSpec::with_default(
                "mono",
                OptionType::Bool,
                true,
                "down-mix to one channel (average of the channels)",
            ),
            OptionSpec::with_default(
                "method",
                OptionType::Choice(&["fft", "sinc"]),
                "fft",
                "fft: fixed ratio, fastest; sinc: asynchronous, for drifting ratios",
            ),
        ]
    }
}

/// Streaming resampler with exact timing: plain struct, no engine types.
pub struct StreamResampler {
    inner: Box<dyn Resampler<f32>>,
    channels: usize,
    in_rate: u32,
    out_rate: u32,
    pending: Vec<f32>,
    scratch: Vec<f32>,
    out_buf: Vec<f32>,
    to_skip: usize,
    frames_in: u64,
    frames_out: u64,
}

impl StreamResampler {
    /// A resampler from `in_rate` to `out_rate` for `channels` interleaved channels.
    pub fn new(
        in_rate: u32,
        out_rate: u32,
        channels: usize,
        method: Method,
    ) -> Result<Self, NodeError> {
        let err = |e: rubato::ResamplerConstructionError| {
            NodeError::new(format!(
                "cannot resample {in_rate} Hz to {out_rate} Hz: {e}"
            ))
        };
        let inner: Box<dyn Resampler<f32>> = match method {
            Method::Fft => Box::new(
                Fft::<f32>::new(
                    in_rate as usize,
                    out_rate as usize,
                    CHUNK,
                    channels,
                    FixedSync::Input,
                )
                .map_err(err)?,
            ),
            Method::Sinc => {
                let params = SincInterpolationParameters::new(128, WindowFunction::BlackmanHarris2);
                let ratio = f64::from(out_rate) / f64::from(in_rate);
                Box::new(
                    Async::<f32>::new_sinc(ratio, 1.1, &params, CHUNK, channels, FixedAsync::Input)
                        .map_err(err)?,
                )
            }
        };
        let to_skip = inner.output_delay();
        let out_buf = vec![0.0; inner.output_frames_max() * channels];
        Ok(StreamResampler {
            channels,
            in_rate,
            out_rate,
            pending: Vec::with_capacity(2 * CHUNK * channels),
            scratch: vec![0.0; CHUNK * channels],
            out_buf,
            to_skip,
            frames_in: 0,
            frames_out: 0,
            inner,
        })
    }

    /// The resampler's delay in output frames (trimmed from the output).
    pub fn delay_frames(&self) -> usize {
        self.inner.output_delay()
    }

    /// Output frames produced so far.
    pub fn frames_out(&self) -> u64 {
        self.frames_out
    }

    /// Feeds interleaved `input` and appends the resampled frames to `out`.
    pub fn push(&mut self, input: &[f32], out: &mut Vec<f32>) -> Result<(), NodeError> {
        self.frames_in += (input.len() / self.channels) as u64;
        self.pending.extend_from_slice(input);
        loop {
            let need = self.inner.input_frames_next();
            if self.pending.len() < need * self.channels {
                return Ok(());
            }
            let used = self.run_chunk(need, None, out)?;
            self.pending.drain(..used * self.channels);
        }
    }

    /// Flushes the tail at end of stream so the total output is exactly
    /// `round(frames_in * out_rate / in_rate)` frames.
    pub fn finish(&mut self, out: &mut Vec<f32>) -> Result<(), NodeError> {
        let expected = self.expected_frames();
        let mut guard = 0;
        while self.frames_out < expected && guard < 64 {
            let need = self.inner.input_frames_next();
            let have = (self.pending.len() / self.channels).min(need);
            let used = self.run_chunk(need, Some(have), out)?;
            self.pending.drain(..used.min(have) * self.channels);
            guard += 1;
        }
        let excess = self.frames_out.saturating_sub(expected) as usize;
        out.truncate(out.len() - excess.min(out.len() / self.channels) * self.channels);
        self.frames_out -= excess as u64;
        Ok(())
    }

    fn expected_frames(&self) -> u64 {
        let num = u128::from(self.frames_in) * u128::from(self.out_rate);
        let den = u128::from(self.in_rate);
        ((num + den / 2) / den) as u64
    }

    /// Runs one resampler call on `need` frames (`partial` of them real); returns the number
    /// of input frames consumed.
    fn run_chunk(
        &mut self,
        need: usize,
        partial: Option<usize>,
        out: &mut Vec<f32>,
    ) -> Result<usize, NodeError> {
        let ch = self.channels;
        let source: &[f32] = match partial {
            None => &self.pending[..need * ch],
            Some(have) => {
                if self.scratch.len() < need * ch {
                    self.scratch.resize(need * ch, 0.0);
                }
                self.scratch[..need * ch].fill(0.0);
                self.scratch[..have * ch].copy_from_slice(&self.pending[..have * ch]);
                &self.scratch[..need * ch]
            }
        };
        let input = InterleavedSlice::new(source, ch, need)
            .map_err(|e| NodeError::new(format!("resampler input: {e}")))?;
        let out_frames = self.out_buf.len() / ch;
        let mut output = InterleavedSlice::new_mut(&mut self.out_buf, ch, out_frames)
            .map_err(|e| NodeError::new(format!("resampler output: {e}")))?;
        let indexing = partial.map(|have| Indexing::new().partial_len(have));
        let (used, produced) = self
            .inner
            .process_into_buffer(&input, &mut output, indexing.as_ref())
            .map_err(|e| NodeError::with_source("resampling failed", e))?;
        let skip = self.to_skip.min(produced);
        self.to_skip -= skip;
        out.extend_from_slice(&self.out_buf[skip * ch..produced * ch]);
        self.frames_out += (produced - skip) as u64;
        Ok(used)
    }
}

/// Averages interleaved channels into `mono` (cleared first).
pub fn downmix(samples: &[f32], channels: usize, mono: &mut Vec<f32>) {
    mono.clear();
    if channels <= 1 {
        mono.extend_from_slice(samples);
        return;
    }
    let scale = 1.0 / channels as f32;
    mono.extend(
        samples
            .chunks_exact(channels)
            .map(|f| f.iter().sum::<f32>() * scale),
    );
}

/// The resample node: creates its resampler when the first frame shows the input rate.
pub struct ResampleNode {
    config: ResampleConfig,
    ports: ResamplePorts,
    stream: Option<(u32, u16)>,
    resampler: Option<StreamResampler>,
    mixed: Vec<f32>,
    out: Vec<f32>,
    out_channels: u16,
    next_sample: u64,
}

impl ResampleNode {
    /// A node with `config`, sending on `ports`.
    pub fn new(config: ResampleConfig, ports: ResamplePorts) -> Self {
        ResampleNode {
            config,
            ports,
            stream: None,
            resampler: None,
            mixed: Vec::new(),
            out: Vec::new(),
            out_channels: 1,
            next_sample: 0,
        }
    }

    fn start(&mut self, frame: &AudioFrame) -> Result<(), NodeError> {
        self.out_channels = if self.config.mono { 1 } else { frame.channels };
        if frame.rate != self.config.rate {
            let r = StreamResampler::new(
                frame.rate,
                self.config.rate,
                usize::from(self.out_channels),
                self.config.method,
            )?;
            tracing::info!(
                from = frame.rate,
                to = self.config.rate,
                channels = self.out_channels,
                delay_frames = r.delay_frames(),
                "resampler ready"
            );
            self.resampler = Some(r);
        }
        self.stream = Some((frame.rate, frame.channels));
        Ok(())
    }

    fn emit(&mut self, ctx: &mut Context) -> Result<(), NodeError> {
        if self.out.is_empty() {
            return Ok(());
        }
        let frame = AudioFrame {
            rate: self.config.rate,
            channels: self.out_channels,
            start_sample: self.next_sample,
            samples: Arc::from(&self.out[..]),
        };
        self.out.clear();
        self.next_sample = frame.end_sample();
        ctx.send(self.ports.audio_out, frame.timestamp(), frame)
    }
}

impl Processor for ResampleNode {
    fn process(&mut self, input: Incoming, ctx: &mut Context) -> Result<(), NodeError> {
        let frame = self.ports.audio_in.expect(&input)?;
        match self.stream {
            None => self.start(frame)?,
            Some(s) if s != (frame.rate, frame.channels) => {
                return Err(NodeError::new(format!(
                    "input format changed mid-stream from {} Hz x{} to {} Hz x{}",
                    s.0, s.1, frame.rate, frame.channels
                )))
            }
            Some(_) => {}
        }
        let needs_mix = self.config.mono && frame.channels > 1;
        let Some(resampler) = self.resampler.as_mut() else {
            // Same rate: forward the shared buffer untouched, or down-mix it.
            if !needs_mix {
                self.next_sample = frame.end_sample();
                return ctx.forward(self.ports.audio_out, input.packet);
            }
            downmix(&frame.samples, usize::from(frame.channels), &mut self.out);
            return self.emit(ctx);
        };
        if needs_mix {
            downmix(&frame.samples, usize::from(frame.channels), &mut self.mixed);
            resampler.push(&self.mixed, &mut self.out)?;
        } else {
            resampler.push(&frame.samples, &mut self.out)?;
        }
        self.emit(ctx)
    }

    fn close(&mut self, ctx: &mut Context) -> Result<(), NodeError> {
        if let Some(r) = self.resampler.as_mut() {
            r.finish(&mut self.out)?;
            self.emit(ctx)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine(rate: u32, freq: f64, frames: usize) -> Vec<f32> {
        (0..frames)
            .map(|i| {
                (2.0 * std::f64::consts::PI * freq * i as f64 / f64::from(rate)).sin() as f32 * 0.5
            })
            .collect()
    }

    fn run(r: &mut StreamResampler, input: &[f32], block: usize) -> Vec<f32> {
        let mut out = Vec::new();
        for chunk in input.chunks(block) {
            r.push(chunk, &mut out).unwrap();
        }
        r.finish(&mut out).unwrap();
        out
    }

    #[test]
    fn output_length_is_exact_for_odd_lengths_and_blocks() {
        for (from, to, frames, block) in [
            (48000, 16000, 48_001, 960),
            (44100, 16000, 12_345, 441),
            (22050, 16000, 7, 3),
        ] {
            let mut r = StreamResampler::new(from, to, 1, Method::Fft).unwrap();
            let out = run(&mut r, &sine(from, 440.0, frames), block);
            let expected = (frames as f64 * f64::from(to) / f64::from(from)).round() as usize;
            assert_eq!(out.len(), expected, "{from}->{to} {frames} frames");
        }
    }

    #[test]
    fn sine_keeps_phase_after_delay_trim() {
        let mut r = StreamResampler::new(48000, 16000, 1, Method::Fft).unwrap();
        let out = run(&mut r, &sine(48000, 1000.0, 48000), 480);
        let reference = sine(16000, 1000.0, out.len());
        let (mut sig, mut err) = (0.0f64, 0.0f64);
        for (a, b) in out[1600..out.len() - 1600].iter().zip(&reference[1600..]) {
            sig += f64::from(*b).powi(2);
            err += f64::from(a - b).powi(2);
        }
        let snr = 10.0 * (sig / err).log10();
        assert!(snr > 60.0, "SNR {snr:.1} dB");
    }

    #[test]
    fn node_resamples_with_contiguous_timestamps_and_exact_length() {
        use weir_engine::testing::NodeRunner;
        use weir_engine::Packet;
        let input = sine(48000, 440.0, 48_000 + 123);
        let frames: Vec<Packet> = input
            .chunks(960)
            .scan(0u64, |pos, chunk| {
                let f = AudioFrame {
                    rate: 48000,
                    channels: 1,
                    start_sample: *pos,
                    samples: Arc::from(chunk),
                };
                *pos = f.end_sample();
                Some(Packet::new(f.timestamp(), f))
            })
            .collect();
        let out = NodeRunner::new(kind())
            .unpaced()
            .option("rate", 16000)
            .feed("audio", frames)
            .run()
            .unwrap();
        let got = out.values::<AudioFrame>("audio");
        let mut next = 0;
        for f in &got {
            assert_eq!((f.rate, f.channels, f.start_sample), (16000, 1, next));
            next = f.end_sample();
        }
        assert_eq!(next, ((48_123.0f64 / 3.0).round()) as u64);
    }

    #[test]
    fn node_forwards_same_rate_mono_untouched() {
        use weir_engine::testing::NodeRunner;
        use weir_engine::Packet;
        let f = AudioFrame {
            rate: 16000,
            channels: 1,
            start_sample: 0,
            samples: Arc::from(vec![0.25f32; 160]),
        };
        let out = NodeRunner::new(kind())
            .unpaced()
            .feed("audio", [Packet::new(f.timestamp(), f.clone())])
            .run()
            .unwrap();
        let got = out.values::<AudioFrame>("audio");
        assert_eq!(got.len(), 1);
        assert!(Arc::ptr_eq(&got[0].samples, &f.samples));
    }

    #[test]
    fn downmix_averages_channels() {
        let mut mono = Vec::new();
        downmix(&[1.0, 0.0, 0.5, 0.5], 2, &mut mono);
        assert_eq!(mono, vec![0.5, 0.5]);
    }
}
