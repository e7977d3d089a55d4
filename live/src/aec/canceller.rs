//! [`Canceller`]: WebRTC's AEC3 (crate `aec3`, a pure-Rust port) on 10 ms mono blocks, without
//! the engine. Feed what the speaker played with [`Canceller::render`], then clean the
//! microphone block heard at the same time with [`Canceller::process`]; AEC3 finds the echo
//! path's delay itself (up to about half a second of lead of the reference over the echo).
//!
//! Samples are `f32` in [-1, 1]. Every buffer is allocated in [`Canceller::new`]; the per-block
//! calls copy into them and allocate nothing of their own.

use aec3::api::config::EchoCanceller3Config;
use aec3::api::control::EchoControl;
use aec3::audio_processing::aec3::echo_canceller3::EchoCanceller3;
use aec3::audio_processing::audio_buffer::AudioBuffer;
use aec3::audio_processing::stream_config::StreamConfig;

/// The rates AEC3 runs at (one, two or three 16 kHz bands).
pub const RATES: [u32; 3] = [16_000, 32_000, 48_000];

/// Why a [`Canceller`] cannot be made or fed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CancellerError {
    /// AEC3 does not run at this rate.
    #[error(
        "echo cancellation runs at 16000, 32000 or 48000 Hz, not {rate} Hz: put \
         `audio.resample` (e.g. `rate: 16000`) in front of both inputs"
    )]
    Rate {
        /// The rate asked for.
        rate: u32,
    },
    /// A block of the wrong length was given.
    #[error("a block must hold {expected} samples (10 ms), not {got}")]
    Block {
        /// Samples per block at this rate.
        expected: usize,
        /// Samples given.
        got: usize,
    },
}

/// AEC3's canceller, made `Send`.
///
/// `EchoCanceller3` keeps its block processor as a `Box<dyn BlockProcessorBackend>` whose
/// (crate-private) trait has no `Send` bound, so the type is not `Send`, although the only
/// implementation outside the crate's own tests (`BlockProcessor`) holds owned buffers and
/// `Arc<dyn rustfft::Fft>` (which is `Send + Sync`), no `Rc`, cell or raw pointer (checked in
/// aec3 0.4.0, which the manifest pins exactly).
struct Aec3(EchoCanceller3);

// SAFETY: see `Aec3`: every value reachable from it is `Send`; only the trait object's
// missing bound hides that. It is never shared (`Sync` is not claimed).
unsafe impl Send for Aec3 {}

/// One mono AEC3 instance and its buffers.
pub struct Canceller {
    echo: Aec3,
    stream: StreamConfig,
    render: AudioBuffer,
    capture: AudioBuffer,
    block: usize,
}

impl Canceller {
    /// An echo canceller for mono audio at `rate` (one of [`RATES`]).
    pub fn new(rate: u32) -> Result<Self, CancellerError> {
        if !RATES.contains(&rate) {
            return Err(CancellerError::Rate { rate });
        }
        let hz = rate as usize;
        let buffer = || AudioBuffer::from_sample_rates(hz, 1, hz, 1, hz);
        Ok(Canceller {
            echo: Aec3(EchoCanceller3::new(
                EchoCanceller3Config::default(),
                rate as i32,
                1,
                1,
            )),
            stream: StreamConfig::new(hz, 1, false),
            render: buffer(),
            capture: buffer(),
            block: hz / 100,
        })
    }

    /// Samples in one 10 ms block.
    pub fn block_len(&self) -> usize {
        self.block
    }

    fn check(&self, got: usize) -> Result<(), CancellerError> {
        if got == self.block {
            Ok(())
        } else {
            Err(CancellerError::Block {
                expected: self.block,
                got,
            })
        }
    }

    /// Feeds one block of what the speaker played (the far end, the echo's source).
    pub fn render(&mut self, reference: &[f32]) -> Result<(), CancellerError> {
        self.check(reference.len())?;
        self.render.copy_from(&[reference], &self.stream);
        self.render.split_into_frequency_bands();
        self.echo.0.analyze_render(&mut self.render);
        Ok(())
    }

    /// Removes the echo from one microphone block, writing the result to `out`.
    pub fn process(&mut self, mic: &[f32], out: &mut [f32]) -> Result<(), CancellerError> {
        self.check(mic.len())?;
        self.check(out.len())?;
        self.capture.copy_from(&[mic], &self.stream);
        self.echo.0.analyze_capture(&mut self.capture);
        self.capture.split_into_frequency_bands();
        self.echo.0.process_capture(&mut self.capture, false);
        self.capture.merge_frequency_bands();
        self.capture.copy_to_stream(&self.stream, &mut [out]);
        Ok(())
    }
}

/// A deterministic speech-like test signal: a few drifting tones with a syllable envelope.
#[cfg(test)]
pub(crate) fn voice(n: usize, rate: u32, seed: u32) -> Vec<f32> {
    let r = rate as f32;
    (0..n)
        .map(|i| {
            let t = i as f32 / r;
            let env = (t * 4.0 + seed as f32).sin().abs();
            let f0 = 140.0 + 30.0 * (t * 1.3 + seed as f32).sin();
            let s: f32 = (1..6)
                .map(|h| (std::f32::consts::TAU * f0 * h as f32 * t).sin() / h as f32)
                .sum();
            0.2 * env * s
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn energy(x: &[f32]) -> f64 {
        x.iter().map(|&s| f64::from(s) * f64::from(s)).sum()
    }

    #[test]
    fn refuses_rates_it_does_not_run_at() {
        let e = Canceller::new(22_050).err().expect("22.05 kHz is refused");
        assert!(e.to_string().contains("audio.resample"), "{e}");
        assert!(Canceller::new(16_000).is_ok());
    }

    #[test]
    fn removes_a_delayed_attenuated_echo() {
        let rate = 16_000;
        let mut aec = Canceller::new(rate).unwrap();
        let n = aec.block_len();
        let far = voice(rate as usize * 6, rate, 0);
        let delay = 640; // 40 ms
        let mic: Vec<f32> = (0..far.len())
            .map(|i| {
                if i >= delay {
                    0.4 * far[i - delay]
                } else {
                    0.0
                }
            })
            .collect();
        let mut out = vec![0.0; far.len()];
        for (k, (r, m)) in far.chunks_exact(n).zip(mic.chunks_exact(n)).enumerate() {
            aec.render(r).unwrap();
            aec.process(m, &mut out[k * n..(k + 1) * n]).unwrap();
        }
        // The last two seconds, once AEC3 has converged.
        let tail = far.len() - 2 * rate as usize;
        let erle = 10.0 * (energy(&mic[tail..]) / energy(&out[tail..]).max(1e-12)).log10();
        assert!(erle > 10.0, "echo reduced by only {erle:.1} dB");
        assert_eq!(
            aec.render(&far[..n - 1]),
            Err(CancellerError::Block {
                expected: n,
                got: n - 1
            })
        );
    }
}
